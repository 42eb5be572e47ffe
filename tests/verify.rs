//! `hermetic verify`, `build --sign`, and the provenance, SBOM and manifest of a build, on a
//! synthetic project: locked from the synthetic archive on 127.0.0.1, with the `rootfs` and
//! `tools` steps published into the store by the test as a tiny tree of the host's own tools
//! (what dpkg would have installed); the image and output steps run for real in the sandbox.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{TestArchive, TestKey, TestProject, TestServer, standard_suites};

struct Fixture {
    _key: TestKey,
    _archive: TestArchive,
    _server: TestServer,
    project: TestProject,
    _mini: tempfile::TempDir,
}

const RECIPE: &str = "format = \"tar\"\npackages = [\"app\"]\nbuild-packages = [\"tool\"]\n";

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: app\n\nFiles: *\nCopyright: 2026 Someone\nLicense: GPL-2+\n text\n\n\
Files: lib/*\nLicense: MIT\n text\n";

fn fixture() -> Fixture {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let project = TestProject::new(&[("app", RECIPE)], &server, &key.keyring);
    project.ok(&["lock"]);
    let mini = mini_tree();
    project.publish_fake_trees("app", mini.path());
    Fixture {
        _key: key,
        _archive: archive,
        _server: server,
        project,
        _mini: mini,
    }
}

/// The host's `sh`, coreutils and `find` with their libraries, merged-/usr, and a DEP-5
/// copyright file for `app`.
fn mini_tree() -> tempfile::TempDir {
    let dir = support::host_tools_tree(&[]);
    let t = dir.path();
    fs_err::create_dir_all(t.join("usr/share/doc/app")).unwrap();
    fs_err::write(t.join("usr/share/doc/app/copyright"), COPYRIGHT).unwrap();
    // A link where libfoo's copyright would be is not followed: NOASSERTION.
    fs_err::create_dir_all(t.join("usr/share/doc/libfoo")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", t.join("usr/share/doc/libfoo/copyright")).unwrap();
    dir
}

impl Fixture {
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.project.command(args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn build(&self, out: &Path, extra: &[&str]) {
        let mut args = vec!["build", "app", "--output", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = self.run(&args);
        assert_eq!(code, 0, "{stdout}{stderr}");
    }

    fn verify(&self, against: &str, extra: &[&str]) -> (i32, String, String) {
        let out = self.project.path("rebuilt");
        let mut args = vec![
            "verify",
            "app",
            "--against",
            against,
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

fn sums(dir: &Path) -> BTreeMap<String, String> {
    hermetic::verify::parse_sums(&fs_err::read_to_string(dir.join("SHA256SUMS")).unwrap())
        .into_iter()
        .collect()
}

/// A copy of `out` as a release would publish it.
fn publish(out: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in fs_err::read_dir(out).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && !e.file_name().to_string_lossy().starts_with('.') {
            fs_err::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    dir
}

#[test]
fn verify_against_the_sums_of_a_build_matches_and_a_flipped_hash_is_code_4() {
    let f = fixture();
    let out = f.project.path("out");
    f.build(&out, &[]);
    let published = sums(&out);
    assert!(!published.is_empty());
    let sums_path = out.join("SHA256SUMS");
    let (code, stdout, stderr) = f.verify(sums_path.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for name in published.keys() {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap();
        assert!(line.ends_with("same"), "{stdout}");
    }

    // One hash flipped: exit 4, the table names the file.
    let (name, hash) = published.iter().next().unwrap();
    let flipped = format!(
        "{}{}",
        if hash.starts_with('0') { '1' } else { '0' },
        &hash[1..]
    );
    let bad = f.project.path("bad-SHA256SUMS");
    fs_err::write(
        &bad,
        fs_err::read_to_string(&sums_path)
            .unwrap()
            .replace(hash, &flipped),
    )
    .unwrap();
    let (code, stdout, stderr) = f.verify(bad.to_str().unwrap(), &[]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(name.as_str()))
        .unwrap();
    assert!(
        line.contains("DIFFERS") && line.contains(&flipped[..16]),
        "{stdout}"
    );
    assert!(stderr.contains("hermetic diff"), "{stderr}");

    // --json for CI.
    let (code, stdout, _) = f.verify(bad.to_str().unwrap(), &["--json"]);
    assert_eq!(code, 4);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["file"] == name.as_str())
        .unwrap();
    assert_eq!(row["verdict"], "differs");
    assert_eq!(row["published"], flipped.as_str());
    assert_eq!(row["rebuilt"], hash.as_str());

    // A published file the build does not make: not rebuilt, exit 4.
    let extra = f.project.path("extra-SHA256SUMS");
    fs_err::write(
        &extra,
        format!(
            "{}{hash}  other.efi\n",
            fs_err::read_to_string(&sums_path).unwrap()
        ),
    )
    .unwrap();
    let (code, stdout, _) = f.verify(extra.to_str().unwrap(), &[]);
    assert_eq!(code, 4, "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("other.efi") && l.ends_with("not rebuilt"))
    );

    // A malformed SHA256SUMS is bad input (1), not a mismatch; a dead URL is the network (5).
    fs_err::write(&bad, "not a sums line\n").unwrap();
    let (code, _, stderr) = f.verify(bad.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a sums line"), "{stderr}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, stderr) = f.verify(&format!("http://127.0.0.1:{closed}/SHA256SUMS"), &[]);
    assert_eq!(code, 5, "{stderr}");
}

#[test]
fn a_published_directory_with_one_changed_file_differs_and_a_url_of_sums_matches() {
    let f = fixture();
    let out = f.project.path("out");
    f.build(&out, &[]);
    let release = publish(&out);
    // The whole release directory, provenance and SBOM included, is rebuilt bit for bit.
    let (code, stdout, stderr) = f.verify(release.path().to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("app.provenance.json") && stdout.contains("app.spdx.json"),
        "{stdout}"
    );

    // Served over HTTP on 127.0.0.1.
    let server = TestServer::start(release.path());
    let (code, stdout, stderr) = f.verify(&format!("{}/SHA256SUMS", server.url()), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // One byte of the image changed: with the SHA256SUMS still there the directory
    // contradicts itself (bad input, 1); without it the files are hashed and it differs (4).
    let image = sums(&out)
        .into_keys()
        .find(|n| n.ends_with(".tar"))
        .unwrap();
    let path = release.path().join(&image);
    let mut bytes = fs_err::read(&path).unwrap();
    bytes[0] ^= 1;
    fs_err::write(&path, bytes).unwrap();
    let (code, _, stderr) = f.verify(release.path().to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("not consistent") && stderr.contains(&image),
        "{stderr}"
    );
    fs_err::remove_file(release.path().join("SHA256SUMS")).unwrap();
    let (code, stdout, stderr) = f.verify(release.path().to_str().unwrap(), &[]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(image.as_str()))
        .unwrap();
    assert!(line.contains("DIFFERS"), "{stdout}");
    // The published file is here, so verify says what differs inside it, entry by entry.
    assert!(
        stderr.contains(&format!("{image}: what differs (published → rebuilt):")),
        "{stderr}"
    );
    assert!(stderr.contains("tar:"), "{stderr}");
    // A single published file.
    let (code, stdout, _) = f.verify(path.to_str().unwrap(), &[]);
    assert_eq!(code, 4, "{stdout}");
}

#[test]
fn build_sign_then_verify_pubkey_checks_every_signature() {
    let f = fixture();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("release.key");
    let (code, _, stderr) = f.run(&["sign", "--generate-key", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let pubkey = keys.path().join("release.key.pub");
    let out = f.project.path("out");
    f.build(&out, &["--sign", key.to_str().unwrap()]);
    let mut signed: Vec<String> = sums(&out).into_keys().collect();
    signed.extend(
        [
            "SHA256SUMS",
            "app.provenance.json",
            "app.spdx.json",
            "app.manifest.json",
        ]
        .map(String::from),
    );
    for name in &signed {
        let sig = out.join(format!("{name}.minisig"));
        assert!(sig.is_file(), "no signature of {name}");
        // Debian's minisign agrees.
        let o = Command::new("minisign")
            .arg("-Vm")
            .arg(out.join(name))
            .arg("-p")
            .arg(&pubkey)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let release = publish(&out);
    let (code, stdout, stderr) = f.verify(
        release.path().to_str().unwrap(),
        &["--pubkey", pubkey.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("signature of SHA256SUMS: good"), "{stdout}");

    // A tampered trusted comment: exit 8, the bad signature named.
    let image = sums(&out)
        .into_keys()
        .find(|n| n.ends_with(".tar"))
        .unwrap();
    let sig = release.path().join(format!("{image}.minisig"));
    let text = fs_err::read_to_string(&sig).unwrap();
    fs_err::write(&sig, text.replace("file:", "file:x")).unwrap();
    let (code, stdout, stderr) = f.verify(
        release.path().to_str().unwrap(),
        &["--pubkey", pubkey.to_str().unwrap()],
    );
    assert_eq!(code, 8, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("signature of {image}: BAD")),
        "{stdout}"
    );

    // A signature alone, checked against the rebuilt file.
    fs_err::write(&sig, &text).unwrap();
    let (code, stdout, stderr) = f.verify(
        sig.to_str().unwrap(),
        &["--pubkey", pubkey.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lone = tempfile::tempdir().unwrap();
    let lone_sig = lone.path().join(format!("{image}.minisig"));
    fs_err::write(&lone_sig, &text).unwrap();
    let (code, stdout, stderr) = f.verify(
        lone_sig.to_str().unwrap(),
        &["--pubkey", pubkey.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Without a key a lone signature is refused before building.
    let (code, _, stderr) = f.verify(lone_sig.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--pubkey"), "{stderr}");
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/schemas")
        .join(name);
    let v: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&v).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, doc: &serde_json::Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

#[test]
fn provenance_sbom_and_manifest_are_valid_complete_and_deterministic() {
    let f = fixture();
    let out = f.project.path("out");
    f.build(&out, &[]);
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&fs_err::read_to_string(out.join(name)).unwrap()).unwrap()
    };
    let provenance = read("app.provenance.json");
    assert_valid(
        &schema("in-toto-statement-v1.json"),
        &provenance,
        "statement",
    );
    assert_valid(
        &schema("slsa-provenance-v1.json"),
        &provenance["predicate"],
        "provenance",
    );
    // Subjects: every output with its hash.
    let subjects: BTreeMap<String, String> = provenance["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["digest"]["sha256"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(subjects, sums(&out));
    let deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let lock_sha = support::sha256_hex(&fs_err::read(f.project.path("pins.lock")).unwrap());
    assert!(
        deps.iter()
            .any(|d| d["name"] == "pins.lock" && d["digest"]["sha256"] == lock_sha.as_str())
    );

    // Every package of the image, once, with its pin.
    let lock: toml::Value = toml::from_str(&f.project.lock_text()).unwrap();
    let image_pkgs: Vec<&toml::Value> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["recipes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t.as_str() == Some("app"))
        })
        .collect();
    assert!(image_pkgs.len() >= 3);
    for p in &image_pkgs {
        let sha = p["sha256"].as_str().unwrap();
        assert!(
            deps.iter().any(|d| d["digest"]["sha256"] == sha),
            "{p} not in provenance"
        );
    }
    let sbom = read("app.spdx.json");
    let spdx_schema = schema("spdx-2.3.json");
    assert_valid(&spdx_schema, &sbom, "SPDX");
    // The schemas do reject what is wrong.
    let mut broken = sbom.clone();
    broken["packages"][1]
        .as_object_mut()
        .unwrap()
        .remove("downloadLocation");
    assert!(!spdx_schema.is_valid(&broken));
    let mut broken = provenance.clone();
    broken["_type"] = "https://in-toto.io/Statement/v0.1".into();
    assert!(!schema("in-toto-statement-v1.json").is_valid(&broken));
    let all = sbom["packages"].as_array().unwrap();
    // The image itself is one more package; the others are the image's Debian packages.
    let packages: Vec<&serde_json::Value> = all
        .iter()
        .filter(|p| {
            p["SPDXID"]
                .as_str()
                .unwrap()
                .starts_with("SPDXRef-Package-")
        })
        .collect();
    for p in &image_pkgs {
        let name = p["name"].as_str().unwrap();
        let found: Vec<&&serde_json::Value> =
            packages.iter().filter(|x| x["name"] == name).collect();
        assert_eq!(found.len(), 1, "{name} in the SBOM {} times", found.len());
        let x = found[0];
        assert_eq!(x["versionInfo"], p["version"].as_str().unwrap());
        assert_eq!(
            x["checksums"][0]["checksumValue"],
            p["sha256"].as_str().unwrap()
        );
        let purl = x["externalRefs"][0]["referenceLocator"].as_str().unwrap();
        assert!(
            purl.starts_with(&format!("pkg:deb/debian/{name}@")),
            "{purl}"
        );
        assert!(
            x["sourceInfo"]
                .as_str()
                .unwrap()
                .contains(p["source"].as_str().unwrap())
        );
    }
    // Nothing else: the image's packages and the image.
    assert_eq!(packages.len(), image_pkgs.len());
    assert_eq!(all.len(), image_pkgs.len() + 1);
    let app = packages.iter().find(|x| x["name"] == "app").unwrap();
    assert_eq!(app["licenseDeclared"], "GPL-2.0-or-later AND MIT");
    let libfoo = packages.iter().find(|x| x["name"] == "libfoo").unwrap();
    assert_eq!(libfoo["licenseDeclared"], "NOASSERTION");
    // SOURCE_DATE_EPOCH (0 by default), not the clock.
    assert_eq!(sbom["creationInfo"]["created"], "1970-01-01T00:00:00Z");

    let manifest = read("app.manifest.json");
    let names: Vec<&str> = manifest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), image_pkgs.len());

    // Byte for byte the same from a second build into another directory.
    let again = f.project.path("again");
    f.build(&again, &[]);
    for name in ["app.provenance.json", "app.spdx.json", "app.manifest.json"] {
        assert_eq!(
            fs_err::read(out.join(name)).unwrap(),
            fs_err::read(again.join(name)).unwrap(),
            "{name}"
        );
    }
}

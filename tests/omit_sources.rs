//! Images without some of their upstream sources: `hermetic fetch TARGET` fetches only what
//! that image needs, a source that cannot be had stops the build naming it and the ways out,
//! and `hermetic build --omit NAME` / `--omit-unavailable` build without it, saying so in
//! os-release, the provenance and the JSON report.
//!
//! A synthetic project locked from the synthetic archive on 127.0.0.1; the upstream sources
//! are small files served from another local server, or from a closed port (unreachable).
//! The `rootfs` and `tools` steps are published as a tiny tree of the host's own tools (what
//! dpkg would have installed); the image and output steps run for real in the sandbox.

mod support;

use std::collections::BTreeSet;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;

use support::{ServedArchive, TestProject, TestServer, served_standard_archive};

const HELPER: &str = "#!/bin/sh\necho helper\n";
const GONE: &str = "#!/bin/sh\necho gone\n";

struct Fixture {
    _archive: ServedArchive,
    _sources: TestServer,
    _served: tempfile::TempDir,
    project: TestProject,
    _mini: tempfile::TempDir,
    gone_url: String,
}

/// A port nothing listens on: a refused connection at once.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `app` (a tar image with steps) declares `helper` (served) and `gone` (unreachable, its
/// SHA-256 given), a step listing each and one listing neither; `other` declares `extra`
/// (served) and nothing else in common with `app` but the essential packages.
fn fixture() -> Fixture {
    let archive = served_standard_archive();
    let served = tempfile::tempdir().unwrap();
    fs_err::write(served.path().join("helper.sh"), HELPER).unwrap();
    fs_err::write(served.path().join("extra.sh"), "extra\n").unwrap();
    let sources = TestServer::start(served.path());
    let gone_url = format!("http://127.0.0.1:{}/gone.sh", closed_port());
    let app = format!(
        "format = \"tar\"\npackages = [\"app\"]\nbuild-packages = [\"tool\"]\n\
         [[sources]]\nkind = \"file\"\nname = \"helper\"\nurls = [\"{}helper.sh\"]\n\
         [[sources]]\nkind = \"file\"\nname = \"gone\"\nurls = [\"{gone_url}\"]\nsha256 = \"{}\"\n\
         [[steps]]\nname = \"use-helper\"\nsources = [\"helper\"]\nscript = \"mkdir -p \\\"$DESTDIR/etc\\\"; touch \\\"$DESTDIR/etc/helper-ran\\\"\"\n\
         [[steps]]\nname = \"use-gone\"\nsources = [\"gone\"]\nscript = \"mkdir -p \\\"$DESTDIR/etc\\\"; touch \\\"$DESTDIR/etc/gone-ran\\\"\"\n\
         [[steps]]\nname = \"always\"\nscript = \"mkdir -p \\\"$DESTDIR/etc\\\"; touch \\\"$DESTDIR/etc/always-ran\\\"\"\n",
        sources.url(),
        hermetic::hash::sha256_hex(GONE.as_bytes()),
    );
    let other = format!(
        "format = \"tar\"\npackages = [\"libbar\"]\n\
         [[sources]]\nkind = \"file\"\nname = \"extra\"\nurls = [\"{}extra.sh\"]\n",
        sources.url()
    );
    let project = TestProject::new(
        &[("app", &app), ("other", &other)],
        &archive.server,
        &archive.key.keyring,
    );
    // The steps' `sources` are project paths too.
    for name in ["helper", "gone"] {
        fs_err::create_dir_all(project.path(name)).unwrap();
        fs_err::write(project.path(&format!("{name}/README")), name).unwrap();
    }
    project.ok(&["lock"]);
    let mini = support::host_tools_tree(&[]);
    fs_err::write(mini.path().join("usr/lib/os-release"), "ID=debian\n").unwrap();
    project.publish_fake_trees("app", mini.path());
    Fixture {
        _archive: archive,
        _sources: sources,
        _served: served,
        project,
        _mini: mini,
        gone_url,
    }
}

/// The blobs of the store `store`.
fn blobs_in(store: &Path) -> BTreeSet<String> {
    match fs_err::read_dir(store.join("v1/blobs/sha256")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn blobs(project: &TestProject) -> BTreeSet<String> {
    blobs_in(project.store.path())
}

/// The text of `path` in the tar written to `out`.
fn tar_member(out: &Path, path: &str) -> Option<String> {
    let tar = fs_err::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tar"))
        .expect("a tar output");
    let mut archive = tar::Archive::new(fs_err::File::open(&tar).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name.trim_start_matches("./") == path {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return Some(text);
        }
    }
    None
}

#[test]
fn fetch_target_fetches_only_the_pins_of_that_image() {
    let f = fixture();
    let lock = hermetic::lockfile::Lockfile::read(&f.project.path("pins.lock"))
        .unwrap()
        .unwrap();
    let tagged = |tags: &[&str]| -> BTreeSet<String> {
        lock.packages
            .iter()
            .filter(|p| p.recipes.iter().any(|r| tags.contains(&r.as_str())))
            .map(|p| p.sha256.clone())
            .collect()
    };
    let sha = |name: &str| -> String {
        lock.upstream
            .iter()
            .find(|u| u.pin.name() == name)
            .and_then(|u| u.pin.content_hash())
            .unwrap()
            .to_string()
    };
    // A fresh store: `hermetic lock` stored the sources whose hash it computed.
    let fresh = tempfile::tempdir().unwrap();
    let fetch = |target: &str| {
        f.project
            .command_at(f.project.dir.path(), fresh.path(), &["fetch", target])
            .output()
            .unwrap()
    };
    // `other`: its rootfs closure and its one served source, nothing of `app`.
    let o = fetch("other");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut want = tagged(&["other"]);
    want.insert(sha("extra"));
    let got = blobs_in(fresh.path());
    assert_eq!(got, want, "fetch other fetched another set of pins");
    assert!(!got.contains(&sha("helper")));
    assert!(
        tagged(&["app", "app:build"])
            .difference(&tagged(&["other"]))
            .next()
            .is_some(),
        "the fixture's images share every package"
    );
    // `app` cannot have `gone`: its fetch fails naming it, after fetching the rest.
    let o = fetch("app");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("file source `gone`"), "{err}");
    assert!(err.contains(&f.gone_url), "{err}");
    let mut want = tagged(&["app", "app:build", "other"]);
    want.insert(sha("helper"));
    want.insert(sha("extra"));
    assert_eq!(
        blobs_in(fresh.path()),
        want,
        "fetch app fetched another set"
    );
    // The plan of `app` lists its two upstream pins, `--source-dir` paths before URLs.
    let copies = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = f.project.run(&[
        "--json",
        "fetch",
        "--plan",
        "app",
        "--source-dir",
        copies.path().to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let upstream = plan["upstream"].as_array().unwrap();
    let names: Vec<&str> = upstream
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gone", "helper"]);
    assert_eq!(upstream[0]["hash"], serde_json::json!(sha("gone")));
    let candidates: Vec<(&str, &str)> = upstream[0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["source"].as_str().unwrap(), c["url"].as_str().unwrap()))
        .collect();
    let dir = |n: &str| copies.path().join(n).display().to_string();
    assert_eq!(
        candidates,
        [
            ("dir", dir("gone").as_str()),
            ("dir", dir("gone.sh").as_str()),
            ("url", f.gone_url.as_str())
        ]
    );
    let (ok, text, _) = f.project.run(&["fetch", "--plan", "other"]);
    assert!(ok);
    assert!(
        text.contains(&format!("file source `extra` sha256 {}", sha("extra"))),
        "{text}"
    );
    assert!(!text.contains("`helper`"), "{text}");
    // An unknown target gets the suggestion the other commands give.
    let err = f.project.fails(&["fetch", "ap"]);
    assert!(err.contains("no recipe named `ap`"), "{err}");
    assert!(err.contains("did you mean `app`?"), "{err}");
}

#[test]
fn an_unreachable_source_stops_the_build_naming_it_its_pin_and_the_ways_out() {
    let f = fixture();
    let out = f.project.path("out");
    let err = f
        .project
        .fails(&["build", "app", "--output", out.to_str().unwrap()]);
    let pin = hermetic::hash::sha256_hex(GONE.as_bytes());
    for want in [
        "file source `gone`",
        &format!("sha256 {pin}"),
        &f.gone_url,
        "hint:",
        "--source-dir DIR",
        "`gone`",
        "--omit gone",
        "--omit-unavailable",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("source `helper`"), "{err}");
    assert!(!out.exists(), "a failed build wrote {}", out.display());
    // Nothing was built: only the published rootfs and tools entries are steps.
    let steps: Vec<_> = fs_err::read_dir(f.project.store.path().join("v1/steps"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().starts_with("source-"))
        .collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
}

/// Runs `hermetic [--json] build app EXTRA --output out` and asserts success; gives stdout,
/// stderr and the output directory.
fn build_app(f: &Fixture, json: bool, extra: &[&str]) -> (String, String, std::path::PathBuf) {
    let out = f.project.path("out");
    let mut args: Vec<&str> = if json { vec!["--json"] } else { vec![] };
    args.extend(["build", "app", "--output", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = f.project.run(&args);
    assert!(ok, "{stdout}{stderr}");
    (stdout, stderr, out)
}

/// The tar in `out` is the image without `gone`: os-release says so, the step listing it
/// did not run, the others did.
fn assert_built_without_gone(out: &Path) {
    let osrel = tar_member(out, "usr/lib/os-release").unwrap();
    assert!(
        osrel.lines().any(|l| l == "HERMETIC_OMITTED=\"gone\""),
        "{osrel}"
    );
    assert!(tar_member(out, "etc/helper-ran").is_some());
    assert!(tar_member(out, "etc/always-ran").is_some());
    assert!(
        tar_member(out, "etc/gone-ran").is_none(),
        "the step listing `gone` ran"
    );
}

#[test]
fn omit_builds_without_the_source_and_the_image_says_so() {
    let f = fixture();
    let (stdout, stderr, out) = build_app(&f, true, &["--omit", "gone"]);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains("`gone`")),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["omitted"]["app"], serde_json::json!(["gone"]));
    assert_built_without_gone(&out);
    let provenance: serde_json::Value =
        serde_json::from_slice(&fs_err::read(out.join("app.provenance.json")).unwrap()).unwrap();
    assert_eq!(
        provenance["predicate"]["buildDefinition"]["externalParameters"]["omittedSources"],
        serde_json::json!(["gone"])
    );
    // The image step without `gone` is another step than the full one.
    let plan = f.project.plan("app");
    let full = plan.iter().find(|(s, _)| s == "app/image").unwrap();
    let built = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "app/image")
        .unwrap();
    assert_ne!(built["key"].as_str().unwrap(), full.1);

    // A name no recipe of the target declares is an error.
    let err = f.project.fails(&["build", "app", "--omit", "gonne"]);
    assert!(err.contains("--omit gonne"), "{err}");
    assert!(err.contains("did you mean `gone`?"), "{err}");
    assert!(err.contains("gone, helper"), "{err}");
}

#[test]
fn omit_unavailable_omits_exactly_the_source_that_cannot_be_had() {
    let f = fixture();
    let (_, stderr, out) = build_app(&f, false, &["--omit-unavailable"]);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("`gone`"), "{stderr}");
    assert_built_without_gone(&out);
}

#[test]
fn a_source_dir_copy_is_checked_against_the_pin() {
    let f = fixture();
    let out = f.project.path("out");
    let copies = tempfile::tempdir().unwrap();
    fs_err::write(copies.path().join("gone"), "#!/bin/sh\necho tampered\n").unwrap();
    let err = f.project.fails(&[
        "build",
        "app",
        "--source-dir",
        copies.path().to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(
        err.contains(&copies.path().join("gone").display().to_string()),
        "{err}"
    );
    assert!(!out.exists());
    // The right copy, under the URL's file name, is taken: nothing is omitted.
    fs_err::remove_file(copies.path().join("gone")).unwrap();
    fs_err::write(copies.path().join("gone.sh"), GONE).unwrap();
    let (_, stderr, out) = build_app(
        &f,
        false,
        &["--source-dir", copies.path().to_str().unwrap()],
    );
    assert!(!stderr.contains("warning:"), "{stderr}");
    let osrel = tar_member(&out, "usr/lib/os-release").unwrap();
    assert!(!osrel.contains("HERMETIC_OMITTED"), "{osrel}");
    assert!(tar_member(&out, "etc/gone-ran").is_some());
    assert!(blobs(&f.project).contains(&hermetic::hash::sha256_hex(GONE.as_bytes())));
}

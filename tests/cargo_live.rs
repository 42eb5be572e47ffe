//! Live test of `[[cargo]]` builds: ripgrep 14.1.1 as published on crates.io (its `.crate`,
//! which carries its Cargo.lock, pinned as a `file` source), its 57 registry crates from
//! static.crates.io, Debian's rustc/cargo 1.85 from the host's apt mirror, the real sandbox.
//!
//! The program is built twice, in two projects at different paths with two stores; the
//! second store gets its crates and source copied from the first (checked on the way in),
//! its `fetch` may not reach any crate registry (`HERMETIC_CRATES_URL` points at a closed
//! port), and its build runs `--offline`. The two `rg` binaries and the two image tars must
//! be byte-identical, hold no path of either project or store, and `rg` must run.
//!
//! It locks afresh into temporary projects, as the mirror drops superseded versions. About
//! 8 minutes a build on two cores (the toolchain tree, then cargo).

mod project;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use project::{contains, hermetic_in, run, tar_member};

fn hermetic() -> &'static str {
    env!("CARGO_BIN_EXE_hermetic")
}

const SOURCE_SHA256: &str = "f77b8032dc584527975f34aa5a897d0ef5a785573fda778771a614ff9da501d9";

const RECIPE: &str = r#"format = "tar"
packages = ["base-files"]

[[sources]]
kind = "file"
name = "ripgrep"
urls = ["https://static.crates.io/crates/ripgrep/ripgrep-14.1.1.crate"]

[[cargo]]
name = "rg"
source = "ripgrep"
bins = ["rg"]
install = { "rg" = "/usr/bin/rg" }
"#;

/// A project at `dir` with this repository's settings and keys and the `rg` recipe.
fn write_project(dir: &Path) {
    project::write_recipe_project(dir, "rg", RECIPE);
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn ripgrep_builds_bit_identically_from_vendored_crates_offline() {
    let root_a = tempfile::tempdir().unwrap();
    let root_b = tempfile::tempdir().unwrap();
    let a = root_a.path().join("first-project");
    let b = root_b.path().join("elsewhere/second");
    let store_a = tempfile::tempdir().unwrap();
    let store_b = tempfile::tempdir().unwrap();
    write_project(&a);

    // Lock: packages from the host's mirror, the source's SHA-256 computed from crates.io
    // (over TLS, through whatever proxy the host trusts), the crates read from its Cargo.lock.
    run(hermetic_in(&a, store_a.path()).args(["lock", "--allow-mirror-state"]));
    run(hermetic_in(&a, store_a.path()).args(["lock", "--check"]));
    let lock = hermetic::lockfile::Lockfile::read(&a.join("pins.lock"))
        .unwrap()
        .unwrap();
    let source = lock.upstream.iter().find(|u| u.pin.name() == "ripgrep");
    assert_eq!(
        source.and_then(|u| u.pin.content_hash()),
        Some(SOURCE_SHA256)
    );
    assert_eq!(lock.cargo.len(), 1);
    let crates = hermetic::sources::cargo::locked_crates_of(&lock);
    assert!(crates.len() >= 20, "only {} crates", crates.len());
    assert!(crates.iter().any(|c| c.name == "grep-searcher"));
    let toolchain: Vec<&str> = lock
        .packages
        .iter()
        .filter(|p| p.recipes.iter().any(|r| r == "rg:cargo"))
        .map(|p| p.name.as_str())
        .collect();
    for p in ["rustc", "cargo", "gcc", "libc6-dev"] {
        assert!(toolchain.contains(&p), "{p} not in the rg:cargo closure");
    }

    // First build: everything fetched from the network.
    let fetched = run(hermetic_in(&a, store_a.path()).arg("fetch"));
    let text = String::from_utf8_lossy(&fetched.stderr);
    assert!(
        text.contains(&format!("crates: {} fetched, 0 already", crates.len())),
        "{text}"
    );
    let started = Instant::now();
    run(hermetic_in(&a, store_a.path())
        .args(["build", "rg", "--output"])
        .arg(a.join("out")));
    let first = started.elapsed();

    // The second project: the same recipe and lock at another path, another store.
    write_project(&b);
    fs_err::copy(a.join("pins.lock"), b.join("pins.lock")).unwrap();
    // Its crates and source come from the first store, each checked on the way in.
    let sa = hermetic::store::Store::open(store_a.path()).unwrap();
    let sb = hermetic::store::Store::open(store_b.path()).unwrap();
    for hash in crates
        .iter()
        .map(|c| c.checksum.as_str())
        .chain([SOURCE_SHA256])
    {
        let mut f = fs_err::File::open(sa.blob_path(hash)).unwrap();
        sb.put_blob_from_reader(hash, None, &mut f).unwrap();
    }
    // No crate registry is reachable for it: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let fetched = run(hermetic_in(&b, store_b.path()).arg("fetch").env(
        "HERMETIC_CRATES_URL",
        format!("http://127.0.0.1:{port}/{{name}}-{{version}}.crate"),
    ));
    let text = String::from_utf8_lossy(&fetched.stderr);
    assert!(
        text.contains(&format!("crates: 0 fetched, {} already", crates.len())),
        "{text}"
    );
    let started = Instant::now();
    run(hermetic_in(&b, store_b.path())
        .args(["build", "rg", "--offline", "--output"])
        .arg(b.join("out")));
    let second = started.elapsed();

    let tar_a = a.join("out/rg.tar");
    let tar_b = b.join("out/rg.tar");
    let rg_a = tar_member(&tar_a, "./usr/bin/rg");
    let rg_b = tar_member(&tar_b, "./usr/bin/rg");
    eprintln!(
        "rg: {} ({} bytes), first build {:.0}s, second build {:.0}s",
        sha256(&rg_a),
        rg_a.len(),
        first.as_secs_f64(),
        second.as_secs_f64()
    );
    eprintln!("second rg: {}", sha256(&rg_b));
    assert!(rg_a.len() > 1_000_000, "rg is {} bytes", rg_a.len());
    assert_eq!(sha256(&rg_a), sha256(&rg_b), "the two rg binaries differ");
    assert_eq!(
        sha256(&fs_err::read(&tar_a).unwrap()),
        sha256(&fs_err::read(&tar_b).unwrap()),
        "the two image tars differ"
    );
    // No path of the host, the projects, the stores or the sandbox's build directories.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/nonexistent-home".into());
    let paths: Vec<PathBuf> = vec![
        a.clone(),
        b.clone(),
        store_a.path().to_path_buf(),
        store_b.path().to_path_buf(),
        PathBuf::from(&home),
    ];
    for p in &paths {
        assert!(
            !contains(&rg_a, &p.display().to_string()),
            "rg holds {}",
            p.display()
        );
    }
    for sandbox_dir in [
        "/work/src",
        "/work/vendor",
        "/work/cargo-home",
        "/work/target",
    ] {
        assert!(!contains(&rg_a, sandbox_dir), "rg holds {sandbox_dir}");
    }
    assert!(contains(&rg_a, "/usr/src/crates/grep-searcher-"));

    // rg runs, in the toolchain tree (the host's C library may be older).
    let plan = run(hermetic_in(&a, store_a.path()).args(["--json", "plan", "rg"]));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let tools_key = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "rg/cargo-tools")
        .and_then(|s| s["key"].as_str())
        .unwrap()
        .to_string();
    let tools = sa.step_path(&tools_key).join("tree");
    let bin = root_a.path().join("rg");
    fs_err::write(&bin, &rg_a).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = run(Command::new(hermetic())
        .args(["sandbox", "run", "--root"])
        .arg(&tools)
        .args(["--tmpfs", "/opt", "--ro"])
        .arg(format!("{}:/opt/rg", bin.display()))
        .args(["--", "/opt/rg", "--version"]));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("ripgrep 14.1.1"), "{version}");
}

/// A `deb` source from the host's Debian mirror (figlet, whose postinst registers the
/// `/usr/bin/figlet` alternative): installed into the image after the packages, with its
/// maintainer scripts in one recipe and without them (`drop-maintainer-scripts`) in another.
/// The version is trixie's; when the mirror drops it, change the URL.
#[test]
fn deb_sources_are_installed_with_or_without_their_maintainer_scripts() {
    let mirror = hermetic::mirrors::apt_uris(Path::new("/"))
        .unwrap()
        .into_iter()
        .find(|u| !u.trim_end_matches('/').ends_with("-security"))
        .expect("the host's apt configuration names a Debian mirror");
    let url = format!(
        "{}/pool/main/f/figlet/figlet_2.2.5-3+b2_amd64.deb",
        mirror.trim_end_matches('/')
    );
    let root = tempfile::tempdir().unwrap();
    let p = root.path().join("project");
    let store = tempfile::tempdir().unwrap();
    write_project(&p);
    fs_err::remove_file(p.join("recipes/rg.toml")).unwrap();
    for (name, drop) in [("kept", false), ("dropped", true)] {
        fs_err::write(
            p.join(format!("recipes/{name}.toml")),
            format!(
                "format = \"tar\"\npackages = [\"base-files\"]\n\n[[sources]]\nkind = \"deb\"\n\
                 name = \"figlet-{name}\"\nurl = \"{url}\"\ndrop-maintainer-scripts = {drop}\n"
            ),
        )
        .unwrap();
    }
    run(hermetic_in(&p, store.path()).args(["lock", "--allow-mirror-state"]));
    run(hermetic_in(&p, store.path()).arg("fetch"));
    run(hermetic_in(&p, store.path())
        .args(["build", "kept", "dropped", "--output"])
        .arg(p.join("out")));
    let listing = |image: &str| -> String {
        let out = run(Command::new("tar")
            .arg("-tf")
            .arg(p.join(format!("out/{image}.tar"))));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for image in ["kept", "dropped"] {
        let files = listing(image);
        assert!(files.contains("./usr/bin/figlet-figlet\n"), "{image}");
        let status = tar_member(&p.join(format!("out/{image}.tar")), "./var/lib/dpkg/status");
        let status = String::from_utf8_lossy(&status);
        let paragraph = status
            .split("\n\n")
            .find(|p| p.lines().any(|l| l == "Package: figlet"))
            .unwrap_or_else(|| panic!("figlet is not in the dpkg status of {image}"));
        assert!(
            paragraph
                .lines()
                .any(|l| l == "Status: install ok installed"),
            "{paragraph}"
        );
    }
    // The postinst ran in one image only: it made the alternative and kept its script.
    let kept = listing("kept");
    let dropped = listing("dropped");
    assert!(kept.contains("./etc/alternatives/figlet\n"), "{kept}");
    assert!(
        kept.contains("./var/lib/dpkg/info/figlet.postinst\n"),
        "{kept}"
    );
    assert!(
        !dropped.contains("./etc/alternatives/figlet\n"),
        "{dropped}"
    );
    assert!(!dropped.contains("figlet.postinst"), "{dropped}");
    assert!(!dropped.contains("figlet.prerm"), "{dropped}");
}

/// A `file` source reaches the recipe's steps as `$TARBALLDIR/sources/<name>`: supplied with
/// `--source-dir` (its URL cannot be reached), pinned by `hermetic lock`, and copied by a step
/// into the image byte for byte; a step cannot write over it.
#[test]
fn file_sources_are_staged_for_the_steps() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path().join("project");
    let store = tempfile::tempdir().unwrap();
    let supply = root.path().join("supply");
    write_project(&p);
    fs_err::remove_file(p.join("recipes/rg.toml")).unwrap();
    let content = b"#!/bin/sh\necho pinned\n";
    fs_err::create_dir_all(&supply).unwrap();
    fs_err::write(supply.join("greeting.sh"), content).unwrap();
    fs_err::write(
        p.join("recipes/staged.toml"),
        "format = \"tar\"\npackages = [\"base-files\"]\n\n[[sources]]\nkind = \"file\"\n\
         name = \"greeting.sh\"\nurls = [\"https://example.invalid/greeting.sh\"]\n\n\
         [[steps]]\nname = \"copy\"\nscript = \"\"\"\n\
         if echo x >> \"$TARBALLDIR/sources/greeting.sh\"; then echo writable >&2; exit 1; fi\n\
         install -D -m 0755 \"$TARBALLDIR/sources/greeting.sh\" \"$DESTDIR/usr/bin/greeting\"\n\"\"\"\n",
    )
    .unwrap();
    run(hermetic_in(&p, store.path())
        .args(["lock", "--allow-mirror-state", "--source-dir"])
        .arg(&supply));
    let lock = fs_err::read_to_string(p.join("pins.lock")).unwrap();
    assert!(
        lock.contains(&format!("sha256 = \"{}\"", sha256(content))),
        "{lock}"
    );
    run(hermetic_in(&p, store.path()).arg("fetch"));
    run(hermetic_in(&p, store.path())
        .args(["build", "staged", "--output"])
        .arg(p.join("out")));
    let got = tar_member(&p.join("out/staged.tar"), "./usr/bin/greeting");
    assert_eq!(got, content);
}

//! `[[sources]]` through `hermetic lock`, `lock --check` and `hermetic fetch`: missing
//! content hashes are computed where the source is reachable, the others named on one line
//! each; `--check` reports missing and changed source pins; `fetch --source-dir --offline`
//! fills the store from local copies.

mod support;

use std::io::Write;

use support::{TestArchive, TestKey, TestProject, TestServer, sha256_hex, standard_suites};

const COMMIT: &str = "a8296e4ccd355f5fac805828ad8e474381a6c5a2";

fn tar_gz(prefix: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in [
        ("go.mod", &b"module x\n"[..], 0o644),
        ("cmd/api/main.go", &b"package main\n"[..], 0o644),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("{prefix}{path}"), data)
            .unwrap();
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&b.into_inner().unwrap()).unwrap();
    e.finish().unwrap()
}

fn recipe(url: &str, with_gone: bool) -> String {
    let mut r = format!(
        "packages = [\"app\"]\n\
         [[sources]]\nkind = \"file\"\nname = \"acme.sh\"\nurls = [\"{url}upstream/acme.sh\"]\n\
         [[sources]]\nkind = \"git\"\nname = \"system-api\"\nrepo = \"{url}upstream/system-api.git\"\ncommit = \"{COMMIT}\"\n"
    );
    if with_gone {
        r.push_str(&format!(
            "[[sources]]\nkind = \"deb\"\nname = \"gone\"\nurl = \"{url}upstream/gone.deb\"\ndrop-maintainer-scripts = true\n"
        ));
    }
    r
}

#[test]
fn lock_computes_source_pins_check_and_fetch_use_them() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let acme = b"#!/bin/sh\necho acme\n".to_vec();
    let tgz = tar_gz(&format!("system-api-{COMMIT}/"));
    let up = archive.root.path().join("upstream");
    fs_err::create_dir_all(up.join("system-api/archive")).unwrap();
    fs_err::write(up.join("acme.sh"), &acme).unwrap();
    fs_err::write(up.join(format!("system-api/archive/{COMMIT}.tar.gz")), &tgz).unwrap();
    let server = TestServer::start(archive.root.path());
    let url = server.url();
    let p = TestProject::new(&[("base", &recipe(&url, true))], &server, &key.keyring);

    let stderr = p.ok(&["lock"]);
    let lock = p.lock_text();
    // The reachable ones are pinned by content...
    let tree = {
        let f = tempfile::NamedTempFile::new().unwrap();
        fs_err::write(f.path(), &tgz).unwrap();
        hermetic::sources::treehash::tree_hash_archive(f.path()).unwrap()
    };
    assert!(
        lock.contains("\n[[upstream]]\nkind = \"file\"\nname = \"acme.sh\"\n"),
        "{lock}"
    );
    assert!(
        lock.contains(&format!("sha256 = \"{}\"", sha256_hex(&acme))),
        "{lock}"
    );
    assert!(
        lock.contains(&format!("tree-sha256 = \"{tree}\"")),
        "{lock}"
    );
    // ...the unreachable one is named on one line and recorded without a hash.
    let line = stderr
        .lines()
        .find(|l| l.contains("could not pin deb source `gone`"))
        .unwrap_or_else(|| panic!("no warning for `gone`:\n{stderr}"));
    assert!(line.contains("upstream/gone.deb"), "{line}");
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains("deb source `gone` has no content hash in the lock"),
        "{stderr}"
    );
    // fetch refuses a pin without a declared hash.
    let stderr = p.fails(&["fetch"]);
    assert!(
        stderr.contains("deb source `gone` has no content hash"),
        "{stderr}"
    );

    // Without it, the lock is complete; a second lock computes nothing (no request).
    fs_err::write(p.path("recipes/base.toml"), recipe(&url, false)).unwrap();
    p.ok(&["lock"]);
    p.ok(&["lock", "--check"]);
    let before = server.requests();
    p.ok(&["lock"]);
    assert_eq!(
        server.requests(),
        before,
        "an unchanged lock touched the network"
    );

    // --check reports a changed source.
    let changed = recipe(&url, false).replace(COMMIT, &"b".repeat(40));
    fs_err::write(p.path("recipes/base.toml"), &changed).unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains("git source `system-api`") && stderr.contains("changed"),
        "{stderr}"
    );
    fs_err::write(p.path("recipes/base.toml"), recipe(&url, false)).unwrap();

    // Another store: its upstream sources come from a --source-dir (a file by name and a
    // checkout), never from their URLs; then they are all there, offline.
    let q = TestProject::new(&[("base", &recipe(&url, false))], &server, &key.keyring);
    fs_err::copy(p.path("pins.lock"), q.path("pins.lock")).unwrap();
    let src = tempfile::tempdir().unwrap();
    fs_err::write(src.path().join("acme.sh"), &acme).unwrap();
    fs_err::create_dir_all(src.path().join("system-api/cmd/api")).unwrap();
    fs_err::write(src.path().join("system-api/go.mod"), b"module x\n").unwrap();
    fs_err::write(
        src.path().join("system-api/cmd/api/main.go"),
        b"package main\n",
    )
    .unwrap();
    let seen = server.log().len();
    let dir = src.path().to_str().unwrap();
    let stderr = q.ok(&["fetch", "--source-dir", dir]);
    assert!(
        stderr.contains("upstream sources: 2 fetched, 0 already"),
        "{stderr}"
    );
    let upstream_requests: Vec<String> = server.log()[seen..]
        .iter()
        .filter(|l| l.contains("upstream/"))
        .cloned()
        .collect();
    assert!(upstream_requests.is_empty(), "{upstream_requests:?}");
    let stderr = q.ok(&["fetch", "--offline"]);
    assert!(
        stderr.contains("upstream sources: 0 fetched, 2 already"),
        "{stderr}"
    );

    // A third store with a tampered local copy and no network: refused, naming the copy.
    let r = TestProject::new(&[("base", &recipe(&url, false))], &server, &key.keyring);
    fs_err::copy(p.path("pins.lock"), r.path("pins.lock")).unwrap();
    r.ok(&["fetch"]);
    fs_err::write(src.path().join("acme.sh"), b"#!/bin/sh\necho evil\n").unwrap();
    let bad = TestProject::new(&[("base", &recipe(&url, false))], &server, &key.keyring);
    fs_err::copy(p.path("pins.lock"), bad.path("pins.lock")).unwrap();
    // Debian pins and the git tree from the store of `r`, copied; acme.sh left out.
    let acme_hash = sha256_hex(&acme);
    copy_tree(r.store.path(), bad.store.path(), &acme_hash);
    let stderr = bad.fails(&["fetch", "--offline", "--source-dir", dir]);
    assert!(stderr.contains(&format!("{dir}/acme.sh")), "{stderr}");
    assert!(stderr.contains(&acme_hash), "{stderr}");
    assert!(!bad.blob(&acme_hash).exists());
}

/// Copies a store tree, leaving out the blob `skip`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path, skip: &str) {
    for e in fs_err::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        let ft = e.file_type().unwrap();
        if e.file_name() == skip || e.file_name() == "locks" || e.file_name() == "tmp" {
            continue;
        }
        if ft.is_dir() {
            fs_err::create_dir_all(&dest).unwrap();
            copy_tree(&e.path(), &dest, skip);
        } else if ft.is_file() {
            fs_err::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn malformed_sources_are_refused_naming_file_and_key() {
    for (table, key, says) in [
        (
            "[[sources]]\nkind = \"git\"\nname = \"m\"\nrepo = \"https://x/m\"\ncommit = \"abc\"\n",
            "sources[0].commit",
            "40-digit",
        ),
        (
            "[[sources]]\nkind = \"file\"\nname = \"f\"\nurls = [\"https://x/f\"]\nsha256 = \"xyz\"\n",
            "sources[0].sha256",
            "not a SHA-256",
        ),
        (
            "[[sources]]\nkind = \"file\"\nname = \"f\"\nurls = []\n",
            "sources[0].urls",
            "at least one URL",
        ),
        (
            "[[sources]]\nkind = \"deb\"\nname = \"d\"\nurl = \"https://x/d.deb\"\n\
             [[sources]]\nkind = \"deb\"\nname = \"d\"\nurl = \"https://x/e.deb\"\n",
            "sources[1].name",
            "appears twice",
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(d.path().join("recipes")).unwrap();
        fs_err::write(d.path().join("hermetic.toml"), support::CONFIG).unwrap();
        fs_err::write(d.path().join("recipes/base.toml"), table).unwrap();
        let msg = format!(
            "{:#}",
            anyhow::Error::from(hermetic::recipe::Project::load(d.path()).unwrap_err())
        );
        assert!(
            msg.contains("base.toml") && msg.contains(key) && msg.contains(says),
            "{msg}"
        );
    }
}

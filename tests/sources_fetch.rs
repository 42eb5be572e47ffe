//! Fetching source pins (docs/pins.md, *Source pins*) from a 127.0.0.1 server and from a
//! `--source-dir`: a git tree pin is satisfied by any archive of the tree; a tampered file or
//! a wrong tree hash is refused naming the URL and both hashes, and nothing is stored.

mod support;

use std::io::Write;
use std::path::Path;

use hermetic::http::Http;
use hermetic::sources::fetch::{SourceError, compute_content_hash, fetch_source, stored_path};
use hermetic::sources::pin::SourcePin;
use hermetic::sources::treehash::{tree_hash_archive, tree_hash_dir};
use hermetic::store::Store;
use support::{TestServer, sha256_hex};

const COMMIT: &str = "52295247b56175b48857d38fda6576844f43f7d1";
const FILES: &[(&str, &[u8], u32)] = &[
    ("go.mod", b"module example.com/m\n", 0o644),
    ("main.go", b"package main\nfunc main() {}\n", 0o644),
    ("tools/gen.sh", b"#!/bin/sh\n", 0o755),
];

fn tar_gz(prefix: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in FILES {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("{prefix}{path}"), *data)
            .unwrap();
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&b.into_inner().unwrap()).unwrap();
    e.finish().unwrap()
}

fn zip_reversed() -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (path, data, mode) in FILES.iter().rev() {
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        z.start_file(format!("m-{COMMIT}/{path}"), opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn checkout(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    for (path, data, mode) in FILES {
        let p = dir.join(path);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(&p, data).unwrap();
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    fs_err::create_dir_all(dir.join(".git")).unwrap();
    fs_err::write(dir.join(".git/HEAD"), COMMIT).unwrap();
}

/// The tree hash of FILES, from a checkout on disk.
fn expected_tree() -> String {
    let d = tempfile::tempdir().unwrap();
    checkout(d.path());
    tree_hash_dir(d.path()).unwrap()
}

fn git_pin(server: &TestServer, tree: Option<String>, templates: &[&str]) -> SourcePin {
    SourcePin::Git {
        name: "mustache".into(),
        repo: format!("{}cbroglie/mustache.git", server.url()),
        commit: COMMIT.into(),
        tree_sha256: tree,
        archive_urls: templates.iter().map(|t| t.to_string()).collect(),
    }
}

fn empty_store(store: &Store) -> bool {
    store.blobs().unwrap().is_empty() && store.steps().unwrap().is_empty()
}

#[test]
fn a_git_tree_pin_is_satisfied_by_a_tar_gz_and_by_a_zip() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cbroglie/mustache");
    fs_err::create_dir_all(dir.join("archive")).unwrap();
    fs_err::create_dir_all(dir.join("zipball")).unwrap();
    fs_err::write(
        dir.join(format!("archive/{COMMIT}.tar.gz")),
        tar_gz(&format!("mustache-{COMMIT}/")),
    )
    .unwrap();
    fs_err::write(dir.join(format!("zipball/{COMMIT}.zip")), zip_reversed()).unwrap();
    let server = TestServer::start(root.path());
    let tree = expected_tree();
    let http = Http::new();

    // The default template, `{repo}/archive/{commit}.tar.gz`.
    let s1 = tempfile::tempdir().unwrap();
    let store1 = Store::open(s1.path()).unwrap();
    let pin = git_pin(&server, Some(tree.clone()), &[]);
    let got = fetch_source(&store1, &http, &pin, &[], false).unwrap();
    assert_eq!(tree_hash_archive(&got).unwrap(), tree);
    assert_eq!(stored_path(&store1, &pin), Some(got.clone()));
    // A second fetch is a store hit: no request.
    let before = server.requests();
    fetch_source(&store1, &http, &pin, &[], false).unwrap();
    assert_eq!(server.requests(), before);

    // A zip of the same tree, in another file order, satisfies the same pin.
    let s2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(s2.path()).unwrap();
    let pin = git_pin(
        &server,
        Some(tree.clone()),
        &["{repo}/zipball/{commit}.zip"],
    );
    let got = fetch_source(&store2, &http, &pin, &[], false).unwrap();
    assert!(fs_err::read(&got).unwrap().starts_with(b"PK"));
    assert_eq!(tree_hash_archive(&got).unwrap(), tree);

    // `hermetic lock`'s helper computes the same tree hash for a pin without one.
    let s3 = tempfile::tempdir().unwrap();
    let store3 = Store::open(s3.path()).unwrap();
    let computed = compute_content_hash(&store3, &http, &git_pin(&server, None, &[]), &[]).unwrap();
    assert_eq!(computed, tree);
    assert!(stored_path(&store3, &pin.with_content_hash(computed)).is_some());
}

#[test]
fn a_wrong_tree_hash_is_refused_naming_the_url_and_both_hashes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cbroglie/mustache/archive");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join(format!("{COMMIT}.tar.gz")), tar_gz("m/")).unwrap();
    let server = TestServer::start(root.path());
    let s = tempfile::tempdir().unwrap();
    let store = Store::open(s.path()).unwrap();
    let wrong = "0".repeat(64);
    let pin = git_pin(&server, Some(wrong.clone()), &[]);
    let err = fetch_source(&store, &Http::new(), &pin, &[], false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Unavailable { .. }), "{msg}");
    let url = format!("{}cbroglie/mustache/archive/{COMMIT}.tar.gz", server.url());
    assert!(msg.contains(&url), "{msg}");
    assert!(
        msg.contains(&wrong) && msg.contains(&expected_tree()),
        "{msg}"
    );
    assert!(msg.contains("mustache"), "{msg}");
    // The pin it was held to, and the two ways out: a checked copy, or an image without it.
    assert!(msg.contains(&format!("tree-sha256 {wrong}")), "{msg}");
    assert!(
        msg.contains("`mustache` (a checkout) or `mustache.tar.gz`"),
        "{msg}"
    );
    assert!(msg.contains("--omit mustache"), "{msg}");
    assert!(empty_store(&store), "a refused archive was stored");
}

#[test]
fn a_tampered_file_is_refused_and_nothing_is_stored() {
    let root = tempfile::tempdir().unwrap();
    let good = b"#!/bin/sh\necho acme\n".to_vec();
    let pinned = sha256_hex(&good);
    let mut tampered = good.clone();
    tampered[12] ^= 1;
    fs_err::write(root.path().join("acme.sh"), &tampered).unwrap();
    let server = TestServer::start(root.path());
    let s = tempfile::tempdir().unwrap();
    let store = Store::open(s.path()).unwrap();
    let url = format!("{}acme.sh", server.url());
    for pin in [
        SourcePin::File {
            name: "acme.sh".into(),
            urls: vec![url.clone()],
            sha256: Some(pinned.clone()),
        },
        SourcePin::Deb {
            name: "acme.sh".into(),
            url: url.clone(),
            sha256: Some(pinned.clone()),
            drop_maintainer_scripts: true,
        },
    ] {
        let msg = fetch_source(&store, &Http::new(), &pin, &[], false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&url), "{msg}");
        assert!(msg.contains(&pinned), "{msg}");
        assert!(msg.contains(&sha256_hex(&tampered)), "{msg}");
        assert!(empty_store(&store), "a tampered download was stored");
    }
    // A pin with no declared hash is not fetched at all.
    let before = server.requests();
    let err = fetch_source(
        &store,
        &Http::new(),
        &SourcePin::File {
            name: "acme.sh".into(),
            urls: vec![url],
            sha256: None,
        },
        &[],
        false,
    )
    .unwrap_err();
    assert!(matches!(err, SourceError::NoHash { .. }), "{err}");
    assert_eq!(server.requests(), before);
}

#[test]
fn source_dir_fills_pins_offline_checked_the_same_way() {
    let src = tempfile::tempdir().unwrap();
    // A checkout named like the source, and a file by name.
    checkout(&src.path().join("mustache"));
    let deb = b"!<arch>\nnot really a deb".to_vec();
    fs_err::write(src.path().join("ntpd-rs_1.6.2-1_amd64.deb"), &deb).unwrap();
    let s = tempfile::tempdir().unwrap();
    let store = Store::open(s.path()).unwrap();
    let http = Http::new();
    // No server: URLs point at a closed port, and offline means they are not tried.
    let git = SourcePin::Git {
        name: "mustache".into(),
        repo: "http://127.0.0.1:9/cbroglie/mustache".into(),
        commit: COMMIT.into(),
        tree_sha256: Some(expected_tree()),
        archive_urls: vec![],
    };
    let dirs = vec![src.path().to_path_buf()];
    let got = fetch_source(&store, &http, &git, &dirs, true).unwrap();
    assert_eq!(tree_hash_archive(&got).unwrap(), expected_tree());
    let deb_pin = SourcePin::Deb {
        name: "ntpd-rs".into(),
        url: "http://127.0.0.1:9/ntpd-rs_1.6.2-1_amd64.deb".into(),
        sha256: Some(sha256_hex(&deb)),
        drop_maintainer_scripts: true,
    };
    let got = fetch_source(&store, &http, &deb_pin, &dirs, true).unwrap();
    assert_eq!(fs_err::read(got).unwrap(), deb);

    // A local copy that does not match is refused naming its path and both hashes.
    let s2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(s2.path()).unwrap();
    fs_err::write(src.path().join("mustache/main.go"), b"package evil\n").unwrap();
    let msg = fetch_source(&store2, &http, &git, &dirs, true)
        .unwrap_err()
        .to_string();
    let path = src.path().join("mustache").display().to_string();
    assert!(
        msg.contains(&path) && msg.contains(&expected_tree()),
        "{msg}"
    );
    assert!(msg.contains("tree-sha256 mismatch"), "{msg}");
    assert!(empty_store(&store2));
}

#[test]
fn a_directory_in_source_dir_never_satisfies_a_file_pin() {
    let src = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(src.path().join("acme.sh")).unwrap();
    fs_err::write(src.path().join("acme.sh/x"), b"x").unwrap();
    let s = tempfile::tempdir().unwrap();
    let store = Store::open(s.path()).unwrap();
    let pin = SourcePin::File {
        name: "acme.sh".into(),
        urls: vec!["http://127.0.0.1:9/acme.sh".into()],
        sha256: Some("ab".repeat(32)),
    };
    let err = fetch_source(
        &store,
        &Http::new(),
        &pin,
        &[src.path().to_path_buf()],
        true,
    )
    .unwrap_err();
    let SourceError::Unavailable { attempts, .. } = &err else {
        panic!("{err}");
    };
    assert!(attempts.is_empty(), "{err}");
    assert!(
        err.to_string().contains("no --source-dir holds it"),
        "{err}"
    );
    assert!(empty_store(&store));
}

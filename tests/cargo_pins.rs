//! `[[cargo]]` builds through `hermetic lock`, `lock --check` and `hermetic fetch`, against a
//! synthetic archive and a crate registry served on 127.0.0.1 (`HERMETIC_CRATES_URL`): the
//! crates of the source's Cargo.lock are recorded in pins.lock and fetched by checksum; a
//! crate whose bytes do not match its checksum, another registry, a git dependency no copy of
//! can be had and a tampered source are each refused naming the input (git dependencies
//! that can be had: tests/cargo_git.rs).

mod support;

use std::io::Write;

use support::{TestArchive, TestKey, TestProject, TestServer, sha256_hex, standard_suites};

/// A `.crate`-like tar.gz: every entry under `prefix`.
fn tar_gz(prefix: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("{prefix}{path}"), *data)
            .unwrap();
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&b.into_inner().unwrap()).unwrap();
    e.finish().unwrap()
}

/// The registry crate `itoa 1.0.11` the program depends on.
fn itoa_crate() -> Vec<u8> {
    tar_gz(
        "itoa-1.0.11/",
        &[
            (
                "Cargo.toml",
                b"[package]\nname = \"itoa\"\nversion = \"1.0.11\"\n",
            ),
            ("src/lib.rs", b"pub fn f() {}\n"),
        ],
    )
}

/// The program's source archive, with a Cargo.lock whose extra package text is `extra`.
fn app_source(itoa_checksum: &str, extra: &str) -> Vec<u8> {
    let lock = format!(
        "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"1.0.0\"\ndependencies = [\"itoa\"]\n\n\
         [[package]]\nname = \"itoa\"\nversion = \"1.0.11\"\n\
         source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
         checksum = \"{itoa_checksum}\"\n{extra}"
    );
    tar_gz(
        "app-1.0.0/",
        &[
            (
                "Cargo.toml",
                b"[package]\nname = \"app\"\nversion = \"1.0.0\"\n[dependencies]\nitoa = \"1\"\n",
            ),
            ("Cargo.lock", lock.as_bytes()),
            ("src/main.rs", b"fn main() {}\n"),
        ],
    )
}

fn recipe(url: &str) -> String {
    format!(
        "packages = [\"app\"]\n\
         [[sources]]\nkind = \"file\"\nname = \"app-src\"\nurls = [\"{url}upstream/app-1.0.0.tar.gz\"]\n\
         [[cargo]]\nname = \"app\"\nsource = \"app-src\"\nbuild-packages = [\"tool\"]\n\
         install = {{ \"app\" = \"/usr/bin/app\" }}\n"
    )
}

struct Setup {
    _key: TestKey,
    archive: TestArchive,
    server: TestServer,
    project: TestProject,
}

impl Setup {
    fn new(source: &[u8]) -> Setup {
        let key = TestKey::generate("archive");
        let archive = TestArchive::build(&standard_suites(), &key);
        let up = archive.root.path().join("upstream");
        fs_err::create_dir_all(&up).unwrap();
        fs_err::write(up.join("app-1.0.0.tar.gz"), source).unwrap();
        let crates = archive.root.path().join("crates");
        fs_err::create_dir_all(&crates).unwrap();
        fs_err::write(crates.join("itoa-1.0.11.crate"), itoa_crate()).unwrap();
        let server = TestServer::start(archive.root.path());
        let project = TestProject::new(&[("base", &recipe(&server.url()))], &server, &key.keyring);
        Setup {
            _key: key,
            archive,
            server,
            project,
        }
    }

    fn crates_url(&self) -> String {
        format!("{}crates/{{name}}-{{version}}.crate", self.server.url())
    }

    /// The project's store and its one locked source pin.
    fn store_and_pin(&self) -> (hermetic::store::Store, hermetic::sources::pin::SourcePin) {
        let p = &self.project;
        let store = hermetic::store::Store::open(p.store.path()).unwrap();
        let lock = hermetic::lockfile::Lockfile::read(&p.path("pins.lock"))
            .unwrap()
            .unwrap();
        (store, lock.upstream[0].pin.clone())
    }

    fn fetch(&self) -> (bool, String) {
        let out = self
            .project
            .command(&["fetch"])
            .env("HERMETIC_CRATES_URL", self.crates_url())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn the_crates_of_a_cargo_lock_are_locked_checked_and_fetched_by_checksum() {
    let checksum = sha256_hex(&itoa_crate());
    let s = Setup::new(&app_source(&checksum, ""));
    let p = &s.project;
    p.ok(&["lock"]);
    let lock = p.lock_text();
    let source_sha = sha256_hex(&app_source(&checksum, ""));
    assert!(
        lock.contains(&format!(
            "\n[[cargo]]\nsource = \"app-src\"\ndir = \"\"\nsource-hash = \"{source_sha}\"\ncrates = [\n  {{ name = \"itoa\", version = \"1.0.11\", checksum = \"{checksum}\" }},\n]\n"
        )),
        "{lock}"
    );
    // The toolchain is a closure of its own.
    assert!(lock.contains("cargo-packages = [\"tool\"]"), "{lock}");
    assert!(lock.contains("\"base:cargo\""), "{lock}");
    p.ok(&["lock", "--check"]);

    // lock --check needs the crates recorded for the pinned source.
    let cut = lock.find("\n[[cargo]]").unwrap();
    fs_err::write(p.path("pins.lock"), &lock[..cut + 1]).unwrap();
    let err = p.fails(&["lock", "--check"]);
    assert!(
        err.contains(
            "the crates of source `app-src` (a cargo build of recipe `base`) are not in the lock"
        ),
        "{err}"
    );
    fs_err::write(p.path("pins.lock"), &lock).unwrap();

    let (ok, err) = s.fetch();
    assert!(ok, "{err}");
    assert!(err.contains("crates: 1 fetched, 0 already"), "{err}");
    assert!(p.blob(&checksum).is_file());
    assert!(
        s.server
            .log()
            .iter()
            .any(|l| l.contains("/crates/itoa-1.0.11.crate")),
        "{:?}",
        s.server.log()
    );
    // Offline, everything is there: nothing to fetch.
    let out = p
        .command(&["fetch", "--offline"])
        .env("HERMETIC_CRATES_URL", s.crates_url())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("crates: 0 fetched, 1 already"), "{err}");
}

#[test]
fn a_crate_whose_bytes_do_not_match_its_cargo_lock_checksum_is_refused() {
    let checksum = sha256_hex(&itoa_crate());
    let s = Setup::new(&app_source(&checksum, ""));
    s.project.ok(&["lock"]);
    // The registry now serves other bytes under the locked name and version.
    let other = tar_gz("itoa-1.0.11/", &[("src/lib.rs", b"pub fn evil() {}\n")]);
    fs_err::write(s.archive.path("crates/itoa-1.0.11.crate"), &other).unwrap();
    let (ok, err) = s.fetch();
    assert!(!ok, "{err}");
    assert!(err.contains("crate `itoa 1.0.11`"), "{err}");
    assert!(
        err.contains(&format!("Cargo.lock says {checksum}")),
        "{err}"
    );
    assert!(err.contains(&sha256_hex(&other)), "{err}");
    assert!(!s.project.blob(&checksum).exists());
    assert!(!s.project.blob(&sha256_hex(&other)).exists());
}

#[test]
fn another_registry_is_refused_naming_the_crate() {
    let checksum = sha256_hex(&itoa_crate());
    let extra = "\n[[package]]\nname = \"otherdep\"\nversion = \"0.1.0\"\n\
                 source = \"registry+https://example.invalid/index\"\n\
                 checksum = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n";
    let s = Setup::new(&app_source(&checksum, extra));
    let err = s.project.fails(&["lock"]);
    assert!(err.contains("package `otherdep 0.1.0`"), "{err}");
    assert!(
        err.contains("registry+https://example.invalid/index"),
        "{err}"
    );
}

#[test]
fn a_git_dependency_that_cannot_be_had_names_the_repository_commit_and_urls() {
    let checksum = sha256_hex(&itoa_crate());
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let extra = format!(
        "\n[[package]]\nname = \"gitdep\"\nversion = \"0.1.0\"\n\
         source = \"git+https://example.invalid/gitdep.git?branch=main#{commit}\"\n"
    );
    let s = Setup::new(&app_source(&checksum, &extra));
    let err = s.project.fails(&["lock"]);
    assert!(
        err.contains(&format!(
            "git source `gitdep` (https://example.invalid/gitdep.git at {commit})"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "https://example.invalid/gitdep/archive/{commit}.tar.gz"
        )),
        "{err}"
    );
    assert!(err.contains("--source-dir DIR"), "{err}");
    assert!(!s.project.lock_text().contains("[[cargo]]"));
}

#[test]
fn a_tampered_source_archive_is_refused_naming_the_source() {
    let checksum = sha256_hex(&itoa_crate());
    let good = app_source(&checksum, "");
    let s = Setup::new(&good);
    let p = &s.project;
    p.ok(&["lock"]);
    let good_sha = sha256_hex(&good);

    // Upstream replaces the archive: a fresh store cannot get the pinned one.
    let tampered = app_source(&checksum, "\n# changed\n");
    fs_err::write(s.archive.path("upstream/app-1.0.0.tar.gz"), &tampered).unwrap();
    let blob = p.blob(&good_sha);
    fs_err::remove_file(&blob).unwrap();
    let (ok, err) = s.fetch();
    assert!(!ok, "{err}");
    assert!(err.contains("file source `app-src`"), "{err}");
    assert!(err.contains("upstream/app-1.0.0.tar.gz"), "{err}");
    assert!(err.contains(&sha256_hex(&tampered)), "{err}");
    assert!(!blob.exists());

    // A stored copy changed behind hermetic's back is refused before it is unpacked.
    fs_err::write(s.archive.path("upstream/app-1.0.0.tar.gz"), &good).unwrap();
    let (ok, err) = s.fetch();
    assert!(ok, "{err}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs_err::write(&blob, &tampered).unwrap();
    let (store, pin) = s.store_and_pin();
    let pin = &pin;
    let dest = tempfile::tempdir().unwrap();
    let err = hermetic::sources::cargo::unpack_source(&store, pin, &dest.path().join("src"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("file source `app-src`"), "{err}");
    assert!(err.contains(&good_sha), "{err}");
    assert!(err.contains(&sha256_hex(&tampered)), "{err}");
    assert!(!dest.path().join("src").exists());
}

#[test]
fn a_source_tree_is_unpacked_without_its_top_directory_and_its_crates_read() {
    let checksum = sha256_hex(&itoa_crate());
    let s = Setup::new(&app_source(&checksum, ""));
    let p = &s.project;
    p.ok(&["lock"]);
    let (store, pin) = s.store_and_pin();
    let pin = &pin;
    let dest = tempfile::tempdir().unwrap();
    let tree = dest.path().join("src");
    hermetic::sources::cargo::unpack_source(&store, pin, &tree).unwrap();
    assert!(tree.join("Cargo.toml").is_file());
    assert!(tree.join("src/main.rs").is_file());
    let crates = hermetic::sources::cargo::crates_of_tree(pin, &tree, "").unwrap();
    assert_eq!(crates.len(), 1);
    assert_eq!(crates[0].checksum, checksum);
    let err = hermetic::sources::cargo::crates_of_tree(pin, &tree, "src")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no Cargo.lock at `src/Cargo.lock`"), "{err}");
}

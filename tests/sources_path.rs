//! `path` sources (a directory of the project, issue 15) through `hermetic lock` and
//! `lock --check`, on a synthetic project served from a local archive on 127.0.0.1:
//! clones made by real git under umask 002 and 022 pin the same tree hash (the one a
//! `git archive` of the directory has); untracked, ignored and locally re-moded files do not
//! change it; a changed tracked file makes `lock --check` fail naming the source; `..` and a
//! non-directory are refused. Outside git, every file but `target/` is part of the source.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use support::{
    TestArchive, TestKey, TestProject, TestServer, clone_under_umask, git_sh, standard_suites,
};

const CARGO_LOCK: &str = "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"1.0.0\"\n";

fn recipe(path: &str) -> String {
    format!(
        "packages = [\"app\"]\n\
         [[sources]]\nkind = \"path\"\nname = \"app-src\"\npath = \"{path}\"\n\
         [[cargo]]\nname = \"app\"\nsource = \"app-src\"\nbuild-packages = [\"tool\"]\n\
         install = {{ \"app\" = \"/usr/bin/app\" }}\n"
    )
}

struct Setup {
    _key: TestKey,
    _archive: TestArchive,
    _server: TestServer,
    project: TestProject,
}

/// A project whose recipe `base` builds `programs/app` (a path source); the program holds a
/// Cargo.toml, a Cargo.lock, a source file and an executable script.
fn setup(path: &str) -> Setup {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let project = TestProject::new(&[("base", &recipe(path))], &server, &key.keyring);
    let app = project.path("programs/app");
    fs_err::create_dir_all(app.join("src")).unwrap();
    fs_err::write(
        app.join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    fs_err::write(app.join("Cargo.lock"), CARGO_LOCK).unwrap();
    fs_err::write(app.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs_err::write(app.join("run.sh"), "#!/bin/sh\nexec app\n").unwrap();
    fs_err::set_permissions(app.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    fs_err::write(app.join(".gitignore"), "/target\n").unwrap();
    Setup {
        _key: key,
        _archive: archive,
        _server: server,
        project,
    }
}

/// The `tree-sha256` pins.lock records for the path source, from the lock at `dir`.
fn path_pin(dir: &Path) -> String {
    let lock = hermetic::lockfile::Lockfile::read(&dir.join("pins.lock"))
        .unwrap()
        .unwrap();
    let u = lock
        .upstream
        .iter()
        .find(|u| u.pin.name() == "app-src")
        .expect("the path source is in the lock");
    assert!(
        matches!(u.pin, hermetic::sources::pin::SourcePin::Path { .. }),
        "{:?}",
        u.pin
    );
    u.pin.content_hash().expect("a tree hash").to_string()
}

fn run_at(p: &TestProject, dir: &Path, store: &Path, args: &[&str]) -> (bool, String) {
    let out = p.command_at(dir, store, args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn clones_under_umask_002_and_022_pin_the_same_tree_and_only_tracked_files_count() {
    let s = setup("programs/app");
    let p = &s.project;
    git_sh(
        p.dir.path(),
        "git init -q . && git add -A && git commit -q -m project",
    );
    let scratch = tempfile::tempdir().unwrap();
    let loose = clone_under_umask(p.dir.path(), "002", &scratch.path().join("a"));
    let strict = clone_under_umask(p.dir.path(), "022", &scratch.path().join("b"));
    let mode = |d: &Path| fs_err::metadata(d.join("programs/app/Cargo.toml")).unwrap();
    assert_eq!(mode(&loose).permissions().mode() & 0o777, 0o664);
    assert_eq!(mode(&strict).permissions().mode() & 0o777, 0o644);

    let (store_a, store_b) = (
        scratch.path().join("store-a"),
        scratch.path().join("store-b"),
    );
    for (dir, store) in [(&loose, &store_a), (&strict, &store_b)] {
        let (ok, out) = run_at(p, dir, store, &["lock"]);
        assert!(ok, "{out}");
    }
    let pin = path_pin(&loose);
    assert_eq!(pin, path_pin(&strict), "the pin depends on the umask");
    // The same hash as git's own archive of the directory (the `git` source's pin).
    let archive = scratch.path().join("app.tar");
    git_sh(
        &loose,
        &format!(
            "git archive --format=tar -o {} HEAD:programs/app",
            archive.display()
        ),
    );
    assert_eq!(
        hermetic::sources::treehash::tree_hash_archive(&archive).unwrap(),
        pin
    );
    // The crates of its Cargo.lock are recorded for that hash.
    let lock = fs_err::read_to_string(loose.join("pins.lock")).unwrap();
    assert!(
        lock.contains(&format!(
            "[[cargo]]\nsource = \"app-src\"\ndir = \"\"\nsource-hash = \"{pin}\""
        )),
        "{lock}"
    );

    // What git does not track is not part of the source, nor a mode changed in the checkout
    // only (git's index still says 100644).
    let app = loose.join("programs/app");
    fs_err::write(app.join("notes.txt"), "untracked\n").unwrap();
    fs_err::create_dir_all(app.join("target/release")).unwrap();
    fs_err::write(app.join("target/release/app"), "ignored\n").unwrap();
    fs_err::set_permissions(
        app.join("Cargo.toml"),
        std::fs::Permissions::from_mode(0o775),
    )
    .unwrap();
    let (ok, out) = run_at(p, &loose, &store_a, &["lock", "--check"]);
    assert!(ok, "{out}");
    let (ok, out) = run_at(p, &loose, &store_a, &["lock"]);
    assert!(ok, "{out}");
    assert_eq!(path_pin(&loose), pin);

    // A changed tracked file: lock --check names the source; `lock` pins the new content.
    fs_err::write(app.join("src/main.rs"), "fn main() { println!(\"x\"); }\n").unwrap();
    let (ok, out) = run_at(p, &loose, &store_a, &["lock", "--check"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("path source `app-src` (programs/app) changed since it was locked"),
        "{out}"
    );
    // Planning a build refuses it too: the step key, made from the pin, would name a build
    // (perhaps cached) of other files.
    let (ok, out) = run_at(p, &loose, &store_a, &["plan", "base"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("pins.lock does not match the recipes (path source `app-src` (programs/app) changed since it was locked"),
        "{out}"
    );
    let (ok, out) = run_at(p, &loose, &store_a, &["lock"]);
    assert!(ok, "{out}");
    let changed = path_pin(&loose);
    assert_ne!(changed, pin);
    let (ok, out) = run_at(p, &loose, &store_a, &["lock", "--check"]);
    assert!(ok, "{out}");
    let lock = fs_err::read_to_string(loose.join("pins.lock")).unwrap();
    assert!(
        lock.contains(&format!("source-hash = \"{changed}\"")),
        "the crates were not locked again for the new content:\n{lock}"
    );
}

#[test]
fn outside_git_every_file_but_target_is_part_of_the_source() {
    let s = setup("programs/app");
    let p = &s.project;
    p.ok(&["lock"]);
    let pin = path_pin(p.dir.path());
    // Nothing to download for it, and no copy in the store.
    let err = p.ok(&["fetch"]);
    assert!(!err.contains("app-src"), "{err}");
    assert!(
        !p.store.path().join("v1/steps").exists() || {
            let names: Vec<String> = fs_err::read_dir(p.store.path().join("v1/steps"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            !names.iter().any(|n| n.contains(&pin))
        }
    );
    let app = p.path("programs/app");
    fs_err::create_dir_all(app.join("target/debug")).unwrap();
    fs_err::write(app.join("target/debug/app"), "build output\n").unwrap();
    p.ok(&["lock", "--check"]);
    p.ok(&["lock"]);
    assert_eq!(path_pin(p.dir.path()), pin);
    // Without git there is no index: a new file is part of the source.
    fs_err::write(app.join("notes.txt"), "new\n").unwrap();
    let err = p.fails(&["lock", "--check"]);
    assert!(
        err.contains("path source `app-src` (programs/app) changed since it was locked"),
        "{err}"
    );
}

#[test]
fn a_path_outside_the_project_or_not_a_directory_is_refused() {
    for (path, want) in [
        (
            "../app",
            "`../app` must be relative to the project, without `..`",
        ),
        (
            "programs/../../app",
            "must be relative to the project, without `..`",
        ),
        ("/etc", "must be relative to the project, without `..`"),
        ("programs/app/Cargo.toml", "is not a directory"),
        ("programs/none", "is not a directory"),
    ] {
        let s = setup(path);
        let err = s.project.fails(&["lock"]);
        assert!(err.contains("sources[0].path"), "{path}: {err}");
        assert!(err.contains(want), "{path}: {err}");
    }
}

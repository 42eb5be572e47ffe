//! Git packages of a `Cargo.lock`: a local git repository `twocrates` holding two crates
//! (`alpha`, and `beta` depending on it by path), a program depending on `beta` by
//! `git = "file://…", rev = "…"` whose Cargo.lock real cargo writes (from the local
//! repository, no network). `hermetic lock --source-dir` pins the repository's tree at the
//! locked commit; `hermetic fetch` of a fresh store takes it from `--source-dir` checked
//! against that pin, and refuses a changed copy naming the repository, commit and pin; the
//! vendor directory and cargo configuration hermetic writes let real cargo build the
//! program `--frozen --offline` with an empty `CARGO_HOME`, and the binary runs the git
//! crates' code. `hermetic build` then builds it in the real sandbox, its toolchain tree made
//! of the host's own Rust toolchain and C linker (hard links where possible), as no Debian
//! mirror is used here.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{TestArchive, TestKey, TestProject, TestServer, git_sh, standard_suites};

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_TARGET_DIR");
    c
}

fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The repository `<dir>/twocrates`, one commit: a workspace whose `alpha` takes its
/// version from `[workspace.package]` and whose `beta` depends on `alpha` by path. Gives the
/// repository and its commit.
fn make_repo(dir: &Path) -> (PathBuf, String) {
    let repo = dir.join("twocrates");
    let files: &[(&str, &str)] = &[
        (
            "Cargo.toml",
            "[workspace]\nmembers = [\"alpha\", \"beta\"]\nresolver = \"2\"\n\n\
             [workspace.package]\nversion = \"0.3.0\"\n",
        ),
        (
            "alpha/Cargo.toml",
            "[package]\nname = \"alpha\"\nversion.workspace = true\nedition = \"2021\"\n",
        ),
        (
            "alpha/src/lib.rs",
            "pub fn word() -> &'static str { \"from-alpha\" }\n",
        ),
        (
            "beta/Cargo.toml",
            "[package]\nname = \"beta\"\nversion = \"0.2.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nalpha = { path = \"../alpha\", version = \"0.3.0\" }\n",
        ),
        (
            "beta/src/lib.rs",
            "pub fn greet() -> String { format!(\"beta says {}\", alpha::word()) }\n",
        ),
    ];
    for (path, text) in files {
        let p = repo.join(path);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, text).unwrap();
    }
    git_sh(
        &repo,
        "git init -q && git add -A && git commit -q -m one && git rev-parse HEAD > ../commit",
    );
    let commit = fs_err::read_to_string(dir.join("commit"))
        .unwrap()
        .trim()
        .to_string();
    (repo, commit)
}

/// The program `app` depending on `beta` of the repository at `rev`, with the Cargo.lock
/// real cargo writes for it (fetching the local repository into a scratch CARGO_HOME).
fn make_app(dir: &Path, repo: &Path, rev: &str) -> PathBuf {
    let app = dir.join("app-1.0.0");
    fs_err::create_dir_all(app.join("src")).unwrap();
    fs_err::write(
        app.join("Cargo.toml"),
        format!(
            "[package]\nname = \"app\"\nversion = \"1.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nbeta = {{ git = \"file://{}\", rev = \"{rev}\" }}\n",
            repo.display()
        ),
    )
    .unwrap();
    fs_err::write(
        app.join("src/main.rs"),
        "fn main() { println!(\"{}\", beta::greet()); }\n",
    )
    .unwrap();
    let home = dir.join("scratch-cargo-home");
    run_ok(
        cargo()
            .arg("generate-lockfile")
            .current_dir(&app)
            .env("CARGO_HOME", &home),
    );
    app
}

/// A tar.gz of `dir` under `prefix/`.
fn tar_gz_dir(dir: &Path, prefix: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(prefix, dir).unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&b.into_inner().unwrap()).unwrap();
    e.finish().unwrap()
}

struct Setup {
    _key: TestKey,
    _archive: TestArchive,
    _server: TestServer,
    project: TestProject,
    work: tempfile::TempDir,
    repo: PathBuf,
    commit: String,
    app: PathBuf,
}

fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let (repo, commit) = make_repo(work.path());
    let app = make_app(work.path(), &repo, &commit[..7]);
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let up = archive.root.path().join("upstream");
    fs_err::create_dir_all(&up).unwrap();
    fs_err::write(up.join("app-1.0.0.tar.gz"), tar_gz_dir(&app, "app-1.0.0")).unwrap();
    let server = TestServer::start(archive.root.path());
    let recipe = format!(
        "format = \"tar\"\npackages = [\"app\"]\n\
         [[sources]]\nkind = \"file\"\nname = \"app-src\"\nurls = [\"{}upstream/app-1.0.0.tar.gz\"]\n\
         [[cargo]]\nname = \"app\"\nsource = \"app-src\"\nbuild-packages = [\"tool\"]\n\
         install = {{ \"app\" = \"/usr/bin/app\" }}\n",
        server.url()
    );
    let project = TestProject::new(&[("base", &recipe)], &server, &key.keyring);
    Setup {
        _key: key,
        _archive: archive,
        _server: server,
        project,
        work,
        repo,
        commit,
        app,
    }
}

/// The tree hash of the repository at `commit`, from `git archive` (not from hermetic's own
/// packing of a checkout).
fn git_archive_tree_hash(repo: &Path, commit: &str, scratch: &Path) -> String {
    let tar = scratch.join("git-archive.tar");
    git_sh(
        repo,
        &format!("git archive --format=tar {commit} > {}", tar.display()),
    );
    hermetic::sources::treehash::tree_hash_archive(&tar).unwrap()
}

/// `hermetic lock --source-dir DIR`, DIR holding a clone of the repository named like it;
/// gives DIR.
fn lock_with_a_clone(s: &Setup) -> PathBuf {
    let supply = s.work.path().join("supply");
    fs_err::create_dir_all(&supply).unwrap();
    git_sh(
        &supply,
        &format!("git clone -q {} twocrates", s.repo.display()),
    );
    s.project
        .ok(&["lock", "--source-dir", &supply.display().to_string()]);
    supply
}

/// `hermetic fetch --source-dir supply` of the project into `store`: (success, stderr).
fn fetch_into(p: &TestProject, store: &Path, supply: &Path) -> (bool, String) {
    let out = p
        .command_at(
            p.dir.path(),
            store,
            &["fetch", "--source-dir", &supply.display().to_string()],
        )
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_git_dependency_is_pinned_fetched_checked_and_built_offline() {
    let s = setup();
    let p = &s.project;
    let lockfile = fs_err::read_to_string(s.app.join("Cargo.lock")).unwrap();
    let source = format!("git+file://{}?rev={}", s.repo.display(), &s.commit[..7]);
    assert!(
        lockfile.contains(&format!("source = \"{source}#{}\"", s.commit)),
        "{lockfile}"
    );

    // Lock: the repository is supplied as a checkout named like it.
    let supply = lock_with_a_clone(&s);
    let tree = git_archive_tree_hash(&s.repo, &s.commit, s.work.path());
    let lock = p.lock_text();
    for (name, version) in [("alpha", "0.3.0"), ("beta", "0.2.0")] {
        let entry = format!(
            "  {{ name = \"{name}\", version = \"{version}\", source = \"{source}\", commit = \"{}\", tree-sha256 = \"{tree}\" }},\n",
            s.commit
        );
        assert!(lock.contains(&entry), "{entry} not in\n{lock}");
    }
    p.ok(&["lock", "--check"]);
    // Locking again needs no copy: the tree hash is kept.
    p.ok(&["lock"]);
    assert_eq!(p.lock_text(), lock);

    // A fresh store gets the tree from --source-dir, checked against the pin.
    let fresh = tempfile::tempdir().unwrap();
    let (ok, err) = fetch_into(p, fresh.path(), &supply);
    assert!(ok, "{err}");
    assert!(
        err.contains("git repositories of crates: 1 fetched, 0 already"),
        "{err}"
    );

    // A changed copy is refused, naming the repository, commit, pin and the copy tried;
    // nothing is stored.
    fs_err::write(
        supply.join("twocrates/alpha/src/lib.rs"),
        "pub fn word() -> &'static str { \"tampered\" }\n",
    )
    .unwrap();
    let other = tempfile::tempdir().unwrap();
    let (ok, err) = fetch_into(p, other.path(), &supply);
    assert!(!ok, "{err}");
    assert!(err.contains("git source `twocrates`"), "{err}");
    assert!(
        err.contains(&format!("file://{} at {}", s.repo.display(), s.commit)),
        "{err}"
    );
    assert!(err.contains(&format!("tree-sha256 {tree}")), "{err}");
    assert!(
        err.contains(&format!(
            "{}: tree-sha256 mismatch",
            supply.join("twocrates").display()
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: supply a copy with `--source-dir DIR`"),
        "{err}"
    );
    let store = hermetic::store::Store::open(other.path()).unwrap();
    assert!(!store.has_step(&hermetic::sources::fetch::git_step_key(&tree)));

    // The build's vendor directory and configuration, from the first store: real cargo
    // builds the program with them and nothing else.
    let store = hermetic::store::Store::open(p.store.path()).unwrap();
    let locked = hermetic::lockfile::Lockfile::read(&p.path("pins.lock"))
        .unwrap()
        .unwrap();
    let git = hermetic::sources::cargo::locked_git_of(&locked);
    assert_eq!(git.len(), 2);
    let build = tempfile::tempdir().unwrap();
    let vendor = build.path().join("vendor");
    hermetic::sources::cargo::write_vendor_dir(&store, &[], &vendor).unwrap();
    let dirs = hermetic::sources::cargo::write_git_vendor(
        &store,
        &git,
        &vendor,
        &vendor,
        &build.path().join("trees"),
    )
    .unwrap();
    assert_eq!(dirs.len(), 1);
    assert_eq!(dirs[0].0, source);
    let checksum: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(dirs[0].1.join("alpha-0.3.0/.cargo-checksum.json")).unwrap(),
    )
    .unwrap();
    assert!(checksum["package"].is_null(), "{checksum}");
    assert!(checksum["files"]["src/lib.rs"].is_string(), "{checksum}");
    let home = build.path().join("cargo-home");
    fs_err::create_dir_all(&home).unwrap();
    let config = hermetic::sources::cargo::vendor_config_git(&vendor, &dirs);
    fs_err::write(home.join("config.toml"), &config).unwrap();
    let src = build.path().join("src");
    let pin = locked.upstream[0].pin.clone();
    hermetic::sources::cargo::unpack_source(&store, &pin, &src).unwrap();
    // The repository is gone: only the vendored copy can serve the build.
    fs_err::remove_dir_all(&s.repo).unwrap();
    let out = cargo()
        .args(["build", "--frozen", "--offline", "--quiet"])
        .current_dir(&src)
        .env("CARGO_HOME", &home)
        .env("CARGO_TARGET_DIR", build.path().join("target"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo build --frozen --offline failed with\n{config}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ran = run_ok(&mut Command::new(build.path().join("target/debug/app")));
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "beta says from-alpha\n"
    );
    assert!(!home.join("git").exists(), "cargo fetched the repository");

    // A vendored git file changed after hermetic wrote it is caught by cargo's own check.
    fs_err::write(
        dirs[0].1.join("alpha-0.3.0/src/lib.rs"),
        "pub fn word() -> &'static str { \"tampered\" }\n",
    )
    .unwrap();
    let out = cargo()
        .args(["build", "--frozen", "--offline", "--quiet"])
        .current_dir(&src)
        .env("CARGO_HOME", &home)
        .env("CARGO_TARGET_DIR", build.path().join("target2"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a tampered vendored git crate was built"
    );
}

#[test]
fn a_git_dependency_without_a_copy_is_an_error_naming_repository_and_urls() {
    let s = setup();
    let err = s.project.fails(&["lock"]);
    assert!(err.contains("git source `twocrates`"), "{err}");
    assert!(err.contains(&s.commit), "{err}");
    assert!(
        err.contains(&format!(
            "file://{}/archive/{}.tar.gz",
            s.repo.display(),
            s.commit
        )),
        "{err}"
    );
    assert!(!s.project.lock_text().contains("tree-sha256"));
}

/// A toolchain tree of the host's own: its Rust toolchain (`rustc --print sysroot`) at
/// `/opt/rust` with `cargo` and `rustc` linked from `/usr/local/bin`, and the host's
/// `/usr/bin`, `/usr/lib/x86_64-linux-gnu`, `/usr/lib/gcc`, `/usr/libexec`, `/usr/lib64` and
/// `/etc/alternatives` for the C linker cargo runs. Hard links where the file system allows
/// (nothing is copied), else copies.
fn host_rust_tools_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let sysroot =
        String::from_utf8(run_ok(Command::new("rustc").args(["--print", "sysroot"])).stdout)
            .unwrap();
    let sysroot = sysroot.trim();
    for d in ["usr/lib", "usr/local/bin", "opt/rust", "etc", "tmp", "work"] {
        fs_err::create_dir_all(t.join(d)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, t.join(link)).unwrap();
    }
    let copy = |from: &str, to: &Path| {
        if !Path::new(from).exists() {
            return;
        }
        let linked = Command::new("cp")
            .arg("-al")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        if !linked.success() {
            let _ = fs_err::remove_dir_all(to.join(Path::new(from).file_name().unwrap()));
            assert!(
                Command::new("cp")
                    .arg("-a")
                    .arg(from)
                    .arg(to)
                    .status()
                    .unwrap()
                    .success()
            );
        }
    };
    copy("/usr/bin", &t.join("usr"));
    copy("/usr/lib64", &t.join("usr"));
    copy("/usr/libexec", &t.join("usr"));
    copy("/usr/lib/x86_64-linux-gnu", &t.join("usr/lib"));
    copy("/usr/lib/gcc", &t.join("usr/lib"));
    copy("/etc/alternatives", &t.join("etc"));
    copy(&format!("{sysroot}/bin"), &t.join("opt/rust"));
    copy(&format!("{sysroot}/lib"), &t.join("opt/rust"));
    for tool in ["cargo", "rustc"] {
        std::os::unix::fs::symlink(
            format!("/opt/rust/bin/{tool}"),
            t.join("usr/local/bin").join(tool),
        )
        .unwrap();
    }
    dir
}

#[test]
fn the_program_is_built_in_the_sandbox_from_the_vendored_git_crates() {
    let s = setup();
    let p = &s.project;
    let supply = lock_with_a_clone(&s);
    // The repository is gone: only the pinned tree in the store can serve the build.
    fs_err::remove_dir_all(&s.repo).unwrap();
    fs_err::remove_dir_all(&supply).unwrap();
    let mini = support::host_tools_tree(&[]);
    fs_err::write(mini.path().join("usr/lib/os-release"), "ID=debian\n").unwrap();
    p.publish_fake_trees("base", mini.path());
    let rust = host_rust_tools_tree();
    let (_, key) = p
        .plan("base")
        .into_iter()
        .find(|(step, _)| step == "base/cargo-tools")
        .expect("a cargo-tools step");
    let entry = p.step_entry(&key);
    fs_err::create_dir_all(&entry).unwrap();
    fs_err::rename(rust.path(), entry.join("tree")).unwrap_or_else(|_| {
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(rust.path())
                .arg(entry.join("tree"))
                .status()
                .unwrap()
                .success()
        )
    });
    fs_err::write(entry.join(".hermetic-complete"), "").unwrap();

    p.ok(&["fetch"]);
    // Without the repository's tree, the build names it and the cargo build's source to
    // omit; `--omit-unavailable` leaves that build out.
    let locked = hermetic::lockfile::Lockfile::read(&p.path("pins.lock"))
        .unwrap()
        .unwrap();
    let tree = &locked.cargo[0].git[0].tree_sha256;
    let tree_entry = p.step_entry(&hermetic::sources::fetch::git_step_key(tree));
    let aside = s.work.path().join("tree-aside");
    fs_err::rename(&tree_entry, &aside).unwrap();
    let err = p.fails(&[
        "build",
        "base",
        "--output",
        &s.work.path().join("o1").display().to_string(),
    ]);
    assert!(err.contains("git source `twocrates`"), "{err}");
    assert!(err.contains("--omit app-src"), "{err}");
    let o2 = s.work.path().join("o2");
    let err = p.ok(&[
        "build",
        "base",
        "--omit-unavailable",
        "--output",
        &o2.display().to_string(),
    ]);
    assert!(err.contains("app-src"), "{err}");
    let listing = run_ok(Command::new("tar").arg("-tf").arg(o2.join("base.tar")));
    assert!(
        !String::from_utf8_lossy(&listing.stdout).contains("./usr/bin/app\n"),
        "the omitted program is in the image"
    );
    fs_err::rename(&aside, &tree_entry).unwrap();

    let out = s.work.path().join("out");
    let out_arg = out.display().to_string();
    p.ok(&["build", "base", "--output", &out_arg]);
    let bin = s.work.path().join("app-built");
    let extracted = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(out.join("base.tar"))
            .arg("./usr/bin/app"),
    );
    fs_err::write(&bin, &extracted.stdout).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ran = run_ok(&mut Command::new(&bin));
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "beta says from-alpha\n"
    );
    // The vendored crates' paths were remapped like the registry crates'.
    let text = String::from_utf8_lossy(&extracted.stdout);
    assert!(
        !text.contains("/work/vendor"),
        "the binary holds /work/vendor"
    );
}

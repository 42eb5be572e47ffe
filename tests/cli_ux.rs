//! The command line as a script or a shell user meets it: exit codes per kind of failure,
//! the project found from a subdirectory, completions, the manual page and `--version`.

mod support;

use std::process::Command;

use support::{TestArchive, TestKey, TestProject, TestServer, standard_suites};

const BASE: &str = "packages = [\"app\"]\n";

fn hermetic() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermetic"));
    cmd.env_remove("HERMETIC_STORE");
    cmd
}

fn code(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_tell_failures_apart() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let p = TestProject::new(&[("base", BASE)], &server, &key.keyring);

    // 2: a bad command line.
    let (c, err) = code(p.command(&["lock", "--no-such-flag"]).arg("x"));
    assert_eq!(c, 2, "{err}");

    // 3: no lock yet, then a lock that no longer matches the recipes.
    let (c, err) = code(&mut p.command(&["build", "base"]));
    assert_eq!(c, 3, "{err}");
    p.ok(&["lock"]);
    let (c, err) = code(&mut p.command(&["lock", "--check"]));
    assert_eq!(c, 0, "{err}");
    fs_err::write(
        p.path("recipes/base.toml"),
        "packages = [\"app\", \"tool\"]\n",
    )
    .unwrap();
    let (c, err) = code(&mut p.command(&["lock", "--check"]));
    assert_eq!(c, 3, "{err}");
    fs_err::write(p.path("recipes/base.toml"), BASE).unwrap();

    // 3 also for a build from a lock missing a pin the recipes need (the block of `app`
    // deleted): the image would silently lack the package.
    let full = p.lock_text();
    let at = full.find("name = \"app\"").unwrap();
    let start = full[..at].rfind("[[package]]").unwrap();
    let end = at + full[at..].find("\n[[").unwrap() + 1;
    fs_err::write(
        p.path("pins.lock"),
        format!("{}{}", &full[..start], &full[end..]),
    )
    .unwrap();
    let (c, err) = code(&mut p.command(&["build", "--offline", "base"]));
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("requested package `app` is not pinned"),
        "{err}"
    );
    fs_err::write(p.path("pins.lock"), &full).unwrap();

    // 6: the pins are not in the store and --offline forbids fetching them.
    let (c, err) = code(&mut p.command(&["fetch", "--offline"]));
    assert_eq!(c, 6, "{err}");
    assert!(err.contains("--offline"), "{err}");

    // 5: no source of the pins can be reached (the mirror's port is closed).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (c, err) = code(
        p.command(&["fetch"])
            .env("HERMETIC_MIRRORS", format!("http://127.0.0.1:{closed}/")),
    );
    assert_eq!(c, 5, "{err}");

    // 0 again once the network is back; 1 for a failure of no particular kind.
    let (c, err) = code(&mut p.command(&["fetch"]));
    assert_eq!(c, 0, "{err}");
    let (c, err) = code(&mut p.command(&["build", "no-such-recipe"]));
    assert_eq!(c, 1, "{err}");
    assert!(!err.contains("did you mean"), "{err}");
    // A typo gets the close name suggested.
    let (c, err) = code(&mut p.command(&["build", "bsae"]));
    assert_eq!(c, 1, "{err}");
    assert!(
        err.contains("hint: did you mean `base`? the recipes are: base"),
        "{err}"
    );
}

#[test]
fn the_project_is_found_from_a_subdirectory() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let p = TestProject::new(&[("base", BASE)], &server, &key.keyring);
    p.ok(&["lock"]);
    let sub = p.path("recipes");
    // The same command as TestProject's, without -C, run inside recipes/.
    let cmd = p.command(&["lock", "--check"]);
    let args: Vec<_> = cmd.get_args().skip(2).map(|a| a.to_owned()).collect();
    let mut bare = hermetic();
    bare.args(&args).current_dir(&sub);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => bare.env(k, v),
            None => bare.env_remove(k),
        };
    }
    let (c, err) = code(&mut bare);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("../pins.lock matches the recipes"), "{err}");

    // Outside any project the error says how to name one.
    let outside = tempfile::tempdir().unwrap();
    let (c, err) = code(
        hermetic()
            .args(["plan", "base"])
            .current_dir(outside.path()),
    );
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("cannot read ./hermetic.toml"), "{err}");
    assert!(err.contains("hint: run hermetic in a project"), "{err}");
}

#[test]
fn completions_man_page_and_version() {
    for shell in ["bash", "zsh", "fish"] {
        let out = hermetic().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        // Every command is offered.
        for sub in ["lock", "fetch", "build", "boot", "plan", "cache", "measure"] {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    // bash accepts the script.
    let script = hermetic()
        .args(["completions", "bash"])
        .output()
        .unwrap()
        .stdout;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hermetic.bash");
    fs_err::write(&file, &script).unwrap();
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p hermetic", file.display()))
        .status()
        .unwrap();
    assert!(status.success());

    let man = hermetic().arg("man").output().unwrap();
    assert!(man.status.success());
    let text = String::from_utf8(man.stdout).unwrap();
    assert!(
        text.starts_with(".ie") || text.contains(".TH hermetic"),
        "{text}"
    );
    assert!(
        text.contains("Exit codes"),
        "the manual lists the exit codes"
    );

    let version = hermetic().arg("--version").output().unwrap();
    let text = String::from_utf8(version.stdout).unwrap();
    assert!(text.starts_with("hermetic 0."), "{text}");
    assert!(text.contains("(commit "), "{text}");
    let commit = text
        .split("(commit ")
        .nth(1)
        .unwrap()
        .trim_end()
        .trim_end_matches(')');
    let rev = commit.trim_end_matches("-dirty");
    assert!(
        rev == "unknown" || (rev.len() == 12 && rev.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn build_fetches_missing_pins_first_unless_offline() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let p = TestProject::new(&[("base", BASE)], &server, &key.keyring);
    p.ok(&["lock"]);
    let libc = &archive.debs["libc6"];

    // --offline: nothing is downloaded, and the exit code says the store lacks pins.
    let (c, err) = code(&mut p.command(&["build", "--offline", "base"]));
    assert_eq!(c, 6, "{err}");
    assert!(err.contains("--offline"), "{err}");
    assert!(!p.blob(&libc.sha256).exists());
    let before = server.requests();

    // Without it, the pins come first. (The synthetic packages hold no shell, so the build
    // itself may then fail; what matters here is that it got past the missing pins.)
    let (c, err) = code(&mut p.command(&["build", "base"]));
    assert_ne!(c, 6, "{err}");
    assert!(!err.contains("run `hermetic fetch` first"), "{err}");
    assert!(p.blob(&libc.sha256).is_file(), "{err}");
    assert!(server.requests() > before);

    // A second build finds every pin in place and asks the mirror nothing more.
    let after = server.requests();
    let _ = code(&mut p.command(&["build", "base"]));
    assert_eq!(server.requests(), after);
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    // `hermetic … | head` where head has already gone: SIGPIPE ends hermetic as it ends a C
    // program, with no panic and no error message.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = hermetic()
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(13), "{:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lock_names_every_unknown_package_with_the_closest_name() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let recipe = "packages = [\"ap\", \"libfooo=1.0-1\", \"kubernetes\", \"mail-transport-agent\"]\n\
                  build-packages = [\"tol\"]\n";
    let p = TestProject::new(
        &[("base", recipe), ("other", "packages = [\"libbaz\"]\n")],
        &server,
        &key.keyring,
    );
    let err = p.fails(&["lock"]);
    assert!(
        err.contains("5 requested package(s) are not in trixie, trixie-security (amd64)"),
        "{err}"
    );
    for line in [
        "`ap` (recipe `base`, packages): did you mean `app`?",
        "`libfooo` (recipe `base`, packages): did you mean `libfoo`?",
        "`tol` (recipe `base`, build-packages): did you mean `tool`?",
        "`libbaz` (recipe `other`, packages): did you mean `libbar`?",
    ] {
        assert!(err.contains(line), "{line} missing:\n{err}");
    }
    // Far from every name: named without a guess. A virtual package is not unknown.
    assert!(
        err.contains("`kubernetes` (recipe `base`, packages)\n"),
        "{err}"
    );
    assert!(!err.contains("`mail-transport-agent`"), "{err}");
    assert!(err.contains("hint: check the spelling"), "{err}");
    assert!(!p.path("pins.lock").exists());
}

#[test]
fn every_command_taking_a_target_suggests_a_close_recipe() {
    let p = support::ServedProject::new(&[("base", BASE), ("gcp", "parent = \"base\"\n")]);
    p.ok(&["lock"]);
    let sums = p.path("SHA256SUMS");
    fs_err::write(&sums, format!("{}  gcp.efi\n", "0".repeat(64))).unwrap();
    for args in [
        &["plan", "gpc"][..],
        &["build", "gpc"],
        &["verify", "gpc", "--against", sums.to_str().unwrap()],
        &["shell", "gpc"],
        &["why", "libc6", "gpc"],
    ] {
        let err = p.fails(args);
        assert!(
            err.contains("did you mean `gcp`?"),
            "hermetic {args:?}:\n{err}"
        );
    }
}

#[test]
fn lock_says_more_with_v_and_nothing_with_q() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let p = TestProject::new(&[("base", BASE)], &server, &key.keyring);
    let err = p.ok(&["-v", "lock"]);
    let mirror = p.mirror.trim_end_matches('/');
    assert!(
        err.contains("read dists/trixie/InRelease, ") && err.contains(mirror),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("fetched main/binary-amd64/Packages.xz, ") && l.contains(mirror)),
        "{err}"
    );
    assert!(err.contains("  base: 1 requested, "), "{err}");
    // Again from scratch with -q: the indexes come from the store, and nothing is said.
    fs_err::remove_file(p.path("pins.lock")).unwrap();
    let (ok, stdout, stderr) = p.run(&["-q", "lock"]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(stderr, "");
    assert!(p.path("pins.lock").is_file());
}

//! `hermetic shell`, `sandbox run -i` and how much the commands say (`-q`, `-v`, piped
//! progress), on a synthetic project: locked from the synthetic archive on 127.0.0.1, with
//! the `rootfs` and `tools` steps published into the store by the test as a tiny tree of the
//! host's own tools (what dpkg would have installed); the image step runs for real in the
//! sandbox, and the shell runs on its stored tree.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use support::{TestArchive, TestKey, TestProject, TestServer, standard_suites};

const RECIPE: &str = "packages = [\"app\"]\nbuild-packages = [\"tool\"]\n\n\
[[steps]]\nname = \"motd\"\nscript = \"printf 'made by a step\\\\n' > \\\"$DESTDIR/etc/motd\\\"\"\n";

const OS_RELEASE: &str = "PRETTY_NAME=\"synthetic test tree\"\nID=hermetic-test\n";

struct Fixture {
    _key: TestKey,
    _archive: TestArchive,
    _server: TestServer,
    project: TestProject,
    _mini: tempfile::TempDir,
}

/// Locks the project and publishes a fake `rootfs` and `tools` (the host's tools, with an
/// os-release) into its store, as dpkg would have made them.
fn fixture() -> Fixture {
    fixture_with(RECIPE)
}

fn fixture_with(recipe: &str) -> Fixture {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let project = TestProject::new(&[("app", recipe)], &server, &key.keyring);
    project.ok(&["lock"]);
    let mini = support::host_tools_tree(&[]);
    fs_err::write(mini.path().join("etc/os-release"), OS_RELEASE).unwrap();
    // Linked against the C library the tree already has.
    fs_err::copy(
        fs_err::canonicalize("/usr/bin/sleep").unwrap(),
        mini.path().join("usr/bin/sleep"),
    )
    .unwrap();
    project.publish_fake_trees("app", mini.path());
    Fixture {
        _key: key,
        _archive: archive,
        _server: server,
        project,
        _mini: mini,
    }
}

/// Runs `hermetic ARGS` with `input` on a pipe as standard input; (code, stdout, stderr).
fn piped(project: &TestProject, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = project
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The image step's stored tree, from `plan --json`.
fn image_tree(project: &TestProject) -> std::path::PathBuf {
    let (_, key) = project
        .plan("app")
        .into_iter()
        .find(|(step, _)| step == "app/image")
        .unwrap();
    project.step_entry(&key).join("tree")
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_piped_shell_builds_the_tree_reads_stdin_and_returns_the_exit_code() {
    let f = fixture();
    let p = &f.project;
    // The image step is not stored yet: the shell builds it (not the output step), then
    // reads its commands from the pipe.
    let (code, stdout, stderr) = piped(
        p,
        &["shell", "app"],
        "cat /etc/os-release\ncat /etc/motd\nexit 7\n",
    );
    assert_eq!(code, 7, "{stdout}{stderr}");
    assert!(stdout.contains(OS_RELEASE), "{stdout}");
    assert!(stdout.contains("made by a step"), "{stdout}");
    assert!(!p.path("out").exists(), "the shell copies no outputs");
    // Only the steps of the tree ran: the output step (the format) is not built.
    let (_, output_key) = p
        .plan("app")
        .into_iter()
        .find(|(step, _)| step == "app/output")
        .unwrap();
    assert!(!p.step_entry(&output_key).exists());
    let tree = image_tree(p);
    assert!(tree.join("etc/motd").is_file());

    // Read-only by default: the stored tree cannot be changed.
    let before = listing(&tree.join("etc"));
    let (code, stdout, stderr) = piped(p, &["shell", "app"], "touch /etc/new && echo wrote\n");
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("wrote"), "{stdout}");
    assert_eq!(listing(&tree.join("etc")), before);

    // --writable: a scratch copy that takes writes and is thrown away.
    let (code, stdout, stderr) = piped(
        p,
        &["shell", "--writable", "app"],
        "touch /etc/new && echo wrote && cat /etc/os-release\n",
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("wrote") && stdout.contains(OS_RELEASE),
        "{stdout}"
    );
    assert_eq!(listing(&tree.join("etc")), before);
    assert!(
        listing(&p.store.path().join("v1/tmp"))
            .iter()
            .all(|n| !n.starts_with("tree-")),
        "the scratch copy is removed"
    );

    // A command after `--` instead of the shell; -vv shows the sandbox's command.
    let (code, stdout, stderr) = piped(p, &["shell", "app", "--", "cat", "/etc/motd"], "");
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(stdout, "made by a step\n");
    let (code, _, stderr) = piped(p, &["-vv", "shell", "app", "--", "true"], "");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("sandbox: [\"true\"] in root ReadOnly("),
        "{stderr}"
    );

    // A mistyped target is suggested, as for build.
    let (code, _, stderr) = piped(p, &["shell", "apq"], "");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("did you mean `app`?"), "{stderr}");
}

#[test]
fn sandbox_run_passes_stdin_only_when_asked_or_a_terminal() {
    let f = fixture();
    let p = &f.project;
    let tree = image_tree(p);
    p.ok(&["shell", "app", "--", "true"]);
    let root = tree.to_str().unwrap();
    // Without -i standard input is /dev/null, so `cat` ends at once with nothing.
    let (code, stdout, stderr) = piped(p, &["sandbox", "run", "--root", root, "--", "cat"], "x\n");
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
    let (code, stdout, stderr) = piped(
        p,
        &["sandbox", "run", "-i", "--root", root, "--", "sh"],
        "cat /etc/os-release; exit 3\n",
    );
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(stdout, OS_RELEASE);
}

#[test]
fn quiet_says_nothing_and_piped_progress_is_plain_lines() {
    let f = fixture();
    let p = &f.project;
    // Piped (not a terminal): fetch says what it fetches, line by line.
    let (code, _, stderr) = piped(p, &["fetch"], "");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("fetching "), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("fetched ")),
        "{stderr}"
    );
    // -v: each file with its size in bytes and the URL it came from.
    let blobs = p.store.path().join("v1/blobs/sha256");
    for blob in fs_err::read_dir(&blobs).unwrap() {
        fs_err::remove_file(blob.unwrap().path()).unwrap();
    }
    let (code, _, stderr) = piped(p, &["-v", "fetch"], "");
    assert_eq!(code, 0, "{stderr}");
    let from_server = format!(" bytes, from {}", p.mirror.trim_end_matches('/'));
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("fetched ") && l.contains(&from_server)),
        "{stderr}"
    );

    let out = p.path("out");
    let out = out.to_str().unwrap();
    let (code, _, stderr) = piped(p, &["build", "app", "-o", out], "");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("running  app/image"), "{stderr}");
    // A no-op build with -q: nothing at all on standard error.
    let (code, stdout, stderr) = piped(p, &["-q", "build", "app", "-o", out], "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(stdout, "", "-q prints no output hashes either");
    // -v: each step with its key and whether the store had it.
    let (code, _, stderr) = piped(p, &["-v", "build", "app", "-o", out], "");
    assert_eq!(code, 0, "{stderr}");
    let image = image_tree(p);
    let key = image
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    assert!(
        stderr.contains(&format!("cached   app/image  {key}")),
        "{stderr}"
    );
}

/// Runs `cmd` with a new terminal as standard input, output and error, typing `input`;
/// returns its exit code and everything it wrote to the terminal (`\r\n` as `\n`).
fn on_terminal(mut cmd: Command, input: &[u8]) -> (i32, String) {
    use std::io::Read as _;
    let pty = nix::pty::openpty(None, None).unwrap();
    cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().unwrap();
    // The command holds the slave's descriptors: once dropped, reads of the master end
    // (EIO) when the child and its sandbox are gone.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    master.write_all(input).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out).replace("\r\n", "\n"))
}

#[test]
fn on_a_terminal_the_shell_gets_a_terminal_and_quiet_draws_no_spinner() {
    let f = fixture();
    let p = &f.project;
    let out = p.path("out");
    // -q on a terminal: the image step runs, and neither a spinner nor a line is drawn.
    let (code, text) = on_terminal(
        p.command(&["-q", "build", "app", "-o", out.to_str().unwrap()]),
        b"",
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(text, "");
    // Without -q a spinner or the step lines do appear there.
    let (code, text) = on_terminal(
        p.command(&["build", "app", "-o", out.to_str().unwrap()]),
        b"",
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("cached   app/image"), "{text}");

    // The shell's standard input, output and error are a terminal of its own (a controlling
    // one: `test -t` and the terminal's job control), and typed lines reach it.
    let (code, text) = on_terminal(
        p.command(&["shell", "app"]),
        b"test -t 0 && test -t 1 && echo TERMINAL-$((6*7)); cat /etc/os-release; exit 5\n",
    );
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("TERMINAL-42"), "{text}");
    assert!(text.contains(OS_RELEASE), "{text}");
}

#[test]
fn a_piped_build_says_where_a_long_step_is() {
    let recipe = "packages = [\"app\"]\nbuild-packages = [\"tool\"]\n\n\
[[steps]]\nname = \"slow\"\nscript = \"i=0; while [ $i -lt 25 ]; do echo tick $i; sleep 0.5; i=$((i+1)); done\"\n";
    let f = fixture_with(recipe);
    let p = &f.project;
    let out = p.path("out");
    let (code, _, stderr) = piped(p, &["build", "app", "-o", out.to_str().unwrap()], "");
    assert_eq!(code, 0, "{stderr}");
    // About 12 s of output: at least one line in between, naming the step and its output.
    let between: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("app/image (slow) ") && l.contains(": tick "))
        .collect();
    assert!(!between.is_empty(), "{stderr}");
    let (_, stdout, stderr) = piped(p, &["-q", "build", "app", "-o", out.to_str().unwrap()], "");
    assert_eq!(stderr, "", "{stdout}");
}

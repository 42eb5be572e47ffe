//! The environment suite: what a step must see (and get back), whoever runs it and whatever
//! the host's settings. Every case is a separate `hermetic sandbox run` process.

#[path = "sandbox/common.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn umask_is_022_whatever_the_host_umask() {
    let out = sandbox_via_shell(
        "umask 002",
        &[],
        &[
            "sh",
            "-c",
            "umask; touch /tmp/f; mkdir /tmp/d; stat -c %a /tmp/f /tmp/d",
        ],
    );
    assert_eq!(ok(out), "0022\n644\n755\n");
}

#[test]
fn environment_is_exactly_the_declared_and_fixed_variables() {
    let out = sandbox_via_shell(
        "export LEAK=1 TZ=Europe/Paris LANG=fr_FR.UTF-8",
        &[
            "--env",
            "FOO=bar",
            "--env",
            "PATH=/usr/bin:/bin",
            "--source-date-epoch",
            "1700000000",
        ],
        &["/usr/bin/env"],
    );
    let text = ok(out);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "FOO=bar",
            "HOME=/homeless",
            "LANG=C.UTF-8",
            "LC_ALL=C.UTF-8",
            "PATH=/usr/bin:/bin",
            "SOURCE_DATE_EPOCH=1700000000",
            "TMPDIR=/tmp",
            "TZ=UTC",
        ]
    );
}

#[test]
fn fixed_variables_cannot_be_declared() {
    let out = sandbox(&["--env", "TZ=Europe/Paris"], &["true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("may not set TZ"), "{}", stderr(&out));
}

#[test]
fn time_zone_and_locale_are_utc_and_c_utf8() {
    let body = "import time, locale\nprint(time.strftime('%Z', time.localtime(0)))\nprint(locale.setlocale(locale.LC_ALL, ''))\nprint(sys.getfilesystemencoding())";
    let out = ok(sandbox_via_shell(
        "export TZ=America/New_York",
        &[],
        &[PYTHON, "-c", &format!("import sys\n{body}")],
    ));
    assert_eq!(out, "UTC\nC.UTF-8\nutf-8\n");
    let date = ok(sandbox(
        &["--source-date-epoch", "0"],
        &["date", "-d", "@0", "+%H:%M %Z"],
    ));
    assert_eq!(date, "00:00 UTC\n");
}

#[test]
fn host_and_domain_names_are_fixed() {
    let out = ok(sandbox(
        &[],
        &["sh", "-c", "uname -n; cat /proc/sys/kernel/domainname"],
    ));
    assert_eq!(out, "hermetic\n(none)\n");
    let out = ok(sandbox(&["--hostname", "builder-1"], &["uname", "-n"]));
    assert_eq!(out, "builder-1\n");
}

#[test]
fn working_directory_is_fixed() {
    assert_eq!(ok(sandbox(&[], &["pwd"])), "/\n");
    assert_eq!(
        ok(sandbox(&["--cwd", "/usr/share"], &["pwd"])),
        "/usr/share\n"
    );
    let missing = sandbox(&["--cwd", "/nonexistent"], &["pwd"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("hint: the working directory must exist"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn exit_codes_come_back() {
    assert_eq!(
        sandbox(&[], &["sh", "-c", "exit 42"]).status.code(),
        Some(42)
    );
    assert_eq!(sandbox(&[], &["true"]).status.code(), Some(0));
    // Killed by SIGTERM: 128 + 15, as a shell reports it.
    assert_eq!(
        sandbox(&[], &["sh", "-c", "kill -TERM $$"]).status.code(),
        Some(143)
    );
    // A command that is not there is a set-up error with a hint.
    let missing = sandbox(&[], &["no-such-command-here"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = stderr(&missing);
    assert!(err.contains("execute") && err.contains("hint:"), "{err}");
}

#[test]
fn output_streams_separately_and_to_the_log() {
    let dir = tempdir();
    let log = dir.path().join("step.log");
    let out = sandbox(
        &["--log", path_str(&log)],
        &["sh", "-c", "echo out; echo err >&2; cat; echo after-stdin"],
    );
    assert_eq!(stdout(&out), "out\nafter-stdin\n", "stdin is /dev/null");
    assert_eq!(stderr(&out), "err\n");
    let logged = fs_err::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = logged.lines().collect();
    lines.sort();
    assert_eq!(lines, ["after-stdin", "err", "out"]);
}

/// Host processes whose command line contains `marker`.
fn host_processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = fs_err::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) && !text.contains("sandbox") {
                found.push(text);
            }
        }
    }
    found
}

#[test]
fn timeout_kills_the_whole_tree() {
    let marker = format!(
        "{}.{}",
        1000 + std::process::id() % 1000,
        std::process::id()
    );
    let script = format!("sleep {marker} & (sleep {marker} &) ; sleep {marker}");
    let start = Instant::now();
    let out = sandbox(&["--timeout", "1"], &["sh", "-c", &script]);
    let elapsed = start.elapsed();
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did not finish within 1 s"),
        "{}",
        stderr(&out)
    );
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    // The kernel kills the pid namespace when its init dies; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = host_processes_with(&marker);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn zombies_are_reaped_by_init() {
    // The step's child forks a grandchild and exits at once; the grandchild is re-parented to
    // init (pid 1), exits, and must be reaped there.
    let body = r#"
import time
pid = os.fork()
if pid == 0:
    if os.fork() == 0:
        time.sleep(0.2); os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(1.0)
states = []
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            stat = open(f'/proc/{p}/stat').read()
            states.append(stat[stat.rindex(')') + 2])
        except OSError:
            pass
print('zombies', states.count('Z'))
print('pid', os.getpid() > 1)
"#;
    let out = ok(probe(&[], body));
    let r = results(&out);
    assert_eq!(r["zombies"], "0", "{out}");
    assert_eq!(r["pid"], "True", "{out}");
}

#[test]
fn dev_is_minimal_and_works() {
    let out = ok(sandbox(
        &[],
        &[
            "sh",
            "-c",
            "ls /dev; head -c 4 /dev/zero | od -An -tx1; echo x > /dev/null && echo null-ok; head -c 8 /dev/urandom | wc -c",
        ],
    ));
    let expected_ls =
        "fd\nfull\nnull\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n";
    assert!(out.starts_with(expected_ls), "{out}");
    assert!(out.contains(" 00 00 00 00\nnull-ok\n8\n"), "{out}");
}

#[test]
fn root_inside_is_the_invoking_user_outside() {
    let out = ok(sandbox(&[], &["sh", "-c", "id -u; cat /proc/self/uid_map"]));
    let me = if is_root() {
        0
    } else {
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap()
    };
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields, ["0", "0", &me.to_string(), "1"], "{out}");
}

#[test]
fn subordinate_ids_let_root_inside_chown_files() {
    let dir = tempdir();
    set_mode(dir.path(), 0o777);
    let out = ok(sandbox(
        &[
            "--subids",
            "--rw",
            &format!("{}:/out", dir.path().display()),
        ],
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; touch /out/f; chown 100:101 /out/f; stat -c '%u %g' /out/f",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let second: Vec<u64> = lines[1]
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!((second[0], second[2]), (1, 65535), "{out}");
    assert_eq!(lines[2], "100 101");
    // On the host the file belongs to the subordinate id 100 maps to.
    use std::os::unix::fs::MetadataExt;
    let meta = fs_err::metadata(dir.path().join("f")).unwrap();
    assert_eq!(u64::from(meta.uid()), second[1] + 99);
}

#[test]
fn single_id_mapping_cannot_chown() {
    let out = sandbox(&[], &["sh", "-c", "touch /tmp/f && chown 100 /tmp/f"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Invalid argument"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn landlock_status_is_reported_and_can_be_required() {
    let out = sandbox(&["--require-landlock"], &["true"]);
    let doctor = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let landlock = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "landlock")
        .unwrap()
        .clone();
    let full = landlock["detail"]
        .as_str()
        .unwrap()
        .contains("fully enforced");
    if full {
        assert!(out.status.success(), "{}", stderr(&out));
    } else {
        assert!(
            stderr(&out).contains("requires it fully enforced"),
            "{}",
            stderr(&out)
        );
    }
    let json = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(["--json", "sandbox", "run", "--", "true"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["status"]["exit_code"], 0);
    assert_eq!(
        v["landlock"],
        if full {
            "fully-enforced"
        } else {
            v["landlock"].as_str().unwrap()
        }
    );
}

#[test]
fn fixed_output_is_checked_and_removed_on_mismatch() {
    let dir = tempdir();
    set_mode(dir.path(), 0o777);
    let out_file = dir.path().join("hello.txt");
    // sha256("hello\n")
    let good = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let bad = "0000000000000000000000000000000000000000000000000000000000000000";
    let rw = format!("{}:/out", dir.path().display());
    let run = |sha: &str| {
        sandbox(
            &[
                "--rw",
                &rw,
                "--net-fixed-output",
                sha,
                "--output",
                path_str(&out_file),
            ],
            &["sh", "-c", "echo hello > /out/hello.txt"],
        )
    };

    let wrong = run(bad);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("has SHA-256 5891b5b5"),
        "{}",
        stderr(&wrong)
    );
    assert!(!out_file.exists(), "a mismatching output is removed");

    ok(run(good));
    assert_eq!(fs_err::read_to_string(&out_file).unwrap(), "hello\n");

    // The output must be beneath a writable mount.
    let outside = sandbox(
        &["--net-fixed-output", good, "--output", "/nonexistent/x"],
        &["true"],
    );
    assert!(
        stderr(&outside).contains("not beneath a writable mount"),
        "{}",
        stderr(&outside)
    );
}

#[test]
fn fixed_output_steps_keep_the_host_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempdir();
    set_mode(dir.path(), 0o777);
    let out_file = dir.path().join("o");
    // sha256("")
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let code = format!(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), 3)\nopen('/out/o', 'w').close()"
    );
    let out = sandbox(
        &[
            "--rw",
            &format!("{}:/out", dir.path().display()),
            "--net-fixed-output",
            empty,
            "--output",
            path_str(&out_file),
        ],
        &[PYTHON, "-c", &code],
    );
    ok(out);
    assert!(listener.accept().is_ok());
}

#[test]
fn writable_and_read_only_roots() {
    // A writable tree as `/`, with the host's /usr mounted into it.
    let dir = tempdir();
    let root = dir.path().join("root");
    fs_err::create_dir_all(root.join("usr")).unwrap();
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    set_mode(&root, 0o777);
    let out = sandbox(
        &["--writable-root", path_str(&root), "--ro", "/usr:/usr"],
        &[
            "sh",
            "-c",
            "echo made > /made-inside; mkdir -p /var/lib/x; ls /",
        ],
    );
    let text = ok(out);
    assert!(
        text.contains("made-inside") && text.contains("var"),
        "{text}"
    );
    assert_eq!(
        fs_err::read_to_string(root.join("made-inside")).unwrap(),
        "made\n"
    );
    assert!(root.join("var/lib/x").is_dir());

    // The same tree read-only: nothing can be created at the top or inside.
    let out = sandbox(
        &["--root", path_str(&root), "--ro", "/usr:/usr"],
        &[
            "sh",
            "-c",
            "echo x > /new || echo refused; echo y > /var/lib/x/f || echo refused2; cat /made-inside",
        ],
    );
    assert_eq!(ok(out), "refused\nrefused2\nmade\n");
    assert!(!root.join("new").exists() && !root.join("var/lib/x/f").exists());
}

#[test]
fn the_whole_tree_dies_with_the_caller() {
    let marker = format!(
        "{}.{}",
        2000 + std::process::id() % 1000,
        std::process::id()
    );
    let script = format!("sleep {marker} & (sleep {marker} &); sleep {marker}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(["sandbox", "run", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    // Wait until the step's processes exist, then kill the caller outright.
    let deadline = Instant::now() + Duration::from_secs(10);
    while host_processes_with(&marker).len() < 3 {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = host_processes_with(&marker);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "outlived the caller: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn core_dumps_are_off() {
    assert_eq!(ok(sandbox(&[], &["sh", "-c", "ulimit -c"])), "0\n");
}

#[test]
fn help_says_the_default_root_is_for_testing_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(["sandbox", "run", "--help"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("FOR TESTING ONLY"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn concurrent_steps_from_threads_do_not_wait_for_each_other() {
    // The library from a multi-threaded caller, as the build executor uses it: quick steps
    // complete, each with its own output, while slow ones run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut step = sandbox::Step::new(["sleep", "2"]);
                    step.output = sandbox::Output::LogOnly;
                    assert!(sandbox::run(&step).unwrap().success());
                }
            })
        })
        .collect();
    let quick: Vec<_> = (0..3)
        .map(|t| {
            std::thread::spawn(move || {
                let mut worst = Duration::ZERO;
                for i in 0..15 {
                    let mut step = sandbox::Step::new(["echo", &format!("{t}-{i}")]);
                    step.output = sandbox::Output::LogOnly;
                    let mut seen = Vec::new();
                    let start = Instant::now();
                    let outcome =
                        sandbox::run_with(&step, &mut |_, b| seen.extend_from_slice(b)).unwrap();
                    worst = worst.max(start.elapsed());
                    assert!(outcome.success());
                    assert_eq!(seen, format!("{t}-{i}\n").into_bytes());
                }
                worst
            })
        })
        .collect();
    for q in quick {
        let worst = q.join().unwrap();
        assert!(
            worst < Duration::from_millis(1500),
            "a quick step took {worst:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in slow {
        s.join().unwrap();
    }
}

#[test]
fn sandbox_processes_hold_none_of_the_callers_descriptors() {
    // A descriptor the caller has open (think: another step's pipe, being set up by another
    // thread) must not be held by the sandbox's processes, or whoever waits for it to close
    // waits for this step too. The outer process is the caller's child in a new user
    // namespace; look at its descriptors from here.
    let dir = tempdir();
    let marker = dir.path().join("held-by-the-caller");
    let _held = fs_err::File::create(&marker).unwrap();
    let runner = std::thread::spawn(|| {
        let mut step = sandbox::Step::new(["sleep", "2"]);
        step.output = sandbox::Output::LogOnly;
        sandbox::run(&step).unwrap()
    });
    let me = std::process::id().to_string();
    let my_userns = fs_err::read_link("/proc/self/ns/user").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let outer = loop {
        let found = fs_err::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let stat = fs_err::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.to_string();
            let userns = fs_err::read_link(e.path().join("ns/user")).ok()?;
            (ppid == me && userns != my_userns).then(|| e.path())
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the outer process never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let fds: Vec<_> = fs_err::read_dir(outer.join("fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| fs_err::read_link(e.path()).ok())
        .collect();
    assert!(
        fds.len() >= 4,
        "the outer process's pipes are visible: {fds:?}"
    );
    assert!(!fds.contains(&marker), "{fds:?}");
    assert!(runner.join().unwrap().success());
}

/// Pids of the processes whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<u32> {
    let ppid = ppid.to_string();
    fs_err::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let stat = fs_err::read_to_string(e.path().join("stat")).ok()?;
            let parent = stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.to_string();
            (parent == ppid)
                .then(|| e.file_name().to_str()?.parse().ok())
                .flatten()
        })
        .collect()
}

#[test]
fn init_forwards_signals_to_the_step() {
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; sleep 20 & wait";
    let mut child = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(["sandbox", "run", "--", "sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // hermetic → outer → init (pid 1 inside) → sh: find init and wait for the step to start.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let outer = children_of(child.id());
    assert_eq!(outer.len(), 1, "{outer:?}");
    let init = children_of(outer[0]);
    assert_eq!(init.len(), 1, "{init:?}");
    let status = Command::new("kill")
        .args(["-TERM", &init[0].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(child.wait().unwrap().code(), Some(7));
}

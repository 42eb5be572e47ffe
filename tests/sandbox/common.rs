//! Shared helpers of the sandbox suites: run `hermetic sandbox run`, and probe programs.
//!
//! Probes are one-line Python programs run by the host's `/usr/bin/python3` inside the
//! sandbox (its testing root is the host's `/usr`); system calls go through `ctypes` with the
//! numbers of this architecture taken from the `libc` crate, and each probe prints `name
//! ERRNO` (or `name OK`) per attempt.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const PYTHON: &str = "/usr/bin/python3";

/// `hermetic sandbox run ARGS -- CMD`.
pub fn sandbox(args: &[&str], cmd: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hermetic"));
    c.args(["sandbox", "run"]).args(args).arg("--").args(cmd);
    c.output().expect("run hermetic")
}

/// The same, through `sh -c` so that the caller can set up the host side (umask, env).
pub fn sandbox_via_shell(prefix: &str, args: &[&str], cmd: &[&str]) -> Output {
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(format!("{prefix}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_hermetic"));
    c.args(["sandbox", "run"]).args(args).arg("--").args(cmd);
    c.output().expect("run hermetic")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns standard output.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// The Python prelude of every probe: `sc(name, nr, *args)` makes the call and prints
/// `name OK` or `name ERRNONAME`.
pub const PRELUDE: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(name, nr, *args):
    conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    r = libc.syscall(ctypes.c_long(nr), *conv)
    e = ctypes.get_errno() if r == -1 else 0
    print(name, errno.errorcode.get(e, str(e)) if e else "OK", flush=True)
    return r
"#;

/// Runs a Python probe in the sandbox with extra `args`.
pub fn probe(args: &[&str], body: &str) -> Output {
    let code = format!("{PRELUDE}\n{body}");
    sandbox(args, &[PYTHON, "-c", &code])
}

/// Parses `name RESULT` lines.
pub fn results(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A temporary directory every user can enter (the sandbox may run as another id).
pub fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hermetic-sbx-")
        .tempdir()
        .expect("tempdir");
    set_mode(dir.path(), 0o755);
    dir
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// True when running as root (the suites run both as root and as an ordinary user).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs_err::metadata("/proc/self").expect("/proc/self").uid() == 0
}

//! The non-root operator path, for real: a fresh user with no subordinate ids runs
//! `hermetic doctor`, root applies exactly the fix it prints, and the user then builds `base`
//! with its own store (the default one in its home) from a copy of the project, fetching
//! from the host's apt mirror. `scripts/setup.sh` (the main job's part, as if run with sudo
//! by another fresh user) must likewise hand out a range no other user has.
//!
//! Root only (it creates and removes users and edits /etc/subuid and /etc/subgid through
//! `useradd`, `usermod` and `userdel`): as an ordinary user it says so and passes. CI runs it
//! as root (scripts/test.sh). The users, their homes and their ids are removed afterwards,
//! also when the test fails.

mod project;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use project::{Kernel, run};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A user made for this test; removed (home, subordinate ids) on drop.
struct TestUser {
    name: String,
    home: PathBuf,
}

impl TestUser {
    fn create(tag: &str) -> TestUser {
        // Short and unique: user names are at most 32 characters.
        let name = format!("hop{tag}{}", std::process::id());
        run(Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/bash"])
            .arg(&name));
        let user = TestUser {
            home: PathBuf::from(format!("/home/{name}")),
            name,
        };
        assert!(
            user.home.is_dir(),
            "useradd made no {}",
            user.home.display()
        );
        // Fresh: no subordinate ids (useradd may add some where login.defs says so; take
        // them away so the user starts as the issue describes).
        for (file, flag) in [
            ("/etc/subuid", "--del-subuids"),
            ("/etc/subgid", "--del-subgids"),
        ] {
            for (start, count) in ranges_of(file, &user.name) {
                run(Command::new("usermod")
                    .arg(flag)
                    .arg(format!("{start}-{}", start + count - 1))
                    .arg(&user.name));
            }
            assert_eq!(ranges_of(file, &user.name), vec![], "{file}");
        }
        user
    }

    /// `runuser -u USER -- env -i PATH HOME ... argv`: the user's own login-like
    /// environment, nothing of the test's (no HERMETIC_STORE, no CARGO_*).
    fn command(&self, argv0: &Path) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", &self.name, "--", "env", "-i"])
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("USER={}", self.name))
            .arg(format!("LOGNAME={}", self.name))
            .arg("LANG=C.UTF-8")
            .arg(argv0)
            .current_dir(&self.home);
        c
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Whatever the user left running (a sandbox of a failed build) goes first.
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .output();
        let _ = Command::new("userdel")
            .args(["--remove", "--force"])
            .arg(&self.name)
            .output();
        // userdel removes subordinate ids where shadow was built with them; make sure.
        for (file, flag) in [
            ("/etc/subuid", "--del-subuids"),
            ("/etc/subgid", "--del-subgids"),
        ] {
            for (start, count) in ranges_of(file, &self.name) {
                let _ = Command::new("usermod")
                    .arg(flag)
                    .arg(format!("{start}-{}", start + count - 1))
                    .arg(&self.name)
                    .output();
            }
        }
        let _ = fs_err::remove_dir_all(&self.home);
    }
}

/// Every `(start, count)` of `file` (an /etc/subuid-style file); only those of `user` when
/// `user` is not empty.
fn ranges_of(file: &str, user: &str) -> Vec<(u64, u64)> {
    fs_err::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            (user.is_empty() || who == user)
                .then(|| Some((start.parse().ok()?, count.parse().ok()?)))?
        })
        .collect()
}

/// Every `user:start:count` line of /etc/subuid and /etc/subgid.
fn all_lines() -> Vec<(String, String, u64, u64)> {
    let mut v = Vec::new();
    for file in ["/etc/subuid", "/etc/subgid"] {
        for l in fs_err::read_to_string(file).unwrap_or_default().lines() {
            let f: Vec<&str> = l.trim().split(':').collect();
            if let [who, start, count] = f[..]
                && let (Ok(s), Ok(c)) = (start.parse(), count.parse())
            {
                v.push((file.to_string(), who.to_string(), s, c));
            }
        }
    }
    v
}

/// Asserts `user`'s range [start, start+count) in both files is shared with no other user.
fn assert_disjoint(user: &str, start: u64, count: u64) {
    for (file, who, s, c) in all_lines() {
        if who != user {
            assert!(
                start + count <= s || s + c <= start,
                "{user}'s {start}+{count} overlaps {who}'s {s}+{c} in {file}"
            );
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Copies the hermetic binary where `user` can run it (the target directory may not be
/// readable by others).
fn hermetic_for(user: &TestUser) -> PathBuf {
    let bin = user.home.join("hermetic");
    fs_err::copy(env!("CARGO_BIN_EXE_hermetic"), &bin).unwrap();
    chown(&bin, &user.name);
    bin
}

fn chown(path: &Path, user: &str) {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:{user}"))
        .arg(path));
}

#[test]
fn a_fresh_user_follows_doctors_advice_and_builds_base() {
    if !is_root() {
        eprintln!("operator_live: needs root (creates users); skipped");
        return;
    }
    let op = TestUser::create("d");
    let hermetic = hermetic_for(&op);

    // 1. doctor as the fresh user: the subordinate ids check fails with a fix.
    let out = op.command(&hermetic).arg("doctor").output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(7), "{said}");
    let line = said
        .lines()
        .find(|l| l.contains("subordinate ids"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(line.starts_with('✗'), "{said}");
    let fix = said
        .split_once("hint: run `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(cmd, _)| cmd.to_string())
        .unwrap_or_else(|| panic!("doctor prints no command to run: {said}"));

    // 2. The fix names one range, free in both files, for this user.
    let words: Vec<&str> = fix.split_whitespace().collect();
    let [
        sudo,
        "usermod",
        "--add-subuids",
        uids,
        "--add-subgids",
        gids,
        who,
    ] = words[..]
    else {
        panic!("unexpected fix: {fix}");
    };
    assert_eq!(sudo, "sudo", "{fix}");
    assert_eq!(who, op.name, "{fix}");
    assert_eq!(uids, gids, "{fix}");
    let (start, last) = uids.split_once('-').unwrap();
    let (start, last): (u64, u64) = (start.parse().unwrap(), last.parse().unwrap());
    assert_eq!(last - start + 1, 65536, "{fix}");
    assert_disjoint(&op.name, start, 65536);

    // 3. Apply exactly that command (root needs no sudo: run it without when there is none).
    let mut apply = if Command::new("sudo").arg("-V").output().is_ok() {
        let mut c = Command::new("sh");
        c.arg("-c").arg(&fix);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c").arg(fix.strip_prefix("sudo ").unwrap());
        c
    };
    run(&mut apply);
    assert_eq!(ranges_of("/etc/subuid", &op.name), vec![(start, 65536)]);
    assert_eq!(ranges_of("/etc/subgid", &op.name), vec![(start, 65536)]);
    assert_disjoint(&op.name, start, 65536);

    // 4. doctor is now content, the sandbox with subordinate ids included.
    let out = op.command(&hermetic).arg("doctor").output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("✓ subordinate ids"), "{said}");
    assert!(said.contains("✓ sandbox (subordinate ids)"), "{said}");

    // 5. setup.sh's main part, as if another fresh operator ran it with sudo, gives that
    //    operator a range of its own too: free in both files, the same for uids and gids.
    let other = TestUser::create("s");
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh");
    let out = run(Command::new("bash")
        .arg(&setup)
        .env("SUDO_USER", &other.name)
        .current_dir("/"));
    let said = text(&out);
    let theirs = ranges_of("/etc/subuid", &other.name);
    assert_eq!(theirs.len(), 1, "{said}");
    assert_eq!(ranges_of("/etc/subgid", &other.name), theirs, "{said}");
    let (s, c) = theirs[0];
    assert!(c >= 65536, "{said}");
    assert!(
        said.contains(&format!(
            "setup: giving {} the subordinate ids {s}-",
            other.name
        )),
        "{said}"
    );
    assert_disjoint(&other.name, s, c);
    // (setup warns of overlaps it finds between other users; none may involve this one)
    assert!(
        !said
            .lines()
            .any(|l| l.contains("overlapping ranges") && l.contains(&other.name)),
        "{said}"
    );
    drop(other);

    // 6. The operator builds base from a copy of the project, with the default store in
    //    its home (fetching what the build needs from the host's mirror).
    let project = project::project(&["base"], Kernel::Seed);
    let p = op.home.join("project");
    project::copy_dir(project.path(), &p);
    chown(&p, &op.name);
    let lock = op
        .command(&hermetic)
        .arg("-C")
        .arg(&p)
        .args(["lock", "--allow-mirror-state"])
        .output()
        .unwrap();
    assert!(lock.status.success(), "lock: {}", text(&lock));
    let out = op
        .command(&hermetic)
        .arg("-C")
        .arg(&p)
        .args(["build", "base", "--output", "out"])
        .output()
        .unwrap();
    assert!(out.status.success(), "build: {}", text(&out));
    let tar = op.home.join("out/base.tar");
    let store = op.home.join(".cache/hermetic");
    assert!(store.is_dir(), "no store at {}", store.display());
    // The tar is owned by the operator and is a Debian system with its packages installed.
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::User::from_name(&op.name)
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(fs_err::metadata(&tar).unwrap().uid(), uid);
    let status = project::tar_member(&tar, "./var/lib/dpkg/status");
    let status = String::from_utf8_lossy(&status);
    for pkg in ["dpkg", "systemd"] {
        project::assert_installed(&status, pkg);
    }
    // /etc/shadow is root:shadow (0/42): group 42 exists only through the subordinate
    // mapping the operator now has, so that mapping really ran.
    let line = run(Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar)
        .arg("./etc/shadow"))
    .stdout;
    let line = String::from_utf8_lossy(&line);
    assert!(line.contains(" 0/42 "), "{line}");
}

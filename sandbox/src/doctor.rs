//! What this host supports of the sandbox, and how to fix what it does not.
//!
//! [`doctor`] runs every check (each probe in a forked child, so nothing sticks to the
//! caller); [`preflight`] runs the few that every sandbox-needing command must pass, so that
//! such a command fails before doing any long work, with the same hint as `hermetic doctor`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use crate::idmap::{self, Invoker};
use crate::step::{IdMapping, Output, Step};
use crate::sys::{self, Forked};

/// One line of `hermetic doctor`.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// A failed required check means steps cannot run (or cannot install packages).
    pub required: bool,
    pub detail: String,
    pub hint: Option<String>,
}

/// A check [`preflight`] found failing.
#[derive(Debug, thiserror::Error)]
#[error("this machine cannot run hermetic's sandbox: {name}: {detail}{hint}", hint = hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
pub struct PreflightError {
    pub name: &'static str,
    pub detail: String,
    pub hint: Option<String>,
}

fn sysctl(path: &str) -> Option<String> {
    fs_err::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

const APPARMOR_USERNS: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
const USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
const MAX_USERNS: &str = "/proc/sys/user/max_user_namespaces";

/// How to get user namespaces working on this host.
fn userns_hint() -> String {
    if sysctl(APPARMOR_USERNS).as_deref() == Some("1") {
        "Ubuntu's AppArmor forbids unprivileged user namespaces: `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (and put `kernel.apparmor_restrict_unprivileged_userns = 0` in /etc/sysctl.d/60-hermetic.conf), or install an AppArmor profile granting `userns,` to hermetic".into()
    } else if sysctl(USERNS_CLONE).as_deref() == Some("0") {
        "unprivileged user namespaces are disabled: `sudo sysctl -w kernel.unprivileged_userns_clone=1`".into()
    } else if sysctl(MAX_USERNS).as_deref() == Some("0") {
        "user namespaces are disabled: `sudo sysctl -w user.max_user_namespaces=15000`".into()
    } else {
        "if this is a container, its seccomp profile may forbid unshare(2): run hermetic on the host, or start the container with `--security-opt seccomp=unconfined`".into()
    }
}

/// The hint for a set-up failure reported from inside the sandbox.
pub(crate) fn hint_for(stage: &str, errno: i32) -> Option<String> {
    match (stage, errno) {
        ("create user namespace", _) => Some(userns_hint()),
        ("create namespaces", _) => Some("the kernel refused a mount, pid, network, UTS, IPC or cgroup namespace inside the user namespace; `hermetic doctor` says which".into()),
        ("mount proc", libc::EPERM) => Some("the kernel refuses a new /proc while parts of the host's /proc are hidden (as containers do): run hermetic on the host, or start the container with `--security-opt systempaths=unconfined`".into()),
        ("create mount point", libc::EROFS) => Some("the mount point is missing from the read-only root tree; create the directory in the tree".into()),
        ("mount point crosses a symlink", _) => Some("a mount destination must be a real directory path in the root tree, not reached through a symlink".into()),
        ("execute", libc::ENOENT) => Some("the command is not in the sandbox's root (without --root it holds only the host's /usr); use a path inside the sandbox".into()),
        ("change directory to", libc::ENOENT) => Some("the working directory must exist inside the sandbox".into()),
        ("write", libc::EPERM) => Some(userns_hint()),
        (_, libc::ENOSYS) => Some("this kernel lacks a system call the sandbox needs (mount_setattr, Linux 5.12; close_range, Linux 5.9): hermetic needs Linux 5.12 or newer".into()),
        _ => None,
    }
}

/// Runs `f` in a forked child and returns its exit code.
fn probe(f: impl FnOnce() -> i32) -> std::io::Result<i32> {
    match sys::fork()? {
        Forked::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(125);
            sys::exit_now(code)
        }
        Forked::Parent(pid) => {
            match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)? {
                nix::sys::wait::WaitStatus::Exited(_, code) => Ok(code),
                nix::sys::wait::WaitStatus::Signaled(_, sig, _) => Ok(128 + sig as i32),
                _ => Ok(255),
            }
        }
    }
}

/// Errno of `unshare(CLONE_NEWUSER)` in a child, 0 on success.
fn probe_userns() -> i32 {
    probe(|| match nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
        Ok(()) => 0,
        Err(e) => e as i32,
    })
    .unwrap_or(-1)
}

fn check_userns() -> Check {
    let mut facts = Vec::new();
    for (label, path) in [
        ("apparmor_restrict_unprivileged_userns", APPARMOR_USERNS),
        ("unprivileged_userns_clone", USERNS_CLONE),
        ("max_user_namespaces", MAX_USERNS),
    ] {
        if let Some(v) = sysctl(path) {
            facts.push(format!("{label}={v}"));
        }
    }
    let errno = probe_userns();
    let ok = errno == 0;
    let result = if ok {
        "unshare(CLONE_NEWUSER) works".to_string()
    } else {
        format!(
            "unshare(CLONE_NEWUSER) fails: {}",
            nix::errno::Errno::from_raw(errno)
        )
    };
    Check {
        name: "user namespaces",
        ok,
        required: true,
        detail: if facts.is_empty() {
            result
        } else {
            format!("{result} ({})", facts.join(", "))
        },
        hint: (!ok).then(userns_hint),
    }
}

fn check_namespaces() -> Check {
    let kinds = [
        (CloneFlags::CLONE_NEWNS, "mount"),
        (CloneFlags::CLONE_NEWPID, "pid"),
        (CloneFlags::CLONE_NEWNET, "net"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
    ];
    let mut failed = Vec::new();
    for (flag, name) in kinds {
        let code = probe(|| {
            if nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_err() {
                return 2;
            }
            if nix::sched::unshare(flag).is_err() {
                1
            } else {
                0
            }
        })
        .unwrap_or(3);
        if code != 0 {
            failed.push(name);
        }
    }
    let ok = failed.is_empty();
    Check {
        name: "mount, pid, net, uts, ipc, cgroup namespaces",
        ok,
        required: true,
        detail: if ok {
            "all can be created inside a user namespace".into()
        } else {
            format!("cannot create: {}", failed.join(", "))
        },
        hint: (!ok).then(userns_hint),
    }
}

fn check_landlock() -> Check {
    match sys::landlock_abi_version() {
        Ok(v) => Check {
            name: "landlock",
            ok: true,
            required: false,
            detail: format!(
                "ABI {v}{}",
                if v >= 6 {
                    "; the sandbox's rules are fully enforced"
                } else {
                    "; the sandbox's rules are partially enforced (ABI 6 for all of them)"
                }
            ),
            hint: (v < 6).then(|| {
                "Linux 6.12 or newer enforces every rule (scoped signals and abstract sockets)"
                    .into()
            }),
        },
        Err(e) => Check {
            name: "landlock",
            ok: false,
            required: false,
            detail: format!("unavailable: {e}"),
            hint: Some(match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) => {
                    "Landlock is built in but off: add `landlock` to the `lsm=` kernel parameter"
                        .into()
                }
                _ => "Landlock needs Linux 5.13 or newer; the other walls still hold".into(),
            }),
        },
    }
}

fn check_seccomp() -> Check {
    let programs = match crate::seccomp::programs(crate::seccomp::SetId::Deny) {
        Ok(p) => p,
        Err(e) => {
            return Check {
                name: "seccomp",
                ok: false,
                required: true,
                detail: e.to_string(),
                hint: None,
            };
        }
    };
    let code = probe(|| {
        if nix::sys::prctl::set_no_new_privs().is_err()
            || crate::seccomp::install(&programs).is_err()
        {
            return 1;
        }
        // A refused call answers EPERM; an allowed one still works.
        let refused =
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER) == Err(nix::errno::Errno::EPERM);
        let allowed = nix::unistd::getppid().as_raw() > 0;
        if refused && allowed { 0 } else { 2 }
    })
    .unwrap_or(3);
    Check {
        name: "seccomp",
        ok: code == 0,
        required: true,
        detail: match code {
            0 => format!(
                "filters install and refuse ({} calls denied; sockets only {}; no set-id modes)",
                crate::seccomp::DENIED.len(),
                crate::seccomp::ALLOWED_FAMILIES
                    .iter()
                    .map(|&(_, name)| name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            1 => "cannot install a filter".into(),
            _ => "a filter installed but did not refuse".into(),
        },
        hint: (code != 0).then(|| {
            "the kernel needs CONFIG_SECCOMP_FILTER (every distribution kernel has it)".into()
        }),
    }
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn check_uidmap() -> Check {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for tool in ["newuidmap", "newgidmap"] {
        match find_in_path(tool) {
            None => problems.push(format!("{tool} not found")),
            Some(path) => {
                let mode = fs_err::metadata(&path)
                    .map(|m| m.permissions().mode())
                    .unwrap_or(0);
                let has_caps = sys::has_file_capabilities(&path);
                if mode & 0o4000 == 0 && !has_caps {
                    problems.push(format!(
                        "{} is neither setuid nor has file capabilities",
                        path.display()
                    ));
                } else {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    let ok = problems.is_empty();
    Check {
        name: "newuidmap, newgidmap",
        ok,
        required: true,
        detail: if ok {
            found.join(", ")
        } else {
            problems.join("; ")
        },
        hint: (!ok).then(|| {
            "`sudo apt-get install uidmap` (needed to install packages as several users)".into()
        }),
    }
}

fn check_subids() -> Check {
    let invoker = Invoker::current();
    match idmap::subordinate_ranges(&invoker) {
        Ok((u, g)) => Check {
            name: "subordinate ids",
            ok: true,
            required: true,
            detail: format!("uids {}+{}, gids {}+{}", u.start, u.count, g.start, g.count),
            hint: None,
        },
        Err(e) => {
            let text = e.to_string();
            let (detail, hint) = match text.split_once("\nhint: ") {
                Some((d, h)) => (d.to_string(), Some(h.to_string())),
                None => (text, None),
            };
            Check {
                name: "subordinate ids",
                ok: false,
                required: true,
                detail,
                hint,
            }
        }
    }
}

fn check_run(name: &'static str, ids: IdMapping) -> Check {
    let mut step = Step::new(["true"]);
    step.ids = ids;
    step.output = Output::LogOnly;
    step.timeout = Some(std::time::Duration::from_secs(30));
    match crate::run(&step) {
        Ok(o) if o.success() => Check {
            name,
            ok: true,
            required: true,
            detail: format!(
                "`true` ran in {} ms, landlock {}",
                o.duration.as_millis(),
                o.landlock
            ),
            hint: None,
        },
        Ok(o) => Check {
            name,
            ok: false,
            required: true,
            detail: format!("`true` ended with {:?}", o.status),
            hint: None,
        },
        Err(e) => {
            let text = e.to_string();
            let (detail, hint) = match text.split_once("\nhint: ") {
                Some((d, h)) => (d.to_string(), Some(h.to_string())),
                None => (text, None),
            };
            Check {
                name,
                ok: false,
                required: true,
                detail,
                hint,
            }
        }
    }
}

/// Every check, in the order `hermetic doctor` prints them.
pub fn doctor() -> Vec<Check> {
    let mut checks = vec![
        check_userns(),
        check_namespaces(),
        check_seccomp(),
        check_landlock(),
        check_uidmap(),
        check_subids(),
    ];
    let basics = checks[..3].iter().all(|c| c.ok);
    if basics {
        checks.push(check_run("sandbox (single id)", IdMapping::SingleUser));
        if checks[4].ok && checks[5].ok {
            checks.push(check_run(
                "sandbox (subordinate ids)",
                IdMapping::Subordinate,
            ));
        }
    }
    checks
}

/// The checks a command that runs steps with `ids` must pass, cheap enough to run first
/// every time (a fork and an `unshare`, and reading `/etc/subuid`).
pub fn preflight(ids: IdMapping) -> Result<(), PreflightError> {
    let errno = probe_userns();
    if errno != 0 {
        return Err(PreflightError {
            name: "user namespaces",
            detail: format!(
                "unshare(CLONE_NEWUSER) fails: {}",
                nix::errno::Errno::from_raw(errno)
            ),
            hint: Some(userns_hint()),
        });
    }
    if ids == IdMapping::Subordinate {
        for check in [check_uidmap(), check_subids()] {
            if !check.ok {
                return Err(PreflightError {
                    name: check.name,
                    detail: check.detail,
                    hint: check.hint,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_exist_for_the_common_failures() {
        assert!(hint_for("create user namespace", libc::EPERM).is_some());
        assert!(
            hint_for("mount proc", libc::EPERM)
                .unwrap()
                .contains("systempaths=unconfined")
        );
        assert!(hint_for("create mount point", libc::EROFS).is_some());
        assert!(hint_for("bind", libc::EINVAL).is_none());
        assert!(
            hint_for("make read-only", libc::ENOSYS)
                .unwrap()
                .contains("Linux 5.12")
        );
    }

    #[test]
    fn apparmor_hint_names_the_sysctl() {
        // Whatever this host says, the hint text for the AppArmor case is fixed; check that the
        // user-namespace hint always offers an action.
        let hint = userns_hint();
        assert!(
            hint.contains("sysctl") || hint.contains("container"),
            "{hint}"
        );
    }

    #[test]
    fn preflight_error_ends_with_hint() {
        let e = PreflightError {
            name: "user namespaces",
            detail: "EPERM".into(),
            hint: Some("do X".into()),
        };
        assert_eq!(
            e.to_string(),
            "this machine cannot run hermetic's sandbox: user namespaces: EPERM\nhint: do X"
        );
    }
}

//! Running a step: the parent's side (prepare, fork, map ids, stream output, enforce the
//! timeout, check a fixed output) and the three sandbox processes:
//!
//! ```text
//! caller ── fork ──▶ outer: new user namespace, id maps, new mount/pid/net/uts/ipc/cgroup
//!                     │     namespaces; waits for init
//!                     └─ fork ──▶ init (pid 1): builds the root, pivot_root, /proc, names;
//!                                  │   reaps zombies, forwards signals, reports the status
//!                                  └─ fork ──▶ step: drops privileges, landlock, seccomp, exec
//! ```
//!
//! Each of them dies with its parent (`PR_SET_PDEATHSIG`), and when init dies the kernel kills
//! everything left in the pid namespace: killing `outer` kills the whole tree.
//!
//! The children report to the caller on a status pipe, one line per record:
//! `L <landlock status>` (the step, just before exec), `E <stage>\t<errno>\t<path>\t<detail>`
//! (any set-up failure), `X <code>` or `S <signal>` (init, when the step has ended).

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use sha2::Digest as _;

use crate::idmap::{self, Invoker};
use crate::setup::{self, Entry, Kind, MountPlan, PlannedMount, RootPlan, Source};
use crate::step::{IdMapping, Input, Mount, Network, RootSpec, Step};
use crate::{ExitStatus, LandlockStatus, Outcome, SandboxError, Stream, seccomp, walls};

/// The step, turned into what the children need without further decisions.
pub(crate) struct Prepared {
    plan: MountPlan,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Paths to try `execve` on, in order (the `PATH` search, done inside).
    exec_candidates: Vec<CString>,
    cwd: PathBuf,
    keep_caps: caps::CapsHashSet,
    seccomp: Vec<seccompiler::BpfProgram>,
    writable: Vec<PathBuf>,
    require_landlock: bool,
    ids: IdMapping,
    invoker: Invoker,
    namespaces: CloneFlags,
    parent_pid: Pid,
    stdin: Input,
}

fn cstring(s: impl AsRef<[u8]>, what: &str) -> Result<CString, SandboxError> {
    CString::new(s.as_ref()).map_err(|_| {
        SandboxError::Step(crate::step::StepError::Nul {
            what: what.to_string(),
        })
    })
}

/// Resolves a host source path (symlinks and `..` included) and says what it is. The
/// sandbox's init opens the result, with `O_NOFOLLOW`, in its own mount namespace.
fn resolve_source(path: &Path) -> Result<(Source, Kind), SandboxError> {
    let err = |source| SandboxError::Source {
        path: path.to_path_buf(),
        source,
    };
    let real = fs_err::canonicalize(path).map_err(err)?;
    let meta = fs_err::metadata(&real).map_err(err)?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    Ok((Source::Host(real), kind))
}

/// The entries of a read-only root tree (`/dev`, `/proc` and `/tmp` are the sandbox's own).
fn tree_entries(dir: &Path) -> Result<Vec<Entry>, SandboxError> {
    let err = |source| SandboxError::Root {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<_> = fs_err::read_dir(dir)
        .map_err(err)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    names.sort();
    let mut entries = Vec::new();
    for name in names {
        if ["dev", "proc", "tmp"].iter().any(|n| name == *n) {
            continue;
        }
        let path = dir.join(&name);
        let meta = fs_err::symlink_metadata(&path).map_err(err)?;
        if meta.file_type().is_symlink() {
            let target = fs_err::read_link(&path).map_err(err)?;
            entries.push(Entry::Symlink { name, target });
        } else if meta.is_dir() || meta.is_file() {
            let (src, kind) = resolve_source(&path)?;
            entries.push(Entry::Bind { name, src, kind });
        }
    }
    Ok(entries)
}

/// The testing root: the host's `/usr`, and its merged-`/usr` links (or directories).
fn host_usr_entries() -> Result<Vec<Entry>, SandboxError> {
    let mut entries = Vec::new();
    for name in ["bin", "lib", "lib32", "lib64", "libx32", "sbin", "usr"] {
        let path = Path::new("/").join(name);
        match fs_err::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs_err::read_link(&path).map_err(|source| SandboxError::Root {
                    path: path.clone(),
                    source,
                })?;
                entries.push(Entry::Symlink {
                    name: name.into(),
                    target,
                });
            }
            Ok(m) if m.is_dir() => {
                let (src, kind) = resolve_source(&path)?;
                entries.push(Entry::Bind {
                    name: name.into(),
                    src,
                    kind,
                });
            }
            _ => {}
        }
    }
    Ok(entries)
}

/// Host paths the step may write, for checking where a fixed output lives.
fn writable_host_paths(step: &Step) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = step
        .mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Writable { src, .. } => Some(src.clone()),
            _ => None,
        })
        .collect();
    if let RootSpec::Writable(dir) = &step.root {
        out.push(dir.clone());
    }
    out.into_iter()
        .filter_map(|p| fs_err::canonicalize(p).ok())
        .collect()
}

pub(crate) fn prepare(step: &Step, invoker: Invoker) -> Result<Prepared, SandboxError> {
    step.validate()?;
    let root = match &step.root {
        RootSpec::HostUsr => RootPlan::Tmpfs {
            entries: host_usr_entries()?,
            etc: true,
        },
        RootSpec::ReadOnly(dir) => RootPlan::Tmpfs {
            entries: tree_entries(dir)?,
            etc: false,
        },
        RootSpec::Writable(dir) => {
            let (src, kind) = resolve_source(dir)?;
            if kind != Kind::Dir {
                return Err(SandboxError::Root {
                    path: dir.clone(),
                    source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
                });
            }
            RootPlan::Writable(src)
        }
    };
    let mut mounts = Vec::new();
    for m in &step.mounts {
        let src = match m {
            Mount::ReadOnly { src, .. } | Mount::Writable { src, .. } => Some(resolve_source(src)?),
            Mount::Tmpfs { .. } => None,
        };
        mounts.push(PlannedMount {
            src,
            dst: m.dst().to_path_buf(),
            writable: m.writable(),
        });
    }
    mounts.sort_by_key(|m| m.dst.components().count());

    if let Network::FixedOutput { output, .. } = &step.network {
        let parent = output.parent().and_then(|p| fs_err::canonicalize(p).ok());
        let inside =
            parent.is_some_and(|p| writable_host_paths(step).iter().any(|w| p.starts_with(w)));
        if !inside {
            return Err(SandboxError::OutputNotWritable {
                path: output.clone(),
            });
        }
    }

    let plan = MountPlan {
        root,
        mounts,
        hostname: step.hostname.clone(),
        new_net: matches!(step.network, Network::None),
    };
    let env = step.environment();
    let envp = env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}"), "environment"))
        .collect::<Result<_, _>>()?;
    let argv: Vec<CString> = step
        .argv
        .iter()
        .map(|a| cstring(a, "argument"))
        .collect::<Result<_, _>>()?;
    let exec_candidates = if step.argv[0].contains('/') {
        vec![argv[0].clone()]
    } else {
        env["PATH"]
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| {
                cstring(
                    format!("{}/{}", d.trim_end_matches('/'), step.argv[0]),
                    "PATH",
                )
            })
            .collect::<Result<_, _>>()?
    };
    let mut namespaces = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if plan.new_net {
        namespaces |= CloneFlags::CLONE_NEWNET;
    }
    Ok(Prepared {
        writable: plan.writable_paths(),
        require_landlock: step.require_landlock,
        plan,
        argv,
        envp,
        exec_candidates,
        cwd: step.cwd.clone(),
        keep_caps: step.capabilities.iter().copied().collect(),
        seccomp: seccomp::programs(if step.allow_setid {
            seccomp::SetId::Allow
        } else {
            seccomp::SetId::Deny
        })?,
        ids: step.ids,
        invoker,
        namespaces,
        parent_pid: nix::unistd::getpid(),
        stdin: step.stdin,
    })
}

/// The pipe ends the children use. Every descriptor is close-on-exec.
struct ChildIo {
    status: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// Subordinate mapping only: outer says "user namespace ready" here ...
    to_parent: Option<OwnedFd>,
    /// ... and waits for "maps installed" here.
    from_parent: Option<OwnedFd>,
    /// [`Input::Terminal`]: the slave side of the step's pseudo-terminal.
    terminal: Option<OwnedFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::Io {
        what: "create a pipe",
        source: e.into(),
    })
}

/// A failure inside the sandbox, on its way to the caller.
pub(crate) struct ChildError {
    stage: &'static str,
    path: String,
    errno: i32,
    detail: String,
}

impl ChildError {
    fn io(stage: &'static str, path: impl AsRef<Path>, e: impl Into<std::io::Error>) -> ChildError {
        let e = e.into();
        ChildError {
            stage,
            path: path.as_ref().display().to_string(),
            errno: e.raw_os_error().unwrap_or(0),
            detail: e.to_string(),
        }
    }

    fn other(stage: &'static str, detail: impl std::fmt::Display) -> ChildError {
        ChildError {
            stage,
            path: String::new(),
            errno: 0,
            detail: detail.to_string(),
        }
    }
}

fn send(io: &ChildIo, line: &str) {
    // One write of less than PIPE_BUF bytes: records from several processes never interleave.
    let mut bytes = line.as_bytes().to_vec();
    bytes.truncate(4000);
    bytes.push(b'\n');
    let _ = nix::unistd::write(io.status.as_fd(), &bytes);
}

fn send_error(io: &ChildIo, e: &ChildError) {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    send(
        io,
        &format!(
            "E {}\t{}\t{}\t{}",
            e.stage,
            e.errno,
            clean(&e.path),
            clean(&e.detail)
        ),
    );
}

/// Runs one step; see [`crate::run_with`].
pub(crate) fn run_with(
    step: &Step,
    sink: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Outcome, SandboxError> {
    let (invoker, ranges) = match step.ids {
        IdMapping::Subordinate => {
            let invoker = Invoker::current();
            let ranges = idmap::subordinate_ranges(&invoker)?;
            (invoker, Some(ranges))
        }
        IdMapping::SingleUser => (Invoker::ids_only(), None),
    };
    let prepared = prepare(step, invoker.clone())?;
    let mut log = match &step.log {
        Some(path) => Some(
            fs_err::File::create(path).map_err(|source| SandboxError::Log {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };

    let (status_r, status_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (master, slave) = match step.stdin {
        Input::Terminal => {
            let (m, s) = crate::pty::open().map_err(|source| SandboxError::Io {
                what: "open a pseudo-terminal for the step",
                source,
            })?;
            (Some(m), Some(s))
        }
        Input::Null | Input::Inherit => (None, None),
    };
    let (sync_up, sync_down) = if ranges.is_some() {
        let (up_r, up_w) = pipe()?;
        let (down_r, down_w) = pipe()?;
        (Some((up_r, up_w)), Some((down_r, down_w)))
    } else {
        (None, None)
    };

    let start = Instant::now();
    let child = crate::sys::fork().map_err(|source| SandboxError::Io {
        what: "fork",
        source,
    })?;
    let outer = match child {
        crate::sys::Forked::Child => {
            // The caller's ends of the pipes are not ours.
            drop((status_r, out_r, err_r, master));
            let io = ChildIo {
                terminal: slave,
                status: status_w,
                stdout: out_w,
                stderr: err_w,
                to_parent: sync_up.map(|(r, w)| {
                    drop(r);
                    w
                }),
                from_parent: sync_down.map(|(r, w)| {
                    drop(w);
                    r
                }),
            };
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| outer(&prepared, &io)));
            crate::sys::exit_now(match code {
                Ok(Ok(code)) => code,
                Ok(Err(e)) => {
                    send_error(&io, &e);
                    127
                }
                Err(_) => 127,
            });
        }
        crate::sys::Forked::Parent(pid) => Pid::from_raw(pid),
    };
    // Whatever happens from here on, the tree does not outlive this function.
    let mut reaper = Reaper(Some(outer));
    drop((status_w, out_w, err_w, slave));
    drop(prepared);
    // From here on the caller's terminal (if any) is raw until `forward` is dropped.
    let mut forward = master.map(crate::pty::Forward::new);

    // Subordinate ids: wait until outer has its user namespace, then install the maps.
    if let (Some((up_r, up_w)), Some((down_r, down_w))) = (sync_up, sync_down) {
        drop((up_w, down_r));
        let mut byte = [0u8];
        let ready = matches!(nix::unistd::read(up_r.as_fd(), &mut byte), Ok(1));
        if ready {
            if let Err(e) = idmap::install_subordinate(
                outer.as_raw(),
                &invoker,
                ranges.expect("subordinate ranges"),
            ) {
                return Err(e.into());
            }
            let _ = nix::unistd::write(down_w.as_fd(), b"1");
        }
        drop(down_w);
    }

    // Stream the step's output until every writer is gone; enforce the timeout.
    let deadline = step.timeout.map(|t| start + t);
    let mut timed_out = false;
    let mut records = Vec::new();
    let mut open = [Some(out_r), Some(err_r), Some(status_r)];
    let mut buf = vec![0u8; 64 * 1024];
    while open.iter().any(Option::is_some) {
        // A forwarded terminal's window size is looked at a few times a second.
        let most = match &forward {
            Some(f) if f.is_terminal() => 200,
            _ => 60_000,
        };
        let wait = match deadline {
            Some(d) if !timed_out => {
                let left = d.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left.as_millis().min(most) as u32 + 1)
                    .unwrap_or(PollTimeout::NONE)
            }
            _ if most < 60_000 => PollTimeout::from(most as u16),
            _ => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd> = open
            .iter()
            .flatten()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let pipes = fds.len();
        if let Some(f) = &forward {
            fds.extend(f.poll_fds());
        }
        match nix::poll::poll(&mut fds, wait) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(SandboxError::Io {
                    what: "poll the step's output",
                    source: e.into(),
                });
            }
        }
        let ready: Vec<bool> = fds[..pipes]
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        let terminal_events: Vec<PollFlags> = fds[pipes..]
            .iter()
            .map(|p| p.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if let Some(f) = forward.as_mut() {
            f.after_poll(&terminal_events, &mut |stream, bytes| {
                sink(stream, bytes);
                // Best effort: an interactive session is not failed by its log.
                if let Some(log) = log.as_mut() {
                    let _ = log.write_all(bytes);
                }
            });
        }
        let mut k = 0;
        for (slot, which) in open
            .iter_mut()
            .zip([Some(Stream::Stdout), Some(Stream::Stderr), None])
        {
            let Some(fd) = slot else { continue };
            let is_ready = ready[k];
            k += 1;
            if !is_ready {
                continue;
            }
            match nix::unistd::read(fd.as_fd(), &mut buf) {
                Ok(0) => *slot = None,
                Ok(n) => match which {
                    Some(stream) => {
                        sink(stream, &buf[..n]);
                        if let Some(log) = log.as_mut() {
                            log.write_all(&buf[..n])
                                .map_err(|source| SandboxError::Log {
                                    path: step.log.clone().unwrap_or_default(),
                                    source,
                                })?;
                        }
                    }
                    None => records.extend_from_slice(&buf[..n]),
                },
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(SandboxError::Io {
                        what: "read the step's output",
                        source: e.into(),
                    });
                }
            }
        }
        if let Some(d) = deadline
            && !timed_out
            && Instant::now() >= d
        {
            // Killing outer kills init (parent-death signal), which kills the namespace.
            let _ = nix::sys::signal::kill(outer, Signal::SIGKILL);
            timed_out = true;
        }
    }
    reaper.wait();
    let duration = start.elapsed();
    // What the step wrote to its terminal last; then the caller's terminal is restored.
    if let Some(mut f) = forward.take() {
        f.drain(&mut |stream, bytes| {
            sink(stream, bytes);
            if let Some(log) = log.as_mut() {
                let _ = log.write_all(bytes);
            }
        });
    }

    // Read the records.
    let mut landlock = LandlockStatus::NotEnforced;
    let mut status = None;
    for line in String::from_utf8_lossy(&records).lines() {
        if let Some(rest) = line.strip_prefix("E ") {
            let mut f = rest.splitn(4, '\t');
            let (stage, errno, path, detail) = (
                f.next().unwrap_or(""),
                f.next().unwrap_or("0"),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
            );
            return Err(SandboxError::setup(
                stage,
                errno.parse().unwrap_or(0),
                path,
                detail,
            ));
        } else if let Some(rest) = line.strip_prefix("L ") {
            landlock = LandlockStatus::parse(rest);
        } else if let Some(code) = line.strip_prefix("X ") {
            status = code.parse().ok().map(ExitStatus::Code);
        } else if let Some(sig) = line.strip_prefix("S ") {
            status = sig.parse().ok().map(ExitStatus::Signal);
        }
    }
    let status = match (timed_out, status) {
        (true, _) => ExitStatus::TimedOut,
        (false, Some(s)) => s,
        (false, None) => return Err(SandboxError::Died),
    };
    if step.require_landlock && landlock != LandlockStatus::FullyEnforced {
        return Err(SandboxError::LandlockRequired { status: landlock });
    }
    let outcome = Outcome {
        status,
        landlock,
        duration,
    };

    // The second wall behind the filter's set-id rule: whatever the step left in the
    // writable places carries no set-user-id or set-group-id bit.
    if !step.allow_setid {
        for dir in writable_host_paths(step) {
            crate::setid::strip(&dir)?;
        }
    }
    if let Network::FixedOutput { output, sha256 } = &step.network {
        check_fixed_output(output, sha256, outcome.success())?;
    }
    Ok(outcome)
}

/// Kills and reaps the outer process when dropped before [`Reaper::wait`] (an error or a
/// panic in the caller's loop).
struct Reaper(Option<Pid>);

impl Reaper {
    /// Waits for the outer process to end by itself.
    fn wait(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// The definition of a fixed output: `output` must be a regular file (not a symlink) whose
/// bytes hash to `expected` with SHA-256. Anything else removes it.
fn check_fixed_output(
    output: &Path,
    expected: &str,
    step_succeeded: bool,
) -> Result<(), SandboxError> {
    let remove = || match fs_err::symlink_metadata(output) {
        Ok(m) if m.is_dir() => fs_err::remove_dir_all(output),
        Ok(_) => fs_err::remove_file(output),
        Err(_) => Ok(()),
    };
    if !step_succeeded {
        remove().map_err(|source| SandboxError::Output {
            path: output.to_path_buf(),
            source,
        })?;
        return Ok(());
    }
    let meta = fs_err::symlink_metadata(output);
    if !meta.as_ref().is_ok_and(|m| m.is_file()) {
        let _ = remove();
        return Err(SandboxError::OutputMissing {
            path: output.to_path_buf(),
        });
    }
    let mut file = fs_err::File::open(output).map_err(|source| SandboxError::Output {
        path: output.to_path_buf(),
        source,
    })?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| SandboxError::Output {
        path: output.to_path_buf(),
        source,
    })?;
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        remove().map_err(|source| SandboxError::Output {
            path: output.to_path_buf(),
            source,
        })?;
        return Err(SandboxError::OutputMismatch(Box::new(
            crate::OutputMismatch {
                path: output.to_path_buf(),
                expected: expected.to_string(),
                actual,
            },
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Inside: the three sandbox processes.

/// The outer process: ids → namespaces → fork init; then waits for init and exits with it.
fn outer(p: &Prepared, io: &ChildIo) -> Result<i32, ChildError> {
    // Die with the caller, and make sure it did not die before this was set.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| ChildError::io("set parent-death signal", "", e))?;
    if nix::unistd::getppid() != p.parent_pid {
        return Ok(127);
    }

    // Only this run's pipes stay open: a descriptor of another step that a concurrent thread
    // of the caller is starting would otherwise stay open here until this step ends, and that
    // step's caller would wait for its end-of-file as long.
    let mut keep = vec![
        0,
        1,
        2,
        io.status.as_raw_fd(),
        io.stdout.as_raw_fd(),
        io.stderr.as_raw_fd(),
    ];
    keep.extend(
        io.to_parent
            .iter()
            .chain(&io.from_parent)
            .chain(&io.terminal)
            .map(|fd| fd.as_raw_fd()),
    );
    crate::sys::close_all_but(&keep)
        .map_err(|e| ChildError::io("close inherited descriptors", "", e))?;

    // Ids: a new user namespace, in which root is the invoking user.
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| ChildError::io("create user namespace", "", e))?;
    match p.ids {
        IdMapping::SingleUser => {
            let (uid_map, gid_map) = idmap::single_user_maps(&p.invoker);
            let write = |file: &str, data: &str| {
                fs_err::write(file, data).map_err(|e| ChildError::io("write", file, e))
            };
            write("/proc/self/uid_map", &uid_map)?;
            // Unprivileged gid maps require giving up setgroups(2).
            write("/proc/self/setgroups", "deny")?;
            write("/proc/self/gid_map", &gid_map)?;
        }
        IdMapping::Subordinate => {
            let (Some(up), Some(down)) = (&io.to_parent, &io.from_parent) else {
                return Err(ChildError::other("synchronise id mapping", "missing pipe"));
            };
            nix::unistd::write(up.as_fd(), b"1")
                .map_err(|e| ChildError::io("signal the caller", "", e))?;
            let mut byte = [0u8];
            if !matches!(nix::unistd::read(down.as_fd(), &mut byte), Ok(1)) {
                // The caller reported the failure itself.
                return Ok(127);
            }
            // Host supplementary groups mean nothing inside; drop them.
            nix::unistd::setgroups(&[])
                .map_err(|e| ChildError::io("drop supplementary groups", "", e))?;
        }
    }
    let root = nix::unistd::Uid::from_raw(0);
    let root_gid = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .map_err(|e| ChildError::io("become root group", "", e))?;
    nix::unistd::setresuid(root, root, root).map_err(|e| ChildError::io("become root", "", e))?;

    // The other namespaces; the next child is pid 1 of the new pid namespace.
    nix::sched::unshare(p.namespaces).map_err(|e| ChildError::io("create namespaces", "", e))?;
    let (alive_r, alive_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ChildError::io("create a pipe", "", e))?;
    match crate::sys::fork().map_err(|e| ChildError::io("fork init", "", e))? {
        crate::sys::Forked::Child => {
            drop(alive_w);
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| init(p, io, alive_r)));
            crate::sys::exit_now(match code {
                Ok(Ok(code)) => code,
                Ok(Err(e)) => {
                    send_error(io, &e);
                    127
                }
                Err(_) => 127,
            });
        }
        crate::sys::Forked::Parent(pid) => {
            drop(alive_r);
            let status = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            drop(alive_w);
            Ok(match status {
                Ok(WaitStatus::Exited(_, code)) => code,
                _ => 127,
            })
        }
    }
}

/// Signals init passes on to the step.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Pid 1: mounts → pivot_root → /proc → names, then fork the step and be its init.
fn init(p: &Prepared, io: &ChildIo, alive: OwnedFd) -> Result<i32, ChildError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| ChildError::io("set parent-death signal", "", e))?;
    let mut poll = [PollFd::new(alive.as_fd(), PollFlags::POLLIN)];
    if nix::poll::poll(&mut poll, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        return Ok(127); // outer is already gone
    }
    // The step must not read init's memory (its environment is the caller's).
    nix::sys::prctl::set_dumpable(false).map_err(|e| ChildError::io("set non-dumpable", "", e))?;

    // Mounts, pivot_root, /proc, host name, loopback.
    setup::build_root(&p.plan, &mut setup::RealOps)
        .map_err(|e| ChildError::io(e.stage, &e.path, e.source))?;

    // Block what init handles before the step exists, so that nothing is lost.
    let mut handled = SigSet::empty();
    handled.add(Signal::SIGCHLD);
    for s in FORWARDED {
        handled.add(s);
    }
    handled
        .thread_block()
        .map_err(|e| ChildError::io("block signals", "", e))?;

    let step = match crate::sys::fork().map_err(|e| ChildError::io("fork the step", "", e))? {
        crate::sys::Forked::Child => {
            drop(alive);
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exec_step(p, io)));
            if let Ok(Err(e)) = result {
                send_error(io, &e);
            }
            crate::sys::exit_now(127);
        }
        crate::sys::Forked::Parent(pid) => Pid::from_raw(pid),
    };
    // Reap every child; pass signals on; end when the step has ended (the kernel then kills
    // whatever it left behind).
    loop {
        let sig = handled
            .wait()
            .map_err(|e| ChildError::io("wait for signals", "", e))?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(Pid::from_raw(-step.as_raw()), sig);
            continue;
        }
        loop {
            match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == step => {
                    send(io, &format!("X {code}"));
                    return Ok(code);
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == step => {
                    send(io, &format!("S {}", sig as i32));
                    return Ok(128 + sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// The step: drop privileges → no_new_privs → landlock → seccomp → exec.
fn exec_step(p: &Prepared, io: &ChildIo) -> Result<(), ChildError> {
    // A clean signal state and a session of its own (no controlling terminal).
    SigSet::all()
        .thread_unblock()
        .map_err(|e| ChildError::io("unblock signals", "", e))?;
    crate::sys::reset_signal_dispositions().map_err(|e| ChildError::io("reset signals", "", e))?;
    nix::unistd::setsid().map_err(|e| ChildError::io("create session", "", e))?;

    // Standard input is /dev/null, the caller's (a pipe or file), or the step's own
    // pseudo-terminal, which is then also its output and its controlling terminal (before
    // seccomp, and in this new session). Output goes to the caller's pipes otherwise.
    match (p.stdin, &io.terminal) {
        (Input::Terminal, Some(tty)) => {
            crate::sys::set_controlling_terminal(tty.as_fd())
                .map_err(|e| ChildError::io("take the terminal", "", e))?;
            nix::unistd::dup2_stdin(tty).map_err(|e| ChildError::io("redirect stdin", "", e))?;
            nix::unistd::dup2_stdout(tty).map_err(|e| ChildError::io("redirect stdout", "", e))?;
            nix::unistd::dup2_stderr(tty).map_err(|e| ChildError::io("redirect stderr", "", e))?;
        }
        (stdin, _) => {
            if stdin != Input::Inherit {
                let null = fs_err::File::open("/dev/null")
                    .map_err(|e| ChildError::io("open", "/dev/null", e))?;
                nix::unistd::dup2_stdin(&null)
                    .map_err(|e| ChildError::io("redirect stdin", "/dev/null", e))?;
            }
            nix::unistd::dup2_stdout(&io.stdout)
                .map_err(|e| ChildError::io("redirect stdout", "", e))?;
            nix::unistd::dup2_stderr(&io.stderr)
                .map_err(|e| ChildError::io("redirect stderr", "", e))?;
        }
    }

    // Fixed umask and working directory; no core dumps (the host's core_pattern would
    // handle them, outside the sandbox).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::unistd::chdir(&p.cwd).map_err(|e| ChildError::io("change directory to", &p.cwd, e))?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| ChildError::io("disable core dumps", "", e))?;

    // Drop privileges: root inside keeps only the step's capabilities.
    walls::drop_capabilities(&p.keep_caps)
        .map_err(|e| ChildError::other("drop capabilities", e))?;

    // no_new_privs: no setuid bit or file capability can raise privileges again. (Needed
    // before landlock and seccomp, which an unprivileged process may only install with it.)
    nix::sys::prctl::set_no_new_privs().map_err(|e| ChildError::io("set no_new_privs", "", e))?;

    // Landlock: reads beneath /, writes only beneath the writable paths.
    let landlock = walls::landlock(&p.writable).map_err(|e| ChildError::other("landlock", e))?;

    // Seccomp.
    seccomp::install(&p.seccomp).map_err(|e| ChildError::other("install seccomp filter", e))?;

    // Nothing the caller had open may reach the step.
    crate::sys::cloexec_from(3).map_err(|e| ChildError::io("close descriptors", "", e))?;
    send(io, &format!("L {}", landlock.as_str()));
    if p.require_landlock && landlock != LandlockStatus::FullyEnforced {
        // The caller turns the record above into the error; the command never starts.
        return Ok(());
    }

    // Exec, searching PATH inside the sandbox.
    let mut last = nix::errno::Errno::ENOENT;
    for candidate in &p.exec_candidates {
        let Err(e) = nix::unistd::execve(candidate, &p.argv, &p.envp);
        if !matches!(
            e,
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR | nix::errno::Errno::EACCES
        ) {
            return Err(ChildError::io(
                "execute",
                candidate.to_string_lossy().as_ref(),
                e,
            ));
        }
        if last == nix::errno::Errno::ENOENT {
            last = e;
        }
    }
    Err(ChildError::io(
        "execute",
        p.argv[0].to_string_lossy().as_ref(),
        last,
    ))
}

/// The build executor runs steps from worker threads.
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Step>();
    is_send::<Outcome>();
}

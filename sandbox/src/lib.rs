//! Runs one build step of hermetic in an unprivileged Linux sandbox.
//!
//! All `unsafe` code of the project lives in this crate, and all of it in `sys`.
//!
//! A map of the crate:
//! - [`step`]: [`Step`], the description of a step (root, mounts, environment, network, ids).
//! - `run`: the caller's side (fork, id maps, output streaming, timeout, fixed-output check)
//!   and the three processes inside: outer (namespaces), init (pid 1: mounts, pivot_root,
//!   /proc; reaps and forwards signals), and the step (privileges, Landlock, seccomp, exec).
//! - `pty`: the caller's side of a step's own pseudo-terminal ([`Input::Terminal`]): raw
//!   mode, forwarding both ways, window size.
//! - `setup`: the mount plan, built behind a trait so that it is unit-tested with a recorder.
//! - [`idmap`]: single-user and subordinate (`/etc/subuid`, `newuidmap`) id mappings.
//! - [`seccomp`]: the deny list and why each entry is on it.
//! - [`setid`]: after a step, set-id bits are cleared beneath its writable mounts.
//! - `walls`: capabilities and Landlock.
//! - [`mod@doctor`]: what this host supports, with hints; [`preflight`] for commands to fail early.
//!
//! ```no_run
//! let mut step = sandbox::Step::new(["sh", "-c", "echo hello > /out/greeting"]);
//! step.mounts.push(sandbox::Mount::Writable { src: "/tmp/out".into(), dst: "/out".into() });
//! let outcome = sandbox::run(&step)?;
//! assert!(outcome.success());
//! # Ok::<(), sandbox::SandboxError>(())
//! ```
//!
//! `run` forks: call it from a thread that lives until it returns (the step is killed when the
//! forking thread exits, through `PR_SET_PDEATHSIG`).

use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

pub mod doctor;
pub mod idmap;
mod pty;
mod run;
pub mod seccomp;
pub mod setid;
mod setup;
pub mod step;
mod sys;
mod walls;

pub use doctor::{Check, doctor, preflight};
pub use step::{Capability, IdMapping, Input, Mount, Network, Output, RootSpec, Step};

/// How the step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// The timeout elapsed; the whole process tree was killed.
    TimedOut,
}

/// What the kernel enforced of the sandbox's Landlock rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockStatus {
    FullyEnforced,
    PartiallyEnforced,
    NotEnforced,
}

impl LandlockStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LandlockStatus::FullyEnforced => "fully-enforced",
            LandlockStatus::PartiallyEnforced => "partially-enforced",
            LandlockStatus::NotEnforced => "not-enforced",
        }
    }

    fn parse(s: &str) -> LandlockStatus {
        match s.trim() {
            "fully-enforced" => LandlockStatus::FullyEnforced,
            "partially-enforced" => LandlockStatus::PartiallyEnforced,
            _ => LandlockStatus::NotEnforced,
        }
    }
}

impl fmt::Display for LandlockStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of a step that ran.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: ExitStatus,
    pub landlock: LandlockStatus,
    /// From the fork to the end of the last process.
    pub duration: Duration,
}

impl Outcome {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Code(0)
    }

    /// The status as a shell reports it: the code, 128 + signal, or 124 for a timeout (as
    /// `timeout(1)` does).
    pub fn shell_code(&self) -> i32 {
        match self.status {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
            ExitStatus::TimedOut => 124,
        }
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Why a step could not run (a step that ran and failed is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Step(#[from] step::StepError),
    #[error(transparent)]
    IdMap(#[from] idmap::IdMapError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("cannot open mount source {path}", path = path.display())]
    Source {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use {path} as the sandbox's root", path = path.display())]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the log {path}", path = path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {what}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Setup(Box<SetupFailure>),
    #[error("the sandbox's init ended without reporting the step's status")]
    Died,
    #[error(
        "landlock is {status}, and the step requires it fully enforced\nhint: Landlock needs Linux 5.13 or newer with `landlock` in the `lsm=` boot parameter; full enforcement of this sandbox's rules needs ABI 6 (Linux 6.12); `hermetic doctor` shows the ABI"
    )]
    LandlockRequired { status: LandlockStatus },
    #[error("the fixed output {path} is not beneath a writable mount of the step", path = path.display())]
    OutputNotWritable { path: PathBuf },
    #[error("the fixed-output step did not leave a regular file at {path}; nothing was kept", path = path.display())]
    OutputMissing { path: PathBuf },
    #[error("cannot check the fixed output {path}", path = path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    OutputMismatch(Box<OutputMismatch>),
    #[error(transparent)]
    SetId(#[from] setid::SetIdError),
}

/// A set-up step inside the sandbox that failed: what, on which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("sandbox set-up failed: {stage} {path}: {detail}{hint}", path = if path.is_empty() { "(no path)" } else { path })]
pub struct SetupFailure {
    pub stage: String,
    pub path: String,
    pub detail: String,
    /// Empty, or `\nhint: ...`.
    pub hint: String,
}

/// A fixed output whose hash is not the declared one (it has been removed).
#[derive(Debug, thiserror::Error)]
#[error("{path} has SHA-256 {actual}, but the step declared {expected}; the output was removed\nhint: if the new content is expected (an upstream re-release), update the declared hash after checking it", path = path.display())]
pub struct OutputMismatch {
    pub path: PathBuf,
    pub expected: String,
    pub actual: String,
}

impl SandboxError {
    fn setup(stage: &str, errno: i32, path: &str, detail: &str) -> SandboxError {
        let hint = doctor::hint_for(stage, errno)
            .map(|h| format!("\nhint: {h}"))
            .unwrap_or_default();
        SandboxError::Setup(Box::new(SetupFailure {
            stage: stage.to_string(),
            path: path.to_string(),
            detail: detail.to_string(),
            hint,
        }))
    }
}

/// Runs `step` and waits for it, copying its output as [`Step::output`] says and to
/// [`Step::log`].
pub fn run(step: &Step) -> Result<Outcome, SandboxError> {
    let inherit = step.output == Output::Inherit;
    run_with(step, &mut |stream, bytes| {
        if !inherit {
            return;
        }
        // The caller's terminal going away must not fail the step.
        let _ = match stream {
            Stream::Stdout => std::io::stdout().lock().write_all(bytes),
            Stream::Stderr => std::io::stderr().lock().write_all(bytes),
        };
    })
}

/// Runs `step`, handing each chunk of its output to `sink` as it arrives (and to
/// [`Step::log`]); [`Step::output`] is ignored.
pub fn run_with(step: &Step, sink: &mut dyn FnMut(Stream, &[u8])) -> Result<Outcome, SandboxError> {
    run::run_with(step, sink)
}

/// Lets `SIGPIPE` end the process quietly, as it does for C programs: Rust ignores it, so
/// `hermetic plan gcp | head` would otherwise fail writing to the closed pipe with a panic.
/// For a command-line program's `main`, before anything is written; the sandbox's own
/// children set their signal dispositions themselves.
pub fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing SIG_DFL runs no code of ours in a signal handler; called before any
    // thread is started.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

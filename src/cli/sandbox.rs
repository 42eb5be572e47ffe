//! `hermetic sandbox`: run a command in the build sandbox, for debugging and tests.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sandbox::{ExitStatus, IdMapping, Mount, Network, Output, RootSpec, Step, Stream};

use super::Context;

/// Run a command in the build sandbox (for debugging and tests).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: SandboxCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Run CMD in a new sandbox: new user, mount, pid, network, UTS, IPC and cgroup namespaces,
    /// only the declared mounts, a fixed environment, seccomp and Landlock.
    ///
    /// The exit code is CMD's (128 + N when a signal N killed it, 124 when --timeout elapsed).
    /// Without --root or --writable-root, `/` shows the host's /usr read-only (with the /bin,
    /// /lib... links and a minimal /etc): FOR TESTING ONLY, builds never run on it.
    /// With --json, CMD's standard output goes to standard error and standard output carries
    /// only the outcome as JSON.
    ///
    /// CMD cannot create set-user-id or set-group-id files (chmod u+s fails with EPERM) nor
    /// set file capabilities (extended attributes answer EOPNOTSUPP), and after it ends both
    /// are cleared from every regular file beneath the --rw sources and the writable root;
    /// there is deliberately no option to allow them here (only the image steps of `hermetic
    /// build`, whose trees stay in the store's private directories, may).
    Run(RunArgs),
}

/// The arguments of `hermetic sandbox run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A read-only tree used as `/` (e.g. a tools tree).
    #[arg(long, value_name = "DIR", conflicts_with = "writable_root")]
    pub root: Option<PathBuf>,

    /// A writable tree used as `/` (e.g. a tree dpkg installs into).
    #[arg(long, value_name = "DIR")]
    pub writable_root: Option<PathBuf>,

    /// Bind host SRC read-only at DST inside (default: the same path). Repeatable.
    #[arg(long = "ro", value_name = "SRC[:DST]")]
    pub ro: Vec<String>,

    /// Bind host SRC writable at DST inside (default: the same path). Repeatable.
    #[arg(long = "rw", value_name = "SRC[:DST]")]
    pub rw: Vec<String>,

    /// An empty writable tmpfs at DST inside. Repeatable.
    #[arg(long = "tmpfs", value_name = "DST")]
    pub tmpfs: Vec<PathBuf>,

    /// Declare an environment variable. Repeatable. Nothing else of the host's environment
    /// enters; SOURCE_DATE_EPOCH, TZ=UTC, LC_ALL and LANG=C.UTF-8 are fixed, PATH, HOME and
    /// TMPDIR have defaults.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,

    /// Working directory inside.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub cwd: PathBuf,

    /// Keep the host network, as a fixed-output step: --output must then be a regular file
    /// with this SHA-256 after CMD succeeds, or it is removed and the command fails.
    #[arg(long, value_name = "SHA256", requires = "output")]
    pub net_fixed_output: Option<String>,

    /// The host path of the fixed output (beneath a --rw source or the writable root).
    #[arg(long, value_name = "PATH", requires = "net_fixed_output")]
    pub output: Option<PathBuf>,

    /// Kill the whole process tree after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,

    /// Map ids 1-65535 inside to the invoking user's range in /etc/subuid and /etc/subgid
    /// (needed to chown, e.g. by dpkg). Without it, root inside is the only id.
    #[arg(long)]
    pub subids: bool,

    /// Fail unless the kernel fully enforces the sandbox's Landlock rules.
    #[arg(long)]
    pub require_landlock: bool,

    /// Host name inside.
    #[arg(long, value_name = "NAME", default_value = "hermetic")]
    pub hostname: String,

    /// The value of SOURCE_DATE_EPOCH inside.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub source_date_epoch: u64,

    /// Also write CMD's output to this file.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Pass standard input to CMD: a terminal through a pseudo-terminal of its own (job
    /// control and line editing work, `TERM` is passed), a pipe or file as it is. The
    /// default when standard input is a terminal; otherwise CMD reads /dev/null.
    #[arg(short = 'i', long = "stdin")]
    pub stdin: bool,

    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs `hermetic sandbox`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        SandboxCommand::Run(run_args) => run_step(ctx, run_args),
    }
}

/// `SRC[:DST]` → (SRC, DST); DST defaults to SRC, which must then be absolute.
fn split_bind(spec: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (src, dst) = match spec.split_once(':') {
        Some((s, d)) => (PathBuf::from(s), PathBuf::from(d)),
        None => (PathBuf::from(spec), PathBuf::from(spec)),
    };
    if !dst.is_absolute() {
        return Err(crate::error::Hinted {
            message: format!("{spec}: the destination inside must be absolute"),
            hint: "write SRC:/path/inside".into(),
            subject: crate::error::Subject::file(dst),
        }
        .into());
    }
    Ok((src, dst))
}

fn build_step(args: RunArgs) -> anyhow::Result<Step> {
    let mut step = Step::new(args.command);
    step.root = match (args.root, args.writable_root) {
        (Some(dir), _) => RootSpec::ReadOnly(dir),
        (None, Some(dir)) => RootSpec::Writable(dir),
        (None, None) => RootSpec::HostUsr,
    };
    for spec in &args.ro {
        let (src, dst) = split_bind(spec)?;
        step.mounts.push(Mount::ReadOnly { src, dst });
    }
    for spec in &args.rw {
        let (src, dst) = split_bind(spec)?;
        step.mounts.push(Mount::Writable { src, dst });
    }
    for dst in args.tmpfs {
        step.mounts.push(Mount::Tmpfs { dst });
    }
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv}: expected K=V"))?;
        step.env.insert(k.to_string(), v.to_string());
    }
    step.cwd = args.cwd;
    if let (Some(sha256), Some(output)) = (args.net_fixed_output, args.output) {
        let output =
            std::path::absolute(&output).with_context(|| format!("{}", output.display()))?;
        step.network = Network::FixedOutput { output, sha256 };
    }
    if let Some(secs) = args.timeout {
        if !(secs.is_finite() && secs > 0.0) {
            bail!("--timeout {secs}: expected a positive number of seconds");
        }
        step.timeout = Some(Duration::from_secs_f64(secs));
    }
    step.ids = if args.subids {
        IdMapping::Subordinate
    } else {
        IdMapping::SingleUser
    };
    step.require_landlock = args.require_landlock;
    step.hostname = args.hostname;
    step.source_date_epoch = args.source_date_epoch;
    step.log = args.log;
    step.stdin = crate::shell::input_mode(args.stdin);
    if step.stdin == sandbox::Input::Terminal {
        crate::shell::pass_term(&mut step);
    }
    Ok(step)
}

fn run_step(ctx: &Context, args: RunArgs) -> anyhow::Result<ExitCode> {
    let step = build_step(args)?;
    // No separate preflight: a failing set-up reports the same hint at once.
    let json = ctx.json;
    let outcome = sandbox::run_with(&step, &mut |stream, bytes| {
        let _ = match (stream, json) {
            // Flushed at once: a prompt has no newline.
            (Stream::Stdout, false) => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            _ => std::io::stderr().lock().write_all(bytes),
        };
    })?;
    debug_assert_eq!(step.output, Output::Inherit);
    if json {
        let status = match outcome.status {
            ExitStatus::Code(c) => serde_json::json!({ "exit_code": c }),
            ExitStatus::Signal(s) => serde_json::json!({ "signal": s }),
            ExitStatus::TimedOut => serde_json::json!({ "timed_out": true }),
        };
        let v = serde_json::json!({
            "status": status,
            "landlock": outcome.landlock.as_str(),
            "duration_ms": outcome.duration.as_millis() as u64,
        });
        println!("{v}");
    } else if ctx.verbosity >= 1 {
        eprintln!(
            "sandbox: {:?}, landlock {}, {} ms",
            outcome.status,
            outcome.landlock,
            outcome.duration.as_millis()
        );
    }
    if outcome.status == ExitStatus::TimedOut && ctx.verbosity >= 0 {
        eprintln!(
            "error: the step did not finish within {} s; its processes were killed",
            step.timeout.unwrap_or_default().as_secs_f64()
        );
    }
    Ok(ExitCode::from((outcome.shell_code() & 0xff) as u8))
}

//! What a build step is: the description the build executor hands to [`crate::run`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub use caps::Capability;

/// The directory tree that becomes `/` inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSpec {
    /// A read-only tree (a tools tree from the store). `/` is a small read-only tmpfs holding
    /// one read-only bind mount per top-level entry of the tree (symlinks are copied), plus
    /// the sandbox's own `/dev`, `/proc` and `/tmp`; mount points for [`Mount`]s below the
    /// top level must already exist in the tree.
    ReadOnly(PathBuf),
    /// A writable tree bound as `/` itself, e.g. the target tree that `dpkg` installs into.
    /// Missing mount points (`/dev`, `/proc`, `/tmp`, the destinations of [`Mount`]s) are
    /// created in it as empty directories (or empty files) owned by the mapped root.
    Writable(PathBuf),
    /// For tests and debugging only: a read-only view of the host's `/usr` with the
    /// merged-`/usr` symlinks `/bin`, `/sbin`, `/lib`, `/lib64`, and a generated `/etc`
    /// holding only `passwd` and `group`. Builds never use this: it is not pinned.
    HostUsr,
}

/// One more directory (or file) made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// `src` on the host, read-only at `dst` (recursively, with nosuid and nodev).
    ReadOnly { src: PathBuf, dst: PathBuf },
    /// `src` on the host, writable at `dst` (nosuid, nodev).
    Writable { src: PathBuf, dst: PathBuf },
    /// An empty writable tmpfs at `dst`.
    Tmpfs { dst: PathBuf },
}

impl Mount {
    /// Where the mount appears inside the sandbox.
    pub fn dst(&self) -> &Path {
        match self {
            Mount::ReadOnly { dst, .. } | Mount::Writable { dst, .. } | Mount::Tmpfs { dst } => dst,
        }
    }

    /// Whether the step may write beneath [`Mount::dst`].
    pub fn writable(&self) -> bool {
        !matches!(self, Mount::ReadOnly { .. })
    }
}

/// The network a step gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// A new network namespace with only the loopback interface (up). The default.
    #[default]
    None,
    /// A fixed-output step (a download): it keeps the host's network namespace, and its
    /// result must be the single regular file `output` (a host path beneath one of the step's
    /// writable mounts or its writable root) whose SHA-256 is `sha256` (64 lowercase hex
    /// digits). After the step the file is hashed; on a mismatch, a failed step, or a missing
    /// or non-regular file, the output is removed and [`crate::run`] fails.
    FixedOutput { output: PathBuf, sha256: String },
}

/// How user and group ids inside the sandbox map to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdMapping {
    /// Root inside is the invoking user; no other id exists inside (`chown` to another id
    /// fails with EINVAL). Needs nothing but unprivileged user namespaces.
    #[default]
    SingleUser,
    /// Root inside is the invoking user, and ids 1..=65535 inside map to the invoking user's
    /// subordinate range from `/etc/subuid` and `/etc/subgid` (set up with `newuidmap` and
    /// `newgidmap`). Needed by `dpkg`, which chowns files to system users.
    Subordinate,
}

/// Where the step's standard output and error go (they always go to [`Step::log`] too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Copied to this process's standard output and standard error as they arrive.
    #[default]
    Inherit,
    /// Only to the log (and to the callback of [`crate::run_with`]).
    LogOnly,
}

/// What the step reads on standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Input {
    /// `/dev/null`. The default: a build step reads nothing.
    #[default]
    Null,
    /// The caller's standard input as it is (a pipe, a file): `echo ls | hermetic shell`.
    /// For a terminal use [`Input::Terminal`], so that the step never holds the caller's own
    /// terminal.
    Inherit,
    /// A new pseudo-terminal is the step's standard input, output and error and its
    /// controlling terminal (job control and line editing work). The caller's standard
    /// input is forwarded to it (its terminal put in raw mode meanwhile, and its window size
    /// followed); what the step writes arrives as [`crate::Stream::Stdout`].
    Terminal,
}

/// The number of ids inside a [`IdMapping::Subordinate`] sandbox (0..=65535).
pub const SUBORDINATE_IDS: u32 = 65536;

/// `PATH` inside the sandbox unless the step declares another.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `HOME` inside the sandbox unless the step declares another: a directory that does not
/// exist, so that a tool reading or writing dot-files fails loudly instead of depending on
/// them.
pub const DEFAULT_HOME: &str = "/homeless";

/// Variables a step may not declare because the sandbox fixes them.
pub const FIXED_VARIABLES: [&str; 4] = ["SOURCE_DATE_EPOCH", "TZ", "LC_ALL", "LANG"];

/// One build step: a command and the exact world it runs in.
#[derive(Debug, Clone)]
pub struct Step {
    /// The command; `argv[0]` is looked up in the step's `PATH` unless it contains a `/`.
    pub argv: Vec<String>,
    /// What becomes `/`.
    pub root: RootSpec,
    /// Further mounts, made in order of destination depth (parents first).
    pub mounts: Vec<Mount>,
    /// Declared environment variables. The sandbox adds `SOURCE_DATE_EPOCH`, `TZ=UTC`,
    /// `LC_ALL=C.UTF-8`, `LANG=C.UTF-8`, and `PATH`, `HOME`, `TMPDIR` unless declared here.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the sandbox (must exist there).
    pub cwd: PathBuf,
    pub network: Network,
    /// The whole process tree is killed when this elapses.
    pub timeout: Option<Duration>,
    pub ids: IdMapping,
    /// A file that receives the step's standard output and error, interleaved as they arrive.
    pub log: Option<PathBuf>,
    /// Host name inside (the NIS domain name is always `(none)`).
    pub hostname: String,
    /// The value of `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: u64,
    /// Fail unless the kernel fully enforces the sandbox's Landlock rules.
    pub require_landlock: bool,
    /// The capabilities root inside keeps (in its user namespace only). See
    /// [`Step::default_capabilities`].
    pub capabilities: caps::CapsHashSet,
    pub output: Output,
    /// Standard input (and, for [`Input::Terminal`], a terminal for the output too).
    pub stdin: Input,
    /// Let the step create set-user-id and set-group-id files. Dangerous: root inside is the
    /// invoking user outside, so a set-id file left in a writable mount is a set-id program of
    /// that user (of the host's root when hermetic runs as root) for everyone who can reach
    /// it; the same goes for file capabilities. Off by default: the filter then refuses modes
    /// with `S_ISUID`/`S_ISGID` and setting extended attributes, and after the step the bits
    /// and `security.capability` are cleared from every regular file beneath the writable
    /// mounts and a writable root. Only image-tree steps whose tree is kept where other users cannot
    /// reach it (the store's 0700 step directories) turn it on.
    pub allow_setid: bool,
}

impl Step {
    /// A step running `argv` with every other setting at its default: the host's `/usr`
    /// (testing only), no mounts, no declared variables, `/` as working directory, no network,
    /// no timeout, single-user mapping, host name `hermetic`, `SOURCE_DATE_EPOCH=0`.
    pub fn new<I, S>(argv: I) -> Step
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Step {
            argv: argv.into_iter().map(Into::into).collect(),
            root: RootSpec::HostUsr,
            mounts: Vec::new(),
            env: BTreeMap::new(),
            cwd: PathBuf::from("/"),
            network: Network::None,
            timeout: None,
            ids: IdMapping::SingleUser,
            log: None,
            hostname: "hermetic".to_string(),
            source_date_epoch: 0,
            require_landlock: false,
            capabilities: Step::default_capabilities(),
            output: Output::Inherit,
            stdin: Input::Null,
            allow_setid: false,
        }
    }

    /// What root inside keeps by default: enough for `dpkg` and maintainer scripts to own
    /// files, set modes and file capabilities, switch to system users and `chroot`; nothing
    /// that administers the namespaces themselves (no `CAP_SYS_ADMIN`, `CAP_NET_ADMIN`,
    /// `CAP_SYS_PTRACE`, `CAP_MKNOD`, `CAP_NET_RAW`, `CAP_DAC_READ_SEARCH`, `CAP_SETPCAP`).
    pub fn default_capabilities() -> caps::CapsHashSet {
        use Capability::*;
        [
            CAP_CHOWN,
            CAP_DAC_OVERRIDE,
            CAP_FOWNER,
            CAP_FSETID,
            CAP_KILL,
            CAP_SETGID,
            CAP_SETUID,
            CAP_SETFCAP,
            CAP_SYS_CHROOT,
            CAP_NET_BIND_SERVICE,
        ]
        .into_iter()
        .collect()
    }

    /// The complete environment of the step, sorted by name.
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
        env.insert("HOME".to_string(), DEFAULT_HOME.to_string());
        env.insert("TMPDIR".to_string(), "/tmp".to_string());
        for (k, v) in &self.env {
            env.insert(k.clone(), v.clone());
        }
        env.insert(
            "SOURCE_DATE_EPOCH".to_string(),
            self.source_date_epoch.to_string(),
        );
        env.insert("TZ".to_string(), "UTC".to_string());
        env.insert("LC_ALL".to_string(), "C.UTF-8".to_string());
        env.insert("LANG".to_string(), "C.UTF-8".to_string());
        env
    }

    /// Checks everything that can be checked without touching the system.
    pub fn validate(&self) -> Result<(), StepError> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(StepError::NoCommand);
        }
        if let Some(arg) = self.argv.iter().find(|a| a.contains('\0')) {
            return Err(StepError::Nul {
                what: format!("argument {arg:?}"),
            });
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(StepError::BadVariable { name: k.clone() });
            }
            if FIXED_VARIABLES.contains(&k.as_str()) {
                return Err(StepError::FixedVariable { name: k.clone() });
            }
        }
        if self.hostname.is_empty()
            || self.hostname.len() > 64
            || !self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(StepError::BadHostname {
                name: self.hostname.clone(),
            });
        }
        check_inside_path(&self.cwd)?;
        let mut seen = BTreeSet::new();
        for m in &self.mounts {
            let dst = m.dst();
            check_inside_path(dst)?;
            if dst == Path::new("/") || dst.starts_with("/proc") || dst.starts_with("/dev") {
                return Err(StepError::ReservedDestination {
                    dst: dst.to_path_buf(),
                });
            }
            if !seen.insert(dst.to_path_buf()) {
                return Err(StepError::DuplicateDestination {
                    dst: dst.to_path_buf(),
                });
            }
        }
        if let Network::FixedOutput { output, sha256 } = &self.network {
            if sha256.len() != 64
                || !sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(StepError::BadSha256 {
                    value: sha256.clone(),
                });
            }
            if !output.is_absolute() {
                return Err(StepError::RelativeOutput {
                    path: output.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Paths inside the sandbox must be absolute and free of `.` and `..`.
fn check_inside_path(path: &Path) -> Result<(), StepError> {
    let ok = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.as_os_str().as_encoded_bytes().contains(&0);
    if ok {
        Ok(())
    } else {
        Err(StepError::BadInsidePath {
            path: path.to_path_buf(),
        })
    }
}

/// A step that cannot run as described.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("the step has no command")]
    NoCommand,
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    #[error("invalid environment variable name {name:?}")]
    BadVariable { name: String },
    #[error(
        "the step may not set {name}: the sandbox fixes it\nhint: SOURCE_DATE_EPOCH is the step's `source_date_epoch`; TZ, LC_ALL and LANG are always UTC and C.UTF-8"
    )]
    FixedVariable { name: String },
    #[error("invalid host name {name:?}: use 1 to 64 letters, digits, '-' and '.'")]
    BadHostname { name: String },
    #[error("{path}: paths inside the sandbox must be absolute, without `.` or `..`", path = path.display())]
    BadInsidePath { path: PathBuf },
    #[error("{dst}: the sandbox provides /, /proc and /dev itself; mount elsewhere", dst = dst.display())]
    ReservedDestination { dst: PathBuf },
    #[error("{dst}: two mounts have this destination", dst = dst.display())]
    DuplicateDestination { dst: PathBuf },
    #[error("{value:?} is not a SHA-256 (64 lowercase hex digits)")]
    BadSha256 { value: String },
    #[error("{path}: the output of a fixed-output step must be an absolute host path", path = path.display())]
    RelativeOutput { path: PathBuf },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_has_fixed_variables_and_declared_ones_only() {
        let mut step = Step::new(["true"]);
        step.source_date_epoch = 1700000000;
        step.env.insert("CC".into(), "gcc".into());
        step.env.insert("PATH".into(), "/bin".into());
        let env = step.environment();
        let names: Vec<_> = env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "CC",
                "HOME",
                "LANG",
                "LC_ALL",
                "PATH",
                "SOURCE_DATE_EPOCH",
                "TMPDIR",
                "TZ"
            ]
        );
        assert_eq!(env["PATH"], "/bin");
        assert_eq!(env["SOURCE_DATE_EPOCH"], "1700000000");
        assert_eq!(env["TZ"], "UTC");
        assert_eq!(env["LC_ALL"], "C.UTF-8");
    }

    #[test]
    fn validation_rejects_what_cannot_run() {
        let ok = Step::new(["true"]);
        assert!(ok.validate().is_ok());

        let mut s = ok.clone();
        s.env.insert("TZ".into(), "Europe/Paris".into());
        assert!(matches!(s.validate(), Err(StepError::FixedVariable { .. })));

        let mut s = ok.clone();
        s.mounts.push(Mount::Tmpfs {
            dst: "/build/../etc".into(),
        });
        assert!(matches!(s.validate(), Err(StepError::BadInsidePath { .. })));

        let mut s = ok.clone();
        s.mounts.push(Mount::Tmpfs {
            dst: "/proc/sys".into(),
        });
        assert!(matches!(
            s.validate(),
            Err(StepError::ReservedDestination { .. })
        ));

        let mut s = ok.clone();
        s.mounts.push(Mount::Tmpfs { dst: "/a".into() });
        s.mounts.push(Mount::Tmpfs { dst: "/a".into() });
        assert!(matches!(
            s.validate(),
            Err(StepError::DuplicateDestination { .. })
        ));

        let mut s = ok.clone();
        s.network = Network::FixedOutput {
            output: "/o".into(),
            sha256: "ABC".into(),
        };
        assert!(matches!(s.validate(), Err(StepError::BadSha256 { .. })));

        let mut s = ok.clone();
        s.hostname = "a b".into();
        assert!(matches!(s.validate(), Err(StepError::BadHostname { .. })));

        let mut s = ok;
        s.argv.clear();
        assert!(matches!(s.validate(), Err(StepError::NoCommand)));
    }
}

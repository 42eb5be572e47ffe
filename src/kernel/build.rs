//! The kernel build, every command in the sandbox: a read-only tools tree of pinned debs as
//! `/`, no network, one user, the source at the fixed path `/work/build` whatever the host's
//! work directory is.
//!
//! The source is Debian's `linux-source-<ver>` deb (the upstream tree with Debian's patch
//! series already applied) and the base config comes from `linux-config-<ver>` (the very
//! `config.amd64_none_cloud-amd64` the seed merges over), or from a `make` target such as
//! `tinyconfig` for the small test kernel. Order: unpack, the project's patches (before any
//! config, so a patch may add Kconfig symbols), base config, fragments merged on the Rust
//! side, `make olddefconfig`, the drop check, `make bzImage`, `make -s kernelrelease`.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sandbox::{IdMapping, Mount, Network, Output, RootSpec, Step, Stream};

use super::KernelError;
use super::config::{AcceptedDrops, DropReport, Fragment, check_drops, merge};
use super::patches;
use crate::beneath::{Beneath, FileKind};

/// Where the source tree is inside the sandbox: fixed, so that no host path enters the image.
pub const SOURCE_DIR: &str = "/work/build";

/// The seed's build time stamp (`KBUILD_BUILD_TIMESTAMP`), written into `UTS_VERSION`.
pub const BUILD_TIMESTAMP: &str = "Fri Jun  5 15:58:00 CEST 1971";
/// `KBUILD_BUILD_USER` and `KBUILD_BUILD_HOST`.
pub const BUILD_USER_HOST: &str = "mkosi";
/// `LOCALVERSION`, appended to the kernel release.
pub const LOCALVERSION: &str = "-mkosi-cloud";

/// The Debian flavour config the seed builds on.
pub const DEBIAN_CLOUD_CONFIG: &str = "config.amd64_none_cloud-amd64";

/// Where the base `.config` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseConfig {
    /// `/usr/src/linux-config-*/<file>.xz` of a `linux-config-<ver>` deb, e.g.
    /// [`DEBIAN_CLOUD_CONFIG`].
    Debian { file: String },
    /// A configuration target of the kernel's own Makefile, e.g. `tinyconfig`.
    MakeTarget(String),
}

/// What the build reports while it runs.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The current step (`unpack`, `patch`, `olddefconfig`, `bzImage`, ...).
    pub step: String,
    /// The latest kbuild line, e.g. `CC drivers/net/virtio_net.o`.
    pub phase: String,
    /// Output lines of the current step so far.
    pub lines: u64,
    /// Since the build started.
    pub elapsed: Duration,
}

/// The build's name for itself: `KBUILD_BUILD_TIMESTAMP`, `_USER` and `_HOST` (what
/// `uname -v` shows). The default is the seed's (`[identity]` of `hermetic.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelIdentity {
    pub timestamp: String,
    pub user: String,
    pub host: String,
}

impl Default for KernelIdentity {
    fn default() -> Self {
        KernelIdentity {
            timestamp: BUILD_TIMESTAMP.into(),
            user: BUILD_USER_HOST.into(),
            host: BUILD_USER_HOST.into(),
        }
    }
}

impl From<&crate::recipe::IdentityConfig> for KernelIdentity {
    fn from(id: &crate::recipe::IdentityConfig) -> Self {
        KernelIdentity {
            timestamp: id.kernel_build_timestamp.clone(),
            user: id.kernel_build_user.clone(),
            host: id.kernel_build_host.clone(),
        }
    }
}

/// What a kernel is built from, without a path of this machine: the step's description, from
/// which its key is computed ([`KernelSpec::key_inputs`]) and with which it runs
/// ([`KernelBuild::spec`]). The source and config debs are the step's pins, named by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSpec {
    pub base: BaseConfig,
    /// Kconfig fragments, merged in this order (later wins).
    pub fragments: Vec<PathBuf>,
    pub accepted: AcceptedDrops,
    /// Patches, applied in this order.
    pub patches: Vec<PathBuf>,
    pub source_date_epoch: u64,
    pub identity: KernelIdentity,
}

/// A kernel build: its description and where, on this machine, it runs.
pub struct KernelBuild<'a> {
    pub spec: &'a KernelSpec,
    /// The tools tree (gcc, make, bc, bison, flex, libelf-dev, libssl-dev, dpkg, xz-utils,
    /// patch, ...), read-only `/` of every command.
    pub tools: PathBuf,
    /// The `linux-source-<ver>` deb.
    pub source_deb: PathBuf,
    /// The `linux-config-<ver>` deb of a [`BaseConfig::Debian`].
    pub config_deb: Option<PathBuf>,
    /// A directory for the source tree (`build/`), the inputs and the outputs (`out/`); its
    /// previous contents are removed.
    pub work_dir: PathBuf,
    /// Every command's output is appended here.
    pub log: PathBuf,
    /// `make -j`; `None` runs as many jobs as the sandbox has CPUs.
    pub jobs: Option<usize>,
    pub progress: &'a dyn Fn(&Progress),
}

/// What a kernel build produced (files under `<work_dir>/out/`).
#[derive(Debug, Clone)]
pub struct KernelOutputs {
    pub bzimage: PathBuf,
    pub vmlinux: PathBuf,
    /// The final `.config`.
    pub config: PathBuf,
    /// `make -s kernelrelease`, e.g. `6.12.58-mkosi-cloud` (the modules directory name and
    /// what `uname -r` prints).
    pub release: String,
    /// Every option that did not survive as requested (all of them accepted).
    pub drops: DropReport,
}

struct Runner<'a> {
    req: &'a KernelBuild<'a>,
    started: Instant,
    log: fs_err::File,
    mounts: Vec<Mount>,
}

/// What one sandboxed command printed.
struct Captured {
    stdout: String,
    all: String,
}

fn kbuild_phase(line: &str) -> Option<String> {
    // Quiet kbuild lines: two spaces, a tag of capitals, spaces, a target.
    let rest = line.strip_prefix("  ")?;
    let (tag, target) = rest.split_once(' ')?;
    if tag.is_empty()
        || !tag
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return None;
    }
    Some(format!("{tag} {}", target.trim()))
}

impl Runner<'_> {
    fn run(&mut self, name: &str, script: &str) -> Result<Captured, KernelError> {
        let req = self.req;
        writeln!(self.log, "==> {name}").map_err(KernelError::io(&req.log))?;
        let mut step = Step::new(["/bin/sh", "-euc", script]);
        step.root = RootSpec::ReadOnly(req.tools.clone());
        step.mounts = self.mounts.clone();
        step.cwd = PathBuf::from(SOURCE_DIR);
        step.network = Network::None;
        step.ids = IdMapping::SingleUser;
        step.source_date_epoch = req.spec.source_date_epoch;
        step.output = Output::LogOnly;
        step.hostname = req.spec.identity.host.clone();
        for (k, v) in [
            (
                "KBUILD_BUILD_TIMESTAMP",
                req.spec.identity.timestamp.as_str(),
            ),
            ("KBUILD_BUILD_USER", req.spec.identity.user.as_str()),
            ("KBUILD_BUILD_HOST", req.spec.identity.host.as_str()),
            ("LOCALVERSION", LOCALVERSION),
            ("HOME", SOURCE_DIR),
        ] {
            step.env.insert(k.to_string(), v.to_string());
        }
        let mut captured = Captured {
            stdout: String::new(),
            all: String::new(),
        };
        let mut pending = Vec::new();
        let mut lines = 0u64;
        let mut phase = String::new();
        let mut log_err = None;
        let started = self.started;
        let log = &mut self.log;
        let outcome = sandbox::run_with(&step, &mut |stream, bytes| {
            if let Err(e) = log.write_all(bytes) {
                log_err.get_or_insert(e);
            }
            let text = String::from_utf8_lossy(bytes);
            if stream == Stream::Stdout {
                captured.stdout.push_str(&text);
            }
            captured.all.push_str(&text);
            pending.extend_from_slice(bytes);
            if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
                let chunk = String::from_utf8_lossy(&pending[..end]).into_owned();
                for line in chunk.lines() {
                    lines += 1;
                    if let Some(p) = kbuild_phase(line) {
                        phase = p;
                    }
                }
                pending.drain(..=end);
                (req.progress)(&Progress {
                    step: name.to_string(),
                    phase: phase.clone(),
                    lines,
                    elapsed: started.elapsed(),
                });
            }
        })
        .map_err(|source| KernelError::Sandbox {
            step: name.to_string(),
            source: Box::new(source),
        })?;
        if let Some(e) = log_err {
            return Err(KernelError::Io {
                path: req.log.clone(),
                source: e,
            });
        }
        let _ = writeln!(
            self.log,
            "<== {name}: {:.1}s, {}",
            outcome.duration.as_secs_f64(),
            if outcome.success() { "ok" } else { "failed" }
        );
        if !outcome.success() {
            return Err(KernelError::StepFailed {
                step: name.to_string(),
                status: format!("exit status {}", outcome.shell_code()),
                tail: tail(&captured.all, 25),
                log: req.log.clone(),
            });
        }
        Ok(captured)
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Single-quotes a word for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Builds the kernel. On success the outputs are under `<work_dir>/out/`; on failure nothing
/// is there.
pub fn build_kernel(req: &KernelBuild) -> Result<KernelOutputs, KernelError> {
    let work = &req.work_dir;
    let build = work.join("build");
    let out = work.join("out");
    let patch_dir = work.join("patches");
    for d in [&build, &out, &patch_dir] {
        if d.exists() {
            fs_err::remove_dir_all(d).map_err(KernelError::io(d))?;
        }
        fs_err::create_dir_all(d).map_err(KernelError::io(d))?;
    }
    // Fragments and accepted drops are read first: a syntax error costs no unpacking.
    let fragments = req
        .spec
        .fragments
        .iter()
        .map(|p| Fragment::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Patches are copied under numbered names so that their order is the one given.
    let mut patch_names = Vec::new();
    for (i, p) in req.spec.patches.iter().enumerate() {
        let name = format!("{i:04}.patch");
        fs_err::copy(p, patch_dir.join(&name)).map_err(KernelError::io(p))?;
        patch_names.push((name, p.clone()));
    }
    if let Some(parent) = req.log.parent() {
        fs_err::create_dir_all(parent).map_err(KernelError::io(parent))?;
    }
    let log = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&req.log)
        .map_err(KernelError::io(&req.log))?;
    let mut mounts = vec![
        Mount::Tmpfs {
            dst: PathBuf::from("/work"),
        },
        Mount::Writable {
            src: build.clone(),
            dst: PathBuf::from(SOURCE_DIR),
        },
        Mount::ReadOnly {
            src: req.source_deb.clone(),
            dst: PathBuf::from("/work/source.deb"),
        },
        Mount::ReadOnly {
            src: patch_dir.clone(),
            dst: PathBuf::from("/work/patches"),
        },
    ];
    if let BaseConfig::Debian { .. } = &req.spec.base {
        mounts.push(Mount::ReadOnly {
            src: req.config_deb.clone().unwrap_or_default(),
            dst: PathBuf::from("/work/config.deb"),
        });
    }
    let mut runner = Runner {
        req,
        started: Instant::now(),
        log,
        mounts,
    };

    runner.run(
        "unpack",
        "dpkg-deb --fsys-tarfile /work/source.deb \
         | tar -xOf - --wildcards './usr/src/linux-source-*.tar.xz' \
         | tar -xJf - --no-same-owner --strip-components=1 -C /work/build\n\
         test -f /work/build/Makefile",
    )?;

    for (name, original) in &patch_names {
        let args = patches::PATCH_ARGS.join(" ");
        let script = format!(
            "if ! patch {args} --dry-run -i /work/patches/{name}; then exit 3; fi\n\
             patch {args} --silent -i /work/patches/{name}"
        );
        match runner.run(&format!("patch {}", original.display()), &script) {
            Ok(_) => {}
            Err(KernelError::StepFailed { tail: _, .. }) => {
                // Run the dry run again to capture its whole output for the message.
                let mut probe = Runner {
                    req,
                    started: runner.started,
                    log: fs_err::OpenOptions::new()
                        .append(true)
                        .open(&req.log)
                        .map_err(KernelError::io(&req.log))?,
                    mounts: runner.mounts.clone(),
                };
                let output = match probe.run(
                    "patch (diagnosis)",
                    &format!("patch {args} --dry-run -i /work/patches/{name} 2>&1 || true"),
                ) {
                    Ok(c) => c.all,
                    Err(e) => return Err(e),
                };
                return Err(KernelError::PatchFailed {
                    patch: original.clone(),
                    problems: patches::describe(&output),
                    log: req.log.clone(),
                });
            }
            Err(e) => return Err(e),
        }
    }

    let base_path = build.join(".config");
    match &req.spec.base {
        BaseConfig::Debian { file, .. } => {
            let script = format!(
                "dpkg-deb --fsys-tarfile /work/config.deb \
                 | tar -xOf - --wildcards {} | xz -dc > /work/build/.config\n\
                 test -s /work/build/.config",
                shell_quote(&format!("./usr/src/linux-config-*/{file}.xz"))
            );
            runner.run("base config", &script)?;
        }
        BaseConfig::MakeTarget(target) => {
            runner.run(
                &format!("make {target}"),
                &format!("make {}", shell_quote(target)),
            )?;
        }
    }
    // The build tree is the steps' work: `.config` is read without following a link, and
    // replaced rather than written through one.
    let base = read_config(&build)?;
    let merged = merge(&base, &fragments);
    replace_file(&base_path, merged.to_config().as_bytes())?;
    runner.run("olddefconfig", "make olddefconfig")?;
    let final_config = read_config(&build)?;
    let drops = DropReport::compare(&merged.requests, &final_config);
    {
        let mut log = &runner.log;
        let _ = writeln!(
            log,
            "==> drop report: {} option(s)\n{}",
            drops.drops.len(),
            drops.render()
        );
        let unused = drops.unused_accepted(&req.spec.accepted);
        if !unused.is_empty() {
            let _ = writeln!(
                log,
                "accepted drops that did not happen (stale in [accepted-drops]): {}",
                unused.join(" ")
            );
        }
    }
    check_drops(&drops, &req.spec.accepted)?;

    let jobs = match req.jobs {
        Some(n) => n.to_string(),
        None => "\"$(nproc)\"".to_string(),
    };
    runner.run("bzImage", &format!("rm -f .version\nmake -j{jobs} bzImage"))?;
    let release = runner
        .run("kernelrelease", "make -s kernelrelease")?
        .stdout
        .trim()
        .to_string();

    let mut copied = Vec::new();
    let tree = Beneath::open(&build).map_err(|e| beneath_err(&build, e))?;
    for (from, to) in [
        ("arch/x86/boot/bzImage", "bzImage"),
        ("vmlinux", "vmlinux"),
        (".config", "config"),
    ] {
        let src = build.join(from);
        if !matches!(tree.kind(from), Ok(FileKind::Regular | FileKind::Symlink)) {
            let _ = fs_err::remove_dir_all(&out);
            return Err(KernelError::MissingOutput {
                path: PathBuf::from(SOURCE_DIR).join(from),
                log: req.log.clone(),
            });
        }
        // A link is refused here, naming it.
        let mut file = tree.open_file(from).map_err(|e| beneath_err(&src, e))?;
        let dst = out.join(to);
        let mut copy = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dst)
            .map_err(KernelError::io(&dst))?;
        std::io::copy(&mut file, &mut copy).map_err(KernelError::io(&dst))?;
        // As `cp` would: the permission bits (vmlinux is executable), not setuid or setgid.
        let mode = file.metadata().map_err(KernelError::io(&src))?.mode() & 0o777;
        copy.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(KernelError::io(&dst))?;
        copied.push(dst);
    }
    let release_file = out.join("kernelrelease");
    fs_err::write(&release_file, format!("{release}\n")).map_err(KernelError::io(&release_file))?;
    Ok(KernelOutputs {
        bzimage: copied[0].clone(),
        vmlinux: copied[1].clone(),
        config: copied[2].clone(),
        release,
        drops,
    })
}

/// The kernel configuration `.config` of the build tree, read without following a link.
fn read_config(build: &Path) -> Result<Fragment, KernelError> {
    let path = build.join(".config");
    let text =
        crate::beneath::read_to_string(build, ".config").map_err(|e| beneath_err(&path, e))?;
    Fragment::parse(&path, &text)
}

/// Replaces `path` (a file of the build tree, maybe a link the build made) by a new file.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), KernelError> {
    match fs_err::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(KernelError::io(path)(e));
        }
        _ => {}
    }
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(KernelError::io(path))?;
    f.write_all(bytes).map_err(KernelError::io(path))
}

fn beneath_err(path: &Path, e: crate::beneath::BeneathError) -> KernelError {
    KernelError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

/// Bumped whenever this module changes what a build with the same inputs produces.
pub const KERNEL_STEP_VERSION: &str = "1";

impl KernelSpec {
    /// What of this build goes into its step key: the fragments and patches by file name
    /// and content, in order (as `scripts`), the accepted drops, the base config, the fixed
    /// `KBUILD_*` values and `SOURCE_DATE_EPOCH` (as `settings`). The caller adds the pins
    /// (the source and config debs by SHA-256) and the `tools` dependency. The work directory,
    /// the log, the job count and the progress callback do not change the output and are not
    /// part of it.
    pub fn key_inputs(&self) -> Result<crate::key::StepInputs, KernelError> {
        let mut inputs = crate::key::StepInputs {
            kind: "kernel".to_string(),
            ..Default::default()
        };
        let file_name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        for (role, list) in [("config", &self.fragments), ("patch", &self.patches)] {
            for p in list {
                inputs.scripts.push(crate::key::ScriptInput {
                    name: format!("{role}:{}", file_name(p)),
                    content: fs_err::read(p).map_err(KernelError::io(p))?,
                });
            }
        }
        let base = match &self.base {
            BaseConfig::Debian { file, .. } => format!("debian:{file}"),
            BaseConfig::MakeTarget(target) => format!("make:{target}"),
        };
        for (k, v) in [
            ("kernel-step-version", KERNEL_STEP_VERSION.to_string()),
            ("base-config", base),
            ("source-dir", SOURCE_DIR.to_string()),
            ("kbuild-build-timestamp", self.identity.timestamp.clone()),
            // One field while user and host are the same (as the seed's are), so that the
            // keys of kernels built before `[identity]` existed stay the same.
            (
                "kbuild-build-user-host",
                if self.identity.user == self.identity.host {
                    self.identity.user.clone()
                } else {
                    format!("{}@{}", self.identity.user, self.identity.host)
                },
            ),
            ("localversion", LOCALVERSION.to_string()),
            ("source-date-epoch", self.source_date_epoch.to_string()),
        ] {
            inputs.settings.insert(k.to_string(), v);
        }
        for (name, reason) in &self.accepted.options {
            inputs
                .settings
                .insert(format!("accepted-drop:{name}"), reason.clone());
        }
        Ok(inputs)
    }
}

/// The files of a project's kernel directory: `configs/*` (name order), `patches/*.patch`
/// (name order) and the accepted drops of `kernel.toml` (none when it does not exist).
pub fn project_inputs(
    kernel_dir: &Path,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>, AcceptedDrops), KernelError> {
    let fragments = super::config::list_fragments(&kernel_dir.join("configs"))?;
    let patches = patches::list_patches(&kernel_dir.join("patches"))?;
    let toml = kernel_dir.join("kernel.toml");
    let accepted = if toml.exists() {
        AcceptedDrops::read(&toml)?
    } else {
        AcceptedDrops::default()
    };
    Ok((fragments, patches, accepted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbuild_lines_become_phases() {
        assert_eq!(
            kbuild_phase("  CC      kernel/fork.o").as_deref(),
            Some("CC kernel/fork.o")
        );
        assert_eq!(
            kbuild_phase("  HOSTCC  scripts/kconfig/conf.o").as_deref(),
            Some("HOSTCC scripts/kconfig/conf.o")
        );
        assert_eq!(kbuild_phase("make[1]: Entering directory"), None);
        assert_eq!(
            kbuild_phase("Kernel: arch/x86/boot/bzImage is ready  (#1)"),
            None
        );
        assert_eq!(kbuild_phase("  lower case"), None);
    }

    #[test]
    fn the_project_kernel_directory_reads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel");
        let (fragments, patches, accepted) = project_inputs(&dir).unwrap();
        assert_eq!(fragments.len(), 3);
        assert!(patches.iter().all(|p| p.starts_with(dir.join("patches"))));
        for reason in accepted.options.values() {
            assert!(!reason.trim().is_empty());
        }
    }

    #[test]
    fn the_key_follows_fragments_patches_drops_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let frag = dir.path().join("01-x");
        let patch = dir.path().join("0001-x.patch");
        fs_err::write(&frag, "CONFIG_A=y\n").unwrap();
        fs_err::write(&patch, "--- a/x\n+++ b/x\n").unwrap();
        // Where the build runs (work directory, log, jobs) is not part of the description.
        let spec = KernelSpec {
            base: BaseConfig::MakeTarget("tinyconfig".into()),
            fragments: vec![frag.clone()],
            accepted: AcceptedDrops::default(),
            patches: vec![patch.clone()],
            source_date_epoch: 1,
            identity: KernelIdentity::default(),
        };
        let a = spec.key_inputs().unwrap();
        assert_eq!(a.key(), spec.clone().key_inputs().unwrap().key());
        let mut drops = spec.clone();
        drops
            .accepted
            .options
            .insert("CONFIG_B".into(), "reason".into());
        assert_ne!(a.key(), drops.key_inputs().unwrap().key());
        fs_err::write(&frag, "CONFIG_A=m\n").unwrap();
        assert_ne!(a.key(), spec.key_inputs().unwrap().key());
        fs_err::write(&frag, "CONFIG_A=y\n").unwrap();
        fs_err::write(&patch, "--- a/y\n+++ b/y\n").unwrap();
        assert_ne!(a.key(), spec.key_inputs().unwrap().key());
        let mut host = spec.clone();
        host.identity.host = "elsewhere".into();
        assert_ne!(
            spec.key_inputs().unwrap().key(),
            host.key_inputs().unwrap().key()
        );
        let mut epoch = spec.clone();
        epoch.source_date_epoch = 2;
        assert_ne!(
            spec.key_inputs().unwrap().key(),
            epoch.key_inputs().unwrap().key()
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}

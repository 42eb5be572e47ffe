//! The kernel built from Debian's source: config fragments, the drop report, patches, the build.
//!
//! - [`config`]: Kconfig fragments parsed and merged over the base config in name order; after
//!   `make olddefconfig`, every requested option that did not survive is reported, and the
//!   build fails on one the project has not accepted (`kernel/kernel.toml`, `[accepted-drops]`).
//! - [`patches`]: `kernel/patches/*.patch` in name order, applied with `patch -p1` in the
//!   sandbox; a failure names the patch and the hunk.
//! - [`build`]: the whole build in the sandbox, in a tools tree of pinned debs, at a fixed path,
//!   with the seed's fixed `KBUILD_BUILD_*` values; outputs `bzImage`, `vmlinux`, the final
//!   `.config` and the kernel release.
//!
//! See `docs/kernel.md`.

pub mod build;
pub mod config;
pub mod patches;

pub use build::{BaseConfig, KernelBuild, KernelOutputs, KernelSpec, Progress, build_kernel};
pub use config::{AcceptedDrops, DropReport, Fragment, check_drops};

use std::path::PathBuf;

/// Errors of the kernel build.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: not a Kconfig assignment: `{text}`\nhint: write `CONFIG_X=y`, `=m`, `=n`, `=\"string\"`, `=123`, `=0x1f` or `# CONFIG_X is not set` (other lines must be comments starting with `#`)",
        path = path.display()
    )]
    FragmentSyntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{path}: {message}", path = path.display())]
    KernelToml { path: PathBuf, message: String },
    #[error(
        "{count} requested kernel option(s) did not survive `make olddefconfig`:\n{list}\nhint: fix the fragment (the option may be renamed, or need another option on), or list it under [accepted-drops] in kernel/kernel.toml with the reason"
    )]
    OptionsDropped { count: usize, list: String },
    #[error(
        "{path} is not a patch (patches end in .patch or .diff)\nhint: move other files out of the patches directory",
        path = path.display()
    )]
    NotAPatch { path: PathBuf },
    #[error(
        "patch {patch} does not apply to the kernel source:\n{problems}\nthe full log: {log}\nhint: refresh the patch against this kernel version (a patch that is already in the source can be deleted)",
        patch = patch.display(),
        log = log.display()
    )]
    PatchFailed {
        patch: PathBuf,
        problems: String,
        log: PathBuf,
    },
    #[error("cannot start the sandbox for kernel step `{step}`")]
    Sandbox {
        step: String,
        #[source]
        source: Box<sandbox::SandboxError>,
    },
    #[error(
        "kernel step `{step}` failed ({status}); the last lines of its log:\n{tail}\nthe full log: {log}",
        log = log.display()
    )]
    StepFailed {
        step: String,
        status: String,
        tail: String,
        log: PathBuf,
    },
    #[error(
        "the kernel build did not produce {path}\nthe full log: {log}",
        path = path.display(),
        log = log.display()
    )]
    MissingOutput { path: PathBuf, log: PathBuf },
}

impl KernelError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> KernelError {
        let path = path.into();
        move |source| KernelError::Io { path, source }
    }
}

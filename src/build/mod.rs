//! `hermetic build`: recipes become a graph of steps, each keyed by the hash of everything
//! that goes into it; missing steps run in the sandbox from pinned inputs only, and their
//! outputs are published into the store so that an unchanged step never runs twice.
//!
//! The graph of one image ([`plan`]):
//! - `rootfs`: the image's package closure installed like a Debian system (see [`rootfs`]);
//! - `tools`: the tools tree, the closure of `build-packages`, assembled the same way (only
//!   when the image has steps);
//! - `image`: the rootfs with the overlays laid over it, the recipe's steps run in the tools
//!   tree, then the deterministic clean-up of [`cleanup`];
//! - `kernel-tools` and `kernel` (bootable formats of a recipe with a `[kernel]` table): the
//!   tools tree of the kernel's build-packages, and the kernel built from Debian's source in
//!   it (see [`crate::kernel`]);
//! - `cargo-tools` and `cargo-<name>` (a recipe with `[[cargo]]` builds): the toolchain tree
//!   and each Rust program built from pinned sources and crates (see [`program`]); the
//!   image step installs their files;
//! - `go-tools` and `go-<name>` (a recipe with `[[go]]` builds): the same for Go programs,
//!   built from pinned sources and modules (see [`go`]);
//! - `output`: the image written in its format (`directory`, `tar`, or a bootable format
//!   around the built kernel or the one a package put in `/boot`).

pub mod bootable;
pub mod cleanup;
pub mod exec;
pub mod go;
pub mod omit;
pub mod outputs;
pub mod overlay;
pub mod pipeline;
pub mod plan;
pub mod program;
pub mod rootfs;
mod steps;

pub use exec::{BuildOptions, BuildReport, StepReport, StepState, build};
pub use plan::{Graph, LIVE_PROFILE_COMBINATIONS, Node, NodeKind, live_steps, plan, plan_omitting};

use std::path::PathBuf;

/// Errors of planning and running a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    #[error(transparent)]
    Lockfile(#[from] crate::lockfile::LockfileError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Key(#[from] crate::key::KeyError),
    #[error("{path} does not exist")]
    NoLock { path: PathBuf },
    #[error("pins.lock has no packages for recipe `{recipe}` ({tag})")]
    NothingLocked { recipe: String, tag: String },
    #[error("pins.lock does not match the recipes ({detail})")]
    StaleLock { detail: String },
    #[error("{count} pinned file(s) are not in the store {store}, e.g. {example}")]
    MissingPins {
        count: usize,
        store: PathBuf,
        example: String,
    },
    #[error("cannot read {path}")]
    Deb {
        path: PathBuf,
        #[source]
        source: Box<crate::deb::DebError>,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the sandbox for step {step}")]
    Sandbox {
        step: String,
        #[source]
        source: Box<sandbox::SandboxError>,
    },
    #[error(
        "step {step} failed ({status}); the last lines of its log:\n{tail}\nthe full log: {log}{kept}"
    )]
    StepFailed {
        step: String,
        status: String,
        tail: String,
        log: PathBuf,
        kept: String,
    },
    #[error("cannot write {path}")]
    Tar {
        path: PathBuf,
        #[source]
        source: crate::treetar::TreeTarError,
    },
    #[error("{path}: bad control field: {message}")]
    Control { path: PathBuf, message: String },
    #[error("cannot write {path}: {message}")]
    Image { path: PathBuf, message: String },
    #[error(transparent)]
    Kernel(#[from] crate::kernel::KernelError),
    #[error(transparent)]
    Output(Box<outputs::OutputError>),
    #[error(transparent)]
    Beneath(Box<crate::beneath::BeneathError>),
    #[error(transparent)]
    Overlay(Box<overlay::OverlayError>),
    #[error(transparent)]
    Crate(Box<crate::sources::cargo::CrateError>),
    #[error(transparent)]
    Go(Box<crate::sources::gomod::GoModError>),
    #[error(
        "--omit {name}: no recipe of {targets} declares a source `{name}`\nhint: {suggestion}their sources are: {declared}"
    )]
    UnknownOmitted {
        name: String,
        targets: String,
        declared: String,
        suggestion: String,
    },
}

impl crate::error::Diagnostic for BuildError {
    fn hints(&self) -> Vec<String> {
        let hint = |h: &str| vec![h.to_string()];
        match self {
            BuildError::Recipe(e) => e.hints(),
            BuildError::Lockfile(e) => e.hints(),
            BuildError::NoLock { .. } => hint("run `hermetic lock` to create it"),
            BuildError::NothingLocked { .. } => hint("run `hermetic lock` after changing recipes"),
            BuildError::StaleLock { .. } => hint("run `hermetic lock` to bring it up to date"),
            BuildError::MissingPins { .. } => hint("run `hermetic fetch` first"),
            // The others still say their hint in their message, if they have one.
            _ => Vec::new(),
        }
    }

    fn subject(&self) -> crate::error::Subject {
        use crate::error::Subject;
        match self {
            BuildError::Recipe(e) => e.subject(),
            BuildError::Lockfile(e) => e.subject(),
            BuildError::NoLock { path }
            | BuildError::MissingPins { store: path, .. }
            | BuildError::Deb { path, .. }
            | BuildError::Io { path, .. }
            | BuildError::Tar { path, .. }
            | BuildError::Control { path, .. }
            | BuildError::Image { path, .. } => Subject::file(path),
            BuildError::StepFailed { log, .. } => Subject::file(log),
            BuildError::NothingLocked { recipe, .. } => Subject::package(recipe),
            _ => Subject::default(),
        }
    }
}

impl From<overlay::OverlayError> for BuildError {
    fn from(e: overlay::OverlayError) -> BuildError {
        BuildError::Overlay(Box::new(e))
    }
}

impl From<outputs::OutputError> for BuildError {
    fn from(e: outputs::OutputError) -> BuildError {
        BuildError::Output(Box::new(e))
    }
}

impl From<crate::beneath::BeneathError> for BuildError {
    fn from(e: crate::beneath::BeneathError) -> BuildError {
        BuildError::Beneath(Box::new(e))
    }
}

impl BuildError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BuildError {
        let path = path.into();
        move |source| BuildError::Io { path, source }
    }
}

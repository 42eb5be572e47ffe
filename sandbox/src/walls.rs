//! The last walls the step puts up around itself before exec: capabilities and Landlock.

use std::path::{Path, PathBuf};

use caps::{CapSet, CapsHashSet};
use landlock::{
    ABI, Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope,
};

use crate::LandlockStatus;

/// Errors of this module (reported by the step to the caller as text).
#[derive(Debug, thiserror::Error)]
pub enum WallError {
    #[error("capabilities: {0}")]
    Caps(#[from] caps::errors::CapsError),
    #[error("landlock: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error("landlock rule for {path}: {source}", path = path.display())]
    Path {
        path: PathBuf,
        source: landlock::PathFdError,
    },
}

/// Limits the process's capabilities to `keep`: the bounding set (what any later exec can
/// have), the effective and permitted sets; clears the inheritable and ambient sets.
pub(crate) fn drop_capabilities(keep: &CapsHashSet) -> Result<(), WallError> {
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::set(None, CapSet::Effective, keep)?;
    caps::set(None, CapSet::Permitted, keep)?;
    Ok(())
}

/// The Landlock ABI whose file-system rights the sandbox asks for (5: up to `ioctl` on
/// devices). Scopes (abstract unix sockets, signals) come from ABI 6.
pub const FS_ABI: ABI = ABI::V5;

/// Restricts the process: reads (and exec) beneath `/`, writes beneath `writable` only;
/// writes to device files and device ioctls beneath `/dev`; no connecting to abstract unix
/// sockets and no signals to processes outside the sandbox. Best effort: the returned status
/// says what the kernel enforced.
pub(crate) fn landlock(writable: &[PathBuf]) -> Result<LandlockStatus, WallError> {
    let all = AccessFs::from_all(FS_ABI);
    let read = AccessFs::from_read(FS_ABI);
    let fd = |p: &Path| {
        PathFd::new(p).map_err(|source| WallError::Path {
            path: p.to_path_buf(),
            source,
        })
    };
    let mut ruleset = Ruleset::default()
        .handle_access(all)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?
        .add_rule(PathBeneath::new(fd(Path::new("/"))?, read))?
        .add_rule(PathBeneath::new(
            fd(Path::new("/dev"))?,
            AccessFs::WriteFile | AccessFs::IoctlDev,
        ))?;
    for path in writable {
        ruleset = ruleset.add_rule(PathBeneath::new(fd(path)?, all))?;
    }
    let status = ruleset.restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockStatus::FullyEnforced,
        RulesetStatus::PartiallyEnforced => LandlockStatus::PartiallyEnforced,
        RulesetStatus::NotEnforced => LandlockStatus::NotEnforced,
    })
}

//! Source pins in `pins.lock` (`[[upstream]]`): what the recipes' `[[sources]]` ask for,
//! how `hermetic lock` fills in missing content hashes, and what `lock --check` reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::http::Http;
use crate::lockfile::{Lockfile, LockfileError, PinnedUpstream};
use crate::recipe::{Project, RecipeError};
use crate::sources::fetch::{compute_content_hash, fetch_source};
use crate::sources::gomod;
use crate::sources::pin::SourcePin;
use crate::store::{Store, StoreError};

/// Why source pins could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum SourceLockError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Lockfile(#[from] LockfileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "source `{name}` is declared differently by recipes {first} and {second}\nhint: give the two sources different names, or declare it once in a common parent recipe"
    )]
    Conflict {
        name: String,
        first: String,
        second: String,
    },
}

/// The pin with no content hash: what identifies the source apart from its hash.
fn spec(pin: &SourcePin) -> SourcePin {
    let mut p = pin.with_content_hash(String::new());
    match &mut p {
        SourcePin::File { sha256, .. } | SourcePin::Deb { sha256, .. } => *sha256 = None,
        SourcePin::Git { tree_sha256, .. } | SourcePin::Path { tree_sha256, .. } => {
            *tree_sha256 = None
        }
        // What `hermetic lock` read from the source tree is not part of the request.
        SourcePin::GoModules {
            source_hash,
            vendored,
            modules,
            modules_sha256,
            ..
        } => {
            *source_hash = None;
            *vendored = false;
            modules.clear();
            *modules_sha256 = None;
        }
    }
    p
}

/// Every source the recipes declare (after inheritance), by name, with the recipes using
/// it. The same name declared differently by two recipes is an error.
pub fn wanted_upstream(project: &Project) -> Result<Vec<PinnedUpstream>, SourceLockError> {
    let mut by_name: BTreeMap<String, PinnedUpstream> = BTreeMap::new();
    for name in project.recipes.keys() {
        let r = project.resolve(name)?;
        for pin in r.sources.into_values() {
            match by_name.get_mut(pin.name()) {
                Some(u) if u.pin == pin => u.recipes.push(name.clone()),
                Some(u) => {
                    return Err(SourceLockError::Conflict {
                        name: pin.name().to_string(),
                        first: u.recipes.join(", "),
                        second: name.clone(),
                    });
                }
                None => {
                    by_name.insert(
                        pin.name().to_string(),
                        PinnedUpstream {
                            pin,
                            recipes: vec![name.clone()],
                        },
                    );
                }
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// `lock --check`: each source pin missing from the lock, without a content hash there, or
/// changed (another URL, commit, kind or hash), and each the recipes no longer declare.
pub fn check_upstream(project: &Project, lock: &Lockfile) -> Result<Vec<String>, RecipeError> {
    let wanted = match wanted_upstream(project) {
        Ok(w) => w,
        Err(SourceLockError::Recipe(e)) => return Err(e),
        Err(e) => return Ok(vec![e.to_string().lines().next().unwrap_or("").to_string()]),
    };
    let mut problems = Vec::new();
    for w in &wanted {
        let what = w.pin.describe();
        match lock.upstream.iter().find(|u| u.pin.name() == w.pin.name()) {
            None => problems.push(format!("{what} is not pinned in the lock")),
            Some(u) if spec(&u.pin) != spec(&w.pin) => {
                problems.push(format!("{what} changed since it was locked"))
            }
            Some(u) if u.pin.content_hash().is_none() => {
                problems.push(format!("{what} has no content hash in the lock"))
            }
            Some(u) => {
                if let Some(h) = w.pin.content_hash()
                    && u.pin.content_hash() != Some(h)
                {
                    problems.push(format!(
                        "{what}: the recipe pins {h}, the lock {}",
                        u.pin.content_hash().unwrap_or("nothing")
                    ));
                }
                if let (SourcePin::Path { .. }, Some(locked)) = (&u.pin, u.pin.content_hash()) {
                    match crate::sources::path::tree_hash(&project.root, &u.pin) {
                        Ok(now) if now == locked => {}
                        Ok(now) => problems.push(format!(
                            "{what} changed since it was locked: the directory hashes to {now}, the lock pins {locked}"
                        )),
                        Err(e) => problems.push(e.to_string().lines().next().unwrap_or("").to_string()),
                    }
                }
                if let SourcePin::GoModules {
                    source,
                    source_hash,
                    ..
                } = &u.pin
                {
                    let now = lock
                        .upstream
                        .iter()
                        .find(|s| s.pin.name() == source)
                        .and_then(|s| s.pin.content_hash());
                    if now != source_hash.as_deref() {
                        problems.push(format!(
                            "{what} were read from source `{source}` at {}, the lock pins it at {}",
                            source_hash.as_deref().unwrap_or("no hash"),
                            now.unwrap_or("no hash")
                        ));
                    }
                    if let Err(e) = gomod::pin_modules(&u.pin) {
                        problems.push(e.to_string().lines().next().unwrap_or("").to_string());
                    }
                }
                if u.recipes != w.recipes {
                    problems.push(format!(
                        "{what} is used by recipes [{}], the lock says [{}]",
                        w.recipes.join(", "),
                        u.recipes.join(", ")
                    ));
                }
            }
        }
    }
    for u in &lock.upstream {
        if !wanted.iter().any(|w| w.pin.name() == u.pin.name()) {
            problems.push(format!(
                "{} is in the lock, but no recipe declares it",
                u.pin.describe()
            ));
        }
    }
    Ok(problems)
}

/// What [`lock_upstream`] did.
#[derive(Debug, Default)]
pub struct UpstreamOutcome {
    pub written: bool,
    /// Hashes computed by downloading (or from a `--source-dir`, or a `path` source's
    /// directory).
    pub computed: usize,
    /// One line per source whose content hash could not be computed.
    pub unpinned: Vec<String>,
}

/// Records the recipes' sources in the lock at `path` (written by `hermetic lock`): a hash
/// the recipe gives is taken as is; one the previous lock (`previous`, read before the
/// packages were locked) holds for the same source is kept; else it is computed from the
/// first reachable copy, which then goes into the store. A source that cannot be reached is
/// recorded without a hash and named in [`UpstreamOutcome::unpinned`].
pub fn lock_upstream(
    project: &Project,
    path: &Path,
    previous: Option<&Lockfile>,
    store_dir: &Path,
    source_dirs: &[PathBuf],
) -> Result<UpstreamOutcome, SourceLockError> {
    let mut outcome = UpstreamOutcome::default();
    let wanted = wanted_upstream(project)?;
    let Some(mut lock) = Lockfile::read(path)? else {
        return Ok(outcome);
    };
    if wanted.is_empty() && lock.upstream.is_empty() {
        return Ok(outcome);
    }
    // A version 1 lock (no package relations) that `hermetic lock` could not upgrade must
    // not be rewritten: it would be labelled version 2 without the relations.
    let version_1 = !lock.packages.is_empty()
        && lock.packages.iter().all(|p| {
            p.pre_depends.is_none()
                && p.depends.is_none()
                && p.provides.is_none()
                && p.multi_arch.is_none()
        });
    if version_1 {
        outcome.unpinned.push(format!(
            "source pins not recorded: {} is format version 1; run `hermetic fetch`, then `hermetic lock`",
            path.display()
        ));
        return Ok(outcome);
    }
    let mut store = None;
    let http = Http::new();
    let mut pinned = Vec::new();
    // `go-modules` pins are read from another source's tree: after every other pin.
    let (go, wanted): (Vec<_>, Vec<_>) = wanted
        .into_iter()
        .partition(|w| matches!(w.pin, SourcePin::GoModules { .. }));
    for w in wanted {
        let kept = previous
            .into_iter()
            .chain(std::iter::once(&lock))
            .flat_map(|l| l.upstream.iter())
            .find(|u| spec(&u.pin) == spec(&w.pin) && u.pin.content_hash().is_some())
            .and_then(|u| u.pin.content_hash().map(str::to_string));
        let hash = match (w.pin.content_hash(), kept) {
            // A directory of the project: hashed as it is now, whatever was pinned before
            // (nothing to download, so always computed).
            _ if matches!(w.pin, SourcePin::Path { .. }) => {
                match crate::sources::path::tree_hash(&project.root, &w.pin) {
                    Ok(h) => {
                        outcome.computed += 1;
                        Some(h)
                    }
                    Err(e) => {
                        outcome.unpinned.push(format!(
                            "could not pin {}: {}",
                            w.pin.describe(),
                            e.to_string().lines().next().unwrap_or("")
                        ));
                        None
                    }
                }
            }
            (Some(h), _) => Some(h.to_string()),
            (None, Some(h)) => Some(h),
            (None, None) => {
                if store.is_none() {
                    store = Some(Store::open(store_dir)?);
                }
                let store = store.as_ref().expect("opened above");
                match compute_content_hash(store, &http, &w.pin, source_dirs) {
                    Ok(h) => {
                        outcome.computed += 1;
                        Some(h)
                    }
                    Err(e) => {
                        let reason = e
                            .to_string()
                            .lines()
                            .nth(1)
                            .unwrap_or("")
                            .trim()
                            .to_string();
                        outcome
                            .unpinned
                            .push(format!("could not pin {}: {reason}", w.pin.describe()));
                        None
                    }
                }
            }
        };
        let pin = match hash {
            Some(h) => w.pin.with_content_hash(h),
            None => w.pin.clone(),
        };
        pinned.push(PinnedUpstream {
            pin,
            recipes: w.recipes,
        });
    }
    for w in go {
        let pin = match lock_go_modules(
            &w.pin,
            &pinned,
            previous,
            &lock,
            &mut store,
            store_dir,
            &http,
            source_dirs,
        ) {
            Ok((pin, computed)) => {
                outcome.computed += usize::from(computed);
                pin
            }
            Err(reason) => {
                outcome
                    .unpinned
                    .push(format!("could not pin {}: {reason}", w.pin.describe()));
                w.pin.clone()
            }
        };
        pinned.push(PinnedUpstream {
            pin,
            recipes: w.recipes,
        });
    }
    lock.upstream = pinned;
    lock.canonicalize();
    outcome.written = lock.write_if_changed(path)?;
    Ok(outcome)
}

/// Locks one `go-modules` pin: the content hash its source has in `pinned` decides; a pin
/// recorded for that hash in `previous` or `lock` is kept, else the modules are read from
/// the source tree (fetched into the store if needed). Gives the pin and whether it was
/// computed, or why it could not be.
#[allow(clippy::too_many_arguments)]
fn lock_go_modules(
    want: &SourcePin,
    pinned: &[PinnedUpstream],
    previous: Option<&Lockfile>,
    lock: &Lockfile,
    store: &mut Option<Store>,
    store_dir: &Path,
    http: &Http,
    source_dirs: &[PathBuf],
) -> Result<(SourcePin, bool), String> {
    let SourcePin::GoModules { source, dir, .. } = want else {
        unreachable!("only go-modules pins are passed");
    };
    let src = pinned
        .iter()
        .find(|u| u.pin.name() == source)
        .ok_or_else(|| format!("no source `{source}` is declared"))?;
    let src_hash = src
        .pin
        .content_hash()
        .ok_or_else(|| format!("source `{source}` has no content hash"))?;
    let kept = previous
        .into_iter()
        .chain(std::iter::once(lock))
        .flat_map(|l| l.upstream.iter())
        .find(|u| {
            spec(&u.pin) == spec(want)
                && matches!(&u.pin, SourcePin::GoModules { source_hash: Some(h), .. } if h == src_hash)
                && gomod::pin_modules(&u.pin).is_ok()
        });
    if let Some(k) = kept {
        return Ok((k.pin.clone(), false));
    }
    if store.is_none() {
        *store = Some(Store::open(store_dir).map_err(|e| e.to_string())?);
    }
    let store = store.as_ref().expect("opened above");
    let archive = fetch_source(store, http, &src.pin, source_dirs, false).map_err(|e| {
        let text = e.to_string();
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("").to_string();
        lines.next().map(|l| l.trim().to_string()).unwrap_or(first)
    })?;
    let found = gomod::go_modules_of_archive(&archive, dir)
        .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    Ok((gomod::locked_pin(want, src_hash, &found), true))
}

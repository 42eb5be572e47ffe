//! `hermetic cache gc`: what of the store a project no longer needs, and removing it.
//!
//! The policy: a step entry stays while some image of the project uses it (each recipe with
//! each selection of its profiles, [`crate::build::live_steps`]) or it holds the Go modules of
//! a locked module list; with `blobs`, a blob stays while `pins.lock` pins it (packages,
//! crates, upstream files). Temporary entries of processes that are gone and the trees kept
//! by `build --keep-failed` always go. A dry run removes nothing and takes no store lock.

use crate::archive::human_size;
use crate::build::BuildError;
use crate::lockfile::Lockfile;
use crate::recipe::Project;
use crate::report::Reporter;
use crate::store::{Store, StoreError, TmpPolicy, disk_usage};

/// Errors of `hermetic cache gc`: each names the entry it could not remove.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cannot tell which steps the project uses, so nothing was removed")]
    Live(#[source] BuildError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot remove step entry {key}")]
    Step {
        key: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot remove blob {hash}")]
    Blob {
        hash: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot clean the store's tmp/")]
    Tmp(#[source] StoreError),
    #[error("cannot remove the kept tree {name}")]
    Kept {
        name: String,
        #[source]
        source: StoreError,
    },
}

/// How to collect.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Say what would go, remove nothing.
    pub dry_run: bool,
    /// Also remove the blobs `pins.lock` does not pin.
    pub blobs: bool,
    /// `-v`: each entry removed, with its size; warnings for tmp/ entries that stay.
    pub report: Reporter,
}

/// What `hermetic cache gc` removed (or would remove).
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Step keys removed, with the space each held.
    pub steps_removed: Vec<(String, u64)>,
    pub steps_kept: usize,
    /// Blob hashes removed, with their size.
    pub blobs_removed: Vec<(String, u64)>,
    pub blobs_kept: usize,
    /// Temporary entries of processes that are gone, with their size.
    pub tmp_removed: Vec<(String, u64)>,
    /// Bytes of `tmp_removed`.
    pub tmp_bytes: u64,
    /// Temporary entries still in use by a running process.
    pub tmp_in_use: usize,
    /// Trees kept by `build --keep-failed`, with their size.
    pub kept_removed: Vec<(String, u64)>,
    /// Total bytes freed.
    pub bytes: u64,
}

/// Removes from `store` what `project` with `lock` does not need (see the module's policy).
/// `store` should be opened with [`Store::open_keeping_tmp`], so that the temporary entries
/// removed are counted here.
pub fn gc(
    project: &Project,
    lock: &Lockfile,
    store: &Store,
    opts: &GcOptions,
) -> Result<GcReport, GcError> {
    let dry_run = opts.dry_run;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut live = crate::build::live_steps(project, lock).map_err(GcError::Live)?;
    // The Go modules of `go-modules` pins are store entries too.
    live.extend(crate::sources::gomod::locked_module_entries(lock));
    // A dry run removes nothing: it need not wait for builds to finish.
    let _guard = if dry_run {
        None
    } else {
        Some(store.gc_guard()?)
    };
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    for key in store.steps()? {
        if live.contains(&key) {
            report.steps_kept += 1;
            continue;
        }
        let bytes = disk_usage(&store.step_path(&key))?;
        if !dry_run {
            store.remove_step(&key).map_err(|source| GcError::Step {
                key: key.clone(),
                source,
            })?;
        }
        opts.report
            .detail(format_args!("{verb} step {key} ({})", human_size(bytes)));
        report.bytes += bytes;
        report.steps_removed.push((key, bytes));
    }
    if opts.blobs {
        let mut pinned: std::collections::BTreeSet<String> = crate::fetch::plan(lock)
            .into_iter()
            .map(|item| item.sha256)
            .collect();
        // The crates of `[[cargo]]` builds and the file and deb sources are blobs too.
        pinned.extend(
            crate::sources::cargo::locked_crates_of(lock)
                .into_iter()
                .map(|c| c.checksum),
        );
        pinned.extend(
            lock.upstream
                .iter()
                .filter_map(|u| u.pin.content_hash().map(str::to_string)),
        );
        for hash in store.blobs()? {
            if pinned.contains(&hash) {
                report.blobs_kept += 1;
                continue;
            }
            let bytes = disk_usage(&store.blob_path(&hash))?;
            if !dry_run {
                store.remove_blob(&hash).map_err(|source| GcError::Blob {
                    hash: hash.clone(),
                    source,
                })?;
            }
            report.bytes += bytes;
            report.blobs_removed.push((hash, bytes));
        }
    } else {
        report.blobs_kept = store.blobs()?.len();
    }
    let tmp = store
        .clean_tmp(TmpPolicy::Collect { dry_run })
        .map_err(GcError::Tmp)?;
    for (name, why) in &tmp.failed {
        opts.report
            .warn(format_args!("cannot remove tmp/{name}: {why}"));
    }
    report.tmp_bytes = tmp.bytes;
    report.tmp_in_use = tmp.in_use;
    report.bytes += tmp.bytes;
    report.tmp_removed = tmp.removed;
    for name in store.kept()? {
        let bytes = disk_usage(&store.kept_path(&name))?;
        if !dry_run {
            store.remove_kept(&name).map_err(|source| GcError::Kept {
                name: name.clone(),
                source,
            })?;
        }
        report.bytes += bytes;
        report.kept_removed.push((name, bytes));
    }
    for (name, bytes) in &report.tmp_removed {
        opts.report
            .detail(format_args!("{verb} tmp/{name} ({})", human_size(*bytes)));
    }
    for (name, bytes) in &report.kept_removed {
        opts.report
            .detail(format_args!("{verb} kept/{name} ({})", human_size(*bytes)));
    }
    Ok(report)
}

//! `hermetic cache`: inspect and verify the store.

use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::archive::human_size;
use crate::store::{Store, TmpPolicy, disk_usage};

/// Inspect, verify and clean the store.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Re-hash every blob and step entry of the store; remove and report the corrupt ones
    /// (exit 1 if any).
    #[command(after_long_help = "\
A blob is corrupt when its content does not have its name's SHA-256; a step entry when the
digest of its files (paths, types, modes, owners, mtimes, contents, link targets) is not the
one its completion marker recorded when it was published. Corrupt blobs and entries are
removed: `hermetic fetch` downloads the blobs again, the next build rebuilds the entries.
Entries published by an older hermetic have no digest in their marker: they are listed as
unverifiable, not checked; delete such an entry's directory to have it rebuilt with one.")]
    Verify,
    /// Print the store directory.
    Dir,
    /// Remove the step entries no image of this project uses, and with --blobs the files
    /// pins.lock does not pin.
    #[command(after_long_help = "\
Kept: every step of every recipe of the project (-C), without profiles and with each
selection of its profiles taken in name order (up to 6 profiles a recipe; with more, none,
each alone and all together), as `hermetic plan` computes them. Everything else under
STORE/v1/steps goes: kernels, trees and outputs of older recipes, pins and configurations.
The store may be shared: entries only another project uses are removed too, and rebuilt the
next time that project needs them. Waits until no build, fetch or lock uses the store.

Also removed: the temporary entries of STORE/v1/tmp whose process is gone (killed runs; each
run also removes these when it opens the store), and the failed trees that `build
--keep-failed` kept under STORE/v1/kept.")]
    Gc {
        /// Say what would be removed and how much space that frees; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove the blobs pins.lock does not pin (older pins, cached archive indexes:
        /// the next `hermetic lock` downloads the indexes again).
        #[arg(long)]
        blobs: bool,
    },
}

/// What `hermetic cache gc` removed (or would remove).
#[derive(Debug, Default, serde::Serialize)]
struct GcReport {
    dry_run: bool,
    /// Step keys removed, with the space each held.
    steps_removed: Vec<(String, u64)>,
    steps_kept: usize,
    /// Blob hashes removed, with their size.
    blobs_removed: Vec<(String, u64)>,
    blobs_kept: usize,
    /// Temporary entries of processes that are gone, with their size.
    tmp_removed: Vec<(String, u64)>,
    /// Bytes of `tmp_removed`.
    tmp_bytes: u64,
    /// Temporary entries still in use by a running process.
    tmp_in_use: usize,
    /// Trees kept by `build --keep-failed`, with their size.
    kept_removed: Vec<(String, u64)>,
    /// Total bytes freed.
    bytes: u64,
}

fn gc(ctx: &Context, dry_run: bool, blobs: bool) -> anyhow::Result<GcReport> {
    let project = crate::recipe::Project::load(&ctx.project)?;
    let lock_path = crate::lockfile::Lockfile::path_in(&ctx.project);
    let lock = crate::lockfile::Lockfile::read(&lock_path)?
        .ok_or(crate::build::BuildError::NoLock { path: lock_path })?;
    // Not `Store::open`, which would clean tmp/ before this can say what it removed.
    let store = Store::open_keeping_tmp(&ctx.store)
        .with_context(|| format!("cannot open the store {}", ctx.store.display()))?;
    let live = crate::build::live_steps(&project, &lock)
        .context("cannot tell which steps the project uses, so nothing was removed")?;
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
            store
                .remove_step(&key)
                .with_context(|| format!("cannot remove step entry {key}"))?;
        }
        if ctx.verbosity > 0 {
            eprintln!(
                "{} step {key} ({})",
                if dry_run { "would remove" } else { "removed" },
                human_size(bytes)
            );
        }
        report.bytes += bytes;
        report.steps_removed.push((key, bytes));
    }
    if blobs {
        let mut pinned: std::collections::BTreeSet<String> = crate::fetch::plan(&lock)
            .into_iter()
            .map(|item| item.sha256)
            .collect();
        // The crates of `[[cargo]]` builds and the file and deb sources are blobs too.
        pinned.extend(
            crate::sources::cargo::locked_crates_of(&lock)
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
                store
                    .remove_blob(&hash)
                    .with_context(|| format!("cannot remove blob {hash}"))?;
            }
            report.bytes += bytes;
            report.blobs_removed.push((hash, bytes));
        }
    } else {
        report.blobs_kept = store.blobs()?.len();
    }
    let tmp = store
        .clean_tmp(TmpPolicy::Collect { dry_run })
        .context("cannot clean the store's tmp/")?;
    for (name, why) in &tmp.failed {
        eprintln!("warning: cannot remove tmp/{name}: {why}");
    }
    report.tmp_bytes = tmp.bytes;
    report.tmp_in_use = tmp.in_use;
    report.bytes += tmp.bytes;
    report.tmp_removed = tmp.removed;
    for name in store.kept()? {
        let bytes = disk_usage(&store.kept_path(&name))?;
        if !dry_run {
            store
                .remove_kept(&name)
                .with_context(|| format!("cannot remove the kept tree {name}"))?;
        }
        report.bytes += bytes;
        report.kept_removed.push((name, bytes));
    }
    if ctx.verbosity > 0 {
        let verb = if dry_run { "would remove" } else { "removed" };
        for (name, bytes) in &report.tmp_removed {
            eprintln!("{verb} tmp/{name} ({})", human_size(*bytes));
        }
        for (name, bytes) in &report.kept_removed {
            eprintln!("{verb} kept/{name} ({})", human_size(*bytes));
        }
    }
    Ok(report)
}

/// Runs `hermetic cache`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        CacheCommand::Gc { dry_run, blobs } => {
            let report = gc(ctx, dry_run, blobs)?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if ctx.verbosity >= 0 {
                eprintln!(
                    "{} {} step entries and {} blobs ({}); kept {} step entries and {} blobs",
                    if dry_run { "would remove" } else { "removed" },
                    report.steps_removed.len(),
                    report.blobs_removed.len(),
                    human_size(report.bytes),
                    report.steps_kept,
                    report.blobs_kept
                );
                eprintln!(
                    "{} {} temporary entries of finished or killed runs ({}) and {} kept failed trees; {} temporary entries in use",
                    if dry_run { "would remove" } else { "removed" },
                    report.tmp_removed.len(),
                    human_size(report.tmp_bytes),
                    report.kept_removed.len(),
                    report.tmp_in_use
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Dir => {
            println!("{}", ctx.store.display());
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Verify => {
            let store = Store::open(&ctx.store)?;
            // Removing entries while `cache gc` runs would race with it.
            let _in_use = store.use_guard()?;
            let total = (store.blobs()?.len() + store.steps()?.len()) as u64;
            let bar = if ctx.chatty() && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                indicatif::ProgressBar::new(total)
            } else {
                indicatif::ProgressBar::hidden()
            };
            let report = store.verify(&|_| bar.inc(1))?;
            bar.finish_and_clear();
            if ctx.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                for c in &report.corrupt {
                    eprintln!(
                        "corrupt: {} has SHA-256 {} (removed)",
                        c.path.display(),
                        c.actual
                    );
                }
                for c in &report.corrupt_steps {
                    eprintln!(
                        "corrupt: step entry {} has digest {}, its marker says {} (removed)",
                        c.path.display(),
                        c.actual,
                        c.expected
                    );
                }
                for key in &report.unverifiable_steps {
                    eprintln!(
                        "unverifiable: step entry {} has no digest (published by an older hermetic); rebuild to check",
                        store.step_path(key).display()
                    );
                }
                if ctx.verbosity >= 0 {
                    eprintln!(
                        "checked {} blobs and {} step entries ({:.1} MiB): {} corrupt, {} unverifiable",
                        report.checked,
                        report.steps_checked,
                        report.bytes as f64 / (1024.0 * 1024.0),
                        report.corrupt.len() + report.corrupt_steps.len(),
                        report.unverifiable_steps.len()
                    );
                }
            }
            if report.corrupt.is_empty() && report.corrupt_steps.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                if !ctx.json {
                    if !report.corrupt.is_empty() {
                        eprintln!("hint: run `hermetic fetch` to download the removed files again");
                    }
                    if !report.corrupt_steps.is_empty() {
                        eprintln!(
                            "hint: the next `hermetic build` rebuilds the removed step entries"
                        );
                    }
                }
                Ok(crate::exit::Exit::Store.into())
            }
        }
    }
}

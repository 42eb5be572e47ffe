//! `hermetic cache`: inspect and verify the store.

use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::archive::human_size;
use crate::store::{Store, disk_usage};

/// Inspect, verify and clean the store.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Re-hash every blob of the store and report the corrupt ones (exit 1 if any).
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
next time that project needs them. Waits until no build, fetch or lock uses the store.")]
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
    /// Total bytes freed.
    bytes: u64,
}

fn gc(ctx: &Context, dry_run: bool, blobs: bool) -> anyhow::Result<GcReport> {
    let (project, lock, store) = super::plan::load(ctx)?;
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
        let pinned: std::collections::BTreeSet<String> = crate::fetch::plan(&lock)
            .into_iter()
            .map(|item| item.sha256)
            .collect();
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
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Dir => {
            println!("{}", ctx.store.display());
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Verify => {
            let store = Store::open(&ctx.store)?;
            let total = store.blobs()?.len() as u64;
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
                    eprintln!("corrupt: {} has SHA-256 {}", c.path.display(), c.actual);
                }
                if ctx.verbosity >= 0 {
                    eprintln!(
                        "checked {} blobs ({:.1} MiB): {} corrupt",
                        report.checked,
                        report.bytes as f64 / (1024.0 * 1024.0),
                        report.corrupt.len()
                    );
                }
            }
            if report.corrupt.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                if !ctx.json {
                    eprintln!(
                        "hint: delete the corrupt files and run `hermetic fetch` to download them again"
                    );
                }
                Ok(crate::exit::Exit::Store.into())
            }
        }
    }
}

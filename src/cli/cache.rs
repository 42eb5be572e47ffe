//! `hermetic cache`: inspect and verify the store.

use std::process::ExitCode;

use super::Context;
use crate::store::Store;

/// Inspect and verify the store.
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
}

/// Runs `hermetic cache`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
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
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

//! `hermetic diff A B`: explain how two images or files differ (see [`crate::diff`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::diff::{self, DiffOptions};
use crate::exit::Exit;

/// Arguments of `hermetic diff`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 identical · 4 they differ · 1 an input cannot be read")]
pub struct Args {
    /// The first file (an image: .efi, .raw, .vhd, .qcow2, .tar.gz; an initrd, a tar, a
    /// kernel .config, or any file).
    pub a: PathBuf,
    /// The second file.
    pub b: PathBuf,
    /// List at most N differences (the rest are counted).
    #[arg(long, value_name = "N", default_value_t = diff::DEFAULT_MAX)]
    pub max: usize,
    /// Do not run diffoscope on files of formats hermetic does not know; summarise their
    /// bytes instead.
    #[arg(long)]
    pub no_diffoscope: bool,
}

/// Runs `hermetic diff`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let opts = DiffOptions {
        max: args.max,
        diffoscope: !args.no_diffoscope,
    };
    let report = diff::diff_paths(&args.a, &args.b, &opts)?;
    if ctx.json {
        let text = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        println!("{text}");
    } else if ctx.verbosity >= 0 || !report.is_empty() {
        print!("{}", report.render());
    }
    Ok(if report.is_empty() {
        Exit::Success.into()
    } else {
        Exit::NotReproducible.into()
    })
}

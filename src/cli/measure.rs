//! `hermetic measure` (being written in this session; owned by one helper).

use std::process::ExitCode;

use super::Context;

/// Arguments of `hermetic measure`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `hermetic measure`.
pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hermetic measure` is not available in this build yet")
}

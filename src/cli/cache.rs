//! `hermetic cache` (being written in this session; owned by one helper).

use std::process::ExitCode;

use super::Context;

/// Arguments of `hermetic cache`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `hermetic cache`.
pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hermetic cache` is not available in this build yet")
}

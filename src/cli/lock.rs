//! `hermetic lock` (being written in this session; owned by one helper).

use std::process::ExitCode;

use super::Context;

/// Arguments of `hermetic lock`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `hermetic lock`.
pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hermetic lock` is not available in this build yet")
}

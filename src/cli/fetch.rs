//! `hermetic fetch` (being written in this session; owned by one helper).

use std::process::ExitCode;

use super::Context;

/// Arguments of `hermetic fetch`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `hermetic fetch`.
pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hermetic fetch` is not available in this build yet")
}

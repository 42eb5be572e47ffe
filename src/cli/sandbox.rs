//! `hermetic sandbox` (being written in this session; owned by one helper).

use std::process::ExitCode;

use super::Context;

/// Arguments of `hermetic sandbox`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `hermetic sandbox`.
pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hermetic sandbox` is not available in this build yet")
}

//! `hermetic doctor` (being written in this session; owned by one helper).

use std::process::ExitCode;

use super::Context;

/// Arguments of `hermetic doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `hermetic doctor`.
pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hermetic doctor` is not available in this build yet")
}

//! `hermetic boot` (being written in this session).

use std::process::ExitCode;

use super::Context;

/// Arguments of `hermetic boot`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `hermetic boot`.
pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hermetic boot` is not available in this build yet")
}

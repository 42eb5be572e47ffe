//! `hermetic why`: the chains of dependencies that pull a package into an image.

use std::process::ExitCode;

use super::Context;
use crate::lockfile::Lockfile;

/// Arguments of `hermetic why`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Reads pins.lock only (no network, no store). For each closure that pins PKG (TARGET `base`:
the image `base`, its tools tree `base:build` and kernel build `base:kernel`; or one of those
tags), prints the shortest chain from each requested package, and from each root of the
essential base, that reaches PKG. See docs/pins.md.")]
pub struct Args {
    /// The pinned package.
    #[arg(value_name = "PKG")]
    pub package: String,

    /// A recipe (`base`, `gcp/devtools`) or a closure tag (`base:build`); every closure
    /// without one.
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,
}

/// Runs `hermetic why`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let path = Lockfile::path_in(&ctx.project);
    let lock = Lockfile::read(&path)?.ok_or(crate::build::BuildError::NoLock { path })?;
    let whys = crate::why::why(&lock, &args.package, args.target.as_deref())?;
    if ctx.json {
        println!("{}", serde_json::to_string(&whys)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (n, w) in whys.iter().enumerate() {
        if n > 0 {
            println!();
        }
        println!(
            "{} {} is in `{}` ({}):",
            w.package,
            w.version,
            w.closure,
            crate::why::describe(&w.closure)
        );
        for c in &w.chains {
            println!(
                "  {:<9}  {}",
                format!("{}:", c.root),
                c.packages.join(" -> ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

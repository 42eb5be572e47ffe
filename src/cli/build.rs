//! `hermetic build`: build images from their recipes.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Context;
use crate::build::{BuildOptions, StepState};

/// Arguments of `hermetic build`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Each image is a graph of steps, each keyed by the hash of all its inputs and kept in the
store: <image>/rootfs (the pinned packages installed), <image>/tools (the tools tree of the
recipe's steps), <image>/image (overlays, steps, clean-up), for a bootable format with a
[kernel] table <recipe>/kernel-tools and <recipe>/kernel (the kernel built from Debian's
source in the sandbox: the full seed kernel takes 20-40 minutes on two cores, with a line a
minute, or a spinner on a terminal, saying where it is), and <image>/output (the format). A
step whose key is stored never runs again; `hermetic plan TARGET` shows which would run.

Outputs go to --output with SHA256SUMS: <image>_<version>.efi, -import.tar.gz / .vhd /
.qcow2, .measurements.json, and with a built kernel .vmlinuz and .config. A failed step
publishes nothing; its log is kept under $TMPDIR/hermetic-logs/. The pins the targets need
that the store lacks are fetched first, as `hermetic fetch TARGET…` does (--offline: fail
instead). An upstream source that cannot be had stops the build naming it, its pin and every
URL tried; --omit NAME or --omit-unavailable build without it instead, and the image says so
(HERMETIC_OMITTED in /usr/lib/os-release, the provenance, a warning). See docs/recipes.md,
docs/pins.md and docs/kernel.md.")]
pub struct Args {
    /// The images to build (recipe names, e.g. `base`, `gcp`).
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Where the final outputs and `SHA256SUMS` go [default: PROJECT/out].
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Select a profile of the recipes (repeatable), e.g. `devtools`.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,

    /// Keep the tree of a failed step and print where it is.
    #[arg(long)]
    pub keep_failed: bool,

    /// Run every step again (`--rebuild=STEP,…`: only these, e.g. `gcp/kernel`) and report
    /// whether the new outputs are identical to the stored ones, naming the files that
    /// differ. A step the store lacks is compared with a cache's output of it, signed or not
    /// (the local output is stored).
    #[arg(long, value_name = "STEP", num_args = 0.., require_equals = true, value_delimiter = ',')]
    pub rebuild: Option<Vec<String>>,

    /// Never touch the network: fail if a pin the build needs is not in the store
    /// (without it, missing pins are fetched first, as `hermetic fetch` would).
    #[arg(long)]
    pub offline: bool,

    /// A Debian mirror to fetch missing pins from first (repeatable), as for `hermetic fetch`.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,

    /// A directory holding copies of upstream sources (`[[sources]]`), as for `hermetic
    /// fetch`: tried before their URLs, checked against their pins the same way (repeatable).
    #[arg(long = "source-dir", value_name = "DIR")]
    pub source_dirs: Vec<PathBuf>,

    /// Build without the upstream source NAME (repeatable): its `[[cargo]]`/`[[go]]` builds,
    /// its `deb` install and the steps reading it (`upstream`, `sources`) are left out, and the
    /// image says so (`HERMETIC_OMITTED` in /usr/lib/os-release, the provenance, a warning).
    #[arg(long = "omit", value_name = "NAME")]
    pub omit: Vec<String>,

    /// Build without every upstream source that cannot be had (store, --source-dir, then its
    /// URLs; no URL with --offline), as --omit would.
    #[arg(long)]
    pub omit_unavailable: bool,

    /// Parallel jobs of the kernel build (`make -jN`) [default: the CPUs hermetic may use].
    /// The number of jobs changes neither the step key nor a byte of the output.
    #[arg(long, short = 'j', value_name = "N", env = "HERMETIC_JOBS")]
    pub jobs: Option<std::num::NonZeroUsize>,
    /// Sign every output, the release files and SHA256SUMS with this minisign secret key,
    /// writing FILE.minisig next to each (see `hermetic sign`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,

    #[command(flatten)]
    pub cache: super::cache::UseArgs,
}

/// A finished `hermetic build`.
pub(crate) type Built = crate::build::pipeline::Built;

/// Builds the targets exactly as `hermetic build` does (`hermetic verify` builds through
/// this too) and writes the release files next to the outputs.
pub(crate) fn execute(ctx: &Context, args: &Args) -> anyhow::Result<Built> {
    let (project, lock, store) = super::plan::load(ctx)?;
    if !args.offline {
        super::cache::activate(ctx, &project, &args.cache)?;
    }
    let request = crate::build::pipeline::Request {
        targets: &args.targets,
        profiles: &args.profiles,
        offline: args.offline,
        mirrors: &args.mirrors,
        source_dirs: &args.source_dirs,
        omit: &args.omit,
        omit_unavailable: args.omit_unavailable,
        options: BuildOptions {
            output_dir: args
                .output
                .clone()
                .unwrap_or_else(|| ctx.project.join("out")),
            keep_failed: args.keep_failed,
            rebuild: args.rebuild.is_some(),
            rebuild_only: args.rebuild.clone().unwrap_or_default(),
            report: ctx.reporter(),
            jobs: args.jobs,
        },
    };
    Ok(crate::build::pipeline::build_targets(
        &store, &project, &lock, &request,
    )?)
}

/// Runs `hermetic build`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let built = execute(ctx, &args)?;
    let Built {
        report,
        output_dir,
        differs,
        release,
    } = &built;
    if let Some(key) = &args.sign {
        let files: Vec<PathBuf> = report
            .outputs
            .iter()
            .chain(release.iter())
            .map(|(p, _)| output_dir.join(p))
            .chain(std::iter::once(
                output_dir.join(crate::build::outputs::OUT_SUMS),
            ))
            .collect();
        let signatures = super::sign::sign_files(ctx, key, &files, None)?;
        if ctx.verbosity > 0 && !ctx.json {
            for s in signatures {
                eprintln!("signed  {}", s.display());
            }
        }
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else if ctx.verbosity >= 0 {
        for (path, hash) in report.outputs.iter().chain(release.iter()) {
            println!("{hash}  {}", output_dir.join(path).display());
        }
        super::cache::print_report(ctx);
        if args.rebuild.is_some() {
            for step in &report.steps {
                match &step.state {
                    StepState::Differs(paths) => eprintln!(
                        "{}: the rebuild differs from the stored output, first at {}",
                        step.name,
                        paths.first().map_or("", String::as_str)
                    ),
                    StepState::DiffersFromCache {
                        cache,
                        trust,
                        paths,
                    } => eprintln!(
                        "{}: the rebuild differs from the output of cache {cache} ({trust}), first at {}",
                        step.name,
                        paths.first().map_or("", String::as_str)
                    ),
                    StepState::Verified { cache, trust } => eprintln!(
                        "{}: verified: the rebuild is identical to the output of cache {cache} ({trust})",
                        step.name
                    ),
                    _ => {}
                }
            }
            if *differs {
                eprintln!("the rebuild is NOT identical to the stored outputs");
            } else {
                eprintln!("the rebuild is identical to the stored outputs");
            }
        }
    }
    Ok(if *differs {
        crate::exit::Exit::NotReproducible.into()
    } else {
        ExitCode::SUCCESS
    })
}

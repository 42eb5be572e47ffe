//! `hermetic build`: build images from their recipes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

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
publishes nothing; its log is kept under $TMPDIR/hermetic-logs/. Pins of pins.lock missing
from the store are fetched first, as `hermetic fetch` does (--offline: fail instead). See docs/recipes.md and
docs/kernel.md.")]
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
pub(crate) struct Built {
    pub report: crate::build::BuildReport,
    pub output_dir: PathBuf,
    /// `--rebuild` found a step whose new output differs.
    pub differs: bool,
    /// The release files (provenance, SBOM, manifest) with their SHA-256.
    pub release: Vec<(PathBuf, String)>,
}

/// Builds the targets exactly as `hermetic build` does (`hermetic verify` builds through
/// this too) and writes the release files next to the outputs.
pub(crate) fn execute(ctx: &Context, args: &Args) -> anyhow::Result<Built> {
    // Whatever hermetic itself creates in a tree must not depend on the caller's umask
    // (Debian's default is 002, Ubuntu's 022); the sandbox fixes it for the steps.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let (project, lock, store) = super::plan::load(ctx)?;
    sandbox::preflight(sandbox::IdMapping::Subordinate)
        .context("the build sandbox cannot run on this machine")?;
    let graph = crate::build::plan(&project, &lock, &args.targets, &args.profiles)?;
    let rebuild_only = args.rebuild.clone().unwrap_or_default();
    if let Some(unknown) = rebuild_only
        .iter()
        .find(|name| !graph.nodes.iter().any(|n| &n.name == *name))
    {
        let steps: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
        anyhow::bail!(
            "--rebuild={unknown}: {} has no step {unknown}\nhint: its steps are {}",
            args.targets.join(" "),
            steps.join(", ")
        );
    }
    if !args.offline {
        super::cache::activate(ctx, &project, &args.cache)?;
    }
    fetch_first(ctx, &project, &lock, &store, args.offline, &args.mirrors)?;
    // The sources and crates of `[[cargo]]` builds, the same way.
    crate::build::program::fetch_inputs(&store, &graph, &lock, args.offline)?;
    let opts = BuildOptions {
        output_dir: args
            .output
            .clone()
            .unwrap_or_else(|| ctx.project.join("out")),
        keep_failed: args.keep_failed,
        rebuild: args.rebuild.is_some(),
        rebuild_only,
        report: ctx.reporter(),
        jobs: args.jobs,
    };
    let report = crate::build::build(&store, &graph, &opts)?;
    let differs = report.steps.iter().any(|s| s.state.differs());
    let release = crate::release::write_release_files(
        &crate::release::ReleaseInputs {
            store: &store,
            graph: &graph,
            lock: &lock,
            lock_sha256: crate::verify::sha256_file(&crate::lockfile::Lockfile::path_in(
                &ctx.project,
            ))?,
            profiles: &args.profiles,
            git: crate::release::git_revision(&ctx.project),
            source_date_epoch: graph.source_date_epoch,
        },
        &opts.output_dir,
    )?;
    Ok(Built {
        report,
        output_dir: opts.output_dir,
        differs,
        release,
    })
}

/// Like cargo: what a build needs and the store lacks is fetched first (a `stat` per pin when
/// everything is there), unless `offline` forbids the network.
pub(crate) fn fetch_first(
    ctx: &Context,
    project: &crate::recipe::Project,
    lock: &crate::lockfile::Lockfile,
    store: &crate::store::Store,
    offline: bool,
    mirrors: &[String],
) -> anyhow::Result<()> {
    let make =
        || crate::fetch::default_downloader(store, mirrors, &project.config.archive.snapshot);
    let fetch_opts = crate::fetch::FetchOptions {
        offline,
        report: ctx.reporter(),
    };
    let fetched = crate::fetch::fetch(store, lock, &fetch_opts, &make)?;
    if fetched.fetched > 0 {
        fetch_opts.report.line(fetched);
    }
    Ok(())
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

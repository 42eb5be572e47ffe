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

    /// Run every step again and report whether the new outputs are identical to the stored
    /// ones, naming the files that differ.
    #[arg(long)]
    pub rebuild: bool,

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
    /// its `deb` install and the steps listing it in `sources` are left out, and the image
    /// says so (`HERMETIC_OMITTED` in /usr/lib/os-release, the provenance, a warning).
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
    let mut omit: std::collections::BTreeSet<String> = args.omit.iter().cloned().collect();
    let mut graph =
        crate::build::plan_omitting(&project, &lock, &args.targets, &args.profiles, &omit)?;
    if !args.offline {
        super::cache::activate(ctx, &project, &args.cache)?;
    }
    if args.omit_unavailable {
        let unavailable = unavailable_sources(&store, &graph, &lock, args)?;
        if !unavailable.is_empty() {
            omit.extend(unavailable);
            graph =
                crate::build::plan_omitting(&project, &lock, &args.targets, &args.profiles, &omit)?;
        }
    }
    for (target, names) in &graph.omitted {
        for name in names {
            // Even with -q: such an image must never pass for a release.
            eprintln!(
                "warning: `{target}` is built without the upstream source `{name}` (HERMETIC_OMITTED in its os-release): not a release image"
            );
        }
    }
    // Only what these images need: another image's unreachable source stops nothing here.
    let needed = crate::build::omit::needed_pins(&graph, &lock);
    fetch_first(ctx, &project, &needed, &store, args.offline, &args.mirrors)?;
    // The upstream sources, crates and Go modules of the programs, the same way.
    crate::build::program::fetch_inputs(&store, &graph, &lock, &args.source_dirs, args.offline)?;
    let opts = BuildOptions {
        output_dir: args
            .output
            .clone()
            .unwrap_or_else(|| ctx.project.join("out")),
        keep_failed: args.keep_failed,
        rebuild: args.rebuild,
        report: ctx.reporter(),
        jobs: args.jobs,
    };
    let report = crate::build::build(&store, &graph, &opts)?;
    let differs = report
        .steps
        .iter()
        .any(|s| matches!(s.state, StepState::Differs(_)));
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

/// `--omit-unavailable`: the upstream sources of `graph` that cannot be had now (store,
/// `--source-dir`s, then their URLs unless offline); those that can are in the store after.
fn unavailable_sources(
    store: &crate::store::Store,
    graph: &crate::build::Graph,
    lock: &crate::lockfile::Lockfile,
    args: &Args,
) -> anyhow::Result<Vec<String>> {
    let needed = crate::build::omit::needed_pins(graph, lock);
    let http = crate::http::Http::new();
    let upstream = crate::sources::fetch::fetch_upstream(
        store,
        &http,
        &needed,
        &args.source_dirs,
        args.offline,
    );
    // The git repositories of cargo builds' crates: one that cannot be had leaves out the
    // build's source (its error is named by it).
    let git = match crate::sources::cargo::fetch_locked_git(
        store,
        &http,
        &needed,
        &args.source_dirs,
        args.offline,
    ) {
        Err(crate::sources::cargo::CrateError::UpstreamFetch(e)) => Err(e),
        Err(other) => return Err(other.into()),
        Ok(_) => Ok(()),
    };
    let mut names = Vec::new();
    for e in [upstream.err(), git.err()].into_iter().flatten() {
        use crate::sources::fetch::SourceError;
        // Only a source no copy of could be had is omitted; a pin without a hash or a
        // store that cannot be written stays an error.
        for (error, name) in e.errors.into_iter().zip(e.names) {
            match error {
                SourceError::Unavailable { .. } | SourceError::Go(_) => names.push(name),
                other => return Err(other.into()),
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
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
        if args.rebuild {
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

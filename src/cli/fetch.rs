//! `hermetic fetch`: download the pins of `pins.lock` (all, or those of some images) into
//! the store.

use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::fetch::{FetchOptions, default_downloader, fetch, local_downloader};
use crate::lockfile::Lockfile;
use crate::recipe::Project;
use crate::store::Store;

/// Arguments of `hermetic fetch`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Pins already in the store cost nothing: no network, no re-hash (`hermetic cache verify`
re-hashes everything). Missing pins are downloaded 8 at a time, size and SHA-256 checked
while streaming; nothing unverified is ever visible in the store. Files come from --mirror /
HERMETIC_MIRRORS (http(s) URLs, file:// URLs or directories of offline media), then
snapshot.debian.org at the pin's timestamp, then the Debian mirrors of the host's apt
configuration: any copy will do, the hash decides. `--plan` lists them per pin. Two processes may fetch
into the same store at once.

Every transfer is held to limits: connect 10 s, response headers 30 s, at least 8 KiB/s over
any 30 s window, and a deadline per file of its size at that rate plus 60 s. A source that
fails twice (timeout, stall, refused connection, 5xx; not a 404) is tried after the others for
the rest of the run. HERMETIC_FETCH_CONNECT_TIMEOUT, HERMETIC_FETCH_RESPONSE_TIMEOUT,
HERMETIC_FETCH_MIN_RATE, HERMETIC_FETCH_STALL_WINDOW and HERMETIC_FETCH_DEADLINE_SLACK change
the limits. Progress is a bar on a terminal, plain lines otherwise (none with -q).
With TARGETs, only the pins those images need (their parents, tools trees, kernels,
programs and sources included). See docs/pins.md.")]
pub struct Args {
    /// Fetch only what these images need (recipe names; their parents' packages, tools
    /// trees, kernels, tarballs, upstream sources, crates and Go modules included) [default:
    /// every pin of pins.lock].
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// With TARGETs: the profiles selected, as for `hermetic build` (repeatable).
    #[arg(long = "profile", value_name = "NAME", requires = "targets")]
    pub profiles: Vec<String>,

    /// Never touch the network: only the store and the local --mirror sources (file://,
    /// directories); fail listing every pin they do not hold.
    #[arg(long)]
    pub offline: bool,

    /// A Debian mirror to try first (repeatable): `http://host/debian`, or a root holding
    /// `debian/` and `debian-security/`; or a local copy (offline media): `file:///media/x`
    /// or a directory, laid out like a mirror (`pool/...`) or holding the files by name.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,

    /// A directory holding copies of upstream sources (`[[upstream]]` pins): files by
    /// name, git checkouts or archives named like the source; tried before their URLs and
    /// checked the same way (repeatable).
    #[arg(long = "source-dir", value_name = "DIR")]
    pub source_dirs: Vec<std::path::PathBuf>,

    /// Print each pin's candidate URLs in the order they are tried, and fetch nothing (no
    /// network; with --json, one JSON document).
    #[arg(long)]
    pub plan: bool,
    #[command(flatten)]
    pub cache: super::cache::UseArgs,
}

/// Runs `hermetic fetch`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let project = Project::load(&ctx.project)?;
    let path = Lockfile::path_in(&project.root);
    let lock = Lockfile::read(&path)?.with_context(|| {
        format!(
            "{} does not exist\nhint: run `hermetic lock` first",
            path.display()
        )
    })?;
    if ctx.verbosity >= 0 && !crate::lock::check(&project, &lock)?.is_empty() {
        eprintln!(
            "warning: {} does not match the recipes; fetching its pins anyway\n\
             help: run `hermetic lock`",
            path.display()
        );
    }
    // With targets, the pins their plans use: another image's unreachable source is not
    // this one's problem.
    let lock = if args.targets.is_empty() {
        lock
    } else {
        let graph = crate::build::plan(&project, &lock, &args.targets, &args.profiles)?;
        crate::build::omit::needed_pins(&graph, &lock)
    };
    let snapshot = &project.config.archive.snapshot;
    if args.plan {
        let mirrors = crate::mirrors::Mirrors::new(&crate::mirrors::MirrorConfig::from_env(
            &args.mirrors,
            Some(snapshot),
        ))?;
        let pins = crate::candidates::plan(&lock, &mirrors);
        let upstream = crate::candidates::plan_upstream(&lock, &args.source_dirs);
        if ctx.json {
            println!(
                "{}",
                serde_json::json!({ "pins": pins, "upstream": upstream })
            );
        } else {
            print!("{}", crate::candidates::render_plan(&pins));
            print!("{}", crate::candidates::render_upstream_plan(&upstream));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(&ctx.store)?;
    if !args.offline {
        super::cache::activate(ctx, &project, &args.cache)?;
    }
    // --offline with local sources: those alone, no network source at all.
    let local: Vec<String> = args
        .mirrors
        .iter()
        .filter(|m| !m.starts_with("http://") && !m.starts_with("https://"))
        .cloned()
        .collect();
    let offline_local = args.offline && !local.is_empty();
    let make = || {
        if offline_local {
            local_downloader(&store, &local)
        } else {
            default_downloader(&store, &args.mirrors, snapshot)
        }
    };
    let options = FetchOptions {
        offline: args.offline && !offline_local,
        report: ctx.reporter(),
    };
    let summary = fetch(&store, &lock, &options, &make)?;
    // One pooled client for the sources, crates and git trees (the resolver may stall).
    let http = crate::http::Http::new();
    let upstream = crate::sources::fetch::fetch_upstream(
        &store,
        &http,
        &lock,
        &args.source_dirs,
        args.offline,
    )?;
    let (crates_already, crates_fetched) =
        crate::sources::cargo::fetch_locked_crates(&store, &http, &lock, args.offline)?;
    let (git_already, git_fetched) = crate::sources::cargo::fetch_locked_git(
        &store,
        &http,
        &lock,
        &args.source_dirs,
        args.offline,
    )?;
    if !ctx.json && ctx.verbosity >= 0 && !lock.cargo.is_empty() {
        eprintln!("crates: {crates_fetched} fetched, {crates_already} already in the store");
    }
    if !ctx.json && ctx.verbosity >= 0 && git_already + git_fetched > 0 {
        eprintln!(
            "git repositories of crates: {git_fetched} fetched, {git_already} already in the store"
        );
    }
    if !ctx.json && ctx.verbosity >= 0 && !lock.upstream.is_empty() {
        eprintln!(
            "upstream sources: {} fetched, {} already in the store",
            upstream.fetched, upstream.already
        );
    }
    if ctx.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if ctx.verbosity >= 0 {
        eprintln!("{summary}");
    }
    super::cache::print_report(ctx);
    Ok(ExitCode::SUCCESS)
}

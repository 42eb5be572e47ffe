//! `hermetic lock`: resolve the recipes' Debian packages and sources into `pins.lock`.

use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::lock::{LockOptions, check_project, lock};
use crate::lockfile::Lockfile;
use crate::recipe::Project;

/// Arguments of `hermetic lock`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Reads each suite's InRelease and verifies its OpenPGP signature against
keys/debian-archive-keyring.pgp (HERMETIC_KEYRING replaces it) with a key allowed for the
suite, not expired or revoked at the InRelease's Date; refuses an InRelease whose Codename or
Suite is not the suite asked for, whose Date is older than the one pins.lock records (unless
--allow-downgrade), or whose Valid-Until has passed (except snapshot states). Checks the Packages and
Sources indexes it lists by SHA-256, and resolves every recipe like `apt-get install
--no-install-recommends` plus the essential base: its `packages` (tag <recipe>) and its
`build-packages` (tag <recipe>:build), and with a [kernel] table the kernel's build-packages,
source and config packages (tag <recipe>:kernel). Recipes whose request did not change keep
their pins; the others prefer the versions already pinned (like cargo), and what changed is
printed (Adding, Removing, Updating). pins.lock is not rewritten when nothing changed.

Files come from --mirror / HERMETIC_MIRRORS, then snapshot.debian.org at the pinned
timestamp, then the Debian mirrors of the host's apt configuration; reading a later source
after the snapshot failed needs --allow-mirror-state. Each [[suite]] records which source
it was read from. See docs/pins.md.")]
pub struct Args {
    /// Only check, without network, that `pins.lock` matches the recipes; exit 3 if not.
    #[arg(long, conflicts_with = "update")]
    pub check: bool,

    /// Move pins to the archive's newest versions: with no PKG every pin; with PKG... only
    /// those packages (and what their new versions force). Plain `hermetic lock` moves no
    /// pin that still satisfies the recipes.
    #[arg(long, value_name = "PKG", num_args = 0..)]
    pub update: Option<Vec<String>>,

    /// A Debian mirror to try first (repeatable): `http://host/debian`, or a root holding
    /// `debian/` and `debian-security/`.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,

    /// Accept an InRelease whose `Date` is older than the one pins.lock records for its
    /// suite (a rolled-back archive state is refused otherwise).
    #[arg(long, conflicts_with = "check")]
    pub allow_downgrade: bool,

    /// When snapshot.debian.org does not answer, read the next source's state (a mirror's
    /// today) instead of failing; the lock records that source, not the snapshot.
    #[arg(long, conflicts_with = "check")]
    pub allow_mirror_state: bool,
    /// A directory holding copies of upstream sources (files by name, git checkouts or
    /// archives named like the source), tried before their URLs when a content hash is
    /// computed (repeatable).
    #[arg(long = "source-dir", value_name = "DIR", conflicts_with = "check")]
    pub source_dirs: Vec<std::path::PathBuf>,
}

/// Runs `hermetic lock`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let project = Project::load(&ctx.project)?;
    if args.check {
        let path = Lockfile::path_in(&project.root);
        let problems = check_project(&project)?;
        if ctx.json {
            let v = serde_json::json!({ "up_to_date": problems.is_empty(), "problems": problems });
            println!("{v}");
        }
        if problems.is_empty() {
            if ctx.chatty() {
                eprintln!("{} matches the recipes", path.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("error: {} does not match the recipes:", path.display());
        for p in &problems {
            eprintln!("  {p}");
        }
        eprintln!("help: run `hermetic lock`");
        return Ok(crate::exit::Exit::LockStale.into());
    }
    let options = LockOptions {
        update: args.update.as_ref().is_some_and(Vec::is_empty),
        update_packages: args.update.unwrap_or_default(),
        mirrors: args.mirrors,
        store_dir: ctx.store.clone(),
        report: ctx.reporter(),
        allow_downgrade: args.allow_downgrade,
        allow_mirror_state: args.allow_mirror_state,
    };
    let path = Lockfile::path_in(&project.root);
    let previous = Lockfile::read(&path).ok().flatten();
    let outcome = lock(&project, &options).context("cannot lock the recipes")?;
    if ctx.verbosity >= 0 {
        for n in &outcome.notices {
            eprintln!("{n}");
        }
        if !ctx.json {
            for c in &outcome.changes {
                eprintln!("{c}");
            }
        }
    }
    let upstream = crate::sources::lockpins::lock_upstream(
        &project,
        &path,
        previous.as_ref(),
        &ctx.store,
        &args.source_dirs,
    )
    .context("cannot pin the upstream sources")?;
    for line in &upstream.unpinned {
        eprintln!("warning: {line}");
    }
    let cargo = crate::sources::cargo::lock_cargo(
        &project,
        &path,
        previous.as_ref(),
        &ctx.store,
        &args.source_dirs,
    )
    .context("cannot lock the crates of the cargo builds")?;
    if ctx.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else if ctx.verbosity >= 0 {
        let mut what = format!(
            "{} packages, {} source packages, {} tarballs",
            outcome.packages, outcome.sources, outcome.tarballs
        );
        if cargo.crates > 0 {
            what.push_str(&format!(", {} crates", cargo.crates));
        }
        if outcome.written || upstream.written || cargo.written {
            eprintln!("wrote {} ({what})", outcome.path.display());
        } else {
            eprintln!("{} is up to date ({what})", outcome.path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `hermetic cache`: inspect, verify and clean the store; push to and pull from shared caches.

use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::archive::human_size;
use crate::store::Store;

/// Inspect, verify and clean the store.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Re-hash every blob and step entry of the store; remove and report the corrupt ones
    /// (exit 1 if any).
    #[command(after_long_help = "\
A blob is corrupt when its content does not have its name's SHA-256; a step entry when the
digest of its files (paths, types, modes, owners, mtimes, contents, link targets) is not the
one its completion marker recorded when it was published. Corrupt blobs and entries are
removed: `hermetic fetch` downloads the blobs again, the next build rebuilds the entries.
Entries published by an older hermetic have no digest in their marker: they are listed as
unverifiable, not checked; delete such an entry's directory to have it rebuilt with one.")]
    Verify,
    /// Push the pinned files of the store and its step outputs to a registry (a shared
    /// cache), e.g. `hermetic cache push registry.example.com/team/hermetic --key ci.key`.
    #[command(after_long_help = "\
Pushed: every pin of pins.lock the store has (as blobs under their SHA-256, named by one
manifest tagged pins-<hash>), and the stored output of every step of the project's recipes
(as an artifact manifest tagged step-<key>, its layer the tar of the store entry). Nothing is
sent twice: a blob the repository has is skipped (HEAD), one in a --mount-from repository is
mounted, and an upload a killed push left open is resumed. With --key each step output is
signed; other machines accept a step output only when signed by a key they trust
(--cache-key). Credentials: HERMETIC_REGISTRY_USER and HERMETIC_REGISTRY_PASSWORD, else
~/.docker/config.json. Blobs larger than HERMETIC_CACHE_CHUNK_SIZE bytes (16 MiB) are sent
in chunks. See docs/cache.md.")]
    Push {
        /// The cache: REGISTRY/REPOSITORY (`http://` for a plain-HTTP registry; localhost and
        /// 127.0.0.1 are spoken to in HTTP).
        #[arg(value_name = "REGISTRY/REPO")]
        cache: String,
        /// Sign each step output with this minisign secret key (HERMETIC_SIGN_PASSWORD for
        /// an encrypted one).
        #[arg(long, value_name = "SECRET_KEY")]
        key: Option<std::path::PathBuf>,
        /// Another repository of the same registry to mount blobs from instead of uploading
        /// them (repeatable).
        #[arg(long = "mount-from", value_name = "REPO")]
        mount_from: Vec<String>,
    },
    /// Take the pins of pins.lock and the step outputs of the project from shared caches into
    /// the store (what `fetch` and `build` do with `--cache` on their way).
    Pull {
        /// Caches to pull from (REGISTRY/REPOSITORY), besides --cache and hermetic.toml's.
        #[arg(value_name = "REGISTRY/REPO")]
        from: Vec<String>,
        #[command(flatten)]
        use_args: UseArgs,
    },
    /// Print the store directory.
    Dir,
    /// Remove the step entries no image of this project uses, and with --blobs the files
    /// pins.lock does not pin.
    #[command(after_long_help = "\
Kept: every step of every recipe of the project (-C), without profiles and with each
selection of its profiles taken in name order (up to 6 profiles a recipe; with more, none,
each alone and all together), as `hermetic plan` computes them. Everything else under
STORE/v1/steps goes: kernels, trees and outputs of older recipes, pins and configurations.
The store may be shared: entries only another project uses are removed too, and rebuilt the
next time that project needs them. Waits until no build, fetch or lock uses the store.

Also removed: the temporary entries of STORE/v1/tmp whose process is gone (killed runs; each
run also removes these when it opens the store), and the failed trees that `build
--keep-failed` kept under STORE/v1/kept.")]
    Gc {
        /// Say what would be removed and how much space that frees; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove the blobs pins.lock does not pin (older pins, cached archive indexes:
        /// the next `hermetic lock` downloads the indexes again).
        #[arg(long)]
        blobs: bool,
    },
}

/// The options of `fetch`, `build` and `cache pull` that name shared caches.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UseArgs {
    /// A shared cache (REGISTRY/REPOSITORY) to take pinned files from before the mirrors, and
    /// step outputs signed by a trusted key before running a step (repeatable; adds to
    /// hermetic.toml's `[cache] urls`).
    #[arg(
        long = "cache",
        value_name = "REGISTRY/REPO",
        env = "HERMETIC_CACHES",
        value_delimiter = ','
    )]
    pub caches: Vec<String>,
    /// A minisign public key whose signed step outputs are accepted (repeatable; adds to
    /// `[cache] trusted-keys`).
    #[arg(
        long = "cache-key",
        value_name = "PUBLIC_KEY",
        env = "HERMETIC_CACHE_KEYS",
        value_delimiter = ','
    )]
    pub cache_keys: Vec<std::path::PathBuf>,
    /// Use no shared cache, not even those of HERMETIC_CACHES or hermetic.toml.
    #[arg(long)]
    pub no_cache: bool,
}

impl UseArgs {
    /// No cache at all (for `verify`, whose rebuild must not take outputs from anywhere).
    pub fn none() -> UseArgs {
        UseArgs {
            no_cache: true,
            ..UseArgs::default()
        }
    }
}

/// Installs the caches of `args` and of the project's `[cache]` table for this run.
pub fn activate(
    ctx: &Context,
    project: &crate::recipe::Project,
    args: &UseArgs,
) -> anyhow::Result<()> {
    if args.no_cache {
        return Ok(());
    }
    let mut urls: Vec<String> = args.caches.clone();
    urls.extend(project.config.cache.urls.iter().cloned());
    urls.retain(|u| !u.trim().is_empty());
    urls.dedup();
    if urls.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<std::path::PathBuf> = args.cache_keys.clone();
    keys.extend(
        project
            .config
            .cache
            .trusted_keys
            .iter()
            .map(|k| project.root.join(k)),
    );
    let mut trusted = Vec::new();
    for path in keys {
        let key = crate::sign::PublicKey::read(&path)
            .with_context(|| format!("cannot read the trusted cache key {}", path.display()))?;
        trusted.push((path, key));
    }
    let http = crate::http::Http::new();
    let mut registries = Vec::new();
    for url in &urls {
        let cache = crate::cache::CacheRef::parse(url.trim())?;
        registries.push(crate::cache::oci::Registry::new(http.clone(), cache)?);
    }
    let mut substituter = crate::cache::Substituter::new(registries, trusted);
    substituter.verbose = ctx.verbosity >= 0;
    crate::cache::install(substituter);
    Ok(())
}

/// Prints what the caches gave, if any was asked.
pub fn print_report(ctx: &Context) {
    if ctx.chatty()
        && let Some(line) = crate::cache::report()
    {
        eprintln!("{line}");
    }
}

fn push(
    ctx: &Context,
    cache: &str,
    key: Option<&std::path::Path>,
    mount_from: Vec<String>,
) -> anyhow::Result<crate::cache::push::PushReport> {
    let (project, lock, store) = super::plan::load(ctx)?;
    let _in_use = store.use_guard()?;
    let key = key
        .map(crate::sign::SecretKey::read)
        .transpose()
        .context("cannot read the signing key")?;
    let mut registry = crate::cache::oci::Registry::new(
        crate::http::Http::new(),
        crate::cache::CacheRef::parse(cache)?,
    )?;
    registry.push = true;
    registry.mount_from = mount_from;
    let pins = crate::fetch::plan(&lock);
    let live = crate::build::live_steps(&project, &lock)?;
    let mut names = std::collections::BTreeMap::new();
    for recipe in project.recipes.keys() {
        let graph = crate::build::plan(&project, &lock, std::slice::from_ref(recipe), &[])?;
        for node in graph.nodes {
            names.insert(node.key.as_str().to_string(), node.name);
        }
    }
    let steps: Vec<crate::cache::push::StepToPush> = live
        .into_iter()
        .filter(|k| store.has_step(k))
        .map(|k| crate::cache::push::StepToPush {
            name: names.get(&k).cloned(),
            key: k,
        })
        .collect();
    let opts = crate::cache::push::PushOptions {
        key,
        progress: ctx.chatty(),
    };
    Ok(crate::cache::push::push(
        &store, &registry, &pins, &steps, &opts,
    )?)
}

fn pull(ctx: &Context, caches: Vec<String>, mut use_args: UseArgs) -> anyhow::Result<()> {
    let (project, lock, store) = super::plan::load(ctx)?;
    use_args.caches.extend(caches);
    activate(ctx, &project, &use_args)?;
    let make = || crate::fetch::default_downloader(&store, &[], &project.config.archive.snapshot);
    let fetched = crate::fetch::fetch(
        &store,
        &lock,
        &crate::fetch::FetchOptions {
            offline: false,
            report: ctx.reporter(),
        },
        &make,
    )?;
    if ctx.chatty() && fetched.fetched > 0 {
        eprintln!("{fetched}");
    }
    let _in_use = store.use_guard()?;
    let mut names = std::collections::BTreeMap::new();
    for recipe in project.recipes.keys() {
        let graph = crate::build::plan(&project, &lock, std::slice::from_ref(recipe), &[])?;
        for node in graph.nodes {
            names.insert(node.key.as_str().to_string(), node.name);
        }
    }
    for key in crate::build::live_steps(&project, &lock)? {
        if !store.has_step(&key) {
            let name = names.get(&key).cloned().unwrap_or_else(|| key.clone());
            crate::cache::substitute_step(&store, &key, &name);
        }
    }
    Ok(())
}

fn gc(ctx: &Context, dry_run: bool, blobs: bool) -> anyhow::Result<crate::gc::GcReport> {
    let project = crate::recipe::Project::load(&ctx.project)?;
    let lock_path = crate::lockfile::Lockfile::path_in(&ctx.project);
    let lock = crate::lockfile::Lockfile::read(&lock_path)?
        .ok_or(crate::build::BuildError::NoLock { path: lock_path })?;
    // Not `Store::open`, which would clean tmp/ before this can say what it removed.
    let store = Store::open_keeping_tmp(&ctx.store)
        .with_context(|| format!("cannot open the store {}", ctx.store.display()))?;
    let opts = crate::gc::GcOptions {
        dry_run,
        blobs,
        report: ctx.reporter(),
    };
    Ok(crate::gc::gc(&project, &lock, &store, &opts)?)
}

/// Runs `hermetic cache`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        CacheCommand::Gc { dry_run, blobs } => {
            let report = gc(ctx, dry_run, blobs)?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if ctx.verbosity >= 0 {
                eprintln!(
                    "{} {} step entries and {} blobs ({}); kept {} step entries and {} blobs",
                    if dry_run { "would remove" } else { "removed" },
                    report.steps_removed.len(),
                    report.blobs_removed.len(),
                    human_size(report.bytes),
                    report.steps_kept,
                    report.blobs_kept
                );
                eprintln!(
                    "{} {} temporary entries of finished or killed runs ({}) and {} kept failed trees; {} temporary entries in use",
                    if dry_run { "would remove" } else { "removed" },
                    report.tmp_removed.len(),
                    human_size(report.tmp_bytes),
                    report.kept_removed.len(),
                    report.tmp_in_use
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Push {
            cache,
            key,
            mount_from,
        } => {
            let report = push(ctx, &cache, key.as_deref(), mount_from)?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if ctx.verbosity >= 0 {
                eprintln!("{report}");
            }
            Ok(if report.steps_failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        CacheCommand::Pull { from, use_args } => {
            pull(ctx, from, use_args)?;
            print_report(ctx);
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Dir => {
            println!("{}", ctx.store.display());
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Verify => {
            let store = Store::open(&ctx.store)?;
            // Removing entries while `cache gc` runs would race with it.
            let _in_use = store.use_guard()?;
            let total = (store.blobs()?.len() + store.steps()?.len()) as u64;
            let bar = ctx.reporter().count_bar(total);
            let report = store.verify(&|_| bar.inc(1))?;
            drop(bar);
            if ctx.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                for c in &report.corrupt {
                    eprintln!(
                        "corrupt: {} has SHA-256 {} (removed)",
                        c.path.display(),
                        c.actual
                    );
                }
                for c in &report.corrupt_steps {
                    eprintln!(
                        "corrupt: step entry {} has digest {}, its marker says {} (removed)",
                        c.path.display(),
                        c.actual,
                        c.expected
                    );
                }
                for key in &report.unverifiable_steps {
                    eprintln!(
                        "unverifiable: step entry {} has no digest (published by an older hermetic); rebuild to check",
                        store.step_path(key).display()
                    );
                }
                if ctx.verbosity >= 0 {
                    eprintln!(
                        "checked {} blobs and {} step entries ({:.1} MiB): {} corrupt, {} unverifiable",
                        report.checked,
                        report.steps_checked,
                        report.bytes as f64 / (1024.0 * 1024.0),
                        report.corrupt.len() + report.corrupt_steps.len(),
                        report.unverifiable_steps.len()
                    );
                }
            }
            if report.corrupt.is_empty() && report.corrupt_steps.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                if !ctx.json {
                    if !report.corrupt.is_empty() {
                        eprintln!("hint: run `hermetic fetch` to download the removed files again");
                    }
                    if !report.corrupt_steps.is_empty() {
                        eprintln!(
                            "hint: the next `hermetic build` rebuilds the removed step entries"
                        );
                    }
                }
                Ok(crate::exit::Exit::Store.into())
            }
        }
    }
}

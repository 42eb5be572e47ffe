//! Resolving recipes into pins.lock.
//!
//! Each recipe is resolved on its own: its `packages` (the image), its `build-packages` (the
//! tools tree its build steps run in) and, with a `[kernel]` table, the kernel's
//! build-packages with its source and config packages; each closure including the essential
//! base (`Essential: yes` and `Priority: required`), like `apt-get install
//! --no-install-recommends` on an empty system. A pin is tagged with the recipes that use it:
//! `<recipe>` for the image closure, `<recipe>:build` for the tools closure, `<recipe>:kernel`
//! for the kernel's, `<recipe>:cargo` for the toolchain of its `[[cargo]]` builds (the union
//! of their build-packages). The image, kernel and cargo closures are resolved only when not empty; the
//! tools closure always (an empty `build-packages` still gives the essential base as tools
//! tree). Each selection of a recipe's profiles that add pinned things is resolved the same
//! way, as a closure named `<recipe>/<profile>...` ([`requests`]).
//!
//! The lock records what each recipe asked for and the relations of each pin, so [`check`]
//! needs no network to compare the requests and prove each closure complete
//! ([`check_closures`]). Each suite's InRelease must pass the archive checks of
//! [`crate::archive::ArchiveClient::fetch_release`], its `Date` not older than the locked one. Plain
//! `hermetic lock` keeps the pins of every recipe whose request did not change (like cargo) and
//! resolves the others preferring the versions already pinned; `--update PKG...` moves only
//! those packages and what their newest versions force; `--update` re-resolves everything.
//!
//! A package of `[[archive.snapshot-package]]` is read from its own snapshot state
//! ([`read_snapshot_packages`]) and replaces every version of that name in the project's
//! suites, so every closure that pulls it gets exactly that version; its pin records the
//! timestamp. A change of such an entry moves that package like `--update PKG`.

use std::path::PathBuf;

use crate::archive::ReleasePolicy;
use crate::archive::{
    ArchiveClient, ArchiveError, Keyring, PROJECT_KEYRING, SignatureError, SuiteRelease,
};
use crate::debian::deb822::{self, Deb822Error};
use crate::debian::relation::{Alternatives, display_alternatives};
use crate::debian::resolve::{
    PackageIndex, ResolveError, ResolveOptions, SourceIndex, Unmet, resolve_preferring, unmet,
};
use crate::debian::version::Version;
use crate::fetch::Downloader;
use crate::http::Http;
use crate::lockfile::{
    BUILD_TAG_SUFFIX, CARGO_TAG_SUFFIX, GO_TAG_SUFFIX, KERNEL_TAG_SUFFIX, LockedRecipe,
    LockedSuite, Lockfile, LockfileError, PinChange, PinnedPackage, PinnedSource, PinnedSourceFile,
    PinnedTarball, TarballRequest, pin_changes,
};
use crate::mirrors::{MirrorConfig, MirrorError, Mirrors, SourceKind, archive_for_suite};
use crate::recipe::Project;
use crate::store::{Store, StoreError};

/// Errors of `hermetic lock`. Each names the recipe, suite or file involved.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Project(#[from] crate::recipe::RecipeError),
    #[error(transparent)]
    Lockfile(#[from] LockfileError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Keyring(#[from] SignatureError),
    #[error(transparent)]
    Mirrors(#[from] MirrorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot parse {path} of suite `{suite}`")]
    Index {
        suite: String,
        path: String,
        source: Deb822Error,
    },
    #[error("{index} of suite `{suite}`")]
    BadIndex {
        suite: String,
        index: String,
        #[source]
        source: Box<ResolveError>,
    },
    #[error("{count} requested package(s) are not in {suites} ({arch}):\n{list}")]
    UnknownPackages {
        count: usize,
        suites: String,
        arch: String,
        release: String,
        /// One line per request: the name, its recipe and list, the closest known name.
        list: String,
    },
    #[error("cannot resolve recipe `{recipe}` ({closure})")]
    Resolve {
        recipe: String,
        /// `packages`, `build-packages` or `kernel`.
        closure: &'static str,
        source: Box<ResolveError>,
    },
    #[error("cannot pin the source packages of recipe `{recipe}`")]
    SourcePackage {
        recipe: String,
        source: Box<ResolveError>,
    },
    #[error(
        "{snapshot_name} did not serve suite `{suite}` ({reason}); the next source, {used}, serves its state of today, not snapshot {snapshot}"
    )]
    SnapshotUnreachable {
        suite: String,
        snapshot: String,
        snapshot_name: String,
        reason: String,
        used: String,
    },
    #[error(
        "[[archive.snapshot-package]] `{name} {version}`: suite `{suite}` of snapshot {snapshot} ({url}) does not list it"
    )]
    SnapshotPackageMissing {
        name: String,
        version: String,
        suite: String,
        snapshot: String,
        url: String,
    },
    #[error(
        "[[archive.snapshot-package]] `{name}` is taken from snapshot {snapshot}, but HERMETIC_SNAPSHOT_URL is empty: no source serves old archive states"
    )]
    NoSnapshotSource { name: String, snapshot: String },
    #[error("`hermetic lock --update {package}`: no pin of pins.lock is named `{package}`")]
    NotLocked { package: String },
    #[error(
        "cannot read the relations of pinned package `{package} {version}` from {path}: {message}"
    )]
    PinRelations {
        package: String,
        version: String,
        path: PathBuf,
        message: String,
    },
}

impl crate::error::Diagnostic for LockError {
    fn hints(&self) -> Vec<String> {
        match self {
            LockError::Project(e) => e.hints(),
            LockError::Lockfile(e) => e.hints(),
            LockError::UnknownPackages { release, .. } => vec![format!(
                "check the spelling in the recipes; `apt-cache policy NAME` on a {release} machine shows where a package is"
            )],
            LockError::SnapshotUnreachable { snapshot_name, .. } => vec![format!(
                "run again where {snapshot_name} is reachable, name a mirror with --mirror URL, or accept the mirror's state with `hermetic lock --allow-mirror-state` (the lock then records it as such)"
            )],
            LockError::SnapshotPackageMissing { .. } => vec![
                "check the version and the timestamp in hermetic.toml (snapshot.debian.org lists each package's versions under /binary/<name>/)".into(),
            ],
            LockError::NoSnapshotSource { .. } => vec![
                "unset HERMETIC_SNAPSHOT_URL, or point it at a copy of snapshot.debian.org".into(),
            ],
            LockError::NotLocked { package } => vec![format!(
                "name a pinned package (`hermetic why {package}` lists what pulls a pinned one), or run `hermetic lock --update` to move every pin"
            )],
            LockError::PinRelations { .. } => vec![
                "run `hermetic cache verify`, then `hermetic fetch` and `hermetic lock` again".into(),
            ],
            // The others still say their hint in their message, if they have one.
            _ => Vec::new(),
        }
    }

    fn subject(&self) -> crate::error::Subject {
        use crate::error::Subject;
        match self {
            LockError::Project(e) => e.subject(),
            LockError::Lockfile(e) => e.subject(),
            LockError::Resolve { recipe, .. } | LockError::SourcePackage { recipe, .. } => {
                Subject::package(recipe)
            }
            LockError::SnapshotPackageMissing { name, url, .. } => Subject {
                package: Some(name.clone()),
                url: Some(url.clone()),
                file: None,
            },
            LockError::NoSnapshotSource { name, .. } => Subject::package(name),
            LockError::NotLocked { package } => Subject::package(package),
            LockError::PinRelations { package, path, .. } => Subject {
                package: Some(package.clone()),
                file: Some(path.clone()),
                url: None,
            },
            _ => Subject::default(),
        }
    }
}

/// The closures of a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closure {
    Image,
    Build,
    Kernel,
    Cargo,
    Go,
}

impl Closure {
    fn word(self) -> &'static str {
        match self {
            Closure::Image => "packages",
            Closure::Build => "build-packages",
            Closure::Kernel => "kernel",
            Closure::Cargo => "cargo build-packages",
            Closure::Go => "go build-packages",
        }
    }
}

/// Options of [`lock`].
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// Re-resolve every recipe, ignoring the existing pins.
    pub update: bool,
    /// `--update PKG...`: move only these pins (and what their new versions force); the
    /// closures that hold none of them are kept.
    pub update_packages: Vec<String>,
    /// `--mirror` URLs (before `HERMETIC_MIRRORS`).
    pub mirrors: Vec<String>,
    /// The store directory (indexes are cached there).
    pub store_dir: PathBuf,
    /// What to say on standard error: each suite and recipe; `-v`: each index with its URL.
    pub report: crate::report::Reporter,
    /// Accept an InRelease whose `Date` is older than the one the lock records for its suite.
    pub allow_downgrade: bool,
    /// When the snapshot does not answer, read a later source's state (recorded as such).
    pub allow_mirror_state: bool,
}

/// What [`lock`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LockOutcome {
    /// The lock file.
    pub path: PathBuf,
    /// Whether the file was (re)written.
    pub written: bool,
    /// Recipes resolved against the archive in this run (the others kept their pins).
    pub resolved: Vec<String>,
    pub suites: Vec<LockedSuite>,
    pub packages: usize,
    pub sources: usize,
    pub tarballs: usize,
    /// HTTP requests made.
    pub requests: usize,
    /// Lines the user must see (a source read instead of the snapshot).
    pub notices: Vec<String>,
    /// What changed in the pins, by package name.
    pub changes: Vec<PinChange>,
}

/// The keyring `hermetic lock` verifies InRelease files with: `HERMETIC_KEYRING`, else the
/// project's `keys/debian-archive-keyring.pgp`.
pub fn keyring_path(project: &Project) -> PathBuf {
    match std::env::var_os("HERMETIC_KEYRING").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => project.root.join(PROJECT_KEYRING),
    }
}

/// What every recipe asks for, after inheritance, sorted by recipe name; after each recipe,
/// each non-empty selection of its profiles that pin something, named as
/// [`Project::lock_name`] names it (`gcp/devtools`). The kernel closure is only the plain
/// recipe's: profiles cannot change `[kernel]`.
pub fn requests(project: &Project) -> Result<Vec<LockedRecipe>, crate::recipe::RecipeError> {
    let mut out = Vec::new();
    for name in project.recipes.keys() {
        let pinning = project.pinning_profiles(name)?;
        for selected in crate::recipe::selections(&pinning) {
            let r = project.resolve_with_profiles(name, &selected)?;
            let cargo_packages = r.cargo_packages();
            let go_packages = r.go_packages();
            out.push(LockedRecipe {
                name: project.lock_name(name, &selected)?,
                packages: r.packages.into_iter().collect(),
                build_packages: r.build_packages.into_iter().collect(),
                source_packages: r.source_packages.into_iter().collect(),
                kernel_packages: match &r.kernel {
                    Some(k) if selected.is_empty() => k.lock_packages(),
                    _ => Vec::new(),
                },
                // Like the kernel's, the toolchain closure is only the plain recipe's.
                cargo_packages: if selected.is_empty() {
                    cargo_packages
                } else {
                    Vec::new()
                },
                go_packages: if selected.is_empty() {
                    go_packages
                } else {
                    Vec::new()
                },
                tarballs: r
                    .tarballs
                    .into_iter()
                    .map(|t| TarballRequest {
                        name: t.name,
                        url: t.url,
                        sha256: t.sha256,
                    })
                    .collect(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Where the project's recipes and its `pins.lock` disagree, one line each (empty: the lock
/// is up to date; a missing lock is one problem). Needs no network.
pub fn check_project(project: &Project) -> Result<Vec<String>, LockError> {
    let path = Lockfile::path_in(&project.root);
    Ok(match Lockfile::read(&path)? {
        None => vec![format!("{} does not exist", path.display())],
        Some(lock) => check(project, &lock)?,
    })
}

/// Where the recipes and the lock disagree, one line each (empty: the lock is up to date).
/// Needs no network.
pub fn check(
    project: &Project,
    lock: &Lockfile,
) -> Result<Vec<String>, crate::recipe::RecipeError> {
    let mut problems = Vec::new();
    let a = &project.config.archive;
    let mut locked_suites: Vec<&str> = lock.suites.iter().map(|s| s.name.as_str()).collect();
    let mut wanted: Vec<&str> = a.suites.iter().map(String::as_str).collect();
    locked_suites.sort();
    wanted.sort();
    if locked_suites != wanted {
        problems.push(format!(
            "hermetic.toml asks for suites [{}], the lock has [{}]",
            wanted.join(", "),
            locked_suites.join(", ")
        ));
    }
    for s in &lock.suites {
        // A mirror's state records no snapshot: it is not compared with one.
        if let Some(ts) = &s.snapshot
            && ts != &a.snapshot
        {
            problems.push(format!(
                "suite `{}` was locked at snapshot {ts}, hermetic.toml says {}",
                s.name, a.snapshot
            ));
        }
        if s.components != a.components || s.architecture != a.architecture {
            problems.push(format!(
                "suite `{}` was locked for {} {}, hermetic.toml says {} {}",
                s.name,
                s.components.join(","),
                s.architecture,
                a.components.join(","),
                a.architecture
            ));
        }
    }
    let wanted = requests(project)?;
    for r in &wanted {
        match lock.recipe(&r.name) {
            None => problems.push(format!("{} is not in the lock", describe_closure(&r.name))),
            Some(l) if l != r => problems.push(describe_change(l, r)),
            Some(_) => {}
        }
    }
    for l in &lock.recipes {
        if !wanted.iter().any(|r| r.name == l.name) {
            problems.push(if l.name.contains('/') {
                format!(
                    "{} is in the lock, but the recipes no longer ask for it",
                    describe_closure(&l.name)
                )
            } else {
                format!("recipe `{}` is in the lock but not in recipes/", l.name)
            });
        }
    }
    problems.extend(snapshot_pin_problems(a, lock).into_iter().map(|(_, p)| p));
    problems.extend(check_closures(lock, &a.architecture));
    problems.extend(crate::sources::lockpins::check_upstream(project, lock)?);
    problems.extend(crate::sources::cargo::check_cargo(project, lock)?);
    Ok(problems)
}

/// `recipe `gcp`` or `the closure `gcp/devtools` (recipe `gcp` with profile(s) devtools)`.
fn describe_closure(name: &str) -> String {
    match name.split_once('/') {
        Some((recipe, profiles)) => format!(
            "the closure `{name}` (recipe `{recipe}` with profile(s) {})",
            profiles.replace('/', ", ")
        ),
        None => format!("recipe `{name}`"),
    }
}

fn describe_change(old: &LockedRecipe, new: &LockedRecipe) -> String {
    let mut parts = Vec::new();
    let mut diff = |what: &str, old: &[String], new: &[String]| {
        let added: Vec<&str> = new
            .iter()
            .filter(|n| !old.contains(n))
            .map(String::as_str)
            .collect();
        let removed: Vec<&str> = old
            .iter()
            .filter(|o| !new.contains(o))
            .map(String::as_str)
            .collect();
        if !added.is_empty() {
            parts.push(format!("{what} added: {}", added.join(", ")));
        }
        if !removed.is_empty() {
            parts.push(format!("{what} removed: {}", removed.join(", ")));
        }
    };
    diff("packages", &old.packages, &new.packages);
    diff("build-packages", &old.build_packages, &new.build_packages);
    diff(
        "source-packages",
        &old.source_packages,
        &new.source_packages,
    );
    diff(
        "kernel packages",
        &old.kernel_packages,
        &new.kernel_packages,
    );
    diff(
        "cargo build-packages",
        &old.cargo_packages,
        &new.cargo_packages,
    );
    diff("go build-packages", &old.go_packages, &new.go_packages);
    if old.tarballs != new.tarballs {
        parts.push("tarballs changed".into());
    }
    format!(
        "{} changed: {}",
        describe_closure(&new.name),
        parts.join("; ")
    )
}

/// Whether the archive settings of the project are the ones the lock was made with.
fn suites_match(project: &Project, lock: &Lockfile) -> bool {
    let a = &project.config.archive;
    lock.suites.len() == a.suites.len()
        && a.suites.iter().all(|name| {
            lock.suites.iter().any(|s| {
                &s.name == name
                    && s.snapshot.as_ref().is_none_or(|t| t == &a.snapshot)
                    && s.components == a.components
                    && s.architecture == a.architecture
            })
        })
}

/// Resolves the project's recipes and writes `pins.lock` if its content changed. With an
/// up-to-date lock and no `update`, touches neither the network nor the file.
pub fn lock(project: &Project, options: &LockOptions) -> Result<LockOutcome, LockError> {
    let path = Lockfile::path_in(&project.root);
    let existing = Lockfile::read(&path)?;
    let wanted = requests(project)?;
    let archive_same = existing.as_ref().is_some_and(|l| suites_match(project, l));
    if let Some(old) = &existing {
        for name in &options.update_packages {
            if !old.packages.iter().any(|p| &p.name == name) {
                return Err(LockError::NotLocked {
                    package: name.clone(),
                });
            }
        }
    }
    // A package whose `[[archive.snapshot-package]]` changed moves like `--update PKG`.
    let mut update_packages = options.update_packages.clone();
    if let Some(old) = &existing {
        for (name, _) in snapshot_pin_problems(&project.config.archive, old) {
            if !update_packages.contains(&name) {
                update_packages.push(name);
            }
        }
    }
    // The recipes whose pins are kept as they are: unchanged, and holding no pin named by
    // `--update PKG...`.
    let keep: Vec<&LockedRecipe> = match (&existing, options.update || !archive_same) {
        (Some(old), false) => wanted
            .iter()
            .filter(|r| old.recipe(&r.name) == Some(*r))
            .filter(|r| {
                !old.packages.iter().any(|p| {
                    update_packages.contains(&p.name)
                        && p.recipes.iter().any(|t| tag_of(t) == r.name)
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    // The versions re-resolved closures prefer: every pin of the lock but those named by
    // `--update PKG...` (none with `--update`, or when the archive settings changed).
    let mut prefer: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    if let Some(old) = &existing
        && archive_same
        && !options.update
    {
        for p in &old.packages {
            if update_packages.contains(&p.name) {
                continue;
            }
            let higher = match prefer.get(&p.name) {
                None => true,
                Some(v) => {
                    let (a, b): (Option<Version>, Option<Version>) =
                        (p.version.parse().ok(), v.parse().ok());
                    a > b
                }
            };
            if higher {
                prefer.insert(p.name.clone(), p.version.clone());
            }
        }
    }
    if let Some(old) = &existing
        && keep.len() == wanted.len()
        && old.recipes.len() == wanted.len()
    {
        // A version 1 lock records no relations: take them from the pinned .debs when the
        // store holds every one, so the lock becomes version 2 without moving any version.
        if lacks_relations(old) {
            let store = Store::open(&options.store_dir)?;
            let _in_use = store.use_guard()?;
            let mut upgraded = old.clone();
            if relations_from_store(&mut upgraded, &store, &project.config.archive.architecture)? {
                upgraded.canonicalize();
                let written = upgraded.write_if_changed(&path)?;
                return Ok(LockOutcome {
                    path,
                    written,
                    resolved: Vec::new(),
                    suites: upgraded.suites.clone(),
                    packages: upgraded.packages.len(),
                    sources: upgraded.sources.len(),
                    tarballs: upgraded.tarballs.len(),
                    requests: 0,
                    notices: Vec::new(),
                    changes: Vec::new(),
                });
            }
            options.report.line(format_args!(
                "{} records no package relations (format version 1); `hermetic fetch` then `hermetic lock` adds them",
                path.display()
            ));
        }
        return Ok(LockOutcome {
            path,
            written: false,
            resolved: Vec::new(),
            suites: old.suites.clone(),
            packages: old.packages.len(),
            sources: old.sources.len(),
            tarballs: old.tarballs.len(),
            requests: 0,
            notices: Vec::new(),
            changes: Vec::new(),
        });
    }
    let to_resolve: Vec<&LockedRecipe> = wanted
        .iter()
        .filter(|r| !keep.iter().any(|k| k.name == r.name))
        .collect();
    // Only recipes removed: drop their pins, no network needed.
    if let Some(old) = &existing
        && to_resolve.is_empty()
    {
        let mut new = Lockfile {
            suites: old.suites.clone(),
            recipes: wanted.clone(),
            ..Default::default()
        };
        carry_over(old, &keep, &mut new);
        new.canonicalize();
        let written = new.write_if_changed(&path)?;
        let changes = pin_changes(old, &new);
        return Ok(LockOutcome {
            path,
            written,
            resolved: Vec::new(),
            suites: new.suites.clone(),
            packages: new.packages.len(),
            sources: new.sources.len(),
            tarballs: new.tarballs.len(),
            requests: 0,
            notices: Vec::new(),
            changes,
        });
    }

    let a = &project.config.archive;
    let keyring = Keyring::load(&keyring_path(project))?;
    let store = Store::open(&options.store_dir)?;
    let _in_use = store.use_guard()?;
    let mirror_config = MirrorConfig::from_env(&options.mirrors, Some(a.snapshot.as_str()));
    let mirrors = Mirrors::new(&mirror_config)?;
    let downloader = Downloader::new(Http::new(), mirrors, store.clone());
    {
        let report = options.report.clone();
        downloader.on_notice(move |line| report.line(line));
    }
    let client = ArchiveClient {
        downloader: &downloader,
        store: &store,
        keyring: &keyring,
        report: options.report.clone(),
    };
    let need_sources = to_resolve.iter().any(|r| !r.source_packages.is_empty());
    let mut index = PackageIndex::new(&a.architecture);
    let mut sources = SourceIndex::new();
    let mut suites = Vec::new();
    let mut notices = Vec::new();
    let (from_snapshots, snapshot_requests) =
        read_snapshot_packages(project, &store, &keyring, &options.report)?;
    for suite in &a.suites {
        options.report.line(format_args!("reading suite {suite}"));
        let policy = ReleasePolicy {
            locked_date: existing
                .as_ref()
                .and_then(|l| l.suites.iter().find(|s| &s.name == suite))
                .map(|s| s.date.clone()),
            allow_downgrade: options.allow_downgrade,
            now: std::time::SystemTime::now(),
        };
        let rel = client.fetch_release(suite, &policy)?;
        let origin = index_origin(&downloader.mirrors, &mirror_config, &rel);
        if let Some(snap) = &origin.snapshot_failed {
            let used = match origin.source.as_str() {
                "apt-sources" => "the host's apt sources".to_string(),
                _ => format!(
                    "the mirror {}",
                    origin.url.as_deref().unwrap_or("(unknown)")
                ),
            };
            if !options.allow_mirror_state {
                return Err(LockError::SnapshotUnreachable {
                    suite: suite.clone(),
                    snapshot: a.snapshot.clone(),
                    snapshot_name: snap.name.clone(),
                    reason: snap.reason.clone(),
                    used,
                });
            }
            let read = format!(
                "read {suite} from {used}: its state of {}, not {}",
                rel.release.date, a.snapshot
            );
            // One line for the whole run: the snapshot's failure once, then each suite.
            match notices.first_mut() {
                None => notices.push(format!(
                    "{} unreachable ({}); {read}",
                    snap.name, snap.reason
                )),
                Some(line) => {
                    line.push_str("; ");
                    line.push_str(&read);
                }
            }
        }
        for component in &a.components {
            let p = format!("{component}/binary-{}/Packages.xz", a.architecture);
            let text = client.fetch_index(&rel, &p)?;
            let mut paragraphs = deb822::parse(&text).map_err(|source| LockError::Index {
                suite: suite.clone(),
                path: p.clone(),
                source,
            })?;
            drop(text);
            // A package taken from another snapshot replaces every version of the suite.
            paragraphs.retain(|para| {
                !from_snapshots
                    .iter()
                    .any(|(sp, _)| para.get("Package") == Some(sp.name.as_str()))
            });
            index
                .add_packages(suite, &paragraphs)
                .map_err(|source| LockError::BadIndex {
                    suite: suite.clone(),
                    index: p.clone(),
                    source: Box::new(source),
                })?;
            if need_sources {
                let p = format!("{component}/source/Sources.xz");
                let text = client.fetch_index(&rel, &p)?;
                let paragraphs = deb822::parse(&text).map_err(|source| LockError::Index {
                    suite: suite.clone(),
                    path: p.clone(),
                    source,
                })?;
                sources
                    .add_sources(suite, &paragraphs)
                    .map_err(|source| LockError::BadIndex {
                        suite: suite.clone(),
                        index: p.clone(),
                        source: Box::new(source),
                    })?;
            }
        }
        suites.push(LockedSuite {
            name: suite.clone(),
            archive: archive_for_suite(suite).to_string(),
            snapshot: (origin.source == "snapshot").then(|| a.snapshot.clone()),
            index_source: Some(origin.source),
            index_url: origin.url,
            date: rel.release.date.clone(),
            inrelease_sha256: rel.inrelease_sha256.clone(),
            components: a.components.clone(),
            architecture: a.architecture.clone(),
        });
    }

    for (sp, para) in &from_snapshots {
        index
            .add_packages(&sp.suite, std::slice::from_ref(para))
            .map_err(|source| LockError::BadIndex {
                suite: format!("{} (snapshot {})", sp.suite, sp.snapshot),
                index: format!("package {} {}", sp.name, sp.version),
                source: Box::new(source),
            })?;
    }
    release_forced(&index, &mut prefer, &update_packages);
    let mut new = Lockfile {
        suites,
        recipes: wanted.clone(),
        ..Default::default()
    };
    if let Some(old) = &existing {
        carry_over(old, &keep, &mut new);
    }
    unknown_packages(&index, &to_resolve)?;
    for r in &to_resolve {
        options
            .report
            .line(format_args!("resolving recipe {}", r.name));
        let opts = ResolveOptions {
            include_essential: true,
            prefer: prefer.clone(),
        };
        let closures = [
            (Closure::Image, &r.packages, r.name.clone()),
            (
                Closure::Build,
                &r.build_packages,
                format!("{}{BUILD_TAG_SUFFIX}", r.name),
            ),
            (
                Closure::Kernel,
                &r.kernel_packages,
                format!("{}{KERNEL_TAG_SUFFIX}", r.name),
            ),
            (
                Closure::Cargo,
                &r.cargo_packages,
                format!("{}{CARGO_TAG_SUFFIX}", r.name),
            ),
            (
                Closure::Go,
                &r.go_packages,
                format!("{}{GO_TAG_SUFFIX}", r.name),
            ),
        ];
        for (closure, list, tag) in closures {
            // The tools closure is always resolved (the essential base is a tools tree).
            if closure != Closure::Build && list.is_empty() {
                continue;
            }
            let resolution =
                resolve_preferring(&index, list, &opts).map_err(|source| LockError::Resolve {
                    recipe: r.name.clone(),
                    closure: closure.word(),
                    source: Box::new(source),
                })?;
            options.report.detail(format_args!(
                "  {tag}: {} requested, {} packages",
                list.len(),
                resolution.packages.len()
            ));
            for p in resolution.packages {
                let snapshot = from_snapshots
                    .iter()
                    .find(|(sp, _)| sp.name == p.name && sp.version == p.version.to_string())
                    .map(|(sp, _)| sp.snapshot.clone());
                new.packages.push(PinnedPackage {
                    snapshot,
                    name: p.name,
                    version: p.version.to_string(),
                    architecture: p.architecture,
                    suite: p.suite,
                    filename: p.filename,
                    size: p.size,
                    sha256: p.sha256,
                    source: p.source,
                    source_version: p.source_version.to_string(),
                    recipes: vec![tag.clone()],
                    pre_depends: render_groups(&p.pre_depends),
                    depends: render_groups(&p.depends),
                    provides: render_list(&p.provides),
                    multi_arch: p.multi_arch.clone(),
                });
            }
        }
        for name in &r.source_packages {
            let s = sources
                .find(name)
                .map_err(|source| LockError::SourcePackage {
                    recipe: r.name.clone(),
                    source: Box::new(source),
                })?;
            new.sources.push(PinnedSource {
                name: s.name.clone(),
                version: s.version.to_string(),
                suite: s.suite.clone(),
                directory: s.directory.clone(),
                files: s
                    .files
                    .iter()
                    .map(|f| PinnedSourceFile {
                        name: f.name.clone(),
                        size: f.size,
                        sha256: f.sha256.clone(),
                    })
                    .collect(),
                recipes: vec![r.name.clone()],
            });
        }
        for t in &r.tarballs {
            new.tarballs.push(PinnedTarball {
                name: t.name.clone(),
                url: t.url.clone(),
                sha256: t.sha256.clone(),
                size: None,
                recipes: vec![r.name.clone()],
            });
        }
    }
    new.canonicalize();
    let written = new.write_if_changed(&path)?;
    let changes = existing
        .as_ref()
        .map(|old| pin_changes(old, &new))
        .unwrap_or_else(|| pin_changes(&Lockfile::default(), &new));
    Ok(LockOutcome {
        path,
        written,
        resolved: to_resolve.iter().map(|r| r.name.clone()).collect(),
        suites: new.suites.clone(),
        packages: new.packages.len(),
        sources: new.sources.len(),
        tarballs: new.tarballs.len(),
        requests: downloader.requests() + snapshot_requests,
        notices,
        changes,
    })
}

/// Where the lock's pins disagree with `[[archive.snapshot-package]]`: a package taken from
/// another snapshot pinned at another version or state, or a pin recording a snapshot
/// hermetic.toml no longer asks for. Each is (package name, line).
fn snapshot_pin_problems(
    a: &crate::recipe::ArchiveConfig,
    lock: &Lockfile,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sp in &a.snapshot_packages {
        for p in lock.packages.iter().filter(|p| p.name == sp.name) {
            if p.version != sp.version
                || p.suite != sp.suite
                || p.snapshot.as_deref() != Some(sp.snapshot.as_str())
            {
                out.push((
                    sp.name.clone(),
                    format!(
                        "package `{}` is pinned at {}{}, hermetic.toml takes {} from snapshot {}",
                        p.name,
                        p.version,
                        p.snapshot
                            .as_ref()
                            .map(|t| format!(" of snapshot {t}"))
                            .unwrap_or_default(),
                        sp.version,
                        sp.snapshot
                    ),
                ));
            }
        }
    }
    for p in &lock.packages {
        if let Some(ts) = &p.snapshot
            && !a.snapshot_packages.iter().any(|sp| sp.name == p.name)
        {
            out.push((
                p.name.clone(),
                format!(
                    "package `{} {}` is pinned from snapshot {ts}, but hermetic.toml no longer takes it from another snapshot",
                    p.name, p.version
                ),
            ));
        }
    }
    out
}

/// The package paragraphs `[[archive.snapshot-package]]` names, each read from its suite's
/// verified InRelease and index at its own snapshot timestamp (on snapshot.debian.org or
/// `HERMETIC_SNAPSHOT_URL` only: a mirror serves today's state). Returns them with the
/// requests they answer and the HTTP requests made.
fn read_snapshot_packages(
    project: &Project,
    store: &Store,
    keyring: &Keyring,
    report: &crate::report::Reporter,
) -> Result<
    (
        Vec<(crate::recipe::SnapshotPackage, deb822::Paragraph)>,
        usize,
    ),
    LockError,
> {
    let a = &project.config.archive;
    let mut out = Vec::new();
    let mut requests = 0;
    // One read per (snapshot, suite).
    let mut states: Vec<(&str, &str)> = a
        .snapshot_packages
        .iter()
        .map(|p| (p.snapshot.as_str(), p.suite.as_str()))
        .collect();
    states.sort();
    states.dedup();
    for (ts, suite) in states {
        let mut config = MirrorConfig::from_env(&[], Some(ts));
        config.mirrors.clear();
        config.apt_root = None;
        let wanted: Vec<&crate::recipe::SnapshotPackage> = a
            .snapshot_packages
            .iter()
            .filter(|p| p.snapshot == ts && p.suite == suite)
            .collect();
        if config.snapshot_base.is_none() {
            return Err(LockError::NoSnapshotSource {
                name: wanted[0].name.clone(),
                snapshot: ts.to_string(),
            });
        }
        let downloader = Downloader::new(Http::new(), Mirrors::new(&config)?, store.clone());
        let keyring = keyring.for_pinned_old_state();
        let client = ArchiveClient {
            downloader: &downloader,
            store,
            keyring: &keyring,
            report: report.clone(),
        };
        report.line(format_args!("reading suite {suite} at snapshot {ts}"));
        let policy = ReleasePolicy {
            locked_date: None,
            allow_downgrade: false,
            now: std::time::SystemTime::now(),
        };
        let rel = client.fetch_release(suite, &policy)?;
        let mut found: Vec<Option<deb822::Paragraph>> = vec![None; wanted.len()];
        for component in &a.components {
            let p = format!("{component}/binary-{}/Packages.xz", a.architecture);
            let text = client.fetch_index(&rel, &p)?;
            let paragraphs = deb822::parse(&text).map_err(|source| LockError::Index {
                suite: format!("{suite} (snapshot {ts})"),
                path: p.clone(),
                source,
            })?;
            for para in paragraphs {
                if let Some(i) = wanted.iter().position(|w| {
                    para.get("Package") == Some(w.name.as_str())
                        && para.get("Version") == Some(w.version.as_str())
                }) {
                    found[i].get_or_insert(para);
                }
            }
        }
        requests += downloader.requests();
        for (w, para) in wanted.into_iter().zip(found) {
            match para {
                Some(para) => out.push((w.clone(), para)),
                None => {
                    return Err(LockError::SnapshotPackageMissing {
                        name: w.name.clone(),
                        version: w.version.clone(),
                        suite: suite.to_string(),
                        snapshot: ts.to_string(),
                        url: rel.url.clone(),
                    });
                }
            }
        }
    }
    Ok((out, requests))
}

/// Fails naming every requested package of `recipes` that the archive does not have (not
/// only the first one the resolver meets), each with the closest name it has.
fn unknown_packages(index: &PackageIndex, recipes: &[&LockedRecipe]) -> Result<(), LockError> {
    let mut lines = Vec::new();
    for r in recipes {
        for (closure, list) in [
            (Closure::Image, &r.packages),
            (Closure::Build, &r.build_packages),
            (Closure::Kernel, &r.kernel_packages),
        ] {
            for name in index.unknown_requests(list) {
                let hint = crate::suggest::closest(name, index.names())
                    .map(|c| format!(": did you mean `{c}`?"))
                    .unwrap_or_default();
                lines.push(format!(
                    "  `{name}` (recipe `{}`, {}){hint}",
                    r.name,
                    closure.word()
                ));
            }
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    lines.dedup();
    let suites = index.suites();
    Err(LockError::UnknownPackages {
        count: lines.len(),
        suites: suites.join(", "),
        arch: index.architecture().to_string(),
        release: suites
            .first()
            .map(|s| s.split('-').next().unwrap_or(s).to_string())
            .unwrap_or_else(|| "Debian".into()),
        list: lines.join("\n"),
    })
}

/// Where a suite's InRelease came from (see [`LockedSuite::index_source`]).
struct IndexOrigin {
    /// `snapshot`, `mirror` or `apt-sources`.
    source: String,
    /// The snapshot state URL or the mirror URL as configured; `None` for `apt-sources`.
    url: Option<String>,
    /// Set when a snapshot source came before the one that answered: it failed.
    snapshot_failed: Option<SnapshotFailure>,
}

struct SnapshotFailure {
    /// `snapshot.debian.org`, or the `HERMETIC_SNAPSHOT_URL` host.
    name: String,
    reason: String,
}

fn index_origin(mirrors: &Mirrors, config: &MirrorConfig, rel: &SuiteRelease) -> IndexOrigin {
    let sources = mirrors.sources_for(&rel.archive);
    let Some(pos) = sources.iter().position(|s| rel.url.starts_with(&s.base)) else {
        return IndexOrigin {
            source: "mirror".into(),
            url: None,
            snapshot_failed: None,
        };
    };
    let used = sources[pos];
    let snapshot_failed = if used.kind == SourceKind::Snapshot {
        None
    } else {
        sources[..pos]
            .iter()
            .find(|s| s.kind == SourceKind::Snapshot)
            .map(|s| SnapshotFailure {
                name: s
                    .base
                    .split_once("://")
                    .map_or(s.base.as_str(), |(_, rest)| rest)
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                reason: if mirrors.is_dead(&s.base) {
                    "no connection".into()
                } else {
                    format!("no valid dists/{}/InRelease", rel.suite)
                },
            })
    };
    let (source, url) = match used.kind {
        SourceKind::Snapshot => ("snapshot", Some(used.base.clone())),
        // The URL exactly as the user gave it (a root URL serves both archives).
        SourceKind::Mirror => (
            "mirror",
            config
                .mirrors
                .iter()
                .find(|u| {
                    let t = format!("{}/", u.trim_end_matches('/'));
                    used.base.starts_with(&t)
                })
                .cloned()
                .or_else(|| Some(used.base.clone())),
        ),
        // A local copy is a mirror the user named.
        SourceKind::Local => ("mirror", Some(used.base.clone())),
        // The host's mirror is never written into the lock.
        SourceKind::Apt => ("apt-sources", None),
    };
    IndexOrigin {
        source: source.into(),
        url,
        snapshot_failed,
    }
}

/// `a (>= 1) | b, c`: relationship groups as the lock records them (`None` when empty).
fn render_groups(groups: &[Alternatives]) -> Option<String> {
    (!groups.is_empty()).then(|| {
        groups
            .iter()
            .map(|g| display_alternatives(g))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// `a, b (= 2)`: a `Provides` list as the lock records it.
fn render_list(relations: &[crate::debian::relation::Relation]) -> Option<String> {
    (!relations.is_empty()).then(|| {
        relations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The closures a locked recipe entry stands for: (tag, requested packages). The image and
/// kernel closures exist only when something was asked for, the tools closure always.
fn closures_of(r: &LockedRecipe) -> Vec<(String, &[String])> {
    let mut out = Vec::new();
    if !r.packages.is_empty() {
        out.push((r.name.clone(), r.packages.as_slice()));
    }
    out.push((
        format!("{}{BUILD_TAG_SUFFIX}", r.name),
        r.build_packages.as_slice(),
    ));
    if !r.kernel_packages.is_empty() {
        out.push((
            format!("{}{KERNEL_TAG_SUFFIX}", r.name),
            r.kernel_packages.as_slice(),
        ));
    }
    if !r.cargo_packages.is_empty() {
        out.push((
            format!("{}{CARGO_TAG_SUFFIX}", r.name),
            r.cargo_packages.as_slice(),
        ));
    }
    if !r.go_packages.is_empty() {
        out.push((
            format!("{}{GO_TAG_SUFFIX}", r.name),
            r.go_packages.as_slice(),
        ));
    }
    out
}

/// The pins of a closure as a package index (fields the resolver needs, relations as
/// recorded), so that its completeness is judged by the resolver's own rules.
fn closure_index(lock: &Lockfile, tag: &str, architecture: &str) -> Result<PackageIndex, String> {
    let mut by_suite: Vec<(&str, String)> = Vec::new();
    for p in lock
        .packages
        .iter()
        .filter(|p| p.recipes.iter().any(|t| t == tag))
    {
        let mut text = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nFilename: {}\nSize: {}\nSHA256: {}\n",
            p.name, p.version, p.architecture, p.filename, p.size, p.sha256
        );
        if p.source != p.name || p.source_version != p.version {
            text.push_str(&format!("Source: {} ({})\n", p.source, p.source_version));
        }
        for (field, value) in [
            ("Pre-Depends", &p.pre_depends),
            ("Depends", &p.depends),
            ("Provides", &p.provides),
            ("Multi-Arch", &p.multi_arch),
        ] {
            if let Some(v) = value {
                text.push_str(&format!("{field}: {v}\n"));
            }
        }
        text.push('\n');
        match by_suite.iter_mut().find(|(s, _)| *s == p.suite) {
            Some((_, t)) => t.push_str(&text),
            None => by_suite.push((&p.suite, text)),
        }
    }
    let mut index = PackageIndex::new(architecture);
    for (suite, text) in by_suite {
        let paragraphs =
            deb822::parse(&text).map_err(|e| format!("pins of suite `{suite}`: {e}"))?;
        index
            .add_packages(suite, &paragraphs)
            .map_err(|e| format!("pins of suite `{suite}`: {e}"))?;
    }
    Ok(index)
}

/// Where the pins of the lock do not form complete closures, one line each: a requested
/// package that is not pinned in its closure, or a `Depends`/`Pre-Depends` of a pin that no
/// pin of the same closure satisfies (a version 1 lock records no relations: only the
/// requests are checked then).
pub fn check_closures(lock: &Lockfile, architecture: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for r in &lock.recipes {
        for (tag, requested) in closures_of(r) {
            let index = match closure_index(lock, &tag, architecture) {
                Ok(i) => i,
                Err(e) => {
                    problems.push(format!("closure `{tag}`: {e}"));
                    continue;
                }
            };
            if index.is_empty() {
                problems.push(format!(
                    "closure `{tag}` has no pinned package (the lock is truncated or was edited)"
                ));
                continue;
            }
            match unmet(&index, requested) {
                Err(e) => problems.push(format!("closure `{tag}`: {e}")),
                Ok(list) => problems.extend(list.into_iter().map(|u| match u {
                    Unmet::Request { request } => format!(
                        "closure `{tag}`: requested package `{request}` is not pinned"
                    ),
                    Unmet::Dependency { package, relation } => format!(
                        "closure `{tag}`: {package} depends on `{relation}`, which no pin of the closure satisfies"
                    ),
                })),
            }
        }
    }
    problems
}

/// Whether no pin records any relation (a version 1 lock).
fn lacks_relations(lock: &Lockfile) -> bool {
    !lock.packages.is_empty()
        && lock.packages.iter().all(|p| {
            p.pre_depends.is_none()
                && p.depends.is_none()
                && p.provides.is_none()
                && p.multi_arch.is_none()
        })
}

/// Fills the relations of every pin from the `control` file of its `.deb` in the store (the
/// archive index is generated from those same fields), each blob re-hashed first: the store
/// is not trusted. Returns false, changing nothing, when a `.deb` is not in the store.
fn relations_from_store(
    lock: &mut Lockfile,
    store: &Store,
    architecture: &str,
) -> Result<bool, LockError> {
    if !lock.packages.iter().all(|p| store.has_blob(&p.sha256)) {
        return Ok(false);
    }
    for p in &mut lock.packages {
        let path = store.blob_path(&p.sha256);
        let fail = |message: String| LockError::PinRelations {
            package: p.name.clone(),
            version: p.version.clone(),
            path: path.clone(),
            message,
        };
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut file = fs_err::File::open(&path).map_err(|e| fail(e.to_string()))?;
        std::io::copy(&mut file, &mut hasher).map_err(|e| fail(e.to_string()))?;
        let actual = hex::encode(sha2::Digest::finalize(hasher));
        if actual != p.sha256 {
            return Err(fail(format!("its SHA-256 is {actual}, not the pinned one")));
        }
        let control = crate::deb::DebFile::open(&path)
            .and_then(|d| d.control())
            .map_err(|e| fail(e.to_string()))?;
        if control.package() != Some(p.name.as_str())
            || control.version() != Some(p.version.as_str())
        {
            return Err(fail(format!(
                "it is {} {}",
                control.package().unwrap_or("(no Package)"),
                control.version().unwrap_or("(no Version)")
            )));
        }
        let mut text = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nFilename: {}\nSize: {}\nSHA256: {}\n",
            p.name, p.version, p.architecture, p.filename, p.size, p.sha256
        );
        for field in ["Pre-Depends", "Depends", "Provides", "Multi-Arch"] {
            if let Some(v) = control.get(field) {
                // Continuation lines of a folded field, as one line.
                let v = v.split('\n').map(str::trim).collect::<Vec<_>>().join(" ");
                text.push_str(&format!("{field}: {v}\n"));
            }
        }
        let paragraphs = deb822::parse(&text).map_err(|e| fail(e.to_string()))?;
        let mut index = PackageIndex::new(architecture);
        index
            .add_packages(&p.suite, &paragraphs)
            .map_err(|e| fail(e.to_string()))?;
        let b = index
            .candidate(&p.name)
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail(format!("not a package of architecture {architecture}")))?;
        p.pre_depends = render_groups(&b.pre_depends);
        p.depends = render_groups(&b.depends);
        p.provides = render_list(&b.provides);
        p.multi_arch = b.multi_arch.clone();
    }
    Ok(true)
}

/// Drops the preferences that the newest versions of `names` (the `--update PKG...`
/// packages) cannot use: a dependency whose preferred version does not satisfy the relation
/// moves too, and so on for what that one's newest version needs.
fn release_forced(
    index: &PackageIndex,
    prefer: &mut std::collections::BTreeMap<String, String>,
    names: &[String],
) {
    let mut queue: Vec<String> = names.to_vec();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Ok(Some(p)) = index.candidate(&name) else {
            continue;
        };
        for rel in p.pre_depends.iter().chain(&p.depends).flatten() {
            let unusable = prefer
                .get(&rel.name)
                .and_then(|v| v.parse::<Version>().ok())
                .is_some_and(|v| !rel.version_matches(&v));
            if unusable {
                prefer.remove(&rel.name);
                queue.push(rel.name.clone());
            }
        }
    }
}

/// The recipe (or profile closure) a tag belongs to: `base:build` -> `base`.
fn tag_of(tag: &str) -> &str {
    tag.strip_suffix(BUILD_TAG_SUFFIX)
        .or_else(|| tag.strip_suffix(KERNEL_TAG_SUFFIX))
        .or_else(|| tag.strip_suffix(CARGO_TAG_SUFFIX))
        .or_else(|| tag.strip_suffix(GO_TAG_SUFFIX))
        .unwrap_or(tag)
}

/// Copies the pins of the kept recipes from `old` into `new`, with only their tags.
fn carry_over(old: &Lockfile, keep: &[&LockedRecipe], new: &mut Lockfile) {
    // Source pins are re-derived from the recipes by `sources::lockpins::lock_upstream`;
    // keeping them here avoids writing the lock without them in between.
    new.upstream = old.upstream.clone();
    new.cargo = old.cargo.clone();
    let tags: Vec<String> = keep
        .iter()
        .flat_map(|r| {
            [
                r.name.clone(),
                format!("{}{BUILD_TAG_SUFFIX}", r.name),
                format!("{}{KERNEL_TAG_SUFFIX}", r.name),
                format!("{}{CARGO_TAG_SUFFIX}", r.name),
                format!("{}{GO_TAG_SUFFIX}", r.name),
            ]
        })
        .collect();
    let kept = |recipes: &[String]| -> Vec<String> {
        recipes
            .iter()
            .filter(|t| tags.contains(t))
            .cloned()
            .collect()
    };
    for p in &old.packages {
        let recipes = kept(&p.recipes);
        if !recipes.is_empty() {
            new.packages.push(PinnedPackage {
                recipes,
                ..p.clone()
            });
        }
    }
    for s in &old.sources {
        let recipes = kept(&s.recipes);
        if !recipes.is_empty() {
            new.sources.push(PinnedSource {
                recipes,
                ..s.clone()
            });
        }
    }
    for t in &old.tarballs {
        let recipes = kept(&t.recipes);
        if !recipes.is_empty() {
            new.tarballs.push(PinnedTarball {
                recipes,
                ..t.clone()
            });
        }
    }
}

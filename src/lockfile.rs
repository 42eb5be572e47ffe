//! The pins.lock file format.
//!
//! `pins.lock` is TOML written in one canonical layout (see `docs/pins.md`): a `version`,
//! then `[[suite]]` (the verified InRelease of each suite), `[[recipe]]` (what each recipe
//! asked for, so that `hermetic lock --check` needs no network), `[[package]]`, `[[source]]`
//! and `[[tarball]]`, each sorted, without duplicates. [`Lockfile::to_toml`] always gives the
//! same bytes for the same content, so the file is only rewritten when something changed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hash::is_sha256;

/// The format version this hermetic writes. Version 2 added the relationship fields of
/// `[[package]]` (`pre-depends`, `depends`, `provides`, `multi-arch`).
pub const VERSION: i64 = 2;

/// The oldest format version this hermetic reads. A version 1 lock has no relationship
/// fields: `hermetic lock --check` then checks that every requested package is pinned, but
/// cannot check the dependencies of the pins.
pub const MIN_VERSION: i64 = 1;

/// The file name, at the project root.
pub const FILE_NAME: &str = "pins.lock";

/// The suffix of the tag naming a recipe's build-packages closure (`base:build`).
pub const BUILD_TAG_SUFFIX: &str = ":build";
/// The suffix of the tag naming a recipe's kernel closure (`base:kernel`): the kernel's
/// build-packages with its source and config packages.
pub const KERNEL_TAG_SUFFIX: &str = ":kernel";
/// The suffix of the tag naming a recipe's `[[cargo]]` toolchain closure (`base:cargo`).
pub const CARGO_TAG_SUFFIX: &str = ":cargo";

/// The suffix of the tag naming a recipe's `[[go]]` toolchain closure (`base:go`).
pub const GO_TAG_SUFFIX: &str = ":go";

/// Errors reading `pins.lock`. Each names the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum LockfileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path} has format version {found}, but this hermetic reads only version {supported}")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
}

impl crate::error::Diagnostic for LockfileError {
    fn hints(&self) -> Vec<String> {
        match self {
            LockfileError::Malformed { .. } | LockfileError::Invalid { .. } => vec![
                "pins.lock is written by `hermetic lock`; run `hermetic lock --update` to \
                 regenerate it"
                    .into(),
            ],
            LockfileError::TooNew { .. } => vec![
                "upgrade hermetic to read this lock file (it was written by a newer release)"
                    .into(),
            ],
            LockfileError::Read { .. } | LockfileError::Write { .. } => Vec::new(),
        }
    }

    fn subject(&self) -> crate::error::Subject {
        match self {
            LockfileError::Read { path, .. }
            | LockfileError::Write { path, .. }
            | LockfileError::Malformed { path, .. }
            | LockfileError::Invalid { path, .. }
            | LockfileError::TooNew { path, .. } => crate::error::Subject::file(path),
        }
    }
}

/// A suite whose InRelease the pins were taken from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedSuite {
    pub name: String,
    /// `debian` or `debian-security`.
    pub archive: String,
    /// Where the InRelease and indexes were read: `snapshot` (snapshot.debian.org or
    /// `HERMETIC_SNAPSHOT_URL`), `mirror` (`--mirror` / `HERMETIC_MIRRORS`) or `apt-sources`
    /// (the host's apt configuration). Absent in locks written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_source: Option<String>,
    /// The snapshot state's URL, or the mirror URL as configured; absent for `apt-sources`
    /// (the host's mirror is not written into the lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_url: Option<String>,
    /// The snapshot.debian.org timestamp whose state was read; absent when a mirror's state
    /// was read instead (`date` then says which state that was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The `Date` of the InRelease.
    pub date: String,
    pub inrelease_sha256: String,
    pub components: Vec<String>,
    pub architecture: String,
}

/// A source tarball as a recipe asks for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TarballRequest {
    pub name: String,
    pub url: String,
    pub sha256: String,
}

/// What a recipe asked for (after inheritance) when it was locked.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedRecipe {
    pub name: String,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub build_packages: Vec<String>,
    #[serde(default)]
    pub source_packages: Vec<String>,
    #[serde(default)]
    pub tarballs: Vec<TarballRequest>,
    /// What the `[kernel]` table asks for: its build-packages, source and config packages
    /// (empty when the recipe builds no kernel).
    #[serde(default)]
    pub kernel_packages: Vec<String>,
    /// What the `[[cargo]]` builds' toolchain asks for: the union of their build-packages
    /// (empty when the recipe builds no Rust program).
    #[serde(default)]
    pub cargo_packages: Vec<String>,
    /// What the `[[go]]` builds' toolchain asks for: the union of their build-packages
    /// (empty when the recipe builds no Go program).
    #[serde(default)]
    pub go_packages: Vec<String>,
}

/// The crates of a `[[cargo]]` build's `Cargo.lock` (`[[cargo]]` in pins.lock): which
/// source tree (by name and tree-or-file hash) and directory they were read from, and every
/// registry crate with the checksum the `Cargo.lock` gives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedCargo {
    /// The `[[sources]]` name.
    pub source: String,
    /// The workspace directory inside the tree (`""`: its root).
    #[serde(default)]
    pub dir: String,
    /// The content hash of the source the `Cargo.lock` was read from.
    pub source_hash: String,
    pub crates: Vec<LockedCrateEntry>,
    /// The packages the `Cargo.lock` takes from git repositories, each with the tree hash
    /// of its repository at the locked commit (absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub git: Vec<LockedGitEntry>,
}

/// One package from a git repository: its `Cargo.lock` source (`git+URL?rev=…`, without the
/// `#commit`), the commit, and the `hermetic-tree-v1` hash of the repository's tree there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedGitEntry {
    pub name: String,
    pub version: String,
    pub source: String,
    pub commit: String,
    pub tree_sha256: String,
}

/// One registry crate: the SHA-256 of its `.crate`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedCrateEntry {
    pub name: String,
    pub version: String,
    pub checksum: String,
}

/// A pinned binary package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PinnedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub suite: String,
    /// The pool path inside the suite's archive.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub source: String,
    pub source_version: String,
    /// The snapshot.debian.org timestamp this package was taken from, when it is not the
    /// project's (`[[archive.snapshot-package]]` of `hermetic.toml`); fetch looks for it
    /// there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Recipe tags: `<recipe>` (installed in the image), `<recipe>:build` (its tools tree),
    /// `<recipe>:kernel` (its kernel build: tools, source and config debs).
    pub recipes: Vec<String>,
    /// `Pre-Depends` as read from the archive index (architecture restrictions applied),
    /// so that `hermetic lock --check` can prove a closure complete without network.
    /// Absent in version 1 locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_depends: Option<String>,
    /// `Depends`, like `pre_depends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<String>,
    /// `Provides`, like `pre_depends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provides: Option<String>,
    /// `Multi-Arch` (decides whether `name:any` dependencies accept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_arch: Option<String>,
}

/// One file of a pinned source package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PinnedSourceFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// A pinned Debian source package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PinnedSource {
    pub name: String,
    pub version: String,
    pub suite: String,
    /// The pool directory inside the suite's archive.
    pub directory: String,
    pub files: Vec<PinnedSourceFile>,
    pub recipes: Vec<String>,
}

/// A pinned plain tarball.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PinnedTarball {
    pub name: String,
    pub url: String,
    pub sha256: String,
    #[serde(default)]
    pub size: Option<u64>,
    pub recipes: Vec<String>,
}

/// A pinned upstream source (`[[upstream]]`): the recipe's `[[sources]]` entry with its
/// content hash filled in, and who uses it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PinnedUpstream {
    #[serde(flatten)]
    pub pin: crate::sources::pin::SourcePin,
    pub recipes: Vec<String>,
}

/// The whole `pins.lock`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lockfile {
    pub suites: Vec<LockedSuite>,
    pub recipes: Vec<LockedRecipe>,
    pub packages: Vec<PinnedPackage>,
    pub sources: Vec<PinnedSource>,
    pub tarballs: Vec<PinnedTarball>,
    /// Upstream sources (`[[upstream]]`), sorted by name.
    pub upstream: Vec<PinnedUpstream>,
    /// The crates of each `[[cargo]]` build's source (`[[cargo]]`), sorted.
    pub cargo: Vec<LockedCargo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    #[allow(dead_code)]
    version: i64,
    #[serde(default)]
    suite: Vec<LockedSuite>,
    #[serde(default)]
    recipe: Vec<LockedRecipe>,
    #[serde(default)]
    package: Vec<PinnedPackage>,
    #[serde(default)]
    source: Vec<PinnedSource>,
    #[serde(default)]
    tarball: Vec<PinnedTarball>,
    #[serde(default)]
    upstream: Vec<toml::Table>,
    #[serde(default)]
    cargo: Vec<LockedCargo>,
}

/// The `[[upstream]]` tables: `recipes` plus a [`SourcePin`](crate::sources::pin::SourcePin)
/// (its `kind` and fields), each hash well-formed, each name once.
fn parse_upstream(
    path: &Path,
    text: &str,
    tables: Vec<toml::Table>,
) -> Result<Vec<PinnedUpstream>, LockfileError> {
    let mut out: Vec<PinnedUpstream> = Vec::new();
    for (i, mut t) in tables.into_iter().enumerate() {
        let invalid = |message: String| LockfileError::Invalid {
            path: path.to_path_buf(),
            line: nth_header_line(text, "upstream", i).unwrap_or(1),
            message,
        };
        let recipes: Vec<String> = match t.remove("recipes") {
            Some(v) => v
                .try_into()
                .map_err(|e: toml::de::Error| invalid(format!("upstream `recipes`: {e}")))?,
            None => return Err(invalid("upstream entry without `recipes`".into())),
        };
        let pin: crate::sources::pin::SourcePin = toml::Value::Table(t)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("upstream entry: {}", e.message())))?;
        if let Some(h) = pin.content_hash()
            && !is_sha256(h)
        {
            return Err(invalid(format!(
                "upstream `{}`: `{h}` is not a SHA-256",
                pin.name()
            )));
        }
        if out.iter().any(|u| u.pin.name() == pin.name()) {
            return Err(invalid(format!(
                "upstream `{}` is pinned twice",
                pin.name()
            )));
        }
        out.push(PinnedUpstream { pin, recipes });
    }
    Ok(out)
}

fn merge_tags(into: &mut Vec<String>, from: &[String]) {
    into.extend(from.iter().cloned());
    into.sort();
    into.dedup();
}

impl Lockfile {
    /// The lock file path of a project.
    pub fn path_in(project_root: &Path) -> PathBuf {
        project_root.join(FILE_NAME)
    }

    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Lockfile>, LockfileError> {
        match fs_err::read_to_string(path) {
            Ok(text) => Self::parse(path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LockfileError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses lock text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Lockfile, LockfileError> {
        let malformed = |e: toml::de::Error| LockfileError::Malformed {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        };
        let table: toml::Table = toml::from_str(text).map_err(malformed)?;
        let version_line = line_of(text, |l| l.trim_start().starts_with("version")).unwrap_or(1);
        match table.get("version") {
            None => {
                return Err(LockfileError::Invalid {
                    path: path.to_path_buf(),
                    line: 1,
                    message: "no `version` field".into(),
                });
            }
            Some(toml::Value::Integer(v)) if *v > VERSION => {
                return Err(LockfileError::TooNew {
                    path: path.to_path_buf(),
                    found: *v,
                    supported: VERSION,
                });
            }
            Some(toml::Value::Integer(v)) if (MIN_VERSION..=VERSION).contains(v) => {}
            Some(other) => {
                return Err(LockfileError::Invalid {
                    path: path.to_path_buf(),
                    line: version_line,
                    message: format!("`version = {other}` is not a format this hermetic reads"),
                });
            }
        }
        let raw: RawLock = toml::from_str(text).map_err(malformed)?;
        let upstream = parse_upstream(path, text, raw.upstream)?;
        let lock = Lockfile {
            suites: raw.suite,
            recipes: raw.recipe,
            packages: raw.package,
            sources: raw.source,
            tarballs: raw.tarball,
            upstream,
            cargo: raw.cargo,
        };
        lock.validate(path, text)?;
        Ok(lock)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), LockfileError> {
        let invalid = |table: &str, index: usize, message: String| LockfileError::Invalid {
            path: path.to_path_buf(),
            line: nth_header_line(text, table, index).unwrap_or(1),
            message,
        };
        let mut seen = BTreeMap::new();
        for (i, p) in self.packages.iter().enumerate() {
            if !is_sha256(&p.sha256) {
                return Err(invalid(
                    "package",
                    i,
                    format!("package `{}`: `{}` is not a SHA-256", p.name, p.sha256),
                ));
            }
            if seen
                .insert((&p.name, &p.version, &p.architecture), i)
                .is_some()
            {
                return Err(invalid(
                    "package",
                    i,
                    format!("package `{} {}` is pinned twice", p.name, p.version),
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for (i, s) in self.sources.iter().enumerate() {
            if let Some(f) = s.files.iter().find(|f| !is_sha256(&f.sha256)) {
                return Err(invalid(
                    "source",
                    i,
                    format!("source `{}`: `{}` is not a SHA-256", s.name, f.sha256),
                ));
            }
            if seen.insert((&s.name, &s.version), i).is_some() {
                return Err(invalid(
                    "source",
                    i,
                    format!("source `{} {}` is pinned twice", s.name, s.version),
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for (i, t) in self.tarballs.iter().enumerate() {
            if !is_sha256(&t.sha256) {
                return Err(invalid(
                    "tarball",
                    i,
                    format!("tarball `{}`: `{}` is not a SHA-256", t.name, t.sha256),
                ));
            }
            if seen.insert(&t.name, i).is_some() {
                return Err(invalid(
                    "tarball",
                    i,
                    format!("tarball `{}` is pinned twice", t.name),
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for (i, r) in self.recipes.iter().enumerate() {
            if seen.insert(&r.name, i).is_some() {
                return Err(invalid(
                    "recipe",
                    i,
                    format!("recipe `{}` appears twice", r.name),
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for (i, c) in self.cargo.iter().enumerate() {
            if !is_sha256(&c.source_hash) {
                return Err(invalid(
                    "cargo",
                    i,
                    format!(
                        "cargo source `{}`: `{}` is not a SHA-256",
                        c.source, c.source_hash
                    ),
                ));
            }
            if let Some(k) = c.crates.iter().find(|k| !is_sha256(&k.checksum)) {
                return Err(invalid(
                    "cargo",
                    i,
                    format!(
                        "crate `{} {}`: `{}` is not a SHA-256",
                        k.name, k.version, k.checksum
                    ),
                ));
            }
            if let Some(g) = c.git.iter().find(|g| !is_sha256(&g.tree_sha256)) {
                return Err(invalid(
                    "cargo",
                    i,
                    format!(
                        "git package `{} {}`: `{}` is not a SHA-256",
                        g.name, g.version, g.tree_sha256
                    ),
                ));
            }
            if seen.insert((&c.source, &c.dir), i).is_some() {
                return Err(invalid(
                    "cargo",
                    i,
                    format!("the crates of source `{}` appear twice", c.source),
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for (i, s) in self.suites.iter().enumerate() {
            if seen.insert(&s.name, i).is_some() {
                return Err(invalid(
                    "suite",
                    i,
                    format!("suite `{}` appears twice", s.name),
                ));
            }
        }
        Ok(())
    }

    /// Sorts everything and merges duplicate pins (their recipe tags are united).
    pub fn canonicalize(&mut self) {
        self.upstream.sort_by(|a, b| a.pin.name().cmp(b.pin.name()));
        for u in &mut self.upstream {
            u.recipes.sort();
            u.recipes.dedup();
        }
        for c in &mut self.cargo {
            c.crates.sort();
            c.crates.dedup();
            c.git.sort();
            c.git.dedup();
        }
        self.cargo.sort();
        self.cargo
            .dedup_by(|a, b| a.source == b.source && a.dir == b.dir);
        self.suites.sort();
        self.suites.dedup_by(|a, b| a.name == b.name);
        for r in &mut self.recipes {
            r.packages.sort();
            r.packages.dedup();
            r.build_packages.sort();
            r.build_packages.dedup();
            r.source_packages.sort();
            r.source_packages.dedup();
            r.kernel_packages.sort();
            r.kernel_packages.dedup();
            r.cargo_packages.sort();
            r.cargo_packages.dedup();
            r.go_packages.sort();
            r.go_packages.dedup();
            r.tarballs.sort();
            r.tarballs.dedup();
        }
        self.recipes.sort();
        self.recipes.dedup_by(|a, b| a.name == b.name);

        let mut packages: BTreeMap<(String, String, String), PinnedPackage> = BTreeMap::new();
        for p in self.packages.drain(..) {
            let key = (p.name.clone(), p.version.clone(), p.architecture.clone());
            match packages.get_mut(&key) {
                Some(existing) => merge_tags(&mut existing.recipes, &p.recipes),
                None => {
                    let mut p = p;
                    let tags = std::mem::take(&mut p.recipes);
                    merge_tags(&mut p.recipes, &tags);
                    packages.insert(key, p);
                }
            }
        }
        self.packages = packages.into_values().collect();

        let mut sources: BTreeMap<(String, String), PinnedSource> = BTreeMap::new();
        for s in self.sources.drain(..) {
            let key = (s.name.clone(), s.version.clone());
            match sources.get_mut(&key) {
                Some(existing) => merge_tags(&mut existing.recipes, &s.recipes),
                None => {
                    let mut s = s;
                    let tags = std::mem::take(&mut s.recipes);
                    merge_tags(&mut s.recipes, &tags);
                    s.files.sort();
                    s.files.dedup();
                    sources.insert(key, s);
                }
            }
        }
        self.sources = sources.into_values().collect();

        let mut tarballs: BTreeMap<String, PinnedTarball> = BTreeMap::new();
        for t in self.tarballs.drain(..) {
            match tarballs.get_mut(&t.name) {
                Some(existing) => merge_tags(&mut existing.recipes, &t.recipes),
                None => {
                    let mut t = t;
                    let tags = std::mem::take(&mut t.recipes);
                    merge_tags(&mut t.recipes, &tags);
                    tarballs.insert(t.name.clone(), t);
                }
            }
        }
        self.tarballs = tarballs.into_values().collect();
    }

    /// The canonical text of the lock (call [`Lockfile::canonicalize`] first).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# pins.lock: every Debian package, source package and tarball the recipes use,\n\
             # pinned by SHA-256. Written by `hermetic lock`; see docs/pins.md. Do not edit.\n",
        );
        let _ = writeln!(out, "version = {VERSION}");
        for s in &self.suites {
            out.push_str("\n[[suite]]\n");
            kv(&mut out, "name", &s.name);
            kv(&mut out, "archive", &s.archive);
            if let Some(v) = &s.index_source {
                kv(&mut out, "index-source", v);
            }
            if let Some(v) = &s.index_url {
                kv(&mut out, "index-url", v);
            }
            if let Some(v) = &s.snapshot {
                kv(&mut out, "snapshot", v);
            }
            kv(&mut out, "date", &s.date);
            kv(&mut out, "inrelease-sha256", &s.inrelease_sha256);
            list(&mut out, "components", &s.components);
            kv(&mut out, "architecture", &s.architecture);
        }
        for r in &self.recipes {
            out.push_str("\n[[recipe]]\n");
            kv(&mut out, "name", &r.name);
            list(&mut out, "packages", &r.packages);
            list(&mut out, "build-packages", &r.build_packages);
            list(&mut out, "source-packages", &r.source_packages);
            if !r.kernel_packages.is_empty() {
                list(&mut out, "kernel-packages", &r.kernel_packages);
            }
            if !r.cargo_packages.is_empty() {
                list(&mut out, "cargo-packages", &r.cargo_packages);
            }
            if !r.go_packages.is_empty() {
                list(&mut out, "go-packages", &r.go_packages);
            }
            if r.tarballs.is_empty() {
                out.push_str("tarballs = []\n");
            } else {
                out.push_str("tarballs = [\n");
                for t in &r.tarballs {
                    let _ = writeln!(
                        out,
                        "  {{ name = {}, url = {}, sha256 = {} }},",
                        quote(&t.name),
                        quote(&t.url),
                        quote(&t.sha256)
                    );
                }
                out.push_str("]\n");
            }
        }
        for p in &self.packages {
            out.push_str("\n[[package]]\n");
            kv(&mut out, "name", &p.name);
            kv(&mut out, "version", &p.version);
            kv(&mut out, "architecture", &p.architecture);
            kv(&mut out, "suite", &p.suite);
            kv(&mut out, "filename", &p.filename);
            let _ = writeln!(out, "size = {}", p.size);
            kv(&mut out, "sha256", &p.sha256);
            kv(&mut out, "source", &p.source);
            kv(&mut out, "source-version", &p.source_version);
            if let Some(ts) = &p.snapshot {
                kv(&mut out, "snapshot", ts);
            }
            for (key, value) in [
                ("pre-depends", &p.pre_depends),
                ("depends", &p.depends),
                ("provides", &p.provides),
                ("multi-arch", &p.multi_arch),
            ] {
                if let Some(v) = value {
                    kv(&mut out, key, v);
                }
            }
            list(&mut out, "recipes", &p.recipes);
        }
        for s in &self.sources {
            out.push_str("\n[[source]]\n");
            kv(&mut out, "name", &s.name);
            kv(&mut out, "version", &s.version);
            kv(&mut out, "suite", &s.suite);
            kv(&mut out, "directory", &s.directory);
            out.push_str("files = [\n");
            for f in &s.files {
                let _ = writeln!(
                    out,
                    "  {{ name = {}, size = {}, sha256 = {} }},",
                    quote(&f.name),
                    f.size,
                    quote(&f.sha256)
                );
            }
            out.push_str("]\n");
            list(&mut out, "recipes", &s.recipes);
        }
        for t in &self.tarballs {
            out.push_str("\n[[tarball]]\n");
            kv(&mut out, "name", &t.name);
            kv(&mut out, "url", &t.url);
            kv(&mut out, "sha256", &t.sha256);
            if let Some(size) = t.size {
                let _ = writeln!(out, "size = {size}");
            }
            list(&mut out, "recipes", &t.recipes);
        }
        for u in &self.upstream {
            out.push_str("\n[[upstream]]\n");
            // The pin's own fields in declaration order (`kind` first), then its users.
            out.push_str(&toml::to_string(&u.pin).unwrap_or_default());
            list(&mut out, "recipes", &u.recipes);
        }
        for c in &self.cargo {
            out.push_str("\n[[cargo]]\n");
            kv(&mut out, "source", &c.source);
            kv(&mut out, "dir", &c.dir);
            kv(&mut out, "source-hash", &c.source_hash);
            out.push_str("crates = [\n");
            for k in &c.crates {
                let _ = writeln!(
                    out,
                    "  {{ name = {}, version = {}, checksum = {} }},",
                    quote(&k.name),
                    quote(&k.version),
                    quote(&k.checksum)
                );
            }
            out.push_str("]\n");
            if !c.git.is_empty() {
                out.push_str("git = [\n");
                for g in &c.git {
                    let _ = writeln!(
                        out,
                        "  {{ name = {}, version = {}, source = {}, commit = {}, tree-sha256 = {} }},",
                        quote(&g.name),
                        quote(&g.version),
                        quote(&g.source),
                        quote(&g.commit),
                        quote(&g.tree_sha256)
                    );
                }
                out.push_str("]\n");
            }
        }
        out
    }

    /// Writes the lock to `path` unless the file already holds exactly these bytes.
    /// Returns whether it wrote.
    pub fn write_if_changed(&self, path: &Path) -> Result<bool, LockfileError> {
        let text = self.to_toml();
        if let Ok(old) = fs_err::read_to_string(path)
            && old == text
        {
            return Ok(false);
        }
        let werr = |source| LockfileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".pins.lock.")
            .tempfile_in(dir)
            .map_err(werr)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(werr)?;
        // A lock file is an ordinary committed file (tempfile creates 0600).
        let mode = fs_err::metadata(path)
            .map(|m| m.permissions())
            .unwrap_or_else(|_| std::os::unix::fs::PermissionsExt::from_mode(0o644));
        tmp.as_file().set_permissions(mode).map_err(werr)?;
        tmp.persist(path).map_err(|e| werr(e.error))?;
        Ok(true)
    }

    /// The recorded request of a recipe.
    pub fn recipe(&self, name: &str) -> Option<&LockedRecipe> {
        self.recipes.iter().find(|r| r.name == name)
    }

    /// The packages installed in the image of `recipe` (tag `<recipe>`), sorted by name.
    pub fn image_packages(&self, recipe: &str) -> Vec<&PinnedPackage> {
        self.packages_tagged(recipe)
    }

    /// The packages of the tools tree `recipe`'s build steps run in (tag `<recipe>:build`).
    pub fn build_packages(&self, recipe: &str) -> Vec<&PinnedPackage> {
        self.packages_tagged(&format!("{recipe}{BUILD_TAG_SUFFIX}"))
    }

    /// The packages of `recipe`'s kernel build (tag `<recipe>:kernel`).
    pub fn kernel_packages(&self, recipe: &str) -> Vec<&PinnedPackage> {
        self.packages_tagged(&format!("{recipe}{KERNEL_TAG_SUFFIX}"))
    }

    /// The packages carrying exactly this recipe tag.
    pub fn packages_tagged(&self, tag: &str) -> Vec<&PinnedPackage> {
        self.packages
            .iter()
            .filter(|p| p.recipes.iter().any(|t| t == tag))
            .collect()
    }

    /// The source packages and tarballs pinned for `recipe`.
    pub fn sources_of(&self, recipe: &str) -> (Vec<&PinnedSource>, Vec<&PinnedTarball>) {
        let tagged = |tags: &[String]| tags.iter().any(|t| t == recipe);
        (
            self.sources.iter().filter(|s| tagged(&s.recipes)).collect(),
            self.tarballs
                .iter()
                .filter(|t| tagged(&t.recipes))
                .collect(),
        )
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn kv(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key} = {}", quote(value));
}

fn list(out: &mut String, key: &str, values: &[String]) {
    let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
    let _ = writeln!(out, "{key} = [{}]", items.join(", "));
}

fn line_of(text: &str, pred: impl Fn(&str) -> bool) -> Option<usize> {
    text.lines().position(pred).map(|i| i + 1)
}

/// The line of the `index`-th `[[table]]` header.
fn nth_header_line(text: &str, table: &str, index: usize) -> Option<usize> {
    let header = format!("[[{table}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(index)
        .map(|(i, _)| i + 1)
}

/// One change of the pins between two locks, by package name (see [`pin_changes`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PinChange {
    /// `add`, `remove`, `update` or `downgrade`.
    pub change: &'static str,
    /// The binary package, or `<name> (source)` for a source package.
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl std::fmt::Display for PinChange {
    /// `      Adding app 1:2.0-1`, `    Updating libfoo 1.0-1 -> 1.1-1` (like `cargo update`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = match self.change {
            "add" => "Adding",
            "remove" => "Removing",
            "update" => "Updating",
            _ => "Downgrading",
        };
        let none = String::new();
        match (&self.old, &self.new) {
            (Some(o), Some(n)) => write!(f, "{verb:>12} {} {o} -> {n}", self.name),
            (o, n) => write!(
                f,
                "{verb:>12} {} {}",
                self.name,
                o.as_ref().or(n.as_ref()).unwrap_or(&none)
            ),
        }
    }
}

/// What changed from `old` to `new`, sorted by name: a name pinned at one version before and
/// another after is an update (or downgrade); otherwise each version that appears is added
/// and each that disappears removed.
pub fn pin_changes(old: &Lockfile, new: &Lockfile) -> Vec<PinChange> {
    type Versions = BTreeMap<String, std::collections::BTreeSet<String>>;
    let collect = |l: &Lockfile| -> Versions {
        let mut m = Versions::new();
        for p in &l.packages {
            m.entry(p.name.clone())
                .or_default()
                .insert(p.version.clone());
        }
        for s in &l.sources {
            m.entry(format!("{} (source)", s.name))
                .or_default()
                .insert(s.version.clone());
        }
        m
    };
    let (o, n) = (collect(old), collect(new));
    let empty = std::collections::BTreeSet::new();
    let names: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (ov, nv) = (o.get(name).unwrap_or(&empty), n.get(name).unwrap_or(&empty));
        if ov == nv {
            continue;
        }
        if ov.len() == 1 && nv.len() == 1 {
            let (a, b) = (ov.first().cloned(), nv.first().cloned());
            let newer = match (
                a.as_deref()
                    .and_then(|v| v.parse::<crate::debian::version::Version>().ok()),
                b.as_deref()
                    .and_then(|v| v.parse::<crate::debian::version::Version>().ok()),
            ) {
                (Some(x), Some(y)) => y > x,
                _ => true,
            };
            out.push(PinChange {
                change: if newer { "update" } else { "downgrade" },
                name: name.clone(),
                old: a,
                new: b,
            });
            continue;
        }
        for v in ov.difference(nv) {
            out.push(PinChange {
                change: "remove",
                name: name.clone(),
                old: Some(v.clone()),
                new: None,
            });
        }
        for v in nv.difference(ov) {
            out.push(PinChange {
                change: "add",
                name: name.clone(),
                old: None,
                new: Some(v.clone()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lockfile {
        let pkg = |name: &str, tag: &str| PinnedPackage {
            name: name.into(),
            version: "1:2.0-1~deb13u1".into(),
            architecture: "amd64".into(),
            suite: "trixie".into(),
            filename: format!("pool/main/x/{name}/{name}_2.0-1_amd64.deb"),
            size: 1234,
            sha256: "ab".repeat(32),
            source: name.into(),
            source_version: "2.0-1".into(),
            recipes: vec![tag.into()],
            depends: Some("libc6 (>= 2.34), libfoo | libbar".into()),
            multi_arch: Some("same".into()),
            ..Default::default()
        };
        Lockfile {
            suites: vec![LockedSuite {
                name: "trixie".into(),
                archive: "debian".into(),
                index_source: Some("snapshot".into()),
                index_url: Some("https://snapshot.example/archive/debian/20261124T000000Z/".into()),
                snapshot: Some("20261124T000000Z".into()),
                date: "Sat, 21 Nov 2026 09:15:44 UTC".into(),
                inrelease_sha256: "cd".repeat(32),
                components: vec!["main".into()],
                architecture: "amd64".into(),
            }],
            recipes: vec![LockedRecipe {
                name: "base".into(),
                packages: vec!["zz".into(), "aa".into()],
                tarballs: vec![TarballRequest {
                    name: "t".into(),
                    url: "https://example.org/t \"q\".tar.gz".into(),
                    sha256: "ef".repeat(32),
                }],
                ..Default::default()
            }],
            packages: vec![
                pkg("zz", "base"),
                pkg("aa", "base:build"),
                pkg("aa", "base"),
            ],
            sources: vec![PinnedSource {
                name: "linux".into(),
                version: "6.12.1-1".into(),
                suite: "trixie".into(),
                directory: "pool/main/l/linux".into(),
                files: vec![PinnedSourceFile {
                    name: "linux_6.12.1-1.dsc".into(),
                    size: 10,
                    sha256: "01".repeat(32),
                }],
                recipes: vec!["kernel".into()],
            }],
            tarballs: vec![PinnedTarball {
                name: "t".into(),
                url: "https://example.org/t \"q\".tar.gz".into(),
                sha256: "ef".repeat(32),
                size: None,
                recipes: vec!["base".into()],
            }],
            upstream: vec![PinnedUpstream {
                pin: crate::sources::pin::SourcePin::Git {
                    name: "m".into(),
                    repo: "https://example.org/m \"q\"".into(),
                    commit: "ab".repeat(20),
                    tree_sha256: Some("cd".repeat(32)),
                    archive_urls: vec!["{repo}/archive/{commit}.zip".into()],
                },
                recipes: vec!["base".into()],
            }],
            cargo: vec![LockedCargo {
                source: "m".into(),
                dir: "tools/x".into(),
                source_hash: "cd".repeat(32),
                crates: ["zz", "aa", "aa"]
                    .iter()
                    .map(|n| LockedCrateEntry {
                        name: n.to_string(),
                        version: "1.0.0".into(),
                        checksum: "ef".repeat(32),
                    })
                    .collect(),
                git: vec![LockedGitEntry {
                    name: "tracing-core".into(),
                    version: "0.1.33".into(),
                    source: "git+https://github.com/tokio-rs/tracing?rev=e0642d9".into(),
                    commit: "e0".repeat(20),
                    tree_sha256: "12".repeat(32),
                }],
            }],
        }
    }

    #[test]
    fn canonical_text_round_trips_and_is_stable() {
        let mut lock = sample();
        lock.canonicalize();
        assert_eq!(lock.packages.len(), 2, "duplicates merge");
        assert_eq!(lock.packages[0].name, "aa");
        assert_eq!(lock.packages[0].recipes, ["base", "base:build"]);
        assert_eq!(lock.recipes[0].packages, ["aa", "zz"]);
        let crates: Vec<&str> = lock.cargo[0]
            .crates
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(crates, ["aa", "zz"], "crates sorted, duplicates dropped");
        let image: Vec<&str> = lock
            .image_packages("base")
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(image, ["aa", "zz"]);
        let tools: Vec<&str> = lock
            .build_packages("base")
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(tools, ["aa"]);
        assert_eq!(lock.sources_of("kernel").0.len(), 1);
        assert_eq!(lock.sources_of("base").1.len(), 1);
        let text = lock.to_toml();
        let back = Lockfile::parse(Path::new("pins.lock"), &text).unwrap();
        assert_eq!(back, lock);
        let mut again = back.clone();
        again.canonicalize();
        assert_eq!(again.to_toml(), text);
    }

    #[test]
    fn a_pin_from_another_snapshot_records_it_and_round_trips() {
        let mut lock = sample();
        lock.packages[0].snapshot = Some("20240314T094714Z".into());
        lock.canonicalize();
        let text = lock.to_toml();
        assert!(
            text.contains("source-version = \"2.0-1\"\nsnapshot = \"20240314T094714Z\"\n"),
            "{text}"
        );
        assert_eq!(text.matches("\nsnapshot = ").count(), 2, "{text}");
        let back = Lockfile::parse(Path::new("pins.lock"), &text).unwrap();
        assert_eq!(back, lock);
    }

    #[test]
    fn newer_version_asks_for_upgrade() {
        let err = Lockfile::parse(Path::new("x/pins.lock"), "version = 3\n").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LockfileError::TooNew { found: 3, .. }));
        assert!(msg.contains("x/pins.lock"), "{msg}");
        let hints = crate::error::Diagnostic::hints(&err);
        assert!(hints[0].starts_with("upgrade hermetic"), "{hints:?}");
    }

    #[test]
    fn malformed_names_file_and_line() {
        let mut lock = sample();
        lock.canonicalize();
        let text = lock.to_toml().replace("size = 1234", "size = \"big\"");
        let msg = Lockfile::parse(Path::new("p/pins.lock"), &text)
            .unwrap_err()
            .to_string();
        let line = text.lines().position(|l| l.contains("\"big\"")).unwrap() + 1;
        assert!(msg.contains("p/pins.lock"), "{msg}");
        assert!(msg.contains(&format!("line {line}")), "{msg}");

        let text = "version = 1\n\n[[package]]\nname = \"a\"\n".to_string();
        let msg = Lockfile::parse(Path::new("pins.lock"), &text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn duplicate_pin_names_its_line() {
        let mut lock = sample();
        lock.canonicalize();
        let text = lock.to_toml();
        let start = text.find("[[package]]").unwrap();
        let end = text[start + 1..].find("[[package]]").unwrap() + start + 1;
        let doubled = format!("{}{}", &text[..end], &text[start..]);
        let msg = Lockfile::parse(Path::new("pins.lock"), &doubled)
            .unwrap_err()
            .to_string();
        let line = doubled
            .lines()
            .enumerate()
            .filter(|(_, l)| *l == "[[package]]")
            .nth(1)
            .unwrap()
            .0
            + 1;
        assert!(msg.contains(&format!("pins.lock:{line}:")), "{msg}");
        assert!(msg.contains("pinned twice"), "{msg}");
    }

    #[test]
    fn write_if_changed_keeps_identical_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pins.lock");
        let mut lock = sample();
        lock.canonicalize();
        assert!(lock.write_if_changed(&path).unwrap());
        assert!(!lock.write_if_changed(&path).unwrap());
        lock.packages[0].size = 1;
        assert!(lock.write_if_changed(&path).unwrap());
    }
}

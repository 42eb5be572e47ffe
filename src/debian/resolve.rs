//! The dependency resolver: which binary packages `apt-get install --no-install-recommends`
//! would install on an empty system, computed from `Packages` and `Sources` indexes.
//!
//! The rules, as implemented (see also `docs/resolver.md`):
//! - Only one version of each package name is considered, its *candidate*: the highest version
//!   across all suites (the earliest added suite wins a tie), unless a request pins
//!   `name=version`. Like apt, an older version is never used to satisfy a dependency.
//! - Packages of the index architecture and `all` are kept; every other architecture is skipped.
//! - Roots are the requests plus, with `include_essential`, every package whose candidate is
//!   `Essential: yes` or `Priority: required`. All roots are chosen first, then the
//!   `Pre-Depends` and `Depends` of each root are resolved, depth first like apt's
//!   `MarkInstall`, roots in the order apt-get takes its command line: the requests in the
//!   order given, then the essential base in name order.
//! - A dependency group already satisfied by a chosen package is left alone. Otherwise the
//!   possible solutions are collected alternative by alternative, in the order written; the
//!   solutions of one alternative (the package of that name and the packages providing it) are
//!   ordered like apt's `CompareProviders`: the package whose name is the alternative's name,
//!   then `Essential: yes`, then `Important: yes`, then the more important `Priority`, then
//!   (where apt falls back to its cache order) the name in ascending order. The first solution
//!   that can be installed is chosen.
//! - A solution cannot be installed when one of its own dependency groups has no candidate at
//!   all, when its dependencies fail in turn, when a chosen package conflicts with or breaks
//!   it, or when it conflicts with or breaks a protected chosen package. An unprotected chosen
//!   package that it conflicts with or breaks is un-chosen instead (apt's `MarkInstall`), and
//!   the dependencies that package satisfied are resolved again at the end.
//! - Versioned dependencies are satisfied by the candidate when its version matches, and by a
//!   versioned `Provides: name (= v)` when `v` matches; an unversioned `Provides` satisfies only
//!   unversioned dependencies.
//! - `name:any` is satisfied only by packages (or providers) that are `Multi-Arch: allowed`;
//!   `name:native` and `name:ARCH` (the index architecture) by any package. Multi-Arch `same`
//!   and `foreign` change nothing with a single architecture.
//! - Like apt, when a root (or a package that is the only solution of a root's dependency) has
//!   a dependency satisfied by exactly one possible package, that package's own dependencies
//!   are resolved at that point.
//! - At the end every chosen package's dependencies must be satisfied, and no two chosen
//!   packages may conflict (`Conflicts`, `Breaks`, including through `Provides`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use super::deb822::Paragraph;
use super::relation::{
    Alternatives, Relation, RelationError, display_alternatives, parse_relations_for_arch,
};
use super::version::{Version, VersionError};

/// One binary package version from a `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryPackage {
    pub name: String,
    pub version: Version,
    /// The index architecture or `all`.
    pub architecture: String,
    /// The suite it was added from (`trixie`, `trixie-security`).
    pub suite: String,
    /// Path of the `.deb` below the archive root.
    pub filename: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the `.deb`.
    pub sha256: String,
    /// The source package name (the binary's own name when the `Source` field is absent).
    pub source: String,
    /// The source version (the binary version when `Source` carries none).
    pub source_version: Version,
    pub multi_arch: Option<String>,
    pub essential: bool,
    pub priority: Option<String>,
    /// `Important: yes` (or `Protected: yes`): apt prefers such providers.
    pub important: bool,
    pub depends: Vec<Alternatives>,
    pub pre_depends: Vec<Alternatives>,
    pub provides: Vec<Relation>,
    pub conflicts: Vec<Relation>,
    pub breaks: Vec<Relation>,
}

impl BinaryPackage {
    /// `name version (suite)`, for messages.
    fn describe(&self) -> String {
        format!("{} {} ({})", self.name, self.version, self.suite)
    }

    /// The `Pre-Depends` groups, then the `Depends` groups: apt's order.
    fn dependency_groups(&self) -> impl Iterator<Item = &Alternatives> {
        self.pre_depends.iter().chain(&self.depends)
    }
}

/// What went wrong while indexing or resolving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A paragraph lacks a field the resolver or the lock file needs.
    #[error("{suite}: paragraph at line {line} ({package}): missing field '{field}'")]
    MissingField {
        suite: String,
        line: usize,
        package: String,
        field: &'static str,
    },
    /// A field value that does not parse.
    #[error("{suite}: paragraph at line {line} ({package}): bad field '{field}': {reason}")]
    BadField {
        suite: String,
        line: usize,
        package: String,
        field: &'static str,
        reason: String,
    },
    /// A request naming a package that no suite has.
    #[error("package '{name}' is not in {suites} ({arch})")]
    UnknownPackage {
        name: String,
        suites: String,
        arch: String,
        release: String,
    },
    /// A request naming a virtual package provided by several packages.
    #[error("package '{name}' is virtual, provided by: {providers}")]
    VirtualPackage { name: String, providers: String },
    /// A request pinning a version that no suite has.
    #[error("package '{name}' has no version {version} in {suites}")]
    UnknownVersion {
        name: String,
        version: String,
        suites: String,
        available: String,
    },
    /// A request that is not `name`, `name=version` or `name:arch`.
    #[error("invalid package request '{request}': {reason}")]
    BadRequest { request: String, reason: String },
    /// A request for an architecture the index does not hold.
    #[error(
        "package request '{request}' asks for architecture '{wanted}', but the index is {arch}"
    )]
    WrongArchitecture {
        request: String,
        wanted: String,
        arch: String,
    },
    /// A dependency that no candidate satisfies; the message names the chain from the request.
    #[error("unsatisfiable dependency: {chain}")]
    Unsatisfiable { chain: String },
    /// Two packages of the result that conflict or break each other.
    #[error("{package} {kind} {relation}, satisfied by {other}; both are needed")]
    Conflict {
        package: String,
        kind: &'static str,
        relation: String,
        other: String,
    },
    /// No source package of that name.
    #[error("source package '{name}' is not in {suites}")]
    UnknownSource { name: String, suites: String },
    /// No source package of that name and version.
    #[error("source package '{name}' has no version {version} in {suites}; available: {available}")]
    UnknownSourceVersion {
        name: String,
        version: String,
        suites: String,
        available: String,
    },
}

impl crate::error::Diagnostic for ResolveError {
    fn hints(&self) -> Vec<String> {
        match self {
            ResolveError::UnknownPackage { name, release, .. } => vec![format!(
                "check the spelling; `apt-cache policy {name}` on a {release} machine shows where it is"
            )],
            ResolveError::VirtualPackage { .. } => {
                vec!["request one of the providers by name".into()]
            }
            ResolveError::UnknownVersion { available, .. } => {
                vec![format!("available: {available}")]
            }
            ResolveError::WrongArchitecture { wanted, .. } => {
                vec![format!("drop the ':{wanted}' suffix")]
            }
            ResolveError::UnknownSource { .. } => {
                vec!["check that the Sources indexes of every suite were added".into()]
            }
            _ => Vec::new(),
        }
    }

    fn subject(&self) -> crate::error::Subject {
        use crate::error::Subject;
        match self {
            ResolveError::MissingField { package, .. }
            | ResolveError::BadField { package, .. }
            | ResolveError::Conflict { package, .. } => Subject::package(package),
            ResolveError::UnknownPackage { name, .. }
            | ResolveError::VirtualPackage { name, .. }
            | ResolveError::UnknownVersion { name, .. }
            | ResolveError::UnknownSource { name, .. }
            | ResolveError::UnknownSourceVersion { name, .. } => Subject::package(name),
            ResolveError::BadRequest { request, .. }
            | ResolveError::WrongArchitecture { request, .. } => Subject::package(request),
            ResolveError::Unsatisfiable { .. } => Subject::default(),
        }
    }
}

/// Binary packages of one architecture (plus `all`) from one or more suites.
#[derive(Debug, Clone)]
pub struct PackageIndex {
    architecture: String,
    suites: Vec<String>,
    entries: Vec<Entry>,
    /// Entry indices per name, best first (highest version, then earliest suite).
    by_name: BTreeMap<String, Vec<usize>>,
    /// Indices of the entries providing each name (any version), ascending.
    provided: BTreeMap<String, Vec<usize>>,
}

/// One indexed package. Only `Provides` is parsed while indexing; the other relationship
/// fields are kept as text and parsed the first time the resolver looks at the package, so
/// that indexing a whole suite stays cheap (most packages are never looked at).
#[derive(Debug, Clone)]
struct Entry {
    /// Everything but `depends`, `pre_depends`, `conflicts` and `breaks`.
    base: BinaryPackage,
    /// `Depends`, `Pre-Depends`, `Conflicts`, `Breaks` as written.
    raw: [Option<Box<str>>; 4],
    line: usize,
    /// Later suites that have the same version (skipped as duplicates).
    also_in: Vec<String>,
    full: OnceLock<Result<BinaryPackage, ResolveError>>,
}

const RAW_FIELDS: [&str; 4] = ["Depends", "Pre-Depends", "Conflicts", "Breaks"];

fn bad_field(
    suite: &str,
    p: &Paragraph,
    package: &str,
    field: &'static str,
    reason: impl fmt::Display,
) -> ResolveError {
    ResolveError::BadField {
        suite: suite.to_string(),
        line: p.line(),
        package: package.to_string(),
        field,
        reason: reason.to_string(),
    }
}

fn required<'p>(
    suite: &str,
    p: &'p Paragraph,
    package: &str,
    field: &'static str,
) -> Result<&'p str, ResolveError> {
    p.get(field)
        .ok_or_else(|| missing(suite, p, package, field))
}

fn parse_version(
    suite: &str,
    p: &Paragraph,
    package: &str,
    field: &'static str,
    text: &str,
) -> Result<Version, ResolveError> {
    text.parse()
        .map_err(|e: VersionError| bad_field(suite, p, package, field, e))
}

fn join_suites(suites: &[String]) -> String {
    if suites.is_empty() {
        "no suite (the index is empty)".to_string()
    } else {
        suites.join(", ")
    }
}

impl PackageIndex {
    /// An empty index for `architecture` (`amd64`, `arm64`, ...).
    pub fn new(architecture: &str) -> Self {
        PackageIndex {
            architecture: architecture.to_string(),
            suites: Vec::new(),
            entries: Vec::new(),
            by_name: BTreeMap::new(),
            provided: BTreeMap::new(),
        }
    }

    /// The index architecture.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The suites added so far, in order.
    pub fn suites(&self) -> &[String] {
        &self.suites
    }

    /// Number of package versions indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every package name indexed, in order (for "did you mean").
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Whether some suite has a package of this name, or one providing it.
    pub fn knows(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.provided.contains_key(name)
    }

    /// The requests (`name`, `name=version`, `name:arch`) naming a package that no suite has
    /// and none provides, so that all of them are reported at once; a request that does not
    /// parse is left for [`resolve`] to report.
    pub fn unknown_requests<'r>(&self, requests: &'r [String]) -> Vec<&'r str> {
        requests
            .iter()
            .filter_map(|text| parse_request(text).ok())
            .filter(|req| !self.knows(req.name))
            .map(|req| req.name)
            .collect()
    }

    /// The versions of `name` with their suites, highest first.
    pub fn versions(&self, name: &str) -> impl Iterator<Item = (&Version, &str)> {
        self.by_name.get(name).into_iter().flatten().map(|&i| {
            (
                &self.entries[i].base.version,
                self.entries[i].base.suite.as_str(),
            )
        })
    }

    /// The candidate (highest) version of `name`, all fields parsed.
    pub fn candidate(&self, name: &str) -> Result<Option<&BinaryPackage>, ResolveError> {
        match self.by_name.get(name).and_then(|v| v.first()) {
            None => Ok(None),
            Some(&i) => self.full(i).map(Some),
        }
    }

    /// Entry `i` with every relationship field parsed.
    fn full(&self, i: usize) -> Result<&BinaryPackage, ResolveError> {
        let entry = &self.entries[i];
        entry
            .full
            .get_or_init(|| {
                let b = &entry.base;
                let parse = |k: usize| -> Result<Vec<Alternatives>, ResolveError> {
                    match &entry.raw[k] {
                        None => Ok(Vec::new()),
                        Some(text) => parse_relations_for_arch(text, &self.architecture).map_err(
                            |e: RelationError| ResolveError::BadField {
                                suite: b.suite.clone(),
                                line: entry.line,
                                package: b.name.clone(),
                                field: RAW_FIELDS[k],
                                reason: e.to_string(),
                            },
                        ),
                    }
                };
                let flat = |k: usize| -> Result<Vec<Relation>, ResolveError> {
                    flatten(parse(k)?).map_err(|reason| ResolveError::BadField {
                        suite: b.suite.clone(),
                        line: entry.line,
                        package: b.name.clone(),
                        field: RAW_FIELDS[k],
                        reason: reason.to_string(),
                    })
                };
                let mut p = b.clone();
                p.depends = parse(0)?;
                p.pre_depends = parse(1)?;
                p.conflicts = flat(2)?;
                p.breaks = flat(3)?;
                Ok(p)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Adds the paragraphs of one suite's `Packages` index. Paragraphs of other architectures
    /// are skipped, and so is a version already added for the same name (from an earlier
    /// suite or earlier in this one). `Depends`, `Pre-Depends`, `Conflicts` and `Breaks` are
    /// checked when the resolver first needs them.
    pub fn add_packages(
        &mut self,
        suite: &str,
        paragraphs: &[Paragraph],
    ) -> Result<(), ResolveError> {
        if !self.suites.iter().any(|s| s == suite) {
            self.suites.push(suite.to_string());
        }
        let mut touched = BTreeSet::new();
        for p in paragraphs {
            let Some(entry) = self.parse_entry(suite, p)? else {
                continue;
            };
            let name = &entry.base.name;
            let versions = self.by_name.entry(name.clone()).or_default();
            if let Some(&dup) = versions
                .iter()
                .find(|&&i| self.entries[i].base.version == entry.base.version)
            {
                let e = &mut self.entries[dup];
                if e.base.suite != suite && !e.also_in.iter().any(|x| x == suite) {
                    e.also_in.push(suite.to_string());
                }
                continue;
            }
            let idx = self.entries.len();
            versions.push(idx);
            if versions.len() > 1 {
                touched.insert(name.clone());
            }
            for prov in &entry.base.provides {
                let list = self.provided.entry(prov.name.clone()).or_default();
                if list.last() != Some(&idx) {
                    list.push(idx);
                }
            }
            self.entries.push(entry);
        }
        let suite_rank = |s: &str| {
            self.suites
                .iter()
                .position(|x| x == s)
                .unwrap_or(usize::MAX)
        };
        for name in touched {
            if let Some(v) = self.by_name.get_mut(&name) {
                let entries = &self.entries;
                v.sort_by(|&a, &b| {
                    let (pa, pb) = (&entries[a].base, &entries[b].base);
                    pb.version
                        .cmp(&pa.version)
                        .then_with(|| suite_rank(&pa.suite).cmp(&suite_rank(&pb.suite)))
                        .then(a.cmp(&b))
                });
            }
        }
        Ok(())
    }

    fn parse_entry(&self, suite: &str, p: &Paragraph) -> Result<Option<Entry>, ResolveError> {
        // One pass over the fields; Packages files spell names canonically, other spellings
        // are matched case-insensitively.
        const WANTED: [&str; 16] = [
            "Package",
            "Architecture",
            "Version",
            "Filename",
            "Size",
            "SHA256",
            "Source",
            "Multi-Arch",
            "Essential",
            "Priority",
            "Important",
            "Protected",
            "Provides",
            "Depends",
            "Pre-Depends",
            "Conflicts",
        ];
        let mut found: [Option<&str>; 17] = [None; 17];
        for (field, value) in p.fields() {
            if let Some(k) = entry_slot(field) {
                found[k] = Some(value);
            }
        }
        let name = found[0].ok_or_else(|| missing(suite, p, "?", "Package"))?;
        let need = |k: usize| found[k].ok_or_else(|| missing(suite, p, name, WANTED[k]));
        let architecture = need(1)?;
        if architecture != self.architecture && architecture != "all" {
            return Ok(None);
        }
        let version = parse_version(suite, p, name, "Version", need(2)?)?;
        let filename = need(3)?;
        let size: u64 = need(4)?
            .parse()
            .map_err(|e| bad_field(suite, p, name, "Size", e))?;
        let sha256 = need(5)?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad_field(suite, p, name, "SHA256", "not 64 hex digits"));
        }
        let (source, source_version) = match found[6] {
            None => (name.to_string(), version.clone()),
            Some(s) => match s.split_once('(') {
                None => (s.trim().to_string(), version.clone()),
                Some((src, rest)) => {
                    let v = rest
                        .trim()
                        .strip_suffix(')')
                        .ok_or_else(|| bad_field(suite, p, name, "Source", "missing ')'"))?;
                    (
                        src.trim().to_string(),
                        parse_version(suite, p, name, "Source", v.trim())?,
                    )
                }
            },
        };
        let provides = match found[12] {
            None => Vec::new(),
            Some(text) => parse_relations_for_arch(text, &self.architecture)
                .map_err(|e| bad_field(suite, p, name, "Provides", e))
                .and_then(|g| flatten(g).map_err(|r| bad_field(suite, p, name, "Provides", r)))?,
        };
        let yes = |k: usize| found[k].is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let raw = |k: usize| found[k].map(Box::from);
        Ok(Some(Entry {
            base: BinaryPackage {
                name: name.to_string(),
                version,
                architecture: architecture.to_string(),
                suite: suite.to_string(),
                filename: filename.to_string(),
                size,
                sha256: sha256.to_ascii_lowercase(),
                source,
                source_version,
                multi_arch: found[7].map(str::to_string),
                essential: yes(8),
                priority: found[9].map(str::to_string),
                important: yes(10) || yes(11),
                depends: Vec::new(),
                pre_depends: Vec::new(),
                provides,
                conflicts: Vec::new(),
                breaks: Vec::new(),
            },
            raw: [raw(13), raw(14), raw(15), raw(16)],
            line: p.line(),
            also_in: Vec::new(),
            full: OnceLock::new(),
        }))
    }
}

/// The slot of `field` in [`PackageIndex::parse_entry`]'s table (`WANTED`, then `Breaks`).
fn entry_slot(field: &str) -> Option<usize> {
    // Field names are case-insensitive: compare a lower-cased copy (names we want are short).
    let mut buf = [0u8; 16];
    let bytes = field.as_bytes();
    if bytes.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(bytes) {
        *d = s.to_ascii_lowercase();
    }
    Some(match &buf[..bytes.len()] {
        b"package" => 0,
        b"architecture" => 1,
        b"version" => 2,
        b"filename" => 3,
        b"size" => 4,
        b"sha256" => 5,
        b"source" => 6,
        b"multi-arch" => 7,
        b"essential" => 8,
        b"priority" => 9,
        b"important" => 10,
        b"protected" => 11,
        b"provides" => 12,
        b"depends" => 13,
        b"pre-depends" => 14,
        b"conflicts" => 15,
        b"breaks" => 16,
        _ => return None,
    })
}

/// A relationship field without alternatives (`Provides`, `Conflicts`, `Breaks`).
fn flatten(groups: Vec<Alternatives>) -> Result<Vec<Relation>, &'static str> {
    let mut out = Vec::new();
    for group in groups {
        if group.len() != 1 {
            return Err("alternatives ('|') are not allowed here");
        }
        out.extend(group);
    }
    Ok(out)
}

fn missing(suite: &str, p: &Paragraph, package: &str, field: &'static str) -> ResolveError {
    ResolveError::MissingField {
        suite: suite.to_string(),
        line: p.line(),
        package: package.to_string(),
        field,
    }
}

/// How to resolve.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Add every `Essential: yes` and `Priority: required` package as the bootstrap base.
    pub include_essential: bool,
    /// Versions to take as candidates instead of the highest (name to version), where the
    /// index has them: the pins of an existing lock, so that re-resolving moves nothing
    /// that need not move. A `name=version` request still wins. See [`resolve_preferring`].
    pub prefer: BTreeMap<String, String>,
}

/// The packages to install, sorted by (name, architecture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub packages: Vec<BinaryPackage>,
}

/// Why a package could not be installed: the chain of packages that led to it and the reason.
#[derive(Debug, Clone)]
struct Failure {
    /// Package names from the root down to the package whose dependency failed.
    path: Vec<String>,
    /// `relation : reason`.
    what: String,
}

impl Failure {
    fn render(&self) -> String {
        let mut s = self.path.join(" -> ");
        if !s.is_empty() {
            s.push_str(" -> ");
        }
        s.push_str(&self.what);
        s
    }
}

/// apt's numeric priority (`pkgCache::State::VerPriority`): a missing field is 0, an unknown
/// word is `extra`.
fn priority_rank(p: &BinaryPackage) -> u8 {
    match p.priority.as_deref() {
        None => 0,
        Some("required") => 1,
        Some("important") => 2,
        Some("standard") => 3,
        Some("optional") => 4,
        Some(_) => 5,
    }
}

struct Resolver<'a> {
    index: &'a PackageIndex,
    /// Candidate overrides from `name=version` requests.
    overrides: BTreeMap<&'a str, usize>,
    /// Candidates preferred over the highest version ([`ResolveOptions::prefer`]).
    preferred: BTreeMap<&'a str, usize>,
    /// Chosen packages by name.
    marked: BTreeMap<&'a str, usize>,
    /// apt's "protected" packages: roots, and the only solutions of their dependencies.
    protected: BTreeSet<usize>,
}

impl<'a> Resolver<'a> {
    /// Package `i` without its relationship fields (enough to match it against a relation).
    fn pkg(&self, i: usize) -> &'a BinaryPackage {
        &self.index.entries[i].base
    }

    /// Package `i` with every field parsed; a field that does not parse makes the package
    /// uninstallable, with the parse error as the reason.
    fn full(&self, i: usize, path: &[String]) -> Result<&'a BinaryPackage, Failure> {
        self.index.full(i).map_err(|e| Failure {
            path: path.to_vec(),
            what: format!("{} : {e}", self.pkg(i).name),
        })
    }

    fn candidate(&self, name: &str) -> Option<usize> {
        if let Some(&i) = self
            .overrides
            .get(name)
            .or_else(|| self.preferred.get(name))
        {
            return Some(i);
        }
        self.index
            .by_name
            .get(name)
            .and_then(|v| v.first().copied())
    }

    /// Whether the architecture qualifier of `rel` accepts `p`.
    fn arch_ok(&self, rel: &Relation, p: &BinaryPackage) -> bool {
        match rel.arch_qualifier.as_deref() {
            None | Some("native") => true,
            Some("any") => p.multi_arch.as_deref() == Some("allowed"),
            Some(a) => a == self.index.architecture || a == "all",
        }
    }

    /// Whether package `i` satisfies `rel`, by its name or its `Provides`.
    fn satisfies(&self, i: usize, rel: &Relation) -> bool {
        let p = self.pkg(i);
        if !self.arch_ok(rel, p) {
            return false;
        }
        if p.name == rel.name && rel.version_matches(&p.version) {
            return true;
        }
        p.provides.iter().any(|prov| {
            prov.name == rel.name
                && match (&rel.constraint, &prov.constraint) {
                    (None, _) => true,
                    (Some(_), Some((super::relation::Op::Eq, v))) => rel.version_matches(v),
                    (Some(_), _) => false,
                }
        })
    }

    /// Candidates satisfying `rel`: the package of that name, then its providers.
    fn targets(&self, rel: &Relation) -> Vec<usize> {
        let mut out = Vec::new();
        if let Some(c) = self.candidate(&rel.name)
            && self.satisfies(c, rel)
        {
            out.push(c);
        }
        for &i in self.index.provided.get(&rel.name).into_iter().flatten() {
            if self.candidate(&self.pkg(i).name) == Some(i)
                && self.satisfies(i, rel)
                && !out.contains(&i)
            {
                out.push(i);
            }
        }
        out
    }

    fn satisfied_by_marked(&self, group: &Alternatives) -> bool {
        group.iter().any(|rel| {
            if let Some(&m) = self.marked.get(rel.name.as_str())
                && self.satisfies(m, rel)
            {
                return true;
            }
            self.index
                .provided
                .get(&rel.name)
                .into_iter()
                .flatten()
                .any(|&i| {
                    self.marked.get(self.pkg(i).name.as_str()) == Some(&i) && self.satisfies(i, rel)
                })
        })
    }

    /// The solutions of a group in the order apt tries them.
    fn solutions(&self, group: &Alternatives) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for rel in group {
            let mut t = self.targets(rel);
            t.sort_by(|&a, &b| {
                let (pa, pb) = (self.pkg(a), self.pkg(b));
                // apt's CompareProviders: protected first (a protected package is chosen, so
                // this only matters after a conflict un-chose one), then the package named
                // like the dependency, essential, important, priority; then the name where
                // apt uses its cache order.
                let protected = |i| self.protected.contains(&i);
                protected(b)
                    .cmp(&protected(a))
                    .then((pb.name == rel.name).cmp(&(pa.name == rel.name)))
                    .then(pb.essential.cmp(&pa.essential))
                    .then(pb.important.cmp(&pa.important))
                    .then(priority_rank(pa).cmp(&priority_rank(pb)))
                    .then_with(|| pa.name.cmp(&pb.name))
            });
            for i in t {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
        out
    }

    /// Why no candidate satisfies `rel`.
    fn explain(&self, rel: &Relation) -> String {
        let suites = join_suites(&self.index.suites);
        let versions: Vec<(&Version, &str)> = self.index.versions(&rel.name).collect();
        if let Some(c) = self.candidate(&rel.name) {
            let p = self.pkg(c);
            if !self.arch_ok(rel, p) {
                return format!(
                    "{} is Multi-Arch: {}, so it cannot satisfy '{}'",
                    p.name,
                    p.multi_arch.as_deref().unwrap_or("no"),
                    rel
                );
            }
            let mut listed: Vec<String> = Vec::new();
            for (v, _) in &versions {
                let s = v.to_string();
                if !listed.contains(&s) {
                    listed.push(s);
                }
            }
            // Every suite that has the name, including those whose copy of a version was
            // skipped as a duplicate, in the order the suites were added.
            let in_suites: Vec<&str> = self
                .index
                .suites
                .iter()
                .map(String::as_str)
                .filter(|suite| {
                    self.index.by_name[&rel.name].iter().any(|&i| {
                        let e = &self.index.entries[i];
                        e.base.suite == *suite || e.also_in.iter().any(|x| x == suite)
                    })
                })
                .collect();
            let mut s = format!(
                "only {} available in {}",
                listed.join(", "),
                in_suites.join(", ")
            );
            if listed.len() > 1 {
                s.push_str(&format!(
                    " (only the highest, {}, is considered)",
                    p.version
                ));
            }
            return s;
        }
        let providers: Vec<&BinaryPackage> = self
            .index
            .provided
            .get(&rel.name)
            .into_iter()
            .flatten()
            .map(|&i| self.pkg(i))
            .collect();
        if providers.is_empty() {
            return format!(
                "no package {} in {} ({})",
                rel.name, suites, self.index.architecture
            );
        }
        let mut by: Vec<String> = providers
            .iter()
            .map(|p| {
                let prov = p.provides.iter().find(|r| r.name == rel.name);
                match prov {
                    Some(r) => format!("{} {} as '{}'", p.name, p.version, r),
                    None => p.name.clone(),
                }
            })
            .collect();
        by.sort();
        by.dedup();
        format!(
            "virtual package provided only by {}, which does not satisfy it (an unversioned Provides never satisfies a versioned dependency)",
            by.join(", ")
        )
    }

    /// The chosen packages (other than `i`) that `i` conflicts with or breaks.
    fn conflicted_by(&self, i: usize) -> Vec<(usize, &'static str, &'a Relation)> {
        let mut out = Vec::new();
        let Ok(p) = self.index.full(i) else {
            return out;
        };
        for (kind, rels) in [("conflicts with", &p.conflicts), ("breaks", &p.breaks)] {
            for rel in rels {
                for &m in self.marked.values() {
                    if m != i && self.pkg(m).name != p.name && self.satisfies_negative(m, rel) {
                        out.push((m, kind, rel));
                    }
                }
            }
        }
        out
    }

    /// The first chosen package that conflicts with or breaks `i`, described.
    fn conflicting_marked(&self, i: usize) -> Option<String> {
        let p = self.pkg(i);
        for &m in self.marked.values() {
            let q = self.pkg(m);
            if m == i || q.name == p.name {
                continue;
            }
            // A package whose fields do not parse is reported when its turn comes.
            let Ok(q) = self.index.full(m) else {
                continue;
            };
            for (kind, rels) in [("conflicts with", &q.conflicts), ("breaks", &q.breaks)] {
                if let Some(rel) = rels.iter().find(|r| self.satisfies_negative(i, r)) {
                    return Some(format!(
                        "{} {kind} {rel}, satisfied by {}",
                        q.describe(),
                        p.describe()
                    ));
                }
            }
        }
        None
    }

    /// Like [`Self::satisfies`] for `Conflicts`/`Breaks`, where `:any` matches every package.
    fn satisfies_negative(&self, i: usize, rel: &Relation) -> bool {
        if rel.arch_qualifier.as_deref() == Some("any") {
            let plain = Relation {
                name: rel.name.clone(),
                arch_qualifier: None,
                constraint: rel.constraint.clone(),
            };
            return self.satisfies(i, &plain);
        }
        self.satisfies(i, rel)
    }

    /// apt's `MarkInstall`: choose package `i` and, with `auto_inst`, its dependencies.
    fn mark_install(
        &mut self,
        i: usize,
        auto_inst: bool,
        from_user: bool,
        path: &[String],
    ) -> Result<(), Failure> {
        let p = self.pkg(i);
        let mut here = path.to_vec();
        here.push(p.name.clone());
        let already = match self.marked.get(p.name.as_str()) {
            Some(&m) if m == i => {
                if !self.protected.contains(&i) || !auto_inst {
                    return Ok(());
                }
                true
            }
            Some(&m) => {
                return Err(Failure {
                    path: path.to_vec(),
                    what: format!(
                        "{} : {} is already chosen",
                        p.describe(),
                        self.pkg(m).describe()
                    ),
                });
            }
            None => false,
        };
        if auto_inst {
            let full = self.full(i, path)?;
            if !already {
                // apt's IsInstallOkDependenciesSatisfiableByCandidates.
                for group in full.dependency_groups() {
                    if !self.satisfied_by_marked(group)
                        && group.iter().all(|r| self.targets(r).is_empty())
                    {
                        return Err(Failure {
                            path: here,
                            what: self.explain_group(group),
                        });
                    }
                }
            }
            // apt's MarkInstall_RemoveConflictsIfNotUpgradeable: a chosen package that this
            // one conflicts with or breaks is un-chosen, unless it is protected.
            for (m, kind, rel) in self.conflicted_by(i) {
                if self.protected.contains(&m) {
                    return Err(Failure {
                        path: path.to_vec(),
                        what: format!(
                            "{} : {} {kind} {rel}, satisfied by {}, which is already chosen",
                            p.name,
                            p.describe(),
                            self.pkg(m).describe()
                        ),
                    });
                }
                self.marked.remove(self.pkg(m).name.as_str());
            }
        }
        if !already {
            // Not in apt's MarkInstall (its problem resolver sorts this out later): a package
            // that a chosen package conflicts with or breaks is not installable.
            if auto_inst && let Some(conflict) = self.conflicting_marked(i) {
                return Err(Failure {
                    path: path.to_vec(),
                    what: format!("{} : {conflict}, which is already chosen", p.name),
                });
            }
            self.marked.insert(&p.name, i);
        }
        if !auto_inst {
            return Ok(());
        }
        let propagate = self.protected.contains(&i);
        match self.install_dependencies(i, propagate, from_user, &here) {
            Ok(()) => Ok(()),
            Err(f) => {
                if !propagate && !from_user {
                    // apt's MarkInstall_DiscardInstall.
                    self.marked.remove(p.name.as_str());
                }
                Err(f)
            }
        }
    }

    /// apt's `MarkInstall_InstallDependencies` for the chosen package `i`.
    fn install_dependencies(
        &mut self,
        i: usize,
        propagate: bool,
        from_user: bool,
        here: &[String],
    ) -> Result<(), Failure> {
        let p = self.full(i, &here[..here.len().saturating_sub(1)])?;
        let mut first_failure = None;
        for group in p.dependency_groups() {
            if self.satisfied_by_marked(group) {
                if !propagate {
                    continue;
                }
                // apt propagates "protected" to the one possible solution of a satisfied
                // dependency and resolves that package's dependencies now.
                let mut all: Vec<usize> = group.iter().flat_map(|r| self.targets(r)).collect();
                all.sort_unstable();
                all.dedup();
                if let [only] = all[..]
                    && !self.protected.contains(&only)
                {
                    self.protected.insert(only);
                    if let Err(f) = self.mark_install(only, true, false, here) {
                        first_failure.get_or_insert(f);
                    }
                }
                continue;
            }
            let solutions = self.solutions(group);
            let mut found = false;
            let mut group_failure = None;
            for &s in &solutions {
                if propagate && solutions.len() == 1 {
                    if let Err(f) = self.mark_install(s, false, false, here) {
                        group_failure.get_or_insert(f);
                        continue;
                    }
                    self.protected.insert(s);
                }
                match self.mark_install(s, true, false, here) {
                    Ok(()) => {
                        found = true;
                        break;
                    }
                    Err(f) => {
                        group_failure.get_or_insert(f);
                    }
                }
            }
            if !found {
                let f = group_failure.unwrap_or_else(|| Failure {
                    path: here.to_vec(),
                    what: self.explain_group(group),
                });
                first_failure.get_or_insert(f);
                if !propagate && !from_user {
                    break;
                }
            }
        }
        match first_failure {
            None => Ok(()),
            Some(f) => Err(f),
        }
    }

    /// `a | b : why a fails; why b fails`.
    fn explain_group(&self, group: &Alternatives) -> String {
        let why: Vec<String> = group.iter().map(|r| self.explain(r)).collect();
        format!("{} : {}", display_alternatives(group), why.join("; "))
    }

    /// The first chosen package (by name) with a dependency no chosen package satisfies.
    fn first_broken(&self) -> Option<(usize, &'a Alternatives)> {
        self.marked.values().find_map(|&i| {
            let p = self.index.full(i).ok()?;
            p.dependency_groups()
                .find(|g| !self.satisfied_by_marked(g))
                .map(|g| (i, g))
        })
    }
}

/// A parsed request: `name[:arch][=version]`.
struct Request<'r> {
    text: &'r str,
    name: &'r str,
    arch: Option<&'r str>,
    version: Option<&'r str>,
}

fn parse_request(text: &str) -> Result<Request<'_>, ResolveError> {
    let bad = |reason: &str| ResolveError::BadRequest {
        request: text.to_string(),
        reason: reason.to_string(),
    };
    let t = text.trim();
    let (spec, version) = match t.split_once('=') {
        Some((s, v)) if !v.trim().is_empty() => (s.trim(), Some(v.trim())),
        Some(_) => return Err(bad("empty version after '='")),
        None => (t, None),
    };
    if spec.contains('/') {
        return Err(bad(
            "'name/suite' is not supported: the highest version across suites is used; pin with name=version",
        ));
    }
    let (name, arch) = match spec.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (spec, None),
    };
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
    {
        return Err(bad("expected name, name=version or name:arch"));
    }
    Ok(Request {
        text,
        name,
        arch,
        version,
    })
}

/// What keeps a set of packages from being a complete installation ([`unmet`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// A request that no package of the set satisfies.
    Request { request: String },
    /// A `Depends`/`Pre-Depends` group of `package` (`name version (suite)`) that no
    /// package of the set satisfies.
    Dependency { package: String, relation: String },
}

/// Checks that `index`, taken as the installed set (one version per name: the best), is
/// complete: every request is satisfied by a package of the set (by name, pinned version or
/// `Provides`), and so is every `Pre-Depends` and `Depends` group of every package, with the
/// resolver's own notion of satisfaction (versions, alternatives, `Provides`, architecture
/// qualifiers). Used by `hermetic lock --check` on the pins of a closure, without network.
pub fn unmet(index: &PackageIndex, requests: &[String]) -> Result<Vec<Unmet>, ResolveError> {
    let mut r = Resolver {
        index,
        overrides: BTreeMap::new(),
        preferred: BTreeMap::new(),
        marked: BTreeMap::new(),
        protected: BTreeSet::new(),
    };
    for (name, versions) in &index.by_name {
        if let Some(&i) = versions.first() {
            r.marked.insert(name.as_str(), i);
        }
    }
    let mut out = Vec::new();
    for text in requests {
        let req = parse_request(text)?;
        let constraint = match req.version {
            Some(v) => Some((
                super::relation::Op::Eq,
                v.parse::<Version>().map_err(|e| ResolveError::BadRequest {
                    request: text.clone(),
                    reason: e.to_string(),
                })?,
            )),
            None => None,
        };
        let rel = Relation {
            name: req.name.to_string(),
            arch_qualifier: None,
            constraint,
        };
        if !r.satisfied_by_marked(&vec![rel]) {
            out.push(Unmet::Request {
                request: text.clone(),
            });
        }
    }
    for &i in r.marked.values() {
        let p = index.full(i)?;
        for group in p.dependency_groups() {
            if !r.satisfied_by_marked(group) {
                out.push(Unmet::Dependency {
                    package: p.describe(),
                    relation: display_alternatives(group),
                });
            }
        }
    }
    Ok(out)
}

/// Resolves `requests` (`name`, `name=version`, `name:arch`) against `index` the way
/// `apt-get install --no-install-recommends` would on an empty system.
pub fn resolve(
    index: &PackageIndex,
    requests: &[String],
    opts: &ResolveOptions,
) -> Result<Resolution, ResolveError> {
    let suites = join_suites(&index.suites);
    let mut r = Resolver {
        index,
        overrides: BTreeMap::new(),
        preferred: BTreeMap::new(),
        marked: BTreeMap::new(),
        protected: BTreeSet::new(),
    };
    for (name, version) in &opts.prefer {
        let Ok(wanted) = version.parse::<Version>() else {
            continue;
        };
        if let Some(i) = index.by_name.get(name.as_str()).and_then(|vs| {
            vs.iter()
                .copied()
                .find(|&i| index.entries[i].base.version == wanted)
        }) {
            r.preferred.insert(&index.entries[i].base.name, i);
        }
    }
    // Roots by name: requests first pick their version, then the essential base fills in.
    // Pinned requests are looked at first, so that a plain request for the same name gets
    // the pin; the roots keep the order of the requests.
    let mut parsed = requests
        .iter()
        .map(|t| parse_request(t))
        .enumerate()
        .map(|(pos, r)| r.map(|r| (pos, r)))
        .collect::<Result<Vec<_>, _>>()?;
    parsed.sort_by_key(|(pos, r)| (r.version.is_none(), *pos));
    let mut requested: Vec<(usize, usize)> = Vec::new();
    for (pos, req) in parsed {
        if let Some(a) = req.arch
            && a != index.architecture
            && a != "all"
            && a != "native"
            && a != "any"
        {
            return Err(ResolveError::WrongArchitecture {
                request: req.text.to_string(),
                wanted: a.to_string(),
                arch: index.architecture.clone(),
            });
        }
        let chosen = match req.version {
            Some(v) => {
                let wanted: Version =
                    v.parse()
                        .map_err(|e: VersionError| ResolveError::BadRequest {
                            request: req.text.to_string(),
                            reason: e.to_string(),
                        })?;
                let found = index.by_name.get(req.name).and_then(|vs| {
                    vs.iter()
                        .copied()
                        .find(|&i| index.entries[i].base.version == wanted)
                });
                match found {
                    Some(i) => {
                        if let Some(&other) = r.overrides.get(req.name)
                            && other != i
                        {
                            return Err(ResolveError::BadRequest {
                                request: req.text.to_string(),
                                reason: format!(
                                    "{} is also pinned to {}",
                                    req.name, index.entries[other].base.version
                                ),
                            });
                        }
                        r.overrides.insert(&index.entries[i].base.name, i);
                        i
                    }
                    None if index.by_name.contains_key(req.name) => {
                        let available: Vec<String> = index
                            .versions(req.name)
                            .map(|(v, s)| format!("{v} ({s})"))
                            .collect();
                        return Err(ResolveError::UnknownVersion {
                            name: req.name.to_string(),
                            version: v.to_string(),
                            suites: suites.clone(),
                            available: available.join(", "),
                        });
                    }
                    None => return Err(unknown(index, req.name)),
                }
            }
            None => match r.candidate(req.name) {
                Some(i) => i,
                None => {
                    // A virtual package with exactly one provider is replaced by it, as apt does.
                    let mut providers: Vec<usize> = index
                        .provided
                        .get(req.name)
                        .into_iter()
                        .flatten()
                        .copied()
                        .filter(|&i| index.by_name[&index.entries[i].base.name][0] == i)
                        .collect();
                    providers.sort_by(|&a, &b| {
                        index.entries[a].base.name.cmp(&index.entries[b].base.name)
                    });
                    providers.dedup();
                    match providers[..] {
                        [] => return Err(unknown(index, req.name)),
                        [only] => only,
                        _ => {
                            let names: Vec<&str> = providers
                                .iter()
                                .map(|&i| index.entries[i].base.name.as_str())
                                .collect();
                            return Err(ResolveError::VirtualPackage {
                                name: req.name.to_string(),
                                providers: names.join(", "),
                            });
                        }
                    }
                }
            },
        };
        requested.push((pos, chosen));
    }
    requested.sort_unstable();
    // Roots: the requests in their order, then the essential base in name order, which is
    // the order in which apt-get handles `install REQUESTS ESSENTIAL...`.
    let mut roots: Vec<usize> = Vec::new();
    let mut root_names: BTreeSet<&str> = BTreeSet::new();
    for (_, i) in requested {
        if root_names.insert(&index.entries[i].base.name) {
            roots.push(i);
        }
    }
    if opts.include_essential {
        for (name, versions) in &index.by_name {
            let i = r.candidate(name).unwrap_or(versions[0]);
            let p = &index.entries[i].base;
            if (p.essential || p.priority.as_deref() == Some("required")) && root_names.insert(name)
            {
                roots.push(i);
            }
        }
    }
    // Every root is chosen (and protected) before any dependency is looked at.
    for &i in &roots {
        r.protected.insert(i);
        r.mark_install(i, false, true, &[])
            .map_err(|f| ResolveError::Unsatisfiable { chain: f.render() })?;
    }
    for &i in &roots {
        let p = index.full(i)?;
        let broken = p.dependency_groups().any(|g| !r.satisfied_by_marked(g));
        if broken {
            r.mark_install(i, true, true, &[])
                .map_err(|f| ResolveError::Unsatisfiable { chain: f.render() })?;
        }
    }
    // Un-choosing a conflicting package can leave a dependency of an earlier choice open;
    // like apt's problem resolver, resolve those again until the set is complete.
    let mut rounds = 0;
    while let Some((i, group)) = r.first_broken() {
        rounds += 1;
        let name = r.pkg(i).name.clone();
        let fixed = rounds <= r.marked.len() + 1
            && r.install_dependencies(
                i,
                r.protected.contains(&i),
                true,
                std::slice::from_ref(&name),
            )
            .is_ok();
        if !fixed {
            return Err(ResolveError::Unsatisfiable {
                chain: format!("{name} -> {}", r.explain_group(group)),
            });
        }
    }
    let mut packages = Vec::with_capacity(r.marked.len());
    for &i in r.marked.values() {
        let p = index.full(i)?;
        for (kind, rels) in [("conflicts with", &p.conflicts), ("breaks", &p.breaks)] {
            for rel in rels {
                for &m in r.marked.values() {
                    let q = r.pkg(m);
                    if m != i && q.name != p.name && r.satisfies_negative(m, rel) {
                        return Err(ResolveError::Conflict {
                            package: p.describe(),
                            kind,
                            relation: rel.to_string(),
                            other: q.describe(),
                        });
                    }
                }
            }
        }
        packages.push(p.clone());
    }
    packages.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    Ok(Resolution { packages })
}

/// [`resolve`], keeping the preferred versions ([`ResolveOptions::prefer`]) where they still
/// resolve: when they do not, the preferences of the packages named in the failure are
/// dropped and the resolution tried again (a new request may force a newer dependency), and
/// as a last resort every preference is dropped.
pub fn resolve_preferring(
    index: &PackageIndex,
    requests: &[String],
    opts: &ResolveOptions,
) -> Result<Resolution, ResolveError> {
    let mut opts = opts.clone();
    loop {
        match resolve(index, requests, &opts) {
            Ok(r) => return Ok(r),
            Err(e) if opts.prefer.is_empty() => return Err(e),
            Err(e) => {
                let before = opts.prefer.len();
                if let ResolveError::Unsatisfiable { chain } = &e {
                    for step in chain.split(" -> ") {
                        let name = step.split([' ', ':']).next().unwrap_or_default();
                        opts.prefer.remove(name);
                    }
                }
                if opts.prefer.len() == before {
                    opts.prefer.clear();
                }
            }
        }
    }
}

fn unknown(index: &PackageIndex, name: &str) -> ResolveError {
    let release = index
        .suites
        .first()
        .map(|s| s.split('-').next().unwrap_or(s).to_string())
        .unwrap_or_else(|| "Debian".to_string());
    ResolveError::UnknownPackage {
        name: name.to_string(),
        suites: join_suites(&index.suites),
        arch: index.architecture.clone(),
        release,
    }
}

/// One source package version from a `Sources` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePackage {
    pub name: String,
    pub version: Version,
    pub suite: String,
    /// Directory of its files below the archive root.
    pub directory: String,
    /// The `.dsc` and the files it names, from `Checksums-Sha256`.
    pub files: Vec<SourceFile>,
}

/// One file of a source package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Source packages from one or more suites.
#[derive(Debug, Clone, Default)]
pub struct SourceIndex {
    suites: Vec<String>,
    by_name: BTreeMap<String, Vec<SourcePackage>>,
}

impl SourceIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of source package versions indexed.
    pub fn len(&self) -> usize {
        self.by_name.values().map(Vec::len).sum()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Adds the paragraphs of one suite's `Sources` index. A version already added for the
    /// same name is skipped.
    pub fn add_sources(
        &mut self,
        suite: &str,
        paragraphs: &[Paragraph],
    ) -> Result<(), ResolveError> {
        if !self.suites.iter().any(|s| s == suite) {
            self.suites.push(suite.to_string());
        }
        for p in paragraphs {
            let name = required(suite, p, "?", "Package")?;
            let version = parse_version(
                suite,
                p,
                name,
                "Version",
                required(suite, p, name, "Version")?,
            )?;
            let directory = required(suite, p, name, "Directory")?;
            let mut files = Vec::new();
            for line in required(suite, p, name, "Checksums-Sha256")?.lines() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let parts: Vec<&str> = line.split_whitespace().collect();
                let [sha256, size, file] = parts[..] else {
                    return Err(bad_field(
                        suite,
                        p,
                        name,
                        "Checksums-Sha256",
                        format!("expected 'sha256 size name', found '{line}'"),
                    ));
                };
                if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad_field(
                        suite,
                        p,
                        name,
                        "Checksums-Sha256",
                        format!("'{sha256}' is not 64 hex digits"),
                    ));
                }
                let size = size
                    .parse()
                    .map_err(|e| bad_field(suite, p, name, "Checksums-Sha256", e))?;
                files.push(SourceFile {
                    name: file.to_string(),
                    size,
                    sha256: sha256.to_ascii_lowercase(),
                });
            }
            files.sort_by(|a, b| a.name.cmp(&b.name));
            let entry = self.by_name.entry(name.to_string()).or_default();
            if entry.iter().any(|s| s.version == version) {
                continue;
            }
            entry.push(SourcePackage {
                name: name.to_string(),
                version,
                suite: suite.to_string(),
                directory: directory.to_string(),
                files,
            });
            let suites = &self.suites;
            let rank = |s: &str| suites.iter().position(|x| x == s).unwrap_or(usize::MAX);
            entry.sort_by(|a, b| {
                b.version
                    .cmp(&a.version)
                    .then_with(|| rank(&a.suite).cmp(&rank(&b.suite)))
            });
        }
        Ok(())
    }

    /// The highest version of source package `name` across suites.
    pub fn find(&self, name: &str) -> Result<&SourcePackage, ResolveError> {
        self.by_name
            .get(name)
            .and_then(|v| v.first())
            .ok_or_else(|| ResolveError::UnknownSource {
                name: name.to_string(),
                suites: join_suites(&self.suites),
            })
    }

    /// Source package `name` at exactly `version` (as named by a binary's `Source` field).
    pub fn find_version(
        &self,
        name: &str,
        version: &Version,
    ) -> Result<&SourcePackage, ResolveError> {
        let versions = self
            .by_name
            .get(name)
            .ok_or_else(|| ResolveError::UnknownSource {
                name: name.to_string(),
                suites: join_suites(&self.suites),
            })?;
        versions
            .iter()
            .find(|s| &s.version == version)
            .ok_or_else(|| ResolveError::UnknownSourceVersion {
                name: name.to_string(),
                version: version.to_string(),
                suites: join_suites(&self.suites),
                available: versions
                    .iter()
                    .map(|s| format!("{} ({})", s.version, s.suite))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::deb822::parse;

    /// One `Packages` paragraph; `extra` holds more `Field: value` lines.
    fn para(name: &str, version: &str, extra: &str) -> String {
        let arch = if extra.contains("Architecture:") {
            String::new()
        } else {
            "Architecture: amd64\n".to_string()
        };
        format!(
            "Package: {name}\nVersion: {version}\n{arch}Filename: pool/{name}_{version}.deb\n\
             Size: 100\nSHA256: {}\n{extra}\n\n",
            "ab".repeat(32)
        )
    }

    fn index(suites: &[(&str, &[String])]) -> PackageIndex {
        let mut idx = PackageIndex::new("amd64");
        for (suite, paras) in suites {
            idx.add_packages(suite, &parse(&paras.concat()).unwrap())
                .unwrap();
        }
        idx
    }

    fn run(
        idx: &PackageIndex,
        requests: &[&str],
        essential: bool,
    ) -> Result<Vec<String>, ResolveError> {
        let requests: Vec<String> = requests.iter().map(|s| s.to_string()).collect();
        let opts = ResolveOptions {
            include_essential: essential,
            ..Default::default()
        };
        let res = resolve(idx, &requests, &opts)?;
        Ok(res
            .packages
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect())
    }

    #[test]
    fn unmet_uses_the_resolvers_satisfaction_rules() {
        let set = [
            para(
                "app",
                "2.0-1",
                "Depends: libfoo (>= 1.0) | libbar, mta\nPre-Depends: libc6",
            ),
            para("libbar", "3.0-1", ""),
            para("postfix", "3.9-1", "Provides: mta"),
            para("tool", "1.0", "Depends: perl:any (>= 5), libc6 (>= 2.40)"),
            para("perl", "5.40-1", "Multi-Arch: allowed"),
            para("libc6", "2.41-1", ""),
        ];
        let idx = index(&[("trixie", &set)]);
        let requests = ["app".to_string(), "postfix=3.9-1".into(), "mta".into()];
        assert_eq!(unmet(&idx, &requests).unwrap(), vec![]);
        // A wrong pinned version, an absent name; a too old version; :any without
        // Multi-Arch: allowed; a lost provider.
        let set = [
            para("app", "2.0-1", "Depends: libfoo (>= 1.0) | libbar, mta"),
            para("libbar", "3.0-1", ""),
            para("tool", "1.0", "Depends: perl:any (>= 5), libc6 (>= 2.42)"),
            para("perl", "5.40-1", ""),
            para("libc6", "2.41-1", ""),
        ];
        let idx = index(&[("trixie", &set)]);
        let requests = ["app=1.0".to_string(), "gone".into()];
        let problems = unmet(&idx, &requests).unwrap();
        assert_eq!(
            problems,
            vec![
                Unmet::Request {
                    request: "app=1.0".into()
                },
                Unmet::Request {
                    request: "gone".into()
                },
                Unmet::Dependency {
                    package: "app 2.0-1 (trixie)".into(),
                    relation: "mta".into()
                },
                Unmet::Dependency {
                    package: "tool 1.0 (trixie)".into(),
                    relation: "perl:any (>= 5)".into()
                },
                Unmet::Dependency {
                    package: "tool 1.0 (trixie)".into(),
                    relation: "libc6 (>= 2.42)".into()
                },
            ]
        );
    }

    #[test]
    fn depends_and_pre_depends_are_followed() {
        let idx = index(&[(
            "trixie",
            &[
                para("a", "1", "Pre-Depends: b\nDepends: c (>= 1), libc6"),
                para("b", "1", ""),
                para("c", "2", "Depends: a"),
                para("libc6", "2.41", ""),
                para("unrelated", "1", ""),
            ],
        )]);
        assert_eq!(
            run(&idx, &["a"], false).unwrap(),
            ["a=1", "b=1", "c=2", "libc6=2.41"]
        );
        assert_eq!(idx.len(), 5);
    }

    #[test]
    fn alternatives_take_the_first_installable_or_one_already_chosen() {
        let idx = index(&[(
            "trixie",
            &[
                para("app", "1", "Depends: missing | first | second"),
                para("first", "1", ""),
                para("second", "1", ""),
                para("needs-broken", "1", "Depends: broken | second"),
                para("broken", "1", "Depends: nowhere"),
            ],
        )]);
        assert_eq!(run(&idx, &["app"], false).unwrap(), ["app=1", "first=1"]);
        // `second` is chosen as a request, so it satisfies the group before `first` is tried.
        assert_eq!(
            run(&idx, &["app", "second"], false).unwrap(),
            ["app=1", "second=1"]
        );
        // An alternative whose own dependencies cannot be met is passed over.
        assert_eq!(
            run(&idx, &["needs-broken"], false).unwrap(),
            ["needs-broken=1", "second=1"]
        );
    }

    #[test]
    fn versioned_provides_satisfy_only_matching_versioned_dependencies() {
        let idx = index(&[(
            "trixie",
            &[
                para("app", "1", "Depends: libfoo (>= 2)"),
                para("old-foo", "1", "Provides: libfoo"),
                para("new-foo", "1", "Provides: libfoo (= 2.5)"),
                para("plain", "1", "Depends: libbar (>= 1)"),
                para("bar-provider", "1", "Provides: libbar"),
                para("unversioned-user", "1", "Depends: libfoo"),
            ],
        )]);
        assert_eq!(run(&idx, &["app"], false).unwrap(), ["app=1", "new-foo=1"]);
        // Both provide libfoo without a constraint on the dependency: name order decides.
        assert_eq!(
            run(&idx, &["unversioned-user"], false).unwrap(),
            ["new-foo=1", "unversioned-user=1"]
        );
        let err = run(&idx, &["plain"], false).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ResolveError::Unsatisfiable { .. }), "{err:?}");
        assert!(
            text.contains("plain -> libbar (>= 1) : virtual package provided only by bar-provider"),
            "{text}"
        );
        assert!(
            text.contains("unversioned Provides never satisfies"),
            "{text}"
        );
    }

    #[test]
    fn provider_order_follows_apt() {
        let idx = index(&[(
            "trixie",
            &[
                para("want-mta", "1", "Depends: mta"),
                para("zz-mta", "1", "Provides: mta\nPriority: optional"),
                para("aa-mta", "1", "Provides: mta\nPriority: extra"),
                para("want-sh", "1", "Depends: sh"),
                para("a-sh", "1", "Provides: sh\nPriority: required"),
                para(
                    "z-sh",
                    "1",
                    "Provides: sh\nEssential: yes\nPriority: optional",
                ),
                para("want-x", "1", "Depends: x"),
                para("x", "1", "Priority: optional"),
                para(
                    "a-x",
                    "1",
                    "Provides: x\nPriority: required\nEssential: yes",
                ),
                para("want-tie", "1", "Depends: tie"),
                para("b-tie", "1", "Provides: tie\nPriority: optional"),
                para("a-tie", "1", "Provides: tie\nPriority: optional"),
            ],
        )]);
        // Higher priority first.
        assert_eq!(
            run(&idx, &["want-mta"], false).unwrap(),
            ["want-mta=1", "zz-mta=1"]
        );
        // Essential beats priority.
        assert_eq!(
            run(&idx, &["want-sh"], false).unwrap(),
            ["want-sh=1", "z-sh=1"]
        );
        // The package named like the dependency beats everything.
        assert_eq!(run(&idx, &["want-x"], false).unwrap(), ["want-x=1", "x=1"]);
        // A full tie is broken by name.
        assert_eq!(
            run(&idx, &["want-tie"], false).unwrap(),
            ["a-tie=1", "want-tie=1"]
        );
    }

    #[test]
    fn any_qualifier_needs_multi_arch_allowed() {
        let idx = index(&[(
            "trixie",
            &[
                para("script", "1", "Depends: python3:any (>= 3.11)"),
                para("python3", "3.13.5-1", "Multi-Arch: allowed"),
                para("tool", "1", "Depends: perl:any"),
                para("perl", "5.40", "Multi-Arch: foreign"),
                para("native-user", "1", "Depends: perl:amd64, python3:native"),
            ],
        )]);
        assert_eq!(
            run(&idx, &["script"], false).unwrap(),
            ["python3=3.13.5-1", "script=1"]
        );
        let err = run(&idx, &["tool"], false).unwrap_err().to_string();
        assert!(
            err.contains("tool -> perl:any : perl is Multi-Arch: foreign"),
            "{err}"
        );
        assert_eq!(
            run(&idx, &["native-user"], false).unwrap(),
            ["native-user=1", "perl=5.40", "python3=3.13.5-1"]
        );
    }

    #[test]
    fn conflicts_and_breaks_name_both_packages() {
        let idx = index(&[(
            "trixie",
            &[
                para("a", "1", "Conflicts: b"),
                para("b", "1", ""),
                para("c", "1", "Breaks: d (<< 2)"),
                para("d", "1", ""),
                para("e", "1", "Conflicts: virt"),
                para("f", "1", "Provides: virt"),
                para("self", "1", "Provides: virt\nConflicts: virt"),
            ],
        )]);
        let err = run(&idx, &["a", "b"], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a 1 (trixie) conflicts with b, satisfied by b 1 (trixie); both are needed"
        );
        let err = run(&idx, &["c", "d"], false).unwrap_err().to_string();
        assert_eq!(
            err,
            "c 1 (trixie) breaks d (<< 2), satisfied by d 1 (trixie); both are needed"
        );
        let err = run(&idx, &["e", "f"], false).unwrap_err().to_string();
        assert!(
            err.contains("e 1 (trixie) conflicts with virt, satisfied by f 1"),
            "{err}"
        );
        // A dependency that conflicts with a request cannot be installed; the chain says why.
        let idx2 = index(&[(
            "trixie",
            &[
                para("app", "1", "Depends: x"),
                para("x", "1", "Conflicts: y"),
                para("y", "1", ""),
                para("app2", "1", "Depends: z"),
                para("z", "1", ""),
                para("w", "1", "Breaks: z"),
            ],
        )]);
        let err = run(&idx2, &["app", "y"], false).unwrap_err().to_string();
        assert_eq!(
            err,
            "unsatisfiable dependency: app -> x : x 1 (trixie) conflicts with y, satisfied by \
             y 1 (trixie), which is already chosen"
        );
        // The only solution of a request's dependency is chosen outright (as apt does); the
        // final check then names the two packages.
        let err = run(&idx2, &["app2", "w"], false).unwrap_err().to_string();
        assert_eq!(
            err,
            "w 1 (trixie) breaks z, satisfied by z 1 (trixie); both are needed"
        );
        // A package may conflict with a virtual package it provides itself.
        assert_eq!(run(&idx, &["self"], false).unwrap(), ["self=1"]);
    }

    #[test]
    fn a_conflicting_alternative_is_replaced_like_apt_does() {
        // The libreoffice pattern: an earlier choice of `core-nogui` (first alternative) is
        // displaced when `core` itself is needed and conflicts with it.
        let idx = index(&[(
            "trixie",
            &[
                para("writer", "1", "Depends: base-core, core"),
                para("base-core", "1", "Depends: core-nogui | core"),
                para("core", "1", "Conflicts: core-nogui"),
                para("core-nogui", "1", "Conflicts: core"),
            ],
        )]);
        assert_eq!(
            run(&idx, &["writer"], false).unwrap(),
            ["base-core=1", "core=1", "writer=1"]
        );
        // Both requested: apt gives up, and so do we.
        let err = run(&idx, &["core", "core-nogui"], false).unwrap_err();
        assert!(matches!(err, ResolveError::Conflict { .. }), "{err:?}");
    }

    #[test]
    fn essential_base_is_added_on_request() {
        let idx = index(&[(
            "trixie",
            &[
                para(
                    "bash",
                    "5.2",
                    "Essential: yes\nPriority: required\nDepends: libtinfo6",
                ),
                para("libtinfo6", "6.5", "Priority: optional"),
                para("mawk", "1.3", "Priority: required"),
                para("nano", "8.4", "Priority: important"),
                para("app", "1", "Priority: optional"),
            ],
        )]);
        assert_eq!(
            run(&idx, &["app"], true).unwrap(),
            ["app=1", "bash=5.2", "libtinfo6=6.5", "mawk=1.3"]
        );
        assert_eq!(run(&idx, &["app"], false).unwrap(), ["app=1"]);
        assert_eq!(
            run(&idx, &[], true).unwrap(),
            ["bash=5.2", "libtinfo6=6.5", "mawk=1.3"]
        );
    }

    #[test]
    fn preferred_versions_are_kept_while_they_resolve() {
        let idx = index(&[
            (
                "trixie",
                &[
                    para("app", "1", "Depends: lib"),
                    para("lib", "1", ""),
                    para("new", "1", "Depends: lib (>= 2)"),
                ],
            ),
            ("trixie-security", &[para("lib", "2", "")]),
        ]);
        let names = |r: &Resolution| -> Vec<String> {
            r.packages
                .iter()
                .map(|p| format!("{} {}", p.name, p.version))
                .collect()
        };
        let opts = |prefer: &[(&str, &str)]| ResolveOptions {
            include_essential: false,
            prefer: prefer
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        let req = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Without a preference the highest wins; with one, the preferred version.
        let r = resolve(&idx, &req(&["app"]), &opts(&[])).unwrap();
        assert_eq!(names(&r), ["app 1", "lib 2"]);
        let r = resolve(&idx, &req(&["app"]), &opts(&[("lib", "1")])).unwrap();
        assert_eq!(names(&r), ["app 1", "lib 1"]);
        // A preferred version that is not in the index is ignored.
        let r = resolve(&idx, &req(&["app"]), &opts(&[("lib", "0.5")])).unwrap();
        assert_eq!(names(&r), ["app 1", "lib 2"]);
        // A request that needs a newer version drops the preference.
        assert!(resolve(&idx, &req(&["new"]), &opts(&[("lib", "1")])).is_err());
        let r = resolve_preferring(&idx, &req(&["new"]), &opts(&[("lib", "1")])).unwrap();
        assert_eq!(names(&r), ["lib 2", "new 1"]);
        // An explicit name=version request wins over a preference.
        let r = resolve(&idx, &req(&["app", "lib=2"]), &opts(&[("lib", "1")])).unwrap();
        assert_eq!(names(&r), ["app 1", "lib 2"]);
    }

    #[test]
    fn the_highest_version_across_suites_wins() {
        let main: &[String] = &[
            para("openssl", "3.5.1-1", "Depends: libssl3t64 (>= 3.5.1)"),
            para("libssl3t64", "3.5.1-1", ""),
            para("same", "1.0", ""),
            para("arm-only", "1", "Architecture: arm64"),
            para("indep", "1", "Architecture: all"),
        ];
        let security: &[String] = &[
            para(
                "openssl",
                "3.5.1-1+deb13u1",
                "Depends: libssl3t64 (>= 3.5.1-1+deb13u1)",
            ),
            para("libssl3t64", "3.5.1-1+deb13u1", ""),
            para("same", "1.0", "Depends: must-not-be-used"),
        ];
        let idx = index(&[("trixie", main), ("trixie-security", security)]);
        let res = resolve(
            &idx,
            &["openssl".into(), "same".into(), "indep".into()],
            &ResolveOptions::default(),
        )
        .unwrap();
        let got: Vec<(&str, String, &str)> = res
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.to_string(), p.suite.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("indep", "1".to_string(), "trixie"),
                (
                    "libssl3t64",
                    "3.5.1-1+deb13u1".to_string(),
                    "trixie-security"
                ),
                ("openssl", "3.5.1-1+deb13u1".to_string(), "trixie-security"),
                ("same", "1.0".to_string(), "trixie"),
            ]
        );
        assert_eq!(res.packages[0].architecture, "all");
        assert!(idx.candidate("arm-only").unwrap().is_none());
        assert_eq!(idx.versions("openssl").count(), 2);
        // A pinned older version is used instead of the candidate, dependencies included.
        assert_eq!(
            run(&idx, &["openssl=3.5.1-1"], false).unwrap(),
            ["libssl3t64=3.5.1-1+deb13u1", "openssl=3.5.1-1"]
        );
        // The pin holds whatever the order of requests naming the same package.
        assert_eq!(
            run(&idx, &["openssl", "openssl=3.5.1-1"], false).unwrap(),
            ["libssl3t64=3.5.1-1+deb13u1", "openssl=3.5.1-1"]
        );
        let err = run(&idx, &["openssl=3.5.1-1", "openssl=3.5.1-1+deb13u1"], false).unwrap_err();
        assert!(
            err.to_string().contains("is also pinned to 3.5.1-1"),
            "{err}"
        );
    }

    #[test]
    fn unsatisfiable_names_the_whole_chain() {
        let main: &[String] = &[
            para("systemd", "257", "Depends: libsystemd-shared"),
            para("libsystemd-shared", "257", "Depends: libfoo (>= 2)"),
            para("libfoo", "1.0", ""),
        ];
        let security: &[String] = &[para("libfoo", "1.0", "")];
        let idx = index(&[("trixie", main), ("trixie-security", security)]);
        let err = run(&idx, &["systemd"], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsatisfiable dependency: systemd -> libsystemd-shared -> libfoo (>= 2) : \
             only 1.0 available in trixie, trixie-security"
        );
        let idx2 = index(&[
            ("trixie", main),
            ("trixie-security", &[para("libfoo", "1.5", "")]),
        ]);
        let err = run(&idx2, &["systemd"], false).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "libfoo (>= 2) : only 1.5, 1.0 available in trixie, trixie-security \
                 (only the highest, 1.5, is considered)"
            ),
            "{err}"
        );
        let idx3 = index(&[(
            "trixie",
            &[para("a", "1", "Depends: ghost | phantom (>= 1)")],
        )]);
        let err = run(&idx3, &["a"], false).unwrap_err().to_string();
        assert_eq!(
            err,
            "unsatisfiable dependency: a -> ghost | phantom (>= 1) : no package ghost in trixie \
             (amd64); no package phantom in trixie (amd64)"
        );
    }

    #[test]
    fn bad_requests_have_helpful_errors() {
        let idx = index(&[(
            "trixie",
            &[
                para("foo", "1", ""),
                para("mta-a", "1", "Provides: mta"),
                para("mta-b", "1", "Provides: mta"),
                para("only", "1", "Provides: lonely"),
            ],
        )]);
        use crate::error::Diagnostic as _;
        let err = run(&idx, &["fooo"], false).unwrap_err();
        assert_eq!(err.to_string(), "package 'fooo' is not in trixie (amd64)");
        assert_eq!(
            err.hints(),
            ["check the spelling; `apt-cache policy fooo` on a trixie machine shows where it is"]
        );
        let err = run(&idx, &["mta"], false).unwrap_err();
        assert!(
            err.to_string().ends_with("provided by: mta-a, mta-b"),
            "{err}"
        );
        assert_eq!(err.hints(), ["request one of the providers by name"]);
        assert_eq!(run(&idx, &["lonely"], false).unwrap(), ["only=1"]);
        let err = run(&idx, &["foo=2"], false).unwrap_err();
        assert!(err.to_string().ends_with("no version 2 in trixie"), "{err}");
        assert_eq!(err.hints(), ["available: 1 (trixie)"]);
        assert_eq!(run(&idx, &["foo:amd64"], false).unwrap(), ["foo=1"]);
        let err = run(&idx, &["foo:arm64"], false).unwrap_err();
        assert!(
            matches!(err, ResolveError::WrongArchitecture { .. }),
            "{err:?}"
        );
        let err = run(&idx, &["foo=1", "foo=1.0", "foo=2"], false).unwrap_err();
        assert!(
            matches!(err, ResolveError::UnknownVersion { .. }),
            "{err:?}"
        );
        let err = run(&idx, &["foo/trixie"], false).unwrap_err();
        assert!(matches!(err, ResolveError::BadRequest { .. }), "{err:?}");
        let err = run(&idx, &["foo=x y"], false).unwrap_err();
        assert!(matches!(err, ResolveError::BadRequest { .. }), "{err:?}");
    }

    #[test]
    fn bad_paragraphs_name_the_package_and_line() {
        let mut idx = PackageIndex::new("amd64");
        let paras = parse("Package: a\nVersion: 1\nArchitecture: amd64\nSize: 1\n").unwrap();
        let err = idx.add_packages("trixie", &paras).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trixie: paragraph at line 1 (a): missing field 'Filename'"
        );
        let text = para("b", "1", "Provides: c (>= )");
        let err = idx
            .add_packages("trixie", &parse(&text).unwrap())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("trixie: paragraph at line 1 (b): bad field 'Provides'"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_relation_field_fails_only_when_the_package_is_needed() {
        let idx = index(&[(
            "trixie",
            &[
                para("fine", "1", "Depends: good"),
                para("good", "1", ""),
                para("bad", "1", "Depends: good (>= )"),
                para("needs-bad", "1", "Depends: bad | good"),
            ],
        )]);
        assert_eq!(run(&idx, &["fine"], false).unwrap(), ["fine=1", "good=1"]);
        // As an alternative, the broken package is passed over...
        assert_eq!(
            run(&idx, &["needs-bad"], false).unwrap(),
            ["good=1", "needs-bad=1"]
        );
        // ...and requested directly, its parse error is the answer.
        let err = run(&idx, &["bad"], false).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "trixie: paragraph at line 17 (bad): bad field 'Depends': invalid relation"
            ),
            "{err}"
        );
    }

    /// A small xorshift generator, so the shuffles are reproducible without extra crates.
    fn shuffle<T>(items: &mut [T], mut seed: u64) {
        for i in (1..items.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            items.swap(i, (seed % (i as u64 + 1)) as usize);
        }
    }

    #[test]
    fn requests_are_handled_in_order_like_apt_get() {
        let idx = index(&[(
            "trixie",
            &[
                para("a", "1", "Depends: x | y"),
                para("b", "1", "Depends: y"),
                para("x", "1", ""),
                para("y", "1", ""),
            ],
        )]);
        // `apt-get install a b` resolves a first (x), then b (y); `apt-get install b a`
        // resolves b first, and y then satisfies a as well.
        assert_eq!(
            run(&idx, &["a", "b"], false).unwrap(),
            ["a=1", "b=1", "x=1", "y=1"]
        );
        assert_eq!(
            run(&idx, &["b", "a"], false).unwrap(),
            ["a=1", "b=1", "y=1"]
        );
        // Repeating a request changes nothing.
        assert_eq!(
            run(&idx, &["b", "a", "b"], false).unwrap(),
            ["a=1", "b=1", "y=1"]
        );
    }

    #[test]
    fn the_result_does_not_depend_on_paragraph_order() {
        let main = vec![
            para(
                "root",
                "1",
                "Depends: virt, alt-a | alt-b, libx (>= 1), mta",
            ),
            para("p1", "1", "Provides: virt"),
            para("p2", "1", "Provides: virt"),
            para("p3", "1", "Provides: virt (= 3)"),
            para("alt-a", "1", "Depends: ghost"),
            para("alt-b", "1", "Depends: libx"),
            para("libx", "1", ""),
            para("exim", "1", "Provides: mta\nPriority: extra"),
            para("postfix", "1", "Provides: mta\nPriority: optional"),
            para("base", "1", "Essential: yes\nDepends: libx"),
        ];
        let security = vec![para("libx", "2", ""), para("p2", "2", "Provides: virt")];
        let expected = run(
            &index(&[("trixie", &main), ("trixie-security", &security)]),
            &["root", "base"],
            true,
        )
        .unwrap();
        assert_eq!(
            expected,
            ["alt-b=1", "base=1", "libx=2", "p1=1", "postfix=1", "root=1"]
        );
        for seed in 1..20u64 {
            let (mut m, mut s) = (main.clone(), security.clone());
            shuffle(&mut m, seed);
            shuffle(&mut s, seed * 7919);
            let requests = ["root", "base"];
            let got = run(
                &index(&[("trixie", &m), ("trixie-security", &s)]),
                &requests,
                true,
            )
            .unwrap();
            assert_eq!(got, expected, "seed {seed}");
        }
    }

    #[test]
    fn sources_give_the_highest_version_and_its_files() {
        let main = "Package: hello\nVersion: 2.10-3\nDirectory: pool/main/h/hello\n\
                    Checksums-Sha256:\n {a} 1950 hello_2.10-3.dsc\n {b} 725946 hello_2.10.orig.tar.gz\n\n";
        let sec = "Package: hello\nVersion: 2.10-3+deb13u1\nDirectory: pool/updates/main/h/hello\n\
                   Checksums-Sha256:\n {a} 2000 hello_2.10-3+deb13u1.dsc\n";
        let (a, b) = ("a".repeat(64), "B".repeat(64));
        let fill = |t: &str| t.replace("{a}", &a).replace("{b}", &b);
        let mut idx = SourceIndex::new();
        idx.add_sources("trixie", &parse(&fill(main)).unwrap())
            .unwrap();
        idx.add_sources("trixie-security", &parse(&fill(sec)).unwrap())
            .unwrap();
        assert_eq!(idx.len(), 2);
        let src = idx.find("hello").unwrap();
        assert_eq!(src.version.to_string(), "2.10-3+deb13u1");
        assert_eq!(src.suite, "trixie-security");
        assert_eq!(src.directory, "pool/updates/main/h/hello");
        let old = idx
            .find_version("hello", &"2.10-3".parse().unwrap())
            .unwrap();
        assert_eq!(
            old.files,
            [
                SourceFile {
                    name: "hello_2.10-3.dsc".into(),
                    size: 1950,
                    sha256: a.clone()
                },
                SourceFile {
                    name: "hello_2.10.orig.tar.gz".into(),
                    size: 725946,
                    sha256: b.to_ascii_lowercase()
                },
            ]
        );
        let err = idx.find("bye").unwrap_err();
        assert_eq!(
            err.to_string(),
            "source package 'bye' is not in trixie, trixie-security"
        );
        assert_eq!(crate::error::Diagnostic::hints(&err).len(), 1);
        let err = idx
            .find_version("hello", &"9".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("available: 2.10-3+deb13u1 (trixie-security), 2.10-3 (trixie)"),
            "{err}"
        );
    }

    #[test]
    fn binary_fields_are_parsed() {
        let idx = index(&[(
            "trixie",
            &[para(
                "libfoo1",
                "1.2-3+b1",
                "Source: foo (1.2-3)\nMulti-Arch: same\nPriority: optional\nImportant: yes\n\
                 Provides: libfoo (= 1.2)\nBreaks: old (<< 1)\nConflicts: other",
            )],
        )]);
        let p = idx.candidate("libfoo1").unwrap().unwrap();
        assert_eq!(p.source, "foo");
        assert_eq!(p.source_version.to_string(), "1.2-3");
        assert_eq!(p.multi_arch.as_deref(), Some("same"));
        assert!(p.important && !p.essential);
        assert_eq!(p.filename, "pool/libfoo1_1.2-3+b1.deb");
        assert_eq!((p.size, p.sha256.len()), (100, 64));
        assert_eq!(p.provides[0].to_string(), "libfoo (= 1.2)");
        assert_eq!(p.breaks[0].to_string(), "old (<< 1)");
        assert_eq!(p.conflicts[0].name, "other");
    }
}

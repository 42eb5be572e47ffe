//! Rust crates pinned by the checksums `Cargo.lock` already carries: every registry crate
//! is fetched into the store (verified by that SHA-256 of its `.crate`) and written out as
//! a cargo vendor directory that `cargo build --offline --frozen` accepts with
//! `[source.crates-io] replace-with = "vendored"`.
//!
//! Each crate becomes `<vendor>/<name>-<version>/` with a `.cargo-checksum.json` holding the
//! package checksum and the SHA-256 of every file, the format cargo's directory sources
//! check. Unpacking refuses anything but relative regular files and directories under the
//! crate's own `<name>-<version>/` prefix.
//!
//! For the `[[cargo]]` builds of recipes: [`lock_cargo`] reads each build's `Cargo.lock`
//! from its pinned source tree and records the crates in `pins.lock` (`[[cargo]]`),
//! [`check_cargo`] is the part of `lock --check` that proves them recorded for the locked
//! source, [`fetch_locked_crates`] has them in the store, and [`unpack_source`] lays out a
//! source tree (checked against its pin first) for the build step.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::hash::is_sha256;
use crate::http::Http;
use crate::lockfile::{LockedCargo, LockedCrateEntry, LockedGitEntry, Lockfile, LockfileError};
use crate::recipe::{Project, RecipeError};
use crate::sources::pin::SourcePin;
use crate::store::{Store, StoreError};

/// crates.io's download URL of a `.crate`.
pub const CRATES_IO_DOWNLOAD: &str =
    "https://static.crates.io/crates/{name}/{name}-{version}.crate";

/// The variable naming a registry mirror: a URL template with `{name}` and `{version}`
/// (e.g. `https://mirror.example/crates/{name}/{name}-{version}.crate`) used instead of
/// [`CRATES_IO_DOWNLOAD`]. Every `.crate` is checked against its checksum all the same.
pub const CRATES_URL_ENV: &str = "HERMETIC_CRATES_URL";

/// The download URL template of `.crate`s: [`CRATES_URL_ENV`] if set, else crates.io's.
pub fn crates_url_template() -> String {
    std::env::var(CRATES_URL_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| CRATES_IO_DOWNLOAD.to_string())
}

/// The `source` of a crates.io package in `Cargo.lock`.
pub const CRATES_IO_SOURCE: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// One registry crate of a `Cargo.lock`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockedCrate {
    pub name: String,
    pub version: String,
    /// The SHA-256 of the `.crate` file.
    pub checksum: String,
}

impl LockedCrate {
    fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// What went wrong pinning or vendoring crates.
#[derive(Debug, thiserror::Error)]
pub enum CrateError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a Cargo.lock: {message}", .path.display())]
    Malformed { path: PathBuf, message: String },
    #[error("{}: package `{name} {version}` comes from `{source_id}`, which hermetic cannot pin\nhint: only crates.io registry packages (with a checksum), path packages and git packages (`git+<https, http or file URL>[?rev=|branch=|tag=<value>]#<40-hex commit>`) are supported", .path.display())]
    Unsupported {
        path: PathBuf,
        name: String,
        version: String,
        source_id: String,
    },
    #[error("{}: crate `{name} {version}` has no valid checksum\nhint: regenerate the Cargo.lock with a current cargo", .path.display())]
    NoChecksum {
        path: PathBuf,
        name: String,
        version: String,
    },
    #[error(
        "crate `{name} {version}` from {url}: the .crate has SHA-256 {actual}, Cargo.lock says {expected}; nothing stored\nhint: the registry served another file than the one locked; check the registry or mirror"
    )]
    Mismatch {
        name: String,
        version: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("crate `{name} {version}`: cannot download {url}: {reason}")]
    Download {
        name: String,
        version: String,
        url: String,
        reason: String,
    },
    #[error("crate `{name} {version}`: entry `{entry}` of its .crate is refused: {why}")]
    Hostile {
        name: String,
        version: String,
        entry: String,
        why: String,
    },
    #[error("cannot write the vendor directory {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lockfile(#[from] LockfileError),
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Source(Box<crate::sources::fetch::SourceError>),
    #[error(transparent)]
    Path(#[from] Box<crate::sources::path::PathSourceError>),
    #[error(transparent)]
    UpstreamFetch(#[from] crate::sources::fetch::UpstreamFetchError),
    #[error(
        "{what} is not in the store ({path})\nhint: run `hermetic fetch` (or `hermetic lock`, which stores what it pins)"
    )]
    SourceMissing { what: String, path: PathBuf },
    #[error(
        "{what}: the stored copy {} has {field} {actual}, the lock pins {expected}\nhint: the store entry was changed; run `hermetic cache verify`, then `hermetic fetch`", .path.display()
    )]
    SourceTampered {
        what: String,
        path: PathBuf,
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{what}: entry `{entry}` of {} is refused: {why}", .archive.display())]
    Unpack {
        what: String,
        archive: PathBuf,
        entry: String,
        why: String,
    },
    #[error(
        "{what}: no Cargo.lock at `{}` of the source tree\nhint: a cargo build needs the Cargo.lock of its workspace (`dir` names the workspace inside the tree); binary crates published on crates.io carry theirs", .rel.display()
    )]
    NoCargoLock { what: String, rel: PathBuf },
    #[error(
        "{what}: no `Cargo.toml` in its tree is package `{name}` version {version}, which the Cargo.lock takes from it\nhint: the tree pinned is not the commit the Cargo.lock locked; run `hermetic lock` again with a copy of that commit"
    )]
    GitPackageMissing {
        what: String,
        name: String,
        version: String,
    },
    #[error(
        "{what}: the Cargo.toml of package `{name} {version}` cannot be vendored: {why}\nhint: hermetic writes in what a package inherits from its workspace (`[workspace.package]`, `[workspace.dependencies]`, `[workspace.lints]`); other manifests are not supported"
    )]
    GitManifest {
        what: String,
        name: String,
        version: String,
        why: String,
    },
    #[error(
        "{count} crate(s) are not in the store, e.g. `{example}`, and --offline forbids fetching them\nhint: run `hermetic fetch` while online first"
    )]
    CratesMissing { count: usize, example: String },
}

impl From<crate::sources::fetch::SourceError> for CrateError {
    fn from(e: crate::sources::fetch::SourceError) -> CrateError {
        CrateError::Source(Box::new(e))
    }
}

#[derive(Deserialize)]
struct RawCargoLock {
    #[serde(default)]
    package: Vec<RawPackage>,
}

#[derive(Deserialize)]
struct RawPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// One package a `Cargo.lock` takes from a git repository:
/// `source = "git+<repo>[?rev=…|?branch=…|?tag=…]#<commit>"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockedGit {
    pub name: String,
    pub version: String,
    /// The source as cargo names it, without the `#<commit>`: what the build's cargo
    /// configuration replaces (`git+https://github.com/tokio-rs/tracing?rev=e0642d9`).
    pub source: String,
    /// The repository URL (`https://github.com/tokio-rs/tracing`).
    pub repo: String,
    /// The full commit the `Cargo.lock` locked.
    pub commit: String,
}

impl LockedGit {
    /// The query of the source (`rev`, `branch` or `tag` and its value), if any.
    pub fn reference(&self) -> Option<(&str, &str)> {
        let (_, query) = self.source.split_once('?')?;
        query.split_once('=')
    }

    /// The git pin of the repository at the commit, with `tree_sha256` if known: fetched
    /// like a recipe's `git` source, named by the repository's last path segment.
    pub fn pin(&self, tree_sha256: Option<String>) -> SourcePin {
        git_repo_pin(&self.repo, &self.commit, tree_sha256)
    }
}

/// The git pin of repository `repo` at `commit`, named by the repository's last segment
/// (`tracing` for `https://github.com/tokio-rs/tracing`).
pub fn git_repo_pin(repo: &str, commit: &str, tree_sha256: Option<String>) -> SourcePin {
    let trimmed = repo.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let name = trimmed
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("repository");
    SourcePin::Git {
        name: name.to_string(),
        repo: repo.to_string(),
        commit: commit.to_string(),
        tree_sha256,
        archive_urls: Vec::new(),
    }
}

/// Splits a `Cargo.lock` git source `git+<repo>[?<rev|branch|tag>=<v>]#<commit>` into
/// (source without the commit, repo, commit); `None` if it is not of that form.
fn parse_git_source(source: &str) -> Option<(String, String, String)> {
    let rest = source.strip_prefix("git+")?;
    let (without, commit) = rest.rsplit_once('#')?;
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let repo = match without.split_once('?') {
        None => without,
        Some((repo, query)) => {
            let (key, value) = query.split_once('=')?;
            if !matches!(key, "rev" | "branch" | "tag") || value.is_empty() || value.contains('&') {
                return None;
            }
            repo
        }
    };
    if !(repo.starts_with("https://") || repo.starts_with("http://") || repo.starts_with("file://"))
        || repo.contains(['"', '\\', '\n'])
    {
        return None;
    }
    Some((
        format!("git+{without}"),
        repo.to_string(),
        commit.to_ascii_lowercase(),
    ))
}

/// The packages of a `Cargo.lock` hermetic pins: registry crates and git packages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockedPackages {
    pub crates: Vec<LockedCrate>,
    pub git: Vec<LockedGit>,
}

/// The registry crates of the `Cargo.lock` at `path`, sorted; path packages (no `source`)
/// are the workspace's own and skipped, git packages too ([`parse_cargo_lock_packages`]);
/// any other source is refused.
pub fn locked_crates(path: &Path) -> Result<Vec<LockedCrate>, CrateError> {
    let text = fs_err::read_to_string(path).map_err(|source| CrateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_cargo_lock(path, &text)
}

/// [`locked_crates`] of the text of a `Cargo.lock`; `path` is named in messages.
pub fn parse_cargo_lock(path: &Path, text: &str) -> Result<Vec<LockedCrate>, CrateError> {
    Ok(parse_cargo_lock_packages(path, text)?.crates)
}

/// The registry crates and git packages of the text of a `Cargo.lock`, each sorted; `path`
/// is named in messages. Path packages are skipped; another registry, a git source not of
/// the form `git+<http(s) or file URL>[?rev=|branch=|tag=<v>]#<40-hex commit>` or a registry
/// crate without checksum is an error naming the package.
pub fn parse_cargo_lock_packages(path: &Path, text: &str) -> Result<LockedPackages, CrateError> {
    let raw: RawCargoLock = toml::from_str(text).map_err(|e| CrateError::Malformed {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    let mut out = Vec::new();
    let mut git = Vec::new();
    for p in raw.package {
        match p.source.as_deref() {
            None => continue,
            Some(CRATES_IO_SOURCE) => {}
            Some(other) if other.starts_with("git+") => {
                let Some((source, repo, commit)) = parse_git_source(other) else {
                    return Err(CrateError::Unsupported {
                        path: path.to_path_buf(),
                        name: p.name,
                        version: p.version,
                        source_id: other.to_string(),
                    });
                };
                git.push(LockedGit {
                    name: p.name,
                    version: p.version,
                    source,
                    repo,
                    commit,
                });
                continue;
            }
            Some(other) => {
                return Err(CrateError::Unsupported {
                    path: path.to_path_buf(),
                    name: p.name,
                    version: p.version,
                    source_id: other.to_string(),
                });
            }
        }
        let Some(checksum) = p.checksum.filter(|c| is_sha256(c)) else {
            return Err(CrateError::NoChecksum {
                path: path.to_path_buf(),
                name: p.name,
                version: p.version,
            });
        };
        out.push(LockedCrate {
            name: p.name,
            version: p.version,
            checksum,
        });
    }
    out.sort();
    out.dedup();
    git.sort();
    git.dedup();
    Ok(LockedPackages { crates: out, git })
}

/// The download URL of `krate` from a template with `{name}` and `{version}`.
pub fn crate_url(template: &str, krate: &LockedCrate) -> String {
    template
        .replace("{name}", &krate.name)
        .replace("{version}", &krate.version)
}

/// Has every crate's `.crate` in the store, downloaded from `template` when missing and
/// checked against its Cargo.lock checksum while streaming. Gives how many were fetched.
pub fn fetch_crates(
    store: &Store,
    http: &Http,
    crates: &[LockedCrate],
    template: &str,
) -> Result<usize, CrateError> {
    let mut fetched = 0;
    for c in crates {
        if store.has_blob(&c.checksum) {
            continue;
        }
        let url = crate_url(template, c);
        let mut download = http.get(&url, None).map_err(|e| CrateError::Download {
            name: c.name.clone(),
            version: c.version.clone(),
            url: url.clone(),
            reason: e.reason(),
        })?;
        match store.put_blob_from_reader(&c.checksum, None, &mut download.reader) {
            Ok(_) => fetched += 1,
            Err(StoreError::HashMismatch { expected, actual }) => {
                return Err(CrateError::Mismatch {
                    name: c.name.clone(),
                    version: c.version.clone(),
                    url,
                    expected,
                    actual,
                });
            }
            Err(e) => {
                return Err(CrateError::Download {
                    name: c.name.clone(),
                    version: c.version.clone(),
                    url,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(fetched)
}

/// Writes the vendor directory `dest` (which must not exist) from the store's `.crate`s:
/// one `<name>-<version>/` per crate with its `.cargo-checksum.json`. Each blob is
/// re-hashed against its checksum before it is unpacked.
pub fn write_vendor_dir(
    store: &Store,
    crates: &[LockedCrate],
    dest: &Path,
) -> Result<(), CrateError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CrateError::Write { path, source }
    };
    fs_err::create_dir(dest).map_err(werr(dest))?;
    for c in crates {
        let blob = store.verified_blob(
            &c.checksum,
            None,
            &format!("crate {} {}", c.name, c.version),
        )?;
        let dir = dest.join(c.dir_name());
        fs_err::create_dir(&dir).map_err(werr(&dir))?;
        let file = fs_err::File::open(&blob).map_err(werr(&blob))?;
        let files = unpack_crate(c, file, &dir)?;
        let checksum = serde_json::json!({ "files": files, "package": c.checksum });
        let path = dir.join(".cargo-checksum.json");
        fs_err::write(&path, checksum.to_string()).map_err(werr(&path))?;
    }
    Ok(())
}

/// Unpacks a `.crate` (a tar.gz whose entries lie under `<name>-<version>/`) into `dir`;
/// gives the SHA-256 of each file by its path relative to `dir`.
fn unpack_crate(
    c: &LockedCrate,
    reader: impl Read,
    dir: &Path,
) -> Result<BTreeMap<String, String>, CrateError> {
    let prefix = c.dir_name();
    let hostile = |entry: &str, why: &str| CrateError::Hostile {
        name: c.name.clone(),
        version: c.version.clone(),
        entry: entry.to_string(),
        why: why.to_string(),
    };
    let io_err = |entry: &str, e: io::Error| hostile(entry, &format!("cannot read it: {e}"));
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    for entry in archive.entries().map_err(|e| io_err("(archive)", e))? {
        let mut entry = entry.map_err(|e| io_err("(archive)", e))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let name = std::str::from_utf8(&raw).map_err(|_| hostile(&shown, "not UTF-8"))?;
        let path = Path::new(name);
        if !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(hostile(&shown, "not a plain relative path"));
        }
        let Ok(rel) = path.strip_prefix(&prefix) else {
            return Err(hostile(&shown, &format!("outside `{prefix}/`")));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = dir.join(rel);
        match kind {
            tar::EntryType::Directory => {
                fs_err::create_dir_all(&target).map_err(|e| io_err(&shown, e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    fs_err::create_dir_all(parent).map_err(|e| io_err(&shown, e))?;
                }
                let mut out = fs_err::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|e| io_err(&shown, e))?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = entry.read(&mut buf).map_err(|e| io_err(&shown, e))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    io::Write::write_all(&mut out, &buf[..n]).map_err(|e| io_err(&shown, e))?;
                }
                let rel = rel
                    .to_str()
                    .ok_or_else(|| hostile(&shown, "not UTF-8"))?
                    .to_string();
                files.insert(rel, hex::encode(h.finalize()));
            }
            _ => return Err(hostile(&shown, "not a regular file or directory")),
        }
    }
    Ok(files)
}

/// The `.cargo/config.toml` text that makes cargo use the vendor directory at `vendor`.
pub fn vendor_config(vendor: &Path) -> String {
    format!(
        "[source.crates-io]\nreplace-with = \"vendored\"\n\n[source.vendored]\ndirectory = \"{}\"\n",
        vendor
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// What a `[[cargo]]` build reads its `Cargo.lock` from: a source and a directory in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CargoSourceRef {
    source: String,
    dir: String,
}

/// Every (source, dir) the recipes' `[[cargo]]` builds use, with a recipe naming it.
fn wanted_cargo(project: &Project) -> Result<BTreeMap<CargoSourceRef, String>, RecipeError> {
    let mut out = BTreeMap::new();
    for name in project.recipes.keys() {
        let r = project.resolve(name)?;
        for c in r.cargo.values() {
            out.entry(CargoSourceRef {
                source: c.source.clone(),
                dir: c.dir().to_string(),
            })
            .or_insert_with(|| name.clone());
        }
    }
    Ok(out)
}

/// `lock --check` for `[[cargo]]`: each build's crates recorded for the content hash its
/// source has in the lock, and no record that no build uses. Needs no network.
pub fn check_cargo(project: &Project, lock: &Lockfile) -> Result<Vec<String>, RecipeError> {
    let wanted = wanted_cargo(project)?;
    let mut problems = Vec::new();
    for (w, recipe) in &wanted {
        let at = if w.dir.is_empty() {
            String::new()
        } else {
            format!(" (dir `{}`)", w.dir)
        };
        let hash = lock
            .upstream
            .iter()
            .find(|u| u.pin.name() == w.source)
            .and_then(|u| u.pin.content_hash());
        let Some(hash) = hash else {
            // check_upstream reports the source itself.
            continue;
        };
        match lock
            .cargo
            .iter()
            .find(|c| c.source == w.source && c.dir == w.dir)
        {
            None => problems.push(format!(
                "the crates of source `{}`{at} (a cargo build of recipe `{recipe}`) are not in the lock",
                w.source
            )),
            Some(c) if c.source_hash != hash => problems.push(format!(
                "the crates of source `{}`{at} were locked from {}, the source is now pinned at {hash}",
                w.source, c.source_hash
            )),
            Some(_) => {}
        }
    }
    for c in &lock.cargo {
        let r = CargoSourceRef {
            source: c.source.clone(),
            dir: c.dir.clone(),
        };
        if !wanted.contains_key(&r) {
            problems.push(format!(
                "the crates of source `{}` are in the lock, but no cargo build uses them",
                c.source
            ));
        }
    }
    Ok(problems)
}

/// What [`lock_cargo`] did.
#[derive(Debug, Default)]
pub struct CargoLockOutcome {
    pub written: bool,
    /// Cargo.lock files read (the others were kept from the previous lock).
    pub read: usize,
    /// Registry crates recorded in all.
    pub crates: usize,
    /// Git repository trees hashed (the others were kept from the lock).
    pub git_computed: usize,
}

/// The repository URL of a recorded git source (`git+<repo>[?…]`).
fn git_repo_of(source: &str) -> Option<&str> {
    let rest = source.strip_prefix("git+")?;
    Some(rest.split_once('?').map_or(rest, |(repo, _)| repo))
}

/// Records in the lock at `path` the crates of every `[[cargo]]` build (run after the
/// source pins are locked): kept from `previous` when recorded there for the same source
/// hash, else read from the `Cargo.lock` of the source tree, which is fetched into the store
/// if needed. Each git repository+commit the `Cargo.lock` takes packages from is pinned by
/// its tree hash: kept when any `[[cargo]]` table of the lock holds it for the same
/// repository and commit, else computed from the first copy of `source_dirs` and the forge's
/// archive URL ([`git_repo_pin`]), which goes into the store. Another source, a crate
/// without checksum or a repository no copy of could be had is an error naming it.
pub fn lock_cargo(
    project: &Project,
    path: &Path,
    previous: Option<&Lockfile>,
    store_dir: &Path,
    source_dirs: &[PathBuf],
) -> Result<CargoLockOutcome, CrateError> {
    let mut outcome = CargoLockOutcome::default();
    let wanted = wanted_cargo(project)?;
    let Some(mut lock) = Lockfile::read(path)? else {
        return Ok(outcome);
    };
    if wanted.is_empty() && lock.cargo.is_empty() {
        return Ok(outcome);
    }
    let mut store = None;
    let http = Http::new();
    let mut entries = Vec::new();
    for w in wanted.keys() {
        let Some(pin) = lock
            .upstream
            .iter()
            .find(|u| u.pin.name() == w.source)
            .map(|u| u.pin.clone())
        else {
            continue;
        };
        // A source without hash was reported by lock_upstream; nothing to read yet.
        let Some(hash) = pin.content_hash().map(str::to_string) else {
            continue;
        };
        let kept = previous
            .into_iter()
            .chain(std::iter::once(&lock))
            .flat_map(|l| l.cargo.iter())
            .find(|c| c.source == w.source && c.dir == w.dir && c.source_hash == hash)
            .cloned();
        if let Some(k) = kept {
            entries.push(k);
            continue;
        }
        if store.is_none() {
            store = Some(Store::open(store_dir)?);
        }
        let store = store.as_ref().expect("opened above");
        let tmp = store.temp_dir()?;
        let tree = tmp.path().join("tree");
        if let SourcePin::Path { .. } = pin {
            crate::sources::path::copy_pinned(&project.root, &pin, &tree).map_err(Box::new)?;
        } else {
            crate::sources::fetch::fetch_source(store, &http, &pin, source_dirs, false)?;
            unpack_source(store, &pin, &tree)?;
        }
        let LockedPackages { crates, git } = packages_of_tree(&pin, &tree, &w.dir)?;
        outcome.read += 1;
        let mut git_entries = Vec::new();
        for g in git {
            let known = previous
                .into_iter()
                .chain(std::iter::once(&lock))
                .flat_map(|l| l.cargo.iter())
                .chain(entries.iter())
                .flat_map(|c| c.git.iter())
                .find(|e| git_repo_of(&e.source) == Some(g.repo.as_str()) && e.commit == g.commit)
                .map(|e| e.tree_sha256.clone());
            let tree_sha256 = match known {
                Some(h) => h,
                None => {
                    let h = crate::sources::fetch::compute_content_hash(
                        store,
                        &http,
                        &g.pin(None),
                        source_dirs,
                    )?;
                    outcome.git_computed += 1;
                    h
                }
            };
            git_entries.push(LockedGitEntry {
                name: g.name,
                version: g.version,
                source: g.source,
                commit: g.commit,
                tree_sha256,
            });
        }
        entries.push(LockedCargo {
            source: w.source.clone(),
            dir: w.dir.clone(),
            source_hash: hash,
            crates: crates
                .into_iter()
                .map(|c| LockedCrateEntry {
                    name: c.name,
                    version: c.version,
                    checksum: c.checksum,
                })
                .collect(),
            git: git_entries,
        });
    }
    outcome.crates = entries.iter().map(|e| e.crates.len()).sum();
    lock.cargo = entries;
    lock.canonicalize();
    outcome.written = lock.write_if_changed(path)?;
    Ok(outcome)
}

/// The registry crates of the `Cargo.lock` at `dir` of an unpacked source `tree`.
pub fn crates_of_tree(
    pin: &SourcePin,
    tree: &Path,
    dir: &str,
) -> Result<Vec<LockedCrate>, CrateError> {
    Ok(packages_of_tree(pin, tree, dir)?.crates)
}

/// The registry crates and git packages of the `Cargo.lock` at `dir` of an unpacked source
/// `tree`.
pub fn packages_of_tree(
    pin: &SourcePin,
    tree: &Path,
    dir: &str,
) -> Result<LockedPackages, CrateError> {
    let rel = Path::new(dir).join("Cargo.lock");
    // Read beneath the tree's root: a symbolic link the archive made never leads out.
    let Ok(text) = crate::beneath::read_to_string(tree, &rel) else {
        return Err(CrateError::NoCargoLock {
            what: pin.describe(),
            rel,
        });
    };
    parse_cargo_lock_packages(&tree.join(&rel), &text)
}

/// The crates of every `[[cargo]]` record of `lock`, each once.
pub fn locked_crates_of(lock: &Lockfile) -> Vec<LockedCrate> {
    let mut all: Vec<LockedCrate> = lock
        .cargo
        .iter()
        .flat_map(|c| c.crates.iter())
        .map(|k| LockedCrate {
            name: k.name.clone(),
            version: k.version.clone(),
            checksum: k.checksum.clone(),
        })
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Has every crate the lock's `[[cargo]]` records name in the store: with `offline`, only
/// says which are missing; else downloads them ([`crates_url_template`]), each checked
/// against its checksum. Gives (already stored, fetched).
pub fn fetch_locked_crates(
    store: &Store,
    http: &Http,
    lock: &Lockfile,
    offline: bool,
) -> Result<(usize, usize), CrateError> {
    let all = locked_crates_of(lock);
    let missing: Vec<&LockedCrate> = all
        .iter()
        .filter(|c| !store.has_blob(&c.checksum))
        .collect();
    let already = all.len() - missing.len();
    if missing.is_empty() {
        return Ok((already, 0));
    }
    if offline {
        return Err(CrateError::CratesMissing {
            count: missing.len(),
            example: format!("{} {}", missing[0].name, missing[0].version),
        });
    }
    let missing: Vec<LockedCrate> = missing.into_iter().cloned().collect();
    let fetched = fetch_crates(store, http, &missing, &crates_url_template())?;
    Ok((already, fetched))
}

/// The git packages of every `[[cargo]]` record of `lock`, each once.
pub fn locked_git_of(lock: &Lockfile) -> Vec<LockedGitEntry> {
    let mut all: Vec<LockedGitEntry> = lock
        .cargo
        .iter()
        .flat_map(|c| c.git.iter().cloned())
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The git pins (repository at commit, with its tree hash) of `git`, each repository and
/// commit once.
pub fn git_pins(git: &[LockedGitEntry]) -> Vec<SourcePin> {
    let mut pins: Vec<SourcePin> = git
        .iter()
        .filter_map(|g| {
            let repo = git_repo_of(&g.source)?;
            Some(git_repo_pin(repo, &g.commit, Some(g.tree_sha256.clone())))
        })
        .collect();
    pins.sort();
    pins.dedup();
    pins
}

/// Has the tree of every git repository the lock's `[[cargo]]` records name in the store:
/// from the store, a `--source-dir` copy, then (unless `offline`) the forge's archive URL,
/// each checked against its tree hash (`sources::fetch::fetch_source`). Every repository
/// that cannot be had is reported, named (in the error's `names`, and its `--omit` hint) by
/// the source of the cargo build needing it. Gives (already stored, fetched).
pub fn fetch_locked_git(
    store: &Store,
    http: &Http,
    lock: &Lockfile,
    source_dirs: &[PathBuf],
    offline: bool,
) -> Result<(usize, usize), CrateError> {
    let (mut already, mut fetched) = (0, 0);
    let mut errors = Vec::new();
    let mut names = Vec::new();
    for pin in git_pins(&locked_git_of(lock)) {
        if crate::sources::fetch::stored_path(store, &pin).is_some() {
            already += 1;
            continue;
        }
        match crate::sources::fetch::fetch_source(store, http, &pin, source_dirs, offline) {
            Ok(_) => fetched += 1,
            Err(mut e) => {
                // Named by the source of the (first) cargo build whose crates need it: the
                // name `--omit` takes, and what `--omit-unavailable` leaves out.
                let user = lock
                    .cargo
                    .iter()
                    .find(|c| git_pins(&c.git).contains(&pin))
                    .map(|c| c.source.clone())
                    .unwrap_or_else(|| pin.name().to_string());
                if let crate::sources::fetch::SourceError::Unavailable { omit, .. } = &mut e {
                    *omit = user.as_str().into();
                }
                names.push(user);
                errors.push(e);
            }
        }
    }
    if errors.is_empty() {
        Ok((already, fetched))
    } else {
        Err(CrateError::UpstreamFetch(
            crate::sources::fetch::UpstreamFetchError { errors, names },
        ))
    }
}

/// Writes the git packages `git` into `vendor/git/<n>/<name>-<version>/`, one directory
/// source per `Cargo.lock` git source, from the trees in the store (each checked against
/// its tree hash again when unpacked into `scratch`, which must not exist). A package's
/// directory is found as cargo finds it: the `Cargo.toml` in the tree whose `package.name`
/// and version match. Gives each git source with its directory, for [`vendor_config_git`]
/// (`vendor_in_build` is where `vendor` is seen by the build).
pub fn write_git_vendor(
    store: &Store,
    git: &[LockedGitEntry],
    vendor: &Path,
    vendor_in_build: &Path,
    scratch: &Path,
) -> Result<Vec<(String, PathBuf)>, CrateError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CrateError::Write { path, source }
    };
    fs_err::create_dir(scratch).map_err(werr(scratch))?;
    let mut by_source: BTreeMap<&str, Vec<&LockedGitEntry>> = BTreeMap::new();
    for g in git {
        by_source.entry(&g.source).or_default().push(g);
    }
    let mut trees: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    let mut out = Vec::new();
    let root = vendor.join("git");
    if !by_source.is_empty() {
        fs_err::create_dir(&root).map_err(werr(&root))?;
    }
    for (n, (source, packages)) in by_source.into_iter().enumerate() {
        let first = packages[0];
        let repo = git_repo_of(source).unwrap_or(source).to_string();
        let pin = git_repo_pin(&repo, &first.commit, Some(first.tree_sha256.clone()));
        let key = (first.commit.clone(), first.tree_sha256.clone());
        let tree = match trees.get(&key) {
            Some(t) => t.clone(),
            None => {
                let t = scratch.join(trees.len().to_string());
                unpack_source(store, &pin, &t)?;
                trees.insert(key, t.clone());
                t
            }
        };
        let manifests = package_manifests(&tree);
        let dir = root.join(n.to_string());
        fs_err::create_dir(&dir).map_err(werr(&dir))?;
        for g in packages {
            let Some(found) = manifests
                .iter()
                .find(|m| m.name == g.name && m.version == g.version)
            else {
                return Err(CrateError::GitPackageMissing {
                    what: pin.describe(),
                    name: g.name.clone(),
                    version: g.version.clone(),
                });
            };
            let dest = dir.join(format!("{}-{}", g.name, g.version));
            let mut files = copy_package(&tree, &found.dir, &dest)?;
            if let Some(ws) = &found.workspace {
                let manifest = dest.join("Cargo.toml");
                let text =
                    fs_err::read_to_string(&manifest).map_err(|source| CrateError::Read {
                        path: manifest.clone(),
                        source,
                    })?;
                let normal =
                    normalize_manifest(&text, ws).map_err(|why| CrateError::GitManifest {
                        what: pin.describe(),
                        name: g.name.clone(),
                        version: g.version.clone(),
                        why,
                    })?;
                if let Some(normal) = normal {
                    // Kept beside it, as cargo keeps the original of a normalized manifest.
                    let orig = dest.join("Cargo.toml.orig");
                    fs_err::write(&orig, &text).map_err(werr(&orig))?;
                    fs_err::write(&manifest, &normal).map_err(werr(&manifest))?;
                    files.insert(
                        "Cargo.toml".into(),
                        hex::encode(Sha256::digest(normal.as_bytes())),
                    );
                    files.insert(
                        "Cargo.toml.orig".into(),
                        hex::encode(Sha256::digest(text.as_bytes())),
                    );
                }
            }
            let checksum = serde_json::json!({ "files": files, "package": null });
            let path = dest.join(".cargo-checksum.json");
            fs_err::write(&path, checksum.to_string()).map_err(werr(&path))?;
        }
        out.push((
            source.to_string(),
            vendor_in_build.join("git").join(n.to_string()),
        ));
    }
    Ok(out)
}

/// A package found in a git tree: its directory (relative to the tree) and identity, and
/// the `[workspace]` table of the workspace root enclosing it (if any).
struct Manifest {
    dir: PathBuf,
    name: String,
    version: String,
    workspace: Option<toml::Table>,
}

/// The manifest `text` with what it inherits from `workspace` (the root's `[workspace]`
/// table) written in, as cargo normalizes a package it vendors or publishes: `[package]`
/// fields `{ workspace = true }` take `workspace.package`'s value; a dependency
/// `{ workspace = true, … }` (in `[dependencies]`, `[dev-dependencies]`,
/// `[build-dependencies]` and their `[target.*]` forms) becomes the workspace's entry with
/// the local `features` added and `optional` kept; `[lints] workspace = true` takes
/// `workspace.lints`. A directory source has no workspace to inherit from, so a vendored
/// git package needs this. `None` when there is nothing to inherit.
fn normalize_manifest(text: &str, workspace: &toml::Table) -> Result<Option<String>, String> {
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let inherits = |v: &toml::Value| {
        v.as_table()
            .and_then(|t| t.get("workspace"))
            .and_then(toml::Value::as_bool)
            == Some(true)
    };
    let mut changed = false;
    let ws_package = workspace.get("package").and_then(|p| p.as_table());
    if let Some(package) = doc.get_mut("package").and_then(|p| p.as_table_mut()) {
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                let Some(v) = ws_package.and_then(|w| w.get(key.as_str())) else {
                    return Err(format!(
                        "`package.{key}` is inherited, the workspace has no `workspace.package.{key}`"
                    ));
                };
                *value = v.clone();
                changed = true;
            }
        }
    }
    let ws_deps = workspace.get("dependencies").and_then(|d| d.as_table());
    let mut fix_deps = |deps: &mut toml::Table| -> Result<(), String> {
        for (name, value) in deps.iter_mut() {
            if !inherits(value) {
                continue;
            }
            let local = value.as_table().cloned().unwrap_or_default();
            let mut dep = match ws_deps.and_then(|w| w.get(name.as_str())) {
                Some(toml::Value::String(v)) => toml::Table::from_iter([(
                    "version".to_string(),
                    toml::Value::String(v.clone()),
                )]),
                Some(toml::Value::Table(t)) => t.clone(),
                _ => {
                    return Err(format!(
                        "dependency `{name}` is inherited, the workspace has no `workspace.dependencies.{name}`"
                    ));
                }
            };
            for (k, v) in local {
                match k.as_str() {
                    "workspace" => {}
                    "features" => {
                        let mut all = dep
                            .get("features")
                            .and_then(|f| f.as_array())
                            .cloned()
                            .unwrap_or_default();
                        all.extend(v.as_array().cloned().unwrap_or_default());
                        dep.insert(k, toml::Value::Array(all));
                    }
                    _ => {
                        dep.insert(k, v);
                    }
                }
            }
            *value = toml::Value::Table(dep);
            changed = true;
        }
        Ok(())
    };
    const KINDS: [&str; 4] = [
        "dependencies",
        "dev-dependencies",
        "dev_dependencies",
        "build-dependencies",
    ];
    for kind in KINDS {
        if let Some(deps) = doc.get_mut(kind).and_then(|d| d.as_table_mut()) {
            fix_deps(deps)?;
        }
    }
    if let Some(targets) = doc.get_mut("target").and_then(|t| t.as_table_mut()) {
        for (_, target) in targets.iter_mut() {
            for kind in KINDS {
                if let Some(deps) = target.get_mut(kind).and_then(|d| d.as_table_mut()) {
                    fix_deps(deps)?;
                }
            }
        }
    }
    if doc.get("lints").is_some_and(inherits) {
        match workspace.get("lints") {
            Some(l) => doc.insert("lints".into(), l.clone()),
            None => doc.remove("lints"),
        };
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    toml::to_string(&doc).map(Some).map_err(|e| e.to_string())
}

/// Every `Cargo.toml` with a `[package]` in `tree` (not below `.git` or `target`, never
/// through a symbolic link), with its name and version; a version inherited from the
/// workspace (`version.workspace = true`) is the nearest enclosing `[workspace.package]`'s,
/// a missing one `0.0.0`, as cargo has them.
fn package_manifests(tree: &Path) -> Vec<Manifest> {
    let mut found = Vec::new();
    let mut workspaces: Vec<(PathBuf, toml::Table)> = Vec::new();
    let mut stack = vec![PathBuf::new()];
    let mut manifests = Vec::new();
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(tree.join(&rel)) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(kind) = e.file_type() else { continue };
            let name = e.file_name();
            if kind.is_dir() && name != ".git" && name != "target" {
                stack.push(rel.join(&name));
            } else if kind.is_file() && name == "Cargo.toml" {
                let Ok(text) = fs_err::read_to_string(e.path()) else {
                    continue;
                };
                let Ok(value) = text.parse::<toml::Table>() else {
                    continue;
                };
                if let Some(ws) = value.get("workspace").and_then(|w| w.as_table()) {
                    workspaces.push((rel.clone(), ws.clone()));
                }
                manifests.push((rel.clone(), value));
            }
        }
    }
    for (dir, value) in manifests {
        let Some(package) = value.get("package").and_then(|p| p.as_table()) else {
            continue;
        };
        let Some(name) = package.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        let workspace = workspaces
            .iter()
            .filter(|(w, _)| dir.starts_with(w))
            .max_by_key(|(w, _)| w.components().count())
            .map(|(_, t)| t.clone());
        let version = match package.get("version") {
            None => Some("0.0.0".to_string()),
            Some(toml::Value::String(v)) => Some(v.clone()),
            Some(toml::Value::Table(t))
                if t.get("workspace") == Some(&toml::Value::Boolean(true)) =>
            {
                workspace
                    .as_ref()
                    .and_then(|w| w.get("package"))
                    .and_then(|p| p.get("version"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            }
            Some(_) => None,
        };
        if let Some(version) = version {
            found.push(Manifest {
                dir,
                name: name.to_string(),
                version,
                workspace,
            });
        }
    }
    found
}

/// Copies the package at `rel` of `tree` to `dest` (made here): regular files and
/// directories (not `.git` or `target`); a symbolic link is copied as the regular file it
/// leads to when that lies in `tree` (read beneath it), else left out. Gives each file's
/// SHA-256 by its path relative to `dest`.
fn copy_package(
    tree: &Path,
    rel: &Path,
    dest: &Path,
) -> Result<BTreeMap<String, String>, CrateError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CrateError::Write { path, source }
    };
    let beneath = crate::beneath::Beneath::open(tree).map_err(|e| CrateError::Read {
        path: tree.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    let mut files = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(sub) = stack.pop() {
        let here = dest.join(&sub);
        fs_err::create_dir(&here).map_err(werr(&here))?;
        let src = tree.join(rel).join(&sub);
        let mut entries: Vec<_> = fs_err::read_dir(&src)
            .map_err(|source| CrateError::Read {
                path: src.clone(),
                source,
            })?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let kind = e.file_type().map_err(|source| CrateError::Read {
                path: e.path(),
                source,
            })?;
            let sub_rel = sub.join(&name);
            if kind.is_dir() {
                if name != ".git" && name != "target" {
                    stack.push(sub_rel);
                }
                continue;
            }
            let bytes = if kind.is_file() {
                fs_err::read(e.path()).map_err(|source| CrateError::Read {
                    path: e.path(),
                    source,
                })?
            } else if kind.is_symlink() {
                // Followed beneath the tree: a link out of it gives nothing.
                match beneath.read(rel.join(&sub_rel)) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            } else {
                continue;
            };
            let Some(key) = sub_rel.to_str() else {
                continue;
            };
            let target = dest.join(&sub_rel);
            fs_err::write(&target, &bytes).map_err(werr(&target))?;
            files.insert(key.to_string(), hex::encode(Sha256::digest(&bytes)));
        }
    }
    Ok(files)
}

/// [`vendor_config`] plus, for each git source of a `Cargo.lock` with its vendored
/// directory, a `[source."<source>"]` table naming the repository and its `rev`, `branch`
/// or `tag` as the `Cargo.lock` has them, replaced by that directory: what cargo needs to
/// take the packages of a git dependency from a directory source.
pub fn vendor_config_git(vendor: &Path, git: &[(String, PathBuf)]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = vendor_config(vendor);
    for (n, (source, dir)) in git.iter().enumerate() {
        let rest = source.strip_prefix("git+").unwrap_or(source);
        let (repo, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q.split_once('=')),
            None => (rest, None),
        };
        out.push_str(&format!(
            "\n[source.{}]\ngit = {}\n",
            quote(source),
            quote(repo)
        ));
        if let Some((key, value)) = query {
            out.push_str(&format!("{key} = {}\n", quote(value)));
        }
        out.push_str(&format!(
            "replace-with = \"vendored-git-{n}\"\n\n[source.vendored-git-{n}]\ndirectory = {}\n",
            quote(&dir.display().to_string())
        ));
    }
    out
}

/// The stored copy of a source pin, checked again against its pin before it is used: the
/// SHA-256 of a file, the tree hash of a git archive.
pub fn verified_source(store: &Store, pin: &SourcePin) -> Result<PathBuf, CrateError> {
    let what = pin.describe();
    let Some(expected) = pin.content_hash() else {
        return Err(CrateError::Source(Box::new(
            crate::sources::fetch::SourceError::NoHash {
                what,
                field: "sha256",
            },
        )));
    };
    let Some(path) = crate::sources::fetch::stored_path(store, pin) else {
        let path = match pin {
            SourcePin::Git { .. } => {
                store.step_path(&crate::sources::fetch::git_step_key(expected))
            }
            _ => store.blob_path(expected),
        };
        return Err(CrateError::SourceMissing { what, path });
    };
    let (field, actual) = match pin {
        SourcePin::Git { .. } => (
            "tree-sha256",
            crate::sources::treehash::tree_hash_archive(&path).map_err(|e| CrateError::Unpack {
                what: what.clone(),
                archive: path.clone(),
                entry: "(archive)".into(),
                why: e.to_string(),
            })?,
        ),
        _ => {
            let f = fs_err::File::open(&path).map_err(|source| CrateError::Read {
                path: path.clone(),
                source,
            })?;
            let (hash, _) = crate::hash::hash_stream(f).map_err(|source| CrateError::Read {
                path: path.clone(),
                source,
            })?;
            ("sha256", hash)
        }
    };
    if actual != expected {
        return Err(CrateError::SourceTampered {
            what,
            path,
            field,
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(path)
}

/// Unpacks the source tree of `pin` from the store into `dest` (which must not exist), after
/// checking the stored copy against the pin. Like the tree hash, a single top-level
/// directory holding every entry is stripped. Only relative regular files, directories and
/// symbolic links are taken; an entry below a symbolic link is refused, so nothing is
/// written outside `dest`. A tar in any compression the tree hash reads is accepted.
pub fn unpack_source(store: &Store, pin: &SourcePin, dest: &Path) -> Result<(), CrateError> {
    let archive = verified_source(store, pin)?;
    let what = pin.describe();
    let refuse = |entry: &str, why: String| CrateError::Unpack {
        what: what.clone(),
        archive: archive.clone(),
        entry: entry.to_string(),
        why,
    };
    let open = || -> Result<Box<dyn Read>, CrateError> {
        let mut f = fs_err::File::open(&archive).map_err(|source| CrateError::Read {
            path: archive.clone(),
            source,
        })?;
        let mut head = [0u8; 8];
        let n = io::Read::read(&mut f, &mut head).map_err(|source| CrateError::Read {
            path: archive.clone(),
            source,
        })?;
        let f = io::Cursor::new(head[..n].to_vec()).chain(f);
        use crate::sources::treehash::ArchiveKind as K;
        Ok(match K::sniff(&head[..n]) {
            K::Tar => Box::new(f),
            K::TarGz => Box::new(flate2::read::MultiGzDecoder::new(f)),
            K::TarXz => Box::new(liblzma::read::XzDecoder::new(f)),
            K::TarZst => Box::new(
                zstd::stream::read::Decoder::new(f)
                    .map_err(|e| refuse("(archive)", e.to_string()))?,
            ),
            K::Zip => {
                return Err(refuse(
                    "(archive)",
                    "a zip archive cannot be unpacked for a build yet; pin a tar archive".into(),
                ));
            }
        })
    };
    // Pass 1: the paths, to find a top-level directory holding every entry.
    let mut firsts = std::collections::BTreeSet::new();
    let mut top_file = false;
    {
        let mut tar = tar::Archive::new(open()?);
        for entry in tar
            .entries()
            .map_err(|e| refuse("(archive)", e.to_string()))?
        {
            let entry = entry.map_err(|e| refuse("(archive)", e.to_string()))?;
            let kind = entry.header().entry_type();
            if matches!(
                kind,
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
            ) {
                continue;
            }
            let path = entry
                .path()
                .map_err(|e| refuse("(archive)", e.to_string()))?;
            let normal: Vec<_> = path
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            if let Some(first) = normal.first() {
                firsts.insert(first.as_os_str().to_os_string());
            }
            if normal.len() == 1 && !kind.is_dir() {
                top_file = true;
            }
        }
    }
    let strip = firsts.len() == 1 && !top_file;
    fs_err::create_dir(dest).map_err(|source| CrateError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    let werr = |path: &Path, source: io::Error| CrateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tar = tar::Archive::new(open()?);
    for entry in tar
        .entries()
        .map_err(|e| refuse("(archive)", e.to_string()))?
    {
        let mut entry = entry.map_err(|e| refuse("(archive)", e.to_string()))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let name = std::str::from_utf8(&raw).map_err(|_| refuse(&shown, "not UTF-8".into()))?;
        let path = Path::new(name);
        if !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(refuse(&shown, "not a plain relative path".into()));
        }
        let rel: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .skip(usize::from(strip))
            .collect();
        if rel.as_os_str().is_empty() {
            continue;
        }
        // No component of the way may be a symbolic link (the archive may have made one).
        let mut at = dest.to_path_buf();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            at.push(c);
            match fs_err::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse(&shown, "lies below a symbolic link".into()));
                }
                Ok(m) if !m.is_dir() => {
                    return Err(refuse(&shown, "lies below a file".into()));
                }
                Ok(_) => {}
                Err(_) => fs_err::create_dir(&at).map_err(|e| werr(&at, e))?,
            }
        }
        let target = dest.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o644);
        match kind {
            tar::EntryType::Directory => match fs_err::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(refuse(&shown, "a directory over another entry".into())),
                Err(_) => fs_err::create_dir(&target).map_err(|e| werr(&target, e))?,
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut out = fs_err::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|_| refuse(&shown, "a path twice".into()))?;
                io::copy(&mut entry, &mut out).map_err(|e| werr(&target, e))?;
                use std::os::unix::fs::PermissionsExt as _;
                let mode = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
                out.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| werr(&target, e))?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| refuse(&shown, e.to_string()))?
                    .ok_or_else(|| refuse(&shown, "a symbolic link without target".into()))?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|_| refuse(&shown, "a path twice".into()))?;
            }
            _ => {
                return Err(refuse(
                    &shown,
                    "not a regular file, directory or symbolic link".into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "e0642d949891546a3bb7e47080365ee7274f05cd";

    #[test]
    fn git_sources_are_split_into_source_repository_and_commit() {
        let (source, repo, commit) = parse_git_source(&format!(
            "git+https://github.com/tokio-rs/tracing?rev=e0642d9#{COMMIT}"
        ))
        .unwrap();
        assert_eq!(
            source,
            "git+https://github.com/tokio-rs/tracing?rev=e0642d9"
        );
        assert_eq!(repo, "https://github.com/tokio-rs/tracing");
        assert_eq!(commit, COMMIT);
        let (source, repo, _) =
            parse_git_source(&format!("git+https://github.com/heim-rs/heim#{COMMIT}")).unwrap();
        assert_eq!(source, "git+https://github.com/heim-rs/heim");
        assert_eq!(repo, "https://github.com/heim-rs/heim");
        for bad in [
            "git+https://example.org/x#abc".to_string(),
            format!("git+https://example.org/x?rev=1&branch=b#{COMMIT}"),
            format!("git+https://example.org/x?path=y#{COMMIT}"),
            format!("git+ssh://git@example.org/x#{COMMIT}"),
            format!("git+https://example.org/x\"#{COMMIT}"),
        ] {
            assert!(parse_git_source(&bad).is_none(), "{bad} accepted");
        }
        let pin = git_repo_pin(
            "https://github.com/GreptimeTeam/greptime-proto.git",
            COMMIT,
            None,
        );
        assert_eq!(pin.name(), "greptime-proto");
        assert_eq!(
            pin.urls(),
            [format!(
                "https://github.com/GreptimeTeam/greptime-proto/archive/{COMMIT}.tar.gz"
            )]
        );
    }

    #[test]
    fn each_git_source_is_replaced_by_its_directory_with_its_reference() {
        let config = vendor_config_git(
            Path::new("/work/vendor"),
            &[
                (
                    "git+https://github.com/tokio-rs/tracing?rev=e0642d9".into(),
                    PathBuf::from("/work/vendor/git/0"),
                ),
                (
                    "git+https://github.com/heim-rs/heim?branch=update-nix".into(),
                    PathBuf::from("/work/vendor/git/1"),
                ),
            ],
        );
        let parsed: toml::Table = config.parse().unwrap();
        let source = &parsed["source"];
        let tracing = &source["git+https://github.com/tokio-rs/tracing?rev=e0642d9"];
        assert_eq!(
            tracing["git"].as_str(),
            Some("https://github.com/tokio-rs/tracing")
        );
        assert_eq!(tracing["rev"].as_str(), Some("e0642d9"));
        assert_eq!(tracing["replace-with"].as_str(), Some("vendored-git-0"));
        let heim = &source["git+https://github.com/heim-rs/heim?branch=update-nix"];
        assert_eq!(heim["branch"].as_str(), Some("update-nix"));
        assert!(heim.get("rev").is_none());
        assert_eq!(
            source["vendored-git-1"]["directory"].as_str(),
            Some("/work/vendor/git/1")
        );
        assert_eq!(
            source["crates-io"]["replace-with"].as_str(),
            Some("vendored")
        );
    }

    #[test]
    fn inherited_manifest_fields_are_written_in() {
        let ws: toml::Table = "package = { version = \"1.2.3\", edition = \"2021\" }\n\
             dependencies = { serde = { version = \"1\", features = [\"derive\"] }, log = \"0.4\" }\n\
             lints = { rust = { unsafe_code = \"deny\" } }\n"
            .parse()
            .unwrap();
        let text = "[package]\nname = \"a\"\nversion.workspace = true\nedition.workspace = true\n\
                    [dependencies]\nserde = { workspace = true, features = [\"rc\"], optional = true }\n\
                    [target.'cfg(unix)'.dependencies]\nlog.workspace = true\n\
                    [lints]\nworkspace = true\n";
        let out: toml::Table = normalize_manifest(text, &ws)
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(out["package"]["version"].as_str(), Some("1.2.3"));
        assert_eq!(out["package"]["edition"].as_str(), Some("2021"));
        let serde = &out["dependencies"]["serde"];
        assert_eq!(serde["version"].as_str(), Some("1"));
        assert_eq!(serde["optional"].as_bool(), Some(true));
        let features: Vec<&str> = serde["features"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        assert_eq!(features, ["derive", "rc"]);
        assert_eq!(
            out["target"]["cfg(unix)"]["dependencies"]["log"]["version"].as_str(),
            Some("0.4")
        );
        assert_eq!(out["lints"]["rust"]["unsafe_code"].as_str(), Some("deny"));
        // Nothing inherited: left as it is.
        assert!(
            normalize_manifest("[package]\nname = \"b\"\n", &ws)
                .unwrap()
                .is_none()
        );
        let err = normalize_manifest("[package]\nname = \"c\"\nlicense.workspace = true\n", &ws)
            .unwrap_err();
        assert!(err.contains("package.license"), "{err}");
    }
}

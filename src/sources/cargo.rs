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
use crate::lockfile::{LockedCargo, LockedCrateEntry, Lockfile, LockfileError};
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
    #[error("{}: package `{name} {version}` comes from `{source_id}`, which hermetic cannot pin\nhint: only crates.io registry packages (with a checksum) and path packages are supported; vendor git dependencies as sources of their own", .path.display())]
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
    Source(#[from] crate::sources::fetch::SourceError),
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
        "{count} crate(s) are not in the store, e.g. `{example}`, and --offline forbids fetching them\nhint: run `hermetic fetch` while online first"
    )]
    CratesMissing { count: usize, example: String },
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

/// The registry crates of the `Cargo.lock` at `path`, sorted; path packages (no `source`)
/// are the workspace's own and skipped; any other source is refused.
pub fn locked_crates(path: &Path) -> Result<Vec<LockedCrate>, CrateError> {
    let text = fs_err::read_to_string(path).map_err(|source| CrateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_cargo_lock(path, &text)
}

/// [`locked_crates`] of the text of a `Cargo.lock`; `path` is named in messages.
pub fn parse_cargo_lock(path: &Path, text: &str) -> Result<Vec<LockedCrate>, CrateError> {
    let raw: RawCargoLock = toml::from_str(text).map_err(|e| CrateError::Malformed {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    let mut out = Vec::new();
    for p in raw.package {
        match p.source.as_deref() {
            None => continue,
            Some(CRATES_IO_SOURCE) => {}
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
    Ok(out)
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
}

/// Records in the lock at `path` the crates of every `[[cargo]]` build (run after the
/// source pins are locked): kept from `previous` when recorded there for the same source
/// hash, else read from the `Cargo.lock` of the source tree, which is fetched into the store
/// if needed. A git dependency or a crate without checksum is an error naming the crate.
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
        let crates = crates_of_tree(&pin, &tree, &w.dir)?;
        outcome.read += 1;
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
    let rel = Path::new(dir).join("Cargo.lock");
    // Read beneath the tree's root: a symbolic link the archive made never leads out.
    let Ok(text) = crate::beneath::read_to_string(tree, &rel) else {
        return Err(CrateError::NoCargoLock {
            what: pin.describe(),
            rel,
        });
    };
    parse_cargo_lock(&tree.join(&rel), &text)
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

/// The stored copy of a source pin, checked again against its pin before it is used: the
/// SHA-256 of a file, the tree hash of a git archive.
pub fn verified_source(store: &Store, pin: &SourcePin) -> Result<PathBuf, CrateError> {
    let what = pin.describe();
    let Some(expected) = pin.content_hash() else {
        return Err(CrateError::Source(
            crate::sources::fetch::SourceError::NoHash {
                what,
                field: "sha256",
            },
        ));
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

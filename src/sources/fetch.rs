//! Filling the store with source pins: only pins with a declared content hash are fetched,
//! from a `--source-dir` first, then from their URLs; every copy is checked the same way and
//! nothing that does not match is stored.
//!
//! - `file` and `deb` sources are blobs under their SHA-256, like every other pin.
//! - A `git` source is published as the store entry `steps/source-git-<tree hash>`, holding
//!   the archive that was checked (`archive`): any archive of the tree will do, so the store
//!   keeps the first one whose tree hash matched.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::hash::is_sha256;
use crate::http::Http;
use crate::sources::pin::SourcePin;
use crate::sources::treehash::{self, TreeHashError};
use crate::store::{Store, StoreError};

/// One place a source was looked for, and why it did not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAttempt {
    /// A URL or a path under a `--source-dir`.
    pub origin: String,
    pub error: String,
}

/// Why a source pin could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{what} has no content hash (`{field}`), so it is not fetched\nhint: run `hermetic lock` to compute it where the source can be reached"
    )]
    NoHash { what: String, field: &'static str },
    #[error(
        "{what} is a directory of the project: it is read from there, never fetched into the store\nhint: only a `[[cargo]]` build takes a path source"
    )]
    NotFetched { what: String },
    #[error("{what}: `{hash}` is not a SHA-256 (64 lowercase hex digits)")]
    BadHash { what: String, hash: String },
    #[error("{what}, pinned by {pinned}, could not be had from any source:\n{}\nhint: supply a copy with `--source-dir DIR`, DIR holding `{name}`{copy_forms} (the copy is checked against the pin all the same), or build the image without it: `hermetic build --omit {omit}` (or `--omit-unavailable`){}", format_attempts(.attempts), mismatch_note(.attempts))]
    Unavailable {
        what: String,
        /// The source's name in its recipe.
        name: String,
        /// Its content pin, `sha256 <hex>` or `tree-sha256 <hex>` (or that none is recorded).
        pinned: Box<str>,
        /// The other names a `--source-dir` copy may have.
        copy_forms: Box<str>,
        /// The source `--omit` takes to leave it out: its own name, or for the git
        /// repository of a cargo build's crates, that build's source.
        omit: Box<str>,
        attempts: Vec<SourceAttempt>,
    },
    #[error(transparent)]
    Go(Box<crate::sources::gomod::GoModError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SourceError {
    /// The error for `pin` when no copy of `attempts` would do.
    fn unavailable(pin: &SourcePin, attempts: Vec<SourceAttempt>) -> SourceError {
        let pinned = match pin.content_hash() {
            Some(hash) => format!("{} {hash}", pin.hash_field()),
            None => format!("no {} yet", pin.hash_field()),
        };
        let copy_forms = match pin {
            SourcePin::Git { commit, .. } => format!(
                " (a checkout) or `{0}.tar.gz` (or .tgz, .tar.xz, .tar.zst, .tar, .zip), or the same named `{0}-{commit}`",
                pin.name()
            ),
            _ => {
                let lasts: Vec<String> = pin
                    .urls()
                    .iter()
                    .filter_map(|u| u.rsplit('/').next())
                    .filter(|l| !l.is_empty() && *l != pin.name())
                    .map(|l| format!("`{l}`"))
                    .collect();
                if lasts.is_empty() {
                    " (the file)".into()
                } else {
                    format!(" or {} (the file)", lasts.join(" or "))
                }
            }
        };
        SourceError::Unavailable {
            what: pin.describe(),
            name: pin.name().to_string(),
            omit: pin.name().into(),
            pinned: pinned.into(),
            copy_forms: copy_forms.into(),
            attempts,
        }
    }
}

fn format_attempts(attempts: &[SourceAttempt]) -> String {
    if attempts.is_empty() {
        return "  (no copy tried: no --source-dir holds it, and --offline tries no URL)".into();
    }
    attempts
        .iter()
        .map(|a| format!("  {}: {}", a.origin, a.error))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last sentence of the hint, only when a copy was refused by its hash: what a mismatch
/// means (an unreachable URL says nothing of the kind).
fn mismatch_note(attempts: &[SourceAttempt]) -> &'static str {
    if attempts
        .iter()
        .any(|a| a.error.contains("mismatch: expected"))
    {
        "; a hash mismatch means the upstream changed or the transfer was tampered with: pin again with `hermetic lock` only if the change is expected"
    } else {
        ""
    }
}

/// The store entry of a git tree.
pub fn git_step_key(tree_sha256: &str) -> String {
    format!("source-git-{tree_sha256}")
}

/// Where a fetched pin is: the blob of a file or deb, the checked archive of a git tree.
pub fn stored_path(store: &Store, pin: &SourcePin) -> Option<PathBuf> {
    let hash = pin.content_hash()?;
    match pin {
        SourcePin::Git { .. } => {
            let key = git_step_key(hash);
            store
                .has_step(&key)
                .then(|| store.step_path(&key).join("archive"))
        }
        // Many store entries, one per module file: see `gomod::pin_in_store`.
        SourcePin::GoModules { .. } => None,
        // Read from the project itself, never stored.
        SourcePin::Path { .. } => None,
        _ => store.has_blob(hash).then(|| store.blob_path(hash)),
    }
}

/// Has `pin` in the store: already there, or from the first of `source_dirs` and then its
/// URLs that gives a copy matching its hash. Gives the stored path (for a `go-modules`
/// pin, whose modules are many entries, the store's root; see `gomod::fetch_pin`).
pub fn fetch_source(
    store: &Store,
    http: &Http,
    pin: &SourcePin,
    source_dirs: &[PathBuf],
    offline: bool,
) -> Result<PathBuf, SourceError> {
    if let SourcePin::GoModules { .. } = pin {
        crate::sources::gomod::fetch_pin(store, http, pin, offline)
            .map_err(|e| SourceError::Go(Box::new(e)))?;
        return Ok(store.root().to_path_buf());
    }
    let what = pin.describe();
    if let SourcePin::Path { .. } = pin {
        return Err(SourceError::NotFetched { what });
    }
    let Some(expected) = pin.content_hash() else {
        return Err(SourceError::NoHash {
            what,
            field: pin.hash_field(),
        });
    };
    if !is_sha256(expected) {
        return Err(SourceError::BadHash {
            what,
            hash: expected.to_string(),
        });
    }
    if let Some(path) = stored_path(store, pin) {
        return Ok(path);
    }
    let mut attempts = Vec::new();
    for dir in source_dirs {
        for candidate in local_candidates(dir, pin) {
            let origin = candidate.display().to_string();
            let is_git = matches!(pin, SourcePin::Git { .. });
            if candidate.is_dir() && !is_git {
                continue;
            }
            let result = if candidate.is_dir() {
                pack_checkout(store, &candidate)
                    .map_err(|e| e.to_string())
                    .and_then(|tmp| put_git_archive(store, expected, &tmp, &origin))
            } else {
                match fs_err::File::open(&candidate) {
                    Ok(mut f) => put(store, pin, expected, &mut f, &origin),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => Err(e.to_string()),
                }
            };
            match result {
                Ok(path) => return Ok(path),
                Err(error) => attempts.push(SourceAttempt { origin, error }),
            }
        }
    }
    if !offline {
        for url in pin.urls() {
            let result = match http.get(&url, None) {
                Ok(mut download) => put(store, pin, expected, &mut download.reader, &url),
                Err(e) => Err(e.reason()),
            };
            match result {
                Ok(path) => return Ok(path),
                Err(error) => attempts.push(SourceAttempt { origin: url, error }),
            }
        }
    }
    Err(SourceError::unavailable(pin, attempts))
}

/// The content hash of `pin` as the first reachable copy has it (its URLs, after the
/// `source_dirs`), storing that copy: what `hermetic lock` records for a pin without one.
pub fn compute_content_hash(
    store: &Store,
    http: &Http,
    pin: &SourcePin,
    source_dirs: &[PathBuf],
) -> Result<String, SourceError> {
    let mut attempts = Vec::new();
    let try_copy = |tmp: &Path, origin: &str| -> Result<String, String> {
        let hash = match pin {
            SourcePin::Git { .. } => treehash::tree_hash_archive_as(tmp, Path::new(origin))
                .map_err(|e| error_chain(&e))?,
            _ => crate::hash::sha256_file(tmp).map_err(|e| e.to_string())?,
        };
        let mut f = fs_err::File::open(tmp).map_err(|e| e.to_string())?;
        put(store, pin, &hash, &mut f, origin)?;
        Ok(hash)
    };
    for dir in source_dirs {
        for candidate in local_candidates(dir, pin) {
            let origin = candidate.display().to_string();
            let is_git = matches!(pin, SourcePin::Git { .. });
            let result = if candidate.is_dir() && is_git {
                pack_checkout(store, &candidate)
                    .map_err(|e| e.to_string())
                    .and_then(|tmp| try_copy(&tmp.path().join("archive"), &origin))
            } else if candidate.is_file() {
                try_copy(&candidate, &origin)
            } else {
                continue;
            };
            match result {
                Ok(hash) => return Ok(hash),
                Err(error) => attempts.push(SourceAttempt { origin, error }),
            }
        }
    }
    for url in pin.urls() {
        let result = (|| {
            let mut download = http.get(&url, None).map_err(|e| e.reason())?;
            let tmp = store.temp_dir().map_err(|e| e.to_string())?;
            let path = tmp.path().join("download");
            let mut f = fs_err::File::create(&path).map_err(|e| e.to_string())?;
            io::copy(&mut download.reader, &mut f).map_err(|e| e.to_string())?;
            drop(f);
            try_copy(&path, &url)
        })();
        match result {
            Ok(hash) => return Ok(hash),
            Err(error) => attempts.push(SourceAttempt { origin: url, error }),
        }
    }
    Err(SourceError::unavailable(pin, attempts))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s.replace('\n', " ")
}

/// Where a `--source-dir` may hold `pin`: a file by its name or its URL's last segment; for
/// a git source a checkout directory `<name>-<commit>` or `<name>`, or `<name>-<commit>.tar.gz`
/// or `<name>.tar.gz` (and the other archive forms), in that order.
pub fn local_candidates(dir: &Path, pin: &SourcePin) -> Vec<PathBuf> {
    let mut names = Vec::new();
    if let SourcePin::Git { commit, .. } = pin {
        // `<name>-<commit>` first: a directory may hold copies of several commits.
        for stem in [format!("{}-{commit}", pin.name()), pin.name().to_string()] {
            names.push(stem.clone());
            for ext in ["tar.gz", "tgz", "tar.xz", "tar.zst", "tar", "zip"] {
                names.push(format!("{stem}.{ext}"));
            }
        }
    } else {
        names.push(pin.name().to_string());
    }
    for url in pin.urls() {
        if let Some(last) = url.rsplit('/').next().filter(|l| !l.is_empty()) {
            names.push(last.to_string());
        }
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for n in names {
        // Only plain names: a URL segment never reaches outside the directory.
        if n.contains('/') || n == "." || n == ".." {
            continue;
        }
        let p = dir.join(n);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Stores one copy of `pin` from `reader` if it matches `expected`; else says why and
/// stores nothing.
fn put(
    store: &Store,
    pin: &SourcePin,
    expected: &str,
    reader: &mut dyn Read,
    origin: &str,
) -> Result<PathBuf, String> {
    match pin {
        SourcePin::Git { .. } => {
            let tmp = store.temp_dir().map_err(|e| e.to_string())?;
            let path = tmp.path().join("archive");
            let mut f = fs_err::File::create(&path).map_err(|e| e.to_string())?;
            io::copy(reader, &mut f).map_err(|e| e.to_string())?;
            drop(f);
            put_git_archive(store, expected, &tmp, origin)
        }
        _ => match store.put_blob_from_reader(expected, None, reader) {
            Ok(path) => Ok(path),
            Err(StoreError::HashMismatch { expected, actual }) => Err(format!(
                "sha256 mismatch: expected {expected}, got {actual}; nothing stored"
            )),
            Err(e) => Err(error_chain(&e)),
        },
    }
}

/// Publishes the archive `tmp/archive` as the git tree `expected` if its tree hash is that.
fn put_git_archive(
    store: &Store,
    expected: &str,
    tmp: &crate::store::StoreTempDir,
    origin: &str,
) -> Result<PathBuf, String> {
    let archive = tmp.path().join("archive");
    let actual = treehash::tree_hash_archive_as(&archive, Path::new(origin))
        .map_err(|e: TreeHashError| error_chain(&e))?;
    if actual != expected {
        return Err(format!(
            "tree-sha256 mismatch: expected {expected}, got {actual}; nothing stored"
        ));
    }
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(&archive, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| e.to_string())?;
    // `publish_step` takes the temp dir by value; make a fresh one holding the same file.
    let publish = store.temp_dir().map_err(|e| e.to_string())?;
    fs_err::rename(&archive, publish.path().join("archive")).map_err(|e| e.to_string())?;
    let dir = store
        .publish_step(&git_step_key(expected), publish)
        .map_err(|e| error_chain(&e))?;
    Ok(dir.join("archive"))
}

/// Packs a checkout (without `.git`) into a plain tar `archive` in a store temp dir; the
/// tar, not the directory, is then hashed and kept, so a checkout changing meanwhile is
/// caught.
fn pack_checkout(store: &Store, dir: &Path) -> io::Result<crate::store::StoreTempDir> {
    let tmp = store.temp_dir().map_err(io::Error::other)?;
    let file = fs_err::File::create(tmp.path().join("archive"))?;
    let mut b = tar::Builder::new(file);
    b.follow_symlinks(false);
    add_tree(&mut b, dir, Path::new(""))?;
    b.into_inner()?.sync_all()?;
    Ok(tmp)
}

fn add_tree<W: io::Write>(b: &mut tar::Builder<W>, dir: &Path, rel: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = fs_err::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_name() == ".git" {
            continue;
        }
        let path = e.path();
        let name = rel.join(e.file_name());
        if e.file_type()?.is_dir() {
            add_tree(b, &path, &name)?;
        } else {
            b.append_path_with_name(&path, &name)?;
        }
    }
    Ok(())
}

/// What [`fetch_upstream`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct UpstreamFetch {
    /// Pins already in the store.
    pub already: usize,
    /// Pins stored by this run.
    pub fetched: usize,
}

/// Why some upstream pins of a lock could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{} upstream source pin(s) could not be fetched:\n{}", .errors.len(), .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct UpstreamFetchError {
    pub errors: Vec<SourceError>,
    /// The names of the sources that could not be had, in the order of `errors`.
    pub names: Vec<String>,
}

/// Has every `[[upstream]]` pin of `lock` in the store (see [`fetch_source`]); every failure
/// is reported, not only the first.
pub fn fetch_upstream(
    store: &Store,
    http: &Http,
    lock: &crate::lockfile::Lockfile,
    source_dirs: &[PathBuf],
    offline: bool,
) -> Result<UpstreamFetch, UpstreamFetchError> {
    let mut done = UpstreamFetch::default();
    let mut errors = Vec::new();
    let mut names = Vec::new();
    for u in &lock.upstream {
        // Part of the project: nothing to download.
        if let SourcePin::Path { .. } = &u.pin {
            continue;
        }
        if let SourcePin::GoModules { .. } = &u.pin {
            if crate::sources::gomod::pin_in_store(store, &u.pin) {
                done.already += 1;
                continue;
            }
        } else if stored_path(store, &u.pin).is_some() {
            done.already += 1;
            continue;
        }
        match fetch_source(store, http, &u.pin, source_dirs, offline) {
            Ok(_) => done.fetched += 1,
            Err(e) => {
                errors.push(e);
                names.push(u.pin.name().to_string());
            }
        }
    }
    if errors.is_empty() {
        Ok(done)
    } else {
        Err(UpstreamFetchError { errors, names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(error: &str) -> SourceAttempt {
        SourceAttempt {
            origin: "https://example.invalid/x.deb".into(),
            error: error.into(),
        }
    }

    #[test]
    fn the_hint_speaks_of_a_mismatch_only_when_a_copy_mismatched() {
        let unreachable = [attempt("unreachable: connection refused")];
        assert_eq!(mismatch_note(&unreachable), "");
        assert_eq!(mismatch_note(&[]), "");
        let tampered = [
            attempt("unreachable: connection refused"),
            attempt("sha256 mismatch: expected aa, got bb; nothing stored"),
        ];
        assert!(mismatch_note(&tampered).contains("pin again with `hermetic lock`"));
    }
}

//! The content-addressed store.
//!
//! Layout under the store directory (`--store`, `HERMETIC_STORE`, or the XDG cache):
//!
//! ```text
//! STORE/v1/CACHEDIR.TAG          marks the tree as a cache for backup tools
//! STORE/v1/.gitignore            `*`, so a store inside a work tree is never committed
//! STORE/v1/blobs/sha256/<hash>   verified files, named by their SHA-256
//! STORE/v1/steps/<key>/          published build-step output trees (marker file last)
//! STORE/v1/tmp/<name>            work in progress; renamed into place when verified
//! STORE/v1/tmp/<name>.owner      held locked by the process working in `tmp/<name>`
//! STORE/v1/kept/<name>           trees of failed steps kept by `--keep-failed`, until gc
//! STORE/v1/locks/<name>.lock     advisory file locks shared by hermetic processes
//! ```
//!
//! Nothing unverified is ever visible under `blobs/` or `steps/`: data is written to a
//! temporary file or directory under `tmp/` (same file system), checked, then renamed into
//! place. So the existence of a blob is the proof that it had its name's hash when it was
//! stored, and reading the store needs no lock; locks only keep two processes from doing the
//! same work twice.
//!
//! The store is still not trusted at use: whoever can write it can replace a file. So a
//! blob is checked against its pin where it is used ([`Store::verified_blob`], and
//! [`crate::deb::DebFile::open_pinned`] while a .deb is extracted), and a step's completion
//! marker holds the digest of its whole entry ([`step_digest`]), which `hermetic cache verify`
//! re-computes. A blob or entry found wrong is removed.
//!
//! Step trees hold setuid programs of the image (`su`, `mount`, ...) with their real modes:
//! `steps/`, `tmp/`, `kept/` and every entry in them are mode 0700, so that no other user can
//! reach them. [`Store::open`] repairs the modes of an older store.
//!
//! Each temporary entry `tmp/<name>` has a lock file `tmp/<name>.owner`, made and locked
//! before the entry and held for as long as its process works on it. An entry whose owner
//! lock can be taken belongs to a process that is gone (killed): [`Store::open`] and
//! `hermetic cache gc` remove it ([`Store::clean_tmp`]).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::TryLockError;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::hash::{hash_stream, is_sha256, sha256_hex};

/// The layout version: a store written by an incompatible hermetic lives under another name.
pub const LAYOUT: &str = "v1";

/// The file, inside a published step tree, whose presence says the tree is complete. It
/// holds the entry's digest (`entry-sha256 <hex>`, see [`step_digest`]); older hermetic left
/// it empty.
pub const STEP_COMPLETE_MARKER: &str = ".hermetic-complete";

/// The field of [`STEP_COMPLETE_MARKER`] holding the entry's digest.
const DIGEST_FIELD: &str = "entry-sha256";

/// Temporary entries without an owner lock (made by older hermetic) older than this are
/// left-overs of killed processes and are removed when the store is opened.
const STALE_TMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// The suffix of the owner lock file of a temporary entry: `tmp/<name>.owner`.
const OWNER_SUFFIX: &str = ".owner";

/// Where `--keep-failed` trees go: out of reach of the cleaning of `tmp/`, until gc.
const KEPT: &str = "kept";

/// The directories no other user may enter: they hold image trees, setuid files and all.
const PRIVATE_DIRS: [&str; 3] = ["steps", "tmp", KEPT];

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by hermetic.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// Errors of the store. Each names the path, or the blob, that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error")]
    Io(#[from] io::Error),
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{hash}` is not a SHA-256 (64 lowercase hexadecimal digits)")]
    BadHash { hash: String },
    #[error("download is {actual} bytes, expected {expected} (truncated or wrong file)")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("download has SHA-256 {actual}, expected {expected}")]
    HashMismatch { expected: String, actual: String },
    #[error("reading the data failed after {bytes} bytes")]
    Read {
        bytes: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "the stored file {path} ({what}) is not the pinned file: {problem}; {removed}\nhint: run `hermetic fetch` to download it again"
    )]
    BadBlob {
        path: PathBuf,
        what: String,
        problem: String,
        /// Whether the file was removed from the store.
        removed: String,
    },
}

/// An opened store (its versioned root exists and is marked).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The lock name of [`Store::use_guard`] and [`Store::gc_guard`].
const GC_LOCK: &str = "gc";

/// The disk space of the files and directories under `path` (allocated blocks, each inode
/// counted once, symbolic links not followed): what removing it frees when nothing outside
/// links to its files.
pub fn disk_usage(path: &Path) -> Result<u64, StoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs_err::symlink_metadata(&p)?;
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            for entry in fs_err::read_dir(&p)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(total)
}

/// Deletes a tree, first making its directories writable by their owner when a read-only
/// one (e.g. a package's mode 555 directory) stands in the way of an unprivileged user.
fn remove_tree(path: &Path) -> Result<(), StoreError> {
    if fs_err::remove_dir_all(path).is_ok() || !path.exists() {
        return Ok(());
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs_err::symlink_metadata(&p)?;
        if meta.is_dir() {
            let mode = meta.permissions().mode();
            if mode & 0o700 != 0o700 {
                // Not ours to change when another user owns it: the retry then names it.
                let _ = fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o700));
            }
            for entry in fs_err::read_dir(&p)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(fs_err::remove_dir_all(path)?)
}

/// Removes a file, or a tree.
fn remove_entry(path: &Path) -> Result<(), StoreError> {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => Ok(fs_err::remove_file(path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes the directory `path` mode 0700 when others may enter it. Fails naming the path when
/// it cannot (another user owns it).
fn make_private(path: &Path) -> Result<(), StoreError> {
    let meta = fs_err::symlink_metadata(path)?;
    if !meta.is_dir() || meta.mode() & 0o077 == 0 {
        return Ok(());
    }
    Ok(fs_err::set_permissions(
        path,
        std::fs::Permissions::from_mode(meta.mode() & 0o700 | 0o700),
    )?)
}

/// A held advisory lock; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: fs_err::File,
    path: PathBuf,
}

impl StoreLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The owner lock of a temporary entry, held (locked) for as long as this process works on
/// the entry. Dropping it removes the lock file, then releases the lock.
#[derive(Debug)]
struct TempOwner {
    file: std::fs::File,
    path: PathBuf,
    remove: bool,
}

impl Drop for TempOwner {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A temporary file under `tmp/`, removed when dropped unless persisted.
#[derive(Debug)]
pub struct StoreTempFile {
    // Fields drop in order: the file first, then its owner lock.
    file: tempfile::NamedTempFile,
    _owner: TempOwner,
}

impl StoreTempFile {
    pub fn as_file(&self) -> &std::fs::File {
        self.file.as_file()
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Renames the file to `dest` (on the store's file system).
    pub fn persist(self, dest: &Path) -> Result<(), StoreError> {
        let StoreTempFile { file, _owner } = self;
        file.persist(dest).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Write for StoreTempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A temporary directory under `tmp/` (mode 0700), removed when dropped unless published
/// ([`Store::publish_step`]) or kept ([`StoreTempDir::keep`]).
#[derive(Debug)]
pub struct StoreTempDir {
    path: PathBuf,
    kept_dir: PathBuf,
    owner: Option<TempOwner>,
}

impl StoreTempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the tree for inspection: it is moved to `STORE/v1/kept/`, which only
    /// `hermetic cache gc` empties. Returns where the tree now is.
    pub fn keep(mut self) -> PathBuf {
        let name = self.path.file_name().unwrap_or_default().to_owned();
        let dest = self.kept_dir.join(name);
        let path = std::mem::take(&mut self.path);
        match fs_err::rename(&path, &dest) {
            Ok(()) => dest,
            Err(e) => {
                // Still in tmp/: removed by the next run once this process is gone.
                eprintln!("warning: cannot keep {}: {e}", path.display());
                path
            }
        }
    }

    /// Disarms the removal: the caller renames the tree, then drops the owner.
    fn into_parts(mut self) -> (PathBuf, Option<TempOwner>) {
        (std::mem::take(&mut self.path), self.owner.take())
    }
}

impl Drop for StoreTempDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = remove_tree(&self.path);
        }
        // Then the owner lock goes (field `owner`).
    }
}

/// One blob found corrupt by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CorruptBlob {
    pub path: PathBuf,
    pub expected: String,
    pub actual: String,
}

/// One step entry found damaged by [`Store::verify`]: its digest is not the one its marker
/// recorded when it was published.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CorruptStep {
    pub key: String,
    pub path: PathBuf,
    pub expected: String,
    pub actual: String,
}

/// What [`Store::verify`] found (and removed).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Blobs checked.
    pub checked: u64,
    /// Bytes hashed, blobs and steps.
    pub bytes: u64,
    /// Blobs whose content does not have their name's hash; removed.
    pub corrupt: Vec<CorruptBlob>,
    /// Complete step entries checked against their marker's digest.
    pub steps_checked: u64,
    /// Step entries whose digest differs; removed.
    pub corrupt_steps: Vec<CorruptStep>,
    /// Step entries published by an older hermetic, whose marker has no digest.
    pub unverifiable_steps: Vec<String>,
}

/// What [`Store::clean_tmp`] removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TmpCleaning {
    /// Entries of `tmp/` whose owner is gone, with the space each held.
    pub removed: Vec<(String, u64)>,
    /// Total bytes freed.
    pub bytes: u64,
    /// Entries whose owner still runs.
    pub in_use: usize,
    /// Entries that could not be removed, with why.
    pub failed: Vec<(String, String)>,
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Which entries of `tmp/` [`Store::clean_tmp`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpPolicy {
    /// When the store is opened: entries whose owner lock can be taken, and entries without
    /// an owner lock (older hermetic) older than a day.
    AtOpen,
    /// By the collector, which holds the gc lock (no build, fetch or lock runs): entries
    /// without an owner lock go whatever their age too. `dry_run` removes nothing.
    Collect { dry_run: bool },
}

/// The digest of a step entry: the SHA-256 of one record per path below `dir` (not `dir`
/// itself, whose mode [`Store::open`] may repair, and not the top-level marker), in byte
/// order of the paths, depth first. A record holds the path, type, mode (with setuid bits),
/// owner, group, mtime, and for a file its size and the SHA-256 of its content, for a
/// symlink its target, for a device its numbers. Nothing is followed. A file or directory
/// the user cannot read is recorded as such (with its metadata), so the digest is the same
/// whenever the same user computes it. Returns the digest and the bytes hashed.
pub fn step_digest(dir: &Path) -> Result<(String, u64), StoreError> {
    let mut hasher = Sha256::new();
    hasher.update(b"hermetic step entry digest 1\n");
    let mut bytes = 0u64;
    // (relative path, absolute path); popped in ascending order.
    let mut stack: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    let children =
        |rel: &[u8], abs: &Path, stack: &mut Vec<(Vec<u8>, PathBuf)>| -> Result<bool, StoreError> {
            let entries = match fs_err::read_dir(abs) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let mut names = Vec::new();
            for entry in entries {
                names.push(entry?.file_name());
            }
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names.into_iter().rev() {
                let mut r = rel.to_vec();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(name.as_bytes());
                stack.push((r, abs.join(&name)));
            }
            Ok(true)
        };
    children(b"", dir, &mut stack)?;
    while let Some((rel, abs)) = stack.pop() {
        if rel == STEP_COMPLETE_MARKER.as_bytes() {
            continue;
        }
        let m = fs_err::symlink_metadata(&abs)?;
        let ft = m.file_type();
        let kind: u8 = if ft.is_dir() {
            b'd'
        } else if ft.is_file() {
            b'f'
        } else if ft.is_symlink() {
            b'l'
        } else {
            b'o'
        };
        let mut rec = Vec::with_capacity(rel.len() + 96);
        rec.extend_from_slice(&(rel.len() as u64).to_le_bytes());
        rec.extend_from_slice(&rel);
        rec.push(kind);
        rec.extend_from_slice(&(m.mode()).to_le_bytes());
        rec.extend_from_slice(&m.uid().to_le_bytes());
        rec.extend_from_slice(&m.gid().to_le_bytes());
        rec.extend_from_slice(&m.mtime().to_le_bytes());
        match kind {
            b'd' => {
                let readable = children(&rel, &abs, &mut stack)?;
                rec.push(u8::from(readable));
            }
            b'f' => {
                rec.extend_from_slice(&m.len().to_le_bytes());
                let opened = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&abs);
                match opened {
                    Ok(f) => {
                        let (sha, n) = hash_stream(f).map_err(|e| {
                            io::Error::new(e.kind(), format!("{e} reading {}", abs.display()))
                        })?;
                        bytes += n;
                        rec.push(1);
                        rec.extend_from_slice(&n.to_le_bytes());
                        rec.extend_from_slice(sha.as_bytes());
                    }
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => rec.push(0),
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("{e} opening {}", abs.display()),
                        )
                        .into());
                    }
                }
            }
            b'l' => {
                let target = fs_err::read_link(&abs)?;
                let t = target.as_os_str().as_bytes();
                rec.extend_from_slice(&(t.len() as u64).to_le_bytes());
                rec.extend_from_slice(t);
            }
            _ => rec.extend_from_slice(&m.rdev().to_le_bytes()),
        }
        hasher.update(&rec);
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

impl Store {
    /// Opens (creating if needed) the store in `dir`; the versioned root is `dir/v1`. Repairs
    /// the modes of `steps/`, `tmp/`, `kept/` and their entries (0700), and removes the
    /// temporary entries of processes that are gone, saying on standard error what that freed.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let store = Store::open_keeping_tmp(dir)?;
        // Best effort: a store that cannot be cleaned is still usable.
        if let Ok(cleaned) = store.clean_tmp(TmpPolicy::AtOpen)
            && !cleaned.removed.is_empty()
        {
            eprintln!(
                "removed {} temporary entries of killed runs from {} ({})",
                cleaned.removed.len(),
                store.root.join("tmp").display(),
                crate::archive::human_size(cleaned.bytes)
            );
        }
        Ok(store)
    }

    /// [`Store::open`] without cleaning `tmp/`: for `hermetic cache gc`, which cleans it
    /// itself and reports what it removed.
    pub fn open_keeping_tmp(dir: &Path) -> Result<Store, StoreError> {
        let root = dir.join(LAYOUT);
        for sub in ["blobs/sha256", "locks"] {
            fs_err::create_dir_all(root.join(sub))?;
        }
        for sub in PRIVATE_DIRS {
            let path = root.join(sub);
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{e}: cannot create {}", path.display()),
                    )
                    .into());
                }
            }
        }
        let store = Store { root };
        store.repair_modes()?;
        store.write_marker("CACHEDIR.TAG", CACHEDIR_TAG)?;
        store.write_marker(".gitignore", "*\n")?;
        Ok(store)
    }

    /// Makes `steps/`, `tmp/`, `kept/` and the directories in them mode 0700 (a store of an
    /// older hermetic had them 0755). A directory of another user that cannot be changed is
    /// an error for the three, and is left alone (with a warning) for their entries.
    fn repair_modes(&self) -> Result<(), StoreError> {
        for sub in PRIVATE_DIRS {
            let dir = self.root.join(sub);
            make_private(&dir)?;
            for entry in fs_err::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_type().is_ok_and(|t| t.is_dir())
                    && let Err(e) = make_private(&entry.path())
                {
                    eprintln!(
                        "warning: other users may enter {}: {e}",
                        entry.path().display()
                    );
                }
            }
        }
        Ok(())
    }

    fn write_marker(&self, name: &str, text: &str) -> Result<(), StoreError> {
        let path = self.root.join(name);
        if !path.exists() {
            let mut tmp = self.temp_file()?;
            tmp.write_all(text.as_bytes())?;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
            tmp.persist(&path)?;
        }
        Ok(())
    }

    /// Removes the entries of `tmp/` whose owning process is gone (its owner lock can be
    /// taken), and those without an owner lock as `policy` says. Returns what was removed.
    pub fn clean_tmp(&self, policy: TmpPolicy) -> Result<TmpCleaning, StoreError> {
        let dir = self.root.join("tmp");
        let dry_run = policy == TmpPolicy::Collect { dry_run: true };
        let mut names = BTreeSet::new();
        for entry in fs_err::read_dir(&dir)? {
            names.insert(entry?.file_name());
        }
        let mut report = TmpCleaning::default();
        let now = SystemTime::now();
        for name in &names {
            let bytes = name.as_bytes();
            let (stem, owner) = match bytes.strip_suffix(OWNER_SUFFIX.as_bytes()) {
                Some(stem) => (OsStr::from_bytes(stem), Some(dir.join(name))),
                None => {
                    let mut lock = name.clone();
                    lock.push(OWNER_SUFFIX);
                    if names.contains(&lock) {
                        continue; // handled with its lock file
                    }
                    (name.as_os_str(), None)
                }
            };
            let entry = dir.join(stem);
            // Held until the entry is gone, so that no new owner can take the name meanwhile.
            let mut _held = None;
            if let Some(lock) = &owner {
                let Ok(file) = fs_err::File::open(lock) else {
                    continue; // gone meanwhile
                };
                match file.try_lock() {
                    Ok(()) => _held = Some(file),
                    Err(TryLockError::WouldBlock) => {
                        report.in_use += 1;
                        continue;
                    }
                    Err(TryLockError::Error(_)) => continue,
                }
            } else if policy == TmpPolicy::AtOpen {
                let old = fs_err::symlink_metadata(&entry)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age > STALE_TMP_AGE);
                if !old {
                    continue;
                }
            }
            let mut size = disk_usage(&entry).unwrap_or(0);
            if let Some(lock) = &owner {
                size += disk_usage(lock).unwrap_or(0);
            }
            if !dry_run {
                let removed = remove_entry(&entry).and_then(|()| match &owner {
                    Some(lock) => remove_entry(lock),
                    None => Ok(()),
                });
                if let Err(e) = removed {
                    // The others are still worth removing.
                    report
                        .failed
                        .push((stem.to_string_lossy().into_owned(), error_chain(&e)));
                    continue;
                }
            }
            report.bytes += size;
            report
                .removed
                .push((stem.to_string_lossy().into_owned(), size));
        }
        Ok(report)
    }

    /// The versioned root (`STORE/v1`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this SHA-256 is (or would be) stored.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(sha256)
    }

    /// Whether a verified blob with this SHA-256 is in the store. Costs one `stat`: only
    /// verified blobs are ever published.
    pub fn has_blob(&self, sha256: &str) -> bool {
        is_sha256(sha256) && self.blob_path(sha256).is_file()
    }

    /// Makes and locks a new owner lock `tmp/<prefix><random>.owner`; returns it and the path
    /// of the entry it owns, `tmp/<prefix><random>` (not yet made).
    fn new_owner(&self, prefix: &str) -> Result<(TempOwner, PathBuf), StoreError> {
        let dir = self.root.join("tmp");
        loop {
            let named = tempfile::Builder::new()
                .prefix(prefix)
                .suffix(OWNER_SUFFIX)
                .rand_bytes(10)
                .tempfile_in(&dir)
                .map_err(|e| io::Error::new(e.kind(), format!("{e} in {}", dir.display())))?;
            let (file, path) = named.keep().map_err(|e| e.error)?;
            let mut owner = TempOwner {
                file,
                path,
                remove: true,
            };
            match owner.file.try_lock() {
                Ok(()) => {}
                // A cleaner saw the new file before we locked it: it removes it.
                Err(TryLockError::WouldBlock) => {
                    owner.remove = false;
                    continue;
                }
                Err(TryLockError::Error(e)) => {
                    return Err(StoreError::Lock {
                        path: owner.path.clone(),
                        source: e,
                    });
                }
            }
            // A cleaner may have locked and removed it between its creation and our lock.
            let ours = owner.file.metadata()?;
            let same = fs_err::symlink_metadata(&owner.path)
                .is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino());
            if !same {
                owner.remove = false;
                continue;
            }
            let name = owner.path.as_os_str().as_bytes();
            let entry = PathBuf::from(OsStr::from_bytes(&name[..name.len() - OWNER_SUFFIX.len()]));
            return Ok((owner, entry));
        }
    }

    /// A new temporary file under `tmp/` (mode 0600), removed when dropped unless persisted.
    pub fn temp_file(&self) -> Result<StoreTempFile, StoreError> {
        let (owner, path) = self.new_owner("blob-")?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("{e}: cannot create {}", path.display()))
            })?;
        Ok(StoreTempFile {
            file: tempfile::NamedTempFile::from_parts(
                file,
                tempfile::TempPath::try_from_path(path)?,
            ),
            _owner: owner,
        })
    }

    /// A new temporary directory under `tmp/` (mode 0700), removed when dropped unless
    /// published or kept.
    pub fn temp_dir(&self) -> Result<StoreTempDir, StoreError> {
        let (owner, path) = self.new_owner("tree-")?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("{e}: cannot create {}", path.display()))
            })?;
        // Whatever the umask.
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        Ok(StoreTempDir {
            path,
            kept_dir: self.root.join(KEPT),
            owner: Some(owner),
        })
    }
    /// Streams `reader` into the store, checking size (when given) and SHA-256 on the way.
    /// The blob becomes visible only once both match; on any error nothing is left behind.
    pub fn put_blob_from_reader(
        &self,
        expected_sha256: &str,
        expected_size: Option<u64>,
        reader: &mut dyn Read,
    ) -> Result<PathBuf, StoreError> {
        if !is_sha256(expected_sha256) {
            return Err(StoreError::BadHash {
                hash: expected_sha256.to_string(),
            });
        }
        let mut tmp = self.temp_file()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(StoreError::Read {
                        bytes: total,
                        source,
                    });
                }
            };
            total += n as u64;
            if let Some(expected) = expected_size
                && total > expected
            {
                return Err(StoreError::SizeMismatch {
                    expected,
                    actual: total,
                });
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])?;
        }
        if let Some(expected) = expected_size
            && total != expected
        {
            return Err(StoreError::SizeMismatch {
                expected,
                actual: total,
            });
        }
        let actual = hex::encode(hasher.finalize());
        if actual != expected_sha256 {
            return Err(StoreError::HashMismatch {
                expected: expected_sha256.to_string(),
                actual,
            });
        }
        // Blobs are read-only for everyone: readable from any sandbox, never edited in place.
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444))?;
        tmp.as_file().sync_data()?;
        let dest = self.blob_path(expected_sha256);
        tmp.persist(&dest)?;
        Ok(dest)
    }

    /// Stores `bytes` under their own SHA-256 and returns it.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = sha256_hex(bytes);
        if !self.has_blob(&hash) {
            self.put_blob_from_reader(&hash, Some(bytes.len() as u64), &mut &bytes[..])?;
        }
        Ok(hash)
    }

    /// Reads a whole blob.
    pub fn read_blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        Ok(fs_err::read(self.blob_path(sha256))?)
    }

    /// Takes the exclusive lock `name` (a file under `locks/`). If another process holds it,
    /// says so on standard error, then waits.
    pub fn lock(&self, name: &str) -> Result<StoreLock, StoreError> {
        self.take_lock(name, false)
    }

    /// Takes the lock `name` shared with other shared holders (readers).
    pub fn lock_shared(&self, name: &str) -> Result<StoreLock, StoreError> {
        self.take_lock(name, true)
    }

    fn take_lock(&self, name: &str, shared: bool) -> Result<StoreLock, StoreError> {
        let path = self.root.join("locks").join(format!("{name}.lock"));
        let lock_err = |source| StoreError::Lock {
            path: path.clone(),
            source,
        };
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let attempt = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match attempt {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                eprintln!(
                    "waiting for lock on {} (another hermetic process is using the store)",
                    path.display()
                );
                let blocked = if shared {
                    file.lock_shared()
                } else {
                    file.lock()
                };
                blocked.map_err(lock_err)?;
            }
            Err(TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        Ok(StoreLock { _file: file, path })
    }

    /// The path of blob `sha256`, checked against its pin before use: a regular file, of the
    /// pinned size (when the pin records one), with that SHA-256. `what` names the pin (a
    /// package or file name) for messages. A blob that does not match is removed from the
    /// store and the error says so.
    pub fn verified_blob(
        &self,
        sha256: &str,
        size: Option<u64>,
        what: &str,
    ) -> Result<PathBuf, StoreError> {
        let path = self.blob_path(sha256);
        let meta = fs_err::symlink_metadata(&path)?;
        if !meta.is_file() {
            return Err(self.reject_blob(sha256, what, "it is not a regular file".into()));
        }
        if let Some(expected) = size
            && meta.len() != expected
        {
            return Err(self.reject_blob(
                sha256,
                what,
                format!("it is {} bytes, pins.lock says {expected}", meta.len()),
            ));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("{e}: cannot open {}", path.display()))
            })?;
        let (actual, n) = hash_stream(file)
            .map_err(|e| io::Error::new(e.kind(), format!("{e} reading {}", path.display())))?;
        if actual != sha256 || size.is_some_and(|s| s != n) {
            return Err(self.reject_blob(
                sha256,
                what,
                format!("its SHA-256 is {actual} ({n} bytes)"),
            ));
        }
        Ok(path)
    }

    /// Removes blob `sha256`, found at use not to match its pin (`problem`), and returns the
    /// error that says so, naming the blob and `what` it was for.
    pub fn reject_blob(&self, sha256: &str, what: &str, problem: String) -> StoreError {
        let path = self.blob_path(sha256);
        let removed = match fs_err::remove_file(&path) {
            Ok(()) => "it was removed from the store".to_string(),
            Err(e) => format!("removing it failed ({e}): delete it"),
        };
        StoreError::BadBlob {
            path,
            what: what.to_string(),
            problem,
            removed,
        }
    }

    /// Where the output tree of the build step with this key is (or would be) published.
    pub fn step_path(&self, key: &str) -> PathBuf {
        self.root.join("steps").join(key)
    }

    /// Whether a complete output tree is published for this step key.
    pub fn has_step(&self, key: &str) -> bool {
        self.step_path(key).join(STEP_COMPLETE_MARKER).is_file()
    }

    /// The digest the marker of step `key` records; `None` for a marker of older hermetic
    /// (empty) or no marker.
    pub fn recorded_digest(&self, key: &str) -> Option<String> {
        let text = fs_err::read_to_string(self.step_path(key).join(STEP_COMPLETE_MARKER)).ok()?;
        text.lines()
            .filter_map(|l| l.strip_prefix(DIGEST_FIELD)?.strip_prefix(' '))
            .map(str::trim)
            .find(|d| is_sha256(d))
            .map(str::to_string)
    }

    /// Publishes a finished tree (made with [`Store::temp_dir`]) as the output of step `key`:
    /// the completion marker, holding the entry's [`step_digest`], is written last, then the
    /// whole tree is renamed into place in one step. If another process published the same
    /// key first, its tree is kept and ours discarded (same key, same content).
    pub fn publish_step(&self, key: &str, tree: StoreTempDir) -> Result<PathBuf, StoreError> {
        let dest = self.step_path(key);
        if self.has_step(key) {
            return Ok(dest);
        }
        let (digest, _) = step_digest(tree.path())?;
        let marker = tree.path().join(STEP_COMPLETE_MARKER);
        // `create_new`: never through whatever a step may have left under that name.
        let mut f = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)?;
        f.write_all(format!("{DIGEST_FIELD} {digest}\n").as_bytes())?;
        f.sync_all()?;
        drop(f);
        if dest.exists() {
            // A tree without marker cannot be published by us; it is a left-over of an
            // older layout or a manual copy. Move it aside so that rename can succeed.
            let aside = self.temp_dir()?;
            fs_err::rename(&dest, aside.path().join("old"))?;
        }
        let (src, owner) = tree.into_parts();
        let result = match fs_err::rename(&src, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if self.has_step(key) => {
                let _ = remove_tree(&src);
                Ok(dest)
            }
            Err(e) => {
                let _ = remove_tree(&src);
                Err(e.into())
            }
        };
        drop(owner);
        result
    }

    /// All blob hashes in the store, sorted.
    pub fn blobs(&self) -> Result<Vec<String>, StoreError> {
        self.names_in("blobs/sha256")
    }

    /// The sorted names in a directory of the store.
    fn names_in(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for entry in fs_err::read_dir(self.root.join(dir))? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The keys of every entry under `steps/` (complete or not), sorted.
    pub fn steps(&self) -> Result<Vec<String>, StoreError> {
        self.names_in("steps")
    }

    /// The names of the trees kept by `--keep-failed` (under `kept/`), sorted.
    pub fn kept(&self) -> Result<Vec<String>, StoreError> {
        self.names_in(KEPT)
    }

    /// Where the kept tree `name` is.
    pub fn kept_path(&self, name: &str) -> PathBuf {
        self.root.join(KEPT).join(name)
    }

    /// Removes the kept tree `name`.
    pub fn remove_kept(&self, name: &str) -> Result<(), StoreError> {
        remove_entry(&self.kept_path(name))
    }

    /// Takes the lock that keeps `hermetic cache gc` from removing what this process may
    /// still use: held shared by builds, fetches and locks, exclusively by the collector.
    pub fn use_guard(&self) -> Result<StoreLock, StoreError> {
        self.lock_shared(GC_LOCK)
    }

    /// Takes the collector's side of [`Store::use_guard`].
    pub fn gc_guard(&self) -> Result<StoreLock, StoreError> {
        self.lock(GC_LOCK)
    }

    /// Removes the entry of step `key`: it is first renamed into `tmp/` (so it is gone from
    /// `steps/` at once), then deleted.
    pub fn remove_step(&self, key: &str) -> Result<(), StoreError> {
        let aside = self.temp_dir()?;
        fs_err::rename(self.step_path(key), aside.path().join(key))?;
        remove_tree(aside.path())
    }

    /// Removes blob `sha256`.
    pub fn remove_blob(&self, sha256: &str) -> Result<(), StoreError> {
        Ok(fs_err::remove_file(self.blob_path(sha256))?)
    }

    /// Re-hashes every blob and every complete step entry; removes the blobs whose content
    /// does not match their name and the entries whose digest is not the one their marker
    /// recorded, and reports them. Entries of older hermetic (no digest in the marker) are
    /// listed as unverifiable. `progress` is called once per blob or entry checked.
    pub fn verify(&self, progress: &dyn Fn(u64)) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        for name in self.blobs()? {
            let path = self.blob_path(&name);
            let file = fs_err::File::open(&path)?;
            let (actual, n) = hash_stream(file)?;
            report.checked += 1;
            report.bytes += n;
            progress(n);
            if actual != name {
                self.remove_blob(&name)?;
                report.corrupt.push(CorruptBlob {
                    path,
                    expected: name,
                    actual,
                });
            }
        }
        for key in self.steps()? {
            if !self.has_step(&key) {
                continue; // never completed: `hermetic cache gc` removes it
            }
            let Some(expected) = self.recorded_digest(&key) else {
                report.unverifiable_steps.push(key);
                continue;
            };
            let path = self.step_path(&key);
            let (actual, n) = step_digest(&path)?;
            report.steps_checked += 1;
            report.bytes += n;
            progress(n);
            if actual != expected {
                self.remove_step(&key)?;
                report.corrupt_steps.push(CorruptStep {
                    key,
                    path,
                    expected,
                    actual,
                });
            }
        }
        Ok(report)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_marks_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tag = fs_err::read_to_string(store.root().join("CACHEDIR.TAG")).unwrap();
        assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
        let ignore = fs_err::read_to_string(store.root().join(".gitignore")).unwrap();
        assert_eq!(ignore.lines().next(), Some("*"));
        assert_eq!(store.root(), dir.path().join("v1"));
    }

    #[test]
    fn verified_blob_is_published_and_bad_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = b"hello store";
        let hash = sha256_hex(data);
        let err = store
            .put_blob_from_reader(&hash, Some(5), &mut &data[..])
            .unwrap_err();
        assert!(
            matches!(err, StoreError::SizeMismatch { expected: 5, .. }),
            "{err}"
        );
        let err = store
            .put_blob_from_reader(&hash, None, &mut &b"hello st0re"[..])
            .unwrap_err();
        assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
        assert!(!store.has_blob(&hash));
        assert_eq!(
            fs_err::read_dir(store.root().join("tmp")).unwrap().count(),
            0
        );
        let path = store
            .put_blob_from_reader(&hash, Some(data.len() as u64), &mut &data[..])
            .unwrap();
        assert!(store.has_blob(&hash));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs_err::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o444);
        assert_eq!(fs_err::read(path).unwrap(), data);
        assert_eq!(store.blobs().unwrap(), vec![hash]);
    }

    #[test]
    fn verify_finds_corrupt_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = store.put_blob_bytes(b"good").unwrap();
        let bad = store.put_blob_bytes(b"bad").unwrap();
        // Blobs are read-only: replace the file, as a bit rot stand-in.
        fs_err::remove_file(store.blob_path(&bad)).unwrap();
        fs_err::write(store.blob_path(&bad), b"rotten").unwrap();
        let report = store.verify(&|_| {}).unwrap();
        assert_eq!(report.checked, 2);
        assert_eq!(report.corrupt.len(), 1);
        assert_eq!(report.corrupt[0].expected, bad);
        assert_eq!(report.corrupt[0].actual, sha256_hex(b"rotten"));
        assert!(store.has_blob(&good));
    }

    #[test]
    fn steps_are_published_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.has_step("k1"));
        let tree = store.temp_dir().unwrap();
        fs_err::write(tree.path().join("out.txt"), b"x").unwrap();
        let path = store.publish_step("k1", tree).unwrap();
        assert!(store.has_step("k1"));
        assert_eq!(fs_err::read(path.join("out.txt")).unwrap(), b"x");
        // A second publisher of the same key keeps the first tree.
        let tree = store.temp_dir().unwrap();
        fs_err::write(tree.path().join("out.txt"), b"y").unwrap();
        let path = store.publish_step("k1", tree).unwrap();
        assert_eq!(fs_err::read(path.join("out.txt")).unwrap(), b"x");
    }

    #[test]
    fn concurrent_writers_of_one_blob_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = vec![7u8; 300_000];
        let hash = sha256_hex(&data);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    store
                        .put_blob_from_reader(&hash, Some(data.len() as u64), &mut &data[..])
                        .unwrap();
                });
            }
        });
        assert_eq!(fs_err::read(store.blob_path(&hash)).unwrap(), data);
        assert_eq!(
            fs_err::read_dir(store.root().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn locks_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let held = store.lock("fetch").unwrap();
        let other = fs_err::OpenOptions::new()
            .write(true)
            .open(held.path())
            .unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(held);
        other.try_lock().unwrap();
    }

    #[test]
    fn users_share_the_store_and_keep_the_collector_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.use_guard().unwrap();
        let b = store.use_guard().unwrap();
        let collector = fs_err::OpenOptions::new()
            .write(true)
            .open(a.path())
            .unwrap();
        assert!(matches!(
            collector.try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        drop(a);
        assert!(matches!(
            collector.try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        drop(b);
        collector.try_lock().unwrap();
        let user = fs_err::OpenOptions::new()
            .write(true)
            .open(collector.path())
            .unwrap();
        assert!(matches!(
            user.try_lock_shared(),
            Err(TryLockError::WouldBlock)
        ));
    }

    #[test]
    fn removed_steps_are_gone_with_their_read_only_directories() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = "c".repeat(64);
        let ro = store.step_path(&key).join("tree/ro");
        fs_err::create_dir_all(&ro).unwrap();
        fs_err::write(ro.join("f"), vec![1u8; 10_000]).unwrap();
        fs_err::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        assert_eq!(store.steps().unwrap(), std::slice::from_ref(&key));
        assert!(disk_usage(&store.step_path(&key)).unwrap() >= 10_000);
        store.remove_step(&key).unwrap();
        assert!(store.steps().unwrap().is_empty());
        assert!(!store.step_path(&key).exists());
        // Nothing left behind in tmp/ either.
        assert_eq!(
            fs_err::read_dir(store.root().join("tmp")).unwrap().count(),
            0
        );
    }

    fn mode(path: &Path) -> u32 {
        fs_err::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn tmp_names(store: &Store) -> Vec<String> {
        let mut v: Vec<String> = fs_err::read_dir(store.root().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn step_directories_are_private_and_old_stores_are_repaired() {
        let dir = tempfile::tempdir().unwrap();
        // An older store: everything 0755.
        let old = dir.path().join("v1");
        for sub in ["steps/k-old/tree", "tmp/tree-old", "blobs/sha256"] {
            fs_err::create_dir_all(old.join(sub)).unwrap();
        }
        for sub in [
            "steps",
            "steps/k-old",
            "steps/k-old/tree",
            "tmp",
            "tmp/tree-old",
        ] {
            fs_err::set_permissions(old.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        for sub in ["steps", "tmp", "kept", "steps/k-old", "tmp/tree-old"] {
            assert_eq!(mode(&store.root().join(sub)), 0o700, "{sub}");
        }
        // Inside an entry, the tree keeps its own modes: only the top is closed.
        assert_eq!(mode(&store.step_path("k-old").join("tree")), 0o755);
        // Blobs stay readable by all.
        assert_eq!(mode(&store.root().join("blobs/sha256")) & 0o055, 0o055);
        // New entries are private from the start, whatever the umask.
        let tree = store.temp_dir().unwrap();
        assert_eq!(mode(tree.path()), 0o700);
        fs_err::write(tree.path().join("f"), b"x").unwrap();
        let path = store.publish_step("k-new", tree).unwrap();
        assert_eq!(mode(&path), 0o700);
    }

    #[test]
    fn temp_entries_are_owned_and_only_dead_owners_lose_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = store.temp_dir().unwrap();
        let name = live
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(tmp_names(&store), [name.clone(), format!("{name}.owner")]);
        // The owner lock is held: another open file description cannot take it.
        let lock = fs_err::File::open(store.root().join(format!("tmp/{name}.owner"))).unwrap();
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
        drop(lock);
        // A killed process's entry: its lock file is there, nobody holds it. Fresh, big.
        let dead = store.root().join("tmp/tree-dead");
        fs_err::create_dir_all(dead.join("usr/ro")).unwrap();
        fs_err::write(dead.join("usr/ro/big"), vec![1u8; 100_000]).unwrap();
        fs_err::set_permissions(dead.join("usr/ro"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        fs_err::write(store.root().join("tmp/tree-dead.owner"), b"").unwrap();
        // A fresh entry of an older hermetic (no owner lock): kept at open, for a day.
        fs_err::create_dir(store.root().join("tmp/tree-unowned")).unwrap();

        // A dry run of the collector says what it would remove, and removes nothing.
        let dry = store
            .clean_tmp(TmpPolicy::Collect { dry_run: true })
            .unwrap();
        let names: Vec<&str> = dry.removed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["tree-dead", "tree-unowned"]);
        assert!(dry.bytes >= 100_000, "{dry:?}");
        assert_eq!(dry.in_use, 1);
        assert!(dead.exists());

        // The next run: the dead entry goes, the live and the unowned ones stay.
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(
            tmp_names(&again),
            [name.clone(), format!("{name}.owner"), "tree-unowned".into()]
        );
        // The collector takes the unowned one too, never the live one.
        let gc = again
            .clean_tmp(TmpPolicy::Collect { dry_run: false })
            .unwrap();
        assert_eq!(gc.removed.len(), 1);
        assert_eq!(tmp_names(&again), [name.clone(), format!("{name}.owner")]);
        drop(live);
        assert!(tmp_names(&again).is_empty());
    }

    #[test]
    fn kept_trees_are_out_of_reach_of_the_tmp_cleaning() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tree = store.temp_dir().unwrap();
        fs_err::write(tree.path().join("log"), b"why it failed").unwrap();
        let kept = tree.keep();
        assert_eq!(kept.parent().unwrap(), store.root().join("kept"));
        assert!(tmp_names(&store).is_empty());
        let store = Store::open(dir.path()).unwrap();
        store
            .clean_tmp(TmpPolicy::Collect { dry_run: false })
            .unwrap();
        assert_eq!(fs_err::read(kept.join("log")).unwrap(), b"why it failed");
        let name = kept.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(store.kept().unwrap(), std::slice::from_ref(&name));
        store.remove_kept(&name).unwrap();
        assert!(!kept.exists());
    }

    #[test]
    fn step_markers_carry_a_digest_that_verify_checks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let publish = |key: &str| {
            let tree = store.temp_dir().unwrap();
            fs_err::create_dir_all(tree.path().join("tree/usr/bin")).unwrap();
            fs_err::write(tree.path().join("tree/usr/bin/su"), b"\x7fELF su").unwrap();
            fs_err::set_permissions(
                tree.path().join("tree/usr/bin/su"),
                std::fs::Permissions::from_mode(0o4755),
            )
            .unwrap();
            std::os::unix::fs::symlink("usr/bin", tree.path().join("tree/bin")).unwrap();
            store.publish_step(key, tree).unwrap()
        };
        let keys = [
            "a".repeat(64),
            "b".repeat(64),
            "c".repeat(64),
            "d".repeat(64),
        ];
        let paths: Vec<PathBuf> = keys.iter().map(|k| publish(k)).collect();
        let digest = store.recorded_digest(&keys[0]).unwrap();
        assert_eq!(step_digest(&paths[0]).unwrap().0, digest);
        // Same content, same digest; the key is not part of it.
        assert_eq!(store.recorded_digest(&keys[1]).unwrap(), digest);
        let report = store.verify(&|_| {}).unwrap();
        assert_eq!(report.steps_checked, 4);
        assert!(report.corrupt_steps.is_empty());

        // A flipped byte, a changed mode (setuid dropped), a retargeted link; an old marker.
        let su = paths[0].join("tree/usr/bin/su");
        let mut bytes = fs_err::read(&su).unwrap();
        bytes[1] ^= 1;
        fs_err::write(&su, bytes).unwrap();
        fs_err::set_permissions(
            paths[1].join("tree/usr/bin/su"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        fs_err::remove_file(paths[2].join("tree/bin")).unwrap();
        std::os::unix::fs::symlink("/etc", paths[2].join("tree/bin")).unwrap();
        fs_err::write(paths[3].join(STEP_COMPLETE_MARKER), b"").unwrap();
        let report = store.verify(&|_| {}).unwrap();
        let corrupt: Vec<&str> = report
            .corrupt_steps
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(corrupt, [&keys[0], &keys[1], &keys[2]]);
        assert_eq!(report.corrupt_steps[0].expected, digest);
        assert_eq!(report.unverifiable_steps, [keys[3].clone()]);
        // The damaged entries are gone; the unverifiable one is left alone.
        assert_eq!(store.steps().unwrap(), [keys[3].clone()]);
        assert!(tmp_names(&store).is_empty());
    }

    #[test]
    fn blobs_are_checked_against_their_pins_at_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = b"pinned bytes";
        let hash = store.put_blob_bytes(data).unwrap();
        let n = data.len() as u64;
        assert_eq!(
            store.verified_blob(&hash, Some(n), "x").unwrap(),
            store.blob_path(&hash)
        );
        // Replaced by a file of another size: refused, named, removed.
        let replace = |bytes: &[u8]| {
            let _ = fs_err::remove_file(store.blob_path(&hash));
            fs_err::write(store.blob_path(&hash), bytes).unwrap();
        };
        replace(b"other, longer bytes");
        let err = store
            .verified_blob(&hash, Some(n), "package x_1")
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::BadBlob { .. }), "{text}");
        assert!(
            text.contains(&hash) && text.contains("package x_1"),
            "{text}"
        );
        assert!(
            text.contains(&format!("19 bytes, pins.lock says {n}")),
            "{text}"
        );
        assert!(text.contains("hermetic fetch"), "{text}");
        assert!(!store.blob_path(&hash).exists());
        // The same size, one byte flipped: the hash finds it, also without a pinned size.
        replace(b"pinned bytez");
        let text = store
            .verified_blob(&hash, None, "x")
            .unwrap_err()
            .to_string();
        assert!(text.contains(&sha256_hex(b"pinned bytez")), "{text}");
        assert!(!store.blob_path(&hash).exists());
        // A symlink in its place is not followed.
        std::os::unix::fs::symlink("/etc/hostname", store.blob_path(&hash)).unwrap();
        let text = store
            .verified_blob(&hash, None, "x")
            .unwrap_err()
            .to_string();
        assert!(text.contains("not a regular file"), "{text}");
        assert!(fs_err::symlink_metadata(store.blob_path(&hash)).is_err());
    }
}

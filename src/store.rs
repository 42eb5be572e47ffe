//! The content-addressed store.
//!
//! Layout under the store directory (`--store`, `HERMETIC_STORE`, or the XDG cache):
//!
//! ```text
//! STORE/v1/CACHEDIR.TAG          marks the tree as a cache for backup tools
//! STORE/v1/.gitignore            `*`, so a store inside a work tree is never committed
//! STORE/v1/blobs/sha256/<hash>   verified files, named by their SHA-256
//! STORE/v1/steps/<key>/          published build-step output trees (marker file last)
//! STORE/v1/tmp/                  work in progress; renamed into place when verified
//! STORE/v1/locks/<name>.lock     advisory file locks shared by hermetic processes
//! ```
//!
//! Nothing unverified is ever visible under `blobs/` or `steps/`: data is written to a
//! temporary file or directory under `tmp/` (same file system), checked, then renamed into
//! place. So the existence of a blob is the proof that it has its name's hash, and reading
//! the store needs no lock; locks only keep two processes from doing the same work twice.

use std::fs::TryLockError;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// The layout version: a store written by an incompatible hermetic lives under another name.
pub const LAYOUT: &str = "v1";

/// The file, inside a published step tree, whose presence says the tree is complete.
pub const STEP_COMPLETE_MARKER: &str = ".hermetic-complete";

/// Temporary files older than this are left-overs of killed processes and are removed.
const STALE_TMP_AGE: Duration = Duration::from_secs(24 * 3600);

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
    use std::os::unix::fs::MetadataExt as _;
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
    use std::os::unix::fs::PermissionsExt as _;
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

/// One entry found corrupt by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CorruptBlob {
    pub path: PathBuf,
    pub expected: String,
    pub actual: String,
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    pub checked: u64,
    pub bytes: u64,
    pub corrupt: Vec<CorruptBlob>,
}

/// Whether `s` is a lowercase hexadecimal SHA-256.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The lowercase hexadecimal SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Store {
    /// Opens (creating if needed) the store in `dir`; the versioned root is `dir/v1`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let root = dir.join(LAYOUT);
        for sub in ["blobs/sha256", "steps", "tmp", "locks"] {
            fs_err::create_dir_all(root.join(sub))?;
        }
        let store = Store { root };
        store.write_marker("CACHEDIR.TAG", CACHEDIR_TAG)?;
        store.write_marker(".gitignore", "*\n")?;
        store.remove_stale_tmp();
        Ok(store)
    }

    fn write_marker(&self, name: &str, text: &str) -> Result<(), StoreError> {
        let path = self.root.join(name);
        if !path.exists() {
            let mut tmp = self.temp_file()?;
            tmp.write_all(text.as_bytes())?;
            tmp.persist(&path).map_err(|e| e.error)?;
        }
        Ok(())
    }

    /// Removes temporary entries left behind by killed processes (best effort).
    fn remove_stale_tmp(&self) {
        let Ok(entries) = fs_err::read_dir(self.root.join("tmp")) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > STALE_TMP_AGE);
            if old {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs_err::remove_dir_all(&path)
                } else {
                    fs_err::remove_file(&path)
                };
            }
        }
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

    /// A new temporary file under `tmp/`, removed when dropped unless persisted.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        Ok(tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.root.join("tmp"))
            .map_err(|e| io::Error::new(e.kind(), format!("{e} in {}", self.root.display())))?)
    }

    /// A new temporary directory under `tmp/`, removed when dropped unless published.
    pub fn temp_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        Ok(tempfile::Builder::new()
            .prefix("tree-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(|e| io::Error::new(e.kind(), format!("{e} in {}", self.root.display())))?)
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
        tmp.persist(&dest).map_err(|e| e.error)?;
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

    /// Where the output tree of the build step with this key is (or would be) published.
    pub fn step_path(&self, key: &str) -> PathBuf {
        self.root.join("steps").join(key)
    }

    /// Whether a complete output tree is published for this step key.
    pub fn has_step(&self, key: &str) -> bool {
        self.step_path(key).join(STEP_COMPLETE_MARKER).is_file()
    }

    /// Publishes a finished tree (made with [`Store::temp_dir`]) as the output of step `key`:
    /// the completion marker is written last, then the whole tree is renamed into place in
    /// one step. If another process published the same key first, its tree is kept and
    /// ours discarded (same key, same content).
    pub fn publish_step(&self, key: &str, tree: tempfile::TempDir) -> Result<PathBuf, StoreError> {
        let dest = self.step_path(key);
        if self.has_step(key) {
            return Ok(dest);
        }
        let marker = tree.path().join(STEP_COMPLETE_MARKER);
        let f = fs_err::File::create(&marker)?;
        f.sync_all()?;
        let src = tree.keep();
        if dest.exists() {
            // A tree without marker cannot be published by us; it is a left-over of an
            // older layout or a manual copy. Move it aside so that rename can succeed.
            let aside = self.temp_dir()?.keep();
            fs_err::rename(&dest, aside.join("old"))?;
            let _ = fs_err::remove_dir_all(&aside);
        }
        match fs_err::rename(&src, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if self.has_step(key) => {
                let _ = fs_err::remove_dir_all(&src);
                Ok(dest)
            }
            Err(e) => {
                let _ = fs_err::remove_dir_all(&src);
                Err(e.into())
            }
        }
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
        let aside = self.temp_dir()?.keep();
        fs_err::rename(self.step_path(key), aside.join(key))?;
        remove_tree(&aside)
    }

    /// Removes blob `sha256`.
    pub fn remove_blob(&self, sha256: &str) -> Result<(), StoreError> {
        Ok(fs_err::remove_file(self.blob_path(sha256))?)
    }

    /// Re-hashes every blob and reports the ones whose content does not match their name.
    /// `progress` is called with the size of each blob checked.
    pub fn verify(&self, progress: &dyn Fn(u64)) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        for name in self.blobs()? {
            let path = self.blob_path(&name);
            let mut file = fs_err::File::open(&path)?;
            let mut hasher = Sha256::new();
            let n = io::copy(&mut file, &mut hasher)?;
            let actual = hex::encode(hasher.finalize());
            report.checked += 1;
            report.bytes += n;
            progress(n);
            if actual != name {
                report.corrupt.push(CorruptBlob {
                    path,
                    expected: name,
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
}

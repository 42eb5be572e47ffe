//! Walking a directory tree for the archive writers ([`crate::treetar`], the initrd's
//! [`crate::image::cpio`]) and tree manifests: every entry with its `lstat` metadata (symbolic
//! links are entries, never followed), in a fixed order whatever the readdir order, and the
//! per-entry policies the writers share: the ids the entry stands for ([`IdMap`]), its mtime
//! clamped to a build's epoch, its link target.
//!
//! File contents are not read here: a writer streams them when it reaches the entry.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A path of the tree that could not be listed, `lstat`ed or read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}")]
pub struct WalkError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalkError + '_ {
    move |source| WalkError {
        path: path.to_path_buf(),
        source,
    }
}

/// The order of [`walk`]'s entries. Both put a directory before everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Component by component, comparing bytes: `a`, `a/c`, `a-b` (GNU tar's
    /// `--sort=name`): a directory's subtree is contiguous, so GNU tar, which restores a
    /// directory's mtime once it has left it, does not leave `a` with the time of extraction.
    Components,
    /// By the whole relative path's bytes: `a`, `a-b`, `a/c` (`LC_ALL=C sort`, what
    /// `find | sort | cpio` gives).
    Bytes,
}

/// One entry of the tree.
#[derive(Debug)]
pub struct Entry {
    /// Relative to the root, without a leading `./` or trailing `/`; empty for the root.
    pub rel: Vec<u8>,
    /// `lstat` of the entry.
    pub meta: Metadata,
}

impl Entry {
    /// The entry's path below `root`.
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join(OsStr::from_bytes(&self.rel))
    }

    /// The mtime in whole seconds, clamped to `0..=epoch`.
    pub fn clamped_mtime(&self, epoch: u64) -> u64 {
        u64::try_from(self.meta.mtime()).unwrap_or(0).min(epoch)
    }

    /// The uid and gid the entry stands for: mapped back through `id_map` when the tree was
    /// made in a user namespace, else as on the host.
    pub fn ids(&self, id_map: Option<IdMap>) -> (u32, u32) {
        let (uid, gid) = (self.meta.uid(), self.meta.gid());
        match id_map {
            Some(map) => (map.uid(uid), map.gid(gid)),
            None => (uid, gid),
        }
    }

    /// The target of a symbolic link (`path` is [`Entry::path`]).
    pub fn link_target(&self, path: &Path) -> Result<PathBuf, WalkError> {
        fs_err::read_link(path).map_err(read_err(path))
    }
}

/// Lists the tree at `root` recursively (`lstat`, never following symbolic links), the root
/// itself first if `with_root`, in `order`. Only names and metadata are held in memory.
pub fn walk(root: &Path, with_root: bool, order: Order) -> Result<Vec<Entry>, WalkError> {
    let meta = fs_err::symlink_metadata(root).map_err(read_err(root))?;
    let mut out = vec![Entry {
        rel: Vec::new(),
        meta,
    }];
    let mut i = 0;
    while i < out.len() {
        // Without the root, its children are listed whatever it is (a link to a directory is
        // followed; a file is an error), as listing a directory's contents does.
        if out[i].meta.is_dir() || (i == 0 && !with_root) {
            let rel = out[i].rel.clone();
            let dir = root.join(OsStr::from_bytes(&rel));
            for entry in fs_err::read_dir(&dir).map_err(read_err(&dir))? {
                let entry = entry.map_err(read_err(&dir))?;
                let path = entry.path();
                let meta = fs_err::symlink_metadata(&path).map_err(read_err(&path))?;
                let mut child = rel.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(entry.file_name().as_bytes());
                out.push(Entry { rel: child, meta });
            }
        }
        i += 1;
    }
    if !with_root {
        out.remove(0);
    }
    match order {
        Order::Components => {
            out.sort_by(|a, b| a.rel.split(|&c| c == b'/').cmp(b.rel.split(|&c| c == b'/')))
        }
        Order::Bytes => out.sort_by(|a, b| a.rel.cmp(&b.rel)),
    }
    Ok(out)
}

/// How the ids of a tree made in a user namespace map back to the ids inside it: host id
/// `root` is 0, host ids `start..start + count` are `1..=count`; any other host id was not
/// mapped inside and is written as 65534 (`nobody`), the overflow id the kernel shows for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub root_uid: u32,
    pub uid_start: u32,
    pub root_gid: u32,
    pub gid_start: u32,
    pub count: u32,
}

impl IdMap {
    fn map(host: u32, root: u32, start: u32, count: u32) -> u32 {
        if host == root {
            0
        } else if host >= start && host - start < count {
            host - start + 1
        } else {
            65534
        }
    }

    /// The id inside for host uid `host`.
    pub fn uid(&self, host: u32) -> u32 {
        Self::map(host, self.root_uid, self.uid_start, self.count)
    }

    /// The id inside for host gid `host`.
    pub fn gid(&self, host: u32) -> u32 {
        Self::map(host, self.root_gid, self.gid_start, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_map_back_to_sandbox_ids() {
        let m = IdMap {
            root_uid: 1000,
            uid_start: 100000,
            root_gid: 1000,
            gid_start: 200000,
            count: 65535,
        };
        assert_eq!(m.uid(1000), 0);
        assert_eq!(m.uid(100000), 1);
        assert_eq!(m.uid(100041), 42);
        assert_eq!(m.gid(200041), 42);
        assert_eq!(m.uid(100000 + 65535), 65534);
        assert_eq!(m.uid(0), 65534);
    }

    #[test]
    fn both_orders_put_a_directory_before_its_subtree() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a/c", "a-b"] {
            fs_err::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::os::unix::fs::symlink("missing", dir.path().join("a/l")).unwrap();
        let names = |with_root, order| -> Vec<String> {
            walk(dir.path(), with_root, order)
                .unwrap()
                .into_iter()
                .map(|e| String::from_utf8(e.rel).unwrap())
                .collect()
        };
        assert_eq!(
            names(true, Order::Components),
            ["", "a", "a/c", "a/l", "a-b"]
        );
        assert_eq!(names(false, Order::Bytes), ["a", "a-b", "a/c", "a/l"]);
        // The dangling link is an entry, not followed.
        let e = walk(dir.path(), false, Order::Bytes).unwrap();
        let l = e.iter().find(|e| e.rel == b"a/l").unwrap();
        assert!(l.meta.file_type().is_symlink());
        assert_eq!(
            l.link_target(&l.path(dir.path())).unwrap(),
            Path::new("missing")
        );
    }

    #[test]
    fn an_unreadable_root_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let e = walk(&gone, true, Order::Bytes).unwrap_err();
        assert_eq!(e.path, gone);
    }
}

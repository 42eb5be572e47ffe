//! A step entry as one layer: the deterministic tar of the whole entry (`tree/`, `files/`,
//! the log; not the completion marker, which the receiving store writes itself) with the
//! owners the sandbox sees (root 0, subordinate ids 1…), so that it means the same on a host
//! with other subordinate ranges; and its extraction into a new store entry, which treats
//! the archive as hostile: plain relative names only, nothing written through a symbolic
//! link or outside the entry, hard links only to regular files extracted before.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use crate::store::{STEP_COMPLETE_MARKER, Store, StoreTempDir};
use crate::treetar::{IdMap, TarOptions, TreeTarError};

/// Errors of archiving or extracting a step entry. Each names the entry or the path.
#[derive(Debug, thiserror::Error)]
pub enum StepArchiveError {
    #[error("cannot archive the step entry {}", entry.display())]
    Archive {
        entry: PathBuf,
        #[source]
        source: TreeTarError,
    },
    #[error("the archive of step {key} is malformed: {problem}")]
    Malformed { key: String, problem: String },
    #[error(
        "the archive of step {key} names {path:?}, which {problem}; refused (a cache must not write outside the entry)"
    )]
    Hostile {
        key: String,
        path: String,
        problem: String,
    },
    #[error("cannot extract {} of step {key}", path.display())]
    Write {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot give {} of step {key} its owner {uid}:{gid}: this user may not change owners\nhint: run as root or let the step build; step outputs made with subordinate ids can only be restored by a user who may set them",
        path.display()
    )]
    Owner {
        key: String,
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
}

/// The host ids ↔ sandbox ids of this machine, if it has subordinate ids.
pub fn id_map() -> Option<IdMap> {
    crate::build::exec::sandbox_id_map().ok()
}

/// Writes the tar of the entry of step `key` to `out`; returns its SHA-256 and size.
pub fn archive(
    store: &Store,
    key: &str,
    out: &mut dyn std::io::Write,
) -> Result<(String, u64), StepArchiveError> {
    let entry = store.step_path(key);
    let opts = TarOptions {
        // Keep every mtime: the entry is restored as it was.
        source_date_epoch: i64::MAX as u64,
        owner: None,
        id_map: id_map(),
    };
    let summary = crate::treetar::write_tree(&entry, out, &opts).map_err(|source| {
        StepArchiveError::Archive {
            entry: entry.clone(),
            source,
        }
    })?;
    Ok((summary.sha256, summary.bytes))
}

/// The host id for sandbox id `inside` (the inverse of [`IdMap`]).
fn host_id(map: Option<&IdMap>, inside: u64, uid: bool) -> u32 {
    let inside = inside.min(u32::MAX as u64) as u32;
    let Some(m) = map else { return inside };
    let (root, start) = if uid {
        (m.root_uid, m.uid_start)
    } else {
        (m.root_gid, m.gid_start)
    };
    match inside {
        0 => root,
        n if n <= m.count => start + n - 1,
        _ => root,
    }
}

/// Extracts the tar `archive` (of step `key`) into a new temporary entry of `store`, ready
/// for [`Store::publish_step`].
pub fn extract(
    store: &Store,
    key: &str,
    archive: impl Read,
) -> Result<StoreTempDir, StepArchiveError> {
    let temp = store.temp_dir().map_err(|e| StepArchiveError::Write {
        key: key.to_string(),
        path: store.root().join("tmp"),
        source: std::io::Error::other(e.to_string()),
    })?;
    let root = temp.path().to_path_buf();
    let map = id_map();
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StepArchiveError::Write {
            key: key.to_string(),
            path,
            source,
        }
    };
    let malformed = |problem: String| StepArchiveError::Malformed {
        key: key.to_string(),
        problem,
    };
    // Directories get their modes and times once everything inside them is written.
    let mut dirs: Vec<(PathBuf, u32, i64)> = Vec::new();
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().map_err(|e| malformed(e.to_string()))? {
        let mut entry = entry.map_err(|e| malformed(e.to_string()))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = plain_relative(&raw).ok_or_else(|| StepArchiveError::Hostile {
            key: key.to_string(),
            path: name.clone(),
            problem: "is not a plain relative path".into(),
        })?;
        if rel.as_os_str().is_empty() || rel == Path::new(STEP_COMPLETE_MARKER) {
            continue;
        }
        check_parents(&root, &rel).map_err(|problem| StepArchiveError::Hostile {
            key: key.to_string(),
            path: name.clone(),
            problem,
        })?;
        let dest = root.join(&rel);
        let header = entry.header();
        let mode = header.mode().map_err(|e| malformed(e.to_string()))? & 0o7777;
        let uid = host_id(map.as_ref(), header.uid().unwrap_or(0), true);
        let gid = host_id(map.as_ref(), header.gid().unwrap_or(0), false);
        let mtime = header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        let kind = header.entry_type();
        match kind {
            tar::EntryType::Directory => {
                fs_err::create_dir(&dest).map_err(write_err(&dest))?;
                chown(key, &dest, uid, gid)?;
                dirs.push((dest, mode, mtime));
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode_nofollow()
                    .open(&dest)
                    .map_err(write_err(&dest))?;
                std::io::copy(&mut entry, &mut f).map_err(write_err(&dest))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| malformed(format!("the link {name} has no target")))?
                    .into_owned();
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dest)
                    .map_err(write_err(&dest))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| malformed(format!("the hard link {name} has no target")))?
                    .into_owned();
                let target_rel =
                    plain_relative(&target).ok_or_else(|| StepArchiveError::Hostile {
                        key: key.to_string(),
                        path: name.clone(),
                        problem: "is a hard link to a path that is not plain and relative".into(),
                    })?;
                check_parents(&root, &target_rel).map_err(|problem| StepArchiveError::Hostile {
                    key: key.to_string(),
                    path: name.clone(),
                    problem: format!("is a hard link whose target {problem}"),
                })?;
                let source = root.join(&target_rel);
                let is_file = fs_err::symlink_metadata(&source).is_ok_and(|m| m.is_file());
                if !is_file {
                    return Err(StepArchiveError::Hostile {
                        key: key.to_string(),
                        path: name,
                        problem: "is a hard link to something not extracted before as a file"
                            .into(),
                    });
                }
                fs_err::hard_link(&source, &dest).map_err(write_err(&dest))?;
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let kind = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0) as u64;
                let minor = header.device_minor().ok().flatten().unwrap_or(0) as u64;
                nix::sys::stat::mknod(
                    &dest,
                    kind,
                    Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(major, minor),
                )
                .map_err(|e| write_err(&dest)(e.into()))?;
            }
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => continue,
            other => {
                return Err(malformed(format!(
                    "{name} is of an unknown kind ({other:?})"
                )));
            }
        }
        chown(key, &dest, uid, gid)?;
        if kind != tar::EntryType::Symlink {
            // After chown, which clears the set-id bits.
            fs_err::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .map_err(write_err(&dest))?;
        }
        set_mtime(&dest, mtime).map_err(write_err(&dest))?;
    }
    for (dir, mode, mtime) in dirs.iter().rev() {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(*mode))
            .map_err(write_err(dir))?;
        set_mtime(dir, *mtime).map_err(write_err(dir))?;
    }
    Ok(temp)
}

/// `./a/b` or `a/b` as a relative path of plain components; `None` for an absolute path or
/// one with `..`.
fn plain_relative(raw: &[u8]) -> Option<PathBuf> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

/// Every parent of `rel` below `root` must be a directory extracted before, not a link.
fn check_parents(root: &Path, rel: &Path) -> Result<(), String> {
    let mut cur = root.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for c in parents {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "goes through the symbolic link {}",
                    cur.strip_prefix(root).unwrap_or(&cur).display()
                ));
            }
            _ => {
                return Err(format!(
                    "is below {}, which is not a directory of the archive",
                    cur.strip_prefix(root).unwrap_or(&cur).display()
                ));
            }
        }
    }
    Ok(())
}

fn chown(key: &str, path: &Path, uid: u32, gid: u32) -> Result<(), StepArchiveError> {
    if let Ok(m) = std::fs::symlink_metadata(path)
        && std::os::unix::fs::MetadataExt::uid(&m) == uid
        && std::os::unix::fs::MetadataExt::gid(&m) == gid
    {
        return Ok(());
    }
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| match e {
        nix::errno::Errno::EPERM => StepArchiveError::Owner {
            key: key.to_string(),
            path: path.to_path_buf(),
            uid,
            gid,
        },
        e => StepArchiveError::Write {
            key: key.to_string(),
            path: path.to_path_buf(),
            source: e.into(),
        },
    })
}

fn set_mtime(path: &Path, mtime: i64) -> std::io::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(std::io::Error::from)
}

/// `O_NOFOLLOW` for a new file (never through a link a hostile archive left).
trait NoFollow {
    fn mode_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn mode_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.custom_flags(nix::libc::O_NOFOLLOW).mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_pass() {
        assert_eq!(plain_relative(b"./a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(plain_relative(b"./"), Some(PathBuf::new()));
        assert_eq!(plain_relative(b"../x"), None);
        assert_eq!(plain_relative(b"a/../../x"), None);
        assert_eq!(plain_relative(b"/etc/passwd"), None);
    }

    #[test]
    fn sandbox_ids_map_back_to_host_ids() {
        let m = IdMap {
            root_uid: 1000,
            uid_start: 100000,
            root_gid: 1001,
            gid_start: 200000,
            count: 65535,
        };
        assert_eq!(host_id(Some(&m), 0, true), 1000);
        assert_eq!(host_id(Some(&m), 0, false), 1001);
        assert_eq!(host_id(Some(&m), 1, true), 100000);
        assert_eq!(host_id(Some(&m), 100, false), 200099);
        assert_eq!(host_id(None, 42, true), 42);
        for id in [0u32, 1, 7, 65535] {
            assert_eq!(m.uid(host_id(Some(&m), id as u64, true)), id);
        }
    }

    /// A tar with `entries` (name, kind, link target) written by the `tar` crate.
    fn hostile_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, target) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(if *kind == tar::EntryType::Regular {
                3
            } else {
                0
            });
            {
                let gnu = h.as_gnu_mut().unwrap();
                gnu.name[..name.len()].copy_from_slice(name.as_bytes());
                if !target.is_empty() {
                    gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
                }
            }
            h.set_cksum();
            let data: &[u8] = if *kind == tar::EntryType::Regular {
                b"abc"
            } else {
                b""
            };
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_archives_are_refused() {
        use tar::EntryType::*;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        type Entries<'a> = &'a [(&'a str, tar::EntryType, &'a str)];
        let cases: &[(Entries, &str)] = &[
            (&[("../escape", Regular, "")], "not a plain relative path"),
            (&[("/etc/x", Regular, "")], "not a plain relative path"),
            (
                &[
                    ("tree/", Directory, ""),
                    ("tree/l", Symlink, "/etc"),
                    ("tree/l/passwd", Regular, ""),
                ],
                "goes through the symbolic link tree/l",
            ),
            (&[("a/b", Regular, "")], "not a directory of the archive"),
            (
                &[("h", Link, "/etc/passwd")],
                "hard link to a path that is not plain",
            ),
            (&[("h", Link, "missing")], "not extracted before as a file"),
        ];
        for (entries, expected) in cases {
            let err = extract(&store, "k", &hostile_tar(entries)[..])
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{entries:?}: {err}");
        }
        // A good one: a file, a link, a hard link, modes kept.
        let good = hostile_tar(&[
            ("tree/", Directory, ""),
            ("tree/f", Regular, ""),
            ("tree/l", Symlink, "f"),
            ("tree/h", Link, "tree/f"),
        ]);
        let t = extract(&store, "k", &good[..]).unwrap();
        assert_eq!(fs_err::read(t.path().join("tree/h")).unwrap(), b"abc");
        assert_eq!(
            fs_err::read_link(t.path().join("tree/l")).unwrap(),
            PathBuf::from("f")
        );
        let mode = fs_err::metadata(t.path().join("tree/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }
}

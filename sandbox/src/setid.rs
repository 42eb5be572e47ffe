//! The second wall behind the seccomp filter's set-id rule: after a step that may not create
//! set-user-id or set-group-id files, the bits are cleared from every regular file beneath its
//! writable host paths, and so are file capabilities (`security.capability`): a step running
//! as the host's root could otherwise leave `setcap cap_setuid+ep` on a copy of an
//! interpreter, which works for every user like a setuid-root program.
//!
//! Root inside the sandbox is the invoking user outside, and keeps `CAP_FSETID` and
//! `CAP_FOWNER` in its user namespace, so without the filter a step could leave a set-id
//! program of the invoking user (of the host's root, when hermetic runs as root) in a
//! directory other users can reach. Dropping `CAP_FSETID` alone would not stop it: the owner
//! of a file may always `chmod u+s` it.
//!
//! The walk never follows a symbolic link: directories are opened relative to their parent's
//! descriptor with `O_NOFOLLOW`, and modes are read and changed with `AT_SYMLINK_NOFOLLOW`.
//! Every process of the step is gone by then (the pid namespace ended with it).

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag};

/// Deeper trees are refused rather than walked (one descriptor is open per level).
pub const MAX_DEPTH: usize = 256;

/// A writable path that could not be checked or cleared: the step's result is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum SetIdError {
    #[error(
        "cannot clear set-id bits beneath the step's writable path: {path}\nhint: the step left a file or directory that the invoking user cannot read or change (one owned by a subordinate id with a private mode?); remove it, or run the step as an image-tree step",
        path = path.display()
    )]
    Walk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: the step left directories nested deeper than {MAX_DEPTH} levels beneath a writable path; set-id bits cannot be checked there",
        path = path.display()
    )]
    TooDeep { path: PathBuf },
}

/// What [`strip`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stripped {
    /// Regular files whose set-id bits were cleared.
    pub files: Vec<PathBuf>,
    /// Regular files whose file capabilities were removed.
    pub capabilities: Vec<PathBuf>,
}

/// The extended attribute holding a file's capabilities.
const CAPABILITY_XATTR: &CStr = c"security.capability";

/// Clears `S_ISUID` and `S_ISGID` from `path` (if it is a regular file) or from every regular
/// file beneath it (if it is a directory), following no symbolic link. A missing `path` is
/// fine (nothing to clear).
pub fn strip(path: &Path) -> Result<Stripped, SetIdError> {
    let mut done = Stripped::default();
    let err = |source: nix::Error| SetIdError::Walk {
        path: path.to_path_buf(),
        source: source.into(),
    };
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n),
        // `/` itself.
        _ => {
            let dir = open_dir(None, path.as_os_str()).map_err(err)?;
            walk(dir.as_fd(), path, 0, &mut done)?;
            return Ok(done);
        }
    };
    let parent = match nix::fcntl::open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => return Ok(done),
        Err(e) => return Err(err(e)),
    };
    visit(parent.as_fd(), name, path, 0, &mut done)?;
    Ok(done)
}

/// One entry `name` of the directory `dir` (whose path is the parent of `path`).
fn visit(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    depth: usize,
    done: &mut Stripped,
) -> Result<(), SetIdError> {
    let err = |source: nix::Error| SetIdError::Walk {
        path: path.to_path_buf(),
        source: source.into(),
    };
    let st = match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(nix::Error::ENOENT) => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let setid: u32 = libc::S_ISUID | libc::S_ISGID;
    if kind == SFlag::S_IFREG {
        if st.st_mode & setid != 0 {
            let mode = Mode::from_bits_truncate(st.st_mode & 0o7777 & !setid);
            nix::sys::stat::fchmodat(dir, name, mode, FchmodatFlags::NoFollowSymlink)
                .map_err(err)?;
            done.files.push(path.to_path_buf());
        }
        // The entry through the directory's descriptor; `l*xattr` do not follow `name`.
        let mut at = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        at.extend_from_slice(name.as_bytes());
        let at = CString::new(at).map_err(|_| err(nix::Error::EINVAL))?;
        let io_err = |source: std::io::Error| SetIdError::Walk {
            path: path.to_path_buf(),
            source,
        };
        if crate::sys::has_xattr(&at, CAPABILITY_XATTR).map_err(io_err)? {
            crate::sys::remove_xattr(&at, CAPABILITY_XATTR).map_err(io_err)?;
            done.capabilities.push(path.to_path_buf());
        }
    } else if kind == SFlag::S_IFDIR {
        if depth >= MAX_DEPTH {
            return Err(SetIdError::TooDeep {
                path: path.to_path_buf(),
            });
        }
        let sub = open_dir(Some(dir), name).map_err(err)?;
        walk(sub.as_fd(), path, depth + 1, done)?;
    }
    Ok(())
}

/// Every entry of the open directory `dir` (at `path`).
fn walk(
    dir: BorrowedFd<'_>,
    path: &Path,
    depth: usize,
    done: &mut Stripped,
) -> Result<(), SetIdError> {
    let err = |source: nix::Error| SetIdError::Walk {
        path: path.to_path_buf(),
        source: source.into(),
    };
    // A second descriptor for reading entries; `dir` stays usable for the `*at` calls.
    let listing = nix::fcntl::openat(
        dir,
        c".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    let mut entries = nix::dir::Dir::from_fd(listing).map_err(err)?;
    let mut names = Vec::new();
    for entry in entries.iter() {
        let entry = entry.map_err(err)?;
        let name: &CStr = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        names.push(OsStr::from_bytes(name.to_bytes()).to_os_string());
    }
    drop(entries);
    for name in names {
        visit(dir, &name, &path.join(&name), depth, done)?;
    }
    Ok(())
}

/// Opens the directory `name` (relative to `dir`, or the current directory) without
/// following a symbolic link.
fn open_dir(dir: Option<BorrowedFd<'_>>, name: &OsStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match dir {
        Some(d) => nix::fcntl::openat(d, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs_err::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn set(p: &Path, m: u32) {
        fs_err::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn clears_setid_bits_of_regular_files_only_and_follows_no_link() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs_err::write(&victim, "x").unwrap();
        set(&victim, 0o4755);

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rw");
        fs_err::create_dir_all(root.join("a/b")).unwrap();
        for (name, m) in [
            ("su", 0o4755),
            ("a/sg", 0o2711),
            ("a/b/both", 0o6700),
            ("plain", 0o755),
        ] {
            fs_err::write(root.join(name), "x").unwrap();
            set(&root.join(name), m);
        }
        // A set-gid directory keeps its bit (it only sets the group of new entries).
        set(&root.join("a"), 0o2755);
        std::os::unix::fs::symlink(&victim, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("dirlink")).unwrap();

        let done = strip(&root).unwrap();
        assert_eq!(mode(&root.join("su")), 0o755);
        assert_eq!(mode(&root.join("a/sg")), 0o711);
        assert_eq!(mode(&root.join("a/b/both")), 0o700);
        assert_eq!(mode(&root.join("plain")), 0o755);
        assert_eq!(mode(&root.join("a")), 0o2755);
        assert_eq!(mode(&victim), 0o4755, "a symlink was followed");
        let mut files = done.files.clone();
        files.sort();
        assert_eq!(
            files,
            [root.join("a/b/both"), root.join("a/sg"), root.join("su")]
        );
        // A single file as the writable path, and a missing one.
        fs_err::write(dir.path().join("one"), "x").unwrap();
        set(&dir.path().join("one"), 0o4700);
        strip(&dir.path().join("one")).unwrap();
        assert_eq!(mode(&dir.path().join("one")), 0o700);
        assert_eq!(
            strip(&dir.path().join("missing")).unwrap(),
            Stripped::default()
        );
        // A symlink given as the path itself is left alone.
        assert!(strip(&root.join("link")).unwrap().files.is_empty());
        assert_eq!(mode(&victim), 0o4755);
    }

    #[test]
    fn too_deep_trees_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("d");
        let deep = (0..MAX_DEPTH).fold(top.clone(), |p, _| p.join("d"));
        fs_err::create_dir_all(&deep).unwrap();
        assert!(matches!(strip(&top), Err(SetIdError::TooDeep { .. })));
        // One level less is walked.
        fs_err::remove_dir(&deep).unwrap();
        strip(&top).unwrap();
    }
}

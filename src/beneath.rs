//! Opening the files a build step made, beneath the directory that holds them, without ever
//! following a symbolic link.
//!
//! A step's tree and its output files are the step's work: any name in them may be a
//! symbolic link to a host file (`usr/lib/os-release` → `/root/secret`), a link in the middle
//! of a path (`usr/lib` → `/root`), or something that blocks or has side effects when opened
//! (a FIFO, a device). hermetic itself runs outside the sandbox, where a plain `open` would
//! follow the step's link on the host. So every host-side read of a step's files goes
//! through [`Beneath`]: the parent directories are resolved from a descriptor of the
//! directory with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`
//! (where the kernel has no `openat2`, one component at a time with `O_NOFOLLOW`), the last
//! component is checked with `fstatat(AT_SYMLINK_NOFOLLOW)` and only a regular file is
//! opened (`O_NOFOLLOW | O_NONBLOCK`, and checked again on the descriptor).

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// Errors of reading beneath a directory. Each names the directory and the path in it.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("cannot open the directory {root}", root = root.display())]
    OpenRoot {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a plain relative path inside {root} (absolute, `..` or empty); hermetic reads only below the directory",
        path = path.display(),
        root = root.display()
    )]
    Outside { root: PathBuf, path: PathBuf },
    #[error(
        "{path} in {root} {what}; hermetic does not follow symbolic links a build step made\nhint: make it a regular file in the step (e.g. `cp --remove-destination \"$(readlink -f F)\" F`), not a link",
        path = path.display(),
        root = root.display(),
        what = if path == link {
            "is a symbolic link".to_string()
        } else {
            format!("goes through the symbolic link {}", link.display())
        }
    )]
    Symlink {
        root: PathBuf,
        path: PathBuf,
        /// The component that is a link (relative to the root).
        link: PathBuf,
    },
    #[error(
        "{path} in {root} is {kind}, not a regular file",
        path = path.display(),
        root = root.display()
    )]
    NotRegular {
        root: PathBuf,
        path: PathBuf,
        kind: FileKind,
    },
    #[error(
        "{path} in {root} changed while it was opened",
        path = path.display(),
        root = root.display()
    )]
    Changed { root: PathBuf, path: PathBuf },
    #[error("cannot open {path} in {root}", path = path.display(), root = root.display())]
    Io {
        root: PathBuf,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a directory entry is, as `lstat` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl FileKind {
    pub(crate) fn of(st: &FileStat) -> FileKind {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => FileKind::Regular,
            SFlag::S_IFDIR => FileKind::Directory,
            SFlag::S_IFLNK => FileKind::Symlink,
            SFlag::S_IFIFO => FileKind::Fifo,
            SFlag::S_IFSOCK => FileKind::Socket,
            SFlag::S_IFCHR => FileKind::CharDevice,
            SFlag::S_IFBLK => FileKind::BlockDevice,
            _ => FileKind::Unknown,
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Symlink => "a symbolic link",
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Unknown => "a file of unknown type",
        })
    }
}

/// How parent directories are resolved: `openat2` where the kernel has it (5.6 and later),
/// else one component at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolve {
    Openat2,
    PerComponent,
}

/// Set once `openat2` said ENOSYS: later lookups go one component at a time at once.
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A directory a step made (or holds the step's files), opened once; paths are resolved
/// beneath it.
#[derive(Debug)]
pub struct Beneath {
    dir: OwnedFd,
    root: PathBuf,
    resolve: Resolve,
}

impl Beneath {
    /// Opens `root`. The root itself is hermetic's own path (a store entry's `tree` or
    /// `files`, a temporary directory) and is resolved normally.
    pub fn open(root: &Path) -> Result<Beneath, BeneathError> {
        let dir = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BeneathError::OpenRoot {
            root: root.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Beneath {
            dir,
            root: root.to_path_buf(),
            resolve: if NO_OPENAT2.load(std::sync::atomic::Ordering::Relaxed) {
                Resolve::PerComponent
            } else {
                Resolve::Openat2
            },
        })
    }

    /// The directory paths are resolved in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What `rel` is (its last component not followed; its parents no link either).
    pub fn kind(&self, rel: impl AsRef<Path>) -> Result<FileKind, BeneathError> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent(rel)?;
        let st = nix::sys::stat::fstatat(&parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| self.io(rel, e))?;
        Ok(FileKind::of(&st))
    }

    /// Opens the directory `rel` (`""` is the root) as an `O_PATH` descriptor, for the `*at`
    /// calls of a caller that writes beneath the root: no component, the last included, may
    /// be a symbolic link.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> Result<OwnedFd, BeneathError> {
        let rel = rel.as_ref();
        if !rel.components().any(|c| matches!(c, Component::Normal(_))) {
            if rel.components().all(|c| c == Component::CurDir) {
                return self.dir.try_clone().map_err(|e| self.io_err(rel, e));
            }
            return Err(self.outside(rel));
        }
        let (parent, name) = self.parent(rel)?;
        // O_NOFOLLOW with O_DIRECTORY: a link (or anything but a directory) fails to open.
        nix::fcntl::openat(
            &parent,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match self.kind(rel) {
            Ok(FileKind::Symlink) => BeneathError::Symlink {
                root: self.root.clone(),
                path: rel.to_path_buf(),
                link: rel.to_path_buf(),
            },
            _ => self.io(rel, e),
        })
    }

    /// Opens the regular file `rel` for reading.
    pub fn open_file(&self, rel: impl AsRef<Path>) -> Result<fs_err::File, BeneathError> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent(rel)?;
        let st = nix::sys::stat::fstatat(&parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| self.io(rel, e))?;
        match FileKind::of(&st) {
            FileKind::Regular => {}
            FileKind::Symlink => {
                return Err(BeneathError::Symlink {
                    root: self.root.clone(),
                    path: rel.to_path_buf(),
                    link: rel.to_path_buf(),
                });
            }
            kind => {
                return Err(BeneathError::NotRegular {
                    root: self.root.clone(),
                    path: rel.to_path_buf(),
                    kind,
                });
            }
        }
        // O_NONBLOCK: should the entry have become a FIFO since, opening does not wait.
        let fd = nix::fcntl::openat(
            &parent,
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io(rel, e))?;
        let opened = nix::sys::stat::fstat(&fd).map_err(|e| self.io(rel, e))?;
        if FileKind::of(&opened) != FileKind::Regular
            || (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino)
        {
            return Err(BeneathError::Changed {
                root: self.root.clone(),
                path: rel.to_path_buf(),
            });
        }
        Ok(fs_err::File::from_parts(
            std::fs::File::from(fd),
            self.root.join(rel),
        ))
    }

    /// Reads the whole regular file `rel`.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<Vec<u8>, BeneathError> {
        use std::io::Read as _;
        let rel = rel.as_ref();
        let mut out = Vec::new();
        self.open_file(rel)?
            .read_to_end(&mut out)
            .map_err(|source| self.io_err(rel, source))?;
        Ok(out)
    }

    /// Reads the whole regular file `rel` as UTF-8.
    pub fn read_to_string(&self, rel: impl AsRef<Path>) -> Result<String, BeneathError> {
        let rel = rel.as_ref();
        let bytes = self.read(rel)?;
        String::from_utf8(bytes).map_err(|e| {
            self.io_err(
                rel,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
            )
        })
    }

    /// The parent directory of `rel`, opened beneath the root without following a link, and
    /// the last component's name.
    fn parent<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr), BeneathError> {
        let mut names = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => names.push(n),
                Component::CurDir => {}
                Component::RootDir | Component::ParentDir | Component::Prefix(_) => {
                    return Err(self.outside(rel));
                }
            }
        }
        let Some((name, parents)) = names.split_last() else {
            return Err(self.outside(rel));
        };
        let parent: PathBuf = parents.iter().collect();
        if parents.is_empty() {
            let fd = self.dir.try_clone().map_err(|e| self.io_err(rel, e))?;
            return Ok((fd, name));
        }
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let opened = match self.resolve {
            Resolve::Openat2 => {
                let how = OpenHow::new().flags(flags).resolve(
                    ResolveFlag::RESOLVE_BENEATH
                        | ResolveFlag::RESOLVE_NO_SYMLINKS
                        | ResolveFlag::RESOLVE_NO_MAGICLINKS,
                );
                match nix::fcntl::openat2(&self.dir, &parent, how) {
                    Err(Errno::ENOSYS) => {
                        NO_OPENAT2.store(true, std::sync::atomic::Ordering::Relaxed);
                        self.per_component(parents, flags)
                    }
                    other => other,
                }
            }
            Resolve::PerComponent => self.per_component(parents, flags),
        };
        match opened {
            Ok(fd) => Ok((fd, name)),
            Err(e) => Err(self.classify(rel, parents, e)),
        }
    }

    /// Opens `parents` one component at a time, none followed if it is a link.
    fn per_component(&self, parents: &[&OsStr], flags: OFlag) -> nix::Result<OwnedFd> {
        let mut fd = self.dir.try_clone().map_err(|_| Errno::EBADF)?;
        for p in parents {
            fd = nix::fcntl::openat(&fd, *p, flags | OFlag::O_NOFOLLOW, Mode::empty())?;
        }
        Ok(fd)
    }

    /// Says which component of `parents` is a link, when one is; else the error as it is.
    fn classify(&self, rel: &Path, parents: &[&OsStr], e: Errno) -> BeneathError {
        let mut fd = match self.dir.try_clone() {
            Ok(fd) => fd,
            Err(_) => return self.io(rel, e),
        };
        let mut walked = PathBuf::new();
        for p in parents {
            walked.push(p);
            let st = nix::sys::stat::fstatat(&fd, *p, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
            match st.map(|s| FileKind::of(&s)) {
                Ok(FileKind::Symlink) => {
                    return BeneathError::Symlink {
                        root: self.root.clone(),
                        path: rel.to_path_buf(),
                        link: walked,
                    };
                }
                Ok(FileKind::Directory) => {}
                _ => break,
            }
            match nix::fcntl::openat(
                &fd,
                *p,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(next) => fd = next,
                Err(_) => break,
            }
        }
        if e == Errno::EXDEV {
            return self.outside(rel);
        }
        self.io(rel, e)
    }

    fn outside(&self, rel: &Path) -> BeneathError {
        BeneathError::Outside {
            root: self.root.clone(),
            path: rel.to_path_buf(),
        }
    }

    fn io(&self, rel: &Path, e: Errno) -> BeneathError {
        self.io_err(rel, e.into())
    }

    fn io_err(&self, rel: &Path, source: std::io::Error) -> BeneathError {
        BeneathError::Io {
            root: self.root.clone(),
            path: rel.to_path_buf(),
            source,
        }
    }
}

/// Reads the regular file `rel` beneath `root` (see [`Beneath`]).
pub fn read(root: &Path, rel: impl AsRef<Path>) -> Result<Vec<u8>, BeneathError> {
    Beneath::open(root)?.read(rel)
}

/// Reads the regular file `rel` beneath `root` as UTF-8 (see [`Beneath`]).
pub fn read_to_string(root: &Path, rel: impl AsRef<Path>) -> Result<String, BeneathError> {
    Beneath::open(root)?.read_to_string(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Both ways of resolving parents, so that the fallback is tested on kernels with openat2.
    fn both(root: &Path) -> [Beneath; 2] {
        let a = Beneath::open(root).unwrap();
        let mut b = Beneath::open(root).unwrap();
        b.resolve = Resolve::PerComponent;
        [a, b]
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs_err::create_dir_all(d.join("usr/lib")).unwrap();
        fs_err::write(d.join("usr/lib/os-release"), "ID=debian\n").unwrap();
        dir
    }

    #[test]
    fn reads_a_regular_file_below_the_root() {
        let t = tree();
        for b in both(t.path()) {
            assert_eq!(
                b.read_to_string("usr/lib/os-release").unwrap(),
                "ID=debian\n"
            );
            assert_eq!(b.read("./usr/lib/os-release").unwrap(), b"ID=debian\n");
            assert_eq!(b.kind("usr/lib").unwrap(), FileKind::Directory);
        }
    }

    #[test]
    fn an_absolute_link_as_the_last_component_is_refused() {
        let t = tree();
        let secret = tempfile::NamedTempFile::new().unwrap();
        fs_err::write(secret.path(), "SECRET").unwrap();
        symlink(secret.path(), t.path().join("usr/lib/link")).unwrap();
        for b in both(t.path()) {
            let e = b.read("usr/lib/link").unwrap_err();
            assert!(
                matches!(&e, BeneathError::Symlink { link, .. } if link == Path::new("usr/lib/link")),
                "{e:?}"
            );
            assert!(e.to_string().contains("usr/lib/link"), "{e}");
            assert_eq!(b.kind("usr/lib/link").unwrap(), FileKind::Symlink);
        }
    }

    #[test]
    fn a_relative_link_inside_the_root_is_refused_too() {
        let t = tree();
        symlink("os-release", t.path().join("usr/lib/alias")).unwrap();
        for b in both(t.path()) {
            let e = b.read("usr/lib/alias").unwrap_err();
            assert!(matches!(e, BeneathError::Symlink { .. }), "{e:?}");
        }
    }

    #[test]
    fn a_link_in_the_middle_is_named() {
        let t = tree();
        let host = tempfile::tempdir().unwrap();
        fs_err::create_dir(host.path().join("lib")).unwrap();
        fs_err::write(host.path().join("lib/os-release"), "SECRET").unwrap();
        // usr2 -> an absolute host directory; usr3 -> usr (relative, inside the root).
        symlink(host.path(), t.path().join("usr2")).unwrap();
        symlink("usr", t.path().join("usr3")).unwrap();
        for b in both(t.path()) {
            for (path, link) in [
                ("usr2/lib/os-release", "usr2"),
                ("usr3/lib/os-release", "usr3"),
            ] {
                let e = b.read(path).unwrap_err();
                assert!(
                    matches!(&e, BeneathError::Symlink { link: l, .. } if l == Path::new(link)),
                    "{path}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn open_dir_opens_directories_and_refuses_links_anywhere_in_the_path() {
        let t = tree();
        let host = tempfile::tempdir().unwrap();
        symlink(host.path(), t.path().join("usr/hostlink")).unwrap();
        symlink("usr", t.path().join("usr3")).unwrap();
        for b in both(t.path()) {
            assert!(b.open_dir("usr/lib").is_ok());
            assert!(b.open_dir("").is_ok());
            for (path, link) in [("usr/hostlink", "usr/hostlink"), ("usr3/lib", "usr3")] {
                let e = b.open_dir(path).unwrap_err();
                assert!(
                    matches!(&e, BeneathError::Symlink { link: l, .. } if l == Path::new(link)),
                    "{path}: {e:?}"
                );
            }
            assert!(matches!(
                b.open_dir("usr/lib/os-release").unwrap_err(),
                BeneathError::Io { .. }
            ));
            assert!(matches!(
                b.open_dir("../x").unwrap_err(),
                BeneathError::Outside { .. }
            ));
        }
    }

    #[test]
    fn dot_dot_and_absolute_paths_are_refused() {
        let t = tree();
        let inner = t.path().join("usr");
        for b in both(&inner) {
            for path in [
                "../usr/lib/os-release",
                "lib/../../usr/lib/os-release",
                "/etc/passwd",
                "",
            ] {
                let e = b.read(path).unwrap_err();
                assert!(matches!(e, BeneathError::Outside { .. }), "{path}: {e:?}");
            }
        }
    }

    #[test]
    fn fifos_sockets_directories_and_devices_are_refused_without_blocking() {
        let t = tree();
        let d = t.path();
        nix::unistd::mkfifo(&d.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
        // Only root can make a device node; as another user the other kinds still run.
        let device = nix::sys::stat::mknod(
            &d.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .is_ok();
        for b in both(d) {
            let mut cases = vec![
                ("fifo", FileKind::Fifo),
                ("sock", FileKind::Socket),
                ("usr/lib", FileKind::Directory),
            ];
            if device {
                cases.push(("null", FileKind::CharDevice));
            }
            for (path, want) in cases {
                let e = b.open_file(path).unwrap_err();
                assert!(
                    matches!(e, BeneathError::NotRegular { kind, .. } if kind == want),
                    "{path}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn a_file_as_a_parent_is_an_error_naming_the_path() {
        let t = tree();
        for b in both(t.path()) {
            let e = b.read("usr/lib/os-release/x").unwrap_err();
            assert!(e.to_string().contains("usr/lib/os-release/x"), "{e}");
            let e = b.read("usr/missing/x").unwrap_err();
            assert!(matches!(e, BeneathError::Io { .. }), "{e:?}");
        }
    }
}

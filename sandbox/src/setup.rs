//! Building the step's file system view and host identity, behind the [`Ops`] trait so that
//! the order and arguments of every privileged operation are unit-tested with a recording
//! double ([`tests::Recorder`]); the real operations ([`RealOps`]) are exercised by the
//! integration tests, each in its own process.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::sys;

/// Where the new root is assembled before `pivot_root`. The directory exists on every Linux
/// system; what is mounted over it is visible only in the step's mount namespace, and every
/// host source is reached through a descriptor opened beforehand, so sources under the host's
/// `/tmp` are not hidden by it.
pub(crate) const STAGE: &str = "/tmp";

/// Entries of `/proc` made read-only (the ones bubblewrap protects, too).
pub(crate) const PROC_READ_ONLY: [&str; 4] = ["sys", "sysrq-trigger", "irq", "bus"];

/// Device nodes bound from the host's `/dev`.
pub(crate) const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where a bind mount's source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A descriptor (`O_PATH`) opened by init in its mount namespace before anything was
    /// mounted, reached as `/proc/self/fd/N` (so that sources under the staging directory
    /// stay reachable).
    Fd(RawFd),
    /// A host path, resolved by the caller (no symlink, no `..`).
    Host(PathBuf),
}

/// The type of a file, as far as mount points care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
}

/// One top-level entry of a read-only root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Bind {
        name: OsString,
        src: Source,
        kind: Kind,
    },
    Symlink {
        name: OsString,
        target: PathBuf,
    },
}

/// What becomes `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootPlan {
    /// A read-only tmpfs holding these entries (and `/etc` with `passwd` and `group` when
    /// `etc` is set: the testing root).
    Tmpfs { entries: Vec<Entry>, etc: bool },
    /// This writable directory, bound as is.
    Writable(Source),
}

/// One declared mount, ready to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedMount {
    /// `None` for a tmpfs.
    pub src: Option<(Source, Kind)>,
    pub dst: PathBuf,
    pub writable: bool,
}

/// Everything the set-up makes, decided in the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountPlan {
    pub root: RootPlan,
    /// Sorted by destination depth, parents first.
    pub mounts: Vec<PlannedMount>,
    pub hostname: String,
    /// A new network namespace whose loopback must be brought up.
    pub new_net: bool,
}

impl MountPlan {
    /// The paths the step may write to, inside the sandbox (for Landlock).
    pub fn writable_paths(&self) -> Vec<PathBuf> {
        let mut out = vec![PathBuf::from("/tmp"), PathBuf::from("/dev/shm")];
        if matches!(self.root, RootPlan::Writable(_)) {
            out.push(PathBuf::from("/"));
        }
        out.extend(
            self.mounts
                .iter()
                .filter(|m| m.writable)
                .map(|m| m.dst.clone()),
        );
        out
    }
}

/// The privileged operations of the set-up.
pub(crate) trait Ops {
    /// Stops mount events from propagating back to the host (`mount --make-rprivate /`).
    fn make_private(&mut self) -> io::Result<()>;
    /// Opens `path` with `O_PATH | O_NOFOLLOW | O_CLOEXEC`; the descriptor stays open until
    /// exec.
    fn open(&mut self, path: &Path) -> io::Result<RawFd>;
    fn tmpfs(&mut self, dst: &Path, options: &str) -> io::Result<()>;
    /// A recursive bind mount.
    fn bind(&mut self, src: &Source, dst: &Path) -> io::Result<()>;
    /// Adds nosuid (and nodev unless `devices`) and, if `readonly`, rdonly to the mount at
    /// `dst`, and with `recursive` to every mount below it.
    fn restrict(
        &mut self,
        dst: &Path,
        readonly: bool,
        recursive: bool,
        devices: bool,
    ) -> io::Result<()>;
    fn devpts(&mut self, dst: &Path) -> io::Result<()>;
    fn proc(&mut self, dst: &Path) -> io::Result<()>;
    /// `lstat`: what is at `path`, if anything.
    fn kind(&mut self, path: &Path) -> io::Result<Option<Kind>>;
    fn mkdir(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    fn touch(&mut self, path: &Path) -> io::Result<()>;
    fn symlink(&mut self, target: &Path, path: &Path) -> io::Result<()>;
    fn write(&mut self, path: &Path, contents: &[u8]) -> io::Result<()>;
    /// Makes `new_root` the root and detaches the old one entirely.
    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()>;
    fn set_names(&mut self, hostname: &str, domainname: &str) -> io::Result<()>;
    fn loopback_up(&mut self) -> io::Result<()>;
}

/// A set-up step that failed, naming the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{stage} {path}: {source}", path = path.display())]
pub(crate) struct SetupError {
    pub stage: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

fn at<'a>(stage: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SetupError + 'a {
    move |source| SetupError {
        stage,
        path: path.to_path_buf(),
        source,
    }
}

/// `dst` (absolute, inside) under the staging directory.
fn staged(dst: &Path) -> PathBuf {
    Path::new(STAGE).join(dst.strip_prefix("/").unwrap_or(dst))
}

/// Creates the mount point `dst` (inside) for something of `kind`, creating missing parents.
/// Never follows a symlink: a tree could otherwise point a mount point at a host path while
/// the host's root is still the root.
fn mount_point(ops: &mut impl Ops, dst: &Path, kind: Kind) -> Result<(), SetupError> {
    let target = staged(dst);
    let mut path = PathBuf::from(STAGE);
    let parts: Vec<_> = dst.strip_prefix("/").unwrap_or(dst).components().collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let last = i + 1 == parts.len();
        let want = if last { kind } else { Kind::Dir };
        match ops.kind(&path).map_err(at("inspect mount point", &path))? {
            Some(Kind::Symlink) => {
                return Err(SetupError {
                    stage: "mount point crosses a symlink",
                    path: dst.to_path_buf(),
                    source: io::Error::from_raw_os_error(libc::ELOOP),
                });
            }
            Some(found) if (found == Kind::Dir) != (want == Kind::Dir) => {
                let errno = if want == Kind::Dir {
                    libc::ENOTDIR
                } else {
                    libc::EISDIR
                };
                return Err(SetupError {
                    stage: "mount point has the wrong type",
                    path: dst.to_path_buf(),
                    source: io::Error::from_raw_os_error(errno),
                });
            }
            Some(_) => {}
            None if want == Kind::Dir => ops
                .mkdir(&path, 0o755)
                .map_err(at("create mount point", &target))?,
            None => ops
                .touch(&path)
                .map_err(at("create mount point", &target))?,
        }
    }
    Ok(())
}

/// Builds the step's root and identity, in order:
/// sources → root → `/dev` → `/tmp` → declared mounts → `/proc` → `pivot_root` → names →
/// loopback.
/// Runs as pid 1 of the new pid namespace, in the new mount, UTS and network namespaces.
pub(crate) fn build_root(plan: &MountPlan, ops: &mut impl Ops) -> Result<(), SetupError> {
    let stage = Path::new(STAGE);
    let root = Path::new("/");

    // Nothing we mount may show up on the host.
    ops.make_private()
        .map_err(at("make mounts private", root))?;

    // Every source as a descriptor, before the staging directory is covered.
    let mut open = |src: &Source| -> Result<Source, SetupError> {
        match src {
            Source::Host(path) => Ok(Source::Fd(
                ops.open(path).map_err(at("open mount source", path))?,
            )),
            Source::Fd(fd) => Ok(Source::Fd(*fd)),
        }
    };
    let root_plan = match &plan.root {
        RootPlan::Tmpfs { entries, etc } => {
            let mut opened = Vec::new();
            for e in entries {
                opened.push(match e {
                    Entry::Bind { name, src, kind } => Entry::Bind {
                        name: name.clone(),
                        src: open(src)?,
                        kind: *kind,
                    },
                    link => link.clone(),
                });
            }
            RootPlan::Tmpfs {
                entries: opened,
                etc: *etc,
            }
        }
        RootPlan::Writable(src) => RootPlan::Writable(open(src)?),
    };
    let mut mounts = Vec::new();
    for m in &plan.mounts {
        let src = match &m.src {
            Some((src, kind)) => Some((open(src)?, *kind)),
            None => None,
        };
        mounts.push(PlannedMount {
            src,
            dst: m.dst.clone(),
            writable: m.writable,
        });
    }

    // The root: a tmpfs holding read-only binds of the tree's top-level entries, or the
    // writable tree itself.
    match &root_plan {
        RootPlan::Tmpfs { entries, .. } => {
            ops.tmpfs(stage, "mode=0755")
                .map_err(at("mount root tmpfs", stage))?;
            for entry in entries {
                match entry {
                    Entry::Bind { name, src, kind } => {
                        let dst = stage.join(name);
                        if *kind == Kind::Dir {
                            ops.mkdir(&dst, 0o755).map_err(at("create", &dst))?;
                        } else {
                            ops.touch(&dst).map_err(at("create", &dst))?;
                        }
                        ops.bind(src, &dst).map_err(at("bind root entry", &dst))?;
                        ops.restrict(&dst, true, true, false)
                            .map_err(at("make read-only", &dst))?;
                    }
                    Entry::Symlink { name, target } => {
                        let dst = stage.join(name);
                        ops.symlink(target, &dst)
                            .map_err(at("create symlink", &dst))?;
                    }
                }
            }
        }
        RootPlan::Writable(src) => {
            ops.bind(src, stage)
                .map_err(at("bind writable root", stage))?;
            ops.restrict(stage, false, true, false)
                .map_err(at("restrict writable root", stage))?;
        }
    }

    // /dev: a tmpfs with the harmless host devices bound in, a private devpts, and /dev/shm.
    let dev = stage.join("dev");
    mount_point(ops, Path::new("/dev"), Kind::Dir)?;
    ops.tmpfs(&dev, "mode=0755")
        .map_err(at("mount tmpfs", &dev))?;
    for name in DEVICES {
        let node = dev.join(name);
        ops.touch(&node).map_err(at("create", &node))?;
        ops.bind(&Source::Host(Path::new("/dev").join(name)), &node)
            .map_err(at("bind device", &node))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let link = dev.join(name);
        ops.symlink(Path::new(target), &link)
            .map_err(at("create symlink", &link))?;
    }
    let shm = dev.join("shm");
    ops.mkdir(&shm, 0o755).map_err(at("create", &shm))?;
    ops.tmpfs(&shm, "mode=1777")
        .map_err(at("mount tmpfs", &shm))?;
    let pts = dev.join("pts");
    ops.mkdir(&pts, 0o755).map_err(at("create", &pts))?;
    ops.devpts(&pts).map_err(at("mount devpts", &pts))?;
    ops.restrict(&dev, true, false, true)
        .map_err(at("make read-only", &dev))?;

    // /tmp: an empty tmpfs, unless the step brings its own.
    if !mounts.iter().any(|m| m.dst == Path::new("/tmp")) {
        mount_point(ops, Path::new("/tmp"), Kind::Dir)?;
        let tmp = staged(Path::new("/tmp"));
        ops.tmpfs(&tmp, "mode=1777")
            .map_err(at("mount tmpfs", &tmp))?;
    }

    // The declared mounts, parents first.
    for m in &mounts {
        let dst = staged(&m.dst);
        match &m.src {
            Some((src, kind)) => {
                mount_point(ops, &m.dst, *kind)?;
                ops.bind(src, &dst).map_err(at("bind", &dst))?;
                ops.restrict(&dst, !m.writable, true, false)
                    .map_err(at("restrict", &dst))?;
            }
            None => {
                mount_point(ops, &m.dst, Kind::Dir)?;
                ops.tmpfs(&dst, "mode=0755")
                    .map_err(at("mount tmpfs", &dst))?;
            }
        }
    }

    // A /proc of the new pid namespace, with its host-wide knobs read-only: their files belong
    // to the host's root, which root inside *is* when the invoking user is root, and some
    // (sysrq-trigger, irq affinity) check nothing but file permissions. (Mounted before
    // pivot_root: the kernel lets a user namespace mount proc only while a fully visible
    // proc — the host's — is in its mount namespace.)
    mount_point(ops, Path::new("/proc"), Kind::Dir)?;
    let proc = stage.join("proc");
    ops.proc(&proc).map_err(at("mount proc", &proc))?;
    for name in PROC_READ_ONLY {
        let path = proc.join(name);
        if ops.kind(&path).map_err(at("inspect", &path))?.is_none() {
            continue;
        }
        ops.bind(&Source::Host(path.clone()), &path)
            .map_err(at("bind", &path))?;
        ops.restrict(&path, true, true, false)
            .map_err(at("make read-only", &path))?;
    }

    // For the testing root a minimal /etc; then the tmpfs root becomes read-only.
    if let RootPlan::Tmpfs { etc, .. } = &root_plan {
        if *etc {
            let dir = stage.join("etc");
            ops.mkdir(&dir, 0o755).map_err(at("create", &dir))?;
            for (name, contents) in [("passwd", PASSWD), ("group", GROUP)] {
                let file = dir.join(name);
                ops.write(&file, contents.as_bytes())
                    .map_err(at("write", &file))?;
            }
        }
        ops.restrict(stage, true, false, false)
            .map_err(at("make read-only", stage))?;
    }

    // Swap roots; the host's root is detached and unreachable from here on.
    ops.pivot_root(stage).map_err(at("pivot_root to", stage))?;

    // Fixed names; loopback up when the step has its own network namespace.
    ops.set_names(&plan.hostname, "(none)")
        .map_err(at("set host name", Path::new(&plan.hostname)))?;
    if plan.new_net {
        ops.loopback_up().map_err(at("bring up", Path::new("lo")))?;
    }
    Ok(())
}

/// `/etc/passwd` of the testing root.
const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
/// `/etc/group` of the testing root.
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// The real operations.
pub(crate) struct RealOps;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn source_path(src: &Source) -> PathBuf {
    match src {
        Source::Fd(fd) => PathBuf::from(format!("/proc/self/fd/{fd}")),
        Source::Host(p) => p.clone(),
    }
}

fn mount(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    nix::mount::mount(src, dst, fstype, flags, data).map_err(io::Error::from)
}

impl Ops for RealOps {
    fn make_private(&mut self) -> io::Result<()> {
        mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None,
        )
    }

    fn open(&mut self, path: &Path) -> io::Result<RawFd> {
        use fs_err::os::unix::fs::OpenOptionsExt as _;
        use std::os::fd::IntoRawFd as _;
        let file = fs_err::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        // Deliberately leaked: the descriptor must live until exec, which closes it.
        Ok(file.into_file().into_raw_fd())
    }

    fn tmpfs(&mut self, dst: &Path, options: &str) -> io::Result<()> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(
            Some(Path::new("tmpfs")),
            dst,
            Some("tmpfs"),
            flags,
            Some(options),
        )
    }

    fn bind(&mut self, src: &Source, dst: &Path) -> io::Result<()> {
        mount(
            Some(&source_path(src)),
            dst,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
    }

    fn restrict(
        &mut self,
        dst: &Path,
        readonly: bool,
        recursive: bool,
        devices: bool,
    ) -> io::Result<()> {
        let mut attrs = sys::MOUNT_ATTR_NOSUID;
        if !devices {
            attrs |= sys::MOUNT_ATTR_NODEV;
        }
        if readonly {
            attrs |= sys::MOUNT_ATTR_RDONLY;
        }
        sys::mount_setattr(&cpath(dst)?, recursive, attrs)
    }

    fn devpts(&mut self, dst: &Path) -> io::Result<()> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        mount(
            Some(Path::new("devpts")),
            dst,
            Some("devpts"),
            flags,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
    }

    fn proc(&mut self, dst: &Path) -> io::Result<()> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some(Path::new("proc")), dst, Some("proc"), flags, None)
    }

    fn kind(&mut self, path: &Path) -> io::Result<Option<Kind>> {
        match fs_err::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => Ok(Some(Kind::Symlink)),
            Ok(m) if m.is_dir() => Ok(Some(Kind::Dir)),
            Ok(_) => Ok(Some(Kind::File)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mkdir(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(mode).create(path)
    }

    fn touch(&mut self, path: &Path) -> io::Result<()> {
        fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map(drop)
    }

    fn symlink(&mut self, target: &Path, path: &Path) -> io::Result<()> {
        fs_err::os::unix::fs::symlink(target, path)
    }

    fn write(&mut self, path: &Path, contents: &[u8]) -> io::Result<()> {
        fs_err::write(path, contents)
    }

    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()> {
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching it then
        // leaves only the new root, with no directory through which the old one is reachable.
        nix::unistd::chdir(new_root)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")?;
        Ok(())
    }

    fn set_names(&mut self, hostname: &str, domainname: &str) -> io::Result<()> {
        nix::unistd::sethostname(hostname)?;
        sys::setdomainname(domainname.as_bytes())
    }

    fn loopback_up(&mut self) -> io::Result<()> {
        sys::loopback_up()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Records every operation as one line; keeps a fake file tree for `kind`.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub log: Vec<String>,
        pub tree: BTreeMap<PathBuf, Kind>,
        /// Paths under which creating fails with EROFS (read-only binds).
        pub readonly: Vec<PathBuf>,
        pub next_fd: RawFd,
    }

    impl Recorder {
        fn create(&mut self, path: &Path, kind: Kind) -> io::Result<()> {
            if self
                .readonly
                .iter()
                .any(|r| path.starts_with(r) && path != r)
            {
                return Err(io::Error::from_raw_os_error(libc::EROFS));
            }
            if self.tree.insert(path.to_path_buf(), kind).is_some() {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            Ok(())
        }
    }

    fn src(s: &Source) -> String {
        match s {
            Source::Fd(fd) => format!("fd{fd}"),
            Source::Host(p) => p.display().to_string(),
        }
    }

    impl Ops for Recorder {
        fn make_private(&mut self) -> io::Result<()> {
            self.log.push("private /".into());
            Ok(())
        }
        fn open(&mut self, path: &Path) -> io::Result<RawFd> {
            self.next_fd += 1;
            self.log
                .push(format!("open {} fd{}", path.display(), self.next_fd + 2));
            Ok(self.next_fd + 2)
        }
        fn tmpfs(&mut self, dst: &Path, options: &str) -> io::Result<()> {
            self.log.push(format!("tmpfs {} {options}", dst.display()));
            Ok(())
        }
        fn bind(&mut self, s: &Source, dst: &Path) -> io::Result<()> {
            self.log.push(format!("bind {} {}", src(s), dst.display()));
            Ok(())
        }
        fn restrict(&mut self, dst: &Path, ro: bool, rec: bool, dev: bool) -> io::Result<()> {
            let mut what = vec!["nosuid"];
            if !dev {
                what.push("nodev");
            }
            if ro {
                what.push("ro");
            }
            if rec {
                what.push("recursive");
            }
            self.log
                .push(format!("restrict {} {}", dst.display(), what.join(",")));
            Ok(())
        }
        fn devpts(&mut self, dst: &Path) -> io::Result<()> {
            self.log.push(format!("devpts {}", dst.display()));
            Ok(())
        }
        fn proc(&mut self, dst: &Path) -> io::Result<()> {
            // A proc without /proc/irq and /proc/bus: those are skipped.
            self.tree.insert(dst.join("sys"), Kind::Dir);
            self.tree.insert(dst.join("sysrq-trigger"), Kind::File);
            self.log.push(format!("proc {}", dst.display()));
            Ok(())
        }
        fn kind(&mut self, path: &Path) -> io::Result<Option<Kind>> {
            Ok(self.tree.get(path).copied())
        }
        fn mkdir(&mut self, path: &Path, mode: u32) -> io::Result<()> {
            self.create(path, Kind::Dir)?;
            self.log.push(format!("mkdir {} {mode:o}", path.display()));
            Ok(())
        }
        fn touch(&mut self, path: &Path) -> io::Result<()> {
            self.create(path, Kind::File)?;
            self.log.push(format!("touch {}", path.display()));
            Ok(())
        }
        fn symlink(&mut self, target: &Path, path: &Path) -> io::Result<()> {
            self.create(path, Kind::Symlink)?;
            self.log.push(format!(
                "symlink {} -> {}",
                path.display(),
                target.display()
            ));
            Ok(())
        }
        fn write(&mut self, path: &Path, contents: &[u8]) -> io::Result<()> {
            self.create(path, Kind::File)?;
            self.log.push(format!(
                "write {} ({} bytes)",
                path.display(),
                contents.len()
            ));
            Ok(())
        }
        fn pivot_root(&mut self, new_root: &Path) -> io::Result<()> {
            self.log.push(format!("pivot_root {}", new_root.display()));
            Ok(())
        }
        fn set_names(&mut self, h: &str, d: &str) -> io::Result<()> {
            self.log.push(format!("names {h} {d}"));
            Ok(())
        }
        fn loopback_up(&mut self) -> io::Result<()> {
            self.log.push("lo up".into());
            Ok(())
        }
    }

    fn testing_plan() -> MountPlan {
        MountPlan {
            root: RootPlan::Tmpfs {
                entries: vec![
                    Entry::Bind {
                        name: "usr".into(),
                        src: Source::Host("/usr".into()),
                        kind: Kind::Dir,
                    },
                    Entry::Symlink {
                        name: "bin".into(),
                        target: "usr/bin".into(),
                    },
                ],
                etc: true,
            },
            mounts: vec![
                PlannedMount {
                    src: Some((Source::Host("/home/u/src".into()), Kind::Dir)),
                    dst: "/src".into(),
                    writable: false,
                },
                PlannedMount {
                    src: Some((Source::Host("/tmp/out".into()), Kind::Dir)),
                    dst: "/build/out".into(),
                    writable: true,
                },
            ],
            hostname: "hermetic".into(),
            new_net: true,
        }
    }

    #[test]
    fn testing_root_is_built_in_order() {
        let mut rec = Recorder::default();
        build_root(&testing_plan(), &mut rec).unwrap();
        let log = rec.log.join("\n");
        let expected = "\
private /
open /usr fd3
open /home/u/src fd4
open /tmp/out fd5
tmpfs /tmp mode=0755
mkdir /tmp/usr 755
bind fd3 /tmp/usr
restrict /tmp/usr nosuid,nodev,ro,recursive
symlink /tmp/bin -> usr/bin
mkdir /tmp/dev 755
tmpfs /tmp/dev mode=0755
touch /tmp/dev/null
bind /dev/null /tmp/dev/null
touch /tmp/dev/zero
bind /dev/zero /tmp/dev/zero
touch /tmp/dev/full
bind /dev/full /tmp/dev/full
touch /tmp/dev/random
bind /dev/random /tmp/dev/random
touch /tmp/dev/urandom
bind /dev/urandom /tmp/dev/urandom
touch /tmp/dev/tty
bind /dev/tty /tmp/dev/tty
symlink /tmp/dev/fd -> /proc/self/fd
symlink /tmp/dev/stdin -> /proc/self/fd/0
symlink /tmp/dev/stdout -> /proc/self/fd/1
symlink /tmp/dev/stderr -> /proc/self/fd/2
symlink /tmp/dev/ptmx -> pts/ptmx
mkdir /tmp/dev/shm 755
tmpfs /tmp/dev/shm mode=1777
mkdir /tmp/dev/pts 755
devpts /tmp/dev/pts
restrict /tmp/dev nosuid,ro
mkdir /tmp/tmp 755
tmpfs /tmp/tmp mode=1777
mkdir /tmp/src 755
bind fd4 /tmp/src
restrict /tmp/src nosuid,nodev,ro,recursive
mkdir /tmp/build 755
mkdir /tmp/build/out 755
bind fd5 /tmp/build/out
restrict /tmp/build/out nosuid,nodev,recursive
mkdir /tmp/proc 755
proc /tmp/proc
bind /tmp/proc/sys /tmp/proc/sys
restrict /tmp/proc/sys nosuid,nodev,ro,recursive
bind /tmp/proc/sysrq-trigger /tmp/proc/sysrq-trigger
restrict /tmp/proc/sysrq-trigger nosuid,nodev,ro,recursive
mkdir /tmp/etc 755
write /tmp/etc/passwd (89 bytes)
write /tmp/etc/group (27 bytes)
restrict /tmp nosuid,nodev,ro
pivot_root /tmp
names hermetic (none)
lo up";
        assert_eq!(log, expected);
    }

    #[test]
    fn writable_root_keeps_existing_mount_points() {
        let mut rec = Recorder::default();
        for d in ["/tmp/dev", "/tmp/proc", "/tmp/tmp", "/tmp/target"] {
            rec.tree.insert(d.into(), Kind::Dir);
        }
        let plan = MountPlan {
            root: RootPlan::Writable(Source::Host("/srv/tree".into())),
            mounts: vec![PlannedMount {
                src: Some((Source::Host("/srv/t".into()), Kind::Dir)),
                dst: "/target".into(),
                writable: true,
            }],
            hostname: "h".into(),
            new_net: false,
        };
        build_root(&plan, &mut rec).unwrap();
        assert_eq!(
            rec.log[1..5],
            [
                "open /srv/tree fd3",
                "open /srv/t fd4",
                "bind fd3 /tmp",
                "restrict /tmp nosuid,nodev,recursive"
            ]
        );
        assert!(
            !rec.log
                .iter()
                .any(|l| l.starts_with("mkdir /tmp/proc") || l.starts_with("mkdir /tmp/target"))
        );
        assert!(
            !rec.log.iter().any(|l| l == "lo up"),
            "host network: loopback untouched"
        );
        assert!(
            !rec.log.iter().any(|l| l == "restrict /tmp nosuid,nodev,ro"),
            "writable root stays writable"
        );
        assert!(plan.writable_paths().contains(&PathBuf::from("/")));
    }

    #[test]
    fn mount_point_through_symlink_is_refused() {
        let mut rec = Recorder::default();
        rec.tree.insert("/tmp/dev".into(), Kind::Dir);
        rec.tree.insert("/tmp/proc".into(), Kind::Dir);
        rec.tree.insert("/tmp/tmp".into(), Kind::Dir);
        rec.tree.insert("/tmp/evil".into(), Kind::Symlink);
        let plan = MountPlan {
            root: RootPlan::Writable(Source::Fd(5)),
            mounts: vec![PlannedMount {
                src: None,
                dst: "/evil/x".into(),
                writable: true,
            }],
            hostname: "h".into(),
            new_net: true,
        };
        let err = build_root(&plan, &mut rec).unwrap_err();
        assert_eq!(err.stage, "mount point crosses a symlink");
        assert_eq!(err.path, Path::new("/evil/x"));
        assert!(
            !rec.log.iter().any(|l| l.contains("evil")),
            "nothing was made through the link"
        );
    }

    #[test]
    fn missing_mount_point_in_read_only_entry_fails_with_path() {
        let mut rec = Recorder::default();
        rec.readonly.push("/tmp/usr".into());
        let mut plan = testing_plan();
        plan.mounts = vec![PlannedMount {
            src: None,
            dst: "/usr/src/linux".into(),
            writable: true,
        }];
        let err = build_root(&plan, &mut rec).unwrap_err();
        assert_eq!(err.path, Path::new("/tmp/usr/src/linux"));
        assert_eq!(err.source.raw_os_error(), Some(libc::EROFS));
    }
}

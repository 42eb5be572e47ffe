//! Every raw system call of the project, each in one small function returning `io::Result`.
//!
//! This is the only module with `unsafe` code. Calls that `nix` or `caps` already wrap
//! safely are made through them elsewhere; what is here has no safe wrapper in those crates.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

/// Turns the `-1`-means-errno convention into an `io::Result`.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// What [`fork`] returned in this process.
pub(crate) enum Forked {
    /// We are the parent; the child has this pid.
    Parent(libc::pid_t),
    /// We are the child.
    Child,
}

/// `fork(2)` through the C library, so that its at-fork handlers run and `malloc` stays usable
/// in the child even when the parent has other threads.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own. The child of a multi-threaded
    // parent may only rely on what glibc re-initialises after fork (malloc does); the sandbox's
    // child code takes no other lock held by the parent's threads (no stdio, no std::env).
    let pid = unsafe { libc::fork() };
    match check(pid as libc::c_long)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// `struct mount_attr` of `mount_setattr(2)` (not in the libc crate).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// `mount_setattr(2)`: sets `attrs` on the mount at `path` (and every mount below it when
/// `recursive`), leaving all other attributes — including the ones the kernel locks in a
/// user namespace — as they are.
pub(crate) fn mount_setattr(path: &CStr, recursive: bool, attrs: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is a valid NUL-terminated string and `attr` a valid mount_attr whose size
    // is passed along; the kernel reads both and keeps no pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(drop)
}

/// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`: marks every descriptor from `first` on
/// close-on-exec, so that nothing the parent had open reaches the step.
pub(crate) fn cloexec_from(first: RawFd) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    check(ret).map(drop)
}

/// Closes every descriptor of this process except `keep` (`close_range(2)` over the gaps).
///
/// Only for a freshly forked child: descriptors owned by objects it inherited from the parent
/// are closed under them, so the child must never use or drop those objects (it leaves with
/// [`exit_now`]).
pub(crate) fn close_all_but(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<RawFd> = keep.to_vec();
    keep.sort_unstable();
    keep.dedup();
    let mut first: libc::c_uint = 0;
    for &fd in keep.iter().chain(std::iter::once(&RawFd::MAX)) {
        let fd = fd as libc::c_uint;
        if fd > first {
            // SAFETY: close_range only closes descriptors; see the function's contract for the
            // objects that owned them.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, first, fd - 1, 0) };
            check(ret)?;
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// `setdomainname(2)` (nix wraps only sethostname).
pub(crate) fn setdomainname(name: &[u8]) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`, which outlives the call.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    check(ret as libc::c_long).map(drop)
}

/// The Landlock ABI version of the running kernel, from
/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
pub(crate) fn landlock_abi_version() -> io::Result<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer and size 0 this call only returns a number.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    check(ret)
}

/// Brings the loopback interface `lo` of the current network namespace up
/// (`ioctl(SIOCGIFFLAGS)` then `ioctl(SIOCSIFFLAGS)` on a datagram socket).
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) takes no pointers.
    let fd = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }
            as libc::c_long,
    )? as RawFd;
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo"; the kernel fills in ifru_flags.
    let got = check(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } as libc::c_long);
    let result = got.and_then(|_| {
        // SAFETY: SIOCGIFFLAGS succeeded, so the flags member of the union is the one set.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: `req` is a valid ifreq; the kernel only reads it.
        check(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } as libc::c_long)
    });
    // SAFETY: `fd` was opened above and is not used after this.
    unsafe { libc::close(fd) };
    result.map(drop)
}

/// Resets the disposition of every catchable signal to its default, so that the step does not
/// inherit the parent's ignored signals (a build tool expects SIGPIPE to kill it, for one).
pub(crate) fn reset_signal_dispositions() -> io::Result<()> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler code; `sig` is a valid signal number (EINVAL for
        // the few the C library reserves is ignored on purpose).
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    Ok(())
}

/// `_exit(2)`: ends a forked child at once, without running the parent's atexit handlers or
/// flushing the parent's buffered stdio a second time.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Whether `path` carries file capabilities (a `security.capability` extended attribute), the
/// alternative some distributions use to a setuid bit on `newuidmap`.
pub(crate) fn has_file_capabilities(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a NULL buffer of size 0 asks only for the size.
    let ret = unsafe {
        libc::getxattr(
            cpath.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    ret > 0
}

/// `lgetxattr(2)` with an empty buffer: whether `path` (not followed if a symlink) carries the
/// extended attribute `name`.
pub(crate) fn has_xattr(path: &CStr, name: &CStr) -> io::Result<bool> {
    // SAFETY: both strings are NUL-terminated and live across the call; a null buffer of size
    // 0 asks only for the value's length, so the kernel writes nothing.
    let ret = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    match check(ret as libc::c_long) {
        Ok(_) => Ok(true),
        // No such attribute, or a file system without extended attributes.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `lremovexattr(2)`: removes the extended attribute `name` of `path` (not followed if a
/// symlink).
pub(crate) fn remove_xattr(path: &CStr, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and live across the call.
    let ret = unsafe { libc::lremovexattr(path.as_ptr(), name.as_ptr()) };
    check(ret as libc::c_long).map(|_| ())
}

/// `ioctl(fd, TIOCGWINSZ)`: the window size of the terminal `fd`.
pub(crate) fn window_size(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<libc::winsize> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero winsize is a valid value of this plain C struct.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the duration of the call; the kernel writes one winsize into
    // `size`, which is valid and large enough.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    check(ret as libc::c_long).map(|_| size)
}

/// `ioctl(fd, TIOCSWINSZ)`: sets the window size of the terminal `fd` (the kernel then sends
/// `SIGWINCH` to its foreground process group).
pub(crate) fn set_window_size(
    fd: std::os::fd::BorrowedFd<'_>,
    size: &libc::winsize,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `fd` is open for the duration of the call; the kernel only reads `size`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, size as *const _) };
    check(ret as libc::c_long).map(drop)
}

/// `ioctl(fd, TIOCSCTTY, 0)`: makes the terminal `fd` the controlling terminal of this
/// process, which must be a session leader without one (and the terminal nobody's).
pub(crate) fn set_controlling_terminal(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal), no pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as libc::c_int) };
    check(ret as libc::c_long).map(drop)
}

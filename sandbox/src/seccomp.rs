//! The seccomp filter every step runs under: a short deny list of system calls a build never
//! needs and that could reach across the sandbox's walls. `docs/sandbox.md` gives the reason
//! for each entry.
//!
//! Three programs are stacked (the kernel applies the strictest answer of all):
//! 1. refusals with `EPERM` (seccompiler, which also kills a process using a foreign
//!    architecture's calling convention, e.g. `int 0x80` on x86-64);
//! 2. `clone3` answered with `ENOSYS`, so that the C library falls back to `clone`, whose
//!    flags (unlike `clone3`'s, which sit in memory) the filter can inspect;
//! 3. (x86-64) every x32 system call (`nr >= 0x40000000`) answered with `ENOSYS`, so that the
//!    x32 aliases of the calls in 1 cannot slip past it;
//! 4. `socket` and `socketpair` for an address family other than `AF_UNIX`, `AF_INET`,
//!    `AF_INET6` and `AF_NETLINK` answered with `EAFNOSUPPORT` (vsock, packet, alg, ...: the
//!    answer of a kernel built without them, which every program handles as "not here");
//! 5. `socket` for a netlink protocol other than `NETLINK_ROUTE` answered with
//!    `EPROTONOSUPPORT`;
//! 6. unless the step is allowed to make set-id files ([`SetId::Allow`]): `chmod` and
//!    relatives, and `open`/`mkdir`/`mknod` and relatives that would create a file, whose mode
//!    has `S_ISUID` or `S_ISGID`, refused with `EPERM`; and `openat2`, whose mode sits in
//!    memory where the filter cannot see it, answered with `ENOSYS` (the C library and
//!    systemd fall back to `openat`);
//! 7. with 6: setting extended attributes answered with `EOPNOTSUPP` (as on a file system
//!    without them): the attribute name sits in memory, and `security.capability` would give
//!    a file capabilities that work for every user on the host when hermetic runs as root.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Errors building the filter (a bug, not a property of the host).
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot build the seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    #[error("seccomp filters are not supported on this architecture")]
    UnsupportedArch,
}

/// A system call refused whatever its arguments, with why.
pub struct Denied {
    pub name: &'static str,
    pub nr: i64,
    pub why: &'static str,
}

macro_rules! denied {
    ($($name:ident: $why:literal,)*) => {
        &[$(Denied { name: stringify!($name), nr: sys_nr::$name, why: $why },)*]
    };
}

/// System call numbers by name (a module so that the macro can name them).
#[allow(non_upper_case_globals)]
mod sys_nr {
    pub const ptrace: i64 = libc::SYS_ptrace;
    pub const process_vm_readv: i64 = libc::SYS_process_vm_readv;
    pub const process_vm_writev: i64 = libc::SYS_process_vm_writev;
    pub const process_madvise: i64 = libc::SYS_process_madvise;
    pub const pidfd_getfd: i64 = libc::SYS_pidfd_getfd;
    pub const kcmp: i64 = libc::SYS_kcmp;
    pub const kexec_load: i64 = libc::SYS_kexec_load;
    pub const kexec_file_load: i64 = libc::SYS_kexec_file_load;
    pub const init_module: i64 = libc::SYS_init_module;
    pub const finit_module: i64 = libc::SYS_finit_module;
    pub const delete_module: i64 = libc::SYS_delete_module;
    pub const bpf: i64 = libc::SYS_bpf;
    pub const perf_event_open: i64 = libc::SYS_perf_event_open;
    pub const userfaultfd: i64 = libc::SYS_userfaultfd;
    pub const add_key: i64 = libc::SYS_add_key;
    pub const request_key: i64 = libc::SYS_request_key;
    pub const keyctl: i64 = libc::SYS_keyctl;
    pub const io_uring_setup: i64 = libc::SYS_io_uring_setup;
    pub const io_uring_enter: i64 = libc::SYS_io_uring_enter;
    pub const io_uring_register: i64 = libc::SYS_io_uring_register;
    pub const settimeofday: i64 = libc::SYS_settimeofday;
    pub const clock_settime: i64 = libc::SYS_clock_settime;
    pub const clock_adjtime: i64 = libc::SYS_clock_adjtime;
    pub const adjtimex: i64 = libc::SYS_adjtimex;
    pub const swapon: i64 = libc::SYS_swapon;
    pub const swapoff: i64 = libc::SYS_swapoff;
    pub const reboot: i64 = libc::SYS_reboot;
    pub const acct: i64 = libc::SYS_acct;
    pub const syslog: i64 = libc::SYS_syslog;
    pub const open_by_handle_at: i64 = libc::SYS_open_by_handle_at;
    pub const name_to_handle_at: i64 = libc::SYS_name_to_handle_at;
    pub const setns: i64 = libc::SYS_setns;
    pub const mount: i64 = libc::SYS_mount;
    pub const umount2: i64 = libc::SYS_umount2;
    pub const pivot_root: i64 = libc::SYS_pivot_root;
    pub const move_mount: i64 = libc::SYS_move_mount;
    pub const open_tree: i64 = libc::SYS_open_tree;
    pub const fsopen: i64 = libc::SYS_fsopen;
    pub const fsconfig: i64 = libc::SYS_fsconfig;
    pub const fsmount: i64 = libc::SYS_fsmount;
    pub const fspick: i64 = libc::SYS_fspick;
    pub const mount_setattr: i64 = libc::SYS_mount_setattr;
}

/// Refused with `EPERM` whatever the arguments.
pub const DENIED: &[Denied] = denied! {
    ptrace: "inspect or control another process",
    process_vm_readv: "read another process's memory",
    process_vm_writev: "write another process's memory",
    process_madvise: "act on another process's memory",
    pidfd_getfd: "steal another process's file descriptors",
    kcmp: "probe another process's kernel objects",
    kexec_load: "replace the running kernel",
    kexec_file_load: "replace the running kernel",
    init_module: "load kernel code",
    finit_module: "load kernel code",
    delete_module: "unload kernel code",
    bpf: "load programs into the kernel",
    perf_event_open: "observe the host and other processes; large attack surface",
    userfaultfd: "stall the kernel at chosen points (exploit primitive)",
    add_key: "kernel keyrings are shared beyond the sandbox",
    request_key: "kernel keyrings are shared beyond the sandbox; upcalls to the host",
    keyctl: "kernel keyrings are shared beyond the sandbox",
    io_uring_setup: "bypasses this filter for the calls it performs; large attack surface",
    io_uring_enter: "bypasses this filter for the calls it performs",
    io_uring_register: "bypasses this filter for the calls it performs",
    settimeofday: "the host clock is not the step's to change",
    clock_settime: "the host clock is not the step's to change",
    clock_adjtime: "the host clock is not the step's to change",
    adjtimex: "the host clock is not the step's to change",
    swapon: "host memory management",
    swapoff: "host memory management",
    reboot: "host power state",
    acct: "host process accounting",
    syslog: "the host kernel log",
    open_by_handle_at: "opens files by handle, bypassing the mount tree (the 'shocker' escape)",
    name_to_handle_at: "the other half of open_by_handle_at",
    setns: "enter other namespaces",
    mount: "change the mount tree after set-up",
    umount2: "uncover what the set-up hid",
    pivot_root: "change the root after set-up",
    move_mount: "change the mount tree after set-up",
    open_tree: "copy mounts after set-up",
    fsopen: "create mounts after set-up",
    fsconfig: "create mounts after set-up",
    fsmount: "create mounts after set-up",
    fspick: "reconfigure mounts after set-up",
    mount_setattr: "make read-only mounts writable",
};

/// Whether a step may give files the set-user-id or set-group-id bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetId {
    /// Refused, and file capabilities with them (programs 6 and 7 of the module
    /// documentation). The default of every step.
    Deny,
    /// Allowed: image-tree steps (dpkg installs `su`, `passwd`, `mount`), whose trees are
    /// kept in the store's private (0700) step directories.
    Allow,
}

/// Address families a step may open sockets of. Everything else (`AF_VSOCK`, which the
/// network namespace does not isolate, `AF_PACKET`, `AF_ALG`, `AF_BLUETOOTH`, `AF_KEY`, ...)
/// answers `EAFNOSUPPORT`. Netlink stays for route reads: glibc's `getaddrinfo`
/// (`AI_ADDRCONFIG`) and `if_nameindex`, and `ip`, ask the kernel through it.
pub const ALLOWED_FAMILIES: [(i32, &str); 4] = [
    (libc::AF_UNIX, "AF_UNIX"),
    (libc::AF_INET, "AF_INET"),
    (libc::AF_INET6, "AF_INET6"),
    (libc::AF_NETLINK, "AF_NETLINK"),
];

/// The one netlink protocol a step may use: reading (it cannot change them without
/// `CAP_NET_ADMIN`) interfaces, addresses and routes. Others answer `EPROTONOSUPPORT`, which
/// libaudit (used by `useradd` in maintainer scripts) takes as "no audit".
pub const ALLOWED_NETLINK: i32 = libc::NETLINK_ROUTE;

/// The mode bits a step may not set unless [`SetId::Allow`].
const SETID_BITS: [u64; 2] = [libc::S_ISUID as u64, libc::S_ISGID as u64];

/// Namespace flags refused in `unshare` (all of them) and `clone` (all but `CLONE_NEWTIME`,
/// whose bit is part of the exit signal in `clone`).
const NAMESPACE_FLAGS: [(u64, &str); 8] = [
    (libc::CLONE_NEWNS as u64, "CLONE_NEWNS"),
    (libc::CLONE_NEWUSER as u64, "CLONE_NEWUSER"),
    (libc::CLONE_NEWPID as u64, "CLONE_NEWPID"),
    (libc::CLONE_NEWNET as u64, "CLONE_NEWNET"),
    (libc::CLONE_NEWUTS as u64, "CLONE_NEWUTS"),
    (libc::CLONE_NEWIPC as u64, "CLONE_NEWIPC"),
    (libc::CLONE_NEWCGROUP as u64, "CLONE_NEWCGROUP"),
    (0x80, "CLONE_NEWTIME"),
];

/// Terminal ioctls that type into or control the terminal the step might share.
// The type of ioctl numbers differs between C libraries (c_ulong on glibc, c_int on musl).
#[allow(clippy::unnecessary_cast)]
const DENIED_IOCTLS: [u64; 2] = [libc::TIOCSTI as u64, libc::TIOCLINUX as u64];

fn arch() -> Result<TargetArch, SeccompError> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else if cfg!(target_arch = "riscv64") {
        Ok(TargetArch::riscv64)
    } else {
        Err(SeccompError::UnsupportedArch)
    }
}

fn flag_rules(arg: u8, flags: &[(u64, &str)]) -> Result<Vec<SeccompRule>, SeccompError> {
    flags
        .iter()
        .map(|&(flag, _)| {
            let cond = SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?;
            Ok(SeccompRule::new(vec![cond])?)
        })
        .collect()
}

/// Rules matching a mode argument (`arg`) with a set-id bit, each also requiring the `extra`
/// condition (the flags of `open` that create a file), if any.
fn setid_rules(arg: u8, extra: &[(u8, u64)]) -> Result<Vec<SeccompRule>, SeccompError> {
    let mut rules = Vec::new();
    for &bit in &SETID_BITS {
        let mode = SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(bit),
            bit,
        )?;
        if extra.is_empty() {
            rules.push(SeccompRule::new(vec![mode.clone()])?);
        }
        for &(flags_arg, flag) in extra {
            let create = SeccompCondition::new(
                flags_arg,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?;
            rules.push(SeccompRule::new(vec![create, mode.clone()])?);
        }
    }
    Ok(rules)
}

/// `(system call, mode argument, flags argument)` of the calls that set a mode: the flags
/// argument, where there is one, says whether the call creates a file at all (`O_CREAT`,
/// `O_TMPFILE`); without `O_CREAT` the mode register of `open` may hold anything.
fn mode_calls() -> Vec<(i64, u8, Option<u8>)> {
    let mut calls = vec![
        (libc::SYS_fchmod, 1, None),
        (libc::SYS_fchmodat, 2, None),
        (libc::SYS_fchmodat2, 2, None),
        (libc::SYS_openat, 3, Some(2)),
        (libc::SYS_mkdirat, 2, None),
        (libc::SYS_mknodat, 2, None),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        (libc::SYS_chmod, 1, None),
        (libc::SYS_open, 2, Some(1)),
        (libc::SYS_creat, 1, None),
        (libc::SYS_mkdir, 1, None),
        (libc::SYS_mknod, 1, None),
    ]);
    calls
}

/// Program 6: no set-id bits.
fn no_setid(arch: TargetArch) -> Result<BpfProgram, SeccompError> {
    let create_flags = [libc::O_CREAT as u64, libc::O_TMPFILE as u64];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, mode_arg, flags_arg) in mode_calls() {
        let extra: Vec<(u8, u64)> = flags_arg
            .map(|f| create_flags.iter().map(|&c| (f, c)).collect())
            .unwrap_or_default();
        rules.insert(nr, setid_rules(mode_arg, &extra)?);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    Ok(BpfProgram::try_from(filter)?)
}

/// `setxattrat` (Linux 6.13; the same number on every architecture we support).
const SYS_SETXATTRAT: i64 = 463;

/// Program 7: no extended attributes set (file capabilities among them).
fn no_xattr_set(arch: TargetArch) -> Result<BpfProgram, SeccompError> {
    let calls = [
        libc::SYS_setxattr,
        libc::SYS_lsetxattr,
        libc::SYS_fsetxattr,
        SYS_SETXATTRAT,
    ];
    let filter = SeccompFilter::new(
        calls.into_iter().map(|nr| (nr, Vec::new())).collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EOPNOTSUPP as u32),
        arch,
    )?;
    Ok(BpfProgram::try_from(filter)?)
}

/// Programs 4 and 5: socket families and netlink protocols.
fn socket_programs(arch: TargetArch) -> Result<Vec<BpfProgram>, SeccompError> {
    // One rule: the family is none of the allowed ones.
    let other_family = || -> Result<SeccompRule, SeccompError> {
        let conds = ALLOWED_FAMILIES
            .iter()
            .map(|&(f, _)| {
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, f as u64)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SeccompRule::new(conds)?)
    };
    let families = SeccompFilter::new(
        [
            (libc::SYS_socket, vec![other_family()?]),
            (libc::SYS_socketpair, vec![other_family()?]),
        ]
        .into_iter()
        .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
        arch,
    )?;
    let netlink = SeccompFilter::new(
        [(
            libc::SYS_socket,
            vec![SeccompRule::new(vec![
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    libc::AF_NETLINK as u64,
                )?,
                SeccompCondition::new(
                    2,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Ne,
                    ALLOWED_NETLINK as u64,
                )?,
            ])?],
        )]
        .into_iter()
        .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPROTONOSUPPORT as u32),
        arch,
    )?;
    Ok(vec![
        BpfProgram::try_from(families)?,
        BpfProgram::try_from(netlink)?,
    ])
}

/// The compiled programs, in the order they are installed.
pub fn programs(setid: SetId) -> Result<Vec<BpfProgram>, SeccompError> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|d| (d.nr, Vec::new())).collect();
    rules.insert(libc::SYS_unshare, flag_rules(0, &NAMESPACE_FLAGS)?);
    rules.insert(
        libc::SYS_clone,
        flag_rules(clone_flags_arg(), &NAMESPACE_FLAGS[..7])?,
    );
    let ioctl_rules = DENIED_IOCTLS
        .iter()
        .map(|&req| {
            let cond = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req)?;
            Ok(SeccompRule::new(vec![cond])?)
        })
        .collect::<Result<Vec<_>, SeccompError>>()?;
    rules.insert(libc::SYS_ioctl, ioctl_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;

    // clone3, and openat2 when set-id bits are refused: ENOSYS, for the fallbacks.
    let mut enosys = vec![(libc::SYS_clone3, Vec::new())];
    if setid == SetId::Deny {
        enosys.push((libc::SYS_openat2, Vec::new()));
    }
    let clone3 = SeccompFilter::new(
        enosys.into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;

    let mut out = vec![BpfProgram::try_from(deny)?, BpfProgram::try_from(clone3)?];
    if cfg!(target_arch = "x86_64") {
        out.push(no_x32());
    }
    out.extend(socket_programs(arch)?);
    if setid == SetId::Deny {
        out.push(no_setid(arch)?);
        out.push(no_xattr_set(arch)?);
    }
    Ok(out)
}

/// The argument of `clone` holding the flags: the first everywhere we support.
fn clone_flags_arg() -> u8 {
    0
}

/// A hand-written program answering every x32 system call with `ENOSYS`. (The architecture
/// check of program 1 already ran; x32 calls carry the x86-64 architecture value.)
fn no_x32() -> BpfProgram {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    vec![
        // A = seccomp_data.nr (offset 0)
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A >= X32_SYSCALL_BIT: next, else skip one
        sock_filter {
            code: BPF_JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ]
}

/// Installs the programs on the calling thread. `no_new_privs` must already be set (the
/// step has no `CAP_SYS_ADMIN` by then).
pub fn install(programs: &[BpfProgram]) -> Result<(), seccompiler::Error> {
    for p in programs {
        seccompiler::apply_filter(p)?;
    }
    Ok(())
}

/// The namespace flag names refused in `unshare`, for the documentation and `doctor`.
pub fn namespace_flag_names() -> impl Iterator<Item = &'static str> {
    NAMESPACE_FLAGS.iter().map(|&(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_list_has_no_duplicates_and_every_entry_says_why() {
        let mut nrs: Vec<i64> = DENIED.iter().map(|d| d.nr).collect();
        nrs.sort();
        nrs.dedup();
        assert_eq!(nrs.len(), DENIED.len());
        assert!(DENIED.iter().all(|d| !d.why.is_empty()));
        assert!(
            DENIED
                .iter()
                .any(|d| d.name == "ptrace" && d.nr == libc::SYS_ptrace)
        );
    }

    #[test]
    fn programs_compile() {
        let progs = programs(SetId::Deny).unwrap();
        assert!(progs.len() >= 2);
        assert_eq!(programs(SetId::Allow).unwrap().len() + 2, progs.len());
        assert!(progs.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }

    #[test]
    fn filter_refuses_in_a_forked_child() {
        // Install the real filter in a child process and check three verdicts.
        let progs = programs(SetId::Deny).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs_err::write(&file, "x").unwrap();
        let chmod = |mode| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
                .map_err(|e| e.raw_os_error())
        };
        match crate::sys::fork().unwrap() {
            crate::sys::Forked::Child => {
                let ok = nix::sys::prctl::set_no_new_privs().is_ok()
                    && install(&progs).is_ok()
                    && chmod(0o4755) == Err(Some(libc::EPERM))
                    && chmod(0o2755) == Err(Some(libc::EPERM))
                    && chmod(0o1755).is_ok()
                    && nix::unistd::getpid().as_raw() > 0
                    && nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
                        == Err(nix::errno::Errno::EPERM)
                    && nix::sys::ptrace::attach(nix::unistd::getppid())
                        == Err(nix::errno::Errno::EPERM);
                crate::sys::exit_now(if ok { 0 } else { 1 });
            }
            crate::sys::Forked::Parent(pid) => {
                let status =
                    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0)
                );
            }
        }
    }
}

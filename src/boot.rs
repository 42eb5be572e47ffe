//! Booting images under QEMU with OVMF and, optionally, a software TPM (swtpm) and Secure
//! Boot, as `mkosi qemu` does: a q35 machine with `-nodefaults` (no empty CD drive adding a
//! failed boot option to PCR 4), the serial console on the terminal and optionally in a log
//! file, KVM when `/dev/kvm` can be opened, TCG otherwise.
//!
//! QEMU, OVMF, swtpm and sbsigntool come from the host's packages for now (qemu-system-x86,
//! ovmf, swtpm, swtpm-tools, sbsigntool, openssl); running them from pinned Debian packages
//! is not implemented yet.
//!
//! Everything a boot creates (the ESP directory, the copy of the firmware's variable store,
//! the TPM state, the decrypted test key) lives in one fresh directory per boot; QEMU and
//! swtpm are killed when the boot ends, whatever the reason.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `ovmf` package puts the firmware images.
pub const OVMF_DIR: &str = "/usr/share/OVMF";
/// OVMF's test ("snake-oil") Secure Boot key, enrolled in `OVMF_VARS_4M.snakeoil.fd`, as
/// `<this>.key` (protected by the passphrase [`SNAKEOIL_PASSPHRASE`]) and `<this>.pem`.
pub const SNAKEOIL_KEY: &str = "/usr/share/ovmf/PkKek-1-snakeoil";
/// The passphrase of OVMF's snake-oil key (Debian's ovmf README.Debian).
pub const SNAKEOIL_PASSPHRASE: &str = "snakeoil";

/// The firmware code and variable-store images of each Secure Boot state.
const FIRMWARE_SB_OFF: (&str, &str) = ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd");
const FIRMWARE_SB_ON: (&str, &str) = ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.snakeoil.fd");

/// How long swtpm may take to create its control socket.
const SWTPM_START: Duration = Duration::from_secs(20);

/// Errors of booting an image.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(
        "`{tool}` was not found on PATH (hermetic boot runs QEMU, OVMF and swtpm from the host's packages)\nhint: apt-get install {package}"
    )]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("the firmware file {path} does not exist\nhint: apt-get install {package}")]
    MissingFirmware {
        path: PathBuf,
        package: &'static str,
    },
    #[error(
        "cannot boot {path}: hermetic boot takes a .efi (a UKI), .qcow2, .raw or .vhd file\nhint: give a recipe name to build and boot an image"
    )]
    UnknownFile { path: PathBuf },
    #[error(
        "cannot boot {path} with Secure Boot: only a .efi can be signed for the boot\nhint: boot the image's .efi (`hermetic boot --secure-boot out/<image>.efi`) or its recipe name"
    )]
    SecureBootNeedsEfi { path: PathBuf },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run `{tool}`")]
    Spawn {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{tool}` failed ({status}) on {path}:\n{stderr}")]
    ToolFailed {
        tool: &'static str,
        path: PathBuf,
        status: ExitStatus,
        stderr: String,
    },
    #[error(
        "swtpm did not create its socket {socket} within {}s\nhint: run `swtpm socket --tpm2 --tpmstate dir=/tmp/x --ctrl type=unixio,path=/tmp/x.sock` to see why",
        SWTPM_START.as_secs()
    )]
    SwtpmDidNotStart { socket: PathBuf },
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BootError {
    let path = path.into();
    move |source| BootError::Io { path, source }
}

/// What is booted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium {
    /// A UKI, put on an ESP directory as `EFI/BOOT/BOOTX64.EFI`.
    Efi(PathBuf),
    /// A disk image and its QEMU format (`qcow2`, `raw`, `vpc`). It is booted in QEMU's
    /// snapshot mode: the file is never written.
    Disk { path: PathBuf, format: &'static str },
}

impl Medium {
    /// The medium of a file, by its extension.
    pub fn from_path(path: &Path) -> Result<Medium, BootError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let disk = |format| Medium::Disk {
            path: path.to_path_buf(),
            format,
        };
        Ok(match ext.as_str() {
            "efi" => Medium::Efi(path.to_path_buf()),
            "qcow2" => disk("qcow2"),
            "raw" | "img" => disk("raw"),
            "vhd" => disk("vpc"),
            _ => {
                return Err(BootError::UnknownFile {
                    path: path.to_path_buf(),
                });
            }
        })
    }

    /// The file booted.
    pub fn path(&self) -> &Path {
        match self {
            Medium::Efi(p) => p,
            Medium::Disk { path, .. } => path,
        }
    }
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Attach a fresh software TPM 2.0 (sha1, sha256 and sha384 banks) as a CRB device.
    pub tpm: bool,
    /// Boot the Secure Boot firmware with OVMF's test key enrolled; the UKI is signed with it.
    pub secure_boot: bool,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Kill the VM after this long.
    pub timeout: Option<Duration>,
    /// Also write the serial console to this file.
    pub serial_log: Option<PathBuf>,
    /// Where the signed copy of the UKI is written (`<stem>.signed.efi`); the boot's own
    /// directory when `None`.
    pub signed_dir: Option<PathBuf>,
    /// Use KVM when `/dev/kvm` can be opened (TCG otherwise).
    pub allow_kvm: bool,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            tpm: false,
            secure_boot: false,
            memory_mib: 2048,
            timeout: None,
            serial_log: None,
            signed_dir: None,
            allow_kvm: true,
        }
    }
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// The VM powered off (or rebooted: QEMU runs with `-no-reboot`) by itself.
    PoweredOff,
    /// QEMU exited with an error status.
    QemuFailed(String),
    /// The timeout expired and the VM was killed.
    TimedOut,
}

/// What a boot did.
#[derive(Debug, Clone)]
pub struct BootReport {
    pub outcome: BootOutcome,
    /// The UKI as booted (signed with the test key under Secure Boot), for a `.efi`.
    pub booted_efi: Option<PathBuf>,
    /// `kvm` or `tcg`.
    pub accelerator: &'static str,
    pub seconds: f64,
}

/// A host tool and the Debian package that has it.
#[derive(Debug, Clone, Copy)]
struct Tool {
    name: &'static str,
    package: &'static str,
}

const QEMU: Tool = Tool {
    name: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
const SWTPM: Tool = Tool {
    name: "swtpm",
    package: "swtpm",
};
const SWTPM_SETUP: Tool = Tool {
    name: "swtpm_setup",
    package: "swtpm-tools",
};
const SBSIGN: Tool = Tool {
    name: "sbsign",
    package: "sbsigntool",
};
const OPENSSL: Tool = Tool {
    name: "openssl",
    package: "openssl",
};

/// The host tools a boot with `opts` needs (`sbsign` and `openssl` only with Secure Boot,
/// which signs a `.efi`).
fn tools(opts: &BootOptions) -> Vec<Tool> {
    let mut tools = vec![QEMU];
    if opts.tpm {
        tools.extend([SWTPM, SWTPM_SETUP]);
    }
    if opts.secure_boot {
        tools.extend([SBSIGN, OPENSSL]);
    }
    tools
}

/// Finds `name` in `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Checks that every tool and firmware file a boot with `opts` needs is on this host, naming
/// the package of the first one missing (before a build, so that it does not run in vain).
pub fn check_tools(opts: &BootOptions) -> Result<(), BootError> {
    for tool in tools(opts) {
        if which(tool.name).is_none() {
            return Err(BootError::MissingTool {
                tool: tool.name,
                package: tool.package,
            });
        }
    }
    let (code, vars) = firmware(opts.secure_boot);
    let mut files = vec![code, vars];
    if opts.secure_boot {
        files.push(PathBuf::from(format!("{SNAKEOIL_KEY}.key")));
        files.push(PathBuf::from(format!("{SNAKEOIL_KEY}.pem")));
    }
    for path in files {
        if !path.is_file() {
            return Err(BootError::MissingFirmware {
                path,
                package: "ovmf",
            });
        }
    }
    Ok(())
}

/// [`check_tools`], and that `medium` exists and can be booted with `opts`.
pub fn check_host(medium: &Medium, opts: &BootOptions) -> Result<(), BootError> {
    if opts.secure_boot && !matches!(medium, Medium::Efi(_)) {
        return Err(BootError::SecureBootNeedsEfi {
            path: medium.path().to_path_buf(),
        });
    }
    check_tools(opts)?;
    let file = medium.path();
    if !file.is_file() {
        return Err(BootError::Io {
            path: file.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    Ok(())
}

fn firmware(secure_boot: bool) -> (PathBuf, PathBuf) {
    let (code, vars) = if secure_boot {
        FIRMWARE_SB_ON
    } else {
        FIRMWARE_SB_OFF
    };
    (
        Path::new(OVMF_DIR).join(code),
        Path::new(OVMF_DIR).join(vars),
    )
}

/// Whether KVM can be used: the CPU reports hardware virtualization (`vmx` or `svm` in
/// `/proc/cpuinfo`) and `/dev/kvm` opens for reading and writing. Some virtual machines offer
/// a `/dev/kvm` without nested virtualization, on which the guest dies of "KVM internal
/// error" at its first instructions; the CPU flags tell them apart. (QEMU still falls back to
/// TCG if KVM then refuses, through `accel=kvm:tcg`.)
pub fn kvm_usable() -> bool {
    let cpuinfo = fs_err::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpu_virtualizes(&cpuinfo)
        && fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
}

/// Whether a `/proc/cpuinfo` lists the `vmx` (Intel VT-x) or `svm` (AMD-V) flag.
fn cpu_virtualizes(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_whitespace())
        .any(|f| f == "vmx" || f == "svm")
}

/// Kills a child process when dropped, if it is still running.
struct Reaper {
    child: Child,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SIGTERM first: QEMU then restores the terminal it put in raw mode. (`kill(1)`
        // rather than a raw syscall: `unsafe` lives only in the sandbox crate.)
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_tool(tool: Tool, cmd: &mut Command, path: &Path) -> Result<(), BootError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BootError::Spawn {
            tool: tool.name,
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.trim().is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    Err(BootError::ToolFailed {
        tool: tool.name,
        path: path.to_path_buf(),
        status: out.status,
        stderr: stderr.trim_end().to_string(),
    })
}

/// Signs a copy of `efi` with OVMF's snake-oil key into `dir/<stem>.signed.efi`, using
/// `scratch` for the decrypted key.
pub fn sign_with_test_key(efi: &Path, dir: &Path, scratch: &Path) -> Result<PathBuf, BootError> {
    let key = scratch.join("snakeoil.key");
    let encrypted = PathBuf::from(format!("{SNAKEOIL_KEY}.key"));
    // sbsign cannot be given a passphrase: decrypt the key first (it stays in the boot's
    // private directory, removed with it).
    run_tool(
        OPENSSL,
        Command::new(OPENSSL.name)
            .args(["pkey", "-passin"])
            .arg(format!("pass:{SNAKEOIL_PASSPHRASE}"))
            .arg("-in")
            .arg(&encrypted)
            .arg("-out")
            .arg(&key),
        &encrypted,
    )?;
    let stem = efi
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_string());
    fs_err::create_dir_all(dir).map_err(io_err(dir))?;
    let signed = dir.join(format!("{stem}.signed.efi"));
    run_tool(
        SBSIGN,
        Command::new(SBSIGN.name)
            .arg("--key")
            .arg(&key)
            .arg("--cert")
            .arg(format!("{SNAKEOIL_KEY}.pem"))
            .arg("--output")
            .arg(&signed)
            .arg(efi),
        efi,
    )?;
    Ok(signed)
}

/// Starts swtpm on a fresh state in `dir`; returns it and its control socket.
fn start_swtpm(dir: &Path) -> Result<(Reaper, PathBuf), BootError> {
    let state = dir.join("tpm");
    fs_err::create_dir_all(&state).map_err(io_err(&state))?;
    run_tool(
        SWTPM_SETUP,
        Command::new(SWTPM_SETUP.name)
            .args(["--tpm2", "--pcr-banks", "sha1,sha256,sha384", "--createek"])
            .arg("--tpmstate")
            .arg(&state),
        &state,
    )?;
    let socket = dir.join("swtpm.sock");
    let child = Command::new(SWTPM.name)
        .args(["socket", "--tpm2", "--terminate"])
        .arg("--tpmstate")
        .arg(format!("dir={}", state.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| BootError::Spawn {
            tool: SWTPM.name,
            source,
        })?;
    let mut swtpm = Reaper { child };
    let start = Instant::now();
    while !socket.exists() {
        if start.elapsed() > SWTPM_START || matches!(swtpm.child.try_wait(), Ok(Some(_)) | Err(_)) {
            return Err(BootError::SwtpmDidNotStart { socket });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((swtpm, socket))
}

/// The QEMU command line of a boot, without the program name.
fn qemu_args(
    medium: &Medium,
    opts: &BootOptions,
    dir: &Path,
    accel: &str,
    tpm_socket: Option<&Path>,
) -> Vec<String> {
    let (code, _) = firmware(opts.secure_boot);
    let vars_copy = dir.join("OVMF_VARS.fd");
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    if opts.secure_boot {
        push(&["-machine", &format!("q35,smm=on,accel={accel}")]);
        push(&["-global", "driver=cfi.pflash01,property=secure,value=on"]);
    } else {
        push(&["-machine", &format!("q35,accel={accel}")]);
    }
    push(&["-nodefaults", "-display", "none", "-no-reboot"]);
    push(&["-m", &opts.memory_mib.to_string()]);
    // The serial console on the terminal (multiplexed with QEMU's monitor: Ctrl-A X quits,
    // Ctrl-A C switches to the monitor), and in the log file if asked for.
    let mut chardev = "stdio,id=console,mux=on,signal=off".to_string();
    if let Some(log) = &opts.serial_log {
        chardev.push_str(&format!(",logfile={},logappend=off", log.display()));
    }
    push(&["-chardev", &chardev]);
    push(&["-serial", "chardev:console", "-mon", "console"]);
    push(&[
        "-drive",
        &format!("if=pflash,format=raw,readonly=on,file={}", code.display()),
    ]);
    push(&[
        "-drive",
        &format!("if=pflash,format=raw,file={}", vars_copy.display()),
    ]);
    match medium {
        Medium::Efi(_) => push(&[
            "-drive",
            &format!("format=raw,file=fat:rw:{}", dir.join("esp").display()),
        ]),
        Medium::Disk { path, format } => push(&[
            "-drive",
            &format!(
                "if=virtio,format={format},snapshot=on,file={}",
                path.display()
            ),
        ]),
    }
    if let Some(socket) = tpm_socket {
        push(&[
            "-chardev",
            &format!("socket,id=tpm,path={}", socket.display()),
        ]);
        push(&["-tpmdev", "emulator,id=tpm0,chardev=tpm"]);
        push(&["-device", "tpm-crb,tpmdev=tpm0"]);
    }
    a
}

/// Boots `medium`. The serial console goes to this process's standard output (and to
/// `opts.serial_log`); `work` is the boot's own directory (ESP, variable store, TPM state).
pub fn boot(medium: &Medium, opts: &BootOptions, work: &Path) -> Result<BootReport, BootError> {
    check_host(medium, opts)?;
    let started = Instant::now();
    let (_, vars) = firmware(opts.secure_boot);
    let vars_copy = work.join("OVMF_VARS.fd");
    fs_err::copy(&vars, &vars_copy).map_err(io_err(&vars_copy))?;

    let mut booted_efi = None;
    if let Medium::Efi(efi) = medium {
        let efi = if opts.secure_boot {
            let dir = opts
                .signed_dir
                .clone()
                .unwrap_or_else(|| work.to_path_buf());
            sign_with_test_key(efi, &dir, work)?
        } else {
            efi.clone()
        };
        let boot_dir = work.join("esp/EFI/BOOT");
        fs_err::create_dir_all(&boot_dir).map_err(io_err(&boot_dir))?;
        let target = boot_dir.join("BOOTX64.EFI");
        fs_err::copy(&efi, &target).map_err(io_err(&target))?;
        booted_efi = Some(efi);
    }
    if let Some(log) = &opts.serial_log
        && let Some(parent) = log.parent().filter(|p| !p.as_os_str().is_empty())
    {
        fs_err::create_dir_all(parent).map_err(io_err(parent))?;
    }

    let swtpm = if opts.tpm {
        Some(start_swtpm(work)?)
    } else {
        None
    };
    let accelerator = if opts.allow_kvm && kvm_usable() {
        "kvm"
    } else {
        "tcg"
    };
    let accel = if accelerator == "kvm" {
        "kvm:tcg"
    } else {
        "tcg"
    };
    let args = qemu_args(
        medium,
        opts,
        work,
        accel,
        swtpm.as_ref().map(|(_, s)| s.as_path()),
    );
    let child = Command::new(QEMU.name)
        .args(&args)
        .spawn()
        .map_err(|source| BootError::Spawn {
            tool: QEMU.name,
            source,
        })?;
    let mut qemu = Reaper { child };
    let outcome = loop {
        match qemu.child.try_wait() {
            Ok(Some(status)) if status.success() => break BootOutcome::PoweredOff,
            Ok(Some(status)) => break BootOutcome::QemuFailed(status.to_string()),
            Ok(None) => {}
            Err(source) => {
                return Err(BootError::Spawn {
                    tool: QEMU.name,
                    source,
                });
            }
        }
        if opts.timeout.is_some_and(|t| started.elapsed() > t) {
            break BootOutcome::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // QEMU first (it holds swtpm's socket), then swtpm.
    drop(qemu);
    drop(swtpm);
    Ok(BootReport {
        outcome,
        booted_efi,
        accelerator,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_by_extension() {
        assert_eq!(
            Medium::from_path(Path::new("out/a.efi")).unwrap(),
            Medium::Efi(PathBuf::from("out/a.efi"))
        );
        for (name, format) in [("a.qcow2", "qcow2"), ("a.raw", "raw"), ("a.VHD", "vpc")] {
            assert_eq!(
                Medium::from_path(Path::new(name)).unwrap(),
                Medium::Disk {
                    path: PathBuf::from(name),
                    format
                }
            );
        }
        let err = Medium::from_path(Path::new("a.tar.gz")).unwrap_err();
        assert!(err.to_string().contains("a.tar.gz"), "{err}");
        assert!(err.to_string().contains("\nhint: "), "{err}");
    }

    #[test]
    fn kvm_needs_the_cpu_flags() {
        assert!(cpu_virtualizes("flags\t\t: fpu vme vmx sse\n"));
        assert!(cpu_virtualizes("processor : 0\nflags : fpu svm\n"));
        assert!(!cpu_virtualizes("flags : fpu hypervisor sse vmxe\n"));
        assert!(!cpu_virtualizes(""));
    }

    #[test]
    fn secure_boot_refuses_disks() {
        let medium = Medium::from_path(Path::new("a.qcow2")).unwrap();
        let opts = BootOptions {
            secure_boot: true,
            ..Default::default()
        };
        let err = check_host(&medium, &opts).unwrap_err();
        assert!(matches!(err, BootError::SecureBootNeedsEfi { .. }), "{err}");
    }

    #[test]
    fn command_line_of_a_secure_boot_with_tpm() {
        let medium = Medium::Efi(PathBuf::from("/x/a.efi"));
        let opts = BootOptions {
            tpm: true,
            secure_boot: true,
            memory_mib: 1536,
            serial_log: Some(PathBuf::from("/l/serial.log")),
            ..Default::default()
        };
        let a = qemu_args(
            &medium,
            &opts,
            Path::new("/w"),
            "tcg",
            Some(Path::new("/w/s.sock")),
        )
        .join(" ");
        for part in [
            "-machine q35,smm=on,accel=tcg",
            "-global driver=cfi.pflash01,property=secure,value=on",
            "-nodefaults",
            "-no-reboot",
            "-m 1536",
            "logfile=/l/serial.log",
            "file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            "if=pflash,format=raw,file=/w/OVMF_VARS.fd",
            "format=raw,file=fat:rw:/w/esp",
            "-chardev socket,id=tpm,path=/w/s.sock",
            "-device tpm-crb,tpmdev=tpm0",
        ] {
            assert!(a.contains(part), "{part} not in {a}");
        }
    }

    #[test]
    fn command_line_of_a_disk_without_tpm() {
        let medium = Medium::from_path(Path::new("/x/a.vhd")).unwrap();
        let a = qemu_args(
            &medium,
            &BootOptions::default(),
            Path::new("/w"),
            "kvm:tcg",
            None,
        )
        .join(" ");
        assert!(a.contains("-machine q35,accel=kvm:tcg "), "{a}");
        assert!(
            a.contains("if=virtio,format=vpc,snapshot=on,file=/x/a.vhd"),
            "{a}"
        );
        assert!(a.contains("OVMF_CODE_4M.fd"), "{a}");
        assert!(!a.contains("tpm"), "{a}");
        assert!(!a.contains("smm=on"), "{a}");
    }
}

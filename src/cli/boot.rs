//! `hermetic boot`: boot an image under QEMU with OVMF, optionally with a software TPM and
//! Secure Boot.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::Context;
use crate::boot::{BootOptions, BootOutcome, Medium};
use crate::build::BuildOptions;

/// The long help of `hermetic boot`, after the options.
const AFTER_HELP: &str = "\
Boots like `mkosi qemu`: QEMU q35 with OVMF, -nodefaults, the serial console on this terminal
(Ctrl-A X quits), KVM when /dev/kvm can be opened, TCG otherwise.

TARGET is a recipe name: the image is built first (nothing runs when it is unchanged), then its
disk (.qcow2, .vhd) or, with --secure-boot or without a disk, its .efi is booted. FILE is a .efi
(put on an ESP directory as EFI/BOOT/BOOTX64.EFI), .qcow2, .raw or .vhd (disks are booted in
snapshot mode: never written).

QEMU, OVMF, swtpm and sbsigntool are taken from this host's packages:
  apt-get install qemu-system-x86 ovmf swtpm swtpm-tools sbsigntool openssl
Running them from pinned Debian packages in the sandbox is not implemented yet.

Exit status: 0 when the VM powered off by itself (a guest reboot also ends the boot), 124 when
--timeout killed it, 1 when QEMU failed.";

/// Arguments of `hermetic boot`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// A recipe name, or a .efi, .qcow2, .raw or .vhd file.
    #[arg(value_name = "TARGET|FILE")]
    pub target: String,

    /// Attach a software TPM 2.0 (swtpm, fresh state for every boot, sha1, sha256 and sha384
    /// banks) as a CRB device.
    #[arg(long)]
    pub tpm: bool,

    /// Boot with Secure Boot on: OVMF's Secure Boot firmware with its test ("snake-oil") key
    /// enrolled, and a copy of the UKI signed with that key (written to the output directory
    /// as <stem>.signed.efi).
    #[arg(long)]
    pub secure_boot: bool,

    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub memory: u32,

    /// Kill the VM after this many seconds (and exit with status 124).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,

    /// Also write the serial console to this file.
    #[arg(long, value_name = "PATH")]
    pub serial_log: Option<PathBuf>,

    /// Where TARGET's outputs are built and the signed UKI is written [default: PROJECT/out
    /// for a TARGET; for a FILE the signed copy is removed after the boot].
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Never use KVM, even when /dev/kvm can be opened.
    #[arg(long)]
    pub no_kvm: bool,

    /// Select a profile of the recipes (repeatable), for a TARGET.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
}

/// Whether the argument names a file rather than a recipe.
fn is_file_argument(arg: &str) -> bool {
    let path = Path::new(arg);
    path.is_file()
        || arg.contains('/')
        || path
            .extension()
            .is_some_and(|e| ["efi", "qcow2", "raw", "img", "vhd"].contains(&&*e.to_string_lossy()))
}

/// Builds the image `target` and returns the file to boot.
fn build_target(
    ctx: &Context,
    target: &str,
    args: &Args,
    out_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let (project, lock, store) = super::plan::load(ctx)?;
    let targets = [target.to_string()];
    let request = crate::build::pipeline::Request {
        targets: &targets,
        profiles: &args.profiles,
        offline: false,
        mirrors: &[],
        source_dirs: &[],
        omit: &[],
        omit_unavailable: false,
        options: BuildOptions {
            output_dir: out_dir.to_path_buf(),
            keep_failed: false,
            rebuild: false,
            rebuild_only: Vec::new(),
            report: ctx.reporter(),
            jobs: None,
        },
    };
    let report = crate::build::pipeline::build_targets(&store, &project, &lock, &request)?.report;
    let has = |ext: &str| {
        report
            .outputs
            .iter()
            .map(|(p, _)| p)
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .map(|p| out_dir.join(p))
    };
    let efi = has("efi").filter(|p| !p.to_string_lossy().ends_with(".signed.efi"));
    let chosen = if args.secure_boot {
        efi
    } else {
        has("qcow2")
            .or_else(|| has("vhd"))
            .or_else(|| has("raw"))
            .or(efi)
    };
    chosen.ok_or_else(|| {
        crate::error::Hinted {
            message: format!(
                "image `{target}` has no bootable output{}",
                if args.secure_boot {
                    " (Secure Boot needs its .efi)"
                } else {
                    ""
                }
            ),
            hint: "give its recipe a bootable format (`uki`, `qemu`, `azure`, `gcp`) and a \
                   kernel package"
                .into(),
            subject: crate::error::Subject::package(target),
        }
        .into()
    })
}

/// Runs `hermetic boot`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let file_given = is_file_argument(&args.target);
    let out_dir = args
        .output
        .clone()
        .unwrap_or_else(|| ctx.project.join("out"));
    let opts = BootOptions {
        tpm: args.tpm,
        secure_boot: args.secure_boot,
        memory_mib: args.memory,
        timeout: args.timeout.map(Duration::from_secs),
        serial_log: args.serial_log.clone(),
        // A FILE's signed copy is kept only where --output says.
        signed_dir: if file_given {
            args.output.clone()
        } else {
            Some(out_dir.clone())
        },
        allow_kvm: !args.no_kvm,
    };
    crate::boot::check_tools(&opts)?;
    let file = if file_given {
        PathBuf::from(&args.target)
    } else {
        build_target(ctx, &args.target, &args, &out_dir)?
    };
    let medium = Medium::from_path(&file)?;
    crate::boot::check_host(&medium, &opts)?;
    let work = tempfile::Builder::new()
        .prefix("hermetic-boot-")
        .tempdir()
        .context("cannot create a temporary directory for the boot")?;
    if ctx.chatty() {
        eprintln!(
            "booting {} (TPM {}, Secure Boot {}; Ctrl-A X quits)",
            file.display(),
            if args.tpm { "on" } else { "off" },
            if args.secure_boot { "on" } else { "off" },
        );
    }
    let report = crate::boot::boot(&medium, &opts, work.path())
        .with_context(|| format!("cannot boot {}", file.display()))?;
    let (word, code) = match &report.outcome {
        BootOutcome::PoweredOff => ("powered off".to_string(), ExitCode::SUCCESS),
        BootOutcome::TimedOut => (
            "timed out and was killed".to_string(),
            crate::exit::Exit::Timeout.into(),
        ),
        BootOutcome::QemuFailed(status) => (format!("QEMU failed ({status})"), ExitCode::FAILURE),
    };
    if ctx.json {
        let json = serde_json::json!({
            "file": file,
            "booted_efi": report.booted_efi,
            "accelerator": report.accelerator,
            "tpm": args.tpm,
            "secure_boot": args.secure_boot,
            "outcome": match report.outcome {
                BootOutcome::PoweredOff => "powered-off",
                BootOutcome::TimedOut => "timed-out",
                BootOutcome::QemuFailed(_) => "qemu-failed",
            },
            "seconds": report.seconds,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if ctx.verbosity >= 0 {
        eprintln!(
            "the VM {word} after {:.0} s ({})",
            report.seconds, report.accelerator
        );
        if let Some(efi) = report.booted_efi.as_ref().filter(|_| args.secure_boot) {
            eprintln!("booted the signed copy {}", efi.display());
        }
    }
    Ok(code)
}

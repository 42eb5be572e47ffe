//! The proof of issue 6, end to end: an image built by `hermetic build` from pinned Debian
//! packages boots under real firmware (OVMF) with a real software TPM (swtpm) through
//! `hermetic boot --tpm`, with Secure Boot off and on, and the PCRs the guest reads from the
//! TPM equal the prediction of `hermetic measure` exactly.
//!
//! The image `pcrtest` is `base` plus Debian's cloud kernel as a UKI, with an overlay holding
//! a systemd service that prints every PCR of the sha256 and sha384 banks and the firmware's
//! TCG event log (base64) on the serial console between markers, then powers off. The
//! observation comes from the TPM (through the guest kernel); the prediction is computed by
//! `hermetic measure` from the file; they are compared for PCR 4, 9 and 11 of both banks. PCR
//! 11 is also checked against trixie's `systemd-measure calculate` (from the mirror), and the
//! event log is replayed: it must reproduce the observed PCRs, and PCR 4 must hold the two
//! images (UKI and kernel) with Secure Boot off and only the UKI with it on.
//!
//! Needs the archive through the host's apt mirror, the sandbox (root in CI), qemu-system-x86,
//! ovmf, swtpm, swtpm-tools, sbsigntool, openssl, binutils. Under TCG each boot takes 1-3
//! minutes; a boot is killed after 600 s. The store lives in the target's temporary directory
//! so that a second run finds the build cached.

mod project;
#[path = "uki_support.rs"]
mod uki_support;

use project::{Kernel, run};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384};

/// The recipe of the test image.
const RECIPE: &str = r#"description = "base + the cloud kernel as a UKI whose boot prints its PCRs and event log"
parent = "base"
format = "uki"
packages = ["linux-image-cloud-amd64"]
overlays = ["pcrtest"]
cmdline = "console=ttyS0 quiet"
"#;

/// The guest's report: PCRs and event log on the serial console, then power off.
const REPORT_SCRIPT: &str = r#"#!/bin/sh
# Prints every PCR of the sha256 and sha384 banks and the firmware's TCG event log (base64)
# on the serial console, between markers, then powers the VM off.
exec >/dev/ttyS0 2>&1
# No udev in this image: load the TPM drivers by hand (Debian's cloud kernel has them built in,
# and then modprobe does nothing).
modprobe -q tpm_crb 2>/dev/null || true
modprobe -q tpm_tis 2>/dev/null || true
if [ ! -e /sys/kernel/security/tpm0 ]; then
  mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
fi
i=0
while [ ! -e /sys/class/tpm/tpm0/pcr-sha256/0 ] && [ "$i" -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
echo "HERMETIC-REPORT-BEGIN"
for bank in sha256 sha384; do
  for n in $(seq 0 23); do
    echo "HERMETIC-PCR $bank $n $(cat /sys/class/tpm/tpm0/pcr-$bank/$n)"
  done
done
log=/sys/kernel/security/tpm0/binary_bios_measurements
echo "HERMETIC-EVENTLOG-SHA256 $(sha256sum <"$log" | cut -d' ' -f1)"
base64 -w 64 <"$log" | while read -r line; do
  echo "HERMETIC-EVENTLOG $line"
done
echo "HERMETIC-REPORT-END"
systemctl --no-block poweroff || poweroff -f
"#;

/// Ordered before the serial getty: its `vhangup()` of ttyS0 would cut the report short.
const REPORT_UNIT: &str = "[Unit]
Description=Print the PCRs and the TCG event log on the serial console, then power off
Before=getty.target serial-getty@ttyS0.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/hermetic-pcr-report
";

fn hermetic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermetic"))
}

/// A project with hermetic.toml, keys/, recipes/base.toml, recipes/pcrtest.toml and the
/// overlay of the report service, enabled by a symlink as `systemctl enable` makes it.
fn project() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs_err::copy(src.join("hermetic.toml"), p.join("hermetic.toml")).unwrap();
    fs_err::create_dir_all(p.join("recipes")).unwrap();
    // base without its [kernel] table: this image takes Debian's packaged cloud kernel.
    fs_err::write(
        p.join("recipes/base.toml"),
        project::base_recipe(Kernel::Package),
    )
    .unwrap();
    fs_err::write(p.join("recipes/pcrtest.toml"), RECIPE).unwrap();
    fs_err::create_dir_all(p.join("keys")).unwrap();
    for entry in fs_err::read_dir(src.join("keys")).unwrap() {
        let entry = entry.unwrap();
        fs_err::copy(entry.path(), p.join("keys").join(entry.file_name())).unwrap();
    }
    let overlay = p.join("overlays/pcrtest");
    let script = overlay.join("usr/local/sbin/hermetic-pcr-report");
    fs_err::create_dir_all(script.parent().unwrap()).unwrap();
    fs_err::write(&script, REPORT_SCRIPT).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let units = overlay.join("etc/systemd/system");
    fs_err::create_dir_all(units.join("multi-user.target.wants")).unwrap();
    fs_err::write(units.join("hermetic-pcr-report.service"), REPORT_UNIT).unwrap();
    std::os::unix::fs::symlink(
        "../hermetic-pcr-report.service",
        units.join("multi-user.target.wants/hermetic-pcr-report.service"),
    )
    .unwrap();
    dir
}

/// What the guest printed.
struct Report {
    /// (bank, pcr) -> lower-case hex.
    pcrs: BTreeMap<(String, u32), String>,
    event_log: Vec<u8>,
}

/// Parses the markers of the serial console. Console messages of the kernel or of systemd
/// may precede a marker on its line, so markers are searched for, not expected at the start.
fn parse_report(console: &str) -> Report {
    assert!(
        console.contains("HERMETIC-REPORT-END"),
        "the guest did not finish its report; console:\n{console}"
    );
    let mut pcrs = BTreeMap::new();
    let mut b64 = String::new();
    let mut log_sha256 = None;
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(i) = line.find("HERMETIC-PCR ") {
            let f: Vec<&str> = line[i..].split_whitespace().collect();
            if let [_, bank, pcr, value] = f.as_slice() {
                pcrs.insert(
                    (bank.to_string(), pcr.parse::<u32>().unwrap()),
                    value.to_ascii_lowercase(),
                );
            }
        } else if let Some(i) = line.find("HERMETIC-EVENTLOG-SHA256 ") {
            log_sha256 = line[i..].split_whitespace().nth(1).map(str::to_string);
        } else if let Some(i) = line.find("HERMETIC-EVENTLOG ") {
            b64.push_str(line[i..].split_whitespace().nth(1).unwrap_or(""));
        }
    }
    assert_eq!(pcrs.len(), 48, "not every PCR was printed:\n{console}");
    let event_log = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .expect("the event log is base64");
    assert_eq!(
        Some(hex::encode(Sha256::digest(&event_log))),
        log_sha256,
        "the event log was damaged on the console"
    );
    Report { pcrs, event_log }
}

/// One event of a crypto-agile TCG event log: its PCR, type and digests by TPM algorithm id.
struct Event {
    pcr: u32,
    kind: u32,
    digests: BTreeMap<u16, Vec<u8>>,
}

const TPM_ALG_SHA256: u16 = 0x000b;
const TPM_ALG_SHA384: u16 = 0x000c;
const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
const EV_NO_ACTION: u32 = 3;

/// Parses a TCG PC Client crypto-agile event log (a SHA-1 format header event holding the
/// Spec ID event with the digest sizes, then TCG_PCR_EVENT2 records).
fn parse_event_log(log: &[u8]) -> Vec<Event> {
    let u16_at = |o: usize| u16::from_le_bytes(log[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(log[o..o + 4].try_into().unwrap());
    // The header: pcr, type, sha1 digest (20), size, "Spec ID Event03\0" event.
    let header_size = u32_at(28) as usize;
    let spec = &log[32..32 + header_size];
    assert!(
        spec.starts_with(b"Spec ID Event03\0"),
        "not a crypto-agile log"
    );
    let count = u32::from_le_bytes(spec[24..28].try_into().unwrap()) as usize;
    let mut sizes = BTreeMap::new();
    for i in 0..count {
        let o = 28 + i * 4;
        let alg = u16::from_le_bytes(spec[o..o + 2].try_into().unwrap());
        let size = u16::from_le_bytes(spec[o + 2..o + 4].try_into().unwrap());
        sizes.insert(alg, size as usize);
    }
    let mut events = Vec::new();
    let mut o = 32 + header_size;
    while o + 12 <= log.len() {
        let pcr = u32_at(o);
        let kind = u32_at(o + 4);
        let n = u32_at(o + 8) as usize;
        o += 12;
        let mut digests = BTreeMap::new();
        for _ in 0..n {
            let alg = u16_at(o);
            let size = sizes[&alg];
            digests.insert(alg, log[o + 2..o + 2 + size].to_vec());
            o += 2 + size;
        }
        let size = u32_at(o) as usize;
        o += 4 + size;
        events.push(Event { pcr, kind, digests });
    }
    assert_eq!(o, log.len(), "the event log does not end on an event");
    events
}

/// Replays the events of `pcr` in one bank.
fn replay(events: &[Event], pcr: u32, alg: u16) -> String {
    let len = if alg == TPM_ALG_SHA256 { 32 } else { 48 };
    let mut reg = vec![0u8; len];
    for e in events
        .iter()
        .filter(|e| e.pcr == pcr && e.kind != EV_NO_ACTION)
    {
        let d = &e.digests[&alg];
        reg = if alg == TPM_ALG_SHA256 {
            Sha256::digest([&reg[..], d].concat()).to_vec()
        } else {
            Sha384::digest([&reg[..], d].concat()).to_vec()
        };
    }
    hex::encode(reg)
}

/// `systemd-measure calculate` of the sections of `efi` (as objcopy extracts them): PCR 11 in
/// both banks, by bank name.
fn systemd_measure_pcr11(efi: &Path, dir: &Path) -> BTreeMap<String, String> {
    let headers = Command::new("objdump").arg("-h").arg(efi).output().unwrap();
    assert!(headers.status.success(), "objdump -h {}", efi.display());
    let headers = String::from_utf8_lossy(&headers.stdout);
    let present = |s: &str| {
        headers
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(s))
    };
    let mut sm = uki_support::systemd_measure();
    sm.args([
        "calculate",
        "--bank=sha256",
        "--bank=sha384",
        "--phase=:",
        "-j",
    ]);
    let mut n = 0;
    for s in [
        "linux", "osrel", "cmdline", "initrd", "ucode", "splash", "dtb", "uname", "sbat", "pcrpkey",
    ] {
        let name = format!(".{s}");
        if !present(&name) {
            continue;
        }
        let bytes = uki_support::objcopy_section(efi, &name, dir);
        let path = dir.join(format!("sm-{s}"));
        fs_err::write(&path, bytes).unwrap();
        sm.arg(format!("--{s}={}", path.display()));
        n += 1;
    }
    assert!(n >= 4, "the UKI lacks sections:\n{headers}");
    let out = sm.output().unwrap();
    assert!(
        out.status.success(),
        "systemd-measure failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    ["sha256", "sha384"]
        .into_iter()
        .map(|bank| {
            (
                bank.to_string(),
                v[bank][0]["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Boots the image with `hermetic boot --tpm`; returns the guest's report and the UKI booted.
fn boot(p: &Path, store: &Path, out: &Path, secure_boot: bool) -> (Report, PathBuf) {
    let log = p.join(format!("serial-sb-{secure_boot}.log"));
    let mut cmd = hermetic();
    cmd.arg("-C")
        .arg(p)
        .arg("--store")
        .arg(store)
        .args(["--json", "boot", "--tpm", "--timeout", "600", "--output"])
        .arg(out)
        .arg("--serial-log")
        .arg(&log);
    if secure_boot {
        cmd.arg("--secure-boot");
    }
    cmd.arg("pcrtest");
    let output = cmd.output().expect("hermetic boot");
    let console = fs_err::read_to_string(&log).unwrap_or_default();
    assert!(
        output.status.success(),
        "hermetic boot (Secure Boot {secure_boot}) failed: {}\nstderr:\n{}\nconsole:\n{console}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
    // The console was also on standard output, before the JSON summary.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("HERMETIC-REPORT-END"), "{stdout}");
    let json_start = stdout.rfind("\n{").map(|i| i + 1).unwrap_or(0);
    let summary: Value = serde_json::from_str(&stdout[json_start..]).unwrap();
    assert_eq!(summary["outcome"], "powered-off", "{summary}");
    assert_eq!(summary["tpm"], true);
    assert_eq!(summary["secure_boot"], secure_boot);
    let booted = PathBuf::from(summary["booted_efi"].as_str().unwrap());
    if secure_boot {
        assert_eq!(booted, out.join("pcrtest.signed.efi"));
    } else {
        assert_eq!(booted, out.join("pcrtest.efi"));
    }
    (parse_report(&console), booted)
}

#[test]
fn booted_pcrs_equal_the_prediction_with_secure_boot_off_and_on() {
    let project = project();
    let p = project.path();
    let store = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-live-store");
    let out = p.join("out");
    let global = |cmd: &mut Command| {
        cmd.arg("-C").arg(p).arg("--store").arg(&store);
    };
    for args in [
        &["lock", "--allow-mirror-state"][..],
        &["fetch"],
        &["build", "pcrtest"],
    ] {
        let mut cmd = hermetic();
        global(&mut cmd);
        run(cmd.args(args));
    }
    let efi = out.join("pcrtest.efi");
    assert!(efi.is_file(), "hermetic build wrote no {}", efi.display());
    let scratch = tempfile::tempdir().unwrap();

    for secure_boot in [false, true] {
        let state = if secure_boot { "on" } else { "off" };
        let (report, booted) = boot(p, &store, &out, secure_boot);
        // Secure Boot really was on: the signed copy carries a signature, the unsigned UKI
        // would not have been started by the snake-oil firmware.
        if secure_boot {
            assert_ne!(fs_err::read(&booted).unwrap(), fs_err::read(&efi).unwrap());
        }
        let events = parse_event_log(&report.event_log);
        for (bank, alg) in [("sha256", TPM_ALG_SHA256), ("sha384", TPM_ALG_SHA384)] {
            let want = project::predicted_pcrs(&booted, bank, secure_boot);
            for (pcr, value) in &want {
                let seen = &report.pcrs[&(bank.to_string(), *pcr)];
                assert_eq!(
                    seen, value,
                    "PCR {pcr} ({bank}, Secure Boot {state}): the TPM says {seen}, hermetic measure predicts {value}"
                );
                // The firmware's log replays to what the TPM holds.
                assert_eq!(
                    &replay(&events, *pcr, alg),
                    seen,
                    "the event log does not replay to PCR {pcr} ({bank}, Secure Boot {state})"
                );
            }
            // PCR 4 and 9 differ: the guest printed what the TPM holds, not one constant.
            assert_ne!(
                report.pcrs[&(bank.to_string(), 4)],
                report.pcrs[&(bank.to_string(), 9)]
            );
        }
        eprintln!(
            "Secure Boot {state}: the TPM holds the predicted PCR 4 {}, 9 {}, 11 {} (sha256) \
             and the same three in sha384; {} events in the log",
            report.pcrs[&("sha256".to_string(), 4)],
            report.pcrs[&("sha256".to_string(), 9)],
            report.pcrs[&("sha256".to_string(), 11)],
            events.len()
        );
        // PCR 4 holds the UKI, and the kernel only with Secure Boot off.
        let images = events
            .iter()
            .filter(|e| e.pcr == 4 && e.kind == EV_EFI_BOOT_SERVICES_APPLICATION)
            .count();
        assert_eq!(
            images,
            if secure_boot { 1 } else { 2 },
            "images measured into PCR 4 with Secure Boot {state}"
        );
        // systemd's own calculation of PCR 11 agrees with what the TPM holds.
        let sm = systemd_measure_pcr11(&booted, scratch.path());
        for (bank, value) in sm {
            assert_eq!(
                report.pcrs[&(bank.clone(), 11)],
                value,
                "PCR 11 ({bank}, Secure Boot {state}): the TPM vs systemd-measure calculate"
            );
        }
    }
}

/// A guest that never powers off (the firmware cannot start a file that is not a PE image and
/// waits in its boot manager) is killed at `--timeout`, and `hermetic boot` exits with 124.
#[test]
fn a_boot_that_does_not_end_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let efi = dir.path().join("not-a-pe.efi");
    fs_err::write(&efi, b"this is not a PE image").unwrap();
    let log = dir.path().join("serial.log");
    let start = std::time::Instant::now();
    let out = hermetic()
        .args(["boot", "--timeout", "20", "--serial-log"])
        .arg(&log)
        .arg(&efi)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(
        start.elapsed().as_secs() < 120,
        "the VM was not killed in time"
    );
    // The firmware did run: it wrote to the serial console.
    assert!(fs_err::metadata(&log).unwrap().len() > 0);
}

/// A host without QEMU gets the package to install.
#[test]
fn a_missing_tool_is_named_with_its_package() {
    let dir = tempfile::tempdir().unwrap();
    let efi = dir.path().join("a.efi");
    fs_err::write(&efi, b"x").unwrap();
    let out = hermetic()
        .args(["boot", "--tpm"])
        .arg(&efi)
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("`qemu-system-x86_64` was not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: apt-get install qemu-system-x86"),
        "{stderr}"
    );
}

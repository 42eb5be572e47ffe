//! The proof: boot a UKI under real firmware with a real software TPM and compare the PCRs the
//! guest reads with `hermetic measure`'s prediction, with Secure Boot off and on.
//!
//! The UKI is assembled by `UkiBuilder` from trixie's systemd-stub 257 and cloud kernel, with
//! an initrd holding a static busybox whose `/init` prints PCR 4, 9 and 11 of the sha256 and
//! sha384 banks from sysfs, then powers off. QEMU q35 (TCG) runs OVMF with `-nodefaults`
//! (no empty CD drive adding a failed boot option to PCR 4) and swtpm as a TPM 2.0 CRB device.
//! For Secure Boot the UKI is signed by `sbsign` with OVMF's snake-oil key, enrolled in
//! `OVMF_VARS_4M.snakeoil.fd`.
//!
//! Needs: qemu-system-x86, ovmf, swtpm, swtpm-tools, sbsigntool, openssl, cpio, and what
//! tests/uki_ukify.rs needs. About 15 s per boot.

#[path = "uki_support.rs"]
mod uki_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hermetic::image::uki::UkiBuilder;
use serde_json::Value;
use uki_support::*;

const OVMF: &str = "/usr/share/OVMF";
const SNAKEOIL: &str = "/usr/share/ovmf/PkKek-1-snakeoil";

const INIT: &str = "#!/bin/busybox sh
/bin/busybox mkdir -p /sys /proc
/bin/busybox mount -t sysfs sysfs /sys
for b in sha256 sha384; do
  for i in 4 9 11; do
    echo \"PCR $b $i $(/bin/busybox cat /sys/class/tpm/tpm0/pcr-$b/$i)\"
  done
done
/bin/busybox poweroff -f
";

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills a child we started if it is still running when dropped.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Builds the test UKI (unsigned) in `dir`.
fn test_uki(t: &Trixie, dir: &Path) -> PathBuf {
    let bb = extract(&["busybox-static"]);
    let tree = dir.join("initrd-tree");
    fs_err::create_dir_all(tree.join("bin")).unwrap();
    fs_err::copy(bb.join("usr/bin/busybox"), tree.join("bin/busybox")).unwrap();
    fs_err::write(tree.join("init"), INIT).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(tree.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cpio = Command::new("sh")
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio -o -H newc --quiet")
        .current_dir(&tree)
        .output()
        .expect("cpio");
    assert!(cpio.status.success(), "cpio -o failed");

    let mut b = UkiBuilder::new(fs_err::read(&t.stub).unwrap(), "stub");
    b.linux = Some(fs_err::read(&t.kernel).unwrap());
    b.initrds = vec![cpio.stdout];
    b.cmdline = Some(b"console=ttyS0 panic=-1 quiet\n".to_vec());
    b.os_release = Some(b"ID=hermetic\nVERSION_ID=0\n".to_vec());
    b.uname = Some(t.kernel_release.clone());
    let path = dir.join("boot.efi");
    fs_err::write(&path, b.build().unwrap()).unwrap();
    path
}

/// Boots `uki` and returns the PCRs the guest printed: (bank, pcr) -> lower-case hex.
fn boot(uki: &Path, dir: &Path, secure_boot: bool) -> BTreeMap<(String, u32), String> {
    // Two TCG guests at once would only slow each other down.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

    let esp = dir.join("esp");
    fs_err::create_dir_all(esp.join("EFI/BOOT")).unwrap();
    fs_err::copy(uki, esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap();
    let (code, vars) = if secure_boot {
        ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.snakeoil.fd")
    } else {
        ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")
    };
    let vars_copy = dir.join("vars.fd");
    fs_err::copy(Path::new(OVMF).join(vars), &vars_copy).unwrap();

    let state = dir.join("tpm");
    fs_err::create_dir_all(&state).unwrap();
    run(Command::new("swtpm_setup")
        .args(["--tpm2", "--pcr-banks", "sha1,sha256,sha384", "--createek"])
        .arg("--tpmstate")
        .arg(&state));
    let sock = dir.join("swtpm.sock");
    let _swtpm = Reaper(
        Command::new("swtpm")
            .args(["socket", "--tpm2"])
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm"),
    );
    let start = Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "swtpm did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut qemu = Command::new("qemu-system-x86_64");
    if secure_boot {
        qemu.args(["-machine", "q35,smm=on"])
            .args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
    } else {
        qemu.args(["-machine", "q35"]);
    }
    qemu.args(["-nodefaults", "-accel", "tcg", "-m", "1024", "-nographic"])
        .args(["-serial", "stdio", "-no-reboot"])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,readonly=on,file={OVMF}/{code}"
        ))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars_copy.display()))
        .arg("-drive")
        .arg(format!("format=raw,file=fat:rw:{}", esp.display()))
        .arg("-chardev")
        .arg(format!("socket,id=c,path={}", sock.display()))
        .args(["-tpmdev", "emulator,id=t,chardev=c"])
        .args(["-device", "tpm-crb,tpmdev=t"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = qemu.spawn().expect("qemu-system-x86_64");
    let pid = child.id();
    // A watchdog: a guest that hangs is killed after 10 minutes.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if start.elapsed() > Duration::from_secs(600) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watchdog.join().unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    let mut pcrs = BTreeMap::new();
    for line in console.lines() {
        let f: Vec<&str> = line.trim().split(' ').collect();
        if let ["PCR", bank, pcr, value] = f.as_slice()
            && let Ok(pcr) = pcr.parse()
        {
            pcrs.insert((bank.to_string(), pcr), value.to_ascii_lowercase());
        }
    }
    assert_eq!(
        pcrs.len(),
        6,
        "the guest did not print 6 PCRs; console:\n{console}\nqemu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pcrs
}

fn predicted(uki: &Path, bank: &str, secure_boot: bool) -> BTreeMap<u32, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermetic"));
    cmd.arg("measure").arg(uki).args(["--json", "--bank", bank]);
    if secure_boot {
        cmd.arg("--secure-boot");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    [4, 9, 11]
        .into_iter()
        .map(|pcr| {
            let hex = v["measurements"][pcr.to_string()]["expected"]
                .as_str()
                .unwrap()
                .to_string();
            (pcr, hex)
        })
        .collect()
}

fn assert_boot_matches_prediction(secure_boot: bool) {
    let t = ukify_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut uki = test_uki(&t, d);
    if secure_boot {
        // OVMF's snake-oil key is protected by the passphrase "snakeoil".
        let key = d.join("snakeoil.key");
        run(Command::new("openssl")
            .args(["pkey", "-passin", "pass:snakeoil", "-in"])
            .arg(format!("{SNAKEOIL}.key"))
            .arg("-out")
            .arg(&key));
        let signed = d.join("boot-signed.efi");
        run(Command::new("sbsign")
            .arg("--key")
            .arg(&key)
            .arg("--cert")
            .arg(format!("{SNAKEOIL}.pem"))
            .arg("--output")
            .arg(&signed)
            .arg(&uki));
        uki = signed;
    }
    let measured = boot(&uki, d, secure_boot);
    for bank in ["sha256", "sha384"] {
        let want = predicted(&uki, bank, secure_boot);
        for (pcr, value) in want {
            assert_eq!(
                measured[&(bank.to_string(), pcr)],
                value,
                "PCR {pcr} ({bank}, Secure Boot {})",
                if secure_boot { "on" } else { "off" }
            );
        }
    }
}

#[test]
fn pcrs_of_a_real_boot_equal_the_prediction_secure_boot_off() {
    assert_boot_matches_prediction(false);
}

#[test]
fn pcrs_of_a_real_boot_equal_the_prediction_secure_boot_on() {
    assert_boot_matches_prediction(true);
}

//! `hermetic measure` against real tools, on a UKI made by the real `ukify build` (systemd 257)
//! from Debian's cloud kernel:
//!
//! - PCR 11 equals `systemd-measure calculate` (trixie's, run through trixie's loader: the
//!   host's glibc is too old for it) on the sections `objcopy --dump-section` extracts;
//! - PCR 4 equals the replay of "Calling", the separator, and the digests `pesign -h` gives
//!   for the UKI and for its `.linux` section (without the latter under `--secure-boot`);
//! - the cpio systemd-stub generates for `.osrel` unpacks with GNU cpio and bsdcpio, and its
//!   trailer is byte for byte the one inside the stub binary.
//!
//! Needs what tests/uki_ukify.rs needs, plus cpio and libarchive-tools.

#[path = "uki_support.rs"]
mod uki_support;

use std::path::Path;
use std::process::Command;

use hermetic::measure::{self, Bank, cpio};
use serde_json::Value;
use uki_support::*;

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    fs_err::write(&p, data).unwrap();
    p.display().to_string()
}

/// A UKI made by ukify from the Debian cloud kernel; returns its path.
fn ukify_uki(t: &Trixie, d: &Path) -> std::path::PathBuf {
    let initrd: Vec<u8> = (0..500_001u32).map(|i| (i * 7 + i / 3) as u8).collect();
    let out = d.join("uki.efi");
    ukify(
        t,
        &[
            format!("--linux={}", t.kernel.display()),
            format!("--initrd={}", write(d, "initrd", &initrd)),
            format!(
                "--cmdline=@{}",
                write(d, "cmdline", b"  console=ttyS0\tpanic=-1 \n")
            ),
            format!(
                "--os-release=@{}",
                write(d, "os-release", b"ID=hermetic\nVERSION_ID=0\n")
            ),
            format!("--uname={}", t.kernel_release),
            format!("--stub={}", t.stub.display()),
            format!("--output={}", out.display()),
        ],
    );
    out
}

fn hermetic(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hermetic {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn expected(json: &Value, pcr: &str) -> String {
    json["measurements"][pcr]["expected"]
        .as_str()
        .unwrap_or_else(|| panic!("no PCR {pcr} in {json}"))
        .to_string()
}

#[test]
fn pcr11_and_pcr4_match_systemd_measure_and_pesign() {
    let t = ukify_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let uki = ukify_uki(&t, d);
    let uki_str = uki.display().to_string();

    // systemd-measure on the sections as objcopy extracts them.
    let mut sm = systemd_measure();
    sm.args([
        "calculate",
        "--bank=sha256",
        "--bank=sha384",
        "--phase=:",
        "-j",
    ]);
    for s in ["linux", "osrel", "cmdline", "initrd", "uname", "sbat"] {
        let bytes = objcopy_section(&uki, &format!(".{s}"), d);
        sm.arg(format!("--{s}={}", write(d, &format!("sec-{s}"), &bytes)));
    }
    let out = sm.output().unwrap();
    assert!(
        out.status.success(),
        "systemd-measure failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sm: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sm_pcr11 = |bank: &str| sm[bank][0]["hash"].as_str().unwrap().to_string();

    let j256: Value = serde_json::from_str(&hermetic(&["measure", &uki_str, "--json"])).unwrap();
    let j384: Value = serde_json::from_str(&hermetic(&[
        "measure", &uki_str, "--json", "--bank", "sha384",
    ]))
    .unwrap();
    assert_eq!(expected(&j256, "11"), sm_pcr11("sha256"));
    assert_eq!(expected(&j384, "11"), sm_pcr11("sha384"));

    // PCR 4 from pesign's digests.
    let linux = objcopy_section(&uki, ".linux", d);
    let linux_path = d.join("linux.efi");
    fs_err::write(&linux_path, &linux).unwrap();
    let uki_digest = hex::decode(pesign_hash(&uki)).unwrap();
    let linux_digest = hex::decode(pesign_hash(&linux_path)).unwrap();
    let pcr4_sb_off = measure::pcr4_from_images(Bank::Sha256, &[&uki_digest, &linux_digest]);
    let pcr4_sb_on = measure::pcr4_from_images(Bank::Sha256, &[&uki_digest]);
    assert_eq!(expected(&j256, "4"), hex::encode(pcr4_sb_off));
    let sb: Value =
        serde_json::from_str(&hermetic(&["measure", &uki_str, "--json", "--secure-boot"])).unwrap();
    assert_eq!(expected(&sb, "4"), hex::encode(pcr4_sb_on));
    // Secure Boot changes PCR 4 only.
    assert_eq!(expected(&sb, "11"), expected(&j256, "11"));
    assert_eq!(expected(&sb, "9"), expected(&j256, "9"));

    // PCR 9: the stub mangles the command line and appends the os-release cpio to .initrd.
    let initrd = objcopy_section(&uki, ".initrd", d);
    let mut passed = initrd.clone();
    passed.resize(passed.len().next_multiple_of(4), 0);
    passed.extend_from_slice(&cpio::stub_extra_cpio(
        "os-release",
        b"ID=hermetic\nVERSION_ID=0\n",
    ));
    let pcr9 = Bank::Sha256.replay([
        &measure::load_options_digest(Bank::Sha256, "console=ttyS0 panic=-1")[..],
        &Bank::Sha256.hash(&[&passed]),
    ]);
    assert_eq!(expected(&j256, "9"), hex::encode(pcr9));
}

#[test]
fn stub_cpio_unpacks_and_its_trailer_is_the_stubs() {
    let t = ukify_tools();
    let stub = fs_err::read(&t.stub).unwrap();
    assert!(
        stub.windows(cpio::STUB_TRAILER.len())
            .any(|w| w == cpio::STUB_TRAILER),
        "the stub binary does not contain our cpio trailer"
    );
    let data = b"NAME=x\nID=y\n";
    let archive = cpio::stub_extra_cpio("os-release", data);
    for (tool, args) in [
        ("cpio", &["-i", "-d", "--quiet"][..]),
        ("bsdcpio", &["-i", "-d", "--quiet"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(tool)
            .args(args)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(child.wait().unwrap().success(), "{tool} -i failed");
        let f = dir.path().join(".extra/os-release");
        assert_eq!(fs_err::read(&f).unwrap(), data, "{tool}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs_err::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444, "{tool}");
    }
}

#[test]
fn output_shapes() {
    let t = ukify_tools();
    let dir = tempfile::tempdir().unwrap();
    let uki = ukify_uki(&t, dir.path());
    let uki_str = uki.display().to_string();
    let list: Value = serde_json::from_str(&hermetic(&[
        "measure",
        &uki_str,
        "--format",
        "attested-tls-proxy",
        "--tdx-gcp",
        "--measurement-id",
        "test-image",
    ]))
    .unwrap();
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["measurement_id"], "test-image");
    assert_eq!(list[0]["attestation_type"], "azure-tdx");
    for pcr in ["4", "9", "11"] {
        let v = list[0]["measurements"][pcr]["expected"].as_str().unwrap();
        assert_eq!(v.len(), 64);
    }
    assert_eq!(list[1]["attestation_type"], "dcap-tdx");
    let m = list[1]["measurements"].as_object().unwrap();
    // Without --mrtd/--rtmr0 only RTMR 1..3 (indices 2..4) are given.
    assert_eq!(m.keys().collect::<Vec<_>>(), ["2", "3", "4"]);
    assert_eq!(m["4"]["expected"].as_str().unwrap(), "0".repeat(96));
    // RTMR 2 replays the sha384 PCR 9 events, so it equals PCR 9 in the sha384 bank.
    let j384: Value = serde_json::from_str(&hermetic(&[
        "measure", &uki_str, "--json", "--bank", "sha384",
    ]))
    .unwrap();
    assert_eq!(m["3"]["expected"], j384["measurements"]["9"]["expected"]);

    let table = hermetic(&["measure", &uki_str]);
    assert!(table.contains("systemd-stub 257."), "{table}");
    assert!(table.contains("Secure Boot off"), "{table}");
}

#[test]
fn pcr11_with_every_measured_section_matches_systemd_measure() {
    // .ucode, .splash, .dtb and .pcrpkey too; our own UkiBuilder assembles the UKI this time.
    let t = ukify_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut b = hermetic::image::uki::UkiBuilder::new(fs_err::read(&t.stub).unwrap(), "stub");
    b.linux = Some(fs_err::read(&t.kernel).unwrap());
    b.initrds = vec![vec![7u8; 100_001]];
    b.microcode = Some(vec![1u8; 3_001]);
    b.splash = Some(vec![2u8; 501]);
    b.devicetree = Some(vec![3u8; 1_001]);
    b.pcrpkey = Some(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec());
    b.cmdline = Some(b"quiet".to_vec());
    b.os_release = Some(b"ID=x\n".to_vec());
    b.uname = Some(t.kernel_release.clone());
    let uki = d.join("full.efi");
    fs_err::write(&uki, b.build().unwrap()).unwrap();

    let sections = [
        ("linux", ".linux"),
        ("osrel", ".osrel"),
        ("cmdline", ".cmdline"),
        ("initrd", ".initrd"),
        ("ucode", ".ucode"),
        ("splash", ".splash"),
        ("dtb", ".dtb"),
        ("uname", ".uname"),
        ("sbat", ".sbat"),
        ("pcrpkey", ".pcrpkey"),
    ];
    let mut sm = systemd_measure();
    sm.args([
        "calculate",
        "--bank=sha256",
        "--bank=sha384",
        "--phase=:",
        "-j",
    ]);
    let mut bytes = std::collections::BTreeMap::new();
    for (opt, sec) in sections {
        let data = objcopy_section(&uki, sec, d);
        sm.arg(format!(
            "--{opt}={}",
            write(d, &format!("sec-{opt}"), &data)
        ));
        bytes.insert(sec, data);
    }
    let out = sm.output().unwrap();
    assert!(
        out.status.success(),
        "systemd-measure failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sm: Value = serde_json::from_slice(&out.stdout).unwrap();
    let uki_str = uki.display().to_string();
    for bank in ["sha256", "sha384"] {
        let ours: Value =
            serde_json::from_str(&hermetic(&["measure", &uki_str, "--json", "--bank", bank]))
                .unwrap();
        assert_eq!(
            expected(&ours, "11"),
            sm[bank][0]["hash"].as_str().unwrap(),
            "{bank}"
        );
    }

    // PCR 9's initrd: .ucode, .initrd, then the cpios of .pcrpkey and .osrel, each padded.
    let mut passed = Vec::new();
    for part in [
        bytes[".ucode"].clone(),
        bytes[".initrd"].clone(),
        cpio::stub_extra_cpio("tpm2-pcr-public-key.pem", &bytes[".pcrpkey"]),
        cpio::stub_extra_cpio("os-release", &bytes[".osrel"]),
    ] {
        passed.extend_from_slice(&part);
        passed.resize(passed.len().next_multiple_of(4), 0);
    }
    let pcr9 = Bank::Sha256.replay([
        &measure::load_options_digest(Bank::Sha256, "quiet")[..],
        &Bank::Sha256.hash(&[&passed]),
    ]);
    let ours: Value = serde_json::from_str(&hermetic(&["measure", &uki_str, "--json"])).unwrap();
    assert_eq!(expected(&ours, "9"), hex::encode(pcr9));
}

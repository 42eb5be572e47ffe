//! Whole `hermetic measure` runs on a small synthetic UKI (a made-up stub that says it is
//! systemd-stub 257, a made-up kernel PE), snapshot-tested: exit code, stdout and stderr are
//! compared with tests/golden/measure/*. Regenerate with HERMETIC_REGENERATE_GOLDEN=1 and
//! review the diff. Offline: no Debian packages needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use hermetic::image::uki::UkiBuilder;

fn put16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A PE32+ EFI image with the given sections (name, bytes); headers 0x400, FileAlignment
/// 0x200, SectionAlignment 0x1000.
fn pe(sections: &[(&str, &[u8])], dll_characteristics: u16) -> Vec<u8> {
    let mut d = vec![0u8; 0x400];
    d[..2].copy_from_slice(b"MZ");
    put32(&mut d, 0x3c, 0x80);
    d[0x80..0x84].copy_from_slice(b"PE\0\0");
    let c = 0x84;
    put16(&mut d, c, 0x8664);
    put16(&mut d, c + 2, sections.len() as u16);
    put32(&mut d, c + 4, 0x6543_2100);
    put16(&mut d, c + 16, 240);
    put16(&mut d, c + 18, 0x22e);
    let o = c + 20;
    put16(&mut d, o, 0x20b);
    put32(&mut d, o + 32, 0x1000);
    put32(&mut d, o + 36, 0x200);
    put32(&mut d, o + 60, 0x400);
    put16(&mut d, o + 68, 10);
    put16(&mut d, o + 70, dll_characteristics);
    put32(&mut d, o + 108, 16);
    let mut va = 0x1000u32;
    for (i, (name, data)) in sections.iter().enumerate() {
        let h = o + 240 + i * 40;
        let ptr = d.len() as u32;
        let raw = (data.len() as u32).next_multiple_of(0x200);
        d[h..h + name.len()].copy_from_slice(name.as_bytes());
        put32(&mut d, h + 8, data.len() as u32);
        put32(&mut d, h + 12, va);
        put32(&mut d, h + 16, raw);
        put32(&mut d, h + 20, ptr);
        put32(&mut d, h + 36, 0x4000_0040);
        d.extend_from_slice(data);
        d.resize((ptr + raw) as usize, 0);
        va += (data.len() as u32).next_multiple_of(0x1000).max(0x1000);
    }
    put32(&mut d, o + 56, va);
    d
}

/// Writes the synthetic UKI as `dir/test.efi`.
fn synthetic_uki(dir: &Path) -> PathBuf {
    let stub = pe(
        &[
            (".text", &[0xC3; 100]),
            (
                ".sbat",
                b"sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n\
                  systemd-stub,1,The systemd Developers,systemd,257,https://systemd.io/\n",
            ),
            (
                ".sdmagic",
                b"#### LoaderInfo: systemd-stub 257.99-test ####",
            ),
        ],
        0x160,
    );
    let kernel = pe(&[(".text", &[0x90; 3000])], 0x100);
    let mut b = UkiBuilder::new(stub, "synthetic stub");
    b.linux = Some(kernel);
    b.initrds = vec![(0..10_000u32).map(|i| (i % 251) as u8).collect()];
    b.cmdline = Some(b"console=ttyS0 root=/dev/ram0\n".to_vec());
    b.os_release = Some(b"ID=hermetic\n".to_vec());
    b.uname = Some("6.12.0-test".into());
    let mut uki = b.build().unwrap();
    // Keep the length a multiple of 8, as real UKIs are (FileAlignment 0x200).
    assert_eq!(uki.len() % 8, 0);
    uki.shrink_to_fit();
    let path = dir.join("test.efi");
    fs_err::write(&path, &uki).unwrap();
    path
}

fn snapshot(name: &str, dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "$ hermetic {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/measure")
        .join(format!("{name}.txt"));
    if std::env::var("HERMETIC_REGENERATE_GOLDEN").as_deref() == Ok("1") {
        fs_err::create_dir_all(golden.parent().unwrap()).unwrap();
        fs_err::write(&golden, &text).unwrap();
        return;
    }
    let want = fs_err::read_to_string(&golden).unwrap_or_else(|e| {
        panic!("{e}\nrun with HERMETIC_REGENERATE_GOLDEN=1 to create it, then review it")
    });
    assert!(
        want == text,
        "{} differs from this run:\n{text}\nrun with HERMETIC_REGENERATE_GOLDEN=1 to accept the \
         change, then review the diff",
        golden.display()
    );
}

#[test]
fn table() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_uki(dir.path());
    snapshot("table", dir.path(), &["measure", "test.efi"]);
    snapshot(
        "table-verbose-sb",
        dir.path(),
        &["measure", "test.efi", "-v", "--secure-boot"],
    );
}

#[test]
fn json_shapes() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_uki(dir.path());
    snapshot(
        "measured-boot",
        dir.path(),
        &["measure", "test.efi", "--json"],
    );
    snapshot(
        "attested-tls-proxy-tdx",
        dir.path(),
        &[
            "measure",
            "test.efi",
            "--format",
            "attested-tls-proxy",
            "--tdx-gcp",
            "--mrtd",
            &"11".repeat(48),
            "--rtmr0",
            &"22".repeat(48),
        ],
    );
}

#[test]
fn errors() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("not-pe.efi"), b"hello").unwrap();
    snapshot("error-not-pe", dir.path(), &["measure", "not-pe.efi"]);
    // A UKI whose length is not a multiple of 8: a warning, or an error with --strict.
    let uki = synthetic_uki(dir.path());
    let mut bytes = fs_err::read(&uki).unwrap();
    bytes.extend_from_slice(b"tail");
    fs_err::write(dir.path().join("odd.efi"), &bytes).unwrap();
    snapshot(
        "warn-unaligned",
        dir.path(),
        &["measure", "odd.efi", "--json"],
    );
    snapshot(
        "error-strict",
        dir.path(),
        &["measure", "odd.efi", "--strict"],
    );
}

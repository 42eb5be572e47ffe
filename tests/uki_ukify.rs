//! `UkiBuilder` against the real `ukify build` of systemd 257 (Debian trixie), with the same
//! stub and inputs: the bytes must be identical. The result is also read back with
//! `objcopy --dump-section` (binutils) and its Authenticode digest compared with `pesign -h`.
//!
//! Needs: /usr/bin/python3 (Debian's), binutils, pesign, gpgv, dpkg-deb, and the Debian mirror
//! of the host's apt configuration (ukify, the stub, pefile and the kernel are downloaded from
//! it into target/test-cache/ and verified).

#[path = "uki_support.rs"]
mod uki_support;

use std::path::Path;

use hermetic::image::uki::UkiBuilder;
use hermetic::pe::PeFile;
use uki_support::*;

/// Compares two UKIs and says where they first differ.
fn assert_same_bytes(ours: &[u8], theirs: &[u8], what: &str) {
    if ours == theirs {
        return;
    }
    let at = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(theirs.len()));
    panic!(
        "{what}: our UKI ({} bytes) differs from ukify's ({} bytes), first at offset {at:#x}",
        ours.len(),
        theirs.len()
    );
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    fs_err::write(&p, data).unwrap();
    p.display().to_string()
}

/// Deterministic pseudo-random bytes (an initrd stand-in that does not compress away).
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn uki_equals_ukify_with_debian_cloud_kernel() {
    let t = ukify_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two initrds of odd lengths: ukify pads each to 4 bytes and joins them.
    let initrd1 = noise(1_000_003, 1);
    let initrd2 = noise(70_001, 2);
    let cmdline = b"console=ttyS0 root=/dev/ram0  quiet\n";
    let osrel = b"PRETTY_NAME=\"hermetic test\"\nID=hermetic\nVERSION_ID=1\n";
    let args = vec![
        format!("--linux={}", t.kernel.display()),
        format!("--initrd={}", write(d, "initrd1", &initrd1)),
        format!("--initrd={}", write(d, "initrd2", &initrd2)),
        format!("--cmdline=@{}", write(d, "cmdline", cmdline)),
        format!("--os-release=@{}", write(d, "os-release", osrel)),
        format!("--uname={}", t.kernel_release),
        format!("--stub={}", t.stub.display()),
        format!("--output={}", d.join("ukify.efi").display()),
    ];
    ukify(&t, &args);
    let theirs = fs_err::read(d.join("ukify.efi")).unwrap();

    let kernel = fs_err::read(&t.kernel).unwrap();
    let mut b = UkiBuilder::new(fs_err::read(&t.stub).unwrap(), t.stub.display().to_string());
    b.linux = Some(kernel.clone());
    b.initrds = vec![initrd1.clone(), initrd2.clone()];
    b.cmdline = Some(cmdline.to_vec());
    b.os_release = Some(osrel.to_vec());
    b.uname = Some(t.kernel_release.clone());
    let layout = b.layout().unwrap();
    let mut ours = Vec::new();
    layout.write_to(&mut ours).unwrap();
    assert_eq!(layout.len(), ours.len() as u64);
    assert_same_bytes(&ours, &theirs, "cloud kernel, two initrds");

    // Read back with binutils.
    let ours_path = d.join("ours.efi");
    fs_err::write(&ours_path, &ours).unwrap();
    assert_eq!(objcopy_section(&ours_path, ".linux", d), kernel);
    let mut joined = initrd1.clone();
    joined.resize(joined.len().next_multiple_of(4), 0);
    joined.extend_from_slice(&initrd2);
    joined.resize(joined.len().next_multiple_of(4), 0);
    assert_eq!(objcopy_section(&ours_path, ".initrd", d), joined);
    assert_eq!(objcopy_section(&ours_path, ".cmdline", d), cmdline);
    assert_eq!(objcopy_section(&ours_path, ".osrel", d), osrel);
    assert_eq!(
        objcopy_section(&ours_path, ".uname", d),
        t.kernel_release.as_bytes()
    );
    let sbat = String::from_utf8(objcopy_section(&ours_path, ".sbat", d)).unwrap();
    assert!(sbat.starts_with("sbat,1,"), "{sbat}");
    assert!(sbat.contains("\nsystemd-stub,1,"), "{sbat}");
    assert!(
        sbat.ends_with(
            "uki,1,UKI,uki,1,https://uapi-group.org/specifications/specs/unified_kernel_image/\n\0"
        ),
        "{sbat:?}"
    );

    // pesign computes the same Authenticode digest as we do.
    let pe = PeFile::parse(&ours, "ours.efi").unwrap();
    let auth = pe.authenticode().unwrap();
    assert_eq!(pesign_hash(&ours_path), hex::encode(auth.sha256));
    // And on the kernel on its own (signed by Debian: the certificate table is excluded).
    let kpe = PeFile::parse(&kernel, "vmlinuz").unwrap();
    assert_ne!(kpe.certificate_table().size, 0, "Debian's kernel is signed");
    assert_eq!(
        pesign_hash(&t.kernel),
        hex::encode(kpe.authenticode().unwrap().sha256)
    );
}

#[test]
fn uki_equals_ukify_with_literal_cmdline_and_scraped_uname() {
    let t = ukify_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let initrd = noise(333_333, 3);
    let osrel = b"ID=hermetic\n";
    // Without --uname ukify reads the release from the bzImage header, as we do.
    let args = vec![
        format!("--linux={}", t.kernel.display()),
        format!("--initrd={}", write(d, "initrd", &initrd)),
        "--cmdline=console=ttyS0 panic=-1".to_string(),
        format!("--os-release=@{}", write(d, "os-release", osrel)),
        format!("--stub={}", t.stub.display()),
        format!("--output={}", d.join("ukify.efi").display()),
    ];
    ukify(&t, &args);
    let theirs = fs_err::read(d.join("ukify.efi")).unwrap();
    let mut b = UkiBuilder::new(fs_err::read(&t.stub).unwrap(), "stub");
    b.linux = Some(fs_err::read(&t.kernel).unwrap());
    b.initrds = vec![initrd];
    b.cmdline = Some(b"console=ttyS0 panic=-1".to_vec());
    b.os_release = Some(osrel.to_vec());
    let ours = b.build().unwrap();
    assert_same_bytes(&ours, &theirs, "literal cmdline, scraped uname");
    let pe = PeFile::parse(&ours, "ours").unwrap();
    let uname = pe
        .section_memory(pe.section(".uname").unwrap())
        .into_owned();
    assert_eq!(String::from_utf8(uname).unwrap(), t.kernel_release);
}

#[test]
fn uki_equals_ukify_with_synthetic_kernel() {
    // A kernel that is no PE image (as in systemd's own tests): ukify keeps NX_COMPAT and
    // merges no kernel SBAT.
    let t = ukify_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kernel = noise(4097, 4);
    let args = vec![
        format!("--linux={}", write(d, "linux", &kernel)),
        format!("--initrd={}", write(d, "initrd", b"foobar\n")),
        format!("--cmdline=@{}", write(d, "cmdline", b"x=1")),
        "--os-release=".to_string(),
        "--uname=1.2.3".to_string(),
        format!("--stub={}", t.stub.display()),
        format!("--output={}", d.join("ukify.efi").display()),
    ];
    ukify(&t, &args);
    let theirs = fs_err::read(d.join("ukify.efi")).unwrap();
    let mut b = UkiBuilder::new(fs_err::read(&t.stub).unwrap(), "stub");
    b.linux = Some(kernel);
    b.initrds = vec![b"foobar\n".to_vec()];
    b.cmdline = Some(b"x=1".to_vec());
    b.uname = Some("1.2.3".into());
    let ours = b.build().unwrap();
    assert_same_bytes(&ours, &theirs, "synthetic kernel, no .osrel");
    let stub = fs_err::read(&t.stub).unwrap();
    let stub_pe = PeFile::parse(&stub, "stub").unwrap();
    let pe = PeFile::parse(&ours, "ours").unwrap();
    assert_eq!(
        pe.optional.dll_characteristics,
        stub_pe.optional.dll_characteristics
    );
    assert_eq!(pe.coff.time_date_stamp, stub_pe.coff.time_date_stamp);
}

#[test]
fn uki_equals_ukify_with_every_optional_section() {
    let t = ukify_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let initrd = noise(12_345, 5);
    let ucode = noise(4_099, 6);
    let splash = noise(777, 7);
    let dtb = noise(2_001, 8);
    let pcrpkey = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQ==\n-----END PUBLIC KEY-----\n";
    let sbat = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n\
                hermetic,1,Hermetic,hermetic,1,https://example.invalid/\n";
    let args = vec![
        format!("--linux={}", t.kernel.display()),
        format!("--initrd={}", write(d, "initrd", &initrd)),
        format!("--microcode={}", write(d, "ucode", &ucode)),
        format!("--splash={}", write(d, "splash", &splash)),
        format!("--devicetree={}", write(d, "dtb", &dtb)),
        format!("--pcrpkey={}", write(d, "pcrpkey", pcrpkey)),
        format!("--sbat=@{}", write(d, "sbat", sbat.as_bytes())),
        format!("--cmdline=@{}", write(d, "cmdline", b"quiet")),
        format!("--os-release=@{}", write(d, "os-release", b"ID=x\n")),
        format!("--uname={}", t.kernel_release),
        format!("--stub={}", t.stub.display()),
        format!("--output={}", d.join("ukify.efi").display()),
    ];
    ukify(&t, &args);
    let theirs = fs_err::read(d.join("ukify.efi")).unwrap();
    let mut b = UkiBuilder::new(fs_err::read(&t.stub).unwrap(), "stub");
    b.linux = Some(fs_err::read(&t.kernel).unwrap());
    b.initrds = vec![initrd];
    b.microcode = Some(ucode);
    b.splash = Some(splash);
    b.devicetree = Some(dtb);
    b.pcrpkey = Some(pcrpkey.to_vec());
    b.sbat = Some(sbat.to_string());
    b.cmdline = Some(b"quiet".to_vec());
    b.os_release = Some(b"ID=x\n".to_vec());
    b.uname = Some(t.kernel_release.clone());
    let ours = b.build().unwrap();
    assert_same_bytes(&ours, &theirs, "every optional section");
    let pe = PeFile::parse(&ours, "ours").unwrap();
    let names: Vec<String> = pe.sections.iter().map(|s| s.name()).collect();
    let added = &names[names.len() - 9..];
    assert_eq!(
        added,
        [
            ".osrel", ".cmdline", ".dtb", ".uname", ".splash", ".pcrpkey", ".linux", ".initrd",
            ".ucode"
        ]
    );
    let merged = pe.section_memory(pe.section(".sbat").unwrap()).into_owned();
    assert!(
        String::from_utf8(merged)
            .unwrap()
            .contains("\nhermetic,1,Hermetic,")
    );
}

mod random_sizes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Each case runs ukify (about 0.2 s): a few cases with sizes around the alignments.
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        #[test]
        fn uki_equals_ukify_for_random_sizes(
            kernel_len in 1usize..9000,
            initrd_lens in proptest::collection::vec(0usize..5000, 1..4),
            cmdline_len in 0usize..700,
            osrel_len in 1usize..600,
            seed in any::<u32>(),
        ) {
            let t = ukify_tools();
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let kernel = noise(kernel_len, seed);
            let initrds: Vec<Vec<u8>> = initrd_lens
                .iter()
                .enumerate()
                .map(|(i, &n)| noise(n, seed ^ (i as u32 + 1)))
                .collect();
            let cmdline: Vec<u8> = noise(cmdline_len, seed ^ 77)
                .into_iter()
                .map(|b| b'a' + b % 26)
                .collect();
            let osrel: Vec<u8> = noise(osrel_len, seed ^ 99)
                .into_iter()
                .map(|b| b'A' + b % 26)
                .collect();
            let mut args = vec![format!("--linux={}", write(d, "linux", &kernel))];
            for (i, initrd) in initrds.iter().enumerate() {
                args.push(format!("--initrd={}", write(d, &format!("initrd{i}"), initrd)));
            }
            args.push(format!("--cmdline=@{}", write(d, "cmdline", &cmdline)));
            args.push(format!("--os-release=@{}", write(d, "os-release", &osrel)));
            args.push("--uname=9.9.9".to_string());
            args.push(format!("--stub={}", t.stub.display()));
            args.push(format!("--output={}", d.join("ukify.efi").display()));
            ukify(&t, &args);
            let theirs = fs_err::read(d.join("ukify.efi")).unwrap();
            let mut b = UkiBuilder::new(fs_err::read(&t.stub).unwrap(), "stub");
            b.linux = Some(kernel);
            b.initrds = initrds;
            b.cmdline = Some(cmdline);
            b.os_release = Some(osrel);
            b.uname = Some("9.9.9".into());
            let ours = b.build().unwrap();
            prop_assert!(ours == theirs, "UKI differs from ukify's ({} vs {} bytes)", ours.len(), theirs.len());
        }
    }
}

#[test]
fn uki_equals_ukify_with_old_style_stub() {
    // A stub with unaligned raw sizes and a COFF symbol table at its end (as old toolchains
    // left them): ukify cuts the table and aligns the sections; so must we.
    let t = ukify_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stub = old_style_stub();
    let args = vec![
        format!("--linux={}", write(d, "linux", b"HALLO\n")),
        format!("--initrd={}", write(d, "initrd1", b"foo")),
        format!("--initrd={}", write(d, "initrd2", b"barbaz")),
        format!("--cmdline=@{}", write(d, "cmdline", b"console=ttyS0")),
        format!("--os-release=@{}", write(d, "os-release", b"ID=test\n")),
        "--uname=6.1.0-test".to_string(),
        format!("--stub={}", write(d, "stub.efi", &stub)),
        format!("--output={}", d.join("ukify.efi").display()),
    ];
    ukify(&t, &args);
    let theirs = fs_err::read(d.join("ukify.efi")).unwrap();
    let mut b = UkiBuilder::new(stub, "old-style stub");
    b.linux = Some(b"HALLO\n".to_vec());
    b.initrds = vec![b"foo".to_vec(), b"barbaz".to_vec()];
    b.cmdline = Some(b"console=ttyS0".to_vec());
    b.os_release = Some(b"ID=test\n".to_vec());
    b.uname = Some("6.1.0-test".into());
    let ours = b.build().unwrap();
    assert_same_bytes(&ours, &theirs, "old-style stub");
}

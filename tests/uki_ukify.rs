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

//! Published vectors. Where the reference abbreviates a digest (`3d6772b4…5633ba`) we check
//! its first and last hex digits only.

use super::*;

/// Asserts that `hex` starts with `prefix` and ends with `suffix`.
fn assert_abbrev(value: &[u8], prefix: &str, suffix: &str) {
    let h = hex::encode(value);
    assert!(
        h.starts_with(prefix) && h.ends_with(suffix),
        "{h} is not {prefix}…{suffix}"
    );
}

#[test]
fn fixed_event_digests() {
    assert_abbrev(
        &Bank::Sha256.hash(&[CALLING_EFI_APPLICATION.as_bytes()]),
        "3d6772b4",
        "5633ba",
    );
    assert_abbrev(&Bank::Sha256.hash(&[&SEPARATOR]), "df3f6198", "b81119");
    assert_abbrev(
        &Bank::Sha256.hash(&[RETURNING_FROM_EFI_APPLICATION.as_bytes()]),
        "7044f063",
        "7e28a6",
    );
}

#[test]
fn measured_boot_pcr4_vector() {
    // measured-boot: PCR 4 with boot stages (image digests) 0^32 and 01^32 after the
    // "Calling" action and the separator.
    let pcr = pcr4_from_images(Bank::Sha256, &[&[0u8; 32], &[1u8; 32]]);
    assert_abbrev(&pcr, "22116dee", "408e");
}

#[test]
fn measured_boot_pcr11_vector() {
    // measured-boot's PCR 11 test feeds section digests directly: .linux with digest 0^32,
    // .initrd with digest 01^32.
    let b = Bank::Sha256;
    let linux_name = b.hash(&[b".linux\0"]);
    let initrd_name = b.hash(&[b".initrd\0"]);
    // The section-name digests that test prints.
    assert_eq!(
        hex::encode(&linux_name),
        "0da293e37ad5511c59be47993769aacb91b243f7d010288e118dc90e95aaef5a"
    );
    assert_eq!(
        hex::encode(&initrd_name),
        "15ee37e75f1e8d42080e91fdbbd2560780918c81fe3687ae6d15c472bbdaac75"
    );
    let pcr = b.replay([&linux_name[..], &[0u8; 32], &initrd_name, &[1u8; 32]]);
    assert_abbrev(&pcr, "9dfe399f", "83e2");
}

#[test]
fn measured_boot_pcr9_vector() {
    // measured-boot: command line "console=tty0" (NUL terminated, UTF-16LE) and an initrd
    // whose digest is 0^32.
    let cmd = load_options_digest(Bank::Sha256, "console=tty0");
    let pcr = Bank::Sha256.replay([&cmd[..], &[0u8; 32]]);
    assert_abbrev(&pcr, "eb4f7bca", "facd");
}

#[test]
fn systemd_test_70_vectors() {
    // TEST-70: systemd-measure calculate --linux="HALLO\n" --initrd="foobar\n" --bank=sha256.
    let sections: [(&str, &[u8]); 2] = [(".linux", b"HALLO\n"), (".initrd", b"foobar\n")];
    for major in [252, 254, 257] {
        let no_phase = pcr11_of_sections(Bank::Sha256, &sections, major, &[]);
        assert_abbrev(&no_phase, "37b48bd0", "9c13");
        let foo = pcr11_of_sections(Bank::Sha256, &sections, major, &["foo"]);
        assert_abbrev(&foo, "21c49c12", "f699");
    }
}

#[test]
fn section_order_follows_stub_version() {
    let s: [(&str, &[u8]); 3] = [(".uname", b"6.1"), (".sbat", b"x"), (".linux", b"k")];
    // 252 does not measure .uname and .sbat; 254 does.
    let only_linux = pcr11_of_sections(Bank::Sha256, &s[2..], 257, &[]);
    assert_eq!(pcr11_of_sections(Bank::Sha256, &s, 252, &[]), only_linux);
    assert_ne!(pcr11_of_sections(Bank::Sha256, &s, 254, &[]), only_linux);
    // .pcrsig and empty sections are never measured.
    let with_sig: [(&str, &[u8]); 3] = [(".linux", b"k"), (".pcrsig", b"{}"), (".dtb", b"")];
    assert_eq!(
        pcr11_of_sections(Bank::Sha256, &with_sig, 257, &[]),
        only_linux
    );
}

#[test]
fn cmdline_mangling() {
    assert_eq!(stub_cmdline(b"  a\tb\nc  \n", 257), "a b c");
    assert_eq!(stub_cmdline(b"  a\tb\nc  \n", 255), "  a b c");
    assert_eq!(stub_cmdline(b"x y\0ignored", 257), "x y");
}

#[test]
fn sha384_extend_is_over_48_bytes() {
    let r = Bank::Sha384.replay([&[0u8; 48][..]]);
    assert_eq!(r, Bank::Sha384.hash(&[&[0u8; 96]]));
}

#[test]
fn stub_version_from_sdmagic_or_image_version() {
    use crate::image::uki::UkiBuilder;
    use crate::pe::PeFile;
    // A stub with .sdmagic, and the same stub without it but with MajorImageVersion 255.
    let stub = |sdmagic: bool, major: u16| {
        let mut d = vec![0u8; 0x400];
        d[..2].copy_from_slice(b"MZ");
        d[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        d[0x80..0x84].copy_from_slice(b"PE\0\0");
        let c = 0x84;
        d[c..c + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        d[c + 2..c + 4].copy_from_slice(&1u16.to_le_bytes());
        d[c + 16..c + 18].copy_from_slice(&240u16.to_le_bytes());
        let o = c + 20;
        d[o..o + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        d[o + 32..o + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        d[o + 36..o + 40].copy_from_slice(&0x200u32.to_le_bytes());
        d[o + 44..o + 46].copy_from_slice(&major.to_le_bytes());
        d[o + 60..o + 64].copy_from_slice(&0x400u32.to_le_bytes());
        d[o + 108..o + 112].copy_from_slice(&16u32.to_le_bytes());
        let h = o + 240;
        let text: &[u8] = if sdmagic {
            b"#### LoaderInfo: systemd-stub 252.39-1~deb12u1 ####"
        } else {
            b"no marker here"
        };
        d[h..h + 8].copy_from_slice(b".sdmagic");
        d[h + 8..h + 12].copy_from_slice(&(text.len() as u32).to_le_bytes());
        d[h + 12..h + 16].copy_from_slice(&0x1000u32.to_le_bytes());
        d[h + 16..h + 20].copy_from_slice(&0x200u32.to_le_bytes());
        d[h + 20..h + 24].copy_from_slice(&0x400u32.to_le_bytes());
        d.extend_from_slice(text);
        d.resize(0x600, 0);
        d
    };
    let v = detect_stub_version(&PeFile::parse(&stub(true, 0), "s").unwrap()).unwrap();
    assert_eq!((v.major, v.full.as_str()), (252, "252.39-1~deb12u1"));
    let v = detect_stub_version(&PeFile::parse(&stub(false, 255), "s").unwrap()).unwrap();
    assert_eq!(v.major, 255);
    assert!(detect_stub_version(&PeFile::parse(&stub(false, 0), "s").unwrap()).is_none());
    // A marker inside the payload (an initrd carrying another stub) does not count.
    let mut b = UkiBuilder::new(stub(false, 0), "s");
    b.linux = Some(b"k".to_vec());
    b.uname = Some("u".into());
    b.initrds = vec![b"#### LoaderInfo: systemd-stub 999.1 ####".to_vec()];
    let uki = b.build().unwrap();
    assert!(detect_stub_version(&PeFile::parse(&uki, "u").unwrap()).is_none());
}

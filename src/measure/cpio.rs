//! The cpio archives systemd-stub generates at boot to hand UKI sections to the kernel as
//! files under `/.extra/` (`tpm2-pcr-signature.json`, `tpm2-pcr-public-key.pem`, and since
//! 257 `os-release` and `profile`). They become part of the initrd the kernel measures into
//! PCR 9, so we must produce them byte for byte.
//!
//! The stub writes (src/boot/cpio.c): newc magic `070701`, lower-case hex fields, directory
//! `.extra` (inode 1, mode 040555), file `.extra/<name>` (inode 2, mode 0100444), uid, gid,
//! mtime and device numbers 0, nlink 1, names NUL-terminated and padded to 4 bytes, data
//! padded to 4 bytes. The trailer is a string literal in the stub, and unlike the records it
//! spells its name size `0000000B` in UPPER case (checked in the 257 stub binary); it is 124
//! bytes long.

/// The stub's literal trailer record: 110 header bytes + `TRAILER!!!` + 4 NULs.
pub const STUB_TRAILER: &[u8; 124] = b"070701\
00000000000000000000000000000000000000010000000000000000000000000000000000000000000000000000000B00000000\
TRAILER!!!\0\0\0\0";

fn word(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(format!("{v:08x}").as_bytes());
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn record(out: &mut Vec<u8>, ino: u32, mode: u32, name: &[u8], data: &[u8]) {
    out.extend_from_slice(b"070701");
    let size = u32::try_from(data.len()).expect("UKI sections are smaller than 4 GiB");
    let namesize = u32::try_from(name.len() + 1).expect("short name");
    for v in [ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, namesize, 0] {
        word(out, v);
    }
    out.extend_from_slice(name);
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// The archive systemd-stub builds for one UKI section: `/.extra/<name>` holding `data`.
pub fn stub_extra_cpio(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 512);
    record(&mut out, 1, 0o040555, b".extra", &[]);
    record(
        &mut out,
        2,
        0o100444,
        format!(".extra/{name}").as_bytes(),
        data,
    );
    out.extend_from_slice(STUB_TRAILER);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_is_124_bytes_with_upper_case_b() {
        assert_eq!(STUB_TRAILER.len(), 124);
        assert_eq!(&STUB_TRAILER[94..102], b"0000000B");
    }

    #[test]
    fn layout_of_a_small_archive() {
        let a = stub_extra_cpio("os-release", b"ID=x\n");
        // dir record: 110 + ".extra\0" (7) = 117 -> 120.
        assert_eq!(&a[..6], b"070701");
        assert_eq!(&a[6..14], b"00000001");
        assert_eq!(&a[14..22], b"0000416d");
        assert_eq!(&a[110..117], b".extra\0");
        // file record at 120: 110 + ".extra/os-release\0" (18) = 128 -> 128, data 5 -> 8.
        let f = &a[120..];
        assert_eq!(&f[6..14], b"00000002");
        assert_eq!(&f[14..22], b"00008124");
        assert_eq!(&f[54..62], b"00000005");
        assert_eq!(&f[110..128], b".extra/os-release\0");
        assert_eq!(&f[128..136], b"ID=x\n\0\0\0");
        assert_eq!(&f[136..], STUB_TRAILER);
        assert_eq!(a.len(), 120 + 136 + 124);
    }
}

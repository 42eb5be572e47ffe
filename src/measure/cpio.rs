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

// One implementation, shared with the image writers.
pub use crate::image::cpio::{STUB_TRAILER, stub_extra_cpio};

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

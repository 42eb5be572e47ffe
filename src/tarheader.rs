//! The fields of a 512-byte tar header block, shared by the tar writers ([`crate::treetar`]'s
//! ustar/pax headers, [`crate::image::gcp`]'s old-GNU sparse header): where each field sits,
//! how numbers are spelled, the checksum, and the padding of data to whole blocks.
//!
//! The layout is POSIX ustar's; old GNU tar uses the same offsets up to `gname` (its magic
//! `ustar  \0` spans both `magic` and `version`) and puts its own fields in the prefix area.

use std::io::{self, Write};
use std::ops::Range;

/// Tar's block size: headers are one block, data is padded to whole blocks.
pub const BLOCK: usize = 512;

pub const NAME: Range<usize> = 0..100;
pub const MODE: Range<usize> = 100..108;
pub const UID: Range<usize> = 108..116;
pub const GID: Range<usize> = 116..124;
pub const SIZE: Range<usize> = 124..136;
pub const MTIME: Range<usize> = 136..148;
pub const CHECKSUM: Range<usize> = 148..156;
pub const TYPEFLAG: usize = 156;
pub const LINKNAME: Range<usize> = 157..257;
/// `magic` and `version` together: `ustar\0` `00` (POSIX) or `ustar  \0` (old GNU).
pub const MAGIC_VERSION: Range<usize> = 257..265;
pub const UNAME: Range<usize> = 265..297;
pub const GNAME: Range<usize> = 297..329;
pub const DEVMAJOR: Range<usize> = 329..337;
pub const DEVMINOR: Range<usize> = 337..345;
/// ustar's name prefix; old GNU tar keeps atime, ctime and the sparse map here instead.
pub const PREFIX: Range<usize> = 345..500;

/// The largest value of an 8-byte numeric field in octal (7 digits).
pub const MAX_OCTAL_7: u64 = 0o7777777;
/// The largest value of a 12-byte numeric field in octal (11 digits).
pub const MAX_OCTAL_11: u64 = 0o77777777777;

/// Copies `bytes` to the start of the text field `field` of `h`; the rest stays as it is
/// (zero in a fresh header). Panics if `bytes` is longer than the field: callers split or
/// truncate names first.
pub fn put_text(h: &mut [u8], field: Range<usize>, bytes: &[u8]) {
    assert!(
        bytes.len() <= field.len(),
        "{} bytes do not fit a {}-byte tar field",
        bytes.len(),
        field.len()
    );
    h[field.start..field.start + bytes.len()].copy_from_slice(bytes);
}

/// Writes `value` into a numeric field: zero-padded octal filling all but the last byte,
/// then a NUL; or, when the value does not fit those digits, GNU's base-256 (first byte
/// 0x80, the value big-endian in the last 8 bytes). Base-256 needs a 12-byte field (size,
/// mtime, sparse map); 8-byte fields must hold octal values (at most [`MAX_OCTAL_7`]).
pub fn put_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits * 3 >= 64 || value < (1u64 << (3 * digits)) {
        let s = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    } else {
        debug_assert!(field.len() > 8, "{value} does not fit an 8-byte tar field");
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&value.to_be_bytes());
    }
}

/// Computes the header's checksum (the byte sum with the checksum field as spaces) and
/// writes it as six octal digits, a NUL and a space, as GNU tar and POSIX readers expect.
pub fn set_checksum(h: &mut [u8; BLOCK]) {
    h[CHECKSUM].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[CHECKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// The zeros that pad `len` bytes of data to a whole number of blocks.
pub fn padding(len: u64) -> u64 {
    (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64
}

/// Writes the padding of `len` bytes of data (see [`padding`]).
pub fn write_padding(out: &mut impl Write, len: u64) -> io::Result<()> {
    out.write_all(&[0u8; BLOCK][..padding(len) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_octal_and_base256() {
        let mut f = [0u8; 12];
        put_number(&mut f, 0o644);
        assert_eq!(&f, b"00000000644\0");
        put_number(&mut f, MAX_OCTAL_11);
        assert_eq!(&f, b"77777777777\0");
        put_number(&mut f, 8u64 << 30);
        assert_eq!(f[..4], [0x80, 0, 0, 0]);
        assert_eq!(&f[4..], &(8u64 << 30).to_be_bytes());
    }

    #[test]
    fn checksum_is_what_the_tar_crate_computes() {
        let mut h = [0u8; BLOCK];
        put_text(&mut h, NAME, b"./x");
        put_number(&mut h[SIZE], 5);
        h[TYPEFLAG] = b'0';
        put_text(&mut h, MAGIC_VERSION, b"ustar\x0000");
        set_checksum(&mut h);
        assert_eq!(&h[154..156], b"\0 ");
        let parsed = tar::Header::from_byte_slice(&h);
        let mut again = parsed.clone();
        again.set_cksum();
        assert_eq!(parsed.cksum().unwrap(), again.cksum().unwrap());
        assert_eq!(parsed.size().unwrap(), 5);
    }

    #[test]
    fn padding_to_blocks() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        let mut out = Vec::new();
        write_padding(&mut out, 513).unwrap();
        assert_eq!(out, vec![0u8; 511]);
    }
}

//! Azure's fixed VHD: the raw disk, rounded up to a whole MiB, then a 512-byte footer.
//!
//! The footer is what `qemu-img convert -O vpc -o subformat=fixed,force_size` writes (the
//! seed's `raw-to-vhd.sh`), with its two non-deterministic fields fixed:
//! - cookie `conectix`, features 2 (reserved bit), format version 1.0, data offset
//!   0xFFFFFFFFFFFFFFFF (fixed disks have no dynamic header);
//! - timestamp: seconds since 2000-01-01 00:00:00 UTC of `SOURCE_DATE_EPOCH`, 0 for earlier
//!   epochs (the seed's epoch 0 is before 2000). qemu writes the current time.
//! - creator application `qem2`, version 0x00050003, host OS `Wi2k`: qemu's values with
//!   `force_size`, which tell readers to take the size from the footer, not from CHS;
//! - original size = current size = the disk size;
//! - geometry 65535 cylinders, 16 heads, 255 sectors: the maximum, which qemu writes with
//!   `force_size` and which makes every reader (qemu's `vpc` driver included) use the
//!   footer's size. (The CHS computed by the VHD spec's algorithm would round the disk down
//!   for readers that trust CHS, as Virtual PC does.)
//! - disk type 2 (fixed); checksum = one's complement of the byte sum of the footer with the
//!   checksum field zero;
//! - unique id: derived from a seed string ([`VhdOptions::new`]); qemu writes a random one.
//! - saved state 0, the rest zero.
//!
//! A test checks the output equals qemu-img's except the timestamp, checksum and unique id.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::sink::{FileSink, MIB, Sink, for_each_chunk, is_zero};

/// Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC, the VHD epoch.
pub const VHD_EPOCH: u64 = 946_684_800;

/// Errors of the VHD writer.
#[derive(Debug, thiserror::Error)]
pub enum VhdError {
    #[error("cannot read the raw disk {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the VHD {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the raw disk {path} is empty")]
    Empty { path: PathBuf },
    #[error("the raw disk {path} changed size while it was converted")]
    Changed { path: PathBuf },
}

/// The footer's deterministic fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VhdOptions {
    /// Written as the footer's timestamp (seconds since 2000-01-01, clamped at 0).
    pub source_date_epoch: u64,
    /// The footer's unique id.
    pub unique_id: [u8; 16],
}

impl VhdOptions {
    /// The unique id is the first 16 bytes of SHA-256("hermetic vhd unique id\0" + seed),
    /// with the UUID version 4 and variant bits set so it reads as a well-formed UUID.
    pub fn new(source_date_epoch: u64, seed: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"hermetic vhd unique id\0");
        h.update(seed.as_bytes());
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        VhdOptions {
            source_date_epoch,
            unique_id: id,
        }
    }
}

/// The 512-byte footer of a fixed VHD of `size` bytes.
pub fn footer(size: u64, opts: &VhdOptions) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
    let stamp = u32::try_from(opts.source_date_epoch.saturating_sub(VHD_EPOCH)).unwrap_or(u32::MAX);
    f[24..28].copy_from_slice(&stamp.to_be_bytes());
    f[28..32].copy_from_slice(b"qem2");
    f[32..36].copy_from_slice(&0x0005_0003u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    f[56..58].copy_from_slice(&65535u16.to_be_bytes());
    f[58] = 16;
    f[59] = 255;
    f[60..64].copy_from_slice(&2u32.to_be_bytes());
    f[68..84].copy_from_slice(&opts.unique_id);
    let sum: u32 = f.iter().map(|&b| u32::from(b)).sum();
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

/// Writes `raw` as a fixed VHD at `out`: the raw bytes (holes kept), zeros up to the next
/// whole MiB, and the footer. Returns the virtual size.
pub fn write_fixed_vhd(raw: &Path, out: &Path, opts: &VhdOptions) -> Result<u64, VhdError> {
    let werr = |source| VhdError::Write {
        path: out.to_path_buf(),
        source,
    };
    let raw_size = fs_err::metadata(raw)
        .map_err(|source| VhdError::Read {
            path: raw.to_path_buf(),
            source,
        })?
        .len();
    if raw_size == 0 {
        return Err(VhdError::Empty {
            path: raw.to_path_buf(),
        });
    }
    let size = raw_size.div_ceil(MIB) * MIB;
    let file = fs_err::File::create(out).map_err(werr)?;
    file.set_len(size + 512).map_err(werr)?;
    let mut sink = FileSink::new(file.file(), 0);
    let read_err = |source| VhdError::Read {
        path: raw.to_path_buf(),
        source,
    };
    let read = for_each_chunk(raw, MIB as usize, read_err, |off, data| {
        if off + data.len() as u64 > size || is_zero(data) {
            return Ok(());
        }
        sink.write_at(off, data).map_err(werr)
    })?;
    if read != raw_size {
        return Err(VhdError::Changed {
            path: raw.to_path_buf(),
        });
    }
    sink.write_at(size, &footer(size, opts)).map_err(werr)?;
    file.sync_all().map_err(werr)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_checksum_and_fields() {
        let opts = VhdOptions::new(0, "630b5f72-a36a-4e83-b23d-6ef47c82fd9c");
        let f = footer(3 * MIB, &opts);
        let sum: u32 = f
            .iter()
            .enumerate()
            .filter(|(i, _)| !(64..68).contains(i))
            .map(|(_, &b)| u32::from(b))
            .sum();
        assert_eq!(u32::from_be_bytes(f[64..68].try_into().unwrap()), !sum);
        assert_eq!(&f[24..28], &[0, 0, 0, 0]);
        assert_eq!(opts.unique_id[6] >> 4, 4);
        let later = VhdOptions::new(VHD_EPOCH + 5, "x");
        assert_eq!(&footer(MIB, &later)[24..28], &[0, 0, 0, 5]);
        assert_ne!(later.unique_id, opts.unique_id);
    }
}

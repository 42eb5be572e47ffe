//! GPT partition tables, written as libfdisk (and so `systemd-repart` and `sfdisk`) writes
//! them for a new disk:
//! - LBA 0: a protective MBR with one partition of type 0xEE from LBA 1 to the end of the
//!   disk (size capped at 0xFFFFFFFF sectors), CHS start 0/0/2, CHS end 0xFFFFFF, disk
//!   signature 0, boot code zero;
//! - LBA 1: the primary header (revision 1.0, 92 bytes); LBA 2..33: 128 entries of 128 bytes;
//! - the backup entries at LBA N-33..N-2 and the backup header at LBA N-1;
//! - first usable LBA 2048 (libfdisk aligns the first usable sector to 1 MiB and writes that
//!   into the header), last usable LBA N-34;
//! - GUIDs stored in the UEFI mixed-endian encoding (first three groups little-endian);
//! - CRC32 (IEEE) of the entry array and of each header.
//!
//! A test checks that [`GptDisk::write`] gives the same bytes as `sfdisk` fed the same
//! script, and `sgdisk -v` finds no problems.

use std::fmt;
use std::io;

use super::sink::Sink;

/// The sector size: the only one we write.
pub const SECTOR: u64 = 512;
/// Number of partition entries (and so 32 sectors of entries).
pub const ENTRY_COUNT: u32 = 128;
/// Size of one partition entry.
pub const ENTRY_SIZE: u32 = 128;
/// libfdisk's first usable LBA on a new disk: 1 MiB.
pub const FIRST_USABLE_LBA: u64 = 2048;
const ENTRY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR;

/// The EFI System Partition type, C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
pub const ESP_TYPE_GUID: Guid = Guid([
    0xC1, 0x2A, 0x73, 0x28, 0xF8, 0x1F, 0x11, 0xD2, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
]);

/// Errors of the GPT writer.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("{0:?} is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
    BadGuid(String),
    #[error("disk size {0} is not a positive multiple of 512 bytes")]
    BadDiskSize(u64),
    #[error(
        "partition {name:?} (LBA {first}..={last}) is outside the usable sectors {first_usable}..={last_usable}\nhint: make the disk larger"
    )]
    OutOfRange {
        name: String,
        first: u64,
        last: u64,
        first_usable: u64,
        last_usable: u64,
    },
    #[error("partitions {a:?} and {b:?} overlap")]
    Overlap { a: String, b: String },
    #[error("partition name {0:?} is longer than 36 UTF-16 code units")]
    NameTooLong(String),
    #[error("more than {ENTRY_COUNT} partitions")]
    TooManyPartitions,
    #[error("cannot write the partition table")]
    Write(#[source] io::Error),
}

/// A GUID, held in the order it is written as text (`Guid::parse` of
/// `"12345678-..."` starts with 0x12).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case).
    pub fn parse(s: &str) -> Result<Guid, GptError> {
        let bad = || GptError::BadGuid(s.to_string());
        let groups: Vec<&str> = s.split('-').collect();
        if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
            return Err(bad());
        }
        let hex: String = groups.concat();
        let mut out = [0u8; 16];
        hex::decode_to_slice(&hex, &mut out).map_err(|_| bad())?;
        Ok(Guid(out))
    }

    /// The 16 bytes as GPT stores them: the first three groups little-endian.
    pub fn to_mixed_endian(&self) -> [u8; 16] {
        let b = self.0;
        let mut o = b;
        o[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
        o[4..6].copy_from_slice(&[b[5], b[4]]);
        o[6..8].copy_from_slice(&[b[7], b[6]]);
        o
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode_upper(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptPartition {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

/// A whole disk's partition table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptDisk {
    /// Size of the disk in bytes.
    pub disk_size: u64,
    pub disk_guid: Guid,
    /// The header's FirstUsableLBA: [`FIRST_USABLE_LBA`] as libfdisk writes it; sgdisk
    /// writes 34 (right after the entries). Measurements of other tools' disks need it.
    pub first_usable_lba: u64,
    /// In entry order.
    pub partitions: Vec<GptPartition>,
}

impl GptDisk {
    fn sectors(&self) -> u64 {
        self.disk_size / SECTOR
    }

    /// The last LBA a partition may use.
    pub fn last_usable_lba(&self) -> u64 {
        self.sectors() - 2 - ENTRY_SECTORS
    }

    /// Checks sizes, ranges, overlaps and names.
    pub fn validate(&self) -> Result<(), GptError> {
        if self.disk_size == 0 || !self.disk_size.is_multiple_of(SECTOR) {
            return Err(GptError::BadDiskSize(self.disk_size));
        }
        if self.first_usable_lba < 2 + ENTRY_SECTORS
            || self.sectors() < self.first_usable_lba + ENTRY_SECTORS + 2
        {
            return Err(GptError::BadDiskSize(self.disk_size));
        }
        if self.partitions.len() > ENTRY_COUNT as usize {
            return Err(GptError::TooManyPartitions);
        }
        for p in &self.partitions {
            if p.name.encode_utf16().count() > 36 {
                return Err(GptError::NameTooLong(p.name.clone()));
            }
            if p.first_lba < self.first_usable_lba
                || p.last_lba > self.last_usable_lba()
                || p.last_lba < p.first_lba
            {
                return Err(GptError::OutOfRange {
                    name: p.name.clone(),
                    first: p.first_lba,
                    last: p.last_lba,
                    first_usable: self.first_usable_lba,
                    last_usable: self.last_usable_lba(),
                });
            }
        }
        for (i, a) in self.partitions.iter().enumerate() {
            for b in &self.partitions[i + 1..] {
                if a.first_lba <= b.last_lba && b.first_lba <= a.last_lba {
                    return Err(GptError::Overlap {
                        a: a.name.clone(),
                        b: b.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The protective MBR (LBA 0).
    pub fn protective_mbr(&self) -> [u8; 512] {
        let mut m = [0u8; 512];
        let e = &mut m[446..462];
        e[0] = 0x00; // not bootable
        e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
        e[4] = 0xEE;
        e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        e[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = u32::try_from(self.sectors() - 1).unwrap_or(u32::MAX);
        e[12..16].copy_from_slice(&size.to_le_bytes());
        m[510] = 0x55;
        m[511] = 0xAA;
        m
    }

    /// The partition entry array (128 × 128 bytes).
    pub fn entries(&self) -> Vec<u8> {
        let mut v = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut v[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_mixed_endian());
            e[16..32].copy_from_slice(&p.unique_guid.to_mixed_endian());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (j, u) in p.name.encode_utf16().take(36).enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        v
    }

    /// The primary (`backup == false`, LBA 1) or backup (LBA N-1) header sector.
    pub fn header(&self, backup: bool) -> [u8; 512] {
        let n = self.sectors();
        let (my, alternate, entries_lba) = if backup {
            (n - 1, 1, n - 1 - ENTRY_SECTORS)
        } else {
            (1, n - 1, 2)
        };
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable_lba.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable_lba().to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_mixed_endian());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&self.entries()).to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The `EFI_GPT_DATA` firmware measures into PCR 5 (TDX: RTMR 1) as the
    /// `EV_EFI_GPT_EVENT`: the primary header's 92 bytes, the number of used entries as a
    /// little-endian u64 (`UINTN` on x86-64), then each used entry (128 bytes) in table order.
    pub fn efi_gpt_data(&self) -> Vec<u8> {
        let mut out = self.header(false)[..92].to_vec();
        out.extend_from_slice(&(self.partitions.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.entries()[..self.partitions.len() * ENTRY_SIZE as usize]);
        out
    }

    /// Writes the MBR, both headers and both entry arrays into `sink` (which holds the whole
    /// disk). Nothing else is written.
    pub fn write(&self, sink: &mut impl Sink) -> Result<(), GptError> {
        self.validate()?;
        let n = self.sectors();
        let entries = self.entries();
        let backup_entries = (n - 1 - ENTRY_SECTORS) * SECTOR;
        sink.write_at(0, &self.protective_mbr())
            .and_then(|()| sink.write_at(SECTOR, &self.header(false)))
            .and_then(|()| sink.write_at(2 * SECTOR, &entries))
            .and_then(|()| sink.write_at(backup_entries, &entries))
            .and_then(|()| sink.write_at((n - 1) * SECTOR, &self.header(true)))
            .map_err(GptError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_mixed_endian() {
        let g = Guid::parse("12345678-1234-5678-1234-567812345678").unwrap();
        assert_eq!(
            hex::encode(g.to_mixed_endian()),
            "78563412341278561234567812345678"
        );
        assert_eq!(g.to_string(), "12345678-1234-5678-1234-567812345678");
        assert_eq!(
            hex::encode(ESP_TYPE_GUID.to_mixed_endian()),
            "28732ac11ff8d211ba4b00a0c93ec93b"
        );
        assert!(Guid::parse("12345678-1234-5678-1234-56781234567").is_err());
        assert!(Guid::parse("1234567g-1234-5678-1234-567812345678").is_err());
    }

    #[test]
    fn efi_gpt_data_layout() {
        let d = crate::image::disk::EspDiskLayout::qemu().gpt(
            Guid::parse("12345678-1234-5678-1234-567812345678").unwrap(),
            Guid::parse("87654321-4321-8765-4321-876543218765").unwrap(),
        );
        let e = d.efi_gpt_data();
        assert_eq!(e.len(), 92 + 8 + 128);
        assert_eq!(&e[..8], b"EFI PART");
        assert_eq!(&e[92..100], &1u64.to_le_bytes());
        assert_eq!(&e[100..116], &ESP_TYPE_GUID.to_mixed_endian());
        // "esp" in UTF-16LE
        assert_eq!(&e[100 + 56..100 + 62], b"e\0s\0p\0");
    }

    #[test]
    fn rejects_overlap_and_range() {
        let p = |name: &str, a, b| GptPartition {
            type_guid: ESP_TYPE_GUID,
            unique_guid: ESP_TYPE_GUID,
            first_lba: a,
            last_lba: b,
            attributes: 0,
            name: name.into(),
        };
        let mut d = GptDisk {
            disk_size: 8 << 20,
            disk_guid: ESP_TYPE_GUID,
            first_usable_lba: FIRST_USABLE_LBA,
            partitions: vec![p("a", 2048, 4095), p("b", 4000, 5000)],
        };
        assert!(matches!(d.validate(), Err(GptError::Overlap { .. })));
        d.partitions = vec![p("a", 2048, 16384 - 33)];
        assert!(matches!(d.validate(), Err(GptError::OutOfRange { .. })));
        d.partitions = vec![p("a", 2048, 16384 - 34)];
        d.validate().unwrap();
    }
}

//! Disk images shared by the GCP, QEMU and Azure outputs: sizes as the seed computes them,
//! sparse writing, and the one-partition ESP disk itself.
//!
//! The seed (flashbots-images, `trunk/buildernet`) builds every cloud disk with
//! `systemd-repart` from one ESP partition:
//! - azure and qemu: `repart.d/00-uki.conf` asks for a 500 MiB ESP (`Size=524288000`) and
//!   `--size=auto`; repart then makes the disk the ESP plus its GPT overhead, which it counts
//!   as 1044 KiB (`GPT_METADATA_SIZE`: the first MiB, where the first partition starts, and
//!   20 KiB at the end for the backup entries and header). So the disk is
//!   1 MiB + 500 MiB + 20 KiB = 525 357 056 bytes ([`EspDiskLayout::repart_auto`]).
//! - azure then rounds the disk up to a whole MiB for the VHD (`raw-to-vhd.sh` runs
//!   `qemu-img resize`, which leaves the backup GPT where it was, short of the end). We lay
//!   the GPT out for the rounded size instead, so the backup header sits in the last sector
//!   as the UEFI spec asks ([`EspDiskLayout::azure`]). Azure's measurements (PCR 4 and 11)
//!   do not cover the GPT.
//! - gcp: the ESP is the UKI's size + 32 MiB, the disk `ceil((ESP + 1 MiB) / GiB)` GiB
//!   ([`EspDiskLayout::gcp`]). repart rounds partition sizes to its 4 KiB grain, so we round
//!   the ESP up to 4 KiB. If the backup GPT would not fit (ESP + 1 MiB within 20 KiB of a
//!   GiB boundary) we add one more GiB where repart would have failed.
//!
//! The partition starts at 1 MiB (LBA 2048), where libfdisk (and so repart) puts the first
//! partition of a new GPT.

use std::io;
use std::path::{Path, PathBuf};

use super::fat::{FatBuilder, FatError};
use super::gpt::{ESP_TYPE_GUID, GptDisk, GptError, GptPartition, Guid};

use super::sink::FileSink;
pub use super::sink::MIB;

/// 1 GiB.
pub const GIB: u64 = 1 << 30;
/// Where the ESP starts.
pub const FIRST_PARTITION_OFFSET: u64 = MIB;
/// The space repart reserves at the end of the disk for the backup GPT (20 KiB:
/// 16 KiB of entries and the header, rounded up to its 4 KiB grain).
pub const BACKUP_GPT_RESERVE: u64 = 20 * 1024;
/// The seed's ESP size for azure and qemu (`Size=524288000` in `repart.d/00-uki.conf`).
pub const SEED_ESP_SIZE: u64 = 524_288_000;
/// The seed's disk GUID (`sgdisk --disk-guid`).
pub const SEED_DISK_GUID: &str = "12345678-1234-5678-1234-567812345678";
/// The seed's ESP partition GUID (`UUID=` in `repart.d/00-uki.conf`).
pub const SEED_ESP_GUID: &str = "87654321-4321-8765-4321-876543218765";

/// Errors of building a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot write the disk image {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot lay out the ESP file system of {path}")]
    Fat {
        path: PathBuf,
        #[source]
        source: FatError,
    },
    #[error("cannot lay out the partition table of {path}")]
    Gpt {
        path: PathBuf,
        #[source]
        source: GptError,
    },
}

/// Where the ESP sits on the disk and how large the disk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspDiskLayout {
    /// Size of the whole disk in bytes (a multiple of 512).
    pub disk_size: u64,
    /// Offset of the ESP (1 MiB).
    pub esp_offset: u64,
    /// Size of the ESP in bytes (a multiple of 4096).
    pub esp_size: u64,
}

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

impl EspDiskLayout {
    /// `systemd-repart --size=auto` with one ESP of `esp_size` bytes (rounded up to 4 KiB):
    /// 1 MiB + ESP + 20 KiB.
    pub fn repart_auto(esp_size: u64) -> Self {
        let esp_size = round_up(esp_size, 4096);
        EspDiskLayout {
            disk_size: FIRST_PARTITION_OFFSET + esp_size + BACKUP_GPT_RESERVE,
            esp_offset: FIRST_PARTITION_OFFSET,
            esp_size,
        }
    }

    /// The QEMU disk: [`Self::repart_auto`] of the seed's 500 MiB ESP.
    pub fn qemu() -> Self {
        Self::repart_auto(SEED_ESP_SIZE)
    }

    /// The Azure disk: [`Self::qemu`] with the disk rounded up to a whole MiB.
    pub fn azure() -> Self {
        let l = Self::repart_auto(SEED_ESP_SIZE);
        EspDiskLayout {
            disk_size: round_up(l.disk_size, MIB),
            ..l
        }
    }

    /// The GCP disk for a UKI of `efi_size` bytes: ESP = UKI + 32 MiB (rounded up to 4 KiB),
    /// disk = ceil((ESP + 1 MiB) / GiB) GiB.
    pub fn gcp(efi_size: u64) -> Self {
        let esp_size = round_up(efi_size + 32 * MIB, 4096);
        let mut disk_size = round_up(esp_size + FIRST_PARTITION_OFFSET, GIB);
        if disk_size < FIRST_PARTITION_OFFSET + esp_size + BACKUP_GPT_RESERVE {
            disk_size += GIB;
        }
        EspDiskLayout {
            disk_size,
            esp_offset: FIRST_PARTITION_OFFSET,
            esp_size,
        }
    }

    /// The GPT of this layout: the ESP as the only partition, named `esp` as repart names it.
    pub fn gpt(&self, disk_guid: Guid, esp_guid: Guid) -> GptDisk {
        GptDisk {
            disk_size: self.disk_size,
            disk_guid,
            first_usable_lba: super::gpt::FIRST_USABLE_LBA,
            partitions: vec![GptPartition {
                type_guid: ESP_TYPE_GUID,
                unique_guid: esp_guid,
                first_lba: self.esp_offset / 512,
                last_lba: (self.esp_offset + self.esp_size) / 512 - 1,
                attributes: 0,
                name: "esp".to_string(),
            }],
        }
    }
}

/// The seed's ESP content: the UKI as `EFI/BOOT/BOOTX64.EFI` (read from `uki` when the image
/// is written), every timestamp `source_date_epoch`.
pub fn uki_esp(uki: &Path, source_date_epoch: u64, volume_id: u32) -> Result<FatBuilder, FatError> {
    let mut esp = FatBuilder::new(source_date_epoch).volume_id(volume_id);
    esp.add_file_from("EFI/BOOT/BOOTX64.EFI", uki)?;
    Ok(esp)
}

/// Writes a disk image with holes: a GPT with one ESP holding `esp`'s files. Only the
/// partition table and the file system's used parts are written; the rest are holes.
/// `esp`'s size must equal `layout.esp_size`.
pub fn write_esp_disk(
    path: &Path,
    layout: &EspDiskLayout,
    esp: &FatBuilder,
    disk_guid: Guid,
    esp_guid: Guid,
) -> Result<(), DiskError> {
    let werr = |source| DiskError::Write {
        path: path.to_path_buf(),
        source,
    };
    let gpt = layout.gpt(disk_guid, esp_guid);
    // Lay out both first so that no file is written for an invalid input.
    gpt.validate().map_err(|source| DiskError::Gpt {
        path: path.to_path_buf(),
        source,
    })?;
    let fat = esp
        .layout(layout.esp_size, layout.esp_offset / 512)
        .map_err(|source| DiskError::Fat {
            path: path.to_path_buf(),
            source,
        })?;
    let file = fs_err::File::create(path).map_err(werr)?;
    file.set_len(layout.disk_size).map_err(werr)?;
    gpt.write(&mut FileSink::new(file.file(), 0))
        .map_err(|source| DiskError::Gpt {
            path: path.to_path_buf(),
            source,
        })?;
    fat.write(&mut FileSink::new(file.file(), layout.esp_offset))
        .map_err(|source| DiskError::Fat {
            path: path.to_path_buf(),
            source,
        })?;
    file.sync_all().map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_sizes() {
        assert_eq!(EspDiskLayout::qemu().disk_size, 525_357_056);
        assert_eq!(EspDiskLayout::azure().disk_size, 502 * MIB);
        let g = EspDiskLayout::gcp(100_000_000);
        assert_eq!(g.esp_size, round_up(100_000_000 + 32 * MIB, 4096));
        assert_eq!(g.disk_size, GIB);
        // ESP + 1 MiB exactly 1 GiB: the backup GPT needs another GiB.
        let g = EspDiskLayout::gcp(GIB - 33 * MIB);
        assert_eq!(g.disk_size, 2 * GIB);
    }
}

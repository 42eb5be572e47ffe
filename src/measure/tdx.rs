//! Intel TDX registers of a UKI booted on Google Cloud, as dstack-mr-gcp computes them.
//!
//! A TD has MRTD (the firmware image, measured by the TDX module) and four RTMRs the firmware
//! and the OS extend with SHA-384 (`RTMR = SHA384(RTMR || digest)`):
//!
//! - **MRTD** and **RTMR 0** depend only on the firmware and the machine: MRTD is the digest of
//!   the TDVF pages GCP loads, RTMR 0 holds the TD HOB, the firmware volume, the Secure Boot
//!   variables, ACPI tables and boot variables of the machine type. Neither can be computed
//!   from the image: they are taken as inputs (from GCP's published firmware digests or a
//!   quote of a reference VM).
//! - **RTMR 1**: "Calling EFI Application from Boot Option", the separator, the GPT of the
//!   boot disk (`UEFI_GPT_DATA`: header, partition count, the used entries), the
//!   Authenticode digest of the UKI and of its `.linux`, "Exit Boot Services Invocation" and
//!   "Exit Boot Services Returned with Success".
//! - **RTMR 2**: the kernel's command line and initrd events (the PCR 9 events in SHA-384).
//! - **RTMR 3**: zero.
//!
//! Two things dstack-mr-gcp does differently, where we follow the firmware: it hashes the
//! `.linux` section's `SizeOfRawData` bytes with go-uefi's 8-byte padding (the firmware gets
//! `VirtualSize` bytes, no padding: the same digest when `VirtualSize` is a multiple of the
//! file alignment), and it hashes `.initrd` alone for RTMR 2 (stub 257 appends the
//! `os-release` cpio, which the kernel measures too).

use sha2::{Digest, Sha384};

use super::{Bank, CALLING_EFI_APPLICATION, Prediction, SEPARATOR};
use crate::pe::PeFile;

/// `EV_EFI_ACTION` strings OVMF measures around ExitBootServices.
pub const EXIT_BOOT_SERVICES_INVOCATION: &str = "Exit Boot Services Invocation";
/// See [`EXIT_BOOT_SERVICES_INVOCATION`].
pub const EXIT_BOOT_SERVICES_SUCCESS: &str = "Exit Boot Services Returned with Success";

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Errors computing TDX registers.
#[derive(Debug, thiserror::Error)]
pub enum TdxError {
    #[error("invalid GUID {guid:?}: expected 8-4-4-4-12 hexadecimal digits")]
    BadGuid { guid: String },
    #[error("invalid {what} {value:?}: expected {len} hexadecimal bytes")]
    BadRegister {
        what: &'static str,
        value: String,
        len: usize,
    },
    #[error(
        "the ESP (LBA {start}..={end}) does not fit between the first usable LBA and the backup table of a disk of {sectors} sectors"
    )]
    BadGeometry { start: u64, end: u64, sectors: u64 },
    #[error("ESP name {name:?} is longer than the 36 UTF-16 code units of a GPT entry")]
    BadName { name: String },
    #[error("{disk}: no valid GPT: {detail}")]
    BadDisk { disk: String, detail: String },
}

/// What `hermetic measure --tdx-gcp` may change of dstack-mr-gcp's disk
/// ([`GptDisk::dstack_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOverrides {
    pub disk_guid: Option<String>,
    pub esp_guid: Option<String>,
    /// Disk size in bytes.
    pub disk_size: Option<u64>,
    /// ESP size in bytes.
    pub esp_size: Option<u64>,
    pub esp_start_lba: u64,
    pub first_usable_lba: u64,
    pub esp_name: String,
}

impl Default for DiskOverrides {
    /// No change: dstack-mr-gcp's disk.
    fn default() -> Self {
        DiskOverrides {
            disk_guid: None,
            esp_guid: None,
            disk_size: None,
            esp_size: None,
            esp_start_lba: 2048,
            first_usable_lba: 2048,
            esp_name: "esp".into(),
        }
    }
}

/// The boot disk as the firmware's GPT event describes it (one partition: the ESP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptDisk {
    pub disk_guid: String,
    pub esp_guid: String,
    /// Disk size in 512-byte sectors.
    pub disk_sectors: u64,
    pub first_usable_lba: u64,
    pub esp_start_lba: u64,
    pub esp_end_lba: u64,
    /// The partition name (dstack-mr-gcp: `esp`).
    pub esp_name: String,
}

impl GptDisk {
    /// dstack-mr-gcp's disk for a UKI of `efi_size` bytes: its fixed GUIDs, ESP of
    /// `max(roundup(efi + 32 MiB, 4 KiB), 260 MiB)` from LBA 2048, disk rounded up to GiB
    /// after adding 1 MiB, first usable LBA 2048.
    pub fn dstack_default(efi_size: u64) -> Self {
        let esp = (efi_size + 32 * MIB).div_ceil(4096) * 4096;
        let esp = esp.max(260 * MIB);
        let disk = (esp + MIB).div_ceil(GIB) * GIB;
        GptDisk {
            disk_guid: crate::image::disk::SEED_DISK_GUID.into(),
            esp_guid: crate::image::disk::SEED_ESP_GUID.into(),
            disk_sectors: disk / 512,
            first_usable_lba: 2048,
            esp_start_lba: 2048,
            esp_end_lba: 2048 + esp / 512 - 1,
            esp_name: "esp".into(),
        }
    }

    /// dstack-mr-gcp's disk for a UKI of `efi_size` bytes ([`GptDisk::dstack_default`]) with
    /// the changes of `o`: an ESP of `o.esp_size` bytes (default: the same size as
    /// dstack-mr-gcp's) from `o.esp_start_lba`, a disk of `o.disk_size` bytes.
    pub fn dstack_with(efi_size: u64, o: &DiskOverrides) -> Self {
        let mut disk = GptDisk::dstack_default(efi_size);
        if let Some(g) = &o.disk_guid {
            disk.disk_guid = g.clone();
        }
        if let Some(g) = &o.esp_guid {
            disk.esp_guid = g.clone();
        }
        let esp_bytes = o
            .esp_size
            .unwrap_or((disk.esp_end_lba + 1 - disk.esp_start_lba) * 512);
        disk.esp_start_lba = o.esp_start_lba;
        disk.first_usable_lba = o.first_usable_lba;
        disk.esp_name = o.esp_name.clone();
        disk.esp_end_lba = disk.esp_start_lba + esp_bytes.div_ceil(512) - 1;
        if let Some(size) = o.disk_size {
            disk.disk_sectors = size / 512;
        }
        disk
    }

    /// The `UEFI_GPT_DATA` event data: the primary header (92 bytes, CRCs filled in), the
    /// number of used partitions (u64), and the used entries (128 bytes each) — the bytes
    /// the image writer's table of this disk gives ([`crate::image::gpt::GptDisk`]).
    pub fn event_data(&self) -> Result<Vec<u8>, TdxError> {
        use crate::image::gpt;
        let guid = |g: &str| {
            gpt::Guid::parse(g).map_err(|_| TdxError::BadGuid {
                guid: g.to_string(),
            })
        };
        let geometry = || TdxError::BadGeometry {
            start: self.esp_start_lba,
            end: self.esp_end_lba,
            sectors: self.disk_sectors,
        };
        let table = gpt::GptDisk {
            disk_size: self.disk_sectors.checked_mul(512).ok_or_else(geometry)?,
            disk_guid: guid(&self.disk_guid)?,
            first_usable_lba: self.first_usable_lba,
            partitions: vec![gpt::GptPartition {
                type_guid: gpt::ESP_TYPE_GUID,
                unique_guid: guid(&self.esp_guid)?,
                first_lba: self.esp_start_lba,
                last_lba: self.esp_end_lba,
                attributes: 0,
                name: self.esp_name.clone(),
            }],
        };
        table.validate().map_err(|e| match e {
            gpt::GptError::NameTooLong(name) => TdxError::BadName { name },
            _ => geometry(),
        })?;
        Ok(table.efi_gpt_data())
    }
}

/// The `UEFI_GPT_DATA` event OVMF measures for a real disk image (`disk`: its first sectors
/// suffice): the primary header as stored (`HeaderSize` bytes), the number of used entries
/// (u64), and each entry whose partition type GUID is not zero, in table order.
pub fn gpt_event_from_disk(disk: &[u8], name: &str) -> Result<Vec<u8>, TdxError> {
    let bad = |detail: String| TdxError::BadDisk {
        disk: name.to_string(),
        detail,
    };
    let u32_at = |at: usize| -> Result<u32, TdxError> {
        disk.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| bad(format!("truncated at byte {at}")))
    };
    let header = disk
        .get(512..1024)
        .ok_or_else(|| bad("shorter than 2 sectors".into()))?;
    if &header[..8] != b"EFI PART" {
        return Err(bad("no \"EFI PART\" signature at LBA 1".into()));
    }
    let header_size = u32_at(512 + 12)? as usize;
    if !(92..=512).contains(&header_size) {
        return Err(bad(format!("HeaderSize {header_size}")));
    }
    let entries_lba = u64::from_le_bytes(header[72..80].try_into().expect("8 bytes"));
    let count = u32_at(512 + 80)? as usize;
    let entry_size = u32_at(512 + 84)? as usize;
    if entry_size < 128 || count > 4096 {
        return Err(bad(format!(
            "{count} partition entries of {entry_size} bytes"
        )));
    }
    let start = usize::try_from(entries_lba)
        .ok()
        .and_then(|l| l.checked_mul(512))
        .ok_or_else(|| bad(format!("PartitionEntryLBA {entries_lba}")))?;
    let table = disk
        .get(start..start + count * entry_size)
        .ok_or_else(|| bad("the partition entries lie past its end".into()))?;
    let used: Vec<&[u8]> = table
        .chunks(entry_size)
        .filter(|e| e[..16].iter().any(|&b| b != 0))
        .collect();
    let mut data = header[..header_size].to_vec();
    data.extend_from_slice(&(used.len() as u64).to_le_bytes());
    for e in used {
        data.extend_from_slice(e);
    }
    Ok(data)
}

/// The GPT event data measured into RTMR 1, and where it comes from (for the event list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEvent {
    pub description: String,
    pub data: Vec<u8>,
}

impl GptEvent {
    /// The event synthesized from disk parameters.
    pub fn synthetic(disk: &GptDisk) -> Result<Self, TdxError> {
        Ok(GptEvent {
            description: format!("disk {} (synthetic)", disk.disk_guid),
            data: disk.event_data()?,
        })
    }

    /// The event of a real disk image.
    pub fn of_disk(disk: &[u8], name: &str) -> Result<Self, TdxError> {
        Ok(GptEvent {
            description: format!("disk image {name}"),
            data: gpt_event_from_disk(disk, name)?,
        })
    }
}

/// The TDX registers of one UKI on GCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxPrediction {
    /// Given by the user (firmware-dependent), if any.
    pub mrtd: Option<Vec<u8>>,
    /// Given by the user (firmware- and machine-dependent), if any.
    pub rtmr0: Option<Vec<u8>>,
    pub rtmr1: Vec<u8>,
    pub rtmr2: Vec<u8>,
    pub rtmr3: Vec<u8>,
    /// RTMR 1's event digests, in order, for debugging against a quote's event log.
    pub rtmr1_events: Vec<(String, Vec<u8>)>,
}

/// Parses a hex register given on the command line (48 bytes).
pub fn parse_register(what: &'static str, value: &str) -> Result<Vec<u8>, TdxError> {
    let v = value.trim().trim_start_matches("0x");
    match hex::decode(v) {
        Ok(b) if b.len() == 48 => Ok(b),
        _ => Err(TdxError::BadRegister {
            what,
            value: value.to_string(),
            len: 48,
        }),
    }
}

fn sha384(data: &[u8]) -> Vec<u8> {
    Sha384::digest(data).to_vec()
}

/// Computes RTMR 1 and 2 from the UKI, the disk and its PCR prediction (which must include the
/// sha384 bank: RTMR 2 reuses its PCR 9 events).
pub fn predict_gcp(
    uki: &PeFile<'_>,
    kernel: &PeFile<'_>,
    gpt_event: &GptEvent,
    pcrs: &Prediction,
    mrtd: Option<Vec<u8>>,
    rtmr0: Option<Vec<u8>>,
) -> Result<TdxPrediction, TdxError> {
    let gpt = &gpt_event.data;
    let (uki_auth, kernel_auth) = std::thread::scope(|s| {
        let k = s.spawn(|| kernel.authenticode_with::<Sha384>());
        (uki.authenticode_with::<Sha384>(), k.join().expect("thread"))
    });
    let uki_auth = uki_auth.expect("the UKI was checked when predicting PCRs");
    let kernel_auth = kernel_auth.expect("the kernel was checked when predicting PCRs");
    let rtmr1_events = vec![
        (
            format!("EV_EFI_ACTION \"{CALLING_EFI_APPLICATION}\""),
            sha384(CALLING_EFI_APPLICATION.as_bytes()),
        ),
        ("EV_SEPARATOR".to_string(), sha384(&SEPARATOR)),
        (
            format!("EV_EFI_GPT_EVENT {}", gpt_event.description),
            sha384(gpt),
        ),
        ("EV_EFI_BOOT_SERVICES_APPLICATION UKI".to_string(), uki_auth),
        (
            "EV_EFI_BOOT_SERVICES_APPLICATION .linux".to_string(),
            kernel_auth,
        ),
        (
            format!("EV_EFI_ACTION \"{EXIT_BOOT_SERVICES_INVOCATION}\""),
            sha384(EXIT_BOOT_SERVICES_INVOCATION.as_bytes()),
        ),
        (
            format!("EV_EFI_ACTION \"{EXIT_BOOT_SERVICES_SUCCESS}\""),
            sha384(EXIT_BOOT_SERVICES_SUCCESS.as_bytes()),
        ),
    ];
    let rtmr1 = Bank::Sha384.replay(rtmr1_events.iter().map(|(_, d)| d.as_slice()));
    let rtmr2 = Bank::Sha384.replay(
        pcrs.events
            .iter()
            .filter(|e| e.pcr == 9)
            .filter_map(|e| e.digests.get(&Bank::Sha384).map(Vec::as_slice)),
    );
    Ok(TdxPrediction {
        mrtd,
        rtmr0,
        rtmr1,
        rtmr2,
        rtmr3: vec![0; 48],
        rtmr1_events,
    })
}

impl TdxPrediction {
    /// The `dcap-tdx` measurements of attested-tls-proxy: 0 = MRTD, 1..4 = RTMR 0..3. MRTD and
    /// RTMR 0 appear only when given.
    pub fn dcap_measurements(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: &[u8]| {
            m.insert(k.into(), serde_json::json!({ "expected": hex::encode(v) }));
        };
        if let Some(v) = &self.mrtd {
            put("0", v);
        }
        if let Some(v) = &self.rtmr0 {
            put("1", v);
        }
        put("2", &self.rtmr1);
        put("3", &self.rtmr2);
        put("4", &self.rtmr3);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dstack_default_geometry() {
        // A 100 MiB UKI: ESP = 132 MiB -> 260 MiB minimum; disk = 1 GiB.
        let d = GptDisk::dstack_default(100 * MIB);
        assert_eq!(d.disk_sectors, GIB / 512);
        assert_eq!(d.esp_end_lba, 2048 + 260 * MIB / 512 - 1);
        // A 300 MiB UKI: ESP = 332 MiB; still 1 GiB.
        let d = GptDisk::dstack_default(300 * MIB);
        assert_eq!(d.esp_end_lba, 2048 + 332 * MIB / 512 - 1);
    }

    #[test]
    fn overrides_change_only_what_they_name() {
        let efi = 100 * MIB;
        let same = GptDisk::dstack_with(efi, &DiskOverrides::default());
        assert_eq!(same, GptDisk::dstack_default(efi));
        // The ESP keeps its size when it moves; a disk size is taken in whole sectors.
        let moved = GptDisk::dstack_with(
            efi,
            &DiskOverrides {
                esp_start_lba: 4096,
                first_usable_lba: 34,
                disk_size: Some(2 * GIB + 100),
                ..DiskOverrides::default()
            },
        );
        assert_eq!(moved.esp_start_lba, 4096);
        assert_eq!(moved.esp_end_lba, 4096 + 260 * MIB / 512 - 1);
        assert_eq!(moved.first_usable_lba, 34);
        assert_eq!(moved.disk_sectors, 2 * GIB / 512);
        assert_eq!(moved.disk_guid, same.disk_guid);
        // An ESP size is rounded up to whole sectors.
        let sized = GptDisk::dstack_with(
            efi,
            &DiskOverrides {
                esp_size: Some(MIB + 1),
                esp_guid: Some("x".into()),
                ..DiskOverrides::default()
            },
        );
        assert_eq!(sized.esp_end_lba, 2048 + MIB / 512);
        assert_eq!(sized.esp_guid, "x");
    }

    #[test]
    fn gpt_event_layout_and_crcs() {
        let d = GptDisk::dstack_default(50 * MIB);
        let e = d.event_data().unwrap();
        assert_eq!(e.len(), 92 + 8 + 128);
        assert_eq!(&e[..8], b"EFI PART");
        // The header CRC covers the header with its CRC field zeroed.
        let mut h = e[..92].to_vec();
        let stored = u32::from_le_bytes(h[16..20].try_into().unwrap());
        h[16..20].fill(0);
        assert_eq!(crc32fast::hash(&h), stored);
        // The entry array CRC covers all 128 entries (one used).
        let mut array = e[100..].to_vec();
        array.resize(128 * 128, 0);
        assert_eq!(
            u32::from_le_bytes(e[88..92].try_into().unwrap()),
            crc32fast::hash(&array)
        );
        assert_eq!(u64::from_le_bytes(e[92..100].try_into().unwrap()), 1);
        assert_eq!(&e[100 + 56..100 + 62], b"e\0s\0p\0");
        // The disk GUID sits at offset 56 of the header.
        assert_eq!(
            &e[56..72],
            &crate::image::gpt::Guid::parse("12345678-1234-5678-1234-567812345678")
                .unwrap()
                .to_mixed_endian()
        );
        let bad = GptDisk {
            esp_end_lba: d.disk_sectors,
            ..d.clone()
        };
        assert!(matches!(
            bad.event_data(),
            Err(TdxError::BadGeometry { .. })
        ));
        let bad = GptDisk {
            esp_start_lba: 33,
            ..d.clone()
        };
        assert!(matches!(
            bad.event_data(),
            Err(TdxError::BadGeometry { .. })
        ));
        let bad = GptDisk {
            esp_name: "x".repeat(37),
            ..d.clone()
        };
        assert!(matches!(bad.event_data(), Err(TdxError::BadName { .. })));
        let bad = GptDisk {
            esp_guid: "not-a-guid".into(),
            ..d
        };
        assert!(matches!(bad.event_data(), Err(TdxError::BadGuid { .. })));
    }

    #[test]
    fn event_of_a_disk_image_reads_header_and_used_entries() {
        let d = GptDisk::dstack_default(10 * MIB);
        let event = d.event_data().unwrap();
        // Lay the synthetic header and entry out as on a disk: LBA 1, entries from LBA 2.
        let mut disk = vec![0u8; 34 * 512];
        disk[512..512 + 92].copy_from_slice(&event[..92]);
        disk[1024..1024 + 128].copy_from_slice(&event[100..]);
        assert_eq!(gpt_event_from_disk(&disk, "d").unwrap(), event);
        disk[512] = b'X';
        let e = gpt_event_from_disk(&disk, "bad.raw")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.raw") && e.contains("EFI PART"), "{e}");
        assert!(gpt_event_from_disk(&disk[..600], "short").is_err());
    }

    #[test]
    fn parse_register_wants_48_bytes() {
        assert!(parse_register("MRTD", &"ab".repeat(48)).is_ok());
        assert!(parse_register("MRTD", &format!("0x{}", "ab".repeat(48))).is_ok());
        let e = parse_register("MRTD", "abcd").unwrap_err().to_string();
        assert!(e.contains("MRTD"), "{e}");
    }
}

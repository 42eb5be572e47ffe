//! Disk images: raw GPT disks, fixed VHDs (a raw disk and a 512-byte footer) and qcow2
//! images (converted to a sparse raw scratch file, then compared as raw disks).
//!
//! A GPT disk is compared by its primary header (disk GUID, usable range, entry array),
//! its partition entries (type, GUID, name, LBA range, attributes), then each partition's
//! content: FAT file systems file by file, anything else as whatever [`super::detect`]
//! makes of it.

use std::io::{Seek as _, SeekFrom, Write as _};

use super::{Blob, Collector, DiffError, Difference, Kind, Src, Structure, byte_summary, join};

const SECTOR: u64 = 512;
/// qcow2 images larger than this (virtual size) are compared by their header and bytes.
const MAX_QCOW2_SIZE: u64 = 16 << 40;

/// A GUID as GPT stores it (mixed endian), printed the usual way.
fn guid(b: &[u8]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        hex::encode_upper(&b[10..16])
    )
}

fn le32(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
}

fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default())
}

/// The fields of a GPT header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    pub revision: u64,
    pub header_crc: u64,
    pub current_lba: u64,
    pub backup_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: String,
    pub entries_lba: u64,
    pub entry_count: u64,
    pub entry_size: u64,
    pub entries_crc: u64,
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    /// 1-based index in the entry array.
    pub index: usize,
    pub type_guid: String,
    pub unique_guid: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

/// Reads the primary GPT header and its used entries.
pub(crate) fn read_gpt(src: &Src) -> Result<Result<(GptHeader, Vec<GptEntry>), String>, DiffError> {
    let h = src.read(SECTOR, SECTOR as usize)?;
    if h.len() < 92 || &h[0..8] != b"EFI PART" {
        return Ok(Err("no GPT header at LBA 1".into()));
    }
    let header = GptHeader {
        revision: le32(&h, 8),
        header_crc: le32(&h, 16),
        current_lba: le64(&h, 24),
        backup_lba: le64(&h, 32),
        first_usable: le64(&h, 40),
        last_usable: le64(&h, 48),
        disk_guid: guid(&h[56..72]),
        entries_lba: le64(&h, 72),
        entry_count: le32(&h, 80),
        entry_size: le32(&h, 84),
        entries_crc: le32(&h, 88),
    };
    if header.entry_size < 128 || header.entry_count > 4096 || header.entry_size > 4096 {
        return Ok(Err(format!(
            "implausible entry array ({} entries of {} bytes)",
            header.entry_count, header.entry_size
        )));
    }
    let table = src.read(
        header.entries_lba.saturating_mul(SECTOR),
        (header.entry_count * header.entry_size) as usize,
    )?;
    let mut entries = Vec::new();
    for (i, e) in table.chunks_exact(header.entry_size as usize).enumerate() {
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .take_while(|&u| u != 0)
            .collect();
        entries.push(GptEntry {
            index: i + 1,
            type_guid: guid(&e[0..16]),
            unique_guid: guid(&e[16..32]),
            first_lba: le64(e, 32),
            last_lba: le64(e, 40),
            attributes: le64(e, 48),
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(Ok((header, entries)))
}

pub(crate) fn diff_gpt(
    a: &Src,
    b: &Src,
    loc: &str,
    c: &mut Collector,
) -> Result<Structure, DiffError> {
    let ((ha, pa), (hb, pb)) = match (read_gpt(a)?, read_gpt(b)?) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(why), _) | (_, Err(why)) => return Ok(Structure::Unreadable(why)),
    };
    let gloc = join(loc, "gpt");
    let mut d = Difference::changed(&join(&gloc, "header"));
    d.field("disk size", a.len, b.len);
    d.field("disk GUID", &ha.disk_guid, &hb.disk_guid);
    d.field(
        "revision",
        format!("{:#x}", ha.revision),
        format!("{:#x}", hb.revision),
    );
    d.field("backup LBA", ha.backup_lba, hb.backup_lba);
    d.field("first usable LBA", ha.first_usable, hb.first_usable);
    d.field("last usable LBA", ha.last_usable, hb.last_usable);
    d.field("entries LBA", ha.entries_lba, hb.entries_lba);
    d.field("entries", ha.entry_count, hb.entry_count);
    d.field("entry size", ha.entry_size, hb.entry_size);
    d.field(
        "entries CRC",
        format!("{:08x}", ha.entries_crc),
        format!("{:08x}", hb.entries_crc),
    );
    d.field(
        "header CRC",
        format!("{:08x}", ha.header_crc),
        format!("{:08x}", hb.header_crc),
    );
    c.push(d);

    let describe = |p: &super::disk::GptEntry| {
        format!(
            "partition {:?}, type {}, LBA {}..={}",
            p.name, p.type_guid, p.first_lba, p.last_lba
        )
    };
    let max = pa.iter().chain(&pb).map(|p| p.index).max().unwrap_or(0);
    for i in 1..=max {
        let ploc = join(&gloc, &format!("p{i}"));
        let (x, y) = match (
            pa.iter().find(|p| p.index == i),
            pb.iter().find(|p| p.index == i),
        ) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) => {
                c.push(Difference::only(&ploc, Kind::Removed, describe(x)));
                continue;
            }
            (None, Some(y)) => {
                c.push(Difference::only(&ploc, Kind::Added, describe(y)));
                continue;
            }
            (None, None) => continue,
        };
        let mut d = Difference::changed(&ploc);
        d.field("name", &x.name, &y.name);
        d.field("type", &x.type_guid, &y.type_guid);
        d.field("GUID", &x.unique_guid, &y.unique_guid);
        d.field("first LBA", x.first_lba, y.first_lba);
        d.field("last LBA", x.last_lba, y.last_lba);
        d.field(
            "attributes",
            format!("{:#x}", x.attributes),
            format!("{:#x}", y.attributes),
        );
        c.push(d);
        let (sx, sy) = (partition(a, x), partition(b, y));
        super::diff_blobs(&sx, &sy, &x.name, &ploc, c)?;
    }
    Ok(Structure::Parsed)
}

/// The bytes of partition `p` of the disk `s`.
fn partition<'a>(s: &Src<'a>, p: &GptEntry) -> Src<'a> {
    let start = p.first_lba.saturating_mul(SECTOR);
    let len = (p.last_lba + 1)
        .saturating_sub(p.first_lba)
        .saturating_mul(SECTOR);
    s.slice(start, len)
}

/// A fixed VHD: the footer's fields, then the disk before it.
pub(crate) fn diff_vhd(
    a: &Src,
    b: &Src,
    loc: &str,
    c: &mut Collector,
) -> Result<Structure, DiffError> {
    let vloc = join(loc, "vhd");
    let (fa, fb) = (a.read(a.len - SECTOR, 512)?, b.read(b.len - SECTOR, 512)?);
    let be32 = |f: &[u8], o: usize| u32::from_be_bytes([f[o], f[o + 1], f[o + 2], f[o + 3]]);
    let be64 = |f: &[u8], o: usize| u64::from_be_bytes(f[o..o + 8].try_into().unwrap_or_default());
    let mut d = Difference::changed(&join(&vloc, "footer"));
    d.field("timestamp", be32(&fa, 24), be32(&fb, 24));
    d.field(
        "creator",
        String::from_utf8_lossy(&fa[28..32]),
        String::from_utf8_lossy(&fb[28..32]),
    );
    d.field(
        "creator version",
        format!("{:#x}", be32(&fa, 32)),
        format!("{:#x}", be32(&fb, 32)),
    );
    d.field("original size", be64(&fa, 40), be64(&fb, 40));
    d.field("current size", be64(&fa, 48), be64(&fb, 48));
    d.field("disk type", be32(&fa, 60), be32(&fb, 60));
    d.field(
        "checksum",
        format!("{:08x}", be32(&fa, 64)),
        format!("{:08x}", be32(&fb, 64)),
    );
    d.field(
        "unique id",
        hex::encode(&fa[68..84]),
        hex::encode(&fb[68..84]),
    );
    if d.is_empty() && fa != fb {
        d.content_offset = super::first_difference(&fa, &fb);
    }
    c.push(d);
    let (ra, rb) = (a.slice(0, a.len - SECTOR), b.slice(0, b.len - SECTOR));
    super::diff_blobs(&ra, &rb, "disk.raw", &vloc, c)?;
    Ok(Structure::Parsed)
}

/// The header fields of a qcow2 image.
fn qcow2_header(h: &[u8]) -> Vec<(&'static str, u64)> {
    let be32 = |o: usize| u64::from(u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]));
    let be64 = |o: usize| u64::from_be_bytes(h[o..o + 8].try_into().unwrap_or_default());
    let mut f = vec![
        ("version", be32(4)),
        ("backing file offset", be64(8)),
        ("cluster bits", be32(20)),
        ("virtual size", be64(24)),
        ("encryption", be32(32)),
        ("L1 entries", be32(36)),
        ("L1 offset", be64(40)),
        ("refcount table offset", be64(48)),
        ("refcount table clusters", be32(56)),
        ("snapshots", be32(60)),
    ];
    if be32(4) >= 3 && h.len() >= 104 {
        f.push(("incompatible features", be64(72)));
        f.push(("compatible features", be64(80)));
        f.push(("autoclear features", be64(88)));
        f.push(("refcount order", be32(96)));
        f.push(("header length", be32(100)));
    }
    f
}

/// Converts a qcow2 image (no backing file, no encryption, no compressed clusters: what
/// [`crate::image::qcow2`] writes) into a sparse raw scratch file.
fn qcow2_to_raw(src: &Src) -> Result<Result<std::fs::File, String>, DiffError> {
    let h = src.read(0, 104)?;
    if h.len() < 72 {
        return Ok(Err("truncated header".into()));
    }
    let fields: std::collections::BTreeMap<_, _> = qcow2_header(&h).into_iter().collect();
    let bits = fields["cluster bits"];
    if !(9..=21).contains(&bits) {
        return Ok(Err(format!("cluster bits {bits} out of range")));
    }
    if fields["backing file offset"] != 0 || fields["encryption"] != 0 {
        return Ok(Err("backing files and encryption are not read".into()));
    }
    let cluster = 1u64 << bits;
    let size = fields["virtual size"];
    if size > MAX_QCOW2_SIZE {
        return Ok(Err(format!(
            "a virtual size of {size} bytes is not converted"
        )));
    }
    let l2_entries = cluster / 8;
    let l1_len = fields["L1 entries"];
    if l1_len > (1 << 24) || l1_len.saturating_mul(l2_entries).saturating_mul(cluster) < size {
        return Ok(Err(format!(
            "an L1 table of {l1_len} entries does not fit the size {size}"
        )));
    }
    let l1 = src.read(fields["L1 offset"], (l1_len * 8) as usize)?;
    let scratch = |source| DiffError::Scratch {
        name: src.name().to_string(),
        source,
    };
    let mut out = tempfile::tempfile().map_err(scratch)?;
    out.set_len(size).map_err(scratch)?;
    const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
    for (i, e) in l1.chunks_exact(8).enumerate() {
        let l2_off = u64::from_be_bytes(e.try_into().unwrap_or_default()) & OFFSET_MASK;
        if l2_off == 0 {
            continue;
        }
        let l2 = src.read(l2_off, cluster as usize)?;
        for (j, e) in l2.chunks_exact(8).enumerate() {
            let entry = u64::from_be_bytes(e.try_into().unwrap_or_default());
            if entry & (1 << 62) != 0 {
                return Ok(Err("compressed clusters are not read".into()));
            }
            let host = entry & OFFSET_MASK;
            if host == 0 || entry & 1 != 0 {
                continue;
            }
            let guest = (i as u64 * l2_entries + j as u64) * cluster;
            if guest >= size {
                break;
            }
            let data = src.read(host, cluster.min(size - guest) as usize)?;
            out.seek(SeekFrom::Start(guest)).map_err(scratch)?;
            out.write_all(&data).map_err(scratch)?;
        }
    }
    Ok(Ok(out))
}

/// A qcow2 image: its header fields, then the disk it holds.
pub(crate) fn diff_qcow2(
    a: &Src,
    b: &Src,
    loc: &str,
    c: &mut Collector,
) -> Result<Structure, DiffError> {
    let qloc = join(loc, "qcow2");
    let (ha, hb) = (a.read(0, 104)?, b.read(0, 104)?);
    if ha.len() < 72 || hb.len() < 72 {
        return Ok(Structure::Unreadable("truncated header".into()));
    }
    let mut d = Difference::changed(&join(&qloc, "header"));
    let (fa, fb) = (qcow2_header(&ha), qcow2_header(&hb));
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        d.field(name, x, y);
    }
    c.push(d);
    let (ra, rb) = match (qcow2_to_raw(a)?, qcow2_to_raw(b)?) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(why), _) | (_, Err(why)) => {
            let s = byte_summary(a, b)?;
            c.push(super::byte_difference(
                &qloc,
                &s,
                Some(&format!("only the header fields are compared: {why}")),
            ));
            return Ok(Structure::Parsed);
        }
    };
    let (ba, bb) = (Blob::file(a.name(), ra), Blob::file(b.name(), rb));
    let before = c.count();
    super::diff_blobs(&ba.whole(), &bb.whole(), "disk.raw", &qloc, c)?;
    if c.count() == before {
        let s = byte_summary(a, b)?;
        c.push(super::byte_difference(
            &qloc,
            &s,
            Some("the disks inside are identical; the qcow2 layout differs"),
        ));
    }
    Ok(Structure::Parsed)
}

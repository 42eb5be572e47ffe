//! FAT12/16/32 file systems, read far enough to compare them: the boot sector, then every
//! directory and file (VFAT long names, 8.3 names with mtools' lower-case flags), with
//! attributes, size, timestamps and content.
//!
//! The reader is ours because nothing else in hermetic reads FAT: [`crate::image::fat`] only
//! writes it. It reads FAT32 as that writer lays it out, and FAT12/16 as `mformat` makes
//! them (the unit tests read images made by mtools). It trusts nothing: cluster chains are
//! bounded and checked for loops, and directories are visited once.

use std::collections::{BTreeMap, HashSet};

use super::{Blob, Collector, DiffError, Difference, Kind, Src, Structure, first_difference, join};

const ATTR_DIR: u8 = 0x10;
const ATTR_VOLUME: u8 = 0x08;
const ATTR_LFN: u8 = 0x0F;
/// At most this much of a directory is read (a FAT directory holds at most 65536 entries
/// of 32 bytes: 2 MiB).
const MAX_DIR: u64 = 2 << 20;

/// Whether `head` (at least 512 bytes) starts with a FAT boot sector.
pub(crate) fn looks_like_fat(head: &[u8]) -> bool {
    head.len() >= 512
        && head[510..512] == [0x55, 0xAA]
        && (head.get(82..87) == Some(b"FAT32")
            || head.get(54..59).is_some_and(|t| t.starts_with(b"FAT")))
        && matches!(
            u16::from_le_bytes([head[11], head[12]]),
            512 | 1024 | 2048 | 4096
        )
        && head[13] != 0
}

/// FAT12, FAT16 or FAT32, decided by the cluster count as Microsoft's specification (and
/// UEFI) decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

/// The boot sector fields that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSector {
    pub fat_type: FatType,
    pub oem: String,
    pub bytes_per_sector: u64,
    pub sectors_per_cluster: u64,
    pub reserved_sectors: u64,
    pub fats: u64,
    pub root_entries: u64,
    pub total_sectors: u64,
    pub fat_sectors: u64,
    pub hidden_sectors: u64,
    pub root_cluster: u32,
    pub volume_id: u32,
    pub label: String,
    pub clusters: u64,
}

/// One file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatEntry {
    /// `/`-separated path from the root, in its long name when it has one.
    pub path: String,
    /// The 8.3 name as stored (`BOOTX64.EFI`, `LONGNA~1.TXT`).
    pub short_name: String,
    pub attributes: u8,
    pub size: u32,
    pub first_cluster: u32,
    /// Write time, creation time (with its 10 ms units) and access date.
    pub modified: DosStamp,
    pub created: DosStamp,
    pub created_10ms: u8,
    pub accessed_date: u16,
}

impl FatEntry {
    pub fn is_dir(&self) -> bool {
        self.attributes & ATTR_DIR != 0
    }
}

/// A DOS date and time as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DosStamp {
    pub date: u16,
    pub time: u16,
}

impl std::fmt::Display for DosStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            1980 + (self.date >> 9),
            (self.date >> 5) & 0xF,
            self.date & 0x1F,
            self.time >> 11,
            (self.time >> 5) & 0x3F,
            (self.time & 0x1F) * 2
        )
    }
}

fn date_only(date: u16) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        1980 + (date >> 9),
        (date >> 5) & 0xF,
        date & 0x1F
    )
}

/// A FAT file system read from a byte range.
pub struct FatFs<'a> {
    src: Src<'a>,
    pub boot: BootSector,
    fat: Vec<u8>,
}

fn le16(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[o], b[o + 1]]))
}

fn le32(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
}

fn trimmed(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

impl<'a> FatFs<'a> {
    /// Reads the boot sector and the first FAT.
    pub(crate) fn open(src: Src<'a>) -> Result<Result<Self, String>, DiffError> {
        let b = src.read(0, 512)?;
        if !looks_like_fat(&b) {
            return Ok(Err("no FAT boot sector".into()));
        }
        let bps = le16(&b, 11);
        let spc = u64::from(b[13]);
        let reserved = le16(&b, 14);
        let fats = u64::from(b[16]);
        let root_entries = le16(&b, 17);
        let total = match le16(&b, 19) {
            0 => le32(&b, 32),
            n => n,
        };
        let fat_sectors = match le16(&b, 22) {
            0 => le32(&b, 36),
            n => n,
        };
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let data_start = reserved + fats * fat_sectors + root_sectors;
        if fats == 0 || fat_sectors == 0 || total <= data_start || total * bps > src.len + bps {
            return Ok(Err(format!(
                "inconsistent boot sector ({total} sectors, FAT of {fat_sectors} sectors, {} bytes of data)",
                src.len
            )));
        }
        let clusters = (total - data_start) / spc;
        let fat_type = if clusters < 4085 {
            FatType::Fat12
        } else if clusters < 65525 {
            FatType::Fat16
        } else {
            FatType::Fat32
        };
        let (volume_id, label, root_cluster) = if fat_type == FatType::Fat32 {
            (le32(&b, 67), trimmed(&b[71..82]), le32(&b, 44) as u32)
        } else {
            (le32(&b, 39), trimmed(&b[43..54]), 0)
        };
        let fat_bytes = fat_sectors * bps;
        if fat_bytes > 256 << 20 {
            return Ok(Err(format!("a FAT of {fat_bytes} bytes is too large")));
        }
        let fat = src.read(reserved * bps, fat_bytes as usize)?;
        let boot = BootSector {
            fat_type,
            oem: trimmed(&b[3..11]),
            bytes_per_sector: bps,
            sectors_per_cluster: spc,
            reserved_sectors: reserved,
            fats,
            root_entries,
            total_sectors: total,
            fat_sectors,
            hidden_sectors: le32(&b, 28),
            root_cluster,
            volume_id: volume_id as u32,
            label,
            clusters,
        };
        Ok(Ok(FatFs { src, boot, fat }))
    }

    fn next_cluster(&self, c: u32) -> Option<u32> {
        let c = c as usize;
        let v = match self.boot.fat_type {
            FatType::Fat12 => {
                let off = c + c / 2;
                let v = u16::from_le_bytes([*self.fat.get(off)?, *self.fat.get(off + 1)?]);
                let v = if c % 2 == 1 { v >> 4 } else { v & 0xFFF };
                if v >= 0xFF8 {
                    return None;
                }
                u32::from(v)
            }
            FatType::Fat16 => {
                let v = u16::from_le_bytes([*self.fat.get(2 * c)?, *self.fat.get(2 * c + 1)?]);
                if v >= 0xFFF8 {
                    return None;
                }
                u32::from(v)
            }
            FatType::Fat32 => {
                let b = self.fat.get(4 * c..4 * c + 4)?;
                let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x0FFF_FFFF;
                if v >= 0x0FFF_FFF8 {
                    return None;
                }
                v
            }
        };
        Some(v)
    }

    fn cluster_bytes(&self) -> u64 {
        self.boot.sectors_per_cluster * self.boot.bytes_per_sector
    }

    fn cluster_offset(&self, c: u32) -> u64 {
        let b = &self.boot;
        let root_sectors = (b.root_entries * 32).div_ceil(b.bytes_per_sector);
        (b.reserved_sectors
            + b.fats * b.fat_sectors
            + root_sectors
            + (u64::from(c) - 2) * b.sectors_per_cluster)
            * b.bytes_per_sector
    }

    /// The bytes of the chain from `first`, at most `limit` of them.
    fn read_chain(&self, first: u32, limit: u64) -> Result<Result<Vec<u8>, String>, DiffError> {
        let mut out = Vec::new();
        let mut c = first;
        let mut seen = HashSet::new();
        while (out.len() as u64) < limit {
            if c < 2 || u64::from(c) >= self.boot.clusters + 2 {
                return Ok(Err(format!("cluster {c} is outside the file system")));
            }
            if !seen.insert(c) {
                return Ok(Err(format!("the chain from cluster {first} loops")));
            }
            let n = self.cluster_bytes().min(limit - out.len() as u64);
            out.extend(self.src.read(self.cluster_offset(c), n as usize)?);
            match self.next_cluster(c) {
                Some(next) => c = next,
                None => break,
            }
        }
        Ok(Ok(out))
    }

    /// The content of a file.
    pub(crate) fn read_file(&self, e: &FatEntry) -> Result<Result<Vec<u8>, String>, DiffError> {
        if e.size == 0 {
            return Ok(Ok(Vec::new()));
        }
        let data = self.read_chain(e.first_cluster, u64::from(e.size))?;
        Ok(data.and_then(|d| {
            if d.len() as u64 == u64::from(e.size) {
                Ok(d)
            } else {
                Err(format!(
                    "{}: its clusters hold {} of {} bytes",
                    e.path,
                    d.len(),
                    e.size
                ))
            }
        }))
    }

    /// Every file and directory, depth first, in directory order.
    pub(crate) fn entries(&self) -> Result<Result<Vec<FatEntry>, String>, DiffError> {
        let mut out = Vec::new();
        let mut visited = HashSet::new();
        let root = if self.boot.fat_type == FatType::Fat32 {
            match self.read_chain(self.boot.root_cluster, MAX_DIR)? {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            }
        } else {
            let b = &self.boot;
            let off = (b.reserved_sectors + b.fats * b.fat_sectors) * b.bytes_per_sector;
            self.src.read(off, (b.root_entries * 32) as usize)?
        };
        visited.insert(self.boot.root_cluster);
        let mut stack = vec![(String::new(), root)];
        while let Some((prefix, dir)) = stack.pop() {
            let mut subdirs = Vec::new();
            for e in parse_dir(&dir, &prefix, self.boot.fat_type) {
                if e.is_dir() {
                    if !visited.insert(e.first_cluster) {
                        return Ok(Err(format!(
                            "{} is a directory seen before (a loop)",
                            e.path
                        )));
                    }
                    match self.read_chain(e.first_cluster, MAX_DIR)? {
                        Ok(d) => subdirs.push((e.path.clone(), d)),
                        Err(why) => return Ok(Err(format!("{}: {why}", e.path))),
                    }
                }
                out.push(e);
            }
            // Depth first in directory order.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(Ok(out))
    }
}

fn lfn_checksum(short: &[u8]) -> u8 {
    short.iter().fold(0u8, |sum, &c| {
        ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(c)
    })
}

/// The entries of one directory's data.
fn parse_dir(data: &[u8], prefix: &str, fat_type: FatType) -> Vec<FatEntry> {
    let mut out = Vec::new();
    // Long-name pieces by sequence number, and the checksum they claim.
    let mut lfn: BTreeMap<u8, Vec<u16>> = BTreeMap::new();
    let mut lfn_sum = None;
    for raw in data.chunks_exact(32) {
        match raw[0] {
            0x00 => break,
            0xE5 => {
                lfn.clear();
                continue;
            }
            _ => {}
        }
        let attr = raw[11];
        if attr & 0x3F == ATTR_LFN {
            if raw[0] & 0x40 != 0 {
                lfn.clear();
            }
            let mut units = Vec::with_capacity(13);
            for range in [1..11, 14..26, 28..32] {
                units.extend(
                    raw[range]
                        .chunks_exact(2)
                        .map(|p| u16::from_le_bytes([p[0], p[1]])),
                );
            }
            lfn.insert(raw[0] & 0x1F, units);
            lfn_sum = Some(raw[13]);
            continue;
        }
        if attr & ATTR_VOLUME != 0 {
            lfn.clear();
            continue;
        }
        let short = &raw[0..11];
        let long = if !lfn.is_empty() && lfn_sum == Some(lfn_checksum(short)) {
            let units: Vec<u16> = lfn
                .values()
                .flatten()
                .copied()
                .take_while(|&u| u != 0 && u != 0xFFFF)
                .collect();
            Some(String::from_utf16_lossy(&units))
        } else {
            None
        };
        lfn.clear();
        let mut base = short[..8].to_vec();
        if base[0] == 0x05 {
            base[0] = 0xE5;
        }
        let base = trimmed(&base);
        let ext = trimmed(&short[8..11]);
        let short_name = if ext.is_empty() {
            base.clone()
        } else {
            format!("{base}.{ext}")
        };
        if short_name == "." || short_name == ".." {
            continue;
        }
        let name = long.unwrap_or_else(|| {
            // mtools and Windows NT mark all-lower-case 8.3 names in byte 12.
            let b = if raw[12] & 0x08 != 0 {
                base.to_lowercase()
            } else {
                base.clone()
            };
            let e = if raw[12] & 0x10 != 0 {
                ext.to_lowercase()
            } else {
                ext.clone()
            };
            if e.is_empty() { b } else { format!("{b}.{e}") }
        });
        let hi = if fat_type == FatType::Fat32 {
            le16(raw, 20) as u32
        } else {
            0
        };
        out.push(FatEntry {
            path: if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            },
            short_name,
            attributes: attr,
            size: le32(raw, 28) as u32,
            first_cluster: (hi << 16) | le16(raw, 26) as u32,
            modified: DosStamp {
                time: le16(raw, 22) as u16,
                date: le16(raw, 24) as u16,
            },
            created: DosStamp {
                time: le16(raw, 14) as u16,
                date: le16(raw, 16) as u16,
            },
            created_10ms: raw[13],
            accessed_date: le16(raw, 18) as u16,
        });
    }
    out
}

fn describe(e: &FatEntry) -> String {
    if e.is_dir() {
        format!("directory, modified {}", e.modified)
    } else {
        format!("file, {} bytes, modified {}", e.size, e.modified)
    }
}

/// Compares two FAT file systems at `loc` (which already names them `fat`).
pub(crate) fn diff(a: &Src, b: &Src, loc: &str, c: &mut Collector) -> Result<Structure, DiffError> {
    let fa = match FatFs::open(*a)? {
        Ok(f) => f,
        Err(why) => return Ok(Structure::Unreadable(why)),
    };
    let fb = match FatFs::open(*b)? {
        Ok(f) => f,
        Err(why) => return Ok(Structure::Unreadable(why)),
    };
    let (x, y) = (&fa.boot, &fb.boot);
    let mut d = Difference::changed(&join(loc, "boot sector"));
    d.field(
        "type",
        format!("{:?}", x.fat_type),
        format!("{:?}", y.fat_type),
    );
    d.field("OEM name", &x.oem, &y.oem);
    d.field(
        "volume id",
        format!("{:08X}", x.volume_id),
        format!("{:08X}", y.volume_id),
    );
    d.field("label", &x.label, &y.label);
    d.field("cluster size", fa.cluster_bytes(), fb.cluster_bytes());
    d.field("sectors", x.total_sectors, y.total_sectors);
    d.field("reserved sectors", x.reserved_sectors, y.reserved_sectors);
    d.field("FAT sectors", x.fat_sectors, y.fat_sectors);
    d.field("hidden sectors", x.hidden_sectors, y.hidden_sectors);
    c.push(d);

    let (ea, eb) = match (fa.entries()?, fb.entries()?) {
        (Ok(p), Ok(q)) => (p, q),
        (Err(why), _) | (_, Err(why)) => return Ok(Structure::Unreadable(why)),
    };
    let key = |v: &[FatEntry]| -> BTreeMap<String, FatEntry> {
        v.iter().map(|e| (e.path.clone(), e.clone())).collect()
    };
    let (ma, mb) = (key(&ea), key(&eb));
    let mut paths: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let floc = join(loc, path);
        let (x, y) = match (ma.get(path), mb.get(path)) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) => {
                c.push(Difference::only(&floc, Kind::Removed, describe(x)));
                continue;
            }
            (None, Some(y)) => {
                c.push(Difference::only(&floc, Kind::Added, describe(y)));
                continue;
            }
            (None, None) => continue,
        };
        let mut d = Difference::changed(&floc);
        d.field("short name", &x.short_name, &y.short_name);
        d.field(
            "attributes",
            format!("{:#04x}", x.attributes),
            format!("{:#04x}", y.attributes),
        );
        d.field("size", x.size, y.size);
        d.field("modified", x.modified, y.modified);
        d.field("created", x.created, y.created);
        d.field("created (10 ms)", x.created_10ms, y.created_10ms);
        d.field(
            "accessed",
            date_only(x.accessed_date),
            date_only(y.accessed_date),
        );
        d.field("first cluster", x.first_cluster, y.first_cluster);
        let mut nested = None;
        if !x.is_dir() && !y.is_dir() {
            match (fa.read_file(x)?, fb.read_file(y)?) {
                (Ok(p), Ok(q)) => {
                    d.content_offset = first_difference(&p, &q);
                    if d.content_offset.is_some() {
                        nested = Some((p, q));
                    }
                }
                (Err(why), _) | (_, Err(why)) => d.note = Some(format!("cannot read it: {why}")),
            }
        }
        c.push(d);
        if let Some((p, q)) = nested {
            let name = path.rsplit('/').next().unwrap_or(path);
            let (bp, bq) = (Blob::mem(path, p), Blob::mem(path, q));
            let summary = super::byte_summary(&bp.whole(), &bq.whole())?;
            super::diff_nested(&bp.whole(), &bq.whole(), name, &floc, c, summary)?;
        }
    }
    Ok(Structure::Parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn read_all(img: &std::path::Path) -> BTreeMap<String, (bool, Vec<u8>)> {
        let blob = Blob::mem("img", fs_err::read(img).unwrap());
        let fs = FatFs::open(blob.whole()).unwrap().unwrap();
        let mut out = BTreeMap::new();
        for e in fs.entries().unwrap().unwrap() {
            let data = if e.is_dir() {
                Vec::new()
            } else {
                fs.read_file(&e).unwrap().unwrap()
            };
            out.insert(e.path.clone(), (e.is_dir(), data));
        }
        out
    }

    #[test]
    fn reads_what_mtools_writes_fat12_16_32() {
        // mformat picks FAT12 for small, FAT16 for mid-sized, FAT32 with -F.
        for (bits, size_k, fat32) in [
            ("12", 1440, false),
            ("16", 32 * 1024, false),
            ("32", 64 * 1024, true),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let img = dir.path().join("x.img");
            let mut cmd = Command::new("mformat");
            cmd.env("MTOOLS_SKIP_CHECK", "1")
                .arg("-C")
                .arg("-i")
                .arg(&img);
            cmd.args(["-T", &(size_k * 2).to_string(), "-h", "2", "-s", "32"]);
            if fat32 {
                cmd.arg("-F");
            }
            let out = cmd.arg("::").output().expect("mtools is installed");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let files = dir.path().join("files");
            fs_err::create_dir_all(files.join("Sub Dir")).unwrap();
            fs_err::write(files.join("README.TXT"), b"upper case 8.3\n").unwrap();
            fs_err::write(files.join("lower.txt"), b"lower case 8.3\n").unwrap();
            fs_err::write(files.join("A long file name.data"), vec![7u8; 5000]).unwrap();
            fs_err::write(files.join("Sub Dir/inner.bin"), b"inner").unwrap();
            for f in [
                "README.TXT",
                "lower.txt",
                "A long file name.data",
                "Sub Dir",
            ] {
                let out = Command::new("mcopy")
                    .env("MTOOLS_SKIP_CHECK", "1")
                    .args(["-s", "-i"])
                    .arg(&img)
                    .arg(files.join(f))
                    .arg("::")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let blob = Blob::mem("img", fs_err::read(&img).unwrap());
            let fs = FatFs::open(blob.whole()).unwrap().unwrap();
            let expected = match bits {
                "12" => FatType::Fat12,
                "16" => FatType::Fat16,
                _ => FatType::Fat32,
            };
            assert_eq!(fs.boot.fat_type, expected, "FAT{bits}");
            let all = read_all(&img);
            let names: Vec<&str> = all.keys().map(String::as_str).collect();
            assert_eq!(
                names,
                [
                    "A long file name.data",
                    "README.TXT",
                    "Sub Dir",
                    "Sub Dir/inner.bin",
                    "lower.txt"
                ],
                "FAT{bits}"
            );
            assert_eq!(all["A long file name.data"].1, vec![7u8; 5000]);
            assert_eq!(all["lower.txt"].1, b"lower case 8.3\n");
            assert_eq!(all["Sub Dir/inner.bin"].1, b"inner");
            assert!(all["Sub Dir"].0);
        }
    }

    #[test]
    fn reads_what_our_writer_writes() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("esp.img");
        let mut b = crate::image::fat::FatBuilder::new(1_700_000_000);
        b.add_file("EFI/BOOT/BOOTX64.EFI", vec![1u8; 3000]).unwrap();
        b.add_file("loader/entries/Some Long Name.conf", b"title x\n".to_vec())
            .unwrap();
        b.write_image(&img, 40 << 20).unwrap();
        let all = read_all(&img);
        assert_eq!(all["EFI/BOOT/BOOTX64.EFI"].1, vec![1u8; 3000]);
        assert_eq!(all["loader/entries/Some Long Name.conf"].1, b"title x\n");
        assert!(all["EFI/BOOT"].0);
        let blob = Blob::mem("img", fs_err::read(&img).unwrap());
        let fs = FatFs::open(blob.whole()).unwrap().unwrap();
        let e = fs.entries().unwrap().unwrap();
        let boot = e.iter().find(|e| e.path == "EFI/BOOT/BOOTX64.EFI").unwrap();
        // 2023-11-14 22:13:20 UTC, rounded down to FAT's two seconds.
        assert_eq!(boot.modified.to_string(), "2023-11-14 22:13:20");
    }

    #[test]
    fn a_looping_chain_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("esp.img");
        let mut b = crate::image::fat::FatBuilder::new(0);
        b.add_file("A.BIN", vec![1u8; 2000]).unwrap();
        b.write_image(&img, 40 << 20).unwrap();
        let mut data = fs_err::read(&img).unwrap();
        let blob = Blob::mem("img", data.clone());
        let fs = FatFs::open(blob.whole()).unwrap().unwrap();
        let e = fs.entries().unwrap().unwrap();
        let file = e.iter().find(|e| e.path == "A.BIN").unwrap().clone();
        // Point the file's first cluster at itself.
        let fat_off = (fs.boot.reserved_sectors * fs.boot.bytes_per_sector) as usize;
        let at = fat_off + 4 * file.first_cluster as usize;
        data[at..at + 4].copy_from_slice(&file.first_cluster.to_le_bytes());
        let blob = Blob::mem("img", data);
        let fs = FatFs::open(blob.whole()).unwrap().unwrap();
        assert!(fs.read_file(&file).unwrap().is_err());
    }
}

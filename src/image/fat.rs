//! FAT32 file systems (the EFI System Partition), every field chosen by us.
//!
//! [`FatBuilder`] collects directories and files; [`FatBuilder::layout`] fixes the geometry
//! and every cluster; [`FatLayout::write`] writes the used parts into a [`Sink`] (the rest
//! stays a hole). What we fix, and why:
//! - boot sector: jump `EB 58 90`, OEM name `MSWIN4.1` (the value Microsoft recommends for
//!   compatibility with picky readers), 512-byte sectors, 32 reserved sectors (more if needed
//!   to align the data region to a cluster), 2 FATs, media 0xF8, 63 sectors per track and 255
//!   heads (the usual LBA-translated geometry; nothing reads it), hidden sectors = the
//!   partition's start LBA, FSInfo at sector 1, backup boot sector at 6, drive 0x80,
//!   extended boot signature 0x29, volume serial (default 0x12345678, as the seed's
//!   `mkfs.vfat -i 12345678`), label (default `ESP`), type `FAT32   `. The boot code is
//!   `cli; hlt` in a loop, then the 0x55AA signature.
//! - cluster size: Microsoft's table for FAT32 (up to 260 MiB: 512 bytes; up to 8 GiB:
//!   4 KiB; 16 GiB: 8 KiB; 32 GiB: 16 KiB; larger: 32 KiB), as `mkfs.fat` picks it; the
//!   volume must have at least 65525 clusters, or readers (UEFI included, which decides the
//!   FAT type by cluster count) would take it for FAT16.
//! - allocation: the root directory at cluster 2, then every directory and file in
//!   depth-first order of their names (bytes), each in one contiguous run. FAT[0] =
//!   0x0FFFFFF8, FAT[1] = 0x0FFFFFFF (clean), end of chain 0x0FFFFFFF. FSInfo holds the
//!   exact free count and the first free cluster.
//! - names: a name that is a valid upper-case 8.3 name is stored as is; any other name gets
//!   VFAT long-name entries and a generated short name `BASIS~N.EXT` (upper-cased, invalid
//!   characters replaced by `_`, `N` the lowest number free in the directory, names
//!   processed in byte order). Entries in a directory are in byte order of their names.
//!   Names are compared case-insensitively for clashes, as FAT does.
//! - timestamps: creation, write and access times of every entry (and the volume label
//!   entry) are `SOURCE_DATE_EPOCH` in UTC, clamped to FAT's range 1980-01-01 to 2107-12-31
//!   (the seed's epoch 0 becomes 1980-01-01 00:00:00, as mtools writes it).
//! - attributes: directories 0x10, files 0x20 (archive, as mtools sets it).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::sink::Sink;

/// The seed's FAT volume serial number (mkfs.fat `-i 12345678`, as systemd-repart is told).
pub const SEED_VOLUME_ID: u32 = 0x1234_5678;

const SECTOR: u64 = 512;
const MIN_CLUSTERS: u64 = 65_525;
const MAX_CLUSTERS: u64 = 0x0FFF_FFF4;
const EOC: u32 = 0x0FFF_FFFF;
const ATTR_DIR: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_VOLUME: u8 = 0x08;
const ATTR_LFN: u8 = 0x0F;

/// Errors of the FAT writer.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("{size} bytes is not a multiple of 512")]
    BadSize { size: u64 },
    #[error(
        "a FAT32 file system of {size} bytes with {cluster_size}-byte clusters has {clusters} clusters, fewer than FAT32's minimum of 65525\nhint: make the ESP at least 33 MiB, or choose smaller clusters"
    )]
    TooSmall {
        size: u64,
        cluster_size: u32,
        clusters: u64,
    },
    #[error(
        "a FAT32 file system of {size} bytes has more clusters than FAT32 can address\nhint: choose larger clusters"
    )]
    TooLarge { size: u64 },
    #[error("cluster size {0} is not a power of two between 512 and 65536")]
    BadClusterSize(u32),
    #[error("{path:?} is not a valid FAT path: {reason}")]
    BadName { path: String, reason: String },
    #[error("{path:?} is added twice (FAT names are case-insensitive)")]
    Duplicate { path: String },
    #[error("{path:?} is a file, so it cannot hold {child:?}")]
    NotADirectory { path: String, child: String },
    #[error("{path:?} is {size} bytes; FAT32 files hold at most 4 GiB - 1")]
    FileTooLarge { path: String, size: u64 },
    #[error(
        "the files need {needed} clusters but the file system has {available}\nhint: make the ESP larger"
    )]
    NoSpace { needed: u64, available: u64 },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} changed size while it was copied (expected {expected} bytes)")]
    Changed { path: PathBuf, expected: u64 },
    #[error("cannot write the FAT file system")]
    Write(#[source] io::Error),
}

/// Where a file's bytes come from.
#[derive(Clone, Debug)]
enum Source {
    Bytes(Vec<u8>),
    File { path: PathBuf, size: u64 },
}

impl Source {
    fn len(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::File { size, .. } => *size,
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    Dir(BTreeMap<String, Node>),
    File(Source),
}

/// Collects the content of a FAT32 file system and its fixed identity.
#[derive(Clone, Debug)]
pub struct FatBuilder {
    root: BTreeMap<String, Node>,
    volume_id: u32,
    label: String,
    oem_name: [u8; 8],
    source_date_epoch: u64,
    cluster_size: Option<u32>,
}

impl Default for FatBuilder {
    fn default() -> Self {
        Self::new(0)
    }
}

impl FatBuilder {
    /// An empty file system whose timestamps are `source_date_epoch`.
    pub fn new(source_date_epoch: u64) -> Self {
        FatBuilder {
            root: BTreeMap::new(),
            volume_id: SEED_VOLUME_ID,
            label: "ESP".to_string(),
            oem_name: *b"MSWIN4.1",
            source_date_epoch,
            cluster_size: None,
        }
    }

    /// The volume serial number (default 0x12345678).
    pub fn volume_id(mut self, id: u32) -> Self {
        self.volume_id = id;
        self
    }

    /// The volume label: up to 11 characters valid in a short name (default `ESP`). An empty
    /// label writes `NO NAME` and no label entry.
    pub fn label(mut self, label: &str) -> Result<Self, FatError> {
        let bad = |reason: &str| FatError::BadName {
            path: label.to_string(),
            reason: reason.to_string(),
        };
        if label.len() > 11 {
            return Err(bad("a label has at most 11 characters"));
        }
        if !label.bytes().all(|b| b == b' ' || short_char_ok(b)) {
            return Err(bad(
                "a label holds upper-case letters, digits and 8.3 symbols",
            ));
        }
        self.label = label.to_string();
        Ok(self)
    }

    /// The cluster size in bytes (default from the volume size, see the module docs).
    pub fn cluster_size(mut self, bytes: u32) -> Result<Self, FatError> {
        if !bytes.is_power_of_two() || !(512..=65536).contains(&bytes) {
            return Err(FatError::BadClusterSize(bytes));
        }
        self.cluster_size = Some(bytes);
        Ok(self)
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<(), FatError> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let bad = |reason: &str| FatError::BadName {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let Some((last, parents)) = parts.split_last() else {
            return Err(bad("empty path"));
        };
        for p in &parts {
            check_long_name(p).map_err(|r| bad(&r))?;
        }
        let mut dir = &mut self.root;
        for (i, p) in parents.iter().enumerate() {
            if let Some(k) = dir.keys().find(|k| k.eq_ignore_ascii_case(p) && k != p) {
                return Err(FatError::Duplicate {
                    path: format!("{}/{k}", parents[..i].join("/")),
                });
            }
            let next = dir
                .entry(p.to_string())
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            match next {
                Node::Dir(children) => dir = children,
                Node::File(_) => {
                    return Err(FatError::NotADirectory {
                        path: parents[..=i].join("/"),
                        child: path.to_string(),
                    });
                }
            }
        }
        if let Some(existing) = dir.get(*last) {
            if matches!((existing, &node), (Node::Dir(_), Node::Dir(_))) {
                return Ok(());
            }
            return Err(FatError::Duplicate {
                path: path.to_string(),
            });
        }
        if dir.keys().any(|k| k.eq_ignore_ascii_case(last)) {
            return Err(FatError::Duplicate {
                path: path.to_string(),
            });
        }
        dir.insert(last.to_string(), node);
        Ok(())
    }

    /// Adds a directory (and its parents). `path` uses `/` separators.
    pub fn add_dir(&mut self, path: &str) -> Result<(), FatError> {
        self.insert(path, Node::Dir(BTreeMap::new()))
    }

    /// Adds a file with the given contents (and its parent directories).
    pub fn add_file(&mut self, path: &str, data: Vec<u8>) -> Result<(), FatError> {
        if data.len() as u64 > u64::from(u32::MAX) {
            return Err(FatError::FileTooLarge {
                path: path.to_string(),
                size: data.len() as u64,
            });
        }
        self.insert(path, Node::File(Source::Bytes(data)))
    }

    /// Adds a file whose contents are read from `host_path` when the image is written (its
    /// size is taken now and checked then).
    pub fn add_file_from(&mut self, path: &str, host_path: &Path) -> Result<(), FatError> {
        let size = fs_err::metadata(host_path)
            .map_err(|source| FatError::Read {
                path: host_path.to_path_buf(),
                source,
            })?
            .len();
        if size > u64::from(u32::MAX) {
            return Err(FatError::FileTooLarge {
                path: path.to_string(),
                size,
            });
        }
        self.insert(
            path,
            Node::File(Source::File {
                path: host_path.to_path_buf(),
                size,
            }),
        )
    }

    /// Computes the geometry for a file system of `size` bytes starting at LBA
    /// `hidden_sectors` of its disk, and places every directory and file.
    pub fn layout(&self, size: u64, hidden_sectors: u64) -> Result<FatLayout, FatError> {
        let geometry = Geometry::new(size, self.cluster_size)?;
        let stamp = DosTime::from_unix(self.source_date_epoch);
        let cluster_bytes = geometry.cluster_bytes();
        let mut alloc = Allocator {
            next: 2,
            cluster_bytes,
            dirs: Vec::new(),
            files: Vec::new(),
            stamp,
        };
        let label = pad11(&self.label);
        alloc.dir(&self.root, None, Some(label))?;
        let used = alloc.next - 2;
        if used > geometry.clusters {
            return Err(FatError::NoSpace {
                needed: used,
                available: geometry.clusters,
            });
        }
        Ok(FatLayout {
            geometry,
            hidden_sectors: u32::try_from(hidden_sectors).unwrap_or(u32::MAX),
            volume_id: self.volume_id,
            label,
            oem_name: self.oem_name,
            used_clusters: used,
            dirs: alloc.dirs,
            files: alloc.files,
        })
    }

    /// Writes a whole image file of `size` bytes (with holes) at `path`.
    pub fn write_image(&self, path: &Path, size: u64) -> Result<(), FatError> {
        let layout = self.layout(size, 0)?;
        let file = fs_err::File::create(path).map_err(FatError::Write)?;
        file.set_len(size).map_err(FatError::Write)?;
        layout.write(&mut super::sink::FileSink::new(file.file(), 0))?;
        file.sync_all().map_err(FatError::Write)
    }
}

fn pad11(label: &str) -> [u8; 11] {
    let mut out = *b"NO NAME    ";
    if !label.is_empty() {
        out = [b' '; 11];
        out[..label.len()].copy_from_slice(label.as_bytes());
    }
    out
}

/// Sizes of the regions, in sectors unless named otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub total_sectors: u64,
    pub sectors_per_cluster: u64,
    pub reserved_sectors: u64,
    pub fat_sectors: u64,
    pub clusters: u64,
}

impl Geometry {
    fn new(size: u64, cluster_size: Option<u32>) -> Result<Self, FatError> {
        if size == 0 || !size.is_multiple_of(SECTOR) {
            return Err(FatError::BadSize { size });
        }
        let total = size / SECTOR;
        let cluster_bytes = u64::from(cluster_size.unwrap_or(match size {
            s if s <= 260 << 20 => 512,
            s if s <= 8 << 30 => 4096,
            s if s <= 16 << 30 => 8192,
            s if s <= 32 << 30 => 16384,
            _ => 32768,
        }));
        let spc = cluster_bytes / SECTOR;
        let mut reserved = 32;
        // An upper bound of the cluster count sizes the FAT; a FAT a few sectors too large is
        // valid (readers only need at least clusters + 2 entries).
        let upper = total.saturating_sub(reserved) / spc;
        let fat = ((upper + 2) * 4).div_ceil(SECTOR);
        // Align the data region to the cluster size.
        reserved += (spc - (reserved + 2 * fat) % spc) % spc;
        let data_start = reserved + 2 * fat;
        let clusters = total.saturating_sub(data_start) / spc;
        if clusters < MIN_CLUSTERS {
            return Err(FatError::TooSmall {
                size,
                cluster_size: cluster_bytes as u32,
                clusters,
            });
        }
        if clusters > MAX_CLUSTERS {
            return Err(FatError::TooLarge { size });
        }
        Ok(Geometry {
            total_sectors: total,
            sectors_per_cluster: spc,
            reserved_sectors: reserved,
            fat_sectors: fat,
            clusters,
        })
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * SECTOR
    }

    /// Byte offset of cluster `c` (c >= 2).
    pub fn cluster_offset(&self, c: u64) -> u64 {
        (self.reserved_sectors + 2 * self.fat_sectors + (c - 2) * self.sectors_per_cluster) * SECTOR
    }
}

/// A DOS date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DosTime {
    pub date: u16,
    pub time: u16,
    /// Hundredths of a second added to `time` (0 or 100: the odd second).
    pub tenths: u8,
}

impl DosTime {
    /// Seconds since the Unix epoch in UTC, clamped to 1980-01-01 .. 2107-12-31 23:59:58.
    pub fn from_unix(secs: u64) -> Self {
        const MIN: u64 = 315_532_800; // 1980-01-01
        const MAX: u64 = 4_354_819_199; // 2107-12-31 23:59:59
        let secs = secs.clamp(MIN, MAX);
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let (h, min, s) = (rem / 3600, rem / 60 % 60, rem % 60);
        DosTime {
            date: (((y - 1980) << 9) | (m << 5) | d) as u16,
            time: ((h << 11) | (min << 5) | (s / 2)) as u16,
            tenths: ((s % 2) * 100) as u8,
        }
    }
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as u64, m as u64, d as u64)
}

const SHORT_SYMBOLS: &[u8] = b"!#$%&'()-@^_`{}~";

fn short_char_ok(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || SHORT_SYMBOLS.contains(&b)
}

fn check_long_name(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err("`.` and `..` are not names".into());
    }
    if name.encode_utf16().count() > 255 {
        return Err("a name has at most 255 UTF-16 code units".into());
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err("a name may not end with `.` or a space".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| (*c as u32) < 0x20 || "\"*/:<>?\\|\u{7f}".contains(*c))
    {
        return Err(format!("{c:?} is not allowed in FAT names"));
    }
    Ok(())
}

/// The 11-byte short name if `name` is a valid upper-case 8.3 name.
fn as_short_name(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = match name.rfind('.') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (name, ""),
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 {
        return None;
    }
    if !base.bytes().chain(ext.bytes()).all(short_char_ok) {
        return None;
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(out)
}

/// The basis of a generated short name: upper-cased, spaces and leading dots dropped,
/// other invalid characters replaced by `_`; base up to 8 and extension up to 3 characters.
fn short_basis(name: &str) -> (Vec<u8>, Vec<u8>) {
    let clean = |s: &str| -> Vec<u8> {
        s.chars()
            .filter(|c| *c != ' ' && *c != '.')
            .map(|c| {
                let u = c.to_ascii_uppercase();
                if u.is_ascii() && short_char_ok(u as u8) {
                    u as u8
                } else {
                    b'_'
                }
            })
            .collect()
    };
    let trimmed = name.trim_start_matches('.');
    let (base, ext) = match trimmed.rfind('.') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    let mut b = clean(base);
    if b.is_empty() {
        b.push(b'_');
    }
    let mut e = clean(ext);
    b.truncate(8);
    e.truncate(3);
    (b, e)
}

fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &b| (sum >> 1 | (sum & 1) << 7).wrapping_add(b))
}

/// The 32-byte directory entries of one name (long-name entries first).
fn name_entries(
    long: &str,
    short: &[u8; 11],
    needs_lfn: bool,
    attr: u8,
    cluster: u32,
    size: u32,
    t: DosTime,
) -> Vec<u8> {
    let mut out = Vec::new();
    if needs_lfn {
        let mut units: Vec<u16> = long.encode_utf16().collect();
        let n = units.len().div_ceil(13);
        if !units.len().is_multiple_of(13) {
            units.push(0);
        }
        units.resize(n * 13, 0xFFFF);
        let sum = lfn_checksum(short);
        for i in (0..n).rev() {
            let mut e = [0u8; 32];
            e[0] = (i as u8 + 1) | if i == n - 1 { 0x40 } else { 0 };
            let chunk = &units[i * 13..i * 13 + 13];
            let put = |e: &mut [u8; 32], at: usize, us: &[u16]| {
                for (j, u) in us.iter().enumerate() {
                    e[at + 2 * j..at + 2 * j + 2].copy_from_slice(&u.to_le_bytes());
                }
            };
            put(&mut e, 1, &chunk[0..5]);
            e[11] = ATTR_LFN;
            e[13] = sum;
            put(&mut e, 14, &chunk[5..11]);
            put(&mut e, 28, &chunk[11..13]);
            out.extend_from_slice(&e);
        }
    }
    out.extend_from_slice(&short_entry(short, attr, cluster, size, t));
    out
}

fn short_entry(short: &[u8; 11], attr: u8, cluster: u32, size: u32, t: DosTime) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0..11].copy_from_slice(short);
    if e[0] == 0xE5 {
        e[0] = 0x05;
    }
    e[11] = attr;
    e[13] = t.tenths;
    e[14..16].copy_from_slice(&t.time.to_le_bytes());
    e[16..18].copy_from_slice(&t.date.to_le_bytes());
    e[18..20].copy_from_slice(&t.date.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&t.time.to_le_bytes());
    e[24..26].copy_from_slice(&t.date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// The short names of a directory's children, in the children's (byte) order.
fn short_names(children: &BTreeMap<String, Node>) -> Vec<([u8; 11], bool)> {
    let mut taken: Vec<[u8; 11]> = children.keys().filter_map(|k| as_short_name(k)).collect();
    children
        .keys()
        .map(|k| match as_short_name(k) {
            Some(s) => (s, false),
            None => {
                let (base, ext) = short_basis(k);
                let mut n = 1u32;
                loop {
                    let tail = format!("~{n}");
                    let keep = base.len().min(8 - tail.len());
                    let mut s = [b' '; 11];
                    s[..keep].copy_from_slice(&base[..keep]);
                    s[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
                    s[8..8 + ext.len()].copy_from_slice(&ext);
                    if !taken.contains(&s) {
                        taken.push(s);
                        break (s, true);
                    }
                    n += 1;
                }
            }
        })
        .collect()
}

struct Allocator {
    next: u64,
    cluster_bytes: u64,
    dirs: Vec<(u64, Vec<u8>)>,
    files: Vec<(u64, Source)>,
    stamp: DosTime,
}

impl Allocator {
    fn take(&mut self, bytes: u64) -> u64 {
        let n = bytes.div_ceil(self.cluster_bytes);
        let first = self.next;
        self.next += n;
        first
    }

    /// Places a directory and, depth first, everything in it; returns its first cluster.
    fn dir(
        &mut self,
        children: &BTreeMap<String, Node>,
        parent: Option<u64>,
        label: Option<[u8; 11]>,
    ) -> Result<u64, FatError> {
        let shorts = short_names(children);
        let mut bytes: u64 = if parent.is_some() { 64 } else { 0 };
        if label.is_some_and(|l| &l != b"NO NAME    ") {
            bytes += 32;
        }
        for ((name, _), (_, lfn)) in children.iter().zip(&shorts) {
            let lfn_entries = if *lfn {
                name.encode_utf16().count().div_ceil(13) as u64
            } else {
                0
            };
            bytes += 32 * (1 + lfn_entries);
        }
        let first = self.take(bytes.max(1));
        let t = self.stamp;
        let mut content = Vec::with_capacity(bytes as usize);
        if let Some(parent) = parent {
            let dotdot = if parent == 2 { 0 } else { parent as u32 };
            content.extend_from_slice(&short_entry(b".          ", ATTR_DIR, first as u32, 0, t));
            content.extend_from_slice(&short_entry(b"..         ", ATTR_DIR, dotdot, 0, t));
        }
        if let Some(l) = label.filter(|l| l != b"NO NAME    ") {
            content.extend_from_slice(&short_entry(&l, ATTR_VOLUME, 0, 0, t));
        }
        let index = self.dirs.len();
        self.dirs.push((first, Vec::new()));
        for ((name, node), (short, lfn)) in children.iter().zip(&shorts) {
            let (attr, cluster, size) = match node {
                Node::Dir(grand) => (ATTR_DIR, self.dir(grand, Some(first), None)?, 0),
                Node::File(src) => {
                    let size = src.len();
                    let cluster = if size == 0 { 0 } else { self.take(size) };
                    if size > 0 {
                        self.files.push((cluster, src.clone()));
                    }
                    (ATTR_ARCHIVE, cluster, size as u32)
                }
            };
            content.extend(name_entries(
                name,
                short,
                *lfn,
                attr,
                cluster as u32,
                size,
                t,
            ));
        }
        self.dirs[index].1 = content;
        Ok(first)
    }
}

/// A laid-out file system, ready to write.
#[derive(Clone, Debug)]
pub struct FatLayout {
    pub geometry: Geometry,
    hidden_sectors: u32,
    volume_id: u32,
    label: [u8; 11],
    oem_name: [u8; 8],
    used_clusters: u64,
    dirs: Vec<(u64, Vec<u8>)>,
    files: Vec<(u64, Source)>,
}

impl FatLayout {
    /// The boot sector (sector 0, and its backup at sector 6).
    pub fn boot_sector(&self) -> [u8; 512] {
        let g = &self.geometry;
        let mut b = [0u8; 512];
        b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
        b[3..11].copy_from_slice(&self.oem_name);
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = g.sectors_per_cluster as u8;
        b[14..16].copy_from_slice(&(g.reserved_sectors as u16).to_le_bytes());
        b[16] = 2;
        b[21] = 0xF8;
        b[24..26].copy_from_slice(&63u16.to_le_bytes());
        b[26..28].copy_from_slice(&255u16.to_le_bytes());
        b[28..32].copy_from_slice(&self.hidden_sectors.to_le_bytes());
        b[32..36].copy_from_slice(&(g.total_sectors as u32).to_le_bytes());
        b[36..40].copy_from_slice(&(g.fat_sectors as u32).to_le_bytes());
        b[44..48].copy_from_slice(&2u32.to_le_bytes());
        b[48..50].copy_from_slice(&1u16.to_le_bytes());
        b[50..52].copy_from_slice(&6u16.to_le_bytes());
        b[64] = 0x80;
        b[66] = 0x29;
        b[67..71].copy_from_slice(&self.volume_id.to_le_bytes());
        b[71..82].copy_from_slice(&self.label);
        b[82..90].copy_from_slice(b"FAT32   ");
        // Boot code at the jump target 0x5A: cli; hlt; jmp back to hlt.
        b[0x5A..0x5E].copy_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]);
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    /// The FSInfo sector (sector 1, and its backup at sector 7).
    pub fn fsinfo_sector(&self) -> [u8; 512] {
        let mut s = [0u8; 512];
        s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
        s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
        let free = self.geometry.clusters - self.used_clusters;
        let next_free = if free == 0 {
            u32::MAX
        } else {
            (2 + self.used_clusters) as u32
        };
        s[488..492].copy_from_slice(&(free as u32).to_le_bytes());
        s[492..496].copy_from_slice(&next_free.to_le_bytes());
        s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
        s
    }

    /// The used prefix of one FAT (entries 0 to the last used cluster); the rest is zero.
    pub fn fat_prefix(&self) -> Vec<u8> {
        let entries = 2 + self.used_clusters as usize;
        let mut fat = vec![0u32; entries];
        fat[0] = 0x0FFF_FFF8;
        fat[1] = EOC;
        let cb = self.geometry.cluster_bytes();
        let mut chain = |first: u64, bytes: u64| {
            let n = bytes.div_ceil(cb).max(1);
            for c in first..first + n {
                fat[c as usize] = if c + 1 == first + n {
                    EOC
                } else {
                    c as u32 + 1
                };
            }
        };
        for (first, content) in &self.dirs {
            chain(*first, content.len() as u64);
        }
        for (first, src) in &self.files {
            chain(*first, src.len());
        }
        fat.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Writes the file system into `sink` (offset 0 = its first sector). Only non-zero parts
    /// are written.
    pub fn write(&self, sink: &mut impl Sink) -> Result<(), FatError> {
        let g = &self.geometry;
        let w = |sink: &mut dyn Sink, off: u64, data: &[u8]| {
            sink.write_at(off, data).map_err(FatError::Write)
        };
        let boot = self.boot_sector();
        let info = self.fsinfo_sector();
        w(sink, 0, &boot)?;
        w(sink, SECTOR, &info)?;
        w(sink, 6 * SECTOR, &boot)?;
        w(sink, 7 * SECTOR, &info)?;
        let fat = self.fat_prefix();
        for i in 0..2 {
            w(
                sink,
                (g.reserved_sectors + i * g.fat_sectors) * SECTOR,
                &fat,
            )?;
        }
        for (first, content) in &self.dirs {
            w(sink, g.cluster_offset(*first), content)?;
        }
        let mut buf = vec![0u8; 1 << 20];
        for (first, src) in &self.files {
            let at = g.cluster_offset(*first);
            match src {
                Source::Bytes(b) => write_nonzero(sink, at, b)?,
                Source::File { path, size } => {
                    let rerr = |source| FatError::Read {
                        path: path.clone(),
                        source,
                    };
                    let changed = || FatError::Changed {
                        path: path.clone(),
                        expected: *size,
                    };
                    let mut f = fs_err::File::open(path).map_err(rerr)?;
                    let mut done = 0u64;
                    while done < *size {
                        let want = buf.len().min((*size - done) as usize);
                        f.read_exact(&mut buf[..want]).map_err(|e| {
                            if e.kind() == io::ErrorKind::UnexpectedEof {
                                changed()
                            } else {
                                rerr(e)
                            }
                        })?;
                        write_nonzero(sink, at + done, &buf[..want])?;
                        done += want as u64;
                    }
                    if f.read(&mut buf[..1]).map_err(rerr)? != 0 {
                        return Err(changed());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes `data` at `at`, skipping 64 KiB chunks that are all zero (they stay holes).
fn write_nonzero(sink: &mut (impl Sink + ?Sized), at: u64, data: &[u8]) -> Result<(), FatError> {
    for (i, chunk) in data.chunks(64 * 1024).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            sink.write_at(at + (i * 64 * 1024) as u64, chunk)
                .map_err(FatError::Write)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_time_of_epochs() {
        let t = DosTime::from_unix(0);
        // 1980-01-01 00:00:00: year 0, month 1, day 1.
        assert_eq!((t.date, t.time), ((1 << 5) | 1, 0));
        // 2024-02-29 13:14:15 UTC = 1709212455
        let t = DosTime::from_unix(1_709_212_455);
        assert_eq!(t.date, (44 << 9) | (2 << 5) | 29);
        assert_eq!(t.time, (13 << 11) | (14 << 5) | 7);
        assert_eq!(t.tenths, 100);
    }

    #[test]
    fn short_names_and_tails() {
        assert_eq!(as_short_name("BOOTX64.EFI"), Some(*b"BOOTX64 EFI"));
        assert_eq!(as_short_name("EFI"), Some(*b"EFI        "));
        assert_eq!(as_short_name("bootx64.efi"), None);
        assert_eq!(as_short_name("A.B.C"), None);
        let mut m = BTreeMap::new();
        for n in [
            "loader.conf",
            "Loader.Confx",
            "x",
            "LOADER~1.CON",
            ".hidden",
        ] {
            m.insert(n.to_string(), Node::File(Source::Bytes(vec![])));
        }
        let names: Vec<String> = short_names(&m)
            .iter()
            .map(|(s, l)| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(s),
                    if *l { "+" } else { "" }
                )
            })
            .collect();
        // BTreeMap order: ".hidden", "LOADER~1.CON", "Loader.Confx", "loader.conf", "x"
        assert_eq!(
            names,
            [
                "HIDDEN~1   +",
                "LOADER~1CON",
                "LOADER~2CON+",
                "LOADER~3CON+",
                "X~1        +"
            ]
        );
    }

    #[test]
    fn geometry_of_seed_esp() {
        let g = Geometry::new(524_288_000, None).unwrap();
        assert_eq!(g.sectors_per_cluster, 8);
        assert!(g.clusters >= MIN_CLUSTERS);
        assert!(g.fat_sectors * 128 >= g.clusters + 2);
        assert_eq!((g.reserved_sectors + 2 * g.fat_sectors) % 8, 0);
        assert!(matches!(
            Geometry::new(16 << 20, None),
            Err(FatError::TooSmall { .. })
        ));
    }

    #[test]
    fn duplicates_and_parents() {
        let mut b = FatBuilder::new(0);
        b.add_file("EFI/BOOT/BOOTX64.EFI", vec![1]).unwrap();
        assert!(matches!(
            b.add_file("efi/boot/bootx64.efi", vec![2]),
            Err(FatError::Duplicate { .. })
        ));
        assert!(matches!(
            b.add_file("EFI/BOOT/BOOTX64.EFI/x", vec![2]),
            Err(FatError::NotADirectory { .. })
        ));
        b.add_dir("EFI/BOOT").unwrap();
        assert!(b.add_file("a:b", vec![]).is_err());
    }
}

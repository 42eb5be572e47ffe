//! initrds: newc cpio archives, plain or compressed (zstd, as [`crate::image::cpio`] writes
//! them, or gzip, xz), possibly several concatenated as the kernel accepts them.

use std::collections::BTreeMap;

use super::{
    Blob, Collector, DiffError, Difference, Kind, Src, Structure, decompressor, first_difference,
    join,
};

const HEADER_LEN: usize = 110;
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    pub name: String,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

impl CpioEntry {
    fn kind(&self) -> &'static str {
        match self.mode & S_IFMT {
            S_IFDIR => "directory",
            S_IFREG => "file",
            S_IFLNK => "symlink",
            0o020000 => "character device",
            0o060000 => "block device",
            0o010000 => "fifo",
            0o140000 => "socket",
            _ => "entry",
        }
    }
}

fn hex_field(h: &[u8], i: usize) -> Option<u32> {
    let s = std::str::from_utf8(h.get(6 + 8 * i..6 + 8 * (i + 1))?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Reads every member of an initrd: plain newc archives, each followed by zero padding,
/// and compressed ones, which run to the end of the data.
pub fn read_initrd(data: &[u8]) -> Result<Vec<CpioEntry>, String> {
    let mut out = Vec::new();
    read_into(data, &mut out, 0)?;
    Ok(out)
}

fn read_into(data: &[u8], out: &mut Vec<CpioEntry>, depth: u32) -> Result<(), String> {
    let mut pos = 0usize;
    loop {
        // Archives are separated by zero padding.
        while pos < data.len() && data[pos] == 0 {
            pos += 1;
        }
        if pos >= data.len() {
            return Ok(());
        }
        let rest = &data[pos..];
        if rest.starts_with(b"070701") || rest.starts_with(b"070702") {
            pos += read_archive(rest, out).map_err(|e| format!("at offset {pos}: {e}"))?;
            continue;
        }
        if depth > 4 {
            return Err("compressed archives nested too deeply".into());
        }
        let Some(mut r) = decompressor(rest, rest) else {
            return Err(format!(
                "no cpio archive or compressed data at offset {pos}"
            ));
        };
        let mut inner = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(&mut r, super::MAX_IN_MEMORY),
            &mut inner,
        )
        .map_err(|e| format!("cannot decompress the data at offset {pos}: {e}"))?;
        return read_into(&inner, out, depth + 1);
    }
}

/// Reads one archive up to and including its trailer; returns the bytes it took.
fn read_archive(data: &[u8], out: &mut Vec<CpioEntry>) -> Result<usize, String> {
    let mut pos = 0usize;
    loop {
        let h = data
            .get(pos..pos + HEADER_LEN)
            .ok_or_else(|| format!("truncated header at offset {pos}"))?;
        if !(h.starts_with(b"070701") || h.starts_with(b"070702")) {
            return Err(format!("bad magic at offset {pos}"));
        }
        let f = |i| hex_field(h, i).ok_or_else(|| format!("bad header at offset {pos}"));
        let (ino, mode, uid, gid, nlink, mtime) = (f(0)?, f(1)?, f(2)?, f(3)?, f(4)?, f(5)?);
        let size = f(6)? as usize;
        let rdev = (f(9)?, f(10)?);
        let namesize = f(11)? as usize;
        let name_start = pos + HEADER_LEN;
        let name = data
            .get(name_start..name_start + namesize)
            .ok_or_else(|| format!("truncated name at offset {pos}"))?;
        let name = String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name)).into_owned();
        let data_start = (name_start + namesize).next_multiple_of(4);
        let content = data
            .get(data_start..data_start + size)
            .ok_or_else(|| format!("{name}: truncated data at offset {data_start}"))?;
        pos = (data_start + size).next_multiple_of(4);
        if name == "TRAILER!!!" {
            return Ok(pos.min(data.len()));
        }
        out.push(CpioEntry {
            name,
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            rdev,
            data: content.to_vec(),
        });
    }
}

fn describe(e: &CpioEntry) -> String {
    format!(
        "{}, mode {:o}, {}:{}, {} bytes",
        e.kind(),
        e.mode,
        e.uid,
        e.gid,
        e.data.len()
    )
}

pub(crate) fn diff(a: &Src, b: &Src, loc: &str, c: &mut Collector) -> Result<Structure, DiffError> {
    let (Some(x), Some(y)) = (a.load()?, b.load()?) else {
        return Ok(Structure::Unreadable("too large to load".into()));
    };
    let (ea, eb) = match (read_initrd(&x), read_initrd(&y)) {
        (Ok(p), Ok(q)) => (p, q),
        (Err(e), _) | (_, Err(e)) => return Ok(Structure::Unreadable(e)),
    };
    let loc = join(loc, "cpio");
    diff_entries(&ea, &eb, &loc, c)?;
    Ok(Structure::Parsed)
}

/// Keys entries by name; a name archived twice (concatenated archives) gets `#2`, `#3`, ….
fn keyed(entries: &[CpioEntry]) -> BTreeMap<String, &CpioEntry> {
    let mut m = BTreeMap::new();
    for e in entries {
        let mut key = e.name.clone();
        let mut n = 1;
        while m.contains_key(&key) {
            n += 1;
            key = format!("{}#{n}", e.name);
        }
        m.insert(key, e);
    }
    m
}

fn diff_entries(
    a: &[CpioEntry],
    b: &[CpioEntry],
    loc: &str,
    c: &mut Collector,
) -> Result<(), DiffError> {
    let (ma, mb) = (keyed(a), keyed(b));
    let mut names: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let eloc = join(loc, name);
        let (x, y) = match (ma.get(name), mb.get(name)) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) => {
                c.push(Difference::only(&eloc, Kind::Removed, describe(x)));
                continue;
            }
            (None, Some(y)) => {
                c.push(Difference::only(&eloc, Kind::Added, describe(y)));
                continue;
            }
            (None, None) => continue,
        };
        let mut d = Difference::changed(&eloc);
        d.field("type", x.kind(), y.kind());
        d.field("mode", format!("{:o}", x.mode), format!("{:o}", y.mode));
        d.field("uid", x.uid, y.uid);
        d.field("gid", x.gid, y.gid);
        d.field("nlink", x.nlink, y.nlink);
        d.field("ino", x.ino, y.ino);
        d.field("mtime", x.mtime, y.mtime);
        d.field("rdev", format!("{:?}", x.rdev), format!("{:?}", y.rdev));
        if x.mode & S_IFMT == S_IFLNK {
            d.field(
                "target",
                String::from_utf8_lossy(&x.data),
                String::from_utf8_lossy(&y.data),
            );
        } else {
            d.field("size", x.data.len(), y.data.len());
            d.content_offset = first_difference(&x.data, &y.data);
        }
        let nested = d.content_offset.is_some();
        c.push(d);
        if nested {
            let (bx, by) = (
                Blob::mem(name, x.data.clone()),
                Blob::mem(name, y.data.clone()),
            );
            let summary = super::byte_summary(&bx.whole(), &by.whole())?;
            super::diff_nested(&bx.whole(), &by.whole(), name, &eloc, c, summary)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::cpio::stub_extra_cpio;

    #[test]
    fn plain_and_zstd_concatenated_archives_read_back() {
        let first = stub_extra_cpio("a", b"one");
        let second = stub_extra_cpio("b", b"two");
        let mut data = first.clone();
        data.extend([0u8; 12]);
        data.extend(zstd::encode_all(&second[..], 3).unwrap());
        let entries = read_initrd(&data).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [".extra", ".extra/a", ".extra", ".extra/b"]);
        assert_eq!(entries[3].data, b"two");
        assert_eq!(keyed(&entries).len(), 4);
        assert!(read_initrd(&first[..first.len() - 8]).is_err());
        assert!(read_initrd(b"garbage").is_err());
    }
}

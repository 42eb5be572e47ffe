//! GCP's image import format: `disk.raw` in a gzip-compressed GNU tar, as
//! `tar --format=oldgnu -Sczf` (the seed's command, after `--mtime=@0`) writes it.
//!
//! The tar is one GNU "old" sparse member ('S'), then two zero blocks, padded to GNU tar's
//! 10 240-byte record. What we fix, and why:
//! - name `disk.raw` (the name GCP requires), mode 0644 (what the seed's file has under
//!   umask 022), uid/gid 0 and user/group names `root` (the seed runs tar as root and GNU
//!   tar stores the names unless `--numeric-owner`), mtime 0 (`--mtime=@0`), magic
//!   `ustar  \0`, no atime/ctime.
//! - the sparse map comes from the contents, not the file system: every 512-byte block that
//!   is all zero is a hole, runs of non-zero blocks are data. GNU tar asks the file system
//!   (`SEEK_DATA`), which depends on how the raw file happened to be written; ours does not.
//!   As GNU tar does, the map always ends with a zero-length entry at the end of the file.
//!   The first 4 entries sit in the header, the rest in extension blocks of 21 entries.
//!   Numbers are 11 octal digits and NUL, base-256 beyond.
//! - gzip: no file name, mtime 0, OS byte 3 (Unix, as `gzip -n` writes it), deflate level 6
//!   (gzip's default, which `tar -z` uses) from flate2's pure-Rust backend (miniz_oxide).
//!   The deflate stream depends on that backend: it is part of the pinned toolchain.
//!
//! A test checks that the uncompressed tar equals GNU tar's for a file whose holes are the
//! file system's holes, and that `tar -xSzf` gives back the raw disk.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;

use super::sink::for_each_chunk;
use crate::tarheader::{self as th, put_number, put_text, set_checksum};

const BLOCK: u64 = th::BLOCK as u64;
const RECORD: u64 = 10_240;
/// The deflate level.
pub const GZIP_LEVEL: u32 = 6;

/// Errors of the GCP writer.
#[derive(Debug, thiserror::Error)]
pub enum GcpError {
    #[error("cannot read the raw disk {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} changed while it was archived")]
    Changed { path: PathBuf },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One data run of the sparse map: `len` bytes at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// The sparse map of `path` (see the module docs) and its size.
pub fn sparse_map(path: &Path) -> Result<(Vec<Extent>, u64), GcpError> {
    let mut map: Vec<Extent> = Vec::new();
    let read_err = |source| GcpError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = for_each_chunk(path, 1 << 20, read_err, |off, data| {
        if super::sink::is_zero(data) {
            return Ok(());
        }
        for (i, block) in data.chunks(BLOCK as usize).enumerate() {
            if super::sink::is_zero(block) {
                continue;
            }
            let at = off + i as u64 * BLOCK;
            match map.last_mut() {
                Some(e) if e.offset + e.len == at => e.len += block.len() as u64,
                _ => map.push(Extent {
                    offset: at,
                    len: block.len() as u64,
                }),
            }
        }
        Ok(())
    })?;
    map.push(Extent {
        offset: size,
        len: 0,
    });
    Ok((map, size))
}

/// The header block and the sparse extension blocks of `disk.raw`.
pub fn headers(map: &[Extent], size: u64) -> Vec<u8> {
    let stored: u64 = map.iter().map(|e| e.len).sum();
    let mut h = [0u8; th::BLOCK];
    put_text(&mut h, th::NAME, b"disk.raw");
    put_number(&mut h[th::MODE], 0o644);
    put_number(&mut h[th::UID], 0);
    put_number(&mut h[th::GID], 0);
    put_number(&mut h[th::SIZE], stored);
    put_number(&mut h[th::MTIME], 0);
    h[th::TYPEFLAG] = b'S';
    put_text(&mut h, th::MAGIC_VERSION, b"ustar  \0");
    put_text(&mut h, th::UNAME, b"root");
    put_text(&mut h, th::GNAME, b"root");
    let put_entry = |block: &mut [u8], at: usize, e: &Extent| {
        put_number(&mut block[at..at + 12], e.offset);
        put_number(&mut block[at + 12..at + 24], e.len);
    };
    for (i, e) in map.iter().take(4).enumerate() {
        put_entry(&mut h, 386 + 24 * i, e);
    }
    let rest: Vec<&[Extent]> = if map.len() > 4 {
        map[4..].chunks(21).collect()
    } else {
        Vec::new()
    };
    h[482] = u8::from(!rest.is_empty());
    put_number(&mut h[483..495], size);
    set_checksum(&mut h);
    let mut out = h.to_vec();
    for (k, chunk) in rest.iter().enumerate() {
        let mut x = [0u8; th::BLOCK];
        for (i, e) in chunk.iter().enumerate() {
            put_entry(&mut x, 24 * i, e);
        }
        x[504] = u8::from(k + 1 < rest.len());
        out.extend_from_slice(&x);
    }
    out
}

/// Writes the uncompressed tar of `raw` (as `disk.raw`) to `out`.
pub fn write_import_tar<W: Write>(raw: &Path, out: &mut W) -> Result<u64, GcpError> {
    let (map, size) = sparse_map(raw)?;
    let write_err = |source| GcpError::Write {
        path: PathBuf::from("<tar stream>"),
        source,
    };
    let read_err = |source| GcpError::Read {
        path: raw.to_path_buf(),
        source,
    };
    let head = headers(&map, size);
    out.write_all(&head).map_err(write_err)?;
    let mut written = head.len() as u64;
    // Stream the data runs in order: one pass over the file, writing the blocks in a run.
    let mut next = map.iter().filter(|e| e.len > 0).peekable();
    let seen = for_each_chunk(raw, 1 << 20, read_err, |off, data| {
        let end = off + data.len() as u64;
        while let Some(e) = next.peek() {
            if e.offset >= end {
                break;
            }
            let from = e.offset.max(off);
            let to = (e.offset + e.len).min(end);
            out.write_all(&data[(from - off) as usize..(to - off) as usize])
                .map_err(write_err)?;
            written += to - from;
            if e.offset + e.len <= end {
                next.next();
            } else {
                break;
            }
        }
        Ok(())
    })?;
    if next.peek().is_some() || seen != size {
        return Err(GcpError::Changed {
            path: raw.to_path_buf(),
        });
    }
    // Pad the data to a block, add the two zero blocks that end the archive, and pad to
    // GNU tar's record size.
    let mut pad = th::padding(written) + 2 * BLOCK;
    pad += (RECORD - (written + pad) % RECORD) % RECORD;
    io::copy(&mut io::Read::take(io::repeat(0), pad), out).map_err(write_err)?;
    Ok(written + pad)
}

/// Writes `raw` as GCP's `<name>-import.tar.gz` at `out`.
pub fn write_import_tar_gz(raw: &Path, out: &Path) -> Result<(), GcpError> {
    let werr = |source| GcpError::Write {
        path: out.to_path_buf(),
        source,
    };
    let file = fs_err::File::create(out).map_err(werr)?;
    let mut gz = flate2::GzBuilder::new().mtime(0).operating_system(3).write(
        io::BufWriter::with_capacity(1 << 20, file),
        Compression::new(GZIP_LEVEL),
    );
    write_import_tar(raw, &mut gz).map_err(|e| match e {
        GcpError::Write { source, .. } => werr(source),
        other => other,
    })?;
    let buf = gz.finish().map_err(werr)?;
    let file = buf.into_inner().map_err(|e| werr(e.into_error()))?;
    file.sync_all().map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_matches_definition() {
        let map = [Extent {
            offset: 0,
            len: 512,
        }];
        let h = headers(&map, 4096);
        assert_eq!(h.len(), 512);
        let mut copy = h.clone();
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        assert_eq!(stored, sum);
        // 6 extents: 4 in the header, 2 in one extension block.
        let map: Vec<Extent> = (0..6)
            .map(|i| Extent {
                offset: i * 1024,
                len: 512,
            })
            .collect();
        let h = headers(&map, 8192);
        assert_eq!(h.len(), 1024);
        assert_eq!(h[482], 1);
        assert_eq!(h[512 + 504], 0);
        assert_eq!(&h[512..524], b"00000010000\0");
    }
}

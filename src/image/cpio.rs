//! initrd: cpio "newc" archives of a directory tree, and their zstd compression.
//!
//! The archive is a function of the tree's names, contents, modes, owners and clamped mtimes
//! only. Everything the file system or the host adds is removed:
//! - entries are sorted by their path bytes (a parent always sorts before its children);
//! - inode numbers are renumbered from 0 in that order (a hard-link group takes the number of
//!   its first member), as `cpio --reproducible` (`--renumber-inodes`) does;
//! - `nlink` is computed from the tree: 2 + subdirectories for a directory, the number of
//!   links inside the tree for a regular file, 1 otherwise (btrfs, overlayfs and friends do
//!   not agree on directory link counts);
//! - `dev` major/minor are 0 (`--ignore-devno`); `rdev` is kept for device nodes only;
//! - mtimes are clamped to `SOURCE_DATE_EPOCH`;
//! - hard links store their data once, on the LAST link of the group in path order, as GNU
//!   cpio does for newc; the other links have size 0. Linux's initramfs unpacker
//!   (`init/initramfs.c`, `maybe_link`) links later names to the first one and writes the
//!   data into the shared inode; GNU cpio and bsdcpio extract it the same way.
//! - the header hex digits are upper case and the archive is padded with zeros to a multiple
//!   of 512 bytes, as GNU `cpio -o -H newc --reproducible` writes them. For a tree without
//!   hard links whose mtimes are not after the epoch, our output is byte-identical to
//!   `find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z | cpio -o0 -H newc --reproducible`
//!   (a test checks it).
//!
//! File contents are streamed: only the list of names and metadata is held in memory.
//!
//! [`write_initrd_zstd`] compresses the archive with zstd at a fixed level in zstd's
//! multi-threaded mode. zstd's multi-threaded output depends on the level and the job size
//! (derived from the level), never on the number of workers, so the worker count is taken
//! from the host; a test checks that 1, 2 and 3 workers give the same bytes.
//!
//! [`stub_extra_cpio`] writes the tiny archive systemd-stub generates at boot for files it
//! passes to the kernel under `/.extra/` (lower-case hex, no 512-byte padding), which the
//! measured-boot prediction has to hash.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::treewalk::{IdMap, Order, WalkError, walk};

/// The zstd level [`InitrdOptions::default`] uses. 19 is zstd's highest level without
/// `--ultra`: its window (8 MiB) is well inside what the kernel's initramfs decompressor
/// accepts, and the image runs from memory, so a smaller initrd is less to load and hash.
pub const DEFAULT_ZSTD_LEVEL: i32 = 19;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

const TRAILER_NAME: &[u8] = b"TRAILER!!!";
const HEADER_LEN: usize = 110;

impl From<WalkError> for CpioError {
    fn from(WalkError { path, source }: WalkError) -> Self {
        CpioError::Read { path, source }
    }
}

/// Errors of the cpio and initrd writers.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// A file, directory or link of the tree could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The output could not be written.
    #[error("cannot write the cpio archive")]
    Write(#[source] io::Error),
    /// The file is too large for the newc format's 32-bit size field.
    #[error(
        "{path} is {size} bytes; a cpio newc archive holds files up to 4 GiB - 1\nhint: keep files this large out of the initrd"
    )]
    TooLarge { path: PathBuf, size: u64 },
    /// The file changed size while it was being archived.
    #[error(
        "{path} changed while it was archived (expected {expected} bytes)\nhint: nothing may write to the tree while the initrd is built"
    )]
    Changed { path: PathBuf, expected: u64 },
    /// The tree has more entries than 32-bit inode numbers can count.
    #[error("{root} has more than 2^32 entries")]
    TooManyEntries { root: PathBuf },
    /// The zstd encoder could not be set up.
    #[error("cannot set up the zstd encoder (level {level})")]
    Zstd {
        level: i32,
        #[source]
        source: io::Error,
    },
}

/// How the header's hexadecimal numbers are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HexCase {
    /// `0081A4`: GNU cpio.
    Upper,
    /// `0081a4`: the kernel's `gen_init_cpio` and systemd-stub.
    Lower,
}

/// Options of [`write_tree`].
#[derive(Clone, Debug)]
pub struct CpioOptions {
    /// Every mtime later than this (seconds since the Unix epoch) is replaced by it.
    pub source_date_epoch: u32,
    /// Translate the tree's host ids into the ids of the build sandbox that made it (see
    /// [`IdMap`]); `None` writes the ids as they are.
    pub id_map: Option<IdMap>,
}

/// Options of [`write_initrd_zstd`].
#[derive(Clone, Debug)]
pub struct InitrdOptions {
    /// The cpio options.
    pub cpio: CpioOptions,
    /// The zstd compression level.
    pub zstd_level: i32,
    /// Worker threads of zstd's multi-threaded mode (at least 1). Does not change the output.
    pub zstd_workers: u32,
}

impl InitrdOptions {
    /// The default level, and as many workers as the host has CPUs, at most 8 (each
    /// level-19 worker holds tens of MiB; more workers do not change the bytes).
    pub fn new(source_date_epoch: u32) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        InitrdOptions {
            cpio: CpioOptions {
                source_date_epoch,
                id_map: None,
            },
            zstd_level: DEFAULT_ZSTD_LEVEL,
            zstd_workers: u32::try_from(workers).unwrap_or(1).max(1),
        }
    }
}

/// What [`write_tree`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpioSummary {
    /// Entries written, the trailer not included.
    pub entries: u64,
    /// Bytes of file contents written (each hard-link group once).
    pub data_bytes: u64,
    /// Length of the uncompressed archive, padding included.
    pub archive_bytes: u64,
}

/// One header of a newc archive. Fields are as stored; `namesize` is derived from the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub filesize: u32,
    pub rdevmajor: u32,
    pub rdevminor: u32,
}

/// Writes newc records to `out`, counting bytes so records are 4-byte aligned.
pub struct NewcWriter<W: Write> {
    out: W,
    case: HexCase,
    written: u64,
}

impl<W: Write> NewcWriter<W> {
    /// A writer with the given hex spelling.
    pub fn new(out: W, case: HexCase) -> Self {
        NewcWriter {
            out,
            case,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes a header and its name (NUL-terminated, padded to 4 bytes). The caller then
    /// writes exactly `h.filesize` bytes with [`Self::write_data`] and calls [`Self::pad`].
    pub fn write_header(&mut self, h: &Header, name: &[u8]) -> io::Result<()> {
        let digits: &[u8; 16] = match self.case {
            HexCase::Upper => b"0123456789ABCDEF",
            HexCase::Lower => b"0123456789abcdef",
        };
        let namesize = u32::try_from(name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        let fields = [
            h.ino,
            h.mode,
            h.uid,
            h.gid,
            h.nlink,
            h.mtime,
            h.filesize,
            0,
            0,
            h.rdevmajor,
            h.rdevminor,
            namesize,
            0,
        ];
        let mut buf = [0u8; HEADER_LEN];
        buf[..6].copy_from_slice(b"070701");
        for (i, v) in fields.iter().enumerate() {
            for j in 0..8 {
                buf[6 + i * 8 + j] = digits[((v >> (28 - 4 * j)) & 0xf) as usize];
            }
        }
        self.out.write_all(&buf)?;
        self.out.write_all(name)?;
        self.out.write_all(&[0])?;
        self.written += (HEADER_LEN + name.len() + 1) as u64;
        self.pad()
    }

    /// Writes file data.
    pub fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Pads with zeros to the next multiple of 4.
    pub fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..n])?;
        self.written += n as u64;
        Ok(())
    }

    /// Writes the `TRAILER!!!` record (ino 0, mode 0, nlink 1).
    pub fn write_trailer(&mut self) -> io::Result<()> {
        let h = Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdevmajor: 0,
            rdevminor: 0,
        };
        self.write_header(&h, TRAILER_NAME)
    }

    /// Pads with zeros to a multiple of `block` bytes.
    pub fn pad_to_block(&mut self, block: u64) -> io::Result<()> {
        let n = (block - self.written % block) % block;
        io::copy(&mut io::repeat(0).take(n), &mut self.out)?;
        self.written += n;
        Ok(())
    }

    /// The inner writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// An entry of an in-memory archive, for [`write_entries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemEntry {
    pub name: Vec<u8>,
    pub header: Header,
    pub data: Vec<u8>,
}

/// Writes `entries` as given (no sorting, no renumbering), then the trailer; pads the whole
/// archive to a multiple of 4 bytes only. `header.filesize` is taken from `data`.
pub fn write_entries(entries: &[MemEntry], case: HexCase) -> Vec<u8> {
    let mut w = NewcWriter::new(Vec::new(), case);
    for e in entries {
        let mut h = e.header.clone();
        h.filesize = u32::try_from(e.data.len()).expect("in-memory cpio entries are small");
        // Writing into a Vec cannot fail.
        w.write_header(&h, &e.name).expect("write to Vec");
        w.write_data(&e.data).expect("write to Vec");
        w.pad().expect("write to Vec");
    }
    w.write_trailer().expect("write to Vec");
    w.into_inner()
}

/// The archive systemd-stub generates to pass one file to the kernel as `/.extra/<name>`:
/// directory `.extra` (mode 040555, inode 1), file `.extra/<name>` (mode 0100444, inode 2),
/// owners, mtimes and device numbers 0, nlink 1, lower-case hex, then the stub's literal
/// trailer, whose name size is spelled `0000000B` in UPPER case (as in the trixie stub
/// binary: `src/boot/cpio.c` writes the trailer from a string constant).
pub fn stub_extra_cpio(name: &str, data: &[u8]) -> Vec<u8> {
    let header = |ino, mode, filesize| Header {
        ino,
        mode,
        uid: 0,
        gid: 0,
        nlink: 1,
        mtime: 0,
        filesize,
        rdevmajor: 0,
        rdevminor: 0,
    };
    let filesize = u32::try_from(data.len()).expect("UKI sections are smaller than 4 GiB");
    let mut w = NewcWriter::new(Vec::new(), HexCase::Lower);
    // Writing into a Vec cannot fail.
    w.write_header(&header(1, S_IFDIR | 0o555, 0), b".extra")
        .expect("write to Vec");
    w.write_header(
        &header(2, S_IFREG | 0o444, filesize),
        format!(".extra/{name}").as_bytes(),
    )
    .expect("write to Vec");
    w.write_data(data).expect("write to Vec");
    w.pad().expect("write to Vec");
    let mut out = w.into_inner();
    out.extend_from_slice(STUB_TRAILER);
    out
}

/// systemd-stub's trailer record: 110 header bytes (name size `0000000B`), `TRAILER!!!` and
/// four NULs.
pub const STUB_TRAILER: &[u8; 124] = b"070701\
00000000000000000000000000000000000000010000000000000000000000000000000000000000000000000000000B00000000\
TRAILER!!!\0\0\0\0";

/// Linux's `major()` of a `dev_t`.
pub fn dev_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}

/// Linux's `minor()` of a `dev_t`.
pub fn dev_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

/// Writes the tree below `root` (root itself not included: the kernel's rootfs provides
/// `/`) as a newc archive to `out`, padded to 512 bytes. See the module docs for every
/// field.
pub fn write_tree<W: Write>(
    root: &Path,
    out: W,
    opts: &CpioOptions,
) -> Result<CpioSummary, CpioError> {
    let entries = walk(root, false, Order::Bytes)?;

    // Link counts from the tree: subdirectories per directory, links per (dev, ino) group.
    let mut subdirs: HashMap<&[u8], u32> = HashMap::new();
    let mut groups: HashMap<(u64, u64), (u32, usize)> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.meta.is_dir() {
            let parent = match e.rel.iter().rposition(|&b| b == b'/') {
                Some(p) => &e.rel[..p],
                None => &[][..],
            };
            *subdirs.entry(parent).or_default() += 1;
        } else if e.meta.is_file() && e.meta.nlink() > 1 {
            let g = groups.entry((e.meta.dev(), e.meta.ino())).or_insert((0, i));
            g.0 += 1;
            g.1 = i; // the last member in path order carries the data
        }
    }

    let mut w = NewcWriter::new(io::BufWriter::with_capacity(1 << 20, out), HexCase::Upper);
    let mut summary = CpioSummary::default();
    let mut group_ino: HashMap<(u64, u64), u32> = HashMap::new();
    let mut next_ino: u32 = 0;
    let mut buf = vec![0u8; 1 << 20];
    for (i, e) in entries.iter().enumerate() {
        let m = &e.meta;
        let path = e.path(root);
        let mode = m.mode();
        let kind = mode & S_IFMT;
        let key = (m.dev(), m.ino());
        let group = if kind == S_IFREG {
            groups.get(&key).copied()
        } else {
            None
        };
        let ino = match group {
            Some(_) => *group_ino.entry(key).or_insert_with(|| {
                let n = next_ino;
                next_ino = next_ino.wrapping_add(1);
                n
            }),
            None => {
                let n = next_ino;
                next_ino = next_ino.wrapping_add(1);
                n
            }
        };
        if i > 0 && next_ino == 0 {
            return Err(CpioError::TooManyEntries {
                root: root.to_path_buf(),
            });
        }
        let nlink = match kind {
            S_IFDIR => 2 + subdirs.get(e.rel.as_slice()).copied().unwrap_or(0),
            S_IFREG => group.map_or(1, |g| g.0),
            _ => 1,
        };
        let (rdevmajor, rdevminor) = if kind == S_IFCHR || kind == S_IFBLK {
            (dev_major(m.rdev()), dev_minor(m.rdev()))
        } else {
            (0, 0)
        };
        let epoch = opts.source_date_epoch;
        let mtime = u32::try_from(e.clamped_mtime(epoch.into())).unwrap_or(epoch);
        let link_target;
        let (size, inline): (u64, Option<&[u8]>) = match kind {
            S_IFREG if group.is_none_or(|g| g.1 == i) => (m.len(), None),
            S_IFLNK => {
                link_target = e.link_target(&path)?;
                let t = link_target.as_os_str().as_bytes();
                (t.len() as u64, Some(t))
            }
            _ => (0, None),
        };
        let filesize = u32::try_from(size).map_err(|_| CpioError::TooLarge {
            path: path.clone(),
            size,
        })?;
        let (uid, gid) = e.ids(opts.id_map);
        let header = Header {
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            filesize,
            rdevmajor,
            rdevminor,
        };
        w.write_header(&header, &e.rel).map_err(CpioError::Write)?;
        match inline {
            Some(bytes) => w.write_data(bytes).map_err(CpioError::Write)?,
            None if size > 0 => copy_file(&path, size, &mut w, &mut buf)?,
            None => {}
        }
        w.pad().map_err(CpioError::Write)?;
        summary.entries += 1;
        summary.data_bytes += size;
    }
    w.write_trailer().map_err(CpioError::Write)?;
    w.pad_to_block(512).map_err(CpioError::Write)?;
    summary.archive_bytes = w.written();
    w.into_inner()
        .into_inner()
        .map_err(|e| CpioError::Write(e.into_error()))?
        .flush()
        .map_err(CpioError::Write)?;
    Ok(summary)
}

/// Copies exactly `size` bytes of `path` into the archive; the file must not have grown or
/// shrunk since it was scanned.
fn copy_file<W: Write>(
    path: &Path,
    size: u64,
    w: &mut NewcWriter<W>,
    buf: &mut [u8],
) -> Result<(), CpioError> {
    let read_err = |source| CpioError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs_err::File::open(path).map_err(read_err)?;
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f.read(&mut buf[..want]).map_err(read_err)?;
        if n == 0 {
            return Err(CpioError::Changed {
                path: path.to_path_buf(),
                expected: size,
            });
        }
        w.write_data(&buf[..n]).map_err(CpioError::Write)?;
        left -= n as u64;
    }
    if f.read(&mut buf[..1]).map_err(read_err)? != 0 {
        return Err(CpioError::Changed {
            path: path.to_path_buf(),
            expected: size,
        });
    }
    Ok(())
}

/// Writes the tree as a zstd-compressed newc archive: one zstd frame, with a content
/// checksum, at `opts.zstd_level`, in multi-threaded mode with `opts.zstd_workers` workers.
///
/// A separate thread reads the tree and produces the archive while this one feeds the
/// compressor, so reading files overlaps with waiting for zstd's workers. The bytes are the
/// same as compressing [`write_tree`]'s output.
pub fn write_initrd_zstd<W: Write>(
    root: &Path,
    out: W,
    opts: &InitrdOptions,
) -> Result<CpioSummary, CpioError> {
    let level = opts.zstd_level;
    let zerr = |source| CpioError::Zstd { level, source };
    let mut enc = zstd::stream::write::Encoder::new(out, level).map_err(zerr)?;
    enc.multithread(opts.zstd_workers.max(1)).map_err(zerr)?;
    enc.include_checksum(true).map_err(zerr)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let (summary, compressed) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            let sink = ChannelWriter {
                tx,
                buf: Vec::with_capacity(CHANNEL_CHUNK),
            };
            write_tree(root, sink, &opts.cpio)
        });
        let mut compressed = Ok(());
        for chunk in rx.iter() {
            if let Err(e) = enc.write_all(&chunk) {
                compressed = Err(CpioError::Write(e));
                break;
            }
        }
        // Dropping the receiver (on error) makes the producer stop with a broken pipe.
        drop(rx);
        let summary = producer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (summary, compressed)
    });
    // The compressor's error explains the producer's broken pipe: report it first.
    compressed?;
    let summary = summary?;
    enc.finish()
        .map_err(CpioError::Write)?
        .flush()
        .map_err(CpioError::Write)?;
    Ok(summary)
}

const CHANNEL_CHUNK: usize = 1 << 20;

/// Sends what is written in chunks of [`CHANNEL_CHUNK`] bytes to the compressing thread.
struct ChannelWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHANNEL_CHUNK));
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the compressor stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHANNEL_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHANNEL_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_cpio_layout() {
        let a = stub_extra_cpio("x.json", b"abc");
        // dir: 110 + ".extra\0" (7) = 117 -> 120; file: 110 + 14 = 124, + 3 data -> 128; trailer 124
        assert_eq!(a.len(), 120 + 128 + 124);
        assert_eq!(&a[..14], b"07070100000001");
        assert_eq!(&a[14..22], b"0000416d");
        assert_eq!(&a[120 + 14..120 + 22], b"00008124");
        assert_eq!(&a[120 + 110..120 + 124], b".extra/x.json\0");
        assert_eq!(&a[120 + 124..120 + 127], b"abc");
        let t = &a[a.len() - 124..];
        assert_eq!(
            &t[..54],
            b"070701000000000000000000000000000000000000000100000000"
        );
        assert_eq!(&t[94..], b"0000000B00000000TRAILER!!!\0\0\0\0".as_slice());
        assert_eq!(a.len() % 4, 0);
    }

    /// glibc's `makedev`.
    fn makedev(major: u64, minor: u64) -> u64 {
        ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
    }

    #[test]
    fn dev_numbers_split_like_glibc() {
        assert_eq!(makedev(8, 1), 0x801);
        for (major, minor) in [(8, 1), (259, 70000), (4101, 3), (0, 0)] {
            let dev = makedev(major, minor);
            assert_eq!(
                (dev_major(dev), dev_minor(dev)),
                (major as u32, minor as u32)
            );
        }
    }

    #[test]
    fn in_memory_entries_then_trailer() {
        let e = MemEntry {
            name: b"init".to_vec(),
            header: Header {
                ino: 7,
                mode: S_IFLNK | 0o777,
                uid: 0,
                gid: 0,
                nlink: 1,
                mtime: 0,
                filesize: 999, // replaced by the data's length
                rdevmajor: 0,
                rdevminor: 0,
            },
            data: b"/usr/lib/systemd/systemd".to_vec(),
        };
        let a = write_entries(&[e], HexCase::Lower);
        // 110 + "init\0" = 115 -> 116, + 24 data = 140, trailer 124
        assert_eq!(a.len(), 140 + 124);
        assert_eq!(&a[6..22], b"000000070000a1ff");
        assert_eq!(&a[54..62], b"00000018");
        assert_eq!(&a[116..140], b"/usr/lib/systemd/systemd");
        assert_eq!(&a[140 + 94..140 + 102], b"0000000b");
    }

    #[test]
    fn headers_are_hex_and_aligned() {
        let mut w = NewcWriter::new(Vec::new(), HexCase::Upper);
        let h = Header {
            ino: 0xabc,
            mode: 0o100644,
            uid: 1,
            gid: 2,
            nlink: 1,
            mtime: 0xdeadbeef,
            filesize: 1,
            rdevmajor: 0,
            rdevminor: 0,
        };
        w.write_header(&h, b"ab").unwrap();
        assert_eq!(w.written(), 116);
        let v = w.into_inner();
        assert_eq!(&v[..30], b"07070100000ABC000081A400000001");
        assert_eq!(&v[46..54], b"DEADBEEF");
        assert_eq!(&v[94..102], b"00000003");
    }
}

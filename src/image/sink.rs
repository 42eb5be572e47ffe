//! Where the image writers put bytes: a [`Sink`] written at offsets, whose unwritten parts
//! read as zeros, and the chunked, hole-keeping copy of disks. Shared by the GPT, FAT, VHD,
//! qcow2 writers and the disk assembly, which none of them import.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// 1 MiB.
pub const MIB: u64 = 1 << 20;

/// A destination that bytes are written into at offsets; what is never written reads as
/// zeros (a file with holes, or a zero-filled buffer).
pub trait Sink {
    /// Writes `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
}

impl Sink for Vec<u8> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let end = start + data.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(data);
        Ok(())
    }
}

/// A window of a file starting at `base`: offsets are relative to it.
pub struct FileSink<'a> {
    file: &'a std::fs::File,
    base: u64,
}

impl<'a> FileSink<'a> {
    /// Writes into `file` at `base + offset`.
    pub fn new(file: &'a std::fs::File, base: u64) -> Self {
        FileSink { file, base }
    }
}

impl Sink for FileSink<'_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, self.base + offset)
    }
}

/// Reads `path` in chunks of `chunk` bytes (the last one may be shorter), calling `f` with
/// each chunk's offset and bytes; read errors go through `read_err`. Returns the length
/// read. Used to copy disks while keeping their holes: a hole reads as zeros, and the
/// writers skip chunks that are all zero.
pub fn for_each_chunk<E>(
    path: &Path,
    chunk: usize,
    read_err: impl Fn(io::Error) -> E,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    use std::io::Read;
    let mut file = fs_err::File::open(path).map_err(&read_err)?;
    let mut buf = vec![0u8; chunk];
    let mut offset = 0u64;
    loop {
        let mut filled = 0;
        while filled < chunk {
            let n = file.read(&mut buf[filled..]).map_err(&read_err)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled > 0 {
            f(offset, &buf[..filled])?;
            offset += filled as u64;
        }
        if filled < chunk {
            return Ok(offset);
        }
    }
}

/// Whether every byte of `data` is zero.
pub fn is_zero(data: &[u8]) -> bool {
    // Slice equality on bytes is a `memcmp`, fast even in unoptimised builds: this runs over
    // every byte of every disk we convert.
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    data.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

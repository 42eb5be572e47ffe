//! `hermetic diff`: why two images (or any two files) are not the same bytes.
//!
//! [`diff_paths`] reads both files, recognises what they are and recurses into the formats
//! hermetic writes, the way diffoscope does, but natively:
//! - PE / Unified Kernel Images ([`pe`]): header fields, the section table, then each section:
//!   `.linux` as a kernel, `.initrd` as an initrd, `.cmdline`, `.osrel`, `.uname`, `.sbat`
//!   as text;
//! - initrds ([`cpio`]): zstd, xz or gzip compressed or plain, possibly concatenated, newc
//!   cpio archives, compared entry by entry;
//! - tar archives, plain or gzip compressed ([`tar`]), such as GCP's `-import.tar.gz`,
//!   compared entry by entry, recursing into the entries that differ (`disk.raw`);
//! - disks ([`disk`]): raw GPT disks, fixed VHDs (a raw disk and a footer), qcow2 images;
//!   the GPT header and partition entries, then each partition, FAT ones as file systems;
//! - FAT file systems ([`fat`]): the boot sector, then every file and directory with its
//!   attributes, size, timestamps and content;
//! - kernel `.config` files ([`kconfig`]): option by option.
//!
//! Anything else is handed to `diffoscope` when it is installed, or summarised byte by byte.
//! A structure that parses the same on both sides but whose bytes still differ (another
//! compression, padding, a header field nobody compares) is summarised byte by byte too, so
//! a report is never empty for files that differ.
//!
//! Every difference is named by a location, the chain of containers down to the entry,
//! joined by `:`: `efi:.initrd:cpio:usr/lib/os-release` is the file `usr/lib/os-release` of
//! the cpio archive in the `.initrd` section of the EFI image.

use std::fmt::{self, Write as _};
use std::io::{self, Read};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod cpio;
pub mod disk;
pub mod fat;
pub mod kconfig;
pub mod pe;
pub mod tar;
pub mod text;

/// The number of differences a report lists by default (`--max`).
pub const DEFAULT_MAX: usize = 50;

/// Decompressed data larger than this is not held in memory (a hostile input must not
/// exhaust it); such a container is compared byte by byte instead.
pub const MAX_IN_MEMORY: u64 = 4 << 30;

/// Errors of `hermetic diff`: only the inputs themselves failing to read. A container that
/// does not parse is not an error: it is reported and compared byte by byte.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// An input could not be opened.
    #[error(
        "cannot open {path}\nhint: give the paths of two files (images, archives, .config files)"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An input is a directory or a special file.
    #[error("{path} is not a regular file\nhint: `hermetic diff` compares two files")]
    NotAFile { path: PathBuf },
    /// An input (or an entry extracted from it) could not be read.
    #[error("cannot read {name}")]
    Read {
        name: String,
        #[source]
        source: io::Error,
    },
    /// A scratch file for an extracted entry could not be made.
    #[error(
        "cannot write a scratch file for {name}\nhint: set TMPDIR to a directory with free space"
    )]
    Scratch {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Options of [`diff_paths`].
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// List at most this many differences; the rest are only counted.
    pub max: usize,
    /// Run `diffoscope` (when installed) on pairs of files of a format we do not know.
    pub diffoscope: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            max: DEFAULT_MAX,
            diffoscope: true,
        }
    }
}

/// What a difference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// In both, different.
    Changed,
}

/// One field that differs: its value in A and in B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: String,
    pub a: String,
    pub b: String,
}

/// One differing entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Where: the containers down to the entry, joined by `:`.
    pub location: String,
    pub kind: Kind,
    /// The metadata fields that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// The first offset at which the contents differ (when both have content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_offset: Option<u64>,
    /// A short description (what an added entry is, how many bytes differ, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A line diff (`-` A, `+` B) or the output of diffoscope.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

impl Difference {
    /// A difference at `location` with nothing in it yet.
    pub fn changed(location: &str) -> Self {
        Difference {
            location: location.to_string(),
            kind: Kind::Changed,
            changes: Vec::new(),
            content_offset: None,
            note: None,
            lines: Vec::new(),
        }
    }

    /// An entry only in B (`Added`) or only in A (`Removed`), described by `what`.
    pub fn only(location: &str, kind: Kind, what: String) -> Self {
        Difference {
            kind,
            note: Some(what),
            ..Difference::changed(location)
        }
    }

    /// Adds a change of `field` when `a != b`.
    pub fn field(&mut self, field: &str, a: impl fmt::Display, b: impl fmt::Display) {
        let (a, b) = (a.to_string(), b.to_string());
        if a != b {
            self.changes.push(Change {
                field: field.to_string(),
                a,
                b,
            });
        }
    }

    /// True when nothing was found to differ.
    pub fn is_empty(&self) -> bool {
        self.kind == Kind::Changed
            && self.changes.is_empty()
            && self.content_offset.is_none()
            && self.note.is_none()
            && self.lines.is_empty()
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = if self.location.is_empty() {
            "(file)"
        } else {
            &self.location
        };
        let mut parts: Vec<String> = Vec::new();
        match self.kind {
            Kind::Added => parts.push("only in B".into()),
            Kind::Removed => parts.push("only in A".into()),
            Kind::Changed => {}
        }
        for c in &self.changes {
            parts.push(format!("{} {} → {}", c.field, c.a, c.b));
        }
        if let Some(off) = self.content_offset {
            parts.push(format!("content differs from offset {off}"));
        }
        let mut head = parts.join(", ");
        if let Some(note) = &self.note {
            if head.is_empty() {
                head = note.clone();
            } else {
                head = format!("{head}: {note}");
            }
        }
        write!(f, "{location}  {head}")?;
        for line in &self.lines {
            write!(f, "\n    {line}")?;
        }
        Ok(())
    }
}

/// The result of [`diff_paths`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffReport {
    pub a: PathBuf,
    pub b: PathBuf,
    /// The first differences found, in the order of the files (at most `max`).
    pub differences: Vec<Difference>,
    /// How many more differences were found but not listed.
    pub omitted: usize,
}

impl DiffReport {
    /// True when the two files are identical.
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty() && self.omitted == 0
    }

    /// The report as text (the same as its `Display`).
    pub fn render(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(
                f,
                "{} and {} are identical",
                self.a.display(),
                self.b.display()
            );
        }
        let total = self.differences.len() + self.omitted;
        writeln!(
            f,
            "{} and {} differ ({} difference{}):",
            self.a.display(),
            self.b.display(),
            total,
            if total == 1 { "" } else { "s" }
        )?;
        for d in &self.differences {
            writeln!(f, "{d}")?;
        }
        if self.omitted > 0 {
            writeln!(
                f,
                "… and {} more difference{} (raise --max to list them)",
                self.omitted,
                if self.omitted == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

/// Compares the files `a` and `b` and explains how they differ.
pub fn diff_paths(a: &Path, b: &Path, opts: &DiffOptions) -> Result<DiffReport, DiffError> {
    let blob_a = Blob::open(a)?;
    let blob_b = Blob::open(b)?;
    let mut c = Collector::new(opts);
    let name = a
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    diff_blobs(&blob_a.whole(), &blob_b.whole(), &name, "", &mut c)?;
    Ok(DiffReport {
        a: a.to_path_buf(),
        b: b.to_path_buf(),
        differences: c.differences,
        omitted: c.omitted,
    })
}

/// Collects differences: keeps the first `max`, counts the rest.
pub(crate) struct Collector {
    max: usize,
    differences: Vec<Difference>,
    omitted: usize,
    diffoscope: bool,
}

impl Collector {
    fn new(opts: &DiffOptions) -> Self {
        Collector {
            max: opts.max,
            differences: Vec::new(),
            omitted: 0,
            diffoscope: opts.diffoscope,
        }
    }

    /// Records `d` unless it is empty.
    pub(crate) fn push(&mut self, d: Difference) {
        if d.is_empty() {
            return;
        }
        if self.differences.len() < self.max {
            self.differences.push(d);
        } else {
            self.omitted += 1;
        }
    }

    /// How many differences were found so far.
    pub(crate) fn count(&self) -> usize {
        self.differences.len() + self.omitted
    }
}

/// `parent:child`, or `child` at the top.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else if child.is_empty() {
        parent.to_string()
    } else {
        format!("{parent}:{child}")
    }
}

/// Bytes to compare: in memory, or a file read on demand (disks are too large to load).
pub(crate) enum Blob {
    Mem {
        name: String,
        data: Vec<u8>,
    },
    File {
        name: String,
        file: std::fs::File,
        /// The path, for an input the user named (not a scratch file).
        path: Option<PathBuf>,
    },
}

impl Blob {
    fn open(path: &Path) -> Result<Blob, DiffError> {
        let file = fs_err::File::open(path).map_err(|source| DiffError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let meta = file.metadata().map_err(|source| DiffError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_file() {
            return Err(DiffError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        Ok(Blob::File {
            name: path.display().to_string(),
            file: file.into_parts().0,
            path: Some(path.to_path_buf()),
        })
    }

    pub(crate) fn mem(name: &str, data: Vec<u8>) -> Blob {
        Blob::Mem {
            name: name.to_string(),
            data,
        }
    }

    pub(crate) fn file(name: &str, file: std::fs::File) -> Blob {
        Blob::File {
            name: name.to_string(),
            file,
            path: None,
        }
    }

    fn name(&self) -> &str {
        match self {
            Blob::Mem { name, .. } | Blob::File { name, .. } => name,
        }
    }

    /// All of it.
    pub(crate) fn whole(&self) -> Src<'_> {
        let len = match self {
            Blob::Mem { data, .. } => data.len() as u64,
            Blob::File { file, .. } => file.metadata().map(|m| m.len()).unwrap_or(0),
        };
        Src {
            blob: self,
            off: 0,
            len,
        }
    }
}

/// A byte range of a [`Blob`].
#[derive(Clone, Copy)]
pub(crate) struct Src<'a> {
    blob: &'a Blob,
    off: u64,
    pub(crate) len: u64,
}

impl<'a> Src<'a> {
    /// The name used in error messages.
    pub(crate) fn name(&self) -> &str {
        self.blob.name()
    }

    fn read_error(&self, source: io::Error) -> DiffError {
        DiffError::Read {
            name: self.name().to_string(),
            source,
        }
    }

    /// `len` bytes from `pos`, cut at the end.
    pub(crate) fn read(&self, pos: u64, len: usize) -> Result<Vec<u8>, DiffError> {
        if pos >= self.len {
            return Ok(Vec::new());
        }
        let len = len.min((self.len - pos) as usize);
        match self.blob {
            Blob::Mem { data, .. } => {
                let start = (self.off + pos) as usize;
                Ok(data[start..start + len].to_vec())
            }
            Blob::File { file, .. } => {
                let mut buf = vec![0; len];
                file.read_exact_at(&mut buf, self.off + pos)
                    .map_err(|e| self.read_error(e))?;
                Ok(buf)
            }
        }
    }

    /// The sub-range `pos..pos + len`, cut at the end.
    pub(crate) fn slice(&self, pos: u64, len: u64) -> Src<'a> {
        let pos = pos.min(self.len);
        Src {
            blob: self.blob,
            off: self.off + pos,
            len: len.min(self.len - pos),
        }
    }

    /// All of it in memory, or `None` when it is larger than [`MAX_IN_MEMORY`].
    pub(crate) fn load(&self) -> Result<Option<Vec<u8>>, DiffError> {
        if self.len > MAX_IN_MEMORY {
            return Ok(None);
        }
        self.read(0, self.len as usize).map(Some)
    }

    /// The path of the file it is all of, when the user named that file.
    fn user_path(&self) -> Option<&Path> {
        match self.blob {
            Blob::File {
                path: Some(path), ..
            } if self.off == 0 => Some(path),
            _ => None,
        }
    }

    /// A reader from the start.
    pub(crate) fn reader(&self) -> SrcReader<'a> {
        SrcReader { src: *self, pos: 0 }
    }
}

/// [`Read`] over a [`Src`].
pub(crate) struct SrcReader<'a> {
    src: Src<'a>,
    pos: u64,
}

impl Read for SrcReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(self.src.len.saturating_sub(self.pos) as usize);
        if n == 0 {
            return Ok(0);
        }
        match self.src.blob {
            Blob::Mem { data, .. } => {
                let start = (self.src.off + self.pos) as usize;
                buf[..n].copy_from_slice(&data[start..start + n]);
            }
            Blob::File { file, .. } => {
                file.read_exact_at(&mut buf[..n], self.src.off + self.pos)?
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

const CHUNK: usize = 1 << 20;

/// How two byte ranges differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSummary {
    pub first: Option<u64>,
    /// Differing bytes over the common length.
    pub differing: u64,
    pub len_a: u64,
    pub len_b: u64,
}

/// Compares two ranges chunk by chunk.
pub(crate) fn byte_summary(a: &Src, b: &Src) -> Result<ByteSummary, DiffError> {
    let common = a.len.min(b.len);
    let mut first = None;
    let mut differing = 0u64;
    let mut pos = 0u64;
    while pos < common {
        let n = CHUNK.min((common - pos) as usize);
        let x = a.read(pos, n)?;
        let y = b.read(pos, n)?;
        if x != y {
            for (i, (p, q)) in x.iter().zip(&y).enumerate() {
                if p != q {
                    first.get_or_insert(pos + i as u64);
                    differing += 1;
                }
            }
        }
        pos += n as u64;
    }
    if first.is_none() && a.len != b.len {
        first = Some(common);
    }
    Ok(ByteSummary {
        first,
        differing,
        len_a: a.len,
        len_b: b.len,
    })
}

/// The first offset at which two byte strings differ (`None` when equal).
pub(crate) fn first_difference(a: &[u8], b: &[u8]) -> Option<u64> {
    if a == b {
        return None;
    }
    let i = a.iter().zip(b).position(|(x, y)| x != y);
    Some(i.unwrap_or(a.len().min(b.len())) as u64)
}

/// A byte-level difference: sizes, first differing offset, differing byte count.
pub(crate) fn byte_difference(location: &str, s: &ByteSummary, what: Option<&str>) -> Difference {
    let mut d = Difference::changed(location);
    d.field("size", s.len_a, s.len_b);
    d.content_offset = s.first;
    let mut note = format!("{} byte(s) differ", s.differing);
    if s.len_a != s.len_b {
        let _ = write!(note, " over the common {} bytes", s.len_a.min(s.len_b));
    }
    if let Some(what) = what {
        note = format!("{note} ({what})");
    }
    d.note = Some(note);
    d
}

/// What a byte range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Pe,
    /// A cpio archive or an initrd (possibly compressed, possibly several concatenated).
    Initrd,
    Tar,
    TarGz,
    Disk,
    Vhd,
    Qcow2,
    Fat,
    KernelConfig,
    /// gzip, zstd or xz around something else.
    Compressed,
    Unknown,
}

impl Format {
    fn describe(self) -> &'static str {
        match self {
            Format::Pe => "PE/EFI image",
            Format::Initrd => "cpio archive / initrd",
            Format::Tar => "tar archive",
            Format::TarGz => "gzip-compressed tar archive",
            Format::Disk => "GPT disk",
            Format::Vhd => "fixed VHD",
            Format::Qcow2 => "qcow2 image",
            Format::Fat => "FAT file system",
            Format::KernelConfig => "kernel .config",
            Format::Compressed => "compressed data",
            Format::Unknown => "data",
        }
    }
}

pub(crate) const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
pub(crate) const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
pub(crate) const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];

/// A decompressing reader for data starting with a gzip, zstd or xz magic.
pub(crate) fn decompressor<'r>(head: &[u8], r: impl Read + 'r) -> Option<Box<dyn Read + 'r>> {
    if head.starts_with(GZIP_MAGIC) {
        Some(Box::new(flate2::read::MultiGzDecoder::new(r)))
    } else if head.starts_with(ZSTD_MAGIC) {
        zstd::stream::read::Decoder::new(r)
            .ok()
            .map(|d| Box::new(d) as Box<dyn Read>)
    } else if head.starts_with(XZ_MAGIC) {
        Some(Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)))
    } else {
        None
    }
}

fn is_kconfig_name(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base == ".config"
        || base == "config"
        || base.ends_with(".config")
        || base.starts_with("config-")
}

/// Recognises a byte range by its magic numbers (and, for kernel configs, its name).
pub(crate) fn detect(src: &Src, name: &str) -> Result<Format, DiffError> {
    let head = src.read(0, 4096)?;
    if head.len() >= 0x40 && head.starts_with(b"MZ") {
        let lfanew = u32::from_le_bytes(head[0x3c..0x40].try_into().unwrap_or_default()) as u64;
        if src.read(lfanew, 4)? == b"PE\0\0" {
            return Ok(Format::Pe);
        }
    }
    if head.starts_with(b"070701") || head.starts_with(b"070702") {
        return Ok(Format::Initrd);
    }
    if head.starts_with(b"QFI\xfb") {
        return Ok(Format::Qcow2);
    }
    if head.get(257..262) == Some(b"ustar") {
        return Ok(Format::Tar);
    }
    if head.get(512..520) == Some(b"EFI PART") {
        let tail = src.read(src.len.saturating_sub(512), 8)?;
        if src.len > 512 && tail == b"conectix" {
            return Ok(Format::Vhd);
        }
        return Ok(Format::Disk);
    }
    if fat::looks_like_fat(&head) {
        return Ok(Format::Fat);
    }
    if let Some(mut r) = decompressor(&head, src.reader()) {
        let mut inner = vec![0u8; 512];
        let mut got = 0;
        while got < inner.len() {
            match r.read(&mut inner[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        inner.truncate(got);
        if inner.get(257..262) == Some(b"ustar") && head.starts_with(GZIP_MAGIC) {
            return Ok(Format::TarGz);
        }
        if inner.starts_with(b"070701") || inner.starts_with(b"070702") {
            return Ok(Format::Initrd);
        }
        return Ok(Format::Compressed);
    }
    if is_kconfig_name(name) && std::str::from_utf8(&head).is_ok() {
        return Ok(Format::KernelConfig);
    }
    if head.starts_with(b"#\n# Automatically generated file; DO NOT EDIT.") {
        return Ok(Format::KernelConfig);
    }
    Ok(Format::Unknown)
}

/// Compares `a` and `b` (found as `name`) at `loc`, recursing into the formats we know.
pub(crate) fn diff_blobs(
    a: &Src,
    b: &Src,
    name: &str,
    loc: &str,
    c: &mut Collector,
) -> Result<(), DiffError> {
    let summary = byte_summary(a, b)?;
    diff_summarised(a, b, name, loc, c, summary)
}

/// [`diff_blobs`] of two ranges whose byte summary is already known.
fn diff_summarised(
    a: &Src,
    b: &Src,
    name: &str,
    loc: &str,
    c: &mut Collector,
    summary: ByteSummary,
) -> Result<(), DiffError> {
    if summary.first.is_none() {
        return Ok(());
    }
    let fa = detect(a, name)?;
    let fb = detect(b, name)?;
    if fa != fb {
        let mut d = byte_difference(loc, &summary, None);
        d.field("format", fa.describe(), fb.describe());
        c.push(d);
        return Ok(());
    }
    let before = c.count();
    let outcome = match fa {
        Format::Pe => pe::diff(a, b, loc, c),
        Format::Initrd => cpio::diff(a, b, loc, c),
        Format::Tar | Format::TarGz => tar::diff(a, b, fa == Format::TarGz, loc, c),
        Format::Disk => disk::diff_gpt(a, b, loc, c),
        Format::Vhd => disk::diff_vhd(a, b, loc, c),
        Format::Qcow2 => disk::diff_qcow2(a, b, loc, c),
        Format::Fat => fat::diff(a, b, &join(loc, "fat"), c),
        Format::KernelConfig => kconfig::diff(a, b, loc, c),
        Format::Compressed => diff_compressed(a, b, name, loc, c),
        Format::Unknown => {
            if c.diffoscope
                && let Some(d) = diffoscope(a, b, loc)?
            {
                c.push(d);
            } else {
                let mut d = byte_difference(loc, &summary, None);
                d.lines = text::line_diff_if_text(a, b)?;
                c.push(d);
            }
            Ok(Structure::Parsed)
        }
    }?;
    if c.count() == before {
        let what = match outcome {
            Structure::Parsed => format!(
                "the {} parses the same on both sides; the bytes around it differ",
                fa.describe()
            ),
            Structure::Unreadable(why) => format!("cannot read it as a {}: {why}", fa.describe()),
        };
        c.push(byte_difference(loc, &summary, Some(&what)));
    }
    Ok(())
}

/// Compares entry contents that differ as `summary` says, but only when they are of a
/// format we know: the caller has already reported the entry's first differing offset.
pub(crate) fn diff_nested(
    a: &Src,
    b: &Src,
    name: &str,
    loc: &str,
    c: &mut Collector,
    summary: ByteSummary,
) -> Result<(), DiffError> {
    let fa = detect(a, name)?;
    if fa == Format::Unknown || fa != detect(b, name)? {
        return Ok(());
    }
    diff_summarised(a, b, name, loc, c, summary)
}

/// Whether a format handler could read both sides.
pub(crate) enum Structure {
    Parsed,
    /// It could not; why. The caller compares bytes instead.
    Unreadable(String),
}

/// Decompresses both sides in memory (bounded) and compares what is inside.
fn diff_compressed(
    a: &Src,
    b: &Src,
    name: &str,
    loc: &str,
    c: &mut Collector,
) -> Result<Structure, DiffError> {
    let (Some(x), Some(y)) = (decompress_all(a)?, decompress_all(b)?) else {
        return Ok(Structure::Unreadable("cannot decompress it".into()));
    };
    let inner = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .or_else(|| name.strip_suffix(".xz"))
        .unwrap_or(name);
    let (bx, by) = (Blob::mem(a.name(), x), Blob::mem(b.name(), y));
    diff_blobs(
        &bx.whole(),
        &by.whole(),
        inner,
        &join(loc, "decompressed"),
        c,
    )?;
    Ok(Structure::Parsed)
}

/// All of a compressed range, decompressed, or `None` if it does not decompress (or would
/// be larger than [`MAX_IN_MEMORY`]).
pub(crate) fn decompress_all(src: &Src) -> Result<Option<Vec<u8>>, DiffError> {
    let head = src.read(0, 8)?;
    let Some(r) = decompressor(&head, src.reader()) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    match r.take(MAX_IN_MEMORY + 1).read_to_end(&mut out) {
        Ok(_) if out.len() as u64 <= MAX_IN_MEMORY => Ok(Some(out)),
        _ => Ok(None),
    }
}

/// Runs diffoscope on the pair, if it is installed. The files the user named are passed as
/// they are; entries of containers are written to scratch files first.
fn diffoscope(a: &Src, b: &Src, loc: &str) -> Result<Option<Difference>, DiffError> {
    let Some(tool) = find_in_path("diffoscope") else {
        return Ok(None);
    };
    let dir = tempfile::tempdir().map_err(|source| DiffError::Scratch {
        name: a.name().to_string(),
        source,
    })?;
    let path_of = |src: &Src, side: &str| -> Result<PathBuf, DiffError> {
        if let Some(p) = src.user_path() {
            return Ok(p.to_path_buf());
        }
        let p = dir.path().join(side);
        let scratch = |source| DiffError::Scratch {
            name: src.name().to_string(),
            source,
        };
        let mut out = fs_err::File::create(&p).map_err(scratch)?;
        io::copy(&mut src.reader(), &mut out).map_err(scratch)?;
        Ok(p)
    };
    let pa = path_of(a, "A")?;
    let pb = path_of(b, "B")?;
    let out = std::process::Command::new(tool)
        .arg("--text")
        .arg("-")
        .arg("--no-progress")
        .arg(&pa)
        .arg(&pb)
        .output();
    let Ok(out) = out else { return Ok(None) };
    // diffoscope exits 1 when the files differ, 0 when they do not, 2 on its own errors.
    if out.status.code() != Some(1) {
        return Ok(None);
    }
    let mut d = Difference::changed(loc);
    d.note = Some("diffoscope:".into());
    d.lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .take(400)
        .map(str::to_string)
        .collect();
    Ok(Some(d))
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_summary_counts_and_finds_the_first_offset() {
        let x = Blob::mem("a", b"hello world".to_vec());
        let y = Blob::mem("b", b"hellO wOrld!".to_vec());
        let s = byte_summary(&x.whole(), &y.whole()).unwrap();
        assert_eq!(s.first, Some(4));
        assert_eq!(s.differing, 2);
        assert_eq!((s.len_a, s.len_b), (11, 12));
        let same = byte_summary(&x.whole(), &x.whole()).unwrap();
        assert_eq!(same.first, None);
        let prefix = Blob::mem("c", b"hello".to_vec());
        assert_eq!(
            byte_summary(&prefix.whole(), &x.whole()).unwrap().first,
            Some(5)
        );
    }

    /// A tiny deterministic generator (xorshift) for the mutations below.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Hostile inputs: random bytes of valid containers flipped; every diff must end with
    /// a report (no panic, no error, never empty), whatever the damage.
    #[test]
    fn damaged_containers_never_panic_and_never_give_an_empty_report() {
        let dir = tempfile::tempdir().unwrap();
        let fat_path = dir.path().join("esp.img");
        let mut fb = crate::image::fat::FatBuilder::new(0);
        fb.add_file("EFI/BOOT/BOOTX64.EFI", vec![9u8; 5000])
            .unwrap();
        fb.add_file("a long name.txt", b"x".to_vec()).unwrap();
        fb.write_image(&fat_path, 34 << 20).unwrap();
        let fat = fs_err::read(&fat_path).unwrap();
        let mut disk = vec![0u8; 4 << 20];
        let gpt = crate::image::disk::EspDiskLayout::repart_auto(2 << 20).gpt(
            crate::image::gpt::Guid([1; 16]),
            crate::image::gpt::Guid([2; 16]),
        );
        gpt.write(&mut disk).unwrap();
        disk.truncate(4 << 20);
        let mut cpio = crate::image::cpio::stub_extra_cpio("a", b"hello");
        cpio.extend(
            zstd::encode_all(&crate::image::cpio::stub_extra_cpio("b", b"x")[..], 3).unwrap(),
        );
        let mut kconfig = b"CONFIG_A=y\nCONFIG_B=m\n".to_vec();
        kconfig.extend(b"# CONFIG_C is not set\n");

        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let opts = DiffOptions {
            max: 1000,
            diffoscope: false,
        };
        for (name, good, hot) in [
            ("esp.img", &fat, 64 * 1024usize),
            ("disk.raw", &disk, 40 * 1024),
            ("initrd", &cpio, cpio.len()),
            (".config", &kconfig, kconfig.len()),
        ] {
            for _ in 0..40 {
                let mut bad = good.clone();
                for _ in 0..1 + next(&mut state) % 8 {
                    let at = (next(&mut state) % hot as u64) as usize;
                    bad[at] ^= 1 + (next(&mut state) % 255) as u8;
                }
                if bad == *good {
                    continue;
                }
                let (x, y) = (Blob::mem(name, good.clone()), Blob::mem(name, bad));
                let mut c = Collector::new(&opts);
                diff_blobs(&x.whole(), &y.whole(), name, "", &mut c).unwrap();
                assert!(c.count() > 0, "{name}: an empty report for different bytes");
            }
        }
    }

    #[test]
    fn the_collector_keeps_max_and_counts_the_rest() {
        let mut c = Collector::new(&DiffOptions {
            max: 2,
            diffoscope: false,
        });
        for i in 0..5 {
            let mut d = Difference::changed(&format!("x{i}"));
            d.field("size", i, i + 1);
            c.push(d);
        }
        c.push(Difference::changed("empty"));
        assert_eq!(c.differences.len(), 2);
        assert_eq!(c.omitted, 3);
    }
}

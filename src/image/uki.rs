//! Unified Kernel Image assembly, laid out as ukify (systemd 257) lays it out.
//!
//! A UKI is the systemd stub (`linuxx64.efi.stub`) with the kernel, initrd, command line and
//! a few small text sections appended as new PE sections. [`UkiBuilder`] takes the stub and
//! the section contents and produces the same bytes as
//! `ukify build --stub=... --linux=... --initrd=... --cmdline=@... --os-release=@... --uname=...`
//! of systemd 257, in two phases: [`UkiBuilder::layout`] decides every header field and file
//! offset, [`UkiLayout::write_to`] streams the bytes out in file order.
//!
//! What ukify does to the stub, and so what we do:
//! 1. a COFF symbol table at the very end of the stub is cut off (`PointerToSymbolTable` and
//!    `NumberOfSymbols` become 0; the characteristics flag is left as it was);
//! 2. each stub section's `PointerToRawData` and `SizeOfRawData` are rounded up to
//!    `FileAlignment`, zero padding inserted, later sections moved; `SizeOfHeaders` is rounded
//!    up to `FileAlignment` too;
//! 3. each new section gets `VirtualSize` = its length, `SizeOfRawData` = length rounded up to
//!    `FileAlignment`, `PointerToRawData` = file length rounded up, `VirtualAddress` = end of
//!    the previous section rounded up to `SectionAlignment`; flags `MEM_READ|CNT_CODE` for
//!    `.linux`, `MEM_READ|CNT_INITIALIZED_DATA` otherwise; `NumberOfSections` += 1 and
//!    `SizeOfInitializedData` += `VirtualSize` (for `.linux` too, as ukify does);
//! 4. a section the stub already has (`.sbat`) is rewritten in place: same file space, new
//!    `VirtualSize`;
//! 5. `NX_COMPAT` is cleared when `.linux` is a PE image without it;
//! 6. `CheckSum` = 0 and `SizeOfImage` = end of the last section rounded up to
//!    `SectionAlignment`. `TimeDateStamp` and everything else stay the stub's.
//!
//! Section order (ukify 257): `.osrel .cmdline .dtb .uname .splash .pcrpkey .linux .initrd
//! .ucode`, then `.sbat` (the stub's SBAT lines, the kernel's, and the `uki` line), then
//! `.pcrsig`.

use std::borrow::Cow;
use std::io::{self, Write};

use crate::pe::{self, PeError, PeFile, round_up};

/// Errors assembling a UKI.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    #[error("cannot read the stub {stub}")]
    Stub {
        stub: String,
        #[source]
        source: PeError,
    },
    #[error(
        "the stub {stub} is signed (it has a certificate table)\nhint: use the unsigned \
             linuxx64.efi.stub of systemd-boot-efi; sign the UKI after assembly"
    )]
    StubSigned { stub: String },
    #[error(
        "the stub {stub} has no room in its headers (SizeOfHeaders {size_of_headers:#x}) for \
             the header of section {section}"
    )]
    NoHeaderSpace {
        stub: String,
        section: String,
        size_of_headers: u32,
    },
    #[error(
        "section {section} ({len} bytes) does not fit in the stub's own {section} section \
             ({room} bytes)"
    )]
    NoRoomInStubSection {
        section: String,
        len: usize,
        room: u32,
    },
    #[error(
        "the stub {stub} has a {section} section whose raw data is not directly followed by \
             the next section's; ukify would corrupt such a stub"
    )]
    UnsupportedStubLayout { stub: String, section: String },
    #[error("{what} has invalid SBAT data: {detail}")]
    Sbat { what: String, detail: String },
    #[error(
        "the kernel is {format}-compressed; ukify would decompress it first\nhint: pass the \
             decompressed kernel image"
    )]
    CompressedKernel { format: &'static str },
    #[error("the UKI would exceed the 4 GiB limit of PE32+ fields ({field})")]
    TooLarge { field: &'static str },
    #[error("no kernel: a UKI needs a .linux section")]
    NoKernel,
}

/// The SBAT text ukify adds when none is given: its first line is dropped, the `uki` line kept.
pub const STUB_SBAT: &str = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n\
uki,1,UKI,uki,1,https://uapi-group.org/specifications/specs/unified_kernel_image/\n";

const SBAT_HEADER: &str =
    "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n";

/// Inputs of one UKI. Each `Option` left `None` is a section that is not added.
#[derive(Debug, Clone, Default)]
pub struct UkiBuilder {
    stub: Vec<u8>,
    stub_name: String,
    /// `.osrel`: the os-release file.
    pub os_release: Option<Vec<u8>>,
    /// `.cmdline`: taken verbatim (ukify's `--cmdline=@FILE`).
    pub cmdline: Option<Vec<u8>>,
    /// `.dtb`.
    pub devicetree: Option<Vec<u8>>,
    /// `.uname`; when `None`, read from the kernel's setup header as ukify does.
    pub uname: Option<String>,
    /// `.splash`.
    pub splash: Option<Vec<u8>>,
    /// `.pcrpkey`.
    pub pcrpkey: Option<Vec<u8>>,
    /// `.linux`: the kernel, an uncompressed EFI PE image (bzImage).
    pub linux: Option<Vec<u8>>,
    /// `.initrd`: one or more initrds, joined as ukify joins them.
    pub initrds: Vec<Vec<u8>>,
    /// `.ucode`.
    pub microcode: Option<Vec<u8>>,
    /// SBAT text whose lines after the first are appended (ukify `--sbat`); default
    /// [`STUB_SBAT`].
    pub sbat: Option<String>,
    /// `.pcrsig` (the JSON that `systemd-measure sign` prints).
    pub pcrsig: Option<Vec<u8>>,
}

/// Where the bytes after the stub come from.
#[derive(Debug, Clone)]
enum Piece<'a> {
    Zeros(usize),
    Data(Cow<'a, [u8]>),
}

/// A UKI laid out: the (patched) stub bytes and the pieces that follow.
#[derive(Debug)]
pub struct UkiLayout<'a> {
    head: Vec<u8>,
    tail: Vec<Piece<'a>>,
    sections: Vec<pe::Section>,
    len: u64,
}

impl UkiBuilder {
    /// Starts a UKI from the stub's bytes; `stub_name` (its path) is used in error messages.
    pub fn new(stub: Vec<u8>, stub_name: impl Into<String>) -> Self {
        UkiBuilder {
            stub,
            stub_name: stub_name.into(),
            ..Default::default()
        }
    }

    /// Decides every byte's place. Borrows the section contents; nothing is copied but the stub.
    pub fn layout(&self) -> Result<UkiLayout<'_>, UkiError> {
        let linux = self.linux.as_deref().ok_or(UkiError::NoKernel)?;
        let kernel_pe = match PeFile::parse(linux, "the kernel (.linux)") {
            Ok(pe) => Some(pe),
            Err(_) => {
                if let Some(format) = compression_of(linux) {
                    return Err(UkiError::CompressedKernel { format });
                }
                None
            }
        };
        let uname = match &self.uname {
            Some(u) => Some(u.clone()),
            None => scrape_uname(linux),
        };
        let sbat = merge_sbat(
            &self.stub,
            &self.stub_name,
            kernel_pe.as_ref(),
            self.sbat.as_deref().unwrap_or(STUB_SBAT),
        )?;
        // join_initrds copies only when there are several.
        let initrd = match self.initrds.as_slice() {
            [] => None,
            [one] => Some(Cow::Borrowed(one.as_slice())),
            many => Some(Cow::Owned(join_padded(many.iter().map(Vec::as_slice)))),
        };
        let candidates = [
            (".osrel", borrow(&self.os_release)),
            (".cmdline", borrow(&self.cmdline)),
            (".dtb", borrow(&self.devicetree)),
            (".uname", uname.map(|u| Cow::Owned(u.into_bytes()))),
            (".splash", borrow(&self.splash)),
            (".pcrpkey", borrow(&self.pcrpkey)),
            (".linux", Some(Cow::Borrowed(linux))),
            (".initrd", initrd),
            (".ucode", borrow(&self.microcode)),
            (".sbat", Some(Cow::Owned(sbat.into_bytes()))),
            (".pcrsig", borrow(&self.pcrsig)),
        ];
        let new: Vec<(&'static str, Cow<'_, [u8]>)> = candidates
            .into_iter()
            .filter_map(|(name, content)| Some((name, content?)))
            .collect();
        let kernel_lacks_nx = kernel_pe
            .as_ref()
            .is_some_and(|k| k.optional.dll_characteristics & pe::DLL_NX_COMPAT == 0);
        lay_out(&self.stub, &self.stub_name, new, kernel_lacks_nx)
    }

    /// Lays out and writes the UKI into a vector.
    pub fn build(&self) -> Result<Vec<u8>, UkiError> {
        let layout = self.layout()?;
        let mut out = Vec::with_capacity(layout.len() as usize);
        layout.write_to(&mut out).expect("writing to a Vec");
        Ok(out)
    }
}

/// Joins parts, each padded with zeros to a multiple of 4 bytes.
pub fn join_padded<'a>(parts: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.resize(round_up(out.len() as u64, 4) as usize, 0);
    }
    out
}

/// Borrows an optional section content.
fn borrow(v: &Option<Vec<u8>>) -> Option<Cow<'_, [u8]>> {
    v.as_deref().map(Cow::Borrowed)
}

fn set_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn to_u32(v: u64, field: &'static str) -> Result<u32, UkiError> {
    u32::try_from(v).map_err(|_| UkiError::TooLarge { field })
}

/// Phase one: everything ukify's `pe_add_sections` decides.
fn lay_out<'a>(
    stub_bytes: &[u8],
    stub_name: &str,
    new: Vec<(&'static str, Cow<'a, [u8]>)>,
    kernel_lacks_nx: bool,
) -> Result<UkiLayout<'a>, UkiError> {
    let stub_err = |source| UkiError::Stub {
        stub: stub_name.to_string(),
        source,
    };
    let pe = PeFile::parse(stub_bytes, stub_name).map_err(stub_err)?;
    let fa = u64::from(pe.optional.file_alignment);
    let sa = u64::from(pe.optional.section_alignment);
    let mut data = stub_bytes.to_vec();
    let mut coff = pe.coff.clone();
    let mut sections = pe.sections.clone();

    // 1. Cut off a symbol (and string) table that ends the file.
    if coff.pointer_to_symbol_table != 0 {
        let at = coff.pointer_to_symbol_table as usize;
        let mut size = 18 * coff.number_of_symbols as usize;
        if let Some(strtab) = data
            .get(at + size..at + size + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        {
            size += strtab as usize;
        }
        if at + size == data.len() {
            data.truncate(at);
            coff.pointer_to_symbol_table = 0;
            coff.number_of_symbols = 0;
        }
    }

    // 2. Align the stub's sections in the file.
    for i in 0..sections.len() {
        let oldp = sections[i].pointer_to_raw_data as usize;
        let oldsz = sections[i].size_of_raw_data as usize;
        let newp = round_up(oldp as u64, fa) as usize;
        let newsz = round_up(oldsz as u64, fa) as usize;
        let (padp, padsz) = (newp - oldp, newsz - oldsz);
        sections[i].pointer_to_raw_data = newp as u32;
        sections[i].size_of_raw_data = newsz as u32;
        for later in &mut sections[i + 1..] {
            later.pointer_to_raw_data += (padp + padsz) as u32;
        }
        if padp + padsz > 0 {
            let tail = data.split_off(oldp.min(data.len()));
            let (body, rest) = tail.split_at(oldsz.min(tail.len()));
            data.resize(data.len() + padp, 0);
            data.extend_from_slice(body);
            data.resize(data.len() + padsz, 0);
            data.extend_from_slice(rest);
        }
    }
    let size_of_headers = to_u32(
        round_up(u64::from(pe.optional.size_of_headers), fa),
        "SizeOfHeaders",
    )?;
    if pe.certificate_table().virtual_address != 0 {
        return Err(UkiError::StubSigned {
            stub: stub_name.to_string(),
        });
    }

    // 3./4. Add the new sections.
    let n_original = sections.len();
    let mut number_of_sections = coff.number_of_sections;
    let mut initialized = u64::from(pe.optional.size_of_initialized_data);
    let mut dll = pe.optional.dll_characteristics;
    let mut file_len = data.len() as u64;
    let mut tail: Vec<Piece<'a>> = Vec::new();
    for (name, content) in new {
        let last = sections.last().expect("a stub has sections");
        let header_offset = last.header_offset + pe::SECTION_HEADER_LEN;
        if header_offset + pe::SECTION_HEADER_LEN > size_of_headers as usize {
            return Err(UkiError::NoHeaderSpace {
                stub: stub_name.to_string(),
                section: name.to_string(),
                size_of_headers,
            });
        }
        let len = content.len() as u64;
        if name == ".linux" && kernel_lacks_nx {
            dll &= !pe::DLL_NX_COMPAT;
        }
        if let Some(i) = sections[..n_original]
            .iter()
            .position(|s| s.name() == name && name != ".dtbauto")
        {
            let s = &sections[i];
            if len > u64::from(s.size_of_raw_data) {
                return Err(UkiError::NoRoomInStubSection {
                    section: name.to_string(),
                    len: content.len(),
                    room: s.size_of_raw_data,
                });
            }
            let start = s.pointer_to_raw_data as usize;
            let end = start + s.size_of_raw_data as usize;
            if sections.get(i + 1).map(|n| n.pointer_to_raw_data as usize) != Some(end)
                || end > data.len()
            {
                return Err(UkiError::UnsupportedStubLayout {
                    stub: stub_name.to_string(),
                    section: name.to_string(),
                });
            }
            data[start..start + content.len()].copy_from_slice(&content);
            data[start + content.len()..end].fill(0);
            sections[i].virtual_size = content.len() as u32;
            continue;
        }
        let ptr = round_up(file_len, fa);
        let raw = round_up(len, fa);
        let va = round_up(
            u64::from(last.virtual_address) + u64::from(last.virtual_size),
            sa,
        );
        let mut raw_name = [0u8; 8];
        raw_name[..name.len()].copy_from_slice(name.as_bytes());
        let characteristics = pe::SCN_MEM_READ
            | if name == ".linux" {
                pe::SCN_CNT_CODE
            } else {
                pe::SCN_CNT_INITIALIZED_DATA
            };
        let header = pe::Section {
            header_offset,
            raw_name,
            virtual_size: to_u32(len, "VirtualSize")?,
            virtual_address: to_u32(va, "VirtualAddress")?,
            size_of_raw_data: to_u32(raw, "SizeOfRawData")?,
            pointer_to_raw_data: to_u32(ptr, "PointerToRawData")?,
            characteristics,
        };
        if ptr > file_len {
            tail.push(Piece::Zeros((ptr - file_len) as usize));
        }
        tail.push(Piece::Data(content));
        if raw > len {
            tail.push(Piece::Zeros((raw - len) as usize));
        }
        file_len = ptr + raw;
        number_of_sections += 1;
        initialized += len;
        sections.push(header);
    }

    // 5./6. Patch the headers.
    let last = sections.last().expect("a stub has sections");
    let size_of_image = to_u32(
        round_up(
            u64::from(last.virtual_address) + u64::from(last.virtual_size),
            sa,
        ),
        "SizeOfImage",
    )?;
    let c = coff.offset;
    set_u16(&mut data, c + 2, number_of_sections);
    set_u32(&mut data, c + 8, coff.pointer_to_symbol_table);
    set_u32(&mut data, c + 12, coff.number_of_symbols);
    let o = pe.optional.offset;
    set_u32(
        &mut data,
        o + pe::opt::SIZE_OF_INITIALIZED_DATA,
        to_u32(initialized, "SizeOfInitializedData")?,
    );
    set_u32(&mut data, o + pe::opt::SIZE_OF_IMAGE, size_of_image);
    set_u32(&mut data, o + pe::opt::SIZE_OF_HEADERS, size_of_headers);
    set_u32(&mut data, o + pe::opt::CHECKSUM, 0);
    set_u16(&mut data, o + pe::opt::DLL_CHARACTERISTICS, dll);
    for s in &sections {
        let h = s.header_offset;
        data[h..h + 8].copy_from_slice(&s.raw_name);
        set_u32(&mut data, h + 8, s.virtual_size);
        set_u32(&mut data, h + 12, s.virtual_address);
        set_u32(&mut data, h + 16, s.size_of_raw_data);
        set_u32(&mut data, h + 20, s.pointer_to_raw_data);
        set_u32(&mut data, h + 36, s.characteristics);
    }
    Ok(UkiLayout {
        head: data,
        tail,
        sections,
        len: file_len,
    })
}

impl UkiLayout<'_> {
    /// Length of the UKI in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the UKI has no bytes (never: it holds at least the stub).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The section headers of the UKI, in section-table order.
    pub fn sections(&self) -> &[pe::Section] {
        &self.sections
    }

    /// Phase two: writes the bytes in file order.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.head)?;
        const ZEROS: [u8; 4096] = [0; 4096];
        for piece in &self.tail {
            match piece {
                Piece::Data(d) => w.write_all(d)?,
                Piece::Zeros(n) => {
                    let mut n = *n;
                    while n > 0 {
                        let k = n.min(ZEROS.len());
                        w.write_all(&ZEROS[..k])?;
                        n -= k;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Names the compression of a kernel that ukify would decompress before adding it.
fn compression_of(data: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"\x1f\x8b", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x02\x21\x4c\x18", "lz4"),
        (b"\x04\x22\x4d\x18", "lz4"),
        (b"\x89LZO", "lzo"),
        (b"BZh", "bzip2"),
        (b"\x5d\x00\x00", "lzma"),
    ];
    if data.starts_with(b"MZ") && data.get(4..8) == Some(b"zimg") {
        return Some("zboot");
    }
    MAGICS
        .iter()
        .find(|(m, _)| data.starts_with(m))
        .map(|&(_, f)| f)
}

/// The kernel release as ukify's `Uname.scrape_x86` finds it: the version string the x86 boot
/// header points to (`kernel_version` at 0x20e), whose first word is the release. Falls back
/// to a `Linux version X (` string in the uncompressed bytes.
pub fn scrape_uname(kernel: &[u8]) -> Option<String> {
    fn from_x86(kernel: &[u8]) -> Option<String> {
        if kernel.get(0x202..0x206) != Some(b"HdrS") {
            return None;
        }
        let off = u16::from_le_bytes(kernel.get(0x20e..0x210)?.try_into().ok()?) as usize;
        let text = kernel.get(0x200 + off..)?;
        let text = &text[..text.len().min(128)];
        let text = &text[..text.iter().position(|&b| b == 0).unwrap_or(text.len())];
        let text = std::str::from_utf8(text).ok()?;
        // VERSION_PATTERN: `<release> (<builder>) #...`
        let (release, rest) = text.split_once(' ')?;
        let valid = |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '+' | '-');
        if release.is_empty() || !release.chars().all(valid) {
            return None;
        }
        let rest = rest.strip_prefix('(')?;
        let (builder, rest) = rest.split_once(')')?;
        if builder.is_empty() || builder.contains(' ') || !rest.starts_with(" #") {
            return None;
        }
        Some(release.to_string())
    }
    fn generic(kernel: &[u8]) -> Option<String> {
        let needle = b"Linux version ";
        let mut from = 0;
        while let Some(i) = kernel[from..]
            .windows(needle.len())
            .position(|w| w == needle)
        {
            let start = from + i + needle.len();
            let word_end = kernel[start..]
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .map(|e| start + e)?;
            let word = &kernel[start..word_end];
            let ok = word.len() >= 3 && word[0].is_ascii_digit() && word[1] == b'.';
            if ok && kernel.get(word_end..word_end + 2) == Some(b" (") {
                return String::from_utf8(word.to_vec()).ok();
            }
            from = start;
        }
        None
    }
    from_x86(kernel).or_else(|| generic(kernel))
}

/// Python's `str.splitlines()`: splits on every line boundary Python knows, drops them, and
/// gives no empty last line for a trailing boundary.
fn python_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let boundary = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if boundary {
            out.push(&s[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r' && it.peek().map(|&(_, n)| n) == Some('\n') {
                it.next();
                next += 1;
            }
            start = next;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// The SBAT lines (all but the `sbat,` header) of a PE image's `.sbat` section, as ukify's
/// `merge_sbat` reads them: the raw section bytes with trailing NULs removed.
fn sbat_lines_of<'p>(pe: &PeFile<'p>, what: &str) -> Result<Vec<String>, UkiError> {
    let Some(s) = pe.section(".sbat") else {
        return Ok(Vec::new());
    };
    // pefile's `get_data()`: from PointerToRawData rounded down to 512 (when FileAlignment is
    // at least 512), SizeOfRawData bytes, but not past the end of the section's raw data.
    let ptr = s.pointer_to_raw_data as usize;
    let start = if pe.optional.file_alignment >= 0x200 {
        ptr & !0x1ff
    } else {
        ptr
    };
    let end = (start + s.size_of_raw_data as usize)
        .min(ptr + s.size_of_raw_data as usize)
        .min(pe.data().len());
    let raw = &pe.data()[start.min(end)..end];
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&raw[..end]).map_err(|e| UkiError::Sbat {
        what: what.to_string(),
        detail: format!("not UTF-8: {e}"),
    })?;
    let lines = python_splitlines(text);
    match lines.first() {
        None => Err(UkiError::Sbat {
            what: what.to_string(),
            detail: "the .sbat section is empty".into(),
        }),
        // ukify warns and skips such a section.
        Some(first) if !first.starts_with("sbat,") => Ok(Vec::new()),
        Some(_) => Ok(lines[1..].iter().map(|l| l.to_string()).collect()),
    }
}

/// ukify's `merge_sbat([stub, kernel], [text])`.
fn merge_sbat(
    stub: &[u8],
    stub_name: &str,
    kernel: Option<&PeFile<'_>>,
    text: &str,
) -> Result<String, UkiError> {
    let stub_pe = PeFile::parse(stub, stub_name).map_err(|source| UkiError::Stub {
        stub: stub_name.to_string(),
        source,
    })?;
    let mut lines = sbat_lines_of(&stub_pe, stub_name)?;
    if let Some(k) = kernel {
        lines.extend(sbat_lines_of(k, "the kernel (.linux)")?);
    }
    let extra = python_splitlines(text);
    match extra.first() {
        Some(first) if first.starts_with("sbat,") => {
            lines.extend(extra[1..].iter().map(|l| l.to_string()))
        }
        _ => {
            return Err(UkiError::Sbat {
                what: "the SBAT text".into(),
                detail: "its first line must start with \"sbat,\"".into(),
            });
        }
    }
    Ok(format!("{SBAT_HEADER}{}\n\0", lines.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stub-like PE32+: headers 0x400 (room for more section headers), FileAlignment 0x200,
    /// SectionAlignment 0x1000, sections `.sbat` and `.text` with unaligned raw sizes.
    fn fake_stub() -> Vec<u8> {
        let mut d = vec![0u8; 0x400];
        d[..2].copy_from_slice(b"MZ");
        d[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        d[0x80..0x84].copy_from_slice(b"PE\0\0");
        let c = 0x84;
        set_u16(&mut d, c, 0x8664);
        set_u16(&mut d, c + 2, 2);
        set_u32(&mut d, c + 4, 0x1234_5678);
        set_u16(&mut d, c + 16, 240);
        let o = c + 20;
        set_u16(&mut d, o, 0x20b);
        set_u32(&mut d, o + 8, 0x100);
        set_u32(&mut d, o + 32, 0x1000);
        set_u32(&mut d, o + 36, 0x200);
        set_u32(&mut d, o + 56, 0x3000);
        set_u32(&mut d, o + 60, 0x3f0);
        set_u32(&mut d, o + 64, 0x55aa);
        set_u16(&mut d, o + 70, 0x160);
        set_u32(&mut d, o + 108, 16);
        let sbat = b"sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\nsystemd-stub,1,The systemd Developers,systemd,257,https://systemd.io/\n";
        let mut add = |i: usize, name: &[u8], vs: u32, va: u32, raw: u32, ptr: u32| {
            let h = o + 240 + i * 40;
            d[h..h + name.len()].copy_from_slice(name);
            set_u32(&mut d, h + 8, vs);
            set_u32(&mut d, h + 12, va);
            set_u32(&mut d, h + 16, raw);
            set_u32(&mut d, h + 20, ptr);
            set_u32(&mut d, h + 36, 0x4000_0040);
        };
        let n = sbat.len() as u32;
        add(0, b".sbat", n, 0x1000, n, 0x400);
        add(1, b".text", 0x10, 0x2000, 0x10, 0x400 + n);
        d.extend_from_slice(sbat);
        d.extend_from_slice(&[0xC3; 0x10]);
        d
    }

    #[test]
    fn splitlines_matches_python() {
        assert_eq!(
            python_splitlines("a\nb\r\nc\rd\x0be"),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(python_splitlines("a\n"), ["a"]);
        assert_eq!(python_splitlines("a\n\nb"), ["a", "", "b"]);
        assert!(python_splitlines("").is_empty());
    }

    #[test]
    fn lays_out_like_ukify() {
        let mut b = UkiBuilder::new(fake_stub(), "stub.efi");
        b.os_release = Some(b"ID=test\n".to_vec());
        b.cmdline = Some(b"console=ttyS0".to_vec());
        b.uname = Some("6.1.0".into());
        b.linux = Some(b"HALLO\n".to_vec());
        b.initrds = vec![b"abc".to_vec(), b"defgh".to_vec()];
        let uki = b.build().unwrap();
        let pe = PeFile::parse(&uki, "uki").unwrap();
        // .sbat stays at 0x400 with its raw size rounded up to 0x200; .text moves to 0x600.
        let names: Vec<String> = pe.sections.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                ".sbat", ".text", ".osrel", ".cmdline", ".uname", ".linux", ".initrd"
            ]
        );
        let text = &pe.sections[1];
        assert_eq!(
            (text.pointer_to_raw_data, text.size_of_raw_data),
            (0x600, 0x200)
        );
        let sbat = &pe.sections[0];
        assert_eq!(
            (sbat.pointer_to_raw_data, sbat.size_of_raw_data),
            (0x400, 0x200)
        );
        let osrel = &pe.sections[2];
        assert_eq!(osrel.pointer_to_raw_data, 0x800);
        assert_eq!(osrel.virtual_address, 0x3000);
        assert_eq!(osrel.virtual_size, 8);
        assert_eq!(osrel.characteristics, 0x4000_0040);
        let linux = &pe.sections[5];
        assert_eq!(linux.characteristics, 0x4000_0020);
        assert_eq!(linux.virtual_address, 0x6000);
        let initrd = &pe.sections[6];
        assert_eq!(&*pe.section_memory(initrd), b"abc\0defgh\0\0\0");
        assert_eq!(pe.optional.size_of_image, 0x8000);
        assert_eq!(pe.optional.checksum, 0);
        assert_eq!(pe.optional.size_of_headers, 0x400);
        assert_eq!(pe.coff.time_date_stamp, 0x1234_5678);
        assert_eq!(pe.coff.number_of_sections, 7);
        // "HALLO\n" is no PE image: NX_COMPAT stays.
        assert_eq!(pe.optional.dll_characteristics, 0x160);
        assert_eq!(
            pe.optional.size_of_initialized_data,
            0x100 + 8 + 13 + 5 + 6 + 12
        );
        let merged = pe.section_memory(sbat);
        assert_eq!(
            &*merged,
            format!(
                "{SBAT_HEADER}systemd-stub,1,The systemd Developers,systemd,257,https://systemd.io/\n\
                 uki,1,UKI,uki,1,https://uapi-group.org/specifications/specs/unified_kernel_image/\n\0"
            )
            .as_bytes()
        );
        assert_eq!(uki.len() as u64, b.layout().unwrap().len());
        assert_eq!(uki.len() % 0x200, 0);
    }

    #[test]
    fn kernel_without_nx_clears_nx() {
        let mut kernel = fake_stub();
        let o = 0x84 + 20;
        set_u16(&mut kernel, o + 70, 0);
        let mut b = UkiBuilder::new(fake_stub(), "stub.efi");
        b.linux = Some(kernel);
        b.uname = Some("x".into());
        let uki = b.build().unwrap();
        let pe = PeFile::parse(&uki, "uki").unwrap();
        assert_eq!(pe.optional.dll_characteristics, 0x060);
        // The kernel's SBAT lines (the same stub line here) are merged too.
        let sbat = pe.section_memory(pe.section(".sbat").unwrap()).into_owned();
        let text = String::from_utf8(sbat).unwrap();
        assert_eq!(text.matches("systemd-stub,1").count(), 2, "{text}");
    }

    #[test]
    fn refuses_signed_stub_and_compressed_kernel() {
        let mut stub = fake_stub();
        let e = 0x84 + 20 + 112 + 4 * 8;
        set_u32(&mut stub, e, 0x600);
        let mut b = UkiBuilder::new(stub, "signed.efi");
        b.linux = Some(b"x".to_vec());
        assert!(matches!(b.layout(), Err(UkiError::StubSigned { .. })));
        let mut b = UkiBuilder::new(fake_stub(), "stub.efi");
        b.linux = Some(b"\x1f\x8b\x08rest".to_vec());
        assert!(matches!(
            b.layout(),
            Err(UkiError::CompressedKernel { format: "gzip" })
        ));
    }

    #[test]
    fn scrapes_uname_from_x86_header() {
        let mut k = vec![0u8; 0x400];
        k[0x202..0x206].copy_from_slice(b"HdrS");
        k[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let v = b"6.12.117+deb13-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        k[0x300..0x300 + v.len()].copy_from_slice(v);
        assert_eq!(
            scrape_uname(&k).as_deref(),
            Some("6.12.117+deb13-cloud-amd64")
        );
        assert_eq!(scrape_uname(b"HALLO\n"), None);
        assert_eq!(
            scrape_uname(b"xx Linux version 6.1.0-13-amd64 (x@y) #1").as_deref(),
            Some("6.1.0-13-amd64")
        );
    }
}

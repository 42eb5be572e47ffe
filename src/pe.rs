//! Reading PE/COFF images, and their Authenticode digest.
//!
//! [`PeFile::parse`] reads the headers of an EFI application (the systemd stub, a kernel, a
//! UKI) from bytes in memory and keeps the offset of every header field that the UKI writer
//! rewrites. [`PeFile::authenticode_ranges`] says which bytes the firmware hashes when it
//! measures the image, exactly as OVMF (`DxeTpm2MeasureBootLib`) and `pesign -h` do:
//!
//! 1. the headers up to `SizeOfHeaders`, skipping `CheckSum` and the Certificate Table entry
//!    of the data directory;
//! 2. each section with raw data, in increasing `PointerToRawData` order;
//! 3. whatever follows the last section, minus the certificate table at the end of the file.
//!
//! No zero padding is added to reach a multiple of 8 bytes: OVMF and pesign do not pad, while
//! osslsigncode and go-uefi do. On files whose length is not a multiple of 8 the tools
//! therefore disagree; [`Authenticode::length_multiple_of_8`] says so.

use std::ops::Range;

use sha2::{Digest, Sha256, Sha384};

/// Errors reading a PE image. Each names the file and the field that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PeError {
    #[error("{file}: not a PE image: {field} {detail}")]
    Malformed {
        file: String,
        field: &'static str,
        detail: String,
    },
    #[error("{file}: section {section}: {detail}")]
    BadSection {
        file: String,
        section: String,
        detail: String,
    },
}

/// `IMAGE_DLLCHARACTERISTICS_NX_COMPAT`.
pub const DLL_NX_COMPAT: u16 = 0x0100;
/// `IMAGE_SCN_CNT_CODE`.
pub const SCN_CNT_CODE: u32 = 0x0000_0020;
/// `IMAGE_SCN_CNT_INITIALIZED_DATA`.
pub const SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
/// `IMAGE_SCN_MEM_READ`.
pub const SCN_MEM_READ: u32 = 0x4000_0000;
/// Index of the Certificate Table ("security directory") in the data directory.
pub const DIR_SECURITY: usize = 4;
/// Size of one section header.
pub const SECTION_HEADER_LEN: usize = 40;

/// The COFF file header (the 20 bytes after `PE\0\0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoffHeader {
    /// File offset of the header.
    pub offset: usize,
    pub machine: u16,
    pub number_of_sections: u16,
    pub time_date_stamp: u32,
    pub pointer_to_symbol_table: u32,
    pub number_of_symbols: u32,
    pub size_of_optional_header: u16,
    pub characteristics: u16,
}

/// The fields of the optional header that matter to EFI images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalHeader {
    /// File offset of the header.
    pub offset: usize,
    /// True for PE32+ (magic 0x20b), false for PE32 (0x10b).
    pub pe32_plus: bool,
    pub size_of_code: u32,
    pub size_of_initialized_data: u32,
    pub address_of_entry_point: u32,
    pub image_base: u64,
    pub section_alignment: u32,
    pub file_alignment: u32,
    pub major_image_version: u16,
    pub minor_image_version: u16,
    pub size_of_image: u32,
    pub size_of_headers: u32,
    pub checksum: u32,
    pub subsystem: u16,
    pub dll_characteristics: u16,
    pub number_of_rva_and_sizes: u32,
    /// File offset of the first data directory entry.
    pub data_directory_offset: usize,
}

/// Offsets of optional-header fields, relative to the start of the optional header. They are
/// the same in PE32 and PE32+ up to `DllCharacteristics`.
pub mod opt {
    pub const SIZE_OF_INITIALIZED_DATA: usize = 8;
    pub const SIZE_OF_IMAGE: usize = 56;
    pub const SIZE_OF_HEADERS: usize = 60;
    pub const CHECKSUM: usize = 64;
    pub const DLL_CHARACTERISTICS: usize = 70;
}

/// One data directory entry (RVA and size; for the Certificate Table, a file offset and size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataDirectory {
    pub virtual_address: u32,
    pub size: u32,
}

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// File offset of this 40-byte header.
    pub header_offset: usize,
    /// The 8 name bytes as stored (NUL padded).
    pub raw_name: [u8; 8],
    pub virtual_size: u32,
    pub virtual_address: u32,
    pub size_of_raw_data: u32,
    pub pointer_to_raw_data: u32,
    pub characteristics: u32,
}

impl Section {
    /// The name without its NUL padding (lossy for non-UTF-8 names, which EFI stubs never use).
    pub fn name(&self) -> String {
        let end = self.raw_name.iter().position(|&b| b == 0).unwrap_or(8);
        String::from_utf8_lossy(&self.raw_name[..end]).into_owned()
    }

    /// File range of the raw data.
    pub fn raw_range(&self) -> Range<usize> {
        let start = self.pointer_to_raw_data as usize;
        start..start + self.size_of_raw_data as usize
    }
}

/// A parsed PE image: its headers, borrowed bytes, and the name used in errors.
#[derive(Debug, Clone)]
pub struct PeFile<'a> {
    data: &'a [u8],
    name: String,
    pub pe_offset: usize,
    pub coff: CoffHeader,
    pub optional: OptionalHeader,
    pub data_directories: Vec<DataDirectory>,
    pub sections: Vec<Section>,
}

fn u16_at(data: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(data: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(off..off + 8)?.try_into().ok()?))
}

impl<'a> PeFile<'a> {
    /// Parses the headers of `data`; `name` (usually the path) is used in error messages.
    pub fn parse(data: &'a [u8], name: impl Into<String>) -> Result<Self, PeError> {
        /// The most zero fill a section may ask for beyond its raw data.
        const MAX_ZERO_FILL: u64 = 256 << 20;
        let name = name.into();
        let bad = |field: &'static str, detail: String| PeError::Malformed {
            file: name.clone(),
            field,
            detail,
        };
        let truncated = |field: &'static str| {
            bad(
                field,
                format!("lies past the end of the file ({} bytes)", data.len()),
            )
        };
        if data.get(..2) != Some(b"MZ") {
            return Err(bad("DOS signature", "is not \"MZ\"".into()));
        }
        let pe_offset = u32_at(data, 0x3c).ok_or_else(|| truncated("e_lfanew"))? as usize;
        if data.get(pe_offset..pe_offset + 4) != Some(b"PE\0\0") {
            return Err(bad(
                "PE signature",
                format!("at e_lfanew {pe_offset:#x} is not \"PE\\0\\0\""),
            ));
        }
        let c = pe_offset + 4;
        let field = |off: usize, name: &'static str| u16_at(data, c + off).ok_or(name);
        let coff = (|| -> Result<CoffHeader, &'static str> {
            Ok(CoffHeader {
                offset: c,
                machine: field(0, "Machine")?,
                number_of_sections: field(2, "NumberOfSections")?,
                time_date_stamp: u32_at(data, c + 4).ok_or("TimeDateStamp")?,
                pointer_to_symbol_table: u32_at(data, c + 8).ok_or("PointerToSymbolTable")?,
                number_of_symbols: u32_at(data, c + 12).ok_or("NumberOfSymbols")?,
                size_of_optional_header: field(16, "SizeOfOptionalHeader")?,
                characteristics: field(18, "Characteristics")?,
            })
        })()
        .map_err(truncated)?;

        let o = c + 20;
        let opt_end = o + coff.size_of_optional_header as usize;
        let magic = u16_at(data, o).ok_or_else(|| truncated("optional header Magic"))?;
        let pe32_plus = match magic {
            0x20b => true,
            0x10b => false,
            other => {
                return Err(bad(
                    "optional header Magic",
                    format!("{other:#x} is neither PE32 (0x10b) nor PE32+ (0x20b)"),
                ));
            }
        };
        let (image_base, nrva_off, dd_off) = if pe32_plus {
            (u64_at(data, o + 24), 108, 112)
        } else {
            (u32_at(data, o + 28).map(u64::from), 92, 96)
        };
        if opt_end < o + dd_off {
            return Err(bad(
                "SizeOfOptionalHeader",
                format!(
                    "{} is too small for a {} optional header",
                    coff.size_of_optional_header,
                    if pe32_plus { "PE32+" } else { "PE32" }
                ),
            ));
        }
        let optional = (|| -> Result<OptionalHeader, &'static str> {
            Ok(OptionalHeader {
                offset: o,
                pe32_plus,
                size_of_code: u32_at(data, o + 4).ok_or("SizeOfCode")?,
                size_of_initialized_data: u32_at(data, o + 8).ok_or("SizeOfInitializedData")?,
                address_of_entry_point: u32_at(data, o + 16).ok_or("AddressOfEntryPoint")?,
                image_base: image_base.ok_or("ImageBase")?,
                section_alignment: u32_at(data, o + 32).ok_or("SectionAlignment")?,
                file_alignment: u32_at(data, o + 36).ok_or("FileAlignment")?,
                major_image_version: u16_at(data, o + 44).ok_or("MajorImageVersion")?,
                minor_image_version: u16_at(data, o + 46).ok_or("MinorImageVersion")?,
                size_of_image: u32_at(data, o + 56).ok_or("SizeOfImage")?,
                size_of_headers: u32_at(data, o + 60).ok_or("SizeOfHeaders")?,
                checksum: u32_at(data, o + 64).ok_or("CheckSum")?,
                subsystem: u16_at(data, o + 68).ok_or("Subsystem")?,
                dll_characteristics: u16_at(data, o + 70).ok_or("DllCharacteristics")?,
                number_of_rva_and_sizes: u32_at(data, o + nrva_off).ok_or("NumberOfRvaAndSizes")?,
                data_directory_offset: o + dd_off,
            })
        })()
        .map_err(truncated)?;
        let ndirs = optional.number_of_rva_and_sizes as usize;
        if optional.data_directory_offset + ndirs * 8 > opt_end {
            return Err(bad(
                "NumberOfRvaAndSizes",
                format!(
                    "{ndirs} entries do not fit in SizeOfOptionalHeader {}",
                    coff.size_of_optional_header
                ),
            ));
        }
        let mut data_directories = Vec::with_capacity(ndirs);
        for i in 0..ndirs {
            let at = optional.data_directory_offset + i * 8;
            data_directories.push(DataDirectory {
                virtual_address: u32_at(data, at).ok_or_else(|| truncated("data directory"))?,
                size: u32_at(data, at + 4).ok_or_else(|| truncated("data directory"))?,
            });
        }
        if optional.file_alignment == 0 || !optional.file_alignment.is_power_of_two() {
            return Err(bad(
                "FileAlignment",
                format!("{} is not a power of two", optional.file_alignment),
            ));
        }
        if optional.section_alignment == 0 || !optional.section_alignment.is_power_of_two() {
            return Err(bad(
                "SectionAlignment",
                format!("{} is not a power of two", optional.section_alignment),
            ));
        }

        let mut sections = Vec::with_capacity(coff.number_of_sections as usize);
        for i in 0..coff.number_of_sections as usize {
            let at = opt_end + i * SECTION_HEADER_LEN;
            let hdr = data
                .get(at..at + SECTION_HEADER_LEN)
                .ok_or_else(|| truncated("section table"))?;
            let s = Section {
                header_offset: at,
                raw_name: hdr[..8].try_into().expect("8 bytes"),
                virtual_size: u32_at(hdr, 8).expect("in header"),
                virtual_address: u32_at(hdr, 12).expect("in header"),
                size_of_raw_data: u32_at(hdr, 16).expect("in header"),
                pointer_to_raw_data: u32_at(hdr, 20).expect("in header"),
                characteristics: u32_at(hdr, 36).expect("in header"),
            };
            if s.size_of_raw_data != 0 && s.raw_range().end > data.len() {
                return Err(PeError::BadSection {
                    file: name.clone(),
                    section: s.name(),
                    detail: format!(
                        "PointerToRawData {:#x} + SizeOfRawData {:#x} lies past the end of the \
                         file ({:#x} bytes)",
                        s.pointer_to_raw_data,
                        s.size_of_raw_data,
                        data.len()
                    ),
                });
            }
            // A loader zero-fills VirtualSize past the raw data; nothing we read (stubs, UKI
            // sections, a kernel's own header with its init size) needs hundreds of MiB of
            // that, and a forged size would make every reader of the mapped section allocate
            // it (found by the `pe` fuzz target: 4 GiB from a 1.5 KiB file).
            let fill = u64::from(s.virtual_size).saturating_sub(u64::from(s.size_of_raw_data));
            if fill > MAX_ZERO_FILL {
                return Err(PeError::BadSection {
                    file: name.clone(),
                    section: s.name(),
                    detail: format!(
                        "VirtualSize {:#x} exceeds SizeOfRawData {:#x} by more than {} MiB",
                        s.virtual_size,
                        s.size_of_raw_data,
                        MAX_ZERO_FILL >> 20
                    ),
                });
            }
            sections.push(s);
        }
        Ok(PeFile {
            data,
            name,
            pe_offset,
            coff,
            optional,
            data_directories,
            sections,
        })
    }

    /// The bytes the image was parsed from.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// File offset of the end of the section table.
    pub fn section_table_end(&self) -> usize {
        self.optional.offset
            + self.coff.size_of_optional_header as usize
            + self.sections.len() * SECTION_HEADER_LEN
    }

    /// The first section called `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name() == name)
    }

    /// The Certificate Table entry (zero when the image is unsigned or has no such entry).
    pub fn certificate_table(&self) -> DataDirectory {
        self.data_directories
            .get(DIR_SECURITY)
            .copied()
            .unwrap_or_default()
    }

    /// The raw file bytes of a section (`SizeOfRawData` bytes).
    pub fn section_raw(&self, s: &Section) -> &'a [u8] {
        if s.size_of_raw_data == 0 {
            return &[];
        }
        &self.data[s.raw_range()]
    }

    /// The section as the loader maps it: `VirtualSize` bytes, zero-filled past the raw data.
    pub fn section_memory(&self, s: &Section) -> std::borrow::Cow<'a, [u8]> {
        let raw = self.section_raw(s);
        let vs = s.virtual_size as usize;
        if vs <= raw.len() {
            std::borrow::Cow::Borrowed(&raw[..vs])
        } else {
            let mut v = raw.to_vec();
            v.resize(vs, 0);
            std::borrow::Cow::Owned(v)
        }
    }

    /// The file ranges hashed by the Authenticode digest, in order (see the module docs).
    pub fn authenticode_ranges(&self) -> Result<Vec<Range<usize>>, PeError> {
        let len = self.data.len();
        let headers_end = self.optional.size_of_headers as usize;
        let err = |field: &'static str, detail: String| PeError::Malformed {
            file: self.name.clone(),
            field,
            detail,
        };
        if headers_end > len || headers_end < self.section_table_end() {
            return Err(err(
                "SizeOfHeaders",
                format!(
                    "{headers_end:#x} does not cover the section table (ends at {:#x}) or lies \
                     past the end of the file ({len:#x})",
                    self.section_table_end()
                ),
            ));
        }
        let checksum = self.optional.offset + opt::CHECKSUM;
        let mut ranges = Vec::with_capacity(self.sections.len() + 4);
        ranges.push(0..checksum);
        if self.data_directories.len() > DIR_SECURITY {
            let cert_entry = self.optional.data_directory_offset + DIR_SECURITY * 8;
            ranges.push(checksum + 4..cert_entry);
            ranges.push(cert_entry + 8..headers_end);
        } else {
            ranges.push(checksum + 4..headers_end);
        }
        let mut sorted: Vec<&Section> = self
            .sections
            .iter()
            .filter(|s| s.size_of_raw_data != 0)
            .collect();
        sorted.sort_by_key(|s| s.pointer_to_raw_data);
        let mut hashed = headers_end;
        for s in sorted {
            ranges.push(s.raw_range());
            hashed += s.size_of_raw_data as usize;
        }
        let cert = self.certificate_table().size as usize;
        if len > hashed {
            if len < hashed + cert {
                return Err(err(
                    "Certificate Table",
                    format!(
                        "size {cert:#x} is larger than the {:#x} bytes after the last section",
                        len - hashed
                    ),
                ));
            }
            if len > hashed + cert {
                ranges.push(hashed..len - cert);
            }
        }
        Ok(ranges)
    }

    /// SHA-256 and SHA-384 Authenticode digests, hashed in parallel.
    pub fn authenticode(&self) -> Result<Authenticode, PeError> {
        let ranges = self.authenticode_ranges()?;
        let (sha256, sha384) = std::thread::scope(|scope| {
            let t = scope.spawn(|| hash_ranges::<Sha384>(self.data, &ranges));
            let a = hash_ranges::<Sha256>(self.data, &ranges);
            (a, t.join().expect("hashing thread"))
        });
        Ok(Authenticode {
            sha256: sha256.try_into().expect("32 bytes"),
            sha384: sha384.try_into().expect("48 bytes"),
            length_multiple_of_8: self.data.len().is_multiple_of(8),
        })
    }

    /// The Authenticode digest with one hash function.
    pub fn authenticode_with<D: Digest>(&self) -> Result<Vec<u8>, PeError> {
        Ok(hash_ranges::<D>(self.data, &self.authenticode_ranges()?))
    }
}

/// Hashes the concatenation of `ranges` of `data`.
pub fn hash_ranges<D: Digest>(data: &[u8], ranges: &[Range<usize>]) -> Vec<u8> {
    let mut h = D::new();
    for r in ranges {
        h.update(&data[r.clone()]);
    }
    h.finalize().to_vec()
}

/// Authenticode digests of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticode {
    pub sha256: [u8; 32],
    pub sha384: [u8; 48],
    /// False when the file length is not a multiple of 8: OVMF and pesign (no padding) then
    /// disagree with osslsigncode and go-uefi (zero padding to 8), so a prediction is fragile.
    pub length_multiple_of_8: bool,
}

/// Rounds `x` up to a multiple of `align` (a power of two or any non-zero value).
pub fn round_up(x: u64, align: u64) -> u64 {
    x.div_ceil(align) * align
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: headers (0x200), one section `.text` of `text_len` bytes at 0x200
    /// (raw size rounded to 0x200), then `trailer` bytes.
    pub(crate) fn tiny_pe(text: &[u8], trailer: &[u8], cert: Option<(u32, u32)>) -> Vec<u8> {
        let mut d = vec![0u8; 0x200];
        d[..2].copy_from_slice(b"MZ");
        d[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        d[0x80..0x84].copy_from_slice(b"PE\0\0");
        let c = 0x84;
        d[c..c + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        d[c + 2..c + 4].copy_from_slice(&1u16.to_le_bytes());
        d[c + 16..c + 18].copy_from_slice(&240u16.to_le_bytes());
        let o = c + 20;
        d[o..o + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        d[o + 32..o + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        d[o + 36..o + 40].copy_from_slice(&0x200u32.to_le_bytes());
        d[o + 56..o + 60].copy_from_slice(&0x2000u32.to_le_bytes());
        d[o + 60..o + 64].copy_from_slice(&0x200u32.to_le_bytes());
        d[o + 64..o + 68].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        d[o + 108..o + 112].copy_from_slice(&16u32.to_le_bytes());
        if let Some((va, size)) = cert {
            let e = o + 112 + 4 * 8;
            d[e..e + 4].copy_from_slice(&va.to_le_bytes());
            d[e + 4..e + 8].copy_from_slice(&size.to_le_bytes());
        }
        let s = o + 240;
        d[s..s + 5].copy_from_slice(b".text");
        let raw = round_up(text.len() as u64, 0x200) as u32;
        d[s + 8..s + 12].copy_from_slice(&(text.len() as u32).to_le_bytes());
        d[s + 12..s + 16].copy_from_slice(&0x1000u32.to_le_bytes());
        d[s + 16..s + 20].copy_from_slice(&raw.to_le_bytes());
        d[s + 20..s + 24].copy_from_slice(&0x200u32.to_le_bytes());
        d.extend_from_slice(text);
        d.resize(0x200 + raw as usize, 0);
        d.extend_from_slice(trailer);
        d
    }

    #[test]
    fn parses_headers_and_sections() {
        let img = tiny_pe(b"hello", b"", None);
        let pe = PeFile::parse(&img, "tiny.efi").unwrap();
        assert!(pe.optional.pe32_plus);
        assert_eq!(pe.coff.machine, 0x8664);
        assert_eq!(pe.optional.file_alignment, 0x200);
        assert_eq!(pe.optional.checksum, 0xdead_beef);
        assert_eq!(pe.sections.len(), 1);
        let s = &pe.sections[0];
        assert_eq!(s.name(), ".text");
        assert_eq!(pe.section_raw(s).len(), 0x200);
        assert_eq!(&*pe.section_memory(s), b"hello");
    }

    #[test]
    fn authenticode_skips_checksum_and_cert_entry_and_cert_table() {
        let plain = tiny_pe(b"hello", b"", None);
        // Same image with another CheckSum, a certificate table entry and a certificate
        // appended: the digest must not change.
        let mut signed = tiny_pe(b"hello", &[0xAA; 16], Some((0x400, 16)));
        let o = 0x84 + 20;
        signed[o + 64..o + 68].copy_from_slice(&7u32.to_le_bytes());
        let a = PeFile::parse(&plain, "a").unwrap().authenticode().unwrap();
        let b = PeFile::parse(&signed, "b").unwrap().authenticode().unwrap();
        assert_eq!(a, b);
        // Hand-computed: everything except bytes [o+64, o+68) and [o+144, o+152).
        let mut expect = Sha256::new();
        expect.update(&plain[..o + 64]);
        expect.update(&plain[o + 68..o + 144]);
        expect.update(&plain[o + 152..]);
        assert_eq!(a.sha256.to_vec(), expect.finalize().to_vec());
        assert!(a.length_multiple_of_8);
    }

    #[test]
    fn trailing_data_is_hashed_without_padding() {
        let img = tiny_pe(b"x", b"abc", None);
        let pe = PeFile::parse(&img, "t").unwrap();
        let a = pe.authenticode().unwrap();
        assert!(!a.length_multiple_of_8);
        let ranges = pe.authenticode_ranges().unwrap();
        assert_eq!(ranges.last().unwrap().clone(), 0x400..0x403);
        // Changing a trailing byte changes the digest.
        let mut img2 = img.clone();
        *img2.last_mut().unwrap() = b'z';
        let b = PeFile::parse(&img2, "t").unwrap().authenticode().unwrap();
        assert_ne!(a.sha256, b.sha256);
    }

    #[test]
    fn a_forged_virtual_size_is_refused() {
        // Found by the `pe` fuzz target: `.osrel` with VirtualSize 0xfffffff0 in 1.5 KiB.
        let data = include_bytes!("../tests/fixtures/pe/huge-virtual-size.bin");
        let e = PeFile::parse(data, "forged.efi").unwrap_err().to_string();
        assert!(e.contains("forged.efi") && e.contains("VirtualSize"), "{e}");
        assert!(e.contains("by more than 256 MiB"), "{e}");
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = PeFile::parse(b"ZM", "bad.efi").unwrap_err().to_string();
        assert!(e.contains("bad.efi") && e.contains("DOS signature"), "{e}");
        let mut img = tiny_pe(b"x", b"", None);
        img.truncate(0x300);
        let s = 0x84 + 20 + 240;
        img[s + 16..s + 20].copy_from_slice(&0x400u32.to_le_bytes());
        let e = PeFile::parse(&img, "cut.efi").unwrap_err().to_string();
        assert!(e.contains("cut.efi") && e.contains(".text"), "{e}");
        let mut img = tiny_pe(b"x", &[1; 8], Some((0x400, 64)));
        img.truncate(0x408);
        let pe = PeFile::parse(&img, "cert.efi").unwrap();
        let e = pe.authenticode().unwrap_err().to_string();
        assert!(
            e.contains("cert.efi") && e.contains("Certificate Table"),
            "{e}"
        );
    }
}

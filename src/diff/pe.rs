//! PE files and Unified Kernel Images: header fields, the section table, then each section
//! by what it holds.

use std::collections::BTreeMap;

use super::{
    Blob, Collector, DiffError, Difference, Kind, Src, Structure, byte_difference, byte_summary,
    first_difference, join, text,
};
use crate::pe::{PeFile, Section};

/// Sections that hold text.
const TEXT_SECTIONS: &[&str] = &[
    ".cmdline", ".osrel", ".uname", ".sbat", ".pcrpkey", ".pcrsig", ".profile",
];

pub(crate) fn diff(a: &Src, b: &Src, loc: &str, c: &mut Collector) -> Result<Structure, DiffError> {
    let (Some(x), Some(y)) = (a.load()?, b.load()?) else {
        return Ok(Structure::Unreadable("too large to load".into()));
    };
    let pa = match PeFile::parse(&x, a.name()) {
        Ok(p) => p,
        Err(e) => return Ok(Structure::Unreadable(e.to_string())),
    };
    let pb = match PeFile::parse(&y, b.name()) {
        Ok(p) => p,
        Err(e) => return Ok(Structure::Unreadable(e.to_string())),
    };
    let loc = join(loc, "efi");

    let mut h = Difference::changed(&join(&loc, "headers"));
    let hex = |v: u64| format!("{v:#x}");
    h.field(
        "timestamp",
        hex(pa.coff.time_date_stamp.into()),
        hex(pb.coff.time_date_stamp.into()),
    );
    h.field(
        "characteristics",
        hex(pa.coff.characteristics.into()),
        hex(pb.coff.characteristics.into()),
    );
    h.field(
        "entry point",
        hex(pa.optional.address_of_entry_point.into()),
        hex(pb.optional.address_of_entry_point.into()),
    );
    h.field(
        "image base",
        hex(pa.optional.image_base),
        hex(pb.optional.image_base),
    );
    h.field(
        "size of image",
        hex(pa.optional.size_of_image.into()),
        hex(pb.optional.size_of_image.into()),
    );
    h.field(
        "checksum",
        hex(pa.optional.checksum.into()),
        hex(pb.optional.checksum.into()),
    );
    h.field(
        "dll characteristics",
        hex(pa.optional.dll_characteristics.into()),
        hex(pb.optional.dll_characteristics.into()),
    );
    let cert = |p: &PeFile| {
        let d = p.certificate_table();
        if d.size == 0 {
            "none".to_string()
        } else {
            format!("{} bytes", d.size)
        }
    };
    h.field("signature", cert(&pa), cert(&pb));
    let names = |p: &PeFile| {
        p.sections
            .iter()
            .map(Section::name)
            .collect::<Vec<_>>()
            .join(" ")
    };
    h.field("sections", names(&pa), names(&pb));
    c.push(h);

    let by_name = |p: &PeFile<'_>| -> BTreeMap<String, Section> {
        p.sections.iter().map(|s| (s.name(), s.clone())).collect()
    };
    let (sa, sb) = (by_name(&pa), by_name(&pb));
    // In A's section order, then the sections only in B.
    let mut order: Vec<String> = pa.sections.iter().map(Section::name).collect();
    order.extend(
        pb.sections
            .iter()
            .map(Section::name)
            .filter(|n| !sa.contains_key(n)),
    );
    order.dedup();
    for name in order {
        let sloc = join(&loc, &name);
        match (sa.get(&name), sb.get(&name)) {
            (Some(s), None) => c.push(Difference::only(
                &sloc,
                Kind::Removed,
                format!("section, {} bytes", s.virtual_size),
            )),
            (None, Some(s)) => c.push(Difference::only(
                &sloc,
                Kind::Added,
                format!("section, {} bytes", s.virtual_size),
            )),
            (Some(s), Some(t)) => {
                let mut d = Difference::changed(&sloc);
                d.field("virtual size", s.virtual_size, t.virtual_size);
                d.field(
                    "virtual address",
                    hex(s.virtual_address.into()),
                    hex(t.virtual_address.into()),
                );
                d.field(
                    "flags",
                    hex(s.characteristics.into()),
                    hex(t.characteristics.into()),
                );
                let (ma, mb) = (section_bytes(&pa, s), section_bytes(&pb, t));
                if ma == mb {
                    c.push(d);
                    continue;
                }
                diff_section(&name, &sloc, &ma, &mb, d, c)?;
            }
            (None, None) => {}
        }
    }
    Ok(Structure::Parsed)
}

/// Compares one section's bytes by what it holds; `d` carries its header changes.
fn diff_section(
    name: &str,
    loc: &str,
    a: &[u8],
    b: &[u8],
    mut d: Difference,
    c: &mut Collector,
) -> Result<(), DiffError> {
    if TEXT_SECTIONS.contains(&name) {
        let t = text::diff_text(loc, a, b);
        d.changes.extend(t.changes);
        d.content_offset = t.content_offset;
        d.note = t.note;
        d.lines = t.lines;
        c.push(d);
        return Ok(());
    }
    let ba = Blob::mem(name, a.to_vec());
    let bb = Blob::mem(name, b.to_vec());
    if name == ".linux" {
        d.field("size", a.len(), b.len());
        d.content_offset = first_difference(a, b);
        let kind = |k: &[u8]| {
            if is_bzimage(k) {
                "bzImage"
            } else {
                "not a bzImage"
            }
        };
        d.field("kind", kind(a), kind(b));
        let version = |k: &[u8]| kernel_version(k).unwrap_or_else(|| "unknown".into());
        d.field("version", version(a), version(b));
        let s = byte_summary(&ba.whole(), &bb.whole())?;
        d.note = Some(format!("{} byte(s) differ", s.differing));
        c.push(d);
        return Ok(());
    }
    if name == ".initrd" {
        d.content_offset = first_difference(a, b);
        c.push(d);
        return super::diff_blobs(&ba.whole(), &bb.whole(), "initrd", loc, c);
    }
    let s = byte_summary(&ba.whole(), &bb.whole())?;
    let bytes = byte_difference(loc, &s, None);
    d.changes.extend(bytes.changes);
    d.content_offset = bytes.content_offset;
    d.note = bytes.note;
    c.push(d);
    Ok(())
}

/// A section as the loader maps it; a (hostile) virtual size far beyond the raw data is not
/// zero-filled in memory: the raw data is compared instead.
fn section_bytes<'a>(p: &PeFile<'a>, s: &Section) -> std::borrow::Cow<'a, [u8]> {
    if u64::from(s.virtual_size) > u64::from(s.size_of_raw_data) + (64 << 20) {
        std::borrow::Cow::Borrowed(p.section_raw(s))
    } else {
        p.section_memory(s)
    }
}

/// Whether `k` is an x86 bzImage (the `HdrS` boot protocol signature at 0x202).
fn is_bzimage(k: &[u8]) -> bool {
    k.get(0x202..0x206) == Some(b"HdrS")
}

/// The kernel version string a bzImage points to from its setup header (`kernel_version`
/// at 0x20e, an offset from 0x200), e.g. `6.12.48+deb13-cloud-amd64 (…) #1 SMP …`.
fn kernel_version(k: &[u8]) -> Option<String> {
    if !is_bzimage(k) {
        return None;
    }
    let ptr = u16::from_le_bytes(k.get(0x20e..0x210)?.try_into().ok()?) as usize;
    if ptr == 0 {
        return None;
    }
    let start = ptr + 0x200;
    let rest = k.get(start..)?;
    let end = rest.iter().take(256).position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_version_is_read_from_the_setup_header() {
        let mut k = vec![0u8; 0x1000];
        k[0x202..0x206].copy_from_slice(b"HdrS");
        // kernel_version points 0x200 bytes before the string.
        k[0x20e..0x210].copy_from_slice(&0x600u16.to_le_bytes());
        k[0x800..0x80f].copy_from_slice(b"6.12.48-cloud \0");
        assert_eq!(kernel_version(&k).as_deref(), Some("6.12.48-cloud "));
        k[0x202] = b'X';
        assert_eq!(kernel_version(&k), None);
        assert!(!is_bzimage(&k));
    }
}

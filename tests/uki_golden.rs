//! The layout `UkiBuilder` gives a small synthetic stub (unaligned raw sizes, a COFF symbol
//! table at the end, an `.sbat` to merge), compared with tests/golden/uki/layout.txt: header
//! fields, the section table and the SHA-256 of the whole file. Offline; the same rules are
//! checked against the real ukify in tests/uki_ukify.rs. Regenerate with
//! HERMETIC_REGENERATE_GOLDEN=1 and review the diff.

use std::fmt::Write as _;
use std::path::Path;

#[path = "uki_support.rs"]
mod uki_support;

use hermetic::image::uki::UkiBuilder;
use hermetic::pe::PeFile;
use sha2::{Digest, Sha256};

fn dump(uki: &[u8]) -> String {
    let pe = PeFile::parse(uki, "uki").unwrap();
    let mut s = String::new();
    let _ = writeln!(s, "length {:#x}", uki.len());
    let _ = writeln!(s, "sha256 {}", hex::encode(Sha256::digest(uki)));
    let c = &pe.coff;
    let _ = writeln!(
        s,
        "coff sections={} timestamp={:#x} symtab={:#x} nsyms={} characteristics={:#x}",
        c.number_of_sections,
        c.time_date_stamp,
        c.pointer_to_symbol_table,
        c.number_of_symbols,
        c.characteristics
    );
    let o = &pe.optional;
    let _ = writeln!(
        s,
        "optional initialized={:#x} image={:#x} headers={:#x} checksum={:#x} dll={:#x}",
        o.size_of_initialized_data,
        o.size_of_image,
        o.size_of_headers,
        o.checksum,
        o.dll_characteristics
    );
    for sec in &pe.sections {
        let _ = writeln!(
            s,
            "{:<9} vs={:#08x} va={:#08x} raw={:#08x} ptr={:#08x} flags={:#010x}",
            sec.name(),
            sec.virtual_size,
            sec.virtual_address,
            sec.size_of_raw_data,
            sec.pointer_to_raw_data,
            sec.characteristics
        );
    }
    let sbat = pe.section_memory(pe.section(".sbat").unwrap());
    let _ = writeln!(s, "sbat {:?}", String::from_utf8_lossy(&sbat));
    s
}

#[test]
fn layout_of_an_old_style_stub() {
    let mut b = UkiBuilder::new(uki_support::old_style_stub(), "old-style stub");
    b.linux = Some(b"HALLO\n".to_vec());
    b.initrds = vec![b"foo".to_vec(), b"barbaz".to_vec()];
    b.cmdline = Some(b"console=ttyS0".to_vec());
    b.os_release = Some(b"ID=test\n".to_vec());
    b.uname = Some("6.1.0-test".into());
    let text = dump(&b.build().unwrap());
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/uki/layout.txt");
    if std::env::var("HERMETIC_REGENERATE_GOLDEN").as_deref() == Ok("1") {
        fs_err::create_dir_all(golden.parent().unwrap()).unwrap();
        fs_err::write(&golden, &text).unwrap();
        return;
    }
    let want = fs_err::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{e}\nrun with HERMETIC_REGENERATE_GOLDEN=1, then review it"));
    assert!(
        want == text,
        "the layout differs from {}:\n{text}\nregenerate with HERMETIC_REGENERATE_GOLDEN=1 if \
         intended, and review the diff",
        golden.display()
    );
}

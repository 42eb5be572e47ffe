//! The PE parser (UKIs, systemd-stub, kernels): any bytes parse or fail cleanly, and what
//! parses can be walked: sections, their bytes, and the Authenticode ranges and hash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pe) = hermetic::pe::PeFile::parse(data, "fuzz.efi") else {
        return;
    };
    let _ = pe.section_table_end();
    let _ = pe.certificate_table();
    for name in [".linux", ".initrd", ".osrel", ".cmdline", ".sbat"] {
        if let Some(s) = pe.section(name) {
            let _ = pe.section_raw(s);
            // The parser bounds the zero fill (it once accepted any VirtualSize: 4 GiB
            // from a 1.5 KiB file), so the mapped section is always affordable.
            let _ = pe.section_memory(s);
        }
    }
    if let Ok(ranges) = pe.authenticode_ranges() {
        for r in &ranges {
            assert!(r.start <= r.end && r.end <= data.len(), "{r:?}");
        }
        let _ = pe.authenticode();
    }
});

//! The tar manifest reader (`hermetic diff`, `--rebuild` checks): any archive (plain or
//! gzip/xz/zstd by magic) reads or fails cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    std::io::Write::write_all(&mut file, data).expect("write the input");
    if let Ok(manifest) = hermetic::treetar::manifest_tar(file.path()) {
        for (name, entry) in &manifest {
            assert!(!name.starts_with(b"/") && !name.ends_with(b"/"), "{name:?}");
            if entry.kind == hermetic::treetar::EntryType::File {
                assert!(entry.sha256.is_some(), "{name:?}");
            }
        }
    }
});

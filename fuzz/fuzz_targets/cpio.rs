//! The newc cpio writer (initrds, systemd-stub's `/.extra` archives). hermetic has no cpio
//! reader of its own, so this target checks the writer against a strict reader written here:
//! whatever names and contents go in come out, every record is 4-byte aligned, the trailer
//! ends the archive.
#![no_main]

use hermetic::image::cpio::{Header, HexCase, MemEntry, stub_extra_cpio, write_entries};
use libfuzzer_sys::fuzz_target;

/// (name, mode, data) of each record before the trailer.
fn read_newc(archive: &[u8]) -> Vec<(Vec<u8>, u32, Vec<u8>)> {
    let field = |rec: &[u8], i: usize| -> u32 {
        let hex = std::str::from_utf8(&rec[6 + 8 * i..14 + 8 * i]).expect("hex field");
        u32::from_str_radix(hex, 16).expect("hex field")
    };
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        assert_eq!(pos % 4, 0, "record at {pos} is not aligned");
        let rec = &archive[pos..pos + 110];
        assert_eq!(&rec[..6], b"070701");
        let mode = field(rec, 1);
        let filesize = field(rec, 6) as usize;
        let namesize = field(rec, 11) as usize;
        let name_start = pos + 110;
        let name = &archive[name_start..name_start + namesize];
        assert_eq!(name.last(), Some(&0), "name not NUL-terminated");
        let name = name[..namesize - 1].to_vec();
        let data_start = (name_start + namesize).next_multiple_of(4);
        let data = archive[data_start..data_start + filesize].to_vec();
        pos = (data_start + filesize).next_multiple_of(4);
        if name == b"TRAILER!!!" {
            assert_eq!(pos, archive.len(), "bytes after the trailer");
            return out;
        }
        out.push((name, mode, data));
    }
}

fuzz_target!(|input: (String, Vec<u8>, Vec<(Vec<u8>, u32, Vec<u8>)>)| {
    let (name, data, entries) = input;
    if !name.contains('\0') {
        let stub = stub_extra_cpio(&name, &data);
        let records = read_newc(&stub);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, b".extra");
        assert_eq!(records[1].0, format!(".extra/{name}").as_bytes());
        assert_eq!(records[1].2, data);
    }
    let entries: Vec<MemEntry> = entries
        .into_iter()
        .filter(|(n, _, _)| !n.contains(&0) && n.as_slice() != b"TRAILER!!!")
        .map(|(name, mode, data)| MemEntry {
            name,
            header: Header {
                ino: 1,
                mode,
                uid: 0,
                gid: 0,
                nlink: 1,
                mtime: 0,
                filesize: 0,
                rdevmajor: 0,
                rdevminor: 0,
            },
            data,
        })
        .collect();
    for case in [HexCase::Lower, HexCase::Upper] {
        let archive = write_entries(&entries, case);
        let records = read_newc(&archive);
        assert_eq!(records.len(), entries.len());
        for (r, e) in records.iter().zip(&entries) {
            assert_eq!((&r.0, r.1, &r.2), (&e.name, e.header.mode, &e.data));
        }
    }
});

//! The GCP import tarball against GNU tar, gzip and golden files.

mod image_util;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use hermetic::image::gcp;
use image_util::{golden, pseudo_random, run, sh, sparse_file, sparse_hexdump_file, write_at};
use proptest::prelude::*;

/// A sparse `disk.raw` whose data are whole 4 KiB file-system blocks with no zero 512-byte
/// block inside, so that the file system's holes (what GNU tar sees) are exactly the
/// all-zero blocks (what we see).
fn aligned_disk(dir: &Path, size: u64, blocks: &[u64]) -> std::path::PathBuf {
    let path = dir.join("disk.raw");
    sparse_file(&path, size);
    for &b in blocks {
        let data: Vec<u8> = pseudo_random(b + 1, 4096).iter().map(|x| x | 1).collect();
        write_at(&path, b * 4096, &data);
    }
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn gnu_tar(raw: &Path) -> Vec<u8> {
    let out = raw.with_file_name("gnu.tar");
    sh(&format!(
        "cd '{}' && tar --format=oldgnu -S --mtime=@0 --owner=root:0 --group=root:0 -cf '{}' disk.raw",
        raw.parent().unwrap().display(),
        out.display()
    ));
    fs_err::read(out).unwrap()
}

fn ours(raw: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    let n = gcp::write_import_tar(raw, &mut v).unwrap();
    assert_eq!(n, v.len() as u64);
    v
}

#[test]
fn tar_equals_gnu_tar_oldgnu_sparse() {
    let cases: Vec<(u64, Vec<u64>)> = vec![
        // ends in a hole
        (10 << 20, vec![0, 100, 101]),
        // ends in data, 5 extents: one extension block
        (1 << 20, vec![0, 2, 4, 6, 8, 255]),
        // 30 extents: two extension blocks
        (1 << 20, (0..30).map(|i| i * 3).collect()),
        // all hole
        (64 << 10, vec![]),
    ];
    for (size, blocks) in cases {
        let dir = tempfile::tempdir().unwrap();
        let raw = aligned_disk(dir.path(), size, &blocks);
        let gnu = gnu_tar(&raw);
        let ours = ours(&raw);
        assert!(
            ours == gnu,
            "differs from GNU tar for size {size} blocks {blocks:?}"
        );
    }
}

fn extract_and_compare(raw: &Path, targz: &Path) {
    let listing = run(Command::new("tar").env("TZ", "UTC").arg("-tvzf").arg(targz));
    let size = fs_err::metadata(raw).unwrap().len();
    let expected = format!("-rw-r--r-- root/root {size} 1970-01-01 00:00 disk.raw");
    let line = listing.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(line, expected);
    let dest = tempfile::tempdir().unwrap();
    run(Command::new("tar")
        .arg("-xSzf")
        .arg(targz)
        .arg("-C")
        .arg(dest.path()));
    let back = dest.path().join("disk.raw");
    run(Command::new("cmp").arg(raw).arg(&back));
    // Holes survive the round trip: the extracted file allocates no more than the original.
    assert!(
        fs_err::metadata(&back).unwrap().blocks() <= fs_err::metadata(raw).unwrap().blocks() + 8
    );
}

#[test]
fn gzip_header_and_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let raw = aligned_disk(dir.path(), 1 << 30, &[0, 1, 256, 100_000, (1 << 18) - 1]);
    let out = dir.path().join("image-import.tar.gz");
    gcp::write_import_tar_gz(&raw, &out).unwrap();
    let gz = fs_err::read(&out).unwrap();
    // magic, deflate, no flags (no name), mtime 0, xfl, OS 3 (Unix)
    assert_eq!(&gz[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    assert_eq!(gz[9], 3);
    run(Command::new("gzip").arg("-t").arg(&out));
    extract_and_compare(&raw, &out);
    // Deterministic.
    let again = dir.path().join("again.tar.gz");
    gcp::write_import_tar_gz(&raw, &again).unwrap();
    assert!(fs_err::read(&again).unwrap() == gz);
}

#[test]
fn golden_small_import() {
    let dir = tempfile::tempdir().unwrap();
    let raw = aligned_disk(dir.path(), 2 << 20, &[0, 7]);
    let out = dir.path().join("small-import.tar.gz");
    gcp::write_import_tar_gz(&raw, &out).unwrap();
    golden("small-import.tar.gz.txt", &sparse_hexdump_file(&out));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]
    #[test]
    fn random_disks_round_trip_through_gnu_tar(
        sectors in 1u64..20_000,
        blocks in prop::collection::vec((0u64..20_000, 1usize..30_000), 0..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let size = sectors * 512;
        sparse_file(&raw, size);
        for (i, (s, len)) in blocks.iter().enumerate() {
            let at = (s % sectors) * 512;
            let len = (*len).min((size - at) as usize);
            // Random bytes with zero runs inside, so data blocks can be all zero.
            let mut data = pseudo_random(i as u64 + 1, len);
            for z in data.iter_mut().skip(len / 3).take(len / 3) {
                *z = 0;
            }
            write_at(&raw, at, &data);
        }
        let out = dir.path().join("x-import.tar.gz");
        gcp::write_import_tar_gz(&raw, &out).unwrap();
        extract_and_compare(&raw, &out);
    }
}

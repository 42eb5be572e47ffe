//! The qcow2 writer against qemu-img and golden files.

mod image_util;

use std::path::Path;
use std::process::Command;

use hermetic::image::qcow2;
use image_util::{golden, pseudo_random, run, sparse_file, sparse_hexdump_file, write_at};
use proptest::prelude::*;

fn raw_disk(path: &Path, size: u64, blocks: &[(u64, usize)]) {
    sparse_file(path, size);
    for (i, &(offset, len)) in blocks.iter().enumerate() {
        let len = len.min((size - offset.min(size)) as usize);
        write_at(path, offset, &pseudo_random(i as u64 + 1, len));
    }
}

fn check(raw: &Path, image: &Path) {
    let out = run(Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(image));
    assert!(
        out.contains("No errors were found"),
        "qemu-img check:\n{out}"
    );
    let out = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(raw)
        .arg(image));
    assert!(out.contains("Images are identical"), "{out}");
    let info: serde_json::Value = serde_json::from_str(&run(Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "qcow2"])
        .arg(image)))
    .unwrap();
    assert_eq!(info["virtual-size"], fs_err::metadata(raw).unwrap().len());
    assert_eq!(info["cluster-size"], 65536);
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
}

#[test]
fn qemu_img_checks_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    // Data in the first cluster, across a cluster boundary, and in a partial last cluster.
    let size = (5 << 20) + 1536;
    raw_disk(
        &raw,
        size,
        &[(0, 100), (65536 - 10, 20), (size - 1000, 1000)],
    );
    let out = dir.path().join("disk.qcow2");
    let len = qcow2::write(&raw, &out).unwrap();
    assert_eq!(len, fs_err::metadata(&out).unwrap().len());
    check(&raw, &out);
    // header, refcount table, L1, one L2, 3 data clusters, one refcount block
    assert_eq!(len, 8 * 65536);
    golden("small.qcow2.txt", &sparse_hexdump_file(&out));
}

#[test]
fn large_sparse_disk_uses_several_l2_tables() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let size = 3u64 << 30;
    raw_disk(
        &raw,
        size,
        &[
            (0, 4096),
            (600 << 20, 65536 * 3),
            ((2 << 30) + 12345, 70_000),
            (size - 512, 512),
        ],
    );
    let out = dir.path().join("disk.qcow2");
    qcow2::write(&raw, &out).unwrap();
    check(&raw, &out);
    // Same input, same bytes.
    let again = dir.path().join("again.qcow2");
    qcow2::write(&raw, &again).unwrap();
    assert_eq!(
        image_util::sha256_file(&out),
        image_util::sha256_file(&again)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]
    #[test]
    fn random_raw_disks_round_trip(
        sectors in 1u64..40_000,
        blocks in prop::collection::vec((0u64..40_000, 1usize..150_000), 0..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let blocks: Vec<(u64, usize)> =
            blocks.into_iter().map(|(s, l)| ((s % sectors) * 512, l)).collect();
        raw_disk(&raw, sectors * 512, &blocks);
        let out = dir.path().join("disk.qcow2");
        qcow2::write(&raw, &out).unwrap();
        check(&raw, &out);
    }
}

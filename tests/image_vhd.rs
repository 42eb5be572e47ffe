//! The fixed VHD writer against qemu-img and golden files.

mod image_util;

use std::path::Path;
use std::process::Command;

use hermetic::image::vhd::{self, VhdOptions};
use image_util::{golden, pseudo_random, run, sparse_file, sparse_hexdump_file, write_at};
use proptest::prelude::*;

const SEED: &str = "630b5f72-a36a-4e83-b23d-6ef47c82fd9c";

fn raw_disk(path: &Path, size: u64, blocks: &[(u64, usize)]) {
    sparse_file(path, size);
    for (i, &(offset, len)) in blocks.iter().enumerate() {
        write_at(path, offset, &pseudo_random(i as u64 + 1, len));
    }
}

fn info(path: &Path) -> serde_json::Value {
    let out = run(Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "vpc"])
        .arg(path));
    serde_json::from_str(&out).unwrap()
}

fn compare_identical(raw: &Path, vhd: &Path) {
    let out = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "vpc"])
        .arg(raw)
        .arg(vhd));
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn qemu_reads_it_and_it_equals_qemu_img_output_but_for_time_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    // Not a whole MiB: the VHD rounds it up.
    let size = 3 * (1 << 20) + 20 * 1024;
    raw_disk(
        &raw,
        size,
        &[(0, 512), (1 << 20, 70_000), (size - 4096, 4096)],
    );
    let out = dir.path().join("disk.vhd");
    let opts = VhdOptions::new(0, SEED);
    let virtual_size = vhd::write_fixed_vhd(&raw, &out, &opts).unwrap();
    assert_eq!(virtual_size, 4 << 20);
    assert_eq!(fs_err::metadata(&out).unwrap().len(), (4 << 20) + 512);
    let i = info(&out);
    assert_eq!(i["format"], "vpc");
    assert_eq!(i["virtual-size"], 4 << 20);
    compare_identical(&raw, &out);

    // The seed's raw-to-vhd.sh: resize to a whole MiB, convert with force_size.
    let resized = dir.path().join("resized.raw");
    fs_err::copy(&raw, &resized).unwrap();
    run(Command::new("qemu-img")
        .args(["resize", "-q", "-f", "raw"])
        .arg(&resized)
        .arg((4u64 << 20).to_string()));
    let theirs = dir.path().join("qemu.vhd");
    run(Command::new("qemu-img")
        .args([
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            "subformat=fixed,force_size",
        ])
        .arg(&resized)
        .arg(&theirs));
    let mut a = fs_err::read(&out).unwrap();
    let mut b = fs_err::read(&theirs).unwrap();
    assert_eq!(a.len(), b.len());
    let footer = a.len() - 512;
    for v in [&mut a, &mut b] {
        // timestamp, checksum, unique id
        v[footer + 24..footer + 28].fill(0);
        v[footer + 64..footer + 84].fill(0);
    }
    assert!(
        a == b,
        "our VHD differs from qemu-img's beyond timestamp, checksum and id"
    );
    golden("small.vhd.txt", &sparse_hexdump_file(&out));
}

#[test]
fn footer_is_deterministic_and_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    raw_disk(&raw, 1 << 20, &[(4096, 100)]);
    let one = dir.path().join("1.vhd");
    let two = dir.path().join("2.vhd");
    vhd::write_fixed_vhd(&raw, &one, &VhdOptions::new(1_700_000_000, SEED)).unwrap();
    vhd::write_fixed_vhd(&raw, &two, &VhdOptions::new(1_700_000_000, SEED)).unwrap();
    assert!(fs_err::read(&one).unwrap() == fs_err::read(&two).unwrap());
    let f = fs_err::read(&one).unwrap();
    let footer = &f[f.len() - 512..];
    // 1_700_000_000 - 946_684_800 seconds since 2000.
    assert_eq!(
        u32::from_be_bytes(footer[24..28].try_into().unwrap()),
        753_315_200
    );
    vhd::write_fixed_vhd(&raw, &two, &VhdOptions::new(1_700_000_000, "other")).unwrap();
    let g = fs_err::read(&two).unwrap();
    assert_ne!(&g[g.len() - 512 + 68..g.len() - 512 + 84], &footer[68..84]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]
    #[test]
    fn random_raw_disks_compare_identical(
        sectors in 1u64..12_000,
        blocks in prop::collection::vec((0u64..12_000, 1usize..20_000), 0..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let size = sectors * 512;
        let blocks: Vec<(u64, usize)> = blocks
            .into_iter()
            .map(|(s, l)| ((s % sectors) * 512, l))
            .collect();
        raw_disk(&raw, size, &blocks);
        let size = fs_err::metadata(&raw).unwrap().len();
        let out = dir.path().join("disk.vhd");
        let v = vhd::write_fixed_vhd(&raw, &out, &VhdOptions::new(0, SEED)).unwrap();
        prop_assert_eq!(v, size.div_ceil(1 << 20) * (1 << 20));
        prop_assert_eq!(&info(&out)["virtual-size"], &serde_json::json!(v));
        compare_identical(&raw, &out);
    }
}

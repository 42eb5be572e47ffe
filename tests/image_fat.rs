//! The FAT32 writer against dosfstools (`fsck.fat`), mtools and golden files.

mod image_util;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use hermetic::image::fat::FatBuilder;
use image_util::{golden, pseudo_random, run, sha256_file, sparse_hexdump_file};
use proptest::prelude::*;

const SMALL: u64 = 34 << 20;

/// `fsck.fat -n` must find nothing to fix (exit 0, no message besides the summary).
fn fsck(image: &Path) {
    let out = run(Command::new("fsck.fat").arg("-n").arg(image));
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("fsck.fat ") && !l.contains(" files, ") && !l.is_empty())
        .collect();
    assert!(lines.is_empty(), "fsck.fat -n complains:\n{out}");
}

/// Every file of the image, copied out with mcopy, by long name.
fn mtools_files(image: &Path, names: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    names
        .iter()
        .map(|n| {
            let out = dir.path().join("out");
            run(Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-n", "-i"])
                .arg(image)
                .arg(format!("::{n}"))
                .arg(&out));
            let data = fs_err::read(&out).unwrap();
            fs_err::remove_file(&out).unwrap();
            (n.to_string(), data)
        })
        .collect()
}

/// All paths mtools lists, recursively, with long names.
fn mtools_listing(image: &Path) -> Vec<String> {
    let out = run(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-/", "-b", "-i"])
        .arg(image)
        .arg("::"));
    let mut v: Vec<String> = out
        .lines()
        .map(|l| {
            l.trim_start_matches("::/")
                .trim_end_matches('/')
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

fn sample(builder: &mut FatBuilder) -> BTreeMap<String, Vec<u8>> {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("EFI/BOOT/BOOTX64.EFI", pseudo_random(1, 3000)),
        ("EFI/Linux/uki with spaces.efi", pseudo_random(2, 700)),
        (
            "loader/entries/hermetic-long-name-0123456789.conf",
            b"title hermetic\n".to_vec(),
        ),
        ("startup.nsh", b"\\EFI\\BOOT\\BOOTX64.EFI\n".to_vec()),
        ("EMPTY.TXT", Vec::new()),
        ("loader/\u{fc}ber.txt", b"unicode\n".to_vec()),
        (
            "loader/entries/hermetic-long-name-0123456789.con",
            b"clash of short names\n".to_vec(),
        ),
    ];
    builder.add_dir("empty dir").unwrap();
    for (p, d) in &files {
        builder.add_file(p, d.clone()).unwrap();
    }
    files.into_iter().map(|(p, d)| (p.to_string(), d)).collect()
}

#[test]
fn fsck_and_mtools_read_the_esp() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("esp.img");
    let mut b = FatBuilder::new(0);
    let files = sample(&mut b);
    b.write_image(&img, SMALL).unwrap();
    fsck(&img);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(mtools_files(&img, &names), files);
    let mut expected: Vec<String> = files.keys().cloned().collect();
    expected.extend(
        [
            "EFI",
            "EFI/BOOT",
            "EFI/Linux",
            "loader",
            "loader/entries",
            "empty dir",
        ]
        .map(String::from),
    );
    expected.sort();
    assert_eq!(mtools_listing(&img), expected);
    // The volume serial, label and the 1980-01-01 timestamps.
    let info = run(Command::new("minfo")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .arg("::"));
    assert!(info.contains("serial number: 12345678"), "{info}");
    assert!(info.contains("disk label=\"ESP        \""), "{info}");
    let listing = run(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .arg("::EFI/BOOT"));
    assert!(
        listing.contains("BOOTX64  EFI      3000 1980-01-01   0:00"),
        "{listing}"
    );
}

#[test]
fn seed_sized_esp_streams_the_uki_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let uki = dir.path().join("uki.efi");
    fs_err::write(&uki, pseudo_random(9, 5 << 20)).unwrap();
    let img = dir.path().join("esp.img");
    let mut b = FatBuilder::new(1_700_000_000);
    b.add_file_from("EFI/BOOT/BOOTX64.EFI", &uki).unwrap();
    b.write_image(&img, 524_288_000).unwrap();
    fsck(&img);
    let got = mtools_files(&img, &["EFI/BOOT/BOOTX64.EFI"]);
    assert!(got["EFI/BOOT/BOOTX64.EFI"] == fs_err::read(&uki).unwrap());
    // 4 KiB clusters at this size, as mkfs.fat chooses.
    let boot = fs_err::read(&img).unwrap();
    assert_eq!(boot[13], 8);
    // Holes: far less than the 500 MiB is allocated.
    use std::os::unix::fs::MetadataExt;
    assert!(fs_err::metadata(&img).unwrap().blocks() * 512 < 16 << 20);
    golden("esp-500MiB.sha256", &format!("{}\n", sha256_file(&img)));
}

#[test]
fn golden_small_esp() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("esp.img");
    let mut b = FatBuilder::new(0);
    sample(&mut b);
    b.write_image(&img, SMALL).unwrap();
    golden("esp-34MiB.img.txt", &sparse_hexdump_file(&img));
}

#[test]
fn directories_spanning_many_clusters() {
    // 300 long names in one directory: ~900 entries, 57 clusters of 512 bytes.
    let mut b = FatBuilder::new(0);
    let mut files = BTreeMap::new();
    for i in 0..300 {
        let path = format!("EFI/many/file number {i:03} with a long name.txt");
        b.add_file(&path, format!("{i}\n").into_bytes()).unwrap();
        files.insert(path, format!("{i}\n").into_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("esp.img");
    b.write_image(&img, SMALL).unwrap();
    fsck(&img);
    let listing = mtools_listing(&img);
    assert_eq!(listing.len(), 302);
    let names: Vec<&str> = files.keys().map(String::as_str).step_by(37).collect();
    let got = mtools_files(&img, &names);
    for n in names {
        assert_eq!(got[n], files[n]);
    }
}

fn names() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "B",
        "readme.txt",
        "README.TXT2",
        "x y z",
        "long file name here.efi",
        "\u{e9}t\u{e9}",
        "dots.in.name.conf",
        // exactly one and two long-name entries (no NUL terminator)
        "abcdefghijklm",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        ".dot",
        "UPPER",
        "lower",
        "MiXeD.Ext",
        "~tilde",
        "n123456789",
    ])
    .prop_map(String::from)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]
    #[test]
    fn random_file_sets_read_back(
        entries in prop::collection::vec(
            (prop::collection::vec(names(), 1..4), 0usize..9000),
            1..14,
        )
    ) {
        let mut b = FatBuilder::new(0);
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (i, (parts, size)) in entries.iter().enumerate() {
            let path = parts.join("/");
            let data = pseudo_random(i as u64 + 1, *size);
            if b.add_file(&path, data.clone()).is_ok() {
                files.insert(path, data);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("esp.img");
        b.write_image(&img, SMALL).unwrap();
        fsck(&img);
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        prop_assert_eq!(mtools_files(&img, &names), files);
    }
}

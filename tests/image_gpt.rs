//! The GPT disk writer against sfdisk, sgdisk, mtools, dosfstools and golden files.

mod image_util;

use std::path::Path;
use std::process::Command;

use hermetic::image::disk::{self, EspDiskLayout, SEED_DISK_GUID, SEED_ESP_GUID};
use hermetic::image::fat::FatBuilder;
use hermetic::image::gpt::{ESP_TYPE_GUID, FIRST_USABLE_LBA, GptDisk, GptPartition, Guid};
use image_util::{golden, pseudo_random, run, sh, sparse_file, sparse_hexdump_file};
use proptest::prelude::*;

fn seed_guids() -> (Guid, Guid) {
    (
        Guid::parse(SEED_DISK_GUID).unwrap(),
        Guid::parse(SEED_ESP_GUID).unwrap(),
    )
}

fn sgdisk_verify(disk: &Path) {
    let out = run(Command::new("sgdisk").arg("-v").arg(disk));
    assert!(out.contains("No problems found"), "sgdisk -v:\n{out}");
}

/// The disk sfdisk makes from the same description, for a byte comparison of the tables.
fn sfdisk_reference(dir: &Path, gpt: &GptDisk) -> std::path::PathBuf {
    let path = dir.join("sfdisk.img");
    sparse_file(&path, gpt.disk_size);
    let mut script = format!("label: gpt\nlabel-id: {}\n", gpt.disk_guid);
    for p in &gpt.partitions {
        script.push_str(&format!(
            "start={}, size={}, type={}, uuid={}, name=\"{}\"\n",
            p.first_lba,
            p.last_lba - p.first_lba + 1,
            p.type_guid,
            p.unique_guid,
            p.name
        ));
    }
    let script_path = dir.join("script");
    fs_err::write(&script_path, script).unwrap();
    sh(&format!(
        "sfdisk -q --no-reread --no-tell-kernel '{}' < '{}'",
        path.display(),
        script_path.display()
    ));
    path
}

fn read_range(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = fs_err::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.file().read_exact_at(&mut buf, offset).unwrap();
    buf
}

/// Our tables equal sfdisk's: LBA 0..34 and the last 33 sectors.
fn assert_tables_equal_sfdisk(ours: &Path, gpt: &GptDisk, dir: &Path) {
    let reference = sfdisk_reference(dir, gpt);
    let n = gpt.disk_size;
    assert!(read_range(ours, 0, 34 * 512) == read_range(&reference, 0, 34 * 512));
    assert!(
        read_range(ours, n - 33 * 512, 33 * 512) == read_range(&reference, n - 33 * 512, 33 * 512)
    );
}

#[test]
fn qemu_disk_matches_sfdisk_and_holds_the_esp() {
    let dir = tempfile::tempdir().unwrap();
    let disk_path = dir.path().join("disk.raw");
    let uki = pseudo_random(3, 5_000);
    let mut esp = FatBuilder::new(0);
    esp.add_file("EFI/BOOT/BOOTX64.EFI", uki.clone()).unwrap();
    let layout = EspDiskLayout::qemu();
    let (dg, eg) = seed_guids();
    disk::write_esp_disk(&disk_path, &layout, &esp, dg, eg).unwrap();

    assert_eq!(fs_err::metadata(&disk_path).unwrap().len(), 525_357_056);
    sgdisk_verify(&disk_path);
    let dump = run(Command::new("sfdisk").arg("--dump").arg(&disk_path));
    let dump: String = dump
        .lines()
        .filter(|l| !l.starts_with("device:"))
        .map(|l| l.replace(disk_path.to_str().unwrap(), "disk.raw") + "\n")
        .collect();
    assert_eq!(
        dump,
        "label: gpt\nlabel-id: 12345678-1234-5678-1234-567812345678\nunit: sectors\n\
         first-lba: 2048\nlast-lba: 1026054\nsector-size: 512\n\n\
         disk.raw1 : start=        2048, size=     1024000, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=87654321-4321-8765-4321-876543218765, name=\"esp\"\n"
    );
    assert_tables_equal_sfdisk(&disk_path, &layout.gpt(dg, eg), dir.path());

    // The ESP inside: mtools reads it at the partition offset, fsck.fat checks it.
    let out = dir.path().join("BOOTX64.EFI");
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@1048576", disk_path.display()))
        .arg("::EFI/BOOT/BOOTX64.EFI")
        .arg(&out));
    assert!(fs_err::read(&out).unwrap() == uki);
    let part = dir.path().join("esp.img");
    sh(&format!(
        "dd if='{}' of='{}' bs=1M skip=1 count=500 conv=sparse status=none && fsck.fat -n '{}'",
        disk_path.display(),
        part.display(),
        part.display()
    ));
    // The boot sector's hidden sectors field is the partition's start.
    let boot = read_range(&disk_path, 1 << 20, 512);
    assert_eq!(u32::from_le_bytes(boot[28..32].try_into().unwrap()), 2048);
    // Written sparse: the 500 MiB disk allocates a few MiB at most.
    use std::os::unix::fs::MetadataExt;
    assert!(fs_err::metadata(&disk_path).unwrap().blocks() * 512 < 8 << 20);
    golden("qemu-disk.raw.txt", &sparse_hexdump_file(&disk_path));
}

#[test]
fn gcp_and_azure_layouts_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (dg, eg) = seed_guids();
    for (name, layout) in [
        ("gcp", EspDiskLayout::gcp(3_000_000)),
        ("azure", EspDiskLayout::azure()),
    ] {
        let path = dir.path().join(format!("{name}.raw"));
        let uki = dir.path().join("uki.efi");
        fs_err::write(&uki, pseudo_random(4, 3000)).unwrap();
        let esp = disk::uki_esp(&uki, 0, hermetic::image::fat::SEED_VOLUME_ID).unwrap();
        disk::write_esp_disk(&path, &layout, &esp, dg, eg).unwrap();
        assert_eq!(fs_err::metadata(&path).unwrap().len(), layout.disk_size);
        sgdisk_verify(&path);
        assert_tables_equal_sfdisk(&path, &layout.gpt(dg, eg), dir.path());
        let out = dir.path().join("back.efi");
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@1048576", path.display()))
            .arg("::EFI/BOOT/BOOTX64.EFI")
            .arg(&out));
        assert!(fs_err::read(&out).unwrap() == fs_err::read(&uki).unwrap());
    }
    assert_eq!(EspDiskLayout::gcp(3_000_000).disk_size, 1 << 30);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn random_tables_equal_sfdisk(
        extra_mib in 0u64..64,
        tail_sectors in 0u64..4096,
        parts in prop::collection::vec((1u64..8192, 0u64..2048), 1..5),
        names in prop::collection::vec("[a-z0-9-]{0,12}", 5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let disk_size = (4 + extra_mib) * (1 << 20) + tail_sectors * 512;
        let mut gpt = GptDisk {
            disk_size,
            disk_guid: Guid(pseudo_random(extra_mib, 16).try_into().unwrap()),
            first_usable_lba: FIRST_USABLE_LBA,
            partitions: Vec::new(),
        };
        let mut next = 2048;
        for (i, (len, gap)) in parts.iter().enumerate() {
            let first = next + gap;
            let last = first + len - 1;
            if last > gpt.last_usable_lba() {
                break;
            }
            gpt.partitions.push(GptPartition {
                type_guid: ESP_TYPE_GUID,
                unique_guid: Guid(pseudo_random(i as u64 + 100, 16).try_into().unwrap()),
                first_lba: first,
                last_lba: last,
                attributes: 0,
                name: names[i].clone(),
            });
            next = last + 1;
        }
        let path = dir.path().join("d.raw");
        sparse_file(&path, disk_size);
        let file = fs_err::OpenOptions::new().write(true).open(&path).unwrap();
        gpt.write(&mut hermetic::image::sink::FileSink::new(file.file(), 0)).unwrap();
        sgdisk_verify(&path);
        assert_tables_equal_sfdisk(&path, &gpt, dir.path());
    }
}

//! The seed's three cloud outputs built from one UKI, end to end, each checked by its real
//! reader, and built twice to the same bytes.

mod image_util;

use std::path::Path;
use std::process::Command;

use hermetic::image::disk::{self, EspDiskLayout, SEED_DISK_GUID, SEED_ESP_GUID};
use hermetic::image::gpt::Guid;
use hermetic::image::vhd::VhdOptions;
use hermetic::image::{gcp, qcow2, vhd};
use image_util::{pseudo_random, run, sh, sha256_file};

const SEED: &str = "630b5f72-a36a-4e83-b23d-6ef47c82fd9c";

/// Builds `<dir>/{gcp-import.tar.gz, azure.vhd, qemu.qcow2}` the way the seed's flavors do.
fn build_all(uki: &Path, dir: &Path) {
    let guids = (
        Guid::parse(SEED_DISK_GUID).unwrap(),
        Guid::parse(SEED_ESP_GUID).unwrap(),
    );
    let uki_size = fs_err::metadata(uki).unwrap().len();
    let esp = disk::uki_esp(uki, 0, hermetic::image::fat::SEED_VOLUME_ID).unwrap();

    let raw = dir.join("gcp.raw");
    disk::write_esp_disk(&raw, &EspDiskLayout::gcp(uki_size), &esp, guids.0, guids.1).unwrap();
    gcp::write_import_tar_gz(&raw, &dir.join("gcp-import.tar.gz")).unwrap();

    let raw = dir.join("azure.raw");
    disk::write_esp_disk(&raw, &EspDiskLayout::azure(), &esp, guids.0, guids.1).unwrap();
    vhd::write_fixed_vhd(&raw, &dir.join("azure.vhd"), &VhdOptions::new(0, SEED)).unwrap();

    let raw = dir.join("qemu.raw");
    disk::write_esp_disk(&raw, &EspDiskLayout::qemu(), &esp, guids.0, guids.1).unwrap();
    qcow2::write(&raw, &dir.join("qemu.qcow2")).unwrap();
}

/// The disk holds a valid GPT and an ESP from which mtools reads the UKI back.
fn check_disk(raw: &Path, uki: &Path) {
    let out = run(Command::new("sgdisk").arg("-v").arg(raw));
    assert!(out.contains("No problems found"), "{out}");
    let back = raw.with_extension("efi");
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@1048576", raw.display()))
        .arg("::EFI/BOOT/BOOTX64.EFI")
        .arg(&back));
    assert!(fs_err::read(&back).unwrap() == fs_err::read(uki).unwrap());
}

#[test]
fn gcp_azure_qemu_outputs_read_back_and_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    let uki = dir.path().join("image.efi");
    fs_err::write(&uki, pseudo_random(42, 3 << 20)).unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    fs_err::create_dir(&a).unwrap();
    fs_err::create_dir(&b).unwrap();
    build_all(&uki, &a);
    build_all(&uki, &b);
    for name in ["gcp-import.tar.gz", "azure.vhd", "qemu.qcow2"] {
        assert_eq!(
            sha256_file(&a.join(name)),
            sha256_file(&b.join(name)),
            "{name} differs between two builds"
        );
    }

    // GCP: tar extracts a 1 GiB disk.raw (holes kept) holding the UKI.
    let x = dir.path().join("x");
    fs_err::create_dir(&x).unwrap();
    run(Command::new("tar")
        .arg("-xSzf")
        .arg(a.join("gcp-import.tar.gz"))
        .arg("-C")
        .arg(&x));
    let raw = x.join("disk.raw");
    assert_eq!(fs_err::metadata(&raw).unwrap().len(), 1 << 30);
    check_disk(&raw, &uki);

    // Azure: qemu reads the VHD as the raw disk.
    let raw = dir.path().join("azure.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "vpc", "-O", "raw"])
        .arg(a.join("azure.vhd"))
        .arg(&raw));
    assert_eq!(fs_err::metadata(&raw).unwrap().len(), 502 << 20);
    check_disk(&raw, &uki);

    // QEMU: qcow2 passes qemu-img check and converts back to the raw disk.
    let out = run(Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(a.join("qemu.qcow2")));
    assert!(out.contains("No errors were found"), "{out}");
    let raw = dir.path().join("qemu.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(a.join("qemu.qcow2"))
        .arg(&raw));
    assert_eq!(fs_err::metadata(&raw).unwrap().len(), 525_357_056);
    check_disk(&raw, &uki);
    sh(&format!(
        "cmp '{}' '{}'",
        raw.display(),
        a.join("qemu.raw").display()
    ));
}

//! `hermetic diff` on real artifacts made by our own writers: UKIs with zstd initrds, GCP
//! import tarballs, qcow2 disks, kernel .config files; through the library and the binary.

#[path = "uki_support.rs"]
mod uki_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use hermetic::diff::{DiffOptions, DiffReport, Difference, Kind, diff_paths};
use hermetic::image::cpio::{InitrdOptions, write_initrd_zstd};
use hermetic::image::disk::{self, EspDiskLayout, SEED_DISK_GUID, SEED_ESP_GUID};
use hermetic::image::gpt::Guid;
use hermetic::image::uki::UkiBuilder;
use hermetic::image::vhd::{self, VhdOptions};
use hermetic::image::{gcp, qcow2};

const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"13\"\nID=debian\n";

fn opts() -> DiffOptions {
    DiffOptions {
        max: 50,
        // Keep the results independent of whether diffoscope is installed.
        diffoscope: false,
    }
}

/// A small initrd tree: a few directories and files, `usr/lib/os-release` given.
fn initrd(dir: &Path, os_release: &str) -> Vec<u8> {
    let root = dir.join("tree");
    fs_err::create_dir_all(root.join("usr/lib")).unwrap();
    fs_err::create_dir_all(root.join("etc")).unwrap();
    fs_err::write(root.join("init"), "#!/bin/sh\nexec /sbin/init\n").unwrap();
    fs_err::write(root.join("etc/hostname"), "hermetic\n").unwrap();
    fs_err::write(root.join("usr/lib/os-release"), os_release).unwrap();
    let mut out = Vec::new();
    let mut o = InitrdOptions::new(1_700_000_000);
    o.zstd_level = 3;
    write_initrd_zstd(&root, &mut out, &o).unwrap();
    out
}

/// A UKI of the synthetic stub, a fake kernel, the initrd of `dir` and `cmdline`.
fn uki(dir: &Path, os_release: &str, cmdline: &str) -> PathBuf {
    fs_err::create_dir_all(dir).unwrap();
    let mut b = UkiBuilder::new(uki_support::old_style_stub(), "synthetic stub");
    b.linux = Some(b"not a real kernel, but bytes\n".repeat(50));
    b.initrds = vec![initrd(dir, os_release)];
    b.cmdline = Some(cmdline.as_bytes().to_vec());
    b.os_release = Some(b"ID=hermetic\n".to_vec());
    b.uname = Some("6.12.0-test".into());
    let path = dir.join("image.efi");
    fs_err::write(&path, b.build().unwrap()).unwrap();
    path
}

fn at<'a>(r: &'a DiffReport, location: &str) -> &'a Difference {
    r.differences
        .iter()
        .find(|d| d.location == location)
        .unwrap_or_else(|| panic!("no difference at {location}:\n{r}"))
}

fn field<'a>(d: &'a Difference, name: &str) -> (&'a str, &'a str) {
    let c = d
        .changes
        .iter()
        .find(|c| c.field == name)
        .unwrap_or_else(|| panic!("no change of {name} in {d}"));
    (&c.a, &c.b)
}

fn hermetic(args: &[&Path], extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .arg("diff")
        .args(extra)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn ukis_differing_in_one_initrd_file_name_that_cpio_path_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let changed = OS_RELEASE.replace("VERSION_ID=\"13\"", "VERSION_ID=\"13.1\"");
    let a = uki(&dir.path().join("a"), OS_RELEASE, "console=ttyS0");
    let b = uki(&dir.path().join("b"), &changed, "console=ttyS0");
    let r = diff_paths(&a, &b, &opts()).unwrap();
    assert!(!r.is_empty());

    let d = at(&r, "efi:.initrd:cpio:usr/lib/os-release");
    assert_eq!(
        field(d, "size"),
        (
            OS_RELEASE.len().to_string().as_str(),
            changed.len().to_string().as_str()
        )
    );
    let offset = OS_RELEASE
        .bytes()
        .zip(changed.bytes())
        .position(|(x, y)| x != y)
        .unwrap() as u64;
    assert_eq!(d.content_offset, Some(offset));
    // The section that holds it is named too, with its (compressed) first differing byte.
    assert!(at(&r, "efi:.initrd").content_offset.is_some(), "{r}");
    // No other cpio entry is named, and the kernel and text sections are not.
    let cpio: Vec<&str> = r
        .differences
        .iter()
        .map(|d| d.location.as_str())
        .filter(|l| l.contains(":cpio:"))
        .collect();
    assert_eq!(cpio, ["efi:.initrd:cpio:usr/lib/os-release"], "{r}");
    for l in ["efi:.linux", "efi:.cmdline", "efi:.osrel", "efi:.uname"] {
        assert!(!r.differences.iter().any(|d| d.location == l), "{l}: {r}");
    }

    // The binary prints the same line and exits with the mismatch code.
    let (code, out) = hermetic(&[&a, &b], &["--no-diffoscope"]);
    assert_eq!(code, 4, "{out}");
    let line = format!(
        "efi:.initrd:cpio:usr/lib/os-release  size {} → {}, content differs from offset {offset}",
        OS_RELEASE.len(),
        changed.len()
    );
    assert!(out.contains(&line), "{out}");
}

#[test]
fn a_differing_cmdline_is_a_text_diff() {
    let dir = tempfile::tempdir().unwrap();
    let a = uki(&dir.path().join("a"), OS_RELEASE, "console=ttyS0 rw");
    let b = uki(&dir.path().join("b"), OS_RELEASE, "console=ttyS0 ro quiet");
    let r = diff_paths(&a, &b, &opts()).unwrap();
    let d = at(&r, "efi:.cmdline");
    assert_eq!(d.lines, ["-console=ttyS0 rw", "+console=ttyS0 ro quiet"]);
    assert!(
        !r.differences.iter().any(|d| d.location.contains("cpio")),
        "{r}"
    );
    let text = r.render();
    assert!(text.contains("efi:.cmdline"), "{text}");
    assert!(
        text.contains("\n    -console=ttyS0 rw\n    +console=ttyS0 ro quiet"),
        "{text}"
    );
}

#[test]
fn identical_inputs_exit_0_with_an_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    let a = uki(&dir.path().join("a"), OS_RELEASE, "console=ttyS0");
    let b = uki(&dir.path().join("b"), OS_RELEASE, "console=ttyS0");
    assert_ne!(a, b);
    let r = diff_paths(&a, &b, &opts()).unwrap();
    assert!(r.is_empty(), "{r}");
    assert_eq!(r.omitted, 0);
    let (code, out) = hermetic(&[&a, &b], &["--json"]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["differences"], serde_json::json!([]));
    assert_eq!(json["omitted"], 0);
}

/// Sets the write time of the ESP's `BOOTX64.EFI` in the raw disk (its directory entry
/// follows the 8.3 name `BOOTX64 EFI` with the archive attribute).
fn touch_bootx64(raw: &Path, date: u16, time: u16) {
    use std::os::unix::fs::FileExt as _;
    let f = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open(raw)
        .unwrap();
    let mut region = vec![0u8; 4 << 20];
    f.file().read_exact_at(&mut region, 1 << 20).unwrap();
    let pos = region
        .windows(12)
        .position(|w| w == b"BOOTX64 EFI\x20")
        .expect("BOOTX64.EFI's directory entry");
    let at = (1 << 20) + pos as u64;
    f.file().write_all_at(&time.to_le_bytes(), at + 22).unwrap();
    f.file().write_all_at(&date.to_le_bytes(), at + 24).unwrap();
}

#[test]
fn gcp_tarballs_whose_esp_differs_in_one_timestamp_name_the_fat_file() {
    let dir = tempfile::tempdir().unwrap();
    let efi = uki(&dir.path().join("u"), OS_RELEASE, "console=ttyS0");
    let guids = (
        Guid::parse(SEED_DISK_GUID).unwrap(),
        Guid::parse(SEED_ESP_GUID).unwrap(),
    );
    // The layout of a 2 MiB UKI: FAT32 needs an ESP of at least 65525 clusters.
    assert!(fs_err::metadata(&efi).unwrap().len() < 2 << 20);
    let layout = EspDiskLayout::gcp(2 << 20);
    let esp = disk::uki_esp(&efi, 0, hermetic::image::fat::SEED_VOLUME_ID).unwrap();
    let mut tarballs = Vec::new();
    for side in ["a", "b"] {
        let raw = dir.path().join(format!("{side}.raw"));
        disk::write_esp_disk(&raw, &layout, &esp, guids.0, guids.1).unwrap();
        if side == "b" {
            // 2024-01-02 03:04:06
            touch_bootx64(&raw, (44 << 9) | (1 << 5) | 2, (3 << 11) | (4 << 5) | 3);
        }
        let out = dir.path().join(format!("{side}-import.tar.gz"));
        gcp::write_import_tar_gz(&raw, &out).unwrap();
        fs_err::remove_file(&raw).unwrap();
        tarballs.push(out);
    }
    let r = diff_paths(&tarballs[0], &tarballs[1], &opts()).unwrap();
    let d = at(&r, "tar:disk.raw:gpt:p1:fat:EFI/BOOT/BOOTX64.EFI");
    assert_eq!(
        field(d, "modified"),
        ("1980-01-01 00:00:00", "2024-01-02 03:04:06")
    );
    assert_eq!(d.content_offset, None, "the content is the same: {r}");
    let fat: Vec<&str> = r
        .differences
        .iter()
        .map(|d| d.location.as_str())
        .filter(|l| l.contains(":fat:"))
        .collect();
    assert_eq!(fat, ["tar:disk.raw:gpt:p1:fat:EFI/BOOT/BOOTX64.EFI"], "{r}");
    // The tar entry itself is named with its first differing byte.
    assert!(at(&r, "tar:disk.raw").content_offset.is_some());
    assert!(
        !r.differences
            .iter()
            .any(|d| d.location.contains("gpt:header")),
        "{r}"
    );
}

#[test]
fn qcow2_disks_are_read_through_to_the_fat_files() {
    let dir = tempfile::tempdir().unwrap();
    let guids = (
        Guid::parse(SEED_DISK_GUID).unwrap(),
        Guid::parse(SEED_ESP_GUID).unwrap(),
    );
    let mut images = Vec::new();
    for (side, os) in [("a", OS_RELEASE), ("b", "ID=other\n")] {
        let efi = uki(&dir.path().join(side), os, "console=ttyS0");
        let mut esp = disk::uki_esp(&efi, 0, hermetic::image::fat::SEED_VOLUME_ID).unwrap();
        if side == "b" {
            esp.add_file("loader/extra.txt", b"more\n".to_vec())
                .unwrap();
        }
        let raw = dir.path().join(format!("{side}.raw"));
        disk::write_esp_disk(&raw, &EspDiskLayout::qemu(), &esp, guids.0, guids.1).unwrap();
        let out = dir.path().join(format!("{side}.qcow2"));
        qcow2::write(&raw, &out).unwrap();
        images.push(out);
    }
    let r = diff_paths(&images[0], &images[1], &opts()).unwrap();
    let added = at(&r, "qcow2:gpt:p1:fat:loader/extra.txt");
    assert_eq!(added.kind, Kind::Added);
    at(&r, "qcow2:gpt:p1:fat:loader");
    // Recursing into the UKI on the ESP, down to the initrd's file.
    at(
        &r,
        "qcow2:gpt:p1:fat:EFI/BOOT/BOOTX64.EFI:efi:.initrd:cpio:usr/lib/os-release",
    );
}

#[test]
fn kernel_configs_differ_option_by_option() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.config");
    let b = dir.path().join("b.config");
    fs_err::write(
        &a,
        "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_A=y\nCONFIG_B=\"old\"\nCONFIG_GONE=m\n# CONFIG_D is not set\nCONFIG_SAME=y\n",
    )
    .unwrap();
    fs_err::write(
        &b,
        "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_A=m\nCONFIG_B=\"new\"\nCONFIG_D=y\nCONFIG_NEW=0x10\nCONFIG_SAME=y\n",
    )
    .unwrap();
    let r = diff_paths(&a, &b, &opts()).unwrap();
    assert_eq!(field(at(&r, "config:CONFIG_A"), "value"), ("y", "m"));
    assert_eq!(
        field(at(&r, "config:CONFIG_B"), "value"),
        ("\"old\"", "\"new\"")
    );
    assert_eq!(field(at(&r, "config:CONFIG_D"), "value"), ("n", "y"));
    assert_eq!(at(&r, "config:CONFIG_GONE").kind, Kind::Removed);
    let new = at(&r, "config:CONFIG_NEW");
    assert_eq!(
        (new.kind, new.note.as_deref()),
        (Kind::Added, Some("=0x10"))
    );
    assert_eq!(r.differences.len(), 5, "{r}");
}

#[test]
fn max_limits_the_list_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.config");
    let b = dir.path().join("b.config");
    let text = |v: &str| {
        (0..60)
            .map(|i| format!("CONFIG_OPT{i:02}={v}\n"))
            .collect::<String>()
    };
    fs_err::write(&a, text("y")).unwrap();
    fs_err::write(&b, text("m")).unwrap();
    let r = diff_paths(&a, &b, &opts()).unwrap();
    assert_eq!((r.differences.len(), r.omitted), (50, 10));
    assert_eq!(r.differences[0].location, "config:CONFIG_OPT00");
    let (code, out) = hermetic(&[&a, &b], &["--max", "5"]);
    assert_eq!(code, 4);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("config:")).count(),
        5,
        "{out}"
    );
    assert!(out.contains("… and 55 more differences"), "{out}");
}

#[test]
fn unknown_files_get_a_byte_summary() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.bin");
    let b = dir.path().join("b.bin");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut other = data.clone();
    for i in [1000, 1001, 5000] {
        other[i] ^= 0xff;
    }
    other.extend(b"tail");
    fs_err::write(&a, &data).unwrap();
    fs_err::write(&b, &other).unwrap();
    let r = diff_paths(&a, &b, &opts()).unwrap();
    assert_eq!(r.differences.len(), 1, "{r}");
    let d = &r.differences[0];
    assert_eq!(d.location, "");
    assert_eq!(d.content_offset, Some(1000));
    assert_eq!(field(d, "size"), ("100000", "100004"));
    assert!(
        d.note.as_deref().unwrap().starts_with("3 byte(s) differ"),
        "{d}"
    );

    // With diffoscope installed, its output is what the report shows.
    let installed = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .any(|p| p.join("diffoscope").is_file());
    if installed {
        let r = diff_paths(&a, &b, &DiffOptions::default()).unwrap();
        assert_eq!(r.differences[0].note.as_deref(), Some("diffoscope:"));
        assert!(!r.differences[0].lines.is_empty());
    }
}

#[test]
fn an_unreadable_input_is_an_error_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.bin");
    fs_err::write(&a, b"x").unwrap();
    let missing = dir.path().join("missing.bin");
    let err = diff_paths(&a, &missing, &opts()).unwrap_err();
    assert!(err.to_string().contains("missing.bin"), "{err}");
    let (code, out) = hermetic(&[&a, &missing], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("missing.bin"), "{out}");
}

#[test]
fn a_corrupt_initrd_is_summarised_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.cpio");
    let b = dir.path().join("b.cpio");
    let good = hermetic::image::cpio::stub_extra_cpio("x", b"hello");
    let mut bad = good.clone();
    bad.truncate(good.len() - 40);
    fs_err::write(&a, &good).unwrap();
    fs_err::write(&b, &bad).unwrap();
    let r = diff_paths(&a, &b, &opts()).unwrap();
    assert_eq!(r.differences.len(), 1, "{r}");
    let note = r.differences[0].note.as_deref().unwrap();
    assert!(note.contains("cannot read it as a cpio archive"), "{note}");
}

#[test]
fn vhds_differing_only_in_their_footer_name_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let efi = uki(&dir.path().join("u"), OS_RELEASE, "console=ttyS0");
    let guids = (
        Guid::parse(SEED_DISK_GUID).unwrap(),
        Guid::parse(SEED_ESP_GUID).unwrap(),
    );
    let raw = dir.path().join("azure.raw");
    let esp = disk::uki_esp(&efi, 0, hermetic::image::fat::SEED_VOLUME_ID).unwrap();
    disk::write_esp_disk(&raw, &EspDiskLayout::azure(), &esp, guids.0, guids.1).unwrap();
    let a = dir.path().join("a.vhd");
    let b = dir.path().join("b.vhd");
    vhd::write_fixed_vhd(&raw, &a, &VhdOptions::new(1_700_000_000, "seed one")).unwrap();
    vhd::write_fixed_vhd(&raw, &b, &VhdOptions::new(1_700_086_400, "seed two")).unwrap();
    let r = diff_paths(&a, &b, &opts()).unwrap();
    let d = at(&r, "vhd:footer");
    let fields: Vec<&str> = d.changes.iter().map(|c| c.field.as_str()).collect();
    assert!(fields.contains(&"timestamp"), "{r}");
    assert!(fields.contains(&"unique id"), "{r}");
    assert_eq!(r.differences.len(), 1, "the disks inside are the same: {r}");
}

#[test]
fn files_of_unknown_formats_go_to_diffoscope_when_it_is_on_the_path() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // A stand-in with diffoscope's contract: arguments in, report out, exit 1 = different.
    let bin = dir.path().join("bin");
    fs_err::create_dir(&bin).unwrap();
    let tool = bin.join("diffoscope");
    fs_err::write(
        &tool,
        "#!/bin/sh\necho \"stand-in diffoscope $*\"\ncmp \"$4\" \"$5\" >/dev/null && exit 0\necho '@@ -1 +1 @@'\nexit 1\n",
    )
    .unwrap();
    fs_err::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let a = dir.path().join("a.bin");
    let b = dir.path().join("b.bin");
    fs_err::write(&a, b"\x01\x02\x03 some data").unwrap();
    fs_err::write(&b, b"\x01\x02\x04 some data").unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
            .env("PATH", &path)
            .arg("diff")
            .args(extra)
            .arg(&a)
            .arg(&b)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
        )
    };
    let (code, out) = run(&[]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("(file)  diffoscope:"), "{out}");
    // The files the user named are handed over as they are.
    let args = format!(
        "    stand-in diffoscope --text - --no-progress {} {}",
        a.display(),
        b.display()
    );
    assert!(out.contains(&args), "{out}");
    assert!(out.contains("    @@ -1 +1 @@"), "{out}");
    // Turned off, the byte summary is back.
    let (code, out) = run(&["--no-diffoscope"]);
    assert_eq!(code, 4, "{out}");
    assert!(!out.contains("stand-in"), "{out}");
    assert!(
        out.contains("content differs from offset 2: 1 byte(s) differ"),
        "{out}"
    );
}

//! The GPT event of RTMR 1, synthesized from disk parameters, against a real GPT written by
//! `sgdisk` (gdisk) with the same parameters; and `hermetic measure --tdx-gcp --disk` (the
//! event read from the disk image) against the same parameters given as options. Offline.

#[path = "uki_support.rs"]
mod uki_support;

use std::process::Command;

use hermetic::image::uki::UkiBuilder;
use hermetic::measure::tdx::{GptDisk, gpt_event_from_disk};

const DISK_GUID: &str = "4A7B1C2D-0E3F-4A5B-8C6D-7E8F9A0B1C2D";
const ESP_GUID: &str = "9F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A";
const DISK_BYTES: u64 = 1 << 30;
const ESP_BYTES: u64 = 300 << 20;

/// A sparse 1 GiB disk with one 300 MiB ESP from LBA 2048, partitioned by sgdisk.
fn sgdisk_disk(dir: &std::path::Path) -> std::path::PathBuf {
    let disk = dir.join("disk.raw");
    let f = fs_err::File::create(&disk).unwrap();
    f.set_len(DISK_BYTES).unwrap();
    drop(f);
    let out = Command::new("sgdisk")
        .arg("--clear")
        .arg(format!("--disk-guid={DISK_GUID}"))
        .arg(format!("--new=1:2048:+{}", ESP_BYTES / 512))
        .arg("--typecode=1:EF00")
        .arg(format!("--partition-guid=1:{ESP_GUID}"))
        .arg("--change-name=1:esp")
        .arg(&disk)
        .output()
        .expect("sgdisk (gdisk)");
    assert!(
        out.status.success(),
        "sgdisk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    disk
}

fn params() -> GptDisk {
    GptDisk {
        disk_guid: DISK_GUID.into(),
        esp_guid: ESP_GUID.into(),
        disk_sectors: DISK_BYTES / 512,
        // sgdisk leaves the first usable LBA right after the entries (34 with 512-byte sectors).
        first_usable_lba: 34,
        esp_start_lba: 2048,
        esp_end_lba: 2048 + ESP_BYTES / 512 - 1,
        esp_name: "esp".into(),
    }
}

#[test]
fn synthetic_gpt_event_equals_the_one_of_an_sgdisk_disk() {
    let dir = tempfile::tempdir().unwrap();
    let disk = sgdisk_disk(dir.path());
    let bytes = fs_err::read(&disk).unwrap();
    let real = gpt_event_from_disk(&bytes[..1 << 20], "disk.raw").unwrap();
    let synthetic = params().event_data().unwrap();
    assert_eq!(real.len(), 92 + 8 + 128);
    assert_eq!(hex::encode(&synthetic), hex::encode(&real));
}

#[test]
fn measure_with_disk_image_equals_measure_with_disk_options() {
    let dir = tempfile::tempdir().unwrap();
    let disk = sgdisk_disk(dir.path());
    // Any UKI will do: the old-style test stub as stub and as kernel.
    let mut b = UkiBuilder::new(uki_support::old_style_stub(), "stub");
    b.linux = Some(uki_support::old_style_stub());
    b.uname = Some("1".into());
    b.initrds = vec![b"x".to_vec()];
    let uki = dir.path().join("t.efi");
    fs_err::write(&uki, b.build().unwrap()).unwrap();
    let run = |extra: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
            .arg("measure")
            .arg(&uki)
            .args(["--format", "attested-tls-proxy", "--tdx-gcp"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[1]["measurements"]["2"]["expected"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let from_disk = run(&[format!("--disk={}", disk.display())]);
    let from_options = run(&[
        format!("--disk-guid={DISK_GUID}"),
        format!("--esp-guid={ESP_GUID}"),
        format!("--disk-size={DISK_BYTES}"),
        format!("--esp-size={ESP_BYTES}"),
        "--first-usable-lba=34".to_string(),
    ]);
    assert_eq!(from_disk, from_options);
    // dstack-mr-gcp's defaults describe another disk.
    assert_ne!(run(&[]), from_disk);
}

//! overlays/buildernet/usr/bin/persistent-setup on a real loop device with the real cryptsetup:
//! finding the disk by serial, LUN (SCSI and NVMe) and name, refusing a disk that holds
//! something else, formatting LUKS2 on first boot, taking the LUKS path on later boots.
//!
//! Needs root, losetup and cryptsetup (scripts/setup.sh --tests installs cryptsetup-bin). Opening
//! the volume and mounting it need device-mapper: where the kernel gives none (containers), the
//! test checks that the script stops at the open with its error, and says that open and mount
//! were not exercised; where it has one, it mounts, writes, and mounts again after a "reboot".

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../overlays/buildernet/usr/bin/persistent-setup")
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A loop device over a sparse file, detached (and its mapping closed) on drop.
struct Loop {
    dir: PathBuf,
    device: String,
    mapper: String,
}

impl Drop for Loop {
    fn drop(&mut self) {
        let mount = self.dir.join("mnt");
        let _ = run("umount", &[mount.to_str().unwrap()]);
        let _ = run("cryptsetup", &["close", &self.mapper]);
        let _ = run("losetup", &["-d", &self.device]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup_script(l: &Loop, selector: &[&str], key: &Path) -> Output {
    let mut args: Vec<String> = selector.iter().map(|s| s.to_string()).collect();
    args.extend(
        [
            "--key-file",
            key.to_str().unwrap(),
            "--dev-root",
            l.dir.join("dev").to_str().unwrap(),
            "--mount-point",
            l.dir.join("mnt").to_str().unwrap(),
            "--name",
            &l.mapper,
            "--wait",
            "2",
        ]
        .map(String::from),
    );
    Command::new("sh")
        .arg(script())
        .args(&args)
        .output()
        .unwrap()
}

fn log(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The script failed and said `needle`.
fn assert_fails_saying(out: &Output, needle: &str) {
    assert!(!out.status.success(), "{}", log(out));
    assert!(log(out).contains(needle), "no `{needle}` in: {}", log(out));
}

#[test]
fn persistent_setup_on_a_loop_device() {
    // The effective uid, through id(1): this crate has no libc.
    let uid = String::from_utf8(run("id", &["-u"]).stdout).unwrap();
    if uid.trim() != "0" || !have("cryptsetup") || !have("losetup") {
        eprintln!("persistent_setup_on_a_loop_device: NOT RUN: needs root, cryptsetup and losetup");
        return;
    }
    let dir = std::env::temp_dir().join(format!("persistent-setup-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dev/disk/by-id")).unwrap();
    std::fs::create_dir_all(dir.join("dev/disk/by-path")).unwrap();
    let image = dir.join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let attach = run("losetup", &["-f", "--show", image.to_str().unwrap()]);
    if !attach.status.success() {
        eprintln!(
            "persistent_setup_on_a_loop_device: NOT RUN: no loop device: {}",
            log(&attach)
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let device = String::from_utf8(attach.stdout).unwrap().trim().to_string();
    let l = Loop {
        dir: dir.clone(),
        device: device.clone(),
        mapper: format!("pstest{}", std::process::id()),
    };
    let by_id = |name: &str| {
        std::os::unix::fs::symlink(&device, dir.join("dev/disk/by-id").join(name)).unwrap()
    };
    by_id("virtio-persistent-test");
    by_id("google-persistent-disk-1");
    std::os::unix::fs::symlink(
        &device,
        dir.join("dev/disk/by-path/pci-0000:00:04.0-scsi-0:0:0:10"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        &device,
        dir.join("dev/disk/by-path/pci-0000:00:05.0-nvme-7"),
    )
    .unwrap();
    let key = dir.join("disk-encryption-key");
    std::fs::write(&key, "a passphrase from BuilderHub").unwrap();

    // A missing key file, and a disk that never appears: clear errors.
    let out = setup_script(
        &l,
        &["--device-serial", "persistent-test"],
        &dir.join("no-key"),
    );
    assert!(!out.status.success());
    assert!(
        log(&out).contains("key file") && log(&out).contains("render-config"),
        "{}",
        log(&out)
    );
    let out = setup_script(&l, &["--device-serial", "absent"], &key);
    assert_fails_saying(&out, "no disk with serial absent");

    // A disk with a file system on it is not ours to format.
    assert!(run("mkfs.ext4", &["-q", &device]).status.success());
    let out = setup_script(&l, &["--device-serial", "persistent-test"], &key);
    assert_fails_saying(&out, "holds 'ext4', not LUKS: refusing to format");
    let still = run("blkid", &["-p", "-o", "value", "-s", "TYPE", &device]);
    assert_eq!(String::from_utf8_lossy(&still.stdout).trim(), "ext4");
    assert!(run("wipefs", &["-a", "-q", &device]).status.success());

    // First boot: LUKS2 made with the key file.
    let first = setup_script(&l, &["--device-serial", "persistent-test"], &key);
    assert!(
        log(&first).contains("is blank: first boot"),
        "{}",
        log(&first)
    );
    let dump = String::from_utf8(run("cryptsetup", &["luksDump", &device]).stdout).unwrap();
    assert!(
        dump.lines()
            .any(|l| l.starts_with("Version:") && l.split_whitespace().last() == Some("2")),
        "not LUKS2: {dump}"
    );
    let key_str = key.to_str().unwrap();
    let test_key = |k: &str| {
        run(
            "cryptsetup",
            &["open", "--test-passphrase", "--key-file", k, &device],
        )
        .status
        .success()
    };
    assert!(test_key(key_str), "the key file opens the volume");
    let wrong = dir.join("wrong-key");
    std::fs::write(&wrong, "another passphrase").unwrap();
    assert!(!test_key(wrong.to_str().unwrap()));

    let device_mapper = first.status.success();
    if device_mapper {
        let mnt = dir.join("mnt");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(mounts.contains(mnt.to_str().unwrap()), "{mounts}");
        std::fs::write(mnt.join("state"), "kept").unwrap();
        assert!(run("umount", &[mnt.to_str().unwrap()]).status.success());
        assert!(run("cryptsetup", &["close", &l.mapper]).status.success());
    } else {
        // No device-mapper here: the script stops at the open, saying so.
        assert!(log(&first).contains("cannot open"), "{}", log(&first));
        eprintln!(
            "persistent_setup_on_a_loop_device: no device-mapper: open and mount NOT exercised"
        );
    }

    // Later boots, by each selector: the LUKS path, the same volume.
    for selector in [
        &["--device-lun", "10"][..],
        &["--device-name", "google-persistent-disk-1"][..],
        &["--device-lun", "5"][..], // NVMe: namespace 5 + 2
    ] {
        let again = setup_script(&l, selector, &key);
        let text = log(&again);
        assert!(
            text.contains(&format!("is {device}")),
            "{selector:?}: {text}"
        );
        assert!(text.contains("is LUKS: opening it"), "{selector:?}: {text}");
        assert!(!text.contains("first boot"), "{selector:?}: {text}");
        assert_eq!(
            again.status.success(),
            device_mapper,
            "{selector:?}: {text}"
        );
        if device_mapper {
            assert_eq!(
                std::fs::read_to_string(dir.join("mnt/state")).unwrap(),
                "kept"
            );
            assert!(
                run("umount", &[dir.join("mnt").to_str().unwrap()])
                    .status
                    .success()
            );
            assert!(run("cryptsetup", &["close", &l.mapper]).status.success());
        }
    }
}

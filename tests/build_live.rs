//! Live test of `hermetic build`: the real Debian archive through the host's apt mirror, the
//! real sandbox, real dpkg. The `base` image is built twice, once under a hostile host
//! environment (umask 002, another time zone and locale, another store and working
//! directory), and the two tars must be bit-identical; a no-change build runs no step, and
//! `--rebuild` finds the outputs identical.
//!
//! It locks afresh into a temporary project, as the mirror drops superseded versions.

mod project;

use project::{Kernel, run};
use std::path::Path;
use std::process::Command;

fn hermetic() -> &'static str {
    env!("CARGO_BIN_EXE_hermetic")
}

fn project() -> tempfile::TempDir {
    project_with(&["base"])
}

/// `recipes`, with the committed `base` (its kernel is built only for bootable formats).
fn project_with(recipes: &[&str]) -> tempfile::TempDir {
    project::project(recipes, Kernel::Seed)
}

/// `hermetic build TARGET` under hostile host settings: umask 002, another time zone and
/// locale, another working directory, the store given by `HERMETIC_STORE`, a kernel build
/// with more jobs than CPUs (`HERMETIC_JOBS=3`).
fn build_hostile(
    p: &Path,
    target: &str,
    out: &Path,
    store: &Path,
    tz: &str,
    lang: &str,
) -> std::process::Output {
    let elsewhere = tempfile::tempdir().unwrap();
    run(Command::new("sh")
        .arg("-c")
        .arg("umask 002; exec \"$@\"")
        .arg("sh")
        .arg(hermetic())
        .arg("-C")
        .arg(p)
        .args(["build", target, "--output"])
        .arg(out)
        .current_dir(elsewhere.path())
        .env("HERMETIC_STORE", store)
        .env("TZ", tz)
        .env("LANG", lang)
        .env("LC_ALL", lang)
        .env("HERMETIC_JOBS", "3"))
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(fs_err::read(path).unwrap()))
}

#[test]
fn base_builds_bit_identically_under_host_variations() {
    let project = project();
    let p = project.path();
    let store_a = tempfile::tempdir().unwrap();
    let store_b = tempfile::tempdir().unwrap();
    let out_a = p.join("out-a");
    let out_b = p.join("out-b");

    run(Command::new(hermetic())
        .arg("-C")
        .arg(p)
        .arg("--store")
        .arg(store_a.path())
        .args(["lock", "--allow-mirror-state"]));
    for store in [store_a.path(), store_b.path()] {
        run(Command::new(hermetic())
            .arg("-C")
            .arg(p)
            .arg("--store")
            .arg(store)
            .arg("fetch"));
    }

    // Plain.
    run(Command::new(hermetic())
        .arg("-C")
        .arg(p)
        .arg("--store")
        .arg(store_a.path())
        .args(["build", "base", "--output"])
        .arg(&out_a));

    // Hostile host settings, another store, another working directory.
    build_hostile(
        p,
        "base",
        &out_b,
        store_b.path(),
        "Asia/Tokyo",
        "de_DE.UTF-8",
    );

    let tar_a = out_a.join("base.tar");
    let tar_b = out_b.join("base.tar");
    let (a, b) = (sha256(&tar_a), sha256(&tar_b));
    if a != b {
        let diff = Command::new("sh")
            .arg("-c")
            .arg("diff <(tar -tvf \"$1\") <(tar -tvf \"$2\") | head -40")
            .arg("sh")
            .arg(&tar_a)
            .arg(&tar_b)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!("the two builds differ: {a} vs {b}\n{diff}");
    }
    // SHA256SUMS names the tar with the same hash.
    let sums = fs_err::read_to_string(out_a.join("SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{a}  base.tar\n"));

    // The tar is a Debian system: dpkg's database lists the requested packages as installed.
    let listing = Command::new("tar")
        .arg("-xOf")
        .arg(&tar_a)
        .arg("./var/lib/dpkg/status")
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&listing.stdout);
    for pkg in ["systemd", "systemd-boot-efi", "udhcpc", "iproute2", "dpkg"] {
        project::assert_installed(&status, pkg);
    }
    // Owners inside the image are the ids of the sandbox, not the host's subordinate ids.
    let verbose = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar_a)
        .arg("./etc/shadow")
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&verbose.stdout);
    assert!(
        line.contains(" 0/42 "),
        "/etc/shadow should be root:shadow (0/42): {line}"
    );

    // Nothing changed: every step is cached.
    let out = run(Command::new(hermetic())
        .arg("-C")
        .arg(p)
        .arg("--store")
        .arg(store_a.path())
        .args(["--json", "build", "base", "--output"])
        .arg(&out_a));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.len() >= 3, "{report}");
    for s in steps {
        assert_eq!(s["state"], "cached", "{s}");
    }

    // --rebuild runs everything again and finds it identical.
    let out = run(Command::new(hermetic())
        .arg("-C")
        .arg(p)
        .arg("--store")
        .arg(store_a.path())
        .args(["--json", "build", "--rebuild", "base", "--output"])
        .arg(p.join("out-c")));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in report["steps"].as_array().unwrap() {
        assert_eq!(s["state"], "identical", "{s}");
    }
}

/// An image with a parent, an overlay, a tools tree and a step: the step runs in the tools
/// tree (not in the image, not on the host) with the documented variables, sees the overlay
/// with its mode, writes into the image and into the outputs.
#[test]
fn steps_run_in_the_tools_tree_with_overlays_and_variables() {
    let project = project();
    let p = project.path();
    let store = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(p.join("overlays/demo/etc/demo")).unwrap();
    fs_err::write(p.join("overlays/demo/etc/demo/file"), "hello overlay\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(
            p.join("overlays/demo/etc/demo/file"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    // The image's mode comes from the recipe (or git), never from the checkout: 0600 on
    // disk, 0640 from `[overlay-modes]`.
    fs_err::write(
        p.join("recipes/steptest.toml"),
        r#"parent = "base"
build-packages = ["hello"]
overlays = ["demo"]
format = "tar"
version = "1.0"
environment = { GREETING = "hi" }
overlay-modes = { "etc/demo/file" = "0640" }

[[steps]]
name = "greet"
script = '''
hello > "$DESTDIR/etc/hello.txt"
echo "$GREETING $IMAGE_ID $IMAGE_VERSION $ARCHITECTURE $(id -u) $(pwd)" > "$OUTPUTDIR/info.txt"
stat -c '%a %U' "$DESTDIR/etc/demo/file" >> "$OUTPUTDIR/info.txt"
test ! -e "$DESTDIR/usr/bin/hello"
'''

[profiles.devtools]
packages = ["strace"]
[[profiles.devtools.steps]]
name = "check-strace"
script = 'test -x "$DESTDIR/usr/bin/strace" && echo "profiles: $PROFILES" > "$OUTPUTDIR/profile.txt"'
"#,
    )
    .unwrap();
    let h = |args: &[&str]| {
        run(Command::new(hermetic())
            .arg("-C")
            .arg(p)
            .arg("--store")
            .arg(store.path())
            .args(args))
    };
    h(&["lock", "--allow-mirror-state"]);
    h(&["fetch"]);
    let out_dir = p.join("out");
    h(&["build", "steptest", "--output", out_dir.to_str().unwrap()]);
    let info = fs_err::read_to_string(out_dir.join("info.txt")).unwrap();
    assert_eq!(info, "hi steptest 1.0 amd64 0 /work/build\n640 root\n");
    let tar = out_dir.join("steptest_1.0.tar");
    let hello = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("./etc/hello.txt")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&hello.stdout), "Hello, world!\n");
    // The tools tree's program is not in the image.
    let list = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines().any(|l| l == "./etc/demo/file"),
        "overlay missing"
    );
    assert!(
        !list.lines().any(|l| l == "./usr/bin/hello"),
        "tools leaked into the image"
    );
    let sums = fs_err::read_to_string(out_dir.join("SHA256SUMS")).unwrap();
    assert!(
        sums.contains("  info.txt\n") && sums.contains("  steptest_1.0.tar\n"),
        "{sums}"
    );
    assert!(!list.lines().any(|l| l == "./usr/bin/strace"), "{list}");

    // A profile that adds a package: its closure is in the lock (`steptest/devtools`), the
    // image has the package and the profile's step ran; the plain image is unchanged.
    let lock = fs_err::read_to_string(p.join("pins.lock")).unwrap();
    assert!(
        lock.contains("[[recipe]]\nname = \"steptest/devtools\"\n"),
        "{lock}"
    );
    let dev_dir = p.join("out-dev");
    h(&[
        "build",
        "--profile",
        "devtools",
        "steptest",
        "--output",
        dev_dir.to_str().unwrap(),
    ]);
    assert_eq!(
        fs_err::read_to_string(dev_dir.join("profile.txt")).unwrap(),
        "profiles: devtools\n"
    );
    let list = Command::new("tar")
        .arg("-tf")
        .arg(dev_dir.join("steptest_1.0.tar"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.lines().any(|l| l == "./usr/bin/strace"), "{list}");
    assert!(list.lines().any(|l| l == "./etc/demo/file"), "{list}");
    let again = p.join("out-again");
    let out = h(&[
        "--json",
        "build",
        "steptest",
        "--output",
        again.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in report["steps"].as_array().unwrap() {
        assert_eq!(s["state"], "cached", "{s}");
    }
    assert_eq!(sha256(&again.join("steptest_1.0.tar")), sha256(&tar));
}

/// `gcp` built twice under different host settings gives the same kernel, `.efi` and
/// `-import.tar.gz`; the kernel is built from the pinned source with the test patch applied;
/// a second build in the same store runs no step; the `qemu` image of the same tree boots
/// under QEMU with OVMF, the patched kernel's banner on the console, to a login prompt.
///
/// The kernel is the small test configuration (`kernel/test-configs/` over tinyconfig): the
/// seed's is the same path with other fragments and takes about 20 minutes a build.
#[test]
fn bootable_images_are_reproducible_and_boot() {
    let project = project::project(&["base", "gcp", "qemu"], Kernel::Small);
    let p = project.path();
    let store_a = tempfile::tempdir().unwrap();
    let store_b = tempfile::tempdir().unwrap();
    let (out_a, out_b) = (p.join("out-a"), p.join("out-b"));
    let h = |store: &Path, args: &[&str]| {
        run(Command::new(hermetic())
            .arg("-C")
            .arg(p)
            .arg("--store")
            .arg(store)
            .args(args))
    };
    h(store_a.path(), &["lock", "--allow-mirror-state"]);
    h(store_a.path(), &["fetch"]);
    h(store_b.path(), &["fetch"]);
    let first = h(
        store_a.path(),
        &[
            "--json",
            "build",
            "gcp",
            "qemu",
            "--output",
            out_a.to_str().unwrap(),
        ],
    );
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let steps = first["steps"].as_array().unwrap();
    // gcp and qemu share one kernel step (its key does not depend on the image).
    let kernels: Vec<&serde_json::Value> = steps
        .iter()
        .filter(|s| s["name"].as_str().unwrap().ends_with("/kernel"))
        .collect();
    assert_eq!(kernels.len(), 1, "{first:#}");
    assert_eq!(kernels[0]["state"], "built", "{first:#}");
    let kernel_files = Path::new(kernels[0]["path"].as_str().unwrap()).join("files");

    let hostile = build_hostile(
        p,
        "gcp",
        &out_b,
        store_b.path(),
        "America/New_York",
        "fr_FR.UTF-8",
    );
    let said = String::from_utf8_lossy(&hostile.stderr);
    assert!(said.contains("base/kernel: make -j3 "), "{said}");
    for name in [
        "gcp_latest.vmlinuz",
        "gcp_latest.config",
        "gcp_latest.efi",
        "gcp_latest-import.tar.gz",
    ] {
        let (a, b) = (sha256(&out_a.join(name)), sha256(&out_b.join(name)));
        assert_eq!(a, b, "{name} differs between the two builds");
    }

    // The kernel step's outputs: the patch applied (its string is in vmlinux), no host path
    // of either store, the release with the seed's LOCALVERSION, the requested options on.
    let vmlinux = fs_err::read(kernel_files.join("vmlinux")).unwrap();
    let needle = b"(hermetic-test-patch)";
    assert!(
        vmlinux.windows(needle.len()).any(|w| w == needle),
        "the test patch's string is in vmlinux"
    );
    for store in [store_a.path(), store_b.path()] {
        let path = store.to_string_lossy();
        assert!(
            !vmlinux.windows(path.len()).any(|w| w == path.as_bytes()),
            "no host path in vmlinux"
        );
    }
    let release = fs_err::read_to_string(kernel_files.join("kernelrelease")).unwrap();
    assert!(
        release.starts_with("6.12.") && release.trim_end().ends_with("-mkosi-cloud"),
        "{release}"
    );
    let config = fs_err::read_to_string(out_a.join("gcp_latest.config")).unwrap();
    for line in [
        "CONFIG_EFI_STUB=y",
        "CONFIG_SERIAL_8250_CONSOLE=y",
        "CONFIG_RD_ZSTD=y",
    ] {
        assert!(config.lines().any(|l| l == line), "{line} in the .config");
    }
    assert_eq!(
        fs_err::read(out_a.join("gcp_latest.vmlinuz")).unwrap(),
        fs_err::read(kernel_files.join("bzImage")).unwrap()
    );
    // The UKI's .uname is the release, as ukify would write it.
    let efi = fs_err::read(out_a.join("gcp_latest.efi")).unwrap();
    let uname = release.trim_end().as_bytes();
    assert!(efi.windows(uname.len()).any(|w| w == uname));

    // Nothing changed: a second build in the same store runs no step, not the kernel.
    let again = h(
        store_a.path(),
        &[
            "--json",
            "build",
            "gcp",
            "qemu",
            "--output",
            out_a.to_str().unwrap(),
        ],
    );
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    for step in again["steps"].as_array().unwrap() {
        assert_eq!(step["state"], "cached", "{again:#}");
    }

    let listing = Command::new("tar")
        .arg("-tvzf")
        .arg(out_a.join("gcp_latest-import.tar.gz"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("disk.raw"), "{listing}");

    // The gcp measurements hold the TDX registers of this UKI booted from this disk: what
    // `hermetic measure --tdx-gcp --disk` says of the disk inside the import tarball.
    let unpacked = p.join("gcp-disk");
    fs_err::create_dir_all(&unpacked).unwrap();
    let status = Command::new("tar")
        .arg("-xSzf")
        .arg(out_a.join("gcp_latest-import.tar.gz"))
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let measured = h(
        store_a.path(),
        &[
            "--json",
            "measure",
            "--tdx-gcp",
            "--disk",
            unpacked.join("disk.raw").to_str().unwrap(),
            out_a.join("gcp_latest.efi").to_str().unwrap(),
        ],
    );
    let measured: serde_json::Value = serde_json::from_slice(&measured.stdout).unwrap();
    let written: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(out_a.join("gcp_latest.measurements.json")).unwrap(),
    )
    .unwrap();
    let registers: Vec<&String> = written["tdx"].as_object().unwrap().keys().collect();
    assert_eq!(registers, ["2", "3", "4"], "RTMR 1-3: {written:#}");
    assert_eq!(written["tdx"], measured["tdx"], "{written:#}\n{measured:#}");
    assert_eq!(written["measurements"], measured["measurements"]);
    let qemu: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(out_a.join("qemu_latest.measurements.json")).unwrap(),
    )
    .unwrap();
    assert!(qemu.get("tdx").is_none(), "only gcp runs on TDX: {qemu:#}");
    let sums = fs_err::read_to_string(out_a.join("SHA256SUMS")).unwrap();
    for name in [
        "gcp_latest.efi",
        "gcp_latest-import.tar.gz",
        "gcp_latest.vmlinuz",
        "qemu_latest.efi",
        "qemu_latest.qcow2",
    ] {
        assert!(
            sums.contains(&format!("  {name}\n")),
            "{name} not in SHA256SUMS:\n{sums}"
        );
    }

    // Boot the qemu disk: OVMF finds the UKI on the ESP, the kernel runs systemd from the
    // initrd, and getty prints the login prompt.
    let vars = p.join("vars.fd");
    fs_err::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
    let serial = p.join("serial.log");
    // QEMU is started directly (not under timeout(1)), so that killing it below really
    // stops the VM.
    let status = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "q35",
            "-nodefaults",
            "-accel",
            "tcg",
            "-m",
            "2048",
        ])
        .args(["-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args([
            "-drive",
            "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
        ])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .arg("-drive")
        .arg(format!(
            "format=qcow2,file={}",
            out_a.join("qemu_latest.qcow2").display()
        ))
        .spawn()
        .unwrap();
    let mut child = status;
    let started = std::time::Instant::now();
    let mut booted = false;
    while started.elapsed() < std::time::Duration::from_secs(390) {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let text = fs_err::read_to_string(&serial).unwrap_or_default();
        if text.contains("login:") {
            booted = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = fs_err::read_to_string(&serial).unwrap_or_default();
    assert!(
        booted,
        "the qemu image did not reach a login prompt; serial console:\n{}",
        &text[text.len().saturating_sub(4000)..]
    );
    assert!(text.contains("Debian GNU/Linux 13"), "{text}");
    // The kernel's own banner, from the patched source.
    assert!(
        text.lines()
            .any(|l| l.contains("Linux version 6.12.") && l.contains("(hermetic-test-patch)")),
        "the patched banner on the console:\n{}",
        &text[..text.len().min(4000)]
    );
}

/// Two builds of the same image into one store at the same time: one runs each step, the other
/// waits for its lock and then finds the step stored; both succeed with the same outputs.
#[test]
fn two_builds_share_a_store_at_once() {
    let project = project();
    let p = project.path();
    let store = tempfile::tempdir().unwrap();
    let h = |args: &[&str]| {
        let mut c = Command::new(hermetic());
        c.arg("-C")
            .arg(p)
            .arg("--store")
            .arg(store.path())
            .args(args);
        c
    };
    run(&mut h(&["lock", "--allow-mirror-state"]));
    run(&mut h(&["fetch"]));
    let (out_a, out_b) = (p.join("out-a"), p.join("out-b"));
    let a = h(&["build", "base", "--output", out_a.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = h(&["build", "base", "--output", out_b.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for (name, child) in [("first", a), ("second", b)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the {name} build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sums_a = fs_err::read_to_string(out_a.join("SHA256SUMS")).unwrap();
    let sums_b = fs_err::read_to_string(out_b.join("SHA256SUMS")).unwrap();
    assert_eq!(sums_a, sums_b);
    assert!(sums_a.contains("  base.tar\n"), "{sums_a}");
}

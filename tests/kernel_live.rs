//! Live test of the kernel path: the real Debian archive through the host's apt mirror, a
//! tools tree assembled by `hermetic build` from pinned debs, the real sandbox, Debian's
//! `linux-source-6.12`. The small test configuration (`kernel/test-configs/` over
//! `make tinyconfig`) is built twice at two different work directories and the bzImages must
//! be bit-identical; the test patch must be visible in `vmlinux`; a fragment naming an option
//! that does not exist must fail the drop check, naming it; a patch that does not apply must
//! name its hunk.
//!
//! It locks afresh into a temporary project, as the mirror drops superseded versions.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use hermetic::kernel::{
    AcceptedDrops, BaseConfig, KernelBuild, KernelError, KernelOutputs, Progress, build_kernel,
};

fn hermetic() -> &'static str {
    env!("CARGO_BIN_EXE_hermetic")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run hermetic");
    assert!(
        out.status.success(),
        "{:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The build tools of the kernel, plus Debian's kernel source and configs. The source and
/// config debs are pinned and fetched like any package; the test hands their store paths to
/// the kernel library.
const RECIPE: &str = r#"description = "The tools tree of the kernel build (test)"
format = "directory"
packages = ["base-files"]
build-packages = [
  "bc", "bison", "cpio", "dpkg-dev", "flex", "gcc", "kmod", "libelf-dev", "libssl-dev",
  "make", "patch", "perl", "xz-utils", "zstd",
  "linux-source-6.12", "linux-config-6.12",
]

[[steps]]
name = "nothing"
script = "true"
"#;

struct Pinned {
    _project: tempfile::TempDir,
    _store: tempfile::TempDir,
    tools: PathBuf,
    source_deb: PathBuf,
}

fn pin_and_assemble_tools() -> Pinned {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = tempfile::tempdir().unwrap();
    let p = project.path();
    fs_err::copy(src.join("hermetic.toml"), p.join("hermetic.toml")).unwrap();
    fs_err::create_dir(p.join("recipes")).unwrap();
    fs_err::write(p.join("recipes/kernel-tools.toml"), RECIPE).unwrap();
    fs_err::create_dir(p.join("keys")).unwrap();
    for entry in fs_err::read_dir(src.join("keys")).unwrap() {
        let entry = entry.unwrap();
        fs_err::copy(entry.path(), p.join("keys").join(entry.file_name())).unwrap();
    }
    let store = tempfile::tempdir().unwrap();
    for cmd in ["lock", "fetch"] {
        run(Command::new(hermetic())
            .arg("-C")
            .arg(p)
            .arg("--store")
            .arg(store.path())
            .arg(cmd));
    }
    let out = run(Command::new(hermetic())
        .arg("-C")
        .arg(p)
        .arg("--store")
        .arg(store.path())
        .arg("--json")
        .args(["build", "kernel-tools", "--output"])
        .arg(p.join("out")));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tools = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "kernel-tools/tools")
        .map(|s| PathBuf::from(s["path"].as_str().unwrap()).join("tree"))
        .expect("a tools step in the build report");
    assert!(tools.join("usr/bin/gcc").exists(), "{}", tools.display());

    let lock = hermetic::lockfile::Lockfile::read(&p.join("pins.lock"))
        .unwrap()
        .unwrap();
    let store_handle = hermetic::store::Store::open(store.path()).unwrap();
    let blob = |name: &str| {
        let pin = lock
            .build_packages("kernel-tools")
            .into_iter()
            .find(|pkg| pkg.name == name)
            .unwrap_or_else(|| panic!("{name} is pinned"));
        let path = store_handle.blob_path(&pin.sha256);
        assert!(path.is_file(), "{}", path.display());
        path
    };
    Pinned {
        source_deb: blob("linux-source-6.12"),
        tools,
        _project: project,
        _store: store,
    }
}

fn test_fragment() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel/test-configs/10-qemu-boot")
}

fn test_patch() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel/test-patches/0001-test-banner.patch")
}

fn build(
    pinned: &Pinned,
    work: &Path,
    fragments: Vec<PathBuf>,
    accepted: AcceptedDrops,
    patches: Vec<PathBuf>,
    jobs: Option<usize>,
) -> Result<KernelOutputs, KernelError> {
    let last = Cell::new(Instant::now());
    let calls = Cell::new(0u64);
    let progress = |p: &Progress| {
        calls.set(calls.get() + 1);
        if last.get().elapsed().as_secs() >= 30 {
            last.set(Instant::now());
            eprintln!(
                "  [{:>4}s] {} ({} lines) {}",
                p.elapsed.as_secs(),
                p.step,
                p.lines,
                p.phase
            );
        }
    };
    let req = KernelBuild {
        tools: pinned.tools.clone(),
        source_deb: pinned.source_deb.clone(),
        base: BaseConfig::MakeTarget("tinyconfig".into()),
        fragments,
        accepted,
        patches,
        source_date_epoch: 1_700_000_000,
        work_dir: work.to_path_buf(),
        log: work.join("kernel.log"),
        jobs,
        progress: &progress,
    };
    let started = Instant::now();
    let result = build_kernel(&req);
    eprintln!(
        "kernel build at {}: {:.0}s, {} progress calls, {}",
        work.display(),
        started.elapsed().as_secs_f64(),
        calls.get(),
        if result.is_ok() { "ok" } else { "failed" }
    );
    if result.is_ok() {
        assert!(calls.get() > 100, "progress is reported while make runs");
    }
    result
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(fs_err::read(path).unwrap()))
}

#[test]
fn small_kernel_builds_bit_identically_with_patch_and_drop_report() {
    let pinned = pin_and_assemble_tools();
    let scratch = tempfile::tempdir().unwrap();

    // A patch that does not apply names its file and hunk, and nothing is built.
    let bad_patch = scratch.path().join("0002-bad.patch");
    fs_err::write(
        &bad_patch,
        fs_err::read_to_string(test_patch())
            .unwrap()
            .replace(" \t\"%s version %s\"\n", " \t\"%s VERSION %s\"\n"),
    )
    .unwrap();
    let work_bad = scratch.path().join("bad-patch");
    let err = build(
        &pinned,
        &work_bad,
        vec![test_fragment()],
        AcceptedDrops::default(),
        vec![bad_patch.clone()],
        Some(2),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, KernelError::PatchFailed { .. }), "{text}");
    assert!(
        text.contains(&format!("patch {}", bad_patch.display())),
        "{text}"
    );
    assert!(
        text.contains("init/version.c: hunk #1 FAILED at line 37"),
        "{text}"
    );
    assert!(!work_bad.join("out/bzImage").exists());
    drop(fs_err::remove_dir_all(&work_bad));

    // A fragment naming an option this kernel does not have fails the drop check.
    let bogus = scratch.path().join("90-bogus");
    fs_err::write(
        &bogus,
        "# not a real option\nCONFIG_HERMETIC_NO_SUCH_OPTION=y\nCONFIG_PRINTK=y\n",
    )
    .unwrap();
    let work_drop = scratch.path().join("drop");
    let err = build(
        &pinned,
        &work_drop,
        vec![test_fragment(), bogus.clone()],
        AcceptedDrops::default(),
        vec![test_patch()],
        Some(2),
    )
    .unwrap_err();
    let text = hermetic::error::render_error_chain(&anyhow::Error::new(err));
    assert!(
        text.contains(&format!(
            "CONFIG_HERMETIC_NO_SUCH_OPTION dropped: requested y, final absent ({}:2)",
            bogus.display()
        )),
        "{text}"
    );
    assert!(text.contains("1 requested kernel option(s)"), "{text}");
    assert!(text.contains("hint: "), "{text}");
    assert!(!work_drop.join("out/bzImage").exists());
    drop(fs_err::remove_dir_all(&work_drop));

    // The same inputs, the drop accepted, built at two work directories of different depth
    // and with different job counts: identical bzImage, the patch visible in vmlinux.
    let mut accepted = AcceptedDrops::default();
    accepted.options.insert(
        "CONFIG_HERMETIC_NO_SUCH_OPTION".into(),
        "test: an option that does not exist".into(),
    );
    let work_a = scratch.path().join("a");
    let work_b = scratch.path().join("somewhere/much/deeper/b");
    let a = build(
        &pinned,
        &work_a,
        vec![test_fragment(), bogus.clone()],
        accepted.clone(),
        vec![test_patch()],
        Some(2),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{}",
            hermetic::error::render_error_chain(&anyhow::Error::new(e))
        )
    });
    assert_eq!(a.drops.drops.len(), 1, "{}", a.drops.render());
    assert_eq!(
        a.drops.drops[0].request.name,
        "CONFIG_HERMETIC_NO_SUCH_OPTION"
    );
    assert!(a.release.starts_with("6.12."), "{}", a.release);
    assert!(a.release.ends_with("-mkosi-cloud"), "{}", a.release);
    let vmlinux = fs_err::read(&a.vmlinux).unwrap();
    let needle = b"%s version %s (hermetic-test-patch) (mkosi@mkosi)";
    assert!(
        vmlinux.windows(needle.len()).any(|w| w == needle),
        "the patched banner is in vmlinux"
    );
    let config = fs_err::read_to_string(&a.config).unwrap();
    for line in [
        "CONFIG_EFI_STUB=y",
        "CONFIG_SERIAL_8250_CONSOLE=y",
        "CONFIG_RD_ZSTD=y",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "{line} in the final .config"
        );
    }
    // The bzImage is a PE file (EFI stub) with the Linux boot header.
    let bz = fs_err::read(&a.bzimage).unwrap();
    assert_eq!(&bz[..2], b"MZ");
    assert_eq!(&bz[0x202..0x206], b"HdrS");

    let b = build(
        &pinned,
        &work_b,
        vec![test_fragment(), bogus],
        accepted,
        vec![test_patch()],
        None,
    )
    .unwrap_or_else(|e| {
        panic!(
            "{}",
            hermetic::error::render_error_chain(&anyhow::Error::new(e))
        )
    });
    assert_eq!(a.release, b.release);
    assert_eq!(
        sha256(&a.bzimage),
        sha256(&b.bzimage),
        "bzImage differs between {} and {}",
        a.bzimage.display(),
        b.bzimage.display()
    );
    assert_eq!(sha256(&a.config), sha256(&b.config));
    let scratch_path = scratch.path().to_string_lossy().into_owned();
    assert!(
        !vmlinux
            .windows(scratch_path.len())
            .any(|w| w == scratch_path.as_bytes()),
        "no host path in vmlinux"
    );
}

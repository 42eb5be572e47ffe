//! Projects for the live tests: this project's `hermetic.toml`, `keys/`, chosen recipes and
//! `kernel/` copied into a temporary directory, with the kernel of `base` chosen by the test.
//!
//! The committed `base` builds the seed's full kernel (about 20 minutes on two cores); tests
//! that boot images build the small test kernel instead (`kernel/test-configs/` over
//! `make tinyconfig`, `kernel/test-patches/`), from the same pinned source in the same tools
//! tree, or take Debian's packaged kernel.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

/// Which kernel the test project's `base` has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The committed `[kernel]` table (the seed's configuration).
    Seed,
    /// The same source and build-packages, with `config-target = "tinyconfig"` and the test
    /// fragments and patch (in `kernel-test/` of the project).
    Small,
    /// No `[kernel]` table: a bootable image takes the kernel a package puts in `/boot`.
    Package,
}

/// The directory of the small kernel in a test project.
pub const SMALL_KERNEL_DIR: &str = "kernel-test";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the tree `from` to `to` (directories and regular files).
pub fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            fs_err::copy(entry.path(), dst).unwrap();
        }
    }
}

/// The text of `recipes/base.toml` with the chosen kernel.
pub fn base_recipe(kernel: Kernel) -> String {
    let text = fs_err::read_to_string(repo().join("recipes/base.toml")).unwrap();
    if kernel == Kernel::Seed {
        return text;
    }
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    let seed = table
        .remove("kernel")
        .expect("recipes/base.toml has a [kernel] table");
    if kernel == Kernel::Small {
        let mut small = seed.as_table().unwrap().clone();
        small.remove("config-package");
        small.remove("config-file");
        small.insert("config-target".into(), "tinyconfig".into());
        small.insert("dir".into(), SMALL_KERNEL_DIR.into());
        table.insert("kernel".into(), toml::Value::Table(small));
    }
    toml::to_string(&table).unwrap()
}

/// Writes the small kernel's directory (`configs/`, `patches/`) into project `p`.
pub fn write_small_kernel_dir(p: &Path) {
    let dir = p.join(SMALL_KERNEL_DIR);
    copy_dir(&repo().join("kernel/test-configs"), &dir.join("configs"));
    // The README of the test configs is not a fragment.
    let _ = fs_err::remove_file(dir.join("configs/README.md"));
    copy_dir(&repo().join("kernel/test-patches"), &dir.join("patches"));
}

/// A temporary project with `recipes` (their committed files; `base` with `kernel`).
pub fn project(recipes: &[&str], kernel: Kernel) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs_err::copy(repo().join("hermetic.toml"), p.join("hermetic.toml")).unwrap();
    copy_dir(&repo().join("keys"), &p.join("keys"));
    copy_dir(&repo().join("kernel"), &p.join("kernel"));
    write_small_kernel_dir(p);
    fs_err::create_dir(p.join("recipes")).unwrap();
    for r in recipes {
        let dst = p.join(format!("recipes/{r}.toml"));
        if *r == "base" {
            fs_err::write(dst, base_recipe(kernel)).unwrap();
        } else {
            fs_err::copy(repo().join(format!("recipes/{r}.toml")), dst).unwrap();
        }
    }
    dir
}

/// Runs a command that must succeed; on failure the panic shows its output.
pub fn run(cmd: &mut Command) -> Output {
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

/// A project at `dir` with this repository's settings and keys and one recipe `name`
/// (the program builds' live tests).
pub fn write_recipe_project(dir: &Path, name: &str, recipe: &str) {
    fs_err::create_dir_all(dir.join("recipes")).unwrap();
    fs_err::create_dir_all(dir.join("keys")).unwrap();
    fs_err::copy(repo().join("hermetic.toml"), dir.join("hermetic.toml")).unwrap();
    for e in fs_err::read_dir(repo().join("keys")).unwrap() {
        let e = e.unwrap();
        fs_err::copy(e.path(), dir.join("keys").join(e.file_name())).unwrap();
    }
    fs_err::write(dir.join(format!("recipes/{name}.toml")), recipe).unwrap();
}

/// `hermetic -C project --store store`.
pub fn hermetic_in(project: &Path, store: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hermetic"));
    c.arg("-C").arg(project).arg("--store").arg(store);
    c
}

/// The bytes of `member` of the tar at `tar`.
pub fn tar_member(tar: &Path, member: &str) -> Vec<u8> {
    run(Command::new("tar").arg("-xOf").arg(tar).arg(member)).stdout
}

/// Asserts that the dpkg status database `status` lists `pkg` as installed.
pub fn assert_installed(status: &str, pkg: &str) {
    let paragraph = status
        .split("\n\n")
        .find(|p| p.lines().any(|l| l == format!("Package: {pkg}")))
        .unwrap_or_else(|| panic!("{pkg} is not in the image's dpkg status"));
    assert!(
        paragraph
            .lines()
            .any(|l| l == "Status: install ok installed"),
        "{pkg} is not installed in the image: {paragraph}"
    );
}

/// Whether `haystack` holds the bytes of `needle`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}

/// `hermetic measure --json --bank BANK` of `efi` (with `--secure-boot` if asked): PCR 4, 9
/// and 11 -> expected hex, as printed.
pub fn predicted_pcrs(efi: &Path, bank: &str, secure_boot: bool) -> BTreeMap<u32, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermetic"));
    cmd.arg("measure").arg(efi).args(["--json", "--bank", bank]);
    if secure_boot {
        cmd.arg("--secure-boot");
    }
    let v: serde_json::Value = serde_json::from_slice(&run(&mut cmd).stdout).unwrap();
    [4, 9, 11]
        .into_iter()
        .map(|pcr| {
            let hex = v["measurements"][pcr.to_string()]["expected"]
                .as_str()
                .unwrap_or_else(|| panic!("no PCR {pcr} in {v}"))
                .to_string();
            (pcr, hex)
        })
        .collect()
}

//! Records the git commit hermetic is built from, for `hermetic --version` and provenance:
//! `0123456789ab`, or `0123456789ab-dirty` when hermetic's own sources (`src/`, `sandbox/`,
//! `build.rs`, `Cargo.toml`, `Cargo.lock`) differ from that commit. A build outside a git
//! checkout (a source tarball) says `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Whether the C toolchain cargo links with packs relative relocations (`-z
/// pack-relative-relocs`, GNU ld 2.38+ or lld) into a program the C library of this machine
/// runs (DT_RELR, glibc 2.36+): a tiny C program is linked with it and run.
fn packs_relative_relocs(out: &Path) -> bool {
    use std::io::Write as _;
    let bin = out.join("relr-probe");
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let Ok(mut cc) = Command::new(linker)
        .args([
            "-x",
            "c",
            "-",
            "-pie",
            "-fPIE",
            "-Wl,-z,pack-relative-relocs",
            "-o",
        ])
        .arg(&bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        return false;
    };
    let wrote = cc
        .stdin
        .take()
        .is_some_and(|mut i| i.write_all(b"int main(void) { return 0; }\n").is_ok());
    // An old GNU ld only warns that it ignores the option: count that as unsupported too.
    let linked = cc
        .wait_with_output()
        .is_ok_and(|o| o.status.success() && o.stderr.is_empty());
    wrote && linked && Command::new(&bin).status().is_ok_and(|s| s.success())
}

fn main() {
    // Start-up: the dynamic loader applies ~70 000 relative relocations to the hermetic
    // binary before main, a third of what `hermetic sandbox run -- true` executes. Packed
    // (RELR), their table shrinks from about 1.7 MB to a few KB and applying them costs a
    // fraction (docs/sandbox.md, "Start-up"). Only for native builds, and only where the
    // toolchain and C library support it (else the binary is linked as before).
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if native
        && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && packs_relative_relocs(&out)
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");

    const SOURCES: [&str; 5] = ["src", "sandbox", "build.rs", "Cargo.toml", "Cargo.lock"];
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            // --no-optional-locks: `git status` must not refresh (rewrite) the index, which
            // this script watches; otherwise every build would run it again.
            let mut args = vec![
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
            ];
            args.extend(SOURCES);
            // `git status` printing nothing is a clean tree; it failing is not known to be one.
            let clean = Command::new("git")
                .args(&args)
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.is_empty());
            if clean { rev } else { format!("{rev}-dirty") }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=HERMETIC_COMMIT={commit}");
    // Look again when the sources change (for the dirty mark) or the index does (a commit
    // or `git add`).
    for path in SOURCES {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(index) = git(&["rev-parse", "--git-path", "index"]) {
        println!("cargo:rerun-if-changed={index}");
    }
    // Build again when HEAD moves: HEAD itself (a branch switch), the branch's ref (a commit)
    // and packed-refs (a ref packed away by git gc).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = PathBuf::from(dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
            println!(
                "cargo:rerun-if-changed={}",
                PathBuf::from(common).join("packed-refs").display()
            );
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"])
            && let Some(path) = git(&["rev-parse", "--git-path", &r])
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

//! Records the git commit hermetic is built from, for `hermetic --version` and provenance:
//! `0123456789ab`, or `0123456789ab-dirty` when hermetic's own sources (`src/`, `sandbox/`,
//! `build.rs`, `Cargo.toml`, `Cargo.lock`) differ from that commit. A build outside a git
//! checkout (a source tarball) says `unknown`.

use std::path::PathBuf;
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

fn main() {
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

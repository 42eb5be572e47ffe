//! Live test against the real Debian archive, through the mirrors of this machine's apt
//! configuration (never a host name written here): lock the repository's recipes into a
//! temporary copy of the project, fetch every pin into a temporary store, and check each
//! blob's SHA-256 against the lock.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

fn hermetic(project: &Path, store: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .arg("-C")
        .arg(project)
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("HERMETIC_MIRRORS")
        .env_remove("HERMETIC_KEYRING")
        .env_remove("HERMETIC_APT_ROOT")
        .env_remove("HERMETIC_STORE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs_err::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Removes from the recipes in `dir` the upstream sources this test cannot reach (all but
/// the project's own `path` sources: GitHub and the Go module proxy are not reachable from
/// the test machines), with the `[[go]]` builds and steps that use them. What is left is
/// locked afresh and fetched from the Debian archive and crates.io.
fn without_unreachable_sources(dir: &Path) {
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = fs_err::read_to_string(&path).unwrap();
        let mut recipe: toml::Table = toml::from_str(&text).unwrap();
        let Some(toml::Value::Array(sources)) = recipe.get_mut("sources") else {
            continue;
        };
        sources.retain(|s| s.get("kind").and_then(|k| k.as_str()) == Some("path"));
        recipe.remove("go");
        if let Some(toml::Value::Array(steps)) = recipe.get_mut("steps") {
            // The step laying out acme.sh reads its `file` sources.
            steps.retain(|s| s.get("name").and_then(|n| n.as_str()) != Some("acme-sh"));
        }
        fs_err::write(&path, toml::to_string(&recipe).unwrap()).unwrap();
    }
}

#[test]
fn committed_lock_matches_the_recipes() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = hermetic(repo, store.path(), &["lock", "--check"]);
    assert!(ok, "{stderr}");
}

#[test]
fn lock_and_fetch_the_base_set_from_the_real_archive() {
    let uris = hermetic::mirrors::apt_uris(Path::new("/")).unwrap();
    assert!(
        uris.iter()
            .any(|u| u.trim_end_matches('/').ends_with("/debian")),
        "this machine's apt configuration names no Debian mirror (.../debian); the live \
         test needs one: {uris:?}"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = tempfile::tempdir().unwrap();
    fs_err::copy(
        repo.join("hermetic.toml"),
        project.path().join("hermetic.toml"),
    )
    .unwrap();
    copy_dir(&repo.join("recipes"), &project.path().join("recipes"));
    copy_dir(&repo.join("keys"), &project.path().join("keys"));
    // base's [kernel] table names the kernel directory; the BuilderNet recipes name overlays,
    // step scripts and render-config's source (a `path` source under programs/).
    for dir in ["kernel", "overlays", "scripts", "programs"] {
        copy_dir(&repo.join(dir), &project.path().join(dir));
    }
    without_unreachable_sources(&project.path().join("recipes"));
    let store = tempfile::tempdir().unwrap();

    let (ok, _, stderr) = hermetic(
        project.path(),
        store.path(),
        &["lock", "--allow-mirror-state"],
    );
    assert!(ok, "{stderr}");
    let lock = hermetic::lockfile::Lockfile::read(&project.path().join("pins.lock"))
        .unwrap()
        .unwrap();
    let names: Vec<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
    for wanted in [
        "systemd",
        "kmod",
        "udhcpc",
        "util-linux",
        "base-files",
        "dpkg",
    ] {
        assert!(names.contains(&wanted), "{wanted} not pinned: {names:?}");
    }
    assert_eq!(lock.suites.len(), 2);
    let (ok, _, stderr) = hermetic(project.path(), store.path(), &["lock", "--check"]);
    assert!(ok, "{stderr}");

    let (ok, _, stderr) = hermetic(project.path(), store.path(), &["fetch"]);
    assert!(ok, "{stderr}");
    let blobs = store.path().join("v1/blobs/sha256");
    for p in &lock.packages {
        let bytes = fs_err::read(blobs.join(&p.sha256)).unwrap();
        assert_eq!(bytes.len() as u64, p.size, "{} {}", p.name, p.version);
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            p.sha256,
            "{} {}",
            p.name,
            p.version
        );
        // dpkg is the oracle that the file is the package and version pinned.
        let out = Command::new("dpkg-deb")
            .arg("--field")
            .arg(blobs.join(&p.sha256))
            .args(["Package", "Version", "Architecture"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "Package: {}\nVersion: {}\nArchitecture: {}\n",
                p.name, p.version, p.architecture
            )
        );
    }

    // The kernel's source and config debs and its tools are pinned too.
    for wanted in ["linux-source-6.12", "linux-config-6.12", "gcc", "make"] {
        assert!(
            lock.kernel_packages("base")
                .iter()
                .any(|p| p.name == wanted),
            "{wanted} not pinned for base's kernel"
        );
    }

    // A complete store: no request at all.
    let (ok, stdout, stderr) = hermetic(project.path(), store.path(), &["--json", "fetch"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["requests"], 0);
    assert_eq!(v["fetched"], 0);
}

//! `hermetic cache gc` against a project locked from a synthetic signed archive on 127.0.0.1:
//! it keeps the steps `hermetic plan` computes for every recipe and profile selection, and
//! the pinned blobs; removes the rest; touches nothing with `--dry-run` or a stale lock.

mod support;

use std::path::{Path, PathBuf};

use support::{TestArchive, TestKey, TestProject, TestServer, standard_suites};

const RECIPE: &str = "packages = [\"app\"]\n\
                      [profiles.dev]\nenvironment = { DEV = \"1\" }\n";

/// The step keys `hermetic plan` prints for `args`.
fn planned(p: &TestProject, args: &[&str]) -> Vec<String> {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    json(p, &all)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

/// A fake published step entry: `size` bytes of files, a read-only directory, the marker.
fn fake_step(store: &Path, key: &str, size: usize, complete: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = store.join("v1/steps").join(key);
    fs_err::create_dir_all(dir.join("tree/usr/ro")).unwrap();
    fs_err::write(dir.join("tree/usr/ro/data"), vec![7u8; size]).unwrap();
    fs_err::set_permissions(
        dir.join("tree/usr/ro"),
        std::fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    if complete {
        fs_err::write(dir.join(".hermetic-complete"), "").unwrap();
    }
    dir
}

/// The names of a report's `[name, bytes]` list.
fn names(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect()
}

fn json(p: &TestProject, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = p.command(&all).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn gc_keeps_what_the_project_uses() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let p = TestProject::new(&[("base", RECIPE)], &server, &key.keyring);
    p.ok(&["lock"]);
    p.ok(&["fetch"]);
    let store = p.store.path();

    // What a build would have published, for the plain recipe and with its profile.
    let plain = planned(&p, &["base"]);
    let dev = planned(&p, &["--profile", "dev", "base"]);
    assert_ne!(plain.last(), dev.last(), "the profile changes the image");
    let mut live = plain.clone();
    live.extend(dev.iter().cloned());
    live.sort();
    live.dedup();
    for k in &live {
        fake_step(store, k, 1000, true);
    }
    // Left-overs of other recipes, pins or configurations, one never completed.
    let old_kernel = "a".repeat(64);
    let half_done = "b".repeat(64);
    fake_step(store, &old_kernel, 300_000, true);
    fake_step(store, &half_done, 50_000, false);
    // A blob the lock does not pin (an older pin, say).
    let stray = b"a superseded package";
    let stray_hash = hermetic::hash::sha256_hex(stray);
    fs_err::write(store.join("v1/blobs/sha256").join(&stray_hash), stray).unwrap();
    let blobs_before = fs_err::read_dir(store.join("v1/blobs/sha256"))
        .unwrap()
        .count();

    // --dry-run: says what would go, removes nothing.
    let report = json(&p, &["cache", "gc", "--dry-run"]);
    let removed = names(&report["steps_removed"]);
    assert_eq!(
        removed,
        [old_kernel.as_str(), half_done.as_str()],
        "{report}"
    );
    assert_eq!(report["steps_kept"], live.len(), "{report}");
    assert!(report["bytes"].as_u64().unwrap() >= 350_000, "{report}");
    assert!(store.join("v1/steps").join(&old_kernel).exists());

    // The real thing: the two left-overs go (read-only directories and all), the rest stays.
    let stderr = p.ok(&["cache", "gc"]);
    assert!(
        stderr.contains(&format!(
            "removed 2 step entries and 0 blobs ({}); kept {} step entries and {blobs_before} blobs",
            hermetic::archive::human_size(report["bytes"].as_u64().unwrap()),
            live.len()
        )),
        "{stderr}"
    );
    assert!(!store.join("v1/steps").join(&old_kernel).exists());
    assert!(!store.join("v1/steps").join(&half_done).exists());
    for k in &live {
        assert!(store.join("v1/steps").join(k).exists(), "{k} removed");
    }
    let report = json(&p, &["plan", "base"]);
    for row in report.as_array().unwrap() {
        assert_eq!(row["cached"], true, "{row}");
    }

    // --blobs: the stray blob and the cached archive indexes go, every pin stays (an
    // offline fetch finds them all).
    let lock = hermetic::lockfile::Lockfile::read(&p.path("pins.lock"))
        .unwrap()
        .unwrap();
    let mut pinned: Vec<&str> = lock.packages.iter().map(|x| x.sha256.as_str()).collect();
    pinned.extend(
        lock.sources
            .iter()
            .flat_map(|s| s.files.iter().map(|f| f.sha256.as_str())),
    );
    pinned.sort();
    pinned.dedup();
    let report = json(&p, &["cache", "gc", "--blobs"]);
    let removed = names(&report["blobs_removed"]);
    assert!(removed.contains(&stray_hash.as_str()), "{report}");
    assert!(removed.iter().all(|h| !pinned.contains(h)), "{report}");
    assert_eq!(report["blobs_kept"], pinned.len(), "{report}");
    assert_eq!(removed.len() + pinned.len(), blobs_before, "{report}");
    assert!(!store.join("v1/blobs/sha256").join(&stray_hash).exists());
    p.ok(&["fetch", "--offline"]);

    // A lock that does not match the recipes: gc cannot tell what is used, removes nothing.
    fake_step(store, &old_kernel, 10, true);
    fs_err::write(
        p.path("recipes/base.toml"),
        "packages = [\"app\", \"libbar\"]\n",
    )
    .unwrap();
    let stderr = p.fails(&["cache", "gc"]);
    assert!(stderr.contains("nothing was removed"), "{stderr}");
    assert!(stderr.contains("hermetic lock"), "{stderr}");
    assert!(store.join("v1/steps").join(&old_kernel).exists());
}

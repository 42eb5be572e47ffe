//! The store is not trusted at use (issue 11, cases 3, 4 and 9), each attack performed as
//! written:
//! - a pinned .deb replaced in the store by a repacked one of another size, or by one with a
//!   flipped byte, is refused when a tree is built from it, naming the blob and the package;
//!   the blob is removed and nothing is published;
//! - a flipped byte (or mode) in a published step entry is found by `hermetic cache verify`,
//!   which names and removes the entry;
//! - the temporary entry of a killed `hermetic fetch` is reported by `cache gc --dry-run` and
//!   removed by the next run, while an entry whose owner still runs stays;
//! - step entries and temporary entries are mode 0700, also in a store made by an older
//!   hermetic.

#[path = "fixtures/deb/generator.rs"]
mod generator;
mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use generator::{Entry, data_tar, gzip};
use hermetic::build::plan::DebPin;
use hermetic::build::rootfs;
use hermetic::deb::ArWriter;
use hermetic::store::Store;
use support::{Fault, TestArchive, TestKey, TestProject, TestServer, standard_suites};

/// A .deb of package `pkg` 1.0 whose data.tar (uncompressed, or gzip) holds `files`.
fn package(files: &[(&str, &[u8])], compress: bool) -> Vec<u8> {
    let control = "Package: pkg\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n";
    let mut entries = vec![Entry::Dir("./"), Entry::Dir("./etc/")];
    for (name, data) in files {
        entries.push(Entry::File(name, 0o644, data));
    }
    let data = data_tar(&entries);
    let mut w = ArWriter::new(Vec::new()).unwrap();
    w.append("debian-binary", 0, b"2.0\n").unwrap();
    w.append(
        "control.tar.gz",
        0,
        &generator::control_tar_gz(control, &[]),
    )
    .unwrap();
    if compress {
        w.append("data.tar.gz", 0, &gzip(&data)).unwrap();
    } else {
        w.append("data.tar", 0, &data).unwrap();
    }
    w.finish().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode(path: &Path) -> u32 {
    fs_err::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Puts `bytes` in the store and returns its pin.
fn pin(store: &Store, bytes: &[u8]) -> DebPin {
    DebPin {
        name: "pkg".into(),
        version: "1.0".into(),
        sha256: store.put_blob_bytes(bytes).unwrap(),
        size: bytes.len() as u64,
    }
}

/// Replaces the stored blob of `pin` by `bytes` (blobs are read-only: a new file).
fn substitute(store: &Store, pin: &DebPin, bytes: &[u8]) {
    let path = store.blob_path(&pin.sha256);
    let _ = fs_err::remove_file(&path);
    fs_err::write(&path, bytes).unwrap();
}

/// Builds a tree from `pin` as the rootfs step does (in a temporary entry of the store that
/// is published only on success); returns the error text.
fn build_tree(store: &Store, pin: &DebPin) -> Result<PathBuf, String> {
    let temp = store.temp_dir().unwrap();
    let tree = temp.path().join("tree");
    fs_err::create_dir(&tree).unwrap();
    let built = rootfs::read_debs(store, std::slice::from_ref(pin))
        .and_then(|infos| rootfs::bootstrap_tree(store, &tree, &infos));
    match built {
        Ok(()) => Ok(store.publish_step(&"e".repeat(64), temp).unwrap()),
        Err(e) => Err(format!("{e}")),
    }
}

fn assert_refused(store: &Store, pin: &DebPin, err: &str, problem: &str) {
    let blob = store.blob_path(&pin.sha256);
    assert!(err.contains(&blob.display().to_string()), "{err}");
    assert!(err.contains("package pkg_1.0"), "{err}");
    assert!(err.contains(problem), "{err}");
    assert!(err.contains("it was removed from the store"), "{err}");
    assert!(err.contains("hint: run `hermetic fetch`"), "{err}");
    assert!(!blob.exists(), "the bad blob is still in the store");
    assert!(store.steps().unwrap().is_empty(), "something was published");
    assert!(
        names(&store.root().join("tmp")).is_empty(),
        "the extracted tree was left in tmp/"
    );
}

#[test]
fn substituted_debs_are_refused_at_use_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let genuine = package(&[("./etc/motd", b"the genuine file\n")], false);

    // A repacked package of another size, carrying a file of the attacker's.
    let p = pin(&store, &genuine);
    let repacked = package(
        &[
            ("./etc/motd", b"the genuine file\n"),
            ("./etc/evil", b"attacker"),
        ],
        false,
    );
    assert_ne!(repacked.len(), genuine.len());
    substitute(&store, &p, &repacked);
    let err = build_tree(&store, &p).unwrap_err();
    assert_refused(
        &store,
        &p,
        &err,
        &format!("{} bytes, pins.lock says {}", repacked.len(), genuine.len()),
    );

    // The same size, one byte of a file's content flipped: the package reads fine, and the
    // hash taken while it is extracted refuses it.
    let p = pin(&store, &genuine);
    let mut flipped = genuine.clone();
    let at = flipped
        .windows(7)
        .position(|w| w == b"genuine")
        .expect("the content is stored uncompressed");
    flipped[at] = b'G';
    substitute(&store, &p, &flipped);
    let err = build_tree(&store, &p).unwrap_err();
    assert_refused(
        &store,
        &p,
        &err,
        &format!("its SHA-256 is {}", hermetic::hash::sha256_hex(&flipped)),
    );

    // A flipped byte inside a compressed data.tar breaks decompression: the error still says
    // the file is not the pinned one.
    let compressed = package(&[("./etc/motd", &[7u8; 5000])], true);
    let p = pin(&store, &compressed);
    let mut flipped = compressed.clone();
    let len = flipped.len();
    flipped[len - 30] ^= 0xff;
    substitute(&store, &p, &flipped);
    let err = build_tree(&store, &p).unwrap_err();
    assert_refused(&store, &p, &err, "is not the pinned file");

    // The genuine package builds, and its entry is private.
    let p = pin(&store, &genuine);
    let entry = build_tree(&store, &p).unwrap();
    assert_eq!(
        fs_err::read(entry.join("tree/etc/motd")).unwrap(),
        b"the genuine file\n"
    );
    assert_eq!(mode(&entry), 0o700);
    assert_eq!(mode(&store.root().join("steps")), 0o700);
    assert!(names(&store.root().join("tmp")).is_empty());
}

/// A project locked from the synthetic archive.
struct Fixture {
    _key: TestKey,
    archive: TestArchive,
    server: TestServer,
    project: TestProject,
}

fn locked(recipe: &str) -> Fixture {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let project = TestProject::new(&[("base", recipe)], &server, &key.keyring);
    project.ok(&["lock"]);
    Fixture {
        _key: key,
        archive,
        server,
        project,
    }
}

/// The complete step entries of the project's store.
fn published(p: &TestProject) -> Vec<String> {
    let steps = p.store.path().join("v1/steps");
    names(&steps)
        .into_iter()
        .filter(|k| steps.join(k).join(".hermetic-complete").exists())
        .collect()
}

#[test]
fn build_refuses_a_substituted_blob() {
    let f = locked("packages = [\"app\"]\n");
    let p = &f.project;
    p.ok(&["fetch"]);
    let libc = f.archive.debs["libc6"].clone();
    let genuine = fs_err::read(p.blob(&libc.sha256)).unwrap();

    // Replaced by a larger file (a repacked package).
    let mut repacked = genuine.clone();
    repacked.extend_from_slice(b"\nattacker's payload\n");
    fs_err::remove_file(p.blob(&libc.sha256)).unwrap();
    fs_err::write(p.blob(&libc.sha256), &repacked).unwrap();
    let stderr = p.fails(&["build", "base"]);
    assert!(
        stderr.contains(&p.blob(&libc.sha256).display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("package libc6_2.41-12"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} bytes, pins.lock says {}",
            repacked.len(),
            genuine.len()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hermetic fetch"), "{stderr}");
    assert!(!p.blob(&libc.sha256).exists());
    assert!(published(p).is_empty(), "{:?}", published(p));
    assert!(names(&p.store.path().join("v1/tmp")).is_empty());

    // Fetched again, then one byte flipped, the size kept.
    p.ok(&["fetch"]);
    let mut flipped = genuine.clone();
    let at = flipped
        .windows(6)
        .position(|w| w == b"libc6 ")
        .expect("the README is stored uncompressed");
    flipped[at] = b'L';
    fs_err::remove_file(p.blob(&libc.sha256)).unwrap();
    fs_err::write(p.blob(&libc.sha256), &flipped).unwrap();
    let stderr = p.fails(&["build", "base"]);
    assert!(stderr.contains("package libc6_2.41-12"), "{stderr}");
    assert!(
        stderr.contains(&format!("its SHA-256 is {}", support::sha256_hex(&flipped))),
        "{stderr}"
    );
    assert!(!p.blob(&libc.sha256).exists());
    assert!(published(p).is_empty(), "{:?}", published(p));
    assert!(names(&p.store.path().join("v1/tmp")).is_empty());
    drop(f.server);
}

/// `hermetic --store DIR ARGS`, run outside any project.
fn hermetic(store: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("HERMETIC_STORE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cache_verify_finds_and_removes_damaged_step_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let publish = |key: &str| {
        let temp = store.temp_dir().unwrap();
        fs_err::create_dir_all(temp.path().join("tree/usr/bin")).unwrap();
        fs_err::create_dir_all(temp.path().join("files")).unwrap();
        fs_err::write(
            temp.path().join("tree/usr/bin/tool"),
            b"#!/bin/sh\necho ok\n",
        )
        .unwrap();
        fs_err::write(temp.path().join("files/base.tar"), vec![5u8; 50_000]).unwrap();
        store.publish_step(key, temp).unwrap()
    };
    let (good, bad, old) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
    publish(&good);
    let bad_path = publish(&bad);
    let old_path = publish(&old);
    let (ok, _, stderr) = hermetic(dir.path(), &["cache", "verify"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("3 step entries"), "{stderr}");

    // A flipped byte in a stored output; an entry of an older hermetic (empty marker).
    let out = bad_path.join("files/base.tar");
    let mut bytes = fs_err::read(&out).unwrap();
    bytes[12_345] ^= 1;
    fs_err::write(&out, bytes).unwrap();
    fs_err::write(old_path.join(".hermetic-complete"), b"").unwrap();
    let (ok, stdout, stderr) = hermetic(dir.path(), &["--json", "cache", "verify"]);
    assert!(!ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["corrupt_steps"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["corrupt_steps"][0]["key"], bad.as_str(), "{v}");
    assert_eq!(v["unverifiable_steps"][0], old.as_str(), "{v}");
    assert!(!bad_path.exists(), "the damaged entry is still there");
    assert!(store.has_step(&good) && store.has_step(&old));

    // The text report names the entry; a changed mode (setuid added) counts as damage too.
    let good_path = store.step_path(&good);
    fs_err::set_permissions(
        good_path.join("tree/usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let (ok, _, stderr) = hermetic(dir.path(), &["cache", "verify"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!("corrupt: step entry {}", good_path.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("unverifiable: step entry {}", old_path.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("rebuilds the removed step entries"),
        "{stderr}"
    );
    assert!(!good_path.exists());
    assert_eq!(store.steps().unwrap(), [old]);
}

#[test]
fn an_older_stores_entries_are_closed_to_other_users() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v1");
    let entry = v1.join("steps").join("d".repeat(64));
    fs_err::create_dir_all(entry.join("tree/usr/bin")).unwrap();
    fs_err::write(entry.join("tree/usr/bin/su"), b"setuid root").unwrap();
    fs_err::set_permissions(
        entry.join("tree/usr/bin/su"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs_err::write(entry.join(".hermetic-complete"), b"").unwrap();
    let left = v1.join("tmp/tree-left");
    fs_err::create_dir_all(&left).unwrap();
    for d in [&v1.join("steps"), &entry, &v1.join("tmp"), &left] {
        fs_err::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Any command that opens the store repairs it.
    let (ok, _, stderr) = hermetic(dir.path(), &["cache", "verify"]);
    assert!(ok, "{stderr}");
    for d in [
        &v1.join("steps"),
        &entry,
        &v1.join("tmp"),
        &left,
        &v1.join("kept"),
    ] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    // The entry itself is unchanged inside: an image needs its setuid files.
    assert_eq!(mode(&entry.join("tree/usr/bin/su")), 0o4755);
}

#[test]
fn a_killed_runs_tmp_entry_is_reported_and_removed_by_the_next_run() {
    let f = locked("packages = [\"app\"]\nbuild-packages = [\"tool\", \"big\"]\n");
    let p = &f.project;
    let tmp = p.store.path().join("v1/tmp");
    // A live owner: another process holds the owner lock of its entry.
    fs_err::create_dir_all(&tmp).unwrap();
    let live = tmp.join("tree-live");
    fs_err::create_dir(&live).unwrap();
    fs_err::write(live.join("data"), vec![3u8; 10_000]).unwrap();
    fs_err::write(tmp.join("tree-live.owner"), b"").unwrap();
    // One process holds the lock: the shell opens the file, `flock` locks that open file,
    // the shell becomes `sleep` with it still open.
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg("exec 9>>\"$1\" && flock --exclusive 9 && exec sleep 600")
        .arg("sh")
        .arg(tmp.join("tree-live.owner"))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = fs_err::File::open(tmp.join("tree-live.owner")).unwrap();
        if probe.try_lock().is_err() {
            break;
        }
        drop(probe);
        assert!(Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }

    // `hermetic fetch` killed in the middle of the 2 MiB download.
    let big = f.archive.debs["big"].clone();
    f.server.fault(&big.path, Fault::StallHalfway, 1);
    let mut child = p.command(&["fetch"]).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let partial = loop {
        let sizes: Vec<(String, u64)> = names(&tmp)
            .into_iter()
            .filter(|n| n.starts_with("blob-") && !n.ends_with(".owner"))
            .map(|n| (n.clone(), fs_err::metadata(tmp.join(&n)).unwrap().len()))
            .collect();
        if let Some((name, _)) = sizes.iter().find(|(_, len)| *len >= 1024 * 1024) {
            break name.clone();
        }
        assert!(Instant::now() < deadline, "no partial download in {tmp:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(tmp.join(&partial).exists());
    assert!(tmp.join(format!("{partial}.owner")).exists());
    // Every entry the killed fetch left (the partial one, and any other download that was
    // under way: on a loaded machine small ones may be too) is dead; the held one is not.
    let dead: Vec<String> = names(&tmp)
        .into_iter()
        .filter(|n| n.starts_with("blob-") && !n.ends_with(".owner"))
        .collect();
    assert!(dead.contains(&partial), "{dead:?}");

    // `cache gc --dry-run` reports them, and removes nothing.
    let out = p
        .command(&["--json", "cache", "gc", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let removed: Vec<&str> = v["tmp_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(removed, dead, "{v}");
    assert!(v["tmp_bytes"].as_u64().unwrap() >= 1024 * 1024, "{v}");
    assert_eq!(v["tmp_in_use"], 1, "{v}");
    assert!(tmp.join(&partial).exists());
    let stderr = p.ok(&["cache", "gc", "--dry-run"]);
    assert!(
        stderr.contains(&format!(
            "would remove {} temporary entries of finished or killed runs",
            dead.len()
        )),
        "{stderr}"
    );

    // The next run removes the dead entries when it opens the store, and only those.
    f.server.clear_faults();
    let stderr = p.ok(&["fetch"]);
    assert!(
        stderr.contains(&format!(
            "removed {} temporary entries of killed runs",
            dead.len()
        )),
        "{stderr}"
    );
    assert!(!tmp.join(&partial).exists());
    assert!(!tmp.join(format!("{partial}.owner")).exists());
    assert_eq!(names(&tmp), ["tree-live", "tree-live.owner"]);
    assert!(p.blob(&big.sha256).is_file());

    // Once its owner is gone, the collector takes the other one too.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let stderr = p.ok(&["cache", "gc"]);
    assert!(
        stderr.contains("removed 1 temporary entries of finished or killed runs"),
        "{stderr}"
    );
    assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
}

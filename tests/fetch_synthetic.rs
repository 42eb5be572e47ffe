//! `hermetic fetch` and `hermetic cache` against a synthetic signed archive on 127.0.0.1.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Fault, TestArchive, TestKey, TestProject, TestServer, standard_suites};

struct Fixture {
    key: TestKey,
    archive: TestArchive,
    server: TestServer,
    project: TestProject,
}

/// A locked project: `app` (image), `big` + `tool` (tools), source `hello`.
fn locked() -> Fixture {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let project = TestProject::new(
        &[(
            "base",
            "packages = [\"app\"]\nbuild-packages = [\"tool\", \"big\"]\nsource-packages = [\"hello\"]\n",
        )],
        &server,
        &key.keyring,
    );
    project.ok(&["lock"]);
    Fixture {
        key,
        archive,
        server,
        project,
    }
}

/// Every (sha256, size) pinned in a lock text.
fn pins(lock: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut size = None;
    for line in lock.lines() {
        if let Some(v) = line.strip_prefix("size = ") {
            size = Some(v.parse().unwrap());
        }
        if let Some(v) = line.strip_prefix("sha256 = ") {
            out.push((v.trim_matches('"').to_string(), size.take().unwrap()));
        }
        // Source files: `{ name = "...", size = N, sha256 = "..." },`
        if line.starts_with("  { name = ") {
            let size: u64 = line
                .split("size = ")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let sha = line
                .split("sha256 = \"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            out.push((sha.to_string(), size));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn blobs_in(p: &TestProject) -> Vec<String> {
    let dir = p.store.path().join("v1/blobs/sha256");
    let mut v: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn fetch_fills_store_and_second_run_costs_nothing() {
    let f = locked();
    let p = &f.project;
    let wanted = pins(&p.lock_text());
    assert!(wanted.len() >= 10, "{wanted:?}");
    let before = f.server.requests();
    let stderr = p.ok(&["fetch"]);
    assert!(
        stderr.contains(&format!("fetched {} files", wanted.len())),
        "{stderr}"
    );
    assert!(stderr.contains("0 already in store"), "{stderr}");
    for (sha, size) in &wanted {
        let bytes = fs_err::read(p.blob(sha)).unwrap();
        assert_eq!(bytes.len() as u64, *size);
        assert_eq!(&support::sha256_hex(&bytes), sha);
    }
    // The store is marked.
    let tag = fs_err::read_to_string(p.store.path().join("v1/CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
    // Each file was asked for once (the closed snapshot port and no apt mirrors).
    assert_eq!(f.server.requests() - before, wanted.len());

    let before = f.server.requests();
    let start = Instant::now();
    let (ok, stdout, stderr) = p.run(&["--json", "fetch"]);
    assert!(ok, "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        f.server.requests(),
        before,
        "a complete store used the network"
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["fetched"], 0);
    assert_eq!(v["already"], wanted.len());
    assert_eq!(v["requests"], 0);

    let stderr = p.ok(&["cache", "verify"]);
    assert!(stderr.contains("0 corrupt"), "{stderr}");
    // The fetched .deb is what dpkg-deb built (the oracle reads it back).
    let tool = &f.archive.debs["tool"];
    let out = std::process::Command::new("dpkg-deb")
        .arg("--contents")
        .arg(p.blob(&tool.sha256))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("./usr/bin/tool"), "{listing}");
    let (ok, stdout, _) = p.run(&["cache", "dir"]);
    assert!(ok);
    assert_eq!(stdout.trim(), p.store.path().to_str().unwrap());
}

#[test]
fn truncated_download_is_retried() {
    let f = locked();
    let big = f.archive.debs["big"].clone();
    f.server.fault(&big.path, Fault::HangUpHalfway, 1);
    let before = f.server.requests();
    f.project.ok(&["fetch"]);
    assert!(f.project.blob(&big.sha256).is_file());
    let asked = f.server.log()[before..]
        .iter()
        .filter(|p| p.ends_with(&big.path))
        .count();
    assert_eq!(asked, 2, "the truncated transfer was not retried once");
}

#[test]
fn wrong_bytes_everywhere_leave_nothing_and_name_the_pin() {
    let f = locked();
    let tool = f.archive.debs["tool"].clone();
    f.server.fault(&tool.path, Fault::WrongBytes, usize::MAX);
    let stderr = f.project.fails(&["fetch"]);
    assert!(
        stderr.contains("1 pin(s) could not be downloaded"),
        "{stderr}"
    );
    assert!(stderr.contains("tool 0.9~rc1-1"), "{stderr}");
    assert!(stderr.contains("download has SHA-256"), "{stderr}");
    assert!(!f.project.blob(&tool.sha256).exists());
    // Everything else made it, and nothing unverified is anywhere in the store.
    assert!(f.project.blob(&f.archive.debs["big"].sha256).is_file());
    let tmp: Vec<_> = fs_err::read_dir(f.project.store.path().join("v1/tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn pin_missing_everywhere_names_package_sources_and_hint() {
    let f = locked();
    let libfoo = f.archive.debs["libfoo"].clone();
    fs_err::remove_file(f.archive.path(&libfoo.path)).unwrap();
    let stderr = f.project.fails(&["fetch"]);
    assert!(stderr.contains("libfoo 1.1-1~deb13u1"), "{stderr}");
    // Both sources are named: the mirror (404) and the snapshot stand-in (refused once,
    // then skipped for the rest of the run).
    assert!(
        stderr.contains(&format!("{}{}: HTTP 404", f.server.url(), libfoo.path)),
        "{stderr}"
    );
    assert!(stderr.contains(&f.project.snapshot_url), "{stderr}");
    // The lock read the mirror's state (InRelease Date 24 Nov 2026 00:00): the snapshot is
    // asked for the state a day later, not for the project's timestamp.
    assert!(
        stderr.contains("/archive/debian-security/20261125T000000Z/"),
        "{stderr}"
    );
    assert!(
        stderr.contains("re-pin with `hermetic lock --update PKG...`"),
        "{stderr}"
    );
}

#[test]
fn offline_lists_every_missing_pin_without_network() {
    let f = locked();
    let wanted = pins(&f.project.lock_text());
    let before = f.server.requests();
    let stderr = f.project.fails(&["fetch", "--offline"]);
    assert_eq!(f.server.requests(), before);
    assert!(
        stderr.contains(&format!("--offline: {} pin(s)", wanted.len())),
        "{stderr}"
    );
    for (sha, _) in &wanted {
        assert!(stderr.contains(sha.as_str()), "{sha} not listed:\n{stderr}");
    }
    f.project.ok(&["fetch"]);
    f.project.ok(&["fetch", "--offline"]);
}

#[test]
fn two_concurrent_fetches_share_the_store() {
    let f = locked();
    let wanted = pins(&f.project.lock_text());
    // Slow the first transfer down so that the two processes overlap.
    f.server
        .fault(&f.archive.debs["big"].path, Fault::Delay(1500), 1);
    let before = f.server.requests();
    let first = f
        .project
        .command(&["fetch"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let second = f
        .project
        .command(&["fetch"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    let (e1, e2) = (
        String::from_utf8_lossy(&first.stderr),
        String::from_utf8_lossy(&second.stderr),
    );
    assert!(
        first.status.success() && second.status.success(),
        "{e1}\n{e2}"
    );
    // Whichever came second waited for the first, then found every pin present.
    let waited = |e: &str| {
        e.contains("waiting for lock on")
            && e.contains(&format!("{} already in store", wanted.len()))
    };
    assert!(waited(&e1) || waited(&e2), "{e1}\n{e2}");
    // Each file was downloaded once in all.
    assert_eq!(f.server.requests() - before, wanted.len());
    // The pins, plus InRelease, Packages.xz and Sources.xz of both suites (kept by `lock`).
    assert_eq!(blobs_in(&f.project).len(), wanted.len() + 6);
    f.project.ok(&["cache", "verify"]);
}

#[test]
fn download_killed_half_way_leaves_nothing() {
    let f = locked();
    let big = f.archive.debs["big"].clone();
    f.server.fault(&big.path, Fault::StallHalfway, 1);
    let mut child = f
        .project
        .command(&["fetch"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the stalled transfer has started, and the others have had time to finish.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f.server.log().iter().any(|p| p.ends_with(&big.path)) {
        assert!(
            Instant::now() < deadline,
            "the big file was never asked for"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !f.project.blob(&big.sha256).exists(),
        "a half download was published"
    );
    // Whatever was published is complete and correct.
    for sha in blobs_in(&f.project) {
        let bytes = fs_err::read(f.project.blob(&sha)).unwrap();
        assert_eq!(support::sha256_hex(&bytes), sha);
    }
    // The next fetch completes the store.
    let stderr = f.project.ok(&["fetch"]);
    assert!(stderr.contains("fetched"), "{stderr}");
    assert!(f.project.blob(&big.sha256).is_file());
    f.project.ok(&["cache", "verify"]);
}

#[test]
fn cache_verify_reports_corrupt_blobs() {
    let f = locked();
    f.project.ok(&["fetch"]);
    let app = f.archive.debs["app"].clone();
    // Blobs are read-only: replace the file, as a bit rot stand-in.
    fs_err::remove_file(f.project.blob(&app.sha256)).unwrap();
    fs_err::write(f.project.blob(&app.sha256), b"rotten").unwrap();
    let (ok, stdout, stderr) = f.project.run(&["--json", "cache", "verify"]);
    assert!(!ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["corrupt"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["corrupt"][0]["expected"], app.sha256.as_str());
    // The corrupt blob was removed; corrupt it again for the text report.
    assert!(!f.project.blob(&app.sha256).exists());
    fs_err::write(f.project.blob(&app.sha256), b"rotten").unwrap();
    let stderr = f.project.fails(&["cache", "verify"]);
    assert!(
        stderr.contains(&format!(
            "corrupt: {}",
            f.project.blob(&app.sha256).display()
        )),
        "{stderr}"
    );
    // Silence for the rest of the fixture: the key is used by nothing else.
    drop(f.key);
}

#[test]
fn tarballs_are_pinned_and_fetched_by_url() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let rel = "debian/pool/main/h/hello/hello_2.10.orig.tar.gz";
    let bytes = fs_err::read(archive.path(rel)).unwrap();
    let sha = support::sha256_hex(&bytes);
    let url = format!("{}{rel}", server.url());
    let recipe = format!(
        "packages = [\"tool\"]\ntarballs = [{{ name = \"hello\", url = \"{url}\", sha256 = \"{sha}\" }}]\n"
    );
    let p = TestProject::new(&[("base", &recipe)], &server, &key.keyring);
    p.ok(&["lock"]);
    let lock = p.lock_text();
    let expected = format!(
        "[[tarball]]\nname = \"hello\"\nurl = \"{url}\"\nsha256 = \"{sha}\"\nrecipes = [\"base\"]\n"
    );
    assert!(lock.contains(&expected), "{lock}");
    p.ok(&["fetch"]);
    assert_eq!(fs_err::read(p.blob(&sha)).unwrap(), bytes);
}

#[test]
fn host_apt_mirrors_are_used_after_the_others() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let mut p = TestProject::new(&[("base", "packages = [\"app\"]\n")], &server, &key.keyring);
    // No --mirror: only the (refusing) snapshot stand-in and the apt configuration, in both
    // formats, one file per archive.
    p.mirror = String::new();
    let etc = p.apt_root.path().join("etc/apt");
    fs_err::create_dir_all(etc.join("sources.list.d")).unwrap();
    fs_err::write(
        etc.join("sources.list"),
        format!("deb [arch=amd64] {}debian bookworm main\n", server.url()),
    )
    .unwrap();
    fs_err::write(
        etc.join("sources.list.d/security.sources"),
        format!(
            "Types: deb\nURIs: {}debian-security\nSuites: bookworm-security\nComponents: main\n",
            server.url()
        ),
    )
    .unwrap();
    // The snapshot does not answer: reading the apt mirrors' state must be asked for.
    p.fails(&["lock"]);
    p.ok(&["lock", "--allow-mirror-state"]);
    p.ok(&["fetch"]);
    let libfoo = &archive.debs["libfoo"];
    assert!(
        p.blob(&libfoo.sha256).is_file(),
        "security pin from the .sources mirror"
    );
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.starts_with("/debian-security/pool/"))
    );
}

#[test]
fn piped_fetch_prints_a_line_per_file_and_quiet_hides_them() {
    let mut f = locked();
    let wanted = pins(&f.project.lock_text());
    // `run` pipes standard error: not a terminal, so plain lines instead of a bar.
    let stderr = f.project.ok(&["fetch"]);
    let n = wanted.len();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!("fetching {n} files (2.2 MiB)"),
        "{stderr}"
    );
    let per_file: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("fetched ") && l.ends_with(&format!("/{n}]")))
        .collect();
    assert_eq!(per_file.len(), n, "{stderr}");
    for what in [
        "fetched big 1.0-1 (pool/main/b/big/big_1.0-1_amd64.deb), 2.0 MiB [",
        "fetched tool 0.9~rc1-1 (",
        "fetched source hello 2.10-3 (hello_2.10-3.dsc), ",
    ] {
        assert!(
            per_file.iter().any(|l| l.starts_with(what)),
            "{what}:\n{stderr}"
        );
    }
    // The summary comes last.
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("fetched {n} files, ")),
        "{stderr}"
    );

    // -q: the same work, nothing said.
    f.project.store = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = f.project.run(&["-q", "fetch"]);
    assert!(ok, "{stderr}");
    assert_eq!(stderr, "");
    for (sha, _) in &wanted {
        assert!(f.project.blob(sha).is_file());
    }
}

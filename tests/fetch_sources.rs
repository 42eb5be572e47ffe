//! Where pins come from: a package taken from a second snapshot state, local mirrors
//! (`file://`, a directory laid out like a mirror, a flat directory of files) read with no
//! network, and `hermetic fetch --plan`.

mod support;

use std::path::Path;

use support::{TestArchive, TestProject, deb, served_standard_archive, snapshot_service};

const PROJECT_TS: &str = "20261124T000000Z";
const OLD_TS: &str = "20240314T094714Z";
/// A day after the `Date` of the synthetic archive's InRelease files.
const MIRROR_STATE_TS: &str = "20261125T000000Z";

/// The `[[package]]` tables of `name` in a lock text.
fn package_blocks<'a>(lock: &'a str, name: &str) -> Vec<&'a str> {
    lock.split("\n[[")
        .filter(|b| b.starts_with("package]]") && b.contains(&format!("\nname = \"{name}\"\n")))
        .collect()
}

fn field<'a>(block: &'a str, key: &str) -> Option<&'a str> {
    block.lines().find_map(|l| {
        l.strip_prefix(&format!("{key} = \""))
            .and_then(|v| v.strip_suffix('"'))
    })
}

/// Every pinned file's SHA-256 in a lock text (not the suites' InRelease).
fn pinned_hashes(lock: &str) -> Vec<String> {
    let mut out: Vec<String> = lock
        .lines()
        .filter(|l| !l.starts_with("inrelease-sha256"))
        .filter_map(|l| {
            let i = l.find("sha256 = \"")? + "sha256 = \"".len();
            Some(l[i..i + 64].to_string())
        })
        .filter(|h| h.len() == 64)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn all_in_store(p: &TestProject) -> bool {
    pinned_hashes(&p.lock_text())
        .iter()
        .all(|h| p.blob(h).is_file())
}

/// A project whose image asks for `packages`, reading only the snapshot stand-in, with
/// `tool` at `version` taken from the state [`OLD_TS`].
fn snapshot_project(
    f: &support::ServedArchive,
    snapshots: &support::TestServer,
    keyring: &Path,
    packages: &str,
    version: &str,
) -> TestProject {
    let mut p = TestProject::new(
        &[("base", &format!("packages = {packages}\n"))],
        &f.server,
        keyring,
    );
    p.mirror = String::new();
    p.snapshot_url = format!("http://127.0.0.1:{}", snapshots.port);
    let config = format!(
        "{}\n[[archive.snapshot-package]]\nname = \"tool\"\nversion = \"{version}\"\nsnapshot = \"{OLD_TS}\"\nsuite = \"trixie\"\n",
        support::CONFIG
    );
    fs_err::write(p.path("hermetic.toml"), &config).unwrap();
    p
}

#[test]
fn a_package_from_a_second_snapshot_replaces_the_suites_version_and_is_fetched_from_there() {
    let f = served_standard_archive();
    // The older state holds `tool` 0.8-1 only: today's archive (and its mirror) never had it.
    // Like trixie in 2024, before it had a key of its own, it is signed by the archive key
    // of another release, which the project's suites would be refused for (lock_trust).
    let bookworm = support::TestKey::generate("Test Archive Automatic Signing Key (12/bookworm)");
    let old = TestArchive::build(
        &[support::SuiteSpec {
            name: "trixie".into(),
            debs: vec![deb("tool", "0.8-1").field("Depends", "libc6")],
            sources: vec![],
        }],
        &bookworm,
    );
    let keys = tempfile::tempdir().unwrap();
    let keyring = keys.path().join("keyring.pgp");
    let mut both = fs_err::read(&f.key.keyring).unwrap();
    both.extend(fs_err::read(&bookworm.keyring).unwrap());
    fs_err::write(&keyring, both).unwrap();
    let (_snap, snap_server) = snapshot_service(&[(PROJECT_TS, &f.archive), (OLD_TS, &old)]);
    let p = snapshot_project(&f, &snap_server, &keyring, "[\"app\", \"tool\"]", "0.8-1");
    p.ok(&["lock"]);
    let lock = p.lock_text();

    // Every closure that pulls `tool` (the image, and the tools tree's essential base does
    // not) gets the older one; today's 0.9~rc1-1 is pinned nowhere.
    let tool = package_blocks(&lock, "tool");
    assert_eq!(tool.len(), 1, "{lock}");
    assert_eq!(field(tool[0], "version"), Some("0.8-1"), "{}", tool[0]);
    assert_eq!(field(tool[0], "snapshot"), Some(OLD_TS), "{}", tool[0]);
    assert_eq!(field(tool[0], "suite"), Some("trixie"), "{}", tool[0]);
    assert_eq!(
        field(tool[0], "sha256"),
        Some(old.debs["tool"].sha256.as_str())
    );
    // The others come from the project's state and record no snapshot of their own.
    let app = package_blocks(&lock, "app");
    assert_eq!(field(app[0], "snapshot"), None, "{}", app[0]);
    p.ok(&["lock", "--check"]);

    // The plan sends `tool` to its own timestamp, `app` to the project's.
    let (ok, stdout, stderr) = p.run(&["--json", "fetch", "--plan"]);
    assert!(ok, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let urls_of = |prefix: &str| -> Vec<String> {
        plan["pins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["what"].as_str().unwrap().starts_with(prefix))
            .unwrap()["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["url"].as_str().unwrap().to_string())
            .collect()
    };
    let tool_path = old.debs["tool"].path.clone();
    let tool_url = format!(
        "{}archive/debian/{OLD_TS}/{}",
        snap_server.url(),
        tool_path.strip_prefix("debian/").unwrap()
    );
    assert_eq!(urls_of("tool 0.8-1"), [tool_url]);
    assert!(
        urls_of("app ")[0].contains(&format!("/archive/debian/{PROJECT_TS}/pool/")),
        "{:?}",
        urls_of("app ")
    );

    p.ok(&["fetch"]);
    assert!(p.blob(&old.debs["tool"].sha256).is_file());
    assert!(all_in_store(&p));
    let asked = format!(
        "/archive/debian/{OLD_TS}/{}",
        tool_path.strip_prefix("debian/").unwrap()
    );
    assert!(
        snap_server.log().contains(&asked),
        "{:?}",
        snap_server.log()
    );
    assert_eq!(f.server.requests(), 0, "no mirror was named");

    // Dropping the entry: --check says so; lock moves `tool` back and nothing else.
    fs_err::write(p.path("hermetic.toml"), support::CONFIG).unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains("no longer takes it from another snapshot"),
        "{stderr}"
    );
    p.ok(&["lock"]);
    let relocked = p.lock_text();
    let tool = package_blocks(&relocked, "tool");
    assert_eq!(field(tool[0], "version"), Some("0.9~rc1-1"), "{relocked}");
    assert_eq!(field(tool[0], "snapshot"), None);
    assert_eq!(
        package_blocks(&relocked, "app"),
        package_blocks(&lock, "app")
    );
}

#[test]
fn a_snapshot_package_missing_from_its_state_names_package_and_state() {
    let f = served_standard_archive();
    let (_snap, snap_server) = snapshot_service(&[(PROJECT_TS, &f.archive), (OLD_TS, &f.archive)]);
    let p = snapshot_project(&f, &snap_server, &f.key.keyring, "[\"tool\"]", "0.7-1");
    let stderr = p.fails(&["lock"]);
    assert!(
        stderr.contains(&format!(
            "`tool 0.7-1`: suite `trixie` of snapshot {OLD_TS}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("does not list it"), "{stderr}");
    assert!(!p.path("pins.lock").exists());
}

/// A project locked against the standard archive (image `app`, tools `tool`, source
/// `hello`), then cut off from every network source: no snapshot, no apt mirrors, and the
/// mirror replaced by `mirrors` (local ones).
fn locked_then_offline(mirrors: impl Fn(&Path) -> String) -> (support::ServedArchive, TestProject) {
    let f = served_standard_archive();
    let mut p = TestProject::new(
        &[(
            "base",
            "packages = [\"app\"]\nbuild-packages = [\"tool\"]\nsource-packages = [\"hello\"]\n",
        )],
        &f.server,
        &f.key.keyring,
    );
    p.ok(&["lock"]);
    p.snapshot_url = String::new();
    p.mirror = mirrors(f.archive.root.path());
    (f, p)
}

fn fetch_fills_the_store_with_no_network(p: &TestProject, f: &support::ServedArchive) {
    let before = f.server.requests();
    let stderr = p.ok(&["fetch"]);
    assert!(all_in_store(p), "{stderr}");
    assert_eq!(f.server.requests(), before, "the network was used");
    // Each file was checked: the store's blobs hash to their names.
    for h in pinned_hashes(&p.lock_text()) {
        let bytes = fs_err::read(p.blob(&h)).unwrap();
        assert_eq!(support::sha256_hex(&bytes), h);
    }
}

#[test]
fn a_file_url_mirror_fills_the_store_with_no_network() {
    let (f, p) = locked_then_offline(|root| format!("file://{}", root.display()));
    fetch_fills_the_store_with_no_network(&p, &f);
}

#[test]
fn a_directory_mirror_fills_the_store_with_no_network() {
    // Offline media: `debian/` and `debian-security/` given as two directories.
    let (f, p) = locked_then_offline(|root| {
        format!(
            "{} {}",
            root.join("debian").display(),
            root.join("debian-security").display()
        )
    });
    fetch_fills_the_store_with_no_network(&p, &f);
}

#[test]
fn a_flat_directory_of_files_fills_the_store_and_a_missing_one_is_gone_not_the_network() {
    let flat = tempfile::tempdir().unwrap();
    let (f, p) = locked_then_offline(|_| flat.path().display().to_string());
    // Every pinned file by name, as someone would copy them onto a stick.
    let mut files = Vec::new();
    for entry in walk(f.archive.root.path()) {
        let name = entry.file_name().unwrap().to_owned();
        if entry.to_string_lossy().contains("/pool/") {
            fs_err::copy(&entry, flat.path().join(&name)).unwrap();
            files.push(name);
        }
    }
    let libfoo = f.archive.debs["libfoo"].clone();
    let libfoo_name = Path::new(&libfoo.path).file_name().unwrap().to_owned();
    fs_err::remove_file(flat.path().join(&libfoo_name)).unwrap();
    let stderr = p.fails(&["fetch"]);
    assert!(stderr.contains("not found (local)"), "{stderr}");
    assert!(
        stderr.contains("every source that answered no longer has these files"),
        "{stderr}"
    );
    assert!(!stderr.contains("check the network"), "{stderr}");
    fs_err::copy(f.archive.path(&libfoo.path), flat.path().join(&libfoo_name)).unwrap();
    fetch_fills_the_store_with_no_network(&p, &f);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs_err::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A project whose image is `app`, locked against the served archive.
fn locked_app(f: &support::ServedArchive) -> TestProject {
    let p = TestProject::new(
        &[("base", "packages = [\"app\"]\n")],
        &f.server,
        &f.key.keyring,
    );
    p.ok(&["lock"]);
    p
}

#[test]
fn fetch_plan_lists_every_pin_with_its_candidates_in_the_order_tried() {
    let local = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(local.path().join("pool")).unwrap();
    let apt = tempfile::tempdir().unwrap();
    let f = served_standard_archive();
    let mut p = locked_app(&f);
    fs_err::create_dir_all(apt.path().join("etc/apt")).unwrap();
    fs_err::write(
        apt.path().join("etc/apt/sources.list"),
        "deb http://apt.invalid/debian trixie main\ndeb http://apt.invalid/debian-security trixie-security main\n",
    )
    .unwrap();
    p.mirror = format!("{} {}", f.server.url(), local.path().display());
    p.snapshot_url = "http://snap.invalid".into();
    let requests = f.server.requests();
    let out = p
        .command(&["--json", "fetch", "--plan"])
        .env("HERMETIC_APT_ROOT", apt.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(f.server.requests(), requests, "--plan used the network");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pins = plan["pins"].as_array().unwrap();
    assert_eq!(pins.len(), pinned_hashes(&p.lock_text()).len());
    let local_dir = fs_err::canonicalize(local.path()).unwrap();
    for pin in pins {
        let sha = pin["sha256"].as_str().unwrap();
        assert_eq!(sha.len(), 64);
        assert!(pin["size"].as_u64().unwrap() > 0);
        // The lock read the mirror's state (InRelease Date 24 Nov 2026 00:00): its files
        // are looked for on the snapshot a day after it, not at the project's timestamp.
        assert_eq!(pin["snapshot"], MIRROR_STATE_TS, "{pin}");
        let what = pin["what"].as_str().unwrap();
        let sources: Vec<&str> = pin["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["source"].as_str().unwrap())
            .collect();
        assert_eq!(sources, ["mirror", "local", "snapshot", "apt"], "{what}");
    }
    let libfoo = pins
        .iter()
        .find(|p| p["what"].as_str().unwrap().starts_with("libfoo "))
        .unwrap();
    let path = f.archive.debs["libfoo"].path.clone();
    let in_archive = path.strip_prefix("debian-security/").unwrap();
    let urls: Vec<&str> = libfoo["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            format!("{}{path}", f.server.url()),
            format!("file://{}/{in_archive}", local_dir.display()),
            format!("http://snap.invalid/archive/debian-security/{MIRROR_STATE_TS}/{in_archive}"),
            format!("http://apt.invalid/debian-security/{in_archive}"),
        ]
    );
    assert_eq!(libfoo["sha256"], f.archive.debs["libfoo"].sha256.as_str());

    // The text form: each pin, then its numbered candidates.
    let out = p
        .command(&["fetch", "--plan"])
        .env("HERMETIC_APT_ROOT", apt.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("  1. mirror   {}{path}\n", f.server.url())),
        "{text}"
    );
    assert!(
        text.contains("  4. apt      http://apt.invalid/debian-security/"),
        "{text}"
    );
    assert_eq!(f.server.requests(), requests);
}

#[test]
fn a_mirror_that_is_neither_url_nor_directory_is_refused() {
    let f = served_standard_archive();
    let mut p = locked_app(&f);
    p.mirror = "/nonexistent/offline/media".into();
    let stderr = p.fails(&["fetch"]);
    assert!(stderr.contains("/nonexistent/offline/media"), "{stderr}");
    assert!(stderr.contains("hint: mount the offline media"), "{stderr}");
}

#[test]
fn offline_with_a_local_mirror_reads_it_and_nothing_else() {
    let f = served_standard_archive();
    let p = locked_app(&f);
    // The network mirror stays configured (HERMETIC_MIRRORS): --offline must not use it.
    let requests = f.server.requests();
    let media = f.archive.root.path().display().to_string();
    let stderr = p.ok(&["fetch", "--offline", "--mirror", &media]);
    assert!(all_in_store(&p), "{stderr}");
    assert_eq!(f.server.requests(), requests, "--offline used the network");

    // Without the local copy, --offline names what is missing and how to bring it.
    let q = TestProject::new(
        &[("base", "packages = [\"app\"]\n")],
        &f.server,
        &f.key.keyring,
    );
    fs_err::copy(p.path("pins.lock"), q.path("pins.lock")).unwrap();
    let stderr = q.fails(&["fetch", "--offline"]);
    assert!(stderr.contains("--mirror DIR"), "{stderr}");
    assert_eq!(f.server.requests(), requests);
}

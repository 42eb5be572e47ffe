//! `hermetic lock` against a synthetic signed archive served on 127.0.0.1.

mod support;

use support::{
    Fault, ServedArchive as Fixture, TestArchive, TestKey, TestProject, TestServer,
    served_standard_archive as fixture, standard_suites,
};

const BASE: &str =
    "packages = [\"app\"]\nbuild-packages = [\"tool\"]\nsource-packages = [\"hello\"]\n";

/// The `[[package]]` table of `name` in a lock text.
fn package_block<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    lock.split("\n[[")
        .find(|b| b.starts_with("package]]") && b.contains(&format!("\nname = \"{name}\"\n")))
}

#[test]
fn lock_resolves_pins_and_is_stable() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let lock = p.lock_text();
    assert!(lock.starts_with("# pins.lock"), "{lock}");
    assert!(lock.contains("\nversion = 2\n"));

    // Highest version across suites: security wins for libfoo.
    let libfoo = package_block(&lock, "libfoo").expect("libfoo pinned");
    assert!(libfoo.contains("version = \"1.1-1~deb13u1\""), "{libfoo}");
    assert!(libfoo.contains("suite = \"trixie-security\""), "{libfoo}");
    let built = &f.archive.debs["libfoo"];
    assert!(
        libfoo.contains(&format!("sha256 = \"{}\"", built.sha256)),
        "{libfoo}"
    );
    // The first alternative is taken, the virtual package is provided.
    assert!(package_block(&lock, "libbar").is_none(), "{lock}");
    assert!(package_block(&lock, "postfix").is_some(), "{lock}");
    // Recipe tags: image closure and tools closure, essential base in both.
    let app = package_block(&lock, "app").unwrap();
    assert!(app.contains("recipes = [\"base\"]"), "{app}");
    assert!(app.contains("version = \"1:2.0-1\""), "{app}");
    let tool = package_block(&lock, "tool").unwrap();
    assert!(tool.contains("recipes = [\"base:build\"]"), "{tool}");
    let dash = package_block(&lock, "dash").unwrap();
    assert!(
        dash.contains("recipes = [\"base\", \"base:build\"]"),
        "{dash}"
    );
    assert!(package_block(&lock, "big").is_none());
    // The source package with its files.
    assert!(
        lock.contains("[[source]]\nname = \"hello\"\nversion = \"2.10-3\""),
        "{lock}"
    );
    assert!(lock.contains("name = \"hello_2.10-3.dsc\""), "{lock}");
    assert!(lock.contains("name = \"hello_2.10.orig.tar.gz\""), "{lock}");
    // Suites record their InRelease.
    let inrelease = fs_err::read(f.archive.path("debian/dists/trixie/InRelease")).unwrap();
    assert!(lock.contains(&format!(
        "inrelease-sha256 = \"{}\"",
        support::sha256_hex(&inrelease)
    )));

    // --check passes; a second lock touches neither the network nor the file.
    p.ok(&["lock", "--check"]);
    let mtime = fs_err::metadata(p.path("pins.lock"))
        .unwrap()
        .modified()
        .unwrap();
    let before = f.server.requests();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let stderr = p.ok(&["lock"]);
    assert!(stderr.contains("up to date"), "{stderr}");
    assert_eq!(
        f.server.requests(),
        before,
        "an up-to-date lock asks the network"
    );
    assert_eq!(p.lock_text(), lock);
    assert_eq!(
        fs_err::metadata(p.path("pins.lock"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );

    // --update resolves again: same archive, same bytes, file left alone.
    p.ok(&["lock", "--update"]);
    assert!(f.server.requests() > before);
    assert_eq!(p.lock_text(), lock);
    assert_eq!(
        fs_err::metadata(p.path("pins.lock"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );

    // Same inputs in another project directory: byte-identical lock.
    let q = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    q.ok(&["lock"]);
    assert_eq!(q.lock_text(), lock);
}

#[test]
fn json_summary_of_lock() {
    let f = fixture();
    let p = TestProject::new(
        &[("base", "packages = [\"app\"]\n")],
        &f.server,
        &f.key.keyring,
    );
    let (ok, stdout, stderr) = p.run(&["--json", "lock"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["written"], true);
    assert_eq!(v["resolved"][0], "base");
    assert!(v["packages"].as_u64().unwrap() >= 6, "{v}");
}

#[test]
fn unknown_key_names_suite_and_key() {
    let f = fixture();
    let other = TestKey::generate("stranger");
    let p = TestProject::new(&[("base", BASE)], &f.server, &other.keyring);
    let stderr = p.fails(&["lock"]);
    assert!(stderr.contains("suite `trixie`"), "{stderr}");
    assert!(stderr.contains(&f.key.fingerprint), "{stderr}");
    assert!(stderr.contains("no valid signature"), "{stderr}");
    assert!(!p.path("pins.lock").exists());
}

#[test]
fn tampered_inrelease_is_rejected() {
    let f = fixture();
    let path = f
        .archive
        .path("debian-security/dists/trixie-security/InRelease");
    let text = fs_err::read_to_string(&path).unwrap();
    fs_err::write(
        &path,
        text.replace("Label: Hermetic test", "Label: Hermetic fest"),
    )
    .unwrap();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    let stderr = p.fails(&["lock"]);
    assert!(stderr.contains("suite `trixie-security`"), "{stderr}");
    assert!(stderr.contains(&f.key.fingerprint), "{stderr}");
}

#[test]
fn index_hash_mismatch_is_an_error() {
    let f = fixture();
    // Wrong bytes on every request of the trixie Packages.xz, by name and by hash.
    let plain = "debian/dists/trixie/main/binary-amd64/Packages.xz";
    let sha = support::sha256_hex(&fs_err::read(f.archive.path(plain)).unwrap());
    f.server.fault(plain, Fault::WrongBytes, usize::MAX);
    f.server.fault(
        &format!("debian/dists/trixie/main/binary-amd64/by-hash/SHA256/{sha}"),
        Fault::WrongBytes,
        usize::MAX,
    );
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    let stderr = p.fails(&["lock"]);
    assert!(
        stderr.contains("main/binary-amd64/Packages.xz of suite `trixie`"),
        "{stderr}"
    );
    assert!(stderr.contains("download has SHA-256"), "{stderr}");
    assert!(stderr.contains(&sha), "{stderr}");
    assert!(!p.path("pins.lock").exists());
}

#[test]
fn index_falls_back_to_by_hash() {
    let f = fixture();
    // The plain path is gone (a mirror in the middle of an update); by-hash still serves it.
    let plain = "debian/dists/trixie/main/binary-amd64/Packages.xz";
    f.server.fault(plain, Fault::NotFound, usize::MAX);
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let log = f.server.log();
    assert!(log.iter().any(|l| l == &format!("/{plain}")), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("/debian/dists/trixie/main/binary-amd64/by-hash/SHA256/")),
        "{log:?}"
    );
    assert!(package_block(&p.lock_text(), "app").is_some());
}

#[test]
fn unsatisfiable_dependency_names_the_chain() {
    let f = fixture();
    let p = TestProject::new(
        &[("base", "packages = [\"broken\"]\n")],
        &f.server,
        &f.key.keyring,
    );
    let stderr = p.fails(&["lock"]);
    assert!(
        stderr.contains("cannot resolve recipe `base` (packages)"),
        "{stderr}"
    );
    assert!(stderr.contains("broken -> mid"), "{stderr}");
    assert!(stderr.contains("missing (>= 2)"), "{stderr}");
}

#[test]
fn check_reports_disagreement_without_network() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    // No lock at all.
    let stderr = p.fails(&["lock", "--check"]);
    assert!(stderr.contains("help: run `hermetic lock`"), "{stderr}");
    p.ok(&["lock"]);
    let before = f.server.requests();
    fs_err::write(
        p.path("recipes/base.toml"),
        "packages = [\"app\", \"libbar\"]\nbuild-packages = [\"tool\"]\nsource-packages = [\"hello\"]\n",
    )
    .unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    let project = p.dir.path().to_str().unwrap();
    assert_eq!(
        stderr.replace(project, "[PROJECT]"),
        "error: [PROJECT]/pins.lock does not match the recipes:\n  \
         recipe `base` changed: packages added: libbar\nhelp: run `hermetic lock`\n"
    );
    // fetch warns about it (and still fetches the pins it has).
    let stderr = p.fails(&["fetch", "--offline"]);
    assert!(stderr.starts_with("warning: "), "{stderr}");
    assert!(stderr.contains("does not match the recipes"), "{stderr}");
    assert!(stderr.contains("--offline: "), "{stderr}");
    // A new recipe is noticed too.
    fs_err::write(p.path("recipes/extra.toml"), "parent = \"base\"\n").unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains("recipe `extra` is not in the lock"),
        "{stderr}"
    );
    assert_eq!(f.server.requests(), before, "--check used the network");
    // Plain lock brings it up to date, keeping the pins of unchanged recipes.
    p.ok(&["lock"]);
    p.ok(&["lock", "--check"]);
    let lock = p.lock_text();
    let libbar = package_block(&lock, "libbar").unwrap();
    assert!(
        libbar.contains("recipes = [\"base\", \"extra\"]"),
        "{libbar}"
    );
    // Removing a recipe drops its tags without asking the network.
    fs_err::remove_file(p.path("recipes/extra.toml")).unwrap();
    let before = f.server.requests();
    p.ok(&["lock"]);
    assert_eq!(f.server.requests(), before);
    let lock = p.lock_text();
    assert!(!lock.contains("\"extra"), "{lock}");
    p.ok(&["lock", "--check"]);
}

#[test]
fn plain_lock_keeps_pins_update_moves_them() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let old = p.lock_text();
    // The archive moves on: a new libfoo in trixie-security.
    let mut suites = standard_suites();
    suites[1].debs[0] = support::deb("libfoo", "1.2-1~deb13u1").field("Depends", "libc6");
    let newer = TestArchive::build(&suites, &f.key);
    let server = TestServer::start(newer.root.path());
    let mut p = p;
    p.mirror = server.url();
    p.ok(&["lock"]);
    assert_eq!(
        p.lock_text(),
        old,
        "plain lock changed pins of unchanged recipes"
    );
    assert_eq!(server.requests(), 0);
    p.ok(&["lock", "--update"]);
    let lock = p.lock_text();
    assert!(
        package_block(&lock, "libfoo")
            .unwrap()
            .contains("version = \"1.2-1~deb13u1\""),
        "{lock}"
    );
}

#[test]
fn malformed_recipe_names_file_and_line() {
    let f = fixture();
    let p = TestProject::new(
        &[("base", "packages = [\"app\"]\nbuild-packages = \"tool\"\n")],
        &f.server,
        &f.key.keyring,
    );
    let stderr = p.fails(&["lock"]);
    assert!(stderr.contains("recipes/base.toml"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[test]
fn malformed_lock_names_file_and_line() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let text = p.lock_text();
    let bad = text.replacen("size = ", "size = oops", 1);
    let line = bad.lines().position(|l| l.contains("oops")).unwrap() + 1;
    fs_err::write(p.path("pins.lock"), &bad).unwrap();
    for args in [&["lock"][..], &["lock", "--check"], &["fetch"]] {
        let stderr = p.fails(args);
        assert!(stderr.contains("pins.lock"), "{stderr}");
        assert!(
            stderr.contains(&format!("line {line}")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn newer_lock_version_asks_to_upgrade() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    fs_err::write(p.path("pins.lock"), "version = 7\n[[future]]\nthing = 1\n").unwrap();
    for args in [&["lock"][..], &["lock", "--check"], &["fetch"]] {
        let stderr = p.fails(args);
        assert!(stderr.contains("format version 7"), "{stderr}");
        assert!(stderr.contains("hint: upgrade hermetic"), "{stderr}");
    }
    assert!(
        p.lock_text().starts_with("version = 7"),
        "the newer lock was overwritten"
    );
}

#[test]
fn profiles_that_add_packages_get_closures_of_their_own() {
    let f = fixture();
    let recipe = "packages = [\"app\"]\n\
                  [profiles.extras]\npackages = [\"libbar\"]\n\
                  [profiles.tools]\nbuild-packages = [\"tool\"]\n\
                  [profiles.quiet]\nenvironment = { QUIET = \"1\" }\n";
    let p = TestProject::new(
        &[("base", recipe), ("child", "parent = \"base\"\n")],
        &f.server,
        &f.key.keyring,
    );
    p.ok(&["lock"]);
    p.ok(&["lock", "--check"]);
    let lock = p.lock_text();
    // Every non-empty selection of the profiles that pin something, per recipe; `quiet`
    // pins nothing and has no closure.
    let names: Vec<&str> = lock
        .lines()
        .filter(|l| l.starts_with("name = \"") && lock.contains(&format!("[[recipe]]\n{l}")))
        .map(|l| &l[8..l.len() - 1])
        .collect();
    assert_eq!(
        names,
        [
            "base",
            "base/extras",
            "base/extras/tools",
            "base/tools",
            "child",
            "child/extras",
            "child/extras/tools",
            "child/tools"
        ],
        "{lock}"
    );
    assert!(!lock.contains("quiet"), "{lock}");
    // libbar is only in the closures that select `extras`; tool only in the tools trees of
    // those that select `tools`.
    let libbar = package_block(&lock, "libbar").unwrap();
    assert!(
        libbar.contains(
            "recipes = [\"base/extras\", \"base/extras/tools\", \"child/extras\", \"child/extras/tools\"]"
        ),
        "{libbar}"
    );
    let tool = package_block(&lock, "tool").unwrap();
    assert!(
        tool.contains(
            "recipes = [\"base/extras/tools:build\", \"base/tools:build\", \"child/extras/tools:build\", \"child/tools:build\"]"
        ),
        "{tool}"
    );

    // A profile that no longer adds packages leaves a closure the recipes do not ask for.
    fs_err::write(
        p.path("recipes/base.toml"),
        "packages = [\"app\"]\n[profiles.extras]\npackages = [\"libbar\"]\n\
         [profiles.tools]\ndescription = \"nothing to pin\"\n",
    )
    .unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains(
            "the closure `base/tools` (recipe `base` with profile(s) tools) is in the lock, but the recipes no longer ask for it"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "the closure `base/extras/tools` (recipe `base` with profile(s) extras, tools)"
        ),
        "{stderr}"
    );
    // A new profile that adds a package asks for closures the lock does not have yet.
    fs_err::write(
        p.path("recipes/child.toml"),
        "parent = \"base\"\n[profiles.more]\npackages = [\"libfoo\"]\n",
    )
    .unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains(
            "the closure `child/extras/more` (recipe `child` with profile(s) extras, more) is not in the lock"
        ),
        "{stderr}"
    );
    fs_err::write(p.path("recipes/child.toml"), "parent = \"base\"\n").unwrap();
    let before = f.server.requests();
    p.ok(&["lock"]);
    p.ok(&["lock", "--check"]);
    let lock = p.lock_text();
    assert!(!lock.contains("tools"), "{lock}");
    assert!(package_block(&lock, "tool").is_none(), "{lock}");
    assert_eq!(
        f.server.requests(),
        before,
        "dropping closures needs no network"
    );
}

/// The `[[suite]]` table of `name` in a lock text.
fn suite_block<'a>(lock: &'a str, name: &str) -> &'a str {
    lock.split("\n[[")
        .find(|b| b.starts_with("suite]]") && b.contains(&format!("\nname = \"{name}\"\n")))
        .unwrap_or_else(|| panic!("no suite {name} in\n{lock}"))
}

/// The `Date:` line of a served InRelease.
fn inrelease_date(f: &Fixture, archive: &str, suite: &str) -> String {
    let text = fs_err::read_to_string(
        f.archive
            .path(&format!("{archive}/dists/{suite}/InRelease")),
    )
    .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Date:"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_mirror_state_is_recorded_as_the_mirror_never_as_the_snapshot() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let lock = p.lock_text();
    for (archive, suite) in [("debian", "trixie"), ("debian-security", "trixie-security")] {
        let b = suite_block(&lock, suite);
        assert!(b.contains("\nindex-source = \"mirror\"\n"), "{b}");
        // The URL exactly as HERMETIC_MIRRORS gave it.
        assert!(
            b.contains(&format!("\nindex-url = \"{}\"\n", f.server.url())),
            "{b}"
        );
        assert!(!b.contains("snapshot"), "{b}");
        let date = inrelease_date(&f, archive, suite);
        assert!(b.contains(&format!("\ndate = \"{date}\"\n")), "{b}");
        let inrelease = fs_err::read(
            f.archive
                .path(&format!("{archive}/dists/{suite}/InRelease")),
        )
        .unwrap();
        assert!(
            b.contains(&format!(
                "inrelease-sha256 = \"{}\"",
                support::sha256_hex(&inrelease)
            )),
            "{b}"
        );
    }
    p.ok(&["lock", "--check"]);
}

#[test]
fn a_snapshot_state_records_its_url_and_timestamp() {
    let f = fixture();
    let (_snap, server) = support::snapshot_service(&[("20261124T000000Z", &f.archive)]);
    let mut p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.mirror = String::new();
    p.snapshot_url = format!("http://127.0.0.1:{}", server.port);
    p.ok(&["lock"]);
    let lock = p.lock_text();
    let b = suite_block(&lock, "trixie-security");
    assert!(b.contains("\nindex-source = \"snapshot\"\n"), "{b}");
    assert!(
        b.contains(&format!(
            "\nindex-url = \"http://127.0.0.1:{}/archive/debian-security/20261124T000000Z/\"\n",
            server.port
        )),
        "{b}"
    );
    assert!(b.contains("\nsnapshot = \"20261124T000000Z\"\n"), "{b}");
    assert_eq!(f.server.requests(), 0, "the mirror was not asked");
}

#[test]
fn an_unreachable_snapshot_is_said_and_its_fallback_needs_consent() {
    let f = fixture();
    let mut p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    // No --mirror: the snapshot (a closed port) comes first, then the apt sources.
    p.mirror = String::new();
    let apt = p.apt_root.path().join("etc/apt");
    fs_err::create_dir_all(&apt).unwrap();
    fs_err::write(
        apt.join("sources.list"),
        format!(
            "deb {0}debian trixie main\ndeb {0}debian-security trixie-security main\n",
            f.server.url()
        ),
    )
    .unwrap();
    let err = p.fails(&["lock"]);
    assert!(err.contains("did not serve suite `trixie`"), "{err}");
    assert!(err.contains("not snapshot 20261124T000000Z"), "{err}");
    assert!(err.contains("--allow-mirror-state"), "{err}");
    assert!(!p.path("pins.lock").exists());

    let err = p.ok(&["lock", "--allow-mirror-state"]);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("unreachable")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    let line = lines[0];
    assert!(line.contains("(no connection)"), "{line}");
    for (archive, suite) in [("debian", "trixie"), ("debian-security", "trixie-security")] {
        let date = inrelease_date(&f, archive, suite);
        assert!(
            line.contains(&format!(
                "read {suite} from the host's apt sources: its state of {date}, not 20261124T000000Z"
            )),
            "{line}"
        );
    }
    let lock = p.lock_text();
    for suite in ["trixie", "trixie-security"] {
        let b = suite_block(&lock, suite);
        assert!(b.contains("\nindex-source = \"apt-sources\"\n"), "{b}");
        assert!(!b.contains("index-url"), "{b}");
        assert!(!b.contains("snapshot"), "{b}");
    }
    // The host's mirror is not written into the lock.
    assert!(!lock.contains("127.0.0.1"), "{lock}");
    p.ok(&["lock", "--check"]);
}

//! Minimal change, like cargo: `hermetic lock` moves no pin that still satisfies the
//! recipes, `--update PKG` moves only PKG (and what it forces), and the changes are printed.

mod support;

use support::{
    TestArchive, TestKey, TestProject, TestServer, deb, served_standard_archive as fixture,
    standard_suites,
};

const BASE: &str = "packages = [\"app\"]\nbuild-packages = [\"tool\"]\n";

/// The `[[package]]` blocks of a lock text.
fn package_blocks(lock: &str) -> Vec<&str> {
    lock.split("\n[[")
        .filter(|b| b.starts_with("package]]"))
        .collect()
}

/// `name version` of every pin whose tags include `tag`, sorted.
fn pins_of(lock: &str, tag: &str) -> Vec<String> {
    let mut out: Vec<String> = package_blocks(lock)
        .into_iter()
        .filter(|b| {
            b.lines()
                .find_map(|l| l.strip_prefix("recipes = "))
                .is_some_and(|r| r.contains(&format!("\"{tag}\"")))
        })
        .map(|b| {
            let field = |k: &str| {
                b.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                    .unwrap()
                    .trim_end_matches('"')
                    .to_string()
            };
            format!("{} {}", field("name"), field("version"))
        })
        .collect();
    out.sort();
    out
}

/// Versions of `name` pinned anywhere in the lock.
fn versions(lock: &str, name: &str) -> Vec<String> {
    pins_of_all(lock)
        .into_iter()
        .filter_map(|p| p.strip_prefix(&format!("{name} ")).map(str::to_owned))
        .collect()
}

fn pins_of_all(lock: &str) -> Vec<String> {
    package_blocks(lock)
        .into_iter()
        .map(|b| {
            let field = |k: &str| {
                b.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                    .unwrap()
                    .trim_end_matches('"')
                    .to_string()
            };
            format!("{} {}", field("name"), field("version"))
        })
        .collect()
}

/// A newer state of the standard archive: libc6 and libfoo have security updates (the old
/// libfoo update is gone from trixie-security, the old libc6 is still in trixie), and a
/// new package `extra` depends on both.
fn newer_archive(key: &TestKey) -> TestArchive {
    let mut suites = standard_suites();
    suites[0].debs.push(
        deb("extra", "1.0-1")
            .field("Depends", "libfoo, libc6")
            .field("Priority", "optional"),
    );
    suites[1].debs = vec![
        deb("libfoo", "1.2-1~deb13u2").field("Depends", "libc6"),
        deb("libc6", "2.41-12+deb13u1").field("Priority", "required"),
    ];
    TestArchive::build(&suites, key)
}

/// The change lines `lock` printed (cargo's right-aligned verbs).
fn change_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            ["Adding ", "Removing ", "Updating ", "Downgrading "]
                .iter()
                .any(|v| t.starts_with(v))
        })
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn a_recipe_added_under_a_newer_archive_keeps_the_first_recipes_versions() {
    let f = fixture();
    let mut p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    let err = p.ok(&["lock"]);
    // The first lock lists what it added.
    let first = change_lines(&err);
    assert!(first.contains(&"Adding app 1:2.0-1".to_string()), "{err}");
    assert!(
        first.contains(&"Adding libfoo 1.1-1~deb13u1".to_string()),
        "{err}"
    );
    let old = p.lock_text();
    let base_before = pins_of(&old, "base");
    let build_before = pins_of(&old, "base:build");

    let newer = newer_archive(&f.key);
    let server = TestServer::start(newer.root.path());
    p.mirror = server.url();
    fs_err::write(p.path("recipes/second.toml"), "packages = [\"extra\"]\n").unwrap();
    let err = p.ok(&["lock"]);
    let lock = p.lock_text();
    // base's pins did not move.
    assert_eq!(pins_of(&lock, "base"), base_before, "{lock}");
    assert_eq!(pins_of(&lock, "base:build"), build_before, "{lock}");
    // The new recipe got base's libc6 (still in the index), not the newer update...
    let second = pins_of(&lock, "second");
    assert!(second.contains(&"libc6 2.41-12".to_string()), "{second:?}");
    assert_eq!(versions(&lock, "libc6"), ["2.41-12"], "{lock}");
    // ...and a newer libfoo only because base's is gone from the archive.
    assert!(
        second.contains(&"libfoo 1.2-1~deb13u2".to_string()),
        "{second:?}"
    );
    // The change list names exactly that.
    assert_eq!(
        change_lines(&err),
        ["Adding extra 1.0-1", "Adding libfoo 1.2-1~deb13u2"],
        "{err}"
    );
    p.ok(&["lock", "--check"]);
}

#[test]
fn update_of_one_package_moves_it_alone_and_update_moves_all() {
    let f = fixture();
    let mut p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let old = p.lock_text();
    let newer = newer_archive(&f.key);
    let server = TestServer::start(newer.root.path());
    p.mirror = server.url();

    // Plain lock: nothing asked, nothing moves, no network.
    let err = p.ok(&["lock"]);
    assert_eq!(p.lock_text(), old);
    assert!(change_lines(&err).is_empty(), "{err}");
    assert_eq!(server.requests(), 0);

    let err = p.ok(&["lock", "--update", "libfoo"]);
    assert_eq!(
        change_lines(&err),
        ["Updating libfoo 1.1-1~deb13u1 -> 1.2-1~deb13u2"],
        "{err}"
    );
    let lock = p.lock_text();
    assert_eq!(versions(&lock, "libfoo"), ["1.2-1~deb13u2"]);
    // libc6 has an update too, but was not named.
    assert_eq!(versions(&lock, "libc6"), ["2.41-12"]);
    let mut before: Vec<String> = pins_of_all(&old)
        .into_iter()
        .filter(|p| !p.starts_with("libfoo "))
        .collect();
    let mut after: Vec<String> = pins_of_all(&lock)
        .into_iter()
        .filter(|p| !p.starts_with("libfoo "))
        .collect();
    before.sort();
    after.sort();
    assert_eq!(before, after);
    p.ok(&["lock", "--check"]);

    // JSON: the change list as data.
    let (ok, stdout, stderr) = p.run(&["--json", "lock", "--update"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        v["changes"],
        serde_json::json!([{
            "change": "update", "name": "libc6", "old": "2.41-12", "new": "2.41-12+deb13u1"
        }]),
        "{v}"
    );
    assert_eq!(versions(&p.lock_text(), "libc6"), ["2.41-12+deb13u1"]);
}

#[test]
fn update_of_a_package_moves_what_its_new_version_forces() {
    let f = fixture();
    let mut p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    // libfoo's update needs the newer libc6.
    let mut suites = standard_suites();
    suites[1].debs = vec![
        deb("libfoo", "1.2-1~deb13u2").field("Depends", "libc6 (>= 2.41-12+deb13u1)"),
        deb("libc6", "2.41-12+deb13u1").field("Priority", "required"),
        deb("tool", "1.0-1").field("Depends", "libc6"),
    ];
    let newer = TestArchive::build(&suites, &f.key);
    let server = TestServer::start(newer.root.path());
    p.mirror = server.url();
    let err = p.ok(&["lock", "--update", "libfoo"]);
    assert_eq!(
        change_lines(&err),
        [
            "Updating libc6 2.41-12 -> 2.41-12+deb13u1",
            "Updating libfoo 1.1-1~deb13u1 -> 1.2-1~deb13u2"
        ],
        "{err}"
    );
    // tool has an update, but nothing forced it.
    assert_eq!(versions(&p.lock_text(), "tool"), ["0.9~rc1-1"]);
    p.ok(&["lock", "--check"]);
}

#[test]
fn update_of_an_unpinned_name_is_refused() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let old = p.lock_text();
    let err = p.fails(&["lock", "--update", "nosuch"]);
    assert!(
        err.contains("no pin of pins.lock is named `nosuch`"),
        "{err}"
    );
    assert_eq!(p.lock_text(), old);
}

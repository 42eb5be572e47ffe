//! Issue 11, cases 5 and 6: `hermetic lock --check` proves the closures complete, and the
//! archive trust chain refuses a substituted, rolled-back or expired suite and signatures by
//! keys that may not sign it. Synthetic signed archives served on 127.0.0.1.

mod support;

use std::path::Path;
use std::process::Command;

use support::{TestArchive, TestProject, TestServer, served_standard_archive as fixture};

const BASE: &str = "packages = [\"app\"]\nbuild-packages = [\"tool\"]\n";

fn gpg(home: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("gpg")
        .arg("--batch")
        .arg("--homedir")
        .arg(home)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A key with the user id `uid`, made (and used) at `faked_time` when given, expiring after
/// `expire` (`never`, `1d`).
struct Key {
    home: tempfile::TempDir,
    fingerprint: String,
    keyring: std::path::PathBuf,
    faked_time: Option<String>,
}

impl Key {
    fn generate(uid: &str, expire: &str, faked_time: Option<&str>) -> Key {
        let home = tempfile::tempdir().unwrap();
        let mut args = vec![];
        if let Some(t) = faked_time {
            args.extend(["--faked-system-time", t]);
        }
        args.extend([
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            expire,
        ]);
        gpg(home.path(), &args);
        let listing = gpg(home.path(), &["--with-colons", "--list-keys"]);
        let fingerprint = String::from_utf8(listing.stdout)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string();
        let exported = gpg(home.path(), &["--export", &fingerprint]);
        let keyring = home.path().join("public.pgp");
        fs_err::write(&keyring, exported.stdout).unwrap();
        Key {
            home,
            fingerprint,
            keyring,
            faked_time: faked_time.map(str::to_owned),
        }
    }

    fn clearsign(&self, text: &str) -> Vec<u8> {
        let input = self.home.path().join("Release");
        let output = self.home.path().join("InRelease");
        let _ = fs_err::remove_file(&output);
        fs_err::write(&input, text).unwrap();
        let mut args = vec![];
        if let Some(t) = &self.faked_time {
            args.extend(["--faked-system-time", t.as_str()]);
        }
        args.extend([
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--digest-algo",
            "SHA256",
            "--local-user",
            &self.fingerprint,
            "--clearsign",
            "-o",
            output.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        gpg(self.home.path(), &args);
        fs_err::read(&output).unwrap()
    }
}

/// The signed Release text of an InRelease.
fn release_text(inrelease: &[u8]) -> String {
    let text = String::from_utf8(inrelease.to_vec()).unwrap();
    let start = text.find("\n\n").unwrap() + 2;
    let end = text.find("\n-----BEGIN PGP SIGNATURE-----").unwrap();
    format!("{}\n", &text[start..end])
}

fn inrelease_path(archive: &TestArchive, suite: &str) -> std::path::PathBuf {
    let dir = if suite.ends_with("-security") {
        "debian-security"
    } else {
        "debian"
    };
    archive.path(&format!("{dir}/dists/{suite}/InRelease"))
}

/// Rewrites the InRelease of `suite` with `edit` applied to its Release text, signed by `sign`.
fn resign(
    archive: &TestArchive,
    suite: &str,
    sign: &dyn Fn(&str) -> Vec<u8>,
    edit: &dyn Fn(String) -> String,
) {
    let path = inrelease_path(archive, suite);
    let text = edit(release_text(&fs_err::read(&path).unwrap()));
    fs_err::write(&path, sign(&text)).unwrap();
}

fn replace_field(text: String, field: &str, value: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with(&format!("{field}:")) {
                format!("{field}: {value}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

fn without_package(lock: &str, name: &str) -> String {
    lock.split("\n[[")
        .filter(|b| !(b.starts_with("package]]") && b.contains(&format!("\nname = \"{name}\"\n"))))
        .collect::<Vec<_>>()
        .join("\n[[")
}

// ---- case 5 ----

#[test]
fn deleting_a_requested_pin_fails_the_check() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let lock = p.lock_text();
    // The relations are recorded as the index has them.
    assert!(
        lock.contains("depends = \"libfoo (>= 1.0) | libbar, mail-transport-agent\""),
        "{lock}"
    );
    assert!(lock.contains("pre-depends = \"libc6 (>= 2.34)\""), "{lock}");
    assert!(
        lock.contains("provides = \"mail-transport-agent\""),
        "{lock}"
    );
    p.ok(&["lock", "--check"]);

    let edited = without_package(&lock, "app");
    assert_ne!(edited, lock);
    fs_err::write(p.path("pins.lock"), &edited).unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains("closure `base`: requested package `app` is not pinned"),
        "{stderr}"
    );
    assert!(stderr.contains("help: run `hermetic lock`"), "{stderr}");
    // The check touched nothing.
    assert_eq!(p.lock_text(), edited);
}

#[test]
fn a_lock_truncated_at_a_block_boundary_fails_the_check() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let lock = p.lock_text();
    let cut = lock.find("\n[[package]]\nname = \"libfoo\"\n").unwrap() + 1;
    let truncated = &lock[..cut];
    fs_err::write(p.path("pins.lock"), truncated).unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    // `tool` (requested, sorted after the cut) and `libfoo` (a dependency) are gone.
    assert!(
        stderr.contains("closure `base:build`: requested package `tool` is not pinned"),
        "{stderr}"
    );
    assert!(
        stderr.contains("app 1:2.0-1 (trixie) depends on `libfoo (>= 1.0) | libbar`"),
        "{stderr}"
    );
}

#[test]
fn removing_a_dependency_only_pin_names_the_unmet_depends() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    // postfix is only there because app depends on the virtual mail-transport-agent.
    fs_err::write(
        p.path("pins.lock"),
        without_package(&p.lock_text(), "postfix"),
    )
    .unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains(
            "closure `base`: app 1:2.0-1 (trixie) depends on `mail-transport-agent`, which no pin of the closure satisfies"
        ),
        "{stderr}"
    );
    // A Pre-Depends counts too: libc6 out of the tools closure breaks dash.
    p.ok(&["lock", "--update"]);
    fs_err::write(
        p.path("pins.lock"),
        without_package(&p.lock_text(), "libc6"),
    )
    .unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr
            .contains("closure `base:build`: dash 0.5.12-12 (trixie) depends on `libc6 (>= 2.34)`"),
        "{stderr}"
    );
}

// ---- case 6 ----

#[test]
fn a_suite_serving_another_codename_is_refused_and_the_lock_kept() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let before = fs_err::read(p.path("pins.lock")).unwrap();
    // Another release's validly signed InRelease served as dists/trixie/.
    resign(&f.archive, "trixie", &|t| f.key.clearsign(t), &|t| {
        replace_field(
            replace_field(t, "Codename", "bookworm"),
            "Suite",
            "oldstable",
        )
    });
    let stderr = p.fails(&["lock", "--update"]);
    assert!(
        stderr.contains("dists/trixie/InRelease was asked for suite `trixie` but serves Codename `bookworm`, Suite `oldstable`"),
        "{stderr}"
    );
    assert_eq!(fs_err::read(p.path("pins.lock")).unwrap(), before);
}

#[test]
fn an_older_date_than_the_lock_is_refused_unless_allowed() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let before = fs_err::read(p.path("pins.lock")).unwrap();
    let old = "Mon, 24 Aug 2026 00:00:00 UTC";
    resign(&f.archive, "trixie", &|t| f.key.clearsign(t), &|t| {
        replace_field(t, "Date", old)
    });
    let stderr = p.fails(&["lock", "--update"]);
    assert!(
        stderr.contains(&format!(
            "is dated {old}, older than the Tue, 24 Nov 2026 00:00:00 UTC that pins.lock records"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-downgrade"), "{stderr}");
    assert_eq!(fs_err::read(p.path("pins.lock")).unwrap(), before);

    p.ok(&["lock", "--update", "--allow-downgrade"]);
    let lock = p.lock_text();
    assert!(lock.contains(&format!("date = \"{old}\"")), "{lock}");
}

#[test]
fn an_expired_release_is_refused_except_from_a_snapshot_state() {
    let f = fixture();
    resign(&f.archive, "trixie", &|t| f.key.clearsign(t), &|t| {
        replace_field(t, "Valid-Until", "Wed, 25 Nov 2026 00:00:00 UTC")
    });
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    let stderr = p.fails(&["lock"]);
    assert!(
        stderr.contains("expired: Valid-Until Wed, 25 Nov 2026 00:00:00 UTC has passed"),
        "{stderr}"
    );
    assert!(!p.path("pins.lock").exists());

    // The same files under a snapshot-shaped URL (`/archive/<archive>/<timestamp>/`), as
    // snapshot.debian.org serves them: accepted, like apt's Check-Valid-Until=no.
    let snap = tempfile::tempdir().unwrap();
    for archive in ["debian", "debian-security"] {
        let to = snap
            .path()
            .join("archive")
            .join(archive)
            .join("20261124T000000Z");
        copy_tree(&f.archive.path(archive), &to);
    }
    let snap_server = TestServer::start(snap.path());
    let out = p
        .command(&["lock"])
        .env("HERMETIC_MIRRORS", "")
        .env("HERMETIC_SNAPSHOT_URL", snap_server.url())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(snap_server.requests() > 0);
    assert!(p.lock_text().contains("name = \"app\""));
}

fn copy_tree(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for e in fs_err::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs_err::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_key_of_another_release_may_not_sign_the_suite() {
    let f = fixture();
    let bookworm = Key::generate(
        "Test Archive Automatic Signing Key (12/bookworm) <ftpmaster@hermetic.invalid>",
        "never",
        None,
    );
    for suite in ["trixie", "trixie-security"] {
        resign(&f.archive, suite, &|t| bookworm.clearsign(t), &|t| t);
    }
    let p = TestProject::new(&[("base", BASE)], &f.server, &bookworm.keyring);
    let stderr = p.fails(&["lock"]);
    assert!(
        stderr.contains(&format!(
            "{}: a key of release `bookworm`, not allowed for suite `trixie`",
            bookworm.fingerprint
        )),
        "{stderr}"
    );
    assert!(!p.path("pins.lock").exists());

    // The same archive signed by a key of the right release is accepted (security suite
    // by a security key).
    let trixie = Key::generate(
        "Test Archive Automatic Signing Key (13/trixie) <ftpmaster@hermetic.invalid>",
        "never",
        None,
    );
    let security = Key::generate(
        "Test Security Archive Automatic Signing Key (13/trixie) <ftpmaster@hermetic.invalid>",
        "never",
        None,
    );
    resign(&f.archive, "trixie", &|t| trixie.clearsign(t), &|t| t);
    resign(
        &f.archive,
        "trixie-security",
        &|t| security.clearsign(t),
        &|t| t,
    );
    let both = p.dir.path().join("both.pgp");
    let mut bytes = fs_err::read(&trixie.keyring).unwrap();
    bytes.extend(fs_err::read(&security.keyring).unwrap());
    fs_err::write(&both, bytes).unwrap();
    let out = p
        .command(&["lock"])
        .env("HERMETIC_KEYRING", &both)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The archive key may not sign the security suite.
    resign(
        &f.archive,
        "trixie-security",
        &|t| trixie.clearsign(t),
        &|t| t,
    );
    let out = p
        .command(&["lock", "--update"])
        .env("HERMETIC_KEYRING", &both)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("a key of release `trixie`, not allowed for suite `trixie-security`"),
        "{stderr}"
    );
}

#[test]
fn a_key_expired_at_the_release_date_is_refused() {
    let f = fixture();
    // Made and used in January 2020, valid for one day.
    let expired = Key::generate(
        "Expired Test Key <old@hermetic.invalid>",
        "1d",
        Some("20200101T000000"),
    );
    for suite in ["trixie", "trixie-security"] {
        resign(&f.archive, suite, &|t| expired.clearsign(t), &|t| t);
    }
    let p = TestProject::new(&[("base", BASE)], &f.server, &expired.keyring);
    let stderr = p.fails(&["lock"]);
    assert!(
        stderr.contains(&format!("{}: the key expired at", expired.fingerprint)),
        "{stderr}"
    );
    assert!(!p.path("pins.lock").exists());
}

// ---- case 5 on the committed project (no network) ----

/// A copy of the repository's project (recipes, kernel, overlays, scripts, pins.lock) in a
/// temporary directory.
fn committed_project() -> tempfile::TempDir {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    fs_err::copy(repo.join("hermetic.toml"), dir.path().join("hermetic.toml")).unwrap();
    fs_err::copy(repo.join("pins.lock"), dir.path().join("pins.lock")).unwrap();
    copy_tree(&repo.join("recipes"), &dir.path().join("recipes"));
    copy_tree(&repo.join("kernel"), &dir.path().join("kernel"));
    // Recipes name overlays and step scripts; loading the project checks that they exist.
    copy_tree(&repo.join("overlays"), &dir.path().join("overlays"));
    copy_tree(&repo.join("scripts"), &dir.path().join("scripts"));
    // ... and render-config's source (a `path` source under programs/).
    copy_tree(&repo.join("programs"), &dir.path().join("programs"));
    dir
}

fn check_committed(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .arg("-C")
        .arg(dir)
        .args(["lock", "--check"])
        .env("HERMETIC_MIRRORS", "http://127.0.0.1:9/")
        .env("HERMETIC_SNAPSHOT_URL", "")
        .env("HERMETIC_APT_ROOT", dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_committed_lock_is_complete_and_each_deletion_is_named() {
    let dir = committed_project();
    let lock_path = dir.path().join("pins.lock");
    let lock = fs_err::read_to_string(&lock_path).unwrap();
    let (ok, stderr) = check_committed(dir.path());
    assert!(ok, "{stderr}");

    // The attack: the udhcpc block that recipes/base.toml asks for, removed.
    fs_err::write(&lock_path, without_package(&lock, "udhcpc")).unwrap();
    let (ok, stderr) = check_committed(dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("closure `base`: requested package `udhcpc` is not pinned"),
        "{stderr}"
    );

    // A dependency-only package: busybox, which only udhcpc needs.
    fs_err::write(&lock_path, without_package(&lock, "busybox")).unwrap();
    let (ok, stderr) = check_committed(dir.path());
    assert!(!ok);
    assert!(
        stderr.contains(
            "closure `base`: udhcpc 1:1.37.0-6 (trixie) depends on `busybox (>> 1:1.37.0) | busybox-static (>> 1:1.37.0)`"
        ),
        "{stderr}"
    );

    // Truncated at the block boundary before the last [[package]] block.
    let cut = lock.rfind("\n[[package]]\n").unwrap() + 1;
    fs_err::write(&lock_path, &lock[..cut]).unwrap();
    let (ok, stderr) = check_committed(dir.path());
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("closure `base:kernel`: requested package `zstd` is not pinned"),
        "{stderr}"
    );
}

#[test]
fn a_version_1_lock_gets_its_relations_from_the_stored_debs() {
    let f = fixture();
    let p = TestProject::new(&[("base", BASE)], &f.server, &f.key.keyring);
    p.ok(&["lock"]);
    let v2 = p.lock_text();
    p.ok(&["fetch"]);
    // The same pins as a version 1 lock writes them: no relation fields.
    let v1: String = v2
        .replace("\nversion = 2\n", "\nversion = 1\n")
        .lines()
        .filter(|l| {
            ![
                "pre-depends = ",
                "depends = ",
                "provides = ",
                "multi-arch = ",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(v1, v2);
    fs_err::write(p.path("pins.lock"), &v1).unwrap();
    // Version 1: only the requests can be checked, and they are complete.
    p.ok(&["lock", "--check"]);
    // No network: the relations come from the .debs in the store, re-hashed.
    let before = f.server.requests();
    p.ok(&["lock"]);
    assert_eq!(f.server.requests(), before);
    assert_eq!(p.lock_text(), v2);

    // A stored .deb that is not the pinned one is refused, naming the package.
    fs_err::write(p.path("pins.lock"), &v1).unwrap();
    let app = &f.archive.debs["app"];
    let blob = p.blob(&app.sha256);
    let mut perms = fs_err::metadata(&blob).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs_err::set_permissions(&blob, perms).unwrap();
    fs_err::write(&blob, b"not the deb").unwrap();
    let stderr = p.fails(&["lock"]);
    assert!(
        stderr.contains("cannot read the relations of pinned package `app 1:2.0-1`"),
        "{stderr}"
    );
    assert_eq!(p.lock_text(), v1);
}

#[test]
fn a_revoked_key_is_refused() {
    let f = fixture();
    let key = Key::generate("Revoked Test Key <revoked@hermetic.invalid>", "never", None);
    for suite in ["trixie", "trixie-security"] {
        resign(&f.archive, suite, &|t| key.clearsign(t), &|t| t);
    }
    // Signed while valid, then revoked with the certificate gpg made at key generation.
    let cert = key
        .home
        .path()
        .join(format!("openpgp-revocs.d/{}.rev", key.fingerprint));
    let text = fs_err::read_to_string(&cert).unwrap().replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    );
    fs_err::write(&cert, text).unwrap();
    gpg(key.home.path(), &["--import", cert.to_str().unwrap()]);
    let exported = gpg(key.home.path(), &["--export", &key.fingerprint]);
    fs_err::write(&key.keyring, exported.stdout).unwrap();

    let p = TestProject::new(&[("base", BASE)], &f.server, &key.keyring);
    let stderr = p.fails(&["lock"]);
    assert!(
        stderr.contains(&format!("{}: the key is revoked", key.fingerprint)),
        "{stderr}"
    );
    assert!(!p.path("pins.lock").exists());
}

//! Hostile build steps against the host side of `hermetic build` (issue 11, cases 1, 2, 4
//! and 8): what a step leaves in `$OUTPUTDIR` or in the image tree is read without following
//! its links, outputs must be regular files with safe names, `out/` is written through fresh
//! temporary names and renamed, `SHA256SUMS` is merged under a lock, and a stored output is
//! re-hashed when it is copied out.
//!
//! No network and no package installation: the project is locked from the synthetic archive
//! on 127.0.0.1, and the `rootfs` and `tools` steps of each image are published into the
//! store by the test as a tiny tree made of the host's own `sh`, `cp`, `find`, … and their
//! libraries (what dpkg would have installed). Everything after that runs for real: the image
//! step (copy of the rootfs, the recipe's steps, os-release, the clean-up) and the output step
//! in the sandbox, then the copy into `out/`.

mod support;
mod uki_support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{TestArchive, TestKey, TestProject, TestServer, sha256_hex, standard_suites};

struct Fixture {
    _key: TestKey,
    _archive: TestArchive,
    _server: TestServer,
    project: TestProject,
    /// The tree every faked `rootfs` and `tools` step holds.
    mini: tempfile::TempDir,
}

/// A recipe with one step running `script` in the image tree.
fn recipe(format: &str, script: &str) -> String {
    format!(
        "format = \"{format}\"\npackages = [\"app\"]\nbuild-packages = [\"tool\"]\n\
         [[steps]]\nname = \"attack\"\nscript = '''\n{script}\n'''\n"
    )
}

fn fixture(recipes: &[(&str, &str)]) -> Fixture {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let project = TestProject::new(recipes, &server, &key.keyring);
    project.ok(&["lock"]);
    let mini = mini_tree();
    let f = Fixture {
        _key: key,
        _archive: archive,
        _server: server,
        project,
        mini,
    };
    for (name, _) in recipes {
        for (step, key) in f.plan(name) {
            if step.ends_with("/rootfs") || step.ends_with("/tools") {
                f.fake_step(&key);
            }
        }
    }
    f
}

impl Fixture {
    /// `(step, key)` of each step of `target`, as `hermetic plan` computes them.
    fn plan(&self, target: &str) -> Vec<(String, String)> {
        self.project.plan(target)
    }

    fn key_of(&self, target: &str, step: &str) -> String {
        let name = format!("{target}/{step}");
        self.plan(target)
            .into_iter()
            .find(|(s, _)| *s == name)
            .unwrap_or_else(|| panic!("no step {name}"))
            .1
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.project.store.path().join("v1/steps").join(key)
    }

    /// Publishes the mini tree as the complete step `key`.
    fn fake_step(&self, key: &str) {
        let entry = self.entry(key);
        fs_err::create_dir_all(&entry).unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(self.mini.path())
            .arg(entry.join("tree"))
            .status()
            .unwrap();
        assert!(status.success());
        fs_err::write(entry.join(".hermetic-complete"), "").unwrap();
    }

    fn out(&self) -> PathBuf {
        self.project.path("out")
    }

    /// `hermetic build TARGET… --output out` and extra arguments.
    fn build(&self, args: &[&str]) -> (bool, String) {
        let out = self.out();
        let mut all = vec!["build", "--output", out.to_str().unwrap()];
        all.extend_from_slice(args);
        let (ok, stdout, stderr) = self.project.run(&all);
        (ok, format!("{stdout}{stderr}"))
    }
}

/// A tiny tree with the host's `sh`, coreutils and `find` and their libraries, laid out with
/// merged /usr like a Debian root, enough for the image step's copy, steps and clean-up; for
/// the bootable formats a synthetic systemd stub and, in `/boot`, a kernel (a PE file too).
fn mini_tree() -> tempfile::TempDir {
    let dir = support::host_tools_tree(&["boot", "usr/lib/systemd/boot/efi"]);
    let t = dir.path();
    let pe = uki_support::old_style_stub();
    fs_err::write(t.join("usr/lib/systemd/boot/efi/linuxx64.efi.stub"), &pe).unwrap();
    fs_err::write(t.join("boot/vmlinuz-6.1.0-test"), &pe).unwrap();
    fs_err::write(t.join("usr/lib/os-release"), "ID=test\n").unwrap();
    dir
}

/// A host file the steps attack: outside the project, owned by the user running the tests,
/// readable by no one else.
fn host_file(content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious");
    fs_err::write(&path, content).unwrap();
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, path)
}

/// Whether any file under `dir` (links not followed) holds `needle`.
fn anywhere_in(dir: &Path, needle: &[u8]) -> bool {
    if !dir.exists() {
        return false;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = fs_err::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                let bytes = fs_err::read(e.path()).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    return true;
                }
            }
        }
    }
    false
}

/// The names in `dir` (none when it does not exist), without hermetic's lock file.
fn listing(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".hermetic-out.lock")
        .collect();
    names.sort();
    names
}

#[test]
fn a_step_linking_sha256sums_to_a_host_file_cannot_write_it() {
    let (_dir, victim) = host_file("precious host file\n");
    let script = format!(
        "ln -s {} \"$OUTPUTDIR/SHA256SUMS\"\nprintf 'x' > \"$OUTPUTDIR/$(printf 'x\\nANY LINE')\"",
        victim.display()
    );
    let f = fixture(&[("base", &recipe("directory", &script))]);
    let (ok, text) = f.build(&["base"]);
    assert!(!ok, "{text}");
    assert!(text.contains("base/image (attack)"), "{text}");
    assert!(text.contains("SHA256SUMS"), "{text}");
    assert_eq!(
        fs_err::read_to_string(&victim).unwrap(),
        "precious host file\n"
    );
    assert!(listing(&f.out()).is_empty(), "{:?}", listing(&f.out()));
    // The image step was not published.
    assert!(!f.entry(&f.key_of("base", "image")).exists());
}

#[test]
fn a_link_already_at_out_sha256sums_or_an_output_name_is_replaced_not_followed() {
    let (_dir, victim) = host_file("precious host file\n");
    let f = fixture(&[(
        "base",
        &recipe("directory", "printf 'data' > \"$OUTPUTDIR/data.bin\""),
    )]);
    let out = f.out();
    fs_err::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("SHA256SUMS")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("data.bin")).unwrap();
    let (ok, text) = f.build(&["base"]);
    assert!(ok, "{text}");
    assert_eq!(
        fs_err::read_to_string(&victim).unwrap(),
        "precious host file\n"
    );
    for name in ["SHA256SUMS", "data.bin"] {
        let meta = fs_err::symlink_metadata(out.join(name)).unwrap();
        assert!(meta.is_file(), "{name} is still a link");
    }
    assert_eq!(fs_err::read(out.join("data.bin")).unwrap(), b"data");
    assert_eq!(
        fs_err::read_to_string(out.join("SHA256SUMS")).unwrap(),
        format!("{}  data.bin\n", sha256_hex(b"data"))
    );
    // The directory output is hermetic's own link to the stored image tree.
    let link = fs_err::read_link(out.join("base.tree")).unwrap();
    assert_eq!(link, f.entry(&f.key_of("base", "image")).join("tree"));
    // No temporary file is left behind.
    assert_eq!(
        listing(&out),
        [
            "SHA256SUMS",
            "base.manifest.json",
            "base.provenance.json",
            "base.spdx.json",
            "base.tree",
            "data.bin"
        ],
        "{:?}",
        listing(&out)
    );
}

#[test]
fn an_output_name_with_a_newline_is_refused_naming_it() {
    let script = "printf 'data' > \"$OUTPUTDIR/$(printf 'x\\nANY LINE')\"";
    let f = fixture(&[("base", &recipe("directory", script))]);
    let (ok, text) = f.build(&["base"]);
    assert!(!ok, "{text}");
    assert!(text.contains("base/image (attack)"), "{text}");
    // The name is shown escaped, never as a line of its own.
    assert!(text.contains("\"x\\nANY LINE\""), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("ANY LINE")), "{text}");
    assert!(text.contains("hint: rename"), "{text}");
    assert!(listing(&f.out()).is_empty(), "{:?}", listing(&f.out()));
}

#[test]
fn a_link_to_a_root_only_host_file_among_the_outputs_is_refused() {
    let (_dir, secret) = host_file("SECRET-1f0e4a7c-outputs\n");
    let script = format!(
        "ln -s {} \"$OUTPUTDIR/shadow\"\nln -s /etc/shadow \"$OUTPUTDIR/shadow2\"",
        secret.display()
    );
    let f = fixture(&[("base", &recipe("directory", &script))]);
    let (ok, text) = f.build(&["base"]);
    assert!(!ok, "{text}");
    assert!(text.contains("base/image (attack)"), "{text}");
    assert!(text.contains("shadow"), "{text}");
    assert!(text.contains("symbolic link"), "{text}");
    assert!(!anywhere_in(&f.out(), b"SECRET-1f0e4a7c"));
    assert!(listing(&f.out()).is_empty(), "{:?}", listing(&f.out()));
}

#[test]
fn os_release_linked_to_a_host_secret_is_refused_for_a_bootable_format() {
    let (_dir, secret) = host_file("SECRET-5b2d9e11-osrel\n");
    let script = format!(
        "rm -f \"$DESTDIR/usr/lib/os-release\"\nln -s {} \"$DESTDIR/usr/lib/os-release\"",
        secret.display()
    );
    let f = fixture(&[("base", &recipe("uki", &script))]);
    let (ok, text) = f.build(&["base"]);
    assert!(!ok, "{text}");
    assert!(text.contains("usr/lib/os-release"), "{text}");
    assert!(text.contains("symbolic link"), "{text}");
    assert!(!anywhere_in(&f.out(), b"SECRET-5b2d9e11"));
    // Nor in any store entry (the output step published nothing).
    assert!(!anywhere_in(
        &f.project.store.path().join("v1/steps"),
        b"SECRET-5b2d9e11"
    ));
    assert!(!f.entry(&f.key_of("base", "output")).exists());
}

#[test]
fn a_uki_is_made_of_the_trees_own_regular_files() {
    let script = "printf 'ID=test\\nMARK=regular-7c1e\\n' > \"$DESTDIR/usr/lib/os-release\"";
    let f = fixture(&[("base", &recipe("uki", script))]);
    let (ok, text) = f.build(&["base"]);
    assert!(ok, "{text}");
    let efi = fs_err::read(f.out().join("base.efi")).unwrap();
    assert!(efi.windows(16).any(|w| w == b"MARK=regular-7c1"));
    assert!(efi.starts_with(b"MZ"));
    let sums = fs_err::read_to_string(f.out().join("SHA256SUMS")).unwrap();
    assert!(
        sums.contains(&format!("{}  base.efi\n", sha256_hex(&efi))),
        "{sums}"
    );
    assert!(sums.contains("  base.measurements.json\n"), "{sums}");
}

#[test]
fn a_flipped_byte_in_a_stored_output_fails_the_copy_removes_the_entry_and_rebuilds() {
    let f = fixture(&[(
        "base",
        &recipe("directory", "printf 'good bytes' > \"$OUTPUTDIR/data.bin\""),
    )]);
    let (ok, text) = f.build(&["base"]);
    assert!(ok, "{text}");
    let output = f.entry(&f.key_of("base", "output"));
    // Twice: the rebuilt entry is checked as the first one was.
    for args in [&["base"][..], &["base"][..]] {
        let stored = output.join("files/data.bin");
        fs_err::set_permissions(&stored, std::fs::Permissions::from_mode(0o644)).unwrap();
        fs_err::write(&stored, b"good bytez").unwrap();
        let (ok, text) = f.build(args);
        assert!(!ok, "{args:?}: {text}");
        assert!(text.contains("files/data.bin"), "{text}");
        assert!(text.contains(&output.display().to_string()), "{text}");
        assert!(text.contains(&sha256_hex(b"good bytez")), "{text}");
        assert!(text.contains("the entry was removed"), "{text}");
        assert!(text.contains("hint: run the build again"), "{text}");
        assert!(
            !output.exists(),
            "{args:?}: the damaged entry is still there"
        );
        // The damaged bytes never reached out/.
        assert_eq!(
            fs_err::read(f.out().join("data.bin")).unwrap(),
            b"good bytes"
        );

        let (ok, text) = f.build(&["base"]);
        assert!(ok, "{text}");
        assert_eq!(
            fs_err::read(f.out().join("data.bin")).unwrap(),
            b"good bytes"
        );
        assert_eq!(
            fs_err::read_to_string(f.out().join("SHA256SUMS")).unwrap(),
            format!("{}  data.bin\n", sha256_hex(b"good bytes"))
        );
    }
}

#[test]
fn concurrent_builds_of_two_targets_into_one_out_keep_both_lines() {
    let f = fixture(&[
        (
            "one",
            &recipe("directory", "printf 'first' > \"$OUTPUTDIR/one.bin\""),
        ),
        (
            "two",
            &recipe("directory", "printf 'second' > \"$OUTPUTDIR/two.bin\""),
        ),
    ]);
    // The steps are built once; the races are in the copies into out/.
    for t in ["one", "two"] {
        let (ok, text) = f.build(&[t]);
        assert!(ok, "{text}");
    }
    let out = f.out();
    let expected = format!(
        "{}  one.bin\n{}  two.bin\n",
        sha256_hex(b"first"),
        sha256_hex(b"second")
    );
    for round in 0..6 {
        // Every other round from an empty out/, the others over the previous files.
        if round % 2 == 0 {
            fs_err::remove_dir_all(&out).unwrap();
        }
        let children: Vec<_> = ["one", "two"]
            .iter()
            .map(|t| {
                f.project
                    .command(&["build", t, "--output", out.to_str().unwrap()])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert_eq!(
            fs_err::read_to_string(out.join("SHA256SUMS")).unwrap(),
            expected,
            "round {round}"
        );
        assert_eq!(fs_err::read(out.join("one.bin")).unwrap(), b"first");
        assert_eq!(fs_err::read(out.join("two.bin")).unwrap(), b"second");
        assert_eq!(
            listing(&out),
            [
                "SHA256SUMS",
                "one.bin",
                "one.manifest.json",
                "one.provenance.json",
                "one.spdx.json",
                "one.tree",
                "two.bin",
                "two.manifest.json",
                "two.provenance.json",
                "two.spdx.json",
                "two.tree"
            ],
            "round {round}"
        );
    }
}

//! Overlays reach the image with modes from the recipe and git, never from the checkout's
//! umask, and with their build-time settings filled in (issue 15).
//!
//! Real git makes the checkouts (`git clone` under umask 002, Debian's default, and under
//! 022); hermetic's overlay code lays them over a real tree the way the image step does, and
//! the tree is written with hermetic's deterministic tar writer, owners mapped as the
//! sandbox's are.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;
use std::process::Command;

use hermetic::build::overlay::{self, OverlayError};
use hermetic::recipe::ResolvedOverlay;
use support::{clone_under_umask, git_sh};

fn mode(p: &Path) -> u32 {
    fs_err::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A repository holding `overlays/layer/` with a config file, an executable, a sudoers file
/// (mode from the table), a directory for `.ssh`, a symlink and a file with a setting.
fn repository() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    let o = repo.path().join("overlays/layer");
    for d in [
        "etc/systemd/system",
        "etc/sudoers.d",
        "usr/bin",
        "home/bnet/.ssh",
    ] {
        fs_err::create_dir_all(o.join(d)).unwrap();
    }
    fs_err::write(
        o.join("etc/systemd/system/hub.service"),
        "[Service]\nEnvironment=HUB=__BUILDERNET_BUILDERHUB_URL\nExecStart=/usr/bin/tool\n",
    )
    .unwrap();
    fs_err::write(o.join("usr/bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    fs_err::set_permissions(
        o.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs_err::write(
        o.join("etc/sudoers.d/bnet"),
        "bnet ALL=(ALL) NOPASSWD:ALL\n",
    )
    .unwrap();
    fs_err::write(
        o.join("home/bnet/.ssh/authorized_keys"),
        "__BUILDERNET_SSH_PUBLIC_KEY__\n",
    )
    .unwrap();
    symlink("tool", o.join("usr/bin/tool-alias")).unwrap();
    git_sh(
        repo.path(),
        "git init -q . && git add -A && git commit -q -m overlay",
    );
    repo
}

fn modes_table() -> BTreeMap<String, u32> {
    BTreeMap::from([
        ("etc/sudoers.d/bnet".to_string(), 0o440),
        ("home/bnet/.ssh".to_string(), 0o700),
        ("home/bnet/.ssh/authorized_keys".to_string(), 0o600),
    ])
}

fn environment() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "BUILDERNET_BUILDERHUB_URL".to_string(),
            "10.0.2.2:7000".to_string(),
        ),
        (
            "BUILDERNET_SSH_PUBLIC_KEY".to_string(),
            "ssh-ed25519 AAAAtest bnet".to_string(),
        ),
    ])
}

fn resolved(checkout: &Path) -> ResolvedOverlay {
    ResolvedOverlay {
        name: "layer".into(),
        path: checkout.join("overlays/layer"),
        recipe: "test".into(),
    }
}

/// An image tree as the packages leave it: merged /usr, an existing `etc` of its own mode.
fn image_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(t.path().join("usr/lib")).unwrap();
    fs_err::create_dir_all(t.path().join("etc")).unwrap();
    fs_err::set_permissions(t.path().join("etc"), std::fs::Permissions::from_mode(0o751)).unwrap();
    symlink("usr/lib", t.path().join("lib")).unwrap();
    t
}

fn lay_and_tar(checkout: &Path) -> (Vec<u8>, tempfile::TempDir, hermetic::key::TreeManifest) {
    let prepared = overlay::prepare(&[resolved(checkout)], &modes_table()).unwrap();
    let keyed = prepared[0].manifest.clone();
    let tree = image_tree();
    overlay::check_placeholders(&prepared, &environment()).unwrap();
    overlay::lay(tree.path(), &prepared, &environment()).unwrap();
    let mut tar = Vec::new();
    let opts = hermetic::treetar::TarOptions {
        source_date_epoch: 0,
        owner: None,
        // As the image step's trees: the user running hermetic is root inside.
        id_map: Some(hermetic::treetar::IdMap {
            root_uid: nix::unistd::getuid().as_raw(),
            uid_start: 3_000_000_000,
            root_gid: nix::unistd::getgid().as_raw(),
            gid_start: 3_000_000_000,
            count: 65535,
        }),
    };
    hermetic::treetar::write_tree(tree.path(), &mut tar, &opts).unwrap();
    (tar, tree, keyed)
}

#[test]
fn clones_under_umask_002_and_022_give_the_same_tree_and_key() {
    let repo = repository();
    let scratch = tempfile::tempdir().unwrap();
    let (a, b) = (scratch.path().join("a"), scratch.path().join("b"));
    fs_err::create_dir(&a).unwrap();
    fs_err::create_dir(&b).unwrap();
    let loose = clone_under_umask(repo.path(), "002", &a);
    let strict = clone_under_umask(repo.path(), "022", &b);
    // The premise: the two checkouts do differ on disk.
    let conf = "overlays/layer/etc/systemd/system/hub.service";
    assert_eq!(mode(&loose.join(conf)), 0o664);
    assert_eq!(mode(&strict.join(conf)), 0o644);
    assert_eq!(mode(&loose.join("overlays/layer/usr/bin/tool")), 0o775);

    let (tar_a, tree_a, key_a) = lay_and_tar(&loose);
    let (tar_b, tree_b, key_b) = lay_and_tar(&strict);
    assert_eq!(
        key_a, key_b,
        "the step key's view of the overlay depends on the umask"
    );
    assert!(
        tar_a == tar_b,
        "the laid trees differ between umask 002 and 022"
    );

    for tree in [tree_a.path(), tree_b.path()] {
        assert_eq!(mode(&tree.join("etc/systemd/system/hub.service")), 0o644);
        assert_eq!(mode(&tree.join("etc/systemd/system")), 0o755);
        assert_eq!(mode(&tree.join("usr/bin/tool")), 0o755);
        assert_eq!(mode(&tree.join("etc/sudoers.d/bnet")), 0o440);
        assert_eq!(mode(&tree.join("home/bnet/.ssh")), 0o700);
        assert_eq!(mode(&tree.join("home/bnet/.ssh/authorized_keys")), 0o600);
        // A directory the image has keeps its mode: the table does not name it.
        assert_eq!(mode(&tree.join("etc")), 0o751);
        assert_eq!(
            fs_err::read_link(tree.join("usr/bin/tool-alias")).unwrap(),
            Path::new("tool")
        );
        assert_eq!(
            fs_err::read_to_string(tree.join("etc/systemd/system/hub.service")).unwrap(),
            "[Service]\nEnvironment=HUB=10.0.2.2:7000\nExecStart=/usr/bin/tool\n"
        );
        assert_eq!(
            fs_err::read_to_string(tree.join("home/bnet/.ssh/authorized_keys")).unwrap(),
            "ssh-ed25519 AAAAtest bnet\n"
        );
    }
    // Every entry of the tar is root's (uid and gid 0 in the ustar header).
    let mut archive = tar::Archive::new(&tar_a[..]);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap()),
            (0, 0),
            "{:?}",
            entry.path()
        );
    }
}

#[test]
fn the_git_index_decides_over_the_checkouts_x_bit() {
    let repo = repository();
    let checkout = repo.path();
    // A local chmod that git's index does not record (core.fileMode would show it as a
    // change): the image takes what was committed.
    let conf = checkout.join("overlays/layer/etc/systemd/system/hub.service");
    fs_err::set_permissions(&conf, std::fs::Permissions::from_mode(0o775)).unwrap();
    let m = overlay::manifest(&resolved(checkout), &BTreeMap::new()).unwrap();
    let entry = |p: &str| {
        m.entries
            .iter()
            .find(|e| e.path == p.as_bytes())
            .unwrap_or_else(|| panic!("{p} missing"))
            .mode
    };
    assert_eq!(entry("etc/systemd/system/hub.service"), 0o644);
    assert_eq!(entry("usr/bin/tool"), 0o755);
    // A file git does not track: its own x bits decide.
    let new = checkout.join("overlays/layer/usr/bin/untracked");
    fs_err::write(&new, "#!/bin/sh\n").unwrap();
    fs_err::set_permissions(&new, std::fs::Permissions::from_mode(0o700)).unwrap();
    let m = overlay::manifest(&resolved(checkout), &BTreeMap::new()).unwrap();
    let untracked = m
        .entries
        .iter()
        .find(|e| e.path == b"usr/bin/untracked")
        .unwrap();
    assert_eq!(untracked.mode, 0o755);
}

#[test]
fn outside_git_any_x_bit_makes_0755_and_none_0644() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("overlays/plain");
    fs_err::create_dir_all(o.join("d")).unwrap();
    fs_err::set_permissions(o.join("d"), std::fs::Permissions::from_mode(0o700)).unwrap();
    for (name, m) in [("a", 0o664), ("b", 0o600), ("c", 0o744), ("e", 0o710)] {
        fs_err::write(o.join(name), name).unwrap();
        fs_err::set_permissions(o.join(name), std::fs::Permissions::from_mode(m)).unwrap();
    }
    let ro = ResolvedOverlay {
        name: "plain".into(),
        path: o.clone(),
        recipe: "t".into(),
    };
    let m = overlay::manifest(&ro, &BTreeMap::new()).unwrap();
    let got: BTreeMap<String, u32> = m
        .entries
        .iter()
        .map(|e| (String::from_utf8_lossy(&e.path).into_owned(), e.mode))
        .collect();
    assert_eq!(
        got,
        BTreeMap::from([
            ("a".to_string(), 0o644),
            ("b".to_string(), 0o644),
            ("c".to_string(), 0o755),
            ("d".to_string(), 0o755),
            ("e".to_string(), 0o755),
        ])
    );
}

#[test]
fn an_unknown_placeholder_is_an_error_naming_file_and_line() {
    let repo = repository();
    let file = repo
        .path()
        .join("overlays/layer/etc/systemd/system/hub.service");
    fs_err::write(
        &file,
        "[Service]\nEnvironment=HUB=__BUILDERNET_BUILDERHUB_URL\nEnvironment=LUN=__BUILDERNET_PERSISTENT_DEVICE_LUN\n",
    )
    .unwrap();
    let prepared = overlay::prepare(&[resolved(repo.path())], &modes_table()).unwrap();
    let err = overlay::check_placeholders(&prepared, &environment()).unwrap_err();
    assert!(
        matches!(&err, OverlayError::UnknownPlaceholder { file: f, line: 3, .. } if f == &file),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("{}:3:", file.display())), "{text}");
    assert!(text.contains("BUILDERNET_PERSISTENT_DEVICE_LUN"), "{text}");
    assert!(text.contains("hint:"), "{text}");
    // `lay` refuses it too (nothing half-substituted reaches the image).
    let tree = image_tree();
    let err = overlay::lay(tree.path(), &prepared, &environment()).unwrap_err();
    assert!(
        matches!(err, OverlayError::UnknownPlaceholder { line: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn the_mode_table_must_name_overlay_paths() {
    let repo = repository();
    let mut table = modes_table();
    table.insert("etc/sudoers.d/typo".into(), 0o440);
    let err = overlay::prepare(&[resolved(repo.path())], &table).unwrap_err();
    assert!(
        err.to_string().contains("etc/sudoers.d/typo") && err.to_string().contains("layer"),
        "{err}"
    );
    let mut table = modes_table();
    table.insert("usr/bin/tool-alias".into(), 0o700);
    let err = overlay::prepare(&[resolved(repo.path())], &table).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

#[test]
fn links_of_the_image_are_replaced_or_refused_never_followed() {
    let repo = repository();
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("victim");
    fs_err::write(&victim, "host file\n").unwrap();
    let tree = image_tree();
    // The image has a link where the overlay has a file: the link goes, the host file stays.
    fs_err::create_dir_all(tree.path().join("usr/bin")).unwrap();
    symlink(&victim, tree.path().join("usr/bin/tool")).unwrap();
    let prepared = overlay::prepare(&[resolved(repo.path())], &modes_table()).unwrap();
    overlay::lay(tree.path(), &prepared, &environment()).unwrap();
    assert_eq!(fs_err::read_to_string(&victim).unwrap(), "host file\n");
    assert!(
        fs_err::symlink_metadata(tree.path().join("usr/bin/tool"))
            .unwrap()
            .is_file()
    );

    // An overlay directory where the image has a link (merged /usr's lib): refused, naming it.
    let o = repo.path().join("overlays/layer/lib/udev");
    fs_err::create_dir_all(&o).unwrap();
    fs_err::write(o.join("rule"), "x\n").unwrap();
    let tree = image_tree();
    let prepared = overlay::prepare(&[resolved(repo.path())], &modes_table()).unwrap();
    let err = overlay::lay(tree.path(), &prepared, &environment()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`lib`") && text.contains("usr/lib"), "{text}");
    assert!(!tree.path().join("usr/lib/udev").exists());
}

mod support;

/// `hermetic` on the checkout `dir` with the store `store` and `project`'s archive settings.
fn hermetic_in(
    project: &support::TestProject,
    dir: &Path,
    store: &Path,
    args: &[&str],
) -> (bool, String, String) {
    let out = project.command_at(dir, store, args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The whole `hermetic build` of a tar image with an overlay, from two clones of the same
/// project made under umask 002 and 022, each with a store of its own: the same image step
/// key and the same tar, byte for byte. The rootfs step is a tiny tree of the host's tools
/// (no package installation); the image step (overlay, os-release, clean-up) and the tar
/// run for real, in the sandbox.
#[test]
fn hermetic_build_from_clones_under_umask_002_and_022_gives_the_same_tar() {
    let recipe = "format = \"tar\"\npackages = [\"app\"]\noverlays = [\"layer\"]\n\
        [environment]\nBUILDERNET_BUILDERHUB_URL = \"10.0.2.2:7000\"\n\
        BUILDERNET_SSH_PUBLIC_KEY = \"ssh-ed25519 AAAAtest bnet\"\n\
        [overlay-modes]\n\"etc/sudoers.d/bnet\" = \"0440\"\n\"home/bnet/.ssh\" = \"0700\"\n\
        \"home/bnet/.ssh/authorized_keys\" = \"0600\"\n";
    let key = support::TestKey::generate("archive");
    let archive = support::TestArchive::build(&support::standard_suites(), &key);
    let server = support::TestServer::start(archive.root.path());
    let project = support::TestProject::new(&[("img", recipe)], &server, &key.keyring);
    // The overlay of `repository()`, inside the project, all of it committed.
    let layer = repository();
    git_sh(
        project.dir.path(),
        &format!("cp -a {}/overlays .", layer.path().display()),
    );
    project.ok(&["lock"]);
    git_sh(
        project.dir.path(),
        "git init -q . && git add -A && git commit -q -m project",
    );

    let mut results = Vec::new();
    for umask in ["002", "022"] {
        let place = tempfile::tempdir().unwrap();
        let checkout = clone_under_umask(project.dir.path(), umask, place.path());
        let store = tempfile::tempdir().unwrap();
        let (ok, plan, err) = hermetic_in(
            &project,
            &checkout,
            store.path(),
            &["--json", "plan", "img"],
        );
        assert!(ok, "{err}");
        let rows: serde_json::Value = serde_json::from_str(&plan).unwrap();
        let key_of = |step: &str| {
            rows.as_array()
                .unwrap()
                .iter()
                .find(|r| r["step"] == step)
                .unwrap_or_else(|| panic!("no {step} in {plan}"))["key"]
                .as_str()
                .unwrap()
                .to_string()
        };
        // The rootfs step, published as the tiny tree.
        let entry = store.path().join("v1/steps").join(key_of("img/rootfs"));
        fs_err::create_dir_all(&entry).unwrap();
        let mini = support::host_tools_tree(&[]);
        let cp = Command::new("cp")
            .arg("-a")
            .arg(mini.path())
            .arg(entry.join("tree"))
            .status()
            .unwrap();
        assert!(cp.success());
        fs_err::write(entry.join(".hermetic-complete"), "").unwrap();
        let out = place.path().join("out");
        let (ok, stdout, err) = hermetic_in(
            &project,
            &checkout,
            store.path(),
            &["build", "img", "--output", out.to_str().unwrap()],
        );
        assert!(ok, "umask {umask}: {stdout}{err}");
        let tar = fs_err::read(out.join("img.tar")).unwrap();
        results.push((key_of("img/image"), tar, place, checkout, store));
    }
    assert_eq!(results[0].0, results[1].0, "the image step keys differ");
    assert!(results[0].1 == results[1].1, "the tars differ");

    let mut modes = BTreeMap::new();
    let mut archive = tar::Archive::new(&results[0].1[..]);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let h = entry.header();
        modes.insert(
            path,
            (h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
        );
    }
    for (path, mode) in [
        ("./etc/systemd/system/hub.service", 0o644),
        ("./usr/bin/tool", 0o755),
        ("./etc/sudoers.d/bnet", 0o440),
        ("./home/bnet/.ssh/", 0o700),
        ("./home/bnet/.ssh/authorized_keys", 0o600),
    ] {
        assert_eq!(modes.get(path), Some(&(mode, 0, 0)), "{path}: {modes:?}");
    }

    // A setting the environment lacks fails the build before anything runs, naming the file
    // and the line.
    let (_, _, _, checkout, store) = &results[1];
    let file = checkout.join("overlays/layer/etc/systemd/system/hub.service");
    fs_err::write(&file, "[Service]\n\nExecStart=/x __BUILDERNET_NOT_SET\n").unwrap();
    let (ok, stdout, err) = hermetic_in(&project, checkout, store.path(), &["build", "img"]);
    assert!(!ok, "{stdout}{err}");
    assert!(
        err.contains(&format!("{}:3:", file.display())) && err.contains("BUILDERNET_NOT_SET"),
        "{err}"
    );
}

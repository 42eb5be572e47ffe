//! The deterministic tar writer, checked against GNU tar: what GNU tar extracts equals the
//! tree, the bytes do not depend on creation order, and a small golden archive stays stable.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use hermetic::treetar::{
    CompareOptions, Difference, TarOptions, TreeSource, compare, manifest_dir, manifest_tar,
    write_tree,
};

const SDE: u64 = 1_700_000_000;

fn set_mtime(path: &Path, secs: u64) {
    let t = nix::sys::time::TimeSpec::new(secs as i64, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// One step of building the test tree; steps can be applied in any order as long as
/// parents come first (`order` decides among independent ones).
#[derive(Clone)]
enum Op {
    Dir(&'static str, u32),
    File(String, u32, Vec<u8>),
    Symlink(String, String),
    HardLink(&'static str, &'static str),
    Fifo(&'static str),
}

fn ops() -> Vec<Op> {
    let long_dir = format!("deep/{}", "d".repeat(120));
    let long_leaf = format!("deep/{}", "f".repeat(150));
    vec![
        Op::Dir("etc", 0o755),
        Op::Dir("usr", 0o755),
        Op::Dir("usr/bin", 0o755),
        Op::Dir("var", 0o755),
        Op::Dir("var/mail", 0o2775),
        Op::Dir("deep", 0o700),
        Op::Dir(
            "deep/dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
            0o755,
        ),
        Op::File("etc/hostname".into(), 0o644, b"hermetic\n".to_vec()),
        Op::File(
            "etc/shadow".into(),
            0o640,
            b"root:*:0:0:99999:7:::\n".to_vec(),
        ),
        Op::File("etc/empty".into(), 0o600, Vec::new()),
        Op::File(
            "usr/bin/tool".into(),
            0o4755,
            vec![0x7f, b'E', b'L', b'F', 0, 1, 2, 3],
        ),
        Op::File(
            "usr/bin/big".into(),
            0o755,
            (0..70_000u32).map(|i| (i % 251) as u8).collect(),
        ),
        Op::File(format!("{long_dir}/inside-long-dir"), 0o644, b"x".to_vec()),
        Op::File(long_leaf, 0o644, b"long leaf\n".to_vec()),
        Op::File("a-b".into(), 0o644, b"sorts between a and a/\n".to_vec()),
        Op::Dir("a", 0o755),
        Op::File("a/c".into(), 0o644, b"c\n".to_vec()),
        Op::Symlink("bin".into(), "usr/bin".into()),
        Op::Symlink("etc/abs".into(), "/etc/hostname".into()),
        Op::Symlink("etc/dangling".into(), "../nowhere".into()),
        Op::Symlink("etc/longlink".into(), format!("/{}", "t".repeat(130))),
        Op::HardLink("usr/bin/tool-again", "usr/bin/tool"),
        Op::HardLink("etc/hostname2", "etc/hostname"),
        Op::Fifo("var/fifo"),
    ]
}

fn op_path(op: &Op) -> PathBuf {
    match op {
        Op::Dir(p, _) | Op::HardLink(p, _) | Op::Fifo(p) => PathBuf::from(p),
        Op::File(p, _, _) | Op::Symlink(p, _) => PathBuf::from(p),
    }
}

/// Builds the tree in `root`, taking the operations in `order` (dependencies first).
fn build(root: &Path, reverse: bool) {
    let mut ops = ops();
    // Parents must exist first: sort by depth, then (within a depth) by the given order.
    if reverse {
        ops.reverse();
    }
    ops.sort_by_key(|op| {
        let depth = op_path(op).components().count();
        let is_link = matches!(op, Op::HardLink(..));
        (is_link, depth)
    });
    for op in &ops {
        let path = root.join(op_path(op));
        match op {
            Op::Dir(_, mode) => {
                fs_err::create_dir(&path).unwrap();
                chmod(&path, *mode);
            }
            Op::File(_, mode, data) => {
                fs_err::write(&path, data).unwrap();
                chmod(&path, *mode);
            }
            Op::Symlink(_, target) => std::os::unix::fs::symlink(target, &path).unwrap(),
            Op::HardLink(_, target) => fs_err::hard_link(root.join(target), &path).unwrap(),
            Op::Fifo(_) => {
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
            }
        }
    }
    if is_root() {
        std::os::unix::fs::lchown(root.join("etc/shadow"), Some(0), Some(42)).unwrap();
        std::os::unix::fs::lchown(root.join("usr/bin/big"), Some(3_000_000), Some(1234)).unwrap();
        nix::sys::stat::mknod(
            &root.join("var/null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
    }
    // mtimes last (children change their directory's mtime): some before the epoch, some
    // after it (to be clamped).
    for (i, entry) in manifest_dir(root).unwrap().keys().enumerate() {
        let p = root.join(std::ffi::OsStr::from_bytes(entry));
        let t = if i % 2 == 0 {
            SDE - 1000 * i as u64
        } else {
            SDE + 5000
        };
        set_mtime(&p, t);
    }
    chmod(root, 0o755);
}

fn tar_of(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let summary = write_tree(
        root,
        &mut out,
        &TarOptions {
            source_date_epoch: SDE,
            owner: None,
            id_map: None,
        },
    )
    .unwrap();
    assert_eq!(summary.bytes, out.len() as u64);
    assert_eq!(summary.bytes % 512, 0);
    out
}

#[test]
fn gnu_tar_extracts_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs_err::create_dir(&tree).unwrap();
    build(&tree, false);
    let tar = dir.path().join("tree.tar");
    fs_err::write(&tar, tar_of(&tree)).unwrap();

    // GNU tar lists every entry of the tree, sockets aside.
    let list = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let listing = String::from_utf8(list.stdout).unwrap();
    let manifest = manifest_dir(&tree).unwrap();
    assert_eq!(listing.lines().count(), manifest.len(), "{listing}");
    assert!(
        listing.lines().next().unwrap().ends_with(" ./"),
        "{listing}"
    );
    assert!(
        listing.contains("./etc/hostname2 link to ./etc/hostname"),
        "{listing}"
    );
    assert!(listing.contains("./bin -> usr/bin"), "{listing}");
    assert!(
        listing.contains(&"f".repeat(150)),
        "pax path lost: {listing}"
    );
    assert!(
        listing.contains(&"t".repeat(130)),
        "pax linkpath lost: {listing}"
    );
    assert!(!listing.contains("PaxHeader"), "{listing}");
    if is_root() {
        assert!(listing.contains("3000000/1234"), "pax uid lost: {listing}");
    }

    // What GNU tar extracts is the tree: types, modes, owners, contents, targets; mtimes
    // clamped to SOURCE_DATE_EPOCH.
    let out = dir.path().join("out");
    fs_err::create_dir(&out).unwrap();
    let status = Command::new("tar")
        .args(["--numeric-owner", "--same-owner", "-xpf"])
        .arg(&tar)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let opts = CompareOptions {
        modes: true,
        owners: is_root(),
        mtimes: false,
    };
    let diffs = compare(TreeSource::Dir(&tree), TreeSource::Dir(&out), opts).unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
    let extracted = manifest_dir(&out).unwrap();
    for (path, e) in &manifest {
        let want = e.mtime.min(SDE as i64);
        assert_eq!(
            extracted[path].mtime,
            want,
            "{}",
            String::from_utf8_lossy(path)
        );
    }
    // Hard links stay hard links.
    let a = fs_err::metadata(out.join("usr/bin/tool")).unwrap();
    let b = fs_err::metadata(out.join("usr/bin/tool-again")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.mode() & 0o7777, 0o4755);

    // Our own reader agrees with GNU tar's extraction, mtimes included.
    let diffs = compare(
        TreeSource::Tar(&tar),
        TreeSource::Dir(&out),
        CompareOptions {
            owners: is_root(),
            ..CompareOptions::default()
        },
    )
    .unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[test]
fn creation_order_does_not_change_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    fs_err::create_dir(&one).unwrap();
    fs_err::create_dir(&two).unwrap();
    build(&one, false);
    build(&two, true);
    let (a, b) = (tar_of(&one), tar_of(&two));
    assert!(a == b, "creation order changed the tar");
    // And a change in the tree does change them, naming the path.
    chmod(&two.join("etc/hostname"), 0o600);
    let c = tar_of(&two);
    assert!(a != c);
    let diffs = compare(
        TreeSource::Dir(&one),
        TreeSource::Dir(&two),
        CompareOptions::default(),
    )
    .unwrap();
    let names: Vec<_> = diffs.iter().map(|d| d.to_string()).collect();
    // etc/hostname2 is the same inode.
    assert_eq!(
        names,
        [
            "etc/hostname: differs in mode",
            "etc/hostname2: differs in mode",
        ],
        "{diffs:#?}"
    );
}

#[test]
fn compare_names_what_differs_between_tars() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    fs_err::create_dir(&tree).unwrap();
    fs_err::write(tree.join("same"), b"1").unwrap();
    fs_err::write(tree.join("content"), b"1").unwrap();
    fs_err::write(tree.join("gone"), b"1").unwrap();
    std::os::unix::fs::symlink("a", tree.join("link")).unwrap();
    let first = dir.path().join("1.tar");
    fs_err::write(&first, tar_of(&tree)).unwrap();
    fs_err::write(tree.join("content"), b"2").unwrap();
    fs_err::remove_file(tree.join("gone")).unwrap();
    fs_err::write(tree.join("new"), b"1").unwrap();
    fs_err::remove_file(tree.join("link")).unwrap();
    std::os::unix::fs::symlink("b", tree.join("link")).unwrap();
    let second = dir.path().join("2.tar");
    fs_err::write(&second, tar_of(&tree)).unwrap();
    let diffs = compare(
        TreeSource::Tar(&first),
        TreeSource::Tar(&second),
        CompareOptions {
            mtimes: false,
            ..CompareOptions::default()
        },
    )
    .unwrap();
    let got: BTreeMap<_, _> = diffs.into_iter().map(|d| (d.path, d.difference)).collect();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got["content"], Difference::Differs(vec!["content"]));
    assert_eq!(got["gone"], Difference::OnlyInLeft);
    assert_eq!(got["new"], Difference::OnlyInRight);
    assert_eq!(got["link"], Difference::Differs(vec!["target"]));
    // Compressed tars are read too.
    let gz = dir.path().join("2.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &fs_err::read(&second).unwrap()).unwrap();
    fs_err::write(&gz, enc.finish().unwrap()).unwrap();
    assert_eq!(manifest_tar(&gz).unwrap(), manifest_tar(&second).unwrap());
}

/// A small tree whose tar is kept under tests/golden/treetar/: any change to the writer's
/// bytes shows up here. Regenerate with HERMETIC_REGENERATE_GOLDEN=1.
#[test]
fn golden_small_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs_err::create_dir(root.join("etc")).unwrap();
    fs_err::write(root.join("etc/os-release"), b"ID=debian\nVERSION_ID=13\n").unwrap();
    chmod(&root.join("etc/os-release"), 0o644);
    fs_err::create_dir(root.join("usr")).unwrap();
    fs_err::write(root.join("usr/init"), b"#!/bin/sh\nexec /sbin/init\n").unwrap();
    chmod(&root.join("usr/init"), 0o755);
    fs_err::hard_link(root.join("usr/init"), root.join("usr/init.hard")).unwrap();
    std::os::unix::fs::symlink("usr/init", root.join("init")).unwrap();
    let leaf = format!("usr/{}", "n".repeat(110));
    fs_err::write(root.join(&leaf), b"pax\n").unwrap();
    chmod(&root.join(&leaf), 0o600);
    chmod(&root.join("etc"), 0o755);
    chmod(&root.join("usr"), 0o755);
    chmod(root, 0o755);
    for p in [
        "etc/os-release",
        "usr/init",
        "init",
        &leaf,
        "etc",
        "usr",
        "",
    ] {
        set_mtime(&root.join(p), 1_600_000_000);
    }
    let mut bytes = Vec::new();
    write_tree(
        root,
        &mut bytes,
        &TarOptions {
            source_date_epoch: 1_500_000_000,
            owner: Some((0, 0)),
            id_map: None,
        },
    )
    .unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/treetar/small.tar");
    if std::env::var_os("HERMETIC_REGENERATE_GOLDEN").is_some() {
        fs_err::create_dir_all(golden.parent().unwrap()).unwrap();
        fs_err::write(&golden, &bytes).unwrap();
    }
    let want = fs_err::read(&golden)
        .expect("golden file missing: run with HERMETIC_REGENERATE_GOLDEN=1 and review it");
    assert!(
        bytes == want,
        "the tar differs from {}; if intended, regenerate with HERMETIC_REGENERATE_GOLDEN=1",
        golden.display()
    );
    // The golden archive is what GNU tar says it is.
    let list = Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(&golden)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(list.status.success());
    let listing = String::from_utf8(list.stdout).unwrap();
    // GNU tar pads its columns; compare words.
    let listing: String = listing
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
        .collect();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 8, "{listing}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(" 0/0 ") && l.contains("2017-07-14 02:40:00")),
        "{listing}"
    );
    assert!(
        listing.contains("hrwxr-xr-x 0/0 0 2017-07-14 02:40:00 ./usr/init.hard link to ./usr/init"),
        "{listing}"
    );
}

#[test]
fn sockets_are_left_out_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
    fs_err::write(dir.path().join("file"), b"x").unwrap();
    let mut out = Vec::new();
    let summary = write_tree(dir.path(), &mut out, &TarOptions::default()).unwrap();
    assert_eq!(summary.sockets_skipped, [PathBuf::from("sock")]);
    assert_eq!(summary.entries, 2);
    let m = {
        let p = dir.path().join("x.tar");
        fs_err::write(&p, &out).unwrap();
        manifest_tar(&p).unwrap()
    };
    assert_eq!(
        m.keys().cloned().collect::<Vec<_>>(),
        [b"".to_vec(), b"file".to_vec()]
    );
}

/// The same tree read through disorderfs (readdir order shuffled and reversed) gives the
/// same bytes and the same tree hash.
#[test]
fn disorderfs_readdir_order_does_not_change_the_bytes() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("NOTE: no /dev/fuse on this machine: the disorderfs check cannot run here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (tree, mnt) = (dir.path().join("tree"), dir.path().join("mnt"));
    fs_err::create_dir(&tree).unwrap();
    fs_err::create_dir(&mnt).unwrap();
    build(&tree, false);
    let direct = tar_of(&tree);
    let status = Command::new("disorderfs")
        .args(["--shuffle-dirents=yes", "--reverse-dirents=yes"])
        .arg(&tree)
        .arg(&mnt)
        .status()
        .expect("disorderfs is not installed (scripts/setup.sh installs it)");
    assert!(status.success(), "disorderfs failed to mount");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("fusermount").arg("-u").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let shuffled = tar_of(&mnt);
    assert!(direct == shuffled, "readdir order changed the tar");
    let opts = hermetic::key::TreeHashOptions::default();
    assert_eq!(
        hermetic::key::hash_tree(&tree, opts).unwrap(),
        hermetic::key::hash_tree(&mnt, opts).unwrap()
    );
}

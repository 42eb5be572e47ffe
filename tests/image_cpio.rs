//! The initrd writer against GNU cpio, bsdcpio, zstd and golden files.

mod image_util;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use hermetic::image::cpio::{self, CpioOptions, InitrdOptions};
use image_util::{golden, pseudo_random, run, sh, sparse_hexdump};
use proptest::prelude::*;

fn set_mode(path: &Path, mode: u32) {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn file(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    fs_err::create_dir_all(p.parent().unwrap()).unwrap();
    fs_err::write(&p, data).unwrap();
    set_mode(&p, mode);
}

/// A tree with every kind of entry an initrd holds, modes set explicitly (umask-free).
fn sample_tree(root: &Path, hard_links: bool) {
    for (d, mode) in [
        ("etc", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/share", 0o755),
        ("root", 0o700),
        ("run", 0o755),
        ("tmp", 0o1777),
    ] {
        fs_err::create_dir_all(root.join(d)).unwrap();
        set_mode(&root.join(d), mode);
    }
    file(root, "etc/hostname", b"hermetic\n", 0o644);
    file(root, "etc/shadow", b"root:*:0:0:99999:7:::\n", 0o640);
    file(root, "empty", b"", 0o600);
    file(root, "usr/bin/tool", &pseudo_random(1, 2_001), 0o755);
    file(root, "usr/bin/su", b"#!/bin/sh\n", 0o4755);
    file(
        root,
        "usr/share/na\u{ef}ve file.txt",
        b"caf\xc3\xa9\n",
        0o644,
    );
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/systemd/systemd", root.join("init")).unwrap();
    run(Command::new("mkfifo").arg(root.join("run/initctl")));
    if hard_links {
        file(root, "usr/bin/a", b"linked contents\n", 0o755);
        fs_err::create_dir_all(root.join("usr/lib")).unwrap();
        fs_err::hard_link(root.join("usr/bin/a"), root.join("usr/bin/b")).unwrap();
        fs_err::hard_link(root.join("usr/bin/a"), root.join("usr/lib/c")).unwrap();
    }
}

fn touch_all(root: &Path, epoch: u64) {
    sh(&format!(
        "find '{}' -exec touch -h -d @{epoch} {{}} +",
        root.display()
    ));
}

fn ours(root: &Path, sde: u32) -> Vec<u8> {
    let mut out = Vec::new();
    cpio::write_tree(
        root,
        &mut out,
        &CpioOptions {
            source_date_epoch: sde,
            id_map: None,
        },
    )
    .unwrap();
    out
}

#[test]
fn equals_gnu_cpio_reproducible_without_hard_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs_err::create_dir(&root).unwrap();
    sample_tree(&root, false);
    touch_all(&root, 1000);
    let gnu = dir.path().join("gnu.cpio");
    sh(&format!(
        "cd '{}' && find . -mindepth 1 -printf '%P\\0' | LC_ALL=C sort -z | cpio -o0 -H newc --reproducible --quiet > '{}'",
        root.display(),
        gnu.display()
    ));
    let gnu = fs_err::read(&gnu).unwrap();
    let ours = ours(&root, 2000);
    assert!(ours == gnu, "our archive differs from GNU cpio's");
}

/// What a tree holds, as a reader sees it: kind, permission bits, contents or target,
/// file mtime, and which paths share an inode.
#[derive(Debug, PartialEq, Eq)]
struct Item {
    kind: &'static str,
    perm: u32,
    contents: Vec<u8>,
    mtime: Option<i64>,
    link_group: Option<String>,
}

fn snapshot(root: &Path, clamp: i64) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let mut first_of_inode: BTreeMap<u64, String> = BTreeMap::new();
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs_err::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = fs_err::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let (kind, contents) = if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_symlink() {
            use std::os::unix::ffi::OsStrExt;
            let t = fs_err::read_link(&p).unwrap();
            ("symlink", t.as_os_str().as_bytes().to_vec())
        } else if ft.is_file() {
            ("file", fs_err::read(&p).unwrap())
        } else {
            ("other", Vec::new())
        };
        let link_group = (ft.is_file() && m.nlink() > 1).then(|| {
            first_of_inode
                .entry(m.ino())
                .or_insert_with(|| rel.clone())
                .clone()
        });
        out.insert(
            rel,
            Item {
                kind,
                perm: if ft.is_symlink() {
                    0
                } else {
                    m.mode() & 0o7777
                },
                contents,
                mtime: ft.is_file().then(|| m.mtime().min(clamp)),
                link_group,
            },
        );
    }
    out
}

fn extract_gnu(archive: &Path, dest: &Path) {
    fs_err::create_dir_all(dest).unwrap();
    sh(&format!(
        "cd '{}' && cpio -idm --quiet --no-absolute-filenames < '{}'",
        dest.display(),
        archive.display()
    ));
}

fn extract_bsd(archive: &Path, dest: &Path) {
    fs_err::create_dir_all(dest).unwrap();
    sh(&format!(
        "cd '{}' && bsdcpio -idm --quiet < '{}'",
        dest.display(),
        archive.display()
    ));
}

#[test]
fn gnu_cpio_and_bsdcpio_extract_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs_err::create_dir(&root).unwrap();
    sample_tree(&root, true);
    touch_all(&root, 1000);
    // Files newer than the epoch are clamped to it.
    sh(&format!(
        "touch -d @5000 '{}'",
        root.join("etc/hostname").display()
    ));
    let sde = 3000;
    let archive = dir.path().join("a.cpio");
    fs_err::write(&archive, ours(&root, sde)).unwrap();
    let expected = snapshot(&root, i64::from(sde));
    assert_eq!(expected["etc/hostname"].mtime, Some(3000));
    assert_eq!(
        expected["usr/lib/c"].link_group.as_deref(),
        Some("usr/bin/a")
    );
    for (name, extract) in [
        ("gnu", extract_gnu as fn(&Path, &Path)),
        ("bsd", extract_bsd),
    ] {
        let dest = dir.path().join(name);
        extract(&archive, &dest);
        let got = snapshot(&dest, i64::MAX);
        assert_eq!(got, expected, "{name} extraction differs from the tree");
    }
}

#[test]
fn fields_of_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    sample_tree(root, true);
    touch_all(root, 1000);
    let a = ours(root, 2000);
    assert_eq!(a.len() % 512, 0);
    // Walk the records: names in byte order, inodes from 0, hard links share the inode and
    // only the last link carries data, dev fields zero.
    let mut at = 0;
    let mut names = Vec::new();
    let hexfield = |rec: &[u8], i: usize| {
        u32::from_str_radix(
            std::str::from_utf8(&rec[6 + 8 * i..14 + 8 * i]).unwrap(),
            16,
        )
        .unwrap()
    };
    let mut records = Vec::new();
    loop {
        let rec = &a[at..];
        assert_eq!(&rec[..6], b"070701");
        let namesize = hexfield(rec, 11) as usize;
        let size = hexfield(rec, 6) as usize;
        let name = String::from_utf8(rec[110..110 + namesize - 1].to_vec()).unwrap();
        if name == "TRAILER!!!" {
            break;
        }
        assert_eq!(
            (hexfield(rec, 7), hexfield(rec, 8)),
            (0, 0),
            "dev of {name}"
        );
        records.push((name.clone(), hexfield(rec, 0), hexfield(rec, 4), size));
        names.push(name);
        at += (110 + namesize).div_ceil(4) * 4;
        at += size.div_ceil(4) * 4;
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let rec = |n: &str| records.iter().find(|r| r.0 == n).unwrap().clone();
    let (a_, b_, c_) = (rec("usr/bin/a"), rec("usr/bin/b"), rec("usr/lib/c"));
    assert_eq!((a_.1, a_.2, a_.3), (b_.1, 3, 0));
    assert_eq!((b_.2, b_.3), (3, 0));
    assert_eq!((c_.1, c_.2, c_.3), (a_.1, 3, 16));
    // usr has bin, lib and share: nlink 2 + 3.
    assert_eq!(rec("usr").2, 5);
    assert_eq!(records[0].1, 0);
}

#[test]
fn zstd_thread_count_does_not_change_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs_err::create_dir(&root).unwrap();
    sample_tree(&root, true);
    // Enough data for several zstd jobs at a fast level (job size = 4 x window).
    for i in 0..6 {
        file(
            &root,
            &format!("big/{i}"),
            &pseudo_random(i + 7, 3 << 20),
            0o644,
        );
    }
    let plain = ours(&root, 0);
    let mut outputs = Vec::new();
    for workers in [1, 2, 3] {
        let mut out = Vec::new();
        let opts = InitrdOptions {
            cpio: CpioOptions {
                source_date_epoch: 0,
                id_map: None,
            },
            zstd_level: 3,
            zstd_workers: workers,
        };
        cpio::write_initrd_zstd(&root, &mut out, &opts).unwrap();
        outputs.push(out);
    }
    assert!(outputs[0] == outputs[1] && outputs[1] == outputs[2]);
    // The real zstd reads it back to the plain archive.
    let z = dir.path().join("a.cpio.zst");
    fs_err::write(&z, &outputs[0]).unwrap();
    let back = dir.path().join("back.cpio");
    run(Command::new("zstd")
        .args(["-q", "-d", "-o"])
        .arg(&back)
        .arg(&z));
    assert!(fs_err::read(&back).unwrap() == plain);
}

#[test]
fn golden_archives() {
    // The in-memory archive systemd-stub generates.
    golden(
        "stub-extra.cpio.txt",
        &sparse_hexdump(&cpio::stub_extra_cpio(
            "tpm2-pcr-signature.json",
            b"{\"sha256\":[]}\n",
        )),
    );
    // A tree. Owners are the test runner's: they are checked, then zeroed for the golden.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    sample_tree(root, true);
    touch_all(root, 1000);
    let me = fs_err::metadata(root).unwrap();
    let mut a = ours(root, 2000);
    let mut at = 0;
    loop {
        let field = |a: &[u8], i: usize| {
            u32::from_str_radix(
                std::str::from_utf8(&a[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap(),
                16,
            )
            .unwrap()
        };
        let namesize = field(&a, 11) as usize;
        let size = field(&a, 6) as usize;
        if &a[at + 110..at + 110 + namesize - 1] == b"TRAILER!!!" {
            break;
        }
        assert_eq!((field(&a, 2), field(&a, 3)), (me.uid(), me.gid()));
        a[at + 22..at + 38].copy_from_slice(b"0000000000000000");
        at += (110 + namesize).div_ceil(4) * 4 + size.div_ceil(4) * 4;
    }
    golden("tree.cpio.txt", &sparse_hexdump(&a));
}

#[derive(Debug, Clone)]
enum Spec {
    Dir(u8),
    File(u8, usize, u32),
    Symlink(u8, String),
    HardLink(u8, usize),
}

fn spec() -> impl Strategy<Value = Vec<Spec>> {
    let name = 0u8..12;
    let one = prop_oneof![
        name.clone().prop_map(Spec::Dir),
        (
            name.clone(),
            0usize..5000,
            prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755])
        )
            .prop_map(|(n, s, m)| Spec::File(n, s, m)),
        (name.clone(), "[a-z/.]{1,20}").prop_map(|(n, t)| Spec::Symlink(n, t)),
        (name, 0usize..20).prop_map(|(n, i)| Spec::HardLink(n, i)),
    ];
    prop::collection::vec(one, 1..25)
}

const NAMES: [&str; 12] = [
    "a",
    "b",
    "B",
    "a.b",
    "x y",
    "\u{fc}ber",
    "dir",
    "z-",
    "z.",
    "zz",
    ".hidden",
    "long-name-0123456789",
];

/// Builds a random tree: each entry goes into the directory made last (or the root).
fn build(root: &Path, specs: &[Spec]) {
    let mut cwd = root.to_path_buf();
    let mut files = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let (n, p) = match s {
            Spec::Dir(n) | Spec::File(n, ..) | Spec::Symlink(n, _) | Spec::HardLink(n, _) => {
                (*n, cwd.join(NAMES[*n as usize]))
            }
        };
        let _ = n;
        if fs_err::symlink_metadata(&p).is_ok() {
            continue;
        }
        match s {
            Spec::Dir(_) => {
                fs_err::create_dir(&p).unwrap();
                cwd = p;
            }
            Spec::File(_, size, mode) => {
                fs_err::write(&p, pseudo_random(i as u64, *size)).unwrap();
                set_mode(&p, *mode);
                files.push(p);
            }
            Spec::Symlink(_, t) => std::os::unix::fs::symlink(t, &p).unwrap(),
            Spec::HardLink(_, k) => {
                if !files.is_empty() {
                    fs_err::hard_link(&files[k % files.len()], &p).unwrap();
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_trees_round_trip_through_gnu_cpio(specs in spec()) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs_err::create_dir(&root).unwrap();
        build(&root, &specs);
        touch_all(&root, 1234);
        let archive = dir.path().join("a.cpio");
        fs_err::write(&archive, ours(&root, 2000)).unwrap();
        let dest = dir.path().join("out");
        extract_gnu(&archive, &dest);
        prop_assert_eq!(snapshot(&dest, i64::MAX), snapshot(&root, 2000));
    }
}

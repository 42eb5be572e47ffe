//! Real .deb files, read by hermetic and by dpkg-deb, must agree: control fields, control
//! files, the listing, and the extracted tree (paths, types, modes, owners, contents, symlink
//! targets, mtimes).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hermetic::deb::{DebFile, ExtractOptions};
use hermetic::treetar::{CompareOptions, EntryType, compare_manifests, manifest_dir};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn write(path: &Path, data: &[u8], mode: u32) {
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, data).unwrap();
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path, mode: u32) {
    fs_err::create_dir_all(path).unwrap();
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A package tree with what real packages hold: maintainer scripts, conffiles, setuid and
/// setgid, symlinks (relative and absolute), a hard link, long names, empty directories.
fn package_tree(root: &Path) {
    mkdir(root, 0o755);
    mkdir(&root.join("DEBIAN"), 0o755);
    write(
        &root.join("DEBIAN/control"),
        b"Package: hello\nVersion: 1.2-3\nArchitecture: all\nMaintainer: Test <t@example.org>\nDepends: libc6 (>= 2.36)\nDescription: says hello\n A longer\n .\n description.\n",
        0o644,
    );
    write(
        &root.join("DEBIAN/postinst"),
        b"#!/bin/sh\nset -e\nexit 0\n",
        0o755,
    );
    write(&root.join("DEBIAN/conffiles"), b"/etc/hello.conf\n", 0o644);
    for d in [
        "etc",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/share",
        "usr/share/doc",
        "var",
        "var/lib",
    ] {
        mkdir(&root.join(d), 0o755);
    }
    write(&root.join("etc/hello.conf"), b"greeting = hello\n", 0o644);
    write(
        &root.join("usr/bin/hello"),
        b"#!/bin/sh\necho hello\n",
        0o755,
    );
    write(&root.join("usr/bin/hello-suid"), b"\x7fELF fake", 0o4755);
    fs_err::hard_link(root.join("usr/bin/hello"), root.join("usr/bin/hello-hard")).unwrap();
    std::os::unix::fs::symlink("hello", root.join("usr/bin/hello-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hello.conf", root.join("usr/lib/abs-link")).unwrap();
    let deep = root
        .join("usr/share/doc")
        .join("d".repeat(90))
        .join("e".repeat(60));
    mkdir(&deep, 0o755);
    write(&deep.join("f".repeat(120)), b"long names\n", 0o644);
    write(&root.join("usr/share/doc/empty"), b"", 0o600);
    mkdir(&root.join("var/lib/hello"), 0o700);
    mkdir(&root.join("var/mail"), 0o2775);
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    write(&root.join("usr/lib/blob"), &big, 0o644);
}

/// Extracts `deb` with hermetic and with `dpkg-deb -x` and compares the trees.
fn compare_with_dpkg(deb: &Path, work: &Path) -> usize {
    let ours = work.join("ours");
    let theirs = work.join("theirs");
    fs_err::create_dir_all(&ours).unwrap();
    fs_err::create_dir_all(&theirs).unwrap();
    let file = DebFile::open(deb).unwrap();
    let extracted = file
        .extract_data(&ours, &ExtractOptions::default())
        .unwrap();
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&theirs));
    let mut a = manifest_dir(&ours).unwrap();
    let mut b = manifest_dir(&theirs).unwrap();
    // dpkg-deb -x also applies `./` to the target directory; hermetic leaves the root alone.
    a.remove(&Vec::new());
    b.remove(&Vec::new());
    // Directory mtimes are compared with the archive, not with dpkg-deb -x: GNU tar creates
    // symlinks last (after restoring their directory's mtime), leaving such directories with
    // the time of extraction.
    let diffs = compare_manifests(
        &a,
        &b,
        CompareOptions {
            mtimes: false,
            ..CompareOptions::default()
        },
    );
    assert!(
        diffs.is_empty(),
        "{}: hermetic and dpkg-deb -x differ:\n{}",
        deb.display(),
        diffs
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (path, e) in &a {
        if e.kind != EntryType::Directory {
            assert_eq!(
                e.mtime,
                b[path].mtime,
                "mtime of {}",
                String::from_utf8_lossy(path)
            );
        }
    }
    let listed: BTreeMap<Vec<u8>, u64> = file
        .data_entries()
        .unwrap()
        .map(|e| (e.path.into_os_string().into_encoded_bytes(), e.mtime))
        .collect();
    for (path, e) in &a {
        if e.kind == EntryType::Directory {
            assert_eq!(
                e.mtime as u64,
                listed[path],
                "mtime of {}",
                String::from_utf8_lossy(path)
            );
        }
    }
    assert_eq!(extracted.len(), a.len() + 1, "entries returned vs tree");

    // The listing agrees with dpkg-deb's.
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    let n = String::from_utf8_lossy(&listing).lines().count();
    assert_eq!(file.data_entries().unwrap().count(), n);

    // Control fields agree with `dpkg-deb -f`, control files with `dpkg-deb -e`.
    let control = file.control().unwrap();
    for (name, value) in &control.fields {
        let theirs = run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name));
        // dpkg-deb prints continuation lines with their leading blank; deb822 values do not
        // keep it.
        let theirs = String::from_utf8_lossy(&theirs)
            .trim_end()
            .lines()
            .enumerate()
            .map(|(i, l)| if i == 0 { l } else { &l[1..] })
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(theirs, value.as_str(), "field {name}");
    }
    let e = work.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&e));
    let mut names = Vec::new();
    for f in file.control_files().unwrap() {
        let path = e.join(&f.name);
        assert_eq!(fs_err::read(&path).unwrap(), f.contents, "{}", f.name);
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, f.mode, "{}", f.name);
        names.push(f.name);
    }
    let mut want: Vec<String> = fs_err::read_dir(&e)
        .unwrap()
        .map(|x| x.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    want.sort();
    assert_eq!(names, want);
    a.len()
}

#[test]
fn dpkg_deb_built_packages_in_every_compression() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("hello");
    package_tree(&tree);
    for z in ["gzip", "xz", "zstd", "none"] {
        let deb = dir.path().join(format!("hello-{z}.deb"));
        run(Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build", &format!("-Z{z}")])
            .arg(&tree)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", "1700000000"));
        let file = DebFile::open(&deb).unwrap();
        let control = file.control().unwrap();
        assert_eq!(control.package(), Some("hello"));
        assert_eq!(control.version(), Some("1.2-3"));
        assert_eq!(
            control.get("description"),
            Some("says hello\nA longer\n.\ndescription.")
        );
        let names: Vec<_> = file.members().iter().map(|m| m.name.as_str()).collect();
        let suffix = match z {
            "gzip" => ".gz",
            "xz" => ".xz",
            "zstd" => ".zst",
            _ => "",
        };
        assert_eq!(names[2], format!("data.tar{suffix}"), "{names:?}");
        let work = dir.path().join(format!("work-{z}"));
        let n = compare_with_dpkg(&deb, &work);
        assert!(n >= 20, "only {n} entries");
    }
}

/// A .deb from the Debian archive: from apt's cache if there is one, else downloaded with
/// `apt-get download` through the host's apt configuration. If neither works, a package
/// built by dpkg-deb from host files stands in, and the test says so on stderr.
fn real_deb(dir: &Path) -> PathBuf {
    if let Ok(entries) = fs_err::read_dir("/var/cache/apt/archives") {
        let mut debs: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        debs.sort();
        if let Some(deb) = debs.into_iter().next() {
            return deb;
        }
    }
    let out = Command::new("apt-get")
        .args(["download", "coreutils"])
        .current_dir(dir)
        .output();
    if let Ok(out) = &out
        && out.status.success()
        && let Some(deb) = fs_err::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
    {
        return deb;
    }
    eprintln!(
        "NOTE: no Debian archive package available (apt-get download coreutils: {:?}); \
         using a dpkg-deb build of host files instead",
        out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );
    let tree = fallback_tree(dir);
    run(Command::new("cp")
        .args(["-a", "/etc/apt", "/usr/share/doc/dpkg"])
        .arg(tree.join("usr/share")));
    let deb = dir.join("fallback.deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb));
    deb
}

fn fallback_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("fallback");
    mkdir(&tree.join("DEBIAN"), 0o755);
    mkdir(&tree.join("usr/share"), 0o755);
    write(
        &tree.join("DEBIAN/control"),
        b"Package: fallback\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: host files\n",
        0o644,
    );
    tree
}

#[test]
fn a_debian_archive_package_extracts_like_dpkg() {
    let dir = tempfile::tempdir().unwrap();
    let deb = real_deb(dir.path());
    let file = DebFile::open(&deb).unwrap();
    let control = file.control().unwrap();
    assert!(control.package().is_some() && control.version().is_some());
    let n = compare_with_dpkg(&deb, &dir.path().join("work"));
    assert!(n > 10, "{}: only {n} entries", deb.display());
}

/// The same package unpacked into a merged-/usr root (`bin -> usr/bin`, ...): what dpkg-deb
/// puts under `bin/` lands under `usr/bin/`, identical, and the links stay links.
#[test]
fn a_debian_archive_package_into_a_merged_usr_root() {
    let dir = tempfile::tempdir().unwrap();
    let deb = real_deb(dir.path());
    let root = dir.path().join("root");
    let merged = ["bin", "sbin", "lib", "lib64"];
    for d in merged {
        mkdir(&root.join("usr").join(d), 0o755);
        std::os::unix::fs::symlink(format!("usr/{d}"), root.join(d)).unwrap();
    }
    let file = DebFile::open(&deb).unwrap();
    let out = file
        .extract_data(&root, &ExtractOptions::debian_root())
        .unwrap();
    let theirs = dir.path().join("theirs");
    fs_err::create_dir(&theirs).unwrap();
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&theirs));

    let ours = manifest_dir(&root).unwrap();
    let mut moved = 0;
    for (path, e) in manifest_dir(&theirs).unwrap() {
        if e.kind == EntryType::Directory {
            continue;
        }
        let mut mapped = path.clone();
        for d in merged {
            if path.starts_with(format!("{d}/").as_bytes()) {
                mapped = [b"usr/".to_vec(), path.clone()].concat();
                moved += 1;
            }
        }
        let o = ours
            .get(&mapped)
            .unwrap_or_else(|| panic!("{} missing", String::from_utf8_lossy(&mapped)));
        assert_eq!(
            (o.kind, o.mode, o.sha256, &o.target),
            (e.kind, e.mode, e.sha256, &e.target),
            "{}",
            String::from_utf8_lossy(&path)
        );
    }
    for d in merged {
        assert!(fs_err::symlink_metadata(root.join(d)).unwrap().is_symlink());
    }
    // Every entry is where the returned list says.
    for e in &out {
        assert!(
            fs_err::symlink_metadata(root.join(&e.written_to)).is_ok(),
            "{e:?}"
        );
    }
    eprintln!(
        "{}: {moved} files under /bin, /sbin, /lib went to /usr",
        deb.display()
    );
}

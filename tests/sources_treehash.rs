//! The tree hash (`hermetic-tree-v1`, docs/pins.md): the same tree as a directory, a tar in
//! every compression and a zip in another file order hashes the same; each change to what
//! is hashed changes it; hostile archives are refused naming the archive and the entry.

use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use hermetic::sources::treehash::{TreeHashError, tree_hash_archive, tree_hash_dir};

/// One entry of a test tree.
#[derive(Clone)]
enum E {
    File(&'static str, Vec<u8>, bool),
    Link(&'static str, &'static str),
    Dir(&'static str),
}

fn tree() -> Vec<E> {
    vec![
        E::Dir("src"),
        E::File("Cargo.toml", b"[package]\nname = \"x\"\n".to_vec(), false),
        E::File("src/main.rs", b"fn main() {}\n".to_vec(), false),
        E::File("build.sh", b"#!/bin/sh\necho hi\n".to_vec(), true),
        E::Link("README", "docs/README.md"),
        E::File("docs/README.md", b"# x\n".to_vec(), false),
    ]
}

fn write_dir(root: &Path, entries: &[E]) {
    for e in entries {
        match e {
            E::Dir(p) => fs_err::create_dir_all(root.join(p)).unwrap(),
            E::File(p, data, exec) => {
                let path = root.join(p);
                fs_err::create_dir_all(path.parent().unwrap()).unwrap();
                fs_err::write(&path, data).unwrap();
                let mode = if *exec { 0o755 } else { 0o644 };
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            E::Link(p, target) => {
                let path = root.join(p);
                fs_err::create_dir_all(path.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, &path).unwrap();
            }
        }
    }
}

fn tar_bytes(prefix: &str, entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    // A pax global header first, as GitHub's tarballs have (it carries the commit).
    let mut g = tar::Header::new_ustar();
    g.set_entry_type(tar::EntryType::XGlobalHeader);
    let rec = b"52 comment=f325e69bfe66a10aa8efbf3b89e4ad37ba1b00da\n";
    g.set_path("pax_global_header").unwrap();
    g.set_size(rec.len() as u64);
    g.set_cksum();
    b.append(&g, &rec[..]).unwrap();
    if !prefix.is_empty() {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o775);
        h.set_size(0);
        b.append_data(&mut h, prefix, &[][..]).unwrap();
    }
    for e in entries {
        let mut h = tar::Header::new_ustar();
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, format!("{prefix}{p}/"), &[][..])
                    .unwrap();
            }
            E::File(p, data, exec) => {
                h.set_mode(if *exec { 0o775 } else { 0o664 });
                h.set_size(data.len() as u64);
                b.append_data(&mut h, format!("{prefix}{p}"), &data[..])
                    .unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, format!("{prefix}{p}"), target)
                    .unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn zip_bytes(prefix: &str, entries: &[E]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for e in entries {
        let opts = zip::write::SimpleFileOptions::default();
        match e {
            E::Dir(p) => z.add_directory(format!("{prefix}{p}/"), opts).unwrap(),
            E::File(p, data, exec) => {
                let opts = opts.unix_permissions(if *exec { 0o755 } else { 0o644 });
                z.start_file(format!("{prefix}{p}"), opts).unwrap();
                z.write_all(data).unwrap();
            }
            E::Link(p, target) => z
                .add_symlink(format!("{prefix}{p}"), *target, opts)
                .unwrap(),
        }
    }
    z.finish().unwrap().into_inner()
}

fn hash_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<String, TreeHashError> {
    let path = dir.join(name);
    fs_err::write(&path, bytes).unwrap();
    tree_hash_archive(&path)
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn dir_hash(entries: &[E]) -> String {
    let d = tempfile::tempdir().unwrap();
    write_dir(d.path(), entries);
    tree_hash_dir(d.path()).unwrap()
}

#[test]
fn same_tree_same_hash_in_every_form() {
    let work = tempfile::tempdir().unwrap();
    let entries = tree();
    let from_dir = dir_hash(&entries);
    assert_eq!(from_dir.len(), 64);

    let tar = tar_bytes("x-f325e69/", &entries);
    let tgz = hash_file(work.path(), "a.tar.gz", &gz(&tar)).unwrap();
    let plain = hash_file(work.path(), "a.tar", &tar).unwrap();
    let xz = {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(&tar).unwrap();
        hash_file(work.path(), "a.tar.xz", &e.finish().unwrap()).unwrap()
    };
    let zst = hash_file(
        work.path(),
        "a.tar.zst",
        &zstd::encode_all(&tar[..], 3).unwrap(),
    )
    .unwrap();
    // A zip without the top-level directory, files in reverse order, no directory entries.
    let mut reversed: Vec<E> = entries
        .iter()
        .filter(|e| !matches!(e, E::Dir(_)))
        .cloned()
        .collect();
    reversed.reverse();
    let zip = hash_file(work.path(), "a.zip", &zip_bytes("", &reversed)).unwrap();
    // And a zip with another top-level directory name.
    let zip2 = hash_file(work.path(), "b.zip", &zip_bytes("other/", &entries)).unwrap();

    for (form, h) in [
        ("tar.gz", &tgz),
        ("tar", &plain),
        ("tar.xz", &xz),
        ("tar.zst", &zst),
        ("zip", &zip),
        ("zip with prefix", &zip2),
    ] {
        assert_eq!(h, &from_dir, "{form} hashes differently from the directory");
    }

    // A checkout's .git is not part of the tree.
    let d = tempfile::tempdir().unwrap();
    write_dir(d.path(), &entries);
    fs_err::create_dir_all(d.path().join(".git/objects")).unwrap();
    fs_err::write(d.path().join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    assert_eq!(tree_hash_dir(d.path()).unwrap(), from_dir);
}

#[test]
fn each_hashed_property_changes_the_hash() {
    let base = dir_hash(&tree());
    let mut changed_byte = tree();
    changed_byte[2] = E::File("src/main.rs", b"fn main() {}\r".to_vec(), false);
    let mut exec = tree();
    exec[2] = E::File("src/main.rs", b"fn main() {}\n".to_vec(), true);
    let mut renamed = tree();
    renamed[2] = E::File("src/mian.rs", b"fn main() {}\n".to_vec(), false);
    let mut relinked = tree();
    relinked[4] = E::Link("README", "docs/README");
    let mut link_as_file = tree();
    link_as_file[4] = E::File("README", b"docs/README.md".to_vec(), false);
    for (what, entries) in [
        ("a changed byte", changed_byte),
        ("a changed exec bit", exec),
        ("a renamed file", renamed),
        ("a changed link target", relinked),
        ("a link replaced by a file", link_as_file),
    ] {
        assert_ne!(dir_hash(&entries), base, "{what} did not change the hash");
    }

    // Only the owner's execute bit counts, not the full mode; empty directories are not
    // part of a tree (git does not track them).
    let mut more = tree();
    more.push(E::Dir("empty/nested"));
    assert_eq!(dir_hash(&more), base, "an empty directory changed the hash");
    let d = tempfile::tempdir().unwrap();
    write_dir(d.path(), &tree());
    fs_err::set_permissions(
        d.path().join("Cargo.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(
        tree_hash_dir(d.path()).unwrap(),
        base,
        "a 600 file is not a 644 file"
    );
}

#[test]
fn a_single_top_level_directory_is_stripped_in_every_form() {
    // A repository whose only top-level entry is a directory: its checkout, its GitHub
    // tarball (`repo-<commit>/only/...`) and a zip without prefix all agree.
    let entries = vec![E::File("only/a.txt", b"a".to_vec(), false)];
    let from_dir = dir_hash(&entries);
    let work = tempfile::tempdir().unwrap();
    let tgz = hash_file(work.path(), "t.tgz", &gz(&tar_bytes("repo-1/", &entries))).unwrap();
    let zip = hash_file(work.path(), "t.zip", &zip_bytes("", &entries)).unwrap();
    assert_eq!(tgz, from_dir);
    assert_eq!(zip, from_dir);
}

/// A tar with one raw entry (name written into the header bytes, no checks).
/// (name, type, link target, contents).
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if !link.is_empty() {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn refused(name: &str, bytes: Vec<u8>, entry: &str, why: &str) {
    let work = tempfile::tempdir().unwrap();
    let err = hash_file(work.path(), name, &gz(&bytes)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TreeHashError::Hostile { .. }),
        "{name}: not refused as hostile: {msg}"
    );
    assert!(msg.contains(name), "{msg} does not name the archive");
    assert!(
        msg.contains(entry),
        "{msg} does not name the entry `{entry}`"
    );
    assert!(msg.contains(why), "{msg} does not say `{why}`");
}

#[test]
fn hostile_tars_are_refused() {
    use tar::EntryType as T;
    refused(
        "abs.tar.gz",
        raw_tar(&[(b"/etc/passwd", T::Regular, b"", b"x")]),
        "/etc/passwd",
        "absolute path",
    );
    refused(
        "dotdot.tar.gz",
        raw_tar(&[(b"x/../../evil", T::Regular, b"", b"x")]),
        "x/../../evil",
        "`..`",
    );
    refused(
        "dup.tar.gz",
        raw_tar(&[
            (b"r/a", T::Regular, b"", b"one"),
            (b"r/a", T::Regular, b"", b"two"),
        ]),
        "r/a",
        "twice",
    );
    refused(
        "hardlink.tar.gz",
        raw_tar(&[
            (b"r/a", T::Regular, b"", b"one"),
            (b"r/b", T::Link, b"/etc/shadow", b""),
        ]),
        "r/b",
        "/etc/shadow",
    );
    refused(
        "dev.tar.gz",
        raw_tar(&[
            (b"r/a", T::Regular, b"", b"x"),
            (b"r/null", T::Char, b"", b""),
        ]),
        "r/null",
        "device node",
    );
    refused(
        "fileisdir.tar.gz",
        raw_tar(&[
            (b"r/a", T::Regular, b"", b"x"),
            (b"r/a/b", T::Regular, b"", b"y"),
        ]),
        "r/a/b",
        "not a directory",
    );
    // A hard link to a file earlier in the archive is that file again.
    let work = tempfile::tempdir().unwrap();
    let linked = hash_file(
        work.path(),
        "ok.tar.gz",
        &gz(&raw_tar(&[
            (b"r/a", T::Regular, b"", b"one"),
            (b"r/b", T::Link, b"r/a", b""),
        ])),
    )
    .unwrap();
    let copied = hash_file(
        work.path(),
        "ok2.tar.gz",
        &gz(&raw_tar(&[
            (b"r/a", T::Regular, b"", b"one"),
            (b"r/b", T::Regular, b"", b"one"),
        ])),
    )
    .unwrap();
    assert_eq!(linked, copied);
}

#[test]
fn hostile_zips_are_refused() {
    let work = tempfile::tempdir().unwrap();
    for (name, entries, entry) in [
        ("dotdot.zip", vec!["a/../../x"], "a/../../x"),
        ("dup.zip", vec!["a", "a"], "a"),
    ] {
        // zip::ZipWriter refuses both, so these zips are written by hand.
        let bytes = raw_zip(&entries);
        let path = work.path().join(name);
        fs_err::write(&path, bytes).unwrap();
        let err = tree_hash_archive(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains(entry), "{msg}");
    }
}

/// A stored (uncompressed) zip with the given names, each holding `x`, built by hand so
/// that duplicate and `..` names are possible.
fn raw_zip(names: &[&str]) -> Vec<u8> {
    let data = b"x";
    let crc = crc32fast::hash(data);
    let mut out = Vec::new();
    let mut central = Vec::new();
    for name in names {
        let offset = out.len() as u32;
        out.extend_from_slice(&0x04034b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x02014b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&1u32.to_le_bytes());
        central.extend_from_slice(&1u32.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(names.len() as u16).to_le_bytes());
    out.extend_from_slice(&(names.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

//! One hostile .deb per extraction rule, generated at test time: each is refused with an
//! error naming the entry and the rule, and nothing is written outside the root.

#[path = "fixtures/deb/generator.rs"]
mod generator;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use generator::{Entry, data_tar, deb, deb_of};
use hermetic::deb::{DebError, DebFile, EntryKind, ExtractOptions, Rule, SetuidPolicy};

struct Scratch {
    _dir: tempfile::TempDir,
    /// Holds the .deb and the root; anything else appearing here escaped.
    base: PathBuf,
    root: PathBuf,
    deb: PathBuf,
}

fn scratch(bytes: &[u8]) -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let root = base.join("root");
    fs_err::create_dir_all(&root).unwrap();
    let deb = dir.path().join("test.deb");
    fs_err::write(&deb, bytes).unwrap();
    Scratch {
        _dir: dir,
        base,
        root,
        deb,
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Extracts and expects a refusal under `rule`, naming `entry`.
fn refused(s: &Scratch, opts: &ExtractOptions, rule: Rule, entry: &str) -> String {
    let deb = DebFile::open(&s.deb).unwrap();
    let err = deb.extract_data(&s.root, opts).unwrap_err();
    let text = err.to_string();
    match &err {
        DebError::Unsafe {
            entry: e, rule: r, ..
        } => {
            assert_eq!(*r, rule, "{text}");
            assert_eq!(e, entry, "{text}");
        }
        other => panic!("expected a refusal under {rule:?}, got {other:?}"),
    }
    assert!(text.contains(&format!("`{entry}`")), "{text}");
    assert!(text.contains(&rule.to_string()), "{text}");
    assert!(text.contains("test.deb"), "{text}");
    assert_eq!(names(&s.base), ["root"], "something escaped the root");
    text
}

#[test]
fn parent_dir_components_are_refused() {
    let s = scratch(&deb_of(&[
        Entry::Dir("./"),
        Entry::File("./ok", 0o644, b"fine"),
        Entry::File("./../escape", 0o644, b"pwned"),
    ]));
    refused(
        &s,
        &ExtractOptions::default(),
        Rule::ParentDir,
        "./../escape",
    );
    // Listing refuses it too.
    let err = DebFile::open(&s.deb).unwrap().data_entries().unwrap_err();
    assert!(
        matches!(
            err,
            DebError::Unsafe {
                rule: Rule::ParentDir,
                ..
            }
        ),
        "{err}"
    );
    // Even when it would land back inside.
    let s = scratch(&deb_of(&[Entry::File("./a/../b", 0o644, b"x")]));
    refused(
        &s,
        &ExtractOptions::debian_root(),
        Rule::ParentDir,
        "./a/../b",
    );
}

#[test]
fn absolute_paths_are_refused() {
    let s = scratch(&deb_of(&[Entry::File("/abs", 0o644, b"pwned")]));
    refused(&s, &ExtractOptions::default(), Rule::Absolute, "/abs");
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    let s = scratch(&deb_of(&[
        Entry::Dir("./"),
        Entry::Symlink("./evil", &target),
        Entry::File("./evil/pwned", 0o644, b"pwned"),
    ]));
    let text = refused(
        &s,
        &ExtractOptions::default(),
        Rule::ThroughSymlink,
        "./evil/pwned",
    );
    assert!(text.contains("`evil` is a symlink"), "{text}");
    assert!(text.contains("hint: "), "{text}");
    assert!(
        names(outside.path()).is_empty(),
        "wrote through the symlink"
    );

    // Following directory symlinks: a relative link out of the root is still refused.
    let s = scratch(&deb_of(&[
        Entry::Dir("./"),
        Entry::Dir("./a/"),
        Entry::Symlink("./a/up", "../../.."),
        Entry::File("./a/up/pwned", 0o644, b"pwned"),
    ]));
    refused(
        &s,
        &ExtractOptions::debian_root(),
        Rule::SymlinkEscapes,
        "./a/up/pwned",
    );
    // An absolute link is resolved inside the root (as in a chroot), never on the host.
    let s = scratch(&deb_of(&[
        Entry::Dir("./"),
        Entry::Symlink("./evil", &target),
        Entry::File("./evil/inside", 0o644, b"contained"),
    ]));
    let out = DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &ExtractOptions::debian_root())
        .unwrap();
    assert!(
        names(outside.path()).is_empty(),
        "followed a link to the host"
    );
    let rel = Path::new(&target[1..]).join("inside");
    assert_eq!(out.last().unwrap().written_to, rel);
    assert_eq!(fs_err::read(s.root.join(&rel)).unwrap(), b"contained");

    // A symlink loop ends.
    let s = scratch(&deb_of(&[
        Entry::Symlink("./l1", "l2"),
        Entry::Symlink("./l2", "l1"),
        Entry::File("./l1/x", 0o644, b""),
    ]));
    refused(
        &s,
        &ExtractOptions::debian_root(),
        Rule::SymlinkEscapes,
        "./l1/x",
    );
}

#[test]
fn an_existing_symlink_is_replaced_not_written_through() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs_err::write(&victim, b"original").unwrap();
    let s = scratch(&deb_of(&[
        Entry::Symlink("./link", victim.to_str().unwrap()),
        Entry::File("./link", 0o644, b"replaced"),
    ]));
    DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &ExtractOptions::default())
        .unwrap();
    assert_eq!(fs_err::read(&victim).unwrap(), b"original");
    let m = fs_err::symlink_metadata(s.root.join("link")).unwrap();
    assert!(m.is_file());
    assert_eq!(fs_err::read(s.root.join("link")).unwrap(), b"replaced");
}

#[test]
fn merged_usr_needs_the_option() {
    let bytes = deb_of(&[
        Entry::Dir("./"),
        Entry::Dir("./bin/"),
        Entry::File("./bin/tool", 0o755, b"#!/bin/sh\n"),
    ]);
    let setup = |s: &Scratch| {
        fs_err::create_dir_all(s.root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", s.root.join("bin")).unwrap();
    };
    let s = scratch(&bytes);
    setup(&s);
    let text = refused(
        &s,
        &ExtractOptions::default(),
        Rule::ThroughSymlink,
        "./bin/",
    );
    assert!(text.contains("follow_dir_symlinks_within_root"), "{text}");

    let s = scratch(&bytes);
    setup(&s);
    let out = DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &ExtractOptions::debian_root())
        .unwrap();
    assert!(
        fs_err::symlink_metadata(s.root.join("bin"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(
        fs_err::read(s.root.join("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\n"
    );
    let tool = out
        .iter()
        .find(|e| e.entry.path == Path::new("bin/tool"))
        .unwrap();
    assert_eq!(tool.written_to, Path::new("usr/bin/tool"));
    let bin = out
        .iter()
        .find(|e| e.entry.path == Path::new("bin"))
        .unwrap();
    assert_eq!(bin.written_to, Path::new("usr/bin"));

    // A directory symlink pointing at a file is no directory.
    let s = scratch(&bytes);
    fs_err::write(s.root.join("file"), b"").unwrap();
    std::os::unix::fs::symlink("file", s.root.join("bin")).unwrap();
    refused(
        &s,
        &ExtractOptions::debian_root(),
        Rule::NotADirectory,
        "./bin/",
    );
}

#[test]
fn hard_links_only_to_files_extracted_before() {
    let s = scratch(&deb_of(&[Entry::HardLink("./h", "../../etc/passwd")]));
    let text = refused(&s, &ExtractOptions::default(), Rule::ParentDir, "./h");
    assert!(text.contains("../../etc/passwd"), "{text}");

    let s = scratch(&deb_of(&[Entry::HardLink("./h", "/etc/passwd")]));
    refused(&s, &ExtractOptions::default(), Rule::Absolute, "./h");

    // Present in the root, but not extracted by this package.
    let s = scratch(&deb_of(&[Entry::HardLink("./h", "./preexisting")]));
    fs_err::write(s.root.join("preexisting"), b"secret").unwrap();
    refused(&s, &ExtractOptions::default(), Rule::HardLinkTarget, "./h");

    // To a symlink extracted before: a link to what it points at, refused.
    let s = scratch(&deb_of(&[
        Entry::Symlink("./s", "/etc/passwd"),
        Entry::HardLink("./h", "./s"),
    ]));
    refused(&s, &ExtractOptions::default(), Rule::HardLinkTarget, "./h");

    // The good case: same inode.
    let s = scratch(&deb_of(&[
        Entry::File("./f", 0o644, b"data"),
        Entry::HardLink("./g", "./f"),
    ]));
    let out = DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &ExtractOptions::default())
        .unwrap();
    assert_eq!(
        out[1].entry.kind,
        EntryKind::HardLink {
            target: PathBuf::from("f")
        }
    );
    let (f, g) = (
        fs_err::metadata(s.root.join("f")).unwrap(),
        fs_err::metadata(s.root.join("g")).unwrap(),
    );
    assert_eq!(f.ino(), g.ino());
}

#[test]
fn device_nodes_and_fifos_need_allow_devices() {
    let s = scratch(&deb_of(&[Entry::Char("./dev-null", 1, 3)]));
    let text = refused(
        &s,
        &ExtractOptions::default(),
        Rule::DeviceNode,
        "./dev-null",
    );
    assert!(text.contains("device 1:3"), "{text}");
    let s = scratch(&deb_of(&[Entry::Fifo("./pipe")]));
    refused(&s, &ExtractOptions::default(), Rule::DeviceNode, "./pipe");

    let s = scratch(&deb_of(&[Entry::Fifo("./pipe")]));
    let opts = ExtractOptions {
        allow_devices: true,
        ..Default::default()
    };
    DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &opts)
        .unwrap();
    assert!(
        fs_err::symlink_metadata(s.root.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    if nix::unistd::geteuid().is_root() {
        let s = scratch(&deb_of(&[Entry::Char("./null", 1, 3)]));
        match DebFile::open(&s.deb).unwrap().extract_data(&s.root, &opts) {
            Ok(_) => {
                let m = fs_err::symlink_metadata(s.root.join("null")).unwrap();
                assert!(m.file_type().is_char_device());
                assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
            }
            // A container may withhold CAP_MKNOD even from root: then the error names the
            // entry and the target.
            Err(e) => assert!(e.to_string().contains("cannot extract `./null`"), "{e}"),
        }
    }
}

#[test]
fn setuid_policy() {
    let bytes = deb_of(&[
        Entry::Dir("./"),
        Entry::Dir("./mail/"),
        Entry::File("./su", 0o4755, b"x"),
    ]);
    let s = scratch(&bytes);
    let opts = ExtractOptions {
        setuid: SetuidPolicy::Refuse,
        ..Default::default()
    };
    let text = refused(&s, &opts, Rule::Setuid, "./su");
    assert!(text.contains("4755"), "{text}");

    let s = scratch(&bytes);
    let opts = ExtractOptions {
        setuid: SetuidPolicy::Strip,
        ..Default::default()
    };
    let out = DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &opts)
        .unwrap();
    assert_eq!(out.last().unwrap().entry.mode, 0o755);
    let m = fs_err::metadata(s.root.join("su")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o755);

    let s = scratch(&bytes);
    DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &ExtractOptions::default())
        .unwrap();
    let m = fs_err::metadata(s.root.join("su")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
}

#[test]
fn a_directory_is_never_replaced() {
    let s = scratch(&deb_of(&[
        Entry::Dir("./etc/"),
        Entry::Symlink("./etc", "/tmp"),
    ]));
    refused(
        &s,
        &ExtractOptions::default(),
        Rule::ReplaceDirectory,
        "./etc",
    );
    let s = scratch(&deb_of(&[
        Entry::File("./f", 0o644, b""),
        Entry::File("./f/g", 0o644, b""),
    ]));
    refused(&s, &ExtractOptions::default(), Rule::NotADirectory, "./f/g");
}

#[test]
fn size_limit() {
    let s = scratch(&deb_of(&[Entry::File("./big", 0o644, &[0u8; 2000])]));
    let opts = ExtractOptions {
        max_file_size: Some(1000),
        ..Default::default()
    };
    refused(&s, &opts, Rule::SizeLimit, "./big");
}

#[test]
fn truncated_tar_entry_is_an_error_not_a_short_file() {
    // The header claims a gigabyte; 10 bytes follow, then the end of the member.
    let s = scratch(&deb_of(&[
        Entry::Dir("./"),
        Entry::Truncated("./huge", 1 << 30, b"0123456789"),
    ]));
    let deb = DebFile::open(&s.deb).unwrap();
    let err = deb
        .extract_data(&s.root, &ExtractOptions::default())
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DebError::Entry { .. }), "{err:?}");
    assert!(text.contains("entry `./huge`"), "{text}");
    assert!(text.contains("data.tar"), "{text}");
    let err = deb.data_entries().unwrap_err().to_string();
    assert!(err.contains("entry `./huge`"), "{err}");
}

#[test]
fn broken_containers_are_named() {
    let open_err = |bytes: &[u8]| {
        let s = scratch(bytes);
        DebFile::open(&s.deb).unwrap_err()
    };
    // An ar member claiming more bytes than the file has.
    let mut w = hermetic::deb::ArWriter::new(Vec::new()).unwrap();
    w.append("debian-binary", 0, b"2.0\n").unwrap();
    w.append_raw("control.tar.gz", 0, 999_999_999, b"short")
        .unwrap();
    let err = open_err(&w.finish().unwrap());
    assert!(
        matches!(err, DebError::Truncated { ref member, declared: 999_999_999, .. } if member == "control.tar.gz"),
        "{err}"
    );
    assert!(
        err.to_string().contains("`control.tar.gz` is truncated"),
        "{err}"
    );

    // Not an ar archive at all, or a truncated header.
    assert!(
        open_err(b"PK\x03\x04 not a deb")
            .to_string()
            .contains("no ar magic")
    );
    assert!(
        open_err(b"!<arch>\ndebian-binary   0")
            .to_string()
            .contains("truncated ar member header")
    );
    // A size field that is not a number.
    let mut bytes = b"!<arch>\n".to_vec();
    bytes.extend_from_slice(b"debian-binary   0           0     0     100644  12x4      `\n");
    assert!(open_err(&bytes).to_string().contains("bad size"));

    // A future format version; members out of order; a missing data member.
    let mut w = hermetic::deb::ArWriter::new(Vec::new()).unwrap();
    w.append("debian-binary", 0, b"3.0\n").unwrap();
    assert!(
        open_err(&w.finish().unwrap())
            .to_string()
            .contains("unsupported format version")
    );
    let mut w = hermetic::deb::ArWriter::new(Vec::new()).unwrap();
    w.append("debian-binary", 0, b"2.0\n").unwrap();
    w.append("data.tar", 0, &data_tar(&[])).unwrap();
    w.append("control.tar", 0, &data_tar(&[])).unwrap();
    assert!(
        open_err(&w.finish().unwrap())
            .to_string()
            .contains("comes before")
    );
    let mut w = hermetic::deb::ArWriter::new(Vec::new()).unwrap();
    w.append("debian-binary", 0, b"2.0\n").unwrap();
    w.append("control.tar", 0, &data_tar(&[])).unwrap();
    assert!(
        open_err(&w.finish().unwrap())
            .to_string()
            .contains("no `data.tar` member")
    );

    // A corrupt compressed member: the error names it.
    let s = scratch(&deb("data.tar.xz", b"\xfd7zXZ\0 garbage garbage"));
    let err = DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &ExtractOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("data.tar.xz"), "{err}");
}

#[test]
fn every_compression_reads_the_same() {
    let tar = data_tar(&[
        Entry::Dir("./"),
        Entry::Dir("./usr/"),
        Entry::File("./usr/f", 0o640, b"payload"),
        Entry::Symlink("./usr/l", "f"),
    ]);
    let mut listings = Vec::new();
    for (name, bytes) in [
        ("data.tar", tar.clone()),
        ("data.tar.gz", generator::gzip(&tar)),
        ("data.tar.xz", generator::xz(&tar)),
        ("data.tar.zst", generator::zstd(&tar)),
    ] {
        let s = scratch(&deb(name, &bytes));
        let deb = DebFile::open(&s.deb).unwrap();
        assert_eq!(deb.control().unwrap().package(), Some("hostile"));
        let listing: Vec<_> = deb.data_entries().unwrap().collect();
        let out = deb
            .extract_data(&s.root, &ExtractOptions::default())
            .unwrap();
        assert_eq!(fs_err::read(s.root.join("usr/f")).unwrap(), b"payload");
        assert_eq!(
            out.iter().map(|e| e.entry.clone()).collect::<Vec<_>>(),
            listing
        );
        listings.push(listing);
    }
    assert!(listings.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(listings[0].len(), 4);
    assert_eq!(listings[0][2].mode, 0o640);
    assert_eq!(listings[0][2].mtime, 1_700_000_000);
}

#[test]
fn unlisted_parents_are_0755_and_root_is_left_alone() {
    let s = scratch(&deb_of(&[
        Entry::Dir("./"),
        Entry::File("./a/b/c", 0o600, b"deep"),
    ]));
    fs_err::set_permissions(&s.root, std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &ExtractOptions::default())
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].written_to, Path::new(""));
    for d in ["a", "a/b"] {
        let m = fs_err::metadata(s.root.join(d)).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o755, "{d}");
    }
    let m = fs_err::metadata(s.root.join("a/b/c")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    assert_eq!(m.mtime(), 1_700_000_000);
    let root = fs_err::metadata(&s.root).unwrap();
    assert_eq!(root.permissions().mode() & 0o7777, 0o750);
}

#[test]
fn names_from_pax_and_gnu_long_name_records_are_checked() {
    let s = scratch(&deb_of(&[
        Entry::Dir("./"),
        Entry::PaxPath("./harmless", "./../pax-escape", b"pwned"),
    ]));
    refused(
        &s,
        &ExtractOptions::default(),
        Rule::ParentDir,
        "./../pax-escape",
    );
    let s = scratch(&deb_of(&[Entry::PaxPath(
        "./harmless",
        "/etc/pax-abs",
        b"pwned",
    )]));
    refused(
        &s,
        &ExtractOptions::default(),
        Rule::Absolute,
        "/etc/pax-abs",
    );
    let s = scratch(&deb_of(&[Entry::GnuLongName("./../gnu-escape", b"pwned")]));
    refused(
        &s,
        &ExtractOptions::default(),
        Rule::ParentDir,
        "./../gnu-escape",
    );
    // And a benign long name is used as the real name.
    let long = format!("./{}", "n".repeat(150));
    let s = scratch(&deb_of(&[
        Entry::Dir("./"),
        Entry::PaxPath("./short-pax", &long, b"pax"),
        Entry::GnuLongName(&format!("{long}-gnu"), b"gnu"),
    ]));
    DebFile::open(&s.deb)
        .unwrap()
        .extract_data(&s.root, &ExtractOptions::default())
        .unwrap();
    assert_eq!(fs_err::read(s.root.join(&long[2..])).unwrap(), b"pax");
    assert_eq!(
        fs_err::read(s.root.join(format!("{}-gnu", &long[2..]))).unwrap(),
        b"gnu"
    );
    assert_eq!(names(&s.root).len(), 2);
}

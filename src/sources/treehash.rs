//! The tree content hash, `hermetic-tree-v1`: one SHA-256 for the files of a tree, the same
//! whether the tree is a directory, a `.tar` (plain, gzip, xz or zstd) or a `.zip`, in any
//! file order. A GitHub tarball, a `git archive` and a checkout of the same commit all give
//! the same hash. docs/pins.md (*The tree hash*) is the specification; in short:
//!
//! - only regular files and symbolic links are entries (git tracks no directories, so empty
//!   directories are ignored and a directory exists only through what it holds); any path
//!   component `.git` is skipped (a checkout's repository, never part of a git tree);
//! - while every entry lies under one top-level directory, that directory is stripped
//!   (GitHub tarballs hold `<repo>-<commit>/`), the same for every form;
//! - entries are sorted by their path's UTF-8 bytes; each is framed as
//!   `u64-be len, path, kind byte, payload`, where kind is `f` (file), `x` (file with the
//!   owner's execute bit) or `l` (symlink); a file's payload is the 32-byte SHA-256 of its
//!   contents, a symlink's `u64-be len, target`;
//! - the hash is SHA-256 over `hermetic-tree-v1\0`, the entry count as u64-be, then the
//!   entries, written as 64 lowercase hex digits.
//!
//! Archives are read as streams (zip from a seekable file) and never unpacked. Hostile
//! entries are refused, naming the archive and the entry: absolute paths, `..`, a path
//! twice (or a file that is also a directory), hard links to a path not earlier in the
//! archive, device nodes, fifos, non-UTF-8 names.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The version prefix of the hashed stream; a new encoding gets a new prefix.
pub const TREE_HASH_VERSION: &str = "hermetic-tree-v1";

/// What went wrong hashing a tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeHashError {
    #[error("cannot read {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot read the archive{}", .archive.display(), .entry.as_ref().map(|e| format!(" at entry `{e}`")).unwrap_or_default())]
    Archive {
        archive: PathBuf,
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("{}: entry `{entry}` is refused: {why}\nhint: a source tree holds only relative paths to regular files, directories and symbolic links; get the archive from its upstream again", .archive.display())]
    Hostile {
        archive: PathBuf,
        entry: String,
        why: String,
    },
    #[error("{}: the archive holds no file\nhint: is it the right download? a tree hash is taken of a source tree", .archive.display())]
    Empty { archive: PathBuf },
}

/// One entry of a tree: what is hashed for its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { sha256: [u8; 32], executable: bool },
    Symlink { target: String },
}

/// Collects the entries of a tree and checks them, whatever form the tree comes in.
struct TreeBuilder {
    archive: PathBuf,
    entries: BTreeMap<String, Node>,
    /// Paths seen as directories (explicit entries or parents of entries).
    dirs: std::collections::BTreeSet<String>,
}

impl TreeBuilder {
    fn new(archive: &Path) -> TreeBuilder {
        TreeBuilder {
            archive: archive.to_path_buf(),
            entries: BTreeMap::new(),
            dirs: Default::default(),
        }
    }

    fn hostile(&self, entry: &str, why: impl Into<String>) -> TreeHashError {
        TreeHashError::Hostile {
            archive: self.archive.clone(),
            entry: entry.to_string(),
            why: why.into(),
        }
    }

    /// Checks a raw entry name and gives its normalised relative path (components joined
    /// by `/`, no `.` or empty components), or `None` when it is to be skipped (the root
    /// itself, or anything under a `.git` component).
    fn normalise(&self, raw: &[u8]) -> Result<Option<String>, TreeHashError> {
        let shown = String::from_utf8_lossy(raw).into_owned();
        let name =
            std::str::from_utf8(raw).map_err(|_| self.hostile(&shown, "its name is not UTF-8"))?;
        if name.starts_with('/') {
            return Err(self.hostile(&shown, "absolute path"));
        }
        if name.contains('\0') || name.contains('\\') {
            return Err(self.hostile(&shown, "NUL or backslash in the name"));
        }
        let mut parts = Vec::new();
        for c in name.split('/') {
            match c {
                "" | "." => {}
                ".." => return Err(self.hostile(&shown, "`..` in the path")),
                c => parts.push(c),
            }
        }
        if parts.is_empty() || parts.contains(&".git") {
            return Ok(None);
        }
        Ok(Some(parts.join("/")))
    }

    fn add_dir(&mut self, path: String) -> Result<(), TreeHashError> {
        if self.entries.contains_key(&path) {
            return Err(self.hostile(&path, "it is both a file and a directory"));
        }
        self.note_parents(&path)?;
        self.dirs.insert(path);
        Ok(())
    }

    fn note_parents(&mut self, path: &str) -> Result<(), TreeHashError> {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let parent = &path[..at + i];
            if self.entries.contains_key(parent) {
                return Err(self.hostile(path, format!("its parent `{parent}` is not a directory")));
            }
            self.dirs.insert(parent.to_string());
            at += i + 1;
        }
        Ok(())
    }

    fn add(&mut self, path: String, node: Node) -> Result<(), TreeHashError> {
        if self.entries.contains_key(&path) {
            return Err(self.hostile(&path, "the path occurs twice"));
        }
        if self.dirs.contains(&path) {
            return Err(self.hostile(&path, "it is both a file and a directory"));
        }
        self.note_parents(&path)?;
        self.entries.insert(path, node);
        Ok(())
    }

    /// The hash of the collected tree.
    fn finish(self) -> Result<String, TreeHashError> {
        if self.entries.is_empty() {
            return Err(TreeHashError::Empty {
                archive: self.archive,
            });
        }
        // Strip leading directories while every entry lies under one and the same: the
        // same rule for every form, so a GitHub tarball's `<repo>-<commit>/` goes and a
        // repository whose only top-level entry is a directory hashes alike in all forms.
        let mut strip = 0;
        loop {
            let first = self.entries.keys().next().map(|p| &p[strip..]);
            let Some(t) = first.and_then(|p| p.find('/').map(|i| &p[..i])) else {
                break;
            };
            let all_under = self.entries.keys().all(|p| {
                let p = &p[strip..];
                p.len() > t.len() + 1 && p.starts_with(t) && p.as_bytes()[t.len()] == b'/'
            });
            if !all_under {
                break;
            }
            strip += t.len() + 1;
        }
        let mut h = Sha256::new();
        h.update(TREE_HASH_VERSION.as_bytes());
        h.update([0u8]);
        h.update((self.entries.len() as u64).to_be_bytes());
        // Stripping a common prefix keeps the byte order of the paths.
        for (path, node) in &self.entries {
            let path = &path[strip..];
            frame(&mut h, path.as_bytes());
            match node {
                Node::File { sha256, executable } => {
                    h.update([if *executable { b'x' } else { b'f' }]);
                    h.update(sha256);
                }
                Node::Symlink { target } => {
                    h.update([b'l']);
                    frame(&mut h, target.as_bytes());
                }
            }
        }
        Ok(hex::encode(h.finalize()))
    }
}

fn frame(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

pub(crate) fn sha256_of(reader: &mut dyn Read) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize().into())
}

/// The tree hash of a directory (a checkout: its `.git` is skipped). Symbolic links are
/// hashed as links, never followed; sockets, fifos and devices are refused.
pub fn tree_hash_dir(root: &Path) -> Result<String, TreeHashError> {
    let mut tree = TreeBuilder::new(root);
    walk(root, "", &mut tree)?;
    tree.finish()
}

/// The tree hash of entries a caller listed and read (a `path` source: the files git tracks,
/// with the modes git records), named `origin` in errors. Paths are checked as an archive's
/// are (`..`, absolute paths, a path twice are refused).
pub fn tree_hash_listed(
    origin: &Path,
    entries: impl IntoIterator<Item = (String, Node)>,
) -> Result<String, TreeHashError> {
    let mut tree = TreeBuilder::new(origin);
    for (raw, node) in entries {
        if let Some(path) = tree.normalise(raw.as_bytes())? {
            tree.add(path, node)?;
        }
    }
    tree.finish()
}

fn walk(dir: &Path, rel: &str, tree: &mut TreeBuilder) -> Result<(), TreeHashError> {
    let io_err = |path: &Path, source| TreeHashError::Io {
        path: path.to_path_buf(),
        source,
    };
    let entries = fs_err::read_dir(dir).map_err(|e| io_err(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| tree.hostile(&path.display().to_string(), "its name is not UTF-8"))?;
        if name == ".git" {
            continue;
        }
        let rel = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs_err::symlink_metadata(&path).map_err(|e| io_err(&path, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            tree.add_dir(rel.clone())?;
            walk(&path, &rel, tree)?;
        } else if ft.is_symlink() {
            let target = fs_err::read_link(&path).map_err(|e| io_err(&path, e))?;
            let target = target
                .to_str()
                .ok_or_else(|| tree.hostile(&rel, "its link target is not UTF-8"))?
                .to_string();
            tree.add(rel, Node::Symlink { target })?;
        } else if ft.is_file() {
            let mut f = fs_err::File::open(&path).map_err(|e| io_err(&path, e))?;
            let sha256 = sha256_of(&mut f).map_err(|e| io_err(&path, e))?;
            let executable = meta.permissions().mode() & 0o100 != 0;
            tree.add(rel, Node::File { sha256, executable })?;
        } else {
            return Err(tree.hostile(&rel, "not a regular file, directory or symbolic link"));
        }
    }
    Ok(())
}

/// The compression or container an archive's first bytes show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    TarXz,
    TarZst,
    Zip,
}

impl ArchiveKind {
    /// Tells the kind from the first bytes (magic numbers, never the file name).
    pub fn sniff(head: &[u8]) -> ArchiveKind {
        if head.starts_with(&[0x1f, 0x8b]) {
            ArchiveKind::TarGz
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            ArchiveKind::TarXz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ArchiveKind::TarZst
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            ArchiveKind::Zip
        } else {
            ArchiveKind::Tar
        }
    }
}

/// The tree hash of an archive file: a tar (plain, gzip, xz, zstd) or a zip, told apart by
/// its first bytes.
pub fn tree_hash_archive(path: &Path) -> Result<String, TreeHashError> {
    tree_hash_archive_as(path, path)
}

/// [`tree_hash_archive`] of the file at `path`, named `name` (a URL) in messages.
pub fn tree_hash_archive_as(path: &Path, name: &Path) -> Result<String, TreeHashError> {
    let io_err = |source| TreeHashError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs_err::File::open(path).map_err(io_err)?;
    let mut head = [0u8; 8];
    let n = read_up_to(&mut file, &mut head).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    match ArchiveKind::sniff(&head[..n]) {
        ArchiveKind::Zip => tree_hash_zip(name, file),
        kind => tree_hash_tar(name, kind, file),
    }
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The tar stream inside `reader`, compressed as `kind` (a zip is not one).
pub fn decompressed<'a>(
    kind: ArchiveKind,
    reader: impl Read + 'a,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match kind {
        ArchiveKind::Tar => Box::new(reader),
        ArchiveKind::TarGz => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        ArchiveKind::TarXz => Box::new(liblzma::read::XzDecoder::new(reader)),
        ArchiveKind::TarZst => Box::new(zstd::stream::read::Decoder::new(reader)?),
        ArchiveKind::Zip => return Err(io::Error::other("a zip is not a tar stream")),
    })
}

/// The tree hash of a tar stream compressed as `kind`; `name` is used in messages.
pub fn tree_hash_tar(
    name: &Path,
    kind: ArchiveKind,
    reader: impl Read,
) -> Result<String, TreeHashError> {
    let reader = decompressed(kind, reader).map_err(|e| TreeHashError::Archive {
        archive: name.to_path_buf(),
        entry: None,
        source: e,
    })?;
    let mut tree = TreeBuilder::new(name);
    let archive_err = |entry: Option<String>, source| TreeHashError::Archive {
        archive: name.to_path_buf(),
        entry,
        source,
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| archive_err(None, e))? {
        let mut entry = entry.map_err(|e| archive_err(None, e))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        match kind {
            // pax global headers (GitHub puts the commit there) and extension records carry
            // no file.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            _ => {}
        }
        let Some(path) = tree.normalise(&raw)? else {
            continue;
        };
        match kind {
            T::Regular | T::Continuous => {
                let mode = entry
                    .header()
                    .mode()
                    .map_err(|e| archive_err(Some(shown.clone()), e))?;
                let sha256 =
                    sha256_of(&mut entry).map_err(|e| archive_err(Some(shown.clone()), e))?;
                tree.add(
                    path,
                    Node::File {
                        sha256,
                        executable: mode & 0o100 != 0,
                    },
                )?;
            }
            T::Directory => tree.add_dir(path)?,
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| tree.hostile(&shown, "a symbolic link without a target"))?;
                let target = std::str::from_utf8(&target)
                    .map_err(|_| tree.hostile(&shown, "its link target is not UTF-8"))?
                    .to_string();
                tree.add(path, Node::Symlink { target })?;
            }
            T::Link => {
                // A hard link names a file earlier in the same archive; it is that file again.
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| tree.hostile(&shown, "a hard link without a target"))?;
                let target_path = tree.normalise(&target).map_err(|_| {
                    tree.hostile(
                        &shown,
                        format!(
                            "a hard link to `{}`, outside the archive",
                            String::from_utf8_lossy(&target)
                        ),
                    )
                })?;
                let node = target_path
                    .as_ref()
                    .and_then(|t| tree.entries.get(t))
                    .filter(|n| matches!(n, Node::File { .. }))
                    .cloned()
                    .ok_or_else(|| {
                        tree.hostile(
                            &shown,
                            format!(
                                "a hard link to `{}`, which is not a file earlier in the archive",
                                String::from_utf8_lossy(&target)
                            ),
                        )
                    })?;
                tree.add(path, node)?;
            }
            T::Char | T::Block | T::Fifo => {
                return Err(tree.hostile(&shown, "a device node or fifo"));
            }
            other => {
                return Err(tree.hostile(&shown, format!("unsupported tar entry type {other:?}")));
            }
        }
    }
    tree.finish()
}

/// The tree hash of a zip; `name` is used in messages. Executable bits and symbolic links
/// come from the entries' unix modes (an entry without one is a plain file).
pub fn tree_hash_zip(name: &Path, reader: impl Read + Seek) -> Result<String, TreeHashError> {
    let zip_err = |entry: Option<String>, e: zip::result::ZipError| TreeHashError::Archive {
        archive: name.to_path_buf(),
        entry,
        source: io::Error::other(e),
    };
    let mut reader = reader;
    let mut tree = TreeBuilder::new(name);
    // The zip reader keeps one entry per name, so a name written twice in the central
    // directory (two different contents for one path) is looked for here.
    let names = central_directory_names(&mut reader).map_err(|e| TreeHashError::Archive {
        archive: name.to_path_buf(),
        entry: None,
        source: e,
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for n in &names {
        if !seen.insert(n.as_slice()) {
            return Err(tree.hostile(&String::from_utf8_lossy(n), "the path occurs twice"));
        }
    }
    reader.rewind().map_err(|e| TreeHashError::Io {
        path: name.to_path_buf(),
        source: e,
    })?;
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| zip_err(None, e))?;
    if names.len() != zip.len() && names.len() != usize::from(u16::MAX) {
        return Err(tree.hostile(
            "(central directory)",
            "entries the zip reader does not list",
        ));
    }
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).map_err(|e| zip_err(None, e))?;
        let raw = file.name_raw().to_vec();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        if file.encrypted() {
            return Err(tree.hostile(&shown, "encrypted"));
        }
        let Some(path) = tree.normalise(&raw)? else {
            continue;
        };
        let mode = file.unix_mode();
        let file_type = mode.map(|m| m & 0o170000);
        if file.is_dir() {
            tree.add_dir(path)?;
        } else if file.is_symlink() {
            let mut target = Vec::new();
            file.read_to_end(&mut target)
                .map_err(|e| TreeHashError::Archive {
                    archive: name.to_path_buf(),
                    entry: Some(shown.clone()),
                    source: e,
                })?;
            let target = String::from_utf8(target)
                .map_err(|_| tree.hostile(&shown, "its link target is not UTF-8"))?;
            tree.add(path, Node::Symlink { target })?;
        } else if matches!(file_type, None | Some(0) | Some(0o100000)) {
            let sha256 = sha256_of(&mut file).map_err(|e| TreeHashError::Archive {
                archive: name.to_path_buf(),
                entry: Some(shown.clone()),
                source: e,
            })?;
            let executable = mode.is_some_and(|m| m & 0o100 != 0);
            tree.add(path, Node::File { sha256, executable })?;
        } else {
            return Err(tree.hostile(&shown, "a device node, fifo or socket"));
        }
    }
    tree.finish()
}

/// The raw names of a zip's central directory, read from its end-of-central-directory
/// record. A zip64 archive (more than 65535 entries) gives an empty list: its duplicates
/// are then left to the reader's own checks.
pub(crate) fn central_directory_names(r: &mut (impl Read + Seek)) -> io::Result<Vec<Vec<u8>>> {
    let len = r.seek(io::SeekFrom::End(0))?;
    let tail_len = len.min(22 + 65535);
    r.seek(io::SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact(&mut tail)?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
        .ok_or_else(|| bad("no end of central directory record"))?;
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let count = u16_at(&tail, eocd + 10);
    let size = u32_at(&tail, eocd + 12);
    let offset = u32_at(&tail, eocd + 16);
    if count == u16::MAX || size == u32::MAX || offset == u32::MAX {
        return Ok(Vec::new());
    }
    if u64::from(offset) + u64::from(size) > len {
        return Err(bad("the central directory lies past the end of the file"));
    }
    r.seek(io::SeekFrom::Start(offset.into()))?;
    let mut cd = vec![0u8; size as usize];
    r.read_exact(&mut cd)?;
    let mut names = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        if at + 46 > cd.len() || !cd[at..].starts_with(b"PK\x01\x02") {
            return Err(bad("a malformed central directory"));
        }
        let n = usize::from(u16_at(&cd, at + 28));
        let extra = usize::from(u16_at(&cd, at + 30));
        let comment = usize::from(u16_at(&cd, at + 32));
        let end = at + 46 + n;
        if end > cd.len() {
            return Err(bad("a malformed central directory"));
        }
        names.push(cd[at + 46..end].to_vec());
        at = end + extra + comment;
    }
    Ok(names)
}

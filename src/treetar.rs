//! A deterministic tar writer for trees, and a tree comparison for `--rebuild` reports.
//!
//! [`write_tree`] gives the same bytes for the same tree on any host, whatever the readdir
//! order, the umask at write time or the user names of the host:
//!
//! - every entry of the tree, the root included (as `./`), names `./`-prefixed and sorted
//!   component by component, comparing bytes (`a`, `a/c`, `a-b`: as GNU tar's
//!   `--sort=name`; a directory is followed by its whole subtree); directories end with `/`;
//! - POSIX ustar headers, names split over the `prefix` field where that fits; a pax
//!   extended header (`x`, named `././@PaxHeader`) only when a value does not fit ustar: a
//!   path or link target too long, an id above 2097151, a file of 8 GiB or more. The pax
//!   header holds only those records: never atime, ctime or mtime;
//! - numeric owners as in the tree (or all [`TarOptions::owner`]), empty user and group
//!   names;
//! - mtimes clamped to `source_date_epoch` (and to 0 from below); whole seconds;
//! - modes are the permission bits (`0o7777`) of the tree;
//! - hard links (same device and inode, any non-directory) become tar hard links to the
//!   first path in sorted order;
//! - regular files, directories, symlinks, character and block devices (major/minor) and
//!   fifos; sockets are left out and listed in [`Summary::sockets_skipped`];
//! - the archive ends with two zero blocks, without padding to a 10 KiB record (GNU tar and
//!   bsdtar read it).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::hash::{HashingWriter, digest_stream};
use crate::tarheader::{
    self as th, BLOCK, MAX_OCTAL_7, MAX_OCTAL_11, put_number, put_text, set_checksum, write_padding,
};
pub use crate::treewalk::IdMap;
use crate::treewalk::{Order, WalkError, walk};

/// Errors writing or reading tree archives. Each names the path.
#[derive(Debug, thiserror::Error)]
pub enum TreeTarError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the tar of {root}")]
    Write {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} changed while it was archived\nhint: nothing may write to a tree while it is archived"
    )]
    Changed { path: PathBuf },
    #[error("{path}: {message}")]
    Tar { path: PathBuf, message: String },
}

impl From<WalkError> for TreeTarError {
    fn from(WalkError { path, source }: WalkError) -> Self {
        TreeTarError::Read { path, source }
    }
}

/// Options of [`write_tree`].
#[derive(Debug, Clone, Default)]
pub struct TarOptions {
    /// Every mtime later than this is written as this.
    pub source_date_epoch: u64,
    /// Write every entry as owned by this uid and gid instead of the tree's owners (for
    /// trees made by an ordinary user that stand for root-owned ones).
    pub owner: Option<(u64, u64)>,
    /// Translate the tree's host ids into the ids they stand for inside the build sandbox
    /// (a tree made with subordinate ids). Ignored when [`TarOptions::owner`] is set.
    pub id_map: Option<IdMap>,
}

/// What [`write_tree`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Entries written (the root included, pax headers not counted).
    pub entries: u64,
    /// Of which regular files with their content (not hard links).
    pub files: u64,
    /// Bytes of the archive.
    pub bytes: u64,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
    /// Sockets found in the tree and left out, relative to the root.
    pub sockets_skipped: Vec<PathBuf>,
}

/// One entry's header values.
struct HeaderValues<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a [u8],
    dev: (u64, u64),
}

/// Splits a name over ustar's `prefix` (155) and `name` (100) fields, if it fits.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    // The prefix is everything before a '/', the name after it; the '/' itself is dropped.
    // Take the longest prefix that fits, leaving the shortest name.
    let limit = name.len().min(156);
    let slash = name[..limit].iter().rposition(|&b| b == b'/')?;
    let (prefix, rest) = (&name[..slash], &name[slash + 1..]);
    (prefix.len() <= 155 && !rest.is_empty() && rest.len() <= 100).then_some((prefix, rest))
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // "<len> <key>=<value>\n", where <len> counts the whole record, itself included.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn ustar_header(v: &HeaderValues<'_>, name: (&[u8], &[u8]), link: &[u8]) -> [u8; BLOCK] {
    // The callers keep every number within its octal field (larger ones go to pax).
    let mut h = [0u8; BLOCK];
    put_text(&mut h, th::NAME, name.1);
    put_number(&mut h[th::MODE], u64::from(v.mode));
    put_number(&mut h[th::UID], v.uid);
    put_number(&mut h[th::GID], v.gid);
    put_number(&mut h[th::SIZE], v.size);
    put_number(&mut h[th::MTIME], v.mtime);
    h[th::TYPEFLAG] = v.typeflag;
    put_text(&mut h, th::LINKNAME, link);
    put_text(&mut h, th::MAGIC_VERSION, b"ustar\x0000");
    // uname and gname stay empty: owners are numeric.
    put_number(&mut h[th::DEVMAJOR], v.dev.0);
    put_number(&mut h[th::DEVMINOR], v.dev.1);
    put_text(&mut h, th::PREFIX, name.0);
    set_checksum(&mut h);
    h
}

/// Writes one entry's header(s): a pax header first if a value does not fit ustar.
fn write_header(out: &mut impl Write, v: &HeaderValues<'_>) -> std::io::Result<()> {
    let mut pax = Vec::new();
    let name = match split_ustar(v.name) {
        Some(split) => split,
        None => {
            pax_record(&mut pax, "path", v.name);
            // The ustar field keeps a truncated name for readers without pax.
            (&[][..], &v.name[..100])
        }
    };
    let link = if v.link.len() <= 100 {
        v.link
    } else {
        pax_record(&mut pax, "linkpath", v.link);
        &v.link[..100]
    };
    let mut fits = |key: &str, value: u64, max: u64| -> u64 {
        if value > max {
            pax_record(&mut pax, key, value.to_string().as_bytes());
            0
        } else {
            value
        }
    };
    let uid = fits("uid", v.uid, MAX_OCTAL_7);
    let gid = fits("gid", v.gid, MAX_OCTAL_7);
    let size = fits("size", v.size, MAX_OCTAL_11);
    let dev = (v.dev.0.min(MAX_OCTAL_7), v.dev.1.min(MAX_OCTAL_7));
    if !pax.is_empty() {
        let pv = HeaderValues {
            name: b"././@PaxHeader",
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: pax.len() as u64,
            mtime: v.mtime,
            typeflag: b'x',
            link: b"",
            dev: (0, 0),
        };
        out.write_all(&ustar_header(&pv, (&[], pv.name), b""))?;
        write_padded(out, &pax)?;
    }
    let real = HeaderValues {
        uid,
        gid,
        size,
        dev,
        ..*v
    };
    out.write_all(&ustar_header(&real, name, link))
}

fn write_padded(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    out.write_all(data)?;
    write_padding(out, data.len() as u64)
}

/// Writes the tree at `root` as a deterministic tar to `out` (see the module documentation).
pub fn write_tree(
    root: &Path,
    out: impl Write,
    opts: &TarOptions,
) -> Result<Summary, TreeTarError> {
    let nodes = walk(root, true, Order::Components)?;
    let mut out = HashingWriter::new(out);
    let werr = |source| TreeTarError::Write {
        root: root.to_path_buf(),
        source,
    };
    let mut first_link: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut summary = Summary {
        entries: 0,
        files: 0,
        bytes: 0,
        sha256: String::new(),
        sockets_skipped: Vec::new(),
    };
    for node in &nodes {
        let m = &node.meta;
        let ft = m.file_type();
        let path = node.path(root);
        if ft.is_socket() {
            summary
                .sockets_skipped
                .push(PathBuf::from(OsStr::from_bytes(&node.rel)));
            continue;
        }
        let mut name = b"./".to_vec();
        name.extend_from_slice(&node.rel);
        let (uid, gid) = match opts.owner {
            Some(owner) => owner,
            None => {
                let (uid, gid) = node.ids(opts.id_map);
                (u64::from(uid), u64::from(gid))
            }
        };
        let mut v = HeaderValues {
            name: &[],
            mode: m.mode() & 0o7777,
            uid,
            gid,
            size: 0,
            mtime: node.clamped_mtime(opts.source_date_epoch),
            typeflag: b'0',
            link: b"",
            dev: (0, 0),
        };
        let link_target;
        let mut hard_link = None;
        if !ft.is_dir() && m.nlink() > 1 {
            let key = (m.dev(), m.ino());
            match first_link.get(&key) {
                Some(first) => hard_link = Some(first.clone()),
                None => {
                    first_link.insert(key, name.clone());
                }
            }
        }
        if let Some(first) = &hard_link {
            v.typeflag = b'1';
            v.link = first;
        } else if ft.is_dir() {
            if !node.rel.is_empty() {
                name.push(b'/');
            }
            v.typeflag = b'5';
        } else if ft.is_symlink() {
            link_target = node.link_target(&path)?;
            v.typeflag = b'2';
            v.link = link_target.as_os_str().as_bytes();
        } else if ft.is_file() {
            v.size = m.len();
        } else if ft.is_char_device() || ft.is_block_device() {
            v.typeflag = if ft.is_char_device() { b'3' } else { b'4' };
            let rdev = m.rdev();
            v.dev = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        } else if ft.is_fifo() {
            v.typeflag = b'6';
        }
        v.name = &name;
        write_header(&mut out, &v).map_err(werr)?;
        summary.entries += 1;
        if v.typeflag == b'0' {
            let file = fs_err::File::open(&path).map_err(|source| TreeTarError::Read {
                path: path.clone(),
                source,
            })?;
            let n = std::io::copy(&mut file.take(v.size), &mut out).map_err(|source| {
                TreeTarError::Read {
                    path: path.clone(),
                    source,
                }
            })?;
            if n != v.size {
                return Err(TreeTarError::Changed { path });
            }
            write_padding(&mut out, n).map_err(werr)?;
            summary.files += 1;
        }
    }
    out.write_all(&[0u8; 2 * BLOCK]).map_err(werr)?;
    out.flush().map_err(werr)?;
    (summary.sha256, summary.bytes) = out.finish();
    Ok(summary)
}

/// The kind of a tree entry, for manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryType {
    Directory,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Directory => "directory",
            EntryType::File => "file",
            EntryType::Symlink => "symlink",
            EntryType::CharDevice => "char-device",
            EntryType::BlockDevice => "block-device",
            EntryType::Fifo => "fifo",
            EntryType::Socket => "socket",
        }
    }
}

/// One path of a tree, as compared. Hard links are files with their target's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// For files: size and SHA-256 of the content.
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
    /// For symlinks: the target, as bytes.
    pub target: Option<Vec<u8>>,
    /// For devices: major and minor.
    pub device: Option<(u64, u64)>,
}

/// A tree by relative path (`""` for the root; no `./`, no trailing `/`).
pub type Manifest = BTreeMap<Vec<u8>, ManifestEntry>;

fn hash_reader(path: &Path, r: impl Read) -> Result<(u64, [u8; 32]), TreeTarError> {
    let (digest, len) = digest_stream(r).map_err(|source| TreeTarError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((len, digest))
}

/// The manifest of a directory tree (`lstat`, never following symlinks).
pub fn manifest_dir(root: &Path) -> Result<Manifest, TreeTarError> {
    let mut out = Manifest::new();
    for node in walk(root, true, Order::Components)? {
        let m = &node.meta;
        let ft = m.file_type();
        let path = node.path(root);
        let kind = if ft.is_dir() {
            EntryType::Directory
        } else if ft.is_file() {
            EntryType::File
        } else if ft.is_symlink() {
            EntryType::Symlink
        } else if ft.is_char_device() {
            EntryType::CharDevice
        } else if ft.is_block_device() {
            EntryType::BlockDevice
        } else if ft.is_fifo() {
            EntryType::Fifo
        } else {
            EntryType::Socket
        };
        let mut e = ManifestEntry {
            kind,
            mode: m.mode() & 0o7777,
            uid: u64::from(m.uid()),
            gid: u64::from(m.gid()),
            mtime: m.mtime(),
            size: 0,
            sha256: None,
            target: None,
            device: None,
        };
        match kind {
            EntryType::File => {
                let f = fs_err::File::open(&path).map_err(|source| TreeTarError::Read {
                    path: path.clone(),
                    source,
                })?;
                let (size, sha) = hash_reader(&path, f)?;
                e.size = size;
                e.sha256 = Some(sha);
            }
            EntryType::Symlink => {
                let t = node.link_target(&path)?;
                e.target = Some(t.into_os_string().into_encoded_bytes());
            }
            EntryType::CharDevice | EntryType::BlockDevice => {
                let rdev = m.rdev();
                e.device = Some((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)));
            }
            _ => {}
        }
        out.insert(node.rel, e);
    }
    Ok(out)
}

/// The manifest of a tar archive (plain, or compressed with gzip, xz or zstd, by magic).
pub fn manifest_tar(path: &Path) -> Result<Manifest, TreeTarError> {
    let terr = |message: String| TreeTarError::Tar {
        path: path.to_path_buf(),
        message,
    };
    let mut file = fs_err::File::open(path).map_err(|source| TreeTarError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut magic = [0u8; 6];
    let n = file.read(&mut magic).map_err(|source| TreeTarError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file = fs_err::File::open(path).map_err(|source| TreeTarError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = std::io::BufReader::new(file);
    let reader: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => {
            Box::new(liblzma::read::XzDecoder::new_multi_decoder(raw))
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(
            zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| terr(e.to_string()))?,
        ),
        _ => Box::new(raw),
    };
    let mut archive = tar::Archive::new(reader);
    let mut out = Manifest::new();
    for entry in archive.entries().map_err(|e| terr(e.to_string()))? {
        let mut entry = entry.map_err(|e| terr(e.to_string()))?;
        let raw_name = entry.path_bytes().into_owned();
        let rel = normalize_tar_name(&raw_name);
        let h = entry.header();
        let herr = |e: std::io::Error| terr(format!("{}: {e}", String::from_utf8_lossy(&raw_name)));
        let mut e = ManifestEntry {
            kind: EntryType::File,
            mode: h.mode().map_err(herr)? & 0o7777,
            uid: h.uid().map_err(herr)?,
            gid: h.gid().map_err(herr)?,
            mtime: h.mtime().map_err(herr)? as i64,
            size: 0,
            sha256: None,
            target: None,
            device: None,
        };
        let link = entry.link_name_bytes().map(|b| b.into_owned());
        match h.entry_type() {
            tar::EntryType::Directory => e.kind = EntryType::Directory,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let (size, sha) = hash_reader(path, &mut entry)?;
                e.size = size;
                e.sha256 = Some(sha);
            }
            tar::EntryType::Link => {
                let target = normalize_tar_name(&link.unwrap_or_default());
                let t = out.get(&target).ok_or_else(|| {
                    terr(format!(
                        "{}: hard link to `{}`, which is not in the archive before it",
                        String::from_utf8_lossy(&raw_name),
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                e.size = t.size;
                e.sha256 = t.sha256;
                e.kind = t.kind;
                e.target = t.target.clone();
                e.device = t.device;
            }
            tar::EntryType::Symlink => {
                e.kind = EntryType::Symlink;
                e.target = Some(link.unwrap_or_default());
            }
            t @ (tar::EntryType::Char | tar::EntryType::Block) => {
                e.kind = if t == tar::EntryType::Char {
                    EntryType::CharDevice
                } else {
                    EntryType::BlockDevice
                };
                let major = h.device_major().map_err(herr)?.unwrap_or(0);
                let minor = h.device_minor().map_err(herr)?.unwrap_or(0);
                e.device = Some((u64::from(major), u64::from(minor)));
            }
            tar::EntryType::Fifo => e.kind = EntryType::Fifo,
            tar::EntryType::XGlobalHeader => continue,
            other => {
                return Err(terr(format!(
                    "{}: unsupported tar entry type {:?}",
                    String::from_utf8_lossy(&raw_name),
                    other
                )));
            }
        }
        out.insert(rel, e);
    }
    Ok(out)
}

/// `./a/b/` -> `a/b`; `./` -> ``.
fn normalize_tar_name(raw: &[u8]) -> Vec<u8> {
    raw.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect::<Vec<_>>()
        .join(&b'/')
}

/// A tree to compare: a directory, or a tar archive.
#[derive(Debug, Clone, Copy)]
pub enum TreeSource<'a> {
    Dir(&'a Path),
    Tar(&'a Path),
}

impl TreeSource<'_> {
    pub fn manifest(&self) -> Result<Manifest, TreeTarError> {
        match self {
            TreeSource::Dir(p) => manifest_dir(p),
            TreeSource::Tar(p) => manifest_tar(p),
        }
    }
}

/// What [`compare`] looks at besides paths, types, contents, symlink targets and devices.
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions {
    pub modes: bool,
    pub owners: bool,
    pub mtimes: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            modes: true,
            owners: true,
            mtimes: true,
        }
    }
}

/// How one path differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    OnlyInLeft,
    OnlyInRight,
    /// The fields that differ: `type`, `mode`, `owner`, `mtime`, `content`, `target`, `device`.
    Differs(Vec<&'static str>),
}

/// One differing path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDifference {
    /// Relative to the roots; `.` for the root.
    pub path: String,
    pub difference: Difference,
}

impl std::fmt::Display for TreeDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.difference {
            Difference::OnlyInLeft => write!(f, "{}: only in the first tree", self.path),
            Difference::OnlyInRight => write!(f, "{}: only in the second tree", self.path),
            Difference::Differs(fields) => {
                write!(f, "{}: differs in {}", self.path, fields.join(", "))
            }
        }
    }
}

/// Compares two manifests; differences are sorted by path.
pub fn compare_manifests(a: &Manifest, b: &Manifest, opts: CompareOptions) -> Vec<TreeDifference> {
    let name = |p: &[u8]| {
        if p.is_empty() {
            ".".to_string()
        } else {
            String::from_utf8_lossy(p).into_owned()
        }
    };
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let difference = match (a.get(k), b.get(k)) {
            (Some(_), None) => Difference::OnlyInLeft,
            (None, Some(_)) => Difference::OnlyInRight,
            (Some(x), Some(y)) => {
                let mut fields = Vec::new();
                if x.kind != y.kind {
                    fields.push("type");
                }
                if opts.modes && x.mode != y.mode {
                    fields.push("mode");
                }
                if opts.owners && (x.uid, x.gid) != (y.uid, y.gid) {
                    fields.push("owner");
                }
                if opts.mtimes && x.mtime != y.mtime {
                    fields.push("mtime");
                }
                if (x.size, x.sha256) != (y.size, y.sha256) {
                    fields.push("content");
                }
                if x.target != y.target {
                    fields.push("target");
                }
                if x.device != y.device {
                    fields.push("device");
                }
                if fields.is_empty() {
                    continue;
                }
                Difference::Differs(fields)
            }
            (None, None) => continue,
        };
        out.push(TreeDifference {
            path: name(k),
            difference,
        });
    }
    out
}

/// Compares two trees (directories or tars) and names the paths that differ.
pub fn compare(
    a: TreeSource<'_>,
    b: TreeSource<'_>,
    opts: CompareOptions,
) -> Result<Vec<TreeDifference>, TreeTarError> {
    Ok(compare_manifests(&a.manifest()?, &b.manifest()?, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, "path", b"abc");
        assert_eq!(out, b"12 path=abc\n");
        // The length's own digits carry it over a power of ten.
        let mut out = Vec::new();
        pax_record(&mut out, "path", &[b'x'; 91]);
        assert_eq!(out.len(), 101);
        assert!(out.starts_with(b"101 path="));
    }

    #[test]
    fn ustar_split() {
        assert_eq!(split_ustar(b"./a"), Some((&b""[..], &b"./a"[..])));
        let long = [b"./".to_vec(), vec![b'd'; 120], b"/file".to_vec()].concat();
        let (p, n) = split_ustar(&long).unwrap();
        assert_eq!(n, b"file");
        assert_eq!(p.len(), 122);
        let too_long_leaf = [b"./d/".to_vec(), vec![b'f'; 101]].concat();
        assert_eq!(split_ustar(&too_long_leaf), None);
    }

    #[test]
    fn pax_only_for_values_ustar_cannot_hold() {
        let link = vec![b'l'; 120];
        let v = HeaderValues {
            name: b"./big",
            mode: 0o644,
            uid: 3_000_000,
            gid: 5,
            size: 9 << 30,
            mtime: 7,
            typeflag: b'0',
            link: &link,
            dev: (0, 0),
        };
        let mut out = Vec::new();
        write_header(&mut out, &v).unwrap();
        assert_eq!(out.len(), 3 * BLOCK);
        let pax = tar::Header::from_byte_slice(&out[..BLOCK]);
        assert_eq!(pax.entry_type(), tar::EntryType::XHeader);
        assert_eq!(pax.mtime().unwrap(), 7);
        let size = pax.size().unwrap() as usize;
        let records = std::str::from_utf8(&out[BLOCK..BLOCK + size]).unwrap();
        let l = "l".repeat(120);
        assert_eq!(
            records,
            format!("134 linkpath={l}\n15 uid=3000000\n19 size=9663676416\n")
        );
        assert!(!records.contains("time"));
        let h = tar::Header::from_byte_slice(&out[2 * BLOCK..]);
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap(), h.size().unwrap()),
            (0, 5, 0)
        );
        // Nothing overflows: no pax header at all.
        let small = HeaderValues {
            link: b"",
            uid: 0o7777777,
            size: 0o77777777777,
            ..v
        };
        let mut out = Vec::new();
        write_header(&mut out, &small).unwrap();
        assert_eq!(out.len(), BLOCK);
    }

    #[test]
    fn checksum_matches_tar_crate() {
        let v = HeaderValues {
            name: b"./x",
            mode: 0o644,
            uid: 1000,
            gid: 100,
            size: 5,
            mtime: 1234,
            typeflag: b'0',
            link: b"",
            dev: (0, 0),
        };
        let h = ustar_header(&v, (b"", b"./x"), b"");
        let parsed = tar::Header::from_byte_slice(&h);
        assert_eq!(parsed.cksum().unwrap(), {
            let mut c = parsed.clone();
            c.set_cksum();
            c.cksum().unwrap()
        });
        assert_eq!(parsed.uid().unwrap(), 1000);
        assert_eq!(parsed.size().unwrap(), 5);
        assert_eq!(parsed.mtime().unwrap(), 1234);
        assert_eq!(parsed.username_bytes(), Some(&b""[..]));
    }
}

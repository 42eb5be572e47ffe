//! Reading .deb files and extracting them safely.
//!
//! A .deb is an `ar` archive (read here, no external tool) holding, in order, `debian-binary`
//! (`2.0\n`), `control.tar[.gz|.xz|.zst]` (the control file and maintainer scripts) and
//! `data.tar[.gz|.xz|.zst]` (the files). Members whose names start with `_` are ignored, as
//! dpkg does.
//!
//! [`DebFile::extract_data`] treats the package as untrusted. Every entry must pass these
//! rules, else the extraction stops with [`DebError::Unsafe`] naming the entry and the rule:
//!
//! - no `..` component and no absolute path (a leading `./` is the normal form and dropped);
//! - nothing is written through a symlink: each existing parent component is checked with
//!   `lstat`; a symlink there is refused, unless
//!   [`ExtractOptions::follow_dir_symlinks_within_root`] is set, in which case hermetic
//!   resolves the link itself (absolute targets relative to the root, as in a chroot) and
//!   follows it only if it ends at a directory inside the root. That is what merged-/usr
//!   needs (`/bin -> usr/bin` in the tree while packages ship `./bin/...`, which dpkg follows);
//!   a link leaving the root is refused either way. The final component is never followed:
//!   an existing symlink (or file) there is replaced, never written through;
//! - a directory is never replaced by something else;
//! - hard links only to regular files extracted earlier by the same call;
//! - no device nodes or fifos unless [`ExtractOptions::allow_devices`];
//! - setuid/setgid bits of non-directories kept, stripped or refused ([`SetuidPolicy`]);
//! - sizes must match the data present (a truncated archive is an error, never a short file).
//!
//! A .deb of `pins.lock` is opened with [`DebFile::open_pinned`]: its size must be the pinned
//! one, and [`DebFile::extract_data`] hashes the whole file while it reads it and fails at the
//! end, with [`DebError::NotPinned`], when the SHA-256 is not the pinned one (that error wins
//! over any other the changed bytes caused). The caller extracts into a directory it
//! discards on error, so nothing of a substituted package is ever used.
//!
//! Modes and mtimes are kept (directories get theirs once everything inside is written);
//! owners are set when running as root ([`Ownership::IfPrivileged`]) and recorded in the
//! returned list either way. Parents the archive does not list are created 0755, whatever
//! the umask. The root's own entry (`./`) is listed but leaves the root directory alone.
//!
//! The checks assume nothing else writes into the target tree while extracting (there is
//! no defence against a concurrent attacker swapping a checked directory for a symlink).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The largest control member file read into memory.
pub const MAX_CONTROL_FILE_SIZE: u64 = 64 << 20;

/// How many symlinks one path may go through before it is called a loop.
const MAX_SYMLINK_HOPS: usize = 40;

/// The rule an unsafe entry breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    EmptyPath,
    ParentDir,
    Absolute,
    ThroughSymlink,
    SymlinkEscapes,
    NotADirectory,
    ReplaceDirectory,
    HardLinkTarget,
    DeviceNode,
    Setuid,
    UnsupportedType,
    SizeLimit,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rule::EmptyPath => "an entry needs a path",
            Rule::ParentDir => "no `..` components",
            Rule::Absolute => "no absolute paths",
            Rule::ThroughSymlink => "never write through a symlink",
            Rule::SymlinkEscapes => "symlinks followed must stay inside the root",
            Rule::NotADirectory => "parents must be directories",
            Rule::ReplaceDirectory => "a directory is never replaced by a non-directory",
            Rule::HardLinkTarget => "hard links only to files extracted before, inside the root",
            Rule::DeviceNode => "no device nodes or fifos unless allowed",
            Rule::Setuid => "no setuid or setgid files",
            Rule::UnsupportedType => {
                "only files, directories, symlinks, hard links, devices and fifos"
            }
            Rule::SizeLimit => "entry larger than the size limit",
        })
    }
}

/// Errors reading or extracting a .deb. Each names the .deb, and the member or entry.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid .deb: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error(
        "{path}: ar member `{member}` is truncated: its header says {declared} bytes, the file has {available} left"
    )]
    Truncated {
        path: PathBuf,
        member: String,
        declared: u64,
        available: u64,
    },
    #[error("{path}: reading {member}: {message}")]
    Member {
        path: PathBuf,
        member: String,
        message: String,
    },
    #[error("{path}: {member}: entry `{entry}`: {message}")]
    Entry {
        path: PathBuf,
        member: String,
        entry: String,
        message: String,
    },
    #[error("{path}: refusing entry `{entry}`: {rule}{detail}{hint}")]
    Unsafe {
        path: PathBuf,
        entry: String,
        rule: Rule,
        /// `: ` and more about what was found, or empty.
        detail: String,
        /// `\nhint: ...` or empty.
        hint: String,
    },
    #[error("{path}: cannot extract `{entry}` to {target}")]
    Write {
        path: PathBuf,
        entry: String,
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: control file: {message}")]
    Control { path: PathBuf, message: String },
    #[error("{path} is not the pinned file: {problem}")]
    NotPinned { path: PathBuf, problem: String },
}

/// What a pinned file must be, from `pins.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Lowercase hexadecimal SHA-256.
    pub sha256: String,
    pub size: u64,
}

/// The compression of a tar member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

/// One member of the ar archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArMember {
    pub name: String,
    /// Where the member's data starts in the file.
    pub offset: u64,
    pub size: u64,
}

/// An open .deb: its ar index, checked.
#[derive(Debug, Clone)]
pub struct DebFile {
    path: PathBuf,
    members: Vec<ArMember>,
    control: (ArMember, Compression),
    data: (ArMember, Compression),
    /// The pin the file must match, checked while extracting.
    pin: Option<Pin>,
}

/// The fields of the `control` file (its first paragraph), in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlFields {
    pub fields: Vec<(String, String)>,
}

impl ControlFields {
    /// A field by name, case-insensitively. Continuation lines are joined with `\n`, each
    /// without its one leading blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn package(&self) -> Option<&str> {
        self.get("Package")
    }
    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }
    pub fn architecture(&self) -> Option<&str> {
        self.get("Architecture")
    }
}

/// A file of `control.tar`: `control`, `md5sums`, `conffiles`, `preinst`, `postinst`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFile {
    pub name: String,
    pub mode: u32,
    pub contents: Vec<u8>,
}

/// What a data entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File {
        size: u64,
    },
    Symlink {
        target: PathBuf,
    },
    /// A hard link to `target` (a path relative to the root, normalized).
    HardLink {
        target: PathBuf,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One entry of `data.tar`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEntry {
    /// Relative to the root, without `./`; empty for the root itself.
    pub path: PathBuf,
    pub kind: EntryKind,
    /// Permission bits (`0o7777`), as applied (after [`SetuidPolicy`]) when extracted.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

/// An entry as extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedEntry {
    pub entry: DataEntry,
    /// Where it was written, relative to the root: differs from `entry.path` when a directory
    /// symlink was followed (e.g. `bin/ls` written to `usr/bin/ls`).
    pub written_to: PathBuf,
}

/// What to do with setuid/setgid bits of files (directories keep theirs: setgid directories
/// such as `/var/mail` are normal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetuidPolicy {
    #[default]
    Keep,
    Strip,
    Refuse,
}

/// Whether extracted entries get the owners recorded in the package.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ownership {
    /// When running as root (also root of a user namespace); otherwise files belong to the
    /// extracting user.
    #[default]
    IfPrivileged,
    Never,
}

/// How [`DebFile::extract_data`] treats the package. The default is for untrusted input:
/// refuse every symlink in a parent path, refuse devices.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Follow directory symlinks that resolve inside the root (merged-/usr). See the module
    /// documentation.
    pub follow_dir_symlinks_within_root: bool,
    /// Create character/block devices and fifos (needs privileges for devices).
    pub allow_devices: bool,
    pub setuid: SetuidPolicy,
    pub ownership: Ownership,
    /// Refuse a regular file larger than this.
    pub max_file_size: Option<u64>,
}

impl ExtractOptions {
    /// The options for unpacking into a Debian root tree with merged /usr: follow directory
    /// symlinks that stay in the tree, as dpkg does.
    pub fn debian_root() -> Self {
        ExtractOptions {
            follow_dir_symlinks_within_root: true,
            ..Default::default()
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DebError + '_ {
    move |source| DebError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn display_bytes(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl DebFile {
    /// Opens a .deb and checks its ar structure: magic, member headers, sizes within the
    /// file, `debian-binary` first and of major version 2, one control and one data member.
    pub fn open(path: &Path) -> Result<DebFile, DebError> {
        Self::open_with(path, None)
    }

    /// Opens a .deb of `pins.lock` like [`DebFile::open`], first checking that its size is
    /// the pinned one; [`DebFile::extract_data`] then checks its SHA-256 too.
    pub fn open_pinned(path: &Path, pin: Pin) -> Result<DebFile, DebError> {
        Self::open_with(path, Some(pin))
    }

    fn open_with(path: &Path, pin: Option<Pin>) -> Result<DebFile, DebError> {
        let mut file = fs_err::File::open(path).map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        let len = meta.len();
        if let Some(pin) = &pin {
            if !meta.is_file() {
                return Err(DebError::NotPinned {
                    path: path.to_path_buf(),
                    problem: "it is not a regular file".into(),
                });
            }
            if len != pin.size {
                return Err(DebError::NotPinned {
                    path: path.to_path_buf(),
                    problem: format!("it is {len} bytes, pins.lock says {}", pin.size),
                });
            }
        }
        let members = read_ar_index(path, &mut file, len)?;
        let format = |reason: String| DebError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let first = members
            .first()
            .ok_or_else(|| format("the ar archive is empty".into()))?;
        if first.name != "debian-binary" {
            return Err(format(format!(
                "the first member is `{}`, not `debian-binary`",
                first.name
            )));
        }
        if first.size > 64 {
            return Err(format("`debian-binary` is too large".into()));
        }
        let mut version = vec![0; first.size as usize];
        file.seek(SeekFrom::Start(first.offset))
            .map_err(io_err(path))?;
        file.read_exact(&mut version).map_err(io_err(path))?;
        if !version.starts_with(b"2.") {
            return Err(format(format!(
                "unsupported format version {:?} in debian-binary (expected 2.x)",
                display_bytes(&version).trim_end()
            )));
        }
        let mut control = None;
        let mut data = None;
        for m in &members[1..] {
            if m.name.starts_with('_') {
                continue;
            }
            let slot = if m.name.starts_with("control.tar") {
                &mut control
            } else if m.name.starts_with("data.tar") {
                &mut data
            } else {
                return Err(format(format!("unexpected ar member `{}`", m.name)));
            };
            let compression = match m.name.split_once(".tar").map(|(_, s)| s) {
                Some("") => Compression::None,
                Some(".gz") => Compression::Gzip,
                Some(".xz") => Compression::Xz,
                Some(".zst") => Compression::Zstd,
                _ => {
                    return Err(format(format!(
                        "member `{}` has an unsupported compression",
                        m.name
                    )));
                }
            };
            if slot.is_some() {
                return Err(format(format!("a second `{}` member", m.name)));
            }
            *slot = Some((m.clone(), compression));
            if data.is_some() && control.is_none() {
                return Err(format("`data.tar` comes before `control.tar`".into()));
            }
        }
        let control = control.ok_or_else(|| format("no `control.tar` member".into()))?;
        let data = data.ok_or_else(|| format("no `data.tar` member".into()))?;
        Ok(DebFile {
            path: path.to_path_buf(),
            members,
            control,
            data,
            pin,
        })
    }

    /// Hashes the whole file and checks it against the pin given to
    /// [`DebFile::open_pinned`] (nothing to check without one).
    pub fn check_pin(&self) -> Result<(), DebError> {
        let Some(pin) = &self.pin else {
            return Ok(());
        };
        let file = fs_err::File::open(&self.path).map_err(io_err(&self.path))?;
        let mut hashed = HashingReader::new(file.take(pin.size + 1));
        std::io::copy(&mut hashed, &mut std::io::sink()).map_err(io_err(&self.path))?;
        self.compare_pin(pin, hashed)
    }

    fn compare_pin<R>(&self, pin: &Pin, hashed: HashingReader<R>) -> Result<(), DebError> {
        let (actual, n) = hashed.finish();
        if n != pin.size || actual != pin.sha256 {
            return Err(DebError::NotPinned {
                path: self.path.clone(),
                problem: format!(
                    "its SHA-256 is {actual} ({n} bytes), pins.lock says {}",
                    pin.sha256
                ),
            });
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ar members, in file order.
    pub fn members(&self) -> &[ArMember] {
        &self.members
    }

    /// The compression of `data.tar`.
    pub fn data_compression(&self) -> Compression {
        self.data.1
    }

    fn member_reader(&self, which: &(ArMember, Compression)) -> Result<Box<dyn Read>, DebError> {
        let mut file = fs_err::File::open(&self.path).map_err(io_err(&self.path))?;
        file.seek(SeekFrom::Start(which.0.offset))
            .map_err(io_err(&self.path))?;
        self.decoder(BufReader::new(file.take(which.0.size)), which)
    }

    /// The decompressed contents of a member whose raw bytes `raw` yields.
    fn decoder<'a>(
        &self,
        raw: impl std::io::BufRead + 'a,
        (member, compression): &(ArMember, Compression),
    ) -> Result<Box<dyn Read + 'a>, DebError> {
        Ok(match compression {
            Compression::None => Box::new(raw),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(raw)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| {
                    DebError::Member {
                        path: self.path.clone(),
                        member: member.name.clone(),
                        message: e.to_string(),
                    }
                })?)
            }
        })
    }

    fn member_err(&self, member: &ArMember) -> impl Fn(std::io::Error) -> DebError + '_ {
        let name = member.name.clone();
        move |e| DebError::Member {
            path: self.path.clone(),
            member: name.clone(),
            message: e.to_string(),
        }
    }

    /// The files of `control.tar`, sorted by name. Only regular files at the top level are
    /// allowed (and the `./` directory).
    pub fn control_files(&self) -> Result<Vec<ControlFile>, DebError> {
        let member = &self.control.0;
        let mut archive = tar::Archive::new(self.member_reader(&self.control)?);
        let mut out = BTreeMap::new();
        for entry in archive.entries().map_err(self.member_err(member))? {
            let mut entry = entry.map_err(self.member_err(member))?;
            let raw = entry.path_bytes().into_owned();
            let name = display_bytes(&raw);
            let unsafe_err = |rule: Rule, detail: &str| DebError::Unsafe {
                path: self.path.clone(),
                entry: format!("{}:{}", member.name, name),
                rule,
                detail: detail.to_string(),
                hint: String::new(),
            };
            let rel = normalize(&raw).map_err(|r| unsafe_err(r, ""))?;
            let kind = entry.header().entry_type();
            if rel.as_os_str().is_empty() && kind.is_dir() {
                continue;
            }
            if !(kind.is_file() || kind == tar::EntryType::Continuous) {
                return Err(unsafe_err(
                    Rule::UnsupportedType,
                    ": control.tar holds only regular files",
                ));
            }
            if rel.components().count() != 1 {
                return Err(unsafe_err(
                    Rule::UnsupportedType,
                    ": control.tar has no subdirectories",
                ));
            }
            let size = entry.size();
            if size > MAX_CONTROL_FILE_SIZE {
                return Err(unsafe_err(Rule::SizeLimit, ""));
            }
            let mut contents = Vec::with_capacity(size as usize);
            (&mut entry)
                .take(size)
                .read_to_end(&mut contents)
                .map_err(|e| self.entry_err(member, &name, e.to_string()))?;
            if contents.len() as u64 != size {
                return Err(self.entry_err(
                    member,
                    &name,
                    format!(
                        "truncated: the header says {size} bytes, {} are there",
                        contents.len()
                    ),
                ));
            }
            let mode = entry.header().mode().map_err(self.member_err(member))? & 0o7777;
            let name = rel.to_string_lossy().into_owned();
            out.insert(
                name.clone(),
                ControlFile {
                    name,
                    mode,
                    contents,
                },
            );
        }
        Ok(out.into_values().collect())
    }

    fn entry_err(&self, member: &ArMember, entry: &str, message: String) -> DebError {
        DebError::Entry {
            path: self.path.clone(),
            member: member.name.clone(),
            entry: entry.to_string(),
            message,
        }
    }

    /// The fields of the `control` file.
    pub fn control(&self) -> Result<ControlFields, DebError> {
        let files = self.control_files()?;
        let control =
            files
                .iter()
                .find(|f| f.name == "control")
                .ok_or_else(|| DebError::Control {
                    path: self.path.clone(),
                    message: "control.tar has no `control` file".into(),
                })?;
        let text = std::str::from_utf8(&control.contents).map_err(|e| DebError::Control {
            path: self.path.clone(),
            message: format!("not UTF-8: {e}"),
        })?;
        parse_control(text).map_err(|message| DebError::Control {
            path: self.path.clone(),
            message,
        })
    }

    /// Lists `data.tar` (paths normalized and checked like [`DebFile::extract_data`] does,
    /// without touching the file system).
    pub fn data_entries(&self) -> Result<std::vec::IntoIter<DataEntry>, DebError> {
        let member = &self.data.0;
        let mut archive = tar::Archive::new(self.member_reader(&self.data)?);
        let mut out = Vec::new();
        for entry in archive.entries().map_err(self.member_err(member))? {
            let mut entry = entry.map_err(self.member_err(member))?;
            let Some(parsed) = self.parse_entry(member, &entry)? else {
                continue;
            };
            // Read the data through, so that truncation is found here too.
            let n = std::io::copy(&mut entry, &mut std::io::sink())
                .map_err(|e| self.entry_err(member, &parsed.1, e.to_string()))?;
            if let EntryKind::File { size } = parsed.0.kind
                && n != size
            {
                return Err(self.entry_err(
                    member,
                    &parsed.1,
                    format!("truncated: the header says {size} bytes, {n} are there"),
                ));
            }
            out.push(parsed.0);
        }
        Ok(out.into_iter())
    }

    /// Reads the header of a data entry: `None` for entries that carry no file (pax global
    /// headers); the entry's name as written comes second.
    fn parse_entry<R: Read>(
        &self,
        member: &ArMember,
        entry: &tar::Entry<'_, R>,
    ) -> Result<Option<(DataEntry, String)>, DebError> {
        let raw = entry.path_bytes().into_owned();
        let name = display_bytes(&raw);
        let unsafe_err = |rule: Rule, detail: String| DebError::Unsafe {
            path: self.path.clone(),
            entry: name.clone(),
            rule,
            detail,
            hint: String::new(),
        };
        let header = entry.header();
        let kind = header.entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(None);
        }
        let path = normalize(&raw).map_err(|r| unsafe_err(r, String::new()))?;
        let hdr_err = |e: std::io::Error| self.entry_err(member, &name, e.to_string());
        let mode = header.mode().map_err(hdr_err)? & 0o7777;
        let uid = header.uid().map_err(hdr_err)?;
        let gid = header.gid().map_err(hdr_err)?;
        let mtime = header.mtime().map_err(hdr_err)?;
        let link = || -> Result<Vec<u8>, DebError> {
            entry
                .link_name_bytes()
                .map(|b| b.into_owned())
                .filter(|b| !b.is_empty())
                .ok_or_else(|| self.entry_err(member, &name, "link without a target".into()))
        };
        let dev = || -> Result<(u32, u32), DebError> {
            let major = header.device_major().map_err(hdr_err)?.unwrap_or(0);
            let minor = header.device_minor().map_err(hdr_err)?.unwrap_or(0);
            Ok((major, minor))
        };
        let kind = match kind {
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                EntryKind::File { size: entry.size() }
            }
            tar::EntryType::Symlink => EntryKind::Symlink {
                target: PathBuf::from(OsString::from_vec(link()?)),
            },
            tar::EntryType::Link => {
                let target = link()?;
                let target = normalize(&target).map_err(|r| {
                    unsafe_err(r, format!(": the link target `{}`", display_bytes(&target)))
                })?;
                EntryKind::HardLink { target }
            }
            tar::EntryType::Char => {
                let (major, minor) = dev()?;
                EntryKind::CharDevice { major, minor }
            }
            tar::EntryType::Block => {
                let (major, minor) = dev()?;
                EntryKind::BlockDevice { major, minor }
            }
            tar::EntryType::Fifo => EntryKind::Fifo,
            other => {
                return Err(unsafe_err(
                    Rule::UnsupportedType,
                    format!(": tar type {:?}", other.as_byte() as char),
                ));
            }
        };
        if path.as_os_str().is_empty() && kind != EntryKind::Directory {
            return Err(unsafe_err(Rule::EmptyPath, String::new()));
        }
        Ok(Some((
            DataEntry {
                path,
                kind,
                mode,
                uid,
                gid,
                mtime,
            },
            name,
        )))
    }

    /// Extracts `data.tar` into the existing directory `into`, following the rules of the
    /// module documentation. Returns the entries in archive order. A file opened with
    /// [`DebFile::open_pinned`] is hashed on the way and [`DebError::NotPinned`] returned at
    /// the end when it is not the pinned file: `into` must then be discarded.
    pub fn extract_data(
        &self,
        into: &Path,
        opts: &ExtractOptions,
    ) -> Result<Vec<ExtractedEntry>, DebError> {
        let root_meta = fs_err::metadata(into).map_err(io_err(into))?;
        if !root_meta.is_dir() {
            return Err(DebError::Io {
                path: into.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "the extraction root is not a directory",
                ),
            });
        }
        let Some(pin) = &self.pin else {
            return self.extract_from(self.member_reader(&self.data)?, into, opts);
        };
        // One pass over the whole file: everything before data.tar, data.tar as the
        // extraction reads it, then whatever the extraction left unread, all hashed.
        let file = fs_err::File::open(&self.path).map_err(io_err(&self.path))?;
        let mut hashed = HashingReader::new(file.take(pin.size + 1));
        let extracted = std::io::copy(
            &mut (&mut hashed).take(self.data.0.offset),
            &mut std::io::sink(),
        )
        .map_err(io_err(&self.path))
        .and_then(|_| {
            let raw = BufReader::new((&mut hashed).take(self.data.0.size));
            self.extract_from(self.decoder(raw, &self.data)?, into, opts)
        });
        std::io::copy(&mut hashed, &mut std::io::sink()).map_err(io_err(&self.path))?;
        // Changed bytes explain whatever else went wrong.
        self.compare_pin(pin, hashed)?;
        extracted
    }

    fn extract_from(
        &self,
        reader: impl Read,
        into: &Path,
        opts: &ExtractOptions,
    ) -> Result<Vec<ExtractedEntry>, DebError> {
        let privileged =
            opts.ownership == Ownership::IfPrivileged && nix::unistd::geteuid().is_root();
        let member = &self.data.0;
        let mut archive = tar::Archive::new(reader);
        let mut x = Extractor {
            deb: self,
            root: into,
            opts,
            privileged,
            files: BTreeSet::new(),
            dirs: Vec::new(),
            out: Vec::new(),
        };
        for entry in archive.entries().map_err(self.member_err(member))? {
            let mut entry = entry.map_err(self.member_err(member))?;
            let Some((parsed, name)) = self.parse_entry(member, &entry)? else {
                continue;
            };
            x.extract_one(parsed, &name, &mut entry)?;
        }
        x.finish()
    }
}

/// Hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: sha2::Digest::new(),
            bytes: 0,
        }
    }

    /// The lowercase hexadecimal SHA-256 and the count of the bytes read.
    fn finish(self) -> (String, u64) {
        (hex::encode(sha2::Digest::finalize(self.hasher)), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The state of one extraction.
struct Extractor<'a> {
    deb: &'a DebFile,
    root: &'a Path,
    opts: &'a ExtractOptions,
    privileged: bool,
    /// Regular files written, by resolved relative path: the allowed hard-link targets.
    files: BTreeSet<PathBuf>,
    /// Directories whose metadata is applied at the end (children change mtimes; a
    /// read-only directory would stop its children from being written).
    dirs: Vec<(PathBuf, String, DataEntry)>,
    out: Vec<ExtractedEntry>,
}

impl Extractor<'_> {
    fn refuse(&self, name: &str, rule: Rule, detail: String) -> DebError {
        let hint = match rule {
            Rule::ThroughSymlink => {
                "\nhint: to extract into a merged-/usr tree, use ExtractOptions::follow_dir_symlinks_within_root"
            }
            Rule::DeviceNode => {
                "\nhint: device nodes and fifos are extracted only with ExtractOptions::allow_devices"
            }
            _ => "",
        };
        DebError::Unsafe {
            path: self.deb.path.clone(),
            entry: name.to_string(),
            rule,
            detail,
            hint: hint.to_string(),
        }
    }

    fn write_err(&self, name: &str, target: &Path) -> impl FnOnce(std::io::Error) -> DebError {
        let (path, entry, target) = (
            self.deb.path.clone(),
            name.to_string(),
            target.to_path_buf(),
        );
        move |source| DebError::Write {
            path,
            entry,
            target,
            source,
        }
    }

    /// Resolves relative `components` to a path of real directories under the root (relative
    /// to it), creating missing ones when `create` is set. Symlinks are refused, or followed
    /// inside the root when the options allow.
    fn resolve_dir(
        &self,
        name: &str,
        components: impl IntoIterator<Item = OsString>,
        create: bool,
    ) -> Result<PathBuf, DebError> {
        let mut queue: VecDeque<OsString> = components.into_iter().collect();
        let mut cur = PathBuf::new();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                // Only symlink targets bring `..` here: entry paths were normalized.
                if !cur.pop() {
                    return Err(self.refuse(
                        name,
                        Rule::SymlinkEscapes,
                        ": a symlink on the way points above the root".into(),
                    ));
                }
                continue;
            }
            let next = cur.join(&c);
            let abs = self.root.join(&next);
            match fs_err::symlink_metadata(&abs) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                    // A parent the archive does not list: 0755 whatever the umask, as tar
                    // and dpkg make them.
                    fs_err::create_dir(&abs).map_err(self.write_err(name, &abs))?;
                    fs_err::set_permissions(&abs, std::fs::Permissions::from_mode(0o755))
                        .map_err(self.write_err(name, &abs))?;
                    cur = next;
                }
                Err(e) => return Err(self.write_err(name, &abs)(e)),
                Ok(m) if m.is_dir() => cur = next,
                Ok(m) if m.file_type().is_symlink() => {
                    if !self.opts.follow_dir_symlinks_within_root {
                        return Err(self.refuse(
                            name,
                            Rule::ThroughSymlink,
                            format!(": `{}` is a symlink", next.display()),
                        ));
                    }
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(self.refuse(
                            name,
                            Rule::SymlinkEscapes,
                            ": too many levels of symlinks".into(),
                        ));
                    }
                    let target = fs_err::read_link(&abs).map_err(self.write_err(name, &abs))?;
                    if target.is_absolute() {
                        cur = PathBuf::new();
                    }
                    let parts: Vec<OsString> = target
                        .components()
                        .filter_map(|c| match c {
                            std::path::Component::Normal(s) => Some(s.to_os_string()),
                            std::path::Component::ParentDir => Some("..".into()),
                            _ => None,
                        })
                        .collect();
                    for p in parts.into_iter().rev() {
                        queue.push_front(p);
                    }
                }
                Ok(_) => {
                    return Err(self.refuse(
                        name,
                        Rule::NotADirectory,
                        format!(": `{}` is not a directory", next.display()),
                    ));
                }
            }
        }
        Ok(cur)
    }

    /// Removes what is in the way of a new non-directory at `abs` (never a directory).
    fn clear_for_file(&self, name: &str, rel: &Path, abs: &Path) -> Result<(), DebError> {
        match fs_err::symlink_metadata(abs) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.write_err(name, abs)(e)),
            Ok(m) if m.is_dir() => Err(self.refuse(
                name,
                Rule::ReplaceDirectory,
                format!(": `{}` is a directory", rel.display()),
            )),
            Ok(_) => fs_err::remove_file(abs).map_err(self.write_err(name, abs)),
        }
    }

    fn set_owner(&self, name: &str, abs: &Path, e: &DataEntry) -> Result<(), DebError> {
        if !self.privileged {
            return Ok(());
        }
        let id = |v: u64| {
            u32::try_from(v).map_err(|_| {
                self.write_err(name, abs)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("owner id {v} out of range"),
                ))
            })
        };
        std::os::unix::fs::lchown(abs, Some(id(e.uid)?), Some(id(e.gid)?))
            .map_err(self.write_err(name, abs))
    }

    fn set_mtime_nofollow(&self, name: &str, abs: &Path, mtime: u64) -> Result<(), DebError> {
        let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            abs,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.write_err(name, abs)(std::io::Error::from(e)))
    }

    fn extract_one(
        &mut self,
        mut e: DataEntry,
        name: &str,
        data: &mut impl Read,
    ) -> Result<(), DebError> {
        let mut comps: Vec<OsString> = e
            .path
            .components()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        let Some(leaf) = comps.pop() else {
            // The root itself (`./`): recorded, but its metadata is the caller's business
            // (dpkg leaves `/` alone too).
            self.out.push(ExtractedEntry {
                entry: e,
                written_to: PathBuf::new(),
            });
            return Ok(());
        };
        let parent = self.resolve_dir(name, comps, true)?;
        let rel = parent.join(&leaf);
        let abs = self.root.join(&rel);
        if e.kind != EntryKind::Directory && e.mode & 0o6000 != 0 {
            match self.opts.setuid {
                SetuidPolicy::Keep => {}
                SetuidPolicy::Strip => e.mode &= !0o6000,
                SetuidPolicy::Refuse => {
                    return Err(self.refuse(name, Rule::Setuid, format!(": mode {:o}", e.mode)));
                }
            }
        }
        match e.kind.clone() {
            EntryKind::Directory => {
                match fs_err::symlink_metadata(&abs) {
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        std::fs::DirBuilder::new()
                            .mode(0o700)
                            .create(&abs)
                            .map_err(self.write_err(name, &abs))?;
                    }
                    Err(err) => return Err(self.write_err(name, &abs)(err)),
                    Ok(m) if m.is_dir() => {}
                    Ok(m) if m.file_type().is_symlink() => {
                        // dpkg keeps a symlink where the package has a directory (merged
                        // /usr): allowed only when the link is a directory inside the root.
                        let comps = parent
                            .components()
                            .map(|c| c.as_os_str().to_os_string())
                            .chain([leaf]);
                        let target = self.resolve_dir(name, comps, false)?;
                        self.out.push(ExtractedEntry {
                            entry: e,
                            written_to: target,
                        });
                        return Ok(());
                    }
                    Ok(_) => {
                        return Err(self.refuse(
                            name,
                            Rule::NotADirectory,
                            format!(": `{}` exists and is not a directory", rel.display()),
                        ));
                    }
                }
                self.dirs.push((abs, name.to_string(), e.clone()));
            }
            EntryKind::File { size } => {
                if let Some(max) = self.opts.max_file_size
                    && size > max
                {
                    return Err(self.refuse(
                        name,
                        Rule::SizeLimit,
                        format!(": {size} bytes, the limit is {max}"),
                    ));
                }
                self.clear_for_file(name, &rel, &abs)?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&abs)
                    .map_err(self.write_err(name, &abs))?;
                let n =
                    std::io::copy(&mut Read::take(&mut *data, size), &mut file).map_err(|err| {
                        self.deb.entry_err(
                            &self.deb.data.0,
                            name,
                            format!("reading the data: {err}"),
                        )
                    })?;
                if n != size {
                    return Err(self.deb.entry_err(
                        &self.deb.data.0,
                        name,
                        format!("truncated: the header says {size} bytes, {n} are there"),
                    ));
                }
                file.flush().map_err(self.write_err(name, &abs))?;
                self.set_owner(name, &abs, &e)?;
                file.set_permissions(std::fs::Permissions::from_mode(e.mode))
                    .map_err(self.write_err(name, &abs))?;
                let t = SystemTime::UNIX_EPOCH + Duration::from_secs(e.mtime);
                file.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
                    .map_err(self.write_err(name, &abs))?;
                self.files.insert(rel.clone());
            }
            EntryKind::Symlink { target } => {
                self.clear_for_file(name, &rel, &abs)?;
                std::os::unix::fs::symlink(&target, &abs).map_err(self.write_err(name, &abs))?;
                self.set_owner(name, &abs, &e)?;
                self.set_mtime_nofollow(name, &abs, e.mtime)?;
            }
            EntryKind::HardLink { target } => {
                let mut tcomps: Vec<OsString> = target
                    .components()
                    .map(|c| c.as_os_str().to_os_string())
                    .collect();
                let tleaf = tcomps.pop().ok_or_else(|| {
                    self.refuse(name, Rule::HardLinkTarget, ": empty target".into())
                })?;
                let tparent = self.resolve_dir(name, tcomps, false)?;
                let trel = tparent.join(tleaf);
                if !self.files.contains(&trel) {
                    return Err(self.refuse(
                        name,
                        Rule::HardLinkTarget,
                        format!(": `{}` is not a file extracted before", target.display()),
                    ));
                }
                if trel != rel {
                    self.clear_for_file(name, &rel, &abs)?;
                    fs_err::hard_link(self.root.join(&trel), &abs)
                        .map_err(self.write_err(name, &abs))?;
                }
                self.files.insert(rel.clone());
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                if !self.opts.allow_devices {
                    return Err(self.refuse(
                        name,
                        Rule::DeviceNode,
                        format!(": device {major}:{minor}"),
                    ));
                }
                self.clear_for_file(name, &rel, &abs)?;
                let kind = if matches!(e.kind, EntryKind::CharDevice { .. }) {
                    nix::sys::stat::SFlag::S_IFCHR
                } else {
                    nix::sys::stat::SFlag::S_IFBLK
                };
                self.mknod(name, &abs, &e, kind, major, minor)?;
            }
            EntryKind::Fifo => {
                if !self.opts.allow_devices {
                    return Err(self.refuse(name, Rule::DeviceNode, ": a fifo".into()));
                }
                self.clear_for_file(name, &rel, &abs)?;
                self.mknod(name, &abs, &e, nix::sys::stat::SFlag::S_IFIFO, 0, 0)?;
            }
        }
        self.out.push(ExtractedEntry {
            entry: e,
            written_to: rel,
        });
        Ok(())
    }

    fn mknod(
        &self,
        name: &str,
        abs: &Path,
        e: &DataEntry,
        kind: nix::sys::stat::SFlag,
        major: u32,
        minor: u32,
    ) -> Result<(), DebError> {
        let dev = nix::sys::stat::makedev(u64::from(major), u64::from(minor));
        nix::sys::stat::mknod(
            abs,
            kind,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            dev,
        )
        .map_err(|err| self.write_err(name, abs)(std::io::Error::from(err)))?;
        self.set_owner(name, abs, e)?;
        fs_err::set_permissions(abs, std::fs::Permissions::from_mode(e.mode))
            .map_err(self.write_err(name, abs))?;
        self.set_mtime_nofollow(name, abs, e.mtime)
    }

    /// Applies directory metadata, deepest (latest) first.
    fn finish(self) -> Result<Vec<ExtractedEntry>, DebError> {
        for (abs, name, e) in self.dirs.iter().rev() {
            self.set_owner(name, abs, e)?;
            fs_err::set_permissions(abs, std::fs::Permissions::from_mode(e.mode))
                .map_err(self.write_err(name, abs))?;
            self.set_mtime_nofollow(name, abs, e.mtime)?;
        }
        Ok(self.out)
    }
}

/// Normalizes an archive path: drops a leading `./` (and any `.` or empty component),
/// refuses absolute paths and `..`. The root itself becomes the empty path.
pub fn normalize(raw: &[u8]) -> Result<PathBuf, Rule> {
    if raw.is_empty() {
        return Err(Rule::EmptyPath);
    }
    if raw.starts_with(b"/") {
        return Err(Rule::Absolute);
    }
    let mut out = PathBuf::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Rule::ParentDir),
            c if c.contains(&0) => return Err(Rule::EmptyPath),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// Reads the ar index of `file` (`len` bytes long).
fn read_ar_index(
    path: &Path,
    file: &mut fs_err::File,
    len: u64,
) -> Result<Vec<ArMember>, DebError> {
    let format = |reason: String| DebError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let mut magic = [0u8; 8];
    if len < 8 {
        return Err(format("shorter than the ar magic".into()));
    }
    file.read_exact(&mut magic).map_err(io_err(path))?;
    if &magic != b"!<arch>\n" {
        return Err(format("no ar magic `!<arch>`".into()));
    }
    let mut members = Vec::new();
    let mut pos = 8u64;
    while pos < len {
        if len - pos < 60 {
            return Err(format(format!(
                "truncated ar member header at offset {pos}"
            )));
        }
        let mut h = [0u8; 60];
        file.seek(SeekFrom::Start(pos)).map_err(io_err(path))?;
        file.read_exact(&mut h).map_err(io_err(path))?;
        if &h[58..60] != b"`\n" {
            return Err(format(format!(
                "bad ar member header at offset {pos} (no end marker)"
            )));
        }
        let name = std::str::from_utf8(&h[0..16])
            .map_err(|_| format(format!("non-ASCII ar member name at offset {pos}")))?
            .trim_end_matches(' ');
        let name = name.strip_suffix('/').unwrap_or(name).to_string();
        let size_field = std::str::from_utf8(&h[48..58])
            .unwrap_or("")
            .trim_end_matches(' ');
        let size: u64 = if !size_field.is_empty() && size_field.bytes().all(|b| b.is_ascii_digit())
        {
            size_field
                .parse()
                .map_err(|_| format(format!("bad size of ar member `{name}`: {size_field:?}")))?
        } else {
            return Err(format(format!(
                "bad size of ar member `{name}`: {size_field:?}"
            )));
        };
        let offset = pos + 60;
        let available = len - offset;
        if size > available {
            return Err(DebError::Truncated {
                path: path.to_path_buf(),
                member: name,
                declared: size,
                available,
            });
        }
        members.push(ArMember { name, offset, size });
        pos = offset + size + (size & 1);
    }
    Ok(members)
}

/// Writes an ar archive in the layout dpkg-deb uses (names padded with spaces, mtime, owner
/// 0/0, mode 100644, data padded to an even length with `\n`).
pub struct ArWriter<W: Write> {
    out: W,
}

impl<W: Write> ArWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(b"!<arch>\n")?;
        Ok(ArWriter { out })
    }

    /// Appends a member. `name` must be at most 16 bytes; `size` is written as given (tests
    /// use a wrong one on purpose), followed by `data`.
    pub fn append_raw(
        &mut self,
        name: &str,
        mtime: u64,
        size: u64,
        data: &[u8],
    ) -> std::io::Result<()> {
        if name.len() > 16 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("ar member name `{name}` longer than 16 bytes"),
            ));
        }
        let header = format!(
            "{name:<16}{mtime:<12}{:<6}{:<6}{:<8}{size:<10}`\n",
            0, 0, 100644
        );
        debug_assert_eq!(header.len(), 60);
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(data)?;
        if data.len() % 2 == 1 {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Appends a member with its true size.
    pub fn append(&mut self, name: &str, mtime: u64, data: &[u8]) -> std::io::Result<()> {
        self.append_raw(name, mtime, data.len() as u64, data)
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Parses the first paragraph of a control file (deb822, see [`crate::debian::deb822`]:
/// continuation lines lose their one leading blank and are joined with `\n`).
pub fn parse_control(text: &str) -> Result<ControlFields, String> {
    let paragraphs = crate::debian::deb822::parse(text).map_err(|e| e.to_string())?;
    let first = paragraphs.first().ok_or_else(|| "no fields".to_string())?;
    Ok(ControlFields {
        fields: first
            .fields()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(b"./usr/bin/ls").unwrap(), Path::new("usr/bin/ls"));
        assert_eq!(
            normalize(b"usr//bin/./ls").unwrap(),
            Path::new("usr/bin/ls")
        );
        assert_eq!(normalize(b"./").unwrap(), Path::new(""));
        assert_eq!(normalize(b"./a/../b"), Err(Rule::ParentDir));
        assert_eq!(normalize(b".."), Err(Rule::ParentDir));
        assert_eq!(normalize(b"/etc/passwd"), Err(Rule::Absolute));
        assert_eq!(normalize(b""), Err(Rule::EmptyPath));
    }

    proptest::proptest! {
        #[test]
        fn normalized_paths_stay_inside(raw in proptest::collection::vec(
            proptest::sample::select(vec![b'a', b'.', b'/', b'\\', 0xff]), 0..12)
        ) {
            if let Ok(p) = normalize(&raw) {
                proptest::prop_assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))));
                proptest::prop_assert!(!raw.starts_with(b"/"));
            }
        }
    }

    #[test]
    fn control_paragraph() {
        let c = parse_control(
            "Package: hello\nVersion: 1.0-1\nDescription: greets\n a long\n .\n text\n\nPackage: other\n",
        )
        .unwrap();
        assert_eq!(c.package(), Some("hello"));
        assert_eq!(c.get("version"), Some("1.0-1"));
        assert_eq!(c.get("Description"), Some("greets\na long\n.\ntext"));
        assert_eq!(c.fields.len(), 3);
        assert!(parse_control(" x\n").is_err());
        assert!(parse_control("A: 1\nA: 2\n").is_err());
        assert!(parse_control("garbage\n").is_err());
    }

    #[test]
    fn ar_roundtrip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ar");
        let mut w = ArWriter::new(Vec::new()).unwrap();
        w.append("odd", 0, b"abc").unwrap();
        w.append("even", 0, b"abcd").unwrap();
        let bytes = w.finish().unwrap();
        fs_err::write(&path, &bytes).unwrap();
        let mut f = fs_err::File::open(&path).unwrap();
        let m = read_ar_index(&path, &mut f, bytes.len() as u64).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].name.as_str(), m[0].offset, m[0].size), ("odd", 68, 3));
        assert_eq!(
            (m[1].name.as_str(), m[1].offset, m[1].size),
            ("even", 132, 4)
        );
        let mut f = fs_err::File::open(&path).unwrap();
        let err = read_ar_index(&path, &mut f, bytes.len() as u64 - 2).unwrap_err();
        assert!(
            matches!(err, DebError::Truncated { ref member, declared: 4, available: 2, .. } if member == "even"),
            "{err}"
        );
    }
}

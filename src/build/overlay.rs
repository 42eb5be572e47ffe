//! Laying a recipe's overlays over its image tree.
//!
//! An overlay is a directory of the project (`overlays/<name>/`) whose files become files of
//! the image at the same paths. What reaches the image is a function of the recipe and of
//! what git records, never of how the checkout was made:
//!
//! - **Modes.** git records only whether a file is executable, and a checkout writes it with
//!   the user's umask (0664/0775 under Debian's default umask 002, 0644/0755 under 022). So
//!   the mode in the image is: the recipe's `[overlay-modes]` entry for the path if there is
//!   one; else for a directory 0755; for a file 0755 if git's index records it executable
//!   (`100755`) and 0644 otherwise; for a file git does not track (or outside a git
//!   checkout), 0755 if any of its `x` bits is set and 0644 otherwise. Owner and group are
//!   root's. A directory the image already has keeps its mode and owner unless the table
//!   names it.
//! - **Build-time settings.** `__BUILDERNET_<NAME>` in a file (the seed's placeholders; a
//!   closing `__` is allowed) becomes the value of `BUILDERNET_<NAME>` in the recipe's
//!   environment. A placeholder the environment does not define is an error naming the file
//!   and the line.
//!
//! The step key of the image holds the overlays as [`manifest`] gives them (the modes above,
//! each file's content hash) and the recipe's environment, so a changed setting, file or
//! mode is a new image, and two checkouts under different umasks give the same key.
//!
//! The tree is the image step's work (the packages' maintainer scripts wrote it), so every
//! path is resolved beneath its root without following a symbolic link ([`Beneath`]): an
//! overlay path that goes through a link in the image (`lib/…` in a merged-/usr tree) is an
//! error naming it, and a link at the place of a file is replaced, never written through.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Write as _;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;
use sha2::{Digest as _, Sha256};

use crate::beneath::{Beneath, BeneathError, FileKind};
use crate::key::{KeyError, TreeEntry, TreeHashOptions, TreeManifest};
use crate::recipe::ResolvedOverlay;
use crate::treetar::EntryType;

/// Part of the key of every image with overlays; change it when what [`lay`] does with the
/// same overlays changes.
pub const LAYING_VERSION: &str = "laid-by-hermetic-1";

/// What a build-time setting looks like in an overlay file: `__BUILDERNET_<NAME>`.
pub const PLACEHOLDER_PREFIX: &[u8] = b"__BUILDERNET_";

/// Errors of reading or laying an overlay. Each names the overlay file or the image path.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "{file}:{line}: unknown build-time setting `{placeholder}`: the recipe's environment has no {variable}\nhint: set {variable} in the recipe's [environment] (it has: {known})",
        file = file.display()
    )]
    UnknownPlaceholder {
        file: PathBuf,
        line: usize,
        placeholder: String,
        variable: String,
        known: String,
    },
    #[error(
        "{file} is {what}; an overlay holds only directories, regular files and symbolic links",
        file = file.display()
    )]
    Special { file: PathBuf, what: &'static str },
    #[error(
        "[overlay-modes] names `{path}`, which {problem}\nhint: name a file or directory of one of the image's overlays ({overlays})"
    )]
    ModeTable {
        path: String,
        problem: &'static str,
        overlays: String,
    },
    #[error(
        "{file} changed while the image was built (its content no longer has the hash the step key was computed from)\nhint: run the build again",
        file = file.display()
    )]
    Changed { file: PathBuf },
    #[error(
        "overlay {overlay} has {ours} `{path}`, but the image has {theirs} there\nhint: {hint}"
    )]
    Conflict {
        overlay: String,
        path: String,
        ours: &'static str,
        theirs: FileKind,
        hint: &'static str,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Beneath(#[from] BeneathError),
}

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OverlayError {
    let path = path.into();
    move |source| OverlayError::Io { path, source }
}

/// The overlay `overlay` as it will be laid: every entry with the mode it gets in the image
/// (see the module documentation), file contents by SHA-256, symlink targets; the overlay's
/// root (path `""`) is left out. Sorted by path, so a directory comes before its contents.
pub fn manifest(
    overlay: &ResolvedOverlay,
    modes: &BTreeMap<String, u32>,
) -> Result<TreeManifest, OverlayError> {
    let raw = crate::key::tree_manifest(
        &overlay.path,
        TreeHashOptions {
            owners: false,
            mtimes: false,
        },
    )?;
    let tracked = git_index_modes(&overlay.path);
    let mut entries = Vec::new();
    for mut e in raw.entries {
        if e.path.is_empty() {
            continue;
        }
        let rel = String::from_utf8_lossy(&e.path).into_owned();
        let what = match e.kind {
            EntryType::Directory | EntryType::File | EntryType::Symlink => None,
            EntryType::Fifo => Some("a FIFO"),
            EntryType::Socket => Some("a socket"),
            EntryType::CharDevice | EntryType::BlockDevice => Some("a device"),
        };
        if let Some(what) = what {
            return Err(OverlayError::Special {
                file: overlay.path.join(&rel),
                what,
            });
        }
        e.mode = match (e.kind, modes.get(&rel)) {
            (EntryType::Symlink, _) => 0o777,
            (_, Some(m)) => *m,
            (EntryType::Directory, None) => 0o755,
            (_, None) => {
                let executable = match tracked.as_ref().and_then(|t| t.get(&e.path)) {
                    Some(git_mode) => *git_mode == 0o100755,
                    None => e.mode & 0o111 != 0,
                };
                if executable { 0o755 } else { 0o644 }
            }
        };
        entries.push(e);
    }
    Ok(TreeManifest { entries })
}

/// Checks that every path of the `[overlay-modes]` table is a file or directory of one of
/// the overlays (a typo would otherwise silently leave a mode as git's).
pub fn check_mode_table(
    overlays: &[(ResolvedOverlay, TreeManifest)],
    modes: &BTreeMap<String, u32>,
) -> Result<(), OverlayError> {
    let names = || {
        let v: Vec<&str> = overlays.iter().map(|(o, _)| o.name.as_str()).collect();
        if v.is_empty() {
            "it has none".to_string()
        } else {
            v.join(", ")
        }
    };
    for path in modes.keys() {
        let found: Vec<&TreeEntry> = overlays
            .iter()
            .flat_map(|(_, m)| m.entries.iter())
            .filter(|e| e.path == path.as_bytes())
            .collect();
        if found.is_empty() {
            return Err(OverlayError::ModeTable {
                path: path.clone(),
                problem: "no overlay of the image has",
                overlays: names(),
            });
        }
        if found.iter().any(|e| e.kind == EntryType::Symlink) {
            return Err(OverlayError::ModeTable {
                path: path.clone(),
                problem: "is a symbolic link (a link has no mode of its own)",
                overlays: names(),
            });
        }
    }
    Ok(())
}

/// The modes git's index records for the files under `dir`, by path relative to `dir`;
/// `None` when `dir` is not in a git checkout or git cannot say (then the files' own `x`
/// bits decide, which is what a fresh checkout has). `path` sources take their file list and
/// modes from it too (`crate::sources::path`).
pub(crate) fn git_index_modes(dir: &Path) -> Option<BTreeMap<Vec<u8>, u32>> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "--stage", "-z", "--", "."])
        // Only the repository `dir` is in, whatever the caller's environment says.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut modes = BTreeMap::new();
    // `<mode> <object> <stage>\t<path>\0`, paths relative to `dir`.
    for record in out.stdout.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let tab = record.iter().position(|&b| b == b'\t')?;
        let mode = std::str::from_utf8(record[..tab].split(|&b| b == b' ').next()?).ok()?;
        let mode = u32::from_str_radix(mode, 8).ok()?;
        modes.insert(record[tab + 1..].to_vec(), mode);
    }
    Some(modes)
}

/// `content` with every `__BUILDERNET_<NAME>` replaced by the value of `BUILDERNET_<NAME>`
/// in `env`. `<NAME>` is the longest run of `A-Z`, `0-9` and `_` after the prefix, without a
/// closing `__`. The error is the line (from 1) and the placeholder as written.
pub fn substitute(
    content: &[u8],
    env: &BTreeMap<String, String>,
) -> Result<Vec<u8>, (usize, String, String)> {
    let mut out = Vec::with_capacity(content.len());
    let mut i = 0;
    while i < content.len() {
        if content[i..].starts_with(PLACEHOLDER_PREFIX) {
            let start = i + PLACEHOLDER_PREFIX.len();
            let mut end = start;
            while end < content.len()
                && (content[end].is_ascii_uppercase()
                    || content[end].is_ascii_digit()
                    || content[end] == b'_')
            {
                end += 1;
            }
            let mut name = &content[start..end];
            if name.len() > 2 && name.ends_with(b"__") {
                name = &name[..name.len() - 2];
            }
            let written = String::from_utf8_lossy(&content[i..end]).into_owned();
            let variable = format!("BUILDERNET_{}", String::from_utf8_lossy(name));
            match env.get(&variable) {
                Some(value) if !name.is_empty() => {
                    out.extend_from_slice(value.as_bytes());
                    i = end;
                    continue;
                }
                _ => {
                    let line = 1 + content[..i].iter().filter(|&&b| b == b'\n').count();
                    return Err((line, written, variable));
                }
            }
        }
        out.push(content[i]);
        i += 1;
    }
    Ok(out)
}

/// One overlay ready to be laid: where its files are and what [`manifest`] said of them.
#[derive(Debug, Clone)]
pub struct PreparedOverlay {
    pub overlay: ResolvedOverlay,
    pub manifest: TreeManifest,
    /// The paths the `[overlay-modes]` table names (their directories' modes are set even
    /// when the image already has them).
    pub explicit: BTreeSet<Vec<u8>>,
}

/// Reads the overlays of an image and checks its mode table.
pub fn prepare(
    overlays: &[ResolvedOverlay],
    modes: &BTreeMap<String, u32>,
) -> Result<Vec<PreparedOverlay>, OverlayError> {
    let mut read = Vec::new();
    for o in overlays {
        read.push((o.clone(), manifest(o, modes)?));
    }
    check_mode_table(&read, modes)?;
    let explicit: BTreeSet<Vec<u8>> = modes.keys().map(|k| k.as_bytes().to_vec()).collect();
    Ok(read
        .into_iter()
        .map(|(overlay, manifest)| PreparedOverlay {
            overlay,
            manifest,
            explicit: explicit.clone(),
        })
        .collect())
}

/// The overlays of `recipe` with the manifests its image step's key was computed from (so
/// that a file changed since is caught by [`lay`], not laid).
pub fn from_key(
    recipe: &crate::recipe::ResolvedRecipe,
    keyed: &[crate::key::OverlayInput],
) -> Vec<PreparedOverlay> {
    let explicit: BTreeSet<Vec<u8>> = recipe
        .overlay_modes
        .keys()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    recipe
        .overlays
        .iter()
        .zip(keyed)
        .map(|(overlay, input)| PreparedOverlay {
            overlay: overlay.clone(),
            manifest: input.tree.clone(),
            explicit: explicit.clone(),
        })
        .collect()
}

/// Checks that every placeholder of every file has a value in `env`, before anything is laid.
pub fn check_placeholders(
    overlays: &[PreparedOverlay],
    env: &BTreeMap<String, String>,
) -> Result<(), OverlayError> {
    for o in overlays {
        for e in o
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryType::File)
        {
            let file = o.overlay.path.join(OsStr::from_bytes(&e.path));
            let content = fs_err::read(&file).map_err(io(&file))?;
            substitute(&content, env).map_err(|err| placeholder_error(&file, err, env))?;
        }
    }
    Ok(())
}

fn placeholder_error(
    file: &Path,
    (line, placeholder, variable): (usize, String, String),
    env: &BTreeMap<String, String>,
) -> OverlayError {
    let known: Vec<&str> = env
        .keys()
        .filter(|k| k.starts_with("BUILDERNET_"))
        .map(String::as_str)
        .collect();
    OverlayError::UnknownPlaceholder {
        file: file.to_path_buf(),
        line,
        placeholder,
        variable,
        known: if known.is_empty() {
            "no BUILDERNET_* variable".into()
        } else {
            known.join(", ")
        },
    }
}

/// Lays `overlays`, in order, over the image tree at `tree`, with the settings of `env`
/// substituted (see the module documentation). hermetic runs as the user the sandbox maps
/// to root, so what it writes is root's in the image.
pub fn lay(
    tree: &Path,
    overlays: &[PreparedOverlay],
    env: &BTreeMap<String, String>,
) -> Result<(), OverlayError> {
    let image = Beneath::open(tree)?;
    for o in overlays {
        for e in &o.manifest.entries {
            let rel = Path::new(OsStr::from_bytes(&e.path));
            let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
                continue;
            };
            let place = Place {
                parent: image.open_dir(parent)?,
                name,
                rel,
                target: tree.join(rel),
                overlay: &o.overlay.name,
            };
            match e.kind {
                EntryType::Directory => place.directory(e, o.explicit.contains(&e.path))?,
                EntryType::Symlink => {
                    place.clear_for("a symbolic link")?;
                    place.symlink(e.target.as_deref().unwrap_or_default())?;
                }
                EntryType::File => {
                    place.clear_for("a file")?;
                    let source = o.overlay.path.join(rel);
                    let content = fs_err::read(&source).map_err(io(&source))?;
                    // The content the key was computed from, or nothing.
                    if e.sha256.as_deref() != Some(hex::encode(Sha256::digest(&content)).as_str()) {
                        return Err(OverlayError::Changed { file: source });
                    }
                    let content = substitute(&content, env)
                        .map_err(|err| placeholder_error(&source, err, env))?;
                    place.file(&content, e.mode)?;
                }
                _ => unreachable!("manifest() lets only directories, files and links through"),
            }
        }
    }
    Ok(())
}

/// One path of the image tree an overlay entry goes to: its parent directory, opened
/// beneath the tree's root, and its name there.
struct Place<'a> {
    parent: std::os::fd::OwnedFd,
    name: &'a OsStr,
    rel: &'a Path,
    /// For messages: the path on the host.
    target: PathBuf,
    overlay: &'a str,
}

impl Place<'_> {
    fn io(&self, err: nix::errno::Errno) -> OverlayError {
        io(&self.target)(err.into())
    }

    /// What the image has at this place (not followed), if anything.
    fn existing(&self) -> Result<Option<FileKind>, OverlayError> {
        match nix::sys::stat::fstatat(&self.parent, self.name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileKind::of(&st))),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(err) => Err(self.io(err)),
        }
    }

    fn conflict(&self, ours: &'static str, theirs: FileKind, hint: &'static str) -> OverlayError {
        OverlayError::Conflict {
            overlay: self.overlay.to_string(),
            path: self.rel.display().to_string(),
            ours,
            theirs,
            hint,
        }
    }

    /// Root's uid and gid inside the sandbox: the ids hermetic runs as.
    fn chown(&self, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), OverlayError> {
        nix::unistd::fchown(fd, Some(nix::unistd::getuid()), Some(nix::unistd::getgid()))
            .map_err(|err| self.io(err))
    }

    /// A directory: made when missing; an existing one keeps its mode unless `explicit`
    /// (named by `[overlay-modes]`).
    fn directory(&self, e: &TreeEntry, explicit: bool) -> Result<(), OverlayError> {
        match self.existing()? {
            None => {
                nix::sys::stat::mkdirat(&self.parent, self.name, Mode::from_bits_truncate(0o700))
                    .map_err(|err| self.io(err))?
            }
            Some(FileKind::Directory) if !explicit => return Ok(()),
            Some(FileKind::Directory) => {}
            Some(FileKind::Symlink) => {
                return Err(self.conflict(
                    "a directory",
                    FileKind::Symlink,
                    "hermetic does not write through links of the image; put the files at the path the link points to (e.g. usr/lib/ rather than lib/)",
                ));
            }
            Some(other) => {
                return Err(self.conflict(
                    "a directory",
                    other,
                    "rename the overlay's directory or remove the file in a step",
                ));
            }
        }
        let dir = nix::fcntl::openat(
            &self.parent,
            self.name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| self.io(err))?;
        self.chown(dir.as_fd())?;
        nix::sys::stat::fchmod(dir.as_fd(), Mode::from_bits_truncate(e.mode))
            .map_err(|err| self.io(err))
    }

    /// Removes a file or link of the image at this place (the link itself, never what it
    /// points to); a directory there is an error.
    fn clear_for(&self, ours: &'static str) -> Result<(), OverlayError> {
        match self.existing()? {
            None => Ok(()),
            Some(FileKind::Directory) => Err(self.conflict(
                ours,
                FileKind::Directory,
                "an overlay replaces files and links, never a directory of the image",
            )),
            Some(_) => nix::unistd::unlinkat(&self.parent, self.name, UnlinkatFlags::NoRemoveDir)
                .map_err(|err| self.io(err)),
        }
    }

    fn symlink(&self, target: &[u8]) -> Result<(), OverlayError> {
        nix::unistd::symlinkat(OsStr::from_bytes(target), &self.parent, self.name)
            .map_err(|err| self.io(err))?;
        nix::unistd::fchownat(
            &self.parent,
            self.name,
            Some(nix::unistd::getuid()),
            Some(nix::unistd::getgid()),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|err| self.io(err))
    }

    /// A new regular file (`O_EXCL`: nothing is there after [`Place::clear_for`]).
    fn file(&self, content: &[u8], mode: u32) -> Result<(), OverlayError> {
        let fd = nix::fcntl::openat(
            &self.parent,
            self.name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|err| self.io(err))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(content).map_err(io(&self.target))?;
        self.chown(file.as_fd())?;
        // After the chown, which may clear set-id bits.
        nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|err| self.io(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn placeholders_take_the_environment_value_with_or_without_closing_underscores() {
        let e = env(&[
            ("BUILDERNET_BUILDERHUB_URL", "https://hub.example"),
            ("BUILDERNET_LUN", "10"),
        ]);
        let out = substitute(
            b"URL=__BUILDERNET_BUILDERHUB_URL\nlun __BUILDERNET_LUN__/x __BUILDERNET_LUN,\n",
            &e,
        )
        .unwrap();
        assert_eq!(out, b"URL=https://hub.example\nlun 10/x 10,\n".to_vec());
        assert_eq!(
            substitute(b"no settings here _BUILDERNET_", &e).unwrap(),
            b"no settings here _BUILDERNET_".to_vec()
        );
    }

    #[test]
    fn an_unknown_placeholder_names_its_line_and_variable() {
        let e = env(&[("BUILDERNET_A", "1")]);
        let (line, written, variable) =
            substitute(b"a=__BUILDERNET_A\n\nb=__BUILDERNET_TYPO here\n", &e).unwrap_err();
        assert_eq!(line, 3);
        assert_eq!(written, "__BUILDERNET_TYPO");
        assert_eq!(variable, "BUILDERNET_TYPO");
        // The bare prefix is not a setting either.
        assert_eq!(substitute(b"__BUILDERNET_ x", &e).unwrap_err().0, 1);
    }
}

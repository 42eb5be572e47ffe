//! `path` sources: a directory of the project itself (`programs/render-config`), pinned like a
//! git tree, so a program of this repository is built in the sandbox from the same kind of
//! content pin as an upstream one.
//!
//! What the source holds does not depend on how the checkout was made:
//!
//! - **Files.** In a git checkout, exactly the files git's index tracks under the directory
//!   (`git ls-files`): untracked and ignored files (`target/`, editor files) are not part of
//!   it, and a new file is part of it once `git add`ed. Outside a git checkout, every file
//!   except those under a directory named `target` (cargo's build directory) or `.git`.
//! - **Modes.** Those git records (`100755` executable, else not), decided as the overlays'
//!   are ([`crate::build::overlay`]): never the checkout's umask, so clones under umask 002
//!   and 022 pin the same hash. Outside git, a file with any `x` bit is executable.
//!
//! The pin is the `hermetic-tree-v1` hash of those entries ([`crate::sources::treehash`]), the
//! same a `git archive` of the directory gives. `hermetic lock` records it and `lock --check`
//! hashes the directory again; a build reads the files once, checks what it read against the
//! pin and writes exactly that into the build tree ([`copy_pinned`]). Nothing is fetched.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::beneath::{Beneath, BeneathError, FileKind};
use crate::sources::pin::SourcePin;
use crate::sources::treehash::{self, Node, TreeHashError};

/// git's mode of a symbolic link, an executable file and a submodule.
const GIT_SYMLINK: u32 = 0o120000;
const GIT_EXECUTABLE: u32 = 0o100755;
const GIT_SUBMODULE: u32 = 0o160000;

/// Why a `path` source could not be read, hashed or copied. Each names the source.
#[derive(Debug, thiserror::Error)]
pub enum PathSourceError {
    #[error("{what}: {} is not a directory\nhint: `path` names a directory of the project, relative to its root", .dir.display())]
    NotADirectory { what: String, dir: PathBuf },
    #[error("{what}: cannot read `{entry}` in {}", .dir.display())]
    Read {
        what: String,
        dir: PathBuf,
        entry: String,
        #[source]
        source: Box<BeneathError>,
    },
    #[error("{what}: `{entry}` in {} is {why}\nhint: a path source holds regular files and symbolic links (git's index tracks it; `git rm --cached` what should not be part of it)", .dir.display())]
    Unsupported {
        what: String,
        dir: PathBuf,
        entry: String,
        why: &'static str,
    },
    #[error("{what}: cannot read {}", .dir.display())]
    List {
        what: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: the tree of {} is refused", .dir.display())]
    Tree {
        what: String,
        dir: PathBuf,
        #[source]
        source: TreeHashError,
    },
    #[error("{what} has no `tree-sha256` in the lock\nhint: run `hermetic lock`")]
    NoHash { what: String },
    #[error("{what} changed since it was locked: {} hashes to {actual}, pins.lock records {expected}\nhint: run `hermetic lock` to pin the directory as it is now (or undo the change)", .dir.display())]
    Changed {
        what: String,
        dir: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One entry of a path source as read: a file's bytes or a link's target.
enum Content {
    File { bytes: Vec<u8>, executable: bool },
    Symlink { target: String },
}

/// The directory of `pin` (a `path` source) in the project at `root`.
pub fn directory(root: &Path, pin: &SourcePin) -> PathBuf {
    match pin {
        SourcePin::Path { path, .. } => root.join(path),
        _ => root.to_path_buf(),
    }
}

/// The entries of the source, by path relative to its directory: git's tracked files with
/// git's modes, or outside git every file but `target/` (see the module documentation).
fn listing(what: &str, dir: &Path) -> Result<BTreeMap<String, Option<bool>>, PathSourceError> {
    if !fs_err::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Err(PathSourceError::NotADirectory {
            what: what.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    let mut out = BTreeMap::new();
    match crate::build::overlay::git_index_modes(dir) {
        Some(modes) => {
            for (path, mode) in modes {
                let entry = String::from_utf8_lossy(&path).into_owned();
                // `Some(executable)` for a file; `None`: a link (its kind is read from disk).
                let executable = match mode {
                    GIT_SYMLINK => None,
                    GIT_SUBMODULE => {
                        return Err(PathSourceError::Unsupported {
                            what: what.to_string(),
                            dir: dir.to_path_buf(),
                            entry,
                            why: "a git submodule",
                        });
                    }
                    m => Some(m == GIT_EXECUTABLE),
                };
                out.insert(entry, executable);
            }
        }
        None => walk(what, dir, "", &mut out)?,
    }
    Ok(out)
}

fn walk(
    what: &str,
    dir: &Path,
    rel: &str,
    out: &mut BTreeMap<String, Option<bool>>,
) -> Result<(), PathSourceError> {
    let here = dir.join(rel);
    let list = |source| PathSourceError::List {
        what: what.to_string(),
        dir: here.clone(),
        source,
    };
    for entry in fs_err::read_dir(&here).map_err(list)? {
        let entry = entry.map_err(list)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs_err::symlink_metadata(entry.path()).map_err(list)?;
        if meta.is_dir() {
            if name != "target" && name != ".git" {
                walk(what, dir, &path, out)?;
            }
        } else if meta.is_symlink() {
            out.insert(path, None);
        } else {
            out.insert(path, Some(meta.permissions().mode() & 0o111 != 0));
        }
    }
    Ok(())
}

/// Reads every entry of the source beneath its directory (no link followed on the way).
fn read(what: &str, dir: &Path) -> Result<BTreeMap<String, Content>, PathSourceError> {
    let listed = listing(what, dir)?;
    let beneath = Beneath::open(dir).map_err(|source| PathSourceError::Read {
        what: what.to_string(),
        dir: dir.to_path_buf(),
        entry: ".".into(),
        source: Box::new(source),
    })?;
    let mut out = BTreeMap::new();
    for (entry, executable) in listed {
        let failed = |source| PathSourceError::Read {
            what: what.to_string(),
            dir: dir.to_path_buf(),
            entry: entry.clone(),
            source: Box::new(source),
        };
        let unsupported = |why| PathSourceError::Unsupported {
            what: what.to_string(),
            dir: dir.to_path_buf(),
            entry: entry.clone(),
            why,
        };
        let content = match beneath.kind(&entry).map_err(failed)? {
            FileKind::Regular => Content::File {
                bytes: beneath.read(&entry).map_err(failed)?,
                // git says a link, the checkout has a file (core.symlinks off): its bytes
                // are the target, as git stores it.
                executable: executable.unwrap_or(false),
            },
            FileKind::Symlink => {
                let link = dir.join(&entry);
                let target = fs_err::read_link(&link).map_err(|source| PathSourceError::List {
                    what: what.to_string(),
                    dir: link.clone(),
                    source,
                })?;
                Content::Symlink {
                    target: target
                        .to_str()
                        .ok_or_else(|| unsupported("a link whose target is not UTF-8"))?
                        .to_string(),
                }
            }
            FileKind::Directory => return Err(unsupported("a directory where git tracks a file")),
            _ => return Err(unsupported("not a regular file or symbolic link")),
        };
        out.insert(entry, content);
    }
    Ok(out)
}

fn hash_of(
    what: &str,
    dir: &Path,
    entries: &BTreeMap<String, Content>,
) -> Result<String, PathSourceError> {
    let nodes = entries.iter().map(|(p, c)| {
        let node = match c {
            Content::File { bytes, executable } => Node::File {
                sha256: treehash::sha256_of(&mut bytes.as_slice()).expect("reading memory"),
                executable: *executable,
            },
            Content::Symlink { target } => Node::Symlink {
                target: target.clone(),
            },
        };
        (p.clone(), node)
    });
    treehash::tree_hash_listed(dir, nodes).map_err(|source| PathSourceError::Tree {
        what: what.to_string(),
        dir: dir.to_path_buf(),
        source,
    })
}

/// The length of the leading directories (with their `/`) every path lies under.
fn common_dirs<'a>(paths: impl Iterator<Item = &'a str> + Clone) -> usize {
    let mut strip = 0;
    loop {
        let Some(first) = paths.clone().next() else {
            return strip;
        };
        let Some(i) = first[strip..].find('/') else {
            return strip;
        };
        let top = &first[strip..strip + i + 1];
        if !paths.clone().all(|p| p[strip..].starts_with(top)) {
            return strip;
        }
        strip += top.len();
    }
}

/// The `hermetic-tree-v1` hash of the `path` source `pin` of the project at `root`, as it is
/// now: what `hermetic lock` records and `lock --check` compares.
pub fn tree_hash(root: &Path, pin: &SourcePin) -> Result<String, PathSourceError> {
    let what = pin.describe();
    let dir = directory(root, pin);
    hash_of(&what, &dir, &read(&what, &dir)?)
}

/// Copies the `path` source `pin` of the project at `root` into `dest` (which must not
/// exist): the files are read once, what was read is checked against the pin, and exactly
/// that is written (files 0644 or 0755 as git records them). Like the tree hash (and
/// `cargo::unpack_source` for archives), leading directories holding every entry are
/// stripped, so the same pin always gives the same build tree.
pub fn copy_pinned(root: &Path, pin: &SourcePin, dest: &Path) -> Result<(), PathSourceError> {
    let what = pin.describe();
    let dir = directory(root, pin);
    let Some(expected) = pin.content_hash() else {
        return Err(PathSourceError::NoHash { what });
    };
    let entries = read(&what, &dir)?;
    let actual = hash_of(&what, &dir, &entries)?;
    if actual != expected {
        return Err(PathSourceError::Changed {
            what,
            dir,
            expected: expected.to_string(),
            actual,
        });
    }
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PathSourceError::Write { path, source }
    };
    fs_err::create_dir(dest).map_err(write(dest))?;
    let strip = common_dirs(entries.keys().map(String::as_str));
    // The paths were checked by the tree hash: relative, no `..`, no entry below a link.
    for (rel, content) in &entries {
        let to = dest.join(&rel[strip..]);
        if let Some(parent) = to.parent() {
            fs_err::create_dir_all(parent).map_err(write(parent))?;
        }
        match content {
            Content::File { bytes, executable } => {
                fs_err::write(&to, bytes).map_err(write(&to))?;
                let mode = if *executable { 0o755 } else { 0o644 };
                fs_err::set_permissions(&to, std::fs::Permissions::from_mode(mode))
                    .map_err(write(&to))?;
            }
            Content::Symlink { target } => {
                fs_err::os::unix::fs::symlink(target, &to).map_err(write(&to))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(hash: Option<String>) -> SourcePin {
        SourcePin::Path {
            name: "app".into(),
            path: "app".into(),
            tree_sha256: hash,
        }
    }

    fn mode(p: &Path) -> u32 {
        fs_err::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Outside git (a temporary directory): every file but `target/` is copied, with 0644 or
    /// 0755 whatever its own mode, and a change after pinning is refused with both hashes.
    #[test]
    fn the_copy_holds_exactly_the_pinned_files_and_a_change_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let app = root.path().join("app");
        fs_err::create_dir_all(app.join("src")).unwrap();
        fs_err::create_dir_all(app.join("target/release")).unwrap();
        fs_err::write(app.join("src/main.rs"), "fn main() {}\n").unwrap();
        fs_err::write(app.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs_err::write(app.join("target/release/app"), "built\n").unwrap();
        fs_err::set_permissions(
            app.join("src/main.rs"),
            std::fs::Permissions::from_mode(0o664),
        )
        .unwrap();
        fs_err::set_permissions(app.join("run.sh"), std::fs::Permissions::from_mode(0o775))
            .unwrap();
        let hash = tree_hash(root.path(), &pin(None)).unwrap();

        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("src");
        copy_pinned(root.path(), &pin(Some(hash.clone())), &dest).unwrap();
        assert_eq!(mode(&dest.join("src/main.rs")), 0o644);
        assert_eq!(mode(&dest.join("run.sh")), 0o755);
        assert!(!dest.join("target").exists());
        assert_eq!(treehash::tree_hash_dir(&dest).unwrap(), hash);

        fs_err::write(
            app.join("src/main.rs"),
            "fn main() { println!(\"changed\"); }\n",
        )
        .unwrap();
        let err = copy_pinned(
            root.path(),
            &pin(Some(hash.clone())),
            &out.path().join("again"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("path source `app` (app) changed since it was locked"),
            "{err}"
        );
        assert!(err.contains(&format!("pins.lock records {hash}")), "{err}");
        assert!(!out.path().join("again").exists());
    }

    #[test]
    fn leading_directories_holding_every_entry_are_stripped_as_the_hash_does() {
        let paths = ["a/b/x", "a/b/y/z"];
        assert_eq!(common_dirs(paths.iter().copied()), "a/b/".len());
        let paths = ["a/x", "b/y"];
        assert_eq!(common_dirs(paths.iter().copied()), 0);
        let paths = ["ab/x", "a/y"];
        assert_eq!(common_dirs(paths.iter().copied()), 0);
    }
}

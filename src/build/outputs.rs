//! Output files: checked when a step leaves them, hashed when the step is published, and
//! re-hashed when they are copied out of the store into the output directory.
//!
//! What a step leaves in `$OUTPUTDIR` is hostile until checked: an output must be a regular
//! file whose name is a plain UTF-8 file name ([`check_name`]), it is read only through
//! [`crate::beneath`] (no symbolic link is ever followed), and the `output` step records the
//! SHA-256 of each of its files in its store entry ([`write_sums`]).
//!
//! [`copy_out`] writes the output directory (`out/`): every file goes to a fresh temporary
//! name (`O_CREAT|O_EXCL`, so never through an existing file or link), is hashed while it is
//! copied and compared with the recorded hash, and only then renamed into place; an existing
//! link at a destination is replaced, never followed. `SHA256SUMS` is written the same way and
//! merged: lines of files this build did not write are kept. An advisory lock on
//! `out/.hermetic-out.lock` serialises builds that share the directory. A stored file whose
//! bytes no longer match the recorded hash fails the build, naming the store entry and the
//! file, and the damaged entry is removed so that the next build makes it again.

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::beneath::{Beneath, BeneathError, FileKind};
use crate::recipe::OutputFormat;
use crate::store::Store;

use super::BuildError;
use super::exec::{FILES, SUMS, TREE};
use super::plan::{Graph, NodeKind};

/// The advisory lock file of an output directory.
pub const OUT_LOCK: &str = ".hermetic-out.lock";

/// The checksum file of an output directory (and of each `output` step entry).
pub const OUT_SUMS: &str = "SHA256SUMS";

/// Errors about output files.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "step {step} left the output {name} whose name {why}\nhint: rename the file in the step's script: an output name is a plain UTF-8 file name without `/`, `\\`, control characters (such as a newline) or a leading `.`, and not SHA256SUMS"
    )]
    UnsafeName {
        step: String,
        /// The name, escaped (`"x\nANY LINE"`).
        name: String,
        why: &'static str,
    },
    #[error(
        "step {step} left the output {name}, which is {kind}; outputs must be regular files\nhint: leave only regular files in $OUTPUTDIR (copy what a link points to with `cp -L`, pack a directory with tar)"
    )]
    NotAFile {
        step: String,
        name: String,
        kind: FileKind,
    },
    #[error(
        "the stored output {file} of step {step} does not have the SHA-256 its step recorded (store entry {entry}): {hashes}; {removed}\nhint: run the build again: the step is rebuilt"
    )]
    Damaged {
        step: String,
        entry: PathBuf,
        file: String,
        /// `it is <actual>, recorded <expected>`.
        hashes: String,
        removed: String,
    },
    #[error(
        "the store entry {entry} of step {step} is damaged: {problem}; {removed}\nhint: run the build again: the step is rebuilt"
    )]
    BadEntry {
        step: String,
        entry: PathBuf,
        problem: String,
        removed: String,
    },
    #[error(
        "two targets write the output {name} with different contents ({first} and {second})\nhint: build them into different output directories (--output), or give the images different image-id or version"
    )]
    Clash {
        name: String,
        first: String,
        second: String,
    },
    #[error(
        "cannot lock the output directory with {path}\nhint: it must be a regular file hermetic can write (delete it if it is anything else)"
    )]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Beneath(#[from] BeneathError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OutputError {
    let path = path.into();
    move |source| OutputError::Io { path, source }
}

/// Whether `name` may be an output's name; returns it as UTF-8. `step` names the step in the
/// error.
pub fn check_name<'a>(step: &str, name: &'a OsStr) -> Result<&'a str, OutputError> {
    let bad = |why| OutputError::UnsafeName {
        step: step.to_string(),
        name: format!("{name:?}"),
        why,
    };
    let Some(text) = name.to_str() else {
        return Err(bad("is not valid UTF-8"));
    };
    if text.is_empty() {
        Err(bad("is empty"))
    } else if text.starts_with('.') {
        Err(bad("starts with `.`"))
    } else if text.contains('/') || text.contains('\\') {
        Err(bad("contains `/` or `\\`"))
    } else if text.chars().any(char::is_control) {
        Err(bad("contains a control character (a newline, a tab, …)"))
    } else if text == OUT_SUMS {
        Err(bad("is the name of the checksum file"))
    } else {
        Ok(text)
    }
}

/// The names in a directory of outputs, sorted.
fn names_in(dir: &Path) -> Result<Vec<std::ffi::OsString>, OutputError> {
    let mut names = Vec::new();
    for e in fs_err::read_dir(dir).map_err(io(dir))? {
        names.push(e.map_err(io(dir))?.file_name());
    }
    names.sort();
    Ok(names)
}

/// Checks what a step left in its output directory `files`: regular files with safe names.
pub fn check_step_files(step: &str, files: &Path) -> Result<(), OutputError> {
    checked_step_files(step, files).map(|_| ())
}

/// The directory `files` opened for reading beneath it, and the names in it, each checked to
/// be a safe name of a regular file.
fn checked_step_files(step: &str, files: &Path) -> Result<(Beneath, Vec<String>), OutputError> {
    let dir = Beneath::open(files)?;
    let mut checked = Vec::new();
    for name in names_in(files)? {
        let name = check_name(step, &name)?;
        let kind = dir.kind(name)?;
        if kind != FileKind::Regular {
            return Err(OutputError::NotAFile {
                step: step.to_string(),
                name: name.to_string(),
                kind,
            });
        }
        checked.push(name.to_string());
    }
    Ok((dir, checked))
}

/// Copies the output files a step left in `from` into `to` (an existing directory of
/// hermetic's), checking each as [`check_step_files`] does.
pub fn copy_step_files(step: &str, from: &Path, to: &Path) -> Result<(), OutputError> {
    let (dir, names) = checked_step_files(step, from)?;
    for name in &names {
        copy_beneath(&dir, name, &to.join(name))?;
    }
    Ok(())
}

/// Copies the regular file `name` beneath `dir` to the new file `dst` (which must not exist),
/// with its permission bits (not setuid, setgid or sticky).
pub fn copy_beneath(dir: &Beneath, name: &str, dst: &Path) -> Result<(), OutputError> {
    let mut src = dir.open_file(name)?;
    let mode = src.metadata().map_err(io(dst))?.permissions().mode() & 0o777;
    let mut out = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(io(dst))?;
    std::io::copy(&mut src, &mut out).map_err(io(dst))?;
    out.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io(dst))
}

/// Writes the `SHA256SUMS` of the output files in `files` to `out`: one line per file,
/// `<sha256>  <name>`, in name order. Every file must be a regular file with a safe name;
/// `link` is the name of the directory output's link hermetic made itself, which is skipped.
pub fn write_sums(
    step: &str,
    files: &Path,
    out: &Path,
    link: Option<&str>,
) -> Result<(), OutputError> {
    let dir = Beneath::open(files)?;
    let mut text = String::new();
    for name in names_in(files)? {
        if link.is_some_and(|l| name == OsStr::new(l)) && dir.kind(&name)? == FileKind::Symlink {
            continue;
        }
        let name = check_name(step, &name)?;
        let kind = dir.kind(name)?;
        if kind != FileKind::Regular {
            return Err(OutputError::NotAFile {
                step: step.to_string(),
                name: name.to_string(),
                kind,
            });
        }
        let f = dir.open_file(name)?;
        let hash = sha256_of(f, &mut std::io::sink()).map_err(io(files.join(name)))?;
        text.push_str(&format!("{hash}  {name}\n"));
    }
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(out)
        .map_err(io(out))?;
    f.write_all(text.as_bytes()).map_err(io(out))
}

/// Parses a `SHA256SUMS` text: `(name, hash)` of each well-formed line with a safe name;
/// `Err` with the first bad line when `strict`, else bad lines are skipped.
fn parse_sums(text: &str, strict: bool) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let parsed = line.split_once("  ").filter(|(hash, name)| {
            crate::hash::is_sha256(hash) && check_name("", OsStr::new(name)).is_ok()
        });
        let Some((hash, name)) = parsed else {
            if strict {
                return Err(format!("{SUMS} has the line {line:?}"));
            }
            continue;
        };
        if out.insert(name.to_string(), hash.to_string()).is_some() && strict {
            return Err(format!("{name} is listed twice in {SUMS}"));
        }
    }
    Ok(out)
}

/// Hashes everything `r` gives while writing it to `w`.
fn sha256_of(mut r: impl std::io::Read, w: &mut impl std::io::Write) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        w.write_all(&buf[..n])?;
    }
    Ok(hex::encode(h.finalize()))
}

/// The name of the link a `directory` output leaves in its `files/` (and in `out/`).
pub fn directory_link_name(stem: &str) -> String {
    Path::new(stem)
        .with_extension("tree")
        .to_string_lossy()
        .into_owned()
}

/// What will be put into the output directory for one name.
enum Staged {
    /// `out/` holds these bytes already.
    Keep,
    /// A verified copy at a temporary name in `out/`.
    File(tempfile::NamedTempFile),
    /// A link to a stored image tree, at a temporary name in `out/`.
    Link(TempLink),
}

/// A link at a temporary name, removed when dropped unless renamed into place.
struct TempLink(Option<PathBuf>);

impl Drop for TempLink {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs_err::remove_file(p);
        }
    }
}

/// A held lock on an output directory.
struct OutLock {
    _file: std::fs::File,
}

fn lock_out_dir(out_dir: &Path) -> Result<OutLock, OutputError> {
    let path = out_dir.join(OUT_LOCK);
    let err = |source| OutputError::Lock {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
        .map_err(err)?;
    if !file.metadata().map_err(err)?.is_file() {
        return Err(err(std::io::Error::other("not a regular file")));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "waiting for lock on {} (another hermetic build is writing to this directory)",
                path.display()
            );
            file.lock().map_err(err)?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
    }
    Ok(OutLock { _file: file })
}

/// Removes the temporary files of killed builds: they are made only under the lock, so with
/// the lock held every one there is a left-over.
fn remove_leftovers(out_dir: &Path) -> Result<(), OutputError> {
    for name in names_in(out_dir)? {
        let text = name.to_string_lossy();
        if text.starts_with(".hermetic-") && text.ends_with(".tmp") {
            let path = out_dir.join(&name);
            match fs_err::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
                _ => {}
            }
        }
    }
    Ok(())
}

fn temp_in(out_dir: &Path) -> Result<tempfile::NamedTempFile, OutputError> {
    let prefix = format!(".hermetic-{}-", std::process::id());
    tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(out_dir)
        .map_err(io(out_dir))
}

/// Makes a link to `target` at a fresh temporary name in `out_dir`.
fn temp_link(out_dir: &Path, target: &Path) -> Result<PathBuf, OutputError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = out_dir.join(format!(
            ".hermetic-{}-{n}-{nanos}.link.tmp",
            std::process::id()
        ));
        match std::os::unix::fs::symlink(target, &path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&path)(e)),
        }
    }
}

/// Whether `out/name` is a regular file with these bytes (size and mtime as `meta`, then the
/// hash), read without following a link.
fn out_has(out_dir: &Path, name: &str, meta: &std::fs::Metadata, hash: &str) -> bool {
    let path = out_dir.join(name);
    let Ok(d) = fs_err::symlink_metadata(&path) else {
        return false;
    };
    if !d.is_file() || d.len() != meta.len() || d.modified().ok() != meta.modified().ok() {
        return false;
    }
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
    else {
        return false;
    };
    sha256_of(f, &mut std::io::sink()).is_ok_and(|h| h == hash)
}

/// Copies the outputs of the targets from the store into `out_dir` and merges their lines
/// into its `SHA256SUMS`; returns this build's files with their SHA-256.
pub fn copy_out(
    store: &Store,
    graph: &Graph,
    out_dir: &Path,
) -> Result<Vec<(PathBuf, String)>, BuildError> {
    fs_err::create_dir_all(out_dir).map_err(BuildError::io(out_dir))?;
    let _lock = lock_out_dir(out_dir)?;
    remove_leftovers(out_dir)?;
    // name → (hash, what to do); nothing in out/ changes until every target is verified.
    let mut staged: BTreeMap<String, (Option<String>, Staged)> = BTreeMap::new();
    let mut outputs = Vec::new();
    for (_, i) in &graph.targets {
        let node = &graph.nodes[*i];
        let key = node.key.as_str();
        let entry = store.step_path(key);
        let damaged = |problem: OutputError| -> BuildError {
            let removed = match store.remove_step(key) {
                Ok(()) => "the entry was removed".to_string(),
                Err(e) => format!("removing the entry failed ({e}): delete it"),
            };
            match problem {
                OutputError::Damaged {
                    step,
                    entry,
                    file,
                    hashes,
                    ..
                } => OutputError::Damaged {
                    step,
                    entry,
                    file,
                    hashes,
                    removed,
                },
                OutputError::BadEntry {
                    step,
                    entry,
                    problem,
                    ..
                } => OutputError::BadEntry {
                    step,
                    entry,
                    problem,
                    removed,
                },
                other => other,
            }
            .into()
        };
        let bad = |problem: String| OutputError::BadEntry {
            step: node.name.clone(),
            entry: entry.clone(),
            problem,
            removed: String::new(),
        };
        let recorded = Beneath::open(&entry)
            .and_then(|b| b.read_to_string(SUMS))
            .map_err(|e| bad(e.to_string()))
            .and_then(|text| parse_sums(&text, true).map_err(bad))
            .map_err(damaged)?;
        let link = match &node.kind {
            NodeKind::Output {
                format: OutputFormat::Directory,
                stem,
                ..
            } => {
                let image = node.deps.get("image").map(|&d| &graph.nodes[d]);
                image.map(|n| {
                    (
                        directory_link_name(stem),
                        store.step_path(n.key.as_str()).join(TREE),
                    )
                })
            }
            _ => None,
        };
        let files = entry.join(FILES);
        let dir = Beneath::open(&files).map_err(|e| damaged(bad(e.to_string())))?;
        let mut seen = Vec::new();
        for name in names_in(&files)? {
            let kind = dir.kind(&name)?;
            if let Some((link_name, target)) = &link
                && name == OsStr::new(link_name)
                && kind == FileKind::Symlink
            {
                let actual =
                    fs_err::read_link(files.join(&name)).map_err(BuildError::io(&files))?;
                if &actual != target {
                    return Err(damaged(bad(format!(
                        "{link_name} links to {}, not to the image tree {}",
                        actual.display(),
                        target.display()
                    ))));
                }
                let tmp = TempLink(Some(temp_link(out_dir, target)?));
                staged.insert(link_name.clone(), (None, Staged::Link(tmp)));
                continue;
            }
            let name = check_name(&node.name, &name).map_err(|e| damaged(bad(e.to_string())))?;
            if kind != FileKind::Regular {
                return Err(damaged(bad(format!("{name} is {kind}"))));
            }
            let Some(expected) = recorded.get(name) else {
                return Err(damaged(bad(format!("{name} is not listed in {SUMS}"))));
            };
            seen.push(name.to_string());
            let src = dir.open_file(name)?;
            let meta = src.metadata().map_err(BuildError::io(files.join(name)))?;
            let (hash, action) = if out_has(out_dir, name, &meta, expected) {
                let h = sha256_of(src, &mut std::io::sink())
                    .map_err(BuildError::io(files.join(name)))?;
                (h, Staged::Keep)
            } else {
                let mut tmp = temp_in(out_dir)?;
                let tmp_path = tmp.path().to_path_buf();
                let h = sha256_of(src, tmp.as_file_mut()).map_err(BuildError::io(&tmp_path))?;
                let f = tmp.as_file();
                let mode = meta.permissions().mode() & 0o777;
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(BuildError::io(tmp.path()))?;
                // The quick check above takes a file with the stored size and mtime, and the
                // same hash, to be this file.
                if let Ok(mtime) = meta.modified() {
                    f.set_modified(mtime).map_err(BuildError::io(tmp.path()))?;
                }
                (h, Staged::File(tmp))
            };
            if &hash != expected {
                return Err(damaged(OutputError::Damaged {
                    step: node.name.clone(),
                    entry: entry.clone(),
                    file: format!("{FILES}/{name}"),
                    hashes: format!("it is {hash}, recorded {expected}"),
                    removed: String::new(),
                }));
            }
            if let Some((Some(other), _)) = staged.get(name)
                && other != &hash
            {
                return Err(OutputError::Clash {
                    name: name.to_string(),
                    first: other.clone(),
                    second: hash,
                }
                .into());
            }
            if !staged.contains_key(name) {
                outputs.push((PathBuf::from(name), hash.clone()));
            }
            staged.insert(name.to_string(), (Some(hash), action));
        }
        if let Some(missing) = recorded.keys().find(|n| !seen.contains(n)) {
            return Err(damaged(bad(format!(
                "{missing} is listed in {SUMS} but missing"
            ))));
        }
    }
    // Every target is verified: rename into place (over a link there, never through it).
    let mut ours = BTreeMap::new();
    for (name, (hash, action)) in staged {
        let dst = out_dir.join(&name);
        match action {
            Staged::Keep => {}
            Staged::File(tmp) => {
                tmp.persist(&dst)
                    .map_err(|e| BuildError::io(&dst)(e.error))?;
            }
            Staged::Link(mut tmp) => {
                if let Some(path) = &tmp.0 {
                    fs_err::rename(path, &dst).map_err(BuildError::io(&dst))?;
                    tmp.0 = None;
                }
            }
        }
        ours.insert(name, hash);
    }
    write_out_sums(out_dir, &ours)?;
    outputs.sort();
    Ok(outputs)
}

/// Merges this build's files (name → hash; `None`: a link, not listed) into
/// `out_dir/SHA256SUMS`: the lines of other files still in `out_dir` are kept, this build's
/// replaced. The old file is read without following a link; the new one is renamed over it.
fn write_out_sums(
    out_dir: &Path,
    ours: &BTreeMap<String, Option<String>>,
) -> Result<(), OutputError> {
    let path = out_dir.join(OUT_SUMS);
    let mut old = String::new();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
        && f.metadata().is_ok_and(|m| m.is_file())
    {
        // A SHA256SUMS that is not UTF-8 or not readable is replaced.
        let _ = f.read_to_string(&mut old);
    }
    let mut lines: BTreeMap<String, String> = parse_sums(&old, false)
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, _)| {
            !ours.contains_key(name)
                && fs_err::symlink_metadata(out_dir.join(name)).is_ok_and(|m| m.is_file())
        })
        .collect();
    for (name, hash) in ours {
        if let Some(h) = hash {
            lines.insert(name.clone(), h.clone());
        }
    }
    let text: String = lines
        .iter()
        .map(|(name, hash)| format!("{hash}  {name}\n"))
        .collect();
    let mut tmp = temp_in(out_dir)?;
    tmp.write_all(text.as_bytes()).map_err(io(tmp.path()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io(tmp.path()))?;
    tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused_naming_the_step() {
        for (name, why) in [
            ("x\nANY LINE", "control"),
            ("a\tb", "control"),
            (".hidden", "`.`"),
            ("..", "`.`"),
            ("a\\b", "`/`"),
            ("SHA256SUMS", "checksum"),
            ("", "empty"),
        ] {
            let e = check_name("base/image (attack)", OsStr::new(name)).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("base/image (attack)"), "{text}");
            assert!(text.contains(why), "{name:?}: {text}");
            assert!(text.contains("hint: rename"), "{text}");
            // The name is shown escaped: it cannot start a line of its own.
            assert!(!text.contains("\nANY LINE"), "{text}");
        }
        let not_utf8 = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"a\xff");
        assert!(check_name("s", not_utf8).is_err());
        assert_eq!(
            check_name("s", OsStr::new("gcp_1.0.efi")).unwrap(),
            "gcp_1.0.efi"
        );
    }

    #[test]
    fn sums_parse_strictly_or_skip_bad_lines() {
        let h = "a".repeat(64);
        let text = format!("{h}  good.tar\n{h}  x\nANY LINE\n");
        assert!(parse_sums(&text, true).is_err());
        let lenient = parse_sums(&text, false).unwrap();
        assert_eq!(lenient.keys().collect::<Vec<_>>(), ["good.tar", "x"]);
        assert!(parse_sums(&format!("{h}  a\n{h}  a\n"), true).is_err());
        assert!(parse_sums(&format!("{h}  .hidden\n"), true).is_err());
    }

    #[test]
    fn write_sums_refuses_links_and_odd_names() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        fs_err::create_dir(&files).unwrap();
        fs_err::write(files.join("a.tar"), "A").unwrap();
        let out = dir.path().join("sums");
        write_sums("s", &files, &out, None).unwrap();
        assert_eq!(
            fs_err::read_to_string(&out).unwrap(),
            format!("{}  a.tar\n", crate::hash::sha256_hex(b"A"))
        );
        // An existing file is never written through.
        let e = write_sums("s", &files, &out, None).unwrap_err();
        assert!(matches!(e, OutputError::Io { .. }), "{e:?}");
        fs_err::remove_file(&out).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", files.join("passwd")).unwrap();
        let e = write_sums("s", &files, &out, None).unwrap_err();
        assert!(
            matches!(
                e,
                OutputError::NotAFile {
                    kind: FileKind::Symlink,
                    ..
                }
            ),
            "{e:?}"
        );
        // The directory output's own link is skipped.
        write_sums("s", &files, &out, Some("passwd")).unwrap();
        assert!(!fs_err::read_to_string(&out).unwrap().contains("passwd"));
    }

    #[test]
    fn left_over_temporary_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let tmp = temp_in(out).unwrap().keep().unwrap().1;
        let link = temp_link(out, Path::new("/nonexistent")).unwrap();
        fs_err::write(out.join("keep.tar"), "x").unwrap();
        fs_err::write(out.join(OUT_LOCK), "").unwrap();
        remove_leftovers(out).unwrap();
        assert!(!tmp.exists());
        assert!(fs_err::symlink_metadata(&link).is_err());
        let mut left: Vec<_> = fs_err::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [OUT_LOCK, "keep.tar"]);
    }

    #[test]
    fn out_sums_merge_keep_other_lines_and_replace_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        fs_err::write(out.join("other.tar"), "x").unwrap();
        fs_err::write(out.join("mine.tar"), "y").unwrap();
        fs_err::write(
            out.join(OUT_SUMS),
            format!("{a}  other.tar\n{a}  mine.tar\n{a}  gone.tar\nnot a line\n"),
        )
        .unwrap();
        let ours = BTreeMap::from([("mine.tar".to_string(), Some(b.clone()))]);
        write_out_sums(out, &ours).unwrap();
        assert_eq!(
            fs_err::read_to_string(out.join(OUT_SUMS)).unwrap(),
            format!("{b}  mine.tar\n{a}  other.tar\n")
        );
        // A link at SHA256SUMS is replaced, its target untouched.
        let victim = dir.path().join("victim");
        fs_err::write(&victim, "precious").unwrap();
        fs_err::remove_file(out.join(OUT_SUMS)).unwrap();
        std::os::unix::fs::symlink(&victim, out.join(OUT_SUMS)).unwrap();
        let ours = BTreeMap::from([("mine.tar".to_string(), Some(c.clone()))]);
        write_out_sums(out, &ours).unwrap();
        assert_eq!(fs_err::read_to_string(&victim).unwrap(), "precious");
        let meta = fs_err::symlink_metadata(out.join(OUT_SUMS)).unwrap();
        assert!(meta.is_file());
        assert_eq!(
            fs_err::read_to_string(out.join(OUT_SUMS)).unwrap(),
            format!("{c}  mine.tar\n")
        );
    }
}

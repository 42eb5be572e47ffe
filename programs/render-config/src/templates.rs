//! The template tree: which files are templates, where each one goes, with which mode and in
//! which mode of data; and writing a rendered file so that it is either all there or not at all.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The marker in a file name that makes it a template.
pub const MARKER: &str = ".mustache";

/// A template's name, read: `<dest>.mustache[_unsafe][_NNN]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateName {
    /// The destination file name.
    pub dest: String,
    /// `_unsafe`: raw JSON with `#base64` keys decoded.
    pub unsafe_mode: bool,
    /// `_NNN`: the file's mode; 0644 without it.
    pub mode: u32,
}

pub const DEFAULT_MODE: u32 = 0o644;

/// Why a file name is not a template name we know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub String);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TemplateName {
    /// Reads a file name. `Ok(None)`: no `.mustache` in it, not a template. The destination is
    /// what comes before the last `.mustache`.
    pub fn parse(file_name: &str) -> Result<Option<TemplateName>, NameError> {
        let Some(at) = file_name.rfind(MARKER) else {
            return Ok(None);
        };
        let dest = &file_name[..at];
        let mut suffix = &file_name[at + MARKER.len()..];
        let unsafe_mode = match suffix.strip_prefix("_unsafe") {
            Some(rest) => {
                suffix = rest;
                true
            }
            None => false,
        };
        let mode = match suffix.strip_prefix('_') {
            None if suffix.is_empty() => DEFAULT_MODE,
            Some(digits)
                if (3..=4).contains(&digits.len())
                    && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
            {
                u32::from_str_radix(digits, 8).expect("octal digits")
            }
            _ => {
                return Err(NameError(format!(
                    "unknown suffix `{suffix}` after `.mustache` (known: `_unsafe`, then `_NNN` with 3 or 4 octal digits, e.g. `.mustache_unsafe_600`)"
                )));
            }
        };
        if dest.is_empty() || dest == "." || dest == ".." {
            return Err(NameError(format!(
                "`{file_name}` names no destination file"
            )));
        }
        Ok(Some(TemplateName {
            dest: dest.to_string(),
            unsafe_mode,
            mode,
        }))
    }
}

/// One file found under the template root.
#[derive(Debug, Clone)]
pub struct Found {
    /// The template file.
    pub path: PathBuf,
    /// Its directory relative to the root.
    pub rel_dir: PathBuf,
    /// Its name, read (or why it could not be).
    pub name: Result<TemplateName, NameError>,
}

/// Every template under `root`, in sorted order; directories are walked, symbolic links and
/// other non-regular files are reported through `skipped`.
pub fn find(root: &Path, skipped: &mut dyn FnMut(&Path, &str)) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    walk(root, Path::new(""), &mut found, skipped)?;
    Ok(found)
}

fn walk(
    dir: &Path,
    rel: &Path,
    found: &mut Vec<Found>,
    skipped: &mut dyn FnMut(&Path, &str),
) -> io::Result<()> {
    let mut entries = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type()?;
        let name = entry.file_name();
        if file_type.is_dir() {
            walk(&path, &rel.join(&name), found, skipped)?;
            continue;
        }
        let Some(name) = name.to_str() else {
            if name.to_string_lossy().contains(MARKER) {
                skipped(&path, "its name is not UTF-8");
            }
            continue;
        };
        if !name.contains(MARKER) {
            continue;
        }
        if !file_type.is_file() {
            skipped(&path, "not a regular file");
            continue;
        }
        match TemplateName::parse(name) {
            Ok(None) => {}
            Ok(Some(t)) => found.push(Found {
                path,
                rel_dir: rel.to_path_buf(),
                name: Ok(t),
            }),
            Err(e) => found.push(Found {
                path,
                rel_dir: rel.to_path_buf(),
                name: Err(e),
            }),
        }
    }
    Ok(())
}

/// Writes `contents` to `dest` with `mode`: a new file beside it, written, given its mode,
/// synced, then renamed over `dest` (so `dest` is the old file or the new one, never half of
/// one; a symbolic link at `dest` is replaced, not followed). Missing directories are made.
pub fn write_atomic(dest: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let named =
        |e: io::Error, what: &Path| io::Error::new(e.kind(), format!("{}: {e}", what.display()));
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = dest.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: no file name", dest.display()),
        )
    })?;
    fs::create_dir_all(dir).map_err(|e| named(e, dir))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".render-config-{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A temporary file a killed run left behind.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(named(e, &tmp)),
        _ => {}
    }
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(named(e, dest));
    }
    // The rename itself is durable once the directory is synced.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| named(e, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(dest: &str, unsafe_mode: bool, mode: u32) -> Option<TemplateName> {
        Some(TemplateName {
            dest: dest.into(),
            unsafe_mode,
            mode,
        })
    }

    #[test]
    fn names() {
        let ok = [
            ("hostname.mustache", name("hostname", false, 0o644)),
            (
                "acme-le.env.mustache_600",
                name("acme-le.env", false, 0o600),
            ),
            (
                "disk-encryption-key.mustache_unsafe_600",
                name("disk-encryption-key", true, 0o600),
            ),
            (
                "config.toml.mustache_unsafe",
                name("config.toml", true, 0o644),
            ),
            ("run.mustache_0755", name("run", false, 0o755)),
            ("a.mustache.mustache_400", name("a.mustache", false, 0o400)),
            ("README.md", None),
        ];
        for (file, want) in ok {
            assert_eq!(TemplateName::parse(file).unwrap(), want, "{file}");
        }
        let bad = [
            "x.mustache_bad",
            "x.mustache_600_unsafe",
            "x.mustache_68",
            "x.mustache_12345",
            "x.mustache_800",
            "x.mustache_unsafe_",
            "x.mustachey",
            ".mustache",
        ];
        for file in bad {
            assert!(TemplateName::parse(file).is_err(), "{file}");
        }
    }

    #[test]
    fn write_atomic_sets_mode_and_replaces_links() {
        let dir = std::env::temp_dir().join(format!("render-config-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let dest = dir.join("a/b/file");
        write_atomic(&dest, b"one", 0o400).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
            0o400
        );
        // A link at the destination is replaced; its target is untouched.
        let target = dir.join("target");
        fs::write(&target, b"keep").unwrap();
        let link = dir.join("a/b/link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
        let leftovers: Vec<_> = fs::read_dir(dir.join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

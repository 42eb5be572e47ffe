//! Rust crates pinned by the checksums `Cargo.lock` already carries: every registry crate
//! is fetched into the store (verified by that SHA-256 of its `.crate`) and written out as
//! a cargo vendor directory that `cargo build --offline --frozen` accepts with
//! `[source.crates-io] replace-with = "vendored"`.
//!
//! Each crate becomes `<vendor>/<name>-<version>/` with a `.cargo-checksum.json` holding the
//! package checksum and the SHA-256 of every file, the format cargo's directory sources
//! check. Unpacking refuses anything but relative regular files and directories under the
//! crate's own `<name>-<version>/` prefix.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::hash::is_sha256;
use crate::http::Http;
use crate::store::{Store, StoreError};

/// crates.io's download URL of a `.crate`.
pub const CRATES_IO_DOWNLOAD: &str =
    "https://static.crates.io/crates/{name}/{name}-{version}.crate";

/// The `source` of a crates.io package in `Cargo.lock`.
pub const CRATES_IO_SOURCE: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// One registry crate of a `Cargo.lock`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockedCrate {
    pub name: String,
    pub version: String,
    /// The SHA-256 of the `.crate` file.
    pub checksum: String,
}

impl LockedCrate {
    fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// What went wrong pinning or vendoring crates.
#[derive(Debug, thiserror::Error)]
pub enum CrateError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a Cargo.lock: {message}", .path.display())]
    Malformed { path: PathBuf, message: String },
    #[error("{}: package `{name} {version}` comes from `{source_id}`, which hermetic cannot pin\nhint: only crates.io registry packages (with a checksum) and path packages are supported; vendor git dependencies as sources of their own", .path.display())]
    Unsupported {
        path: PathBuf,
        name: String,
        version: String,
        source_id: String,
    },
    #[error("{}: crate `{name} {version}` has no valid checksum\nhint: regenerate the Cargo.lock with a current cargo", .path.display())]
    NoChecksum {
        path: PathBuf,
        name: String,
        version: String,
    },
    #[error(
        "crate `{name} {version}` from {url}: the .crate has SHA-256 {actual}, Cargo.lock says {expected}; nothing stored\nhint: the registry served another file than the one locked; check the registry or mirror"
    )]
    Mismatch {
        name: String,
        version: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("crate `{name} {version}`: cannot download {url}: {reason}")]
    Download {
        name: String,
        version: String,
        url: String,
        reason: String,
    },
    #[error("crate `{name} {version}`: entry `{entry}` of its .crate is refused: {why}")]
    Hostile {
        name: String,
        version: String,
        entry: String,
        why: String,
    },
    #[error("cannot write the vendor directory {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Deserialize)]
struct RawCargoLock {
    #[serde(default)]
    package: Vec<RawPackage>,
}

#[derive(Deserialize)]
struct RawPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// The registry crates of the `Cargo.lock` at `path`, sorted; path packages (no `source`)
/// are the workspace's own and skipped; any other source is refused.
pub fn locked_crates(path: &Path) -> Result<Vec<LockedCrate>, CrateError> {
    let text = fs_err::read_to_string(path).map_err(|source| CrateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: RawCargoLock = toml::from_str(&text).map_err(|e| CrateError::Malformed {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    let mut out = Vec::new();
    for p in raw.package {
        match p.source.as_deref() {
            None => continue,
            Some(CRATES_IO_SOURCE) => {}
            Some(other) => {
                return Err(CrateError::Unsupported {
                    path: path.to_path_buf(),
                    name: p.name,
                    version: p.version,
                    source_id: other.to_string(),
                });
            }
        }
        let Some(checksum) = p.checksum.filter(|c| is_sha256(c)) else {
            return Err(CrateError::NoChecksum {
                path: path.to_path_buf(),
                name: p.name,
                version: p.version,
            });
        };
        out.push(LockedCrate {
            name: p.name,
            version: p.version,
            checksum,
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The download URL of `krate` from a template with `{name}` and `{version}`.
pub fn crate_url(template: &str, krate: &LockedCrate) -> String {
    template
        .replace("{name}", &krate.name)
        .replace("{version}", &krate.version)
}

/// Has every crate's `.crate` in the store, downloaded from `template` when missing and
/// checked against its Cargo.lock checksum while streaming. Gives how many were fetched.
pub fn fetch_crates(
    store: &Store,
    http: &Http,
    crates: &[LockedCrate],
    template: &str,
) -> Result<usize, CrateError> {
    let mut fetched = 0;
    for c in crates {
        if store.has_blob(&c.checksum) {
            continue;
        }
        let url = crate_url(template, c);
        let mut download = http.get(&url, None).map_err(|e| CrateError::Download {
            name: c.name.clone(),
            version: c.version.clone(),
            url: url.clone(),
            reason: e.reason(),
        })?;
        match store.put_blob_from_reader(&c.checksum, None, &mut download.reader) {
            Ok(_) => fetched += 1,
            Err(StoreError::HashMismatch { expected, actual }) => {
                return Err(CrateError::Mismatch {
                    name: c.name.clone(),
                    version: c.version.clone(),
                    url,
                    expected,
                    actual,
                });
            }
            Err(e) => {
                return Err(CrateError::Download {
                    name: c.name.clone(),
                    version: c.version.clone(),
                    url,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(fetched)
}

/// Writes the vendor directory `dest` (which must not exist) from the store's `.crate`s:
/// one `<name>-<version>/` per crate with its `.cargo-checksum.json`. Each blob is
/// re-hashed against its checksum before it is unpacked.
pub fn write_vendor_dir(
    store: &Store,
    crates: &[LockedCrate],
    dest: &Path,
) -> Result<(), CrateError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CrateError::Write { path, source }
    };
    fs_err::create_dir(dest).map_err(werr(dest))?;
    for c in crates {
        let blob = store.verified_blob(
            &c.checksum,
            None,
            &format!("crate {} {}", c.name, c.version),
        )?;
        let dir = dest.join(c.dir_name());
        fs_err::create_dir(&dir).map_err(werr(&dir))?;
        let file = fs_err::File::open(&blob).map_err(werr(&blob))?;
        let files = unpack_crate(c, file, &dir)?;
        let checksum = serde_json::json!({ "files": files, "package": c.checksum });
        let path = dir.join(".cargo-checksum.json");
        fs_err::write(&path, checksum.to_string()).map_err(werr(&path))?;
    }
    Ok(())
}

/// Unpacks a `.crate` (a tar.gz whose entries lie under `<name>-<version>/`) into `dir`;
/// gives the SHA-256 of each file by its path relative to `dir`.
fn unpack_crate(
    c: &LockedCrate,
    reader: impl Read,
    dir: &Path,
) -> Result<BTreeMap<String, String>, CrateError> {
    let prefix = c.dir_name();
    let hostile = |entry: &str, why: &str| CrateError::Hostile {
        name: c.name.clone(),
        version: c.version.clone(),
        entry: entry.to_string(),
        why: why.to_string(),
    };
    let io_err = |entry: &str, e: io::Error| hostile(entry, &format!("cannot read it: {e}"));
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    for entry in archive.entries().map_err(|e| io_err("(archive)", e))? {
        let mut entry = entry.map_err(|e| io_err("(archive)", e))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let name = std::str::from_utf8(&raw).map_err(|_| hostile(&shown, "not UTF-8"))?;
        let path = Path::new(name);
        if !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(hostile(&shown, "not a plain relative path"));
        }
        let Ok(rel) = path.strip_prefix(&prefix) else {
            return Err(hostile(&shown, &format!("outside `{prefix}/`")));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = dir.join(rel);
        match kind {
            tar::EntryType::Directory => {
                fs_err::create_dir_all(&target).map_err(|e| io_err(&shown, e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    fs_err::create_dir_all(parent).map_err(|e| io_err(&shown, e))?;
                }
                let mut out = fs_err::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|e| io_err(&shown, e))?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = entry.read(&mut buf).map_err(|e| io_err(&shown, e))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    io::Write::write_all(&mut out, &buf[..n]).map_err(|e| io_err(&shown, e))?;
                }
                let rel = rel
                    .to_str()
                    .ok_or_else(|| hostile(&shown, "not UTF-8"))?
                    .to_string();
                files.insert(rel, hex::encode(h.finalize()));
            }
            _ => return Err(hostile(&shown, "not a regular file or directory")),
        }
    }
    Ok(files)
}

/// The `.cargo/config.toml` text that makes cargo use the vendor directory at `vendor`.
pub fn vendor_config(vendor: &Path) -> String {
    format!(
        "[source.crates-io]\nreplace-with = \"vendored\"\n\n[source.vendored]\ndirectory = \"{}\"\n",
        vendor
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

//! The Debian archive client: InRelease, its OpenPGP signature, and the package and source indexes.
//!
//! For each suite, [`ArchiveClient::fetch_release`] downloads `dists/<suite>/InRelease` from
//! the first source that answers (see [`crate::mirrors`]), checks its signature against the
//! pinned keyring ([`signature::Keyring`]) and reads its SHA-256 list. Then
//! [`ArchiveClient::fetch_index`] downloads `Packages.xz` / `Sources.xz`, checks them against
//! that list and keeps them in the store by hash, so a second `hermetic lock` downloads
//! only the small `InRelease` files again.

pub mod release;
pub mod signature;

use std::io::Read;
use std::path::PathBuf;

use crate::fetch::{Attempt, Downloader, Location};
use crate::mirrors::archive_for_suite;
use crate::store::{Store, StoreError, sha256_hex};

pub use release::{Release, ReleaseError};
pub use signature::{Keyring, SignatureError};

/// The keyring file of a project, relative to its root.
pub const PROJECT_KEYRING: &str = "keys/debian-archive-keyring.pgp";

/// Errors talking to the archive. Each names the suite, file and URLs involved.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "cannot download InRelease of suite `{suite}` from any source:\n{tried}\nhint: check the network, or name a reachable mirror with --mirror URL (or HERMETIC_MIRRORS)"
    )]
    NoInRelease { suite: String, tried: String },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("InRelease of suite `{suite}` ({url})")]
    Release {
        suite: String,
        url: String,
        #[source]
        source: ReleaseError,
    },
    #[error(
        "InRelease of suite `{suite}` does not list `{path}`\nhint: check `components` and `architecture` in the [archive] table of hermetic.toml"
    )]
    NotListed { suite: String, path: String },
    #[error(
        "cannot download {path} of suite `{suite}` with the SHA-256 its InRelease names ({sha256}):\n{tried}\nhint: a mirror in the middle of an update serves mismatching files; try again later or use another --mirror"
    )]
    Index {
        suite: String,
        path: String,
        sha256: String,
        tried: String,
    },
    #[error("{path} of suite `{suite}` is not valid xz")]
    Decompress {
        suite: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A suite's verified `InRelease`.
#[derive(Debug, Clone)]
pub struct SuiteRelease {
    pub suite: String,
    pub archive: String,
    /// SHA-256 of the InRelease file as downloaded.
    pub inrelease_sha256: String,
    /// Where it came from.
    pub url: String,
    pub release: Release,
}

/// Downloads and verifies archive metadata.
pub struct ArchiveClient<'a> {
    pub downloader: &'a Downloader,
    pub store: &'a Store,
    pub keyring: &'a Keyring,
    /// Say on standard error which index is being downloaded.
    pub chatty: bool,
}

/// Formats a list of attempts, one per line, indented.
pub fn format_attempts(tried: &[Attempt]) -> String {
    if tried.is_empty() {
        return "  (no source serves this archive)".into();
    }
    tried
        .iter()
        .map(|a| format!("  {}: {}", a.url, a.error))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ArchiveClient<'_> {
    /// Downloads, verifies and parses `dists/<suite>/InRelease`. The file is kept in the store.
    pub fn fetch_release(&self, suite: &str) -> Result<SuiteRelease, ArchiveError> {
        let archive = archive_for_suite(suite);
        let path = format!("dists/{suite}/InRelease");
        let (url, bytes) = self.downloader.get_first(archive, &path).map_err(|tried| {
            ArchiveError::NoInRelease {
                suite: suite.to_string(),
                tried: format_attempts(&tried),
            }
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let signed = self.keyring.verify_inrelease(suite, &url, &text)?;
        let release = Release::parse(&signed).map_err(|source| ArchiveError::Release {
            suite: suite.to_string(),
            url: url.clone(),
            source,
        })?;
        let inrelease_sha256 = sha256_hex(&bytes);
        self.store.put_blob_bytes(&bytes)?;
        Ok(SuiteRelease {
            suite: suite.to_string(),
            archive: archive.to_string(),
            inrelease_sha256,
            url,
            release,
        })
    }

    /// Downloads (or finds in the store) the `.xz` index at `path` (relative to the suite's
    /// `dists/<suite>/`), checks it against the InRelease, and returns it decompressed.
    pub fn fetch_index(&self, rel: &SuiteRelease, path: &str) -> Result<String, ArchiveError> {
        let entry = rel
            .release
            .sha256
            .get(path)
            .ok_or_else(|| ArchiveError::NotListed {
                suite: rel.suite.clone(),
                path: path.to_string(),
            })?;
        let blob = if self.store.has_blob(&entry.sha256) {
            self.store.blob_path(&entry.sha256)
        } else {
            let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let mut paths = vec![format!("dists/{}/{path}", rel.suite)];
            if rel.release.acquire_by_hash {
                paths.push(format!(
                    "dists/{}/{dir}/by-hash/SHA256/{}",
                    rel.suite, entry.sha256
                ));
            }
            let location = Location::Archive {
                archive: rel.archive.clone(),
                paths,
            };
            if self.chatty {
                eprintln!(
                    "downloading {path} of {} ({})",
                    rel.suite,
                    human_size(entry.size)
                );
            }
            self.downloader
                .download(&location, &entry.sha256, Some(entry.size), &|_| {})
                .map_err(|tried| ArchiveError::Index {
                    suite: rel.suite.clone(),
                    path: path.to_string(),
                    sha256: entry.sha256.clone(),
                    tried: format_attempts(&tried),
                })?
        };
        decompress_xz(&blob).map_err(|source| ArchiveError::Decompress {
            suite: rel.suite.clone(),
            path: path.to_string(),
            source,
        })
    }
}

/// `12.3 MiB`, `45.6 KiB`, `789 B`.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn decompress_xz(path: &PathBuf) -> std::io::Result<String> {
    let file = fs_err::File::open(path)?;
    let mut dec = liblzma::read::XzDecoder::new(std::io::BufReader::new(file));
    let mut text = String::new();
    dec.read_to_string(&mut text)?;
    Ok(text)
}

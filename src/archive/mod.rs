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
use crate::hash::sha256_hex;
use crate::mirrors::archive_for_suite;
use crate::store::{Store, StoreError};

pub use release::{Release, ReleaseError, parse_date};
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
    #[error(
        "{url} was asked for suite `{suite}` but serves Codename `{codename}`, Suite `{served_suite}`\n\
         hint: the mirror serves another release under this name; use another --mirror"
    )]
    WrongSuite {
        suite: String,
        url: String,
        codename: String,
        served_suite: String,
    },
    #[error(
        "InRelease of suite `{suite}` ({url}) is dated {served}, older than the {locked} that pins.lock records: the archive state was rolled back\n\
         hint: use another --mirror; if the older state is wanted, run `hermetic lock --allow-downgrade`"
    )]
    Downgrade {
        suite: String,
        url: String,
        locked: String,
        served: String,
    },
    #[error(
        "InRelease of suite `{suite}` ({url}) expired: Valid-Until {valid_until} has passed\n\
         hint: the mirror is stale or replays an old state; use another --mirror (snapshot states, URLs with `/archive/<archive>/<YYYYMMDDTHHMMSSZ>/`, are exempt)"
    )]
    Expired {
        suite: String,
        url: String,
        valid_until: String,
    },
}

/// What makes a verified InRelease acceptable besides its signature.
#[derive(Debug, Clone)]
pub struct ReleasePolicy {
    /// The `Date` pins.lock records for the suite; an older one is refused.
    pub locked_date: Option<String>,
    /// Accept a `Date` older than `locked_date`.
    pub allow_downgrade: bool,
    /// The current time, for `Valid-Until`.
    pub now: std::time::SystemTime,
}

/// Whether `url` is a snapshot state: its path holds `/archive/<archive>/<timestamp>/` with
/// a `YYYYMMDDTHHMMSSZ` timestamp, as snapshot.debian.org (and `HERMETIC_SNAPSHOT_URL`)
/// serve them. Such a state is old by design: like apt with `Check-Valid-Until=no`,
/// `Valid-Until` is not enforced for it.
pub fn is_snapshot_url(url: &str) -> bool {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let parts: Vec<&str> = path.split('/').collect();
    parts.windows(3).any(|w| {
        w[0] == "archive"
            && matches!(w[1], "debian" | "debian-security")
            && is_snapshot_timestamp(w[2])
    })
}

/// Whether `s` is a snapshot.debian.org timestamp, `YYYYMMDDTHHMMSSZ`.
pub fn is_snapshot_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
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
    /// Says which index is being downloaded (`-v`: from where).
    pub report: crate::report::Reporter,
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
    /// Downloads, verifies and parses `dists/<suite>/InRelease`, and checks it against
    /// `policy`: its `Codename` or `Suite` must be `suite`, its `Date` not older than the
    /// locked one (unless allowed), its `Valid-Until` not passed (unless it comes from a
    /// snapshot state, [`is_snapshot_url`]). The file is kept in the store.
    pub fn fetch_release(
        &self,
        suite: &str,
        policy: &ReleasePolicy,
    ) -> Result<SuiteRelease, ArchiveError> {
        let archive = archive_for_suite(suite);
        let path = format!("dists/{suite}/InRelease");
        let (url, bytes) = self.downloader.get_first(archive, &path).map_err(|tried| {
            ArchiveError::NoInRelease {
                suite: suite.to_string(),
                tried: format_attempts(&tried),
            }
        })?;
        self.report.detail(format_args!(
            "read {path}, {} bytes, from {url}",
            bytes.len()
        ));
        let text = String::from_utf8_lossy(&bytes);
        let signed = self.keyring.verify_inrelease(suite, &url, &text)?;
        let release = Release::parse(&signed).map_err(|source| ArchiveError::Release {
            suite: suite.to_string(),
            url: url.clone(),
            source,
        })?;
        if release.codename.as_deref() != Some(suite) && release.suite.as_deref() != Some(suite) {
            return Err(ArchiveError::WrongSuite {
                suite: suite.to_string(),
                url,
                codename: release.codename.unwrap_or_else(|| "(none)".into()),
                served_suite: release.suite.unwrap_or_else(|| "(none)".into()),
            });
        }
        if let Some(locked) = &policy.locked_date
            && !policy.allow_downgrade
        {
            // A locked date that does not parse cannot be compared: the served one is
            // then taken as not older (the lock was written by an older hermetic).
            if release::parse_date(locked).is_some_and(|l| release.date_unix < l) {
                return Err(ArchiveError::Downgrade {
                    suite: suite.to_string(),
                    url,
                    locked: locked.clone(),
                    served: release.date,
                });
            }
        }
        if let Some(until) = release.valid_until
            && !is_snapshot_url(&url)
        {
            let now = policy
                .now
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            if until < now {
                let text = String::from_utf8_lossy(&bytes);
                let valid_until = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Valid-Until:"))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_else(|| until.to_string());
                return Err(ArchiveError::Expired {
                    suite: suite.to_string(),
                    url,
                    valid_until,
                });
            }
        }
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
            self.report.detail(format_args!(
                "{path} of {} from the store ({})",
                rel.suite, entry.sha256
            ));
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
                snapshot: None,
            };
            self.report.line(format_args!(
                "downloading {path} of {} ({})",
                rel.suite,
                human_size(entry.size)
            ));
            let (blob, url) = self
                .downloader
                .download_from(&location, &entry.sha256, Some(entry.size), &|_| {})
                .map_err(|tried| ArchiveError::Index {
                    suite: rel.suite.clone(),
                    path: path.to_string(),
                    sha256: entry.sha256.clone(),
                    tried: format_attempts(&tried),
                })?;
            if let Some(url) = url {
                self.report.detail(format_args!(
                    "fetched {path}, {} bytes, from {url}",
                    entry.size
                ));
            }
            blob
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_urls_are_told_by_their_shape() {
        assert!(is_snapshot_url(
            "https://snap.example/archive/debian/20261124T000000Z/dists/trixie/InRelease"
        ));
        assert!(is_snapshot_url(
            "http://127.0.0.1:8/archive/debian-security/20261124T000000Z/dists/x/InRelease"
        ));
        assert!(!is_snapshot_url(
            "http://mirror.example/debian/dists/trixie/InRelease"
        ));
        assert!(!is_snapshot_url(
            "http://m.example/archive/debian/latest/dists/trixie/InRelease"
        ));
        assert!(!is_snapshot_url(
            "http://m.example/archive/ubuntu/20261124T000000Z/dists/trixie/InRelease"
        ));
    }
}

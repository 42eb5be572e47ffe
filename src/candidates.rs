//! Where each pinned file is tried from, in order, and reading local sources.
//!
//! [`candidates`] turns a [`Location`] into the URLs a fetch tries, in order: every
//! `--mirror` (local ones included), snapshot.debian.org at the pin's timestamp (its own
//! for a package taken from another snapshot, else the project's), then the host's apt
//! mirrors. Only the last depends on today's mirror still carrying the file; a snapshot
//! state and a local copy do not change. [`plan`] lists them for every pin of a lock
//! (`hermetic fetch --plan`), without any network.
//!
//! `file://` candidates are read from disk by [`open_local`]; like every other copy, what
//! they hold is checked against the pinned size and SHA-256 before it enters the store.

use std::path::Path;

use crate::fetch::{FetchItem, Location};
use crate::http::Download;
use crate::lockfile::Lockfile;
use crate::mirrors::{Mirrors, SourceKind};

/// The reason recorded when a local source does not hold a file (like an HTTP 404).
pub const LOCAL_NOT_FOUND: &str = "not found (local)";

/// One URL to try for a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    /// `mirror`, `local`, `snapshot`, `apt`, or `url` (a tarball's own URL).
    pub source: &'static str,
    pub url: String,
}

fn kind_word(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Mirror => "mirror",
        SourceKind::Local => "local",
        SourceKind::Snapshot => "snapshot",
        SourceKind::Apt => "apt",
    }
}

/// The URLs to try for `location`, in order (before this run's dead or demoted hosts are
/// set aside).
pub fn candidates(mirrors: &Mirrors, location: &Location) -> Vec<Candidate> {
    match location {
        Location::Url(u) => vec![Candidate {
            source: "url",
            url: u.clone(),
        }],
        Location::Archive {
            archive,
            paths,
            snapshot,
        } => {
            let mut out = Vec::new();
            for source in mirrors.sources_for(archive) {
                for p in paths {
                    let url = match (source.kind, snapshot) {
                        // A pin from another snapshot lives at its own timestamp.
                        (SourceKind::Snapshot, Some(ts)) => mirrors
                            .snapshot_state(archive, ts)
                            .map(|base| format!("{base}{}", p.trim_start_matches('/')))
                            .unwrap_or_else(|| source.url_of(p)),
                        _ => source.url_of(p),
                    };
                    let c = Candidate {
                        source: kind_word(source.kind),
                        url,
                    };
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
            out
        }
    }
}

/// One pin and the URLs a fetch tries for it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedPin {
    /// `package version (filename)`, `source ...` or `tarball ...`.
    pub what: String,
    pub sha256: String,
    pub size: Option<u64>,
    /// The snapshot timestamp the pin was taken from, when not the project's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub candidates: Vec<Candidate>,
}

/// Every pin of `lock` (as [`crate::fetch::plan`] lists them, once per file) with its
/// candidate URLs, sorted by what it is.
pub fn plan(lock: &Lockfile, mirrors: &Mirrors) -> Vec<PlannedPin> {
    let mut pins: Vec<PlannedPin> = crate::fetch::plan(lock)
        .into_iter()
        .map(|item: FetchItem| PlannedPin {
            candidates: candidates(mirrors, &item.location),
            snapshot: match &item.location {
                Location::Archive { snapshot, .. } => snapshot.clone(),
                Location::Url(_) => None,
            },
            what: item.what,
            sha256: item.sha256,
            size: item.size,
        })
        .collect();
    pins.sort_by(|a, b| a.what.cmp(&b.what));
    pins
}

/// The text of `hermetic fetch --plan`: each pin, then its candidates numbered in order.
pub fn render_plan(pins: &[PlannedPin]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for p in pins {
        let _ = write!(out, "{} sha256 {}", p.what, p.sha256);
        if let Some(ts) = &p.snapshot {
            let _ = write!(out, " (from snapshot {ts})");
        }
        out.push('\n');
        if p.candidates.is_empty() {
            out.push_str("  (no source serves it: name one with --mirror)\n");
        }
        for (i, c) in p.candidates.iter().enumerate() {
            let _ = writeln!(out, "  {}. {:<8} {}", i + 1, c.source, c.url);
        }
    }
    out
}

/// Opens a `file://` URL for reading: `None` when `url` is not one. A missing file gives
/// [`LOCAL_NOT_FOUND`]; a path with a `..` component is refused (a pool path never has one).
pub fn open_local(url: &str) -> Option<Result<Download, String>> {
    let path = url.strip_prefix("file://")?;
    let path = Path::new(path);
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
        || !path.is_absolute()
    {
        return Some(Err(format!(
            "refused: `{url}` is not a plain absolute path"
        )));
    }
    Some(match fs_err::File::open(path) {
        Ok(file) => {
            let content_length = file.metadata().ok().map(|m| m.len());
            Ok(Download {
                reader: Box::new(file),
                content_length,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LOCAL_NOT_FOUND.into()),
        Err(e) => Err(format!("cannot read: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirrors::MirrorConfig;

    fn mirrors(local: &Path) -> Mirrors {
        Mirrors::new(&MirrorConfig {
            mirrors: vec![
                "http://one.example/debian".into(),
                local.display().to_string(),
            ],
            snapshot_base: Some("https://snap.example".into()),
            snapshot: Some("20261124T000000Z".into()),
            apt_root: None,
        })
        .unwrap()
    }

    #[test]
    fn order_is_mirrors_then_snapshot_at_the_pins_own_timestamp() {
        let media = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(media.path().join("pool")).unwrap();
        let m = mirrors(media.path());
        let loc = |snapshot: Option<&str>| Location::Archive {
            archive: "debian".into(),
            paths: vec!["pool/main/s/sd/sd_1_amd64.deb".into()],
            snapshot: snapshot.map(String::from),
        };
        let urls = |c: Vec<Candidate>| {
            c.into_iter()
                .map(|c| format!("{} {}", c.source, c.url))
                .collect::<Vec<_>>()
        };
        let dir = fs_err::canonicalize(media.path()).unwrap();
        assert_eq!(
            urls(candidates(&m, &loc(None))),
            [
                "mirror http://one.example/debian/pool/main/s/sd/sd_1_amd64.deb".to_string(),
                format!("local file://{}/pool/main/s/sd/sd_1_amd64.deb", dir.display()),
                "snapshot https://snap.example/archive/debian/20261124T000000Z/pool/main/s/sd/sd_1_amd64.deb".into(),
            ]
        );
        assert_eq!(
            urls(candidates(&m, &loc(Some("20240314T094714Z"))))[2],
            "snapshot https://snap.example/archive/debian/20240314T094714Z/pool/main/s/sd/sd_1_amd64.deb"
        );
    }

    #[test]
    fn a_flat_directory_is_searched_by_file_name() {
        let media = tempfile::tempdir().unwrap();
        fs_err::write(media.path().join("sd_1_amd64.deb"), b"x").unwrap();
        let m = mirrors(media.path());
        let c = candidates(
            &m,
            &Location::Archive {
                archive: "debian-security".into(),
                paths: vec!["pool/updates/main/s/sd/sd_1_amd64.deb".into()],
                snapshot: None,
            },
        );
        let dir = fs_err::canonicalize(media.path()).unwrap();
        assert_eq!(c[0].source, "local");
        assert_eq!(c[0].url, format!("file://{}/sd_1_amd64.deb", dir.display()));
        let mut d = open_local(&c[0].url).unwrap().unwrap();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut d.reader, &mut body).unwrap();
        assert_eq!(body, b"x");
        assert_eq!(d.content_length, Some(1));
    }

    #[test]
    fn local_reads_refuse_parent_components_and_report_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/../etc/passwd", dir.path().display());
        assert!(
            open_local(&url)
                .unwrap()
                .is_err_and(|e| e.starts_with("refused"))
        );
        let url = format!("file://{}/nothing.deb", dir.path().display());
        assert_eq!(
            open_local(&url).unwrap().err(),
            Some(LOCAL_NOT_FOUND.into())
        );
        assert!(open_local("http://x/y").is_none());
    }
}

//! Where each pinned file is tried from, in order, and reading local sources.
//!
//! [`candidates`] turns a [`Location`] into the URLs a fetch tries, in order: every
//! `--mirror` (local ones included), snapshot.debian.org at the pin's timestamp (its own
//! for a package taken from another snapshot, else the project's), then the host's apt
//! mirrors. Only the last depends on today's mirror still carrying the file; a snapshot
//! state and a local copy do not change. [`plan`] lists them for every pin of a lock
//! (`hermetic fetch --plan`), without any network.
//!
//! A suite read from a mirror's state records no snapshot timestamp. Its pins are looked for
//! on snapshot.debian.org at [`MIRROR_STATE_DELAY`] after its InRelease `Date`
//! ([`pin_snapshot`]): snapshot.debian.org imports the archive several times a day and
//! serves, for a timestamp, the newest import not after it, which then holds that state's
//! files unless they were removed within the day.
//!
//! `file://` candidates are read from disk by [`open_local`]; like every other copy, what
//! they hold is checked against the pinned size and SHA-256 before it enters the store.

use std::path::Path;

use crate::fetch::{FetchItem, Location};
use crate::http::Download;
use crate::lockfile::Lockfile;
use crate::mirrors::{Mirrors, SourceKind};

/// How long after a mirror state's InRelease `Date` its files are looked for on
/// snapshot.debian.org (see the module documentation).
pub const MIRROR_STATE_DELAY: i64 = 86_400;

/// The snapshot timestamp a pin of `suite` is looked for at when it is not the project's:
/// the pin's own (`[[archive.snapshot-package]]`), else, for a suite read from a mirror's
/// state, [`MIRROR_STATE_DELAY`] after its InRelease `Date`. `None`: the project's.
pub fn pin_snapshot(lock: &Lockfile, own: Option<&str>, suite: &str) -> Option<String> {
    if let Some(ts) = own {
        return Some(ts.to_string());
    }
    let s = lock.suites.iter().find(|s| s.name == suite)?;
    if s.snapshot.is_some() || s.index_source.is_none() {
        // A snapshot state, or a lock from before the source was recorded.
        return None;
    }
    let date = crate::archive::release::parse_date(&s.date)?;
    let at = u64::try_from(date + MIRROR_STATE_DELAY).ok()?;
    Some(
        crate::release::rfc3339(at)
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect(),
    )
}

/// The reason recorded when a local source does not hold a file (like an HTTP 404).
pub const LOCAL_NOT_FOUND: &str = "not found (local)";

/// One URL to try for a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    /// `mirror`, `local`, `snapshot`, `apt`, or `url` (a tarball's own URL); for upstream
    /// sources `dir` (a `--source-dir` path), `url` or `proxy` (a go-modules GOPROXY).
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
    /// The snapshot timestamp the file is looked for at, when not the project's
    /// ([`pin_snapshot`]).
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

/// One upstream source pin (`[[upstream]]`) and where a fetch looks for it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedSource {
    /// `git source `name` (repo at commit)`, `file source `name``, ….
    pub what: String,
    pub name: String,
    /// `sha256`, `tree-sha256` or `modules-sha256`.
    pub hash_field: &'static str,
    /// `None`: not pinned yet (a fetch refuses it; `hermetic lock` computes it).
    pub hash: Option<String>,
    /// In order: `source-dir` copies (paths), then `url`s (a go-modules pin: `proxy`s).
    pub candidates: Vec<Candidate>,
}

/// The upstream pins of `lock` a fetch would look for (not `path` sources, read from the
/// project), sorted by name, each with its `--source-dir` paths and URLs in the order tried.
pub fn plan_upstream(lock: &Lockfile, source_dirs: &[std::path::PathBuf]) -> Vec<PlannedSource> {
    use crate::sources::pin::SourcePin;
    let mut out: Vec<PlannedSource> = lock
        .upstream
        .iter()
        .filter(|u| !matches!(u.pin, SourcePin::Path { .. }))
        .map(|u| {
            let pin = &u.pin;
            let mut candidates = Vec::new();
            // The modules of a go-modules pin come from its proxies only.
            if !matches!(pin, SourcePin::GoModules { .. }) {
                for dir in source_dirs {
                    for path in crate::sources::fetch::local_candidates(dir, pin) {
                        candidates.push(Candidate {
                            source: "dir",
                            url: path.display().to_string(),
                        });
                    }
                }
            }
            let word = match pin {
                SourcePin::GoModules { .. } => "proxy",
                _ => "url",
            };
            candidates.extend(
                pin.urls()
                    .into_iter()
                    .map(|url| Candidate { source: word, url }),
            );
            PlannedSource {
                what: pin.describe(),
                name: pin.name().to_string(),
                hash_field: pin.hash_field(),
                hash: pin.content_hash().map(str::to_string),
                candidates,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The text of the upstream part of `hermetic fetch --plan`, like [`render_plan`].
pub fn render_upstream_plan(sources: &[PlannedSource]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for s in sources {
        match &s.hash {
            Some(h) => {
                let _ = writeln!(out, "{} {} {h}", s.what, s.hash_field);
            }
            None => {
                let _ = writeln!(
                    out,
                    "{} (no {} yet: run `hermetic lock`)",
                    s.what, s.hash_field
                );
            }
        }
        for (i, c) in s.candidates.iter().enumerate() {
            let _ = writeln!(out, "  {}. {:<8} {}", i + 1, c.source, c.url);
        }
    }
    out
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
    fn a_mirror_states_pins_are_looked_for_a_day_after_its_date() {
        use crate::lockfile::LockedSuite;
        let suite = |name: &str, source: Option<&str>, snapshot: Option<&str>| LockedSuite {
            name: name.into(),
            archive: "debian".into(),
            index_source: source.map(String::from),
            index_url: None,
            snapshot: snapshot.map(String::from),
            date: "Tue, 01 Dec 2026 08:12:40 UTC".into(),
            inrelease_sha256: String::new(),
            components: vec![],
            architecture: "amd64".into(),
        };
        let lock = Lockfile {
            suites: vec![
                suite("mirror", Some("apt-sources"), None),
                suite("snap", Some("snapshot"), Some("20261124T000000Z")),
                suite("old", None, Some("20261124T000000Z")),
            ],
            ..Default::default()
        };
        assert_eq!(
            pin_snapshot(&lock, None, "mirror").as_deref(),
            Some("20261202T081240Z")
        );
        assert_eq!(pin_snapshot(&lock, None, "snap"), None);
        assert_eq!(pin_snapshot(&lock, None, "old"), None);
        assert_eq!(
            pin_snapshot(&lock, Some("20240314T094714Z"), "mirror").as_deref(),
            Some("20240314T094714Z")
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

//! Where pinned files can be downloaded from: --mirror, HERMETIC_MIRRORS, snapshot.debian.org,
//! and the host's apt configuration.
//!
//! Debian publishes two archives: `debian` (most suites) and `debian-security` (suites whose
//! name ends in `-security`). A file is named by its archive and its path inside it (for
//! example `pool/main/k/kmod/kmod_34.2-2_amd64.deb`); [`Mirrors::urls`] turns that into the
//! list of URLs to try, in this order:
//!
//! 1. `--mirror URL` (repeatable), then the space-separated `HERMETIC_MIRRORS`. A URL whose
//!    last path component is an archive name (`.../debian`, `.../debian-security`) serves that
//!    archive only; any other URL is a root holding `debian/` and `debian-security/`. A
//!    `file://` URL or a plain directory is a local source (offline media, see
//!    [`local_layout`]): read from disk, no network.
//! 2. snapshot.debian.org at the pin's timestamp: the project's, or the pin's own for a
//!    package taken from another snapshot
//!    (`https://snapshot.debian.org/archive/<archive>/<timestamp>/`). `HERMETIC_SNAPSHOT_URL`
//!    replaces `https://snapshot.debian.org` (an empty value leaves snapshot out).
//! 3. The mirrors of the host's apt configuration (`/etc/apt/sources.list`,
//!    `/etc/apt/sources.list.d/*.list` and `*.sources`), each mapped to an archive by the
//!    last component of its URI. Any suite may be asked of them. `HERMETIC_APT_ROOT`
//!    replaces `/` as the directory the apt configuration is read under.
//!
//! Any copy is as good as another: every file is checked against its pinned SHA-256. A
//! source that cannot be reached at all is remembered as dead for the rest of the run. A
//! source that fails [`DEMOTE_AFTER`] times (timeouts, stalled transfers, refused or broken
//! connections, 5xx answers; a 404 is the file missing, not the source failing) is demoted:
//! tried after every other source for the rest of the run. Until a host has answered (and
//! again after each of its failures) one request at a time goes to it, so that parallel
//! downloads do not all wait on a host that does not answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

/// The Debian archive a suite lives in.
pub fn archive_for_suite(suite: &str) -> &'static str {
    if suite.ends_with("-security") {
        "debian-security"
    } else {
        "debian"
    }
}

const ARCHIVES: [&str; 2] = ["debian", "debian-security"];
const SNAPSHOT_DEFAULT: &str = "https://snapshot.debian.org";

/// Failures of a source (timeouts, stalls, refused or broken connections, 5xx answers) after
/// which it is tried only after all the others, for the rest of the run.
pub const DEMOTE_AFTER: u32 = 2;

/// Errors reading the mirror configuration. Each names the file or value.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("cannot read apt configuration {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "mirror `{url}` is not an http://, https:// or file:// URL, nor a directory\nhint: give --mirror (or HERMETIC_MIRRORS) URLs like http://host/debian, or the directory of a local copy (offline media)"
    )]
    BadUrl { url: String },
    #[error(
        "local mirror `{url}`: cannot open directory {path}\nhint: mount the offline media, or name the directory holding `pool/` (or `debian/`, or the .deb files)"
    )]
    LocalDir {
        url: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What kind of source a URL comes from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// `--mirror` or `HERMETIC_MIRRORS`.
    Mirror,
    /// snapshot.debian.org.
    Snapshot,
    /// The host's apt configuration.
    Apt,
    /// A `file://` URL or directory given as `--mirror` (offline media).
    Local,
}

/// How a local source lays out its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Like a Debian mirror: a file is found at its archive path (`pool/...`, `dists/...`).
    Archive,
    /// A flat directory of files by name: `pool/main/k/kmod/kmod_1_amd64.deb` is looked up
    /// as `kmod_1_amd64.deb`.
    Flat,
}

/// One place a given archive can be downloaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    /// The archive served.
    pub archive: String,
    /// URL of the archive root, ending in `/`.
    pub base: String,
    /// How files are found below `base` ([`Layout::Archive`] except for a flat local
    /// directory).
    pub layout: Layout,
}

impl Source {
    /// The URL of `path` (inside the archive) on this source.
    pub fn url_of(&self, path: &str) -> String {
        let path = path.trim_start_matches('/');
        match self.layout {
            Layout::Archive => format!("{}{path}", self.base),
            Layout::Flat => format!("{}{}", self.base, path.rsplit('/').next().unwrap_or(path)),
        }
    }
}

/// Every source, in order, and what this run learnt about their hosts.
#[derive(Debug, Default)]
pub struct Mirrors {
    sources: Vec<Source>,
    /// snapshot.debian.org (or its replacement) without trailing slash, when used.
    snapshot_base: Option<String>,
    /// By origin (`scheme://host:port`).
    hosts: Mutex<BTreeMap<String, Host>>,
    /// Signalled whenever a host's state changes (waiters of [`Mirrors::wait_turn`]).
    changed: Condvar,
}

/// What a run knows about one host.
#[derive(Debug, Default)]
struct Host {
    /// Answered at least once: a later failure to reach it is a hiccup, not a dead host.
    answered: bool,
    /// Unreachable before it ever answered: skipped for the rest of the run.
    dead: bool,
    /// Its last request got an answer: any number of requests may go at once.
    healthy: bool,
    /// A request to this (not healthy) host is out, waiting for its answer.
    probing: bool,
    /// Source failures so far.
    failures: u32,
    /// Failed [`DEMOTE_AFTER`] times: tried after every other source.
    demoted: bool,
}

/// Why [`Mirrors::wait_turn`] gives no turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The host could not be reached earlier in this run.
    Dead,
    /// The host failed repeatedly and other sources come first.
    Demoted,
}

/// The right to send one request to a host (see [`Mirrors::wait_turn`]). A probe of a host
/// not known to answer makes other requests to it wait until the outcome is reported
/// ([`Mirrors::mark_alive`], [`Mirrors::record_failure`], [`Mirrors::mark_dead`]) or the
/// turn is dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    mirrors: &'a Mirrors,
    origin: String,
    probe: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.probe {
            let mut hosts = self.mirrors.hosts();
            if let Some(h) = hosts.get_mut(&self.origin) {
                h.probing = false;
            }
            self.mirrors.changed.notify_all();
        }
    }
}

/// How to build a [`Mirrors`]: normally [`MirrorConfig::from_env`].
#[derive(Debug, Clone, Default)]
pub struct MirrorConfig {
    /// `--mirror` and `HERMETIC_MIRRORS`, in order.
    pub mirrors: Vec<String>,
    /// snapshot.debian.org (or its replacement) without trailing slash; `None` leaves it out.
    pub snapshot_base: Option<String>,
    /// The pinned snapshot timestamp.
    pub snapshot: Option<String>,
    /// The directory the apt configuration is read under (`/` normally); `None` skips apt.
    pub apt_root: Option<PathBuf>,
}

impl MirrorConfig {
    /// The configuration from the command line's `--mirror` list and the environment.
    pub fn from_env(cli_mirrors: &[String], snapshot: Option<&str>) -> MirrorConfig {
        let mut mirrors: Vec<String> = cli_mirrors.to_vec();
        if let Ok(env) = std::env::var("HERMETIC_MIRRORS") {
            mirrors.extend(env.split_whitespace().map(str::to_owned));
        }
        let snapshot_base = match std::env::var("HERMETIC_SNAPSHOT_URL") {
            Ok(v) if v.trim().is_empty() => None,
            Ok(v) => Some(v.trim().trim_end_matches('/').to_string()),
            Err(_) => Some(SNAPSHOT_DEFAULT.to_string()),
        };
        let apt_root = Some(
            std::env::var_os("HERMETIC_APT_ROOT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
        );
        MirrorConfig {
            mirrors,
            snapshot_base,
            snapshot: snapshot.map(str::to_owned),
            apt_root,
        }
    }
}

impl Mirrors {
    /// Builds the ordered source list.
    pub fn new(config: &MirrorConfig) -> Result<Mirrors, MirrorError> {
        let mut sources = Vec::new();
        for url in &config.mirrors {
            if url.starts_with("http://") || url.starts_with("https://") {
                sources.extend(archive_sources(SourceKind::Mirror, url, Layout::Archive));
            } else {
                sources.extend(local_sources(url)?);
            }
        }
        if let (Some(snap_base), Some(ts)) = (&config.snapshot_base, &config.snapshot) {
            for archive in ARCHIVES {
                sources.push(Source {
                    kind: SourceKind::Snapshot,
                    archive: archive.to_string(),
                    base: snapshot_state_url(snap_base, archive, ts),
                    layout: Layout::Archive,
                });
            }
        }
        if let Some(root) = &config.apt_root {
            for uri in apt_uris(root)? {
                if let Some(archive) = archive_of_uri(&uri) {
                    let base = format!("{}/", uri.trim_end_matches('/'));
                    let source = Source {
                        kind: SourceKind::Apt,
                        archive: archive.to_string(),
                        base,
                        layout: Layout::Archive,
                    };
                    if !sources.contains(&source) {
                        sources.push(source);
                    }
                }
            }
        }
        Ok(Mirrors {
            sources,
            snapshot_base: config.snapshot_base.clone(),
            ..Default::default()
        })
    }

    /// The URL of the snapshot state of `archive` at `timestamp` (ending in `/`), when
    /// snapshot.debian.org (or `HERMETIC_SNAPSHOT_URL`) is a source of this run.
    pub fn snapshot_state(&self, archive: &str, timestamp: &str) -> Option<String> {
        self.snapshot_base
            .as_ref()
            .map(|b| snapshot_state_url(b, archive, timestamp))
    }

    /// All sources, in order.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The sources serving `archive`, in order (dead ones included; see [`Mirrors::is_dead`]).
    pub fn sources_for(&self, archive: &str) -> Vec<&Source> {
        self.sources
            .iter()
            .filter(|s| s.archive == archive)
            .collect()
    }

    /// The URLs to try for `path` in `archive`, in order, leaving out dead hosts and putting
    /// demoted ones last.
    pub fn urls(&self, archive: &str, path: &str) -> Vec<String> {
        let urls = self
            .sources_for(archive)
            .into_iter()
            .map(|s| s.url_of(path))
            .filter(|u| !self.is_dead(u))
            .collect();
        self.in_order(urls)
    }

    /// `urls` with those of demoted hosts moved to the end (otherwise in the same order).
    pub fn in_order(&self, mut urls: Vec<String>) -> Vec<String> {
        urls.sort_by_key(|u| self.is_demoted(u));
        urls
    }

    fn hosts(&self) -> MutexGuard<'_, BTreeMap<String, Host>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, url: &str, f: impl FnOnce(&mut Host)) {
        f(self.hosts().entry(origin(url).to_string()).or_default());
        self.changed.notify_all();
    }

    /// Waits until a request may be sent to the host of `url`: at once when its last
    /// request was answered; else when no other request to it is out, this one then being
    /// the probe that finds out. The wait is bounded by the connect and response timeouts
    /// of the probe. No turn when the host is dead, or demoted unless `demoted_ok`.
    pub fn wait_turn(&self, url: &str, demoted_ok: bool) -> Result<Turn<'_>, Skip> {
        let origin = origin(url).to_string();
        let mut hosts = self.hosts();
        loop {
            let h = hosts.entry(origin.clone()).or_default();
            if h.dead {
                return Err(Skip::Dead);
            }
            if h.demoted && !demoted_ok {
                return Err(Skip::Demoted);
            }
            if h.healthy || !h.probing {
                let probe = !h.healthy;
                h.probing |= probe;
                return Ok(Turn {
                    mirrors: self,
                    origin,
                    probe,
                });
            }
            hosts = self.changed.wait(hosts).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Remembers that the host of `url` answered: a later failure to reach it (a stalled
    /// lookup, a timeout) is then taken as a hiccup, not as a dead source, and requests to
    /// it may go in parallel.
    pub fn mark_alive(&self, url: &str) {
        self.update(url, |h| {
            h.answered = true;
            h.healthy = true;
        });
    }

    /// Remembers that the host of `url` answered, though with a failure (a 5xx, counted by
    /// [`Mirrors::record_failure`]): it is not dead, but not healthy either.
    pub fn mark_reachable(&self, url: &str) {
        self.update(url, |h| h.answered = true);
    }

    /// Remembers that the host of `url` cannot be reached (unless it answered before).
    pub fn mark_dead(&self, url: &str) {
        self.update(url, |h| {
            h.dead |= !h.answered;
            h.healthy = false;
        });
    }

    /// Counts a failure of the host of `url` (a timeout, a stalled or broken transfer, a
    /// refused connection, a 5xx answer; `reason` says which). At the [`DEMOTE_AFTER`]th the
    /// host is demoted, and the line announcing it is returned (once per host).
    pub fn record_failure(&self, url: &str, reason: &str) -> Option<String> {
        let mut notice = None;
        self.update(url, |h| {
            h.failures += 1;
            h.healthy = false;
            if h.failures >= DEMOTE_AFTER && !h.demoted {
                h.demoted = true;
                notice = Some(format!(
                    "warning: {} failed {} times (last: {reason}); it is tried after the other sources for the rest of this run",
                    origin(url),
                    h.failures
                ));
            }
        });
        notice
    }

    /// Whether the host of `url` was found unreachable earlier in this run.
    pub fn is_dead(&self, url: &str) -> bool {
        self.hosts().get(origin(url)).is_some_and(|h| h.dead)
    }

    /// Whether the host of `url` failed repeatedly in this run.
    pub fn is_demoted(&self, url: &str) -> bool {
        self.hosts().get(origin(url)).is_some_and(|h| h.demoted)
    }
}

/// `<base>/archive/<archive>/<timestamp>/`: one state of snapshot.debian.org.
fn snapshot_state_url(snapshot_base: &str, archive: &str, timestamp: &str) -> String {
    format!("{snapshot_base}/archive/{archive}/{timestamp}/")
}

/// The sources of one URL: the archive its last component names, or both archives below it.
fn archive_sources(kind: SourceKind, url: &str, layout: Layout) -> Vec<Source> {
    let base = format!("{}/", url.trim_end_matches('/'));
    match archive_of_uri(url) {
        Some(archive) => vec![Source {
            kind,
            archive: archive.to_string(),
            base,
            layout,
        }],
        None => ARCHIVES
            .into_iter()
            .map(|archive| Source {
                kind,
                archive: archive.to_string(),
                base: format!("{base}{archive}/"),
                layout,
            })
            .collect(),
    }
}

/// The sources of a `file://` URL or a directory, laid out as [`local_layout`] finds it.
fn local_sources(url: &str) -> Result<Vec<Source>, MirrorError> {
    let raw = url.strip_prefix("file://").unwrap_or(url);
    if url.contains("://") && !url.starts_with("file://") || raw.is_empty() {
        return Err(MirrorError::BadUrl { url: url.into() });
    }
    let dir = fs_err::canonicalize(raw).map_err(|source| MirrorError::LocalDir {
        url: url.into(),
        path: PathBuf::from(raw),
        source,
    })?;
    let shape = local_layout(&dir).map_err(|source| MirrorError::LocalDir {
        url: url.into(),
        path: dir.clone(),
        source,
    })?;
    let base = format!("file://{}", dir.display());
    Ok(match shape {
        LocalShape::Root => archive_sources(SourceKind::Local, &base, Layout::Archive),
        LocalShape::OneArchive(Some(archive)) => vec![Source {
            kind: SourceKind::Local,
            archive: archive.into(),
            base: format!("{base}/"),
            layout: Layout::Archive,
        }],
        LocalShape::OneArchive(None) | LocalShape::Flat => {
            let layout = if shape == LocalShape::Flat {
                Layout::Flat
            } else {
                Layout::Archive
            };
            ARCHIVES
                .into_iter()
                .map(|archive| Source {
                    kind: SourceKind::Local,
                    archive: archive.into(),
                    base: format!("{base}/"),
                    layout,
                })
                .collect()
        }
    })
}

/// What a local directory holds (see [`local_layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalShape {
    /// `debian/` and/or `debian-security/` below it, each laid out like a mirror.
    Root,
    /// One archive laid out like a mirror (`pool/`, `dists/`): the archive its name says
    /// (`.../debian-security`), or, under any other name, both (offline media mixing them;
    /// their pool paths do not collide).
    OneArchive(Option<&'static str>),
    /// Neither: the files themselves, by name.
    Flat,
}

/// How a local mirror directory is laid out: a root holding `debian/` or
/// `debian-security/`; a mirror of one archive (it holds `pool/` or `dists/`); else a flat
/// directory of `.deb` files by name.
pub fn local_layout(dir: &Path) -> std::io::Result<LocalShape> {
    fs_err::read_dir(dir)?;
    if ARCHIVES.iter().any(|a| dir.join(a).is_dir()) {
        return Ok(LocalShape::Root);
    }
    if dir.join("pool").is_dir() || dir.join("dists").is_dir() {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        return Ok(LocalShape::OneArchive(
            ARCHIVES.into_iter().find(|a| *a == name),
        ));
    }
    Ok(LocalShape::Flat)
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// The archive a URI serves, by its last path component.
fn archive_of_uri(uri: &str) -> Option<&'static str> {
    let after_scheme = uri.find("://").map(|i| i + 3)?;
    let path = uri[after_scheme..]
        .find('/')
        .map(|i| &uri[after_scheme + i..])?;
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    ARCHIVES.into_iter().find(|a| *a == last)
}

/// The http(s) URIs of every enabled `deb`/`deb-src` entry of the apt configuration under
/// `root`, in file order (`sources.list`, then `sources.list.d/` sorted by name).
pub fn apt_uris(root: &Path) -> Result<Vec<String>, MirrorError> {
    let etc = root.join("etc/apt");
    let mut files = Vec::new();
    let main = etc.join("sources.list");
    if main.is_file() {
        files.push(main);
    }
    let dir = etc.join("sources.list.d");
    if dir.is_dir() {
        let entries = fs_err::read_dir(&dir).map_err(|source| MirrorError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut more: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("list" | "sources")
                )
            })
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut uris = Vec::new();
    for path in files {
        let text = fs_err::read_to_string(&path).map_err(|source| MirrorError::Read {
            path: path.clone(),
            source,
        })?;
        let found = if path.extension().and_then(|e| e.to_str()) == Some("sources") {
            uris_of_deb822(&text)
        } else {
            uris_of_one_line(&text)
        };
        for uri in found {
            if (uri.starts_with("http://") || uri.starts_with("https://")) && !uris.contains(&uri) {
                uris.push(uri);
            }
        }
    }
    Ok(uris)
}

/// URIs of the one-line format: `deb [opts] uri suite components...`.
fn uris_of_one_line(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        if !matches!(words.next(), Some("deb" | "deb-src")) {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        // Options: `[ key=value ... ]`, possibly spread over several words.
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']'));
            match end {
                Some(end) => {
                    rest.drain(..=end);
                }
                None => continue,
            }
        }
        if let Some(uri) = rest.first() {
            out.push(uri.to_string());
        }
    }
    out
}

/// URIs of the deb822 format: paragraphs with `Types`, `URIs`, `Enabled`.
fn uris_of_deb822(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut para: Vec<(String, String)> = Vec::new();
    let mut flush = |para: &mut Vec<(String, String)>| {
        let get = |k: &str| {
            para.iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let enabled = get("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        let types_ok = get("Types")
            .is_some_and(|t| t.split_whitespace().any(|t| t == "deb" || t == "deb-src"));
        if enabled && types_ok {
            for uri in get("URIs").unwrap_or("").split_whitespace() {
                out.push(uri.to_string());
            }
        }
        para.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut para);
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = para.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            para.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut para);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apt_root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc/apt/sources.list.d")).unwrap();
        for (name, text) in files {
            fs_err::write(dir.path().join("etc/apt").join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn reads_both_apt_formats() {
        let root = apt_root(&[
            (
                "sources.list",
                "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m1.example/debian bookworm main\n\
                 deb-src http://m1.example/debian bookworm main\ndeb cdrom:/x/ bookworm main\n",
            ),
            (
                "sources.list.d/a.sources",
                "Types: deb\n# http://commented.example/debian\nURIs: http://m2.example/debian\n\
                 Suites: bookworm\n\nTypes: deb\nURIs: https://m2.example/debian-security\n\
                 Suites: bookworm-security\n\nTypes: deb\nEnabled: no\nURIs: http://off.example/debian\n",
            ),
            (
                "sources.list.d/b.list.disabled",
                "deb http://never.example/debian x main\n",
            ),
        ]);
        assert_eq!(
            apt_uris(root.path()).unwrap(),
            [
                "http://m1.example/debian",
                "http://m2.example/debian",
                "https://m2.example/debian-security"
            ]
        );
    }

    #[test]
    fn order_is_mirror_snapshot_apt_and_dead_hosts_are_skipped() {
        let root = apt_root(&[(
            "sources.list",
            "deb http://apt.example/debian trixie main\ndeb http://apt.example/debian-security trixie-security main\ndeb http://other.example/ubuntu noble main\n",
        )]);
        let m = Mirrors::new(&MirrorConfig {
            mirrors: vec![
                "http://127.0.0.1:9/".into(),
                "http://one.example/debian/".into(),
            ],
            snapshot_base: Some("https://snap.example".into()),
            snapshot: Some("20261124T000000Z".into()),
            apt_root: Some(root.path().to_path_buf()),
        })
        .unwrap();
        let path = "pool/main/k/kmod/kmod.deb";
        assert_eq!(
            m.urls("debian", path),
            [
                "http://127.0.0.1:9/debian/pool/main/k/kmod/kmod.deb",
                "http://one.example/debian/pool/main/k/kmod/kmod.deb",
                "https://snap.example/archive/debian/20261124T000000Z/pool/main/k/kmod/kmod.deb",
                "http://apt.example/debian/pool/main/k/kmod/kmod.deb",
            ]
        );
        assert_eq!(
            m.urls(archive_for_suite("trixie-security"), "dists/x"),
            [
                "http://127.0.0.1:9/debian-security/dists/x",
                "https://snap.example/archive/debian-security/20261124T000000Z/dists/x",
                "http://apt.example/debian-security/dists/x",
            ]
        );
        m.mark_dead("https://snap.example/archive/debian/20261124T000000Z/dists/trixie/InRelease");
        assert_eq!(m.urls("debian-security", "y").len(), 2);
        assert!(m.is_dead("https://snap.example/whatever"));
        m.mark_alive("http://apt.example/debian/x");
        m.mark_dead("http://apt.example/debian/y");
        assert!(!m.is_dead("http://apt.example/debian-security/z"));
    }

    fn two_mirrors() -> Mirrors {
        Mirrors::new(&MirrorConfig {
            mirrors: vec!["http://slow.example/".into(), "http://good.example/".into()],
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn repeated_failures_demote_a_host_once() {
        let m = two_mirrors();
        let order = || m.urls("debian", "pool/f.deb");
        assert_eq!(
            order(),
            [
                "http://slow.example/debian/pool/f.deb",
                "http://good.example/debian/pool/f.deb"
            ]
        );
        assert_eq!(
            m.record_failure("http://slow.example/debian/a", "stalled"),
            None
        );
        assert!(!m.is_demoted("http://slow.example/x"));
        let notice = m
            .record_failure("http://slow.example/debian/b", "no response within 30 s")
            .unwrap();
        assert!(
            notice.starts_with(
                "warning: http://slow.example failed 2 times (last: no response within 30 s)"
            ),
            "{notice}"
        );
        assert_eq!(
            m.record_failure("http://slow.example/debian/c", "HTTP 503"),
            None
        );
        assert!(m.is_demoted("http://slow.example/debian-security/y"));
        assert!(!m.is_dead("http://slow.example/debian/a"));
        assert_eq!(
            order(),
            [
                "http://good.example/debian/pool/f.deb",
                "http://slow.example/debian/pool/f.deb"
            ]
        );
        assert_eq!(
            m.wait_turn("http://slow.example/debian/a", false)
                .unwrap_err(),
            Skip::Demoted
        );
        assert!(m.wait_turn("http://slow.example/debian/a", true).is_ok());
        m.mark_dead("http://gone.example/x");
        assert_eq!(
            m.wait_turn("http://gone.example/y", true).unwrap_err(),
            Skip::Dead
        );
    }

    #[test]
    fn one_probe_at_a_time_until_the_host_answers() {
        let m = two_mirrors();
        let url = "http://good.example/debian/f";
        let probe = m.wait_turn(url, false).unwrap();
        let waited = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let turn = m.wait_turn(url, false).unwrap();
                assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
                // The host answered: this is not a probe, and others need not wait.
                assert!(!turn.probe);
                let again = m.wait_turn(url, false).unwrap();
                assert!(!again.probe);
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(
                !waiter.is_finished(),
                "a second request went to an unproven host"
            );
            waited.store(true, std::sync::atomic::Ordering::SeqCst);
            m.mark_alive(url);
            drop(probe);
        });
        // A failure makes the host unproven again: the next request is a probe.
        m.record_failure(url, "stalled");
        assert!(m.wait_turn(url, false).unwrap().probe);
    }

    #[test]
    fn bad_mirror_url_is_an_error() {
        let err = Mirrors::new(&MirrorConfig {
            mirrors: vec!["ftp://ftp.example/debian".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("ftp.example/debian"), "{err}");
    }
}

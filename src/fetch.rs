//! Downloading every pin into the store.
//!
//! [`Downloader`] is the shared machinery (one pooled HTTP client, the ordered sources, the
//! store): it tries each candidate URL in turn, retries a truncated or wrong transfer once,
//! skips sources found unreachable earlier in the run, and publishes a file only once its
//! size and SHA-256 match. [`fetch`] runs it over every pin of `pins.lock` with parallel
//! workers; pins already in the store cost one `stat` each.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::http::{Http, HttpError};
use crate::lockfile::Lockfile;
use crate::mirrors::{Mirrors, archive_for_suite};
use crate::store::{Store, StoreError};

/// Parallel transfers.
pub const WORKERS: usize = 8;
/// Attempts per URL before moving to the next source.
const ATTEMPTS_PER_URL: usize = 2;

/// One failed attempt to get a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attempt {
    pub url: String,
    pub error: String,
}

/// Where a file can be downloaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Paths inside a Debian archive (`debian`, `debian-security`), tried on every source of
    /// that archive, in order; all paths name the same content.
    Archive { archive: String, paths: Vec<String> },
    /// One plain URL.
    Url(String),
}

/// A pin that no source could provide.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MissingPin {
    pub what: String,
    pub sha256: String,
    pub tried: Vec<Attempt>,
}

/// Errors of `hermetic fetch`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{} pin(s) could not be downloaded from any source:\n{}\nhint: `hermetic lock --update` re-pins against today's archive if the archive dropped these versions; --mirror URL adds a source", .missing.len(), format_missing(.missing))]
    Missing { missing: Vec<MissingPin> },
    #[error("--offline: {} pin(s) are not in the store {}:\n{}\nhint: run `hermetic fetch` without --offline where the network is reachable", .missing.len(), .store.display(), .missing.iter().map(|m| format!("  {} (sha256 {})", m.what, m.sha256)).collect::<Vec<_>>().join("\n"))]
    Offline {
        store: PathBuf,
        missing: Vec<MissingPin>,
    },
    #[error(transparent)]
    Mirrors(#[from] crate::mirrors::MirrorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn format_missing(missing: &[MissingPin]) -> String {
    let mut out = Vec::new();
    for m in missing {
        out.push(format!("  {} (sha256 {}); tried:", m.what, m.sha256));
        if m.tried.is_empty() {
            out.push("    (no source serves it)".into());
        }
        for a in &m.tried {
            out.push(format!("    {}: {}", a.url, a.error));
        }
    }
    out.join("\n")
}

/// The shared download machinery of a run.
pub struct Downloader {
    pub http: Http,
    pub mirrors: Mirrors,
    pub store: Store,
    requests: AtomicUsize,
}

impl Downloader {
    pub fn new(http: Http, mirrors: Mirrors, store: Store) -> Downloader {
        Downloader {
            http,
            mirrors,
            store,
            requests: AtomicUsize::new(0),
        }
    }

    /// HTTP requests made so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    fn candidate_urls(&self, location: &Location) -> Vec<String> {
        match location {
            Location::Url(u) => vec![u.clone()],
            Location::Archive { archive, paths } => {
                let mut urls: Vec<String> = Vec::new();
                for source in self.mirrors.sources_for(archive) {
                    for p in paths {
                        urls.push(format!("{}{}", source.base, p.trim_start_matches('/')));
                    }
                }
                urls
            }
        }
    }

    fn get(&self, url: &str) -> Result<crate::http::Download, HttpError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let r = self.http.get(url);
        match &r {
            Ok(_) | Err(HttpError::Status { .. }) => self.mirrors.mark_alive(url),
            Err(e) if e.is_unreachable() => self.mirrors.mark_dead(url),
            Err(_) => {}
        }
        r
    }

    /// Downloads the first copy of `path` any source of `archive` serves, whole, into memory
    /// (for small unpinned files like `InRelease`, which are checked by signature instead).
    pub fn get_first(&self, archive: &str, path: &str) -> Result<(String, Vec<u8>), Vec<Attempt>> {
        let location = Location::Archive {
            archive: archive.to_string(),
            paths: vec![path.to_string()],
        };
        let mut tried = Vec::new();
        for url in self.candidate_urls(&location) {
            if self.mirrors.is_dead(&url) {
                tried.push(Attempt {
                    url,
                    error: "skipped: host unreachable earlier in this run".into(),
                });
                continue;
            }
            let result = self.get(&url).and_then(|mut d| {
                let mut out = Vec::new();
                d.reader
                    .read_to_end(&mut out)
                    .map_err(|source| HttpError::Body {
                        url: url.clone(),
                        source,
                    })?;
                Ok(out)
            });
            match result {
                Ok(bytes) => return Ok((url, bytes)),
                Err(e) => tried.push(Attempt {
                    url,
                    error: e.reason(),
                }),
            }
        }
        Err(tried)
    }

    /// Downloads a pinned file into the store (unless already there) and returns its path.
    /// `on_bytes` is told of every chunk received. On failure, returns every attempt made.
    pub fn download(
        &self,
        location: &Location,
        sha256: &str,
        size: Option<u64>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<PathBuf, Vec<Attempt>> {
        let mut tried = Vec::new();
        for url in self.candidate_urls(location) {
            if self.store.has_blob(sha256) {
                return Ok(self.store.blob_path(sha256));
            }
            for _ in 0..ATTEMPTS_PER_URL {
                if self.mirrors.is_dead(&url) {
                    tried.push(Attempt {
                        url: url.clone(),
                        error: "skipped: host unreachable earlier in this run".into(),
                    });
                    break;
                }
                let mut download = match self.get(&url) {
                    Ok(d) => d,
                    Err(e @ HttpError::Status { .. }) | Err(e @ HttpError::Unreachable { .. }) => {
                        tried.push(Attempt {
                            url: url.clone(),
                            error: e.reason(),
                        });
                        break;
                    }
                    Err(e) => {
                        tried.push(Attempt {
                            url: url.clone(),
                            error: e.reason(),
                        });
                        continue;
                    }
                };
                if let (Some(expected), Some(announced)) = (size, download.content_length)
                    && expected != announced
                {
                    tried.push(Attempt {
                        url: url.clone(),
                        error: format!(
                            "server announces {announced} bytes, pinned size is {expected}"
                        ),
                    });
                    break;
                }
                let mut reader = Counting {
                    inner: &mut download.reader,
                    on_bytes,
                };
                match self.store.put_blob_from_reader(sha256, size, &mut reader) {
                    Ok(path) => return Ok(path),
                    Err(e) => tried.push(Attempt {
                        url: url.clone(),
                        error: error_text(&e),
                    }),
                }
            }
        }
        if self.store.has_blob(sha256) {
            return Ok(self.store.blob_path(sha256));
        }
        Err(tried)
    }
}

fn error_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

struct Counting<'a, R: Read + ?Sized> {
    inner: &'a mut R,
    on_bytes: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read + ?Sized> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_bytes)(n as u64);
        Ok(n)
    }
}

/// The downloader of a normal run: `--mirror` URLs, then `HERMETIC_MIRRORS`, snapshot.debian.org
/// at `snapshot`, and the host's apt mirrors (see [`crate::mirrors`]).
pub fn default_downloader(
    store: &Store,
    cli_mirrors: &[String],
    snapshot: &str,
) -> Result<Downloader, FetchError> {
    let mirrors = Mirrors::new(&crate::mirrors::MirrorConfig::from_env(
        cli_mirrors,
        Some(snapshot),
    ))?;
    Ok(Downloader::new(Http::new(), mirrors, store.clone()))
}

/// One file to have in the store.
#[derive(Debug, Clone)]
pub struct FetchItem {
    /// For messages: `package version (filename)`.
    pub what: String,
    pub sha256: String,
    pub size: Option<u64>,
    pub location: Location,
}

/// Every file `pins.lock` pins, once each (by hash), sorted by hash.
pub fn plan(lock: &Lockfile) -> Vec<FetchItem> {
    let mut items: BTreeMap<String, FetchItem> = BTreeMap::new();
    for p in &lock.packages {
        items.entry(p.sha256.clone()).or_insert_with(|| FetchItem {
            what: format!("{} {} ({})", p.name, p.version, p.filename),
            sha256: p.sha256.clone(),
            size: Some(p.size),
            location: Location::Archive {
                archive: archive_for_suite(&p.suite).to_string(),
                paths: vec![p.filename.clone()],
            },
        });
    }
    for s in &lock.sources {
        for f in &s.files {
            items.entry(f.sha256.clone()).or_insert_with(|| FetchItem {
                what: format!("source {} {} ({})", s.name, s.version, f.name),
                sha256: f.sha256.clone(),
                size: Some(f.size),
                location: Location::Archive {
                    archive: archive_for_suite(&s.suite).to_string(),
                    paths: vec![format!("{}/{}", s.directory, f.name)],
                },
            });
        }
    }
    for t in &lock.tarballs {
        items.entry(t.sha256.clone()).or_insert_with(|| FetchItem {
            what: format!("tarball {} ({})", t.name, t.url),
            sha256: t.sha256.clone(),
            size: t.size,
            location: Location::Url(t.url.clone()),
        });
    }
    items.into_values().collect()
}

/// What a fetch did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FetchSummary {
    /// Files downloaded.
    pub fetched: usize,
    /// Bytes of the files downloaded.
    pub bytes: u64,
    /// Files that were already in the store.
    pub already: usize,
    /// HTTP requests made.
    pub requests: usize,
    pub seconds: f64,
}

impl std::fmt::Display for FetchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fetched {} files, {:.1} MiB in {:.1} s; {} already in store",
            self.fetched,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.seconds,
            self.already
        )
    }
}

/// Options of [`fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Never touch the network; fail listing every missing pin.
    pub offline: bool,
    /// Show a progress bar (when standard error is a terminal).
    pub progress: bool,
}

/// Brings every pin of `lock` into the store. `make_downloader` is only called when
/// something is missing, so a complete store costs no network set-up at all.
pub fn fetch(
    store: &Store,
    lock: &Lockfile,
    options: &FetchOptions,
    make_downloader: &dyn Fn() -> Result<Downloader, FetchError>,
) -> Result<FetchSummary, FetchError> {
    let start = Instant::now();
    let items = plan(lock);
    let missing_now = |items: &[FetchItem]| -> Vec<FetchItem> {
        items
            .iter()
            .filter(|i| !store.has_blob(&i.sha256))
            .cloned()
            .collect()
    };
    let mut todo = missing_now(&items);
    let mut summary = FetchSummary {
        already: items.len() - todo.len(),
        ..Default::default()
    };
    if todo.is_empty() {
        summary.seconds = start.elapsed().as_secs_f64();
        return Ok(summary);
    }
    if options.offline {
        return Err(FetchError::Offline {
            store: store.root().to_path_buf(),
            missing: todo
                .into_iter()
                .map(|i| MissingPin {
                    what: i.what,
                    sha256: i.sha256,
                    tried: Vec::new(),
                })
                .collect(),
        });
    }
    // One fetch at a time per store: a second process waits, then finds the files present.
    let _in_use = store.use_guard()?;
    let _lock = store.lock("fetch")?;
    todo = missing_now(&items);
    summary.already = items.len() - todo.len();
    if todo.is_empty() {
        summary.seconds = start.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let downloader = make_downloader()?;
    // Largest first: the long transfers start early and the tail is short.
    todo.sort_by(|a, b| b.size.cmp(&a.size).then(a.sha256.cmp(&b.sha256)));
    let total_bytes: u64 = todo.iter().filter_map(|i| i.size).sum();
    let bar = if options.progress && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let failed: Mutex<Vec<MissingPin>> = Mutex::new(Vec::new());
    let count = todo.len();
    bar.set_message(format!("0/{count} files"));
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(count) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = todo.get(i) else { break };
                    let on_bytes = |n: u64| bar.inc(n);
                    match downloader.download(&item.location, &item.sha256, item.size, &on_bytes) {
                        Ok(path) => {
                            let size = item
                                .size
                                .or_else(|| fs_err::metadata(&path).ok().map(|m| m.len()))
                                .unwrap_or(0);
                            bytes.fetch_add(size, Ordering::Relaxed);
                            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                            bar.set_message(format!("{d}/{count} files"));
                        }
                        Err(tried) => {
                            failed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(MissingPin {
                                    what: item.what.clone(),
                                    sha256: item.sha256.clone(),
                                    tried,
                                })
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    if !failed.is_empty() {
        failed.sort_by(|a, b| a.what.cmp(&b.what));
        return Err(FetchError::Missing { missing: failed });
    }
    summary.fetched = done.into_inner();
    summary.bytes = bytes.into_inner();
    summary.requests = downloader.requests();
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockfile::{PinnedPackage, PinnedSource, PinnedSourceFile};

    #[test]
    fn plan_has_each_file_once_with_its_archive() {
        let pkg = |name: &str, suite: &str, sha: &str| PinnedPackage {
            name: name.into(),
            version: "1".into(),
            architecture: "amd64".into(),
            suite: suite.into(),
            filename: format!("pool/main/{name}.deb"),
            size: 3,
            sha256: sha.repeat(64),
            source: name.into(),
            source_version: "1".into(),
            recipes: vec!["base".into()],
            ..Default::default()
        };
        let lock = Lockfile {
            packages: vec![
                pkg("a", "trixie", "a"),
                pkg("b", "trixie-security", "b"),
                // Same content under two names: fetched once.
                pkg("c", "trixie", "a"),
            ],
            sources: vec![PinnedSource {
                name: "s".into(),
                version: "1".into(),
                suite: "trixie".into(),
                directory: "pool/main/s/s".into(),
                files: vec![PinnedSourceFile {
                    name: "s_1.dsc".into(),
                    size: 1,
                    sha256: "c".repeat(64),
                }],
                recipes: vec!["base".into()],
            }],
            ..Default::default()
        };
        let items = plan(&lock);
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[1].location,
            Location::Archive {
                archive: "debian-security".into(),
                paths: vec!["pool/main/b.deb".into()],
            }
        );
        assert_eq!(
            items[2].location,
            Location::Archive {
                archive: "debian".into(),
                paths: vec!["pool/main/s/s/s_1.dsc".into()],
            }
        );
    }

    #[test]
    fn summary_line() {
        let s = FetchSummary {
            fetched: 123,
            bytes: 47_815_065,
            already: 10,
            requests: 123,
            seconds: 3.21,
        };
        assert_eq!(
            s.to_string(),
            "fetched 123 files, 45.6 MiB in 3.2 s; 10 already in store"
        );
    }
}

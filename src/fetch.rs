//! Downloading every pin into the store.
//!
//! [`Downloader`] is the shared machinery (one pooled HTTP client, the ordered sources, the
//! store): it tries each candidate URL in turn, retries a truncated or wrong transfer once,
//! skips sources found unreachable earlier in the run, tries sources that failed repeatedly
//! last, and publishes a file only once its size and SHA-256 match. Every transfer is held
//! to the [`Limits`] of the client (response timeout, minimum rate, per-file deadline).
//! [`fetch`] runs it over every pin of `pins.lock` with parallel workers; pins already in
//! the store cost one `stat` each.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::http::{Http, HttpError, Limits, Stalled};
use crate::lockfile::Lockfile;
use crate::mirrors::{Mirrors, Skip, archive_for_suite};
use crate::store::{Store, StoreError};

/// Parallel transfers.
pub const WORKERS: usize = 8;
/// How often a status line is printed when standard error is not a terminal.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
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
    /// that archive, in order; all paths name the same content. `snapshot` is the
    /// snapshot.debian.org timestamp to look for them at when it is not the project's
    /// ([`crate::candidates::pin_snapshot`]).
    Archive {
        archive: String,
        paths: Vec<String>,
        snapshot: Option<String>,
    },
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
    #[error("{} pin(s) could not be downloaded from any source:\n{}", .missing.len(), format_missing(.missing))]
    Missing { missing: Vec<MissingPin> },
    #[error("--offline: {} pin(s) are not in the store {}:\n{}", .missing.len(), .store.display(), .missing.iter().map(|m| format!("  {} (sha256 {})", m.what, m.sha256)).collect::<Vec<_>>().join("\n"))]
    Offline {
        store: PathBuf,
        missing: Vec<MissingPin>,
    },
    #[error(transparent)]
    Mirrors(#[from] crate::mirrors::MirrorError),
    #[error(transparent)]
    Limits(#[from] crate::http::LimitsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::error::Diagnostic for FetchError {
    fn hints(&self) -> Vec<String> {
        match self {
            FetchError::Missing { missing } => std::iter::once(missing_hint(missing))
                .chain(slow_hint(missing).map(str::to_string))
                .collect(),
            FetchError::Offline { .. } => vec![
                "run `hermetic fetch` without --offline where the network is reachable, or name \
                 a local copy of the archive (offline media) with --mirror DIR"
                    .into(),
            ],
            FetchError::Limits(e) => e.hints(),
            // The others still say their hint in their message, if they have one.
            FetchError::Mirrors(_) | FetchError::Store(_) => Vec::new(),
        }
    }

    fn subject(&self) -> crate::error::Subject {
        match self {
            FetchError::Missing { missing } if missing.len() == 1 => {
                crate::error::Subject::package(&missing[0].what)
            }
            FetchError::Offline { store, missing } => crate::error::Subject {
                file: Some(store.clone()),
                package: (missing.len() == 1).then(|| missing[0].what.clone()),
                url: None,
            },
            FetchError::Limits(e) => e.subject(),
            _ => crate::error::Subject::default(),
        }
    }
}

/// Whether an attempt got an answer saying the file is not there.
fn is_gone(a: &Attempt) -> bool {
    a.error == "HTTP 404" || a.error == "HTTP 410" || a.error == crate::candidates::LOCAL_NOT_FOUND
}

/// Whether an attempt never reached the source (no connection, or skipped as unreachable).
fn is_unreachable(a: &Attempt) -> bool {
    a.error.starts_with("unreachable") || a.error == SKIPPED_DEAD
}

/// The hint that fits why the pins are missing. Only when every source that answered said
/// "not found" for every pin is re-pinning suggested, with what it means for attesters; when
/// no source answered at all, the network (or the source list) is the cause.
fn missing_hint(missing: &[MissingPin]) -> String {
    let attempts = || missing.iter().flat_map(|m| &m.tried);
    if attempts().all(is_unreachable) {
        return "no source could be reached (every attempt failed to connect): check the network, \
                or name a reachable mirror with --mirror URL (or HERMETIC_MIRRORS), or a local \
                copy of the archive with --mirror DIR; the pins are not the problem"
            .into();
    }
    let gone = missing.iter().all(|m| {
        m.tried.iter().any(is_gone) && m.tried.iter().all(|a| is_gone(a) || is_unreachable(a))
    });
    if gone {
        let unreachable = attempts().any(is_unreachable);
        return format!(
            "every source that answered no longer has these files{}: name a mirror, \
             snapshot or local copy that keeps them (--mirror URL or DIR, \
             HERMETIC_SNAPSHOT_URL), or re-pin with \
             `hermetic lock --update PKG...`, which changes the image's bytes: whoever attests \
             an image built from this pins.lock must rebuild from the new one instead",
            if unreachable {
                " (some sources could not be reached and may still have them)"
            } else {
                ""
            }
        );
    }
    "a source failed or served other bytes; try again later, or add a source with --mirror URL"
        .into()
}

/// A second hint when a source stalled or did not answer in time.
fn slow_hint(missing: &[MissingPin]) -> Option<&'static str> {
    let slow = missing.iter().flat_map(|m| &m.tried).any(|a| {
        a.error.starts_with("stalled")
            || a.error.starts_with("too slow")
            || a.error.starts_with("no response within")
    });
    slow.then_some(
        "a source stalled or did not answer in time; on a slow link, lower HERMETIC_FETCH_MIN_RATE or raise HERMETIC_FETCH_RESPONSE_TIMEOUT (docs/pins.md)",
    )
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
    /// Where notices go (a source demoted): standard error unless [`Downloader::on_notice`]
    /// says otherwise.
    notice: Mutex<NoticeSink>,
}

/// Where [`Downloader`] notices go.
type NoticeSink = Box<dyn Fn(&str) + Send + Sync>;

/// Why a request was not made or failed.
enum Failure {
    Skipped(Skip),
    Http(HttpError),
    /// A local (`file://`) source could not give the file; the reason.
    Local(String),
}

/// What to do after trying one URL.
enum Flow<T> {
    Done(T),
    /// Try the next URL.
    Next,
    /// The host was demoted: try this URL again after all the others.
    Defer,
}

const SKIPPED_DEAD: &str = "skipped: host unreachable earlier in this run";

impl Downloader {
    pub fn new(http: Http, mirrors: Mirrors, store: Store) -> Downloader {
        Downloader {
            http,
            mirrors,
            store,
            requests: AtomicUsize::new(0),
            notice: Mutex::new(Box::new(|line| eprintln!("{line}"))),
        }
    }

    /// Sends notices (a source demoted) to `sink` instead of standard error.
    pub fn on_notice(&self, sink: impl Fn(&str) + Send + Sync + 'static) {
        *self.notice.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(sink);
    }

    /// HTTP requests made so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    fn candidate_urls(&self, location: &Location) -> Vec<String> {
        crate::candidates::candidates(&self.mirrors, location)
            .into_iter()
            .map(|c| c.url)
            .collect()
    }

    /// Counts a failure of the source of `url`; says so when that demotes it.
    fn source_failed(&self, url: &str, reason: &str) {
        if let Some(line) = self.mirrors.record_failure(url, reason) {
            (self.notice.lock().unwrap_or_else(|e| e.into_inner()))(&line);
        }
    }

    /// One GET, sent when the host of `url` gives a turn (see [`Mirrors::wait_turn`]), its
    /// outcome told to [`Mirrors`].
    fn get(
        &self,
        url: &str,
        size: Option<u64>,
        demoted_ok: bool,
    ) -> Result<crate::http::Download, Failure> {
        // A local copy: no host, no turn, no network.
        if let Some(local) = crate::candidates::open_local(url) {
            return local.map_err(Failure::Local);
        }
        let turn = self
            .mirrors
            .wait_turn(url, demoted_ok)
            .map_err(Failure::Skipped)?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let r = self.http.get(url, size);
        match &r {
            Ok(_) => self.mirrors.mark_alive(url),
            Err(e @ HttpError::Status { .. }) if e.is_source_failure() => {
                self.mirrors.mark_reachable(url);
                self.source_failed(url, &e.reason());
            }
            Err(HttpError::Status { .. }) => self.mirrors.mark_alive(url),
            Err(e) => {
                if e.is_unreachable() {
                    self.mirrors.mark_dead(url);
                }
                self.source_failed(url, &e.reason());
            }
        }
        drop(turn);
        r.map_err(Failure::Http)
    }

    /// Runs `attempt` on each URL in turn until it is done: dead hosts are skipped, and
    /// the URLs of demoted hosts (also those demoted meanwhile) are tried after all others.
    /// `attempt` gets the URL and whether it may go to a demoted host.
    fn each_url<T>(
        &self,
        urls: Vec<String>,
        mut attempt: impl FnMut(&str, bool) -> Flow<T>,
    ) -> Option<T> {
        let mut queue: std::collections::VecDeque<(String, bool)> = self
            .mirrors
            .in_order(urls)
            .into_iter()
            .map(|u| (u, false))
            .collect();
        while let Some((url, deferred)) = queue.pop_front() {
            match attempt(&url, deferred) {
                Flow::Done(t) => return Some(t),
                Flow::Next => {}
                Flow::Defer => queue.push_back((url, true)),
            }
        }
        None
    }

    /// Downloads the first copy of `path` any source of `archive` serves, whole, into memory
    /// (for small unpinned files like `InRelease`, which are checked by signature instead).
    pub fn get_first(&self, archive: &str, path: &str) -> Result<(String, Vec<u8>), Vec<Attempt>> {
        let location = Location::Archive {
            archive: archive.to_string(),
            paths: vec![path.to_string()],
            snapshot: None,
        };
        let mut tried = Vec::new();
        let found = self.each_url(self.candidate_urls(&location), |url, demoted_ok| {
            let result = match self.get(url, None, demoted_ok) {
                Err(Failure::Skipped(Skip::Demoted)) => return Flow::Defer,
                Err(Failure::Skipped(Skip::Dead)) => {
                    tried.push(Attempt {
                        url: url.to_string(),
                        error: SKIPPED_DEAD.into(),
                    });
                    return Flow::Next;
                }
                Err(Failure::Local(reason)) => {
                    tried.push(Attempt {
                        url: url.to_string(),
                        error: reason,
                    });
                    return Flow::Next;
                }
                Err(Failure::Http(e)) => Err(e),
                Ok(mut d) => {
                    let mut out = Vec::new();
                    match d.reader.read_to_end(&mut out) {
                        Ok(_) => Ok(out),
                        Err(source) => {
                            let e = crate::http::body_error(url, source);
                            self.source_failed(url, &e.reason());
                            Err(e)
                        }
                    }
                }
            };
            match result {
                Ok(bytes) => Flow::Done((url.to_string(), bytes)),
                Err(e) => {
                    tried.push(Attempt {
                        url: url.to_string(),
                        error: e.reason(),
                    });
                    Flow::Next
                }
            }
        });
        found.ok_or(tried)
    }

    /// Downloads a pinned file into the store (unless already there) and returns its path.
    /// `on_bytes` is told of every chunk received. On failure, returns every attempt made.
    ///
    /// A truncated or wrong transfer is tried once more from the same URL; a source that
    /// does not answer, stalls or fails with a 5xx is left for the next one at once.
    pub fn download(
        &self,
        location: &Location,
        sha256: &str,
        size: Option<u64>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<PathBuf, Vec<Attempt>> {
        self.download_from(location, sha256, size, on_bytes)
            .map(|(path, _)| path)
    }

    /// [`Downloader::download`], also returning the URL the file came from (`None` when
    /// another process stored it meanwhile).
    pub fn download_from(
        &self,
        location: &Location,
        sha256: &str,
        size: Option<u64>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(PathBuf, Option<String>), Vec<Attempt>> {
        // A shared cache first (checked by the same hash); then the mirrors.
        if let Some(path) = crate::cache::substitute_blob(&self.store, sha256, size, on_bytes) {
            return Ok((path, None));
        }
        let mut tried = Vec::new();
        let found = self.each_url(self.candidate_urls(location), |url, demoted_ok| {
            let mut attempt_failed = |error: String| {
                tried.push(Attempt {
                    url: url.to_string(),
                    error,
                })
            };
            for _ in 0..ATTEMPTS_PER_URL {
                if self.store.has_blob(sha256) {
                    return Flow::Done((self.store.blob_path(sha256), None));
                }
                let mut download = match self.get(url, size, demoted_ok) {
                    Ok(d) => d,
                    Err(Failure::Skipped(Skip::Demoted)) => return Flow::Defer,
                    Err(Failure::Skipped(Skip::Dead)) => {
                        attempt_failed(SKIPPED_DEAD.into());
                        return Flow::Next;
                    }
                    // A connection that broke before the answer (a stale pooled one, say):
                    // once more.
                    Err(Failure::Http(e @ HttpError::Request { .. })) => {
                        attempt_failed(e.reason());
                        continue;
                    }
                    Err(Failure::Http(e)) => {
                        attempt_failed(e.reason());
                        return Flow::Next;
                    }
                    Err(Failure::Local(reason)) => {
                        attempt_failed(reason);
                        return Flow::Next;
                    }
                };
                if let (Some(expected), Some(announced)) = (size, download.content_length)
                    && expected != announced
                {
                    attempt_failed(format!(
                        "server announces {announced} bytes, pinned size is {expected}"
                    ));
                    return Flow::Next;
                }
                let mut reader = Counting {
                    inner: &mut download.reader,
                    on_bytes,
                };
                match self.store.put_blob_from_reader(sha256, size, &mut reader) {
                    Ok(path) => return Flow::Done((path, Some(url.to_string()))),
                    // The transfer broke or stalled: the source's fault.
                    Err(e @ StoreError::Read { .. }) => {
                        let stalled = Stalled::find(&e);
                        let reason = match stalled {
                            Some(s) => s.reason_and_bytes(),
                            None => error_text(&e),
                        };
                        self.source_failed(url, &reason);
                        attempt_failed(reason);
                        if stalled.is_some() {
                            return Flow::Next;
                        }
                    }
                    Err(e) => attempt_failed(error_text(&e)),
                }
            }
            Flow::Next
        });
        match found {
            Some(found) => Ok(found),
            None if self.store.has_blob(sha256) => Ok((self.store.blob_path(sha256), None)),
            None => Err(tried),
        }
    }
}

/// An error and its causes on one line, `: `-separated.
pub fn error_text(e: &dyn std::error::Error) -> String {
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
    let limits = Limits::from_env()?;
    Ok(Downloader::new(
        Http::with_limits(limits),
        mirrors,
        store.clone(),
    ))
}

/// The downloader of `fetch --offline --mirror DIR`: the local sources `dirs` (`file://`
/// URLs or directories; anything else is refused by [`Mirrors::new`]) and nothing else: no
/// snapshot, no apt mirrors, so no request can leave the machine.
pub fn local_downloader(store: &Store, dirs: &[String]) -> Result<Downloader, FetchError> {
    let mirrors = Mirrors::new(&crate::mirrors::MirrorConfig {
        mirrors: dirs.to_vec(),
        ..Default::default()
    })?;
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
                snapshot: crate::candidates::pin_snapshot(lock, p.snapshot.as_deref(), &p.suite),
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
                    snapshot: crate::candidates::pin_snapshot(lock, None, &s.suite),
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

/// The periodic status line of a fetch whose standard error is not a terminal.
struct Status<'a> {
    done: usize,
    failed: usize,
    count: usize,
    received: u64,
    total_bytes: u64,
    elapsed: Duration,
    in_flight: &'a [String],
}

impl std::fmt::Display for Status<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::archive::human_size;
        let rate = self.received as f64 / self.elapsed.as_secs_f64().max(0.001);
        write!(
            f,
            "fetching: {}/{} files, {} of {} received, {}/s",
            self.done,
            self.count,
            human_size(self.received),
            human_size(self.total_bytes),
            human_size(rate as u64)
        )?;
        if self.failed > 0 {
            write!(f, ", {} failed", self.failed)?;
        }
        if let Some((first, rest)) = self.in_flight.split_first() {
            write!(f, "; in progress: {first}")?;
            for name in rest.iter().take(2) {
                write!(f, ", {name}")?;
            }
            if rest.len() > 2 {
                write!(f, " and {} more", rest.len() - 2)?;
            }
        }
        Ok(())
    }
}

/// Options of [`fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Never touch the network; fail listing every missing pin.
    pub offline: bool,
    /// What to say: a bar on a terminal, plain lines otherwise (a line per file and a status
    /// line every few seconds); `-v`: each file with the URL it came from.
    pub report: crate::report::Reporter,
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
    let count = todo.len();
    // On a terminal, a bar; otherwise (a log, a pipe) plain lines: one per file and a status
    // line every PROGRESS_INTERVAL.
    let report = &options.report;
    let lines = report.plain_lines();
    let bar = report.byte_bar(total_bytes);
    {
        let report = report.clone();
        downloader.on_notice(move |line| report.line(line));
    }
    if lines {
        report.line(format_args!(
            "fetching {count} files ({})",
            crate::archive::human_size(total_bytes)
        ));
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let received = AtomicU64::new(0);
    let in_flight: Mutex<BTreeMap<usize, String>> = Mutex::new(BTreeMap::new());
    let failed: Mutex<Vec<MissingPin>> = Mutex::new(Vec::new());
    bar.set_message(format!("0/{count} files"));
    std::thread::scope(|scope| {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        if lines {
            let (done, received, in_flight, failed) = (&done, &received, &in_flight, &failed);
            scope.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(PROGRESS_INTERVAL)
                {
                    let names: Vec<String> = in_flight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .values()
                        .cloned()
                        .collect();
                    let status = Status {
                        done: done.load(Ordering::Relaxed),
                        failed: failed.lock().unwrap_or_else(|e| e.into_inner()).len(),
                        count,
                        received: received.load(Ordering::Relaxed),
                        total_bytes,
                        elapsed: start.elapsed(),
                        in_flight: &names,
                    };
                    report.line(status);
                }
            });
        }
        let workers: Vec<_> = (0..WORKERS.min(count))
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = todo.get(i) else { break };
                        in_flight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(i, item.what.clone());
                        let on_bytes = |n: u64| {
                            bar.inc(n);
                            received.fetch_add(n, Ordering::Relaxed);
                        };
                        let result = downloader.download_from(
                            &item.location,
                            &item.sha256,
                            item.size,
                            &on_bytes,
                        );
                        in_flight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&i);
                        match result {
                            Ok((path, url)) => {
                                let size = item
                                    .size
                                    .or_else(|| fs_err::metadata(&path).ok().map(|m| m.len()))
                                    .unwrap_or(0);
                                bytes.fetch_add(size, Ordering::Relaxed);
                                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                                bar.set_message(format!("{d}/{count} files"));
                                if report.verbose() {
                                    report.line(format_args!(
                                        "fetched {}, {size} bytes, from {} [{d}/{count}]",
                                        item.what,
                                        url.as_deref().unwrap_or("another process")
                                    ));
                                } else if lines {
                                    report.line(format_args!(
                                        "fetched {}, {} [{d}/{count}]",
                                        item.what,
                                        crate::archive::human_size(size)
                                    ));
                                }
                            }
                            Err(tried) => {
                                if lines {
                                    report.line(format_args!(
                                        "failed {}: {} attempts, listed at the end",
                                        item.what,
                                        tried.len()
                                    ));
                                }
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
                })
            })
            .collect();
        for w in workers {
            if let Err(panic) = w.join() {
                std::panic::resume_unwind(panic);
            }
        }
        drop(stop);
    });
    drop(bar);
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
                snapshot: None,
            }
        );
        assert_eq!(
            items[2].location,
            Location::Archive {
                archive: "debian".into(),
                paths: vec!["pool/main/s/s/s_1.dsc".into()],
                snapshot: None,
            }
        );
    }

    #[test]
    fn status_line_names_what_is_in_progress() {
        let names: Vec<String> = ["a 1 (a.deb)", "b 2 (b.deb)", "c 3 (c.deb)", "d 4 (d.deb)"]
            .map(String::from)
            .to_vec();
        let status = Status {
            done: 3,
            failed: 1,
            count: 12,
            received: 3 * 1024 * 1024,
            total_bytes: 10 * 1024 * 1024,
            elapsed: Duration::from_secs(10),
            in_flight: &names,
        };
        assert_eq!(
            status.to_string(),
            "fetching: 3/12 files, 3.0 MiB of 10.0 MiB received, 307.2 KiB/s, 1 failed; \
             in progress: a 1 (a.deb), b 2 (b.deb), c 3 (c.deb) and 1 more"
        );
        let idle = Status {
            failed: 0,
            in_flight: &[],
            ..status
        };
        assert_eq!(
            idle.to_string(),
            "fetching: 3/12 files, 3.0 MiB of 10.0 MiB received, 307.2 KiB/s"
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

//! The one pooled HTTP client of the process, and the limits every transfer is held to.
//!
//! Name lookups can stall for seconds on some networks, so every download of a run goes
//! through one [`Http`] (one `ureq` agent, shared by all worker threads) that keeps
//! connections alive between requests. Connecting has a short timeout so that an
//! unreachable source (snapshot.debian.org behind a firewall) fails fast; the caller
//! remembers such a source as dead for the rest of the run (see [`crate::mirrors`]).
//!
//! A mirror may also answer slowly or not at all once connected. [`Limits`] bound every
//! transfer: the wait for the response headers, the average rate over a sliding window, and
//! a deadline per file that grows with its size. A transfer that breaks one of them is
//! aborted with a [`Stalled`] error naming the URL, the bytes received and the reason.
//!
//! TLS servers are checked against Mozilla's roots (compiled in) and the platform's trust
//! store (`/etc/ssl/certs`, `SSL_CERT_FILE`, `SSL_CERT_DIR`), so that a proxy whose CA only
//! the host trusts is accepted too ([`trusted_roots`]).

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::archive::human_size;

/// How long to wait for a name lookup.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits every transfer of a run is held to. The defaults tolerate a slow link shared
/// by all parallel transfers; each can be changed through the environment
/// ([`Limits::from_env`], documented in `docs/pins.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Setting up the TCP (and TLS) connection. `HERMETIC_FETCH_CONNECT_TIMEOUT`.
    pub connect: Duration,
    /// From the request sent to the complete response headers (the time to first byte).
    /// `HERMETIC_FETCH_RESPONSE_TIMEOUT`.
    pub response: Duration,
    /// The lowest average rate, in bytes per second, a transfer may fall to over `window`;
    /// 0 turns the rate check and the per-file deadline off. `HERMETIC_FETCH_MIN_RATE`.
    pub min_rate: u64,
    /// The sliding window the rate is averaged over; also the longest a single read may
    /// wait for data. `HERMETIC_FETCH_STALL_WINDOW`.
    pub window: Duration,
    /// Added to size / `min_rate` for the per-file deadline. `HERMETIC_FETCH_DEADLINE_SLACK`.
    pub slack: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(30),
            min_rate: 8 * 1024,
            window: Duration::from_secs(30),
            slack: Duration::from_secs(60),
        }
    }
}

/// A malformed limit in the environment.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("{var}={value:?} is not {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
        default: String,
    },
}

impl Limits {
    /// The defaults, with each `HERMETIC_FETCH_*` variable that is set and not empty
    /// replacing its limit. Durations are seconds (`2`, `0.5`, `2s`, `500ms`); the rate is
    /// bytes per second with an optional `K`/`KiB` or `M`/`MiB` suffix.
    pub fn from_env() -> Result<Limits, LimitsError> {
        Limits::from_vars(|var| std::env::var(var).ok())
    }

    /// [`Limits::from_env`], except that a malformed value is reported as a warning and
    /// its default used (for callers that cannot fail here).
    pub fn from_env_or_default() -> Limits {
        Limits::from_env().unwrap_or_else(|e| {
            eprintln!("warning: {e}; using the default limits");
            Limits::default()
        })
    }

    fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Limits, LimitsError> {
        let mut limits = Limits::default();
        let d = Limits::default();
        let value = |var: &str| get(var).filter(|v| !v.trim().is_empty());
        let duration = |var: &'static str, default: Duration| match value(var) {
            None => Ok(default),
            Some(v) => parse_duration(&v).ok_or(LimitsError::Invalid {
                var,
                value: v,
                expected: "a duration greater than 0 and at most a day (`30`, `2.5s`, `500ms`)",
                default: format_duration(default),
            }),
        };
        limits.connect = duration("HERMETIC_FETCH_CONNECT_TIMEOUT", d.connect)?;
        limits.response = duration("HERMETIC_FETCH_RESPONSE_TIMEOUT", d.response)?;
        limits.window = duration("HERMETIC_FETCH_STALL_WINDOW", d.window)?;
        limits.slack = duration("HERMETIC_FETCH_DEADLINE_SLACK", d.slack)?;
        if let Some(v) = value("HERMETIC_FETCH_MIN_RATE") {
            limits.min_rate = parse_rate(&v).ok_or(LimitsError::Invalid {
                var: "HERMETIC_FETCH_MIN_RATE",
                value: v,
                expected: "a rate in bytes per second (`8192`, `8K`, `1MiB`; 0 for none)",
                default: format!("{}/s", human_size(d.min_rate)),
            })?;
        }
        Ok(limits)
    }

    /// The longest a file of `size` bytes may take from its response headers on: the time
    /// it takes at the minimum rate, plus the slack. `None` when there is no minimum rate.
    pub fn deadline(&self, size: u64) -> Option<Duration> {
        if self.min_rate == 0 {
            return None;
        }
        let secs = size as f64 / self.min_rate as f64;
        Some(Duration::from_secs_f64(secs.min(1e9)) + self.slack)
    }
}

/// `30`, `2.5`, `2s`, `500ms`: more than 0, at most a day.
fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        (v, 1.0)
    };
    let secs = number.trim().parse::<f64>().ok()? * scale;
    (secs.is_finite() && secs > 0.0 && secs <= 86_400.0).then(|| Duration::from_secs_f64(secs))
}

/// `8192`, `8K`, `8KiB`, `1M`, `1MiB` (case-insensitive, optional `/s`), in bytes per second.
fn parse_rate(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix("/s").unwrap_or(&v);
    let (number, scale) = if let Some(n) = v.strip_suffix("kib").or(v.strip_suffix('k')) {
        (n, 1024)
    } else if let Some(n) = v.strip_suffix("mib").or(v.strip_suffix('m')) {
        (n, 1024 * 1024)
    } else {
        (v, 1)
    };
    number.trim().parse::<u64>().ok()?.checked_mul(scale)
}

/// `20 s`, `2.5 s`, `0.5 s`.
fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Errors of one HTTP request. Each names the URL.
impl crate::error::Diagnostic for LimitsError {
    fn hints(&self) -> Vec<String> {
        match self {
            LimitsError::Invalid { var, default, .. } => vec![format!(
                "unset {var} for the default ({default}), see docs/pins.md"
            )],
        }
    }
}

impl crate::error::Diagnostic for HttpError {
    fn subject(&self) -> crate::error::Subject {
        match self {
            HttpError::Status { url, .. }
            | HttpError::Unreachable { url, .. }
            | HttpError::NoResponse { url, .. }
            | HttpError::Request { url, .. }
            | HttpError::Body { url, .. } => crate::error::Subject::url(url),
            HttpError::Stalled(s) => crate::error::Subject::url(&s.url),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: cannot connect")]
    Unreachable {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("{url}: no response within {}", format_duration(*.after))]
    NoResponse { url: String, after: Duration },
    #[error("{url}: request failed")]
    Request {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error(transparent)]
    Stalled(#[from] Stalled),
    #[error("{url}: transfer failed")]
    Body {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

impl HttpError {
    /// Whether the host could not be reached at all (no name, refused, timed out connecting):
    /// asking it for another file in the same run is pointless.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HttpError::Unreachable { .. })
    }

    /// Whether this says something about the source rather than about the file: every
    /// failure except an answer of "no such file" (or another 4xx) from a working server.
    pub fn is_source_failure(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => *status >= 500,
            _ => true,
        }
    }

    /// A short reason, for lists of sources tried.
    pub fn reason(&self) -> String {
        match self {
            HttpError::Status { status, .. } => format!("HTTP {status}"),
            HttpError::Unreachable { source, .. } => format!("unreachable ({source})"),
            HttpError::NoResponse { after, .. } => {
                format!("no response within {}", format_duration(*after))
            }
            HttpError::Request { source, .. } => source.to_string(),
            HttpError::Stalled(s) => s.reason_and_bytes(),
            HttpError::Body { source, .. } => source.to_string(),
        }
    }
}

/// A transfer aborted for breaking a [`Limits`] bound: too slow over the window, silent for a
/// whole window, or past its deadline. Travels inside the `io::Error` of the body reader;
/// [`Stalled::find`] gets it back out of an error chain.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {}", self.reason_and_bytes())]
pub struct Stalled {
    pub url: String,
    /// Bytes of the body received before the transfer was aborted.
    pub received: u64,
    /// What happened, e.g. `stalled: 12 bytes in the last 20 s, minimum 64.0 KiB/s`.
    pub reason: String,
}

impl Stalled {
    /// The reason and the bytes received, without the URL.
    pub fn reason_and_bytes(&self) -> String {
        format!("{}; {} bytes received", self.reason, self.received)
    }

    /// The first `Stalled` in the chain of `err` (also inside an `io::Error`).
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Stalled> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(s) = e.downcast_ref::<Stalled>() {
                return Some(s);
            }
            if let Some(s) = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<Stalled>())
            {
                return Some(s);
            }
            cur = e.source();
        }
        None
    }
}

/// A response being received.
pub struct Download {
    /// The body, held to the [`Limits`] of the client.
    pub reader: Box<dyn Read + Send>,
    /// The `Content-Length`, when the server sent one.
    pub content_length: Option<u64>,
}

/// The body of a request made with [`Http::send`].
pub enum SendBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A reader and the number of bytes it yields (sent as `Content-Length`).
    Reader(&'a mut dyn Read, u64),
}

/// The pooled HTTP client.
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
    limits: Limits,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

/// The root certificates TLS servers are checked against: Mozilla's (as webpki-roots ships
/// them) and those of the platform's trust store, read once per process. Certificates the
/// platform store holds but that cannot be read are skipped (rustls-native-certs reports
/// them; the compiled-in roots still apply).
pub fn trusted_roots() -> ureq::tls::RootCerts {
    static ROOTS: std::sync::OnceLock<ureq::tls::RootCerts> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mozilla = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned());
            let platform = rustls_native_certs::load_native_certs()
                .certs
                .into_iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned());
            mozilla.chain(platform).collect::<Vec<_>>().into()
        })
        .clone()
}

impl Http {
    /// A client held to the limits of the environment ([`Limits::from_env_or_default`]).
    pub fn new() -> Http {
        Http::with_limits(Limits::from_env_or_default())
    }

    /// A client with keep-alive, the given limits and no content decoding (the bytes
    /// hashed are the bytes served).
    pub fn with_limits(limits: Limits) -> Http {
        let config = ureq::Agent::config_builder()
            .user_agent(format!("hermetic/{}", env!("CARGO_PKG_VERSION")))
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .timeout_resolve(Some(RESOLVE_TIMEOUT))
            .timeout_connect(Some(limits.connect))
            .timeout_send_request(Some(limits.response))
            .timeout_recv_response(Some(limits.response))
            // No single read may wait longer than the window: a silent server is then
            // noticed as stalled, however the rate check is set.
            .timeout_per_read(Some(limits.window))
            .timeout_per_write(Some(limits.window))
            .max_idle_connections(32)
            .max_idle_connections_per_host(16)
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(trusted_roots())
                    .build(),
            )
            .build();
        Http {
            agent: ureq::Agent::with_parts(
                config,
                DefaultConnector::new(),
                CachingResolver::default(),
            ),
            limits,
        }
    }

    /// The limits transfers are held to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sends one request of any method with `headers` and `body` (streamed, with its
    /// `Content-Length` when given) and returns the response whatever its status; only a
    /// failure to get an answer is an error. For the registry protocol of [`crate::cache`],
    /// which needs HEAD, PUT, POST and PATCH and reads statuses and headers itself.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: SendBody<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>, HttpError> {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let length = match &body {
            SendBody::Empty => 0,
            SendBody::Bytes(b) => b.len() as u64,
            SendBody::Reader(_, n) => *n,
        };
        if method != "GET" && method != "HEAD" {
            request = request.header("Content-Length", length.to_string());
        }
        let bad = |e| HttpError::Request {
            url: url.to_string(),
            source: ureq::Error::Http(e),
        };
        let sent = match body {
            SendBody::Empty => self.agent.run(request.body(()).map_err(bad)?),
            SendBody::Bytes(b) => self.agent.run(request.body(b).map_err(bad)?),
            SendBody::Reader(r, _) => self
                .agent
                .run(request.body(ureq::SendBody::from_reader(r)).map_err(bad)?),
        };
        sent.map_err(|source| self.request_error(url, source))
    }

    /// The body of a response to [`Http::send`], held to the limits like [`Http::get`]'s.
    pub fn watched_body(
        &self,
        response: ureq::http::Response<ureq::Body>,
        url: &str,
        expected_size: Option<u64>,
    ) -> Download {
        let body = response.into_body();
        let content_length = body.content_length();
        let size = expected_size.or(content_length);
        Download {
            reader: Box::new(Watched::new(
                body.into_with_config().limit(u64::MAX).reader(),
                url,
                self.limits,
                size,
            )),
            content_length,
        }
    }

    fn request_error(&self, url: &str, source: ureq::Error) -> HttpError {
        if is_connect_error(&source) {
            HttpError::Unreachable {
                url: url.to_string(),
                source,
            }
        } else if let ureq::Error::Timeout(t) = &source {
            HttpError::NoResponse {
                url: url.to_string(),
                after: match t {
                    ureq::Timeout::PerRead | ureq::Timeout::PerWrite => self.limits.window,
                    _ => self.limits.response,
                },
            }
        } else {
            HttpError::Request {
                url: url.to_string(),
                source,
            }
        }
    }

    /// Starts a GET of `url`; a status other than 200 is an error. The body is held to the
    /// minimum rate, and to the deadline of `expected_size` bytes (else of the announced
    /// `Content-Length`, if any).
    pub fn get(&self, url: &str, expected_size: Option<u64>) -> Result<Download, HttpError> {
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|source| self.request_error(url, source))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(HttpError::Status {
                url: url.to_string(),
                status,
            });
        }
        Ok(self.watched_body(response, url, expected_size))
    }

    /// GETs `url` whole into memory.
    pub fn get_bytes(&self, url: &str) -> Result<Vec<u8>, HttpError> {
        let mut download = self.get(url, None)?;
        let mut out = Vec::new();
        download
            .reader
            .read_to_end(&mut out)
            .map_err(|source| body_error(url, source))?;
        Ok(out)
    }
}

/// The error of a failed body read: the [`Stalled`] inside it, or the I/O error.
pub fn body_error(url: &str, source: std::io::Error) -> HttpError {
    match Stalled::find(&source) {
        Some(s) => HttpError::Stalled(s.clone()),
        None => HttpError::Body {
            url: url.to_string(),
            source,
        },
    }
}

/// A body reader that aborts the transfer when it breaks the [`Limits`]: fewer than
/// `min_rate × window` bytes over the last window, no byte for a whole window (the
/// per-read timeout of the agent), or past the deadline of its size.
struct Watched<R> {
    inner: R,
    url: String,
    limits: Limits,
    size: Option<u64>,
    deadline: Option<Duration>,
    started: Instant,
    received: u64,
    /// (time, bytes received by then), oldest first, at least `window / 16` apart: enough
    /// to know how much arrived over the last window without one entry per read.
    marks: VecDeque<(Instant, u64)>,
}

impl<R: Read> Watched<R> {
    fn new(inner: R, url: &str, limits: Limits, size: Option<u64>) -> Watched<R> {
        let started = Instant::now();
        Watched {
            inner,
            url: url.to_string(),
            limits,
            size,
            deadline: size.and_then(|s| limits.deadline(s)),
            started,
            received: 0,
            marks: VecDeque::from([(started, 0)]),
        }
    }

    fn stalled(&self, reason: String) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            Stalled {
                url: self.url.clone(),
                received: self.received,
                reason,
            },
        )
    }

    /// Checks the deadline and the rate at `now`, after a read.
    fn check(&mut self, now: Instant) -> std::io::Result<()> {
        let elapsed = now.duration_since(self.started);
        if let (Some(deadline), Some(size)) = (self.deadline, self.size)
            && elapsed > deadline
        {
            return Err(self.stalled(format!(
                "too slow: not finished after {}, the deadline for {} ({} at the minimum {}/s, plus {})",
                format_duration(elapsed),
                human_size(size),
                format_duration(deadline.saturating_sub(self.limits.slack)),
                human_size(self.limits.min_rate),
                format_duration(self.limits.slack),
            )));
        }
        let window = self.limits.window;
        if self
            .marks
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= window / 16)
        {
            self.marks.push_back((now, self.received));
        }
        // The newest mark at least a window old is the base; older ones are not needed.
        while self
            .marks
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= window)
        {
            self.marks.pop_front();
        }
        let Some(&(base_time, base_bytes)) = self.marks.front() else {
            return Ok(());
        };
        let span = now.duration_since(base_time);
        if self.limits.min_rate > 0 && span >= window {
            let in_window = self.received - base_bytes;
            let needed = (self.limits.min_rate as f64 * window.as_secs_f64()) as u64;
            if in_window < needed {
                return Err(self.stalled(format!(
                    "stalled: {in_window} bytes in the last {}, minimum {}/s",
                    format_duration(span),
                    human_size(self.limits.min_rate),
                )));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) => Ok(0),
            Ok(n) => {
                self.received += n as u64;
                self.check(Instant::now())?;
                Ok(n)
            }
            Err(e) if is_read_timeout(&e) => Err(self.stalled(format!(
                "stalled: no data for {}",
                format_duration(self.limits.window)
            ))),
            Err(e) => Err(e),
        }
    }
}

/// Whether a body read failed because no byte came within the per-read timeout.
fn is_read_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

/// Resolves each host once per process: parallel workers opening their connections at the
/// same moment would otherwise each pay for a (possibly stalling) lookup of the same name.
/// Lookups of one host are serialized; failures are not remembered (the caller marks dead
/// sources itself).
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    hosts: Mutex<HashMap<String, Arc<Mutex<Option<Lookup>>>>>,
}

/// A finished lookup: the addresses, or the message of a failed lookup (name not found),
/// which is not asked again in this run.
#[derive(Debug, Clone)]
enum Lookup {
    Found(Box<ResolvedSocketAddrs>),
    NotFound(String),
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map(|a| a.as_str()).unwrap_or("")
        );
        let slot = self
            .hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let mut cached = slot.lock().unwrap_or_else(|e| e.into_inner());
        match cached.as_ref() {
            Some(Lookup::Found(addrs)) => return Ok((**addrs).clone()),
            Some(Lookup::NotFound(msg)) => {
                return Err(ureq::Error::Io(std::io::Error::other(msg.clone())));
            }
            None => {}
        }
        match self.inner.resolve(uri, config, timeout) {
            Ok(addrs) => {
                *cached = Some(Lookup::Found(Box::new(addrs.clone())));
                Ok(addrs)
            }
            Err(e) if is_lookup_failure(&e) => {
                *cached = Some(Lookup::NotFound(e.to_string()));
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

/// A name lookup that failed for good (the name does not exist or the resolver refuses).
/// The standard library reports these as uncategorized I/O errors; their message is all
/// there is to go by.
fn is_lookup_failure(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::HostNotFound => true,
        ureq::Error::Io(io) => io.to_string().contains("failed to lookup address"),
        _ => false,
    }
}

/// Errors that happen before any byte of a response: the host is not there.
fn is_connect_error(e: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    if is_lookup_failure(e) {
        return true;
    }
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(
            t,
            ureq::Timeout::Resolve | ureq::Timeout::Connect | ureq::Timeout::Global
        ),
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable
                | ErrorKind::TimedOut
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connection_is_unreachable_and_fast() {
        // Bind then drop a listener: the port is (almost certainly) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = Http::with_limits(Limits::default());
        let start = std::time::Instant::now();
        let err = match http.get(&format!("http://127.0.0.1:{port}/x"), None) {
            Err(e) => e,
            Ok(_) => panic!("a closed port answered"),
        };
        assert!(err.is_unreachable(), "{err:?}");
        assert!(err.is_source_failure());
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}/x")));
    }

    #[test]
    fn unknown_host_is_unreachable() {
        // `.invalid` never resolves (RFC 6761).
        let err = match Http::with_limits(Limits::default())
            .get("http://hermetic-test.invalid/x", None)
        {
            Err(e) => e,
            Ok(_) => panic!("an .invalid host answered"),
        };
        assert!(err.is_unreachable(), "{err:?}");
    }

    #[test]
    fn silent_server_is_no_response_within_the_limit() {
        // Accepts, reads the request, never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        let limits = Limits {
            response: Duration::from_millis(300),
            ..Limits::default()
        };
        let err = match Http::with_limits(limits).get(&format!("http://127.0.0.1:{port}/f"), None) {
            Err(e) => e,
            Ok(_) => panic!("a silent server answered"),
        };
        assert!(matches!(err, HttpError::NoResponse { .. }), "{err:?}");
        assert!(!err.is_unreachable());
        assert!(err.is_source_failure());
        assert_eq!(
            err.to_string(),
            format!("http://127.0.0.1:{port}/f: no response within 0.3 s")
        );
    }

    #[test]
    fn body_that_stops_is_stalled_after_the_window() {
        use std::io::Write as _;
        // Sends the headers and 10 of 1000 bytes, then nothing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut stream in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
                held.push(stream);
            }
        });
        let limits = Limits {
            window: Duration::from_millis(300),
            ..Limits::default()
        };
        let url = format!("http://127.0.0.1:{port}/f");
        let err = Http::with_limits(limits).get_bytes(&url).unwrap_err();
        let HttpError::Stalled(s) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(s.reason, "stalled: no data for 0.3 s");
        assert_eq!(s.received, 10);
        assert_eq!(
            err.to_string(),
            format!("{url}: stalled: no data for 0.3 s; 10 bytes received")
        );
    }

    #[test]
    fn not_found_is_not_a_source_failure() {
        let e = |status| HttpError::Status {
            url: "http://m/x".into(),
            status,
        };
        assert!(!e(404).is_source_failure());
        assert!(!e(403).is_source_failure());
        assert!(e(503).is_source_failure());
    }

    #[test]
    fn limits_come_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Limits::from_vars(vars(&[])).unwrap(), Limits::default());
        let l = Limits::from_vars(vars(&[
            ("HERMETIC_FETCH_CONNECT_TIMEOUT", "2"),
            ("HERMETIC_FETCH_RESPONSE_TIMEOUT", "500ms"),
            ("HERMETIC_FETCH_MIN_RATE", "64KiB"),
            ("HERMETIC_FETCH_STALL_WINDOW", "2.5s"),
            ("HERMETIC_FETCH_DEADLINE_SLACK", " "),
        ]))
        .unwrap();
        assert_eq!(l.connect, Duration::from_secs(2));
        assert_eq!(l.response, Duration::from_millis(500));
        assert_eq!(l.min_rate, 65536);
        assert_eq!(l.window, Duration::from_millis(2500));
        assert_eq!(l.slack, Limits::default().slack);
        for (k, v) in [
            ("HERMETIC_FETCH_MIN_RATE", "fast"),
            ("HERMETIC_FETCH_STALL_WINDOW", "0"),
            ("HERMETIC_FETCH_RESPONSE_TIMEOUT", "-1"),
            ("HERMETIC_FETCH_CONNECT_TIMEOUT", "2 days"),
        ] {
            let err = Limits::from_vars(|n: &str| (n == k).then(|| v.to_string())).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(k) && text.contains(v), "{text}");
            let hints = crate::error::Diagnostic::hints(&err);
            assert!(hints[0].starts_with(&format!("unset {k}")), "{hints:?}");
        }
        assert_eq!(parse_rate("1M"), Some(1 << 20));
        assert_eq!(parse_rate("8k/s"), Some(8192));
        assert_eq!(parse_rate("0"), Some(0));
    }

    #[test]
    fn deadline_grows_with_the_size() {
        let l = Limits {
            min_rate: 1024,
            slack: Duration::from_secs(60),
            ..Limits::default()
        };
        assert_eq!(l.deadline(0), Some(Duration::from_secs(60)));
        assert_eq!(l.deadline(10 * 1024), Some(Duration::from_secs(70)));
        assert_eq!(Limits { min_rate: 0, ..l }.deadline(1 << 30), None);
    }

    /// Yields `chunk` bytes per read, sleeping `pause` before each, `total` bytes in all.
    struct Slow {
        chunk: usize,
        pause: Duration,
        left: usize,
    }

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.pause);
            let n = self.chunk.min(self.left).min(buf.len());
            buf[..n].fill(b'x');
            self.left -= n;
            Ok(n)
        }
    }

    fn small_limits() -> Limits {
        Limits {
            min_rate: 1024,
            window: Duration::from_millis(300),
            slack: Duration::from_secs(60),
            ..Limits::default()
        }
    }

    #[test]
    fn trickle_below_the_minimum_rate_is_stalled() {
        let slow = Slow {
            chunk: 1,
            pause: Duration::from_millis(20),
            left: 1 << 20,
        };
        let mut w = Watched::new(slow, "http://m/f", small_limits(), Some(1 << 20));
        let err = std::io::copy(&mut w, &mut std::io::sink()).unwrap_err();
        let s = Stalled::find(&err).expect("a Stalled error");
        assert!(s.reason.starts_with("stalled: "), "{s}");
        assert!(s.reason.ends_with("minimum 1.0 KiB/s"), "{s}");
        assert!(s.received > 0 && s.received < 100, "{s}");
        assert!(s.to_string().starts_with("http://m/f: stalled: "), "{s}");
    }

    #[test]
    fn steady_transfer_above_the_rate_completes() {
        let fast = Slow {
            chunk: 512,
            pause: Duration::from_millis(10),
            left: 40 * 1024,
        };
        let mut w = Watched::new(fast, "http://m/f", small_limits(), Some(40 * 1024));
        assert_eq!(
            std::io::copy(&mut w, &mut std::io::sink()).unwrap(),
            40 * 1024
        );
    }

    #[test]
    fn transfer_past_its_deadline_is_aborted() {
        let limits = Limits {
            min_rate: 1024 * 1024,
            window: Duration::from_secs(30),
            slack: Duration::from_millis(200),
            ..Limits::default()
        };
        // The window check needs 30 s; 1 MiB at 1 MiB/s plus 0.2 s ends after 1.2 s.
        let slow = Slow {
            chunk: 1024,
            pause: Duration::from_millis(50),
            left: 1 << 20,
        };
        let mut w = Watched::new(slow, "http://m/f", limits, Some(1 << 20));
        let err = std::io::copy(&mut w, &mut std::io::sink()).unwrap_err();
        let s = Stalled::find(&err).expect("a Stalled error");
        assert!(s.reason.starts_with("too slow: not finished after"), "{s}");
        assert!(s.reason.contains("the deadline for 1.0 MiB"), "{s}");
    }
}

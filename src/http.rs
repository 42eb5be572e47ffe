//! The one pooled HTTP client of the process.
//!
//! Name lookups can stall for seconds on some networks, so every download of a run goes
//! through one [`Http`] (one `ureq` agent, shared by all worker threads) that keeps
//! connections alive between requests. Connecting has a short timeout so that an
//! unreachable source (snapshot.debian.org behind a firewall) fails fast; the caller
//! remembers such a source as dead for the rest of the run (see [`crate::mirrors`]).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// How long to wait for a name lookup.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a transfer may stall without a single byte arriving.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of one HTTP request. Each names the URL.
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
    #[error("{url}: request failed")]
    Request {
        url: String,
        #[source]
        source: ureq::Error,
    },
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

    /// A short reason, for lists of sources tried.
    pub fn reason(&self) -> String {
        match self {
            HttpError::Status { status, .. } => format!("HTTP {status}"),
            HttpError::Unreachable { source, .. } => format!("unreachable ({source})"),
            HttpError::Request { source, .. } => source.to_string(),
            HttpError::Body { source, .. } => source.to_string(),
        }
    }
}

/// A response being received.
pub struct Download {
    /// The body.
    pub reader: Box<dyn Read + Send>,
    /// The `Content-Length`, when the server sent one.
    pub content_length: Option<u64>,
}

/// The pooled HTTP client.
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// A client with keep-alive, short connect timeouts and no content decoding (the bytes
    /// hashed are the bytes served).
    pub fn new() -> Http {
        let config = ureq::Agent::config_builder()
            .user_agent(format!("hermetic/{}", env!("CARGO_PKG_VERSION")))
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .timeout_resolve(Some(RESOLVE_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .max_idle_connections(32)
            .max_idle_connections_per_host(16)
            .http_status_as_error(false)
            .build();
        Http {
            agent: ureq::Agent::with_parts(
                config,
                DefaultConnector::new(),
                CachingResolver::default(),
            ),
        }
    }

    /// Starts a GET of `url`; a status other than 200 is an error.
    pub fn get(&self, url: &str) -> Result<Download, HttpError> {
        let response = self.agent.get(url).call().map_err(|source| {
            if is_connect_error(&source) {
                HttpError::Unreachable {
                    url: url.to_string(),
                    source,
                }
            } else {
                HttpError::Request {
                    url: url.to_string(),
                    source,
                }
            }
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(HttpError::Status {
                url: url.to_string(),
                status,
            });
        }
        let body = response.into_body();
        let content_length = body.content_length();
        Ok(Download {
            reader: Box::new(body.into_with_config().limit(u64::MAX).reader()),
            content_length,
        })
    }

    /// GETs `url` whole into memory.
    pub fn get_bytes(&self, url: &str) -> Result<Vec<u8>, HttpError> {
        let mut download = self.get(url)?;
        let mut out = Vec::new();
        download
            .reader
            .read_to_end(&mut out)
            .map_err(|source| HttpError::Body {
                url: url.to_string(),
                source,
            })?;
        Ok(out)
    }
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
        let http = Http::new();
        let start = std::time::Instant::now();
        let err = match http.get(&format!("http://127.0.0.1:{port}/x")) {
            Err(e) => e,
            Ok(_) => panic!("a closed port answered"),
        };
        assert!(err.is_unreachable(), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}/x")));
    }

    #[test]
    fn unknown_host_is_unreachable() {
        // `.invalid` never resolves (RFC 6761).
        let err = match Http::new().get("http://hermetic-test.invalid/x") {
            Err(e) => e,
            Ok(_) => panic!("an .invalid host answered"),
        };
        assert!(err.is_unreachable(), "{err:?}");
    }
}

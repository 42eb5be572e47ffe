//! Fetching the configuration: one HTTP/1.1 GET over plain TCP (the attested-tls-proxy client on
//! 127.0.0.1 does the TLS and the attestation), with retries and a growing delay.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The largest configuration accepted (BuilderHub's is a few kilobytes).
pub const MAX_BODY: usize = 16 << 20;

/// An `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url}: bad port `{p}`"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() || path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(format!("{url}: not a valid http URL"));
        }
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum FetchError {
    /// Connecting, sending or reading failed (worth another try).
    Io(std::io::Error),
    /// The server answered with this status (5xx, 408 and 429 are worth another try).
    Status(u16),
    /// The answer is not HTTP as we read it.
    Protocol(String),
}

impl FetchError {
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Io(_) => true,
            FetchError::Status(s) => *s >= 500 || *s == 408 || *s == 429,
            FetchError::Protocol(_) => false,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Io(e) => write!(f, "{e}"),
            FetchError::Status(s) => write!(f, "HTTP status {s}"),
            FetchError::Protocol(m) => write!(f, "bad HTTP answer: {m}"),
        }
    }
}

impl std::error::Error for FetchError {}

impl From<std::io::Error> for FetchError {
    fn from(e: std::io::Error) -> Self {
        FetchError::Io(e)
    }
}

/// How often to try and how long to wait.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// The time limit of one connect and of each read.
    pub timeout: Duration,
}

/// Fetches `url`, retrying transient failures; `log` hears about each failed attempt.
pub fn fetch_with_retries(
    url: &HttpUrl,
    retry: &Retry,
    mut log: impl FnMut(&str),
) -> Result<Vec<u8>, FetchError> {
    let mut delay = retry.first_delay;
    let attempts = retry.attempts.max(1);
    for attempt in 1..=attempts {
        match get(url, retry.timeout) {
            Ok(body) => return Ok(body),
            Err(e) if e.is_transient() && attempt < attempts => {
                log(&format!(
                    "fetching {url} failed (attempt {attempt} of {attempts}): {e}; retrying in {:.1}s",
                    delay.as_secs_f64()
                ));
                std::thread::sleep(delay);
                delay = (delay * 2).min(retry.max_delay);
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

/// One GET; the body of a 2xx answer.
pub fn get(url: &HttpUrl, timeout: Duration) -> Result<Vec<u8>, FetchError> {
    let mut last = None;
    let mut stream = None;
    for addr in (url.host.as_str(), url.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        return Err(FetchError::Io(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the host name has no address")
        })));
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\nUser-Agent: render-config\r\nConnection: close\r\n\r\n",
        url.path, url.host, url.port
    );
    stream.write_all(request.as_bytes())?;
    read_response(BufReader::new(stream))
}

fn read_line(reader: &mut impl BufRead) -> Result<String, FetchError> {
    let mut line = Vec::new();
    reader.by_ref().take(8192).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(FetchError::Protocol("a header line without its end".into()));
    }
    let line = String::from_utf8(line)
        .map_err(|_| FetchError::Protocol("a header line that is not UTF-8".into()))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_response(mut reader: impl BufRead) -> Result<Vec<u8>, FetchError> {
    let status_line = read_line(&mut reader)?;
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| FetchError::Protocol(format!("status line `{status_line}`")))?;
    let mut length = None;
    let mut chunked = false;
    for _ in 0..200 {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(FetchError::Protocol(format!("header `{line}`")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| FetchError::Protocol(format!("Content-Length `{value}`")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "chunked");
        }
    }
    if !(200..300).contains(&status) {
        return Err(FetchError::Status(status));
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(FetchError::Protocol(format!(
                "a body of {n} bytes (limit {MAX_BODY})"
            )));
        }
        let mut body = vec![0; n];
        reader.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        reader.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
        body
    };
    if body.len() > MAX_BODY {
        return Err(FetchError::Protocol(format!(
            "a body over {MAX_BODY} bytes"
        )));
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| FetchError::Protocol(format!("chunk size `{line}`")))?;
        if size == 0 {
            // Trailers, up to the blank line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(FetchError::Protocol(format!(
                "a body over {MAX_BODY} bytes"
            )));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(FetchError::Protocol("a chunk without its line end".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let u = HttpUrl::parse("http://localhost:7937/api/l1-builder/v1/configuration").unwrap();
        assert_eq!(u.host, "localhost");
        assert_eq!(u.port, 7937);
        assert_eq!(u.path, "/api/l1-builder/v1/configuration");
        assert_eq!(HttpUrl::parse("http://127.0.0.1").unwrap().path, "/");
        assert_eq!(HttpUrl::parse("http://h/x").unwrap().port, 80);
        assert!(HttpUrl::parse("https://h/x").is_err());
        assert!(HttpUrl::parse("http://h:99999/x").is_err());
        assert!(HttpUrl::parse("http://h/a b").is_err());
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(read_response(&ok[..]).unwrap(), b"{}");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(read_response(&chunked[..]).unwrap(), b"{\"a\":1}");
        let eof = b"HTTP/1.0 200 OK\r\n\r\n[1]";
        assert_eq!(read_response(&eof[..]).unwrap(), b"[1]");
        let busy = b"HTTP/1.1 503 Busy\r\n\r\n";
        assert!(matches!(
            read_response(&busy[..]),
            Err(FetchError::Status(503))
        ));
        assert!(FetchError::Status(503).is_transient());
        assert!(!FetchError::Status(404).is_transient());
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}";
        assert!(read_response(&short[..]).is_err());
        assert!(read_response(&b"SSH-2.0-x\r\n"[..]).is_err());
    }
}

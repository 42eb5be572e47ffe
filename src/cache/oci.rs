//! A client of the OCI distribution API (the `/v2/` protocol of every container registry),
//! just what a cache needs: blobs (HEAD, GET, monolithic and chunked uploads, cross-repository
//! mounts, resuming an upload session) and manifests (GET, PUT, HEAD), with the
//! authentication of [`super::auth`]. Every request goes through the process's pooled
//! [`Http`] client.

use std::io::{Read, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::http::{Download, Http, SendBody};

use super::auth::{self, Challenge, Credentials};
use super::{CacheError, CacheRef};

/// The media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The body of a request that may have to be sent twice (once more after a `401`).
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
}

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// It was there already (HEAD answered 200): nothing sent.
    Present,
    /// Mounted from another repository of the registry: nothing sent.
    Mounted,
    /// Sent; the bytes sent (less than the size when an interrupted upload was resumed).
    Sent { bytes: u64, resumed: bool },
}

/// One repository of one registry.
pub struct Registry {
    http: Http,
    pub cache: CacheRef,
    creds: Option<Credentials>,
    /// The `Authorization` header of the requests, once a challenge was answered.
    authorization: Mutex<Option<String>>,
    /// Requests made.
    requests: AtomicU64,
    /// Uploads larger than this are sent in chunks of this size.
    pub chunk_size: u64,
    /// Also ask for push rights when a token is needed.
    pub push: bool,
    /// Other repositories (same registry) blobs may be mounted from; pull rights on them are
    /// asked for along with the token.
    pub mount_from: Vec<String>,
}

/// Chunked uploads above this size, unless `HERMETIC_CACHE_CHUNK_SIZE` says otherwise.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;

impl Registry {
    pub fn new(http: Http, cache: CacheRef) -> Result<Registry, CacheError> {
        let creds = auth::credentials_for(&cache.host)?;
        let chunk_size = std::env::var("HERMETIC_CACHE_CHUNK_SIZE")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_CHUNK_SIZE);
        Ok(Registry {
            http,
            cache,
            creds,
            authorization: Mutex::new(None),
            requests: AtomicU64::new(0),
            chunk_size,
            push: false,
            mount_from: Vec::new(),
        })
    }

    /// HTTP requests made to this registry so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn base(&self) -> String {
        format!("{}://{}", self.cache.scheme, self.cache.host)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base(), self.cache.repo)
    }

    /// A `Location` header made absolute.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base())
        } else {
            format!("{}/{location}", self.base())
        }
    }

    /// Sends one request, answering an authentication challenge once.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>, CacheError> {
        let mut answered = false;
        loop {
            let mut all: Vec<(&str, String)> = headers.to_vec();
            if let Some(a) = self
                .authorization
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                all.push(("Authorization", a));
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let response = match body {
                Body::Empty => self.http.send(method, url, &all, SendBody::Empty),
                Body::Bytes(b) => self.http.send(method, url, &all, SendBody::Bytes(b)),
                Body::File { path, offset, len } => {
                    let mut f = fs_err::File::open(path).map_err(|source| CacheError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    f.seek(SeekFrom::Start(offset))
                        .map_err(|source| CacheError::Io {
                            path: path.to_path_buf(),
                            source,
                        })?;
                    let mut part = f.take(len);
                    self.http
                        .send(method, url, &all, SendBody::Reader(&mut part, len))
                }
            }
            .map_err(|source| CacheError::Http {
                cache: self.cache.to_string(),
                source,
            })?;
            if response.status().as_u16() != 401 || answered {
                if response.status().as_u16() == 401 {
                    return Err(self.denied(url, &response));
                }
                return Ok(response);
            }
            answered = true;
            let challenge = header(&response, "www-authenticate")
                .and_then(|h| auth::parse_challenge(&h))
                .ok_or_else(|| self.denied(url, &response))?;
            let authorization = self.answer(&challenge)?;
            *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(authorization);
        }
    }

    fn denied(&self, url: &str, response: &ureq::http::Response<ureq::Body>) -> CacheError {
        CacheError::Denied {
            url: url.to_string(),
            status: response.status().as_u16(),
            with: match &self.creds {
                Some(c) => format!("as {} (from {})", c.user, c.from),
                None => "anonymously".to_string(),
            },
        }
    }

    /// The `Authorization` header that answers `challenge`.
    fn answer(&self, challenge: &Challenge) -> Result<String, CacheError> {
        match challenge {
            Challenge::Basic => match &self.creds {
                Some(c) => Ok(c.basic_header()),
                None => Err(CacheError::NoCredentials {
                    host: self.cache.host.clone(),
                }),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let actions = if self.push { "pull,push" } else { "pull" };
                let mut scopes = vec![format!("repository:{}:{actions}", self.cache.repo)];
                if let Some(s) = scope
                    && !scopes.contains(s)
                {
                    scopes.push(s.clone());
                }
                for from in &self.mount_from {
                    scopes.push(format!("repository:{from}:pull"));
                }
                let mut url = realm.clone();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                if let Some(s) = service {
                    url.push_str(&format!("{sep}service={}", auth::query_escape(s)));
                    sep = '&';
                }
                for s in &scopes {
                    url.push_str(&format!("{sep}scope={}", auth::query_escape(s)));
                    sep = '&';
                }
                let mut headers = Vec::new();
                if let Some(c) = &self.creds {
                    headers.push(("Authorization", c.basic_header()));
                }
                self.requests.fetch_add(1, Ordering::Relaxed);
                let response = self
                    .http
                    .send("GET", &url, &headers, SendBody::Empty)
                    .map_err(|source| CacheError::Http {
                        cache: self.cache.to_string(),
                        source,
                    })?;
                let status = response.status().as_u16();
                let body = read_small(response, &url)?;
                if status != 200 {
                    return Err(CacheError::Token {
                        realm: realm.clone(),
                        problem: format!("HTTP status {status}"),
                        with: match &self.creds {
                            Some(c) => format!("as {} (from {})", c.user, c.from),
                            None => "anonymously".to_string(),
                        },
                    });
                }
                let token = auth::token_of(&body).ok_or_else(|| CacheError::Token {
                    realm: realm.clone(),
                    problem: "its answer holds no `token`".into(),
                    with: String::new(),
                })?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    fn unexpected(&self, what: &str, url: &str, status: u16) -> CacheError {
        CacheError::Unexpected {
            cache: self.cache.to_string(),
            what: what.to_string(),
            url: url.to_string(),
            status,
        }
    }

    /// The size of blob `digest` (`sha256:<hex>`) if the repository has it.
    pub fn head_blob(&self, digest: &str) -> Result<Option<u64>, CacheError> {
        let url = self.url(&format!("blobs/{digest}"));
        let response = self.send("HEAD", &url, &[], Body::Empty)?;
        match response.status().as_u16() {
            200 => Ok(Some(
                header(&response, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            s => Err(self.unexpected("HEAD of a blob", &url, s)),
        }
    }

    /// Starts the download of blob `digest`; `None` when the repository does not have it.
    pub fn get_blob(
        &self,
        digest: &str,
        size: Option<u64>,
    ) -> Result<Option<Download>, CacheError> {
        let url = self.url(&format!("blobs/{digest}"));
        let response = self.send("GET", &url, &[], Body::Empty)?;
        match response.status().as_u16() {
            200 => Ok(Some(self.http.watched_body(response, &url, size))),
            404 => Ok(None),
            s => Err(self.unexpected("GET of a blob", &url, s)),
        }
    }

    /// The URL of blob `digest` (for messages).
    pub fn blob_url(&self, digest: &str) -> String {
        self.url(&format!("blobs/{digest}"))
    }

    /// Uploads `path` (of `size` bytes) as blob `digest`, unless the repository has it: HEAD
    /// first; then a mount from each of [`Registry::mount_from`]; then the upload session
    /// recorded in `session` by an interrupted push, resumed where the registry says it
    /// stopped; else a new session. Up to [`Registry::chunk_size`] bytes go in one PUT, more
    /// in PATCH chunks. `session` holds the upload's URL while it is under way.
    pub fn upload_blob(
        &self,
        digest: &str,
        path: &Path,
        size: u64,
        session: &Path,
    ) -> Result<Uploaded, CacheError> {
        if self.head_blob(digest)?.is_some() {
            let _ = fs_err::remove_file(session);
            return Ok(Uploaded::Present);
        }
        let mut location = None;
        for from in &self.mount_from {
            let url = format!(
                "{}?mount={}&from={}",
                self.url("blobs/uploads/"),
                auth::query_escape(digest),
                auth::query_escape(from)
            );
            let response = self.send("POST", &url, &[], Body::Empty)?;
            match response.status().as_u16() {
                201 => return Ok(Uploaded::Mounted),
                // Not mountable: the registry opened an ordinary session instead.
                202 => {
                    location = header(&response, "location").map(|l| self.absolute(&l));
                    break;
                }
                _ => {}
            }
        }
        let mut offset = 0;
        let mut resumed = false;
        if location.is_none()
            && let Ok(saved) = fs_err::read_to_string(session)
        {
            let saved = saved.trim().to_string();
            if let Some(done) = self.upload_progress(&saved)? {
                location = Some(saved);
                offset = done;
                resumed = true;
            }
        }
        let mut location = match location {
            Some(l) => l,
            None => {
                let url = self.url("blobs/uploads/");
                let response = self.send("POST", &url, &[], Body::Empty)?;
                let status = response.status().as_u16();
                if status != 202 {
                    return Err(self.unexpected("start of an upload", &url, status));
                }
                header(&response, "location")
                    .map(|l| self.absolute(&l))
                    .ok_or_else(|| self.unexpected("start of an upload (no Location)", &url, 202))?
            }
        };
        save_session(session, &location)?;
        let mut sent = 0;
        if offset == 0 && size <= self.chunk_size {
            // Monolithic: the whole blob in the closing PUT.
            let url = with_digest(&location, digest);
            let response = self.send(
                "PUT",
                &url,
                &[("Content-Type", "application/octet-stream".into())],
                Body::File {
                    path,
                    offset: 0,
                    len: size,
                },
            )?;
            let status = response.status().as_u16();
            if status != 201 {
                return Err(self.unexpected("upload of a blob", &url, status));
            }
            sent = size;
        } else {
            while offset < size {
                let len = self.chunk_size.min(size - offset);
                let response = self.send(
                    "PATCH",
                    &location,
                    &[
                        ("Content-Type", "application/octet-stream".into()),
                        ("Content-Range", format!("{offset}-{}", offset + len - 1)),
                    ],
                    Body::File { path, offset, len },
                )?;
                let status = response.status().as_u16();
                if status != 202 {
                    return Err(self.unexpected("upload of a chunk", &location, status));
                }
                if let Some(l) = header(&response, "location") {
                    location = self.absolute(&l);
                    save_session(session, &location)?;
                }
                offset += len;
                sent += len;
            }
            let url = with_digest(&location, digest);
            let response = self.send("PUT", &url, &[], Body::Empty)?;
            let status = response.status().as_u16();
            if status != 201 {
                return Err(self.unexpected("end of a chunked upload", &url, status));
            }
        }
        let _ = fs_err::remove_file(session);
        Ok(Uploaded::Sent {
            bytes: sent,
            resumed,
        })
    }

    /// How many bytes an upload session holds (`Range: 0-N`), `None` if it is gone.
    fn upload_progress(&self, location: &str) -> Result<Option<u64>, CacheError> {
        let response = self.send("GET", location, &[], Body::Empty)?;
        if response.status().as_u16() != 204 {
            return Ok(None);
        }
        Ok(Some(
            header(&response, "range")
                .and_then(|r| {
                    r.split_once('-')
                        .and_then(|(_, end)| end.parse::<u64>().ok())
                })
                .map(|end| end + 1)
                .unwrap_or(0),
        ))
    }

    /// Uploads a small blob from memory (HEAD first).
    pub fn upload_bytes(&self, digest: &str, bytes: &[u8]) -> Result<Uploaded, CacheError> {
        if self.head_blob(digest)?.is_some() {
            return Ok(Uploaded::Present);
        }
        let url = self.url("blobs/uploads/");
        let response = self.send("POST", &url, &[], Body::Empty)?;
        if response.status().as_u16() != 202 {
            return Err(self.unexpected("start of an upload", &url, response.status().as_u16()));
        }
        let location = header(&response, "location")
            .map(|l| self.absolute(&l))
            .ok_or_else(|| self.unexpected("start of an upload (no Location)", &url, 202))?;
        let url = with_digest(&location, digest);
        let response = self.send(
            "PUT",
            &url,
            &[("Content-Type", "application/octet-stream".into())],
            Body::Bytes(bytes),
        )?;
        match response.status().as_u16() {
            201 => Ok(Uploaded::Sent {
                bytes: bytes.len() as u64,
                resumed: false,
            }),
            s => Err(self.unexpected("upload of a blob", &url, s)),
        }
    }

    /// The manifest tagged `reference`, `None` if there is none.
    pub fn get_manifest(&self, reference: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let url = self.url(&format!("manifests/{reference}"));
        let response = self.send(
            "GET",
            &url,
            &[("Accept", MANIFEST_MEDIA_TYPE.into())],
            Body::Empty,
        )?;
        match response.status().as_u16() {
            200 => read_small(response, &url).map(Some),
            404 => Ok(None),
            s => Err(self.unexpected("GET of a manifest", &url, s)),
        }
    }

    /// Puts `manifest` under the tag `reference`.
    pub fn put_manifest(&self, reference: &str, manifest: &[u8]) -> Result<(), CacheError> {
        let url = self.url(&format!("manifests/{reference}"));
        let response = self.send(
            "PUT",
            &url,
            &[("Content-Type", MANIFEST_MEDIA_TYPE.into())],
            Body::Bytes(manifest),
        )?;
        match response.status().as_u16() {
            201 => Ok(()),
            s => {
                let detail = read_small(response, &url).unwrap_or_default();
                Err(CacheError::Rejected {
                    url,
                    status: s,
                    detail: String::from_utf8_lossy(&detail).chars().take(500).collect(),
                })
            }
        }
    }
}

/// A response header as text.
fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads a small response body (a manifest, a token: at most 4 MiB).
fn read_small(
    response: ureq::http::Response<ureq::Body>,
    url: &str,
) -> Result<Vec<u8>, CacheError> {
    let mut out = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(4 << 20)
        .read_to_end(&mut out)
        .map_err(|source| CacheError::Http {
            cache: url.to_string(),
            source: crate::http::body_error(url, source),
        })?;
    Ok(out)
}

/// The session URL with `digest=` added to its query.
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", auth::query_escape(digest))
}

fn save_session(session: &Path, location: &str) -> Result<(), CacheError> {
    let io = |source| CacheError::Io {
        path: session.to_path_buf(),
        source,
    };
    if let Some(dir) = session.parent() {
        fs_err::create_dir_all(dir).map_err(io)?;
    }
    let tmp = PathBuf::from(format!("{}.new", session.display()));
    fs_err::write(&tmp, location).map_err(io)?;
    fs_err::rename(&tmp, session).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_joins_the_query() {
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u?_state=x", "sha256:ab"),
            "http://r/v2/a/blobs/uploads/u?_state=x&digest=sha256%3Aab"
        );
        assert_eq!(
            with_digest("http://r/u", "sha256:ab"),
            "http://r/u?digest=sha256%3Aab"
        );
    }
}

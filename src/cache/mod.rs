//! Shared caches on OCI registries: teams and CI runners share pinned files and step outputs
//! through any container registry (a plain `distribution`, GHCR, ECR, Harbor).
//!
//! A registry is content-addressed by SHA-256 like the store, so:
//!
//! - a pinned file is a blob of the repository under its own digest. Any cache may serve it:
//!   it is checked against its pin while it streams into the store (a wrong one is refused,
//!   named, and the mirrors are tried instead);
//! - a step output is an OCI artifact: an image manifest of artifact type
//!   [`STEP_ARTIFACT`], tagged `step-<key>`, whose one layer is the deterministic tar of the
//!   store entry ([`step`]) and whose annotations hold the step key, the step's name
//!   (`<recipe>/<step>`), the hermetic version and a minisign signature of the statement
//!   "this layer is the output of this key" ([`statement`]). A step key says what went in,
//!   not what came out, so an output is accepted only when a key the user trusts signed it
//!   (docs/cache.md compares this with Nix's binary caches);
//! - `hermetic cache push` also puts a manifest tagged `pins-<hash>` whose layers are the
//!   pinned files it pushed, so that the registry keeps them (its garbage collector removes
//!   blobs no manifest names).
//!
//! [`oci`] speaks the distribution API, [`auth`] finds credentials and answers challenges,
//! [`push`] uploads a store, [`pull`] substitutes from caches during `fetch` and `build`.

pub mod auth;
pub mod oci;
pub mod pull;
pub mod push;
pub mod step;

use std::path::PathBuf;

use crate::http::HttpError;

pub use pull::{
    Reference, Substituter, install, reference_step, report, substitute_blob, substitute_step,
};

/// The artifact type of a step output's manifest.
pub const STEP_ARTIFACT: &str = "application/vnd.hermetic.step.v1";
/// The artifact type of the manifest that holds a push's pinned files.
pub const PINS_ARTIFACT: &str = "application/vnd.hermetic.pins.v1";
/// The media type of a step output's layer: the tar of its store entry.
pub const STEP_LAYER: &str = "application/vnd.hermetic.step.entry.v1.tar";
/// The media type of a pinned file's layer: the file as pinned.
pub const PIN_LAYER: &str = "application/vnd.hermetic.pin.v1";

/// Annotations of a step output's manifest.
pub const ANN_KEY: &str = "dev.hermetic.step.key";
pub const ANN_NAME: &str = "dev.hermetic.step.name";
pub const ANN_RECIPE: &str = "dev.hermetic.recipe";
pub const ANN_VERSION: &str = "dev.hermetic.version";
pub const ANN_SIGNATURE: &str = "dev.hermetic.signature";

/// The environment variables naming caches and trusted keys (comma-separated).
pub const CACHES_ENV: &str = "HERMETIC_CACHES";
pub const KEYS_ENV: &str = "HERMETIC_CACHE_KEYS";

/// Errors of the caches. Each names the cache, URL, key or file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "{reference:?} is not a cache: {problem}\nhint: write REGISTRY/REPOSITORY, e.g. `registry.example.com/team/hermetic` or `http://127.0.0.1:5000/hermetic`"
    )]
    BadReference { reference: String, problem: String },
    #[error("cache {cache}")]
    Http {
        cache: String,
        #[source]
        source: HttpError,
    },
    #[error(
        "{url}: the registry refused access (HTTP {status}) {with}\nhint: set HERMETIC_REGISTRY_USER and HERMETIC_REGISTRY_PASSWORD, or log in with `docker login` (~/.docker/config.json `auths`)"
    )]
    Denied {
        url: String,
        status: u16,
        with: String,
    },
    #[error(
        "the registry {host} asks for a user name and password and none is set\nhint: set HERMETIC_REGISTRY_USER and HERMETIC_REGISTRY_PASSWORD, or `docker login {host}`"
    )]
    NoCredentials { host: String },
    #[error("the token service {realm} gave no token {with}: {problem}")]
    Token {
        realm: String,
        problem: String,
        with: String,
    },
    #[error("cache {cache}: unexpected HTTP status {status} for the {what} at {url}")]
    Unexpected {
        cache: String,
        what: String,
        url: String,
        status: u16,
    },
    #[error("{url}: the registry refused the manifest (HTTP {status}): {detail}")]
    Rejected {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{path}: {problem}\nhint: fix or remove the file, or set HERMETIC_REGISTRY_USER")]
    DockerConfig { path: PathBuf, problem: String },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Sign(#[from] crate::sign::SignError),
    #[error(transparent)]
    Step(#[from] step::StepArchiveError),
    #[error("cannot write the manifest of {what}: {problem}")]
    Manifest { what: String, problem: String },
}

/// Where a cache is: a registry and a repository in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRef {
    /// `https`, or `http` (given as `http://`, or a loopback host).
    pub scheme: &'static str,
    /// `name[:port]`.
    pub host: String,
    /// The repository, e.g. `team/hermetic`.
    pub repo: String,
}

impl std::fmt::Display for CacheRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.host, self.repo)
    }
}

impl CacheRef {
    /// Parses `[http://|https://]HOST[:PORT]/REPO`. Without a scheme, HTTPS, except for
    /// `localhost`, `127.0.0.1` and `[::1]`, which are spoken to in plain HTTP (as Docker does).
    pub fn parse(reference: &str) -> Result<CacheRef, CacheError> {
        let bad = |problem: &str| CacheError::BadReference {
            reference: reference.to_string(),
            problem: problem.to_string(),
        };
        let (scheme, rest) = if let Some(r) = reference.strip_prefix("https://") {
            (Some("https"), r)
        } else if let Some(r) = reference.strip_prefix("http://") {
            (Some("http"), r)
        } else if reference.contains("://") {
            return Err(bad("only http:// and https:// are spoken"));
        } else {
            (None, reference)
        };
        let rest = rest.trim_end_matches('/');
        let (host, repo) = rest
            .split_once('/')
            .ok_or_else(|| bad("it names no repository after the registry"))?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(bad("the registry is not a host name with an optional port"));
        }
        // The distribution spec's repository name grammar.
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        };
        if !repo.split('/').all(component_ok) {
            return Err(bad(
                "the repository must be lowercase letters, digits and `._-`, in `/`-separated parts",
            ));
        }
        let name = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let loopback = matches!(name, "localhost" | "127.0.0.1" | "[::1]");
        Ok(CacheRef {
            scheme: scheme.unwrap_or(if loopback { "http" } else { "https" }),
            host: host.to_string(),
            repo: repo.to_string(),
        })
    }
}

/// The `[cache]` table of `hermetic.toml`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheConfig {
    /// Caches to substitute from, in order (`REGISTRY/REPOSITORY`).
    #[serde(default)]
    pub urls: Vec<String>,
    /// Public keys (minisign files, relative to the project) whose signed step outputs are
    /// accepted.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
}

/// The statement a step output's signature covers: the key, and the layer that is its output.
pub fn statement(key: &str, layer_digest: &str, layer_size: u64) -> String {
    format!("hermetic step output v1\nkey {key}\nlayer {layer_digest}\nsize {layer_size}\n")
}

/// The trusted comment of a step output's signature.
pub fn trusted_comment(key: &str) -> String {
    format!("hermetic cache step {key}")
}

/// The tag of the manifest of step `key`.
pub fn step_tag(key: &str) -> String {
    format!("step-{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_parsed() {
        let r = CacheRef::parse("127.0.0.1:5000/team/hermetic").unwrap();
        assert_eq!(
            (r.scheme, r.host.as_str(), r.repo.as_str()),
            ("http", "127.0.0.1:5000", "team/hermetic")
        );
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/hermetic");
        let r = CacheRef::parse("registry.example/a").unwrap();
        assert_eq!(r.scheme, "https");
        let r = CacheRef::parse("http://cache.lan:5000/a/b/").unwrap();
        assert_eq!((r.scheme, r.repo.as_str()), ("http", "a/b"));
        for bad in [
            "registry.example",
            "ftp://x/y",
            "reg/Upper",
            "reg/a//b",
            "reg/-a",
            "/a",
            "re g/a",
        ] {
            let err = CacheRef::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("is not a cache") && err.contains("hint:"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_statement_names_key_and_layer() {
        let s = statement("ab", "sha256:cd", 7);
        assert_eq!(
            s,
            "hermetic step output v1\nkey ab\nlayer sha256:cd\nsize 7\n"
        );
        assert_eq!(step_tag("ab"), "step-ab");
    }
}

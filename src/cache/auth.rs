//! Registry authentication as registries expect it: anonymous, HTTP basic, and bearer tokens
//! obtained through the `WWW-Authenticate` challenge of a `401` (the Docker token flow that
//! GHCR, ECR, Harbor and `distribution` with a token realm use).
//!
//! Credentials are looked up per registry host:
//! 1. `HERMETIC_REGISTRY_USER` and `HERMETIC_REGISTRY_PASSWORD` (for every cache of the run);
//! 2. the Docker configuration file (`$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`): its `auths` entry for the host, `auth` (base64 `user:password`)
//!    or `username` and `password`. Credential helpers (`credsStore`, `credHelpers`) are not
//!    run.

use std::path::PathBuf;

use base64::Engine as _;

use super::CacheError;

/// The environment variables of the registry user and password.
pub const USER_ENV: &str = "HERMETIC_REGISTRY_USER";
pub const PASSWORD_ENV: &str = "HERMETIC_REGISTRY_PASSWORD";

/// A user name and password for one registry, and where they came from (for messages).
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub from: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The credentials for `host` (`name[:port]`): the environment first, then the Docker
/// configuration file. `None`: anonymous.
pub fn credentials_for(host: &str) -> Result<Option<Credentials>, CacheError> {
    credentials_from(host, |v| std::env::var(v).ok(), docker_config_path())
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".docker/config.json"))
}

fn credentials_from(
    host: &str,
    env: impl Fn(&str) -> Option<String>,
    docker_config: Option<PathBuf>,
) -> Result<Option<Credentials>, CacheError> {
    let user = env(USER_ENV).filter(|v| !v.is_empty());
    let password = env(PASSWORD_ENV);
    if let Some(user) = user {
        return Ok(Some(Credentials {
            user,
            password: password.unwrap_or_default(),
            from: format!("{USER_ENV} and {PASSWORD_ENV}"),
        }));
    }
    let Some(path) = docker_config.filter(|p| p.is_file()) else {
        return Ok(None);
    };
    let bad = |problem: String| CacheError::DockerConfig {
        path: path.clone(),
        problem,
    };
    let text = fs_err::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for (name, entry) in auths {
        if registry_host(name) != host {
            continue;
        }
        let from = format!("{} (auths.{name})", path.display());
        if let Some(encoded) = entry.get("auth").and_then(|a| a.as_str())
            && !encoded.is_empty()
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| bad(format!("auths.{name}.auth is not base64 ({e})")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| bad(format!("auths.{name}.auth is not UTF-8")))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{name}.auth is not `user:password`")))?;
            return Ok(Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
                from,
            }));
        }
        if let (Some(user), Some(password)) = (
            entry.get("username").and_then(|u| u.as_str()),
            entry.get("password").and_then(|p| p.as_str()),
        ) {
            return Ok(Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
                from,
            }));
        }
    }
    Ok(None)
}

/// The host of an `auths` key: `https://index.docker.io/v1/` → `index.docker.io`.
fn registry_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// What a `401` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// Get a token from `realm` for `service` and `scope` (both may be absent).
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header: `Basic realm="x"` or
/// `Bearer realm="https://auth/token",service="registry",scope="repository:a/b:pull"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    // name="value" pairs separated by commas; values may hold commas inside the quotes.
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match name.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            "scope" => scope = Some(value.to_string()),
            _ => {}
        }
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

/// Percent-encodes a query value.
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token of a token endpoint's JSON answer (`token`, or OAuth2's `access_token`).
pub fn token_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"http://127.0.0.1:9/token\",service=\"reg, test\",scope=\"repository:a/b:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:9/token".into(),
                service: Some("reg, test".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://auth/t"),
            Some(Challenge::Bearer {
                realm: "https://auth/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn credentials_come_from_the_environment_then_the_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        fs_err::write(
            &config,
            format!(
                r#"{{"auths":{{"https://reg.example:5000/v1/":{{"auth":"{auth}"}},"other":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        )
        .unwrap();
        let no_env = |_: &str| None;
        let c = credentials_from("reg.example:5000", no_env, Some(config.clone()))
            .unwrap()
            .unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cr:et"));
        assert!(c.from.contains("config.json"), "{}", c.from);
        let c = credentials_from("other", no_env, Some(config.clone()))
            .unwrap()
            .unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("bob", "pw"));
        assert!(
            credentials_from("nobody", no_env, Some(config.clone()))
                .unwrap()
                .is_none()
        );
        let env = |v: &str| match v {
            USER_ENV => Some("carol".to_string()),
            PASSWORD_ENV => Some("pw2".to_string()),
            _ => None,
        };
        let c = credentials_from("reg.example:5000", env, Some(config.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(c.user, "carol");
        assert_eq!(c.basic_header(), "Basic Y2Fyb2w6cHcy");
        assert!(!format!("{c:?}").contains("pw2"));
        fs_err::write(&config, "{\"auths\":{\"h\":{\"auth\":\"%%%\"}}}").unwrap();
        let err = credentials_from("h", no_env, Some(config))
            .unwrap_err()
            .to_string();
        assert!(err.contains("auths.h.auth is not base64"), "{err}");
    }

    #[test]
    fn tokens_and_queries() {
        assert_eq!(token_of(br#"{"token":"abc"}"#), Some("abc".into()));
        assert_eq!(token_of(br#"{"access_token":"x"}"#), Some("x".into()));
        assert_eq!(token_of(br#"{"token":""}"#), None);
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}

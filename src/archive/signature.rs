//! OpenPGP: the pinned archive keyring and the cleartext signature of `InRelease`.

use std::path::{Path, PathBuf};

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, KeyId, PublicKeyTrait};

/// Errors loading keys or checking signatures. Each names the keyring or the suite.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read keyring {path}")]
    ReadKeyring {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("keyring {path} is not an OpenPGP keyring: {message}")]
    BadKeyring { path: PathBuf, message: String },
    #[error("keyring {path} holds no usable public key")]
    EmptyKeyring { path: PathBuf },
    #[error(
        "InRelease of suite `{suite}` ({url}) is not an OpenPGP cleartext-signed message: {message}"
    )]
    NotSigned {
        suite: String,
        url: String,
        message: String,
    },
    #[error(
        "InRelease of suite `{suite}` ({url}) has no valid signature by a key of {keyring}; \
         signatures seen from key id(s): {seen}\n\
         hint: the mirror may be serving tampered or foreign files, or the keyring is out of \
         date (see keys/README.md)"
    )]
    NoValidSignature {
        suite: String,
        url: String,
        keyring: PathBuf,
        seen: String,
    },
    #[error(
        "InRelease of suite `{suite}` ({url}) is signed only by keys of {keyring} that may not \
         sign it:\n{refused}\n\
         hint: the mirror may be serving another release's or an old archive state; if Debian \
         rotated its keys, update the keyring (see keys/README.md)"
    )]
    KeyNotValid {
        suite: String,
        url: String,
        keyring: PathBuf,
        /// One line per refused key: fingerprint and reason.
        refused: String,
    },
}

/// The release a key belongs to, read from its user id (`Debian Archive Automatic Signing
/// Key (13/trixie)`, `Debian Security Archive Automatic Signing Key (13/trixie)`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyScope {
    /// `trixie`.
    codename: String,
    /// A security archive key (signs only `<codename>-security`).
    security: bool,
}

fn key_scope(key: &SignedPublicKey) -> Option<KeyScope> {
    key.details.users.iter().find_map(|u| {
        let id = String::from_utf8_lossy(u.id.id());
        let open = id.rfind('(')?;
        let close = open + id[open..].find(')')?;
        let (number, codename) = id[open + 1..close].split_once('/')?;
        let ok = !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && !codename.is_empty()
            && codename.bytes().all(|b| b.is_ascii_lowercase());
        ok.then(|| KeyScope {
            codename: codename.to_string(),
            security: id.contains("Security"),
        })
    })
}

/// Whether a key may sign `suite`: a key whose user id names a Debian release (`(13/trixie)`)
/// signs only that release's suites (`trixie`, `trixie-updates`, ...), a security archive key
/// only `<release>-security`, any other archive key not `-security`. A key naming no release
/// (a private archive's own key) signs every suite of the keyring it is in.
fn may_sign(scope: Option<&KeyScope>, suite: &str) -> bool {
    let Some(scope) = scope else {
        return true;
    };
    let codename = suite.split('-').next().unwrap_or(suite);
    codename == scope.codename && scope.security == suite.ends_with("-security")
}

/// Whether a key may sign an old snapshot state of `suite` read for a package pinned by exact
/// version ([`Keyring::for_pinned_old_state`]): an archive key of any release signs any
/// suite but `-security`, a security archive key only `-security` suites. Before a release
/// has its own key, its suites (testing at the time) are signed by the keys of the stable
/// releases then (trixie in 2024 by the 11/bullseye and 12/bookworm keys).
fn may_sign_old_state(scope: Option<&KeyScope>, suite: &str) -> bool {
    scope.is_none_or(|scope| scope.security == suite.ends_with("-security"))
}

fn is_self_signature(sig: &Signature, fingerprint: &pgp::types::Fingerprint, id: &KeyId) -> bool {
    sig.issuer_fingerprint().contains(&fingerprint) || sig.issuer().contains(&id)
}

/// When a key stops being valid according to the newest of its own `sigs` that say so
/// (seconds since the epoch; `None`: never).
fn expiry(created: i64, sigs: &[&Signature]) -> Option<i64> {
    let newest = sigs
        .iter()
        .max_by_key(|s| s.created().map(|c| c.timestamp()).unwrap_or(i64::MIN))?;
    newest
        .key_expiration_time()
        .filter(|d| d.num_seconds() > 0)
        .map(|d| created + d.num_seconds())
}

/// Why the primary key (`subkey: None`) or a subkey of `key` may not sign at `at`, if it may not.
fn validity_problem(key: &SignedPublicKey, subkey: Option<usize>, at: i64) -> Option<String> {
    let fpr = key.primary_key.fingerprint();
    let id = key.primary_key.key_id();
    if !key.details.revocation_signatures.is_empty() {
        return Some("the key is revoked".into());
    }
    let own: Vec<&Signature> = key
        .details
        .users
        .iter()
        .flat_map(|u| &u.signatures)
        .chain(&key.details.direct_signatures)
        .filter(|s| is_self_signature(s, &fpr, &id))
        .collect();
    let created = key.primary_key.created_at().timestamp();
    if let Some(until) = expiry(created, &own)
        && until <= at
    {
        return Some(format!(
            "the key expired at {} (Unix time), before the InRelease's Date",
            until
        ));
    }
    if let Some(i) = subkey {
        let sub = &key.public_subkeys[i];
        if sub
            .signatures
            .iter()
            .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
        {
            return Some(format!(
                "its subkey {} is revoked",
                hex::encode_upper(sub.key.fingerprint().as_bytes())
            ));
        }
        let bindings: Vec<&Signature> = sub
            .signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
            .collect();
        let created = sub.key.created_at().timestamp();
        if let Some(until) = expiry(created, &bindings)
            && until <= at
        {
            return Some(format!(
                "its subkey {} expired at {} (Unix time), before the InRelease's Date",
                hex::encode_upper(sub.key.fingerprint().as_bytes()),
                until
            ));
        }
    }
    None
}

/// A set of trusted public keys (the primary keys and their subkeys).
#[derive(Debug, Clone)]
pub struct Keyring {
    path: PathBuf,
    keys: Vec<SignedPublicKey>,
    /// Release-named keys may sign other releases' suites ([`may_sign_old_state`]).
    old_state: bool,
}

impl Keyring {
    /// Reads a keyring file, binary (`.pgp`, `.gpg`) or ASCII-armored, holding one or
    /// more keys.
    pub fn load(path: &Path) -> Result<Keyring, SignatureError> {
        let bytes = fs_err::read(path).map_err(|source| SignatureError::ReadKeyring {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses keyring bytes; `path` is only used in messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Keyring, SignatureError> {
        let bad = |e: pgp::errors::Error| SignatureError::BadKeyring {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let (iter, _headers) =
            SignedPublicKey::from_reader_many(std::io::Cursor::new(bytes)).map_err(bad)?;
        let mut keys = Vec::new();
        for key in iter {
            // No `key.verify()`: rpgp rejects the third-party certifications Debian's keys
            // carry. Trust comes from the pinned file itself, not from its certifications.
            keys.push(key.map_err(bad)?);
        }
        if keys.is_empty() {
            return Err(SignatureError::EmptyKeyring {
                path: path.to_path_buf(),
            });
        }
        Ok(Keyring {
            path: path.to_path_buf(),
            keys,
            old_state: false,
        })
    }

    /// The same keys for reading an old snapshot state a package is pinned from by exact
    /// name and version (`[[archive.snapshot-package]]`): a release-named archive key may
    /// sign another release's suite there ([`may_sign_old_state`]). The state's `Codename`
    /// is still checked, and a replayed state of that suite could only lack the pinned
    /// version or list it with the same file (the pool never reuses a version), so the
    /// release scope protects nothing there, and would refuse every testing state signed
    /// before its release had a key.
    pub fn for_pinned_old_state(&self) -> Keyring {
        Keyring {
            old_state: true,
            ..self.clone()
        }
    }

    /// The keyring file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprints of the primary keys, uppercase hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| hex::encode_upper(k.primary_key.fingerprint().as_bytes()))
            .collect()
    }

    /// Checks a cleartext-signed `InRelease` and returns the signed text (LF line ends).
    /// Accepted when ANY of its signatures verifies with a key of this keyring that may sign
    /// `suite` (see [`may_sign`]) and that, with the subkey used, was neither revoked nor
    /// expired at the `Date` the signed text carries (Debian signs with several keys at
    /// once, and keys rotate). A signed text without a readable `Date` is judged at the
    /// current time (and later refused by the Release parser).
    pub fn verify_inrelease(
        &self,
        suite: &str,
        url: &str,
        text: &str,
    ) -> Result<String, SignatureError> {
        let (msg, _headers) =
            CleartextSignedMessage::from_string(text).map_err(|e| SignatureError::NotSigned {
                suite: suite.to_string(),
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let signed = msg.signed_text();
        let at = signed
            .lines()
            .find_map(|l| l.strip_prefix("Date:"))
            .and_then(super::release::parse_date)
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0)
            });
        let mut seen = Vec::new();
        let mut refused = Vec::new();
        for sig in msg.signatures() {
            let mut ids: Vec<String> = sig
                .signature
                .issuer_fingerprint()
                .iter()
                .map(|f| hex::encode_upper(f.as_bytes()))
                .collect();
            ids.extend(
                sig.signature
                    .issuer()
                    .iter()
                    .map(|k| hex::encode_upper(k.as_ref())),
            );
            for key in &self.keys {
                let signer = if sig.verify(&key.primary_key, signed.as_bytes()).is_ok() {
                    Some(None)
                } else {
                    key.public_subkeys
                        .iter()
                        .position(|sub| sig.verify(&sub.key, signed.as_bytes()).is_ok())
                        .map(Some)
                };
                let Some(subkey) = signer else {
                    continue;
                };
                let fpr = hex::encode_upper(key.primary_key.fingerprint().as_bytes());
                let scope = key_scope(key);
                let allowed = if self.old_state {
                    may_sign_old_state(scope.as_ref(), suite)
                } else {
                    may_sign(scope.as_ref(), suite)
                };
                if !allowed {
                    let scope = scope.expect("a key without scope may sign every suite");
                    refused.push(format!(
                        "  {fpr}: a {}key of release `{}`, not allowed for suite `{suite}`",
                        if scope.security {
                            "security archive "
                        } else {
                            ""
                        },
                        scope.codename
                    ));
                    continue;
                }
                match validity_problem(key, subkey, at) {
                    Some(why) => refused.push(format!("  {fpr}: {why}")),
                    None => return Ok(signed.replace("\r\n", "\n")),
                }
            }
            // Name a signature by its fingerprint when it carries one, else by key id.
            seen.push(ids.into_iter().next().unwrap_or_else(|| "(none)".into()));
        }
        if !refused.is_empty() {
            return Err(SignatureError::KeyNotValid {
                suite: suite.to_string(),
                url: url.to_string(),
                keyring: self.path.clone(),
                refused: refused.join("\n"),
            });
        }
        Err(SignatureError::NoValidSignature {
            suite: suite.to_string(),
            url: url.to_string(),
            keyring: self.path.clone(),
            seen: if seen.is_empty() {
                "none (no signature at all)".into()
            } else {
                seen.join(", ")
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> Keyring {
        Keyring::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/keys/debian-archive-keyring.pgp"
        )))
        .unwrap()
    }

    #[test]
    fn committed_keyring_holds_the_trixie_keys() {
        let fingerprints = committed().fingerprints();
        // Debian Stable Release Key (13/trixie), and the automatic archive signing keys
        // (13/trixie) and security archive signing keys (13/trixie), per keys/README.md.
        for fpr in [
            "41587F7DB8C774BCCF131416762F67A0B2C39DE4",
            "5E04A1E3223A19A20706E20F9904613D4CCE68C6",
            "04B54C3CDCA79751B16BC6B5225629DF75B188BD",
        ] {
            assert!(
                fingerprints.iter().any(|f| f == fpr),
                "{fpr} missing: {fingerprints:?}"
            );
        }
    }

    #[test]
    fn unsigned_text_is_rejected_naming_the_suite() {
        let err = committed()
            .verify_inrelease("trixie", "http://x/InRelease", "Origin: Debian\n")
            .unwrap_err();
        assert!(matches!(err, SignatureError::NotSigned { .. }), "{err}");
        assert!(err.to_string().contains("suite `trixie`"));
    }

    #[test]
    fn committed_keys_are_scoped_to_their_release() {
        let ring = committed();
        let scope_of = |fpr: &str| {
            let key = ring
                .keys
                .iter()
                .find(|k| hex::encode_upper(k.primary_key.fingerprint().as_bytes()) == fpr)
                .unwrap();
            key_scope(key)
        };
        // 13/trixie archive key: trixie and its updates, not security, not bookworm.
        let s = scope_of("04B54C3CDCA79751B16BC6B5225629DF75B188BD");
        assert!(may_sign(s.as_ref(), "trixie"));
        assert!(may_sign(s.as_ref(), "trixie-updates"));
        assert!(!may_sign(s.as_ref(), "trixie-security"));
        assert!(!may_sign(s.as_ref(), "bookworm"));
        // 13/trixie security key: only trixie-security.
        let s = scope_of("5E04A1E3223A19A20706E20F9904613D4CCE68C6");
        assert!(may_sign(s.as_ref(), "trixie-security"));
        assert!(!may_sign(s.as_ref(), "trixie"));
        // 12/bookworm archive key: not trixie.
        let s = scope_of("B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8");
        assert!(!may_sign(s.as_ref(), "trixie"));
        assert!(may_sign(s.as_ref(), "bookworm"));
        // An old state of a pinned package: any release's archive key, not a security one.
        assert!(may_sign_old_state(s.as_ref(), "trixie"));
        assert!(!may_sign_old_state(s.as_ref(), "trixie-security"));
        let s = scope_of("5E04A1E3223A19A20706E20F9904613D4CCE68C6");
        assert!(may_sign_old_state(s.as_ref(), "bookworm-security"));
        assert!(!may_sign_old_state(s.as_ref(), "trixie"));
        // Every key of the committed keyring names its release.
        assert!(ring.keys.iter().all(|k| key_scope(k).is_some()));
    }

    #[test]
    fn not_a_keyring_is_an_error() {
        let err = Keyring::from_bytes(Path::new("k.pgp"), b"hello").unwrap_err();
        assert!(err.to_string().contains("k.pgp"), "{err}");
    }
}

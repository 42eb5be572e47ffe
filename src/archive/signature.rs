//! OpenPGP: the pinned archive keyring and the cleartext signature of `InRelease`.

use std::path::{Path, PathBuf};

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::types::KeyDetails;

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
}

/// A set of trusted public keys (the primary keys and their subkeys).
#[derive(Debug, Clone)]
pub struct Keyring {
    path: PathBuf,
    keys: Vec<SignedPublicKey>,
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
        })
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
    /// Accepted when ANY of its signatures verifies with a key of this keyring (Debian signs
    /// with several keys at once, and keys rotate). Validity dates are not checked: a pinned
    /// snapshot is old by design, and every file it names is pinned by hash.
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
        let mut seen = Vec::new();
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
                let primary_ok = sig.verify(&key.primary_key, signed.as_bytes()).is_ok();
                if primary_ok
                    || key
                        .public_subkeys
                        .iter()
                        .any(|sub| sig.verify(&sub.key, signed.as_bytes()).is_ok())
                {
                    return Ok(signed.replace("\r\n", "\n"));
                }
            }
            // Name a signature by its fingerprint when it carries one, else by key id.
            seen.push(ids.into_iter().next().unwrap_or_else(|| "(none)".into()));
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
    fn not_a_keyring_is_an_error() {
        let err = Keyring::from_bytes(Path::new("k.pgp"), b"hello").unwrap_err();
        assert!(err.to_string().contains("k.pgp"), "{err}");
    }
}

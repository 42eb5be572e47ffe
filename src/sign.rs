//! Minisign-compatible Ed25519 signatures: key files, `.minisig` files, signing and checking.
//!
//! The formats are minisign's, byte for byte, so that `minisign -V` checks what `hermetic sign`
//! writes and `hermetic verify --pubkey` checks what `minisign -S` writes:
//!
//! - public key: `untrusted comment: …` then base64 of `Ed` ‖ key id (8 bytes) ‖ public key (32);
//! - secret key: `untrusted comment: …` then base64 of `Ed` ‖ KDF (`Sc` scrypt, or two zero bytes
//!   for an unencrypted key) ‖ `B2` ‖ salt (32) ‖ opslimit (8, LE) ‖ memlimit (8, LE) ‖ key id (8)
//!   ‖ secret key (64: seed ‖ public key) ‖ checksum (32: BLAKE2b-256 of `Ed` ‖ key id ‖ secret
//!   key); an encrypted key XORs the last 104 bytes with scrypt of the password;
//! - signature: `untrusted comment: …`, base64 of the algorithm (`ED`: the signature is over the
//!   BLAKE2b-512 of the file, minisign's default since 0.8; `Ed`: over the file itself, the legacy
//!   form) ‖ key id ‖ signature (64), `trusted comment: …`, and base64 of the global signature
//!   over signature ‖ trusted comment, which makes the trusted comment tamper-evident.
//!
//! Encrypted secret keys (minisign's default) are read with the password from
//! `HERMETIC_SIGN_PASSWORD` or the terminal; hermetic itself writes unencrypted keys (as
//! `minisign -G -W` does), to be kept like any other secret file.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::Digest as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

/// The extension of a signature file, after the signed file's name.
pub const SIG_EXTENSION: &str = "minisig";

const ALG_LEGACY: [u8; 2] = *b"Ed";
const ALG_PREHASHED: [u8; 2] = *b"ED";
const KDF_NONE: [u8; 2] = [0, 0];
const KDF_SCRYPT: [u8; 2] = *b"Sc";
const CHK_BLAKE2: [u8; 2] = *b"B2";
const SECRET_KEY_LEN: usize = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32;
const PUBLIC_KEY_LEN: usize = 2 + 8 + 32;
const SIG_LEN: usize = 2 + 8 + 64;
/// The longest trusted comment minisign accepts.
pub const TRUSTED_COMMENT_MAX: usize = 8192;

/// What can go wrong reading keys and signatures, signing and checking.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read {path}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}", path = path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a minisign {what}: {problem}\nhint: a minisign {what} file is an `untrusted comment:` line and a line of base64 (`minisign -G` makes keys, `hermetic sign` and `minisign -S` signatures)",
        path = path.display()
    )]
    Malformed {
        path: PathBuf,
        what: &'static str,
        problem: String,
    },
    #[error(
        "{path} is a password-protected minisign secret key and no password was given: {why}\nhint: set HERMETIC_SIGN_PASSWORD, run on a terminal to be asked, or remove the password with `minisign -C -W -s {path}`",
        path = path.display()
    )]
    NoPassword { path: PathBuf, why: String },
    #[error(
        "wrong password for the minisign secret key {path} (or the key file is damaged)\nhint: check HERMETIC_SIGN_PASSWORD or what you typed",
        path = path.display()
    )]
    WrongPassword { path: PathBuf },
    #[error(
        "{path} asks for scrypt parameters hermetic will not use (opslimit {opslimit}, memlimit {memlimit})\nhint: make the key again with `minisign -G` or `hermetic sign --generate-key`",
        path = path.display()
    )]
    BadKdf {
        path: PathBuf,
        opslimit: u64,
        memlimit: u64,
    },
    #[error(
        "{path} is damaged: its checksum or its public half does not match the secret key\nhint: restore the key file from a backup",
        path = path.display()
    )]
    DamagedKey { path: PathBuf },
    #[error(
        "{signature} was made by the key {found}, not by the public key {expected} in {pubkey}\nhint: check that you were given the right public key for this release",
        signature = signature.display(),
        pubkey = pubkey.display()
    )]
    WrongKey {
        signature: PathBuf,
        pubkey: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "the signature {signature} does not match {file}: the file is not the one that was signed (or the signature was altered)",
        signature = signature.display(),
        file = file.display()
    )]
    BadSignature { signature: PathBuf, file: PathBuf },
    #[error(
        "the trusted comment of {signature} was altered: its global signature does not match (the comment reads {comment:?})",
        signature = signature.display()
    )]
    BadTrustedComment { signature: PathBuf, comment: String },
    #[error(
        "the trusted comment {comment:?} cannot be used: {problem}\nhint: give one line of at most {TRUSTED_COMMENT_MAX} bytes"
    )]
    BadComment { comment: String, problem: String },
    #[error("{path} already exists; hermetic does not overwrite a key\nhint: choose another file name or remove the old key first", path = path.display())]
    KeyExists { path: PathBuf },
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> SignError + '_ {
    move |source| SignError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> SignError + '_ {
    move |source| SignError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// A key id as minisign prints it: the 8 bytes as a little-endian number in upper-case hex.
pub fn key_id_hex(id: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*id))
}

/// A minisign public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: [u8; 8],
    pub key: VerifyingKey,
}

impl PublicKey {
    /// Parses a public key file's text (or a bare base64 key, as `minisign -P` takes).
    pub fn parse(path: &Path, text: &str) -> Result<PublicKey, SignError> {
        let bad = |problem: &str| SignError::Malformed {
            path: path.to_path_buf(),
            what: "public key",
            problem: problem.to_string(),
        };
        let line = payload_line(text).ok_or_else(|| bad("it has no base64 line"))?;
        let raw = B64
            .decode(line)
            .map_err(|e| bad(&format!("its key line is not base64 ({e})")))?;
        if raw.len() != PUBLIC_KEY_LEN {
            return Err(bad(&format!(
                "its key is {} bytes long, not {PUBLIC_KEY_LEN}",
                raw.len()
            )));
        }
        if raw[..2] != ALG_LEGACY {
            return Err(bad("its algorithm is not Ed25519 (`Ed`)"));
        }
        let key_id: [u8; 8] = raw[2..10].try_into().expect("8 bytes");
        let pk: [u8; 32] = raw[10..].try_into().expect("32 bytes");
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|_| bad("its key is not a valid Ed25519 point"))?;
        Ok(PublicKey { key_id, key })
    }

    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<PublicKey, SignError> {
        let text = fs_err::read_to_string(path).map_err(read_err(path))?;
        PublicKey::parse(path, &text)
    }

    /// The key's base64 line.
    pub fn to_base64(&self) -> String {
        let mut raw = Vec::with_capacity(PUBLIC_KEY_LEN);
        raw.extend_from_slice(&ALG_LEGACY);
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(self.key.as_bytes());
        B64.encode(raw)
    }

    /// The public key file's text.
    pub fn to_file_text(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            key_id_hex(&self.key_id),
            self.to_base64()
        )
    }
}

/// A minisign secret key, decrypted.
#[derive(Debug, Clone)]
pub struct SecretKey {
    pub key_id: [u8; 8],
    pub key: SigningKey,
}

fn checksum(key_id: &[u8; 8], sk: &[u8; 64]) -> [u8; 32] {
    let mut h = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    h.update(ALG_LEGACY);
    h.update(key_id);
    h.update(sk);
    h.finalize().into()
}

impl SecretKey {
    /// Makes a new key from the system's random number generator.
    pub fn generate() -> Result<SecretKey, SignError> {
        let mut seed = [0u8; 32];
        let mut key_id = [0u8; 8];
        getrandom::getrandom(&mut seed).map_err(|e| SignError::Random(e.to_string()))?;
        getrandom::getrandom(&mut key_id).map_err(|e| SignError::Random(e.to_string()))?;
        Ok(SecretKey {
            key_id,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses an unencrypted secret key file's text.
    pub fn parse(path: &Path, text: &str) -> Result<SecretKey, SignError> {
        SecretKey::parse_with_password(path, text, &|| {
            Err(SignError::NoPassword {
                path: path.to_path_buf(),
                why: "none can be asked for here".into(),
            })
        })
    }

    /// Parses a secret key file's text; `password` is asked only for an encrypted key.
    pub fn parse_with_password(
        path: &Path,
        text: &str,
        password: &dyn Fn() -> Result<String, SignError>,
    ) -> Result<SecretKey, SignError> {
        let bad = |problem: &str| SignError::Malformed {
            path: path.to_path_buf(),
            what: "secret key",
            problem: problem.to_string(),
        };
        let line = payload_line(text).ok_or_else(|| bad("it has no base64 line"))?;
        let raw = B64
            .decode(line)
            .map_err(|e| bad(&format!("its key line is not base64 ({e})")))?;
        if raw.len() != SECRET_KEY_LEN {
            return Err(bad(&format!(
                "its key is {} bytes long, not {SECRET_KEY_LEN}",
                raw.len()
            )));
        }
        if raw[..2] != ALG_LEGACY {
            return Err(bad("its algorithm is not Ed25519 (`Ed`)"));
        }
        if raw[4..6] != CHK_BLAKE2 {
            return Err(bad("its checksum algorithm is not BLAKE2b (`B2`)"));
        }
        let mut body: [u8; 104] = raw[54..].try_into().expect("104 bytes");
        let encrypted = match [raw[2], raw[3]] {
            KDF_NONE => false,
            KDF_SCRYPT => {
                let salt: [u8; 32] = raw[6..38].try_into().expect("32 bytes");
                let opslimit = u64::from_le_bytes(raw[38..46].try_into().expect("8 bytes"));
                let memlimit = u64::from_le_bytes(raw[46..54].try_into().expect("8 bytes"));
                let stream = scrypt_stream(path, &password()?, &salt, opslimit, memlimit)?;
                for (b, k) in body.iter_mut().zip(stream) {
                    *b ^= k;
                }
                true
            }
            _ => return Err(bad("its key derivation is neither none nor scrypt (`Sc`)")),
        };
        let key_id: [u8; 8] = body[..8].try_into().expect("8 bytes");
        let sk: [u8; 64] = body[8..72].try_into().expect("64 bytes");
        let chk: [u8; 32] = body[72..104].try_into().expect("32 bytes");
        let seed: [u8; 32] = sk[..32].try_into().expect("32 bytes");
        let key = SigningKey::from_bytes(&seed);
        // minisign leaves the checksum of an unencrypted key zero; any other value must match.
        let damaged = ((encrypted || chk != [0u8; 32]) && chk != checksum(&key_id, &sk))
            || key.verifying_key().as_bytes()[..] != sk[32..];
        if damaged && encrypted {
            return Err(SignError::WrongPassword {
                path: path.to_path_buf(),
            });
        }
        if damaged {
            return Err(SignError::DamagedKey {
                path: path.to_path_buf(),
            });
        }
        Ok(SecretKey { key_id, key })
    }

    /// Reads a secret key file; the password of an encrypted one comes from the environment
    /// variable `HERMETIC_SIGN_PASSWORD`, else is asked for on the terminal.
    pub fn read(path: &Path) -> Result<SecretKey, SignError> {
        let text = fs_err::read_to_string(path).map_err(read_err(path))?;
        SecretKey::parse_with_password(path, &text, &|| ask_password(path))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The secret key file's text, unencrypted (as `minisign -G -W` writes it).
    pub fn to_file_text(&self) -> String {
        let mut sk = [0u8; 64];
        sk[..32].copy_from_slice(self.key.as_bytes());
        sk[32..].copy_from_slice(self.key.verifying_key().as_bytes());
        let mut raw = Vec::with_capacity(SECRET_KEY_LEN);
        raw.extend_from_slice(&ALG_LEGACY);
        raw.extend_from_slice(&KDF_NONE);
        raw.extend_from_slice(&CHK_BLAKE2);
        raw.extend_from_slice(&[0u8; 32 + 8 + 8]);
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&sk);
        raw.extend_from_slice(&checksum(&self.key_id, &sk));
        format!(
            "untrusted comment: minisign unencrypted secret key {}\n{}\n",
            key_id_hex(&self.key_id),
            B64.encode(raw)
        )
    }

    /// Writes the secret key to `path` (mode 0600, never over an existing file) and its public
    /// key next to it as `path.pub`; returns the public key's path.
    pub fn write_pair(&self, path: &Path) -> Result<PathBuf, SignError> {
        use fs_err::os::unix::fs::OpenOptionsExt as _;
        use std::io::Write as _;
        let pub_path = PathBuf::from(format!("{}.pub", path.display()));
        for p in [path, pub_path.as_path()] {
            if p.symlink_metadata().is_ok() {
                return Err(SignError::KeyExists {
                    path: p.to_path_buf(),
                });
            }
        }
        let mut f = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write_err(path))?;
        f.write_all(self.to_file_text().as_bytes())
            .map_err(write_err(path))?;
        fs_err::write(&pub_path, self.public().to_file_text()).map_err(write_err(&pub_path))?;
        Ok(pub_path)
    }

    /// Signs `data` (prehashed with BLAKE2b-512, as minisign does by default) with
    /// `trusted_comment`; returns the `.minisig` file's text.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<String, SignError> {
        self.sign_prehashed(blake2b512(data), trusted_comment)
    }

    /// Signs the file `path` (streamed); returns the `.minisig` text.
    pub fn sign_file(&self, path: &Path, trusted_comment: &str) -> Result<String, SignError> {
        let hash = blake2b512_file(path)?;
        self.sign_prehashed(hash, trusted_comment)
    }

    fn sign_prehashed(&self, hash: [u8; 64], trusted_comment: &str) -> Result<String, SignError> {
        check_comment(trusted_comment)?;
        let sig = self.key.sign(&hash).to_bytes();
        let mut global = Vec::with_capacity(64 + trusted_comment.len());
        global.extend_from_slice(&sig);
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_sig = self.key.sign(&global).to_bytes();
        let mut line = Vec::with_capacity(SIG_LEN);
        line.extend_from_slice(&ALG_PREHASHED);
        line.extend_from_slice(&self.key_id);
        line.extend_from_slice(&sig);
        Ok(format!(
            "untrusted comment: signature from hermetic secret key {}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            key_id_hex(&self.key_id),
            B64.encode(line),
            B64.encode(global_sig)
        ))
    }
}

/// The environment variable an encrypted secret key's password is read from.
pub const PASSWORD_ENV: &str = "HERMETIC_SIGN_PASSWORD";

/// The password of `path`: `HERMETIC_SIGN_PASSWORD`, else asked on the terminal (not echoed).
fn ask_password(path: &Path) -> Result<String, SignError> {
    use std::io::{BufRead as _, Write as _};
    if let Some(p) = std::env::var_os(PASSWORD_ENV) {
        return Ok(p.to_string_lossy().into_owned());
    }
    let no = |why: String| SignError::NoPassword {
        path: path.to_path_buf(),
        why,
    };
    let tty = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| {
            no(format!(
                "{PASSWORD_ENV} is not set and there is no terminal ({e})"
            ))
        })?;
    let before = nix::sys::termios::tcgetattr(&tty).map_err(|e| no(e.to_string()))?;
    let mut quiet = before.clone();
    quiet
        .local_flags
        .remove(nix::sys::termios::LocalFlags::ECHO);
    nix::sys::termios::tcsetattr(&tty, nix::sys::termios::SetArg::TCSAFLUSH, &quiet)
        .map_err(|e| no(e.to_string()))?;
    let mut line = String::new();
    let read = (|| {
        let mut w = &tty;
        write!(w, "Password for {}: ", path.display())?;
        w.flush()?;
        std::io::BufReader::new(&tty).read_line(&mut line)?;
        writeln!(w)
    })();
    let _ = nix::sys::termios::tcsetattr(&tty, nix::sys::termios::SetArg::TCSAFLUSH, &before);
    read.map_err(|e| no(e.to_string()))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The 104 bytes an encrypted key's secret part is XORed with: scrypt (N, r = 8, p) of the
/// password, with N and p picked from minisign's opslimit and memlimit as libsodium does.
fn scrypt_stream(
    path: &Path,
    password: &str,
    salt: &[u8; 32],
    opslimit: u64,
    memlimit: u64,
) -> Result<[u8; 104], SignError> {
    let bad = || SignError::BadKdf {
        path: path.to_path_buf(),
        opslimit,
        memlimit,
    };
    let (log_n, r, p) = scrypt_params(opslimit, memlimit);
    // 16 GiB of memory, or a billion rounds, is no key minisign makes.
    if log_n > 24 || p > 64 {
        return Err(bad());
    }
    // The length given here only matters for PHC strings; the output is as long as `out`.
    let params =
        scrypt::Params::new(log_n, r, p, scrypt::Params::RECOMMENDED_LEN).map_err(|_| bad())?;
    let mut out = [0u8; 104];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// libsodium's choice of scrypt parameters for an opslimit and a memlimit.
fn scrypt_params(opslimit: u64, memlimit: u64) -> (u8, u32, u32) {
    let opslimit = opslimit.max(32_768);
    let r: u64 = 8;
    let first_above = |max_n: u64| -> u8 {
        let mut log_n = 1u8;
        while log_n < 63 && (1u64 << log_n) <= max_n / 2 {
            log_n += 1;
        }
        log_n
    };
    if opslimit < memlimit / 32 {
        let log_n = first_above(opslimit / (r * 4));
        (log_n, r as u32, 1)
    } else {
        let log_n = first_above(memlimit / (r * 128));
        let maxrp = ((opslimit / 4) >> log_n).min(0x3fff_ffff);
        (log_n, r as u32, (maxrp / r).max(1) as u32)
    }
}

fn check_comment(comment: &str) -> Result<(), SignError> {
    let problem = if comment.contains(['\n', '\r']) {
        Some("it spans more than one line")
    } else if comment.len() > TRUSTED_COMMENT_MAX {
        Some("it is too long")
    } else {
        None
    };
    match problem {
        Some(p) => Err(SignError::BadComment {
            comment: comment.to_string(),
            problem: p.to_string(),
        }),
        None => Ok(()),
    }
}

/// The first line of `text` that is not a comment (trimmed).
fn payload_line(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
}

/// BLAKE2b-512 of `data`.
pub fn blake2b512(data: &[u8]) -> [u8; 64] {
    blake2::Blake2b512::digest(data).into()
}

fn blake2b512_file(path: &Path) -> Result<[u8; 64], SignError> {
    let mut f = fs_err::File::open(path).map_err(read_err(path))?;
    let mut h = blake2::Blake2b512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(path)(e)),
        }
    }
    Ok(h.finalize().into())
}

/// A parsed `.minisig` file.
#[derive(Debug, Clone)]
pub struct SignatureFile {
    /// `true` for `ED` (over the BLAKE2b-512 of the file), `false` for legacy `Ed`.
    pub prehashed: bool,
    pub key_id: [u8; 8],
    pub signature: Signature,
    pub trusted_comment: String,
    pub global_signature: Signature,
}

impl SignatureFile {
    /// Parses a `.minisig` file's text.
    pub fn parse(path: &Path, text: &str) -> Result<SignatureFile, SignError> {
        let bad = |problem: &str| SignError::Malformed {
            path: path.to_path_buf(),
            what: "signature",
            problem: problem.to_string(),
        };
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        if !first.starts_with("untrusted comment:") {
            return Err(bad("its first line is not an `untrusted comment:`"));
        }
        let sig_line = lines
            .next()
            .ok_or_else(|| bad("it has no signature line"))?;
        let raw = B64
            .decode(sig_line.trim())
            .map_err(|e| bad(&format!("its signature line is not base64 ({e})")))?;
        if raw.len() != SIG_LEN {
            return Err(bad(&format!(
                "its signature is {} bytes long, not {SIG_LEN}",
                raw.len()
            )));
        }
        let prehashed = match [raw[0], raw[1]] {
            ALG_PREHASHED => true,
            ALG_LEGACY => false,
            _ => return Err(bad("its algorithm is neither `ED` nor `Ed`")),
        };
        let comment_line = lines
            .next()
            .ok_or_else(|| bad("it has no `trusted comment:` line"))?;
        let trusted_comment = comment_line
            .strip_prefix("trusted comment: ")
            .ok_or_else(|| bad("its third line is not a `trusted comment:`"))?
            .to_string();
        let global = B64
            .decode(lines.next().unwrap_or_default().trim())
            .map_err(|e| bad(&format!("its global signature is not base64 ({e})")))?;
        let global: [u8; 64] = global
            .try_into()
            .map_err(|_| bad("its global signature is not 64 bytes long"))?;
        Ok(SignatureFile {
            prehashed,
            key_id: raw[2..10].try_into().expect("8 bytes"),
            signature: Signature::from_bytes(&raw[10..].try_into().expect("64 bytes")),
            trusted_comment,
            global_signature: Signature::from_bytes(&global),
        })
    }

    /// Reads a `.minisig` file.
    pub fn read(path: &Path) -> Result<SignatureFile, SignError> {
        let text = fs_err::read_to_string(path).map_err(read_err(path))?;
        SignatureFile::parse(path, &text)
    }
}

/// Checks the signature `sig_path` of `file` against `key` (read from `key_path`); returns the
/// trusted comment.
pub fn verify_file(
    file: &Path,
    sig_path: &Path,
    key: &PublicKey,
    key_path: &Path,
) -> Result<String, SignError> {
    let sig = SignatureFile::read(sig_path)?;
    check_signature(&sig, sig_path, file, key, key_path, |prehashed| {
        if prehashed {
            Ok(blake2b512_file(file)?.to_vec())
        } else {
            fs_err::read(file).map_err(read_err(file))
        }
    })
}

/// Checks the signature `sig_text` (a `.minisig` file's text, named `sig_name` in messages)
/// of `data` (named `what`) against `key` (from `key_path`); returns the trusted comment.
pub fn verify_bytes(
    data: &[u8],
    what: &Path,
    sig_text: &str,
    sig_name: &Path,
    key: &PublicKey,
    key_path: &Path,
) -> Result<String, SignError> {
    let sig = SignatureFile::parse(sig_name, sig_text)?;
    check_signature(&sig, sig_name, what, key, key_path, |prehashed| {
        Ok(if prehashed {
            blake2b512(data).to_vec()
        } else {
            data.to_vec()
        })
    })
}

/// The checks of [`verify_file`] and [`verify_bytes`]: the key id, the signature over what
/// `signed` gives (the BLAKE2b-512 of the data for a prehashed signature, else the data),
/// and the global signature over the trusted comment.
fn check_signature(
    sig: &SignatureFile,
    sig_path: &Path,
    file: &Path,
    key: &PublicKey,
    key_path: &Path,
    signed: impl FnOnce(bool) -> Result<Vec<u8>, SignError>,
) -> Result<String, SignError> {
    if sig.key_id != key.key_id {
        return Err(SignError::WrongKey {
            signature: sig_path.to_path_buf(),
            pubkey: key_path.to_path_buf(),
            found: key_id_hex(&sig.key_id),
            expected: key_id_hex(&key.key_id),
        });
    }
    let message = signed(sig.prehashed)?;
    let ok = if sig.prehashed {
        key.key.verify_strict(&message, &sig.signature).is_ok()
    } else {
        key.key.verify(&message, &sig.signature).is_ok()
    };
    if !ok {
        return Err(SignError::BadSignature {
            signature: sig_path.to_path_buf(),
            file: file.to_path_buf(),
        });
    }
    let mut global = Vec::with_capacity(64 + sig.trusted_comment.len());
    global.extend_from_slice(&sig.signature.to_bytes());
    global.extend_from_slice(sig.trusted_comment.as_bytes());
    if key
        .key
        .verify_strict(&global, &sig.global_signature)
        .is_err()
    {
        return Err(SignError::BadTrustedComment {
            signature: sig_path.to_path_buf(),
            comment: sig.trusted_comment.clone(),
        });
    }
    Ok(sig.trusted_comment.clone())
}

/// The signature file of `file`: `file.minisig`.
pub fn signature_path(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.{SIG_EXTENSION}", file.display()))
}

/// The default trusted comment: `timestamp:<unix time>\tfile:<name>` as minisign writes it,
/// and `\tcommit:<git revision>` when the signed file comes from a git checkout.
pub fn default_trusted_comment(file: &Path, timestamp: u64, commit: Option<&str>) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut c = format!("timestamp:{timestamp}\tfile:{name}");
    if let Some(commit) = commit {
        c.push_str(&format!("\tcommit:{commit}"));
    }
    c.push_str("\thashed");
    c
}

/// Signs `file` with `key`, writing `file.minisig` (replacing an old one); returns its path.
pub fn sign_to_file(
    key: &SecretKey,
    file: &Path,
    trusted_comment: &str,
) -> Result<PathBuf, SignError> {
    let text = key.sign_file(file, trusted_comment)?;
    let out = signature_path(file);
    let tmp = PathBuf::from(format!("{}.tmp", out.display()));
    fs_err::write(&tmp, text).map_err(write_err(&tmp))?;
    fs_err::rename(&tmp, &out).map_err(write_err(&out))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(dir: &Path, data: &[u8]) -> (SecretKey, PathBuf, PathBuf) {
        let key = SecretKey::generate().unwrap();
        let file = dir.join("f.efi");
        fs_err::write(&file, data).unwrap();
        let sig = sign_to_file(&key, &file, "timestamp:1\tfile:f.efi").unwrap();
        (key, file, sig)
    }

    #[test]
    fn key_files_round_trip() {
        let key = SecretKey::generate().unwrap();
        let back = SecretKey::parse(Path::new("k"), &key.to_file_text()).unwrap();
        assert_eq!(back.key.as_bytes(), key.key.as_bytes());
        assert_eq!(back.key_id, key.key_id);
        let public = PublicKey::parse(Path::new("p"), &key.public().to_file_text()).unwrap();
        assert_eq!(public, key.public());
    }

    #[test]
    fn a_signature_verifies_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (key, file, sig) = signed(dir.path(), b"image bytes");
        let comment = verify_file(&file, &sig, &key.public(), Path::new("p")).unwrap();
        assert_eq!(comment, "timestamp:1\tfile:f.efi");

        fs_err::write(&file, b"image bytez").unwrap();
        let err = verify_file(&file, &sig, &key.public(), Path::new("p")).unwrap_err();
        assert!(matches!(err, SignError::BadSignature { .. }), "{err}");
        fs_err::write(&file, b"image bytes").unwrap();

        let text = fs_err::read_to_string(&sig).unwrap();
        fs_err::write(&sig, text.replace("timestamp:1", "timestamp:2")).unwrap();
        let err = verify_file(&file, &sig, &key.public(), Path::new("p")).unwrap_err();
        assert!(matches!(err, SignError::BadTrustedComment { .. }), "{err}");
        fs_err::write(&sig, text).unwrap();

        let other = SecretKey::generate().unwrap();
        let err = verify_file(&file, &sig, &other.public(), Path::new("p")).unwrap_err();
        assert!(matches!(err, SignError::WrongKey { .. }), "{err}");
        // The same key id with another key: the signature itself fails.
        let impostor = PublicKey {
            key_id: key.key_id,
            key: other.key.verifying_key(),
        };
        let err = verify_file(&file, &sig, &impostor, Path::new("p")).unwrap_err();
        assert!(matches!(err, SignError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn bytes_in_memory_verify_like_files() {
        let key = SecretKey::generate().unwrap();
        let sig = key.sign(b"statement", "comment").unwrap();
        let (what, name, pubkey) = (Path::new("s"), Path::new("sig"), Path::new("k.pub"));
        let ok = verify_bytes(b"statement", what, &sig, name, &key.public(), pubkey).unwrap();
        assert_eq!(ok, "comment");
        let err = verify_bytes(b"statemenT", what, &sig, name, &key.public(), pubkey);
        assert!(
            matches!(err, Err(SignError::BadSignature { .. })),
            "{err:?}"
        );
        let other = SecretKey::generate().unwrap().public();
        let err = verify_bytes(b"statement", what, &sig, name, &other, pubkey);
        assert!(matches!(err, Err(SignError::WrongKey { .. })), "{err:?}");
        let err = verify_bytes(b"statement", what, "junk", name, &key.public(), pubkey);
        assert!(matches!(err, Err(SignError::Malformed { .. })), "{err:?}");
    }

    #[test]
    fn a_legacy_signature_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate().unwrap();
        let file = dir.path().join("f");
        fs_err::write(&file, b"legacy").unwrap();
        let sig = key.key.sign(b"legacy").to_bytes();
        let comment = "timestamp:5";
        let mut global = sig.to_vec();
        global.extend_from_slice(comment.as_bytes());
        let mut line = ALG_LEGACY.to_vec();
        line.extend_from_slice(&key.key_id);
        line.extend_from_slice(&sig);
        let text = format!(
            "untrusted comment: x\n{}\ntrusted comment: {comment}\n{}\n",
            B64.encode(line),
            B64.encode(key.key.sign(&global).to_bytes())
        );
        let sig_path = dir.path().join("f.minisig");
        fs_err::write(&sig_path, text).unwrap();
        assert_eq!(
            verify_file(&file, &sig_path, &key.public(), Path::new("p")).unwrap(),
            comment
        );
    }

    #[test]
    fn encrypted_and_damaged_keys_are_refused() {
        let key = SecretKey::generate().unwrap();
        let text = key.to_file_text();
        let line = payload_line(&text).unwrap();
        let mut raw = B64.decode(line).unwrap();
        raw[2..4].copy_from_slice(&KDF_SCRYPT);
        let err = SecretKey::parse(Path::new("k"), &B64.encode(&raw)).unwrap_err();
        assert!(err.to_string().contains("HERMETIC_SIGN_PASSWORD"), "{err}");
        raw[2..4].copy_from_slice(&KDF_NONE);
        raw[70] ^= 1; // a byte of the secret seed
        let err = SecretKey::parse(Path::new("k"), &B64.encode(&raw)).unwrap_err();
        assert!(matches!(err, SignError::DamagedKey { .. }), "{err}");
    }

    #[test]
    fn scrypt_parameters_are_libsodiums() {
        // minisign's defaults (libsodium's "sensitive" limits): N = 2^20, r = 8, p = 1.
        assert_eq!(scrypt_params(33_554_432, 1_073_741_824), (20, 8, 1));
        // libsodium's "interactive" limits: N = 2^14, r = 8, p = 1.
        assert_eq!(scrypt_params(524_288, 16_777_216), (14, 8, 1));
    }

    #[test]
    fn multi_line_comments_are_refused() {
        let key = SecretKey::generate().unwrap();
        assert!(matches!(
            key.sign(b"x", "a\nb"),
            Err(SignError::BadComment { .. })
        ));
    }
}

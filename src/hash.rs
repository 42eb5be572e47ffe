//! SHA-256 helpers: the one place that spells a digest as text, checks such a spelling, and
//! hashes a stream or a file. Everything that names content by its hash (the store, the lock
//! file, verify, sources, release) goes through these.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Whether `s` is a lowercase hexadecimal SHA-256.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The lowercase hexadecimal SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SHA-256 (raw) and length of everything `r` yields.
pub fn digest_stream(mut r: impl Read) -> io::Result<([u8; 32], u64)> {
    let mut hasher = Sha256::new();
    let n = io::copy(&mut r, &mut hasher)?;
    Ok((hasher.finalize().into(), n))
}

/// The SHA-256 (lowercase hex) and length of everything `r` yields.
pub fn hash_stream(r: impl Read) -> io::Result<(String, u64)> {
    let (digest, n) = digest_stream(r)?;
    Ok((hex::encode(digest), n))
}

/// The SHA-256 (lowercase hex) of the file at `path`, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    hash_stream(fs_err::File::open(path)?).map(|(hash, _)| hash)
}

/// A writer that hashes and counts what passes through it to `inner`.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The SHA-256 (lowercase hex) and length of what was written.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digest_and_its_check() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_hex(b""), empty);
        assert!(is_sha256(empty));
        assert!(!is_sha256(&empty.to_uppercase()));
        assert!(!is_sha256(&empty[1..]));
        assert_eq!(hash_stream(&b"abc"[..]).unwrap(), (sha256_hex(b"abc"), 3));
    }

    #[test]
    fn hashing_writer_sees_what_passes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        assert_eq!(w.finish(), (sha256_hex(b"abc"), 3));
    }
}

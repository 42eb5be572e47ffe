//! Comparing a published release with a rebuild: what was published (a `SHA256SUMS`, a
//! directory, a URL, a single file, its `.sha256` or `.minisig`), the signatures next to it,
//! and the verdict for every file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::sign::{PublicKey, SignError};

/// The name of a sums file.
pub const SUMS: &str = "SHA256SUMS";

/// Errors reading what was published.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{origin} lists no file\nhint: give a SHA256SUMS (lines `<sha256>  <name>`), a directory of released files, a URL of either, or one .efi/.sha256/.minisig file"
    )]
    Empty { origin: String },
    #[error(
        "{origin} has the line {line:?}, which is not `<sha256>  <name>`\nhint: give the SHA256SUMS exactly as published"
    )]
    BadSumsLine { origin: String, line: String },
    #[error(
        "{origin} is a signature alone, which says nothing without the key that made it\nhint: add --pubkey KEY (the release's minisign public key)"
    )]
    SignatureNeedsKey { origin: String },
    #[error("cannot download {url}")]
    Http {
        url: String,
        #[source]
        source: crate::http::HttpError,
    },
    #[error(
        "{dir} is not consistent: its SHA256SUMS gives {name} the hash {listed}, but the file there hashes to {actual}\nhint: the release directory was altered or is incomplete; get it again, or give the SHA256SUMS or the files alone"
    )]
    Inconsistent {
        dir: String,
        name: String,
        listed: String,
        actual: String,
    },
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// `(name, sha256)` of each line of a `SHA256SUMS` text (`<hash>  <name>`, or `<hash> *<name>`
/// as `sha256sum -b` writes); malformed lines are skipped.
pub fn parse_sums(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| parse_sums_line(l).ok())
        .collect()
}

fn parse_sums_line(line: &str) -> Result<(String, String), ()> {
    let (hash, rest) = line.split_once(' ').ok_or(())?;
    let name = rest
        .strip_prefix(' ')
        .or_else(|| rest.strip_prefix('*'))
        .ok_or(())?;
    let hash = hash.to_ascii_lowercase();
    if !crate::hash::is_sha256(&hash) || name.is_empty() || name.contains('/') {
        return Err(());
    }
    Ok((name.to_string(), hash))
}

fn parse_sums_strict(origin: &str, text: &str) -> Result<BTreeMap<String, String>, VerifyError> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, hash) = parse_sums_line(line).map_err(|()| VerifyError::BadSumsLine {
            origin: origin.to_string(),
            line: line.to_string(),
        })?;
        out.insert(name, hash);
    }
    Ok(out)
}

/// A signature published for a file.
#[derive(Debug, Clone)]
pub struct PublishedSignature {
    /// Where it came from (path or URL).
    pub origin: String,
    /// Its local copy.
    pub path: PathBuf,
    /// The signed file's local copy, when it was published (else the rebuilt file is checked,
    /// when its hash is the published one, or when only the signature was published).
    pub signed: Option<PathBuf>,
}

/// What was published.
#[derive(Debug, Default)]
pub struct Published {
    /// What was read (path or URL), for messages.
    pub origin: String,
    /// File name → SHA-256; `None` when only a signature of the file was published.
    pub files: BTreeMap<String, Option<String>>,
    /// File name (the signed file's) → its signature.
    pub signatures: BTreeMap<String, PublishedSignature>,
    /// Downloads live here as long as this does.
    _downloads: Option<tempfile::TempDir>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, VerifyError> {
    crate::hash::sha256_file(path).map_err(io(path))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether a published file is a side file (signature or hash) rather than a release file.
fn is_side_file(name: &str) -> bool {
    name == SUMS || name.ends_with(".minisig") || name.ends_with(".sha256")
}

/// Reads what was published at `source`: a local path or an http(s) URL.
pub fn read_published(source: &str, http: &crate::http::Http) -> Result<Published, VerifyError> {
    if source.starts_with("http://") || source.starts_with("https://") {
        read_url(source, http)
    } else {
        read_local(Path::new(source))
    }
}

fn read_local(path: &Path) -> Result<Published, VerifyError> {
    let origin = path.display().to_string();
    let mut published = Published {
        origin: origin.clone(),
        ..Published::default()
    };
    let meta = fs_err::metadata(path).map_err(io(path))?;
    if meta.is_dir() {
        let mut names: Vec<String> = fs_err::read_dir(path)
            .map_err(io(path))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let sums = path.join(SUMS);
        if sums.is_file() {
            let text = fs_err::read_to_string(&sums).map_err(io(&sums))?;
            for (name, hash) in parse_sums_strict(&sums.display().to_string(), &text)? {
                published.files.insert(name, Some(hash));
            }
        }
        for name in &names {
            let p = path.join(name);
            if let Some(signed) = name.strip_suffix(".minisig") {
                let signed_path = path.join(signed);
                published.signatures.insert(
                    signed.to_string(),
                    PublishedSignature {
                        origin: p.display().to_string(),
                        path: p.clone(),
                        signed: signed_path.is_file().then_some(signed_path),
                    },
                );
            } else if let Some(of) = name.strip_suffix(".sha256") {
                if !published.files.contains_key(of) && !names.iter().any(|n| n == of) {
                    published
                        .files
                        .insert(of.to_string(), Some(read_sha256_file(&p, of)?));
                }
            } else if name != SUMS {
                let hash = sha256_file(&p)?;
                // A file next to SHA256SUMS is published too: both must say the same.
                if let Some(Some(listed)) = published.files.get(name)
                    && *listed != hash
                {
                    return Err(VerifyError::Inconsistent {
                        dir: origin,
                        name: name.clone(),
                        listed: listed.clone(),
                        actual: hash,
                    });
                }
                published.files.insert(name.clone(), Some(hash));
            }
        }
        if !sums.is_file() && published.files.is_empty() && published.signatures.is_empty() {
            return Err(VerifyError::Empty { origin });
        }
        return Ok(published);
    }
    let name = file_name(path);
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(signed) = name.strip_suffix(".minisig") {
        let signed_path = dir.join(signed);
        let hash = if signed_path.is_file() {
            Some(sha256_file(&signed_path)?)
        } else {
            None
        };
        published.files.insert(signed.to_string(), hash);
        published.signatures.insert(
            signed.to_string(),
            PublishedSignature {
                origin: origin.clone(),
                path: path.to_path_buf(),
                signed: signed_path.is_file().then_some(signed_path),
            },
        );
    } else if let Some(of) = name.strip_suffix(".sha256") {
        published
            .files
            .insert(of.to_string(), Some(read_sha256_file(path, of)?));
        add_sibling_signature(&mut published, dir, of);
    } else if name.contains(SUMS) {
        let text = fs_err::read_to_string(path).map_err(io(path))?;
        for (file, hash) in parse_sums_strict(&origin, &text)? {
            add_sibling_signature(&mut published, dir, &file);
            published.files.insert(file, Some(hash));
        }
        // A signature of the sums file itself vouches for every hash in it.
        let sig = dir.join(format!("{name}.minisig"));
        if sig.is_file() {
            published.signatures.insert(
                name.clone(),
                PublishedSignature {
                    origin: sig.display().to_string(),
                    path: sig,
                    signed: Some(path.to_path_buf()),
                },
            );
        }
    } else {
        published
            .files
            .insert(name.clone(), Some(sha256_file(path)?));
        add_sibling_signature(&mut published, dir, &name);
    }
    if published.files.is_empty() {
        return Err(VerifyError::Empty { origin });
    }
    Ok(published)
}

fn add_sibling_signature(published: &mut Published, dir: &Path, name: &str) {
    let sig = dir.join(format!("{name}.minisig"));
    if sig.is_file() {
        let signed = dir.join(name);
        published.signatures.insert(
            name.to_string(),
            PublishedSignature {
                origin: sig.display().to_string(),
                path: sig,
                signed: signed.is_file().then_some(signed),
            },
        );
    }
}

/// A `.sha256` file: a hash, optionally followed by the file name.
fn read_sha256_file(path: &Path, of: &str) -> Result<String, VerifyError> {
    let text = fs_err::read_to_string(path).map_err(io(path))?;
    parse_sha256_text(&path.display().to_string(), &text, of)
}

fn parse_sha256_text(origin: &str, text: &str, of: &str) -> Result<String, VerifyError> {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let hash = line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !crate::hash::is_sha256(&hash) {
        return Err(VerifyError::BadSumsLine {
            origin: origin.to_string(),
            line: format!("{line} (for {of})"),
        });
    }
    Ok(hash)
}

fn read_url(url: &str, http: &crate::http::Http) -> Result<Published, VerifyError> {
    let downloads = tempfile::tempdir().map_err(io(&std::env::temp_dir()))?;
    let fetch = |url: &str, to: &Path| -> Result<(), VerifyError> {
        let herr = |source| VerifyError::Http {
            url: url.to_string(),
            source,
        };
        let mut d = http.get(url, None).map_err(herr)?;
        let mut f = fs_err::File::create(to).map_err(io(to))?;
        std::io::copy(&mut d.reader, &mut f)
            .map_err(|e| crate::http::body_error(url, e))
            .map_err(herr)?;
        Ok(())
    };
    // An optional file: a 404 is "not published".
    let fetch_optional = |url: &str, to: &Path| -> Result<bool, VerifyError> {
        match fetch(url, to) {
            Ok(()) => Ok(true),
            Err(VerifyError::Http {
                source: crate::http::HttpError::Status { status: 404, .. },
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    };
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let base = &url[..url.len() - url.rsplit('/').next().map_or(0, str::len)];
    let safe = |n: &str| n.replace(['/', '\\'], "_");
    let mut published = Published {
        origin: url.to_string(),
        ..Published::default()
    };
    let local = downloads.path().join(safe(&name));
    if let Some(signed) = name.strip_suffix(".minisig") {
        fetch(url, &local)?;
        published.files.insert(signed.to_string(), None);
        published.signatures.insert(
            signed.to_string(),
            PublishedSignature {
                origin: url.to_string(),
                path: local,
                signed: None,
            },
        );
    } else if let Some(of) = name.strip_suffix(".sha256") {
        fetch(url, &local)?;
        let text = fs_err::read_to_string(&local).map_err(io(&local))?;
        published
            .files
            .insert(of.to_string(), Some(parse_sha256_text(url, &text, of)?));
    } else if name.contains(SUMS) {
        fetch(url, &local)?;
        let text = fs_err::read_to_string(&local).map_err(io(&local))?;
        for (file, hash) in parse_sums_strict(url, &text)? {
            published.files.insert(file, Some(hash));
        }
        let sig_url = format!("{url}.minisig");
        let sig = downloads.path().join(format!("{}.minisig", safe(&name)));
        if fetch_optional(&sig_url, &sig)? {
            published.signatures.insert(
                name.clone(),
                PublishedSignature {
                    origin: sig_url,
                    path: sig,
                    signed: Some(local),
                },
            );
        }
    } else {
        fetch(url, &local)?;
        published
            .files
            .insert(name.clone(), Some(sha256_file(&local)?));
        let sig_url = format!("{base}{name}.minisig");
        let sig = downloads.path().join(format!("{}.minisig", safe(&name)));
        if fetch_optional(&sig_url, &sig)? {
            published.signatures.insert(
                name.clone(),
                PublishedSignature {
                    origin: sig_url,
                    path: sig,
                    signed: Some(local),
                },
            );
        }
    }
    if published.files.is_empty() {
        return Err(VerifyError::Empty {
            origin: url.to_string(),
        });
    }
    published._downloads = Some(downloads);
    Ok(published)
}

/// The verdict for one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Published and rebuilt with the same bytes.
    Same,
    /// Published and rebuilt, with different bytes.
    Differs,
    /// Published, but the build made no file of that name.
    NotRebuilt,
    /// Rebuilt, but not published (not a failure: the release may publish less).
    NotPublished,
}

impl Verdict {
    /// The word printed in the table.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Same => "same",
            Verdict::Differs => "DIFFERS",
            Verdict::NotRebuilt => "not rebuilt",
            Verdict::NotPublished => "not published",
        }
    }
}

/// What a signature check said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum SignatureVerdict {
    /// Good; the trusted comment.
    Good { trusted_comment: String },
    /// Bad; why.
    Bad { reason: String },
}

/// One row of the table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub file: String,
    pub published: Option<String>,
    pub rebuilt: Option<String>,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureVerdict>,
}

/// The comparison of a release with a rebuild.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub against: String,
    pub rows: Vec<Row>,
    /// Signature checks of files that are not rows (the signature of `SHA256SUMS`).
    pub signatures: BTreeMap<String, SignatureVerdict>,
}

impl Comparison {
    /// Every published file was rebuilt with the same bytes.
    pub fn all_same(&self) -> bool {
        self.rows
            .iter()
            .all(|r| matches!(r.verdict, Verdict::Same | Verdict::NotPublished))
    }

    /// Some signature did not verify.
    pub fn bad_signature(&self) -> bool {
        self.rows
            .iter()
            .filter_map(|r| r.signature.as_ref())
            .chain(self.signatures.values())
            .any(|s| matches!(s, SignatureVerdict::Bad { .. }))
    }

    /// The table as text.
    pub fn table(&self) -> String {
        let short = |h: &Option<String>| {
            h.as_deref()
                .map_or("-".to_string(), |h| h[..16.min(h.len())].to_string())
        };
        let width = self
            .rows
            .iter()
            .map(|r| r.file.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = format!(
            "{:width$}  {:16}  {:16}  verdict\n",
            "file", "published", "rebuilt"
        );
        for r in &self.rows {
            let sig = match &r.signature {
                Some(SignatureVerdict::Good { .. }) => "  (signature good)".to_string(),
                Some(SignatureVerdict::Bad { .. }) => "  (signature BAD)".to_string(),
                None => String::new(),
            };
            out.push_str(&format!(
                "{:width$}  {:16}  {:16}  {}{sig}\n",
                r.file,
                short(&r.published),
                short(&r.rebuilt),
                r.verdict.word()
            ));
        }
        for (file, s) in self
            .rows
            .iter()
            .filter_map(|r| r.signature.as_ref().map(|s| (&r.file, s)))
            .chain(self.signatures.iter())
        {
            match s {
                SignatureVerdict::Good { trusted_comment } => out.push_str(&format!(
                    "signature of {file}: good; trusted comment: {trusted_comment}\n"
                )),
                SignatureVerdict::Bad { reason } => {
                    out.push_str(&format!("signature of {file}: BAD: {reason}\n"))
                }
            }
        }
        out
    }
}

/// Compares `published` with the rebuilt files (name → (SHA-256, path)), checking every
/// published signature against `key` when one is given.
pub fn compare(
    published: &Published,
    rebuilt: &BTreeMap<String, (String, PathBuf)>,
    key: Option<(&PublicKey, &Path)>,
) -> Result<Comparison, VerifyError> {
    if key.is_none() && published.files.values().any(Option::is_none) {
        return Err(VerifyError::SignatureNeedsKey {
            origin: published.origin.clone(),
        });
    }
    let mut rows = Vec::new();
    let mut signatures = BTreeMap::new();
    let check = |sig: &PublishedSignature, file: &Path, key: (&PublicKey, &Path)| {
        match crate::sign::verify_file(file, &sig.path, key.0, key.1) {
            Ok(trusted_comment) => SignatureVerdict::Good { trusted_comment },
            Err(e) => SignatureVerdict::Bad {
                reason: format!(
                    "{} ({})",
                    e.to_string().lines().next().unwrap_or_default(),
                    sig.origin
                ),
            },
        }
    };
    for (name, hash) in &published.files {
        if is_side_file(name) {
            continue;
        }
        let mine = rebuilt.get(name);
        let sig = published.signatures.get(name);
        let signature = match (key, sig) {
            (Some(key), Some(sig)) => {
                // The published bytes when we have them; else the rebuilt file, which is the
                // published one when the hashes match (or when only the signature was given).
                let file = sig.signed.clone().or_else(|| mine.map(|(_, p)| p.clone()));
                Some(match file {
                    Some(f) => check(sig, &f, key),
                    None => SignatureVerdict::Bad {
                        reason: format!(
                            "{name} was not rebuilt, so its signature {} could not be checked",
                            sig.origin
                        ),
                    },
                })
            }
            _ => None,
        };
        let verdict = match (hash, mine, &signature) {
            (_, None, _) => Verdict::NotRebuilt,
            (Some(h), Some((r, _)), _) if h == r => Verdict::Same,
            (Some(_), Some(_), _) => Verdict::Differs,
            // Only a signature was published: it decides.
            (None, Some(_), Some(SignatureVerdict::Good { .. })) => Verdict::Same,
            (None, Some(_), _) => Verdict::Differs,
        };
        rows.push(Row {
            file: name.clone(),
            published: hash.clone(),
            rebuilt: mine.map(|(h, _)| h.clone()),
            verdict,
            signature,
        });
    }
    if let Some(key) = key {
        for (name, sig) in &published.signatures {
            if published.files.contains_key(name) && !is_side_file(name) {
                continue;
            }
            let verdict = match &sig.signed {
                Some(f) => check(sig, f, key),
                None => SignatureVerdict::Bad {
                    reason: format!("{name} was not published next to {}", sig.origin),
                },
            };
            signatures.insert(name.clone(), verdict);
        }
    }
    for (name, (hash, _)) in rebuilt {
        if !published.files.contains_key(name) && !is_side_file(name) {
            rows.push(Row {
                file: name.clone(),
                published: None,
                rebuilt: Some(hash.clone()),
                verdict: Verdict::NotPublished,
                signature: None,
            });
        }
    }
    Ok(Comparison {
        against: published.origin.clone(),
        rows,
        signatures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn sums_lines_are_parsed_in_both_modes() {
        let text = format!("{A}  x.efi\n{B} *y.tar\nnot a line\n{A}  ../evil\n");
        assert_eq!(
            parse_sums(&text),
            vec![
                ("x.efi".to_string(), A.to_string()),
                ("y.tar".to_string(), B.to_string())
            ]
        );
        assert!(parse_sums_strict("s", &text).is_err());
    }

    #[test]
    fn a_directory_whose_files_disagree_with_its_sums_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs_err::write(d.join("x.efi"), b"x").unwrap();
        let x = crate::hash::sha256_hex(b"x");
        fs_err::write(d.join(SUMS), format!("{x}  x.efi\n{A}  gone.efi\n")).unwrap();
        let p = read_local(d).unwrap();
        assert_eq!(p.files["x.efi"].as_deref(), Some(x.as_str()));
        assert_eq!(p.files["gone.efi"].as_deref(), Some(A));
        fs_err::write(d.join("x.efi"), b"y").unwrap();
        let err = read_local(d).unwrap_err();
        assert!(matches!(err, VerifyError::Inconsistent { .. }), "{err}");
        assert!(err.to_string().contains("x.efi"), "{err}");
    }

    #[test]
    fn verdicts() {
        let mut published = Published::default();
        published.files.insert("same".into(), Some(A.into()));
        published.files.insert("differs".into(), Some(A.into()));
        published.files.insert("gone".into(), Some(A.into()));
        let mut rebuilt = BTreeMap::new();
        rebuilt.insert("same".to_string(), (A.to_string(), PathBuf::from("/x")));
        rebuilt.insert("differs".to_string(), (B.to_string(), PathBuf::from("/x")));
        rebuilt.insert("extra".to_string(), (B.to_string(), PathBuf::from("/x")));
        let c = compare(&published, &rebuilt, None).unwrap();
        let v: BTreeMap<_, _> = c
            .rows
            .iter()
            .map(|r| (r.file.as_str(), r.verdict.clone()))
            .collect();
        assert_eq!(v["same"], Verdict::Same);
        assert_eq!(v["differs"], Verdict::Differs);
        assert_eq!(v["gone"], Verdict::NotRebuilt);
        assert_eq!(v["extra"], Verdict::NotPublished);
        assert!(!c.all_same());
        assert!(c.table().contains("DIFFERS"));
        published.files.remove("differs");
        published.files.remove("gone");
        assert!(compare(&published, &rebuilt, None).unwrap().all_same());
    }
}

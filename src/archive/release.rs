//! The signed text of `InRelease`: a single deb822 paragraph with the suite's metadata and
//! the checksum lists of its index files.

use std::collections::BTreeMap;

/// Errors in a Release paragraph.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("line {line}: malformed SHA256 entry `{text}`")]
    BadEntry { line: usize, text: String },
    #[error("no `{field}` field")]
    Missing { field: &'static str },
    #[error("line {line}: not a `Field: value` line: `{text}`")]
    BadLine { line: usize, text: String },
}

/// One file listed in a Release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    pub size: u64,
    pub sha256: String,
}

/// What hermetic needs of a Release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `Suite` (e.g. `stable`).
    pub suite: Option<String>,
    /// `Codename` (e.g. `trixie`).
    pub codename: Option<String>,
    /// `Date`, as written.
    pub date: String,
    /// `Acquire-By-Hash: yes`.
    pub acquire_by_hash: bool,
    /// The `SHA256` list: path (relative to `dists/<suite>/`) to size and hash.
    pub sha256: BTreeMap<String, ReleaseFile>,
}

impl Release {
    /// Parses the (already verified) text of a Release paragraph. `Valid-Until` is ignored
    /// on purpose: pinned snapshots are old by design and every file is pinned by hash.
    pub fn parse(text: &str) -> Result<Release, ReleaseError> {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut sha256 = BTreeMap::new();
        let mut current: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if current.as_deref() == Some("sha256") {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    let [hash, size, path] = parts[..] else {
                        return Err(ReleaseError::BadEntry {
                            line: lineno,
                            text: line.trim().to_string(),
                        });
                    };
                    let size: u64 = size.parse().map_err(|_| ReleaseError::BadEntry {
                        line: lineno,
                        text: line.trim().to_string(),
                    })?;
                    if !crate::store::is_sha256(hash) {
                        return Err(ReleaseError::BadEntry {
                            line: lineno,
                            text: line.trim().to_string(),
                        });
                    }
                    sha256.insert(
                        path.to_string(),
                        ReleaseFile {
                            size,
                            sha256: hash.to_string(),
                        },
                    );
                }
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(ReleaseError::BadLine {
                    line: lineno,
                    text: line.to_string(),
                });
            };
            let name = name.trim().to_ascii_lowercase();
            fields.insert(name.clone(), value.trim().to_string());
            current = Some(name);
        }
        let date = fields
            .get("date")
            .cloned()
            .ok_or(ReleaseError::Missing { field: "Date" })?;
        if sha256.is_empty() {
            return Err(ReleaseError::Missing { field: "SHA256" });
        }
        Ok(Release {
            suite: fields.get("suite").cloned(),
            codename: fields.get("codename").cloned(),
            date,
            acquire_by_hash: fields
                .get("acquire-by-hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
Origin: Debian
Suite: stable
Codename: trixie
Date: Sat, 21 Nov 2026 09:15:44 UTC
Valid-Until: Sat, 28 Nov 2026 09:15:44 UTC
Acquire-By-Hash: yes
MD5Sum:
 3e498904a30e240573dac8ddac594e6f  1961125 contrib/Contents-all
SHA256:
 be3d7d96a040eda0505c1808cccc67f183bbc05dff0842c50f88e6c396557412  9679304 main/binary-amd64/Packages.xz
 b449439c113900c8607c1005f7a1ec0704d0f3b7376ba312b2150c79e4e4e06c 10538456 main/source/Sources.xz
";

    #[test]
    fn reads_fields_and_sha256_list() {
        let r = Release::parse(TEXT).unwrap();
        assert_eq!(r.codename.as_deref(), Some("trixie"));
        assert_eq!(r.date, "Sat, 21 Nov 2026 09:15:44 UTC");
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 2);
        let p = &r.sha256["main/binary-amd64/Packages.xz"];
        assert_eq!(p.size, 9679304);
        assert!(p.sha256.starts_with("be3d7d96"));
        assert!(!r.sha256.contains_key("contrib/Contents-all"));
    }

    #[test]
    fn bad_entry_names_line() {
        let text = TEXT.replace(" 9679304 ", " nine ");
        let err = Release::parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("line 10:"), "{err}");
    }
}

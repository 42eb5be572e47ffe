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
    #[error("`{field}: {text}` is not a date like `Sat, 21 Nov 2026 09:15:44 UTC`")]
    BadDate { field: &'static str, text: String },
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
    /// `Date`, in seconds since the Unix epoch.
    pub date_unix: i64,
    /// `Valid-Until` in seconds since the Unix epoch, when present.
    pub valid_until: Option<i64>,
    /// `Acquire-By-Hash: yes`.
    pub acquire_by_hash: bool,
    /// The `SHA256` list: path (relative to `dists/<suite>/`) to size and hash.
    pub sha256: BTreeMap<String, ReleaseFile>,
}

impl Release {
    /// Parses the (already verified) text of a Release paragraph. Whether `Codename`,
    /// `Date` and `Valid-Until` are acceptable is decided by the caller
    /// ([`super::ArchiveClient::fetch_release`]).
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
                    if !crate::hash::is_sha256(hash) {
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
        let date_unix = parse_date(&date).ok_or_else(|| ReleaseError::BadDate {
            field: "Date",
            text: date.clone(),
        })?;
        let valid_until = match fields.get("valid-until") {
            None => None,
            Some(v) => Some(parse_date(v).ok_or_else(|| ReleaseError::BadDate {
                field: "Valid-Until",
                text: v.clone(),
            })?),
        };
        Ok(Release {
            suite: fields.get("suite").cloned(),
            codename: fields.get("codename").cloned(),
            date,
            date_unix,
            valid_until,
            acquire_by_hash: fields
                .get("acquire-by-hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256,
        })
    }
}

/// Seconds since the Unix epoch of a Release date: `[Day, ]DD Mon YYYY HH:MM:SS UTC` (also
/// `GMT`, `Z` or `+0000`), the RFC 2822 form the archive writes. Other zones are refused.
pub fn parse_date(text: &str) -> Option<i64> {
    let text = text.trim();
    let text = match text.split_once(',') {
        Some((_, rest)) => rest.trim(),
        None => text,
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [day, month, year, time, zone] = parts[..] else {
        return None;
    };
    if !matches!(zone, "UTC" | "GMT" | "Z" | "+0000") {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m.eq_ignore_ascii_case(month))? as i64
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<_>>>()?;
    let [h, m, s] = hms[..] else {
        return None;
    };
    if !(1..=31).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..61).contains(&s)
    {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + m * 60 + s)
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
    fn dates_are_read_as_utc_seconds() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Sat, 21 Nov 2026 09:15:44 UTC"),
            Some(1_795_252_544)
        );
        assert_eq!(parse_date("29 Feb 2024 23:59:59 GMT"), Some(1_709_251_199));
        assert_eq!(parse_date("Sat, 21 Nov 2026 09:15:44 +0100"), None);
        assert_eq!(parse_date("Sat, 21 Nov 2026"), None);
        let r = Release::parse(TEXT).unwrap();
        assert_eq!(r.valid_until, Some(1_795_252_544 + 7 * 86400));
        let err = Release::parse(&TEXT.replace("Date: Sat,", "Date: Xyz, 99"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`Date: Xyz, 99"), "{err}");
    }

    #[test]
    fn bad_entry_names_line() {
        let text = TEXT.replace(" 9679304 ", " nine ");
        let err = Release::parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("line 10:"), "{err}");
    }
}

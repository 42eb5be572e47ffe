//! Debian package versions (`[epoch:]upstream[-revision]`) with dpkg's exact ordering.
//!
//! The comparison is the algorithm of dpkg's `verrevcmp`: strings are compared in runs of
//! non-digits (where `~` sorts before everything, even the end of the string, and letters sort
//! before all other characters) and runs of digits (compared as numbers). Two versions that dpkg
//! considers equal (`1.0` and `0:1.0-0`, `1.01` and `1.1`) are equal here too, so `Eq` follows
//! `Ord` rather than the spelling.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A parsed, validated Debian version.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u32,
    upstream: String,
    revision: String,
    /// Whether the text spelled the epoch (`0:1.0`), so that `Display` gives back the input.
    epoch_shown: bool,
}

/// Why a version string is not a valid Debian version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version '{version}': {reason}")]
pub struct VersionError {
    /// The version string as given.
    pub version: String,
    /// What dpkg would say about it.
    pub reason: &'static str,
}

impl Version {
    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream part (between the epoch and the last hyphen).
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision (after the last hyphen; empty when absent).
    pub fn revision(&self) -> &str {
        &self.revision
    }
}

impl FromStr for Version {
    type Err = VersionError;

    /// Parses like dpkg's `parseversion`, treating its warnings (a first character that is not a
    /// digit, characters outside the allowed sets) as errors: the archive never has them.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| VersionError {
            version: text.to_string(),
            reason,
        };
        // Byte loops and memchr rather than str patterns: this runs for every package of a
        // suite, also in unoptimised test builds.
        let blank = |b: &u8| *b == b' ' || *b == b'\t';
        let b = text.as_bytes();
        let start = b.iter().position(|c| !blank(c)).unwrap_or(b.len());
        let end = b.iter().rposition(|c| !blank(c)).map_or(start, |e| e + 1);
        let trimmed = &text[start..end];
        if trimmed.is_empty() {
            return Err(err("version string is empty"));
        }
        if memchr::memchr2(b' ', b'\t', trimmed.as_bytes()).is_some() {
            return Err(err("version string has embedded spaces"));
        }
        let colon = memchr::memchr(b':', trimmed.as_bytes());
        let (epoch, epoch_shown, rest) = match colon.map(|c| (&trimmed[..c], &trimmed[c + 1..])) {
            Some((e, rest)) => {
                // dpkg reads the epoch with strtol: an optional sign, then digits.
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                let numeric = digits.bytes().take_while(u8::is_ascii_digit).count();
                if numeric == 0 {
                    return Err(err("epoch in version is empty"));
                }
                if numeric != digits.len() {
                    return Err(err("epoch in version is not number"));
                }
                let value: u64 = digits.parse().unwrap_or(u64::MAX);
                if e.starts_with('-') && value != 0 {
                    return Err(err("epoch in version is negative"));
                }
                if value > i32::MAX as u64 {
                    return Err(err("epoch in version is too big"));
                }
                let epoch = value as u32;
                // dpkg looks for this before cutting trailing blanks: "1: " has something
                // after its colon, and fails below with an empty version number instead.
                if rest.is_empty() && end == b.len() {
                    return Err(err("nothing after colon in version number"));
                }
                (epoch, true, rest)
            }
            None => (0, false, trimmed),
        };
        let (upstream, revision) = match memchr::memrchr(b'-', rest.as_bytes()) {
            Some(h) if h + 1 == rest.len() => return Err(err("revision number is empty")),
            Some(h) => (&rest[..h], &rest[h + 1..]),
            None => (rest, ""),
        };
        let mut bytes = upstream.bytes();
        match bytes.next() {
            None => return Err(err("version number is empty")),
            Some(b) if !b.is_ascii_digit() => {
                return Err(err("version number does not start with digit"));
            }
            Some(_) => {}
        }
        for b in bytes {
            if !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'~' | b':')) {
                return Err(err("invalid character in version number"));
            }
        }
        for b in revision.bytes() {
            if !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'~')) {
                return Err(err("invalid character in revision number"));
            }
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
            epoch_shown,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch_shown || self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| verrevcmp(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The weight of one non-digit character: `~` below the end of the string, letters below
/// everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` on one part (upstream or revision).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn edge_cases_order_like_dpkg() {
        assert!(v("1.0~rc1") < v("1.0"));
        assert!(v("1:0") > v("9"));
        assert!(v("1.0-1") < v("1.0-1+b1"));
        assert!(v("1.0~~") < v("1.0~"));
        assert!(v("1.0~~") < v("1.0~~a"));
        assert!(v("1.0a") < v("1.0+"));
        assert!(v("1.0") < v("1.0a"));
        assert!(v("1.10") > v("1.9"));
        assert_eq!(v("1.0"), v("0:1.0-0"));
        assert_eq!(v("1.01"), v("1.1"));
        assert!(v("2.30-1") < v("2.30.1-1"));
        assert!(v("1.0-1~bpo1") < v("1.0-1"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "1.0",
            "0:1.0",
            "2:1.2.3-4+deb13u1",
            "1.0-1-2",
            "3:1:2-1",
            "1.0~rc1",
        ] {
            assert_eq!(v(s).to_string(), s);
        }
        let x = v("2:1.2-3");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (2, "1.2", "3"));
        let y = v("1.0-1-2");
        assert_eq!((y.upstream(), y.revision()), ("1.0-1", "2"));
    }

    #[test]
    fn invalid_versions_are_named() {
        for (s, reason) in [
            ("", "version string is empty"),
            ("1 0", "version string has embedded spaces"),
            (":1", "epoch in version is empty"),
            ("a:1", "epoch in version is empty"),
            ("1a:1", "epoch in version is not number"),
            ("-1:1", "epoch in version is negative"),
            ("1:", "nothing after colon in version number"),
            ("+0: ", "version number is empty"),
            ("1.0-", "revision number is empty"),
            ("-1", "version number is empty"),
            ("a1", "version number does not start with digit"),
            ("1_0", "invalid character in version number"),
            ("1.0-a_b", "invalid character in revision number"),
            ("99999999999:1", "epoch in version is too big"),
        ] {
            let e = s.parse::<Version>().unwrap_err();
            assert_eq!(e.reason, reason, "{s:?}");
            assert!(e.to_string().contains(&format!("'{s}'")), "{e}");
        }
    }
}

//! deb822 control data: paragraphs of `Field: value` lines, as in `Packages`, `Sources` and
//! `Release` files.
//!
//! Rules, as dpkg and apt read them:
//! - paragraphs are separated by lines that are empty or hold only spaces and tabs;
//! - lines starting with `#` are comments and are skipped;
//! - a line starting with a space or tab continues the previous field; its value keeps the line
//!   minus that one leading character, joined to the previous lines with `\n`;
//! - when the first line of a field's value is empty (as in `Checksums-Sha256:`), the value
//!   starts with the first continuation line;
//! - field names are matched case-insensitively and may appear once per paragraph.

use std::ops::Range;

/// One paragraph: its fields in file order and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph {
    /// Every field name and value, one after the other.
    text: String,
    /// For each field: the range of its name and of its value in `text`.
    fields: Vec<(Range<usize>, Range<usize>)>,
    line: usize,
}

/// Malformed deb822 data; the caller adds the file or URL it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deb822Error {
    /// A continuation line where no field is open (first line of a paragraph).
    #[error("line {line}: continuation line outside of a field")]
    ContinuationOutsideField { line: usize },
    /// A line that is neither a field, a continuation, a comment nor blank.
    #[error("line {line}: expected 'Field: value', found {text:?}")]
    MissingColon { line: usize, text: String },
    /// `: value` or a field name with spaces or control characters.
    #[error("line {line}: invalid field name {name:?}")]
    BadFieldName { line: usize, name: String },
    /// The same field twice in one paragraph.
    #[error("line {line}: duplicate field '{field}' in the paragraph starting on line {first}")]
    DuplicateField {
        line: usize,
        field: String,
        first: usize,
    },
}

impl Deb822Error {
    /// The 1-based line number the error is about.
    pub fn line(&self) -> usize {
        match self {
            Deb822Error::ContinuationOutsideField { line }
            | Deb822Error::MissingColon { line, .. }
            | Deb822Error::BadFieldName { line, .. }
            | Deb822Error::DuplicateField { line, .. } => *line,
        }
    }
}

impl Paragraph {
    /// The value of `field` (name compared case-insensitively).
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| self.text[name.clone()].eq_ignore_ascii_case(field))
            .map(|(_, value)| &self.text[value.clone()])
    }

    /// The 1-based line number of the paragraph's first field.
    pub fn line(&self) -> usize {
        self.line
    }

    /// All fields, in file order, as `(name, value)`.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|(name, value)| (&self.text[name.clone()], &self.text[value.clone()]))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the paragraph has no field (never the case for parsed paragraphs).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// A paragraph under construction.
struct Builder {
    para: Paragraph,
    /// One bit per (hash of the lower-cased) field name seen, so that the duplicate check
    /// compares names only on a collision.
    seen: u64,
    /// True while the last field's value is still empty (first line had no text).
    value_empty: bool,
}

impl Builder {
    fn new(line: usize) -> Self {
        Builder {
            para: Paragraph {
                text: String::with_capacity(1024),
                fields: Vec::with_capacity(24),
                line,
            },
            value_empty: true,
            seen: 0,
        }
    }

    fn add_field(&mut self, line: usize, name: &str, value: &str) -> Result<(), Deb822Error> {
        let bit = 1u64 << (name_hash(name) % 64);
        let duplicate = self.seen & bit != 0 && self.para.get(name).is_some();
        self.seen |= bit;
        if duplicate {
            return Err(Deb822Error::DuplicateField {
                line,
                field: name.to_string(),
                first: self.para.line,
            });
        }
        let text = &mut self.para.text;
        let name_start = text.len();
        text.push_str(name);
        let value_start = text.len();
        text.push_str(value);
        self.para
            .fields
            .push((name_start..value_start, value_start..text.len()));
        self.value_empty = value.is_empty();
        Ok(())
    }

    /// Appends a continuation line (already stripped of its one leading blank).
    fn continue_field(&mut self, value: &str) {
        let text = &mut self.para.text;
        if !self.value_empty {
            text.push('\n');
        }
        text.push_str(value);
        self.value_empty = false;
        if let Some(last) = self.para.fields.last_mut() {
            last.1.end = text.len();
        }
    }
}

/// A cheap case-insensitive hash of a field name.
fn name_hash(name: &str) -> u32 {
    let mut h: u32 = 0;
    for &b in name.as_bytes() {
        h = h.wrapping_mul(31).wrapping_add(u32::from(b | 0x20));
    }
    h
}

/// `s` without leading and trailing spaces and tabs.
fn trim_blanks(s: &str) -> &str {
    let b = s.as_bytes();
    let mut start = 0;
    let mut end = b.len();
    while start < end && (b[start] == b' ' || b[start] == b'\t') {
        start += 1;
    }
    while end > start && (b[end - 1] == b' ' || b[end - 1] == b'\t') {
        end -= 1;
    }
    &s[start..end]
}

/// `s` without trailing spaces and tabs.
fn trim_end_blanks(s: &str) -> &str {
    let b = s.as_bytes();
    let mut end = b.len();
    while end > 0 && (b[end - 1] == b' ' || b[end - 1] == b'\t') {
        end -= 1;
    }
    &s[..end]
}

/// Parses deb822 text into paragraphs.
///
/// Lines are found with `memchr` and examined byte by byte: this runs over every `Packages`
/// file of a lock (tens of megabytes), also in unoptimised test builds.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, Deb822Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut current: Option<Builder> = None;
    let mut pos = 0;
    let mut line_no = 0;
    while pos < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        let mut line = &text[pos..end];
        pos = end + 1;
        line_no += 1;
        if line.as_bytes().last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let first = line.as_bytes().first().copied();
        let blank = match first {
            None => true,
            Some(b' ' | b'\t') => line.bytes().all(|b| b == b' ' || b == b'\t'),
            Some(_) => false,
        };
        if blank {
            if let Some(b) = current.take() {
                out.push(b.para);
            }
            continue;
        }
        match first {
            Some(b'#') => continue,
            Some(b' ' | b'\t') => {
                match current.as_mut() {
                    Some(b) => b.continue_field(trim_end_blanks(&line[1..])),
                    None => return Err(Deb822Error::ContinuationOutsideField { line: line_no }),
                }
                continue;
            }
            _ => {}
        }
        let Some(colon) = memchr::memchr(b':', line.as_bytes()) else {
            return Err(Deb822Error::MissingColon {
                line: line_no,
                text: line.to_string(),
            });
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.starts_with('-') || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(Deb822Error::BadFieldName {
                line: line_no,
                name: name.to_string(),
            });
        }
        if name.is_empty() {
            return Err(Deb822Error::BadFieldName {
                line: line_no,
                name: String::new(),
            });
        }
        let builder = current.get_or_insert_with(|| Builder::new(line_no));
        builder.add_field(line_no, name, trim_blanks(value))?;
    }
    if let Some(b) = current.take() {
        out.push(b.para);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_continuations_and_comments() {
        let text = "# a comment\nPackage: foo\nVersion:  1.0 \nDescription: short\n more\n .\n\tlast\n   indented\n\
                    \n   \n# between\nPackage: bar\nChecksums-Sha256:\n abc 1 a.dsc\n def 2 b.tar.xz\n";
        let paras = parse(text).unwrap();
        assert_eq!(paras.len(), 2);
        let foo = &paras[0];
        assert_eq!(foo.line(), 2);
        assert_eq!(foo.get("package"), Some("foo"));
        assert_eq!(foo.get("VERSION"), Some("1.0"));
        assert_eq!(
            foo.get("Description"),
            Some("short\nmore\n.\nlast\n  indented")
        );
        assert_eq!(foo.get("Missing"), None);
        let names: Vec<_> = foo.fields().map(|(n, _)| n).collect();
        assert_eq!(names, ["Package", "Version", "Description"]);
        let bar = &paras[1];
        assert_eq!(bar.line(), 12);
        assert_eq!(
            bar.get("Checksums-Sha256"),
            Some("abc 1 a.dsc\ndef 2 b.tar.xz")
        );
    }

    #[test]
    fn crlf_and_no_final_newline() {
        let paras = parse("A: 1\r\nB: 2\r\n\r\nC: 3").unwrap();
        assert_eq!(paras.len(), 2);
        assert_eq!(paras[0].get("b"), Some("2"));
        assert_eq!(paras[1].get("C"), Some("3"));
        assert!(parse("").unwrap().is_empty());
        assert!(parse("\n\n# only a comment\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_input_names_the_line() {
        let e = parse("A: 1\n\n continued\n").unwrap_err();
        assert_eq!(e, Deb822Error::ContinuationOutsideField { line: 3 });
        assert_eq!(
            e.to_string(),
            "line 3: continuation line outside of a field"
        );
        let e = parse("A: 1\nno colon here\n").unwrap_err();
        assert_eq!(e.line(), 2);
        assert!(e.to_string().contains("no colon here"), "{e}");
        let e = parse("A: 1\n: x\n").unwrap_err();
        assert!(
            matches!(e, Deb822Error::BadFieldName { line: 2, .. }),
            "{e:?}"
        );
        let e = parse("Bad Name: x\n").unwrap_err();
        assert!(
            matches!(e, Deb822Error::BadFieldName { line: 1, .. }),
            "{e:?}"
        );
        let e = parse("\nA: 1\nB: 2\na: 3\n").unwrap_err();
        assert_eq!(
            e,
            Deb822Error::DuplicateField {
                line: 4,
                field: "a".into(),
                first: 2
            }
        );
    }
}

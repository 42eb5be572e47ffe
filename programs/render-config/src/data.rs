//! The configuration as the templates see it, in the two modes of a template's name.
//!
//! Safe mode (the default): every string keeps only printable ASCII (space to `~`; control
//! characters, DEL and everything beyond ASCII are removed), and the backslash that starts an
//! escape sequence Go (or a TOML reader) would interpret is doubled, so that the sequence
//! prints literally: `\a \b \c \e \f \n \r \t \v`, `\xHH`, `\uHHHH`, `\UHHHHHHHH` and octal
//! `\OOO`. A `\\` pair is left as it is (it already stands for one backslash).
//!
//! Unsafe mode (`_unsafe`): the JSON as it came, except that every object key ending in
//! `#base64` has its string value decoded and the suffix dropped.

use std::collections::BTreeMap;
use std::fmt;

use crate::mustache::Value;

/// Why the configuration could not be turned into template data.
#[derive(Debug)]
pub enum DataError {
    /// The configuration is not JSON.
    Json(serde_json::Error),
    /// A `#base64` key whose value is not a string.
    Base64NotString { key: String },
    /// A `#base64` value that does not decode.
    Base64Invalid { key: String, reason: &'static str },
    /// Both `name` and `name#base64` in one object.
    Base64Conflict { key: String },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Json(e) => write!(f, "the configuration is not valid JSON: {e}"),
            DataError::Base64NotString { key } => {
                write!(f, "key `{key}`: a #base64 value must be a string")
            }
            DataError::Base64Invalid { key, reason } => {
                write!(f, "key `{key}`: the value is not base64 ({reason})")
            }
            DataError::Base64Conflict { key } => write!(
                f,
                "keys `{key}` and `{key}#base64` in one object: which one to use is ambiguous"
            ),
        }
    }
}

impl std::error::Error for DataError {}

/// Parses the configuration as JSON.
pub fn parse(json: &[u8]) -> Result<serde_json::Value, DataError> {
    serde_json::from_slice(json).map_err(DataError::Json)
}

/// The data for safe-mode templates.
pub fn safe(config: &serde_json::Value) -> Value {
    sanitize_strings(Value::from(config.clone()))
}

/// The data for unsafe-mode templates.
pub fn unsafe_data(config: &serde_json::Value) -> Result<Value, DataError> {
    decode_base64_keys(Value::from(config.clone()))
}

fn sanitize_strings(value: Value) -> Value {
    match value {
        Value::Str(s) => Value::Str(neutralize(&s)),
        Value::List(items) => Value::List(items.into_iter().map(sanitize_strings).collect()),
        Value::Map(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (k, sanitize_strings(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Keeps printable ASCII only and doubles the backslash of every Go escape sequence.
pub fn neutralize(s: &[u8]) -> Vec<u8> {
    let printable: Vec<u8> = s
        .iter()
        .copied()
        .filter(|b| (0x20..=0x7e).contains(b))
        .collect();
    let mut out = Vec::with_capacity(printable.len());
    let mut i = 0;
    while i < printable.len() {
        let b = printable[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &printable[i + 1..];
        if rest.first() == Some(&b'\\') {
            out.extend_from_slice(b"\\\\");
            i += 2;
            continue;
        }
        if escape_len(rest) > 0 {
            out.push(b'\\');
        }
        out.push(b'\\');
        i += 1;
    }
    out
}

/// The length of the Go escape sequence (after its backslash) at the start of `rest`, or 0.
fn escape_len(rest: &[u8]) -> usize {
    let hex = |n: usize| rest.len() > n && rest[1..=n].iter().all(u8::is_ascii_hexdigit);
    match rest.first() {
        Some(b'a' | b'b' | b'c' | b'e' | b'f' | b'n' | b'r' | b't' | b'v') => 1,
        Some(b'x') if hex(2) => 3,
        Some(b'u') if hex(4) => 5,
        Some(b'U') if hex(8) => 9,
        Some(b'0'..=b'7')
            if rest.len() >= 3 && rest[..3].iter().all(|b| (b'0'..=b'7').contains(b)) =>
        {
            3
        }
        _ => 0,
    }
}

const BASE64_SUFFIX: &str = "#base64";

fn decode_base64_keys(value: Value) -> Result<Value, DataError> {
    match value {
        Value::List(items) => Ok(Value::List(
            items
                .into_iter()
                .map(decode_base64_keys)
                .collect::<Result<_, _>>()?,
        )),
        Value::Map(map) => {
            let mut out = BTreeMap::new();
            let plain: Vec<String> = map
                .keys()
                .filter(|k| !k.ends_with(BASE64_SUFFIX))
                .cloned()
                .collect();
            for (key, item) in map {
                let item = decode_base64_keys(item)?;
                match key.strip_suffix(BASE64_SUFFIX) {
                    Some(name) => {
                        if plain.iter().any(|k| k == name) {
                            return Err(DataError::Base64Conflict {
                                key: name.to_string(),
                            });
                        }
                        let Value::Str(encoded) = item else {
                            return Err(DataError::Base64NotString { key });
                        };
                        let decoded =
                            base64_decode(&encoded).map_err(|reason| DataError::Base64Invalid {
                                key: key.clone(),
                                reason,
                            })?;
                        out.insert(name.to_string(), Value::Str(decoded));
                    }
                    None => {
                        out.insert(key, item);
                    }
                }
            }
            Ok(Value::Map(out))
        }
        other => Ok(other),
    }
}

/// Standard-alphabet base64 as jq's `@base64d` reads it: padding optional, bits after the last
/// whole byte ignored. Unlike jq, text after the `=` padding is an error, not ignored.
pub fn base64_decode(input: &[u8]) -> Result<Vec<u8>, &'static str> {
    let end = input.iter().position(|&b| b == b'=').unwrap_or(input.len());
    if input[end..].iter().any(|&b| b != b'=') {
        return Err("text after the = padding");
    }
    let mut out = Vec::with_capacity(end / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut count = 0;
    for &b in &input[..end] {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err("a character outside the base64 alphabet"),
        };
        acc = (acc << 6) | u32::from(v);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            count = 0;
        }
    }
    match count {
        0 => {}
        1 => return Err("a lone trailing base64 character"),
        2 => out.push((acc >> 4) as u8),
        _ => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a Go string literal (or a TOML basic string) makes of `s`: the escapes decoded.
    fn go_unescape(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] != b'\\' || i + 1 == s.len() {
                out.push(s[i]);
                i += 1;
                continue;
            }
            let n = escape_len(&s[i + 1..]);
            if s[i + 1] == b'\\' {
                out.push(b'\\');
                i += 2;
            } else if n > 0 {
                out.push(0x07); // stands for any control character the sequence would make
                i += 1 + n;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn neutralize_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"plain value", b"plain value"),
            (b"line\nbreak\ttab\x7f\x01", b"linebreaktab"),
            ("caf\u{e9} \u{202e}x".as_bytes(), b"caf x"),
            (br"a\nb", br"a\\nb"),
            (br"\t\r\a\b\f\v\c\e", br"\\t\\r\\a\\b\\f\\v\\c\\e"),
            (br"\x41 \xZZ", br"\\x41 \xZZ"),
            (br"\u00e9 \U0001F600 \u12", br"\\u00e9 \\U0001F600 \u12"),
            (br"\101 \19", br"\\101 \19"),
            (br"C:\path\to", br"C:\path\\to"),
            (br"\\n", br"\\n"),
            (br"\\\n", br"\\\\n"),
            (br"end\", br"end\"),
        ];
        for (input, want) in cases {
            assert_eq!(
                neutralize(input),
                want.to_vec(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn neutralized_strings_never_decode_to_control_characters() {
        // Every string over a small alphabet up to length 5: after Go's unescaping, no
        // sequence may turn into a control character.
        let alphabet = [b'\\', b'n', b'x', b'4', b'1', b'0', b'u', b'a'];
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        let mut checked = 0;
        while let Some(s) = stack.pop() {
            let decoded = go_unescape(&neutralize(&s));
            assert!(!decoded.contains(&0x07), "{:?} -> {:?}", s, neutralize(&s));
            checked += 1;
            if s.len() < 5 {
                for &c in &alphabet {
                    let mut next = s.clone();
                    next.push(c);
                    stack.push(next);
                }
            }
        }
        assert!(checked > 30_000);
    }

    #[test]
    fn base64_table() {
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode(b"aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode(b"AAEC/w==").unwrap(), vec![0, 1, 2, 255]);
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert!(base64_decode(b"aGVsbG8=x").is_err());
        assert!(base64_decode(b"a").is_err());
        assert!(base64_decode(b"aGV sbG8").is_err());
    }

    #[test]
    fn unsafe_decodes_nested_keys_and_refuses_conflicts() {
        let config =
            parse(br#"{"a":{"k#base64":"aGk="},"l":[{"x#base64":"AP8="}],"p":"\n"}"#).unwrap();
        let data = unsafe_data(&config).unwrap();
        let Value::Map(top) = &data else { panic!() };
        assert_eq!(
            top["a"],
            Value::Map(BTreeMap::from([("k".into(), Value::Str(b"hi".to_vec()))]))
        );
        let Value::List(l) = &top["l"] else { panic!() };
        assert_eq!(
            l[0],
            Value::Map(BTreeMap::from([("x".into(), Value::Str(vec![0, 255]))]))
        );
        assert_eq!(top["p"], Value::Str(b"\n".to_vec()));

        let conflict = parse(br#"{"k":"x","k#base64":"aGk="}"#).unwrap();
        assert!(matches!(
            unsafe_data(&conflict),
            Err(DataError::Base64Conflict { .. })
        ));
        let number = parse(br#"{"k#base64":5}"#).unwrap();
        assert!(matches!(
            unsafe_data(&number),
            Err(DataError::Base64NotString { .. })
        ));
    }

    #[test]
    fn safe_mode_leaves_base64_keys_alone() {
        let config = parse(br#"{"k#base64":"aGk=","n":1.5}"#).unwrap();
        let Value::Map(top) = safe(&config) else {
            panic!()
        };
        assert_eq!(top["k#base64"], Value::Str(b"aGk=".to_vec()));
        assert_eq!(top["n"], Value::Float(1.5));
    }
}

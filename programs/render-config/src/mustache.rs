//! A mustache renderer that gives the output of cbroglie/mustache 1.4.0 (the seed's renderer, run
//! through its CLI with the default `AllowMissingVariables = true`) for everything our templates
//! use: text, `{{name}}` (HTML-escaped), `{{{name}}}` and `{{& name}}` (raw), dotted names,
//! `{{.}}`, sections over lists, maps and scalars, inverted sections, comments, set delimiters
//! and the library's standalone-line rules. Partials are refused: a configuration template has
//! no business including other files.
//!
//! The values are what the CLI's YAML decoder makes of JSON, and a value prints as Go's
//! `fmt.Sprint` prints it (`<nil>` for null, `map[k:v]` for an object, `[a b]` for a list, Go's
//! shortest float form). tests/agreement.json holds the cases checked against the real library.

use std::collections::BTreeMap;
use std::fmt;

/// A configuration value, as the renderer sees it. Strings are bytes: a `#base64` value decodes
/// to whatever bytes it holds, and goes to the file unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Vec<u8>),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::UInt(u)
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => Value::Str(s.into_bytes()),
            serde_json::Value::Array(items) => {
                Value::List(items.into_iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => {
                Value::Map(map.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

/// Why a template could not be parsed; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(Vec<u8>),
    Var {
        name: String,
        raw: bool,
    },
    Section {
        name: String,
        inverted: bool,
        children: Vec<Node>,
    },
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

/// What rendering produced: the bytes, and the variables that were missing (rendered empty).
#[derive(Debug, Default)]
pub struct Rendered {
    pub output: Vec<u8>,
    pub missing: Vec<String>,
}

/// Tag kinds after which the rest of a blank line is dropped (the library's
/// `SkipWhitespaceTagTypes`).
const STANDALONE_KINDS: &[u8] = b"#^/<>=!";

struct Parser<'a> {
    data: &'a [u8],
    otag: Vec<u8>,
    ctag: Vec<u8>,
    p: usize,
    /// Where the tag being read starts (for error lines).
    tag_start: usize,
}

struct TextRead {
    text: Vec<u8>,
    padding: Vec<u8>,
    may_standalone: bool,
    eof: bool,
}

impl Parser<'_> {
    fn line_at(&self, pos: usize) -> usize {
        1 + self.data[..pos.min(self.data.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line_at(self.tag_start),
            message: message.into(),
        }
    }

    /// Finds `needle` from the cursor; on success moves the cursor past it and returns the
    /// bytes from the old cursor up to and including the needle.
    fn read_until(&mut self, needle: &[u8]) -> Option<&[u8]> {
        let rest = &self.data[self.p..];
        let at = rest.windows(needle.len()).position(|w| w == needle)?;
        let start = self.p;
        self.p += at + needle.len();
        Some(&self.data[start..self.p])
    }

    fn read_text(&mut self) -> TextRead {
        let start = self.p;
        let otag = self.otag.clone();
        if self.read_until(&otag).is_none() {
            return TextRead {
                text: self.data[start..].to_vec(),
                padding: Vec::new(),
                may_standalone: false,
                eof: true,
            };
        }
        let tag_start = self.p - otag.len();
        self.tag_start = tag_start;
        let mut i = tag_start;
        while i > start && matches!(self.data[i - 1], b' ' | b'\t') {
            i -= 1;
        }
        let may_standalone = i == 0 || self.data[i - 1] == b'\n';
        if may_standalone {
            TextRead {
                text: self.data[start..i].to_vec(),
                padding: self.data[i..tag_start].to_vec(),
                may_standalone,
                eof: false,
            }
        } else {
            TextRead {
                text: self.data[start..tag_start].to_vec(),
                padding: Vec::new(),
                may_standalone,
                eof: false,
            }
        }
    }

    /// Reads a tag's content after the open delimiter; returns it trimmed, and whether the tag
    /// stood alone on its line (then the line's end has been consumed).
    fn read_tag(&mut self, may_standalone: bool) -> Result<(String, bool), ParseError> {
        let ctag = self.ctag.clone();
        let close = if self.data.get(self.p) == Some(&b'{') {
            let mut c = vec![b'}'];
            c.extend_from_slice(&ctag);
            c
        } else {
            ctag.clone()
        };
        let Some(read) = self.read_until(&close) else {
            return Err(self.error("unmatched open tag"));
        };
        let inner = &read[..read.len() - ctag.len()];
        let Ok(inner) = std::str::from_utf8(inner) else {
            return Err(self.error("a tag that is not UTF-8"));
        };
        let tag = inner.trim().to_string();
        if tag.is_empty() {
            return Err(self.error("empty tag"));
        }
        let len = self.data.len();
        let eow = (self.p..len)
            .find(|&i| !matches!(self.data[i], b' ' | b'\t'))
            // The library leaves the cursor where it was when only blanks follow.
            .unwrap_or(self.p);
        let mut standalone = true;
        if may_standalone {
            if !STANDALONE_KINDS.contains(&tag.as_bytes()[0]) {
                standalone = false;
            } else if eow == len {
                self.p = eow;
            } else if self.data[eow] == b'\n' {
                self.p = eow + 1;
            } else if eow + 1 < len && self.data[eow] == b'\r' && self.data[eow + 1] == b'\n' {
                self.p = eow + 2;
            } else {
                standalone = false;
            }
        }
        Ok((tag, standalone))
    }

    /// Parses up to the end of the data (`section` is None) or up to the closing tag of
    /// `section`.
    fn parse_nodes(&mut self, section: Option<(&str, usize)>) -> Result<Vec<Node>, ParseError> {
        let mut nodes = Vec::new();
        loop {
            let text = self.read_text();
            if text.eof {
                if let Some((name, line)) = section {
                    return Err(ParseError {
                        line,
                        message: format!("section {name} has no closing tag"),
                    });
                }
                nodes.push(Node::Text(text.text));
                return Ok(nodes);
            }
            nodes.push(Node::Text(text.text));
            let (tag, standalone) = self.read_tag(text.may_standalone)?;
            if !standalone {
                nodes.push(Node::Text(text.padding));
            }
            let kind = tag.as_bytes()[0];
            let rest = &tag[1..];
            match kind {
                b'!' => {}
                b'#' | b'^' => {
                    let name = rest.trim().to_string();
                    let line = self.line_at(self.tag_start);
                    let children = self.parse_nodes(Some((&name, line)))?;
                    nodes.push(Node::Section {
                        name,
                        inverted: kind == b'^',
                        children,
                    });
                }
                b'/' => {
                    let name = rest.trim();
                    return match section {
                        Some((open, _)) if open == name => Ok(nodes),
                        Some(_) => Err(self.error(format!("interleaved closing tag: {name}"))),
                        None => Err(self.error("unmatched close tag")),
                    };
                }
                b'>' => {
                    return Err(self.error(format!(
                        "partial {{{{>{}}}}}: partials are not supported",
                        rest.trim()
                    )));
                }
                b'=' => {
                    if tag.len() < 2 || !tag.ends_with('=') {
                        return Err(self.error("invalid set-delimiter tag"));
                    }
                    let inner = tag[1..tag.len() - 1].trim();
                    if let Some((open, close)) = inner.split_once(' ') {
                        self.otag = open.as_bytes().to_vec();
                        self.ctag = close.as_bytes().to_vec();
                    }
                }
                b'{' => {
                    // The library drops a `{` tag without its closing `}`.
                    if tag.len() >= 2 && tag.ends_with('}') {
                        let name = tag[1..tag.len() - 1].trim().to_string();
                        nodes.push(Node::Var { name, raw: true });
                    }
                }
                b'&' => nodes.push(Node::Var {
                    name: rest.trim().to_string(),
                    raw: true,
                }),
                _ => nodes.push(Node::Var {
                    name: tag,
                    raw: false,
                }),
            }
        }
    }
}

impl Template {
    /// Parses a template with the default `{{ }}` delimiters.
    pub fn parse(data: &[u8]) -> Result<Template, ParseError> {
        let mut parser = Parser {
            data,
            otag: b"{{".to_vec(),
            ctag: b"}}".to_vec(),
            p: 0,
            tag_start: 0,
        };
        Ok(Template {
            nodes: parser.parse_nodes(None)?,
        })
    }

    /// Renders with `data` as the only context.
    pub fn render(&self, data: &Value) -> Rendered {
        let mut out = Rendered::default();
        let mut chain = vec![data];
        render_nodes(&self.nodes, &mut chain, &mut out);
        out
    }
}

/// The context stack: the last entry is the innermost context.
type Chain<'v> = Vec<&'v Value>;

fn render_nodes<'v>(nodes: &[Node], chain: &mut Chain<'v>, out: &mut Rendered) {
    for node in nodes {
        match node {
            Node::Text(text) => out.output.extend_from_slice(text),
            Node::Var { name, raw } => match lookup(chain, name) {
                None => out.missing.push(name.clone()),
                Some(value) => {
                    let mut text = Vec::new();
                    go_sprint(value, &mut text);
                    if *raw {
                        out.output.extend_from_slice(&text);
                    } else {
                        html_escape(&text, &mut out.output);
                    }
                }
            },
            Node::Section {
                name,
                inverted,
                children,
            } => render_section(name, *inverted, children, chain, out),
        }
    }
}

fn render_section<'v>(
    name: &str,
    inverted: bool,
    children: &[Node],
    chain: &mut Chain<'v>,
    out: &mut Rendered,
) {
    let found: Option<&'v Value> = lookup(chain, name);
    if is_empty(found) != inverted {
        return;
    }
    let contexts: Vec<&'v Value> = if inverted {
        vec![chain[chain.len() - 1]]
    } else {
        match found {
            Some(Value::List(items)) => items.iter().collect(),
            Some(value) => vec![value],
            None => Vec::new(),
        }
    };
    for context in contexts {
        chain.push(context);
        render_nodes(children, chain, out);
        chain.pop();
    }
}

/// The library's lookup: a dotted name resolves its first part through the whole stack and the
/// rest inside that value only; a plain name is looked up in the innermost map that has it.
/// `None` is a missing key; a key whose value is null is found (and prints `<nil>`).
fn lookup<'v>(chain: &[&'v Value], name: &str) -> Option<&'v Value> {
    if name != "." {
        if let Some((first, rest)) = name.split_once('.') {
            let value = lookup(chain, first)?;
            return lookup(&[value], rest);
        }
    }
    for context in chain.iter().rev() {
        if name == "." {
            return Some(context);
        }
        if let Value::Map(map) = context {
            if let Some(value) = map.get(name) {
                return Some(value);
            }
        }
    }
    None
}

/// Whether a section skips (or an inverted section shows): missing, null, false, zero, an
/// empty list, or a string of only white space. An object, even `{}`, is not empty.
fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(Value::Int(i)) => *i == 0,
        Some(Value::UInt(u)) => *u == 0,
        Some(Value::Float(f)) => *f == 0.0,
        Some(Value::Str(s)) => String::from_utf8_lossy(s).trim().is_empty(),
        Some(Value::List(items)) => items.is_empty(),
        Some(Value::Map(_)) => false,
    }
}

/// Go's `fmt.Sprint` of the value the CLI's YAML decoder makes of it.
fn go_sprint(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"<nil>"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(go_float(*f).as_bytes()),
        Value::Str(s) => out.extend_from_slice(s),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                go_sprint(item, out);
            }
            out.push(b']');
        }
        Value::Map(map) => {
            // Go prints map keys sorted; a BTreeMap of strings is in that order already.
            out.extend_from_slice(b"map[");
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(key.as_bytes());
                out.push(b':');
                go_sprint(item, out);
            }
            out.push(b']');
        }
    }
}

/// Go's `%v` of a float64: the shortest digits that read back to the same value, in `%e` form
/// when the decimal exponent is below -4 or at least 6 (Go's shortest-`%g` rule), with an
/// exponent of at least two digits.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e8", "5e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        out.push_str(&abs.to_string());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Go's `template.HTMLEscape`: exactly `"` `'` `&` `<` `>` and NUL.
fn html_escape(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        match b {
            b'"' => out.extend_from_slice(b"&#34;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            0 => out.extend_from_slice("\u{FFFD}".as_bytes()),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_matches_go_formatting() {
        let cases = [
            (1.5, "1.5"),
            (1.0, "1"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1.2345678901234568e29, "1.2345678901234568e+29"),
            (1e100, "1e+100"),
            (0.1, "0.1"),
            (123.456, "123.456"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float(f), want, "{f}");
        }
    }

    #[test]
    fn partials_are_refused_with_the_line() {
        let err = Template::parse(b"a\n{{> other}}\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("partials are not supported"), "{err}");
    }

    #[test]
    fn missing_variables_are_reported_not_failed() {
        let t = Template::parse(b"a={{a}} b={{b.c}}").unwrap();
        let data = Value::Map(BTreeMap::from([("a".into(), Value::Int(1))]));
        let r = t.render(&data);
        assert_eq!(r.output, b"a=1 b=");
        assert_eq!(r.missing, vec!["b.c".to_string()]);
    }
}

//! Kconfig fragments: parsing, merging over a base `.config` (later fragments win, as
//! `scripts/kconfig/merge_config.sh` does), and the drop report after `make olddefconfig`.
//!
//! `merge_config.sh` only warns about an option that `olddefconfig` dropped, among a thousand
//! other lines; here every requested option is compared with the final `.config`, and a
//! dropped or changed one fails the build unless the project accepts it with a reason.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::KernelError;

/// The value of one Kconfig symbol as written in a `.config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Yes,
    Module,
    /// `=n` or `# CONFIG_X is not set`.
    No,
    /// A quoted string, kept with its quotes and escapes as written.
    Str(String),
    /// A decimal or hexadecimal number, as written.
    Number(String),
}

impl Value {
    /// Whether the option is off (`n`, or not set).
    pub fn is_off(&self) -> bool {
        matches!(self, Value::No)
    }

    fn parse(raw: &str) -> Option<Value> {
        match raw {
            "y" => return Some(Value::Yes),
            "m" => return Some(Value::Module),
            "n" => return Some(Value::No),
            _ => {}
        }
        if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
            let inner = &raw[1..raw.len() - 1];
            // Inner quotes must be escaped; a backslash escapes the next character.
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next()?;
                    }
                    '"' => return None,
                    _ => {}
                }
            }
            return Some(Value::Str(raw.to_string()));
        }
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        if let Some(hex) = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Some(Value::Number(raw.to_string()));
            }
            return None;
        }
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
            return Some(Value::Number(raw.to_string()));
        }
        None
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Yes => f.write_str("y"),
            Value::Module => f.write_str("m"),
            Value::No => f.write_str("n"),
            Value::Str(s) | Value::Number(s) => f.write_str(s),
        }
    }
}

/// One assignment of a fragment, and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The full symbol name, `CONFIG_...`.
    pub name: String,
    pub value: Value,
    /// 1-based line in [`Fragment::path`].
    pub line: usize,
}

/// A parsed Kconfig fragment (or a whole `.config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub path: PathBuf,
    pub assignments: Vec<Assignment>,
}

fn is_symbol(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Parses one line: `Ok(None)` for blank lines and comments, an assignment otherwise.
fn parse_line(line: &str) -> Result<Option<(String, Value)>, ()> {
    let line = line.trim_end();
    if line.trim().is_empty() {
        return Ok(None);
    }
    if let Some(comment) = line.strip_prefix('#') {
        // `# CONFIG_X is not set` is an assignment; any other comment is ignored.
        let comment = comment.trim();
        if let Some(name) = comment.strip_suffix(" is not set")
            && name.starts_with("CONFIG_")
        {
            if is_symbol(name) {
                return Ok(Some((name.to_string(), Value::No)));
            }
            return Err(());
        }
        return Ok(None);
    }
    let (name, raw) = line.split_once('=').ok_or(())?;
    if !is_symbol(name) {
        return Err(());
    }
    let value = Value::parse(raw).ok_or(())?;
    Ok(Some((name.to_string(), value)))
}

impl Fragment {
    /// Parses fragment text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Fragment, KernelError> {
        let mut assignments = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match parse_line(line) {
                Ok(Some((name, value))) => assignments.push(Assignment {
                    name,
                    value,
                    line: i + 1,
                }),
                Ok(None) => {}
                Err(()) => {
                    return Err(KernelError::FragmentSyntax {
                        path: path.to_path_buf(),
                        line: i + 1,
                        text: line.to_string(),
                    });
                }
            }
        }
        Ok(Fragment {
            path: path.to_path_buf(),
            assignments,
        })
    }

    /// Reads and parses a fragment file.
    pub fn read(path: &Path) -> Result<Fragment, KernelError> {
        let text = fs_err::read_to_string(path).map_err(KernelError::io(path))?;
        Fragment::parse(path, &text)
    }

    /// The last value of each symbol.
    pub fn values(&self) -> BTreeMap<&str, &Value> {
        self.assignments
            .iter()
            .map(|a| (a.name.as_str(), &a.value))
            .collect()
    }
}

/// The fragment files of a directory in name order (hidden files and `README*` skipped).
pub fn list_fragments(dir: &Path) -> Result<Vec<PathBuf>, KernelError> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(KernelError::io(dir))? {
        let entry = entry.map_err(KernelError::io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with("README") {
            continue;
        }
        let path = entry.path();
        if path.is_file() {
            out.push(path);
        }
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

/// A requested option and the fragment line that requested it last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: String,
    pub value: Value,
    pub path: PathBuf,
    pub line: usize,
}

/// The base config with the fragments merged over it, in the given order.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Every symbol in `.config` order: the base's order, then new symbols as first requested.
    entries: Vec<(String, Value)>,
    /// The winning request of every symbol a fragment names.
    pub requests: Vec<Request>,
}

/// Merges `fragments` over `base` (later fragments win).
pub fn merge(base: &Fragment, fragments: &[Fragment]) -> Merged {
    let mut entries: Vec<(String, Value)> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut set = |name: &str, value: &Value| {
        if let Some(&i) = index.get(name) {
            entries[i].1 = value.clone();
        } else {
            index.insert(name.to_string(), entries.len());
            entries.push((name.to_string(), value.clone()));
        }
    };
    for a in &base.assignments {
        set(&a.name, &a.value);
    }
    let mut requests: BTreeMap<String, Request> = BTreeMap::new();
    let mut order = Vec::new();
    for f in fragments {
        for a in &f.assignments {
            set(&a.name, &a.value);
            if !requests.contains_key(&a.name) {
                order.push(a.name.clone());
            }
            requests.insert(
                a.name.clone(),
                Request {
                    name: a.name.clone(),
                    value: a.value.clone(),
                    path: f.path.clone(),
                    line: a.line,
                },
            );
        }
    }
    let requests = order
        .into_iter()
        .filter_map(|n| requests.remove(&n))
        .collect();
    Merged { entries, requests }
}

impl Merged {
    /// The merged `.config` text (input to `make olddefconfig`).
    pub fn to_config(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.entries {
            if value.is_off() {
                out.push_str(&format!("# {name} is not set\n"));
            } else {
                out.push_str(&format!("{name}={value}\n"));
            }
        }
        out
    }
}

/// What happened to a requested option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    /// Asked on (or a value), but absent or off in the final `.config`: the option does not
    /// exist in this kernel, or its dependencies are off.
    Dropped,
    /// Present with another value (e.g. `y` became `m`, or an `n` was selected back on).
    Changed,
}

/// One requested option that the final `.config` does not have as requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drop {
    pub request: Request,
    /// The final value; `None` when the symbol is absent from `.config`.
    pub actual: Option<Value>,
    pub kind: DropKind,
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actual = match &self.actual {
            None => "absent".to_string(),
            Some(Value::No) => "not set".to_string(),
            Some(v) => v.to_string(),
        };
        let kind = match self.kind {
            DropKind::Dropped => "dropped",
            DropKind::Changed => "changed",
        };
        write!(
            f,
            "{} {kind}: requested {}, final {actual} ({}:{})",
            self.request.name,
            self.request.value,
            self.request.path.display(),
            self.request.line
        )
    }
}

/// Every requested option that did not survive `olddefconfig` as requested.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropReport {
    pub drops: Vec<Drop>,
}

impl DropReport {
    /// Compares the requests with the final `.config`.
    pub fn compare(requests: &[Request], final_config: &Fragment) -> DropReport {
        let finals = final_config.values();
        let mut drops = Vec::new();
        for r in requests {
            let actual = finals.get(r.name.as_str()).copied();
            let kind = match (&r.value, actual) {
                (Value::No, None) => continue,
                (want, Some(got)) if want == got => continue,
                (Value::No, Some(_)) => DropKind::Changed,
                (_, None) | (_, Some(Value::No)) => DropKind::Dropped,
                (_, Some(_)) => DropKind::Changed,
            };
            drops.push(Drop {
                request: r.clone(),
                actual: actual.cloned(),
                kind,
            });
        }
        DropReport { drops }
    }

    /// Accepted drops that did not happen (stale entries of `[accepted-drops]`, e.g. after a
    /// kernel update brought the option back).
    pub fn unused_accepted<'a>(&self, accepted: &'a AcceptedDrops) -> Vec<&'a str> {
        accepted
            .options
            .keys()
            .filter(|name| !self.drops.iter().any(|d| &d.request.name == *name))
            .map(String::as_str)
            .collect()
    }

    /// One line per drop.
    pub fn render(&self) -> String {
        self.drops.iter().map(|d| format!("{d}\n")).collect()
    }
}

/// Options the project accepts losing, each with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptedDrops {
    pub options: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelToml {
    #[serde(rename = "accepted-drops", default)]
    accepted_drops: BTreeMap<String, String>,
}

impl AcceptedDrops {
    /// Parses a `kernel.toml` text: `[accepted-drops]` with `CONFIG_X = "reason"`.
    pub fn parse(path: &Path, text: &str) -> Result<AcceptedDrops, KernelError> {
        let parsed: KernelToml = toml::from_str(text).map_err(|e| KernelError::KernelToml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for (name, reason) in &parsed.accepted_drops {
            if !is_symbol(name) {
                return Err(KernelError::KernelToml {
                    path: path.to_path_buf(),
                    message: format!("`{name}` in [accepted-drops] is not a CONFIG_ symbol"),
                });
            }
            if reason.trim().is_empty() {
                return Err(KernelError::KernelToml {
                    path: path.to_path_buf(),
                    message: format!("{name} in [accepted-drops] has no reason"),
                });
            }
        }
        Ok(AcceptedDrops {
            options: parsed.accepted_drops,
        })
    }

    /// Reads a `kernel.toml`.
    pub fn read(path: &Path) -> Result<AcceptedDrops, KernelError> {
        let text = fs_err::read_to_string(path).map_err(KernelError::io(path))?;
        AcceptedDrops::parse(path, &text)
    }
}

/// Fails on every drop the project has not accepted.
pub fn check_drops(report: &DropReport, accepted: &AcceptedDrops) -> Result<(), KernelError> {
    let refused: Vec<&Drop> = report
        .drops
        .iter()
        .filter(|d| !accepted.options.contains_key(&d.request.name))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let list = refused
        .iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n");
    Err(KernelError::OptionsDropped {
        count: refused.len(),
        list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(name: &str, text: &str) -> Fragment {
        Fragment::parse(Path::new(name), text).unwrap()
    }

    #[test]
    fn parses_every_value_kind() {
        let f = frag(
            "f",
            "# comment\n\nCONFIG_A=y\nCONFIG_B=m\nCONFIG_C=n\n# CONFIG_D is not set\n\
             CONFIG_E=\"bbr\"\nCONFIG_F=123\nCONFIG_G=0x1f\nCONFIG_H=-1\nCONFIG_I=\"a \\\"q\\\"\"\n",
        );
        let got: Vec<(&str, &Value, usize)> = f
            .assignments
            .iter()
            .map(|a| (a.name.as_str(), &a.value, a.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("CONFIG_A", &Value::Yes, 3),
                ("CONFIG_B", &Value::Module, 4),
                ("CONFIG_C", &Value::No, 5),
                ("CONFIG_D", &Value::No, 6),
                ("CONFIG_E", &Value::Str("\"bbr\"".into()), 7),
                ("CONFIG_F", &Value::Number("123".into()), 8),
                ("CONFIG_G", &Value::Number("0x1f".into()), 9),
                ("CONFIG_H", &Value::Number("-1".into()), 10),
                ("CONFIG_I", &Value::Str("\"a \\\"q\\\"\"".into()), 11),
            ]
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for bad in [
            "CONFIG_A=yes",
            "CONFIG_A y",
            "FOO=y",
            "CONFIG_=y",
            "CONFIG_A=\"unterminated",
            "CONFIG_A=\"in\"side\"",
            "CONFIG_A=0x",
            "CONFIG_A=12a",
            "# CONFIG_A-B is not set",
            "CONFIG_A-B=y",
        ] {
            let text = format!("CONFIG_OK=y\n# fine\n{bad}\n");
            let err = Fragment::parse(Path::new("kernel/configs/10-x"), &text).unwrap_err();
            match &err {
                KernelError::FragmentSyntax { path, line, text } => {
                    assert_eq!(path, Path::new("kernel/configs/10-x"));
                    assert_eq!(*line, 3, "{bad}");
                    assert_eq!(text, bad);
                }
                other => panic!("{bad}: {other:?}"),
            }
            assert!(err.to_string().contains("kernel/configs/10-x:3"), "{err}");
        }
    }

    #[test]
    fn the_seed_fragments_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel/configs");
        let files = list_fragments(&dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["01-sane-defaults", "02-disable-unneeded", "03-bbr-net-fq"]
        );
        let f = Fragment::read(&files[2]).unwrap();
        assert_eq!(
            f.values().get("CONFIG_DEFAULT_NET_SCH"),
            Some(&&Value::Str("\"fq\"".into()))
        );
    }

    #[test]
    fn later_fragments_win_and_new_symbols_are_appended() {
        let base = frag("base", "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n");
        let one = frag("01", "CONFIG_B=y\nCONFIG_D=\"x\"\n");
        let two = frag("02", "\n# CONFIG_B is not set\nCONFIG_C=y\n");
        let merged = merge(&base, &[one, two]);
        assert_eq!(
            merged.to_config(),
            "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=\"x\"\n"
        );
        let reqs: Vec<(&str, &str, usize)> = merged
            .requests
            .iter()
            .map(|r| (r.name.as_str(), r.path.to_str().unwrap(), r.line))
            .collect();
        assert_eq!(
            reqs,
            vec![
                ("CONFIG_B", "02", 2),
                ("CONFIG_D", "01", 2),
                ("CONFIG_C", "02", 3)
            ]
        );
    }

    #[test]
    fn drops_and_changes_are_reported_and_checked() {
        let req = frag(
            "frag",
            "CONFIG_GONE=y\nCONFIG_KEPT=y\nCONFIG_OFF=y\nCONFIG_TOMOD=y\n\
             # CONFIG_ABSENT_OFF is not set\n# CONFIG_SELECTED is not set\nCONFIG_S=\"a\"\n",
        );
        let merged = merge(&frag("base", ""), &[req]);
        let fin = frag(
            ".config",
            "CONFIG_KEPT=y\n# CONFIG_OFF is not set\nCONFIG_TOMOD=m\nCONFIG_SELECTED=y\nCONFIG_S=\"b\"\n",
        );
        let report = DropReport::compare(&merged.requests, &fin);
        assert_eq!(
            report.render(),
            "CONFIG_GONE dropped: requested y, final absent (frag:1)\n\
             CONFIG_OFF dropped: requested y, final not set (frag:3)\n\
             CONFIG_TOMOD changed: requested y, final m (frag:4)\n\
             CONFIG_SELECTED changed: requested n, final y (frag:6)\n\
             CONFIG_S changed: requested \"a\", final \"b\" (frag:7)\n"
        );
        let mut accepted = AcceptedDrops::default();
        let err = check_drops(&report, &accepted).unwrap_err().to_string();
        assert!(err.contains("5 requested kernel option(s)"), "{err}");
        assert!(
            err.contains("CONFIG_GONE dropped: requested y, final absent (frag:1)"),
            "{err}"
        );
        assert!(err.contains("hint: "), "{err}");
        for name in [
            "CONFIG_GONE",
            "CONFIG_OFF",
            "CONFIG_TOMOD",
            "CONFIG_SELECTED",
        ] {
            accepted.options.insert(name.into(), "test".into());
        }
        let err = check_drops(&report, &accepted).unwrap_err().to_string();
        assert!(err.contains("1 requested kernel option(s)"), "{err}");
        assert!(!err.contains("CONFIG_GONE"), "{err}");
        accepted.options.insert("CONFIG_S".into(), "test".into());
        check_drops(&report, &accepted).unwrap();
        assert!(report.unused_accepted(&accepted).is_empty());
        accepted.options.insert("CONFIG_BACK".into(), "test".into());
        assert_eq!(report.unused_accepted(&accepted), ["CONFIG_BACK"]);
    }

    #[test]
    fn accepted_drops_need_reasons() {
        let ok = AcceptedDrops::parse(
            Path::new("kernel/kernel.toml"),
            "[accepted-drops]\nCONFIG_X = \"renamed in 6.9\"\n",
        )
        .unwrap();
        assert_eq!(ok.options["CONFIG_X"], "renamed in 6.9");
        let err = AcceptedDrops::parse(
            Path::new("kernel/kernel.toml"),
            "[accepted-drops]\nCONFIG_X = \" \"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("CONFIG_X in [accepted-drops] has no reason"),
            "{err}"
        );
        let err = AcceptedDrops::parse(
            Path::new("kernel/kernel.toml"),
            "[accepted-drops]\nX = \"r\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("kernel/kernel.toml"), "{err}");
        assert!(
            AcceptedDrops::parse(Path::new("k"), "[accepted-dropz]\n").is_err(),
            "unknown tables are refused"
        );
    }
}

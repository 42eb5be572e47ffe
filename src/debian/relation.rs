//! Package relationship fields (`Depends`, `Pre-Depends`, `Provides`, `Conflicts`, `Breaks`,
//! `Build-Depends`, ...): comma-separated groups of `|`-separated alternatives, each
//! `name[:arch] [(op version)] [[arch list]] [<profiles>...]`.

use std::fmt;

use super::version::{Version, VersionError};

/// A version comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (also the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (also the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// Whether `candidate OP wanted` holds.
    pub fn holds(self, candidate: &Version, wanted: &Version) -> bool {
        let ord = candidate.cmp(wanted);
        match self {
            Op::Lt => ord.is_lt(),
            Op::Le => ord.is_le(),
            Op::Eq => ord.is_eq(),
            Op::Ge => ord.is_ge(),
            Op::Gt => ord.is_gt(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One relation: a package name, an optional architecture qualifier and version constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// `any`, `native` or an architecture name, from `name:qualifier`.
    pub arch_qualifier: Option<String>,
    pub constraint: Option<(Op, Version)>,
}

/// A group of alternatives (`a | b | c`); satisfied when any member is.
pub type Alternatives = Vec<Relation>;

impl Relation {
    /// Whether `version` satisfies the version constraint (true when there is none).
    pub fn version_matches(&self, version: &Version) -> bool {
        match &self.constraint {
            None => true,
            Some((op, wanted)) => op.holds(version, wanted),
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// Formats a group of alternatives as `a | b (>= 1)`.
pub fn display_alternatives(alts: &[Relation]) -> String {
    alts.iter()
        .map(Relation::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A relationship field that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationError {
    #[error("invalid relation '{relation}': {reason}")]
    Syntax {
        relation: String,
        reason: &'static str,
    },
    #[error("invalid relation '{relation}'")]
    Version {
        relation: String,
        #[source]
        source: VersionError,
    },
}

/// Parses a relationship field keeping every alternative: `[arch]` lists and `<profile>`
/// restrictions are checked for syntax but not applied. Use this for binary package fields,
/// which carry no restrictions, or [`parse_relations_for_arch`] to apply them.
pub fn parse_relations(field: &str) -> Result<Vec<Alternatives>, RelationError> {
    parse_relations_with(field, None, &[])
}

/// Parses a relationship field as seen on `arch` with no build profile active: alternatives
/// whose `[arch list]` excludes `arch` or whose `<profile>` formula is false are dropped, and a
/// group left empty is dropped, as dpkg-checkbuilddeps does.
pub fn parse_relations_for_arch(
    field: &str,
    arch: &str,
) -> Result<Vec<Alternatives>, RelationError> {
    parse_relations_with(field, Some(arch), &[])
}

/// Parses a relationship field, applying restrictions for `arch` (when given) and with the
/// build `profiles` active (for example `["nocheck"]`).
pub fn parse_relations_with(
    field: &str,
    arch: Option<&str>,
    profiles: &[&str],
) -> Result<Vec<Alternatives>, RelationError> {
    let mut out = Vec::new();
    let groups: Vec<&str> = field.split(',').collect();
    let last = groups.len() - 1;
    for (i, group) in groups.into_iter().enumerate() {
        if group.trim().is_empty() {
            // A trailing comma (or an empty field) is tolerated, an empty group inside is not.
            if i == last {
                continue;
            }
            return Err(RelationError::Syntax {
                relation: field.trim().to_string(),
                reason: "empty relation between commas",
            });
        }
        let mut alts = Vec::new();
        for alt in group.split('|') {
            if let Some(rel) = parse_one(alt.trim(), arch, profiles)? {
                alts.push(rel);
            }
        }
        if !alts.is_empty() {
            out.push(alts);
        }
    }
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_')
}

/// Parses one alternative; `None` when its restrictions exclude it.
fn parse_one(
    text: &str,
    arch: Option<&str>,
    profiles: &[&str],
) -> Result<Option<Relation>, RelationError> {
    let syntax = |reason| RelationError::Syntax {
        relation: text.to_string(),
        reason,
    };
    if text.is_empty() {
        return Err(syntax("empty alternative"));
    }
    let name_end = text.find(|c: char| !is_name_char(c)).unwrap_or(text.len());
    let name = &text[..name_end];
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(syntax("package name must start with a letter or digit"));
    }
    let mut rest = &text[name_end..];
    let mut arch_qualifier = None;
    if let Some(r) = rest.strip_prefix(':') {
        let end = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(r.len());
        if end == 0 {
            return Err(syntax("empty architecture qualifier"));
        }
        arch_qualifier = Some(r[..end].to_string());
        rest = &r[end..];
    }
    rest = rest.trim_start();
    let mut constraint = None;
    if let Some(r) = rest.strip_prefix('(') {
        let close = r.find(')').ok_or_else(|| syntax("missing ')'"))?;
        let inner = r[..close].trim();
        let op_len = inner
            .find(|c: char| !matches!(c, '<' | '>' | '='))
            .unwrap_or(inner.len());
        let op = match &inner[..op_len] {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            "" => return Err(syntax("missing version operator")),
            _ => return Err(syntax("unknown version operator")),
        };
        let version = inner[op_len..].trim();
        if version.is_empty() {
            return Err(syntax("missing version after operator"));
        }
        let version = version.parse().map_err(|source| RelationError::Version {
            relation: text.to_string(),
            source,
        })?;
        constraint = Some((op, version));
        rest = r[close + 1..].trim_start();
    }
    let mut included = true;
    if let Some(r) = rest.strip_prefix('[') {
        let close = r.find(']').ok_or_else(|| syntax("missing ']'"))?;
        let matches = arch_list_matches(&r[..close], arch).map_err(syntax)?;
        included &= matches;
        rest = r[close + 1..].trim_start();
    }
    let mut profile_formula = None;
    while let Some(r) = rest.strip_prefix('<') {
        let close = r.find('>').ok_or_else(|| syntax("missing '>'"))?;
        let group = &r[..close];
        let terms: Vec<&str> = group.split_whitespace().collect();
        if terms.is_empty() {
            return Err(syntax("empty build profile list"));
        }
        let mut all = true;
        for term in terms {
            let (negated, profile) = match term.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, term),
            };
            if profile.is_empty() || !profile.chars().all(is_name_char) {
                return Err(syntax("invalid build profile name"));
            }
            all &= profiles.contains(&profile) != negated;
        }
        profile_formula = Some(profile_formula.unwrap_or(false) || all);
        rest = r[close + 1..].trim_start();
    }
    if !rest.is_empty() {
        return Err(syntax("unexpected text after the relation"));
    }
    // Profiles are evaluated only when restrictions are applied at all (an arch is given).
    if arch.is_some() {
        included &= profile_formula.unwrap_or(true);
    } else {
        included = true;
    }
    Ok(included.then(|| Relation {
        name: name.to_string(),
        arch_qualifier,
        constraint,
    }))
}

/// Evaluates `[amd64 linux-any]` or `[!i386 !hurd-any]` for `arch`. Without an arch, only the
/// syntax is checked.
fn arch_list_matches(list: &str, arch: Option<&str>) -> Result<bool, &'static str> {
    let terms: Vec<&str> = list.split_whitespace().collect();
    if terms.is_empty() {
        return Err("empty architecture list");
    }
    let negated = terms[0].starts_with('!');
    let mut any_match = false;
    for term in terms {
        let (neg, name) = match term.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, term),
        };
        if neg != negated {
            return Err("architecture list mixes negated and plain entries");
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("invalid architecture name");
        }
        if let Some(arch) = arch {
            any_match |= arch_matches(arch, name);
        }
    }
    Ok(any_match != negated)
}

/// The dpkg architecture tuple (abi, libc, os, cpu) of a Debian architecture name.
fn arch_tuple(arch: &str) -> [&str; 4] {
    match arch {
        "armhf" => ["eabihf", "gnu", "linux", "arm"],
        "armel" => ["eabi", "gnu", "linux", "arm"],
        "x32" => ["x32", "gnu", "linux", "amd64"],
        "mips64el" => ["abi64", "gnu", "linux", "mips64el"],
        "all" | "any" => ["any", "any", "any", "any"],
        _ => {
            let parts: Vec<&str> = arch.split('-').collect();
            match parts.as_slice() {
                [cpu] => ["base", "gnu", "linux", cpu],
                ["musl", "linux", cpu] => ["base", "musl", "linux", cpu],
                [os, cpu] => ["base", "gnu", os, cpu],
                _ => ["base", "gnu", "unknown", arch],
            }
        }
    }
}

/// Whether the concrete architecture `arch` matches `pattern` (an architecture name or a
/// wildcard such as `any`, `linux-any`, `any-amd64`, `gnu-any-any`).
pub fn arch_matches(arch: &str, pattern: &str) -> bool {
    if arch == pattern || pattern == "any" {
        return true;
    }
    if !pattern.contains("any") {
        return false;
    }
    let want: Vec<&str> = pattern.split('-').collect();
    let have = arch_tuple(arch);
    // A wildcard names the last 2, 3 or 4 parts of the tuple: os-cpu, libc-os-cpu,
    // abi-libc-os-cpu.
    if !(2..=4).contains(&want.len()) {
        return false;
    }
    let skip = 4 - want.len();
    want.iter()
        .zip(&have[skip..])
        .all(|(w, h)| *w == "any" || w == h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(groups: &[Alternatives]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| g.iter().map(Relation::to_string).collect())
            .collect()
    }

    #[test]
    fn parses_groups_alternatives_and_constraints() {
        let g = parse_relations(
            "libc6 (>= 2.36), debconf (>= 0.5) | debconf-2.0,python3:any (<< 3.14~),\n libfoo:amd64, bar (<2), baz(>1)",
        )
        .unwrap();
        assert_eq!(
            names(&g),
            [
                vec!["libc6 (>= 2.36)"],
                vec!["debconf (>= 0.5)", "debconf-2.0"],
                vec!["python3:any (<< 3.14~)"],
                vec!["libfoo:amd64"],
                vec!["bar (<= 2)"],
                vec!["baz (>= 1)"],
            ]
        );
        assert_eq!(g[2][0].arch_qualifier.as_deref(), Some("any"));
        assert_eq!(g[0][0].constraint.as_ref().unwrap().0, Op::Ge);
        assert!(parse_relations("").unwrap().is_empty());
        assert_eq!(parse_relations("a, b,").unwrap().len(), 2);
    }

    #[test]
    fn arch_restrictions_and_profiles() {
        let field = "gcc [amd64], libx [!amd64 !i386] | liby [linux-any], check <!nocheck>, \
                     tool <stage1 cross> <pkg.foo>, w [any-amd64], z [hurd-any]";
        let amd64 = parse_relations_for_arch(field, "amd64").unwrap();
        assert_eq!(
            names(&amd64),
            [vec!["gcc"], vec!["liby"], vec!["check"], vec!["w"]]
        );
        let arm = parse_relations_for_arch(field, "armhf").unwrap();
        assert_eq!(names(&arm), [vec!["libx", "liby"], vec!["check"]]);
        let hurd = parse_relations_for_arch(field, "hurd-i386").unwrap();
        assert_eq!(names(&hurd), [vec!["libx"], vec!["check"], vec!["z"]]);
        let nocheck = parse_relations_with(field, Some("amd64"), &["nocheck", "pkg.foo"]).unwrap();
        assert_eq!(
            names(&nocheck),
            [vec!["gcc"], vec!["liby"], vec!["tool"], vec!["w"]]
        );
        // Without an arch every alternative is kept.
        assert_eq!(parse_relations(field).unwrap().len(), 6);
        assert!(arch_matches("arm64", "linux-any"));
        assert!(arch_matches("armhf", "any-arm"));
        assert!(arch_matches("amd64", "gnu-linux-any"));
        assert!(!arch_matches("amd64", "any-i386"));
        assert!(!arch_matches("amd64", "arm64"));
    }

    #[test]
    fn malformed_relations_are_errors() {
        for (text, want) in [
            ("a (>= 1", "missing ')'"),
            ("a (=> 1)", "unknown version operator"),
            ("a (1.0)", "missing version operator"),
            ("a (>=)", "missing version after operator"),
            ("a [amd64", "missing ']'"),
            (
                "a [amd64 !i386]",
                "architecture list mixes negated and plain entries",
            ),
            ("a <>", "empty build profile list"),
            ("a, , b", "empty relation between commas"),
            ("a | , b", "empty alternative"),
            ("(>= 1)", "package name must start with a letter or digit"),
            ("a b", "unexpected text after the relation"),
            ("a:", "empty architecture qualifier"),
        ] {
            match parse_relations(text) {
                Err(RelationError::Syntax { reason, .. }) => assert_eq!(reason, want, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let e = parse_relations("a (>= x1)").unwrap_err();
        assert!(matches!(e, RelationError::Version { .. }), "{e:?}");
        assert!(
            std::error::Error::source(&e)
                .unwrap()
                .to_string()
                .contains("'x1'")
        );
    }
}

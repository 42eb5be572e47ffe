//! Printing errors at the edge of the program, for people and (with `--json`) for scripts.
//!
//! Library errors are `thiserror` enums whose messages name the file, URL or package that
//! failed. What an error knows beyond its message is data, given by [`Diagnostic`]: the
//! hints that say how to fix it and the file, URL or package it names. The hints are printed
//! once, after the whole cause chain, so the fix is the last thing the user reads.
//!
//! Error types not yet converted to [`Diagnostic`] may still end their message with lines
//! starting `hint: `; those are taken as hints too.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::exit::Exit;

/// What an error says about itself beyond its message.
///
/// An enum with `#[error(transparent)]` variants answers for the error it wraps (the wrapped
/// error does not appear in the cause chain of its own).
pub trait Diagnostic: std::error::Error {
    /// How to fix it, each a sentence printed as `hint: …` after the cause chain.
    fn hints(&self) -> Vec<String> {
        Vec::new()
    }

    /// The file, URL or package the error is about.
    fn subject(&self) -> Subject {
        Subject::default()
    }
}

impl<T: Diagnostic> Diagnostic for Box<T> {
    fn hints(&self) -> Vec<String> {
        (**self).hints()
    }
    fn subject(&self) -> Subject {
        (**self).subject()
    }
}

/// The file, URL and package an error names (each where it names one).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Subject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

impl Subject {
    /// An error about `path`.
    pub fn file(path: impl Into<PathBuf>) -> Subject {
        Subject {
            file: Some(path.into()),
            ..Subject::default()
        }
    }

    /// An error about `url`.
    pub fn url(url: impl Into<String>) -> Subject {
        Subject {
            url: Some(url.into()),
            ..Subject::default()
        }
    }

    /// An error about package (or recipe, pin) `name`.
    pub fn package(name: impl Into<String>) -> Subject {
        Subject {
            package: Some(name.into()),
            ..Subject::default()
        }
    }

    /// Fills what `self` lacks from `other`.
    fn or(self, other: Subject) -> Subject {
        Subject {
            file: self.file.or(other.file),
            url: self.url.or(other.url),
            package: self.package.or(other.package),
        }
    }
}

/// The [`Diagnostic`] of one cause of an error chain, for the error types that have one.
fn diagnostic<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Diagnostic> {
    macro_rules! first_of {
        ($($t:ty),* $(,)?) => {
            $(if let Some(e) = cause.downcast_ref::<$t>() {
                return Some(e);
            })*
        };
    }
    first_of!(
        crate::recipe::RecipeError,
        crate::lockfile::LockfileError,
        crate::build::BuildError,
        crate::build::pipeline::PipelineError,
        crate::lock::LockError,
        crate::debian::ResolveError,
        // A boxed `#[source]` is the box in the chain.
        Box<crate::debian::ResolveError>,
        crate::fetch::FetchError,
        crate::http::HttpError,
        crate::http::LimitsError,
        Hinted,
    );
    None
}

/// An error of the command line with a hint (for the few errors made in `src/cli/` itself).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
    pub subject: Subject,
}

impl Diagnostic for Hinted {
    fn hints(&self) -> Vec<String> {
        vec![self.hint.clone()]
    }
    fn subject(&self) -> Subject {
        self.subject.clone()
    }
}

/// An error taken apart: what `hermetic` prints for it, as text or (with `--json`) as one
/// JSON document on standard output, `{"error": ErrorReport}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErrorReport {
    /// The top-level message.
    pub message: String,
    /// The messages of its causes, outermost first.
    pub causes: Vec<String>,
    /// The kind of failure: the name of its exit code (`lock-stale`, `network`, …, or
    /// `failure`), see [`crate::exit`].
    pub kind: &'static str,
    /// The exit code the program ends with.
    pub exit_code: u8,
    /// The file, URL and package named (the outermost cause naming each wins).
    #[serde(flatten)]
    pub subject: Subject,
    /// How to fix it (possibly none).
    pub hints: Vec<String>,
}

impl ErrorReport {
    /// Takes `err` and its chain of causes apart.
    pub fn new(err: &anyhow::Error) -> ErrorReport {
        let mut bodies = Vec::new();
        let mut hints = Vec::new();
        let mut subject = Subject::default();
        for cause in err.chain() {
            if let Some(d) = diagnostic(cause) {
                hints.extend(d.hints());
                subject = subject.or(d.subject());
            }
            let text = cause.to_string();
            let mut lines = Vec::new();
            for line in text.lines() {
                // An error type not yet converted to `Diagnostic`.
                match line.trim_start().strip_prefix("hint: ") {
                    Some(h) => hints.push(h.to_string()),
                    None => lines.push(line),
                }
            }
            let body = lines.join("\n");
            if !body.trim().is_empty() {
                bodies.push(body);
            }
        }
        hints.dedup();
        let exit = crate::exit::classify(err);
        let mut bodies = bodies.into_iter();
        ErrorReport {
            message: bodies.next().unwrap_or_default(),
            causes: bodies.collect(),
            kind: exit.name(),
            exit_code: exit.code(),
            subject,
            hints,
        }
    }

    /// The report of a command line clap could not parse (exit code 2). Its message is the
    /// first paragraph of clap's, its hints clap's `tip:` lines.
    pub fn usage(err: &clap::Error) -> ErrorReport {
        if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            // clap's "message" is then the command's help.
            return ErrorReport {
                message: "a subcommand or an argument is missing".into(),
                causes: Vec::new(),
                kind: Exit::Usage.name(),
                exit_code: Exit::Usage.code(),
                subject: Subject::default(),
                hints: vec![
                    "the command's help, printed on standard error, lists what it takes".into(),
                ],
            };
        }
        let text = err.render().to_string();
        let mut paragraphs = text.split("\n\n");
        let first = paragraphs.next().unwrap_or_default().trim_end();
        let message = first.strip_prefix("error: ").unwrap_or(first).to_string();
        let hints = paragraphs
            .flat_map(str::lines)
            .filter_map(|l| l.trim().strip_prefix("tip: "))
            .map(str::to_string)
            .collect();
        ErrorReport {
            message,
            causes: Vec::new(),
            kind: Exit::Usage.name(),
            exit_code: Exit::Usage.code(),
            subject: Subject::default(),
            hints,
        }
    }

    /// The text printed on standard error:
    ///
    /// ```text
    /// error: <top-level message>
    ///   Caused by: <cause>
    /// hint: <hint>
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "error: {}", self.message);
        for cause in &self.causes {
            let _ = writeln!(out, "  Caused by: {cause}");
        }
        for h in &self.hints {
            let _ = writeln!(out, "hint: {h}");
        }
        out
    }

    /// The JSON document printed on standard output with `--json`: `{"error": {...}}`.
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Document<'a> {
            error: &'a ErrorReport,
        }
        serde_json::to_string(&Document { error: self }).unwrap_or_default()
    }
}

/// Renders an error and its causes the way `hermetic` prints them (see
/// [`ErrorReport::render`]).
pub fn render_error_chain(err: &anyhow::Error) -> String {
    ErrorReport::new(err).render()
}

/// Prints [`render_error_chain`] to standard error.
pub fn print_error_chain(err: &anyhow::Error) {
    eprint!("{}", render_error_chain(err));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /x/y\nhint: check the path")]
    struct Inner;

    #[test]
    fn hints_come_last_once() {
        let err = anyhow::Error::new(Inner).context("loading recipe base");
        let text = render_error_chain(&err);
        assert_eq!(
            text,
            "error: loading recipe base\n  Caused by: cannot read /x/y\nhint: check the path\n"
        );
    }

    #[test]
    fn typed_hints_and_subjects_reach_the_report() {
        let inner = crate::build::BuildError::StaleLock {
            detail: "recipe `base` changed".into(),
        };
        let err = anyhow::Error::new(inner).context("building base");
        let report = ErrorReport::new(&err);
        assert_eq!(report.message, "building base");
        assert_eq!(
            report.causes,
            ["pins.lock does not match the recipes (recipe `base` changed)"]
        );
        assert_eq!(report.hints, ["run `hermetic lock` to bring it up to date"]);
        assert_eq!((report.kind, report.exit_code), ("lock-stale", 3));
        assert_eq!(
            report.render(),
            "error: building base\n  Caused by: pins.lock does not match the recipes (recipe \
             `base` changed)\nhint: run `hermetic lock` to bring it up to date\n"
        );

        let missing = crate::recipe::RecipeError::Read {
            path: "x/hermetic.toml".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let report = ErrorReport::new(&anyhow::Error::new(crate::build::BuildError::from(missing)));
        assert_eq!(report.subject, Subject::file("x/hermetic.toml"));
        assert_eq!(report.hints.len(), 1, "{report:?}");
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(v["error"]["file"], "x/hermetic.toml");
        assert_eq!(v["error"]["kind"], "failure");
        assert_eq!(v["error"]["exit_code"], 1);
        assert!(v["error"]["hints"][0].as_str().unwrap().contains("-C DIR"));
    }

    #[test]
    fn a_boxed_source_gives_its_hint_too() {
        let resolve = crate::debian::ResolveError::VirtualPackage {
            name: "mta".into(),
            providers: "a, b".into(),
        };
        let err = anyhow::Error::new(crate::lock::LockError::Resolve {
            recipe: "base".into(),
            closure: "packages",
            source: Box::new(resolve),
        });
        let report = ErrorReport::new(&err);
        assert_eq!(report.message, "cannot resolve recipe `base` (packages)");
        assert_eq!(
            report.causes,
            ["package 'mta' is virtual, provided by: a, b"]
        );
        assert_eq!(report.hints, ["request one of the providers by name"]);
        // The outermost error naming a package wins.
        assert_eq!(report.subject, Subject::package("base"));
    }
}

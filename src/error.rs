//! Printing errors at the edge of the program.
//!
//! Library errors are `thiserror` enums whose messages name the file, URL or package that
//! failed. A message may end with lines starting `hint: `; those are collected and printed
//! once, after the whole cause chain, so the fix is the last thing the user reads.

use std::fmt::Write as _;

/// Renders an error and its causes the way `hermetic` prints them:
///
/// ```text
/// error: <top-level message>
///   Caused by: <cause>
/// hint: <hint>
/// ```
pub fn render_error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut hints = Vec::new();
    for (i, cause) in err.chain().enumerate() {
        let text = cause.to_string();
        let mut lines = Vec::new();
        for line in text.lines() {
            if let Some(h) = line.trim_start().strip_prefix("hint: ") {
                hints.push(h.to_string());
            } else {
                lines.push(line);
            }
        }
        let body = lines.join("\n");
        if body.trim().is_empty() {
            continue;
        }
        if i == 0 {
            let _ = writeln!(out, "error: {body}");
        } else {
            let _ = writeln!(out, "  Caused by: {body}");
        }
    }
    hints.dedup();
    for h in hints {
        let _ = writeln!(out, "hint: {h}");
    }
    out
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
}

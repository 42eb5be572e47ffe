//! Kernel patches: `*.patch` / `*.diff` files applied in name order with
//! `patch -p1 --batch --forward` (the tools tree's GNU patch, in the sandbox). A patch is first
//! tried with `--dry-run`, so that a failing patch leaves the tree as it was; its output is
//! parsed into "which file, which hunk".

use std::fmt;
use std::path::{Path, PathBuf};

use super::KernelError;

/// The patches of a directory in name order. A missing directory has none; hidden files and
/// `README*` are skipped; any other file that is not `*.patch`/`*.diff` is an error.
pub fn list_patches(dir: &Path) -> Result<Vec<PathBuf>, KernelError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(KernelError::io(dir))? {
        let entry = entry.map_err(KernelError::io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with("README") {
            continue;
        }
        let path = entry.path();
        if !(name.ends_with(".patch") || name.ends_with(".diff")) || !path.is_file() {
            return Err(KernelError::NotAPatch { path });
        }
        out.push(path);
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

/// The arguments of `patch` (the patch is given with `-i`).
pub const PATCH_ARGS: [&str; 5] = [
    "-p1",
    "--batch",
    "--forward",
    "--no-backup-if-mismatch",
    "--reject-file=-",
];

/// One thing `patch` reported as wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchProblem {
    /// `Hunk #N FAILED at L.`
    HunkFailed { file: String, hunk: u32, line: u64 },
    /// The file to patch does not exist.
    MissingFile { file: String },
    /// `Reversed (or previously applied) patch detected!`
    AlreadyApplied { file: String },
    /// `patch: **** ...` (malformed input and the like).
    Fatal { message: String },
}

impl fmt::Display for PatchProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchProblem::HunkFailed { file, hunk, line } => {
                write!(f, "{file}: hunk #{hunk} FAILED at line {line}")
            }
            PatchProblem::MissingFile { file } => {
                write!(f, "{file}: no such file in the source")
            }
            PatchProblem::AlreadyApplied { file } => write!(
                f,
                "{file}: reversed or already applied (every hunk of this file was skipped)"
            ),
            PatchProblem::Fatal { message } => write!(f, "patch: {message}"),
        }
    }
}

/// Parses the output of a failed `patch` run (GNU patch 2.7).
pub fn parse_failure(output: &str) -> Vec<PatchProblem> {
    let mut problems = Vec::new();
    let mut current = String::new();
    let mut lines = output.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end();
        if let Some(file) = line
            .strip_prefix("patching file ")
            .or_else(|| line.strip_prefix("checking file "))
        {
            current = unquote(file);
        } else if let Some(rest) = line.strip_prefix("Hunk #") {
            // `Hunk #2 FAILED at 7.` or `Hunk #2 FAILED at 7 (different line endings).`
            if let Some((num, after)) = rest.split_once(" FAILED at ") {
                let line_no: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
                if let (Ok(hunk), Ok(line)) = (num.parse(), line_no.parse()) {
                    problems.push(PatchProblem::HunkFailed {
                        file: current.clone(),
                        hunk,
                        line,
                    });
                }
            }
        } else if line.starts_with("can't find file to patch") {
            // The header follows as `|--- a/x` / `|+++ b/x` lines; take the new name.
            let mut file = String::new();
            while let Some(next) = lines.peek() {
                if next.starts_with("No file to patch") {
                    break;
                }
                let next = lines.next().unwrap_or_default();
                for prefix in ["|+++ ", "|--- "] {
                    if let Some(name) = next.strip_prefix(prefix) {
                        let name = name.split('\t').next().unwrap_or(name).trim();
                        let name = name.split_once('/').map(|(_, n)| n).unwrap_or(name);
                        if prefix == "|+++ " || file.is_empty() {
                            file = name.to_string();
                        }
                    }
                }
            }
            problems.push(PatchProblem::MissingFile { file });
        } else if line.starts_with("Reversed (or previously applied) patch detected!") {
            problems.push(PatchProblem::AlreadyApplied {
                file: current.clone(),
            });
        } else if let Some(message) = line.strip_prefix("patch: **** ") {
            problems.push(PatchProblem::Fatal {
                message: message.to_string(),
            });
        } else if let Some(idx) = line.find("patch: **** ") {
            // GNU patch may print this without a preceding newline.
            problems.push(PatchProblem::Fatal {
                message: line[idx + "patch: **** ".len()..].to_string(),
            });
        }
    }
    problems
}

fn unquote(name: &str) -> String {
    let name = name.trim();
    name.strip_prefix('\'')
        .and_then(|n| n.strip_suffix('\''))
        .unwrap_or(name)
        .to_string()
}

/// The problems as indented lines; the raw output's last lines when nothing was recognised.
pub fn describe(output: &str) -> String {
    let problems = parse_failure(output);
    if problems.is_empty() {
        let lines: Vec<&str> = output.lines().collect();
        return lines[lines.len().saturating_sub(10)..]
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const ORIGINAL: &str =
        "line1\nline2\nline3\nline4\nline5\nline6\nline7\nline8\nline9\nline10\n";

    /// Runs the real GNU patch on a scratch tree and returns its combined output.
    fn real_patch(patch: &str, apply_twice: bool) -> (bool, String) {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir(dir.path().join("init")).unwrap();
        fs_err::write(dir.path().join("init/version.c"), ORIGINAL).unwrap();
        let file = dir.path().join("x.patch");
        fs_err::write(&file, patch).unwrap();
        let run = || {
            Command::new("patch")
                .args(PATCH_ARGS)
                .arg("-i")
                .arg(&file)
                .current_dir(dir.path())
                .output()
                .expect("GNU patch is installed")
        };
        if apply_twice {
            assert!(run().status.success());
        }
        let out = run();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    const GOOD: &str = "--- a/init/version.c\n+++ b/init/version.c\n@@ -1,3 +1,3 @@\n line1\n-line2\n+LINE2\n line3\n";

    #[test]
    fn a_failed_hunk_is_named() {
        let patch = format!("{GOOD}@@ -7,4 +7,4 @@\n line7\n-lineX\n+LINE8\n line9\n line10\n");
        let (ok, out) = real_patch(&patch, false);
        assert!(!ok, "{out}");
        assert_eq!(
            parse_failure(&out),
            vec![PatchProblem::HunkFailed {
                file: "init/version.c".into(),
                hunk: 2,
                line: 7
            }],
            "{out}"
        );
        assert_eq!(describe(&out), "  init/version.c: hunk #2 FAILED at line 7");
    }

    #[test]
    fn a_missing_file_is_named() {
        let patch = GOOD.replace("init/version.c", "init/nothere.c");
        let (ok, out) = real_patch(&patch, false);
        assert!(!ok, "{out}");
        assert_eq!(
            parse_failure(&out),
            vec![PatchProblem::MissingFile {
                file: "init/nothere.c".into()
            }],
            "{out}"
        );
    }

    #[test]
    fn an_applied_patch_is_recognised() {
        let (ok, out) = real_patch(GOOD, true);
        assert!(!ok, "{out}");
        assert_eq!(
            parse_failure(&out),
            vec![PatchProblem::AlreadyApplied {
                file: "init/version.c".into()
            }],
            "{out}"
        );
    }

    #[test]
    fn garbage_is_fatal() {
        let (ok, out) = real_patch("this is not a patch\n", false);
        assert!(!ok, "{out}");
        let problems = parse_failure(&out);
        assert!(
            matches!(&problems[..], [PatchProblem::Fatal { message }] if message.contains("garbage")),
            "{problems:?} from {out}"
        );
    }

    #[test]
    fn a_good_patch_applies() {
        let (ok, out) = real_patch(GOOD, false);
        assert!(ok, "{out}");
        assert!(parse_failure(&out).is_empty());
    }

    #[test]
    fn patches_are_listed_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "0002-b.patch",
            "0001-a.diff",
            "README.md",
            ".hidden",
            "0010-c.patch",
        ] {
            fs_err::write(dir.path().join(n), "").unwrap();
        }
        let names: Vec<String> = list_patches(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["0001-a.diff", "0002-b.patch", "0010-c.patch"]);
        fs_err::write(dir.path().join("notes.txt"), "").unwrap();
        let err = list_patches(dir.path()).unwrap_err().to_string();
        assert!(err.contains("notes.txt is not a patch"), "{err}");
        assert!(list_patches(&dir.path().join("none")).unwrap().is_empty());
    }
}

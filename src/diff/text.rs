//! Line diffs of small texts (`.cmdline`, `.osrel`, `.uname`, `.sbat`, unknown text files).

use super::{DiffError, Difference, Src};

/// Texts larger than this are not diffed line by line.
const MAX_TEXT: u64 = 4 << 20;
/// At most this many `-`/`+` lines are shown per difference.
const MAX_LINES: usize = 40;

/// The lines only in `a` (as `-line`) and only in `b` (as `+line`), in order, from a longest
/// common subsequence of lines. Long inputs fall back to comparing line by line.
pub fn line_diff(a: &str, b: &str) -> Vec<String> {
    let x: Vec<&str> = a.lines().collect();
    let y: Vec<&str> = b.lines().collect();
    // Trim the common head and tail: most differences are a few lines.
    let head = x.iter().zip(&y).take_while(|(p, q)| p == q).count();
    let tail = x[head..]
        .iter()
        .rev()
        .zip(y[head..].iter().rev())
        .take_while(|(p, q)| p == q)
        .count();
    let (x, y) = (&x[head..x.len() - tail], &y[head..y.len() - tail]);
    let mut out = Vec::new();
    if x.len().saturating_mul(y.len()) > 4_000_000 {
        for l in x {
            out.push(format!("-{l}"));
        }
        for l in y {
            out.push(format!("+{l}"));
        }
    } else {
        // lcs[i][j]: length of the LCS of x[i..] and y[j..].
        let (n, m) = (x.len(), y.len());
        let mut lcs = vec![vec![0u32; m + 1]; n + 1];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i][j] = if x[i] == y[j] {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && x[i] == y[j] {
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
                out.push(format!("-{}", x[i]));
                i += 1;
            } else {
                out.push(format!("+{}", y[j]));
                j += 1;
            }
        }
    }
    if out.len() > MAX_LINES {
        let rest = out.len() - MAX_LINES;
        out.truncate(MAX_LINES);
        out.push(format!("… {rest} more changed line(s)"));
    }
    out
}

/// `text` without the NUL padding sections carry, with invisible characters escaped.
fn clean(data: &[u8]) -> Option<String> {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let s = std::str::from_utf8(&data[..end]).ok()?;
    if s.contains('\0') {
        return None;
    }
    Some(s.to_string())
}

/// A text difference at `loc`, or a byte difference when either side is not text.
pub fn diff_text(loc: &str, a: &[u8], b: &[u8]) -> Difference {
    let mut d = Difference::changed(loc);
    match (clean(a), clean(b)) {
        (Some(x), Some(y)) if x != y => {
            d.lines = line_diff(&x, &y);
            if d.lines.is_empty() {
                // Same lines; only line endings or the final newline differ.
                d.content_offset = super::first_difference(a, b);
                d.note = Some("line endings differ".into());
            }
        }
        _ => {
            d.field("size", a.len(), b.len());
            d.content_offset = super::first_difference(a, b);
        }
    }
    d
}

/// The line diff of two ranges when both are small UTF-8 texts, else nothing.
pub(crate) fn line_diff_if_text(a: &Src, b: &Src) -> Result<Vec<String>, DiffError> {
    if a.len > MAX_TEXT || b.len > MAX_TEXT {
        return Ok(Vec::new());
    }
    let (x, y) = (a.read(0, a.len as usize)?, b.read(0, b.len as usize)?);
    Ok(match (clean(&x), clean(&y)) {
        (Some(x), Some(y)) => line_diff(&x, &y),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_shows_as_minus_and_plus() {
        let a = "NAME=Debian\nVERSION_ID=13\nID=debian\n";
        let b = "NAME=Debian\nVERSION_ID=14\nID=debian\nEXTRA=1\n";
        assert_eq!(
            line_diff(a, b),
            vec!["-VERSION_ID=13", "+VERSION_ID=14", "+EXTRA=1"]
        );
        assert!(line_diff(a, a).is_empty());
    }

    #[test]
    fn nul_padding_is_not_a_difference_in_text() {
        let d = diff_text(".cmdline", b"console=ttyS0\0\0", b"console=ttyS1\0");
        assert_eq!(d.lines, vec!["-console=ttyS0", "+console=ttyS1"]);
    }
}

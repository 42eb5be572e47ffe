//! What the commands say on standard error while they work.
//!
//! One [`Reporter`], made from `-q`/`-v`/`--json` by the command line and passed down in the
//! options of `lock`, `fetch` and `build`, decides every progress line, spinner and bar:
//!
//! | level | what is shown |
//! |---|---|
//! | `-q` (or `--json`) | nothing but warnings and errors |
//! | default | a line per step or file; a bar or spinner on a terminal, plain lines (at least every few seconds) otherwise |
//! | `-v` | also each file fetched with its source URL and size, each index read, each step with its key and whether the store had it |
//! | `-vv` | also each sandbox command with its root and mounts |
//!
//! A line printed while a bar or spinner is drawn goes above it. Library callers that pass
//! [`Reporter::default`] get silence.

use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Decides what is said on standard error; cheap to clone (clones share the drawn bar).
#[derive(Debug, Clone)]
pub struct Reporter {
    /// -1 quiet, 0 default, 1 `-v`, 2 `-vv` and more.
    level: i8,
    /// Standard error is a terminal: bars and spinners instead of plain lines.
    terminal: bool,
    /// The bar or spinner on screen, which lines are printed above.
    drawn: Arc<Mutex<Option<indicatif::ProgressBar>>>,
}

impl Default for Reporter {
    /// Silence (for library callers and tests).
    fn default() -> Reporter {
        Reporter::with_level(-1, false)
    }
}

impl Reporter {
    /// The reporter of a command run with `verbosity` (-1 for `-q`, 1 per `-v`); `--json`
    /// keeps standard error for warnings and errors only.
    pub fn new(verbosity: i8, json: bool) -> Reporter {
        let level = if json { -1 } else { verbosity };
        Reporter::with_level(level, std::io::IsTerminal::is_terminal(&std::io::stderr()))
    }

    /// A reporter at `level` (see [`Reporter::new`]), drawing bars when `terminal`.
    pub fn with_level(level: i8, terminal: bool) -> Reporter {
        Reporter {
            level,
            terminal,
            drawn: Arc::new(Mutex::new(None)),
        }
    }

    /// Progress is shown (not `-q`, not `--json`).
    pub fn progress(&self) -> bool {
        self.level >= 0
    }

    /// `-v`: details.
    pub fn verbose(&self) -> bool {
        self.level >= 1
    }

    /// `-vv`: sandbox commands and mounts.
    pub fn debug(&self) -> bool {
        self.level >= 2
    }

    /// Progress is drawn as bars and spinners (a terminal, not `-q`).
    pub fn draws(&self) -> bool {
        self.progress() && self.terminal
    }

    /// Progress is plain lines (not a terminal, not `-q`).
    pub fn plain_lines(&self) -> bool {
        self.progress() && !self.terminal
    }

    /// A progress line (not with `-q`).
    pub fn line(&self, text: impl Display) {
        if self.progress() {
            self.print(text);
        }
    }

    /// A `-v` line.
    pub fn detail(&self, text: impl Display) {
        if self.verbose() {
            self.print(text);
        }
    }

    /// A `-vv` line.
    pub fn debug_line(&self, text: impl Display) {
        if self.debug() {
            self.print(text);
        }
    }

    /// A warning: shown whatever the level.
    pub fn warn(&self, text: impl Display) {
        self.print(format_args!("warning: {text}"));
    }

    /// Prints `text` on standard error, above the bar or spinner if one is drawn.
    fn print(&self, text: impl Display) {
        let drawn = self.drawn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match drawn {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// A spinner with the elapsed time and a message ([`Progress::set_message`]) on a
    /// terminal; nothing otherwise. Cleared when dropped.
    pub fn spinner(&self) -> Progress {
        self.draw(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_style(
                indicatif::ProgressStyle::with_template("  {spinner} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            pb
        })
    }

    /// A bar of `total` bytes with rate and message on a terminal; nothing otherwise.
    pub fn byte_bar(&self, total: u64) -> Progress {
        self.draw(|| {
            let pb = indicatif::ProgressBar::new(total);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            pb
        })
    }

    /// A bar of `total` items on a terminal; nothing otherwise.
    pub fn count_bar(&self, total: u64) -> Progress {
        self.draw(|| indicatif::ProgressBar::new(total))
    }

    fn draw(&self, make: impl FnOnce() -> indicatif::ProgressBar) -> Progress {
        if !self.draws() {
            return Progress {
                bar: indicatif::ProgressBar::hidden(),
                owner: None,
            };
        }
        let bar = make();
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.drawn.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        Progress {
            bar,
            owner: Some(self.clone()),
        }
    }
}

/// A bar or spinner (hidden when nothing is drawn); cleared when dropped.
#[derive(Debug)]
pub struct Progress {
    bar: indicatif::ProgressBar,
    owner: Option<Reporter>,
}

impl Progress {
    pub fn set_message(&self, text: impl Into<std::borrow::Cow<'static, str>>) {
        self.bar.set_message(text);
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Whether anything is drawn.
    pub fn is_drawn(&self) -> bool {
        self.owner.is_some()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        if let Some(r) = &self.owner {
            *r.drawn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_decide_what_is_shown() {
        let quiet = Reporter::with_level(-1, true);
        assert!(!quiet.progress() && !quiet.draws() && !quiet.plain_lines());
        assert!(!quiet.spinner().is_drawn());
        let piped = Reporter::with_level(0, false);
        assert!(piped.progress() && piped.plain_lines() && !piped.verbose());
        assert!(!piped.byte_bar(10).is_drawn());
        let verbose = Reporter::with_level(2, true);
        assert!(verbose.verbose() && verbose.debug() && verbose.draws());
        assert!(!Reporter::default().progress());
        assert!(
            !Reporter::new(3, true).progress(),
            "--json silences progress"
        );
    }
}

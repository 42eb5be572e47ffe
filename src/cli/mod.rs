//! The command line. Each command is a thin module: parse its arguments, call the library
//! module that does the job, print the result.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use std::process::ExitCode;

use clap::{ArgAction, CommandFactory as _, Parser, Subcommand};

pub mod boot;
pub mod build;
pub mod cache;
pub mod diff;
pub mod doctor;
pub mod fetch;
pub mod lock;
pub mod measure;
pub mod plan;
pub mod sandbox;
pub mod shell;
pub mod sign;
pub mod verify;
pub mod why;

/// Build bit-for-bit reproducible Linux VM images from pinned Debian packages.
///
/// Every Debian package and source tarball is pinned by SHA-256 in `pins.lock`; every build
/// step runs in an unprivileged sandbox made only of pinned inputs, so the same git revision
/// gives the same bytes on any Debian or Ubuntu host.
#[derive(Debug, Parser)]
#[command(
    name = "hermetic",
    version,
    long_version = LONG_VERSION,
    propagate_version = true,
    max_term_width = 100,
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Project directory (the one holding `hermetic.toml` and `recipes/`).
    /// [default: the nearest directory, from here upwards, that holds `hermetic.toml`]
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,

    /// Store directory for pinned blobs and build outputs.
    /// [default: $XDG_CACHE_HOME/hermetic, else ~/.cache/hermetic]
    #[arg(long, global = true, env = "HERMETIC_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Print machine-readable JSON on standard output instead of text: one document, an
    /// `{"error": …}` one when the command fails.
    #[arg(long, global = true)]
    pub json: bool,

    /// Say more (repeat for even more).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Say only what went wrong.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve the Debian packages and sources the recipes ask for into `pins.lock`.
    Lock(lock::Args),
    /// Download every pin of `pins.lock` into the store, verifying each by SHA-256.
    Fetch(fetch::Args),
    /// Build images: run every step that is not stored yet, copy the outputs to `out/`.
    Build(build::Args),
    /// Boot an image (or a .efi, .qcow2, .raw, .vhd file) under QEMU with OVMF, optionally
    /// with a software TPM and Secure Boot.
    Boot(boot::Args),
    /// Show the steps of an image's build and which of them would run.
    Plan(plan::Args),
    /// Inspect, verify and clean the store (`verify`, `dir`, `gc`).
    Cache(cache::Args),
    /// Run a command in the build sandbox (for debugging and tests).
    Sandbox(sandbox::Args),
    /// Open a shell (or run CMD) in the sandbox on an image's built tree, read-only unless
    /// --writable (building the tree first if needed).
    Shell(shell::Args),
    /// Check that this machine can run the sandbox, and say how to fix what cannot.
    Doctor(doctor::Args),
    /// Predict the TPM PCR values (and TDX RTMRs) a Unified Kernel Image will be measured to.
    Measure(measure::Args),
    /// Explain how two images or files differ: UKI sections, initrd and tar entries, GPT,
    /// FAT files, kernel .config options (exit 0 identical, 4 different).
    Diff(diff::Args),
    /// Rebuild an image and compare it with a published release (SHA256SUMS, directory, URL,
    /// or one file), checking its minisign signatures with `--pubkey`.
    Verify(verify::Args),
    /// Sign files with a minisign-compatible Ed25519 key (`--generate-key` makes one).
    Sign(sign::Args),
    /// Show the chains of dependencies that pull a pinned package into an image, from pins.lock.
    Why(why::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on standard output.
    ///
    /// bash: `hermetic completions bash > ~/.local/share/bash-completion/completions/hermetic`;
    /// zsh: into a directory of `$fpath` as `_hermetic`; fish: into
    /// `~/.config/fish/completions/hermetic.fish`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page, hermetic(1), as roff on standard output.
    ///
    /// `hermetic man > hermetic.1 && man ./hermetic.1`, or install it under
    /// `/usr/local/share/man/man1/`.
    Man,
}

/// `--version` in full: the version and the git commit hermetic was built from.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HERMETIC_COMMIT"),
    ")"
);

/// The exit codes, at the end of `hermetic --help` (see [`crate::exit`]).
const EXIT_CODES: &str = "\
Exit codes: 0 success · 1 failure · 2 bad command line · 3 pins.lock missing or stale ·
4 rebuilt but not bit-identical · 5 network failure · 6 pins missing from (or damaged in) the
store · 7 this machine cannot run the sandbox · 8 `verify`: a signature is bad · 124 boot
timed out";

/// What every command gets: the global options, resolved.
#[derive(Debug, Clone)]
pub struct Context {
    /// The project directory (`-C`).
    pub project: PathBuf,
    /// The store directory (`--store`, `HERMETIC_STORE`, or the XDG default).
    pub store: PathBuf,
    /// `--json`.
    pub json: bool,
    /// -1 for `--quiet`, 0 by default, 1+ for each `-v`.
    pub verbosity: i8,
}

impl Context {
    /// True unless `--quiet` or `--json` asked for silence on the terminal.
    pub fn chatty(&self) -> bool {
        self.verbosity >= 0 && !self.json
    }

    /// What `lock`, `fetch` and `build` say while they work (see [`crate::report`]).
    pub fn reporter(&self) -> crate::report::Reporter {
        crate::report::Reporter::new(self.verbosity, self.json)
    }
}

/// The store used when neither `--store` nor `HERMETIC_STORE` is given.
pub fn default_store_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("hermetic");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("hermetic"),
        None => PathBuf::from(".cache").join("hermetic"),
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let project = match cli.project {
        Some(dir) => dir,
        None => find_project(&std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let ctx = Context {
        project,
        store: cli.store.unwrap_or_else(default_store_dir),
        json: cli.json,
        verbosity: if cli.quiet {
            -1
        } else {
            cli.verbose.min(100) as i8
        },
    };
    match cli.command {
        Command::Lock(args) => lock::run(&ctx, args),
        Command::Fetch(args) => fetch::run(&ctx, args),
        Command::Boot(args) => boot::run(&ctx, args),
        Command::Build(args) => build::run(&ctx, args),
        Command::Plan(args) => plan::run(&ctx, args),
        Command::Cache(args) => cache::run(&ctx, args),
        Command::Sandbox(args) => sandbox::run(&ctx, args),
        Command::Shell(args) => shell::run(&ctx, args),
        Command::Doctor(args) => doctor::run(&ctx, args),
        Command::Measure(args) => measure::run(&ctx, args),
        Command::Diff(args) => diff::run(&ctx, args),
        Command::Verify(args) => verify::run(&ctx, args),
        Command::Sign(args) => sign::run(&ctx, args),
        Command::Why(args) => why::run(&ctx, args),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "hermetic", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let page = clap_mangen::Man::new(Cli::command());
            page.render(&mut std::io::stdout())
                .context("cannot write the manual page to standard output")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The project a command run in `start` belongs to, found like git or cargo find theirs: the
/// nearest of `start` and its ancestors that holds `hermetic.toml`. It is given as a relative
/// path (`.`, `..`, `../..`) so messages name files the way the user sees them from `start`.
/// `None` outside any project: commands that need none (`sandbox`, `doctor`, `measure`, …)
/// still run, and the others say which file they could not read.
pub fn find_project(start: &Path) -> Option<PathBuf> {
    let mut relative = PathBuf::from(".");
    for dir in start.ancestors() {
        if dir.join(crate::recipe::PROJECT_FILE).is_file() {
            return Some(relative);
        }
        relative = if relative == Path::new(".") {
            PathBuf::from("..")
        } else {
            relative.join("..")
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_project_is_found_upwards() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("recipes/sub");
        fs_err::create_dir_all(&deep).unwrap();
        assert_eq!(find_project(&deep), None);
        fs_err::write(dir.path().join(crate::recipe::PROJECT_FILE), "").unwrap();
        assert_eq!(find_project(dir.path()), Some(PathBuf::from(".")));
        assert_eq!(find_project(&deep), Some(PathBuf::from("../..")));
        let nested = deep.join(crate::recipe::PROJECT_FILE);
        fs_err::write(&nested, "").unwrap();
        assert_eq!(find_project(&deep), Some(PathBuf::from(".")));
    }
}

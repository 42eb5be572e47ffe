//! `hermetic verify`: rebuild an image and compare it with what was published.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use super::Context;
use crate::exit::Exit;

/// Arguments of `hermetic verify`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
SOURCE is what the release published: a SHA256SUMS file, a directory of released files (with
or without SHA256SUMS; files are hashed), an http(s) URL of a SHA256SUMS or of a single file,
or one .efi (or any output), .sha256 or .minisig file. TARGET is built exactly as `hermetic
build` builds it (from the store when cached), then every published file is compared with
the rebuilt file of the same name: same, DIFFERS, not rebuilt (published but the build makes
no such file) or not published (rebuilt only; not a failure).

With --pubkey, every .minisig published next to the files (FILE.minisig, SHA256SUMS.minisig),
or the one given, is checked against the minisign public key; a bad or missing check fails.

Exit codes: 0 every published file was rebuilt bit for bit (and every signature is good);
4 the build worked but something differs or was not rebuilt; 8 a signature is bad; other
codes as for `hermetic build` (1 build failure, 3 stale lock, 5 network, 6 store, 7 sandbox).
See docs/verify.md.")]
pub struct Args {
    /// The image to rebuild (a recipe name, e.g. `gcp`).
    #[arg(value_name = "TARGET")]
    pub target: String,

    /// What was published: SHA256SUMS, a directory, a URL, or a .efi/.sha256/.minisig file.
    #[arg(long, value_name = "SOURCE")]
    pub against: String,

    /// The release's minisign public key: check every published signature with it.
    #[arg(long, value_name = "KEY")]
    pub pubkey: Option<PathBuf>,

    /// Where the rebuilt outputs go [default: PROJECT/out].
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Select a profile of the recipe (repeatable), as the release was built with.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,

    /// Parallel jobs of the kernel build [default: the CPUs hermetic may use].
    #[arg(long, short = 'j', value_name = "N", env = "HERMETIC_JOBS")]
    pub jobs: Option<std::num::NonZeroUsize>,
}

/// Runs `hermetic verify`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    // Bad input is found before a long build.
    let key = match &args.pubkey {
        Some(p) => Some((crate::sign::PublicKey::read(p)?, p.clone())),
        None => None,
    };
    let http = crate::http::Http::new();
    let published = crate::verify::read_published(&args.against, &http)?;
    if key.is_none() && published.files.values().any(Option::is_none) {
        return Err(crate::verify::VerifyError::SignatureNeedsKey {
            origin: published.origin.clone(),
        }
        .into());
    }
    let build_args = super::build::Args {
        targets: vec![args.target.clone()],
        output: args.output.clone(),
        profiles: args.profiles.clone(),
        keep_failed: false,
        rebuild: None,
        jobs: args.jobs,
        sign: None,
        offline: false,
        mirrors: Vec::new(),
        source_dirs: Vec::new(),
        omit: Vec::new(),
        omit_unavailable: false,
        cache: super::cache::UseArgs::none(),
    };
    let built = super::build::execute(ctx, &build_args)?;
    let rebuilt: BTreeMap<String, (String, PathBuf)> = built
        .report
        .outputs
        .iter()
        .chain(built.release.iter())
        .map(|(p, h)| {
            (
                p.to_string_lossy().into_owned(),
                (h.clone(), built.output_dir.join(p)),
            )
        })
        .collect();
    let comparison = crate::verify::compare(
        &published,
        &rebuilt,
        key.as_ref().map(|(k, p)| (k, p.as_path())),
    )?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", comparison.table());
    }
    if !comparison.all_same() && !ctx.json && ctx.verbosity >= 0 {
        explain_mismatches(&published, &comparison, &rebuilt);
        eprintln!(
            "run `hermetic diff PUBLISHED REBUILT` to see what differs (the rebuilt files are in {})",
            built.output_dir.display()
        );
    }
    Ok(if comparison.bad_signature() {
        Exit::BadSignature.into()
    } else if !comparison.all_same() {
        Exit::NotReproducible.into()
    } else {
        ExitCode::SUCCESS
    })
}

/// For each published file that differs and is on this machine (a release directory, or the
/// directory of a published `SHA256SUMS`), says what differs, entry by entry, with
/// `hermetic diff`'s report (its first 20 differences).
fn explain_mismatches(
    published: &crate::verify::Published,
    comparison: &crate::verify::Comparison,
    rebuilt: &BTreeMap<String, (String, PathBuf)>,
) {
    let origin = std::path::Path::new(&published.origin);
    let dir = if origin.is_dir() {
        origin
    } else {
        match origin.parent() {
            Some(p) if origin.is_file() => p,
            _ => return,
        }
    };
    let opts = crate::diff::DiffOptions {
        max: 20,
        ..Default::default()
    };
    for row in &comparison.rows {
        if row.verdict != crate::verify::Verdict::Differs {
            continue;
        }
        let (Some(local), Some((_, ours))) = (
            Some(dir.join(&row.file)).filter(|p| p.is_file()),
            rebuilt.get(&row.file),
        ) else {
            continue;
        };
        match crate::diff::diff_paths(&local, ours, &opts) {
            Ok(report) if !report.is_empty() => {
                eprintln!("{}: what differs (published → rebuilt):", row.file);
                eprint!("{}", report.render());
            }
            Ok(_) => {}
            Err(e) => eprintln!("{}: cannot compare: {e}", row.file),
        }
    }
}

//! `hermetic sign`: minisign-compatible signatures of release files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::sign::SecretKey;

/// Arguments of `hermetic sign`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Writes FILE.minisig next to each FILE, in minisign's format: `minisign -Vm FILE -p KEY.pub`
checks it. The signature is over the BLAKE2b-512 of the file (minisign's default since 0.8);
the trusted comment, signed too, defaults to
`timestamp:<unix time>\\tfile:<name>\\tcommit:<git revision of the project>\\thashed`.

`hermetic sign --generate-key KEYFILE` makes a key pair: KEYFILE (the secret key, mode 0600,
unencrypted, as `minisign -G -W` makes it) and KEYFILE.pub. Keys that minisign made sign too;
the password of a protected one is read from HERMETIC_SIGN_PASSWORD, else asked on the
terminal.
`hermetic build --sign KEY` signs every output of a build. See docs/verify.md.")]
pub struct Args {
    /// The files to sign.
    #[arg(value_name = "FILE", required_unless_present = "generate_key")]
    pub files: Vec<PathBuf>,

    /// The minisign secret key to sign with.
    #[arg(
        long,
        short = 's',
        value_name = "KEY",
        required_unless_present = "generate_key"
    )]
    pub key: Option<PathBuf>,

    /// The trusted comment (one line), signed together with the signature.
    #[arg(long, short = 't', value_name = "TEXT")]
    pub trusted_comment: Option<String>,

    /// Make a new key pair: KEYFILE (secret) and KEYFILE.pub (public); sign nothing.
    #[arg(long, value_name = "KEYFILE", conflicts_with_all = ["files", "key"])]
    pub generate_key: Option<PathBuf>,
}

/// Runs `hermetic sign`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.generate_key {
        let key = SecretKey::generate()?;
        let public = key.write_pair(path)?;
        if ctx.json {
            println!(
                "{}",
                serde_json::json!({
                    "secret_key": path,
                    "public_key": public,
                    "key_id": crate::sign::key_id_hex(&key.key_id),
                })
            );
        } else if ctx.verbosity >= 0 {
            println!(
                "secret key {} and public key {} (key id {})",
                path.display(),
                public.display(),
                crate::sign::key_id_hex(&key.key_id)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let key = args.key.as_deref().expect("clap requires --key");
    let written = sign_files(ctx, key, &args.files, args.trusted_comment.as_deref())?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&written)?);
    } else if ctx.verbosity >= 0 {
        for w in written {
            println!("{}", w.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Signs each file with the key at `key`; returns the signatures written.
pub(crate) fn sign_files(
    ctx: &Context,
    key: &Path,
    files: &[PathBuf],
    trusted_comment: Option<&str>,
) -> anyhow::Result<Vec<PathBuf>> {
    let secret = SecretKey::read(key)?;
    let commit = crate::release::git_revision(&ctx.project).map(|g| g.commit);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut written = Vec::new();
    for file in files {
        let comment = match trusted_comment {
            Some(c) => c.to_string(),
            None => crate::sign::default_trusted_comment(file, now, commit.as_deref()),
        };
        let sig = crate::sign::sign_to_file(&secret, file, &comment)
            .with_context(|| format!("cannot sign {}", file.display()))?;
        written.push(sig);
    }
    Ok(written)
}

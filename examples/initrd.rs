//! Writes the initrd of a directory tree with hermetic's writer; drives
//! `scripts/bench-initrd.sh`.
//!
//! ```text
//! cargo run --release --example initrd -- [--level N] [--workers N] [--epoch SECS]
//!     [--uncompressed] <root> <output>
//! ```

use std::path::PathBuf;
use std::time::Instant;

use hermetic::image::cpio::{self, CpioOptions, InitrdOptions};

fn main() -> anyhow::Result<()> {
    let mut opts = InitrdOptions::new(u32::MAX);
    let mut uncompressed = false;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> anyhow::Result<String> {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match a.as_str() {
            "--level" => opts.zstd_level = value("--level")?.parse()?,
            "--workers" => opts.zstd_workers = value("--workers")?.parse()?,
            "--epoch" => opts.cpio.source_date_epoch = value("--epoch")?.parse()?,
            "--uncompressed" => uncompressed = true,
            _ if a.starts_with("--") => anyhow::bail!("unknown option {a}"),
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let [root, output] = positional.as_slice() else {
        anyhow::bail!(
            "usage: initrd [--level N] [--workers N] [--epoch SECS] [--uncompressed] <root> <output>"
        );
    };
    let start = Instant::now();
    let out = std::io::BufWriter::with_capacity(1 << 20, fs_err::File::create(output)?);
    let summary = if uncompressed {
        cpio::write_tree(
            root,
            out,
            &CpioOptions {
                source_date_epoch: opts.cpio.source_date_epoch,
                id_map: None,
            },
        )?
    } else {
        cpio::write_initrd_zstd(root, out, &opts)?
    };
    let secs = start.elapsed().as_secs_f64();
    let written = fs_err::metadata(output)?.len();
    eprintln!(
        "{} entries, {} archive bytes -> {} bytes in {:.2} s ({:.1} MB/s of archive)",
        summary.entries,
        summary.archive_bytes,
        written,
        secs,
        summary.archive_bytes as f64 / secs / 1e6
    );
    Ok(())
}

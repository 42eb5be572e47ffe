//! Assembles a UKI with `hermetic::image::uki::UkiBuilder` from files, with ukify's option
//! names. Used by `scripts/bench-uki.sh` to time our assembly against `ukify build`.
//!
//! cargo run --release --example uki -- --stub=S --linux=K --initrd=I [--initrd=...]
//!     [--cmdline=@F] [--os-release=@F] [--uname=U] --output=OUT

use std::io::Write as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut stub = None;
    let mut output = None;
    let mut b = hermetic::image::uki::UkiBuilder::default();
    let file = |v: &str| fs_err::read(v.strip_prefix('@').unwrap_or(v));
    for arg in std::env::args().skip(1) {
        let (k, v) = arg
            .split_once('=')
            .ok_or(format!("expected --key=value: {arg}"))?;
        match k {
            "--stub" => stub = Some(v.to_string()),
            "--linux" => b.linux = Some(file(v)?),
            "--initrd" => b.initrds.push(file(v)?),
            "--cmdline" => b.cmdline = Some(file(v)?),
            "--os-release" => b.os_release = Some(file(v)?),
            "--uname" => b.uname = Some(v.to_string()),
            "--output" => output = Some(v.to_string()),
            _ => return Err(format!("unknown option {k}").into()),
        }
    }
    let stub = stub.ok_or("--stub= is required")?;
    let output = output.ok_or("--output= is required")?;
    let mut full = hermetic::image::uki::UkiBuilder::new(fs_err::read(&stub)?, stub);
    full.linux = b.linux;
    full.initrds = b.initrds;
    full.cmdline = b.cmdline;
    full.os_release = b.os_release;
    full.uname = b.uname;
    let layout = full.layout()?;
    let mut out = std::io::BufWriter::new(fs_err::File::create(&output)?);
    layout.write_to(&mut out)?;
    out.flush()?;
    Ok(())
}

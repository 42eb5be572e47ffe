//! The `hermetic` command line: parses arguments and hands each command to its module.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use hermetic::error::ErrorReport;

fn main() -> ExitCode {
    sandbox::default_sigpipe();
    let cli = match hermetic::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    let json = cli.json;
    match hermetic::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let report = ErrorReport::new(&err);
            eprint!("{}", report.render());
            if json {
                println!("{}", report.to_json());
            }
            ExitCode::from(report.exit_code)
        }
    }
}

/// A command line clap could not parse: clap's message on standard error (help and version
/// on standard output, as asked) and, with `--json` anywhere on it, the error document on
/// standard output.
fn usage_error(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        _ => {
            let mut args = std::env::args_os().skip(1).take_while(|a| a != "--");
            if args.any(|a| a == "--json") {
                println!("{}", ErrorReport::usage(err).to_json());
            }
            ExitCode::from(err.exit_code().clamp(0, 255) as u8)
        }
    }
}

//! The `hermetic` command line: parses arguments and hands each command to its module.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    sandbox::default_sigpipe();
    let cli = hermetic::cli::Cli::parse();
    match hermetic::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            hermetic::error::print_error_chain(&err);
            hermetic::exit::classify(&err).into()
        }
    }
}

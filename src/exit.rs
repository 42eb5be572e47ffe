//! The exit codes of `hermetic`: one per kind of outcome a script may want to tell apart.
//!
//! | code | kind | meaning |
//! |---|---|---|
//! | 0 | `success` | success |
//! | 1 | `failure` | any other failure (a step failed, an I/O error, a bad recipe, …) |
//! | 2 | `usage` | the command line is wrong (unknown option, missing argument) |
//! | 3 | `lock-stale` | `pins.lock` is missing or does not match the recipes |
//! | 4 | `not-reproducible` | built fine, but not bit-identical (`build --rebuild` differs) |
//! | 5 | `network` | the network failed: a pin or an index could not be downloaded |
//! | 6 | `store` | the store lacks pinned files (`fetch --offline`, `build --offline`), or holds damaged ones (`cache verify`) |
//! | 7 | `sandbox` | this machine cannot run the sandbox (`doctor` failed, or setting it up failed) |
//! | 8 | `bad-signature` | `verify`: a published signature does not verify against `--pubkey` |
//! | 124 | `timeout` | `boot` timed out (the code of timeout(1)) |
//!
//! Codes 0–2 follow the usual convention; the others are hermetic's own and stay stable. The
//! kind is the name a `--json` error document gives the outcome ([`Exit::name`]).

use std::process::ExitCode;

/// An outcome with an exit code of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    LockStale = 3,
    NotReproducible = 4,
    Network = 5,
    Store = 6,
    Sandbox = 7,
    BadSignature = 8,
    Timeout = 124,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The name of the outcome, as `--json` error documents give it (`kind`).
    pub fn name(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Failure => "failure",
            Exit::Usage => "usage",
            Exit::LockStale => "lock-stale",
            Exit::NotReproducible => "not-reproducible",
            Exit::Network => "network",
            Exit::Store => "store",
            Exit::Sandbox => "sandbox",
            Exit::BadSignature => "bad-signature",
            Exit::Timeout => "timeout",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// The exit code an error ends the program with: the most specific kind found in its chain
/// of causes, else [`Exit::Failure`].
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        // A transparent wrapper's own error is not in the chain of its own.
        let cause = match cause.downcast_ref::<crate::build::pipeline::PipelineError>() {
            Some(p) => p.inner(),
            None => cause,
        };
        if let Some(e) = cause.downcast_ref::<crate::fetch::FetchError>() {
            match e {
                crate::fetch::FetchError::Missing { .. } => return Exit::Network,
                crate::fetch::FetchError::Offline { .. } => return Exit::Store,
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<crate::build::BuildError>() {
            match e {
                crate::build::BuildError::MissingPins { .. } => return Exit::Store,
                crate::build::BuildError::NoLock { .. }
                | crate::build::BuildError::NothingLocked { .. }
                | crate::build::BuildError::StaleLock { .. } => return Exit::LockStale,
                _ => {}
            }
        }
        let crates = cause
            .downcast_ref::<crate::sources::cargo::CrateError>()
            .or_else(|| match cause.downcast_ref::<crate::build::BuildError>() {
                Some(crate::build::BuildError::Crate(c)) => Some(c.as_ref()),
                _ => None,
            });
        match crates {
            Some(
                crate::sources::cargo::CrateError::CratesMissing { .. }
                | crate::sources::cargo::CrateError::SourceMissing { .. },
            ) => return Exit::Store,
            Some(crate::sources::cargo::CrateError::Download { .. }) => return Exit::Network,
            _ => {}
        }
        if cause.downcast_ref::<crate::http::HttpError>().is_some() {
            return Exit::Network;
        }
        if cause.downcast_ref::<sandbox::SetupFailure>().is_some()
            || cause
                .downcast_ref::<sandbox::doctor::PreflightError>()
                .is_some()
        {
            return Exit::Sandbox;
        }
    }
    Exit::Failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let all = [
            Exit::Success,
            Exit::Failure,
            Exit::Usage,
            Exit::LockStale,
            Exit::NotReproducible,
            Exit::Network,
            Exit::Store,
            Exit::Sandbox,
            Exit::BadSignature,
            Exit::Timeout,
        ];
        let codes: std::collections::BTreeSet<u8> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len());
        let names: std::collections::BTreeSet<&str> = all.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn a_network_error_deep_in_the_chain_is_found() {
        let http = crate::http::HttpError::Status {
            url: "http://127.0.0.1:1/x".into(),
            status: 503,
        };
        let err = anyhow::Error::new(http).context("fetching pins");
        assert_eq!(classify(&err), Exit::Network);
        assert_eq!(classify(&anyhow::anyhow!("plain")), Exit::Failure);
    }
}

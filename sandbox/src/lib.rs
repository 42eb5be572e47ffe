//! Runs one build step of hermetic in an unprivileged Linux sandbox.
//!
//! All `unsafe` code of the project lives in this crate.

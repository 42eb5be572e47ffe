//! hermetic builds bit-for-bit reproducible Linux VM images from pinned Debian packages.
//!
//! A map of the crate:
//! - [`recipe`]: `hermetic.toml` and `recipes/*.toml`, the images a project declares.
//! - [`cli`]: one thin module per command, each calling into the library modules below.
//! - [`error`]: how errors are printed (`error:`, `Caused by:`, `hint:`).
//!
//! The sandbox that runs every build step is the separate `sandbox` crate.

pub mod cli;
pub mod error;
pub mod recipe;

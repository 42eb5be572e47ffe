//! hermetic builds bit-for-bit reproducible Linux VM images from pinned Debian packages.
//!
//! A map of the crate:
//! - [`recipe`]: `hermetic.toml` and `recipes/*.toml`, the images a project declares.
//! - [`debian`]: Debian metadata: versions, deb822, relations, the dependency resolver.
//! - [`archive`]: the Debian archive client (InRelease, signatures, indexes).
//! - [`http`], [`mirrors`], [`candidates`]: the pooled HTTP client, where files can come from,
//!   and the URLs each pin is tried from.
//! - [`lockfile`], [`lock`]: the `pins.lock` format and how recipes are resolved into it.
//! - [`store`], [`fetch`]: the content-addressed store and filling it from the pins; [`gc`]:
//!   what of the store a project no longer needs.
//! - [`hash`]: SHA-256 digests as text, of bytes, streams and files.
//! - [`sources`]: upstream sources pinned by content (files, git trees, foreign `.deb`s).
//! - [`deb`]: reading and safely extracting `.deb` files.
//! - [`key`]: canonical encoding of step inputs, the key each step is stored under.
//! - [`build`]: recipes to a graph of keyed steps, run in the sandbox, stored.
//! - [`cache`]: shared caches of pins and signed step outputs on OCI registries.
//! - [`beneath`]: reading what a step made without following its symbolic links.
//! - [`treewalk`], [`treetar`], [`tarheader`]: walking a tree in a fixed order, deterministic
//!   tar archives of trees, and the tar header fields every tar writer shares.
//! - [`image`]: byte-deterministic output formats (cpio, UKI, FAT, GPT, VHD, GCP, qcow2).
//! - [`pe`], [`measure`]: reading PE files and predicting measured-boot values.
//! - [`sign`], [`verify`], [`release`]: minisign signatures, comparing a release with a
//!   rebuild, and the provenance, SBOM and manifest written next to the outputs.
//! - [`boot`]: booting images under QEMU, OVMF and swtpm.
//! - [`shell`]: a shell in the sandbox on an image's built tree.
//! - [`kernel`]: the kernel from Debian's source: config merge, drop report, patches.
//! - [`report`]: what commands say while they work (`-q`, `-v`, bars, plain lines).
//! - [`cli`]: one thin module per command, each calling into the library modules above.
//! - [`error`]: how errors are printed (`error:`, `Caused by:`, `hint:`).
//!
//! The sandbox that runs every build step is the separate `sandbox` crate.

#![forbid(unsafe_code)]

pub mod archive;
pub mod beneath;
pub mod boot;
pub mod build;
pub mod cache;
pub mod candidates;
pub mod cli;
pub mod deb;
pub mod debian;
pub mod diff;
pub mod error;
pub mod exit;
pub mod fetch;
pub mod gc;
pub mod hash;
pub mod http;
pub mod image;
pub mod kernel;
pub mod key;
pub mod lock;
pub mod lockfile;
pub mod measure;
pub mod mirrors;
pub mod pe;
pub mod recipe;
pub mod release;
pub mod report;
pub mod shell;
pub mod sign;
pub mod sources;
pub mod store;
pub mod suggest;
pub mod tarheader;
pub mod treetar;
pub mod treewalk;
pub mod verify;
pub mod why;

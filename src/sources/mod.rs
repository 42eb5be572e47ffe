//! Upstream sources pinned by content: plain files, git trees, foreign `.deb`s, and the
//! crates and Go modules of the programs built from them.
//!
//! - [`treehash`]: the content hash of an unpacked tree (`hermetic-tree-v1`), the same for a
//!   directory, a tar stream (any compression) and a zip of the same files.
//! - [`pin`]: a source pin (`file`, `git`, `deb`, `path`, `go-modules`) as recipes and
//!   `pins.lock` write it.
//! - [`path`]: `path` sources, directories of the project pinned by the tree hash of what
//!   git tracks there.
//! - [`cargo`]: crates of a `Cargo.lock`, fetched by checksum into the store and vendored.
//! - [`gomod`]: Go modules of a `go.sum`, fetched through a GOPROXY by their `h1:` hashes,
//!   laid out as a read-only module cache, and the sandboxed `go build` that uses it.
//! - [`fetch`]: filling the store with source pins from `--source-dir`s and URLs, checked.
//! - [`lockpins`]: `[[upstream]]` in `pins.lock`: locking and checking source pins.

pub mod cargo;
pub mod fetch;
pub mod gomod;
pub mod lockpins;
pub mod path;
pub mod pin;
pub mod treehash;

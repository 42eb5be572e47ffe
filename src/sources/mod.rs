//! Upstream sources pinned by content: plain files, git trees and foreign `.deb`s.
//!
//! - [`treehash`]: the content hash of an unpacked tree (`hermetic-tree-v1`), the same for a
//!   directory, a tar stream (any compression) and a zip of the same files.

pub mod treehash;

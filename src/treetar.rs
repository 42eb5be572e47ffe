//! A deterministic tar writer for trees.

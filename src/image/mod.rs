//! Byte-deterministic writers of the output formats. Each is checked against the real tool
//! that reads it.

pub mod cpio;
pub mod disk;
pub mod fat;
pub mod gcp;
pub mod gpt;
pub mod qcow2;
pub mod sink;
pub mod uki;
pub mod vhd;

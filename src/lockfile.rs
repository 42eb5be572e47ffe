//! The pins.lock file format.

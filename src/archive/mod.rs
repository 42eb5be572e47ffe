//! The Debian archive client: InRelease, its OpenPGP signature, and the package and source indexes.

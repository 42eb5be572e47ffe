//! Writer: gcp

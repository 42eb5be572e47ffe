//! Writer: fat

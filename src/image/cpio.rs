//! Writer: cpio

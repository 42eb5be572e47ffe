//! Writer: vhd

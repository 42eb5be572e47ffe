//! Writer: qcow2

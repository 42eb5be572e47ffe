//! The one pooled HTTP client of the process.

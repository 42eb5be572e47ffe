//! Canonical encoding of step inputs and the step key.

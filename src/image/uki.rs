//! Unified Kernel Image assembly, laid out as ukify lays it out.

//! Resolving recipes into pins.lock.

//! Downloading every pin into the store.

//! Kconfig fragments and `.config` files: parse or fail cleanly; merging what parses and
//! printing the result gives a file that parses again with the same values.
#![no_main]

use std::path::Path;

use hermetic::kernel::config::{Fragment, merge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(frag) = Fragment::parse(Path::new("fuzz.config"), text) else {
        return;
    };
    let empty = Fragment::parse(Path::new("base.config"), "").expect("empty fragment");
    let merged = merge(&empty, std::slice::from_ref(&frag));
    let printed = merged.to_config();
    let again = Fragment::parse(Path::new("printed.config"), &printed)
        .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?} does not parse: {e}"));
    assert_eq!(frag.values(), again.values());
});

//! deb822 paragraphs (Packages, Sources, control files): any text parses or fails cleanly,
//! and every paragraph it yields answers its own fields.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(paragraphs) = hermetic::debian::deb822::parse(text) {
        for p in &paragraphs {
            assert!(!p.is_empty());
            for (name, _value) in p.fields() {
                assert!(p.get(name).is_some(), "{name}");
            }
        }
    }
});

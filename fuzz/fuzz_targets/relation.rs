//! Dependency fields (`Depends`, `Build-Depends` with architecture and profile qualifiers):
//! parse or fail cleanly; what parses prints and parses again to the same relations.
#![no_main]

use hermetic::debian::relation::{display_alternatives, parse_relations};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|field: &str| {
    if let Ok(rels) = parse_relations(field) {
        let printed: Vec<String> = rels.iter().map(|a| display_alternatives(a)).collect();
        let again = parse_relations(&printed.join(", "))
            .unwrap_or_else(|e| panic!("{field:?} printed as {printed:?} does not parse: {e}"));
        let reprinted: Vec<String> = again.iter().map(|a| display_alternatives(a)).collect();
        assert_eq!(printed, reprinted);
    }
});

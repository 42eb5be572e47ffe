//! `InRelease`: the cleartext-signature armour (checked against the pinned keyring, which no
//! fuzzed input can satisfy, so this exercises the parser's refusals) and the `Release`
//! paragraph parser on the raw text.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use hermetic::archive::signature::Keyring;
use libfuzzer_sys::fuzz_target;

fn keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys/debian-archive-keyring.pgp");
        let bytes = std::fs::read(&path).expect("the pinned keyring");
        Keyring::from_bytes(&path, &bytes).expect("the pinned keyring parses")
    })
}

fuzz_target!(|text: &str| {
    let _ = hermetic::archive::release::Release::parse(text);
    if text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
        let _ = keyring().verify_inrelease("fuzz", "http://127.0.0.1/fuzz", text);
    }
});

//! Room token verification: any string is claims or a typed error, never a panic, and a
//! token is accepted only if it is exactly what the key would have signed (HS256 over the
//! same header and claims).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_auth::TokenKeys;

const SECRET: &[u8] = b"fuzzing-secret-0123456789abcdef-0123456789";

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static KEYS: TokenKeys = TokenKeys::new(SECRET);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    KEYS.with(|keys| {
        // A random string never verifies: forging needs the secret.
        if let Ok(claims) = keys.verify(text) {
            panic!("forged token accepted: {claims:?}");
        }
        // A real token with fuzzed claims still round-trips.
        let issued = keys.issue(text, text, Some(text), 1_000_000_000, 4_000_000_000);
        let back = keys.verify(&issued.token).expect("own token verifies");
        assert_eq!(back, issued.claims);
    });
});

//! The `/ws` frame decoder: any text is a typed request or a typed error, never a panic.
//! Bytes that are not UTF-8 are answered before decoding (binary/invalid frames), so the
//! target feeds only valid UTF-8, as tungstenite's text frames are.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_signaling::protocol::{decode, ClientMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode(text) {
        Ok(req) => {
            // What the server does next with a decoded request must hold too.
            if let ClientMessage::Relay { payload, .. } = &req.message {
                assert!(
                    serde_json::from_str::<&serde_json::value::RawValue>(payload.get()).is_ok()
                );
            }
            let _ = format!("{req:?}");
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            let _ = e.code.as_str();
        }
    }
});

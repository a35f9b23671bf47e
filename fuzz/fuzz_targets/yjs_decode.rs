//! The `/yjs` frame decoder: any text is a typed y-webrtc message or "not an object", never
//! a panic, and a publish keeps every field's value as valid JSON for the fan-out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_signaling::ws::yjs::{decode, YjsMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(YjsMessage::Publish { fields, .. }) = decode(text) {
        // What the fan-out serializes must stay a JSON object.
        let out = serde_json::to_string(&fields).expect("fields serialize");
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok_and(|v| v.is_object()));
    }
});

//! Client frames into typed requests.
//!
//! Decoding is two-step: a borrowed envelope (`type`, `requestId`, `userId`, `roomId`,
//! `data` as raw JSON), then `data` is read according to `type`. Relay payloads (`offer`,
//! `answer`, `candidate`) and broadcast data stay [`RawValue`]s borrowed from the frame: they
//! are validated as JSON once, by the envelope parse, and copied out verbatim.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BroadcastKind, Presence, RelayKind};
use crate::error::ErrorCode;

/// A decoded client frame.
#[derive(Debug)]
pub struct Request<'a> {
    /// Echoed back on errors and acknowledgements.
    pub request_id: Option<Cow<'a, str>>,
    /// What the client asks for.
    pub message: ClientMessage<'a>,
}

/// Longest room TTL accepted (one year): bounds `now + ttl`, which would overflow (and
/// panic) for a client-chosen `u64::MAX`.
pub const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

/// Reads an optional whole number that JSON may spell `3` or `3.0` (JSON Schema calls both
/// integers, so API clients generated from `docs/openapi.json` may send either).
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected a non-negative whole number")),
    }
}

/// Options of `create-room` (also used by `POST /api/rooms`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOptions {
    /// Display name of the room.
    #[serde(default)]
    pub room_name: Option<String>,
    /// Member limit (1..=MAX_PEERS_PER_ROOM).
    #[serde(default, deserialize_with = "whole_number")]
    pub max_peers: Option<u64>,
    /// Absolute lifetime from the first join (1..=[`MAX_TTL_SECONDS`]).
    #[serde(default, deserialize_with = "whole_number")]
    pub ttl_seconds: Option<u64>,
    /// Close the room when its host leaves.
    #[serde(default)]
    pub destroy_on_host_leave: Option<bool>,
}

/// What a client can ask for.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    /// `auth` with a room token.
    Auth {
        /// The JWT.
        token: Cow<'a, str>,
        /// Must equal the token's `sub` when given.
        user_id: Option<Cow<'a, str>>,
        /// Must equal the token's `room` when given.
        room_id: Option<Cow<'a, str>>,
    },
    /// `join-room`.
    JoinRoom {
        /// Display name overriding the token's `name`.
        user_name: Option<String>,
    },
    /// `create-room`.
    CreateRoom(CreateOptions),
    /// `leave-room`.
    LeaveRoom,
    /// `close-room` (host only).
    CloseRoom,
    /// `sdp-offer`, `sdp-answer`, `ice-candidate`.
    Relay {
        /// Which one.
        kind: RelayKind,
        /// Target userId.
        target: Cow<'a, str>,
        /// The payload, verbatim.
        payload: &'a RawValue,
    },
    /// `presence`, `cursor-update`, `message`.
    Broadcast {
        /// Which one.
        kind: BroadcastKind,
        /// The new status, for presence.
        presence: Option<Presence>,
        /// The sender's `data`, verbatim.
        data: &'a RawValue,
    },
    /// `pong` or `heartbeat` from the client.
    Pong,
}

/// Why a frame could not be decoded, with the `requestId` if it could be read.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Wire error code.
    pub code: ErrorCode,
    /// Human text.
    pub message: Cow<'static, str>,
    /// The request's id, when the envelope was readable.
    pub request_id: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "requestId", default, borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(rename = "userId", default, borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(rename = "roomId", default, borrow)]
    room_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AuthData<'a> {
    #[serde(borrow)]
    token: Cow<'a, str>,
}

#[derive(Deserialize)]
struct JoinData {
    #[serde(rename = "userName", default)]
    user_name: Option<String>,
}

#[derive(Deserialize)]
struct RelayData<'a> {
    #[serde(borrow)]
    peer: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "present")]
    offer: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    answer: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    candidate: Option<&'a RawValue>,
}

/// A field that is present, whatever its value — `null` included (a browser's
/// end-of-candidates is `candidate: null`); only an absent field is `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct PresenceData<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ChatData<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
}

/// A relay frame read in one pass: `data` straight into [`RelayData`].
#[derive(Deserialize)]
struct RelayEnvelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "requestId", default, borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: RelayData<'a>,
}

/// The fast path for offers, answers and candidates, which are most of the traffic. The
/// general path reads `data` as raw JSON and then parses it again, scanning a large SDP
/// twice; clients put `type` first, so when the first bytes name a relay type the frame is
/// read straight into its final shape. Anything unusual returns `None` and takes the
/// general path, which gives the precise error.
fn decode_relay(text: &str) -> Option<Request<'_>> {
    let head = &text.as_bytes()[..text.len().min(40)];
    let names_relay = [
        &b"\"sdp-offer\""[..],
        b"\"sdp-answer\"",
        b"\"ice-candidate\"",
    ]
    .iter()
    .any(|pat| head.windows(pat.len()).any(|w| w == *pat));
    if !names_relay {
        return None;
    }
    let env: RelayEnvelope<'_> = serde_json::from_str(text).ok()?;
    let (kind, payload) = match &*env.kind {
        "sdp-offer" => (RelayKind::Offer, env.data.offer),
        "sdp-answer" => (RelayKind::Answer, env.data.answer),
        "ice-candidate" => (RelayKind::Candidate, env.data.candidate),
        _ => return None,
    };
    Some(Request {
        request_id: env.request_id,
        message: ClientMessage::Relay {
            kind,
            target: env.data.peer,
            payload: payload?,
        },
    })
}

/// Longest chat text, in characters.
pub const MAX_CHAT_CHARS: usize = 10_000;

/// The `requestId` of a frame, read without decoding the rest (for refusals that happen
/// before decoding, such as rate limiting).
pub fn request_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(rename = "requestId", borrow, default)]
        request_id: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<Id<'_>>(text)
        .ok()?
        .request_id
        .map(Cow::into_owned)
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<Request<'_>, DecodeError> {
    if let Some(req) = decode_relay(text) {
        return Ok(req);
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|_| DecodeError {
        code: ErrorCode::InvalidMessage,
        message: "expected a JSON object with a string \"type\"".into(),
        request_id: None,
    })?;
    let fail = |code: ErrorCode, message: &'static str| DecodeError {
        code,
        message: message.into(),
        request_id: env.request_id.as_deref().map(str::to_owned),
    };
    let data = env.data.map(RawValue::get);
    let parse = |what: &'static str| -> Result<&str, DecodeError> {
        data.ok_or_else(|| fail(ErrorCode::InvalidMessage, what))
    };
    let message = match &*env.kind {
        "auth" => {
            let d: AuthData<'_> =
                serde_json::from_str(parse("auth needs data.token")?).map_err(|_| {
                    fail(
                        ErrorCode::InvalidMessage,
                        "auth needs data.token as a string",
                    )
                })?;
            ClientMessage::Auth {
                token: d.token,
                user_id: env.user_id,
                room_id: env.room_id,
            }
        }
        "join-room" => {
            let user_name = match data {
                None => None,
                Some(raw) => {
                    serde_json::from_str::<JoinData>(raw)
                        .map_err(|_| {
                            fail(ErrorCode::InvalidMessage, "data.userName must be a string")
                        })?
                        .user_name
                }
            };
            ClientMessage::JoinRoom { user_name }
        }
        "create-room" => {
            let opts = match data {
                None => CreateOptions::default(),
                Some(raw) => serde_json::from_str(raw).map_err(|_| {
                    fail(
                        ErrorCode::InvalidMessage,
                        "create-room data has ill-typed fields",
                    )
                })?,
            };
            ClientMessage::CreateRoom(opts)
        }
        "leave-room" => ClientMessage::LeaveRoom,
        "close-room" => ClientMessage::CloseRoom,
        kind @ ("sdp-offer" | "sdp-answer" | "ice-candidate") => {
            let d: RelayData<'_> =
                serde_json::from_str(parse("relay needs data.peer")?).map_err(|_| {
                    fail(
                        ErrorCode::InvalidMessage,
                        "relay needs data.peer as a string",
                    )
                })?;
            let (kind, payload, missing) = match kind {
                "sdp-offer" => (RelayKind::Offer, d.offer, "sdp-offer needs data.offer"),
                "sdp-answer" => (RelayKind::Answer, d.answer, "sdp-answer needs data.answer"),
                _ => (
                    RelayKind::Candidate,
                    d.candidate,
                    "ice-candidate needs data.candidate",
                ),
            };
            let payload = payload.ok_or_else(|| fail(ErrorCode::InvalidMessage, missing))?;
            ClientMessage::Relay {
                kind,
                target: d.peer,
                payload,
            }
        }
        "presence" => {
            let raw = env
                .data
                .ok_or_else(|| fail(ErrorCode::InvalidMessage, "presence needs data.status"))?;
            let d: PresenceData = serde_json::from_str(raw.get()).map_err(|_| {
                fail(
                    ErrorCode::InvalidMessage,
                    "presence needs data.status as a string",
                )
            })?;
            let status = match &*d.status {
                "active" => Presence::Active,
                "idle" => Presence::Idle,
                _ => {
                    return Err(fail(
                        ErrorCode::InvalidInput,
                        "data.status must be \"active\" or \"idle\"",
                    ))
                }
            };
            ClientMessage::Broadcast {
                kind: BroadcastKind::Presence,
                presence: Some(status),
                data: raw,
            }
        }
        "cursor-update" => {
            let raw = env
                .data
                .ok_or_else(|| fail(ErrorCode::InvalidMessage, "cursor-update needs data"))?;
            ClientMessage::Broadcast {
                kind: BroadcastKind::Cursor,
                presence: None,
                data: raw,
            }
        }
        "message" => {
            let raw = env
                .data
                .ok_or_else(|| fail(ErrorCode::InvalidMessage, "message needs data.text"))?;
            let d: ChatData<'_> = serde_json::from_str(raw.get()).map_err(|_| {
                fail(
                    ErrorCode::InvalidMessage,
                    "message needs data.text as a string",
                )
            })?;
            if d.text.is_empty() || d.text.chars().count() > MAX_CHAT_CHARS {
                return Err(fail(
                    ErrorCode::InvalidInput,
                    "data.text must be 1 to 10000 characters",
                ));
            }
            ClientMessage::Broadcast {
                kind: BroadcastKind::Chat,
                presence: None,
                data: raw,
            }
        }
        "pong" | "heartbeat" => ClientMessage::Pong,
        _ => return Err(fail(ErrorCode::UnknownType, "unknown message type")),
    };
    Ok(Request {
        request_id: env.request_id,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        decode(text).unwrap_err().code
    }

    #[test]
    fn relay_fast_path_and_general_path_agree() {
        let frames = [
            r#"{"type":"sdp-offer","requestId":"1","data":{"peer":"u2","offer":{"sdp":"v=0"}}}"#,
            r#"{"type":"ice-candidate","data":{"candidate":null,"peer":"u2"},"userId":"spoof"}"#,
            r#"{"data":{"peer":"u2","answer":[1,2]},"type":"sdp-answer"}"#,
        ];
        for text in frames {
            let req = decode(text).unwrap();
            let ClientMessage::Relay {
                target, payload, ..
            } = req.message
            else {
                panic!("{text}")
            };
            assert_eq!(target, "u2");
            assert!(text.contains(payload.get()), "{text}");
        }
        // A relay type with a missing payload still gets the precise error.
        let e = decode(r#"{"type":"sdp-offer","requestId":"q","data":{"peer":"u2"}}"#).unwrap_err();
        assert_eq!(
            (e.code, e.request_id.as_deref()),
            (ErrorCode::InvalidMessage, Some("q"))
        );
        // The hint alone does not make a relay.
        let e = decode(r#"{"type":"message","x":"\"sdp-offer\"","data":{"text":""}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
    }

    #[test]
    fn malformed_frames_get_typed_errors() {
        assert_eq!(code("not json"), ErrorCode::InvalidMessage);
        assert_eq!(code("[]"), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"sdp-offer","data":{"peer":"u2"}}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"presence","data":{"status":"asleep"}}"#),
            ErrorCode::InvalidInput
        );
        assert_eq!(
            code(r#"{"type":"message","data":{"text":""}}"#),
            ErrorCode::InvalidInput
        );
        let e = decode(r#"{"type":"ice-candidate","requestId":"r9","data":{}}"#).unwrap_err();
        assert_eq!(e.request_id.as_deref(), Some("r9"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let req =
            decode(r#"{"type":"join-room","extra":[1],"data":{"userName":"Ada","x":1}}"#).unwrap();
        assert!(
            matches!(req.message, ClientMessage::JoinRoom { user_name: Some(ref n) } if n == "Ada")
        );
    }
}

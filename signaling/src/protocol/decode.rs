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

impl<'a> RelayData<'a> {
    /// The payload under `kind`'s field (`offer`, `answer` or `candidate`), if present.
    fn payload(&self, kind: RelayKind) -> Option<&'a RawValue> {
        match kind {
            RelayKind::Offer => self.offer,
            RelayKind::Answer => self.answer,
            RelayKind::Candidate => self.candidate,
        }
    }
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

/// The relay `type`s in quotes, looked for in a frame's first bytes by [`decode_relay`].
const RELAY_TYPE_HINTS: [&[u8]; 3] = [b"\"sdp-offer\"", b"\"sdp-answer\"", b"\"ice-candidate\""];

/// The fast path for offers, answers and candidates, which are most of the traffic. The
/// general path reads `data` as raw JSON and then parses it again, scanning a large SDP
/// twice; clients put `type` first, so when the first bytes name a relay type the frame is
/// read straight into its final shape. Anything unusual returns `None` and takes the
/// general path, which gives the precise error.
fn decode_relay(text: &str) -> Option<Request<'_>> {
    let head = &text.as_bytes()[..text.len().min(40)];
    let names_relay = RELAY_TYPE_HINTS
        .iter()
        .any(|pat| head.windows(pat.len()).any(|w| w == *pat));
    if !names_relay {
        return None;
    }
    let env: RelayEnvelope<'_> = serde_json::from_str(text).ok()?;
    let kind = match &*env.kind {
        "sdp-offer" => RelayKind::Offer,
        "sdp-answer" => RelayKind::Answer,
        "ice-candidate" => RelayKind::Candidate,
        _ => return None,
    };
    let payload = env.data.payload(kind)?;
    Some(Request {
        request_id: env.request_id,
        message: ClientMessage::Relay {
            kind,
            target: env.data.peer,
            payload,
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
    let mut env: Envelope<'_> = serde_json::from_str(text).map_err(|_| DecodeError {
        code: ErrorCode::InvalidMessage,
        message: "expected a JSON object with a string \"type\"".into(),
        request_id: None,
    })?;
    let message = env.message()?;
    Ok(Request {
        request_id: env.request_id,
        message,
    })
}

/// The general path: `data` is read according to `type`, and every way it can be wrong has
/// its own error.
impl<'a> Envelope<'a> {
    /// What the request's `type` asks for; `auth` takes the envelope's `userId` and `roomId`.
    fn message(&mut self) -> Result<ClientMessage<'a>, DecodeError> {
        Ok(match &*self.kind {
            "auth" => {
                let raw = self.require_data("auth needs data.token")?;
                let d: AuthData<'a> = self.read(raw, "auth needs data.token as a string")?;
                ClientMessage::Auth {
                    token: d.token,
                    user_id: self.user_id.take(),
                    room_id: self.room_id.take(),
                }
            }
            "join-room" => ClientMessage::JoinRoom {
                user_name: self
                    .read_optional::<JoinData>("data.userName must be a string")?
                    .and_then(|d| d.user_name),
            },
            "create-room" => ClientMessage::CreateRoom(
                self.read_optional("create-room data has ill-typed fields")?
                    .unwrap_or_default(),
            ),
            "leave-room" => ClientMessage::LeaveRoom,
            "close-room" => ClientMessage::CloseRoom,
            "sdp-offer" => self.relay(RelayKind::Offer)?,
            "sdp-answer" => self.relay(RelayKind::Answer)?,
            "ice-candidate" => self.relay(RelayKind::Candidate)?,
            "presence" => self.presence()?,
            "cursor-update" => ClientMessage::Broadcast {
                kind: BroadcastKind::Cursor,
                presence: None,
                data: self.require_data("cursor-update needs data")?,
            },
            "message" => self.chat()?,
            "pong" | "heartbeat" => ClientMessage::Pong,
            _ => return Err(self.fail(ErrorCode::UnknownType, "unknown message type")),
        })
    }

    /// A refusal of this request, carrying its `requestId`.
    fn fail(&self, code: ErrorCode, message: impl Into<Cow<'static, str>>) -> DecodeError {
        DecodeError {
            code,
            message: message.into(),
            request_id: self.request_id.as_deref().map(str::to_owned),
        }
    }

    /// `data`, or `INVALID_MESSAGE` with `missing` when the frame has none.
    fn require_data(&self, missing: &'static str) -> Result<&'a RawValue, DecodeError> {
        self.data
            .ok_or_else(|| self.fail(ErrorCode::InvalidMessage, missing))
    }

    /// `raw` read as `T`, or `INVALID_MESSAGE` with `ill_typed`.
    fn read<T: Deserialize<'a>>(
        &self,
        raw: &'a RawValue,
        ill_typed: &'static str,
    ) -> Result<T, DecodeError> {
        serde_json::from_str(raw.get()).map_err(|_| self.fail(ErrorCode::InvalidMessage, ill_typed))
    }

    /// `data` read as `T` when the frame has any.
    fn read_optional<T: Deserialize<'a>>(
        &self,
        ill_typed: &'static str,
    ) -> Result<Option<T>, DecodeError> {
        self.data.map(|raw| self.read(raw, ill_typed)).transpose()
    }

    /// A relay that missed the fast path ([`decode_relay`]): the precise error.
    fn relay(&self, kind: RelayKind) -> Result<ClientMessage<'a>, DecodeError> {
        let raw = self.require_data("relay needs data.peer")?;
        let d: RelayData<'a> = self.read(raw, "relay needs data.peer as a string")?;
        let payload = d.payload(kind).ok_or_else(|| {
            let missing = format!("{} needs data.{}", kind.type_name(), kind.field());
            self.fail(ErrorCode::InvalidMessage, missing)
        })?;
        Ok(ClientMessage::Relay {
            kind,
            target: d.peer,
            payload,
        })
    }

    /// `presence`: `data.status` must be a known [`Presence`].
    fn presence(&self) -> Result<ClientMessage<'a>, DecodeError> {
        let raw = self.require_data("presence needs data.status")?;
        let d: PresenceData<'a> = self.read(raw, "presence needs data.status as a string")?;
        let status: Presence = d.status.parse().map_err(|_| {
            self.fail(
                ErrorCode::InvalidInput,
                "data.status must be \"active\" or \"idle\"",
            )
        })?;
        Ok(ClientMessage::Broadcast {
            kind: BroadcastKind::Presence,
            presence: Some(status),
            data: raw,
        })
    }

    /// `message`: chat text of 1 to [`MAX_CHAT_CHARS`] characters.
    fn chat(&self) -> Result<ClientMessage<'a>, DecodeError> {
        let raw = self.require_data("message needs data.text")?;
        let d: ChatData<'a> = self.read(raw, "message needs data.text as a string")?;
        if d.text.is_empty() || d.text.chars().count() > MAX_CHAT_CHARS {
            return Err(self.fail(
                ErrorCode::InvalidInput,
                "data.text must be 1 to 10000 characters",
            ));
        }
        Ok(ClientMessage::Broadcast {
            kind: BroadcastKind::Chat,
            presence: None,
            data: raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

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
    fn fast_path_hints_are_the_relay_type_names() {
        let names: Vec<String> = RelayKind::VARIANTS
            .iter()
            .map(|k| format!("\"{}\"", k.type_name()))
            .collect();
        let hints: Vec<&[u8]> = RELAY_TYPE_HINTS.to_vec();
        assert_eq!(
            hints,
            names.iter().map(|n| n.as_bytes()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_kind_decodes_from_its_type_name() {
        for kind in RelayKind::VARIANTS {
            let (t, field) = (kind.type_name(), kind.field());
            let fast = format!(r#"{{"type":"{t}","data":{{"peer":"u2","{field}":1}}}}"#);
            // `type` past the first 40 bytes: only the general path reads it.
            let general = format!(
                r#"{{"data":{{"peer":"u2","{field}":1}},"pad":"..........","type":"{t}"}}"#
            );
            assert!(decode_relay(&fast).is_some(), "{fast}");
            assert!(decode_relay(&general).is_none(), "{general}");
            for frame in [fast, general] {
                let message = decode(&frame).unwrap().message;
                assert!(
                    matches!(message, ClientMessage::Relay { kind: k, .. } if k == *kind),
                    "{frame}"
                );
            }
        }
        for kind in BroadcastKind::VARIANTS {
            let frame = format!(
                r#"{{"type":"{}","data":{{"status":"idle","text":"hi"}}}}"#,
                kind.type_name()
            );
            let message = decode(&frame).unwrap().message;
            assert!(
                matches!(message, ClientMessage::Broadcast { kind: k, .. } if k == *kind),
                "{frame}"
            );
        }
    }

    #[test]
    fn relay_without_its_payload_names_the_missing_field() {
        for (kind, message) in [
            (RelayKind::Offer, "sdp-offer needs data.offer"),
            (RelayKind::Answer, "sdp-answer needs data.answer"),
            (RelayKind::Candidate, "ice-candidate needs data.candidate"),
        ] {
            let frame = format!(
                r#"{{"type":"{}","data":{{"peer":"u2"}}}}"#,
                kind.type_name()
            );
            let e = decode(&frame).unwrap_err();
            assert_eq!((e.code, &*e.message), (ErrorCode::InvalidMessage, message));
        }
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

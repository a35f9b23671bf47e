//! The wire protocol of `/ws`: typed client requests decoded from text frames, and the
//! server events encoded back.
//!
//! Decoding is two-step: a borrowed envelope (`type`, `requestId`, `userId`, `roomId`,
//! `data` as raw JSON), then `data` is read according to `type`. Relay payloads (`offer`,
//! `answer`, `candidate`) and broadcast data stay [`RawValue`]s borrowed from the frame: they
//! are validated as JSON once, by the envelope parse, and copied out verbatim.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ErrorCode;

/// A decoded client frame.
#[derive(Debug)]
pub struct Request<'a> {
    /// Echoed back on errors and acknowledgements.
    pub request_id: Option<Cow<'a, str>>,
    /// What the client asks for.
    pub message: ClientMessage<'a>,
}

/// Which of the three WebRTC relay messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    /// `sdp-offer` with `data.offer`.
    Offer,
    /// `sdp-answer` with `data.answer`.
    Answer,
    /// `ice-candidate` with `data.candidate`.
    Candidate,
}

impl RelayKind {
    /// The message type on the wire.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Offer => "sdp-offer",
            Self::Answer => "sdp-answer",
            Self::Candidate => "ice-candidate",
        }
    }

    /// Index of its counter in [`RELAY_TYPES`](crate::stats::RELAY_TYPES): fixed, so the
    /// relay path does not look the name up per message.
    pub fn stat_index(self) -> usize {
        match self {
            Self::Offer => 0,
            Self::Answer => 1,
            Self::Candidate => 2,
        }
    }
}

/// Which of the three room broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastKind {
    /// `presence`: status change, also recorded in the sender's PeerInfo.
    Presence,
    /// `cursor-update`: any JSON.
    Cursor,
    /// `message`: chat text.
    Chat,
}

impl BroadcastKind {
    /// The message type on the wire.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Presence => "presence",
            Self::Cursor => "cursor-update",
            Self::Chat => "message",
        }
    }

    /// Index of its counter in [`RELAY_TYPES`](crate::stats::RELAY_TYPES).
    pub fn stat_index(self) -> usize {
        match self {
            Self::Presence => 3,
            Self::Cursor => 4,
            Self::Chat => 5,
        }
    }
}

/// A peer's presence as set by `presence` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// Working in the document.
    Active,
    /// Away.
    Idle,
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

/// A peer as shown to clients.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// The peer's userId.
    pub user_id: std::sync::Arc<str>,
    /// Display name.
    pub user_name: String,
    /// Whether the peer hosts the room.
    pub is_host: bool,
    /// When it joined (ms since epoch).
    pub connected_at: u64,
    /// Last sign of life (ms since epoch).
    pub last_heartbeat: u64,
    /// `active`, `idle` or `reconnecting`.
    pub status: PeerStatus,
}

/// A member's state in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStatus {
    /// Connected and active.
    Active,
    /// Connected, presence set to idle.
    Idle,
    /// Connection dropped; its place is kept for the reconnect grace.
    Reconnecting,
}

/// Room lifecycle state as shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomState {
    /// At least one connected member.
    Active,
    /// No connected member.
    Idle,
    /// Closed (only ever seen in the final events of a room).
    Closed,
}

/// Room metadata as returned by the HTTP API and `room-joined`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomMeta {
    /// Room id.
    pub room_id: std::sync::Arc<str>,
    /// Display name.
    pub room_name: String,
    /// Current host's userId.
    pub host_id: Option<std::sync::Arc<str>>,
    /// Current host's display name.
    pub host_name: Option<String>,
    /// Creation time (ms).
    pub created_at: u64,
    /// Last join, leave, relay or broadcast (ms).
    pub last_activity: u64,
    /// Lifecycle state.
    pub state: RoomState,
    /// Members, including reconnecting ones.
    pub peer_count: usize,
    /// Member limit.
    pub max_peers: usize,
    /// Whether tokens require a password.
    pub has_password: bool,
    /// Absolute expiry (ms), once the TTL clock runs.
    pub expires_at: Option<u64>,
    /// Milliseconds left until expiry.
    pub time_until_expiration: Option<u64>,
    /// Members, when the endpoint includes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerInfo>>,
}

/// Why a peer left, as told to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaveReason {
    /// It sent `leave-room`.
    Left,
    /// Its connection dropped and the grace ran out.
    Disconnected,
    /// It went silent past `PEER_TIMEOUT_SECONDS`.
    Timeout,
}

/// Why a room closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloseReason {
    /// The host sent `close-room`.
    HostClosed,
    /// The host left a `destroyOnHostLeave` room.
    HostLeft,
    /// `DELETE /api/rooms/{id}`.
    Deleted,
    /// Its TTL ran out.
    Expired,
    /// No activity for `ROOM_IDLE_TIMEOUT_SECONDS`.
    Idle,
    /// Closed by aggressive memory cleanup.
    MemoryPressure,
    /// Closed by an operator.
    Admin,
}

impl CloseReason {
    /// The reason string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HostClosed => "host-closed",
            Self::HostLeft => "host-left",
            Self::Deleted => "deleted",
            Self::Expired => "expired",
            Self::Idle => "idle",
            Self::MemoryPressure => "memory-pressure",
            Self::Admin => "admin",
        }
    }
}

/// `data` of `auth-ok`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthOk<'a> {
    /// The authenticated user.
    pub user_id: &'a str,
    /// The room the connection is bound to.
    pub room_id: &'a str,
    /// This connection's id.
    pub session_id: &'a str,
    /// How often the server sends heartbeats.
    pub heartbeat_interval_ms: u64,
    /// STUN/TURN servers, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ice_servers: Option<Vec<switchboard_auth::IceServer>>,
}

/// `data` of `error`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// Wire code.
    pub code: &'static str,
    /// Human text.
    pub message: &'a str,
}

/// `data` of `room-joined`.
#[derive(Debug, Serialize)]
pub struct RoomJoined<'a> {
    /// The room.
    pub room: &'a RoomMeta,
    /// The joiner.
    #[serde(rename = "self")]
    pub self_: &'a PeerInfo,
    /// The other members.
    pub peers: &'a [PeerInfo],
}

/// `data` carrying one peer.
#[derive(Debug, Serialize)]
pub struct PeerData<'a> {
    /// The peer.
    pub peer: &'a PeerInfo,
    /// Why it left, for `peer-left`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<LeaveReason>,
}

/// `data` naming a room.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomRef<'a> {
    /// The room.
    pub room_id: &'a str,
}

/// `data` carrying a reason string.
#[derive(Debug, Serialize)]
pub struct Reason<'a> {
    /// Machine-readable reason.
    pub reason: &'a str,
}

/// `data` of `host-changed`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostChanged<'a> {
    /// The new host.
    pub host_id: &'a str,
}

/// `data` of a relayed offer/answer/candidate: the sender as `peer`, the payload verbatim
/// under the kind's field name.
#[derive(Debug)]
pub struct RelayOut<'a> {
    /// Which field name the payload goes under.
    pub kind: RelayKind,
    /// The sender.
    pub peer: &'a str,
    /// The payload.
    pub payload: &'a RawValue,
}

impl Serialize for RelayOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let field = match self.kind {
            RelayKind::Offer => "offer",
            RelayKind::Answer => "answer",
            RelayKind::Candidate => "candidate",
        };
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("peer", self.peer)?;
        m.serialize_entry(field, self.payload)?;
        m.end()
    }
}

/// `data` of `heartbeat`.
#[derive(Debug, Serialize)]
pub struct Heartbeat {
    /// Server time (ms).
    pub ts: u64,
}

/// `data` of `server-shutdown`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shutdown {
    /// When clients should try to reconnect.
    pub reconnect_after_ms: u64,
}

/// `data` of `room-expiring`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiring {
    /// Absolute expiry (ms).
    pub expires_at: u64,
    /// Milliseconds left.
    pub time_until_expiration: u64,
}

/// Everything the server sends.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage<'a> {
    /// Authentication succeeded.
    AuthOk {
        /// Details.
        data: AuthOk<'a>,
    },
    /// A request was refused.
    Error {
        /// Echo of the request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
        /// Code and text.
        data: ErrorBody<'a>,
    },
    /// The connection joined its room.
    RoomJoined {
        /// Room, self and others.
        data: RoomJoined<'a>,
    },
    /// Another peer joined.
    PeerJoined {
        /// Sender.
        from: &'a str,
        /// Sender.
        user_id: &'a str,
        /// Room.
        room_id: &'a str,
        /// The peer.
        data: PeerData<'a>,
    },
    /// Another peer left.
    PeerLeft {
        /// Sender.
        from: &'a str,
        /// Sender.
        user_id: &'a str,
        /// Room.
        room_id: &'a str,
        /// The peer and the reason.
        data: PeerData<'a>,
    },
    /// Another peer came back on a new connection.
    PeerReconnected {
        /// Sender.
        from: &'a str,
        /// Sender.
        user_id: &'a str,
        /// Room.
        room_id: &'a str,
    },
    /// The connection left its room.
    RoomLeft {
        /// The room.
        data: RoomRef<'a>,
    },
    /// The room closed; the connection is closed next.
    RoomClosed {
        /// The room.
        room_id: &'a str,
        /// Why.
        data: Reason<'a>,
    },
    /// The room has a new host.
    HostChanged {
        /// The room.
        room_id: &'a str,
        /// Who.
        data: HostChanged<'a>,
    },
    /// Another connection of the same user took this one's place.
    Replaced,
    /// A relayed offer.
    SdpOffer {
        /// Sender.
        from: &'a str,
        /// Sender.
        user_id: &'a str,
        /// Room.
        room_id: &'a str,
        /// Sender and payload.
        data: RelayOut<'a>,
    },
    /// A relayed answer.
    SdpAnswer {
        /// Sender.
        from: &'a str,
        /// Sender.
        user_id: &'a str,
        /// Room.
        room_id: &'a str,
        /// Sender and payload.
        data: RelayOut<'a>,
    },
    /// A relayed candidate.
    IceCandidate {
        /// Sender.
        from: &'a str,
        /// Sender.
        user_id: &'a str,
        /// Room.
        room_id: &'a str,
        /// Sender and payload.
        data: RelayOut<'a>,
    },
    /// A presence broadcast.
    Presence {
        /// Sender.
        from: &'a str,
        /// Sender.
        user_id: &'a str,
        /// Room.
        room_id: &'a str,
        /// The sender's data.
        data: &'a RawValue,
    },
    /// A cursor broadcast.
    CursorUpdate {
        /// Sender.
        from: &'a str,
        /// Sender.
        user_id: &'a str,
        /// Room.
        room_id: &'a str,
        /// The sender's data.
        data: &'a RawValue,
    },
    /// A chat broadcast.
    Message {
        /// Sender.
        from: &'a str,
        /// Sender.
        user_id: &'a str,
        /// Room.
        room_id: &'a str,
        /// The sender's data.
        data: &'a RawValue,
    },
    /// Liveness probe; answer with `pong`.
    Heartbeat {
        /// Server time.
        data: Heartbeat,
    },
    /// The peer was silent too long and is disconnected.
    ForceLeave {
        /// Why.
        data: Reason<'a>,
    },
    /// The server is draining.
    ServerShutdown {
        /// Reconnect hint.
        data: Shutdown,
    },
    /// The room's TTL is about to run out.
    RoomExpiring {
        /// The room.
        room_id: &'a str,
        /// When.
        data: Expiring,
    },
}

impl ServerMessage<'_> {
    /// Serializes the message to its JSON text.
    pub fn encode(&self) -> String {
        // Serializing these plain structs into a String cannot fail.
        serde_json::to_string(self).expect("server messages serialize")
    }

    /// Like [`encode`](Self::encode), into a buffer sized for `payload_len` bytes of
    /// payload plus the envelope, so relaying a large SDP does not regrow it.
    pub fn encode_sized(&self, payload_len: usize) -> String {
        let mut out = Vec::with_capacity(payload_len + 192);
        serde_json::to_writer(&mut out, self).expect("server messages serialize");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

/// Encodes an `error` event.
pub fn error_frame(code: ErrorCode, message: &str, request_id: Option<&str>) -> String {
    ServerMessage::Error {
        request_id,
        data: ErrorBody {
            code: code.as_str(),
            message,
        },
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        decode(text).unwrap_err().code
    }

    #[test]
    fn relay_payload_stays_verbatim() {
        let text = r#"{"type":"sdp-offer","requestId":"7","data":{"peer":"u2","offer": {"sdp" : "v=0\r\n", "n":1.50}}}"#;
        let req = decode(text).unwrap();
        assert_eq!(req.request_id.as_deref(), Some("7"));
        let ClientMessage::Relay {
            kind,
            target,
            payload,
        } = req.message
        else {
            panic!()
        };
        assert_eq!(kind, RelayKind::Offer);
        assert_eq!(target, "u2");
        assert_eq!(payload.get(), r#"{"sdp" : "v=0\r\n", "n":1.50}"#);
        let out = ServerMessage::SdpOffer {
            from: "u1",
            user_id: "u1",
            room_id: "r1",
            data: RelayOut {
                kind,
                peer: "u1",
                payload,
            },
        }
        .encode();
        assert_eq!(
            out,
            r#"{"type":"sdp-offer","from":"u1","userId":"u1","roomId":"r1","data":{"peer":"u1","offer":{"sdp" : "v=0\r\n", "n":1.50}}}"#
        );
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

    #[test]
    fn unit_and_error_events_encode() {
        assert_eq!(ServerMessage::Replaced.encode(), r#"{"type":"replaced"}"#);
        assert_eq!(
            error_frame(ErrorCode::PeerNotFound, "gone", Some("q")),
            r#"{"type":"error","requestId":"q","data":{"code":"PEER_NOT_FOUND","message":"gone"}}"#
        );
    }
}

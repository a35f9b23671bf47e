//! Server events into JSON text: [`ServerMessage`] and the `data` bodies it carries.

use serde::Serialize;
use serde_json::value::RawValue;

use super::{LeaveReason, PeerInfo, RelayKind, RoomMeta};
use crate::error::ErrorCode;

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
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("peer", self.peer)?;
        m.serialize_entry(self.kind.field(), self.payload)?;
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
    use crate::protocol::{decode, ClientMessage};

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
    fn unit_and_error_events_encode() {
        assert_eq!(ServerMessage::Replaced.encode(), r#"{"type":"replaced"}"#);
        assert_eq!(
            error_frame(ErrorCode::PeerNotFound, "gone", Some("q")),
            r#"{"type":"error","requestId":"q","data":{"code":"PEER_NOT_FOUND","message":"gone"}}"#
        );
    }
}

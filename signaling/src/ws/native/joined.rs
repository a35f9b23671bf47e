//! A `/ws` session in a room: WebRTC relays, broadcasts, `leave-room` and `close-room`
//! (`docs/protocol.md#webrtc-relay` and the "Broadcasts" section after it).
//!
//! The relay is the hot path: the payload stays raw JSON, the outgoing frame is encoded
//! once into a buffer sized for it, and the registry queues that same frame for the target.

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::error::ErrorCode;
use crate::protocol::{
    BroadcastKind, ClientMessage, Presence, RelayKind, RelayOut, RoomRef, ServerMessage,
};
use crate::registry::{Identity, Room};
use crate::ws::native::session::{Handled, Peer, Phase, Session};

/// An event `who` sends in `room`: every such event names its sender and room alike.
macro_rules! from_peer {
    ($event:ident, $who:expr, $room:expr, $data:expr) => {
        ServerMessage::$event {
            from: &$who.user_id,
            user_id: &$who.user_id,
            room_id: &$room.id,
            data: $data,
        }
    };
}

impl Session {
    /// Handles a request from a connection in `room`.
    pub(super) fn joined(
        &self,
        peer: &Peer,
        room: &Arc<Room>,
        message: ClientMessage<'_>,
    ) -> Handled {
        let registry = &self.shared.registry;
        match message {
            ClientMessage::Relay {
                kind,
                target,
                payload,
            } => self.relay(&peer.who, room, kind, &target, payload),
            ClientMessage::Broadcast {
                kind,
                presence,
                data,
            } => self.broadcast(&peer.who, room, kind, presence, data),
            ClientMessage::LeaveRoom => {
                registry.leave(room, self.conn.id);
                let left = RoomRef { room_id: &room.id };
                self.send(ServerMessage::RoomLeft { data: left }.encode());
                Ok(Some(Phase::Authenticated(Box::new(peer.clone()))))
            }
            ClientMessage::CloseRoom => {
                registry.close_by_host(room, self.conn.id)?;
                Ok(None)
            }
            ClientMessage::JoinRoom { .. } | ClientMessage::CreateRoom(_) => {
                Err(ErrorCode::AlreadyInRoom.into())
            }
            ClientMessage::Auth { .. } => Err(ErrorCode::AlreadyAuthenticated.into()),
            ClientMessage::Pong => Ok(None),
        }
    }

    /// An offer, answer or candidate for `target`, from `who`.
    fn relay(
        &self,
        who: &Identity,
        room: &Room,
        kind: RelayKind,
        target: &str,
        payload: &RawValue,
    ) -> Handled {
        let data = RelayOut {
            kind,
            peer: &who.user_id,
            payload,
        };
        let event = match kind {
            RelayKind::Offer => from_peer!(SdpOffer, who, room, data),
            RelayKind::Answer => from_peer!(SdpAnswer, who, room, data),
            RelayKind::Candidate => from_peer!(IceCandidate, who, room, data),
        };
        let frame: Utf8Bytes = event.encode_sized(payload.get().len()).into();
        self.shared
            .registry
            .relay(room, self.conn.id, target, &frame)?;
        let stats = &self.shared.stats;
        stats.count_relayed(kind.stat_index(), 1, frame.len() as u64);
        Ok(None)
    }

    /// Presence, a cursor or a chat message to every other peer in `room`.
    fn broadcast(
        &self,
        who: &Identity,
        room: &Room,
        kind: BroadcastKind,
        presence: Option<Presence>,
        data: &RawValue,
    ) -> Handled {
        let event = match kind {
            BroadcastKind::Presence => from_peer!(Presence, who, room, data),
            BroadcastKind::Cursor => from_peer!(CursorUpdate, who, room, data),
            BroadcastKind::Chat => from_peer!(Message, who, room, data),
        };
        let frame: Utf8Bytes = event.encode().into();
        let registry = &self.shared.registry;
        let n = registry.broadcast(room, self.conn.id, &frame, presence)?;
        let stats = &self.shared.stats;
        stats.count_relayed(kind.stat_index(), n, frame.len() as u64);
        Ok(None)
    }
}

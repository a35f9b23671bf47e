//! A `/ws` session that is authenticated but in no room: `join-room` and `create-room`
//! (`docs/protocol.md#joining-and-leaving`), both through [`Session::join`].

use crate::error::ErrorCode;
use crate::ids;
use crate::options::RoomOptions;
use crate::protocol::ClientMessage;
use crate::ws::native::session::{Handled, Peer, Phase, Refusal, Session};

impl Session {
    /// Handles a request from an authenticated connection outside any room.
    pub(super) async fn authenticated(&self, peer: &Peer, message: ClientMessage<'_>) -> Handled {
        match message {
            ClientMessage::JoinRoom { user_name } => {
                let name = display_name(peer, user_name)?;
                self.enter(peer, name, None).await
            }
            ClientMessage::CreateRoom(opts) => {
                let max = self.shared.registry.config().max_peers_per_room;
                let options =
                    RoomOptions::from_request(&opts, &peer.who.room_id, max).map_err(|e| {
                        Refusal {
                            code: ErrorCode::InvalidInput,
                            message: Some(e.0),
                        }
                    })?;
                let name = display_name(peer, None)?;
                self.enter(peer, name, Some(options)).await
            }
            ClientMessage::Auth { .. } => Err(ErrorCode::AlreadyAuthenticated.into()),
            ClientMessage::Pong => Ok(None),
            _ => Err(ErrorCode::NotInRoom.into()),
        }
    }

    /// Joins (or creates) the token's room (the registry asks the broker first) and moves
    /// the session into it.
    async fn enter(&self, peer: &Peer, name: String, create: Option<RoomOptions>) -> Handled {
        let registry = &self.shared.registry;
        let room = registry.join(&self.conn, &peer.who, name, create).await?;
        Ok(Some(Phase::Joined(Box::new(peer.clone()), room)))
    }
}

/// The name a peer joins with: the one `join-room` gives, else the token's, else its id.
fn display_name(peer: &Peer, user_name: Option<String>) -> Result<String, Refusal> {
    match user_name.as_deref().map(ids::display_name) {
        Some(Some(name)) => Ok(name),
        Some(None) => Err(Refusal {
            code: ErrorCode::InvalidInput,
            message: Some("userName must be 1 to 100 printable characters".into()),
        }),
        None => Ok(peer
            .token_name
            .as_deref()
            .and_then(ids::display_name)
            .unwrap_or_else(|| peer.who.user_id.to_string())),
    }
}

//! A `/ws` session before authentication: only `auth` (and `pong`) are understood
//! (`docs/protocol.md#2-connect-and-authenticate`).

use std::sync::atomic::Ordering::Relaxed;

use crate::error::ErrorCode;
use crate::protocol::{AuthOk, ClientMessage, ServerMessage};
use crate::registry::Identity;
use crate::ws::native::session::{Handled, Peer, Phase, Session};
use switchboard_auth::Claims;

impl Session {
    /// Handles a request from a connection that has not authenticated.
    pub(super) fn unauthenticated(&self, message: ClientMessage<'_>) -> Handled {
        match message {
            ClientMessage::Auth {
                token,
                user_id,
                room_id,
            } => {
                let claims = self.shared.keys.verify(&token).map_err(ErrorCode::from)?;
                if user_id.is_some_and(|u| *u != *claims.sub) {
                    return Err(ErrorCode::UserMismatch.into());
                }
                if room_id.is_some_and(|r| *r != *claims.room) {
                    return Err(ErrorCode::RoomMismatch.into());
                }
                Ok(Some(self.authenticate(claims)))
            }
            ClientMessage::Pong => Ok(None),
            _ => Err(ErrorCode::NotAuthenticated.into()),
        }
    }

    /// Answers `auth-ok` for verified `claims`; returns the phase the session enters.
    pub(super) fn authenticate(&self, claims: Claims) -> Phase {
        let cfg = self.shared.registry.config();
        let session_id = uuid::Uuid::new_v4().to_string();
        let ice_servers =
            (!cfg.ice.is_empty()).then(|| cfg.ice.servers_for(&claims.sub, claims.exp));
        self.send(
            ServerMessage::AuthOk {
                data: AuthOk {
                    user_id: &claims.sub,
                    room_id: &claims.room,
                    session_id: &session_id,
                    heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u64,
                    ice_servers,
                },
            }
            .encode(),
        );
        self.shared.stats.authenticated.fetch_add(1, Relaxed);
        Phase::Authenticated(Box::new(Peer {
            token_name: claims.name,
            who: Identity {
                user_id: claims.sub.into(),
                room_id: claims.room.into(),
                password_ok: claims.pwd,
            },
        }))
    }
}

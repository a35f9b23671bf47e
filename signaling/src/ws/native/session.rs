//! A `/ws` session's state, and how it answers a refused request
//! (`docs/protocol.md#4-errors`). The phase handlers beside this file build on it.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::conn::{Conn, KillReason};
use crate::error::ErrorCode;
use crate::protocol;
use crate::registry::{Identity, Room};
use crate::ws::reader::Flow;
use crate::ws::Shared;

/// Who an authenticated connection is.
#[derive(Clone)]
pub(super) struct Peer {
    /// As proven by the token.
    pub(super) who: Identity,
    /// The token's `name`, the display name when `join-room` gives none.
    pub(super) token_name: Option<String>,
}

/// Where a session is.
pub(super) enum Phase {
    Unauthenticated,
    Authenticated(Box<Peer>),
    Joined(Box<Peer>, Arc<Room>),
}

/// A refused request: its code and, when the code's own text is not enough, a message.
pub(super) struct Refusal {
    pub(super) code: ErrorCode,
    pub(super) message: Option<String>,
}

impl From<ErrorCode> for Refusal {
    fn from(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
        }
    }
}

/// What a handler decided: stay in the phase (`None`), move to another, or refuse.
pub(super) type Handled = Result<Option<Phase>, Refusal>;

/// One `/ws` connection's session.
pub(crate) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) conn: Arc<Conn>,
    pub(super) phase: Phase,
}

impl Session {
    pub(super) fn send(&self, frame: String) {
        self.conn.send(&Utf8Bytes::from(frame));
    }

    pub(super) fn send_error(&self, code: ErrorCode, message: &str, request_id: Option<&str>) {
        self.send(protocol::error_frame(code, message, request_id));
    }

    /// Sends an error for a refused request; garbage counts toward the garbage limit.
    pub(super) fn reject(&self, code: ErrorCode, message: &str, request_id: Option<&str>) -> Flow {
        self.shared.stats.count_rejected(code);
        self.send_error(code, message, request_id);
        if code.is_garbage() {
            Flow::Garbage
        } else {
            Flow::Continue
        }
    }

    /// Answers a handler's refusal; a failed authentication also ends the connection.
    pub(super) fn refused(&self, refusal: Refusal, request_id: Option<&str>) -> Flow {
        let code = refusal.code;
        let message = refusal.message.unwrap_or_else(|| code.to_string());
        if matches!(
            code,
            ErrorCode::InvalidToken
                | ErrorCode::TokenExpired
                | ErrorCode::AuthFailed
                | ErrorCode::UserMismatch
                | ErrorCode::RoomMismatch
        ) {
            self.shared.stats.count_rejected(code);
            self.send_error(code, &message, request_id);
            return Flow::Close(KillReason::AuthFailed);
        }
        self.reject(code, &message, request_id)
    }
}

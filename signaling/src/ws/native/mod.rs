//! `/ws`: the native protocol (`docs/protocol.md`). A session is in one of three phases,
//! and each phase has its own handler, in its own file, for the requests it understands:
//!
//! - [`unauthenticated`]: `auth` and `pong` (`docs/protocol.md#2-connect-and-authenticate`);
//! - [`authenticated`]: `join-room` and `create-room`, through the one join function;
//! - [`joined`]: relays, broadcasts, `leave-room` and `close-room`.
//!
//! A handler answers with the phase to move to, or a refusal that [`session`] turns into an
//! `error` (and, for a failed authentication, close 4001). This file reads the messages and
//! picks the handler; the handlers use only [`session`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::time::Instant;

use crate::conn::{Conn, KillReason};
use crate::error::ErrorCode;
use crate::protocol::{self, ClientMessage};
use crate::ws::reader::{Flow, Protocol};
use crate::ws::Shared;
use session::Phase;
use switchboard_auth::Claims;

mod authenticated;
mod joined;
mod session;
mod unauthenticated;

pub(crate) use session::Session;

impl Session {
    /// A session for `conn`; authenticated at once when the upgrade carried valid `claims`.
    pub(crate) fn new(shared: Arc<Shared>, conn: Arc<Conn>, claims: Option<Claims>) -> Self {
        let mut session = Self {
            shared,
            conn,
            phase: Phase::Unauthenticated,
        };
        if let Some(claims) = claims {
            session.phase = session.authenticate(claims);
        }
        session
    }
}

impl Protocol for Session {
    fn awaiting_auth(&self) -> bool {
        matches!(self.phase, Phase::Unauthenticated)
    }

    fn auth_timed_out(&mut self) {
        self.send_error(ErrorCode::AuthFailed, "authentication timed out", None);
    }

    async fn on_text(&mut self, text: &str, now: Instant) -> Flow {
        let req = match protocol::decode(text) {
            Ok(req) => req,
            Err(e) => return self.reject(e.code, &e.message, e.request_id.as_deref()),
        };
        let rid = req.request_id.as_deref();
        let is_relay = matches!(req.message, ClientMessage::Relay { .. });
        let handled = match &self.phase {
            Phase::Unauthenticated => self.unauthenticated(req.message),
            Phase::Authenticated(peer) => self.authenticated(peer, req.message).await,
            Phase::Joined(peer, room) => self.joined(peer, room, req.message),
        };
        match handled {
            Ok(next) => {
                if is_relay {
                    self.shared.stats.relay_latency.record(now.elapsed());
                }
                if let Some(next) = next {
                    self.phase = next;
                }
                Flow::Continue
            }
            Err(refusal) => self.refused(refusal, rid),
        }
    }

    fn on_binary<'a>(&mut self, _bytes: &'a [u8]) -> Result<&'a str, Flow> {
        Err(self.reject(
            ErrorCode::InvalidMessage,
            "binary frames are not supported",
            None,
        ))
    }

    fn on_rate_limited(&mut self, text: &str) {
        let rid = protocol::request_id(text);
        self.send_error(
            ErrorCode::RateLimited,
            "rate limit exceeded, message dropped",
            rid.as_deref(),
        );
    }

    fn teardown(self, kill: Option<KillReason>) {
        // Leave the room the way the end deserves: a silent peer is gone, a dropped one
        // may come back within the grace (docs/lifecycle.md#a-peer-one-userid-in-one-room).
        if let Phase::Joined(_, room) = &self.phase {
            match kill {
                Some(KillReason::HeartbeatTimeout) => {
                    self.shared.registry.remove_silent(room, self.conn.id);
                }
                _ => self.shared.registry.connection_lost(room, self.conn.id),
            }
        }
        if !matches!(self.phase, Phase::Unauthenticated) {
            self.shared.stats.authenticated.fetch_sub(1, Relaxed);
        }
    }
}

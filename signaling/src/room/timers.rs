//! What is due when: reconnect graces, the empty-room grace, the idle timeout, the TTL
//! warning and expiry (`docs/lifecycle.md#deadlines-instead-of-scans`). The registry's deadline queue asks
//! [`State::next_check`] when to come back and runs [`State::check`] then.

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::member::Location;
use super::{Closure, Env, Removed, State, EXPIRY_WARNING, MIRROR_LINGER};
use crate::broker::{Op, Store};
use crate::protocol::{CloseReason, Expiring, LeaveReason, ServerMessage};

impl State {
    /// When the room must next be looked at, or `None` once it is closed.
    pub fn next_check(&self, env: &Env, now: Instant) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let cfg = env.config;
        let mut next = self.last_activity + cfg.room_idle_timeout;
        let mut consider = |at: Instant| next = next.min(at);
        if let Some(expires_at) = self.expires_at {
            consider(expires_at);
            if !self.expiry_warned {
                consider(expires_at.checked_sub(EXPIRY_WARNING).unwrap_or(expires_at));
            }
        }
        for member in &self.members {
            if let Location::Reconnecting { since } = member.location {
                consider(since + cfg.reconnect_grace);
            }
        }
        if let Some(since) = self.empty_since {
            consider(since + cfg.room_empty_grace);
        }
        if !self.members.is_empty() && self.local_members() == 0 {
            consider(now + MIRROR_LINGER);
        }
        Some(next)
    }

    /// Does what is due at `now`: warns of or closes at TTL expiry, removes members whose
    /// grace ran out, deletes an empty room after its grace, closes an idle one, drops a
    /// mirror nobody here needs. Counts what it removed into `removed`.
    pub fn check(&mut self, env: &Env, now: Instant, removed: &mut Removed) -> Option<Closure> {
        if self.closed.is_some() {
            return None;
        }
        let cfg = env.config;
        if let Some(expires_at) = self.expires_at {
            if expires_at <= now {
                removed.peers += self.local_members();
                return Some(self.close(CloseReason::Expired, true, env));
            }
            if !self.expiry_warned && expires_at.saturating_duration_since(now) <= EXPIRY_WARNING {
                self.expiry_warned = true;
                self.send_all(&self.expiring_frame(expires_at, env, now), None);
            }
        }
        while let Some(i) = self.members.iter().position(|m| {
            matches!(m.location, Location::Reconnecting { since } if since + cfg.reconnect_grace <= now)
        }) {
            removed.peers += 1;
            if let Some(closure) = self.remove(i, LeaveReason::Disconnected, env, now) {
                return Some(closure);
            }
        }
        let idle = self.last_activity + cfg.room_idle_timeout <= now;
        if self.members.is_empty() {
            let empty_expired = self
                .empty_since
                .is_some_and(|since| since + cfg.room_empty_grace <= now);
            if empty_expired || idle {
                self.closed = Some(Closure::Deleted);
                env.emit(Op {
                    store: Some(Store::DeleteIfEmpty {
                        room: self.id.clone(),
                    }),
                    to: Vec::new(),
                    event: None,
                    frame: None,
                });
                return Some(Closure::Deleted);
            }
        } else if idle {
            removed.peers += self.local_members();
            return Some(self.close(CloseReason::Idle, true, env));
        } else if self.local_members() == 0 {
            // Only other instances' members are left: their instances keep the room; the
            // mirror here goes quietly.
            self.closed = Some(Closure::Deleted);
            return Some(Closure::Deleted);
        }
        None
    }

    /// Closes the room with `memory-pressure` if it saw no activity for `idle`.
    pub fn close_if_idle(
        &mut self,
        idle: std::time::Duration,
        env: &Env,
        now: Instant,
        removed: &mut Removed,
    ) -> Option<Closure> {
        if self.closed.is_some() || now.saturating_duration_since(self.last_activity) < idle {
            return None;
        }
        removed.peers += self.local_members();
        removed.rooms += 1;
        Some(self.close(CloseReason::MemoryPressure, true, env))
    }

    pub(super) fn expiring_frame(&self, expires_at: Instant, env: &Env, now: Instant) -> Utf8Bytes {
        ServerMessage::RoomExpiring {
            room_id: &self.id,
            data: Expiring {
                expires_at: env.clock.wall_ms(expires_at),
                time_until_expiration: expires_at.saturating_duration_since(now).as_millis() as u64,
            },
        }
        .encode()
        .into()
    }
}

//! What members send each other through the room: relays to one member
//! (`docs/protocol.md#webrtc-relay`) and broadcasts to all the others
//! (`docs/protocol.md`, "Broadcasts"). The hot path: a few scans of a short member list and
//! non-blocking queue pushes, nothing allocated for a local target.

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::member::{Location, Member};
use super::{Env, State};
use crate::broker::{Event, Op};
use crate::error::ErrorCode;
use crate::protocol::Presence;

impl State {
    /// Hands `frame` to the member `target`, if the member on `sender_conn` is still in the
    /// room. A target on another instance gets it through the broker; a reconnecting one
    /// cannot take it (`PEER_UNAVAILABLE`).
    pub fn relay(
        &mut self,
        sender_conn: u64,
        target: &str,
        frame: &Utf8Bytes,
        env: &Env,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        if self.position_of_conn(sender_conn).is_none() {
            return Err(ErrorCode::NotInRoom);
        }
        let member = self
            .members
            .iter()
            .find(|m| &*m.user_id == target)
            .ok_or(ErrorCode::PeerNotFound)?;
        match &member.location {
            Location::Local(conn) => {
                conn.send(frame);
            }
            Location::Remote {
                instance,
                reconnecting: false,
            } => env.emit(Op {
                store: None,
                to: vec![instance.clone()],
                event: Some(Event::Relay {
                    room: self.id.to_string(),
                    to: target.to_owned(),
                }),
                frame: Some(frame.clone()),
            }),
            _ => return Err(ErrorCode::PeerUnavailable),
        }
        self.touch(env, now);
        Ok(())
    }

    /// Hands `frame` to every other member; `presence` also updates the sender's status.
    /// Returns how many local connections took it.
    pub fn broadcast(
        &mut self,
        sender_conn: u64,
        frame: &Utf8Bytes,
        presence: Option<Presence>,
        env: &Env,
        now: Instant,
    ) -> Result<u64, ErrorCode> {
        let i = self
            .position_of_conn(sender_conn)
            .ok_or(ErrorCode::NotInRoom)?;
        if let Some(p) = presence {
            self.members[i].presence = p;
        }
        let sent = self.send_all(frame, Some(sender_conn));
        let to = self.remote_instances();
        if !to.is_empty() {
            self.activity_told = now;
            env.emit(Op {
                store: None,
                to,
                event: Some(Event::Broadcast {
                    room: self.id.to_string(),
                    from: self.members[i].user_id.to_string(),
                    presence,
                }),
                frame: Some(frame.clone()),
            });
        }
        self.last_activity = now;
        Ok(sent)
    }

    /// A relay another instance sent to the local member `to`: queued to its connection if
    /// it is connected here. The sending instance tells the others about the activity;
    /// this one only notes it.
    pub fn deliver(&mut self, to: &str, frame: &Utf8Bytes, now: Instant) {
        if let Some(conn) = self
            .members
            .iter()
            .find(|m| *m.user_id == *to)
            .and_then(Member::conn)
        {
            conn.send(frame);
        }
        self.last_activity = now;
    }

    /// Records activity, telling the other instances at most every quarter idle timeout.
    fn touch(&mut self, env: &Env, now: Instant) {
        self.last_activity = now;
        if now.duration_since(self.activity_told) > env.config.room_idle_timeout / 4 {
            self.activity_told = now;
            self.tell(env, None, || Event::Activity {
                room: self.id.to_string(),
            });
        }
    }
}

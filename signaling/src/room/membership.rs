//! Who is in the room: admission, joining (or returning), leaving, losing the connection,
//! host hand-over and closing (`docs/lifecycle.md#a-peer-one-userid-in-one-room`,
//! `docs/lifecycle.md#a-room`).

use std::sync::Arc;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::member::{Location, Member};
use super::{Closure, Env, State, EXPIRY_WARNING};
use crate::broker::{Event, Grant, Op, Store, WireStatus};
use crate::conn::{Conn, KillReason};
use crate::error::ErrorCode;
use crate::protocol::{
    CloseReason, HostChanged, LeaveReason, PeerData, Presence, Reason, RoomJoined, ServerMessage,
};

impl State {
    /// Whether `user` may get a token for the room: a closed room refuses everybody, a
    /// full one refuses newcomers (never members). Returns the password hash to check.
    pub fn admission(&self, user: &str) -> Result<Option<Arc<str>>, ErrorCode> {
        if self.closed == Some(Closure::Tombstoned) {
            return Err(ErrorCode::RoomClosed);
        }
        if !self.is_member(user) && self.members.len() >= self.max_peers {
            return Err(ErrorCode::RoomFull);
        }
        Ok(self.password_hash.clone())
    }

    /// The checks for a newcomer when no cluster decided the join: the password, the
    /// member limit. The first join starts the TTL and names the host (unless one was
    /// named at creation); an emptied room that fills again gets its first returning peer
    /// as host.
    pub fn admit(
        &mut self,
        user: &Arc<str>,
        password_ok: bool,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        if self.has_password && !password_ok {
            return Err(ErrorCode::InvalidPassword);
        }
        if self.members.len() >= self.max_peers {
            return Err(ErrorCode::RoomFull);
        }
        if !self.ever_joined {
            self.ever_joined = true;
            if let Some(ttl) = self.ttl {
                self.expires_at = Some(now + ttl);
            }
            if self.host_id.is_none() {
                self.host_id = Some(user.clone());
            }
        } else if self.members.is_empty() && self.host_id.as_ref() != Some(user) {
            self.host_id = Some(user.clone());
        }
        Ok(())
    }

    /// Takes what the cluster decided for the join of `me` (settings, host, the other
    /// members) into this mirror. A place `me` held on another instance is taken over
    /// with its join order and time, so the join is a return, not a new member.
    pub fn adopt(&mut self, grant: &Grant, me: &Arc<str>, env: &Env, now: Instant) {
        self.name = grant.name.clone();
        self.host_id = grant.host.as_deref().map(Arc::from);
        self.host_name = grant.host_name.clone();
        self.created_at_ms = grant.created_at;
        self.max_peers = grant.max_peers;
        self.ttl = grant.ttl_seconds.map(std::time::Duration::from_secs);
        self.expires_at = grant
            .expires_at
            .map(|ms| env.clock.instant_of_wall(ms, now));
        self.destroy_on_host_leave = grant.destroy_on_host_leave;
        self.has_password = grant.has_password;
        self.ever_joined = true;
        self.next_order = self.next_order.max(grant.order + 1);
        let here = env.broker.instance();
        for w in grant
            .members
            .iter()
            .filter(|w| *w.user != **me && *w.instance != **here)
        {
            let location = Location::Remote {
                instance: w.instance.as_str().into(),
                reconnecting: w.status == WireStatus::Reconnecting,
            };
            match self.position_of_user(&w.user) {
                Some(i) if !self.members[i].is_local() => self.members[i].location = location,
                Some(_) => {}
                None => {
                    self.insert_sorted(Member::from_wire(w));
                }
            }
        }
        if let (Some(previous), false) = (&grant.previous_instance, self.is_member(me)) {
            self.insert_sorted(Member {
                user_id: me.clone(),
                // `seat` names it right after.
                user_name: String::new(),
                connected_at_ms: grant.connected_at,
                presence: Presence::Active,
                order: grant.order,
                location: Location::Remote {
                    instance: previous.as_str().into(),
                    reconnecting: false,
                },
                last_seen_ms: grant.connected_at,
            });
        }
    }

    /// Puts `conn` in the room as `user`. A member with that userId (connected here on
    /// another socket, reconnecting, or held by another instance) gets its place back and
    /// the others see `peer-reconnected`, never a leave; anyone else joins (`peer-joined`),
    /// with the join order the cluster gave (`order`) or the next one here. `room-joined`
    /// is queued to `conn` before any other event of the room.
    pub fn seat(
        &mut self,
        conn: &Arc<Conn>,
        user: &Arc<str>,
        user_name: String,
        order: Option<u64>,
        env: &Env,
        now: Instant,
    ) {
        match self.position_of_user(user) {
            Some(i) => self.restore(i, conn, user_name, env),
            None => self.add(conn, user, user_name, order, env, now),
        }
        self.empty_since = None;
        self.last_activity = now;
        self.send_room_joined(conn, user, env, now);
    }

    fn restore(&mut self, i: usize, conn: &Arc<Conn>, user_name: String, env: &Env) {
        let member = &mut self.members[i];
        // The instance that held the place must hear about the move even if it holds no
        // other member of the room.
        let moved_from = member.remote_instance().cloned();
        member.relocate(Location::Local(conn.clone()));
        member.user_name = user_name;
        let user = member.user_id.clone();
        self.announce_reconnected(&user, Some(conn.id));
        let mut to = self.remote_instances();
        if let Some(from) = moved_from.filter(|from| !to.contains(from)) {
            to.push(from);
        }
        if !to.is_empty() {
            env.emit(Op {
                store: None,
                to,
                event: Some(Event::Moved {
                    room: self.id.to_string(),
                    user: user.to_string(),
                    instance: env.broker.instance().to_string(),
                    name: self.members[i].user_name.clone(),
                }),
                frame: None,
            });
        }
    }

    fn add(
        &mut self,
        conn: &Arc<Conn>,
        user: &Arc<str>,
        user_name: String,
        order: Option<u64>,
        env: &Env,
        now: Instant,
    ) {
        let order = order.unwrap_or_else(|| {
            self.next_order += 1;
            self.next_order - 1
        });
        let i = self.insert_sorted(Member {
            user_id: user.clone(),
            user_name,
            connected_at_ms: env.clock.wall_ms(now),
            presence: Presence::Active,
            order,
            location: Location::Local(conn.clone()),
            last_seen_ms: conn.last_seen_ms(),
        });
        let me = self.members[i].info(self.host_id.as_ref());
        let frame: Utf8Bytes = ServerMessage::PeerJoined {
            from: user,
            user_id: user,
            room_id: &self.id,
            data: PeerData {
                peer: &me,
                reason: None,
            },
        }
        .encode()
        .into();
        self.send_all(&frame, Some(conn.id));
        self.tell(env, None, || Event::Joined {
            room: self.id.to_string(),
            member: self.members[i].wire(env.broker.instance()),
        });
    }

    /// `room-joined` to the newcomer, then the TTL warning if one is due or was given.
    fn send_room_joined(&mut self, conn: &Conn, user: &str, env: &Env, now: Instant) {
        let meta = self.meta(env.clock, now, false);
        let mut infos = self.infos();
        // `seat` has just placed the member.
        let me_at = infos.iter().position(|p| &*p.user_id == user).unwrap_or(0);
        let me = infos.remove(me_at);
        conn.send(
            &ServerMessage::RoomJoined {
                data: RoomJoined {
                    room: &meta,
                    self_: &me,
                    peers: &infos,
                },
            }
            .encode()
            .into(),
        );
        let Some(expires_at) = self.expires_at else {
            return;
        };
        let frame = self.expiring_frame(expires_at, env, now);
        if self.expiry_warned {
            // The others were warned already; the newcomer is warned at join.
            conn.send(&frame);
        } else if expires_at.saturating_duration_since(now) <= EXPIRY_WARNING {
            // The warning is due now: everyone gets it, the newcomer included, once.
            self.expiry_warned = true;
            self.send_all(&frame, None);
        }
    }

    /// Removes the member on `conn_id`; the others get `peer-left` with `reason`.
    pub fn leave(
        &mut self,
        conn_id: u64,
        reason: LeaveReason,
        env: &Env,
        now: Instant,
    ) -> Result<Option<Closure>, ErrorCode> {
        let i = self.position_of_conn(conn_id).ok_or(ErrorCode::NotInRoom)?;
        Ok(self.remove(i, reason, env, now))
    }

    /// The connection `conn_id` dropped without `leave-room`: its member keeps its place
    /// as `reconnecting` for the grace (or leaves at once when the grace is zero).
    pub fn disconnect(
        &mut self,
        conn_id: u64,
        env: &Env,
        now: Instant,
    ) -> Result<Option<Closure>, ErrorCode> {
        if env.config.reconnect_grace.is_zero() {
            return self.leave(conn_id, LeaveReason::Disconnected, env, now);
        }
        let i = self.position_of_conn(conn_id).ok_or(ErrorCode::NotInRoom)?;
        let member = &mut self.members[i];
        if let Some(conn) = member.conn() {
            member.last_seen_ms = conn.last_seen_ms();
        }
        member.location = Location::Reconnecting { since: now };
        let user = member.user_id.clone();
        let store = Store::Status {
            room: self.id.clone(),
            user: user.clone(),
            status: WireStatus::Reconnecting,
        };
        self.tell(env, Some(store), || Event::Status {
            room: self.id.to_string(),
            user: user.to_string(),
            status: WireStatus::Reconnecting,
        });
        Ok(None)
    }

    /// Removes member `i`: `peer-left` to the others and, when it hosted, `host-changed` to
    /// the longest present member (or the room closes, with `destroyOnHostLeave`).
    pub(super) fn remove(
        &mut self,
        i: usize,
        reason: LeaveReason,
        env: &Env,
        now: Instant,
    ) -> Option<Closure> {
        let member = self.members.remove(i);
        self.last_activity = now;
        let was_host = self.host_id.as_ref() == Some(&member.user_id);
        if member.is_local() {
            // Tell the mirrors first (they apply the same host rule), then store.
            env.emit(Op {
                store: Some(Store::Left {
                    room: self.id.clone(),
                    user: member.user_id.clone(),
                }),
                to: self.remote_instances(),
                event: Some(Event::Left {
                    room: self.id.to_string(),
                    user: member.user_id.to_string(),
                    reason,
                }),
                frame: None,
            });
        }
        if was_host && self.destroy_on_host_leave && !self.members.is_empty() {
            return Some(self.close(CloseReason::HostLeft, member.is_local(), env));
        }
        let info = member.info(self.host_id.as_ref());
        let frame: Utf8Bytes = ServerMessage::PeerLeft {
            from: &member.user_id,
            user_id: &member.user_id,
            room_id: &self.id,
            data: PeerData {
                peer: &info,
                reason: Some(reason),
            },
        }
        .encode()
        .into();
        self.send_all(&frame, None);
        if was_host {
            self.hand_over_host();
        }
        if self.members.is_empty() {
            self.empty_since = Some(now);
        }
        None
    }

    /// The longest present member (members are sorted by join order) becomes host.
    fn hand_over_host(&mut self) {
        let Some(next) = self.members.first().map(|m| m.user_id.clone()) else {
            return;
        };
        let frame: Utf8Bytes = ServerMessage::HostChanged {
            room_id: &self.id,
            data: HostChanged { host_id: &next },
        }
        .encode()
        .into();
        self.host_id = Some(next);
        self.send_all(&frame, None);
    }

    /// `close-room` from the member on `conn_id`: only the host may.
    pub fn close_by_host(&mut self, conn_id: u64, env: &Env) -> Result<Closure, ErrorCode> {
        let i = self.position_of_conn(conn_id).ok_or(ErrorCode::NotInRoom)?;
        if self.host_id.as_ref() != Some(&self.members[i].user_id) {
            return Err(ErrorCode::Forbidden);
        }
        Ok(self.close(CloseReason::HostClosed, true, env))
    }

    /// Closes the room: every member connected here gets `room-closed` with `reason` and is
    /// disconnected (4010). When this instance decided it (`originated_here`), the cluster
    /// is told and stores the tombstone.
    pub fn close(&mut self, reason: CloseReason, originated_here: bool, env: &Env) -> Closure {
        let frame: Utf8Bytes = ServerMessage::RoomClosed {
            room_id: &self.id,
            data: Reason {
                reason: reason.as_str(),
            },
        }
        .encode()
        .into();
        if originated_here {
            env.emit(Op {
                store: Some(Store::Close {
                    room: self.id.clone(),
                }),
                to: self.remote_instances(),
                event: Some(Event::Closed {
                    room: self.id.to_string(),
                    reason,
                }),
                frame: None,
            });
        }
        for member in self.members.drain(..) {
            if let Location::Local(conn) = member.location {
                conn.send(&frame);
                conn.terminate(KillReason::RoomClosed);
            }
        }
        self.closed = Some(Closure::Tombstoned);
        tracing::debug!(room = %self.id, reason = reason.as_str(), "room closed");
        Closure::Tombstoned
    }
}

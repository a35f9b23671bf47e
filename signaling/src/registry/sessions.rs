//! What a connection does through the registry: join its room (after the broker's word),
//! leave it, lose it, close it, relay and broadcast, and follow its `/yjs` topic.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{lock, Index, Registry};
use crate::broker::{Event, Grant, JoinRequest, Op, Store};
use crate::conn::Conn;
use crate::error::ErrorCode;
use crate::options::RoomOptions;
use crate::protocol::{LeaveReason, Presence};
use crate::room::{Closure, Room, State};

/// Who a connection is, as proven by its token.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The token's `sub`.
    pub user_id: Arc<str>,
    /// The token's `room`.
    pub room_id: Arc<str>,
    /// Whether the token was issued after a password check (`pwd` claim).
    pub password_ok: bool,
}

impl Registry {
    /// Puts `conn` into its identity's room, creating the room if needed (with `create`,
    /// refusing an existing one). The broker checks the join cluster-wide first; a member
    /// with the same userId is replaced (or restored, when it was reconnecting) without the
    /// others seeing a leave. `room-joined` is queued to `conn` before any other event of
    /// the room.
    pub async fn join(
        &self,
        conn: &Arc<Conn>,
        who: &Identity,
        user_name: String,
        create: Option<RoomOptions>,
    ) -> Result<Arc<Room>, ErrorCode> {
        let request = JoinRequest {
            room_id: who.room_id.clone(),
            user_id: who.user_id.clone(),
            user_name: user_name.clone(),
            create: create.clone(),
            password_ok: who.password_ok,
            refuse_new_rooms: self.refusing_new_rooms(),
        };
        let grant = self.broker.clone().reserve_join(request).await?;
        self.join_with(conn, who, user_name, create, grant)
    }

    /// The join once the broker has answered: with a `grant` the cluster already made the
    /// checks (limits, host, order) and the room adopts its view; without one they are made
    /// here.
    pub fn join_with(
        &self,
        conn: &Arc<Conn>,
        who: &Identity,
        user_name: String,
        create: Option<RoomOptions>,
        grant: Option<Grant>,
    ) -> Result<Arc<Room>, ErrorCode> {
        let now = Instant::now();
        let mut index = lock(&self.index);
        let room = self.room_for_join(&mut index, &who.room_id, create, grant.is_some(), now)?;
        let mut st = room.lock();
        drop(index);
        if st.closed().is_some() {
            return Err(ErrorCode::RoomClosed);
        }
        let env = self.env();
        match &grant {
            Some(grant) => st.adopt(grant, &who.user_id, &env, now),
            None if !st.is_member(&who.user_id) => st.admit(&who.user_id, who.password_ok, now)?,
            None => {}
        }
        let order = grant.map(|g| g.order);
        st.seat(conn, &who.user_id, user_name, order, &env, now);
        self.settle(&room, st, None, now);
        Ok(room)
    }

    /// The room a join goes to: the existing one, or a new one when there is none or the
    /// old one was deleted quietly a moment ago. Closed (tombstoned) rooms and, for
    /// `create-room`, existing ones are refused, unless the cluster granted the join.
    fn room_for_join(
        &self,
        index: &mut Index,
        room_id: &Arc<str>,
        create: Option<RoomOptions>,
        granted: bool,
        now: Instant,
    ) -> Result<Arc<Room>, ErrorCode> {
        if granted {
            index.tombstones.remove(room_id);
        } else if Self::tombstoned(index, room_id, now) {
            return Err(ErrorCode::RoomClosed);
        }
        if let Some(room) = index.rooms.get(room_id) {
            match room.lock().closed() {
                None if create.is_some() && !granted => return Err(ErrorCode::RoomExists),
                None => return Ok(room.clone()),
                Some(Closure::Tombstoned) if !granted => return Err(ErrorCode::RoomClosed),
                Some(_) => {}
            }
        }
        if !granted {
            self.may_add_room(index)?;
        }
        let opts = create.unwrap_or_else(|| self.default_options(room_id));
        let room = Room::new(State::new(
            room_id.clone(),
            opts,
            None,
            None,
            &self.clock,
            now,
        ));
        index.rooms.insert(room_id.clone(), room.clone());
        Ok(room)
    }

    /// Runs `transition` on the room under its lock and settles the outcome.
    fn transition<T>(
        &self,
        room: &Arc<Room>,
        transition: impl FnOnce(
            &mut State,
            &crate::room::Env,
            Instant,
        ) -> Result<(Option<Closure>, T), ErrorCode>,
    ) -> Result<T, ErrorCode> {
        let now = Instant::now();
        let mut st = room.lock();
        let (closure, out) = transition(&mut st, &self.env(), now)?;
        self.settle(room, st, closure, now);
        Ok(out)
    }

    /// `leave-room`: removes the member on `conn_id`; the others get `peer-left` (`left`).
    /// Returns false when the connection was no longer a member.
    pub fn leave(&self, room: &Arc<Room>, conn_id: u64) -> bool {
        self.transition(room, |st, env, now| {
            Ok((st.leave(conn_id, LeaveReason::Left, env, now)?, ()))
        })
        .is_ok()
    }

    /// A silent peer is removed at once; the others get `peer-left` (`timeout`).
    pub fn remove_silent(&self, room: &Arc<Room>, conn_id: u64) -> bool {
        self.transition(room, |st, env, now| {
            Ok((st.leave(conn_id, LeaveReason::Timeout, env, now)?, ()))
        })
        .is_ok()
    }

    /// The connection dropped without `leave-room`: the member keeps its place as
    /// `reconnecting` for the grace (or leaves at once when the grace is zero).
    pub fn connection_lost(&self, room: &Arc<Room>, conn_id: u64) {
        let _ = self.transition(room, |st, env, now| {
            Ok((st.disconnect(conn_id, env, now)?, ()))
        });
    }

    /// `close-room` from the member on `conn_id`: only the host may.
    pub fn close_by_host(&self, room: &Arc<Room>, conn_id: u64) -> Result<(), ErrorCode> {
        self.transition(room, |st, env, _| {
            Ok((Some(st.close_by_host(conn_id, env)?), ()))
        })
    }

    /// Hands `frame` to the member `target`, if the member on `sender_conn` is still in
    /// the room. A target on another instance gets it through the broker.
    pub fn relay(
        &self,
        room: &Room,
        sender_conn: u64,
        target: &str,
        frame: &Utf8Bytes,
    ) -> Result<(), ErrorCode> {
        let now = Instant::now();
        room.lock()
            .relay(sender_conn, target, frame, &self.env(), now)
    }

    /// Hands `frame` to every other connected member; `presence` also updates the sender's
    /// status. Returns how many local connections received it.
    pub fn broadcast(
        &self,
        room: &Room,
        sender_conn: u64,
        frame: &Utf8Bytes,
        presence: Option<Presence>,
    ) -> Result<u64, ErrorCode> {
        let now = Instant::now();
        room.lock()
            .broadcast(sender_conn, frame, presence, &self.env(), now)
    }

    // ---- /yjs topics ----------------------------------------------------------------

    /// Subscribes a `/yjs` connection to `topic`.
    pub fn yjs_subscribe(&self, topic: &Arc<str>, conn: &Arc<Conn>) {
        if self.topics.subscribe(topic, conn) {
            self.store_topic(topic, true);
        }
    }

    /// Unsubscribes a `/yjs` connection from `topic`.
    pub fn yjs_unsubscribe(&self, topic: &Arc<str>, conn_id: u64) {
        if self.topics.unsubscribe(topic, conn_id) {
            self.store_topic(topic, false);
        }
    }

    fn store_topic(&self, topic: &Arc<str>, subscribed: bool) {
        self.broker.emit(Op {
            store: Some(Store::YjsTopic {
                topic: topic.clone(),
                subscribed,
            }),
            to: Vec::new(),
            event: None,
            frame: None,
        });
    }

    /// Fans a `/yjs` publish out to the local subscribers and, through the broker, to the
    /// other instances with subscribers. `fields` is the message without `clients`, as
    /// JSON. Returns local deliveries and the frame size.
    pub fn yjs_publish(&self, topic: &Arc<str>, fields: String) -> (u64, usize) {
        let delivered = self.topics.publish(topic, &fields);
        self.broker.emit(Op {
            store: Some(Store::YjsFanout {
                topic: topic.clone(),
            }),
            to: Vec::new(),
            event: Some(Event::YjsPublish {
                room: topic.to_string(),
            }),
            frame: Some(fields.into()),
        });
        delivered
    }

    /// Topics with local `/yjs` subscribers.
    pub fn yjs_topics(&self) -> Vec<Arc<str>> {
        self.topics.topics()
    }
}

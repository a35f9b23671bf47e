//! The room registry: which rooms exist, which connections are open, and the locking and
//! timers around each room's state machine ([`crate::room`]).
//!
//! Locking: one `std::sync::Mutex` for the index of rooms (taken on create, join, close and
//! listing), one per room (taken on every relay and broadcast, so rooms never contend with
//! each other), one for the deadline queue. The order is always index → room → deadlines,
//! and no lock is held across an `.await`: every critical section is a few map operations
//! and non-blocking queue pushes. That is why `std`'s mutex is used and not tokio's.
//!
//! The rest of the cluster is behind one [`Broker`]: [`Standalone`] when the instance runs
//! alone, `cluster::RedisCluster` otherwise. The registry calls it the same way in both.
//!
//! - `sessions`: what a `/ws` or `/yjs` connection does (join, leave, relay, topics).
//! - `mirror`: what other instances tell (cluster events, dead instances, resync).
//! - `deadlines`: the deadline queue and the sweeper.

mod deadlines;
mod mirror;
mod sessions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::{Broker, Standalone};
use crate::config::SignalingConfig;
use crate::conn::Conn;
use crate::error::ErrorCode;
use crate::options::RoomOptions;
use crate::protocol::{CloseReason, RoomMeta};
use crate::room::{Closure, Env, State};
use crate::stats::Stats;
use crate::time::Clock;
use crate::topics::Hub;
use deadlines::{Deadline, Deadlines};

pub use crate::room::{Removed, Room};
pub use mirror::LocalRoom;
pub use sessions::Identity;

/// How long a closed room's id stays refused.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// What the HTTP API learns about a room before issuing a token for it.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The room's password hash, when it has one.
    pub password_hash: Option<Arc<str>>,
}

/// Figures for `/stats` and `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Rooms in the index.
    pub rooms: usize,
    /// Members of all rooms held by this instance, reconnecting ones included.
    pub peers: usize,
}

/// One row of the `/stats` room list.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    /// Room id.
    pub room_id: Arc<str>,
    /// Members.
    pub peer_count: usize,
    /// Last activity (ms).
    pub last_activity: u64,
}

#[derive(Default)]
struct Index {
    rooms: HashMap<Arc<str>, Arc<Room>>,
    tombstones: HashMap<Arc<str>, Instant>,
}

/// All rooms of this server, their members and their deadlines.
pub struct Registry {
    config: Arc<SignalingConfig>,
    stats: Arc<Stats>,
    broker: Arc<dyn Broker>,
    clock: Clock,
    index: Mutex<Index>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    deadlines: Deadlines,
    refuse_new_rooms: AtomicBool,
    next_conn_id: AtomicU64,
    topics: Hub,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// An empty registry of an instance that runs alone.
    pub fn new(config: Arc<SignalingConfig>, stats: Arc<Stats>) -> Arc<Self> {
        Self::with_broker(config, stats, Arc::new(Standalone::default()))
    }

    /// An empty registry that shares its rooms through `broker`.
    pub fn with_broker(
        config: Arc<SignalingConfig>,
        stats: Arc<Stats>,
        broker: Arc<dyn Broker>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            stats,
            broker,
            clock: Clock::default(),
            index: Mutex::new(Index::default()),
            conns: Mutex::new(HashMap::new()),
            deadlines: Deadlines::default(),
            refuse_new_rooms: AtomicBool::new(false),
            next_conn_id: AtomicU64::new(1),
            topics: Hub::default(),
        })
    }

    /// The settings rooms are run with.
    pub fn config(&self) -> &SignalingConfig {
        &self.config
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The seam to the rest of the cluster.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// What room transitions need: settings, broker, clock.
    fn env(&self) -> Env<'_> {
        Env {
            config: &self.config,
            broker: &*self.broker,
            clock: &self.clock,
        }
    }

    // ---- connections ----------------------------------------------------------------

    /// Creates and tracks a connection handle (for heartbeats and draining).
    pub fn open_conn(&self) -> Arc<Conn> {
        let id = self.next_conn_id.fetch_add(1, Relaxed);
        let conn = Arc::new(Conn::new(
            id,
            self.config.outbound_queue_size,
            crate::now_ms(),
        ));
        lock(&self.conns).insert(id, conn.clone());
        conn
    }

    /// Stops tracking a connection.
    pub fn close_conn(&self, id: u64) {
        lock(&self.conns).remove(&id);
    }

    /// Every open connection.
    pub fn conns(&self) -> Vec<Arc<Conn>> {
        lock(&self.conns).values().cloned().collect()
    }

    // ---- limits ---------------------------------------------------------------------

    /// While set, no new room is created (memory pressure).
    pub fn set_refuse_new_rooms(&self, refuse: bool) {
        self.refuse_new_rooms.store(refuse, Relaxed);
    }

    /// Whether new rooms are refused right now.
    pub fn refusing_new_rooms(&self) -> bool {
        self.refuse_new_rooms.load(Relaxed)
    }

    fn may_add_room(&self, index: &Index) -> Result<(), ErrorCode> {
        if self.refusing_new_rooms() || index.rooms.len() >= self.config.max_rooms {
            return Err(ErrorCode::TooManyRooms);
        }
        Ok(())
    }

    /// The options a room gets when its first peer joins without `create-room`.
    pub fn default_options(&self, room_id: &str) -> RoomOptions {
        RoomOptions::defaults(room_id, self.config.max_peers_per_room)
    }

    // ---- the index --------------------------------------------------------------------

    fn tombstoned(index: &mut Index, id: &str, now: Instant) -> bool {
        match index.tombstones.get(id) {
            Some(until) if *until > now => true,
            Some(_) => {
                index.tombstones.remove(id);
                false
            }
            None => false,
        }
    }

    fn expire_tombstone(&self, id: &str, now: Instant) {
        let mut index = lock(&self.index);
        if index.tombstones.get(id).is_some_and(|until| *until <= now) {
            index.tombstones.remove(id);
        }
    }

    fn lookup(&self, room_id: &str) -> Result<Arc<Room>, ErrorCode> {
        let mut index = lock(&self.index);
        if Self::tombstoned(&mut index, room_id, Instant::now()) {
            return Err(ErrorCode::RoomClosed);
        }
        index
            .rooms
            .get(room_id)
            .cloned()
            .ok_or(ErrorCode::RoomNotFound)
    }

    fn all_rooms(&self) -> Vec<Arc<Room>> {
        lock(&self.index).rooms.values().cloned().collect()
    }

    /// After a transition under the room's lock: schedules the room's next check or, when
    /// the room ended, takes it out of the queue and the index, tombstones its id and ends
    /// its `/yjs` topic (closed with a reason).
    fn settle(
        &self,
        room: &Arc<Room>,
        mut st: MutexGuard<'_, State>,
        closure: Option<Closure>,
        now: Instant,
    ) {
        let Some(closure) = closure else {
            let next = st.next_check(&self.env(), now);
            self.deadlines.schedule(room, &mut st, next);
            return;
        };
        self.deadlines.unschedule(&mut st);
        drop(st);
        let mut index = lock(&self.index);
        if index
            .rooms
            .get(&room.id)
            .is_some_and(|r| Arc::ptr_eq(r, room))
        {
            index.rooms.remove(&room.id);
        }
        if closure == Closure::Tombstoned {
            index
                .tombstones
                .insert(room.id.clone(), now + TOMBSTONE_TTL);
            drop(index);
            self.deadlines
                .push(now + TOMBSTONE_TTL, Deadline::Tombstone(room.id.clone()));
            self.topics.close_topic(&room.id);
        }
    }

    // ---- HTTP-facing operations -------------------------------------------------------

    /// Checks whether `user_id` may get a token for `room_id` (full and closed rooms refuse
    /// newcomers, never members) and returns what the caller must still check.
    pub fn admission(&self, room_id: &str, user_id: &str) -> Result<Admission, ErrorCode> {
        let room = match self.lookup(room_id) {
            Ok(room) => room,
            Err(ErrorCode::RoomNotFound) => {
                return Ok(Admission {
                    password_hash: None,
                })
            }
            Err(e) => return Err(e),
        };
        let password_hash = room.lock().admission(user_id)?;
        Ok(Admission { password_hash })
    }

    /// Creates a room ahead of its first join (`POST /api/rooms`).
    pub fn create_room(
        &self,
        room_id: Arc<str>,
        opts: RoomOptions,
        host_id: Arc<str>,
        host_name: Option<String>,
        password_hash: Option<Arc<str>>,
    ) -> Result<RoomMeta, ErrorCode> {
        let now = Instant::now();
        let mut index = lock(&self.index);
        if Self::tombstoned(&mut index, &room_id, now) {
            return Err(ErrorCode::RoomClosed);
        }
        if index.rooms.contains_key(&room_id) {
            return Err(ErrorCode::RoomExists);
        }
        self.may_add_room(&index)?;
        let host = Some((host_id, host_name));
        let state = State::new(room_id.clone(), opts, host, password_hash, &self.clock, now);
        let room = Room::new(state);
        index.rooms.insert(room_id, room.clone());
        let st = room.lock();
        drop(index);
        let meta = st.meta(&self.clock, now, true);
        self.settle(&room, st, None, now);
        Ok(meta)
    }

    /// Metadata of one room.
    pub fn room_meta(&self, room_id: &str, with_peers: bool) -> Result<RoomMeta, ErrorCode> {
        let room = self.lookup(room_id)?;
        let st = room.lock();
        if st.closed().is_some() {
            return Err(ErrorCode::RoomNotFound);
        }
        Ok(st.meta(&self.clock, Instant::now(), with_peers))
    }

    /// Metadata (without peers) of every room, ordered by id.
    pub fn list_rooms(&self) -> Vec<RoomMeta> {
        let now = Instant::now();
        let mut rooms = self.all_rooms();
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        rooms
            .iter()
            .filter_map(|room| {
                let st = room.lock();
                st.closed()
                    .is_none()
                    .then(|| st.meta(&self.clock, now, false))
            })
            .collect()
    }

    /// Rooms ordered by id, `limit` of them from `offset`, with the total count.
    pub fn room_summaries(&self, offset: usize, limit: usize) -> (Vec<RoomSummary>, usize) {
        let mut rooms = self.all_rooms();
        let total = rooms.len();
        rooms.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let page = rooms
            .iter()
            .skip(offset)
            .take(limit)
            .map(|room| {
                let st = room.lock();
                RoomSummary {
                    room_id: room.id.clone(),
                    peer_count: st.members().len(),
                    last_activity: self.clock.wall_ms(st.last_activity()),
                }
            })
            .collect();
        (page, total)
    }

    /// Room and member counts.
    pub fn counts(&self) -> Counts {
        let rooms = self.all_rooms();
        // Members held by this instance (in cluster mode, mirrored remote ones are counted
        // by their own instance).
        let peers = rooms.iter().map(|r| r.lock().local_members()).sum();
        Counts {
            rooms: rooms.len(),
            peers,
        }
    }

    /// Closes a room: every member gets `room-closed` with `reason` and is disconnected
    /// (4010), and the id is refused for a minute.
    pub fn close_room(&self, room_id: &str, reason: CloseReason) -> Result<(), ErrorCode> {
        let room = self.lookup(room_id)?;
        let mut st = room.lock();
        if st.closed().is_some() {
            return Err(ErrorCode::RoomNotFound);
        }
        let closure = st.close(reason, true, &self.env());
        self.settle(&room, st, Some(closure), Instant::now());
        Ok(())
    }

    /// Closes every room without activity for `idle` with reason `memory-pressure`.
    pub fn close_idle_rooms(&self, idle: Duration) -> Removed {
        let now = Instant::now();
        let mut removed = Removed::default();
        for room in self.all_rooms() {
            let mut st = room.lock();
            if let Some(closure) = st.close_if_idle(idle, &self.env(), now, &mut removed) {
                self.settle(&room, st, Some(closure), now);
            }
        }
        removed
    }
}

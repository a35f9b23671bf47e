//! The room registry: which rooms exist, who is in them, and when each must next be looked
//! at.
//!
//! Locking: one `std::sync::Mutex` for the index of rooms (taken on create, join, close and
//! listing), one per room (taken on every relay and broadcast, so rooms never contend with
//! each other), one for the deadline queue. The order is always index → room → deadlines,
//! and no lock is held across an `.await`: every critical section is a few map operations
//! and non-blocking queue pushes. That is why `std`'s mutex is used and not tokio's.
//!
//! Time: every room has at most one pending check in an ordered deadline queue (reconnect
//! graces, empty-room grace, idle timeout, TTL warning and expiry, whichever is first). The
//! sweeper sleeps until the earliest deadline, or at most `ROOM_SWEEP_INTERVAL_SECONDS`, and
//! is woken early when a nearer deadline appears, so a sweep costs what it removes, not the
//! number of rooms.
//!
//! Cluster mode: a room's members may live on other instances. They are mirrored here as
//! remote members (no connection, tagged with their instance); every change to a local
//! member is emitted through the [`ClusterLink`] and every change told by another instance
//! is applied with [`Registry::apply`]. The next host is always the member with the lowest
//! join order, so all mirrors pick the same one. Without a cluster link nothing is emitted
//! and the registry is the whole truth.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::bus::{ClusterLink, Event, Grant, Op, Store, WireMember, WireStatus};
use crate::config::SignalingConfig;
use crate::conn::{Conn, KillReason};
use crate::error::ErrorCode;
pub use crate::options::RoomOptions;
use crate::protocol::{
    CloseReason, Expiring, HostChanged, LeaveReason, PeerData, PeerInfo, PeerStatus, Presence,
    Reason, RoomJoined, RoomMeta, RoomState, ServerMessage,
};
use crate::stats::Stats;
use crate::time::now_ms;

/// How long a closed room's id stays refused.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(60);
/// How long before TTL expiry peers get `room-expiring`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(60);
/// How long a mirror of a room without local members is kept (cluster mode).
const MIRROR_LINGER: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A relay from another instance, under the room's lock: the frame to the local member
/// `to` (if it is connected here), and the room marked active. The sending instance tells
/// the others about activity; this one only notes it.
fn deliver_locked(st: &mut RoomInner, to: &str, frame: &Utf8Bytes, now: Instant) {
    if let Some(conn) = st
        .peers
        .iter()
        .find(|m| *m.user_id == *to)
        .and_then(|m| m.conn.as_ref())
    {
        conn.send(frame);
    }
    st.last_activity = now;
}

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

/// What a cleanup pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Rooms closed or deleted.
    pub rooms: usize,
    /// Peers disconnected or removed.
    pub peers: usize,
}

/// A room's local members and settings, for re-publishing after a Redis outage.
#[derive(Debug, Clone)]
pub struct LocalRoom {
    /// Room id.
    pub room_id: Arc<str>,
    /// What Redis needs to recreate the room.
    pub grant: Grant,
    /// This instance's members.
    pub members: Vec<WireMember>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closure {
    /// Closed with a reason: the id is refused for [`TOMBSTONE_TTL`].
    Tombstoned,
    /// Removed quietly (empty or never used): the id is free again.
    Deleted,
}

struct Member {
    user_id: Arc<str>,
    user_name: String,
    connected_at_ms: u64,
    presence: Presence,
    /// Join order within the room; the lowest present member is the next host.
    order: u64,
    /// The local connection; `None` while reconnecting or when remote.
    conn: Option<Arc<Conn>>,
    /// The instance holding the member, when it is not this one.
    remote: Option<Arc<str>>,
    /// Remote member known to be reconnecting.
    remote_reconnecting: bool,
    /// Local member reconnecting since.
    disconnected_at: Option<Instant>,
    last_seen_ms: u64,
}

impl Member {
    fn info(&self, host: Option<&Arc<str>>) -> PeerInfo {
        PeerInfo {
            user_id: self.user_id.clone(),
            user_name: self.user_name.clone(),
            is_host: host.is_some_and(|h| *h == self.user_id),
            connected_at: self.connected_at_ms,
            last_heartbeat: self
                .conn
                .as_ref()
                .map_or(self.last_seen_ms, |c| c.last_seen_ms()),
            status: self.status(),
        }
    }

    fn status(&self) -> PeerStatus {
        let reconnecting = match &self.remote {
            Some(_) => self.remote_reconnecting,
            None => self.conn.is_none(),
        };
        match (reconnecting, self.presence) {
            (true, _) => PeerStatus::Reconnecting,
            (false, Presence::Active) => PeerStatus::Active,
            (false, Presence::Idle) => PeerStatus::Idle,
        }
    }

    fn wire(&self, instance: &str) -> WireMember {
        WireMember {
            user: self.user_id.to_string(),
            name: self.user_name.clone(),
            connected_at: self.connected_at_ms,
            order: self.order,
            instance: self.remote.as_deref().unwrap_or(instance).to_owned(),
            status: match self.status() {
                PeerStatus::Active => WireStatus::Active,
                PeerStatus::Idle => WireStatus::Idle,
                PeerStatus::Reconnecting => WireStatus::Reconnecting,
            },
        }
    }

    fn from_wire(w: &WireMember) -> Member {
        Member {
            user_id: w.user.as_str().into(),
            user_name: w.name.clone(),
            connected_at_ms: w.connected_at,
            presence: if w.status == WireStatus::Idle {
                Presence::Idle
            } else {
                Presence::Active
            },
            order: w.order,
            conn: None,
            remote: Some(w.instance.as_str().into()),
            remote_reconnecting: w.status == WireStatus::Reconnecting,
            disconnected_at: None,
            last_seen_ms: w.connected_at,
        }
    }
}

struct RoomInner {
    name: String,
    host_id: Option<Arc<str>>,
    host_name: Option<String>,
    created_at_ms: u64,
    last_activity: Instant,
    /// When activity was last told to the other instances.
    activity_told: Instant,
    password_hash: Option<Arc<str>>,
    has_password: bool,
    max_peers: usize,
    ttl: Option<Duration>,
    expires_at: Option<Instant>,
    expiry_warned: bool,
    destroy_on_host_leave: bool,
    ever_joined: bool,
    empty_since: Option<Instant>,
    closed: Option<Closure>,
    /// The deadline-queue key of the room's one pending check. A check moved earlier, or a
    /// room closed, takes its old entry out of the queue: a superseded entry would keep the
    /// whole room allocated until it fired (the idle timeout, 3 h by default), which the
    /// churn soak showed as heap growing with every room created.
    scheduled: Option<(Instant, u64)>,
    next_order: u64,
    /// Sorted by join order: the first is the longest present.
    peers: Vec<Member>,
}

impl RoomInner {
    fn position_of_conn(&self, conn_id: u64) -> Option<usize> {
        self.peers
            .iter()
            .position(|m| m.conn.as_ref().is_some_and(|c| c.id == conn_id))
    }

    fn position_of_user(&self, user: &str) -> Option<usize> {
        self.peers.iter().position(|m| &*m.user_id == user)
    }

    fn send_all(&self, frame: &Utf8Bytes, except_conn: Option<u64>) -> u64 {
        let mut sent = 0;
        for conn in self.peers.iter().filter_map(|m| m.conn.as_ref()) {
            if Some(conn.id) != except_conn && conn.send(frame) {
                sent += 1;
            }
        }
        sent
    }

    fn infos(&self) -> Vec<PeerInfo> {
        self.peers
            .iter()
            .map(|m| m.info(self.host_id.as_ref()))
            .collect()
    }

    /// Distinct instances holding remote members.
    fn remote_instances(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for inst in self.peers.iter().filter_map(|m| m.remote.as_ref()) {
            if !out.contains(inst) {
                out.push(inst.clone());
            }
        }
        out
    }

    fn local_members(&self) -> usize {
        self.peers.iter().filter(|m| m.remote.is_none()).count()
    }

    fn insert_sorted(&mut self, member: Member) {
        let at = self.peers.partition_point(|m| m.order < member.order);
        self.peers.insert(at, member);
    }
}

/// A room: its id and its lock-protected state.
pub struct Room {
    /// Room id.
    pub id: Arc<str>,
    inner: Mutex<RoomInner>,
}

enum Deadline {
    Room(Arc<Room>),
    Tombstone(Arc<str>),
}

struct Deadlines {
    queue: BTreeMap<(Instant, u64), Deadline>,
    seq: u64,
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
    index: Mutex<Index>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    deadlines: Mutex<Deadlines>,
    sweeper_wake: Notify,
    refuse_new_rooms: AtomicBool,
    next_conn_id: AtomicU64,
    cluster: OnceLock<Arc<dyn ClusterLink>>,
    yjs: crate::topics::Hub,
    // Anchor for turning `Instant`s into wall-clock milliseconds.
    epoch: (Instant, u64),
}

impl Registry {
    /// An empty registry.
    pub fn new(config: Arc<SignalingConfig>, stats: Arc<Stats>) -> Arc<Self> {
        Arc::new(Self {
            config,
            stats,
            index: Mutex::new(Index::default()),
            conns: Mutex::new(HashMap::new()),
            deadlines: Mutex::new(Deadlines {
                queue: BTreeMap::new(),
                seq: 0,
            }),
            sweeper_wake: Notify::new(),
            refuse_new_rooms: AtomicBool::new(false),
            next_conn_id: AtomicU64::new(1),
            cluster: OnceLock::new(),
            yjs: crate::topics::Hub::default(),
            epoch: (Instant::now(), now_ms()),
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

    /// Connects the registry to a cluster (once, at startup).
    pub fn set_cluster(&self, link: Arc<dyn ClusterLink>) {
        let _ = self.cluster.set(link);
    }

    /// The cluster link, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<dyn ClusterLink>> {
        self.cluster.get()
    }

    fn emit(&self, op: Op) {
        if let Some(c) = self.cluster.get() {
            c.emit(op);
        }
    }

    /// Tells the instances mirroring `st` about `event` (with an optional frame).
    fn tell(&self, st: &RoomInner, event: Event, frame: Option<Utf8Bytes>, store: Option<Store>) {
        if self.cluster.get().is_none() {
            return;
        }
        let to = st.remote_instances();
        if to.is_empty() && store.is_none() {
            return;
        }
        self.emit(Op {
            store,
            to,
            event: Some(event),
            frame,
        });
    }

    fn wall_ms(&self, at: Instant) -> u64 {
        let (epoch, epoch_ms) = self.epoch;
        if at >= epoch {
            epoch_ms + (at - epoch).as_millis() as u64
        } else {
            epoch_ms.saturating_sub((epoch - at).as_millis() as u64)
        }
    }

    fn instant_of_wall(&self, ms: u64, now: Instant) -> Instant {
        let wall_now = self.wall_ms(now);
        if ms >= wall_now {
            now + Duration::from_millis(ms - wall_now)
        } else {
            now.checked_sub(Duration::from_millis(wall_now - ms))
                .unwrap_or(now)
        }
    }

    // ---- connections ----------------------------------------------------------------

    /// Creates and tracks a connection handle (for heartbeats and draining).
    pub fn open_conn(&self) -> Arc<Conn> {
        let id = self.next_conn_id.fetch_add(1, Relaxed);
        let conn = Arc::new(Conn::new(id, self.config.outbound_queue_size, now_ms()));
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

    fn may_add_room(&self, index: &Index) -> Result<(), ErrorCode> {
        if self.refuse_new_rooms.load(Relaxed) || index.rooms.len() >= self.config.max_rooms {
            return Err(ErrorCode::TooManyRooms);
        }
        Ok(())
    }

    /// The options a room gets when its first peer joins without `create-room`.
    pub fn default_options(&self, room_id: &str) -> RoomOptions {
        RoomOptions::defaults(room_id, self.config.max_peers_per_room)
    }

    fn new_room(
        &self,
        id: Arc<str>,
        opts: RoomOptions,
        host: Option<(Arc<str>, Option<String>)>,
        password_hash: Option<Arc<str>>,
        now: Instant,
    ) -> Arc<Room> {
        let (host_id, host_name) = host.map_or((None, None), |(id, name)| (Some(id), name));
        Arc::new(Room {
            id,
            inner: Mutex::new(RoomInner {
                name: opts.name,
                host_id,
                host_name,
                created_at_ms: self.wall_ms(now),
                last_activity: now,
                activity_told: now,
                has_password: password_hash.is_some(),
                password_hash,
                max_peers: opts.max_peers,
                ttl: opts.ttl,
                expires_at: None,
                expiry_warned: false,
                destroy_on_host_leave: opts.destroy_on_host_leave,
                ever_joined: false,
                empty_since: None,
                closed: None,
                scheduled: None,
                next_order: 1,
                peers: Vec::new(),
            }),
        })
    }

    /// Takes the cluster's view of a room into the local mirror.
    fn adopt_grant(&self, st: &mut RoomInner, grant: &Grant, now: Instant) {
        st.name = grant.name.clone();
        st.host_id = grant.host.as_deref().map(Arc::from);
        st.host_name = grant.host_name.clone();
        st.created_at_ms = grant.created_at;
        st.max_peers = grant.max_peers;
        st.ttl = grant.ttl_seconds.map(Duration::from_secs);
        st.expires_at = grant.expires_at.map(|ms| self.instant_of_wall(ms, now));
        st.destroy_on_host_leave = grant.destroy_on_host_leave;
        st.has_password = grant.has_password;
        st.ever_joined = true;
        st.next_order = st.next_order.max(grant.order + 1);
    }

    // ---- HTTP-facing operations -------------------------------------------------------

    /// Checks whether `user_id` may get a token for `room_id` (full and closed rooms refuse
    /// newcomers, never members) and returns what the caller must still check.
    pub fn admission(&self, room_id: &str, user_id: &str) -> Result<Admission, ErrorCode> {
        let mut index = lock(&self.index);
        if Self::tombstoned(&mut index, room_id, Instant::now()) {
            return Err(ErrorCode::RoomClosed);
        }
        let Some(room) = index.rooms.get(room_id).cloned() else {
            return Ok(Admission {
                password_hash: None,
            });
        };
        drop(index);
        let st = lock(&room.inner);
        if st.closed == Some(Closure::Tombstoned) {
            return Err(ErrorCode::RoomClosed);
        }
        let member = st.peers.iter().any(|m| &*m.user_id == user_id);
        if !member && st.peers.len() >= st.max_peers {
            return Err(ErrorCode::RoomFull);
        }
        Ok(Admission {
            password_hash: st.password_hash.clone(),
        })
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
        let room = self.new_room(
            room_id.clone(),
            opts,
            Some((host_id, host_name)),
            password_hash,
            now,
        );
        index.rooms.insert(room_id, room.clone());
        let mut st = lock(&room.inner);
        drop(index);
        let next = self.next_check(&st);
        self.schedule(&room, &mut st, next);
        Ok(self.meta(&room, &st, now, true))
    }

    /// Metadata of one room.
    pub fn room_meta(&self, room_id: &str, with_peers: bool) -> Result<RoomMeta, ErrorCode> {
        let room = self.lookup(room_id)?;
        let st = lock(&room.inner);
        if st.closed.is_some() {
            return Err(ErrorCode::RoomNotFound);
        }
        Ok(self.meta(&room, &st, Instant::now(), with_peers))
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

    /// Metadata (without peers) of every room, ordered by id.
    pub fn list_rooms(&self) -> Vec<RoomMeta> {
        let now = Instant::now();
        let mut rooms: Vec<Arc<Room>> = lock(&self.index).rooms.values().cloned().collect();
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        rooms
            .iter()
            .filter_map(|room| {
                let st = lock(&room.inner);
                st.closed
                    .is_none()
                    .then(|| self.meta(room, &st, now, false))
            })
            .collect()
    }

    /// Rooms ordered by id, `limit` of them from `offset`, with the total count.
    pub fn room_summaries(&self, offset: usize, limit: usize) -> (Vec<RoomSummary>, usize) {
        let mut rooms: Vec<Arc<Room>> = lock(&self.index).rooms.values().cloned().collect();
        let total = rooms.len();
        rooms.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let page = rooms
            .iter()
            .skip(offset)
            .take(limit)
            .map(|room| {
                let st = lock(&room.inner);
                RoomSummary {
                    room_id: room.id.clone(),
                    peer_count: st.peers.len(),
                    last_activity: self.wall_ms(st.last_activity),
                }
            })
            .collect();
        (page, total)
    }

    /// Room and member counts.
    pub fn counts(&self) -> Counts {
        let rooms: Vec<Arc<Room>> = lock(&self.index).rooms.values().cloned().collect();
        // Members held by this instance (in cluster mode, mirrored remote ones are counted
        // by their own instance).
        let peers = rooms.iter().map(|r| lock(&r.inner).local_members()).sum();
        Counts {
            rooms: rooms.len(),
            peers,
        }
    }

    /// Closes a room: every member gets `room-closed` with `reason` and is disconnected
    /// (4010), and the id is refused for a minute.
    pub fn close_room(&self, room_id: &str, reason: CloseReason) -> Result<(), ErrorCode> {
        let room = self.lookup(room_id)?;
        let closure = {
            let mut st = lock(&room.inner);
            if st.closed.is_some() {
                return Err(ErrorCode::RoomNotFound);
            }
            self.close_locked(&room, &mut st, reason, true)
        };
        self.forget(&room, Some(closure));
        Ok(())
    }

    /// Closes every room without activity for `idle` with reason `memory-pressure`.
    pub fn close_idle_rooms(&self, idle: Duration) -> Removed {
        let now = Instant::now();
        let rooms: Vec<Arc<Room>> = lock(&self.index).rooms.values().cloned().collect();
        let mut removed = Removed::default();
        for room in rooms {
            let closure = {
                let mut st = lock(&room.inner);
                if st.closed.is_some() || now.saturating_duration_since(st.last_activity) < idle {
                    continue;
                }
                removed.peers += st.local_members();
                self.close_locked(&room, &mut st, CloseReason::MemoryPressure, true)
            };
            removed.rooms += 1;
            self.forget(&room, Some(closure));
        }
        removed
    }

    fn meta(&self, room: &Room, st: &RoomInner, now: Instant, with_peers: bool) -> RoomMeta {
        let host_name = st
            .host_id
            .as_ref()
            .and_then(|h| st.peers.iter().find(|m| m.user_id == *h))
            .map(|m| m.user_name.clone())
            .or_else(|| st.host_name.clone());
        RoomMeta {
            room_id: room.id.clone(),
            room_name: st.name.clone(),
            host_id: st.host_id.clone(),
            host_name,
            created_at: st.created_at_ms,
            last_activity: self.wall_ms(st.last_activity),
            state: if st.closed.is_some() {
                RoomState::Closed
            } else if st
                .peers
                .iter()
                .any(|m| m.status() != PeerStatus::Reconnecting)
            {
                RoomState::Active
            } else {
                RoomState::Idle
            },
            peer_count: st.peers.len(),
            max_peers: st.max_peers,
            has_password: st.has_password,
            expires_at: st.expires_at.map(|at| self.wall_ms(at)),
            time_until_expiration: st
                .expires_at
                .map(|at| at.saturating_duration_since(now).as_millis() as u64),
            peers: with_peers.then(|| st.infos()),
        }
    }

    // ---- signaling operations -------------------------------------------------------

    /// Puts `conn` into its identity's room (creating the room if needed; with `create`,
    /// refusing an existing one). A member of the room with the same user id is replaced
    /// (or restored, when it was reconnecting) without the others seeing a leave.
    /// `room-joined` is queued to `conn` before any other event of the room.
    ///
    /// In cluster mode `grant` is what Redis decided (limits, host, order, the other
    /// members); the local checks are then skipped because the cluster already made them.
    pub fn join(
        &self,
        conn: &Arc<Conn>,
        who: &Identity,
        user_name: String,
        create: Option<RoomOptions>,
        grant: Option<Grant>,
    ) -> Result<Arc<Room>, ErrorCode> {
        let now = Instant::now();
        let mut index = lock(&self.index);
        if grant.is_none() && Self::tombstoned(&mut index, &who.room_id, now) {
            return Err(ErrorCode::RoomClosed);
        }
        if grant.is_some() {
            index.tombstones.remove(&who.room_id);
        }
        let existing = index.rooms.get(&who.room_id).cloned();
        let existing_closure = existing.as_ref().map(|r| lock(&r.inner).closed);
        let room = match (existing, existing_closure) {
            (Some(room), Some(None)) => {
                if create.is_some() && grant.is_none() {
                    return Err(ErrorCode::RoomExists);
                }
                room
            }
            (Some(_), Some(Some(Closure::Tombstoned))) if grant.is_none() => {
                return Err(ErrorCode::RoomClosed);
            }
            _ => {
                // New, or deleted quietly a moment ago: start afresh.
                if grant.is_none() {
                    self.may_add_room(&index)?;
                }
                let opts = create.unwrap_or_else(|| self.default_options(&who.room_id));
                let room = self.new_room(who.room_id.clone(), opts, None, None, now);
                index.rooms.insert(who.room_id.clone(), room.clone());
                room
            }
        };
        let mut st = lock(&room.inner);
        drop(index);
        if st.closed.is_some() {
            return Err(ErrorCode::RoomClosed);
        }
        let instance = self.cluster.get().map(|c| c.instance().clone());

        if let Some(grant) = &grant {
            self.adopt_grant(&mut st, grant, now);
            // Mirror every other member the cluster knows about.
            for w in grant.members.iter().filter(|w| w.user != *who.user_id) {
                if instance.as_deref() == Some(w.instance.as_str()) {
                    continue; // our own members are already here
                }
                match st.position_of_user(&w.user) {
                    Some(i) if st.peers[i].remote.is_some() => {
                        st.peers[i].remote = Some(w.instance.as_str().into());
                        st.peers[i].remote_reconnecting = w.status == WireStatus::Reconnecting;
                    }
                    Some(_) => {}
                    None => st.insert_sorted(Member::from_wire(w)),
                }
            }
        }

        let room_id: &str = &room.id;
        let moved_here = grant
            .as_ref()
            .and_then(|g| g.previous_instance.as_ref())
            .is_some();
        if moved_here && st.position_of_user(&who.user_id).is_none() {
            // The user's place lives on another instance that we did not mirror yet: take
            // it over (same order and join time) instead of joining anew.
            let g = grant.as_ref().expect("moved_here implies a grant");
            let previous = g.previous_instance.as_deref().unwrap_or_default();
            st.insert_sorted(Member {
                user_id: who.user_id.clone(),
                user_name: user_name.clone(),
                connected_at_ms: g.connected_at,
                presence: Presence::Active,
                order: g.order,
                conn: None,
                remote: Some(previous.into()),
                remote_reconnecting: false,
                disconnected_at: None,
                last_seen_ms: g.connected_at,
            });
        }
        if let Some(i) = st.position_of_user(&who.user_id) {
            let member = &mut st.peers[i];
            if let Some(old) = member.conn.replace(conn.clone()) {
                old.send(&ServerMessage::Replaced.encode().into());
                old.terminate(KillReason::Replaced);
            }
            // The instance that held the place must hear about the move even if it holds
            // no other member of the room.
            let moved_from = member.remote.take();
            member.remote = None;
            member.remote_reconnecting = false;
            member.disconnected_at = None;
            member.user_name = user_name;
            let frame: Utf8Bytes = ServerMessage::PeerReconnected {
                from: &who.user_id,
                user_id: &who.user_id,
                room_id,
            }
            .encode()
            .into();
            st.send_all(&frame, Some(conn.id));
            if let Some(inst) = &instance {
                let name = st.peers[i].user_name.clone();
                let event = Event::Moved {
                    room: room_id.to_owned(),
                    user: who.user_id.to_string(),
                    instance: inst.to_string(),
                    name,
                };
                let mut to = st.remote_instances();
                if let Some(from) = moved_from {
                    if !to.contains(&from) {
                        to.push(from);
                    }
                }
                self.emit(Op {
                    store: None,
                    to,
                    event: Some(event),
                    frame: None,
                });
            }
        } else {
            if grant.is_none() {
                if st.has_password && !who.password_ok {
                    return Err(ErrorCode::InvalidPassword);
                }
                if st.peers.len() >= st.max_peers {
                    return Err(ErrorCode::RoomFull);
                }
                if !st.ever_joined {
                    st.ever_joined = true;
                    if let Some(ttl) = st.ttl {
                        st.expires_at = Some(now + ttl);
                    }
                    if st.host_id.is_none() {
                        st.host_id = Some(who.user_id.clone());
                    }
                } else if st.peers.is_empty() && st.host_id.as_ref() != Some(&who.user_id) {
                    // An emptied room that fills again gets its first returning peer as host.
                    st.host_id = Some(who.user_id.clone());
                }
            }
            let order = match &grant {
                Some(g) => g.order,
                None => {
                    st.next_order += 1;
                    st.next_order - 1
                }
            };
            st.insert_sorted(Member {
                user_id: who.user_id.clone(),
                user_name,
                connected_at_ms: self.wall_ms(now),
                presence: Presence::Active,
                order,
                conn: Some(conn.clone()),
                remote: None,
                remote_reconnecting: false,
                disconnected_at: None,
                last_seen_ms: conn.last_seen_ms(),
            });
            let i = st.position_of_user(&who.user_id).expect("just inserted");
            let me = st.peers[i].info(st.host_id.as_ref());
            let frame: Utf8Bytes = ServerMessage::PeerJoined {
                from: &who.user_id,
                user_id: &who.user_id,
                room_id,
                data: PeerData {
                    peer: &me,
                    reason: None,
                },
            }
            .encode()
            .into();
            st.send_all(&frame, Some(conn.id));
            if let Some(inst) = &instance {
                let member = st.peers[i].wire(inst);
                self.tell(
                    &st,
                    Event::Joined {
                        room: room_id.to_owned(),
                        member,
                    },
                    None,
                    None,
                );
            }
        }
        st.empty_since = None;
        st.last_activity = now;

        let meta = self.meta(&room, &st, now, false);
        let mut infos = st.infos();
        let me_at = infos
            .iter()
            .position(|p| p.user_id == who.user_id)
            .expect("member present");
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
        if let Some(expires_at) = st.expires_at {
            let frame = self.expiring_frame(room_id, expires_at, now);
            if st.expiry_warned {
                // The others were warned already; the newcomer is warned at join.
                conn.send(&frame);
            } else if expires_at.saturating_duration_since(now) <= EXPIRY_WARNING {
                // The warning is due now: everyone gets it, the newcomer included, once.
                st.expiry_warned = true;
                st.send_all(&frame, None);
            }
        }
        let next = self.next_check(&st);
        self.schedule(&room, &mut st, next);
        drop(st);
        Ok(room)
    }

    fn expiring_frame(&self, room_id: &str, expires_at: Instant, now: Instant) -> Utf8Bytes {
        ServerMessage::RoomExpiring {
            room_id,
            data: Expiring {
                expires_at: self.wall_ms(expires_at),
                time_until_expiration: expires_at.saturating_duration_since(now).as_millis() as u64,
            },
        }
        .encode()
        .into()
    }

    /// `leave-room`: removes the member on `conn_id`; the others get `peer-left` (`left`).
    /// Returns false when the connection was no longer a member.
    pub fn leave(&self, room: &Arc<Room>, conn_id: u64) -> bool {
        self.remove_by_conn(room, conn_id, LeaveReason::Left)
    }

    /// A silent peer is removed at once; the others get `peer-left` (`timeout`).
    pub fn remove_silent(&self, room: &Arc<Room>, conn_id: u64) -> bool {
        self.remove_by_conn(room, conn_id, LeaveReason::Timeout)
    }

    fn remove_by_conn(&self, room: &Arc<Room>, conn_id: u64, reason: LeaveReason) -> bool {
        let closure = {
            let mut st = lock(&room.inner);
            let Some(i) = st.position_of_conn(conn_id) else {
                return false;
            };
            let closure = self.remove_member(room, &mut st, i, reason, Instant::now());
            if closure.is_none() {
                let next = self.next_check(&st);
                self.schedule(room, &mut st, next);
            }
            closure
        };
        self.forget(room, closure);
        true
    }

    /// The connection dropped without `leave-room`: the member keeps its place as
    /// `reconnecting` for the grace (or leaves at once when the grace is zero).
    pub fn connection_lost(&self, room: &Arc<Room>, conn_id: u64) {
        let now = Instant::now();
        if self.config.reconnect_grace.is_zero() {
            self.remove_by_conn(room, conn_id, LeaveReason::Disconnected);
            return;
        }
        let mut st = lock(&room.inner);
        let Some(i) = st.position_of_conn(conn_id) else {
            return;
        };
        let member = &mut st.peers[i];
        if let Some(conn) = member.conn.take() {
            member.last_seen_ms = conn.last_seen_ms();
        }
        member.disconnected_at = Some(now);
        let user = member.user_id.clone();
        let event = Event::Status {
            room: room.id.to_string(),
            user: user.to_string(),
            status: WireStatus::Reconnecting,
        };
        let store = Store::Status {
            room: room.id.clone(),
            user,
            status: WireStatus::Reconnecting,
        };
        self.tell(&st, event, None, Some(store));
        let next = self.next_check(&st);
        self.schedule(room, &mut st, next);
    }

    /// `close-room` from the member on `conn_id`: only the host may.
    pub fn close_by_host(&self, room: &Arc<Room>, conn_id: u64) -> Result<(), ErrorCode> {
        let closure = {
            let mut st = lock(&room.inner);
            let i = st.position_of_conn(conn_id).ok_or(ErrorCode::NotInRoom)?;
            if st.host_id.as_ref() != Some(&st.peers[i].user_id) {
                return Err(ErrorCode::Forbidden);
            }
            self.close_locked(room, &mut st, CloseReason::HostClosed, true)
        };
        self.forget(room, Some(closure));
        Ok(())
    }

    /// Hands `frame` to the member `target`, if the member on `sender_conn` is still in
    /// the room. A target on another instance gets it through the cluster.
    pub fn relay(
        &self,
        room: &Room,
        sender_conn: u64,
        target: &str,
        frame: &Utf8Bytes,
    ) -> Result<(), ErrorCode> {
        let mut st = lock(&room.inner);
        if st.position_of_conn(sender_conn).is_none() {
            return Err(ErrorCode::NotInRoom);
        }
        let member = st
            .peers
            .iter()
            .find(|m| &*m.user_id == target)
            .ok_or(ErrorCode::PeerNotFound)?;
        match (&member.conn, &member.remote) {
            (Some(conn), _) => {
                conn.send(frame);
            }
            (None, Some(instance)) if !member.remote_reconnecting => {
                self.emit(Op {
                    store: None,
                    to: vec![instance.clone()],
                    event: Some(Event::Relay {
                        room: room.id.to_string(),
                        to: target.to_owned(),
                    }),
                    frame: Some(frame.clone()),
                });
            }
            _ => return Err(ErrorCode::PeerUnavailable),
        }
        self.touch(room, &mut st);
        Ok(())
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
        let mut st = lock(&room.inner);
        let i = st
            .position_of_conn(sender_conn)
            .ok_or(ErrorCode::NotInRoom)?;
        if let Some(p) = presence {
            st.peers[i].presence = p;
        }
        let sent = st.send_all(frame, Some(sender_conn));
        if self.cluster.get().is_some() {
            let from = st.peers[i].user_id.to_string();
            let to = st.remote_instances();
            if !to.is_empty() {
                st.activity_told = Instant::now();
                self.emit(Op {
                    store: None,
                    to,
                    event: Some(Event::Broadcast {
                        room: room.id.to_string(),
                        from,
                        presence,
                    }),
                    frame: Some(frame.clone()),
                });
            }
        }
        st.last_activity = Instant::now();
        Ok(sent)
    }

    /// Records activity, telling the other instances at most every quarter idle timeout.
    fn touch(&self, room: &Room, st: &mut RoomInner) {
        let now = Instant::now();
        st.last_activity = now;
        if self.cluster.get().is_some()
            && now.duration_since(st.activity_told) > self.config.room_idle_timeout / 4
        {
            st.activity_told = now;
            self.tell(
                st,
                Event::Activity {
                    room: room.id.to_string(),
                },
                None,
                None,
            );
        }
    }

    // ---- /yjs topics ----------------------------------------------------------------

    /// Subscribes a `/yjs` connection to `topic`.
    pub fn yjs_subscribe(&self, topic: &Arc<str>, conn: &Arc<Conn>) {
        if self.yjs.subscribe(topic, conn) {
            self.emit(Op {
                store: Some(Store::YjsTopic {
                    topic: topic.clone(),
                    subscribed: true,
                }),
                to: Vec::new(),
                event: None,
                frame: None,
            });
        }
    }

    /// Unsubscribes a `/yjs` connection from `topic`.
    pub fn yjs_unsubscribe(&self, topic: &Arc<str>, conn_id: u64) {
        if self.yjs.unsubscribe(topic, conn_id) {
            self.emit(Op {
                store: Some(Store::YjsTopic {
                    topic: topic.clone(),
                    subscribed: false,
                }),
                to: Vec::new(),
                event: None,
                frame: None,
            });
        }
    }

    /// Fans a `/yjs` publish out to the local subscribers and, in cluster mode, to the other
    /// instances with subscribers. `fields` is the message without `clients`, as JSON.
    /// Returns local deliveries and the frame size.
    pub fn yjs_publish(&self, topic: &Arc<str>, fields: String) -> (u64, usize) {
        let delivered = self.yjs.publish(topic, &fields);
        if self.cluster.get().is_some() {
            self.emit(Op {
                store: Some(Store::YjsFanout {
                    topic: topic.clone(),
                }),
                to: Vec::new(),
                event: Some(Event::YjsPublish {
                    room: topic.to_string(),
                }),
                frame: Some(fields.into()),
            });
        }
        delivered
    }

    /// Topics with local `/yjs` subscribers.
    pub fn yjs_topics(&self) -> Vec<Arc<str>> {
        self.yjs.topics()
    }

    // ---- cluster events -------------------------------------------------------------

    /// A relay from another instance: hands `frame` to the local member `to` of `room_id`
    /// (the relay path of [`Registry::apply`], without building an event).
    pub fn deliver(&self, room_id: &str, to: &str, frame: &Utf8Bytes) {
        let Some(room) = lock(&self.index).rooms.get(room_id).cloned() else {
            return;
        };
        let mut st = lock(&room.inner);
        if st.closed.is_some() {
            return;
        }
        deliver_locked(&mut st, to, frame, Instant::now());
    }

    /// Applies what another instance told us.
    pub fn apply(&self, event: Event, frame: Option<Utf8Bytes>) {
        let now = Instant::now();
        if let Event::YjsPublish { room } = &event {
            if let Some(fields) = frame {
                let (delivered, bytes) = self.yjs.publish(room, fields.as_str());
                self.stats
                    .count_relayed(crate::stats::yjs_index(), delivered, bytes as u64);
            }
            return;
        }
        let room = {
            let mut index = lock(&self.index);
            match index.rooms.get(event.room()).cloned() {
                Some(r) => r,
                // A member joined a room we have no mirror of (yet): keep one briefly, our
                // own join may be on its way.
                None if matches!(event, Event::Joined { .. } | Event::Hello { .. }) => {
                    let id: Arc<str> = event.room().into();
                    let room =
                        self.new_room(id.clone(), self.default_options(&id), None, None, now);
                    lock(&room.inner).ever_joined = true;
                    index.rooms.insert(id, room.clone());
                    room
                }
                None => return,
            }
        };
        let closure = {
            let mut st = lock(&room.inner);
            if st.closed.is_some() {
                return;
            }
            let closure = self.apply_locked(&room, &mut st, event, frame, now);
            if closure.is_none() {
                let next = self.next_check(&st);
                self.schedule(&room, &mut st, next);
            }
            closure
        };
        self.forget(&room, closure);
    }

    fn apply_locked(
        &self,
        room: &Room,
        st: &mut RoomInner,
        event: Event,
        frame: Option<Utf8Bytes>,
        now: Instant,
    ) -> Option<Closure> {
        let room_id: &str = &room.id;
        match event {
            Event::Joined { member, .. } => self.merge_remote(room_id, st, &member),
            Event::Hello { members, .. } => {
                for m in &members {
                    self.merge_remote(room_id, st, m);
                }
            }
            Event::Left { user, reason, .. } => {
                let i = st
                    .position_of_user(&user)
                    .filter(|i| st.peers[*i].remote.is_some())?;
                return self.remove_member(room, st, i, reason, now);
            }
            Event::Status { user, status, .. } => {
                if let Some(m) = st
                    .peers
                    .iter_mut()
                    .find(|m| *m.user_id == *user && m.remote.is_some())
                {
                    m.remote_reconnecting = status == WireStatus::Reconnecting;
                    if status != WireStatus::Reconnecting {
                        m.presence = if status == WireStatus::Idle {
                            Presence::Idle
                        } else {
                            Presence::Active
                        };
                    }
                }
            }
            Event::Moved {
                user,
                instance,
                name,
                ..
            } => {
                let i = st.position_of_user(&user)?;
                let member = &mut st.peers[i];
                if let Some(old) = member.conn.take() {
                    old.send(&ServerMessage::Replaced.encode().into());
                    old.terminate(KillReason::Replaced);
                }
                member.remote = Some(instance.as_str().into());
                member.remote_reconnecting = false;
                member.disconnected_at = None;
                member.user_name = name;
                let frame: Utf8Bytes = ServerMessage::PeerReconnected {
                    from: &user,
                    user_id: &user,
                    room_id,
                }
                .encode()
                .into();
                st.send_all(&frame, None);
            }
            Event::Closed { reason, .. } => {
                return Some(self.close_locked(room, st, reason, false))
            }
            Event::Relay { to, .. } => match frame {
                Some(frame) => deliver_locked(st, &to, &frame, now),
                None => st.last_activity = now,
            },
            Event::Broadcast { from, presence, .. } => {
                if let (Some(p), Some(m)) =
                    (presence, st.peers.iter_mut().find(|m| *m.user_id == *from))
                {
                    m.presence = p;
                }
                if let Some(frame) = frame {
                    st.send_all(&frame, None);
                }
                st.last_activity = now;
            }
            Event::Activity { .. } => st.last_activity = now,
            Event::YjsPublish { .. } => {}
        }
        None
    }

    fn merge_remote(&self, room_id: &str, st: &mut RoomInner, w: &WireMember) {
        if self
            .cluster
            .get()
            .is_some_and(|c| **c.instance() == *w.instance)
        {
            return;
        }
        match st.position_of_user(&w.user) {
            Some(i) => {
                let m = &mut st.peers[i];
                if m.remote.is_none() {
                    // Our member's place was taken over on another instance.
                    if let Some(old) = m.conn.take() {
                        old.send(&ServerMessage::Replaced.encode().into());
                        old.terminate(KillReason::Replaced);
                    }
                    m.disconnected_at = None;
                    let frame: Utf8Bytes = ServerMessage::PeerReconnected {
                        from: &w.user,
                        user_id: &w.user,
                        room_id,
                    }
                    .encode()
                    .into();
                    st.send_all(&frame, None);
                }
                let m = &mut st.peers[i];
                m.remote = Some(w.instance.as_str().into());
                m.remote_reconnecting = w.status == WireStatus::Reconnecting;
            }
            None => {
                st.insert_sorted(Member::from_wire(w));
                st.next_order = st.next_order.max(w.order + 1);
                st.empty_since = None;
                let i = st.position_of_user(&w.user).expect("just inserted");
                let info = st.peers[i].info(st.host_id.as_ref());
                let frame: Utf8Bytes = ServerMessage::PeerJoined {
                    from: &w.user,
                    user_id: &w.user,
                    room_id,
                    data: PeerData {
                        peer: &info,
                        reason: None,
                    },
                }
                .encode()
                .into();
                st.send_all(&frame, None);
            }
        }
    }

    /// Removes every member held by a dead instance, as if its connections had dropped and
    /// their grace had run out. Returns how many.
    pub fn drop_instance(&self, instance: &str) -> usize {
        let now = Instant::now();
        let rooms: Vec<Arc<Room>> = lock(&self.index).rooms.values().cloned().collect();
        let mut n = 0;
        for room in rooms {
            let closure = {
                let mut st = lock(&room.inner);
                let mut closure = None;
                while let Some(i) = st
                    .peers
                    .iter()
                    .position(|m| m.remote.as_deref() == Some(instance))
                {
                    n += 1;
                    let user = st.peers[i].user_id.clone();
                    self.emit(Op {
                        store: Some(Store::Reap {
                            room: room.id.clone(),
                            user,
                            instance: instance.into(),
                        }),
                        to: Vec::new(),
                        event: None,
                        frame: None,
                    });
                    closure = self.remove_member(&room, &mut st, i, LeaveReason::Disconnected, now);
                    if closure.is_some() {
                        break;
                    }
                }
                if closure.is_none() {
                    let next = self.next_check(&st);
                    self.schedule(&room, &mut st, next);
                }
                closure
            };
            self.forget(&room, closure);
        }
        n
    }

    /// Instances holding members of rooms mirrored here.
    pub fn remote_instances(&self) -> BTreeSet<Arc<str>> {
        let rooms: Vec<Arc<Room>> = lock(&self.index).rooms.values().cloned().collect();
        let mut out = BTreeSet::new();
        for room in rooms {
            out.extend(lock(&room.inner).remote_instances());
        }
        out
    }

    /// Every room with local members, for re-publishing after Redis lost its state.
    pub fn local_rooms(&self) -> Vec<LocalRoom> {
        let Some(instance) = self.cluster.get().map(|c| c.instance().clone()) else {
            return Vec::new();
        };
        let rooms: Vec<Arc<Room>> = lock(&self.index).rooms.values().cloned().collect();
        rooms
            .into_iter()
            .filter_map(|room| {
                let st = lock(&room.inner);
                if st.closed.is_some() || st.local_members() == 0 {
                    return None;
                }
                let members: Vec<WireMember> = st
                    .peers
                    .iter()
                    .filter(|m| m.remote.is_none())
                    .map(|m| m.wire(&instance))
                    .collect();
                Some(LocalRoom {
                    room_id: room.id.clone(),
                    grant: Grant {
                        name: st.name.clone(),
                        host: st.host_id.as_deref().map(str::to_owned),
                        host_name: st.host_name.clone(),
                        created_at: st.created_at_ms,
                        max_peers: st.max_peers,
                        expires_at: st.expires_at.map(|at| self.wall_ms(at)),
                        ttl_seconds: st.ttl.map(|d| d.as_secs()),
                        destroy_on_host_leave: st.destroy_on_host_leave,
                        has_password: st.has_password,
                        order: st.next_order,
                        connected_at: st.created_at_ms,
                        previous_instance: None,
                        members: Vec::new(),
                    },
                    members,
                })
            })
            .collect()
    }

    // ---- shared state transitions (room lock held) -----------------------------------

    fn remove_member(
        &self,
        room: &Room,
        st: &mut RoomInner,
        i: usize,
        reason: LeaveReason,
        now: Instant,
    ) -> Option<Closure> {
        let member = st.peers.remove(i);
        let local = member.remote.is_none();
        st.last_activity = now;
        let was_host = st.host_id.as_ref() == Some(&member.user_id);
        if local {
            // Tell the mirrors first (they apply the same host rule), then store.
            let event = Event::Left {
                room: room.id.to_string(),
                user: member.user_id.to_string(),
                reason,
            };
            let store = Store::Left {
                room: room.id.clone(),
                user: member.user_id.clone(),
            };
            let mut to = st.remote_instances();
            if let Some(inst) = &member.remote {
                to.retain(|t| t != inst);
            }
            if self.cluster.get().is_some() {
                self.emit(Op {
                    store: Some(store),
                    to,
                    event: Some(event),
                    frame: None,
                });
            }
        }
        if was_host && st.destroy_on_host_leave && !st.peers.is_empty() {
            return Some(self.close_locked(room, st, CloseReason::HostLeft, local));
        }
        let info = member.info(st.host_id.as_ref());
        let frame: Utf8Bytes = ServerMessage::PeerLeft {
            from: &member.user_id,
            user_id: &member.user_id,
            room_id: &room.id,
            data: PeerData {
                peer: &info,
                reason: Some(reason),
            },
        }
        .encode()
        .into();
        st.send_all(&frame, None);
        if was_host {
            // Peers are sorted by join order: the first is the longest present.
            if let Some(next_host) = st.peers.first().map(|m| m.user_id.clone()) {
                let frame: Utf8Bytes = ServerMessage::HostChanged {
                    room_id: &room.id,
                    data: HostChanged {
                        host_id: &next_host,
                    },
                }
                .encode()
                .into();
                st.host_id = Some(next_host);
                st.send_all(&frame, None);
            }
        }
        if st.peers.is_empty() {
            st.empty_since = Some(now);
        }
        None
    }

    fn close_locked(
        &self,
        room: &Room,
        st: &mut RoomInner,
        reason: CloseReason,
        originated_here: bool,
    ) -> Closure {
        let frame: Utf8Bytes = ServerMessage::RoomClosed {
            room_id: &room.id,
            data: Reason {
                reason: reason.as_str(),
            },
        }
        .encode()
        .into();
        if originated_here && self.cluster.get().is_some() {
            let to = st.remote_instances();
            self.emit(Op {
                store: Some(Store::Close {
                    room: room.id.clone(),
                }),
                to,
                event: Some(Event::Closed {
                    room: room.id.to_string(),
                    reason,
                }),
                frame: None,
            });
        }
        for member in st.peers.drain(..) {
            if let Some(conn) = member.conn {
                conn.send(&frame);
                conn.terminate(KillReason::RoomClosed);
            }
        }
        st.closed = Some(Closure::Tombstoned);
        self.unschedule(st);
        self.yjs.close_topic(&room.id);
        tracing::debug!(room = %room.id, reason = reason.as_str(), "room closed");
        Closure::Tombstoned
    }

    /// Drops a closed room from the index (and tombstones its id) once its lock is released.
    fn forget(&self, room: &Arc<Room>, closure: Option<Closure>) {
        let Some(closure) = closure else { return };
        let now = Instant::now();
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
            self.push_deadline(now + TOMBSTONE_TTL, Deadline::Tombstone(room.id.clone()));
        }
    }

    // ---- deadlines ------------------------------------------------------------------

    fn next_check(&self, st: &RoomInner) -> Option<Instant> {
        if st.closed.is_some() {
            return None;
        }
        let cfg = &self.config;
        let mut next = st.last_activity + cfg.room_idle_timeout;
        let mut consider = |at: Instant| next = next.min(at);
        if let Some(expires_at) = st.expires_at {
            consider(expires_at);
            if !st.expiry_warned {
                consider(expires_at.checked_sub(EXPIRY_WARNING).unwrap_or(expires_at));
            }
        }
        for at in st.peers.iter().filter_map(|m| m.disconnected_at) {
            consider(at + cfg.reconnect_grace);
        }
        if let Some(since) = st.empty_since {
            consider(since + cfg.room_empty_grace);
        }
        if self.cluster.get().is_some() && !st.peers.is_empty() && st.local_members() == 0 {
            consider(Instant::now() + MIRROR_LINGER);
        }
        Some(next)
    }

    fn schedule(&self, room: &Arc<Room>, st: &mut RoomInner, at: Option<Instant>) {
        let Some(at) = at else { return };
        if st.scheduled.is_some_and(|(s, _)| s <= at) {
            return;
        }
        let key = self.push_deadline(at, Deadline::Room(room.clone()));
        self.unschedule(st);
        st.scheduled = Some(key);
    }

    /// Entries in the deadline queue: one per room with a pending check, plus one per
    /// tombstone. For tests (`tests/registry_props.rs`): 0 once everything has expired.
    #[doc(hidden)]
    pub fn pending_deadlines(&self) -> usize {
        lock(&self.deadlines).queue.len()
    }

    /// Takes the room's pending check out of the queue.
    fn unschedule(&self, st: &mut RoomInner) {
        if let Some(key) = st.scheduled.take() {
            lock(&self.deadlines).queue.remove(&key);
        }
    }

    fn push_deadline(&self, at: Instant, what: Deadline) -> (Instant, u64) {
        let mut dl = lock(&self.deadlines);
        dl.seq += 1;
        let seq = dl.seq;
        let earliest = dl.queue.keys().next().is_none_or(|(first, _)| at < *first);
        dl.queue.insert((at, seq), what);
        drop(dl);
        if earliest {
            self.sweeper_wake.notify_one();
        }
        (at, seq)
    }

    /// Runs the sweeper until the task is dropped: sleeps until the earliest deadline (at
    /// most the sweep interval), then processes everything due.
    pub async fn run_sweeper(self: Arc<Self>) {
        loop {
            let next = lock(&self.deadlines).queue.keys().next().map(|(at, _)| *at);
            let cap = Instant::now() + self.config.room_sweep_interval;
            let until = next.map_or(cap, |n| n.min(cap));
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = self.sweeper_wake.notified() => continue,
            }
            self.sweep(Instant::now());
        }
    }

    /// Processes every deadline due at `now`: TTL warnings and expiry, reconnect graces,
    /// empty and idle rooms, tombstones. Returns what it removed.
    pub fn sweep(&self, now: Instant) -> Removed {
        let mut removed = Removed::default();
        loop {
            let due = {
                let mut dl = lock(&self.deadlines);
                match dl.queue.first_key_value() {
                    Some((&(at, _), _)) if at <= now => dl.queue.pop_first(),
                    _ => None,
                }
            };
            let Some(((fired_at, _), what)) = due else {
                break;
            };
            match what {
                Deadline::Tombstone(id) => {
                    let mut index = lock(&self.index);
                    if index.tombstones.get(&id).is_some_and(|until| *until <= now) {
                        index.tombstones.remove(&id);
                    }
                }
                Deadline::Room(room) => {
                    let r = self.check_room(&room, fired_at, now);
                    removed.rooms += r.rooms;
                    removed.peers += r.peers;
                }
            }
        }
        self.stats.sweeps.fetch_add(1, Relaxed);
        if removed != Removed::default() {
            tracing::debug!(
                rooms = removed.rooms,
                peers = removed.peers,
                "sweep removed"
            );
        }
        removed
    }

    fn check_room(&self, room: &Arc<Room>, fired_at: Instant, now: Instant) -> Removed {
        let mut removed = Removed::default();
        let closure = {
            let mut st = lock(&room.inner);
            if st.scheduled.is_some_and(|(s, _)| s <= fired_at) {
                st.scheduled = None;
            }
            let closure = self.check_locked(room, &mut st, now, &mut removed);
            if closure.is_none() {
                let next = self.next_check(&st);
                self.schedule(room, &mut st, next);
            }
            closure
        };
        if closure.is_some() {
            removed.rooms += 1;
        }
        self.forget(room, closure);
        removed
    }

    fn check_locked(
        &self,
        room: &Room,
        st: &mut RoomInner,
        now: Instant,
        removed: &mut Removed,
    ) -> Option<Closure> {
        if st.closed.is_some() {
            return None;
        }
        let cfg = &self.config;
        let clustered = self.cluster.get().is_some();
        if let Some(expires_at) = st.expires_at {
            if expires_at <= now {
                removed.peers += st.local_members();
                return Some(self.close_locked(room, st, CloseReason::Expired, true));
            }
            if !st.expiry_warned && expires_at.saturating_duration_since(now) <= EXPIRY_WARNING {
                st.expiry_warned = true;
                st.send_all(&self.expiring_frame(&room.id, expires_at, now), None);
            }
        }
        while let Some(i) = st.peers.iter().position(|m| {
            m.disconnected_at
                .is_some_and(|at| at + cfg.reconnect_grace <= now)
        }) {
            removed.peers += 1;
            if let Some(closure) = self.remove_member(room, st, i, LeaveReason::Disconnected, now) {
                return Some(closure);
            }
        }
        if st.peers.is_empty() {
            let empty_expired = st
                .empty_since
                .is_some_and(|since| since + cfg.room_empty_grace <= now);
            if empty_expired || st.last_activity + cfg.room_idle_timeout <= now {
                st.closed = Some(Closure::Deleted);
                if clustered {
                    self.emit(Op {
                        store: Some(Store::DeleteIfEmpty {
                            room: room.id.clone(),
                        }),
                        to: Vec::new(),
                        event: None,
                        frame: None,
                    });
                }
                return Some(Closure::Deleted);
            }
        } else if st.last_activity + cfg.room_idle_timeout <= now {
            removed.peers += st.local_members();
            return Some(self.close_locked(room, st, CloseReason::Idle, true));
        } else if clustered && st.local_members() == 0 {
            // Only other instances' members left: their instances keep the room; drop
            // our mirror quietly.
            st.closed = Some(Closure::Deleted);
            return Some(Closure::Deleted);
        }
        None
    }
}

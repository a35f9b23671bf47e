//! A room as a state machine: its settings, its members in join order, its host and its
//! clocks, and every transition (join, leave, reconnect grace, host hand-over, TTL,
//! replacement, close). Plain synchronous code: no socket, no task, no Redis. Frames go to
//! members' send queues ([`Conn::send`](crate::conn::Conn::send) never blocks), and what
//! the rest of the cluster must hear goes to the [`Broker`] seam, the same call whether
//! the instance runs alone or not. The registry owns the locking and the timers around
//! it. See `docs/lifecycle.md` for the rules and `docs/architecture.md` for the layout.
//!
//! - [`member`]: one member and where it is connected.
//! - `membership`: join, leave, disconnect, close.
//! - `traffic`: relay and broadcast.
//! - `timers`: what is due when (grace, empty room, idle, TTL).
//! - `mirror`: applying what other instances tell.

pub mod member;
mod membership;
mod mirror;
mod timers;
mod traffic;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::broker::{Broker, Event, Grant, Op, Store};
use crate::config::SignalingConfig;
use crate::options::RoomOptions;
use crate::protocol::{PeerInfo, PeerStatus, RoomMeta, RoomState};
use crate::time::Clock;
use member::Member;

/// How long before TTL expiry peers get `room-expiring`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(60);
/// How long a mirror of a room without local members is kept (cluster mode).
pub const MIRROR_LINGER: Duration = Duration::from_secs(2);

/// What a transition needs from outside the room: the settings, the seam to the rest of
/// the cluster, and the wall clock.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// Limits and timings.
    pub config: &'a SignalingConfig,
    /// Where cluster changes go.
    pub broker: &'a dyn Broker,
    /// Wall-clock conversion.
    pub clock: &'a Clock,
}

impl Env<'_> {
    fn emit(&self, op: Op) {
        self.broker.emit(op);
    }
}

/// How a room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closure {
    /// Closed with a reason: the id is refused for a while.
    Tombstoned,
    /// Removed quietly (empty or never used, or only mirrored here): the id is free again.
    Deleted,
}

/// What a cleanup pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Rooms closed or deleted.
    pub rooms: usize,
    /// Peers disconnected or removed.
    pub peers: usize,
}

/// A room: its id and its lock-protected [`State`].
pub struct Room {
    /// Room id.
    pub id: Arc<str>,
    state: Mutex<State>,
}

impl Room {
    /// A room in `state`.
    pub fn new(state: State) -> Arc<Self> {
        Arc::new(Self {
            id: state.id.clone(),
            state: Mutex::new(state),
        })
    }

    /// Locks the room's state. Never held across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Everything a room knows.
pub struct State {
    id: Arc<str>,
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
    /// The deadline-queue key of the room's one pending check (kept by the registry's
    /// deadline queue, which takes a superseded entry out so it cannot keep the room
    /// allocated until it fires).
    pub(crate) scheduled: Option<(Instant, u64)>,
    next_order: u64,
    /// Sorted by join order: the first is the longest present.
    members: Vec<Member>,
}

impl State {
    /// A new, empty room created at `now`: by `POST /api/rooms` (with a host named ahead of
    /// its join and maybe a password) or by its first joiner.
    pub fn new(
        id: Arc<str>,
        opts: RoomOptions,
        host: Option<(Arc<str>, Option<String>)>,
        password_hash: Option<Arc<str>>,
        clock: &Clock,
        now: Instant,
    ) -> Self {
        let (host_id, host_name) = host.map_or((None, None), |(id, name)| (Some(id), name));
        Self {
            id,
            name: opts.name,
            host_id,
            host_name,
            created_at_ms: clock.wall_ms(now),
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
            members: Vec::new(),
        }
    }

    /// A mirror of a room that only other instances hold members of (yet).
    pub fn mirror(id: Arc<str>, config: &SignalingConfig, clock: &Clock, now: Instant) -> Self {
        let opts = RoomOptions::defaults(&id, config.max_peers_per_room);
        let mut st = Self::new(id, opts, None, None, clock, now);
        st.ever_joined = true;
        st
    }

    // ---- queries ----------------------------------------------------------------------

    /// The room id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// How it ended, once it has.
    pub fn closed(&self) -> Option<Closure> {
        self.closed
    }

    /// Members in join order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The host's userId.
    pub fn host(&self) -> Option<&Arc<str>> {
        self.host_id.as_ref()
    }

    /// Member limit.
    pub fn max_peers(&self) -> usize {
        self.max_peers
    }

    /// The password hash, for token admission.
    pub fn password_hash(&self) -> Option<&Arc<str>> {
        self.password_hash.as_ref()
    }

    /// Last activity.
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// Whether `user` is a member (in any location).
    pub fn is_member(&self, user: &str) -> bool {
        self.position_of_user(user).is_some()
    }

    /// Members held by this instance (reconnecting ones included).
    pub fn local_members(&self) -> usize {
        self.members.iter().filter(|m| m.is_local()).count()
    }

    /// Distinct instances holding remote members.
    pub fn remote_instances(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for inst in self.members.iter().filter_map(Member::remote_instance) {
            if !out.contains(inst) {
                out.push(inst.clone());
            }
        }
        out
    }

    /// Every member's `PeerInfo`.
    pub fn infos(&self) -> Vec<PeerInfo> {
        self.members
            .iter()
            .map(|m| m.info(self.host_id.as_ref()))
            .collect()
    }

    /// The room's metadata at `now`.
    pub fn meta(&self, clock: &Clock, now: Instant, with_peers: bool) -> RoomMeta {
        let host_name = self
            .host_id
            .as_ref()
            .and_then(|h| self.members.iter().find(|m| m.user_id == *h))
            .map(|m| m.user_name.clone())
            .or_else(|| self.host_name.clone());
        let state = if self.closed.is_some() {
            RoomState::Closed
        } else if self
            .members
            .iter()
            .any(|m| m.status() != PeerStatus::Reconnecting)
        {
            RoomState::Active
        } else {
            RoomState::Idle
        };
        RoomMeta {
            room_id: self.id.clone(),
            room_name: self.name.clone(),
            host_id: self.host_id.clone(),
            host_name,
            created_at: self.created_at_ms,
            last_activity: clock.wall_ms(self.last_activity),
            state,
            peer_count: self.members.len(),
            max_peers: self.max_peers,
            has_password: self.has_password,
            expires_at: self.expires_at.map(|at| clock.wall_ms(at)),
            time_until_expiration: self
                .expires_at
                .map(|at| at.saturating_duration_since(now).as_millis() as u64),
            peers: with_peers.then(|| self.infos()),
        }
    }

    /// What Redis needs to recreate the room after losing it.
    pub fn grant(&self, clock: &Clock) -> Grant {
        Grant {
            name: self.name.clone(),
            host: self.host_id.as_deref().map(str::to_owned),
            host_name: self.host_name.clone(),
            created_at: self.created_at_ms,
            max_peers: self.max_peers,
            expires_at: self.expires_at.map(|at| clock.wall_ms(at)),
            ttl_seconds: self.ttl.map(|d| d.as_secs()),
            destroy_on_host_leave: self.destroy_on_host_leave,
            has_password: self.has_password,
            order: self.next_order,
            connected_at: self.created_at_ms,
            previous_instance: None,
            members: Vec::new(),
        }
    }

    // ---- helpers for the transitions ----------------------------------------------------

    fn position_of_conn(&self, conn_id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.is_on(conn_id))
    }

    fn position_of_user(&self, user: &str) -> Option<usize> {
        self.members.iter().position(|m| &*m.user_id == user)
    }

    /// Queues `frame` to every locally connected member but `except_conn`; returns how
    /// many took it.
    fn send_all(&self, frame: &Utf8Bytes, except_conn: Option<u64>) -> u64 {
        let mut sent = 0;
        for conn in self.members.iter().filter_map(Member::conn) {
            if Some(conn.id) != except_conn && conn.send(frame) {
                sent += 1;
            }
        }
        sent
    }

    /// `peer-reconnected` of `user` to every locally connected member but `except_conn`:
    /// a member got its place back, on this instance or another.
    fn announce_reconnected(&self, user: &str, except_conn: Option<u64>) {
        let frame: Utf8Bytes = crate::protocol::ServerMessage::PeerReconnected {
            from: user,
            user_id: user,
            room_id: &self.id,
        }
        .encode()
        .into();
        self.send_all(&frame, except_conn);
    }

    fn insert_sorted(&mut self, member: Member) -> usize {
        let at = self.members.partition_point(|m| m.order < member.order);
        self.members.insert(at, member);
        at
    }

    /// Asks the cluster to store `store` and tells the instances mirroring the room about
    /// the event `make` builds (only built when somebody is to hear it).
    fn tell(&self, env: &Env, store: Option<Store>, make: impl FnOnce() -> Event) {
        let to = self.remote_instances();
        if to.is_empty() && store.is_none() {
            return;
        }
        env.emit(Op {
            store,
            to,
            event: Some(make()),
            frame: None,
        });
    }
}

//! The seam between this instance's rooms and the rest of the cluster: what instances tell
//! each other, what the registry asks the cluster to store, and the [`Broker`] that carries
//! both. The registry calls its broker the same way whether it runs alone ([`Standalone`],
//! where there is nobody to tell) or in a cluster (`cluster::RedisCluster`); it never asks
//! which. See `docs/architecture.md#the-broker-seam` and `docs/cluster.md`.
//!
//! Every instance keeps, for each room it has local members in, a mirror of the whole
//! membership: its own members with their connections, the others' as remote members
//! tagged with their instance. Membership changes are decided where they happen (joins are
//! checked atomically in Redis first) and then told to the instances that mirror the room,
//! which apply them with the same deterministic rules (the next host is the member with the
//! lowest join order), so every mirror agrees without further coordination.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::{CloseReason, LeaveReason, Presence, RoomMeta};

/// A member as stored in Redis and sent between instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMember {
    /// userId.
    #[serde(rename = "u")]
    pub user: String,
    /// Display name.
    #[serde(rename = "n")]
    pub name: String,
    /// Join time (ms).
    #[serde(rename = "c")]
    pub connected_at: u64,
    /// Cluster-wide join order in its room (lower joined earlier).
    #[serde(rename = "o")]
    pub order: u64,
    /// Instance that holds its connection.
    #[serde(rename = "i")]
    pub instance: String,
    /// `active`, `idle` or `reconnecting`.
    #[serde(rename = "s")]
    pub status: WireStatus,
}

/// Member status on the wire between instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireStatus {
    /// Connected, active.
    Active,
    /// Connected, presence idle.
    Idle,
    /// Connection dropped, within its grace.
    Reconnecting,
}

/// A change one instance tells the others about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Event {
    /// A member joined on the sending instance.
    Joined {
        /// Room id.
        room: String,
        /// The member.
        member: WireMember,
    },
    /// A member of the sending instance left or was removed.
    Left {
        /// Room id.
        room: String,
        /// userId.
        user: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A member's status changed (reconnecting, presence).
    Status {
        /// Room id.
        room: String,
        /// userId.
        user: String,
        /// New status.
        status: WireStatus,
    },
    /// A member's connection moved to `instance` (reconnect or second tab there).
    Moved {
        /// Room id.
        room: String,
        /// userId.
        user: String,
        /// Where it lives now.
        instance: String,
        /// Its display name now.
        name: String,
    },
    /// The room closed.
    Closed {
        /// Room id.
        room: String,
        /// Why.
        reason: CloseReason,
    },
    /// Deliver the attached frame to member `to`.
    Relay {
        /// Room id.
        room: String,
        /// Target userId.
        to: String,
    },
    /// Deliver the attached frame to every local member except `from`.
    Broadcast {
        /// Room id.
        room: String,
        /// Sender userId.
        from: String,
        /// New presence of the sender, for `presence` broadcasts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presence: Option<Presence>,
    },
    /// The room saw activity (keeps every mirror's idle clock honest).
    Activity {
        /// Room id.
        room: String,
    },
    /// A `/yjs` publish: deliver the attached fields (a JSON object without `clients`) to
    /// the local subscribers of `room` (the topic).
    YjsPublish {
        /// Topic (the room id).
        room: String,
    },
    /// After a Redis outage: the sender's members of a room, to merge.
    Hello {
        /// Room id.
        room: String,
        /// The sender's members.
        members: Vec<WireMember>,
    },
}

impl Event {
    /// The room the event concerns.
    pub fn room(&self) -> &str {
        match self {
            Event::Joined { room, .. }
            | Event::Left { room, .. }
            | Event::Status { room, .. }
            | Event::Moved { room, .. }
            | Event::Closed { room, .. }
            | Event::Relay { room, .. }
            | Event::Broadcast { room, .. }
            | Event::Activity { room }
            | Event::YjsPublish { room }
            | Event::Hello { room, .. } => room,
        }
    }
}

/// A change the registry asks the cluster to write to Redis.
#[derive(Debug, Clone, PartialEq)]
pub enum Store {
    /// Remove a member (if it still belongs to this instance) and pick the next host.
    Left {
        /// Room id.
        room: Arc<str>,
        /// userId.
        user: Arc<str>,
    },
    /// Update a member's status.
    Status {
        /// Room id.
        room: Arc<str>,
        /// userId.
        user: Arc<str>,
        /// New status.
        status: WireStatus,
    },
    /// Close the room cluster-wide (tombstone it); publish only if this call closed it.
    Close {
        /// Room id.
        room: Arc<str>,
    },
    /// Remove a member of a dead instance.
    Reap {
        /// Room id.
        room: Arc<str>,
        /// userId.
        user: Arc<str>,
        /// The dead instance.
        instance: Arc<str>,
    },
    /// Delete the room if nobody is in it any more.
    DeleteIfEmpty {
        /// Room id.
        room: Arc<str>,
    },
    /// This instance has (or no longer has) `/yjs` subscribers of `topic`.
    YjsTopic {
        /// Topic.
        topic: Arc<str>,
        /// Whether it has any.
        subscribed: bool,
    },
    /// Publish the op's event to every other instance with subscribers of `topic`.
    YjsFanout {
        /// Topic.
        topic: Arc<str>,
    },
}

/// One thing for the cluster task to do: store, then tell `to`.
#[derive(Debug, Clone)]
pub struct Op {
    /// Redis change first (if any).
    pub store: Option<Store>,
    /// Instances to tell.
    pub to: Vec<Arc<str>>,
    /// What to tell them.
    pub event: Option<Event>,
    /// Frame carried with `Relay`/`Broadcast`.
    pub frame: Option<Utf8Bytes>,
}

/// A join to be checked cluster-wide before it happens locally.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Room id.
    pub room_id: Arc<str>,
    /// userId.
    pub user_id: Arc<str>,
    /// Display name.
    pub user_name: String,
    /// `create-room` options (refuse an existing room), if any.
    pub create: Option<crate::options::RoomOptions>,
    /// Whether the token was issued after a password check.
    pub password_ok: bool,
    /// Whether new rooms are refused locally (memory pressure).
    pub refuse_new_rooms: bool,
}

/// A boxed future, for the async calls of [`Broker`] and [`SharedRooms`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The registry's view of the rest of the cluster: who we are, and a non-blocking queue of
/// work.
pub trait Broker: Send + Sync + 'static {
    /// This instance's id.
    fn instance(&self) -> &Arc<str>;
    /// Queues an operation (never blocks; dropped when the queue is full or Redis is down).
    fn emit(&self, op: Op);
    /// Checks and records a join cluster-wide. `Ok(None)` means nobody else decides: the
    /// join is checked locally (standalone, or Redis unreachable and the state published
    /// when it is back).
    fn reserve_join(
        self: Arc<Self>,
        req: JoinRequest,
    ) -> BoxFuture<'static, Result<Option<Grant>, crate::ErrorCode>>;
    /// The cluster's shared record of rooms while it can be reached; `None` when this
    /// instance's registry is the record (it runs alone, or Redis is unreachable).
    fn shared_rooms(&self) -> Option<&dyn SharedRooms>;
    /// How this instance is connected to the rest of the cluster.
    fn status(&self) -> BrokerStatus;
}

/// What Redis granted a join: the room as the cluster knows it.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Room display name.
    pub name: String,
    /// Host userId.
    pub host: Option<String>,
    /// Host display name given at creation.
    pub host_name: Option<String>,
    /// Creation time (ms).
    pub created_at: u64,
    /// Member limit.
    pub max_peers: usize,
    /// Absolute expiry (ms), once the TTL runs.
    pub expires_at: Option<u64>,
    /// TTL (seconds), if any.
    pub ttl_seconds: Option<u64>,
    /// Close when the host leaves.
    pub destroy_on_host_leave: bool,
    /// Whether tokens need a password.
    pub has_password: bool,
    /// The joiner's join order.
    pub order: u64,
    /// The joiner's original join time (ms), kept across reconnects and moves.
    pub connected_at: u64,
    /// The instance that held this user's place before, when it was another one (the
    /// join then moves the member here instead of adding it).
    pub previous_instance: Option<String>,
    /// Every member (the joiner included).
    pub members: Vec<WireMember>,
}

/// The broker of an instance that runs alone: it has no other instance to tell and nothing
/// to store, and leaves every join to the local checks.
pub struct Standalone {
    instance: Arc<str>,
}

impl Default for Standalone {
    fn default() -> Self {
        Self {
            instance: "standalone".into(),
        }
    }
}

impl Broker for Standalone {
    fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    fn emit(&self, _op: Op) {}

    fn reserve_join(
        self: Arc<Self>,
        _req: JoinRequest,
    ) -> BoxFuture<'static, Result<Option<Grant>, crate::ErrorCode>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn shared_rooms(&self) -> Option<&dyn SharedRooms> {
        None
    }

    fn status(&self) -> BrokerStatus {
        BrokerStatus::Standalone
    }
}

/// How an instance is connected to the rest of the cluster (`/health`, `/stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerStatus {
    /// It runs alone.
    Standalone,
    /// It shares rooms through Redis.
    Redis {
        /// Whether Redis answered the last liveness round.
        reachable: bool,
        /// This instance's id.
        instance: Arc<str>,
    },
}

/// A room the HTTP API creates ahead of its first join (`POST /api/rooms`).
#[derive(Debug, Clone, Copy)]
pub struct NewRoom<'a> {
    /// Room id.
    pub room_id: &'a str,
    /// Validated options.
    pub options: &'a crate::options::RoomOptions,
    /// The host named ahead of its join.
    pub host_id: &'a str,
    /// Its display name.
    pub host_name: Option<&'a str>,
    /// Argon2 hash of the room password.
    pub password_hash: Option<&'a str>,
}

/// The cluster-wide record of rooms that the HTTP API reads and changes (in Redis, in
/// cluster mode). Errors are the wire codes the API answers with.
pub trait SharedRooms: Send + Sync {
    /// Token admission: full and closed rooms refuse newcomers. Returns the password hash.
    fn admission<'a>(
        &'a self,
        room_id: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<str>>, crate::ErrorCode>>;
    /// A room's metadata, with its peers.
    fn room<'a>(&'a self, room_id: &'a str) -> BoxFuture<'a, Result<RoomMeta, crate::ErrorCode>>;
    /// Creates a room ahead of its first join.
    fn create_room<'a>(
        &'a self,
        room: NewRoom<'a>,
    ) -> BoxFuture<'a, Result<RoomMeta, crate::ErrorCode>>;
    /// Every room (without peers), ordered by id.
    fn list_rooms(&self) -> BoxFuture<'_, Result<Vec<RoomMeta>, crate::ErrorCode>>;
    /// Closes a room no member of which is held here.
    fn close_room<'a>(
        &'a self,
        room_id: &'a str,
        reason: CloseReason,
    ) -> BoxFuture<'a, Result<(), crate::ErrorCode>>;
    /// How many rooms the cluster has.
    fn room_count(&self) -> BoxFuture<'_, Option<u64>>;
}

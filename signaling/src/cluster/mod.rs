//! Cluster mode: several instances share rooms through Redis.
//!
//! - Room metadata and membership live in Redis (`sb:r:{room}` hash, `sb:m:{room}` hash of
//!   members, `sb:rooms` set, `sb:t:{room}` tombstones), with key TTLs refreshed while an
//!   instance holds members. Every decision that must hold cluster-wide (room limits,
//!   `ROOM_EXISTS`, `maxPeers`, host on first join, tombstones) is one Lua script, so it is
//!   atomic rather than read-then-write.
//! - Each instance has one pub/sub channel, `sb:i:{instance}`. An event about a room goes
//!   to the channels of the instances that hold its other members (the local mirror knows
//!   them). Per-instance channels mean one subscription per instance for its whole life —
//!   nothing to (re)subscribe when rooms come and go or after a Redis restart — and a relay
//!   is delivered to exactly one instance. See `docs/cluster.md`.
//! - Each instance refreshes a liveness key `sb:a:{instance}`; when one disappears, the
//!   others remove its members (`peer-left`, `disconnected`) and clean them out of Redis.
//! - When Redis is unreachable, `/health` says `degraded`, local peers keep relaying among
//!   themselves and joins are decided locally; when it returns, every instance writes its
//!   local rooms and members back (a Redis that restarted empty is rebuilt this way) and
//!   tells the others.
//!
//! [`RedisCluster`] is the registry's [`Broker`] in cluster mode. Its parts: `scripts` (the
//! Lua), `records` (reading Redis replies), `join` (the checked join), `publisher` (the
//! operation queue to pipelines), `wire` (the packed channel format), `subscriber`,
//! `liveness` (deaths, outages, resync) and `rooms` (the HTTP API's shared record).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{
    BoxFuture, Broker, BrokerStatus, Grant, JoinRequest, NewRoom, Op, SharedRooms,
};
use crate::error::ErrorCode;
use crate::protocol::{CloseReason, RoomMeta};
use crate::registry::Registry;

mod join;
mod liveness;
mod publisher;
mod records;
mod rooms;
mod scripts;
mod subscriber;
mod wire;

use scripts::Scripts;

/// Queued operations before new ones are dropped (while Redis is slow or down).
const OP_QUEUE: usize = 65_536;
/// Operations sent to Redis in one pipeline at most.
const BATCH: usize = 512;
/// How often liveness is refreshed and other instances are checked.
const LIVENESS_TICK: Duration = Duration::from_secs(1);
/// How often room keys' TTLs are refreshed.
const KEY_REFRESH: Duration = Duration::from_secs(10);
/// TTL of room keys while an instance holds members (refreshed every [`KEY_REFRESH`]).
const KEY_TTL: Duration = Duration::from_secs(60);
/// How long a tombstone refuses a closed room's id.
const TOMBSTONE_MS: u64 = 60_000;

fn room_key(room: &str) -> String {
    format!("sb:r:{room}")
}
fn members_key(room: &str) -> String {
    format!("sb:m:{room}")
}
fn tomb_key(room: &str) -> String {
    format!("sb:t:{room}")
}
fn alive_key(instance: &str) -> String {
    format!("sb:a:{instance}")
}
fn yjs_key(topic: &str) -> String {
    format!("sb:y:{topic}")
}
fn channel(instance: &str) -> String {
    format!("sb:i:{instance}")
}
const ROOMS_KEY: &str = "sb:rooms";

/// Settings of cluster mode.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Redis URL.
    pub redis_url: String,
    /// How long an instance may stay silent before the others remove its peers.
    pub instance_timeout: Duration,
}

/// Topic → (when looked up, other instances with subscribers).
type YjsCache = HashMap<Arc<str>, (tokio::time::Instant, Vec<String>)>;

/// The Redis side of cluster mode.
pub struct RedisCluster {
    instance: Arc<str>,
    client: redis::Client,
    conn: ConnectionManager,
    ops: mpsc::Sender<Op>,
    ops_rx: Mutex<Option<mpsc::Receiver<Op>>>,
    healthy: AtomicBool,
    registry: OnceLock<Arc<Registry>>,
    yjs_cache: Mutex<YjsCache>,
    scripts: Scripts,
    config: ClusterConfig,
    logged_drop: AtomicBool,
}

impl RedisCluster {
    /// Connects lazily (startup does not wait for Redis) and returns the cluster handle.
    pub fn new(config: ClusterConfig) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(config.redis_url.as_str()).map_err(|e| e.to_string())?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| e.to_string())?;
        let (ops, ops_rx) = mpsc::channel(OP_QUEUE);
        Ok(Arc::new(Self {
            instance: uuid::Uuid::new_v4().simple().to_string().into(),
            client,
            conn,
            ops,
            ops_rx: Mutex::new(Some(ops_rx)),
            healthy: AtomicBool::new(false),
            registry: OnceLock::new(),
            yjs_cache: Mutex::new(HashMap::new()),
            scripts: Scripts::new(),
            config,
            logged_drop: AtomicBool::new(false),
        }))
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Whether Redis answered the last liveness round.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Binds the cluster to the registry and starts its tasks (publisher, subscriber,
    /// liveness) until `stop` is cancelled: then the subscriber and liveness stop at once,
    /// and the publisher sends what is already queued (the leaves of a drain) and ends.
    /// Returns the closed tracker of those tasks, to wait for.
    pub fn start(
        self: &Arc<Self>,
        registry: Arc<Registry>,
        stop: CancellationToken,
    ) -> TaskTracker {
        let _ = self.registry.set(registry);
        let rx = self.ops_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let tasks = TaskTracker::new();
        if let Some(rx) = rx {
            tasks.spawn(self.clone().publish_loop(rx, stop.clone()));
        }
        tasks.spawn(
            stop.clone()
                .run_until_cancelled_owned(self.clone().subscribe_loop()),
        );
        tasks.spawn(stop.run_until_cancelled_owned(self.clone().liveness_loop()));
        tasks.close();
        tasks
    }

    fn registry(&self) -> Option<&Arc<Registry>> {
        self.registry.get()
    }
}

impl Broker for RedisCluster {
    fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    fn emit(&self, op: Op) {
        if self.ops.try_send(op).is_err() && !self.logged_drop.swap(true, Relaxed) {
            tracing::warn!(
                "cluster queue full or closed: dropping cluster updates until Redis catches up"
            );
        }
    }

    fn reserve_join(
        self: Arc<Self>,
        req: JoinRequest,
    ) -> BoxFuture<'static, Result<Option<Grant>, ErrorCode>> {
        Box::pin(async move { self.join_in_redis(req).await })
    }

    fn shared_rooms(&self) -> Option<&dyn SharedRooms> {
        self.is_healthy().then_some(self as &dyn SharedRooms)
    }

    fn status(&self) -> BrokerStatus {
        BrokerStatus::Redis {
            reachable: self.is_healthy(),
            instance: self.instance.clone(),
        }
    }
}

impl SharedRooms for RedisCluster {
    fn admission<'a>(
        &'a self,
        room_id: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<str>>, ErrorCode>> {
        Box::pin(self.admission(room_id, user_id))
    }

    fn room<'a>(&'a self, room_id: &'a str) -> BoxFuture<'a, Result<RoomMeta, ErrorCode>> {
        Box::pin(async move { self.room(room_id).await })
    }

    fn create_room<'a>(&'a self, room: NewRoom<'a>) -> BoxFuture<'a, Result<RoomMeta, ErrorCode>> {
        Box::pin(async move {
            self.create_room(room).await?;
            self.room(room.room_id).await
        })
    }

    fn list_rooms(&self) -> BoxFuture<'_, Result<Vec<RoomMeta>, ErrorCode>> {
        Box::pin(self.list_rooms())
    }

    fn close_room<'a>(
        &'a self,
        room_id: &'a str,
        reason: CloseReason,
    ) -> BoxFuture<'a, Result<(), ErrorCode>> {
        Box::pin(self.close_room(room_id, reason))
    }

    fn room_count(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(self.room_count())
    }
}

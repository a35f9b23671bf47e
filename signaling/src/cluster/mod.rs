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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{
    BoxFuture, ClusterLink, Event, Grant, JoinRequest, Op, Store, WireMember, WireStatus,
};
use crate::error::ErrorCode;
use crate::protocol::{CloseReason, PeerInfo, PeerStatus, RoomMeta, RoomState};
use crate::registry::{Registry, RoomOptions};
use crate::time::now_ms;

mod wire;

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

const JOIN_LUA: &str = r#"
local room, members, rooms, tomb = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', tomb) == 1 then return {'ERR', 'ROOM_CLOSED'} end
local exists = redis.call('EXISTS', room) == 1
if exists and ARGV[6] == '1' then return {'ERR', 'ROOM_EXISTS'} end
if not exists then
  if ARGV[15] == '1' or redis.call('SCARD', rooms) >= tonumber(ARGV[7]) then return {'ERR', 'TOO_MANY_ROOMS'} end
  local mp, name, ttl, dohl = ARGV[8], ARGV[1], '', '0'
  if ARGV[6] == '1' then mp, name, ttl, dohl = ARGV[10], ARGV[9], ARGV[11], ARGV[12] end
  redis.call('HSET', room, 'name', name, 'created', ARGV[5], 'maxPeers', mp, 'ttl', ttl, 'dohl', dohl,
    'seq', '0', 'joined', '0', 'host', '', 'hostName', '', 'pw', '', 'expires', '')
  redis.call('SADD', rooms, ARGV[1])
end
local prev = redis.call('HGET', members, ARGV[2])
local member
if not prev then
  local pw = redis.call('HGET', room, 'pw')
  if pw and pw ~= '' and ARGV[13] ~= '1' then
    return {'ERR', 'INVALID_PASSWORD'}
  end
  if redis.call('HLEN', members) >= tonumber(redis.call('HGET', room, 'maxPeers')) then return {'ERR', 'ROOM_FULL'} end
  local host = redis.call('HGET', room, 'host') or ''
  if redis.call('HGET', room, 'joined') ~= '1' then
    redis.call('HSET', room, 'joined', '1')
    local ttl = redis.call('HGET', room, 'ttl')
    if ttl and ttl ~= '' then
      redis.call('HSET', room, 'expires', string.format('%.0f', tonumber(ARGV[5]) + tonumber(ttl) * 1000))
    end
    if host == '' then redis.call('HSET', room, 'host', ARGV[2]) end
  elseif redis.call('HLEN', members) == 0 and host ~= ARGV[2] then
    redis.call('HSET', room, 'host', ARGV[2])
  end
  local order = redis.call('HINCRBY', room, 'seq', 1)
  member = cjson.encode({u = ARGV[2], n = ARGV[4], c = tonumber(ARGV[5]), o = order, i = ARGV[3], s = 'active'})
else
  local m = cjson.decode(prev)
  m.i = ARGV[3]
  m.n = ARGV[4]
  m.s = 'active'
  member = cjson.encode(m)
end
redis.call('HSET', members, ARGV[2], member)
redis.call('PEXPIRE', room, ARGV[14])
redis.call('PEXPIRE', members, ARGV[14])
local previous = ''
if prev then previous = cjson.decode(prev).i end
return {'OK', member, redis.call('HGETALL', room), redis.call('HGETALL', members), previous}
"#;

/// Removes a member if it still belongs to `instance`, and moves the host to the member
/// with the lowest join order (the same rule every mirror applies).
const LEAVE_LUA: &str = r#"
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return 0 end
if cjson.decode(prev).i ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'host') == ARGV[1] then
  local best, bo = '', nil
  local all = redis.call('HGETALL', KEYS[2])
  for k = 1, #all, 2 do
    local o = cjson.decode(all[k + 1]).o
    if bo == nil or o < bo then bo, best = o, all[k] end
  end
  if best ~= '' then redis.call('HSET', KEYS[1], 'host', best) end
end
return 1
"#;

const STATUS_LUA: &str = r#"
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if not prev then return 0 end
local m = cjson.decode(prev)
if m.i ~= ARGV[2] then return 0 end
m.s = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(m))
return 1
"#;

/// Tombstones the room; returns '1' plus its members when this call closed it.
const CLOSE_LUA: &str = r#"
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0'} end
local all = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
local out = {'1'}
for k = 1, #all do out[#out + 1] = all[k] end
return out
"#;

const DELETE_IF_EMPTY_LUA: &str = r#"
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"#;

const CREATE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 1 then return 'ROOM_CLOSED' end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'ROOM_EXISTS' end
if ARGV[12] == '1' or redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[10]) then return 'TOO_MANY_ROOMS' end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'host', ARGV[3], 'hostName', ARGV[4], 'created', ARGV[5],
  'maxPeers', ARGV[6], 'ttl', ARGV[7], 'dohl', ARGV[8], 'pw', ARGV[9], 'seq', '0', 'joined', '0', 'expires', '')
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[11])
return 'OK'
"#;

const ADMIT_LUA: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 1 then return {'ERR', 'ROOM_CLOSED'} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'OK', ''} end
local pw = redis.call('HGET', KEYS[1], 'pw') or ''
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'OK', pw} end
if redis.call('HLEN', KEYS[2]) >= tonumber(redis.call('HGET', KEYS[1], 'maxPeers')) then return {'ERR', 'ROOM_FULL'} end
return {'OK', pw}
"#;

/// Writes a room and this instance's members back after Redis lost them; returns every
/// member, or 'CLOSED' when the room was closed meanwhile.
const RESTORE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[4]) == 1 then return {'CLOSED'} end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'name', ARGV[3], 'host', ARGV[4], 'hostName', ARGV[5], 'created', ARGV[6],
    'maxPeers', ARGV[7], 'ttl', ARGV[8], 'dohl', ARGV[9], 'pw', ARGV[10], 'seq', ARGV[11], 'joined', '1',
    'expires', ARGV[12])
end
redis.call('SADD', KEYS[3], ARGV[1])
for k = 13, #ARGV do
  local m = cjson.decode(ARGV[k])
  redis.call('HSET', KEYS[2], m.u, ARGV[k])
  local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
  if m.o > seq then redis.call('HSET', KEYS[1], 'seq', string.format('%.0f', m.o)) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local out = {'OK'}
local all = redis.call('HGETALL', KEYS[2])
for k = 1, #all do out[#out + 1] = all[k] end
return out
"#;

struct Scripts {
    join: Script,
    close: Script,
    create: Script,
    admit: Script,
    restore: Script,
}

/// Settings of cluster mode.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Redis URL.
    pub redis_url: String,
    /// How long an instance may stay silent before the others remove its peers.
    pub instance_timeout: Duration,
}

/// A room as Redis knows it, for the HTTP API.
#[derive(Debug, Clone)]
pub struct ClusterRoom {
    /// Metadata (with peers).
    pub meta: RoomMeta,
    /// The host's userId.
    pub host: Option<String>,
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

fn parse_hash(values: &[redis::Value]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in values.chunks(2) {
        if let [k, v] = pair {
            if let (Ok(k), Ok(v)) = (
                redis::from_redis_value_ref::<String>(k),
                redis::from_redis_value_ref::<String>(v),
            ) {
                out.insert(k, v);
            }
        }
    }
    out
}

fn parse_members(values: &[redis::Value]) -> Vec<WireMember> {
    let mut out: Vec<WireMember> = parse_hash(values)
        .into_values()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    out.sort_by_key(|m| m.order);
    out
}

fn code_of(s: &str) -> ErrorCode {
    match s {
        "ROOM_CLOSED" => ErrorCode::RoomClosed,
        "ROOM_EXISTS" => ErrorCode::RoomExists,
        "ROOM_FULL" => ErrorCode::RoomFull,
        "TOO_MANY_ROOMS" => ErrorCode::TooManyRooms,
        "INVALID_PASSWORD" => ErrorCode::InvalidPassword,
        _ => ErrorCode::InvalidInput,
    }
}

fn opt(s: Option<&String>) -> Option<&str> {
    s.map(String::as_str).filter(|s| !s.is_empty())
}

fn grant_of(
    room: &HashMap<String, String>,
    members: Vec<WireMember>,
    me: &WireMember,
    default_max: usize,
    previous_instance: Option<String>,
) -> Grant {
    Grant {
        name: room.get("name").cloned().unwrap_or_default(),
        host: opt(room.get("host")).map(str::to_owned),
        host_name: opt(room.get("hostName")).map(str::to_owned),
        created_at: room
            .get("created")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(now_ms),
        max_peers: room
            .get("maxPeers")
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_max),
        expires_at: opt(room.get("expires")).and_then(|v| v.parse().ok()),
        ttl_seconds: opt(room.get("ttl")).and_then(|v| v.parse().ok()),
        destroy_on_host_leave: room.get("dohl").is_some_and(|v| v == "1"),
        has_password: opt(room.get("pw")).is_some(),
        order: me.order,
        connected_at: me.connected_at,
        previous_instance,
        members,
    }
}

/// `PUBLISH` of `payload` on `instance`'s channel, built in one allocation (a command
/// grown argument by argument would copy a large batch several times).
fn publish(instance: &str, payload: &[u8]) -> redis::Cmd {
    let channel = channel(instance);
    let mut cmd = redis::Cmd::with_capacity(3, "PUBLISH".len() + channel.len() + payload.len());
    cmd.arg("PUBLISH").arg(channel).arg(payload);
    cmd
}

/// Channel messages being filled during one pass of the publisher, one per instance.
#[derive(Default)]
struct Outgoing {
    batches: Vec<(Arc<str>, wire::Batch)>,
}

impl Outgoing {
    /// Adds `event` for instance `to`; a batch that has grown full goes into `pipe` now.
    fn add(
        &mut self,
        pipe: &mut redis::Pipeline,
        to: &Arc<str>,
        event: &Event,
        frame: Option<&Utf8Bytes>,
    ) {
        let i = match self.batches.iter().position(|(i, _)| i == to) {
            Some(i) => i,
            None => {
                self.batches.push((to.clone(), wire::Batch::new()));
                self.batches.len() - 1
            }
        };
        let (to, batch) = &mut self.batches[i];
        batch.push(event, frame);
        if batch.is_full() {
            pipe.add_command(publish(to, batch.as_bytes())).ignore();
            batch.clear();
        }
    }

    /// Moves every non-empty batch into `pipe` as one `PUBLISH` each. The buffers stay
    /// for the next pass; those of instances that got nothing since the last flush go.
    fn flush(&mut self, pipe: &mut redis::Pipeline) {
        self.batches.retain_mut(|(to, batch)| {
            if batch.is_empty() {
                return false;
            }
            pipe.add_command(publish(to, batch.as_bytes())).ignore();
            batch.clear();
            true
        });
    }
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
            scripts: Scripts {
                join: Script::new(JOIN_LUA),
                close: Script::new(CLOSE_LUA),
                create: Script::new(CREATE_LUA),
                admit: Script::new(ADMIT_LUA),
                restore: Script::new(RESTORE_LUA),
            },
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
        let _ = self.registry.set(registry.clone());
        registry.set_cluster(self.clone());
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

    // ---- operations queue --------------------------------------------------------------

    /// Takes the queued operations in batches: each pass becomes one Redis pipeline, with
    /// everything for one instance packed into as few messages as possible. Order holds per
    /// instance (its messages are sent in order, and records keep their order inside one);
    /// a Redis write is preceded by every message queued before it. Once `stop` is
    /// cancelled, it no longer waits: it sends what is queued and returns.
    async fn publish_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Op>, stop: CancellationToken) {
        let mut ops = Vec::with_capacity(BATCH);
        let mut out = Outgoing::default();
        loop {
            tokio::select! {
                biased;
                n = rx.recv_many(&mut ops, BATCH) => if n == 0 { return },
                _ = stop.cancelled() => {}
            }
            // Let the connections that are ready run first: what they queue in this turn
            // of the scheduler joins the same pipeline instead of waiting for the next.
            tokio::task::yield_now().await;
            while ops.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            if ops.is_empty() {
                return; // stopped, and nothing is left to send
            }
            if !self.is_healthy() {
                // Redis is away: local peers go on; the state is re-published on return.
                ops.clear();
                continue;
            }
            let mut pipe = redis::pipe();
            for op in ops.drain(..) {
                match op.store {
                    Some(Store::Close { room }) => {
                        // Publish only when this instance closed the room: send what is
                        // queued first, as the script's answer decides.
                        out.flush(&mut pipe);
                        if !pipe.is_empty() {
                            self.send(std::mem::replace(&mut pipe, redis::pipe())).await;
                        }
                        let closed = self
                            .close_in_redis(&room)
                            .await
                            .is_some_and(|(closed, _)| closed);
                        if !closed {
                            continue;
                        }
                    }
                    Some(Store::YjsFanout { topic }) => {
                        let targets = self.yjs_instances(&topic).await;
                        if let Some(event) = &op.event {
                            for to in &targets {
                                out.add(
                                    &mut pipe,
                                    &Arc::from(to.as_str()),
                                    event,
                                    op.frame.as_ref(),
                                );
                            }
                        }
                        continue;
                    }
                    Some(store) => {
                        out.flush(&mut pipe);
                        self.add_store(&mut pipe, &store);
                    }
                    None => {}
                }
                if let Some(event) = &op.event {
                    for to in &op.to {
                        out.add(&mut pipe, to, event, op.frame.as_ref());
                    }
                }
            }
            out.flush(&mut pipe);
            if !pipe.is_empty() {
                self.send(pipe).await;
            }
        }
    }

    async fn send(&self, pipe: redis::Pipeline) {
        let result: Result<(), redis::RedisError> = pipe.query_async(&mut self.conn.clone()).await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "cluster publish failed");
        }
    }

    async fn publish_now(&self, to: &[Arc<str>], event: &Event, frame: Option<&Utf8Bytes>) {
        let mut batch = wire::Batch::new();
        batch.push(event, frame);
        let mut pipe = redis::pipe();
        for t in to {
            pipe.add_command(publish(t, batch.as_bytes())).ignore();
        }
        self.send(pipe).await;
    }

    fn add_store(&self, pipe: &mut redis::Pipeline, store: &Store) {
        match store {
            Store::Left { room, user } => {
                pipe.add_command(Self::leave_cmd(room, user, &self.instance))
                    .ignore();
            }
            Store::Reap {
                room,
                user,
                instance,
            } => {
                pipe.add_command(Self::leave_cmd(room, user, instance))
                    .ignore();
            }
            Store::Status { room, user, status } => {
                let s = match status {
                    WireStatus::Active => "active",
                    WireStatus::Idle => "idle",
                    WireStatus::Reconnecting => "reconnecting",
                };
                pipe.add_command(eval(
                    STATUS_LUA,
                    &[&members_key(room)],
                    &[user, &self.instance, s],
                ))
                .ignore();
            }
            Store::DeleteIfEmpty { room } => {
                let keys = [room_key(room), members_key(room), ROOMS_KEY.to_owned()];
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                pipe.add_command(eval(DELETE_IF_EMPTY_LUA, &keys, &[room]))
                    .ignore();
            }
            Store::YjsTopic {
                topic,
                subscribed: true,
            } => {
                pipe.sadd(yjs_key(topic), &*self.instance).ignore();
                pipe.pexpire(yjs_key(topic), KEY_TTL.as_millis() as i64)
                    .ignore();
            }
            Store::YjsTopic {
                topic,
                subscribed: false,
            } => {
                pipe.srem(yjs_key(topic), &*self.instance).ignore();
            }
            Store::Close { .. } | Store::YjsFanout { .. } => {}
        }
    }

    /// Instances with `/yjs` subscribers of `topic` other than this one (cached a second).
    async fn yjs_instances(&self, topic: &Arc<str>) -> Vec<String> {
        let now = tokio::time::Instant::now();
        if let Some((at, list)) = self
            .yjs_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            if now.duration_since(*at) < Duration::from_secs(1) {
                return list.clone();
            }
        }
        let mut list: Vec<String> = self
            .conn
            .clone()
            .smembers(yjs_key(topic))
            .await
            .unwrap_or_default();
        list.retain(|i| *i != *self.instance);
        let mut cache = self.yjs_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(topic.clone(), (now, list.clone()));
        list
    }

    fn leave_cmd(room: &str, user: &str, instance: &str) -> redis::Cmd {
        eval(
            LEAVE_LUA,
            &[&room_key(room), &members_key(room)],
            &[user, instance],
        )
    }

    async fn close_in_redis(&self, room: &str) -> Option<(bool, Vec<WireMember>)> {
        let mut inv = self.scripts.close.key(room_key(room));
        inv.key(members_key(room))
            .key(ROOMS_KEY)
            .key(tomb_key(room))
            .arg(room)
            .arg(TOMBSTONE_MS);
        let out: Vec<redis::Value> = inv.invoke_async(&mut self.conn.clone()).await.ok()?;
        let closed = out
            .first()
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .is_some_and(|s| s == "1");
        Some((closed, parse_members(out.get(1..).unwrap_or(&[]))))
    }

    // ---- subscriber ----------------------------------------------------------------------

    async fn subscribe_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        let mut subscribed_before = false;
        let mut warned = false;
        loop {
            match self.client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if pubsub.subscribe(channel(&self.instance)).await.is_ok() {
                        backoff = Duration::from_millis(100);
                        if subscribed_before {
                            // Whatever was sent to us while we were away is lost: exchange
                            // state again now that we can hear the answers.
                            self.resync().await;
                        }
                        subscribed_before = true;
                        let mut stream = pubsub.on_message();
                        while let Some(msg) = stream.next().await {
                            let payload = bytes::Bytes::copy_from_slice(msg.get_payload_bytes());
                            match (wire::decode(&payload), self.registry()) {
                                (Ok(records), Some(registry)) => {
                                    for record in records {
                                        match record {
                                            wire::Record::Relay {
                                                room,
                                                to,
                                                frame: Some(frame),
                                            } => registry.deliver(room, to, &frame),
                                            other => {
                                                let (event, frame) = other.into_event();
                                                registry.apply(event, frame);
                                            }
                                        }
                                    }
                                }
                                (Err(e), _) if !warned => {
                                    warned = true;
                                    tracing::warn!(
                                        error = ?e,
                                        "cluster message dropped (another version, or damaged); \
                                         further ones are dropped without a log line"
                                    );
                                }
                                _ => {}
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cluster subscribe failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    // ---- liveness, outages and recovery --------------------------------------------------

    async fn liveness_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(LIVENESS_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut up_since: Option<tokio::time::Instant> = None;
        let mut last_refresh = tokio::time::Instant::now();
        let mut first = true;
        loop {
            tick.tick().await;
            let ttl_ms = self.config.instance_timeout.as_millis() as u64;
            let alive: Result<(), redis::RedisError> = self
                .conn
                .clone()
                .set_options(
                    alive_key(&self.instance),
                    1,
                    redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms)),
                )
                .await;
            match alive {
                Ok(()) => {
                    if !self.healthy.swap(true, Relaxed) {
                        if first {
                            tracing::info!(instance = %self.instance, "connected to Redis");
                        } else {
                            tracing::warn!(instance = %self.instance, "Redis is reachable again; re-publishing local state");
                        }
                        up_since = Some(tokio::time::Instant::now());
                        self.logged_drop.store(false, Relaxed);
                        self.resync().await;
                    }
                    first = false;
                    if last_refresh.elapsed() >= KEY_REFRESH {
                        last_refresh = tokio::time::Instant::now();
                        self.refresh_keys().await;
                    }
                    // Only judge others once our own view had time to settle (after a
                    // Redis restart every liveness key is missing for up to one tick).
                    if up_since.is_some_and(|t| t.elapsed() >= self.config.instance_timeout) {
                        self.reap_dead().await;
                    }
                }
                Err(e) => {
                    if self.healthy.swap(false, Relaxed) || first {
                        tracing::warn!(error = %e, "Redis is unreachable: cluster degraded, local peers keep working");
                    }
                    first = false;
                    up_since = None;
                }
            }
        }
    }

    async fn refresh_keys(&self) {
        let Some(registry) = self.registry() else {
            return;
        };
        let ttl = KEY_TTL.as_millis() as i64;
        let mut pipe = redis::pipe();
        for room in registry.local_rooms() {
            pipe.pexpire(room_key(&room.room_id), ttl).ignore();
            pipe.pexpire(members_key(&room.room_id), ttl).ignore();
        }
        for topic in registry.yjs_topics() {
            pipe.sadd(yjs_key(&topic), &*self.instance).ignore();
            pipe.pexpire(yjs_key(&topic), ttl).ignore();
        }
        let _: Result<(), _> = pipe.query_async(&mut self.conn.clone()).await;
    }

    async fn reap_dead(&self) {
        let Some(registry) = self.registry() else {
            return;
        };
        let others: Vec<Arc<str>> = registry.remote_instances().into_iter().collect();
        if others.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for inst in &others {
            pipe.exists(alive_key(inst));
        }
        let Ok(alive): Result<Vec<bool>, _> = pipe.query_async(&mut self.conn.clone()).await else {
            return;
        };
        for (inst, alive) in others.iter().zip(alive) {
            if !alive {
                let n = registry.drop_instance(inst);
                tracing::warn!(instance = %inst, peers = n, "instance stopped answering; its peers were removed");
            }
        }
    }

    /// Writes local rooms and members back to Redis and tells the other instances of each
    /// room who is here; merges what Redis knows into the local mirrors.
    async fn resync(&self) {
        let Some(registry) = self.registry() else {
            return;
        };
        self.refresh_keys().await;
        for room in registry.local_rooms() {
            let g = &room.grant;
            let mut inv = self.scripts.restore.key(room_key(&room.room_id));
            inv.key(members_key(&room.room_id))
                .key(ROOMS_KEY)
                .key(tomb_key(&room.room_id));
            inv.arg(&*room.room_id)
                .arg(KEY_TTL.as_millis() as u64)
                .arg(&g.name)
                .arg(g.host.as_deref().unwrap_or(""))
                .arg(g.host_name.as_deref().unwrap_or(""))
                .arg(g.created_at)
                .arg(g.max_peers)
                .arg(g.ttl_seconds.map(|t| t.to_string()).unwrap_or_default())
                .arg(if g.destroy_on_host_leave { "1" } else { "0" })
                .arg("")
                .arg(g.order)
                .arg(g.expires_at.map(|t| t.to_string()).unwrap_or_default());
            for m in &room.members {
                inv.arg(serde_json::to_string(m).unwrap_or_default());
            }
            let out: Vec<redis::Value> = match inv.invoke_async(&mut self.conn.clone()).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, room = %room.room_id, "resync failed");
                    return;
                }
            };
            let head = out
                .first()
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
            if head.as_deref() == Some("CLOSED") {
                let _ = registry.close_room(&room.room_id, CloseReason::Admin);
                continue;
            }
            let all = parse_members(out.get(1..).unwrap_or(&[]));
            let hello = Event::Hello {
                room: room.room_id.to_string(),
                members: room.members.clone(),
            };
            registry.apply(
                Event::Hello {
                    room: room.room_id.to_string(),
                    members: all.clone(),
                },
                None,
            );
            let mut to: Vec<Arc<str>> = Vec::new();
            for m in all.iter().filter(|m| *m.instance != *self.instance) {
                if !to.iter().any(|t| **t == *m.instance) {
                    to.push(m.instance.as_str().into());
                }
            }
            self.publish_now(&to, &hello, None).await;
        }
    }

    // ---- HTTP-facing operations -----------------------------------------------------------

    /// Token admission (full/closed rooms refuse newcomers); returns the password hash.
    pub async fn admission(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<Arc<str>>, ErrorCode> {
        let mut inv = self.scripts.admit.key(room_key(room_id));
        inv.key(members_key(room_id))
            .key(tomb_key(room_id))
            .arg(user_id);
        let out: Vec<String> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|_| ErrorCode::TooManyRooms)?;
        match out.as_slice() {
            [ok, pw] if ok == "OK" => Ok((!pw.is_empty()).then(|| Arc::from(pw.as_str()))),
            [_, code] => Err(code_of(code)),
            _ => Err(ErrorCode::InvalidInput),
        }
    }

    /// Creates a room ahead of its first join (`POST /api/rooms`), cluster-wide.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_room(
        &self,
        room_id: &str,
        opts: &RoomOptions,
        host_id: &str,
        host_name: Option<&str>,
        password_hash: Option<&str>,
        max_rooms: usize,
        idle_timeout: Duration,
        refuse: bool,
    ) -> Result<(), ErrorCode> {
        let mut inv = self.scripts.create.key(room_key(room_id));
        inv.key(ROOMS_KEY).key(tomb_key(room_id));
        inv.arg(room_id)
            .arg(&opts.name)
            .arg(host_id)
            .arg(host_name.unwrap_or(""))
            .arg(now_ms())
            .arg(opts.max_peers)
            .arg(
                opts.ttl
                    .map(|t| t.as_secs().to_string())
                    .unwrap_or_default(),
            )
            .arg(if opts.destroy_on_host_leave { "1" } else { "0" })
            .arg(password_hash.unwrap_or(""))
            .arg(max_rooms)
            .arg(idle_timeout.as_millis() as u64)
            .arg(if refuse { "1" } else { "0" });
        let out: String = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|_| ErrorCode::TooManyRooms)?;
        if out == "OK" {
            Ok(())
        } else {
            Err(code_of(&out))
        }
    }

    /// A room as the cluster knows it.
    pub async fn room(&self, room_id: &str) -> Result<ClusterRoom, ErrorCode> {
        let mut pipe = redis::pipe();
        pipe.exists(tomb_key(room_id))
            .hgetall(room_key(room_id))
            .hgetall(members_key(room_id));
        let (tomb, room, members): (bool, HashMap<String, String>, HashMap<String, String>) = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|_| ErrorCode::RoomNotFound)?;
        if tomb {
            return Err(ErrorCode::RoomClosed);
        }
        if room.is_empty() {
            return Err(ErrorCode::RoomNotFound);
        }
        let mut members: Vec<WireMember> = members
            .into_values()
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect();
        members.sort_by_key(|m| m.order);
        Ok(self.cluster_room(room_id, &room, &members))
    }

    fn cluster_room(
        &self,
        room_id: &str,
        room: &HashMap<String, String>,
        members: &[WireMember],
    ) -> ClusterRoom {
        let now = now_ms();
        let host = opt(room.get("host")).map(str::to_owned);
        let peers: Vec<PeerInfo> = members
            .iter()
            .map(|m| PeerInfo {
                user_id: m.user.as_str().into(),
                user_name: m.name.clone(),
                is_host: host.as_deref() == Some(m.user.as_str()),
                connected_at: m.connected_at,
                last_heartbeat: m.connected_at,
                status: match m.status {
                    WireStatus::Active => PeerStatus::Active,
                    WireStatus::Idle => PeerStatus::Idle,
                    WireStatus::Reconnecting => PeerStatus::Reconnecting,
                },
            })
            .collect();
        let expires_at: Option<u64> = opt(room.get("expires")).and_then(|v| v.parse().ok());
        let host_name = host
            .as_deref()
            .and_then(|h| members.iter().find(|m| m.user == h))
            .map(|m| m.name.clone())
            .or_else(|| opt(room.get("hostName")).map(str::to_owned));
        let meta = RoomMeta {
            room_id: room_id.into(),
            room_name: room.get("name").cloned().unwrap_or_default(),
            host_id: host.as_deref().map(Arc::from),
            host_name,
            created_at: room
                .get("created")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            last_activity: now,
            state: if peers.iter().any(|p| p.status != PeerStatus::Reconnecting) {
                RoomState::Active
            } else {
                RoomState::Idle
            },
            peer_count: peers.len(),
            max_peers: room
                .get("maxPeers")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            has_password: opt(room.get("pw")).is_some(),
            expires_at,
            time_until_expiration: expires_at.map(|e| e.saturating_sub(now)),
            peers: Some(peers),
        };
        ClusterRoom { meta, host }
    }

    /// Every room of the cluster, ordered by id (without peers).
    pub async fn list_rooms(&self) -> Result<Vec<RoomMeta>, ErrorCode> {
        let mut ids: Vec<String> = self
            .conn
            .clone()
            .smembers(ROOMS_KEY)
            .await
            .map_err(|_| ErrorCode::RoomNotFound)?;
        ids.sort();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(room_key(id)).hgetall(members_key(id));
        }
        let results: Vec<HashMap<String, String>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|_| ErrorCode::RoomNotFound)?;
        let mut out = Vec::new();
        for (id, pair) in ids.iter().zip(results.chunks(2)) {
            let [room, members] = pair else { continue };
            if room.is_empty() {
                continue; // expired keys of a room nobody refreshes any more
            }
            let mut members: Vec<WireMember> = members
                .values()
                .filter_map(|j| serde_json::from_str(j).ok())
                .collect();
            members.sort_by_key(|m| m.order);
            let mut meta = self.cluster_room(id, room, &members).meta;
            meta.peers = None;
            out.push(meta);
        }
        Ok(out)
    }

    /// Number of rooms in the cluster.
    pub async fn room_count(&self) -> Option<u64> {
        self.conn.clone().scard(ROOMS_KEY).await.ok()
    }

    /// Closes a room cluster-wide (for `DELETE /api/rooms/{id}` when no member is local).
    pub async fn close_room(&self, room_id: &str, reason: CloseReason) -> Result<(), ErrorCode> {
        let (closed, members) = self
            .close_in_redis(room_id)
            .await
            .ok_or(ErrorCode::RoomNotFound)?;
        if !closed {
            return Err(ErrorCode::RoomNotFound);
        }
        let mut to: Vec<Arc<str>> = Vec::new();
        for m in members.iter().filter(|m| *m.instance != *self.instance) {
            if !to.iter().any(|t| **t == *m.instance) {
                to.push(m.instance.as_str().into());
            }
        }
        self.publish_now(
            &to,
            &Event::Closed {
                room: room_id.to_owned(),
                reason,
            },
            None,
        )
        .await;
        Ok(())
    }

    async fn join_in_redis(&self, req: JoinRequest) -> Result<Option<Grant>, ErrorCode> {
        if !self.is_healthy() {
            return Ok(None);
        }
        let Some(registry) = self.registry() else {
            return Ok(None);
        };
        let cfg = registry.config();
        let create = req.create.as_ref();
        let mut inv = self.scripts.join.key(room_key(&req.room_id));
        inv.key(members_key(&req.room_id))
            .key(ROOMS_KEY)
            .key(tomb_key(&req.room_id));
        inv.arg(&*req.room_id)
            .arg(&*req.user_id)
            .arg(&*self.instance)
            .arg(&req.user_name)
            .arg(now_ms())
            .arg(if create.is_some() { "1" } else { "0" })
            .arg(cfg.max_rooms)
            .arg(cfg.max_peers_per_room)
            .arg(create.map(|c| c.name.as_str()).unwrap_or(""))
            .arg(
                create
                    .map(|c| c.max_peers)
                    .unwrap_or(cfg.max_peers_per_room),
            )
            .arg(
                create
                    .and_then(|c| c.ttl)
                    .map(|t| t.as_secs().to_string())
                    .unwrap_or_default(),
            )
            .arg(if create.is_some_and(|c| c.destroy_on_host_leave) {
                "1"
            } else {
                "0"
            })
            .arg(if req.password_ok { "1" } else { "0" })
            .arg(KEY_TTL.as_millis() as u64)
            .arg(if req.refuse_new_rooms { "1" } else { "0" });
        let out: Vec<redis::Value> = match inv.invoke_async(&mut self.conn.clone()).await {
            Ok(v) => v,
            // Redis went away between health checks: decide locally.
            Err(_) => return Ok(None),
        };
        let head = out
            .first()
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .unwrap_or_default();
        if head != "OK" {
            let code = out
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                .unwrap_or_default();
            return Err(code_of(&code));
        }
        let me: WireMember = out
            .get(1)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .and_then(|j| serde_json::from_str(&j).ok())
            .ok_or(ErrorCode::InvalidInput)?;
        let room = match out.get(2) {
            Some(redis::Value::Array(values)) => parse_hash(values),
            _ => HashMap::new(),
        };
        let members = match out.get(3) {
            Some(redis::Value::Array(values)) => parse_members(values),
            _ => Vec::new(),
        };
        let previous = out
            .get(4)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .filter(|p| !p.is_empty() && *p != *self.instance);
        Ok(Some(grant_of(
            &room,
            members,
            &me,
            cfg.max_peers_per_room,
            previous,
        )))
    }
}

/// `EVAL` of a script's source, for use inside pipelines (where a missing script cache after
/// a Redis restart must not fail the batch).
fn eval(src: &str, keys: &[&str], args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(src).arg(keys.len());
    for k in keys {
        c.arg(*k);
    }
    for a in args {
        c.arg(*a);
    }
    c
}

impl ClusterLink for RedisCluster {
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
    ) -> BoxFuture<Result<Option<Grant>, ErrorCode>> {
        Box::pin(async move { self.join_in_redis(req).await })
    }
}

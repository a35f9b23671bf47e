//! Liveness, outages and recovery: this instance's key, the others' deaths, key TTLs, and
//! the state written back when Redis returns.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use redis::AsyncCommands;

use super::records::parse_members;
use super::{
    alive_key, members_key, room_key, tomb_key, yjs_key, RedisCluster, KEY_REFRESH, KEY_TTL,
    LIVENESS_TICK, ROOMS_KEY,
};
use crate::broker::Event;
use crate::protocol::CloseReason;

impl RedisCluster {
    pub(super) async fn liveness_loop(self: Arc<Self>) {
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

    pub(super) async fn refresh_keys(&self) {
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

    pub(super) async fn reap_dead(&self) {
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
    pub(super) async fn resync(&self) {
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
}

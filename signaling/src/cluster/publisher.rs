//! The publisher: takes the registry's queued operations and turns each pass into one Redis
//! pipeline of stores and packed channel messages.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::records::parse_members;
use super::scripts::{eval, DELETE_IF_EMPTY_LUA, LEAVE_LUA, STATUS_LUA};
use super::{
    channel, members_key, room_key, tomb_key, wire, yjs_key, RedisCluster, BATCH, KEY_TTL,
    ROOMS_KEY, TOMBSTONE_MS,
};
use crate::broker::{Event, Op, Store, WireMember, WireStatus};

/// `PUBLISH` of `payload` on `instance`'s channel, built in one allocation (a command
/// grown argument by argument would copy a large batch several times).
pub(super) fn publish(instance: &str, payload: &[u8]) -> redis::Cmd {
    let channel = channel(instance);
    let mut cmd = redis::Cmd::with_capacity(3, "PUBLISH".len() + channel.len() + payload.len());
    cmd.arg("PUBLISH").arg(channel).arg(payload);
    cmd
}

/// Channel messages being filled during one pass of the publisher, one per instance.
#[derive(Default)]
pub(super) struct Outgoing {
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
    /// Takes the queued operations in batches: each pass becomes one Redis pipeline, with
    /// everything for one instance packed into as few messages as possible. Order holds per
    /// instance (its messages are sent in order, and records keep their order inside one);
    /// a Redis write is preceded by every message queued before it. Once `stop` is
    /// cancelled, it no longer waits: it sends what is queued and returns.
    pub(super) async fn publish_loop(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Op>,
        stop: CancellationToken,
    ) {
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

    pub(super) async fn send(&self, pipe: redis::Pipeline) {
        let result: Result<(), redis::RedisError> = pipe.query_async(&mut self.conn.clone()).await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "cluster publish failed");
        }
    }

    pub(super) async fn publish_now(
        &self,
        to: &[Arc<str>],
        event: &Event,
        frame: Option<&Utf8Bytes>,
    ) {
        let mut batch = wire::Batch::new();
        batch.push(event, frame);
        let mut pipe = redis::pipe();
        for t in to {
            pipe.add_command(publish(t, batch.as_bytes())).ignore();
        }
        self.send(pipe).await;
    }

    pub(super) fn add_store(&self, pipe: &mut redis::Pipeline, store: &Store) {
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
    pub(super) async fn yjs_instances(&self, topic: &Arc<str>) -> Vec<String> {
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

    pub(super) fn leave_cmd(room: &str, user: &str, instance: &str) -> redis::Cmd {
        eval(
            LEAVE_LUA,
            &[&room_key(room), &members_key(room)],
            &[user, instance],
        )
    }

    pub(super) async fn close_in_redis(&self, room: &str) -> Option<(bool, Vec<WireMember>)> {
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
}

//! The cluster's record of rooms, as the HTTP API reads and changes it.

use std::collections::HashMap;
use std::sync::Arc;

use redis::AsyncCommands;

use super::records::{code_of, opt};
use super::{members_key, room_key, tomb_key, RedisCluster, ROOMS_KEY};
use crate::broker::{Event, NewRoom, WireMember, WireStatus};
use crate::error::ErrorCode;
use crate::protocol::{CloseReason, PeerInfo, PeerStatus, RoomMeta, RoomState};
use crate::time::now_ms;

impl RedisCluster {
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
    pub async fn create_room(&self, room: NewRoom<'_>) -> Result<(), ErrorCode> {
        let registry = self.registry().ok_or(ErrorCode::TooManyRooms)?;
        let cfg = registry.config();
        let (room_id, opts) = (room.room_id, room.options);
        let mut inv = self.scripts.create.key(room_key(room_id));
        inv.key(ROOMS_KEY).key(tomb_key(room_id));
        inv.arg(room_id)
            .arg(&opts.name)
            .arg(room.host_id)
            .arg(room.host_name.unwrap_or(""))
            .arg(now_ms())
            .arg(opts.max_peers)
            .arg(
                opts.ttl
                    .map(|t| t.as_secs().to_string())
                    .unwrap_or_default(),
            )
            .arg(if opts.destroy_on_host_leave { "1" } else { "0" })
            .arg(room.password_hash.unwrap_or(""))
            .arg(cfg.max_rooms)
            .arg(cfg.room_idle_timeout.as_millis() as u64)
            .arg(if registry.refusing_new_rooms() {
                "1"
            } else {
                "0"
            });
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
    pub async fn room(&self, room_id: &str) -> Result<RoomMeta, ErrorCode> {
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
        Ok(self.room_meta(room_id, &room, &members))
    }

    /// A room's metadata (with peers) from its Redis hash and members.
    fn room_meta(
        &self,
        room_id: &str,
        room: &HashMap<String, String>,
        members: &[WireMember],
    ) -> RoomMeta {
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
        RoomMeta {
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
        }
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
            let mut meta = self.room_meta(id, room, &members);
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
}

//! Room operations of the HTTP API: through Redis in cluster mode (while it answers), on
//! the local registry otherwise. Route handlers call only these, never the registry or the
//! cluster link for rooms directly.

use std::sync::Arc;

use switchboard_signaling::cluster::RedisCluster;
use switchboard_signaling::options::RoomOptions;
use switchboard_signaling::protocol::{CloseReason, RoomMeta};
use switchboard_signaling::ErrorCode;

use crate::state::App;

impl App {
    fn live_cluster(&self) -> Option<&Arc<RedisCluster>> {
        self.cluster.as_ref().filter(|c| c.is_healthy())
    }

    /// Whether `user_id` may get a token for `room_id`; the room's password hash if it has
    /// one.
    pub async fn admission(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<Arc<str>>, ErrorCode> {
        match self.live_cluster() {
            Some(c) => c.admission(room_id, user_id).await,
            None => self
                .registry
                .admission(room_id, user_id)
                .map(|a| a.password_hash),
        }
    }

    /// The room's metadata, with its peers when `with_peers`.
    pub async fn room_meta(&self, room_id: &str, with_peers: bool) -> Result<RoomMeta, ErrorCode> {
        match self.live_cluster() {
            Some(c) => c.room(room_id).await.map(|r| {
                let mut meta = r.meta;
                if !with_peers {
                    meta.peers = None;
                }
                meta
            }),
            None => self.registry.room_meta(room_id, with_peers),
        }
    }

    /// Creates a room nobody has joined yet, with `host_id` as its host.
    pub async fn create_room(
        &self,
        room_id: &str,
        options: RoomOptions,
        host_id: &str,
        host_name: Option<String>,
        password_hash: Option<Arc<str>>,
    ) -> Result<RoomMeta, ErrorCode> {
        match self.live_cluster() {
            Some(c) => {
                let cfg = &self.config.signaling;
                c.create_room(
                    room_id,
                    &options,
                    host_id,
                    host_name.as_deref(),
                    password_hash.as_deref(),
                    cfg.max_rooms,
                    cfg.room_idle_timeout,
                    self.registry.refusing_new_rooms(),
                )
                .await?;
                Ok(c.room(room_id).await?.meta)
            }
            None => self.registry.create_room(
                room_id.into(),
                options,
                host_id.into(),
                host_name,
                password_hash,
            ),
        }
    }

    /// Every room, without peers.
    pub async fn list_rooms(&self) -> Result<Vec<RoomMeta>, ErrorCode> {
        match self.live_cluster() {
            Some(c) => c.list_rooms().await,
            None => Ok(self.registry.list_rooms()),
        }
    }

    /// Closes the room wherever its members are; they get `room-closed` with `reason`.
    pub async fn close_room(&self, room_id: &str, reason: CloseReason) -> Result<(), ErrorCode> {
        // A room with members here closes through the registry, which also tells the
        // cluster; otherwise Redis closes it and tells the instances that hold it.
        match (
            self.registry.close_room(room_id, reason),
            self.live_cluster(),
        ) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(c)) => c.close_room(room_id, reason).await,
            (Err(e), None) => Err(e),
        }
    }
}

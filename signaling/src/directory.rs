//! The HTTP API's view of rooms (`docs/protocol.md#7-rooms-over-http`): the cluster's shared record
//! while the broker can reach it, this instance's registry otherwise. The API calls these
//! the same way in both cases.

use std::sync::Arc;

use crate::broker::NewRoom;
use crate::error::ErrorCode;
use crate::protocol::{CloseReason, RoomMeta};
use crate::registry::Registry;

/// Rooms as the HTTP API reads and changes them.
#[derive(Clone)]
pub struct Directory {
    registry: Arc<Registry>,
}

impl Directory {
    /// The directory over `registry` and its broker.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// Whether `user_id` may get a token for `room_id` (full and closed rooms refuse
    /// newcomers); returns the room's password hash, if it has one.
    pub async fn admission(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<Arc<str>>, ErrorCode> {
        match self.registry.broker().shared_rooms() {
            Some(shared) => shared.admission(room_id, user_id).await,
            None => self
                .registry
                .admission(room_id, user_id)
                .map(|a| a.password_hash),
        }
    }

    /// A room's metadata, with its peers when `with_peers`.
    pub async fn room(&self, room_id: &str, with_peers: bool) -> Result<RoomMeta, ErrorCode> {
        match self.registry.broker().shared_rooms() {
            Some(shared) => shared.room(room_id).await.map(|mut meta| {
                if !with_peers {
                    meta.peers = None;
                }
                meta
            }),
            None => self.registry.room_meta(room_id, with_peers),
        }
    }

    /// Creates a room ahead of its first join.
    pub async fn create_room(&self, room: NewRoom<'_>) -> Result<RoomMeta, ErrorCode> {
        match self.registry.broker().shared_rooms() {
            Some(shared) => shared.create_room(room).await,
            None => self.registry.create_room(
                room.room_id.into(),
                room.options.clone(),
                room.host_id.into(),
                room.host_name.map(str::to_owned),
                room.password_hash.map(Arc::from),
            ),
        }
    }

    /// Every room (without peers), ordered by id.
    pub async fn list_rooms(&self) -> Result<Vec<RoomMeta>, ErrorCode> {
        match self.registry.broker().shared_rooms() {
            Some(shared) => shared.list_rooms().await,
            None => Ok(self.registry.list_rooms()),
        }
    }

    /// Closes a room. One with members here closes through the registry, which also tells
    /// the cluster; otherwise the cluster's record closes it and tells the instances that
    /// hold it.
    pub async fn close_room(&self, room_id: &str, reason: CloseReason) -> Result<(), ErrorCode> {
        match (
            self.registry.close_room(room_id, reason),
            self.registry.broker().shared_rooms(),
        ) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(shared)) => shared.close_room(room_id, reason).await,
            (Err(e), None) => Err(e),
        }
    }

    /// Rooms in the whole cluster, while its record can be reached.
    pub async fn cluster_room_count(&self) -> Option<u64> {
        match self.registry.broker().shared_rooms() {
            Some(shared) => shared.room_count().await,
            None => None,
        }
    }
}

//! One member of a room: who it is, where it is connected, and how it appears to others.

use std::sync::Arc;

use tokio::time::Instant;

use crate::broker::{WireMember, WireStatus};
use crate::conn::{Conn, KillReason};
use crate::protocol::{PeerInfo, PeerStatus, Presence, ServerMessage};

/// Where a member is connected. One place, so no combination of "has a socket", "is
/// remote" and "is reconnecting" can contradict another.
#[derive(Clone)]
pub enum Location {
    /// Connected to this instance.
    Local(Arc<Conn>),
    /// Its connection to this instance dropped at `since`; it keeps its place for the
    /// reconnect grace.
    Reconnecting {
        /// When the connection dropped.
        since: Instant,
    },
    /// Held by another instance of the cluster.
    Remote {
        /// That instance's id.
        instance: Arc<str>,
        /// Whether that instance reported it reconnecting.
        reconnecting: bool,
    },
}

/// A member of a room.
pub struct Member {
    /// userId (the token's `sub`).
    pub user_id: Arc<str>,
    /// Display name.
    pub user_name: String,
    /// Join time (ms since the epoch), kept across reconnects.
    pub connected_at_ms: u64,
    /// Presence as last broadcast.
    pub presence: Presence,
    /// Join order within the room; the lowest present member is the next host.
    pub order: u64,
    /// Where it is connected.
    pub location: Location,
    /// Last sign of life (ms) while it has no local connection.
    pub last_seen_ms: u64,
}

impl Member {
    /// The local connection, if the member is connected here.
    pub fn conn(&self) -> Option<&Arc<Conn>> {
        match &self.location {
            Location::Local(conn) => Some(conn),
            _ => None,
        }
    }

    /// Whether the connection `conn_id` is this member's.
    pub fn is_on(&self, conn_id: u64) -> bool {
        self.conn().is_some_and(|c| c.id == conn_id)
    }

    /// The instance holding the member, when it is another one.
    pub fn remote_instance(&self) -> Option<&Arc<str>> {
        match &self.location {
            Location::Remote { instance, .. } => Some(instance),
            _ => None,
        }
    }

    /// Whether this instance holds the member (connected or within its grace here).
    pub fn is_local(&self) -> bool {
        !matches!(self.location, Location::Remote { .. })
    }

    /// Moves the member to `location`; a connection it had here is told it was replaced
    /// and closed (4009).
    pub fn relocate(&mut self, location: Location) {
        let old = std::mem::replace(&mut self.location, location);
        if let Location::Local(conn) = old {
            conn.send(&ServerMessage::Replaced.encode().into());
            conn.terminate(KillReason::Replaced);
        }
    }

    /// How others see it.
    pub fn status(&self) -> PeerStatus {
        let reconnecting = match &self.location {
            Location::Local(_) => false,
            Location::Reconnecting { .. } => true,
            Location::Remote { reconnecting, .. } => *reconnecting,
        };
        match (reconnecting, self.presence) {
            (true, _) => PeerStatus::Reconnecting,
            (false, Presence::Active) => PeerStatus::Active,
            (false, Presence::Idle) => PeerStatus::Idle,
        }
    }

    /// Its `PeerInfo`, given the room's host.
    pub fn info(&self, host: Option<&Arc<str>>) -> PeerInfo {
        PeerInfo {
            user_id: self.user_id.clone(),
            user_name: self.user_name.clone(),
            is_host: host.is_some_and(|h| *h == self.user_id),
            connected_at: self.connected_at_ms,
            last_heartbeat: self.conn().map_or(self.last_seen_ms, |c| c.last_seen_ms()),
            status: self.status(),
        }
    }

    /// The member as stored in Redis and told to other instances; `instance` is this one.
    pub fn wire(&self, instance: &str) -> WireMember {
        WireMember {
            user: self.user_id.to_string(),
            name: self.user_name.clone(),
            connected_at: self.connected_at_ms,
            order: self.order,
            instance: self.remote_instance().map_or(instance, |i| i).to_owned(),
            status: match self.status() {
                PeerStatus::Active => WireStatus::Active,
                PeerStatus::Idle => WireStatus::Idle,
                PeerStatus::Reconnecting => WireStatus::Reconnecting,
            },
        }
    }

    /// A member held by another instance, as that instance told it.
    pub fn from_wire(w: &WireMember) -> Member {
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
            location: Location::Remote {
                instance: w.instance.as_str().into(),
                reconnecting: w.status == WireStatus::Reconnecting,
            },
            last_seen_ms: w.connected_at,
        }
    }
}

//! Connects the memory monitor's cleanup actions to the signaling registry.

use std::sync::Arc;
use std::time::Duration;

use switchboard_monitoring::{Janitor, Removed};
use switchboard_signaling::{Registry, SignalingServer};

/// The [`Janitor`] over this process's rooms and connections.
pub struct Rooms {
    /// Rooms and peers.
    pub registry: Arc<Registry>,
    /// Open connections.
    pub signaling: SignalingServer,
}

impl Janitor for Rooms {
    fn sweep(&self) -> Removed {
        let r = self.registry.sweep(tokio::time::Instant::now());
        Removed {
            rooms: r.rooms,
            peers: r.peers,
        }
    }

    fn disconnect_silent(&self, silence: Duration) -> usize {
        self.signaling.disconnect_silent(silence)
    }

    fn close_idle_rooms(&self, idle: Duration) -> Removed {
        let r = self.registry.close_idle_rooms(idle);
        Removed {
            rooms: r.rooms,
            peers: r.peers,
        }
    }

    fn refuse_new_rooms(&self, refuse: bool) {
        self.registry.set_refuse_new_rooms(refuse);
    }
}

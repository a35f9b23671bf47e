//! The state every HTTP handler shares, built once by `app.rs`. Handlers and the room
//! operations add their methods to [`App`] in their own modules; this one depends on none
//! of them.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use switchboard_auth::TokenKeys;
use switchboard_monitoring::Monitor;
use switchboard_signaling::directory::Directory;
use switchboard_signaling::{Registry, Stats};

use crate::config::Config;

/// State shared by the HTTP handlers.
pub struct App {
    /// The configuration.
    pub config: Config,
    /// Room token keys.
    pub keys: TokenKeys,
    /// Rooms and peers.
    pub registry: Arc<Registry>,
    /// Signaling counters.
    pub stats: Arc<Stats>,
    /// The port the signaling server actually listens on.
    pub signaling_port: u16,
    /// Process start.
    pub started: Instant,
    /// Tokens issued since start.
    pub tokens_issued: AtomicU64,
    /// Concurrent password hash computations allowed.
    pub password_slots: Semaphore,
    /// Set once a shutdown signal arrived.
    pub draining: AtomicBool,
    /// The identity provider's fetched key set, with `JWKS_URL`.
    pub jwks: Option<Arc<crate::jwks::Jwks>>,
    /// Memory sampling, pressure level and cleanup.
    pub monitor: Arc<Monitor>,
    /// Rooms as the HTTP API sees them: the cluster's shared record while Redis answers,
    /// the local registry otherwise.
    pub rooms: Directory,
}

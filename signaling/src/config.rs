//! Settings the signaling side needs, already parsed and validated by the binary.

use std::time::Duration;

use switchboard_auth::IceConfig;

/// Limits and timings of the signaling server and its rooms.
#[derive(Debug, Clone)]
pub struct SignalingConfig {
    /// Default and upper bound of a room's `maxPeers`.
    pub max_peers_per_room: usize,
    /// Rooms that may exist at once.
    pub max_rooms: usize,
    /// Largest accepted frame/message, in bytes.
    pub max_message_bytes: usize,
    /// Token-bucket refill rate per connection.
    pub rate_limit_per_second: u32,
    /// Token-bucket size per connection.
    pub rate_limit_burst: u32,
    /// Open WebSocket connections allowed at once.
    pub max_connections: usize,
    /// Open WebSocket connections allowed per client IP, if limited.
    pub max_connections_per_ip: Option<usize>,
    /// Allowed `Origin` values; `None` allows any.
    pub allowed_origins: Option<Vec<String>>,
    /// Time a connection has to authenticate.
    pub auth_timeout: Duration,
    /// Interval of `heartbeat` messages and pings.
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is force-left.
    pub peer_timeout: Duration,
    /// How long a dropped peer keeps its place.
    pub reconnect_grace: Duration,
    /// Longest the sweeper sleeps between passes.
    pub room_sweep_interval: Duration,
    /// Inactivity after which a room closes.
    pub room_idle_timeout: Duration,
    /// How long an empty room (that had peers) survives.
    pub room_empty_grace: Duration,
    /// Messages that may wait in one connection's send queue.
    pub outbound_queue_size: usize,
    /// STUN/TURN servers for `auth-ok`.
    pub ice: IceConfig,
}

impl Default for SignalingConfig {
    fn default() -> Self {
        Self {
            max_peers_per_room: 50,
            max_rooms: 100_000,
            max_message_bytes: 65_536,
            rate_limit_per_second: 50,
            rate_limit_burst: 200,
            max_connections: 10_000,
            max_connections_per_ip: None,
            allowed_origins: None,
            auth_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            peer_timeout: Duration::from_secs(300),
            reconnect_grace: Duration::from_secs(15),
            room_sweep_interval: Duration::from_secs(60),
            room_idle_timeout: Duration::from_secs(10_800),
            room_empty_grace: Duration::from_secs(60),
            outbound_queue_size: 256,
            ice: IceConfig::default(),
        }
    }
}

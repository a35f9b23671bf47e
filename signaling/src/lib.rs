//! Switchboard's signaling core: the wire protocol, the room registry and the WebSocket
//! server that binds them.
//!
//! - [`protocol`] decodes client frames into typed requests (relay payloads stay raw JSON)
//!   and encodes server events.
//! - [`registry`] owns rooms and their members: joins, leaves, replacement, reconnect
//!   grace, host hand-over, deadlines. It never awaits while holding a lock.
//! - [`outbox`] is the bounded per-connection send queue that keeps a slow reader from
//!   slowing anybody else.
//! - [`server`] accepts TCP connections, performs the checked WebSocket upgrade and runs
//!   one reader loop plus one writer task per connection.
//! - `yjs` speaks the y-webrtc topic protocol on `/yjs` over the same connections.
//! - [`topics`] keeps which connections follow which `/yjs` topic, for the registry.

pub mod bus;
pub mod cluster;
pub mod config;
pub mod conn;
mod connection;
pub mod error;
pub mod ids;
pub mod options;
pub mod outbox;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod stats;
mod time;
pub mod topics;
pub mod yjs;

pub use config::SignalingConfig;
pub use error::ErrorCode;
pub use registry::Registry;
pub use server::SignalingServer;
pub use stats::Stats;
pub use time::now_ms;

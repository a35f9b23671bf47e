//! Switchboard's signaling core: the wire protocol, the room registry and the WebSocket
//! server that binds them.
//!
//! - [`protocol`] decodes client frames into typed requests (relay payloads stay raw JSON)
//!   and encodes server events.
//! - [`registry`] owns rooms and their members: joins, leaves, replacement, reconnect
//!   grace, host hand-over, deadlines. It never awaits while holding a lock.
//! - [`outbox`] is the bounded per-connection send queue that keeps a slow reader from
//!   slowing anybody else.
//! - [`server`] accepts TCP connections, performs the checked WebSocket upgrade, sends
//!   heartbeats and drains; it tracks every connection task for a structured shutdown.
//! - [`ws`] is a connection after its upgrade: one reader loop with the per-connection
//!   limits, generic over the protocol (`/ws` native, by phase, or `/yjs`), and one writer.
//! - [`topics`] keeps which connections follow which `/yjs` topic, for the registry.
//!
//! Modules depend downwards only: `server` → `ws` → `registry` → `topics`, `conn`,
//! `protocol`, and none of these back.

pub mod broker;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod directory;
pub mod error;
pub mod ids;
pub mod options;
pub mod outbox;
pub mod protocol;
pub mod registry;
pub mod room;
pub mod server;
pub mod stats;
pub mod time;
pub mod topics;
pub mod ws;

pub use config::SignalingConfig;
pub use error::ErrorCode;
pub use registry::Registry;
pub use server::SignalingServer;
pub use stats::Stats;
pub use time::now_ms;

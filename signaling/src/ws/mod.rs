//! One WebSocket connection after its upgrade, whatever it speaks.
//!
//! - [`reader`] is the one reader loop: per-connection limits (rate, garbage, frame size),
//!   the auth deadline and the end of a connection, generic over a [`reader::Protocol`].
//! - [`writer`] drains the connection's outbox into the socket.
//! - [`native`] speaks `/ws` (`docs/protocol.md`), one file per phase of a session.
//! - [`yjs`] speaks the y-webrtc protocol on `/yjs` (`docs/yjs.md`).
//!
//! This module holds only what all of them share ([`Shared`], [`Io`]); it uses none of its
//! children, and nothing here knows the accept loop (the `server` module), which sits above.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;

use crate::registry::Registry;
use crate::stats::Stats;
use switchboard_auth::TokenKeys;

pub(crate) mod limits;
pub(crate) mod native;
pub(crate) mod reader;
pub(crate) mod writer;
pub mod yjs;

/// A connection's byte stream: plain TCP, or TLS over TCP (`wss://`).
pub(crate) type Io = Box<dyn IoStream>;

/// What a connection's byte stream must be.
pub(crate) trait IoStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> IoStream for T {}

/// What every connection needs from the server it runs in.
pub(crate) struct Shared {
    /// Rooms, peers and `/yjs` topics.
    pub(crate) registry: Arc<Registry>,
    /// Counters.
    pub(crate) stats: Arc<Stats>,
    /// Verifies room tokens (`auth` on `/ws`).
    pub(crate) keys: TokenKeys,
    /// Every connection task and writer task, so that a shutdown can wait for exactly them.
    pub(crate) tasks: TaskTracker,
}

//! The handle other parts of the server hold to one WebSocket connection: its send queue,
//! its liveness timestamp and the switch that ends it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::outbox::{CloseSignal, Outbound, Outbox, PushError};

/// Why the server ends a connection. Stored in an `AtomicU8` as its discriminant (0 is "not
/// ended"), read back with the derived `from_repr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::FromRepr)]
#[repr(u8)]
pub enum KillReason {
    /// The same user joined on another connection (4009).
    Replaced = 1,
    /// The room closed (4010).
    RoomClosed,
    /// The send queue overflowed (4008).
    SlowConsumer,
    /// No sign of life for `PEER_TIMEOUT_SECONDS` (4011).
    HeartbeatTimeout,
    /// The server is draining (1001).
    Shutdown,
    /// Rate limit or garbage limit exceeded (4008).
    Policy,
    /// Authentication failed or timed out (4001).
    AuthFailed,
    /// A frame exceeded `MAX_MESSAGE_BYTES` (1009).
    TooBig,
}

impl KillReason {
    /// The close frame this reason ends with.
    pub fn close_signal(self) -> CloseSignal {
        let (code, reason) = match self {
            Self::Replaced => (4009, "replaced"),
            Self::RoomClosed => (4010, "room closed"),
            Self::SlowConsumer => (4008, "slow consumer"),
            Self::HeartbeatTimeout => (4011, "heartbeat timeout"),
            Self::Shutdown => (1001, "server going away"),
            Self::Policy => (4008, "policy violation"),
            Self::AuthFailed => (4001, "authentication failed"),
            Self::TooBig => (1009, "message too big"),
        };
        CloseSignal { code, reason }
    }
}

/// Shared handle to one connection.
pub struct Conn {
    /// Process-unique connection number; identifies the connection inside rooms.
    pub id: u64,
    /// Bounded queue drained by the connection's writer task.
    pub outbox: Outbox,
    kill: Notify,
    kill_reason: AtomicU8,
    last_seen_ms: AtomicU64,
    /// False for `/yjs` connections, whose client knows none of the native events.
    native: AtomicBool,
}

impl Conn {
    /// A live connection with an empty queue of `capacity`.
    pub fn new(id: u64, capacity: usize, now_ms: u64) -> Self {
        Self {
            id,
            outbox: Outbox::new(capacity),
            kill: Notify::new(),
            kill_reason: AtomicU8::new(0),
            last_seen_ms: AtomicU64::new(now_ms),
            native: AtomicBool::new(true),
        }
    }

    /// Queues a text frame. A full queue cuts the connection off and returns false.
    pub fn send(&self, frame: &Utf8Bytes) -> bool {
        self.push(Outbound::Text(frame.clone()))
    }

    /// Queues a native `/ws` event that concerns every connection (`heartbeat`,
    /// `force-leave`, `server-shutdown`); on a connection speaking another protocol it
    /// sends nothing and reports success.
    pub fn send_native(&self, frame: &Utf8Bytes) -> bool {
        !self.native.load(Relaxed) || self.send(frame)
    }

    /// Marks whether the connection speaks the native `/ws` protocol (the default).
    pub fn set_native(&self, native: bool) {
        self.native.store(native, Relaxed);
    }

    /// Queues a ping. A full queue cuts the connection off and returns false.
    pub fn ping(&self) -> bool {
        self.push(Outbound::Ping)
    }

    fn push(&self, item: Outbound) -> bool {
        match self.outbox.push(item) {
            Ok(()) => true,
            Err(PushError::Full) => {
                self.terminate(KillReason::SlowConsumer);
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Ends the connection: what is queued goes out first (except for a slow consumer,
    /// whose queue is dropped), then the reason's close frame. The first reason wins.
    pub fn terminate(&self, reason: KillReason) {
        if self
            .kill_reason
            .compare_exchange(0, reason as u8, Relaxed, Relaxed)
            .is_ok()
        {
            self.outbox
                .close(reason.close_signal(), reason == KillReason::SlowConsumer);
            self.kill.notify_one();
        }
    }

    /// Why the connection was ended, if it was.
    pub fn kill_reason(&self) -> Option<KillReason> {
        KillReason::from_repr(self.kill_reason.load(Relaxed))
    }

    /// Resolves once [`terminate`](Self::terminate) was called.
    pub async fn killed(&self) -> KillReason {
        loop {
            if let Some(r) = self.kill_reason() {
                return r;
            }
            self.kill.notified().await;
        }
    }

    /// Records a sign of life.
    pub fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Relaxed);
    }

    /// Last sign of life (ms since epoch).
    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_kill_reason_is_kept_and_read_back() {
        let conn = Conn::new(1, 4, 0);
        assert_eq!(conn.kill_reason(), None);
        conn.terminate(KillReason::HeartbeatTimeout);
        conn.terminate(KillReason::Shutdown);
        assert_eq!(conn.kill_reason(), Some(KillReason::HeartbeatTimeout));
    }

    #[test]
    fn zero_is_no_reason() {
        assert_eq!(KillReason::from_repr(0), None);
        assert_eq!(KillReason::from_repr(1), Some(KillReason::Replaced));
    }
}

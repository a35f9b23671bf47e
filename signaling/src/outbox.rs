//! The bounded send queue between a connection's producers (other peers' relays and
//! broadcasts, the heartbeat task, its own replies) and its writer task.
//!
//! Producers never wait: a push either queues or reports the queue full, and a full queue
//! means the reader on the other end is not keeping up, so the connection is cut off
//! instead of slowing the sender. The queue starts without an allocation and gives its
//! buffer back when it drains, so idle connections cost little.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One item for the writer.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A text frame.
    Text(Utf8Bytes),
    /// A WebSocket ping.
    Ping,
}

/// Why a push was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds `capacity` items.
    Full,
    /// The connection is closing.
    Closed,
}

/// How the writer should end the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseSignal {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason text.
    pub reason: &'static str,
}

struct State {
    queue: VecDeque<Outbound>,
    close: Option<CloseSignal>,
    closed: bool,
}

/// A bounded multi-producer, single-consumer queue of outbound frames.
pub struct Outbox {
    // std Mutex: every critical section is a push or a swap, never held across an await.
    state: Mutex<State>,
    ready: Notify,
    capacity: usize,
}

impl Outbox {
    /// An empty queue holding at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                close: None,
                closed: false,
            }),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` without waiting.
    pub fn push(&self, item: Outbound) -> Result<(), PushError> {
        let mut st = self.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        if st.queue.len() >= self.capacity {
            return Err(PushError::Full);
        }
        st.queue.push_back(item);
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    /// Asks the writer to close with `signal` after what is queued (or at once, dropping the
    /// queue, when `discard` is set). Later pushes are refused. The first close wins.
    pub fn close(&self, signal: CloseSignal, discard: bool) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        st.close = Some(signal);
        if discard {
            st.queue = VecDeque::new();
        }
        drop(st);
        self.ready.notify_one();
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits until something is queued, then moves all of it into `batch` (which must be
    /// empty). Returns the close signal once the queue is drained and a close was asked for.
    pub async fn take(&self, batch: &mut VecDeque<Outbound>) -> Option<CloseSignal> {
        loop {
            {
                let mut st = self.lock();
                if !st.queue.is_empty() {
                    std::mem::swap(&mut st.queue, batch);
                    return None;
                }
                if let Some(signal) = st.close.take() {
                    return Some(signal);
                }
                if st.closed {
                    // Close already delivered once; nothing more will come.
                    return Some(CloseSignal {
                        code: 1000,
                        reason: "",
                    });
                }
            }
            // A push between the unlock above and this await leaves a permit behind, so no
            // wake-up is lost.
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Outbound {
        Outbound::Text(s.into())
    }

    #[tokio::test]
    async fn full_queue_refuses_instead_of_waiting() {
        let ob = Outbox::new(2);
        ob.push(text("a")).unwrap();
        ob.push(text("b")).unwrap();
        assert_eq!(ob.push(text("c")), Err(PushError::Full));
        let mut batch = VecDeque::new();
        assert_eq!(ob.take(&mut batch).await, None);
        assert_eq!(batch.len(), 2);
        batch.clear();
        ob.push(text("c")).unwrap();
    }

    #[tokio::test]
    async fn close_comes_after_queued_frames_unless_discarded() {
        let ob = Outbox::new(4);
        ob.push(text("a")).unwrap();
        ob.close(
            CloseSignal {
                code: 4009,
                reason: "replaced",
            },
            false,
        );
        assert_eq!(ob.push(text("b")), Err(PushError::Closed));
        let mut batch = VecDeque::new();
        assert_eq!(ob.take(&mut batch).await, None);
        batch.clear();
        assert_eq!(ob.take(&mut batch).await.map(|s| s.code), Some(4009));

        let ob = Outbox::new(4);
        ob.push(text("a")).unwrap();
        ob.close(
            CloseSignal {
                code: 4008,
                reason: "slow",
            },
            true,
        );
        assert_eq!(ob.take(&mut batch).await.map(|s| s.code), Some(4008));
        assert!(batch.is_empty());
    }

    #[tokio::test]
    async fn take_wakes_on_push_from_another_task() {
        let ob = std::sync::Arc::new(Outbox::new(4));
        let ob2 = ob.clone();
        let waiter = tokio::spawn(async move {
            let mut batch = VecDeque::new();
            ob2.take(&mut batch).await;
            batch.len()
        });
        tokio::task::yield_now().await;
        ob.push(text("x")).unwrap();
        assert_eq!(waiter.await.unwrap(), 1);
    }
}

//! The reader loop every connection runs, `/ws` and `/yjs` alike: it reads frames, keeps the
//! connection's sign of life, applies the limits that hold whatever the protocol (rate,
//! garbage, `MAX_MESSAGE_BYTES`, the auth deadline) and hands each message to the
//! connection's [`Protocol`]. Beside it, [`finish`] ends every connection the same way.
//!
//! What a limit does is written here once; what a protocol says about it (an `error` with a
//! code on `/ws`, nothing on `/yjs`) is the protocol's. See `docs/protocol.md#4-errors`,
//! `docs/protocol.md#6-close-codes` and `docs/yjs.md`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::conn::{Conn, KillReason};
use crate::error::ErrorCode;
use crate::outbox::CloseSignal;
use crate::stats::Stats;
use crate::time::now_ms;
use crate::ws::limits::Limits;
use crate::ws::writer::write_loop;
use crate::ws::{Io, Shared};

/// How long the writer gets to flush the final frames before the socket is dropped.
const WRITER_GRACE: Duration = Duration::from_secs(2);
/// How long a connection the server closed waits for the client's close reply. Dropping the
/// socket with unread input makes the kernel send a reset, which can destroy the close
/// frame (and its code) before the client reads it.
const CLOSE_LINGER: Duration = Duration::from_secs(3);

/// What the reader does after a message.
pub(crate) enum Flow {
    /// Read the next frame.
    Continue,
    /// The message was garbage: it counts toward the garbage limit, then reading goes on.
    Garbage,
    /// End the connection for this reason.
    Close(KillReason),
}

/// A protocol spoken over a connection: what its messages mean and how it answers the
/// limits. The reader is generic over it, so a frame costs no dynamic call.
pub(crate) trait Protocol {
    /// Whether the connection has yet to authenticate; only then the auth deadline runs.
    fn awaiting_auth(&self) -> bool {
        false
    }

    /// The auth deadline passed: tell the client. The reader then closes with 4001.
    fn auth_timed_out(&mut self) {}

    /// A text message within the rate limit, read at `now`.
    async fn on_text(&mut self, text: &str, now: Instant) -> Flow;

    /// A binary message: the text to handle as a text message, or what to do instead.
    fn on_binary<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a str, Flow>;

    /// A text message dropped by the rate limit (the reader has counted it as rejected).
    fn on_rate_limited(&mut self, _text: &str) {}

    /// The connection ended, for `kill` when the server ended it: leave what it joined.
    fn teardown(self, kill: Option<KillReason>);
}

/// Reads `ws` until the connection ends, then tears the protocol down and finishes.
pub(crate) async fn run<P: Protocol>(
    shared: Arc<Shared>,
    ws: WebSocketStream<Io>,
    conn: Arc<Conn>,
    mut protocol: P,
) {
    let (sink, mut stream) = ws.split();
    let writer = shared.tasks.spawn(write_loop(sink, conn.clone()));
    let cfg = shared.registry.config();
    let mut limits = Limits::new(cfg, Instant::now());
    let auth_deadline = tokio::time::sleep(cfg.auth_timeout);
    tokio::pin!(auth_deadline);

    loop {
        let flow = tokio::select! {
            biased;
            _ = conn.killed() => break,
            _ = &mut auth_deadline, if protocol.awaiting_auth() => {
                protocol.auth_timed_out();
                Flow::Close(KillReason::AuthFailed)
            }
            frame = stream.next() => match frame {
                Some(Ok(msg)) => {
                    conn.touch(now_ms());
                    match on_message(&mut protocol, &mut limits, &shared.stats, msg).await {
                        Some(flow) => flow,
                        None => break,
                    }
                }
                Some(Err(WsError::Capacity(_))) => {
                    shared.stats.count_too_big();
                    Flow::Close(KillReason::TooBig)
                }
                Some(Err(_)) | None => break,
            },
        };
        let reason = match flow {
            Flow::Continue => continue,
            Flow::Garbage if !limits.garbage(Instant::now()) => continue,
            Flow::Garbage => KillReason::Policy,
            Flow::Close(reason) => reason,
        };
        conn.terminate(reason);
        break;
    }

    protocol.teardown(conn.kill_reason());
    finish(&shared, &conn, stream, writer).await;
}

/// One message; `None` when it was the client's close.
async fn on_message<P: Protocol>(
    protocol: &mut P,
    limits: &mut Limits,
    stats: &Stats,
    msg: Message,
) -> Option<Flow> {
    Some(match msg {
        Message::Text(text) => on_text(protocol, limits, stats, &text).await,
        Message::Binary(bytes) => match protocol.on_binary(&bytes) {
            Ok(text) => on_text(protocol, limits, stats, text).await,
            Err(flow) => flow,
        },
        Message::Close(_) => return None,
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Flow::Continue,
    })
}

/// A text message through the rate limit: handled, or dropped and counted.
async fn on_text<P: Protocol>(
    protocol: &mut P,
    limits: &mut Limits,
    stats: &Stats,
    text: &str,
) -> Flow {
    let now = Instant::now();
    if limits.allow(now) {
        return protocol.on_text(text, now).await;
    }
    stats.count_rejected(ErrorCode::RateLimited);
    protocol.on_rate_limited(text);
    if limits.refused(now) {
        Flow::Close(KillReason::Policy)
    } else {
        Flow::Continue
    }
}

/// The end every connection shares, once its room or topic is left: count a cut-off, stop
/// tracking the connection, let the writer send what is queued and the close frame, wait
/// (bounded) for the client's close reply when the server started the close, then drop the
/// socket.
async fn finish(
    shared: &Shared,
    conn: &Conn,
    mut stream: SplitStream<WebSocketStream<Io>>,
    mut writer: JoinHandle<()>,
) {
    if conn.kill_reason() == Some(KillReason::SlowConsumer) {
        shared
            .stats
            .slow_consumers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    shared.registry.close_conn(conn.id);
    conn.outbox.close(
        CloseSignal {
            code: 1000,
            reason: "",
        },
        false,
    );
    if conn.kill_reason().is_some() {
        // We started the close: read (and discard) until the client answers it, so the
        // close code is not lost to a reset.
        let linger = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = tokio::time::timeout(CLOSE_LINGER, linger).await;
    }
    if tokio::time::timeout(WRITER_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

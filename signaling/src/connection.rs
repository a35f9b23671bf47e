//! One WebSocket connection: the reader loop (this task) that authenticates, enforces the
//! per-connection limits and dispatches requests, and the writer task that drains the
//! connection's [`Outbox`](crate::outbox::Outbox) into the socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::conn::{Conn, KillReason};
use crate::error::ErrorCode;
use crate::ids;
use crate::options::RoomOptions;
use crate::outbox::Outbound;
use crate::protocol::{
    self, AuthOk, BroadcastKind, ClientMessage, RelayKind, RelayOut, RoomRef, ServerMessage,
};
use crate::registry::{Identity, Room};
use crate::server::{Io, Shared};
use crate::time::now_ms;
use switchboard_auth::Claims;

/// Window over which refusals and garbage are counted.
const ABUSE_WINDOW: Duration = Duration::from_secs(10);
/// Garbage errors within the window that close the connection.
pub(crate) const GARBAGE_LIMIT: u32 = 20;
/// How long the writer gets to flush the final frames before the socket is dropped.
const WRITER_GRACE: Duration = Duration::from_secs(2);
/// How long a connection the server closed waits for the client's close reply. Dropping the
/// socket with unread input makes the kernel send a reset, which can destroy the close
/// frame (and its code) before the client reads it.
const CLOSE_LINGER: Duration = Duration::from_secs(3);

/// Counts events in a fixed window and says when a limit is exceeded.
pub(crate) struct WindowCounter {
    start: Instant,
    count: u32,
}

impl WindowCounter {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            start: now,
            count: 0,
        }
    }

    /// Counts one event; returns the count within the current window.
    pub(crate) fn hit(&mut self, now: Instant) -> u32 {
        if now.duration_since(self.start) > ABUSE_WINDOW {
            self.start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count
    }
}

/// Token bucket: `rate` tokens per second, at most `burst` stored.
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            tokens: burst as f64,
            last: now,
            rate: rate as f64,
            burst: burst as f64,
        }
    }

    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

enum Phase {
    Unauthenticated,
    Authenticated(Box<Identity>),
    Joined(Box<Identity>, Arc<Room>),
}

/// Whether the reader loop goes on after a message.
enum Flow {
    Continue,
    Close(KillReason),
}

struct Session {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    phase: Phase,
    bucket: TokenBucket,
    refusals: WindowCounter,
    garbage: WindowCounter,
    token_name: Option<String>,
}

/// Runs a connection to its end. `claims` is set when the upgrade carried a valid token.
pub(crate) async fn run(
    shared: Arc<Shared>,
    ws: WebSocketStream<Io>,
    conn: Arc<Conn>,
    claims: Option<Claims>,
) {
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_loop(sink, conn.clone()));
    let now = Instant::now();
    let cfg = shared.registry.config();
    let mut session = Session {
        bucket: TokenBucket::new(cfg.rate_limit_per_second, cfg.rate_limit_burst, now),
        refusals: WindowCounter::new(now),
        garbage: WindowCounter::new(now),
        shared: shared.clone(),
        conn: conn.clone(),
        phase: Phase::Unauthenticated,
        token_name: None,
    };
    if let Some(claims) = claims {
        session.authenticate(claims);
    }
    let auth_deadline = tokio::time::sleep(cfg.auth_timeout);
    tokio::pin!(auth_deadline);

    loop {
        let authenticated = !matches!(session.phase, Phase::Unauthenticated);
        tokio::select! {
            biased;
            _ = conn.killed() => break,
            _ = &mut auth_deadline, if !authenticated => {
                session.send_error(ErrorCode::AuthFailed, "authentication timed out", None);
                conn.terminate(KillReason::AuthFailed);
                break;
            }
            frame = stream.next() => {
                let flow = match frame {
                    Some(Ok(msg)) => {
                        conn.touch(now_ms());
                        match msg {
                            Message::Text(text) => session.on_text(&text).await,
                            Message::Binary(_) => {
                                session.reject(ErrorCode::InvalidMessage, "binary frames are not supported", None)
                            }
                            Message::Close(_) => break,
                            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Flow::Continue,
                        }
                    }
                    Some(Err(WsError::Capacity(_))) => {
                        shared.stats.count_too_big();
                        Flow::Close(KillReason::TooBig)
                    }
                    Some(Err(_)) | None => break,
                };
                if let Flow::Close(reason) = flow {
                    conn.terminate(reason);
                    break;
                }
            }
        }
    }

    // Tear down: leave the room the way the end deserves, then let the writer finish.
    if let Phase::Joined(_, room) = &session.phase {
        match conn.kill_reason() {
            Some(KillReason::HeartbeatTimeout) => {
                shared.registry.remove_silent(room, conn.id);
            }
            _ => shared.registry.connection_lost(room, conn.id),
        }
    }
    if !matches!(session.phase, Phase::Unauthenticated) {
        shared
            .stats
            .authenticated
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    finish(&shared, &conn, stream, writer).await;
}

/// The end every connection shares, once its room or topic is left: count a cut-off, stop
/// tracking the connection, let the writer send what is queued and the close frame, wait
/// (bounded) for the client's close reply when the server started the close, then drop the
/// socket.
pub(crate) async fn finish(
    shared: &Shared,
    conn: &Conn,
    mut stream: futures_util::stream::SplitStream<WebSocketStream<Io>>,
    mut writer: tokio::task::JoinHandle<()>,
) {
    if conn.kill_reason() == Some(KillReason::SlowConsumer) {
        shared
            .stats
            .slow_consumers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    shared.registry.close_conn(conn.id);
    conn.outbox.close(
        crate::outbox::CloseSignal {
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

/// Drains the connection's outbox into the socket until the close frame is sent.
pub(crate) async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<Io>, Message>,
    conn: Arc<Conn>,
) {
    let mut batch = VecDeque::new();
    loop {
        let close = conn.outbox.take(&mut batch).await;
        for item in batch.drain(..) {
            let msg = match item {
                Outbound::Text(text) => Message::Text(text),
                Outbound::Ping => Message::Ping(Default::default()),
            };
            if sink.feed(msg).await.is_err() {
                return;
            }
        }
        if batch.capacity() > 64 {
            batch = VecDeque::new();
        }
        if sink.flush().await.is_err() {
            return;
        }
        if let Some(signal) = close {
            let frame = CloseFrame {
                code: CloseCode::from(signal.code),
                reason: signal.reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
            let _ = sink.close().await;
            return;
        }
    }
}

impl Session {
    fn send(&self, frame: String) {
        self.conn.send(&Utf8Bytes::from(frame));
    }

    fn send_error(&self, code: ErrorCode, message: &str, request_id: Option<&str>) {
        self.send(protocol::error_frame(code, message, request_id));
    }

    /// Sends an error for a refused request and applies the garbage limit.
    fn reject(&mut self, code: ErrorCode, message: &str, request_id: Option<&str>) -> Flow {
        self.shared.stats.count_rejected(code);
        self.send_error(code, message, request_id);
        if code.is_garbage() && self.garbage.hit(Instant::now()) >= GARBAGE_LIMIT {
            return Flow::Close(KillReason::Policy);
        }
        Flow::Continue
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let now = Instant::now();
        if !self.bucket.allow(now) {
            self.shared.stats.count_rejected(ErrorCode::RateLimited);
            let rid = protocol::request_id(text);
            self.send_error(
                ErrorCode::RateLimited,
                "rate limit exceeded, message dropped",
                rid.as_deref(),
            );
            if self.refusals.hit(now) > self.shared.registry.config().rate_limit_burst {
                return Flow::Close(KillReason::Policy);
            }
            return Flow::Continue;
        }
        let req = match protocol::decode(text) {
            Ok(req) => req,
            Err(e) => return self.reject(e.code, &e.message, e.request_id.as_deref()),
        };
        let rid = req.request_id.as_deref();
        let is_relay = matches!(req.message, ClientMessage::Relay { .. });
        let result = self.dispatch(req.message, rid).await;
        if is_relay && matches!(result, Ok(Flow::Continue)) {
            self.shared.stats.relay_latency.record(now.elapsed());
        }
        match result {
            Ok(flow) => flow,
            Err((code, msg)) => {
                if matches!(
                    code,
                    ErrorCode::InvalidToken
                        | ErrorCode::TokenExpired
                        | ErrorCode::AuthFailed
                        | ErrorCode::UserMismatch
                        | ErrorCode::RoomMismatch
                ) {
                    self.shared.stats.count_rejected(code);
                    self.send_error(code, &msg.unwrap_or_else(|| code.to_string()), rid);
                    return Flow::Close(KillReason::AuthFailed);
                }
                self.reject(code, &msg.unwrap_or_else(|| code.to_string()), rid)
            }
        }
    }

    fn authenticate(&mut self, claims: Claims) {
        let cfg = self.shared.registry.config();
        let session_id = uuid::Uuid::new_v4().to_string();
        let ice_servers =
            (!cfg.ice.is_empty()).then(|| cfg.ice.servers_for(&claims.sub, claims.exp));
        self.send(
            ServerMessage::AuthOk {
                data: AuthOk {
                    user_id: &claims.sub,
                    room_id: &claims.room,
                    session_id: &session_id,
                    heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u64,
                    ice_servers,
                },
            }
            .encode(),
        );
        self.shared
            .stats
            .authenticated
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.token_name = claims.name.clone();
        self.phase = Phase::Authenticated(Box::new(Identity {
            user_id: claims.sub.into(),
            room_id: claims.room.into(),
            password_ok: claims.pwd,
        }));
    }

    async fn dispatch(
        &mut self,
        message: ClientMessage<'_>,
        rid: Option<&str>,
    ) -> Result<Flow, (ErrorCode, Option<String>)> {
        let phase = std::mem::replace(&mut self.phase, Phase::Unauthenticated);
        let (result, phase) = self.dispatch_in(phase, message, rid).await;
        self.phase = phase;
        result
    }

    #[allow(clippy::type_complexity)]
    async fn dispatch_in(
        &mut self,
        phase: Phase,
        message: ClientMessage<'_>,
        rid: Option<&str>,
    ) -> (Result<Flow, (ErrorCode, Option<String>)>, Phase) {
        let registry = self.shared.registry.clone();
        match (phase, message) {
            (
                Phase::Unauthenticated,
                ClientMessage::Auth {
                    token,
                    user_id,
                    room_id,
                },
            ) => {
                let claims = match self.shared.keys.verify(&token) {
                    Ok(c) => c,
                    Err(e) => return (Err((ErrorCode::from(e), None)), Phase::Unauthenticated),
                };
                if user_id.is_some_and(|u| *u != *claims.sub) {
                    return (Err((ErrorCode::UserMismatch, None)), Phase::Unauthenticated);
                }
                if room_id.is_some_and(|r| *r != *claims.room) {
                    return (Err((ErrorCode::RoomMismatch, None)), Phase::Unauthenticated);
                }
                self.authenticate(claims);
                let phase = std::mem::replace(&mut self.phase, Phase::Unauthenticated);
                (Ok(Flow::Continue), phase)
            }
            (Phase::Unauthenticated, ClientMessage::Pong) => {
                (Ok(Flow::Continue), Phase::Unauthenticated)
            }
            (Phase::Unauthenticated, _) => (
                Err((ErrorCode::NotAuthenticated, None)),
                Phase::Unauthenticated,
            ),
            (phase, ClientMessage::Auth { .. }) => {
                (Err((ErrorCode::AlreadyAuthenticated, None)), phase)
            }
            (phase, ClientMessage::Pong) => (Ok(Flow::Continue), phase),
            (
                phase @ Phase::Joined(..),
                ClientMessage::JoinRoom { .. } | ClientMessage::CreateRoom(_),
            ) => (Err((ErrorCode::AlreadyInRoom, None)), phase),
            (Phase::Authenticated(who), ClientMessage::JoinRoom { user_name }) => {
                self.join(who, user_name, None, rid).await
            }
            (Phase::Authenticated(who), ClientMessage::CreateRoom(opts)) => {
                let max = registry.config().max_peers_per_room;
                let options = match RoomOptions::from_request(&opts, &who.room_id, max) {
                    Ok(options) => options,
                    Err(e) => {
                        return (
                            Err((ErrorCode::InvalidInput, Some(e.0))),
                            Phase::Authenticated(who),
                        )
                    }
                };
                self.join(who, None, Some(options), rid).await
            }
            (phase @ Phase::Authenticated(_), _) => (Err((ErrorCode::NotInRoom, None)), phase),
            (Phase::Joined(who, room), ClientMessage::LeaveRoom) => {
                registry.leave(&room, self.conn.id);
                self.send(
                    ServerMessage::RoomLeft {
                        data: RoomRef { room_id: &room.id },
                    }
                    .encode(),
                );
                (Ok(Flow::Continue), Phase::Authenticated(who))
            }
            (Phase::Joined(who, room), ClientMessage::CloseRoom) => {
                let result = registry
                    .close_by_host(&room, self.conn.id)
                    .map(|_| Flow::Continue);
                (result.map_err(|c| (c, None)), Phase::Joined(who, room))
            }
            (
                Phase::Joined(who, room),
                ClientMessage::Relay {
                    kind,
                    target,
                    payload,
                },
            ) => {
                let frame: Utf8Bytes = {
                    let data = RelayOut {
                        kind,
                        peer: &who.user_id,
                        payload,
                    };
                    let (from, user_id, room_id) = (&*who.user_id, &*who.user_id, &*room.id);
                    match kind {
                        RelayKind::Offer => ServerMessage::SdpOffer {
                            from,
                            user_id,
                            room_id,
                            data,
                        },
                        RelayKind::Answer => ServerMessage::SdpAnswer {
                            from,
                            user_id,
                            room_id,
                            data,
                        },
                        RelayKind::Candidate => ServerMessage::IceCandidate {
                            from,
                            user_id,
                            room_id,
                            data,
                        },
                    }
                    .encode_sized(payload.get().len())
                    .into()
                };
                let result = registry
                    .relay(&room, self.conn.id, &target, &frame)
                    .map(|()| {
                        self.shared
                            .stats
                            .count_relayed(kind.stat_index(), 1, frame.len() as u64);
                        Flow::Continue
                    });
                (result.map_err(|c| (c, None)), Phase::Joined(who, room))
            }
            (
                Phase::Joined(who, room),
                ClientMessage::Broadcast {
                    kind,
                    presence,
                    data,
                },
            ) => {
                let frame: Utf8Bytes = {
                    let (from, user_id, room_id) = (&*who.user_id, &*who.user_id, &*room.id);
                    match kind {
                        BroadcastKind::Presence => ServerMessage::Presence {
                            from,
                            user_id,
                            room_id,
                            data,
                        },
                        BroadcastKind::Cursor => ServerMessage::CursorUpdate {
                            from,
                            user_id,
                            room_id,
                            data,
                        },
                        BroadcastKind::Chat => ServerMessage::Message {
                            from,
                            user_id,
                            room_id,
                            data,
                        },
                    }
                    .encode()
                    .into()
                };
                let result = registry
                    .broadcast(&room, self.conn.id, &frame, presence)
                    .map(|n| {
                        self.shared
                            .stats
                            .count_relayed(kind.stat_index(), n, frame.len() as u64);
                        Flow::Continue
                    });
                (result.map_err(|c| (c, None)), Phase::Joined(who, room))
            }
        }
    }

    async fn join(
        &mut self,
        who: Box<Identity>,
        user_name: Option<String>,
        create: Option<RoomOptions>,
        _rid: Option<&str>,
    ) -> (Result<Flow, (ErrorCode, Option<String>)>, Phase) {
        let name = match user_name.as_deref().map(ids::display_name) {
            Some(Some(n)) => n,
            Some(None) => {
                return (
                    Err((
                        ErrorCode::InvalidInput,
                        Some("userName must be 1 to 100 printable characters".into()),
                    )),
                    Phase::Authenticated(who),
                )
            }
            None => self
                .token_name
                .as_deref()
                .and_then(ids::display_name)
                .unwrap_or_else(|| who.user_id.to_string()),
        };
        match self
            .shared
            .registry
            .join(&self.conn, &who, name, create)
            .await
        {
            Ok(room) => (Ok(Flow::Continue), Phase::Joined(who, room)),
            Err(code) => (Err((code, None)), Phase::Authenticated(who)),
        }
    }
}

//! The signaling port: TCP accept loop, the checked WebSocket upgrade (path `/ws` or
//! `/yjs`, connection limits, `Origin`, `?token=`; `docs/protocol.md#2-connect-and-authenticate`),
//! the heartbeat task and draining (`docs/lifecycle.md#shutdown`). What a connection does
//! after its upgrade is [`crate::ws`]'s.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::task::TaskTracker;

use crate::conn::{Conn, KillReason};
use crate::error::ErrorCode;
use crate::protocol::{Heartbeat, Reason, ServerMessage, Shutdown};
use crate::registry::Registry;
use crate::time::now_ms;
use crate::ws::{native, reader, yjs, Io, Shared};
use switchboard_auth::{Claims, TokenKeys};

/// Read buffer per connection. tungstenite's default (128 KiB, allocated eagerly) would
/// dominate the memory of an idle peer; signaling frames are small, and larger ones are
/// simply read in several chunks.
pub const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Bytes tungstenite collects before writing to the socket; the writer flushes after every
/// batch anyway, so this only bounds how much one batch holds before hitting the socket.
pub const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// The accept loop's state: what connections share, and the admission limits.
struct Inner {
    shared: Arc<Shared>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    draining: AtomicBool,
    ws_config: WebSocketConfig,
}

/// The WebSocket signaling server.
#[derive(Clone)]
pub struct SignalingServer {
    inner: Arc<Inner>,
}

/// Holds one slot of the connection limits for as long as a connection lives.
struct Slot {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.shared.stats.connections.fetch_sub(1, Relaxed);
        let mut per_ip = self.inner.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> ErrorResponse {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut resp = ErrorResponse::new(Some(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header value"),
    );
    resp
}

/// The `token` parameter of a query string, decoded.
fn token_param(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
}

/// `force-leave` for a peer silent too long; it is closed with 4011 after it.
fn force_leave() -> Utf8Bytes {
    ServerMessage::ForceLeave {
        data: Reason {
            reason: "heartbeat_timeout",
        },
    }
    .encode()
    .into()
}

/// Ends a silent connection as a heartbeat timeout (`docs/lifecycle.md`).
fn disconnect(conn: &Conn, force_leave: &Utf8Bytes) {
    conn.send_native(force_leave);
    conn.terminate(KillReason::HeartbeatTimeout);
}

impl SignalingServer {
    /// A server over `registry`, verifying tokens with `keys`.
    pub fn new(registry: Arc<Registry>, keys: TokenKeys) -> Self {
        let cfg = registry.config();
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(WRITE_BUFFER_BYTES)
            .max_write_buffer_size(WRITE_BUFFER_BYTES + 2 * cfg.max_message_bytes + 1024)
            .max_message_size(Some(cfg.max_message_bytes))
            .max_frame_size(Some(cfg.max_message_bytes));
        let stats = registry.stats().clone();
        let shared = Arc::new(Shared {
            registry,
            stats,
            keys,
            tasks: TaskTracker::new(),
        });
        Self {
            inner: Arc::new(Inner {
                shared,
                per_ip: Mutex::new(HashMap::new()),
                draining: AtomicBool::new(false),
                ws_config,
            }),
        }
    }

    /// Accepts connections until the returned future is dropped. Each connection runs in a
    /// task of its own, tracked for [`wait_closed`](Self::wait_closed).
    pub async fn serve(self, listener: TcpListener) {
        self.serve_with(listener, None).await
    }

    /// Like [`serve`](Self::serve), with every connection in TLS (`wss://`). The handshake
    /// must finish within `AUTH_TIMEOUT_SECONDS`, like the upgrade that follows it.
    pub async fn serve_tls(self, listener: TcpListener, tls: TlsAcceptor) {
        self.serve_with(listener, Some(tls)).await
    }

    async fn serve_with(self, listener: TcpListener, tls: Option<TlsAcceptor>) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let inner = self.inner.clone();
                    let tasks = &self.inner.shared.tasks;
                    let Some(tls) = tls.clone() else {
                        tasks.spawn(handle(inner, Box::new(stream), peer));
                        continue;
                    };
                    tasks.spawn(async move {
                        let timeout = inner.shared.registry.config().auth_timeout;
                        match tokio::time::timeout(timeout, tls.accept(stream)).await {
                            Ok(Ok(stream)) => handle(inner, Box::new(stream), peer).await,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning; existing peers go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Sends heartbeats and pings every interval and force-leaves silent peers, until the
    /// returned future is dropped.
    pub async fn run_heartbeats(self) {
        let shared = &self.inner.shared;
        let cfg = shared.registry.config();
        let (interval, timeout) = (cfg.heartbeat_interval, cfg.peer_timeout.as_millis() as u64);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_ms();
            let beat: Utf8Bytes = ServerMessage::Heartbeat {
                data: Heartbeat { ts: now },
            }
            .encode()
            .into();
            let force_leave = force_leave();
            for conn in shared.registry.conns() {
                if now.saturating_sub(conn.last_seen_ms()) > timeout {
                    disconnect(&conn, &force_leave);
                    shared.stats.heartbeat_timeouts.fetch_add(1, Relaxed);
                } else if conn.send_native(&beat) {
                    conn.ping();
                }
            }
        }
    }

    /// Disconnects peers that have been silent for longer than `silence`, as for a
    /// heartbeat timeout. Returns how many.
    pub fn disconnect_silent(&self, silence: Duration) -> usize {
        let now = now_ms();
        let limit = silence.as_millis() as u64;
        let force_leave = force_leave();
        let mut n = 0;
        for conn in self.inner.shared.registry.conns() {
            if now.saturating_sub(conn.last_seen_ms()) > limit {
                disconnect(&conn, &force_leave);
                n += 1;
            }
        }
        n
    }

    /// Refuses new upgrades and tells every peer to reconnect later, closing with 1001.
    pub fn drain(&self, reconnect_after: Duration) {
        self.inner.draining.store(true, Relaxed);
        let frame: Utf8Bytes = ServerMessage::ServerShutdown {
            data: Shutdown {
                reconnect_after_ms: reconnect_after.as_millis() as u64,
            },
        }
        .encode()
        .into();
        for conn in self.inner.shared.registry.conns() {
            conn.send_native(&frame);
            conn.terminate(KillReason::Shutdown);
        }
    }

    /// Resolves once every connection task has ended, its writer included. Meant for after
    /// [`drain`](Self::drain): connections accepted meanwhile (to be refused) are waited
    /// for too, and those are quick.
    pub async fn wait_closed(&self) {
        let tasks = &self.inner.shared.tasks;
        tasks.close();
        tasks.wait().await;
    }

    /// Open connections.
    pub fn connections(&self) -> u64 {
        self.inner.shared.stats.connections.load(Relaxed)
    }
}

/// Why the limits refuse a connection: HTTP status, error code, message.
type Refused = (StatusCode, &'static str, &'static str);

/// Takes a slot of the connection limits for a connection from `ip`.
fn acquire(inner: &Arc<Inner>, ip: IpAddr) -> Result<Slot, Refused> {
    let shared = &inner.shared;
    let cfg = shared.registry.config();
    if inner.draining.load(Relaxed) {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "DRAINING",
            "server is shutting down",
        ));
    }
    if shared.stats.connections.fetch_add(1, Relaxed) >= cfg.max_connections as u64 {
        shared.stats.connections.fetch_sub(1, Relaxed);
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_CONNECTIONS",
            "server is at its connection limit",
        ));
    }
    let mut per_ip = inner.per_ip.lock().unwrap_or_else(|p| p.into_inner());
    let n = per_ip.entry(ip).or_insert(0);
    if cfg.max_connections_per_ip.is_some_and(|max| *n >= max) {
        drop(per_ip);
        shared.stats.connections.fetch_sub(1, Relaxed);
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_CONNECTIONS",
            "too many connections from this address",
        ));
    }
    *n += 1;
    Ok(Slot {
        inner: inner.clone(),
        ip,
    })
}

/// What an admitted upgrade asked for.
enum Endpoint {
    /// `/ws`, authenticated already when the upgrade carried a token.
    Native(Option<Claims>),
    /// `/yjs`, which always carries a token.
    Yjs(Claims),
}

/// Checks an upgrade request: its path, then the connection limits (`refused`), `Origin`
/// and `?token=` (`docs/protocol.md#2-connect-and-authenticate`, `docs/yjs.md`).
#[allow(clippy::result_large_err)] // the error type is tungstenite's
fn admit(
    shared: &Shared,
    refused: Option<Refused>,
    req: &Request,
) -> Result<Endpoint, ErrorResponse> {
    let yjs = match req.uri().path() {
        "/ws" => false,
        "/yjs" => true,
        _ => {
            return Err(refusal(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "the signaling endpoints are /ws and /yjs",
            ))
        }
    };
    if let Some((status, code, message)) = refused {
        return Err(refusal(status, code, message));
    }
    if let (Some(allowed), Some(origin)) = (
        &shared.registry.config().allowed_origins,
        req.headers().get("origin"),
    ) {
        let origin = origin.to_str().unwrap_or("");
        if !allowed.iter().any(|a| a == origin) {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "origin not allowed",
            ));
        }
    }
    let claims = match req.uri().query().and_then(token_param) {
        None => None,
        Some(token) => Some(shared.keys.verify(&token).map_err(|e| {
            let code = ErrorCode::from(e);
            refusal(StatusCode::UNAUTHORIZED, code.as_str(), &code.to_string())
        })?),
    };
    match (yjs, claims) {
        (false, claims) => Ok(Endpoint::Native(claims)),
        (true, Some(claims)) => Ok(Endpoint::Yjs(claims)),
        (true, None) => Err(refusal(
            StatusCode::UNAUTHORIZED,
            "AUTH_FAILED",
            "/yjs requires ?token=<room token>",
        )),
    }
}

/// One TCP connection: the checked upgrade, then the session its endpoint speaks.
#[allow(clippy::result_large_err)] // the callback type is tungstenite's
async fn handle(inner: Arc<Inner>, stream: Io, peer: SocketAddr) {
    let shared = &inner.shared;
    let slot = acquire(&inner, peer.ip());
    let refused = slot.as_ref().err().copied();
    let mut endpoint = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        endpoint = Some(admit(shared, refused, req)?);
        Ok(resp)
    };
    let timeout = shared.registry.config().auth_timeout;
    let accept =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(inner.ws_config));
    let ws = match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %peer, "upgrade refused or failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "upgrade timed out");
            return;
        }
    };
    let (Ok(slot), Some(endpoint)) = (slot, endpoint) else {
        return;
    };
    shared.stats.connections_total.fetch_add(1, Relaxed);
    let conn = shared.registry.open_conn();
    tracing::debug!(%peer, conn = conn.id, "websocket open");
    let shared = shared.clone();
    match endpoint {
        Endpoint::Yjs(claims) => {
            let session = yjs::Session::new(shared.clone(), conn.clone(), claims);
            reader::run(shared, ws, conn, session).await
        }
        Endpoint::Native(claims) => {
            let session = native::Session::new(shared.clone(), conn.clone(), claims);
            reader::run(shared, ws, conn, session).await
        }
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_token_is_found_and_decoded() {
        assert_eq!(token_param("a=1&token=x.y.z").as_deref(), Some("x.y.z"));
        assert_eq!(token_param("token=a%2Eb").as_deref(), Some("a.b"));
        assert_eq!(token_param("token=a+b").as_deref(), Some("a b"));
        assert_eq!(token_param("tokens=1"), None);
        assert_eq!(token_param("token=%").as_deref(), Some("%"));
        assert_eq!(token_param("token=%4").as_deref(), Some("%4"));
    }
}

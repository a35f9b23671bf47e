//! Black-box harness: the real `switchboard` binary, started on port 0 by
//! `switchboard-testkit` (which records everything it prints), and small HTTP and WebSocket
//! clients for it whose every wait is bounded.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard_testkit::{eventually, Exited, Switchboard};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

pub use switchboard_testkit::{Launch, JWT_SECRET};

/// Longest a test waits for any single expected event.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// Close code reported when the connection ended without a close frame.
pub const ABNORMAL_CLOSE: u16 = 1006;

/// What the configuration tests expect of a [`Launch`]: a server that refuses its settings.
pub trait ExpectRefusal {
    /// Runs the server expecting a non-zero exit within the startup bound, exactly one
    /// non-empty stderr line and that line naming `var`, and no `listening` line.
    fn expect_refusal_naming(self, var: &str) -> Exited;
}

impl ExpectRefusal for Launch {
    fn expect_refusal_naming(self, var: &str) -> Exited {
        let exited = self.expect_exit().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !exited.status.success(),
            "expected a non-zero exit for bad {var}, got {}; stderr: {:?}",
            exited.status,
            exited.stderr
        );
        let lines = exited.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one non-empty stderr line for bad {var}, got {lines:?}"
        );
        assert!(
            lines[0].contains(var),
            "stderr line does not name {var}: {:?}",
            lines[0]
        );
        assert!(
            !exited.stdout.contains("\"listening\""),
            "server claimed to listen despite bad {var}: {}",
            exited.stdout
        );
        exited
    }
}

/// One running server with an HTTP client for it; killed on drop.
pub struct Server {
    server: Switchboard,
    /// `127.0.0.1:PORT` of the HTTP API.
    pub http_addr: String,
    /// `127.0.0.1:PORT` of the signaling WebSocket.
    pub signaling_addr: String,
    http: reqwest::Client,
}

/// A parsed HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body as JSON (`Value::String` with the raw text when it is not JSON, `Null` when empty).
    pub body: Value,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
}

impl HttpResponse {
    /// Asserts the documented error shape and returns the code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status, status,
            "expected {status} {code}, got {} {}",
            self.status, self.body
        );
        let err = &self.body["error"];
        assert_eq!(err["code"], code, "error body: {}", self.body);
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            self.body
        );
    }
}

impl Server {
    /// Starts a server with the base environment plus `vars`.
    pub fn start(vars: &[(&str, &str)]) -> Server {
        Self::launch(Launch::new().envs(vars))
    }

    /// Starts the server `launch` describes and waits for its `listening` line.
    pub fn launch(launch: Launch) -> Server {
        let server = launch.start().unwrap_or_else(|e| panic!("{e}"));
        Server {
            http_addr: server.http_addr.to_string(),
            signaling_addr: server.signaling_addr.to_string(),
            server,
            http: reqwest::Client::builder()
                .timeout(RECV_TIMEOUT)
                .build()
                .expect("reqwest client"),
        }
    }

    /// Port of the signaling listener.
    pub fn signaling_port(&self) -> u16 {
        self.server.signaling_addr.port()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http_addr, path)
    }

    /// `ws://127.0.0.1:PORT/ws{query}` (`query` includes its `?`).
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws{}", self.signaling_addr, query)
    }

    /// Sends one HTTP request with an optional Bearer credential and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> HttpResponse {
        let mut req = self.http.request(method, self.http_url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        into_response(req.send().await.expect("HTTP request")).await
    }

    /// Sends a raw body with `Content-Type: application/json`.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> HttpResponse {
        let req = self
            .http
            .post(self.http_url(path))
            .header("content-type", "application/json")
            .body(body);
        into_response(req.send().await.expect("HTTP request")).await
    }

    /// A request builder for anything unusual (custom headers).
    pub fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> HttpResponse {
        self.request(reqwest::Method::GET, path, None, None).await
    }

    /// `GET path` again and again until `done` holds for the answer, which it returns;
    /// panics after `timeout` with the last answer, saying that `what` was waited for.
    pub async fn get_until(
        &self,
        path: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&HttpResponse) -> bool,
    ) -> HttpResponse {
        eventually(timeout, || async {
            let answer = self.get(path).await;
            if done(&answer) {
                Ok(answer)
            } else {
                Err(answer)
            }
        })
        .await
        .unwrap_or_else(|last| {
            panic!(
                "waited {timeout:?} for {what}; last answer to GET {path}: {} {}",
                last.status, last.body
            )
        })
    }

    /// `GET path` until it answers `status` (at most `timeout`); returns that answer.
    pub async fn get_until_status(
        &self,
        path: &str,
        status: u16,
        timeout: Duration,
    ) -> HttpResponse {
        let what = format!("status {status}");
        self.get_until(path, timeout, &what, |r| r.status == status)
            .await
    }

    /// Waits until `GET /api/rooms/{room}` lists `user` as reconnecting: the server has seen
    /// its connection drop.
    pub async fn wait_reconnecting(&self, room: &str, user: &str) {
        let what = format!("{user} to become reconnecting");
        self.get_until(
            &format!("/api/rooms/{room}"),
            Duration::from_millis(2500),
            &what,
            |r| peer(&r.body["peers"], user)["status"] == "reconnecting",
        )
        .await;
    }

    /// `GET path` with a Bearer credential.
    pub async fn get_auth(&self, path: &str, bearer: &str) -> HttpResponse {
        self.request(reqwest::Method::GET, path, Some(bearer), None)
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> HttpResponse {
        self.request(reqwest::Method::POST, path, None, Some(body))
            .await
    }

    /// `POST path` with a JSON body and a Bearer credential.
    pub async fn post_auth(&self, path: &str, bearer: &str, body: &Value) -> HttpResponse {
        self.request(reqwest::Method::POST, path, Some(bearer), Some(body))
            .await
    }

    /// `DELETE path` with an optional Bearer credential.
    pub async fn delete(&self, path: &str, bearer: Option<&str>) -> HttpResponse {
        self.request(reqwest::Method::DELETE, path, bearer, None)
            .await
    }

    /// `POST /api/auth/token` with `body`, asserting 200; returns the whole answer.
    pub async fn issue(&self, body: Value) -> Value {
        let r = self.post("/api/auth/token", &body).await;
        assert_eq!(r.status, 200, "token request {body} failed: {}", r.body);
        r.body
    }

    /// A room token for `user` in `room`.
    pub async fn token(&self, user: &str, room: &str) -> String {
        let body = self
            .issue(json!({"userId": user, "roomId": room, "userName": user}))
            .await;
        body["token"].as_str().expect("token string").to_string()
    }

    /// `POST /api/rooms`, asserting 201; returns the answer.
    pub async fn create_room(&self, body: Value) -> Value {
        let r = self.post("/api/rooms", &body).await;
        assert_eq!(r.status, 201, "room creation {body} failed: {}", r.body);
        r.body
    }

    /// Connects with `?token=` and waits for `auth-ok`.
    pub async fn connect(&self, token: &str) -> WsClient {
        let mut c = WsClient::connect(&self.ws_url(&format!("?token={token}")), None)
            .await
            .expect("WebSocket upgrade with a valid token");
        c.recv_type("auth-ok").await;
        c
    }

    /// Connects without credentials.
    pub async fn connect_anonymous(&self) -> WsClient {
        WsClient::connect(&self.ws_url(""), None)
            .await
            .expect("WebSocket upgrade without token")
    }

    /// Gets a token, connects, sends `join-room`, waits for `room-joined`; returns both.
    pub async fn join_with(&self, user: &str, room: &str) -> (WsClient, Value) {
        let token = self.token(user, room).await;
        let mut c = self.connect(&token).await;
        c.label = user.to_string();
        c.send_json(json!({"type": "join-room"})).await;
        let joined = c.recv_type("room-joined").await;
        (c, joined)
    }

    /// Like [`Server::join_with`] but returns only the client.
    pub async fn join(&self, user: &str, room: &str) -> WsClient {
        self.join_with(user, room).await.0
    }
}

async fn into_response(resp: reqwest::Response) -> HttpResponse {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("HTTP body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    HttpResponse {
        status,
        body,
        headers,
    }
}

/// Connects a TCP stream for `url`, optionally from a given local IP and with a small
/// receive buffer, and runs the WebSocket handshake.
pub async fn ws_handshake(
    url: &str,
    origin: Option<&str>,
    local_ip: Option<&str>,
    recv_buffer: Option<u32>,
) -> Result<WebSocketStream<TcpStream>, tungstenite::Error> {
    let mut req = url.into_client_request()?;
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", HeaderValue::from_str(o).expect("origin header"));
    }
    let host = req.uri().host().expect("host").to_string();
    let port = req.uri().port_u16().expect("port");
    let addr: SocketAddr = format!("{host}:{port}").parse().expect("ip:port");
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(ip) = local_ip {
        socket
            .bind(format!("{ip}:0").parse().unwrap())
            .expect("bind local ip");
    }
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let stream = socket.connect(addr).await.map_err(tungstenite::Error::Io)?;
    stream.set_nodelay(true).ok();
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, _resp) = tokio::time::timeout(
        RECV_TIMEOUT,
        tokio_tungstenite::client_async_with_config(req, stream, Some(config)),
    )
    .await
    .expect("WebSocket handshake timed out")?;
    Ok(ws)
}

/// Attempts an upgrade that the server must refuse; returns the HTTP status.
pub async fn refused_upgrade_status(url: &str, origin: Option<&str>) -> u16 {
    match ws_handshake(url, origin, None, None).await {
        Ok(_) => panic!("upgrade to {url} (origin {origin:?}) was accepted, expected a refusal"),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("upgrade to {url} failed without an HTTP status: {e}"),
    }
}

/// One incoming frame as the tests see it.
#[derive(Debug)]
pub enum Incoming {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A close frame (code) or the end of the stream ([`ABNORMAL_CLOSE`]).
    Closed(u16),
}

/// A WebSocket client whose receive calls never wait longer than [`RECV_TIMEOUT`].
pub struct WsClient {
    ws: WebSocketStream<TcpStream>,
    /// Name used in failure messages.
    pub label: String,
    closed: Option<u16>,
}

impl WsClient {
    /// Connects to `url` (with an optional `Origin`).
    pub async fn connect(url: &str, origin: Option<&str>) -> Result<WsClient, tungstenite::Error> {
        Ok(Self::from_stream(
            ws_handshake(url, origin, None, None).await?,
        ))
    }

    /// Wraps an established stream.
    pub fn from_stream(ws: WebSocketStream<TcpStream>) -> WsClient {
        WsClient {
            ws,
            label: "client".into(),
            closed: None,
        }
    }

    /// Sends a JSON message.
    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, s: &str) {
        let label = self.label.clone();
        self.try_send(Message::text(s.to_string()))
            .await
            .unwrap_or_else(|e| panic!("[{label}] send failed: {e}"));
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        let label = self.label.clone();
        self.try_send(Message::binary(bytes))
            .await
            .unwrap_or_else(|e| panic!("[{label}] send failed: {e}"));
    }

    /// Sends any frame, reporting failures (for floods against a closing server).
    pub async fn try_send(&mut self, m: Message) -> Result<(), tungstenite::Error> {
        match tokio::time::timeout(RECV_TIMEOUT, self.ws.send(m)).await {
            Ok(r) => r,
            Err(_) => Err(tungstenite::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "send timed out",
            ))),
        }
    }

    /// The next frame (heartbeats included), or `None` after `timeout`.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<Incoming> {
        if let Some(code) = self.closed {
            return Some(Incoming::Closed(code));
        }
        loop {
            let next = match tokio::time::timeout(timeout, self.ws.next()).await {
                Err(_) => return None,
                Ok(n) => n,
            };
            let incoming = match next {
                Some(Ok(Message::Text(t))) => Incoming::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Incoming::Binary(b.to_vec()),
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                Some(Ok(Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                    self.closed = Some(code);
                    Incoming::Closed(code)
                }
                Some(Err(_)) | None => {
                    self.closed = Some(ABNORMAL_CLOSE);
                    Incoming::Closed(ABNORMAL_CLOSE)
                }
            };
            return Some(incoming);
        }
    }

    /// The raw text of the next non-heartbeat message, waiting at most `timeout`.
    pub async fn recv_raw_within(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                None => panic!("[{}] no message within {timeout:?}", self.label),
                Some(Incoming::Text(t)) => {
                    if is_heartbeat(&t) {
                        continue;
                    }
                    return t;
                }
                Some(Incoming::Binary(b)) => {
                    panic!(
                        "[{}] unexpected binary frame ({} bytes)",
                        self.label,
                        b.len()
                    )
                }
                Some(Incoming::Closed(code)) => {
                    panic!(
                        "[{}] connection closed ({code}) while waiting for a message",
                        self.label
                    )
                }
            }
        }
    }

    /// The raw text of the next non-heartbeat message.
    pub async fn recv_raw(&mut self) -> String {
        self.recv_raw_within(RECV_TIMEOUT).await
    }

    /// The next non-heartbeat message.
    pub async fn recv(&mut self) -> Value {
        let raw = self.recv_raw().await;
        serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("[{}] server sent invalid JSON ({e}): {raw}", self.label))
    }

    /// The next non-heartbeat message, waiting at most `timeout`.
    pub async fn recv_within(&mut self, timeout: Duration) -> Value {
        let raw = self.recv_raw_within(timeout).await;
        serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("[{}] server sent invalid JSON ({e}): {raw}", self.label))
    }

    /// The next non-heartbeat message, which must have type `ty`.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(
            v["type"], ty,
            "[{}] expected a `{ty}` message, got {v}",
            self.label
        );
        v
    }

    /// The next non-heartbeat message, which must be an `error` with `code`.
    pub async fn recv_error(&mut self, code: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(
            v["type"], "error",
            "[{}] expected error {code}, got {v}",
            self.label
        );
        assert_eq!(
            v["data"]["code"], code,
            "[{}] expected error {code}, got {v}",
            self.label
        );
        assert!(
            v["data"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "[{}] error without message: {v}",
            self.label
        );
        v
    }

    /// Skips messages of other types until one of type `ty` arrives.
    pub async fn recv_until_type(&mut self, ty: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("[{}] no `{ty}` message within {timeout:?}", self.label);
            }
            let v = self.recv_within(left).await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Waits for the close, asserting no other message (heartbeats aside) comes first.
    pub async fn expect_close(&mut self) -> u16 {
        self.expect_close_within(RECV_TIMEOUT).await
    }

    /// Like [`WsClient::expect_close`] with a custom bound.
    pub async fn expect_close_within(&mut self, timeout: Duration) -> u16 {
        let (msgs, code) = self.drain_until_close(timeout).await;
        assert!(
            msgs.is_empty(),
            "[{}] expected only a close, got messages first: {msgs:?}",
            self.label
        );
        code
    }

    /// Collects every non-heartbeat message until the connection closes; returns them and the code.
    pub async fn drain_until_close(&mut self, timeout: Duration) -> (Vec<Value>, u16) {
        let deadline = Instant::now() + timeout;
        let mut msgs = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                None => panic!(
                    "[{}] connection still open after {timeout:?}; received {msgs:?}",
                    self.label
                ),
                Some(Incoming::Closed(code)) => return (msgs, code),
                Some(Incoming::Text(t)) => {
                    if !is_heartbeat(&t) {
                        msgs.push(serde_json::from_str(&t).unwrap_or(Value::String(t)));
                    }
                }
                Some(Incoming::Binary(b)) => msgs.push(json!({"binary": b.len()})),
            }
        }
    }

    /// Asserts that nothing but heartbeats arrives for `d` (and the connection stays open).
    pub async fn expect_no_message(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_frame(left).await {
                None => return,
                Some(Incoming::Text(t)) if is_heartbeat(&t) => continue,
                Some(other) => panic!("[{}] expected silence for {d:?}, got {other:?}", self.label),
            }
        }
    }

    /// Whether the connection has been seen closing.
    pub fn closed_code(&self) -> Option<u16> {
        self.closed
    }

    /// Access to the underlying stream (for tests that must stall or split it).
    pub fn into_inner(self) -> WebSocketStream<TcpStream> {
        self.ws
    }
}

fn is_heartbeat(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .map(|v| v["type"] == "heartbeat")
        .unwrap_or(false)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Signs `claims` with HS256 and `secret`.
pub fn forge_token(secret: &str, claims: &Value) -> String {
    forge_token_alg(secret, claims, jsonwebtoken::Algorithm::HS256)
}

/// Signs `claims` with an HMAC algorithm of choice.
pub fn forge_token_alg(secret: &str, claims: &Value, alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign test token")
}

/// Claims for `user` in `room` valid from `iat` for `ttl` seconds.
pub fn claims(user: &str, room: &str, iat: u64, exp: u64) -> Value {
    json!({"sub": user, "room": room, "iat": iat, "exp": exp,
           "jti": "6f1c2a9e-0000-4000-8000-000000000001"})
}

/// A valid token signed with the test secret, without asking the server.
pub fn forge_valid_token(user: &str, room: &str) -> String {
    let now = now_secs();
    forge_token(JWT_SECRET, &claims(user, room, now, now + 600))
}

/// Verifies `token` with the test secret (HS256 only) and returns its claims.
pub fn verify_token(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .unwrap_or_else(|e| panic!("token does not verify with the test secret: {e}"))
    .claims
}

/// Whether `s` is a hyphenated, lowercase-or-uppercase UUID version 4.
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    for (i, c) in b.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            return false;
        }
    }
    b[14] == b'4' && matches!(b[19], b'8' | b'9' | b'a' | b'b' | b'A' | b'B')
}

/// Whether `s` is a valid room or user id, as the introduction of `docs/protocol.md` defines
/// identifiers.
pub fn is_valid_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c))
}

/// Finds the PeerInfo for `user` in a list.
pub fn peer<'a>(peers: &'a Value, user: &str) -> &'a Value {
    peers
        .as_array()
        .unwrap_or_else(|| panic!("not a peer list: {peers}"))
        .iter()
        .find(|p| p["userId"] == user)
        .unwrap_or_else(|| panic!("no peer {user} in {peers}"))
}

/// Asserts the PeerInfo shape and returns it.
pub fn assert_peer_info(p: &Value, user: &str, is_host: bool, status: &str) {
    assert_eq!(p["userId"], user, "PeerInfo {p}");
    assert_eq!(p["isHost"], is_host, "PeerInfo {p}");
    assert_eq!(p["status"], status, "PeerInfo {p}");
    assert!(p["userName"].is_string(), "PeerInfo without userName: {p}");
    let now = now_ms();
    for f in ["connectedAt", "lastHeartbeat"] {
        let t = p[f]
            .as_u64()
            .unwrap_or_else(|| panic!("PeerInfo.{f} not a ms timestamp: {p}"));
        assert!(
            t > now - 600_000 && t <= now + 5_000,
            "PeerInfo.{f} not a recent ms timestamp: {p}"
        );
    }
}

/// Process-level controls, for lifecycle tests.
impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.process.pid()
    }

    /// Sends SIGTERM to the server.
    pub fn terminate(&self) {
        self.server.process.terminate().expect("kill -TERM");
    }

    /// Sends SIGKILL to the server and waits until it is gone.
    pub fn kill(&mut self) {
        self.server.process.kill();
    }

    /// Waits up to `timeout` for the process to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.server.process.wait_exit(timeout)
    }

    /// Every stdout and stderr line printed so far.
    pub fn output(&self) -> Vec<String> {
        self.server.process.output()
    }

    /// Kills the process and returns everything it printed.
    pub fn stop(mut self) -> Vec<String> {
        self.kill();
        self.output()
    }

    /// The server's resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        self.server
            .process
            .rss_kib()
            .expect("VmRSS of a running server")
    }
}

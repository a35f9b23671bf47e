//! The load generator's client side: a minimal keep-alive HTTP/1.1 client for
//! `POST /api/auth/token` (cheap enough that the generator, not the client library, sets the
//! pace), WebSocket connects, and the join sequence for either server.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::procs::Endpoint;

/// Longest wait for any single reply during setup.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// A failure while setting up or running a client.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One keep-alive HTTP/1.1 connection.
pub struct HttpClient {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl HttpClient {
    /// Opens a connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends a JSON POST and returns the status and body.
    pub async fn post_json(&mut self, path: &str, body: &str) -> io::Result<(u16, Vec<u8>)> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.exchange(&request).await
    }

    /// Sends a GET and returns the status and body.
    pub async fn get(&mut self, path: &str) -> io::Result<(u16, Vec<u8>)> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.exchange(&request).await
    }

    async fn exchange(&mut self, request: &str) -> io::Result<(u16, Vec<u8>)> {
        self.stream.write_all(request.as_bytes()).await?;
        loop {
            if let Some((status, head_len, body_len)) = parse_response_head(&self.buf)? {
                if self.buf.len() >= head_len + body_len {
                    let body = self.buf[head_len..head_len + body_len].to_vec();
                    self.buf.drain(..head_len + body_len);
                    return Ok((status, body));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Asks for a room token; returns the JWT.
    pub async fn token(&mut self, user: &str, room: &str) -> Result<String, Error> {
        let body = format!(r#"{{"userId":"{user}","roomId":"{room}"}}"#);
        let (status, body) = self.post_json("/api/auth/token", &body).await?;
        if status != 200 {
            return Err(format!("token: HTTP {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        extract_string(&body, "token")
            .map(str::to_string)
            .ok_or_else(|| "token: no token in the answer".into())
    }
}

/// `(status, header length, content length)` once the head is complete.
fn parse_response_head(buf: &[u8]) -> io::Result<Option<(u16, usize, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked answers are not supported"));
            }
        }
    }
    let length = length.ok_or_else(|| bad("no content-length"))?;
    Ok(Some((status, end + 4, length)))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The value of a top-level `"key":"value"` string in a JSON body (no escapes in it).
fn extract_string<'a>(body: &'a [u8], key: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(body).ok()?;
    let pat = format!("\"{key}\":\"");
    let start = text.find(&pat)? + pat.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// The `type` of a server message: a fast look at the first field (the server writes it
/// first), with a full parse as the fallback.
pub fn msg_type(text: &str) -> Option<String> {
    if let Some(rest) = text.strip_prefix(r#"{"type":""#) {
        return rest.find('"').map(|end| rest[..end].to_string());
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("type")?.as_str().map(str::to_string)
}

/// Client socket settings: `read_buffer` bytes per connection (small for the 10,000 idle
/// peers, larger where throughput matters).
pub fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
}

/// Opens `ws://addr{path}`.
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    config: WebSocketConfig,
) -> Result<Ws, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    Ok(ws)
}

/// Reads text frames until one of type `want`; an `error` frame fails.
pub async fn expect(ws: &mut Ws, want: &str) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| format!("no {want} within {SETUP_TIMEOUT:?}"))?;
        match msg {
            Some(Ok(Message::Text(text))) => match msg_type(&text).as_deref() {
                Some(t) if t == want => return Ok(()),
                Some("error") => return Err(format!("waiting for {want}: {text}").into()),
                _ => {}
            },
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed waiting for {want}: {frame:?}").into())
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(format!("connection ended waiting for {want}").into()),
        }
    }
}

/// Brings `user` into `room` the whole way a browser would: for switchboard a token over
/// HTTP (on `http`, which must be set), the upgrade with `?token=`, `auth-ok`, `join-room`
/// and `room-joined`; for the ceiling just the upgrade on `/<room>`.
pub async fn join(
    endpoint: &Endpoint,
    http: Option<&mut HttpClient>,
    user: &str,
    room: &str,
    config: WebSocketConfig,
) -> Result<Ws, Error> {
    match endpoint {
        Endpoint::Switchboard { sig, .. } => {
            let http = http.ok_or("switchboard join needs an HTTP client")?;
            let token = http.token(user, room).await?;
            let mut ws = ws_connect(*sig, &format!("/ws?token={token}"), config).await?;
            expect(&mut ws, "auth-ok").await?;
            ws.send(Message::text(r#"{"type":"join-room"}"#)).await?;
            expect(&mut ws, "room-joined").await?;
            Ok(ws)
        }
        Endpoint::Ceiling { addr } => ws_connect(*addr, &format!("/{room}"), config).await,
    }
}

/// The number after `"t0":` in a frame: the sender's send time in ns since the run began.
pub fn sent_at(text: &str) -> Option<u64> {
    let start = text.find("\"t0\":")? + 5;
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_head_gives_status_and_lengths() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 11\r\n\r\n{\"token\":1}";
        assert_eq!(parse_response_head(raw).unwrap(), Some((200, 71, 11)));
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
    }

    #[test]
    fn token_and_timestamp_are_found_without_a_parse() {
        assert_eq!(
            extract_string(br#"{"token":"a.b.c","x":1}"#, "token"),
            Some("a.b.c")
        );
        assert_eq!(
            sent_at(r#"{"type":"sdp-offer","data":{"offer":{"t0":00000000000000001234,"s":"x"}}}"#),
            Some(1234)
        );
        assert_eq!(
            msg_type(r#"{"type":"auth-ok","data":{}}"#).as_deref(),
            Some("auth-ok")
        );
        assert_eq!(msg_type(r#"{ "type" : "x" }"#).as_deref(), Some("x"));
    }
}

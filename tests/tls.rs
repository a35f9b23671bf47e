//! Native TLS (`TLS_CERT_PATH`, `TLS_KEY_PATH`): with a self-signed certificate made here,
//! the HTTP API answers only over `https://`, tokens point at `wss://`, and the signaling
//! port speaks WebSocket over TLS; the two variables go together or not at all.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
struct Cert {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl Cert {
    fn new() -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("self-signed certificate");
        // Tests of this file run in parallel in one process and may start in the same
        // millisecond: a counter keeps each certificate in its own directory.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "switchboard-tls-{}-{}-{n}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Self {
            der: made.cert.der().clone(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn start(&self) -> Server {
        Server::launch(
            Launch::new()
                .env("TLS_CERT_PATH", &self.path("cert.pem"))
                .env("TLS_KEY_PATH", &self.path("key.pem")),
        )
    }

    /// A TLS connection to `addr` that trusts only this certificate.
    async fn connect(&self, addr: &str) -> TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.expect("TCP connect");
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake with the configured certificate")
    }

    /// One HTTP/1.1 request over TLS; returns the status and the JSON body.
    async fn https(
        &self,
        addr: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut tls = self.connect(addr).await;
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(RECV_TIMEOUT, tls.read_to_end(&mut raw)).await;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// A `wss://` connection with `?token=`, after its `auth-ok`.
    async fn wss(&self, addr: &str, token: &str) -> WebSocketStream<TlsStream<TcpStream>> {
        let tls = self.connect(addr).await;
        let port = addr.rsplit(':').next().unwrap();
        let url = format!("wss://localhost:{port}/ws?token={token}");
        let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
            .await
            .expect("WebSocket upgrade over TLS");
        assert_eq!(next_json(&mut ws).await["type"], "auth-ok");
        ws
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn next_json(ws: &mut WebSocketStream<TlsStream<TcpStream>>) -> Value {
    loop {
        let msg = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no WebSocket error");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn next_of_type(ws: &mut WebSocketStream<TlsStream<TcpStream>>, ty: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == ty {
            return v;
        }
    }
}

#[tokio::test]
async fn https_and_wss_on_both_ports_with_the_configured_certificate() {
    let cert = Cert::new();
    let server = cert.start();

    let (status, health) = cert.https(&server.http_addr, "GET", "/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");

    let (status, issued) = cert
        .https(
            &server.http_addr,
            "POST",
            "/api/auth/token",
            Some(&json!({"userId": "ada", "roomId": "secure"})),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    let url = issued["signalingUrl"].as_str().unwrap();
    assert!(
        url.starts_with("wss://"),
        "signalingUrl {url} is not wss://"
    );

    let mut ada = cert
        .wss(&server.signaling_addr, issued["token"].as_str().unwrap())
        .await;
    ada.send(Message::text(r#"{"type":"join-room"}"#))
        .await
        .unwrap();
    next_of_type(&mut ada, "room-joined").await;
    let mut bob = cert
        .wss(&server.signaling_addr, &forge_valid_token("bob", "secure"))
        .await;
    bob.send(Message::text(r#"{"type":"join-room"}"#))
        .await
        .unwrap();
    next_of_type(&mut bob, "room-joined").await;
    next_of_type(&mut ada, "peer-joined").await;
    let offer = json!({"type": "sdp-offer", "data": {"peer": "ada", "offer": {"sdp": "v=0"}}});
    bob.send(Message::text(offer.to_string())).await.unwrap();
    let got = next_of_type(&mut ada, "sdp-offer").await;
    assert_eq!(got["from"], "bob");
    assert_eq!(got["data"]["offer"], json!({"sdp": "v=0"}));
}

#[tokio::test]
async fn cleartext_on_a_tls_port_gets_no_answer() {
    let cert = Cert::new();
    let server = cert.start();
    for addr in [&server.http_addr, &server.signaling_addr] {
        let mut tcp = TcpStream::connect(addr.as_str()).await.unwrap();
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut raw)).await;
        assert!(
            !String::from_utf8_lossy(&raw).contains("HTTP/1.1"),
            "{addr} answered cleartext HTTP: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    // And a plain ws:// upgrade is refused the same way.
    let refused = WsClient::connect(&server.ws_url(""), None).await;
    assert!(refused.is_err(), "a cleartext WebSocket was accepted");
}

#[test]
fn tls_needs_both_files_and_readable_ones() {
    let cert = Cert::new();
    Launch::new()
        .env("TLS_CERT_PATH", &cert.path("cert.pem"))
        .expect_refusal_naming("TLS_KEY_PATH");
    Launch::new()
        .env("TLS_KEY_PATH", &cert.path("key.pem"))
        .expect_refusal_naming("TLS_CERT_PATH");
    Launch::new()
        .env("TLS_CERT_PATH", &cert.path("missing.pem"))
        .env("TLS_KEY_PATH", &cert.path("key.pem"))
        .expect_refusal_naming("TLS_CERT_PATH");
    Launch::new()
        .env("TLS_CERT_PATH", &cert.path("cert.pem"))
        .env("TLS_KEY_PATH", &cert.path("cert.pem"))
        .expect_refusal_naming("TLS_KEY_PATH");
}

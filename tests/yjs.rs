//! `/yjs` (`docs/yjs.md`): the y-webrtc signaling protocol on the signaling port, checked
//! against the real binary with a plain WebSocket client speaking what the `y-webrtc`
//! client sends.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// `ws://…/yjs?token=…` of `server`.
fn yjs_url(server: &Server, token: &str) -> String {
    format!("ws://{}/yjs?token={}", server.signaling_addr, token)
}

/// A `/yjs` connection for `user` with a token for `room`.
async fn yjs_client(server: &Server, user: &str, room: &str) -> WsClient {
    let token = server.token(user, room).await;
    let mut c = WsClient::connect(&yjs_url(server, &token), None)
        .await
        .expect("/yjs upgrade with a valid token");
    c.label = user.to_string();
    c
}

/// Subscribes to `topics` and proves the server has processed it (a `ping` sent after it
/// is answered after it).
async fn subscribe(c: &mut WsClient, topics: &[&str]) {
    c.send_json(json!({"type": "subscribe", "topics": topics}))
        .await;
    c.send_json(json!({"type": "ping"})).await;
    assert_eq!(c.recv().await, json!({"type": "pong"}));
}

/// The value of one sample line of `/metrics`, e.g.
/// `switchboard_messages_relayed_total{type="yjs-publish"}`.
async fn metric(server: &Server, series: &str) -> u64 {
    let r = server.get("/metrics").await;
    let text = r.body.as_str().expect("metrics are text");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}")) as u64
}

/// Every frame the server sent until it closed the TCP connection, as (opcode, payload),
/// read from the socket without answering anything.
async fn raw_frames(client: WsClient) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut ws = client.into_inner();
    let mut bytes = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, ws.get_mut().read_to_end(&mut bytes))
        .await
        .expect("server closed the socket")
        .expect("read until the server's FIN");
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 2 {
        let (op, len) = (rest[0] & 0x0f, (rest[1] & 0x7f) as usize);
        assert!(
            len < 126 && rest[1] & 0x80 == 0,
            "unexpected frame header {rest:?}"
        );
        frames.push((op, rest[2..2 + len].to_vec()));
        rest = &rest[2 + len..];
    }
    frames
}

#[tokio::test]
async fn publish_reaches_every_subscriber_including_the_sender_with_clients() {
    let server = Server::start(&[]);
    let mut a = yjs_client(&server, "ya", "doc-1").await;
    let mut b = yjs_client(&server, "yb", "doc-1").await;
    subscribe(&mut a, &["doc-1"]).await;
    subscribe(&mut b, &["doc-1"]).await;
    let before = metric(
        &server,
        "switchboard_messages_relayed_total{type=\"yjs-publish\"}",
    )
    .await;

    // Opaque fields pass through unchanged; a sender's own `clients` is overwritten.
    a.send_text(r#"{"type":"publish","topic":"doc-1","data":{"type":"announce","from":"p1","n":1.50},"clients":99}"#)
        .await;
    for c in [&mut a, &mut b] {
        let raw = c.recv_raw().await;
        assert!(raw.contains(r#""n":1.50"#), "payload re-encoded: {raw}");
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(
            v,
            json!({"type": "publish", "topic": "doc-1",
                   "data": {"type": "announce", "from": "p1", "n": 1.50}, "clients": 2})
        );
    }
    let after = metric(
        &server,
        "switchboard_messages_relayed_total{type=\"yjs-publish\"}",
    )
    .await;
    assert_eq!(after - before, 2, "one delivery per subscriber");

    // A publisher need not be subscribed (as in the reference server); it then gets no copy.
    let mut c = yjs_client(&server, "yc", "doc-1").await;
    c.send_json(json!({"type": "publish", "topic": "doc-1", "data": "x"}))
        .await;
    assert_eq!(a.recv().await["clients"], 2);
    assert_eq!(b.recv().await["data"], "x");
    c.expect_no_message(Duration::from_millis(300)).await;

    // After unsubscribe, only the remaining subscriber gets publishes.
    b.send_json(json!({"type": "unsubscribe", "topics": ["doc-1"]}))
        .await;
    b.send_json(json!({"type": "ping"})).await;
    assert_eq!(b.recv().await["type"], "pong");
    a.send_json(json!({"type": "publish", "topic": "doc-1", "data": "y"}))
        .await;
    let v = a.recv().await;
    assert_eq!(
        (v["data"].as_str(), v["clients"].as_u64()),
        (Some("y"), Some(1))
    );
    b.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn topics_other_than_the_token_room_are_ignored_and_counted() {
    let server = Server::start(&[]);
    let mut a = yjs_client(&server, "ya", "doc-a").await;
    let mut b = yjs_client(&server, "yb", "doc-b").await;
    let rejected = "switchboard_messages_rejected_total{reason=\"room_mismatch\"}";
    let before = metric(&server, rejected).await;

    // `a` asks for both topics but only gets its own.
    subscribe(&mut a, &["doc-a", "doc-b"]).await;
    subscribe(&mut b, &["doc-b"]).await;
    b.send_json(json!({"type": "publish", "topic": "doc-b", "data": "secret"}))
        .await;
    let v = b.recv().await;
    assert_eq!(
        (v["data"].as_str(), v["clients"].as_u64()),
        (Some("secret"), Some(1))
    );
    a.expect_no_message(Duration::from_millis(300)).await;

    // Publishing into another room reaches nobody.
    a.send_json(json!({"type": "publish", "topic": "doc-b", "data": "intrusion"}))
        .await;
    b.expect_no_message(Duration::from_millis(300)).await;
    a.expect_no_message(Duration::from_millis(10)).await;

    assert_eq!(metric(&server, rejected).await - before, 2);
}

#[tokio::test]
async fn upgrade_without_a_valid_token_is_refused_with_401() {
    let server = Server::start(&[]);
    let base = format!("ws://{}/yjs", server.signaling_addr);
    assert_eq!(refused_upgrade_status(&base, None).await, 401);
    assert_eq!(
        refused_upgrade_status(&format!("{base}?token="), None).await,
        401
    );
    assert_eq!(
        refused_upgrade_status(&format!("{base}?token=not.a.jwt"), None).await,
        401
    );
    let now = now_secs();
    let forged = forge_token(
        "another-secret-another-secret-another-secret",
        &claims("u1", "doc-1", now, now + 600),
    );
    assert_eq!(
        refused_upgrade_status(&format!("{base}?token={forged}"), None).await,
        401
    );
    let expired = forge_token(JWT_SECRET, &claims("u1", "doc-1", now - 700, now - 100));
    assert_eq!(
        refused_upgrade_status(&format!("{base}?token={expired}"), None).await,
        401
    );
    // Other paths stay unknown.
    let token = forge_valid_token("u1", "doc-1");
    let other = format!("ws://{}/yjs2?token={token}", server.signaling_addr);
    assert_eq!(refused_upgrade_status(&other, None).await, 404);
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let server = Server::start(&[]);
    let mut a = yjs_client(&server, "ya", "doc-1").await;
    a.send_json(json!({"type": "ping"})).await;
    assert_eq!(a.recv_raw().await, r#"{"type":"pong"}"#);
    // Unknown types and garbage get no answer (the protocol has no errors).
    a.send_json(json!({"type": "auth", "data": {}})).await;
    a.send_text("not json").await;
    a.expect_no_message(Duration::from_millis(300)).await;
    a.send_json(json!({"type": "ping"})).await;
    assert_eq!(a.recv().await["type"], "pong");
}

#[tokio::test]
async fn only_websocket_pings_keep_a_yjs_connection_alive() {
    let server = Server::start(&[
        ("HEARTBEAT_INTERVAL_SECONDS", "0.5"),
        ("PEER_TIMEOUT_SECONDS", "2"),
    ]);
    // A reading client answers the pings and gets no native `heartbeat` text frames.
    let mut a = yjs_client(&server, "ya", "doc-1").await;
    // (`next_frame` skips pings, restarting its wait: the outer timeout bounds it.)
    let window = Duration::from_millis(1500);
    if let Ok(frame) = tokio::time::timeout(window, a.next_frame(window)).await {
        panic!("expected no frame on /yjs, got {frame:?}");
    }
    a.send_json(json!({"type": "ping"})).await;
    assert_eq!(a.recv().await["type"], "pong");

    // A client that reads nothing answers no ping and is cut off after PEER_TIMEOUT,
    // without a native `force-leave`.
    let timeouts = "switchboard_heartbeat_timeouts_total";
    let before = metric(&server, timeouts).await;
    let silent = yjs_client(&server, "ys", "doc-1").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while metric(&server, timeouts).await == before {
        assert!(std::time::Instant::now() < deadline, "no heartbeat timeout");
        // `a` stays alive meanwhile: its `ping` messages are signs of life.
        a.send_json(json!({"type": "ping"})).await;
        assert_eq!(a.recv().await["type"], "pong");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `a`, which kept talking, is still served.
    a.send_json(json!({"type": "ping"})).await;
    assert_eq!(a.recv().await["type"], "pong");
    drop(a);
    // Reading through tungstenite now would answer the queued pings into a closed socket
    // and fail before the close frame: read the raw (unmasked) server frames instead.
    let frames = raw_frames(silent).await;
    assert!(
        frames.iter().all(|(op, _)| *op == 0x9 || *op == 0x8),
        "only pings and a close expected, got opcodes {:?}",
        frames.iter().map(|(op, _)| op).collect::<Vec<_>>()
    );
    let (op, payload) = frames.last().expect("a close frame");
    assert_eq!(*op, 0x8);
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    assert_eq!(code, 4011);
}

#[tokio::test]
async fn frames_over_max_message_bytes_close_with_1009() {
    let server = Server::start(&[("MAX_MESSAGE_BYTES", "1024")]);
    let mut a = yjs_client(&server, "ya", "doc-1").await;
    let big = "x".repeat(2000);
    a.send_json(json!({"type": "publish", "topic": "doc-1", "data": big}))
        .await;
    assert_eq!(a.expect_close().await, 1009);
}

#[tokio::test]
async fn closing_the_room_disconnects_its_yjs_subscribers() {
    let server = Server::start(&[("ADMIN_API_KEY", "yjs-admin")]);
    assert_eq!(
        server
            .post("/api/rooms", &json!({"roomId": "doc"}))
            .await
            .status,
        201
    );
    let mut sub = yjs_client(&server, "u1", "doc").await;
    subscribe(&mut sub, &["doc"]).await;
    let mut other = yjs_client(&server, "u2", "other-doc").await;
    subscribe(&mut other, &["other-doc"]).await;
    let r = server
        .request(
            reqwest::Method::DELETE,
            "/api/rooms/doc",
            Some("yjs-admin"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, code) = sub.drain_until_close(Duration::from_secs(5)).await;
    assert_eq!(code, 4010);
    // Subscribers of other rooms are untouched.
    other.send_json(json!({"type": "ping"})).await;
    assert_eq!(other.recv_type("pong").await["type"], "pong");
}

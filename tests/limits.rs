//! Limits and isolation (`docs/protocol.md#4-errors`,
//! `docs/protocol.md#5-disconnects-and-reconnecting`,
//! `docs/security.md#2-a-holder-of-a-valid-token-for-another-room`): frame sizes, rate
//! limits, garbage, slow consumers, connection caps and the Origin check.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard_testkit::eventually;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn oversized_frame_closes_with_1009_and_no_error_message() {
    let server = Server::start(&[("MAX_MESSAGE_BYTES", "1024")]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;

    // Just under the limit is fine.
    let small = format!(
        r#"{{"type":"message","data":{{"text":"{}"}}}}"#,
        "x".repeat(900)
    );
    assert!(small.len() <= 1024);
    a.send_text(&small).await;
    b.recv_type("message").await;

    let big = format!(
        r#"{{"type":"message","data":{{"text":"{}"}}}}"#,
        "x".repeat(2000)
    );
    a.send_text(&big).await;
    let (msgs, code) = a.drain_until_close(RECV_TIMEOUT).await;
    assert!(msgs.is_empty(), "messages before the 1009 close: {msgs:?}");
    assert_eq!(code, 1009);
    // Nothing of it reached bob (alice is merely reconnecting for the grace period).
    b.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn oversized_frame_before_auth_closes_with_1009() {
    let server = Server::start(&[("MAX_MESSAGE_BYTES", "1024")]);
    let mut c = server.connect_anonymous().await;
    c.send_binary(vec![b'x'; 4096]).await;
    let (msgs, code) = c.drain_until_close(RECV_TIMEOUT).await;
    assert!(msgs.is_empty(), "{msgs:?}");
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn message_flood_is_rate_limited_then_closed_with_4008() {
    let server = Server::start(&[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "10")]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;

    // join-room used one token; 9 (or 10 after a refill) remain.
    for i in 0..40 {
        let msg = json!({"type": "cursor-update", "requestId": format!("f{i}"), "data": {"i": i}});
        if a.try_send(Message::text(msg.to_string())).await.is_err() {
            break;
        }
    }
    let (msgs, code) = a.drain_until_close(RECV_TIMEOUT).await;
    assert_eq!(code, 4008, "messages before close: {msgs:?}");
    let limited: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["type"] == "error" && m["data"]["code"] == "RATE_LIMITED")
        .collect();
    assert!(
        !limited.is_empty() && limited.len() == msgs.len(),
        "expected only RATE_LIMITED errors: {msgs:?}"
    );
    assert!(
        limited.len() >= 10 && limited.len() <= 12,
        "closed after {} refusals (burst 10): {msgs:?}",
        limited.len()
    );

    // bob got exactly the messages that were admitted, in order.
    let mut delivered = 0;
    while let Some(frame) = b.next_frame(Duration::from_millis(500)).await {
        let Incoming::Text(t) = frame else {
            panic!("bob got {frame:?}");
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "heartbeat" {
            continue;
        }
        assert_eq!(v["type"], "cursor-update", "{v}");
        assert_eq!(v["data"]["i"], delivered, "{v}");
        delivered += 1;
    }
    assert!(
        (9..=10).contains(&delivered),
        "{delivered} messages admitted with burst 10"
    );
    assert!(
        limited
            .iter()
            .all(|e| e["requestId"].as_str().is_some_and(|r| r.starts_with('f'))),
        "RATE_LIMITED errors must echo the requestId: {limited:?}"
    );
}

#[tokio::test]
async fn rate_limit_refills_over_time() {
    let server = Server::start(&[("RATE_LIMIT_PER_SECOND", "20"), ("RATE_LIMIT_BURST", "5")]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    // 20/s means one message every 50 ms is always admitted.
    for i in 0..30 {
        a.send_json(json!({"type": "cursor-update", "data": {"i": i}}))
            .await;
        let v = b.recv_type("cursor-update").await;
        assert_eq!(v["data"]["i"], i);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    a.expect_no_message(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn garbage_flood_closes_with_4008() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    for _ in 0..30 {
        if a.try_send(Message::text("{garbage")).await.is_err() {
            break;
        }
    }
    let (msgs, code) = a.drain_until_close(RECV_TIMEOUT).await;
    assert_eq!(code, 4008, "{msgs:?}");
    assert!(
        msgs.iter().all(|m| m["data"]["code"] == "INVALID_MESSAGE"),
        "{msgs:?}"
    );
    assert!(
        (19..=20).contains(&msgs.len()),
        "closed after {} garbage errors: {msgs:?}",
        msgs.len()
    );
}

#[tokio::test]
async fn some_garbage_does_not_close_the_connection() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    for _ in 0..15 {
        a.send_text("{garbage").await;
        a.recv_error("INVALID_MESSAGE").await;
    }
    a.send_json(json!({"type": "message", "data": {"text": "still here"}}))
        .await;
    b.recv_type("message").await;
}

/// Round trip offer→answer between `p` and `q`, returning how long it took.
async fn round_trip(p: &mut WsClient, q: &mut WsClient, i: u64) -> Duration {
    let start = Instant::now();
    p.send_json(json!({"type": "sdp-offer", "data": {"peer": "q", "offer": {"i": i}}}))
        .await;
    let offer = q.recv_type("sdp-offer").await;
    assert_eq!(offer["data"]["offer"]["i"], i);
    q.send_json(json!({"type": "sdp-answer", "data": {"peer": "p", "answer": {"i": i}}}))
        .await;
    let answer = p.recv_type("sdp-answer").await;
    assert_eq!(answer["data"]["answer"]["i"], i);
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn stalled_reader_is_cut_off_without_slowing_anyone_else() {
    let server = Server::start(&[
        ("OUTBOUND_QUEUE_SIZE", "4"),
        ("RATE_LIMIT_PER_SECOND", "100000"),
        ("RATE_LIMIT_BURST", "100000"),
        ("RECONNECT_GRACE_SECONDS", "0"),
    ]);

    // The stalled peer: tiny receive buffer, never reads after joining.
    let stalled_token = server.token("stalled", "r1").await;
    let stalled_ws = ws_handshake(
        &server.ws_url(&format!("?token={stalled_token}")),
        None,
        None,
        Some(4096),
    )
    .await
    .expect("upgrade");
    let mut stalled = WsClient::from_stream(stalled_ws);
    stalled.label = "stalled".into();
    stalled.recv_type("auth-ok").await;
    stalled.send_json(json!({"type": "join-room"})).await;
    stalled.recv_type("room-joined").await;
    let sender = server.join("sender", "r1").await;
    stalled.recv_type("peer-joined").await;

    // An unrelated pair in another room.
    let mut p = server.join("p", "r2").await;
    let mut q = server.join("q", "r2").await;
    p.recv_type("peer-joined").await;

    let flood = tokio::spawn(async move {
        let payload = "y".repeat(60_000);
        let mut ws = sender.into_inner();
        let started = Instant::now();
        let mut sent = 0u64;
        let mut seen: Vec<Value> = Vec::new();
        let mut slowest_send = Duration::ZERO;
        'outer: while started.elapsed() < Duration::from_secs(20) {
            let frame = format!(
                r#"{{"type":"sdp-offer","data":{{"peer":"stalled","offer":{{"n":{sent},"pad":"{payload}"}}}}}}"#
            );
            let t = Instant::now();
            tokio::time::timeout(Duration::from_secs(5), ws.send(Message::text(frame)))
                .await
                .expect("sending to the server blocked")
                .expect("send");
            slowest_send = slowest_send.max(t.elapsed());
            sent += 1;
            // Drain whatever the server said without waiting.
            while let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(1), ws.next()).await
            {
                if let Ok(Message::Text(t)) = msg {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "heartbeat" {
                        continue;
                    }
                    let gone = v["type"] == "peer-left"
                        || (v["type"] == "error" && v["data"]["code"] == "PEER_NOT_FOUND");
                    seen.push(v);
                    if gone {
                        break 'outer;
                    }
                }
            }
        }
        (
            WsClient::from_stream(ws),
            sent,
            seen,
            slowest_send,
            started.elapsed(),
        )
    });

    // Meanwhile the other pair keeps relaying promptly.
    let mut i = 0;
    let mut slowest = Duration::ZERO;
    while !flood.is_finished() || i < 5 {
        let rtt = round_trip(&mut p, &mut q, i).await;
        slowest = slowest.max(rtt);
        assert!(
            rtt < Duration::from_millis(250),
            "round trip {i} in another room took {rtt:?} while a peer stalled"
        );
        i += 1;
    }
    let (mut sender, sent, seen, slowest_send, took) = flood.await.unwrap();
    assert!(
        i > 0,
        "the flood finished before any round trip could be measured"
    );
    assert!(
        !seen.is_empty(),
        "stalled peer never cut off after {sent} x 60 KB in {took:?}"
    );
    let gone = seen.last().unwrap();
    assert_eq!(
        gone["type"], "peer-left",
        "first sign of the cut-off: {seen:?}"
    );
    assert_eq!(gone["from"], "stalled");
    assert_eq!(gone["data"]["reason"], "disconnected");
    assert!(
        slowest_send < Duration::from_millis(500),
        "a send to the server took {slowest_send:?}"
    );
    eprintln!("stalled after {sent} messages in {took:?}; {i} round trips, slowest {slowest:?}");

    // The grace is 0: the stalled peer is gone.
    sender
        .send_json(json!({"type": "sdp-offer", "requestId": "after",
                          "data": {"peer": "stalled", "offer": {}}}))
        .await;
    // (The stalled peer was the host, so `host-changed` may be queued before the answer,
    // as may PEER_NOT_FOUND for offers that were in flight.)
    loop {
        let v = sender.recv().await;
        if v["requestId"] == "after" {
            assert_eq!(v["data"]["code"], "PEER_NOT_FOUND", "{v}");
            break;
        }
        let in_flight = v["type"] == "error" && v["data"]["code"] == "PEER_NOT_FOUND";
        let host = v["type"] == "host-changed" && v["data"]["hostId"] == "sender";
        assert!(in_flight || host, "unexpected {v}");
    }
    let room = server.get("/api/rooms/r1").await;
    assert_eq!(room.body["peerCount"], 1, "{}", room.body);

    // Reading its backlog now, the stalled peer ends with 4008 (or no close frame at all).
    let (_, code) = stalled.drain_until_close(Duration::from_secs(10)).await;
    assert!(
        code == 4008 || code == ABNORMAL_CLOSE,
        "stalled peer closed with {code}"
    );
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused_with_503() {
    let server = Server::start(&[("MAX_CONNECTIONS", "2")]);
    let token = server.token("u1", "r1").await;
    let url = server.ws_url(&format!("?token={token}"));
    let mut first = WsClient::connect(&url, None).await.unwrap();
    first.recv_type("auth-ok").await;
    let mut second = server.connect_anonymous().await;
    assert_eq!(refused_upgrade_status(&url, None).await, 503);
    assert_eq!(refused_upgrade_status(&server.ws_url(""), None).await, 503);
    // The open connections are unaffected.
    let t2 = server.token("u2", "r1").await;
    second
        .send_json(json!({"type": "auth", "data": {"token": t2}}))
        .await;
    second.recv_type("auth-ok").await;

    // Closing one frees a slot.
    drop(first);
    eventually(Duration::from_secs(2), || async {
        match ws_handshake(&url, None, None, None).await {
            Ok(_) => Ok(()),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), 503);
                Err(())
            }
            Err(e) => panic!("{e}"),
        }
    })
    .await
    .unwrap_or_else(|()| panic!("slot never freed after a connection closed"));
}

#[tokio::test]
async fn connections_beyond_max_connections_per_ip_are_refused_with_429() {
    let server = Server::start(&[("MAX_CONNECTIONS_PER_IP", "2")]);
    let token = server.token("u1", "r1").await;
    let url = server.ws_url(&format!("?token={token}"));
    let _a = WsClient::connect(&url, None).await.unwrap();
    let _b = WsClient::connect(&url, None).await.unwrap();
    assert_eq!(refused_upgrade_status(&url, None).await, 429);

    // Another address (127.0.0.2 is loopback too) has its own allowance.
    let other = ws_handshake(&url, None, Some("127.0.0.2"), None).await;
    match other {
        Ok(ws) => {
            let mut c = WsClient::from_stream(ws);
            c.recv_type("auth-ok").await;
        }
        Err(e) => panic!("connection from 127.0.0.2 refused: {e}"),
    }
}

#[tokio::test]
async fn websocket_origin_is_checked_against_cors_origins() {
    let server = Server::start(&[(
        "CORS_ORIGINS",
        "https://app.example.com,https://other.example.com",
    )]);
    let token = server.token("u1", "r1").await;
    let url = server.ws_url(&format!("?token={token}"));

    for good in ["https://app.example.com", "https://other.example.com"] {
        let mut c = WsClient::connect(&url, Some(good))
            .await
            .unwrap_or_else(|e| panic!("origin {good} refused: {e}"));
        c.recv_type("auth-ok").await;
    }
    let mut none = WsClient::connect(&url, None)
        .await
        .expect("no Origin header is allowed");
    none.recv_type("auth-ok").await;

    for bad in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com.evil.com",
        "null",
    ] {
        assert_eq!(
            refused_upgrade_status(&url, Some(bad)).await,
            403,
            "origin {bad}"
        );
    }
    // Anonymous upgrades are checked as well.
    assert_eq!(
        refused_upgrade_status(&server.ws_url(""), Some("https://evil.example.com")).await,
        403
    );
}

#[tokio::test]
async fn any_origin_is_accepted_by_default() {
    let server = Server::start(&[]);
    let token = server.token("u1", "r1").await;
    let mut c = WsClient::connect(
        &server.ws_url(&format!("?token={token}")),
        Some("https://anything.example"),
    )
    .await
    .expect("default CORS_ORIGINS=* accepts any origin");
    c.recv_type("auth-ok").await;
}

#[tokio::test]
async fn forged_and_expired_tokens_do_not_disturb_other_peers() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    let now = now_secs();
    // A token for alice signed with another key must not let anyone act as alice.
    let forged = forge_token(
        "attacker-secret-attacker-secret-attacker",
        &claims("alice", "r1", now, now + 600),
    );
    assert_eq!(
        refused_upgrade_status(&server.ws_url(&format!("?token={forged}")), None).await,
        401
    );
    let mut m = server.connect_anonymous().await;
    m.send_json(json!({"type": "auth", "data": {"token": forged}}))
        .await;
    m.recv_error("INVALID_TOKEN").await;
    assert_eq!(m.expect_close().await, 4001);
    a.expect_no_message(Duration::from_millis(200)).await;
    b.expect_no_message(Duration::from_millis(10)).await;
    a.send_json(json!({"type": "message", "data": {"text": "ok"}}))
        .await;
    let v = b.recv_type("message").await;
    assert_eq!(v["from"], "alice");
}

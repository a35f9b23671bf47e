//! Leak check against the real binary: thousands of peers join rooms of 2–10, relay and
//! broadcast, then leave in every way a peer can (leave-room, close frame, vanishing). Once
//! the reconnect grace and a sweep have passed, nothing may remain and resident memory must
//! be back near where it was after a warm-up wave of the same shape.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;
use serde_json::json;

const WAVE: usize = 500;
const MEASURED_WAVES: usize = 4;

/// One wave: `WAVE` peers in rooms of 2..=10, each relays an offer to its neighbour and
/// broadcasts a cursor, then leaves one of three ways.
async fn wave(server: &Server, wave: usize) {
    let mut rooms: Vec<Vec<String>> = Vec::new();
    let mut placed = 0;
    let mut size = 2;
    while placed < WAVE {
        let n = size.min(WAVE - placed);
        rooms.push(
            (0..n)
                .map(|i| format!("w{wave}-r{}-u{i}", rooms.len()))
                .collect(),
        );
        placed += n;
        size = if size == 10 { 2 } else { size + 1 };
    }
    let tasks = rooms.into_iter().enumerate().map(|(r, users)| async move {
        let room = format!("w{wave}-room{r}");
        let mut clients = Vec::new();
        for u in &users {
            let token = forge_valid_token(u, &room);
            let mut c = server.connect(&token).await;
            c.send_json(json!({"type": "join-room"})).await;
            c.recv_type("room-joined").await;
            clients.push(c);
        }
        let n = clients.len();
        for (i, c) in clients.iter_mut().enumerate() {
            let next = &users[(i + 1) % n];
            c.send_json(json!({"type": "sdp-offer", "data": {"peer": next, "offer": {"sdp": "v=0 ".repeat(64)}}}))
                .await;
            c.send_json(json!({"type": "cursor-update", "data": {"line": i, "column": 1}})).await;
        }
        // Every peer receives the offer from its neighbour (after the joins of later peers).
        for c in clients.iter_mut() {
            c.recv_until_type("sdp-offer", Duration::from_secs(20)).await;
        }
        for (i, mut c) in clients.into_iter().enumerate() {
            match i % 3 {
                0 => {
                    c.send_json(json!({"type": "leave-room"})).await;
                    c.recv_until_type("room-left", Duration::from_secs(20)).await;
                    let _ = c.try_send(tokio_tungstenite::tungstenite::Message::Close(None)).await;
                }
                1 => {
                    let _ = c.try_send(tokio_tungstenite::tungstenite::Message::Close(None)).await;
                }
                _ => drop(c), // vanishes: TCP close without a WebSocket close
            }
        }
    });
    join_all(tasks).await;
}

async fn wait_empty(server: &Server) -> Duration {
    let start = Instant::now();
    server
        .get_until(
            "/stats",
            Duration::from_secs(20),
            "the server to empty",
            |s| s.body["server"]["activeRooms"] == 0 && s.body["server"]["totalConnections"] == 0,
        )
        .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_peers_leave_nothing_behind() {
    let server = Server::start(&[
        ("RECONNECT_GRACE_SECONDS", "0.5"),
        ("ROOM_EMPTY_GRACE_SECONDS", "0.2"),
        ("ROOM_SWEEP_INTERVAL_SECONDS", "0.2"),
        ("RATE_LIMIT_PER_SECOND", "1000"),
        ("RATE_LIMIT_BURST", "1000"),
    ]);
    wave(&server, 0).await;
    wait_empty(&server).await;
    let warm = server.rss_kib();

    let started = Instant::now();
    for w in 1..=MEASURED_WAVES {
        wave(&server, w).await;
    }
    let emptied_after = wait_empty(&server).await;
    let peers_s = server.get("/api/rooms").await; // admin-only: just proves the server still answers
    assert_eq!(peers_s.status, 403);
    let after = server.rss_kib();
    let stats = server.get("/stats").await.body;
    let ratio = after as f64 / warm as f64;
    println!(
        "leak: {} peers in {:.1}s; empty {:.2}s after the last wave; rss after warm-up {} KiB, after {} KiB ({:+.1}%); relayed {}",
        WAVE * MEASURED_WAVES,
        started.elapsed().as_secs_f64(),
        emptied_after.as_secs_f64(),
        warm,
        after,
        (ratio - 1.0) * 100.0,
        stats["signaling"]["messagesRelayed"],
    );
    assert_eq!(stats["server"]["authenticatedPeers"], 0, "{stats}");
    assert!(
        stats["signaling"]["byType"]["sdp-offer"].as_u64().unwrap()
            >= (WAVE * (MEASURED_WAVES + 1)) as u64
    );
    assert!(
        ratio <= 1.10,
        "resident memory grew from {warm} KiB to {after} KiB"
    );
}

//! Liveness and operations against the real binary: heartbeats, silent and half-open
//! peers, reconnect grace, sweeps, room TTLs, memory pressure, `/health`, `/stats`,
//! `/metrics` and the graceful drain. Every interval is configured down to fractions of a
//! second so lifecycles run in milliseconds.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-for-lifecycle-tests";

/// Reads messages (answering heartbeats with `pong`) for `d`; returns everything else.
async fn stay_alive(c: &mut WsClient, d: Duration) -> Vec<Value> {
    let deadline = Instant::now() + d;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match c.next_frame(left).await {
            None => break,
            Some(Incoming::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "heartbeat" {
                    c.send_json(json!({"type": "pong"})).await;
                } else {
                    seen.push(v);
                }
            }
            Some(Incoming::Closed(_)) => break,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    seen
}

#[tokio::test]
async fn heartbeats_arrive_on_schedule_as_message_and_ping() {
    let server = Server::start(&[("HEARTBEAT_INTERVAL_SECONDS", "0.2")]);
    let token = server.token("u1", "r1").await;
    let mut c = server.connect(&token).await;
    let start = Instant::now();
    let mut beats = Vec::new();
    while beats.len() < 3 {
        match c.next_frame(Duration::from_secs(2)).await {
            Some(Incoming::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "heartbeat", "{v}");
                let ts = v["data"]["ts"].as_u64().expect("data.ts");
                assert!(ts.abs_diff(now_ms()) < 2_000, "ts {ts} is not server time");
                beats.push(start.elapsed());
            }
            other => panic!("expected heartbeats, got {other:?}"),
        }
    }
    // Three beats at 0.2 s intervals: about 0.6 s, certainly not much faster or slower.
    let elapsed = beats[2];
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(1_500),
        "{beats:?}"
    );
}

#[tokio::test]
async fn silent_peer_is_force_left_while_answering_peer_stays() {
    let server = Server::start(&[
        ("HEARTBEAT_INTERVAL_SECONDS", "0.2"),
        ("PEER_TIMEOUT_SECONDS", "0.8"),
    ]);
    let mut alive = server.join("alive", "r1").await;
    let mut silent = server.join("silent", "r1").await;
    alive.recv_type("peer-joined").await;
    // `silent` is never read (so it never answers pings either); `alive` answers.
    let seen = stay_alive(&mut alive, Duration::from_millis(2_500)).await;
    let left: Vec<&Value> = seen.iter().filter(|v| v["type"] == "peer-left").collect();
    assert_eq!(left.len(), 1, "{seen:?}");
    assert_eq!(left[0]["from"], "silent");
    assert_eq!(left[0]["data"]["reason"], "timeout");
    assert_eq!(
        alive.closed_code(),
        None,
        "the answering peer was disconnected"
    );

    let (msgs, code) = silent.drain_until_close(Duration::from_secs(2)).await;
    assert_eq!(code, 4011);
    let force = msgs
        .iter()
        .find(|m| m["type"] == "force-leave")
        .expect("force-leave before the close");
    assert_eq!(force["data"]["reason"], "heartbeat_timeout");

    let peers = server.get("/api/rooms/r1/peers").await;
    assert_eq!(peers.body.as_array().unwrap().len(), 1, "{}", peers.body);
    let metrics = server.get("/metrics").await;
    assert!(metric_value(&metrics.body, "switchboard_heartbeat_timeouts_total", None) >= 1.0);
}

#[tokio::test]
async fn half_open_client_is_removed() {
    let server = Server::start(&[
        ("HEARTBEAT_INTERVAL_SECONDS", "0.2"),
        ("PEER_TIMEOUT_SECONDS", "0.8"),
    ]);
    let mut a = server.join("a", "r1").await;
    let b = server.join("b", "r1").await;
    a.recv_type("peer-joined").await;
    // b's process "vanishes": its socket stays open but nothing is read or written again.
    let stalled = b.into_inner();
    let seen = stay_alive(&mut a, Duration::from_millis(2_500)).await;
    let left = seen
        .iter()
        .find(|v| v["type"] == "peer-left")
        .expect("peer-left for the half-open peer");
    assert_eq!(
        (left["from"].as_str(), left["data"]["reason"].as_str()),
        (Some("b"), Some("timeout"))
    );
    drop(stalled);
}

#[tokio::test]
async fn reconnect_within_grace_is_silent_and_relays_meanwhile_are_unavailable() {
    let server = Server::start(&[("RECONNECT_GRACE_SECONDS", "3")]);
    let mut a = server.join("a", "r1").await;
    let b = server.join("b", "r1").await;
    a.recv_type("peer-joined").await;
    drop(b); // connection drops without leave-room

    server
        .get_until(
            "/api/rooms/r1/peers",
            Duration::from_secs(2),
            "b to show as reconnecting",
            |peers| {
                peers
                    .body
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["userId"] == "b" && p["status"] == "reconnecting")
            },
        )
        .await;
    a.send_json(json!({"type": "sdp-offer", "requestId": "q1", "data": {"peer": "b", "offer": {"sdp": "x"}}}))
        .await;
    let err = a.recv_error("PEER_UNAVAILABLE").await;
    assert_eq!(err["requestId"], "q1");

    let (mut b2, joined) = server.join_with("b", "r1").await;
    assert_eq!(joined["data"]["self"]["status"], "active");
    let back = a.recv_type("peer-reconnected").await;
    assert_eq!(back["from"], "b");
    // Relaying works again, and nobody saw a leave or join.
    a.send_json(json!({"type": "sdp-offer", "data": {"peer": "b", "offer": {"sdp": "y"}}}))
        .await;
    assert_eq!(b2.recv_type("sdp-offer").await["data"]["offer"]["sdp"], "y");
    a.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn after_the_grace_others_see_peer_left_disconnected() {
    let server = Server::start(&[
        ("RECONNECT_GRACE_SECONDS", "0.5"),
        ("ROOM_SWEEP_INTERVAL_SECONDS", "5"),
    ]);
    let mut a = server.join("a", "r1").await;
    let b = server.join("b", "r1").await;
    a.recv_type("peer-joined").await;
    let dropped_at = Instant::now();
    drop(b);
    let left = a.recv_within(Duration::from_secs(3)).await;
    assert_eq!(left["type"], "peer-left", "{left}");
    assert_eq!(left["from"], "b");
    assert_eq!(left["data"]["reason"], "disconnected");
    let waited = dropped_at.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "peer-left came before the grace: {waited:?}"
    );
    // The deadline fires on time, not at the next periodic sweep.
    assert!(
        waited < Duration::from_millis(2_000),
        "peer-left came late: {waited:?}"
    );
    a.send_json(json!({"type": "ice-candidate", "data": {"peer": "b", "candidate": {}}}))
        .await;
    a.recv_error("PEER_NOT_FOUND").await;
}

#[tokio::test]
async fn empty_room_is_removed_after_its_grace_and_not_before() {
    let server = Server::start(&[
        ("ROOM_EMPTY_GRACE_SECONDS", "1"),
        ("ROOM_SWEEP_INTERVAL_SECONDS", "0.1"),
    ]);
    let mut a = server.join("a", "r1").await;
    a.send_json(json!({"type": "leave-room"})).await;
    a.recv_type("room-left").await;
    let left_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let during = server.get("/api/rooms/r1").await;
    assert_eq!(
        during.status, 200,
        "room vanished within its grace: {}",
        during.body
    );
    assert_eq!(during.body["peerCount"], 0);
    assert_eq!(during.body["state"], "idle");
    server
        .get_until_status("/api/rooms/r1", 404, Duration::from_secs(3))
        .await;
    assert!(left_at.elapsed() >= Duration::from_millis(950));
    // Quietly removed, not closed: the id is free again at once.
    let (_again, joined) = server.join_with("a2", "r1").await;
    assert_eq!(joined["data"]["room"]["peerCount"], 1);
}

#[tokio::test]
async fn idle_room_closes_with_reason_idle() {
    let server = Server::start(&[
        ("ROOM_IDLE_TIMEOUT_SECONDS", "1"),
        ("HEARTBEAT_INTERVAL_SECONDS", "0.2"),
    ]);
    let mut a = server.join("a", "r1").await;
    let mut b = server.join("b", "r1").await;
    a.recv_type("peer-joined").await;
    // Heartbeats and pongs keep peers alive but are not room activity.
    let seen = stay_alive(&mut b, Duration::from_millis(1_500)).await;
    let closed = seen
        .iter()
        .find(|v| v["type"] == "room-closed")
        .expect("room-closed");
    assert_eq!(closed["data"]["reason"], "idle");
    let (msgs, code) = a.drain_until_close(Duration::from_secs(2)).await;
    assert_eq!(code, 4010);
    assert!(
        msgs.iter()
            .any(|m| m["type"] == "room-closed" && m["data"]["reason"] == "idle"),
        "{msgs:?}"
    );
    let r = server
        .post("/api/auth/token", &json!({"userId": "a", "roomId": "r1"}))
        .await;
    r.assert_error(410, "ROOM_CLOSED");
}

#[tokio::test]
async fn ttl_room_warns_then_expires() {
    let server = Server::start(&[]);
    let created = server
        .create_room(json!({"roomId": "ttl", "ttlSeconds": 2}))
        .await;
    assert_eq!(
        created["expiresAt"],
        Value::Null,
        "TTL must not run before the first join"
    );
    assert_eq!(created["timeUntilExpiration"], Value::Null);
    let (mut a, joined) = server.join_with("a", "ttl").await;
    let expires_at = joined["data"]["room"]["expiresAt"]
        .as_u64()
        .expect("expiresAt after join");
    assert!(expires_at.abs_diff(now_ms() + 2_000) < 1_000, "{joined}");
    // Less than 60 s remain at join: the warning comes at once, and only once.
    let warn = a.recv_type("room-expiring").await;
    assert_eq!(warn["data"]["expiresAt"].as_u64(), Some(expires_at));
    assert!(warn["data"]["timeUntilExpiration"].as_u64().unwrap() <= 2_000);
    let (msgs, code) = a.drain_until_close(Duration::from_secs(4)).await;
    assert_eq!(code, 4010);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["type"], "room-closed");
    assert_eq!(msgs[0]["data"]["reason"], "expired");
    assert!(now_ms() + 300 >= expires_at, "closed before its TTL");
}

#[tokio::test]
async fn ttl_warning_comes_sixty_seconds_before_expiry() {
    let server = Server::start(&[]);
    let (mut a, _) = server.join_with("a", "later").await;
    a.send_json(json!({"type": "leave-room"})).await;
    a.recv_type("room-left").await;
    // A fresh room with 61 s: no warning at join, the warning arrives about a second later.
    let token = server.token("h", "ttl61").await;
    let mut h = server.connect(&token).await;
    h.send_json(json!({"type": "create-room", "data": {"roomName": "T", "ttlSeconds": 61}}))
        .await;
    h.recv_type("room-joined").await;
    let started = Instant::now();
    let warn = h.recv_within(Duration::from_secs(4)).await;
    assert_eq!(warn["type"], "room-expiring", "{warn}");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "warned too early"
    );
    let left = warn["data"]["timeUntilExpiration"].as_u64().unwrap();
    assert!((59_000..=60_500).contains(&left), "{warn}");
}

fn metric_value(text: &Value, name: &str, label: Option<(&str, &str)>) -> f64 {
    let text = text.as_str().expect("metrics are text");
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics text ({e:?}):\n{text}"));
    for family in exposition.families.values() {
        for sample in family.iter_samples() {
            let full = match &family.family_type {
                openmetrics_parser::OpenMetricsType::Counter => {
                    format!("{}_total", family.family_name)
                }
                _ => family.family_name.clone(),
            };
            if full != name && family.family_name != name {
                continue;
            }
            let labels = sample.get_labelset().expect("labelset");
            if let Some((k, v)) = label {
                if labels.get_label_value(k) != Some(v) {
                    continue;
                }
            }
            return match &sample.value {
                openmetrics_parser::OpenMetricsValue::Counter(c) => c.value.as_f64(),
                openmetrics_parser::OpenMetricsValue::Gauge(g) => g.as_f64(),
                other => panic!("{name} has unexpected value {other:?}"),
            };
        }
    }
    panic!("{name} {label:?} not in /metrics:\n{text}");
}

#[tokio::test]
async fn metrics_parse_and_have_every_labelled_counter_from_startup() {
    let server = Server::start(&[]);
    let m = server.get("/metrics").await;
    assert_eq!(m.status, 200);
    let ct = m.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    for t in [
        "sdp-offer",
        "sdp-answer",
        "ice-candidate",
        "presence",
        "cursor-update",
        "message",
    ] {
        assert_eq!(
            metric_value(
                &m.body,
                "switchboard_messages_relayed_total",
                Some(("type", t))
            ),
            0.0
        );
        assert_eq!(
            metric_value(
                &m.body,
                "switchboard_bytes_relayed_total",
                Some(("type", t))
            ),
            0.0
        );
    }
    for r in [
        "rate_limited",
        "invalid_message",
        "unknown_type",
        "peer_not_found",
        "message_too_big",
    ] {
        assert_eq!(
            metric_value(
                &m.body,
                "switchboard_messages_rejected_total",
                Some(("reason", r))
            ),
            0.0
        );
    }
    for l in ["normal", "aggressive"] {
        assert_eq!(
            metric_value(&m.body, "switchboard_cleanups_total", Some(("level", l))),
            0.0
        );
    }
    for g in [
        "switchboard_connections",
        "switchboard_peers",
        "switchboard_rooms",
    ] {
        assert_eq!(metric_value(&m.body, g, None), 0.0, "{g}");
    }
    assert!(metric_value(&m.body, "switchboard_memory_rss_bytes", None) > 1e6);

    // Relay something and see the counters and the latency histogram move.
    let mut a = server.join("a", "r1").await;
    let mut b = server.join("b", "r1").await;
    a.recv_type("peer-joined").await;
    a.send_json(json!({"type": "sdp-offer", "data": {"peer": "b", "offer": {"sdp": "v=0"}}}))
        .await;
    b.recv_type("sdp-offer").await;
    a.send_json(json!({"type": "warp-speed"})).await;
    a.recv_error("UNKNOWN_TYPE").await;
    let _ = server.token("c", "r1").await;
    let m = server.get("/metrics").await;
    assert_eq!(
        metric_value(
            &m.body,
            "switchboard_messages_relayed_total",
            Some(("type", "sdp-offer"))
        ),
        1.0
    );
    assert!(
        metric_value(
            &m.body,
            "switchboard_bytes_relayed_total",
            Some(("type", "sdp-offer"))
        ) > 50.0
    );
    assert_eq!(
        metric_value(
            &m.body,
            "switchboard_messages_rejected_total",
            Some(("reason", "unknown_type"))
        ),
        1.0
    );
    assert_eq!(
        metric_value(&m.body, "switchboard_tokens_issued_total", None),
        3.0
    );
    assert_eq!(metric_value(&m.body, "switchboard_connections", None), 2.0);
    assert_eq!(metric_value(&m.body, "switchboard_peers", None), 2.0);
    assert_eq!(metric_value(&m.body, "switchboard_rooms", None), 1.0);
    let text = m.body.as_str().unwrap();
    assert!(
        text.contains("switchboard_relay_latency_seconds_count 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn stats_pages_rooms_in_id_order() {
    let server = Server::start(&[]);
    let mut clients = Vec::new();
    for room in ["r3", "r1", "r2", "r5", "r4"] {
        clients.push(server.join("u", room).await);
    }
    let s = server.get("/stats").await.body;
    assert_eq!(s["server"]["activeRooms"], 5);
    assert_eq!(s["server"]["totalConnections"], 5);
    assert_eq!(s["server"]["authenticatedPeers"], 5);
    assert!(s["server"]["version"].is_string());
    assert_eq!(s["memory"]["lastCleanup"], Value::Null);
    assert!(s["signaling"]["byType"]["sdp-offer"].is_u64());
    let ids: Vec<&str> = s["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["roomId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r1", "r2", "r3", "r4", "r5"]);
    assert_eq!(s["rooms"][0]["peerCount"], 1);
    let page = server.get("/stats?limit=2&offset=2").await.body;
    let ids: Vec<&str> = page["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["roomId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r3", "r4"]);
}

#[tokio::test]
async fn critical_memory_cleans_refuses_rooms_and_recovers_when_thresholds_rise() {
    let server = Server::start(&[
        ("MEMORY_CHECK_INTERVAL_SECONDS", "0.1"),
        ("MEMORY_WARNING_MB", "1"),
        ("MEMORY_CRITICAL_MB", "2"),
        ("ADMIN_API_KEY", ADMIN),
    ]);
    server
        .get_until_status("/health", 503, Duration::from_secs(3))
        .await;
    let h = server.get("/health").await;
    assert_eq!(h.body["status"], "critical");
    assert_eq!(h.body["memory"]["pressure"], "critical");
    assert!(h.body["memory"]["rssMb"].as_f64().unwrap() > 2.0);
    assert!(h.body["memory"]["heapUsedMb"].as_f64().unwrap() > 0.0);
    assert!(h.body["memory"]["systemTotalMb"].as_f64().unwrap() > 100.0);

    let report = &server.get("/stats").await.body["memory"]["lastCleanup"];
    assert_eq!(report["level"], "aggressive", "{report}");
    for field in ["at", "roomsClosed", "peersDisconnected", "freedMb"] {
        assert!(report[field].is_number(), "{field} missing: {report}");
    }
    let m = server.get("/metrics").await;
    assert!(
        metric_value(
            &m.body,
            "switchboard_cleanups_total",
            Some(("level", "aggressive"))
        ) >= 1.0
    );

    server
        .post("/api/rooms", &json!({"roomId": "new"}))
        .await
        .assert_error(503, "TOO_MANY_ROOMS");
    let token = server.token("u", "new2").await;
    let mut c = server.connect(&token).await;
    c.send_json(json!({"type": "join-room"})).await;
    c.recv_error("TOO_MANY_ROOMS").await;

    let r = server
        .request(
            reqwest::Method::PUT,
            "/api/admin/memory-thresholds",
            Some(ADMIN),
            Some(&json!({"warningMb": 100000, "criticalMb": 200000})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["pressure"], "normal");
    let h = server.get("/health").await;
    assert_eq!((h.status, h.body["status"].as_str()), (200, Some("ok")));
    assert_eq!(
        server
            .post("/api/rooms", &json!({"roomId": "new"}))
            .await
            .status,
        201
    );
    c.send_json(json!({"type": "join-room"})).await;
    c.recv_type("room-joined").await;
}

#[tokio::test]
async fn warning_memory_disconnects_silent_peers_and_reports_normal_cleanup() {
    let server = Server::start(&[
        ("MEMORY_CHECK_INTERVAL_SECONDS", "0.2"),
        ("MEMORY_WARNING_MB", "1"),
        ("MEMORY_CRITICAL_MB", "1000000"),
        ("HEARTBEAT_INTERVAL_SECONDS", "0.25"),
        ("PEER_TIMEOUT_SECONDS", "600"),
    ]);
    let mut alive = server.join("alive", "r1").await;
    let mut silent = server.join("silent", "r1").await;
    alive.recv_type("peer-joined").await;
    let seen = stay_alive(&mut alive, Duration::from_millis(2_000)).await;
    assert!(
        seen.iter()
            .any(|v| v["type"] == "peer-left" && v["from"] == "silent"),
        "silent peer not removed: {seen:?}"
    );
    let (_, code) = silent.drain_until_close(Duration::from_secs(2)).await;
    assert_eq!(code, 4011);
    let h = server.get("/health").await;
    assert_eq!(
        (h.status, h.body["status"].as_str()),
        (200, Some("warning"))
    );
    assert_eq!(
        server.get("/stats").await.body["memory"]["lastCleanup"]["level"],
        "normal"
    );
    // Warning alone does not refuse rooms.
    assert_eq!(
        server
            .post("/api/rooms", &json!({"roomId": "fine"}))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn admin_cleanup_runs_on_demand() {
    let server = Server::start(&[("ADMIN_API_KEY", ADMIN)]);
    let r = server
        .request(
            reqwest::Method::POST,
            "/api/admin/cleanup?level=aggressive",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["level"], "aggressive");
    assert_eq!(r.body["roomsClosed"], 0);
    let r = server
        .request(
            reqwest::Method::POST,
            "/api/admin/cleanup?level=extreme",
            Some(ADMIN),
            None,
        )
        .await;
    r.assert_error(400, "INVALID_INPUT");
    let r = server
        .request(reqwest::Method::POST, "/api/admin/cleanup", None, None)
        .await;
    r.assert_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn sigterm_drains_every_peer_and_exits_zero() {
    let mut server = Server::start(&[]);
    let mut a = server.join("a", "r1").await;
    let mut b = server.join("b", "r2").await;
    // A peer that never reads keeps its connection open, so the drain is observable.
    let stuck = server.join("stuck", "r3").await;
    server.terminate();
    let started = Instant::now();
    for c in [&mut a, &mut b] {
        let (msgs, code) = c.drain_until_close(Duration::from_secs(5)).await;
        assert_eq!(code, 1001);
        let shutdown = msgs
            .iter()
            .find(|m| m["type"] == "server-shutdown")
            .expect("server-shutdown");
        assert!(shutdown["data"]["reconnectAfterMs"].is_u64());
    }
    let h = server.get("/health").await;
    assert_eq!(
        (h.status, h.body["status"].as_str()),
        (503, Some("draining")),
        "{}",
        h.body
    );
    assert_eq!(refused_upgrade_status(&server.ws_url(""), None).await, 503);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exit within 10 s");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(stuck);
}

/// On one core the server runs every task on one thread (no work-stealing workers), and
/// everything still works: relays, heartbeats (timers), password hashing (blocking pool).
#[tokio::test]
async fn on_one_core_everything_runs_on_a_current_thread_runtime() {
    let server = Server::launch(
        Launch::new()
            .env("HEARTBEAT_INTERVAL_SECONDS", "0.2")
            .on_core(0),
    );
    let runtime_line = |server: &Server| {
        server
            .output()
            .into_iter()
            .find(|l| l.contains(r#""message":"runtime""#))
            .unwrap_or_default()
    };
    let line = runtime_line(&server);
    assert!(
        line.contains(r#""scheduler":"current-thread""#) && line.contains(r#""cores":1"#),
        "{line}"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        // The contrast: unpinned on this machine it uses the multi-thread scheduler.
        let wide = Server::start(&[]);
        let line = runtime_line(&wide);
        assert!(line.contains(r#""scheduler":"multi-thread""#), "{line}");
    }

    server
        .create_room(json!({"roomId": "locked", "roomName": "L", "hostId": "a", "password": "pw"}))
        .await;
    let token = |user: &str| json!({"userId": user, "roomId": "locked", "password": "pw"});
    let ta = server.issue(token("a")).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tb = server.issue(token("b")).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut a = server.connect(&ta).await;
    let mut b = server.connect(&tb).await;
    a.send_json(json!({"type": "join-room"})).await;
    a.recv_type("room-joined").await;
    b.send_json(json!({"type": "join-room"})).await;
    b.recv_type("room-joined").await;
    a.recv_type("peer-joined").await;
    for i in 0..50 {
        a.send_json(json!({"type": "ice-candidate", "data": {"peer": "b", "candidate": {"candidate": format!("c{i}")}}}))
            .await;
    }
    for i in 0..50 {
        let c = b.recv_type("ice-candidate").await;
        assert_eq!(c["data"]["candidate"]["candidate"], format!("c{i}"));
    }
    // Timers fire: a heartbeat (every 0.2 s) within a second.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match b.next_frame(left).await {
            Some(Incoming::Text(t)) if t.contains(r#""type":"heartbeat""#) => break,
            Some(_) => {}
            None => panic!("no heartbeat within a second"),
        }
    }
}

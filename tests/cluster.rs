//! Cluster mode against real processes: a real `redis-server` started on a free port and
//! two or three real Switchboard instances sharing it and one `JWT_SECRET`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use switchboard_testkit::Redis;

const ADMIN: &str = "cluster-admin-key";

fn instance(redis: &Redis, extra: &[(&str, &str)]) -> Server {
    let url = redis.url();
    let mut vars = vec![("REDIS_URL", url.as_str()), ("ADMIN_API_KEY", ADMIN)];
    vars.extend_from_slice(extra);
    Server::start(&vars)
}

async fn wait_cluster_ok(server: &Server) {
    let health = server
        .get_until(
            "/health",
            Duration::from_secs(10),
            "the instance to reach Redis",
            |h| h.body["cluster"]["redis"] == "ok",
        )
        .await;
    assert_eq!(health.body["cluster"]["mode"], "redis");
}

async fn pair() -> (Redis, Server, Server) {
    pair_with(&[]).await
}

/// Two instances sharing a fresh Redis, both with `extra` set, once both report Redis ok.
async fn pair_with(extra: &[(&str, &str)]) -> (Redis, Server, Server) {
    let redis = Redis::start().unwrap_or_else(|e| panic!("{e}"));
    let a = instance(&redis, extra);
    let b = instance(&redis, extra);
    wait_cluster_ok(&a).await;
    wait_cluster_ok(&b).await;
    (redis, a, b)
}

/// Joins `user` on `server` with a token fetched from `token_from`.
async fn join_via(
    server: &Server,
    token_from: &Server,
    user: &str,
    room: &str,
) -> (WsClient, Value) {
    let token = token_from.token(user, room).await;
    let mut c = server.connect(&token).await;
    c.send_json(json!({"type": "join-room"})).await;
    let joined = c.recv_type("room-joined").await;
    (c, joined)
}

#[tokio::test]
async fn peers_on_two_instances_see_each_other_and_relay_byte_identical() {
    let (_redis, a, b) = pair().await;
    let (mut u1, _) = join_via(&a, &a, "u1", "r1").await;
    // Token issued by A, used on B.
    let (mut u2, joined) = join_via(&b, &a, "u2", "r1").await;
    let peers = joined["data"]["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{joined}");
    assert_eq!(peers[0]["userId"], "u1");
    assert_eq!(peers[0]["isHost"], true);
    assert_eq!(joined["data"]["room"]["peerCount"], 2);
    let pj = u1.recv_type("peer-joined").await;
    assert_eq!(pj["from"], "u2");

    let offer =
        r#"{"sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n","x":[1,2.50,{"é":"\u00e9"}],  "n" : null}"#;
    u1.send_text(&format!(
        r#"{{"type":"sdp-offer","data":{{"peer":"u2","offer":{offer}}}}}"#
    ))
    .await;
    let raw = u2.recv_raw().await;
    assert!(
        raw.contains(&format!(r#""offer":{offer}"#)),
        "payload changed across instances: {raw}"
    );
    let v: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["from"].as_str(), v["roomId"].as_str()),
        (Some("sdp-offer"), Some("u1"), Some("r1"))
    );

    let answer = r#"{"type":"answer","sdp":"v=0 answer"}"#;
    u2.send_text(&format!(
        r#"{{"type":"sdp-answer","data":{{"peer":"u1","answer":{answer}}}}}"#
    ))
    .await;
    let raw = u1.recv_raw().await;
    assert!(raw.contains(&format!(r#""answer":{answer}"#)), "{raw}");
    u2.send_json(json!({"type": "ice-candidate", "data": {"peer": "u1", "candidate": {"candidate": "c1", "sdpMid": "0"}}}))
        .await;
    let c = u1.recv_type("ice-candidate").await;
    assert_eq!(c["data"]["candidate"]["candidate"], "c1");
    assert_eq!(c["from"], "u2");

    // Broadcasts cross too, and never come back to the sender.
    u2.send_json(json!({"type": "cursor-update", "data": {"line": 3, "column": 7}}))
        .await;
    let cur = u1.recv_type("cursor-update").await;
    assert_eq!(cur["data"], json!({"line": 3, "column": 7}));
    u1.send_json(json!({"type": "presence", "data": {"status": "idle"}}))
        .await;
    assert_eq!(u2.recv_type("presence").await["data"]["status"], "idle");
    u1.send_json(json!({"type": "message", "data": {"text": "hi"}}))
        .await;
    assert_eq!(u2.recv_type("message").await["data"]["text"], "hi");
    u1.expect_no_message(Duration::from_millis(200)).await;

    // Both instances answer the room from Redis.
    let room = b.get("/api/rooms/r1").await.body;
    assert_eq!(room["peerCount"], 2, "{room}");
    assert_eq!(room["hostId"], "u1");
}

/// Under a burst an instance packs many relays for another instance into one channel
/// message (and splits past 256 KiB): none may be lost, reordered or changed.
#[tokio::test]
async fn a_burst_across_instances_arrives_complete_and_in_order() {
    const EACH: usize = 300;
    let (_redis, a, b) = pair_with(&[
        ("RATE_LIMIT_PER_SECOND", "100000"),
        ("RATE_LIMIT_BURST", "100000"),
        ("OUTBOUND_QUEUE_SIZE", "4096"),
    ])
    .await;
    let (mut target, _) = join_via(&b, &b, "target", "r1").await;
    let (mut s1, _) = join_via(&a, &a, "s1", "r1").await;
    let (mut s2, _) = join_via(&a, &a, "s2", "r1").await;
    target.recv_type("peer-joined").await;
    target.recv_type("peer-joined").await;

    // About 1 KiB per candidate: 600 of them pass the batch limit twice.
    let filler = "x".repeat(1000);
    for i in 0..EACH {
        for (sender, name) in [(&mut s1, "s1"), (&mut s2, "s2")] {
            sender
                .send_text(&format!(
                    r#"{{"type":"ice-candidate","data":{{"peer":"target","candidate":{{"candidate":"{name}-{i}-{filler}","sdpMid":"0"}}}}}}"#
                ))
                .await;
        }
        if i % 100 == 0 {
            s1.send_json(json!({"type": "message", "data": {"text": i.to_string()}}))
                .await;
        }
    }
    let mut next = [0usize; 2];
    let mut broadcasts = Vec::new();
    while next != [EACH, EACH] || broadcasts.len() < EACH / 100 {
        let raw = target.recv_raw_within(Duration::from_secs(10)).await;
        let v: Value = serde_json::from_str(&raw).unwrap();
        match v["type"].as_str() {
            Some("ice-candidate") => {
                let c = v["data"]["candidate"]["candidate"].as_str().unwrap();
                let from = v["from"].as_str().unwrap();
                let k = usize::from(from == "s2");
                assert_eq!(
                    c,
                    format!("{from}-{}-{filler}", next[k]),
                    "lost, reordered or changed"
                );
                next[k] += 1;
            }
            Some("message") => broadcasts.push(v["data"]["text"].as_str().unwrap().to_owned()),
            _ => panic!("unexpected frame: {raw}"),
        }
    }
    assert_eq!(broadcasts, ["0", "100", "200"]);
    target.expect_no_message(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn leave_and_host_change_reach_the_other_instance() {
    let (_redis, a, b) = pair().await;
    let (mut host, _) = join_via(&a, &a, "host", "r1").await;
    let (mut second, _) = join_via(&b, &b, "second", "r1").await;
    let (mut third, _) = join_via(&a, &a, "third", "r1").await;
    host.recv_type("peer-joined").await;
    host.recv_type("peer-joined").await;
    second.recv_type("peer-joined").await;

    host.send_json(json!({"type": "leave-room"})).await;
    host.recv_type("room-left").await;
    for c in [&mut second, &mut third] {
        let left = c.recv_type("peer-left").await;
        assert_eq!(
            (left["from"].as_str(), left["data"]["reason"].as_str()),
            (Some("host"), Some("left"))
        );
        let hc = c.recv_type("host-changed").await;
        assert_eq!(
            hc["data"]["hostId"], "second",
            "the longest-present peer becomes host everywhere"
        );
    }
    let room = a.get("/api/rooms/r1").await.body;
    assert_eq!(room["hostId"], "second");
    assert_eq!(room["peerCount"], 2);
    // The new host (on B) may close the room; the peer on A is told.
    second.send_json(json!({"type": "close-room"})).await;
    let (msgs, code) = third.drain_until_close(Duration::from_secs(5)).await;
    assert_eq!(code, 4010);
    assert!(
        msgs.iter()
            .any(|m| m["type"] == "room-closed" && m["data"]["reason"] == "host-closed"),
        "{msgs:?}"
    );
    a.post("/api/auth/token", &json!({"userId": "x", "roomId": "r1"}))
        .await
        .assert_error(410, "ROOM_CLOSED");
}

#[tokio::test]
async fn delete_on_one_instance_closes_peers_on_the_other() {
    let (_redis, a, b) = pair().await;
    let (mut p1, _) = join_via(&b, &b, "p1", "r1").await;
    let (mut p2, _) = join_via(&b, &b, "p2", "r1").await;
    p1.recv_type("peer-joined").await;
    let r = a
        .request(reqwest::Method::DELETE, "/api/rooms/r1", Some(ADMIN), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for c in [&mut p1, &mut p2] {
        let (msgs, code) = c.drain_until_close(Duration::from_secs(5)).await;
        assert_eq!(code, 4010);
        assert_eq!(
            msgs.last().unwrap()["data"]["reason"],
            "deleted",
            "{msgs:?}"
        );
    }
    b.get("/api/rooms/r1")
        .await
        .assert_error(410, "ROOM_CLOSED");
}

#[tokio::test]
async fn max_peers_holds_when_the_last_slot_is_raced_from_both_instances() {
    let (_redis, a, b) = pair().await;
    for round in 0..5 {
        let room = format!("race{round}");
        let created = a
            .post("/api/rooms", &json!({"roomId": room, "maxPeers": 2}))
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let (_first, _) = join_via(&a, &a, "first", &room).await;
        let ta = a.token("on-a", &room).await;
        let tb = b.token("on-b", &room).await;
        let mut ca = a.connect(&ta).await;
        let mut cb = b.connect(&tb).await;
        let join = json!({"type": "join-room"});
        tokio::join!(ca.send_json(join.clone()), cb.send_json(join));
        let (ra, rb) = tokio::join!(ca.recv(), cb.recv());
        let results = [
            ra["type"].as_str().unwrap().to_owned(),
            rb["type"].as_str().unwrap().to_owned(),
        ];
        let joined = results.iter().filter(|t| *t == "room-joined").count();
        assert_eq!(joined, 1, "exactly one of the racers may join: {ra} / {rb}");
        let refused = if ra["type"] == "error" { &ra } else { &rb };
        assert_eq!(refused["data"]["code"], "ROOM_FULL");
        assert_eq!(
            b.get(&format!("/api/rooms/{room}")).await.body["peerCount"],
            2
        );
    }
}

#[tokio::test]
async fn same_user_on_another_instance_replaces_the_old_connection() {
    let (_redis, a, b) = pair().await;
    let (mut other, _) = join_via(&a, &a, "other", "r1").await;
    let (mut old, _) = join_via(&a, &a, "u1", "r1").await;
    other.recv_type("peer-joined").await;
    let (mut new, joined) = join_via(&b, &b, "u1", "r1").await;
    assert_eq!(joined["data"]["self"]["userId"], "u1");
    let (msgs, code) = old.drain_until_close(Duration::from_secs(5)).await;
    assert_eq!(code, 4009);
    assert_eq!(msgs, vec![json!({"type": "replaced"})]);
    let back = other.recv_type("peer-reconnected").await;
    assert_eq!(back["from"], "u1");
    other.expect_no_message(Duration::from_millis(300)).await;
    // Relays now reach the new connection on B.
    other
        .send_json(json!({"type": "sdp-offer", "data": {"peer": "u1", "offer": {"n": 1}}}))
        .await;
    assert_eq!(new.recv_type("sdp-offer").await["data"]["offer"]["n"], 1);
}

#[tokio::test]
async fn killed_instance_peers_leave_within_the_documented_bound() {
    let (_redis, mut a, b) = pair().await;
    // The doomed peer hosts the room, so its removal also hands the host role over.
    let (_doomed, _) = join_via(&a, &a, "doomed", "r1").await;
    let (mut survivor, _) = join_via(&b, &b, "survivor", "r1").await;
    let killed_at = Instant::now();
    a.kill();
    // Documented bound with default settings: INSTANCE_TIMEOUT_SECONDS (6) + 2 s.
    let left = survivor.recv_within(Duration::from_secs(12)).await;
    assert_eq!(left["type"], "peer-left", "{left}");
    assert_eq!(
        (left["from"].as_str(), left["data"]["reason"].as_str()),
        (Some("doomed"), Some("disconnected"))
    );
    let took = killed_at.elapsed();
    assert!(took <= Duration::from_secs(8), "took {took:?}");
    let hc = survivor.recv_type("host-changed").await;
    assert_eq!(hc["data"]["hostId"], "survivor");
    let room = b.get("/api/rooms/r1").await.body;
    assert_eq!(room["peerCount"], 1, "ghost peer left in Redis: {room}");
}

/// A drained instance publishes what its drain changed before it exits: the others see its
/// peers as reconnecting at once, not only once the instance stops answering.
#[tokio::test]
async fn drained_instance_publishes_its_peers_departure_before_exiting() {
    let (_redis, mut a, b) = pair().await;
    let (mut leaving, _) = join_via(&a, &a, "leaving", "r1").await;
    let (_staying, _) = join_via(&b, &b, "staying", "r1").await;
    leaving.recv_type("peer-joined").await;
    a.terminate();
    let (_, code) = leaving.drain_until_close(Duration::from_secs(5)).await;
    assert_eq!(code, 1001);
    let status = a.wait_exit(Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "{status:?}");
    // Well within INSTANCE_TIMEOUT_SECONDS (6): only the drain's own publish can say this.
    let room = b.get_auth("/api/rooms/r1", ADMIN).await.body;
    let peer = room["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["userId"] == "leaving"))
        .unwrap_or_else(|| panic!("the drained peer keeps its place: {room}"));
    assert_eq!(peer["status"], "reconnecting", "{room}");
}

#[tokio::test]
async fn redis_outage_degrades_health_keeps_local_relay_and_recovers_from_empty_redis() {
    let (mut redis, a, b) = pair().await;
    let (mut a1, _) = join_via(&a, &a, "a1", "r1").await;
    let (mut a2, _) = join_via(&a, &a, "a2", "r1").await;
    let (mut b1, _) = join_via(&b, &b, "b1", "r1").await;
    a1.recv_type("peer-joined").await;
    a1.recv_type("peer-joined").await;
    a2.recv_type("peer-joined").await;

    redis.stop();
    let health = a
        .get_until_status("/health", 503, Duration::from_secs(8))
        .await;
    assert_eq!(health.body["status"], "degraded");
    assert_eq!(health.body["cluster"]["redis"], "down");
    // Peers on the same instance still relay among themselves.
    a1.send_json(
        json!({"type": "sdp-offer", "data": {"peer": "a2", "offer": {"during": "outage"}}}),
    )
    .await;
    assert_eq!(
        a2.recv_type("sdp-offer").await["data"]["offer"]["during"],
        "outage"
    );

    redis
        .restart_empty()
        .expect("redis-server restarts on its port");
    wait_cluster_ok(&a).await;
    wait_cluster_ok(&b).await;
    // State is rebuilt from the instances and cross-instance relay works again.
    b.get_until(
        "/api/rooms/r1",
        Duration::from_secs(8),
        "Redis state to be rebuilt",
        |room| room.status == 200 && room.body["peerCount"] == 3,
    )
    .await;
    b1.send_json(
        json!({"type": "sdp-offer", "data": {"peer": "a1", "offer": {"after": "restart"}}}),
    )
    .await;
    assert_eq!(
        a1.recv_type("sdp-offer").await["data"]["offer"]["after"],
        "restart"
    );
    a2.send_json(json!({"type": "sdp-answer", "data": {"peer": "b1", "answer": {"ok": true}}}))
        .await;
    assert_eq!(
        b1.recv_type("sdp-answer").await["data"]["answer"]["ok"],
        true
    );
    // No instance was declared dead while the liveness keys were being rewritten.
    a1.expect_no_message(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn cluster_wide_room_rules_hold() {
    let (_redis, a, b) = pair().await;
    // ROOM_EXISTS across instances.
    assert_eq!(
        a.post("/api/rooms", &json!({"roomId": "x"})).await.status,
        201
    );
    b.post("/api/rooms", &json!({"roomId": "x"}))
        .await
        .assert_error(409, "ROOM_EXISTS");
    let token = b.token("creator", "y").await;
    let (_y, _) = join_via(&a, &a, "first", "y").await;
    let mut c = b.connect(&token).await;
    c.send_json(json!({"type": "create-room", "data": {"roomName": "Y"}}))
        .await;
    c.recv_error("ROOM_EXISTS").await;
    // Password rooms created on A check passwords on B.
    let r = a
        .post("/api/rooms", &json!({"roomId": "pw", "password": "s3cret"}))
        .await;
    assert_eq!(r.status, 201);
    b.post("/api/auth/token", &json!({"userId": "u", "roomId": "pw"}))
        .await
        .assert_error(401, "INVALID_PASSWORD");
    let ok = b
        .post(
            "/api/auth/token",
            &json!({"userId": "u", "roomId": "pw", "password": "s3cret"}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Admin listing and stats are cluster-wide.
    let list = b
        .request(reqwest::Method::GET, "/api/rooms", Some(ADMIN), None)
        .await
        .body;
    let ids: Vec<&str> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["roomId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pw", "x", "y"], "{list}");
    assert_eq!(b.get("/stats").await.body["cluster"]["activeRooms"], 3);
}

#[tokio::test]
async fn yjs_publishes_reach_subscribers_on_other_instances() {
    let (_redis, a, b) = pair().await;
    let yjs = |server: &Server, token: String| {
        let url = format!("ws://{}/yjs?token={}", server.signaling_addr, token);
        async move { WsClient::connect(&url, None).await.expect("/yjs upgrade") }
    };
    let mut on_a = yjs(&a, a.token("ya", "doc").await).await;
    let mut on_b = yjs(&b, b.token("yb", "doc").await).await;
    for c in [&mut on_a, &mut on_b] {
        c.send_json(json!({"type": "subscribe", "topics": ["doc"]}))
            .await;
        c.send_json(json!({"type": "ping"})).await;
        assert_eq!(c.recv().await, json!({"type": "pong"}));
    }
    // Subscriptions travel through Redis; y-webrtc re-announces, so retry like it does.
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        on_a.send_json(
            json!({"type": "publish", "topic": "doc", "data": {"type": "announce", "from": "ya"}}),
        )
        .await;
        let own = on_a.recv().await;
        assert_eq!(
            own["data"]["from"], "ya",
            "the sender gets its own publish: {own}"
        );
        match on_b.next_frame(Duration::from_millis(200)).await {
            Some(Incoming::Text(t)) => break serde_json::from_str::<Value>(&t).unwrap(),
            None => assert!(Instant::now() < deadline, "publish never crossed instances"),
            Some(other) => panic!("{other:?}"),
        }
    };
    assert_eq!(got["type"], "publish");
    assert_eq!(got["topic"], "doc");
    assert_eq!(got["data"], json!({"type": "announce", "from": "ya"}));
    assert!(got["clients"].is_u64(), "{got}");
}

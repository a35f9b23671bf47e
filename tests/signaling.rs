//! Signaling protocol (`docs/protocol.md#2-connect-and-authenticate`, `#3-messages`,
//! `#5-disconnects-and-reconnecting`): authentication, rooms, relay, broadcast, heartbeats
//! and reconnects, driven through real WebSocket connections.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use switchboard_testkit::eventually;

const QUIET: Duration = Duration::from_millis(300);

/// Sends `join-room` on an authenticated connection and returns `room-joined`.
async fn join_on(c: &mut WsClient) -> Value {
    c.send_json(json!({"type": "join-room"})).await;
    c.recv_type("room-joined").await
}

// ---------------------------------------------------------------- authentication

#[tokio::test]
async fn query_token_upgrade_sends_auth_ok_at_once() {
    let server = Server::start(&[("HEARTBEAT_INTERVAL_SECONDS", "12")]);
    let token = server.token("u1", "r1").await;
    let mut c = WsClient::connect(&server.ws_url(&format!("?token={token}")), None)
        .await
        .expect("upgrade");
    let ok = c.recv_type("auth-ok").await;
    assert_eq!(ok["data"]["userId"], "u1");
    assert_eq!(ok["data"]["roomId"], "r1");
    assert!(
        ok["data"]["sessionId"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{ok}"
    );
    assert_eq!(ok["data"]["heartbeatIntervalMs"], 12_000);
    assert!(ok["data"].get("iceServers").is_none(), "{ok}");

    // Two connections get two sessions.
    let mut c2 = WsClient::connect(&server.ws_url(&format!("?token={token}")), None)
        .await
        .expect("upgrade");
    let ok2 = c2.recv_type("auth-ok").await;
    assert_ne!(ok["data"]["sessionId"], ok2["data"]["sessionId"]);
}

#[tokio::test]
async fn bad_query_token_is_refused_with_http_401() {
    let server = Server::start(&[]);
    let now = now_secs();
    let expired = forge_token(JWT_SECRET, &claims("u1", "r1", now - 7200, now - 3600));
    let other_key = forge_token(
        "some-other-secret-some-other-secret-xx",
        &claims("u1", "r1", now, now + 600),
    );
    for bad in ["garbage", expired.as_str(), other_key.as_str(), ""] {
        let status = refused_upgrade_status(&server.ws_url(&format!("?token={bad}")), None).await;
        assert_eq!(status, 401, "token {bad:?}");
    }
}

#[tokio::test]
async fn other_paths_are_not_found() {
    let server = Server::start(&[]);
    let token = server.token("u1", "r1").await;
    let url = format!("ws://{}/nope?token={token}", server.signaling_addr);
    assert_eq!(refused_upgrade_status(&url, None).await, 404);
}

#[tokio::test]
async fn auth_message_authenticates_the_connection() {
    let server = Server::start(&[]);
    let token = server.token("u1", "r1").await;
    let mut c = server.connect_anonymous().await;
    c.send_json(json!({"type": "auth", "userId": "u1", "roomId": "r1",
                       "data": {"token": token}}))
        .await;
    let ok = c.recv_type("auth-ok").await;
    assert_eq!(ok["data"]["userId"], "u1");
    assert_eq!(ok["data"]["roomId"], "r1");
    assert!(ok["data"]["sessionId"].is_string());
    assert_eq!(ok["data"]["heartbeatIntervalMs"], 30_000);

    // userId and roomId are optional.
    let mut c2 = server.connect_anonymous().await;
    c2.send_json(json!({"type": "auth", "data": {"token": token}}))
        .await;
    c2.recv_type("auth-ok").await;
}

#[tokio::test]
async fn auth_ok_carries_ice_servers_when_configured() {
    let server = Server::start(&[("STUN_URLS", "stun:stun.example.com:3478")]);
    let token = server.token("u1", "r1").await;
    let mut c = WsClient::connect(&server.ws_url(&format!("?token={token}")), None)
        .await
        .unwrap();
    let ok = c.recv_type("auth-ok").await;
    assert_eq!(
        ok["data"]["iceServers"],
        json!([{"urls": ["stun:stun.example.com:3478"]}])
    );
}

async fn expect_auth_failure(server: &Server, auth: Value, code: &str) {
    let mut c = server.connect_anonymous().await;
    c.send_json(auth).await;
    c.recv_error(code).await;
    assert_eq!(c.expect_close().await, 4001, "close after {code}");
}

#[tokio::test]
async fn expired_token_in_auth_message_fails_with_token_expired() {
    let server = Server::start(&[]);
    let now = now_secs();
    let expired = forge_token(JWT_SECRET, &claims("u1", "r1", now - 7200, now - 3600));
    expect_auth_failure(
        &server,
        json!({"type": "auth", "data": {"token": expired}}),
        "TOKEN_EXPIRED",
    )
    .await;
}

#[tokio::test]
async fn garbage_token_in_auth_message_fails_with_invalid_token() {
    let server = Server::start(&[]);
    expect_auth_failure(
        &server,
        json!({"type": "auth", "data": {"token": "not-a-jwt"}}),
        "INVALID_TOKEN",
    )
    .await;
    let now = now_secs();
    let other_key = forge_token(
        "some-other-secret-some-other-secret-xx",
        &claims("u1", "r1", now, now + 600),
    );
    expect_auth_failure(
        &server,
        json!({"type": "auth", "data": {"token": other_key}}),
        "INVALID_TOKEN",
    )
    .await;
}

#[tokio::test]
async fn auth_message_with_other_user_or_room_is_refused() {
    let server = Server::start(&[]);
    let token = server.token("u1", "room-a").await;
    expect_auth_failure(
        &server,
        json!({"type": "auth", "userId": "u2", "data": {"token": token}}),
        "USER_MISMATCH",
    )
    .await;
    expect_auth_failure(
        &server,
        json!({"type": "auth", "userId": "u1", "roomId": "room-b", "data": {"token": token}}),
        "ROOM_MISMATCH",
    )
    .await;
}

#[tokio::test]
async fn second_auth_is_already_authenticated_and_harmless() {
    let server = Server::start(&[]);
    let token = server.token("u1", "r1").await;
    let other = server.token("u2", "r2").await;
    let mut c = server.connect(&token).await;
    c.send_json(json!({"type": "auth", "requestId": "a2", "data": {"token": other}}))
        .await;
    let err = c.recv_error("ALREADY_AUTHENTICATED").await;
    assert_eq!(err["requestId"], "a2");
    // Still u1 in r1.
    let joined = join_on(&mut c).await;
    assert_eq!(joined["data"]["room"]["roomId"], "r1");
    assert_eq!(joined["data"]["self"]["userId"], "u1");
}

#[tokio::test]
async fn unauthenticated_connection_is_closed_after_auth_timeout() {
    let server = Server::start(&[("AUTH_TIMEOUT_SECONDS", "1")]);
    let mut c = server.connect_anonymous().await;
    let (msgs, code) = c.drain_until_close(Duration::from_secs(4)).await;
    assert_eq!(code, 4001, "messages before close: {msgs:?}");
}

#[tokio::test]
async fn messages_before_auth_are_not_authenticated() {
    let server = Server::start(&[]);
    let token = server.token("u1", "r1").await;
    let mut c = server.connect_anonymous().await;
    c.send_json(json!({"type": "join-room", "requestId": "j0"}))
        .await;
    let err = c.recv_error("NOT_AUTHENTICATED").await;
    assert_eq!(err["requestId"], "j0");
    c.send_json(json!({"type": "sdp-offer", "data": {"peer": "x", "offer": {}}}))
        .await;
    c.recv_error("NOT_AUTHENTICATED").await;
    // Authentication is still possible afterwards.
    c.send_json(json!({"type": "auth", "data": {"token": token}}))
        .await;
    c.recv_type("auth-ok").await;
    join_on(&mut c).await;
}

#[tokio::test]
async fn token_for_one_room_only_ever_joins_that_room() {
    let server = Server::start(&[]);
    let token = server.token("u1", "room-a").await;
    let mut c = server.connect(&token).await;
    c.send_json(json!({"type": "join-room", "roomId": "room-b", "data": {"roomId": "room-b"}}))
        .await;
    let joined = c.recv_type("room-joined").await;
    assert_eq!(joined["data"]["room"]["roomId"], "room-a");
    server
        .get("/api/rooms/room-b")
        .await
        .assert_error(404, "ROOM_NOT_FOUND");
    assert_eq!(server.get("/api/rooms/room-a").await.status, 200);
}

#[tokio::test]
async fn token_expiry_does_not_cut_an_authenticated_connection() {
    let server = Server::start(&[("TOKEN_TTL_SECONDS", "1")]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    let token = server.token("carol", "r1").await;
    // Wait until the server itself calls the token expired.
    eventually(Duration::from_secs(3), || async {
        let v = server
            .post("/api/auth/validate", &json!({"token": token}))
            .await;
        if v.body["error"] == "TOKEN_EXPIRED" {
            Ok(())
        } else {
            Err(v.body)
        }
    })
    .await
    .unwrap_or_else(|last| panic!("a 1 s token never expired: {last}"));
    // alice's and bob's tokens have expired too; their connections keep working.
    a.send_json(json!({"type": "message", "data": {"text": "still here"}}))
        .await;
    b.recv_type("message").await;
    // Reconnecting needs a valid token.
    assert_eq!(
        refused_upgrade_status(&server.ws_url(&format!("?token={token}")), None).await,
        401
    );
}

// ---------------------------------------------------------------- rooms

#[tokio::test]
async fn join_room_returns_room_self_and_peers() {
    let server = Server::start(&[]);
    let alice_token = server
        .issue(json!({"userId": "alice", "roomId": "r1", "userName": "Alice"}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut alice = server.connect(&alice_token).await;
    let joined = join_on(&mut alice).await;
    let room = &joined["data"]["room"];
    assert_eq!(room["roomId"], "r1");
    assert_eq!(room["hostId"], "alice");
    assert_eq!(room["state"], "active");
    assert_eq!(room["peerCount"], 1);
    assert_eq!(room["hasPassword"], false);
    assert_eq!(room["maxPeers"], 50);
    assert!(
        room["createdAt"].is_u64() && room["lastActivity"].is_u64(),
        "{room}"
    );
    let me = &joined["data"]["self"];
    assert_peer_info(me, "alice", true, "active");
    assert_eq!(me["userName"], "Alice");
    assert_eq!(joined["data"]["peers"], json!([]));

    // join-room's userName wins over the token's name.
    let bob_token = server
        .issue(json!({"userId": "bob", "roomId": "r1", "userName": "Bob"}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bob = server.connect(&bob_token).await;
    bob.send_json(json!({"type": "join-room", "data": {"userName": "Bobby"}}))
        .await;
    let joined = bob.recv_type("room-joined").await;
    assert_eq!(joined["data"]["room"]["peerCount"], 2);
    assert_eq!(joined["data"]["room"]["hostId"], "alice");
    let me = &joined["data"]["self"];
    assert_peer_info(me, "bob", false, "active");
    assert_eq!(me["userName"], "Bobby");
    let peers = &joined["data"]["peers"];
    assert_eq!(peers.as_array().unwrap().len(), 1, "{peers}");
    assert_peer_info(&peers[0], "alice", true, "active");
    assert_eq!(peers[0]["userName"], "Alice");

    let pj = alice.recv_type("peer-joined").await;
    assert_eq!(pj["from"], "bob");
    assert_eq!(pj["userId"], "bob");
    assert_eq!(pj["roomId"], "r1");
    assert_peer_info(&pj["data"]["peer"], "bob", false, "active");
    assert_eq!(pj["data"]["peer"]["userName"], "Bobby");
    bob.expect_no_message(QUIET).await;
}

#[tokio::test]
async fn create_room_message_creates_a_room_with_settings() {
    let server = Server::start(&[]);
    let token = server.token("host", "standup").await;
    let mut host = server.connect(&token).await;
    host.send_json(
        json!({"type": "create-room", "data": {"roomName": "Standup",
        "maxPeers": 3, "ttlSeconds": 600, "destroyOnHostLeave": true}}),
    )
    .await;
    let joined = host.recv_type("room-joined").await;
    let room = &joined["data"]["room"];
    assert_eq!(room["roomId"], "standup");
    assert_eq!(room["roomName"], "Standup");
    assert_eq!(room["maxPeers"], 3);
    assert_eq!(room["hostId"], "host");
    assert!(
        room["expiresAt"].is_u64(),
        "TTL starts at the first join: {room}"
    );
    assert_peer_info(&joined["data"]["self"], "host", true, "active");

    let other = server.token("guest", "standup").await;
    let mut guest = server.connect(&other).await;
    guest
        .send_json(json!({"type": "create-room", "requestId": "c1", "data": {"roomName": "Mine"}}))
        .await;
    let err = guest.recv_error("ROOM_EXISTS").await;
    assert_eq!(err["requestId"], "c1");
    // The connection is still usable and can join the existing room.
    let joined = join_on(&mut guest).await;
    assert_eq!(joined["data"]["room"]["roomName"], "Standup");
}

#[tokio::test]
async fn create_room_message_validates_settings() {
    let server = Server::start(&[("MAX_PEERS_PER_ROOM", "5")]);
    let token = server.token("host", "bad-settings").await;
    let mut host = server.connect(&token).await;
    for data in [
        json!({"roomName": "x", "maxPeers": 0}),
        json!({"roomName": "x", "maxPeers": 6}),
        json!({"roomName": "x", "ttlSeconds": 0}),
        json!({"roomName": "  "}),
    ] {
        host.send_json(json!({"type": "create-room", "data": data}))
            .await;
        host.recv_error("INVALID_INPUT").await;
    }
}

#[tokio::test]
async fn leave_room_notifies_others_and_allows_joining_again() {
    let server = Server::start(&[]);
    let mut alice = server.join("alice", "r1").await;
    let mut bob = server.join("bob", "r1").await;
    alice.recv_type("peer-joined").await;

    bob.send_json(json!({"type": "leave-room"})).await;
    let left = bob.recv_type("room-left").await;
    assert_eq!(left, json!({"type": "room-left", "data": {"roomId": "r1"}}));
    let pl = alice.recv_type("peer-left").await;
    assert_eq!(pl["from"], "bob");
    assert_eq!(pl["userId"], "bob");
    assert_eq!(pl["roomId"], "r1");
    assert_eq!(pl["data"]["reason"], "left");
    assert_eq!(pl["data"]["peer"]["userId"], "bob");

    let room = server.get("/api/rooms/r1").await;
    assert_eq!(room.body["peerCount"], 1);

    // Same connection joins again.
    let joined = join_on(&mut bob).await;
    assert_eq!(joined["data"]["peers"][0]["userId"], "alice");
    let pj = alice.recv_type("peer-joined").await;
    assert_eq!(pj["from"], "bob");
}

#[tokio::test]
async fn room_actions_before_joining_are_not_in_room() {
    let server = Server::start(&[]);
    let _alice = server.join("alice", "r1").await;
    let token = server.token("bob", "r1").await;
    let mut bob = server.connect(&token).await;
    for msg in [
        json!({"type": "leave-room", "requestId": "q1"}),
        json!({"type": "sdp-offer", "requestId": "q1", "data": {"peer": "alice", "offer": {}}}),
        json!({"type": "ice-candidate", "requestId": "q1", "data": {"peer": "alice", "candidate": {}}}),
        json!({"type": "presence", "requestId": "q1", "data": {"status": "idle"}}),
        json!({"type": "cursor-update", "requestId": "q1", "data": {"line": 1}}),
        json!({"type": "message", "requestId": "q1", "data": {"text": "hi"}}),
        json!({"type": "close-room", "requestId": "q1"}),
    ] {
        bob.send_json(msg.clone()).await;
        let err = bob.recv_error("NOT_IN_ROOM").await;
        assert_eq!(err["requestId"], "q1", "for {msg}");
    }
}

#[tokio::test]
async fn joining_twice_on_one_connection_is_already_in_room() {
    let server = Server::start(&[]);
    let mut alice = server.join("alice", "r1").await;
    alice
        .send_json(json!({"type": "join-room", "requestId": "again"}))
        .await;
    let err = alice.recv_error("ALREADY_IN_ROOM").await;
    assert_eq!(err["requestId"], "again");
    alice
        .send_json(json!({"type": "create-room", "data": {"roomName": "x"}}))
        .await;
    let v = alice.recv().await;
    assert_eq!(v["type"], "error");
    assert!(
        v["data"]["code"] == "ALREADY_IN_ROOM" || v["data"]["code"] == "ROOM_EXISTS",
        "{v}"
    );
}

#[tokio::test]
async fn host_closes_room_for_everyone_and_others_may_not() {
    let server = Server::start(&[]);
    let mut host = server.join("host", "r1").await;
    let mut bob = server.join("bob", "r1").await;
    host.recv_type("peer-joined").await;
    let mut carol = server.join("carol", "r1").await;
    host.recv_type("peer-joined").await;
    bob.recv_type("peer-joined").await;
    let late_token = server.token("dave", "r1").await;

    bob.send_json(json!({"type": "close-room", "requestId": "x1"}))
        .await;
    let err = bob.recv_error("FORBIDDEN").await;
    assert_eq!(err["requestId"], "x1");
    host.expect_no_message(QUIET).await;

    host.send_json(json!({"type": "close-room"})).await;
    for c in [&mut host, &mut bob, &mut carol] {
        let closed = c.recv_type("room-closed").await;
        assert_eq!(closed["data"]["reason"], "host-closed", "{closed}");
        assert_eq!(c.expect_close().await, 4010);
    }
    server
        .get("/api/rooms/r1")
        .await
        .assert_error(410, "ROOM_CLOSED");
    server
        .post(
            "/api/auth/token",
            &json!({"userId": "erin", "roomId": "r1"}),
        )
        .await
        .assert_error(410, "ROOM_CLOSED");
    let mut dave = server.connect(&late_token).await;
    dave.send_json(json!({"type": "join-room"})).await;
    dave.recv_error("ROOM_CLOSED").await;
    dave.send_json(json!({"type": "create-room", "data": {"roomName": "again"}}))
        .await;
    dave.recv_error("ROOM_CLOSED").await;
}

#[tokio::test]
async fn second_connection_of_a_user_replaces_the_first() {
    let server = Server::start(&[]);
    let mut alice1 = server.join("alice", "r1").await;
    let mut bob = server.join("bob", "r1").await;
    alice1.recv_type("peer-joined").await;

    let (mut alice2, joined) = server.join_with("alice", "r1").await;
    assert_eq!(joined["data"]["self"]["userId"], "alice");
    assert_eq!(
        joined["data"]["self"]["isHost"], true,
        "host keeps its role"
    );
    let peers = joined["data"]["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{joined}");
    assert_eq!(peers[0]["userId"], "bob");

    let replaced = alice1.recv().await;
    assert_eq!(replaced, json!({"type": "replaced"}));
    assert_eq!(alice1.expect_close().await, 4009);

    let pr = bob.recv_type("peer-reconnected").await;
    assert_eq!(pr["from"], "alice");
    assert_eq!(pr["userId"], "alice");
    assert_eq!(pr["roomId"], "r1");
    bob.expect_no_message(QUIET).await;

    let room = server.get("/api/rooms/r1").await;
    assert_eq!(room.body["peerCount"], 2, "{}", room.body);

    // Traffic for alice reaches the new connection.
    bob.send_json(json!({"type": "sdp-offer", "data": {"peer": "alice", "offer": {"sdp": "x"}}}))
        .await;
    let offer = alice2.recv_type("sdp-offer").await;
    assert_eq!(offer["from"], "bob");
}

#[tokio::test]
async fn host_leaving_hands_host_to_the_longest_present_peer() {
    let server = Server::start(&[]);
    let mut h = server.join("h", "r1").await;
    let mut a = server.join("a", "r1").await;
    h.recv_type("peer-joined").await;
    let mut b = server.join("b", "r1").await;
    h.recv_type("peer-joined").await;
    a.recv_type("peer-joined").await;

    h.send_json(json!({"type": "leave-room"})).await;
    h.recv_type("room-left").await;
    for c in [&mut a, &mut b] {
        let m1 = c.recv().await;
        let m2 = c.recv().await;
        let (left, changed) = if m1["type"] == "peer-left" {
            (m1, m2)
        } else {
            (m2, m1)
        };
        assert_eq!(left["type"], "peer-left", "{left}");
        assert_eq!(left["from"], "h");
        assert_eq!(left["data"]["reason"], "left");
        assert_eq!(changed["type"], "host-changed", "{changed}");
        assert_eq!(changed["data"]["hostId"], "a");
    }
    let room = server.get("/api/rooms/r1").await;
    assert_eq!(room.body["hostId"], "a");
    assert_eq!(peer(&room.body["peers"], "a")["isHost"], true);
    assert_eq!(peer(&room.body["peers"], "b")["isHost"], false);

    // The new host may close the room.
    a.send_json(json!({"type": "close-room"})).await;
    let closed = b.recv_type("room-closed").await;
    assert_eq!(closed["data"]["reason"], "host-closed");
}

#[tokio::test]
async fn host_leaving_a_destroy_on_host_leave_room_closes_it() {
    let server = Server::start(&[]);
    let room = server
        .create_room(json!({"roomId": "r1", "roomName": "R", "hostId": "h",
                            "destroyOnHostLeave": true}))
        .await;
    let mut h = server.connect(room["hostToken"].as_str().unwrap()).await;
    let joined = join_on(&mut h).await;
    assert_eq!(joined["data"]["self"]["isHost"], true);
    let mut a = server.join("a", "r1").await;
    h.recv_type("peer-joined").await;
    let mut b = server.join("b", "r1").await;
    h.recv_type("peer-joined").await;
    a.recv_type("peer-joined").await;

    h.send_json(json!({"type": "leave-room"})).await;
    for c in [&mut a, &mut b] {
        let closed = c.recv_type("room-closed").await;
        assert_eq!(closed["data"]["reason"], "host-left", "{closed}");
        assert_eq!(c.expect_close().await, 4010);
    }
    server
        .get("/api/rooms/r1")
        .await
        .assert_error(410, "ROOM_CLOSED");
}

#[tokio::test]
async fn full_room_refuses_joins_but_never_its_members() {
    let server = Server::start(&[]);
    server
        .create_room(json!({"roomId": "duo", "roomName": "Duo", "hostId": "a", "maxPeers": 2}))
        .await;
    let c_token = server.token("c", "duo").await;
    let mut a = server.join("a", "duo").await;
    let mut b = server.join("b", "duo").await;
    a.recv_type("peer-joined").await;

    let mut c = server.connect(&c_token).await;
    c.send_json(json!({"type": "join-room", "requestId": "full"}))
        .await;
    let err = c.recv_error("ROOM_FULL").await;
    assert_eq!(err["requestId"], "full");
    a.expect_no_message(QUIET).await;

    // A member's second tab replaces, it is never ROOM_FULL.
    let (_b2, joined) = server.join_with("b", "duo").await;
    assert_eq!(joined["data"]["room"]["peerCount"], 2);
    assert_eq!(b.recv().await, json!({"type": "replaced"}));
    let pr = a.recv_type("peer-reconnected").await;
    assert_eq!(pr["from"], "b");
}

#[tokio::test]
async fn password_added_after_token_issuance_refuses_the_join() {
    let server = Server::start(&[]);
    let early = server.token("u1", "later-locked").await;
    // Token times have whole-second resolution: let the clock pass the token's second so
    // "issued before the password" is unambiguous.
    let iat = verify_token(&early)["iat"].as_u64().unwrap();
    eventually(Duration::from_secs(2), || async {
        let now = now_secs();
        if now > iat {
            Ok(())
        } else {
            Err(now)
        }
    })
    .await
    .unwrap_or_else(|now| panic!("the clock stayed at {now} s, the token's second"));
    server
        .create_room(
            json!({"roomId": "later-locked", "roomName": "L", "hostId": "h",
                            "password": "pw-later"}),
        )
        .await;
    let mut c = server.connect(&early).await;
    c.send_json(json!({"type": "join-room", "requestId": "pw"}))
        .await;
    let err = c.recv_error("INVALID_PASSWORD").await;
    assert_eq!(err["requestId"], "pw");
    // A token issued with the password joins.
    let ok = server
        .issue(json!({"userId": "u1", "roomId": "later-locked", "password": "pw-later"}))
        .await;
    let mut c2 = server.connect(ok["token"].as_str().unwrap()).await;
    join_on(&mut c2).await;
}

#[tokio::test]
async fn room_with_short_ttl_warns_at_join_and_expires() {
    let server = Server::start(&[("ROOM_SWEEP_INTERVAL_SECONDS", "1")]);
    server
        .create_room(json!({"roomId": "brief", "roomName": "B", "hostId": "h", "ttlSeconds": 2}))
        .await;
    let (mut h, joined) = server.join_with("h", "brief").await;
    let expires = joined["data"]["room"]["expiresAt"]
        .as_u64()
        .expect("expiresAt");
    let warn = h.recv_type("room-expiring").await;
    assert_eq!(warn["data"]["expiresAt"].as_u64(), Some(expires));
    let left = warn["data"]["timeUntilExpiration"]
        .as_u64()
        .expect("ms left");
    assert!(left <= 2000, "{warn}");
    let closed = h.recv_within(Duration::from_secs(5)).await;
    assert_eq!(closed["type"], "room-closed", "{closed}");
    assert_eq!(closed["data"]["reason"], "expired");
    assert_eq!(h.expect_close().await, 4010);
    server
        .get("/api/rooms/brief")
        .await
        .assert_error(410, "ROOM_CLOSED");
}

// ---------------------------------------------------------------- relay

/// A relay payload that any re-serialisation would alter.
const ODD_PAYLOAD: &str = r#"{"sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n","type":"offer", "x" : [1, 2.50,1e3 ,-0.0,{"é":"\u00e9","q":"\"quoted\" \\ \/"}],"n":null,"big":12345678901234567890123,"nested":{"a":{"b":{"c":[[],{}]}}}  }"#;

#[tokio::test]
async fn relay_passes_offer_answer_and_candidates_through_unchanged() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;

    for (ty, field, from, to) in [
        ("sdp-offer", "offer", "alice", "bob"),
        ("sdp-answer", "answer", "bob", "alice"),
        ("ice-candidate", "candidate", "alice", "bob"),
        ("ice-candidate", "candidate", "bob", "alice"),
    ] {
        let (sender, receiver) = if from == "alice" {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let frame = format!(
            r#"{{"type":"{ty}","requestId":"r-{ty}","data":{{"peer":"{to}","{field}":{ODD_PAYLOAD}}}}}"#
        );
        sender.send_text(&frame).await;
        let Some(Incoming::Text(raw)) = receiver.next_frame(RECV_TIMEOUT).await else {
            let answer = sender.recv_within(Duration::from_millis(500)).await;
            panic!("{ty} not relayed; the sender got {answer}");
        };
        assert!(
            raw.contains(ODD_PAYLOAD),
            "{ty} payload altered in transit:\nsent     {ODD_PAYLOAD}\nreceived {raw}"
        );
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["type"], ty);
        assert_eq!(v["from"], from);
        assert_eq!(v["userId"], from);
        assert_eq!(v["roomId"], "r1");
        assert_eq!(v["data"]["peer"], from);
        sender.expect_no_message(Duration::from_millis(100)).await;
    }

    // Scalars and strings pass as well.
    a.send_text(r#"{"type":"ice-candidate","data":{"peer":"bob","candidate":"candidate:1 1 UDP 2122252543 10.0.0.1 54321 typ host"}}"#)
        .await;
    let raw = b.recv_raw().await;
    assert!(
        raw.contains(r#""candidate:1 1 UDP 2122252543 10.0.0.1 54321 typ host""#),
        "{raw}"
    );
}

#[tokio::test]
async fn null_ice_candidate_is_relayed() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    a.send_text(r#"{"type":"ice-candidate","data":{"peer":"bob","candidate":null}}"#)
        .await;
    // `null` is JSON too (browsers signal end-of-candidates with it).
    let Some(Incoming::Text(raw)) = b.next_frame(Duration::from_secs(2)).await else {
        let answer = a.recv_within(Duration::from_millis(500)).await;
        panic!("null candidate not relayed; the sender got {answer}");
    };
    let v: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["type"], "ice-candidate");
    assert!(
        v["data"]["candidate"].is_null() && v["data"].get("candidate").is_some(),
        "{v}"
    );
}

#[tokio::test]
async fn relay_payloads_and_chat_are_never_logged() {
    let server = Server::start(&[("RUST_LOG", "debug")]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    let marker = "sdp-marker-7f3a9c";
    a.send_json(json!({"type": "sdp-offer", "data": {"peer": "bob", "offer": {"sdp": marker}}}))
        .await;
    b.recv_type("sdp-offer").await;
    b.send_json(json!({"type": "ice-candidate", "data": {"peer": "alice", "candidate": marker}}))
        .await;
    a.recv_type("ice-candidate").await;
    a.send_json(json!({"type": "message", "data": {"text": marker}}))
        .await;
    b.recv_type("message").await;
    a.send_json(json!({"type": "cursor-update", "data": {"file": marker}}))
        .await;
    b.recv_type("cursor-update").await;
    // Also for refused relays.
    a.send_json(json!({"type": "sdp-offer", "data": {"peer": "nobody", "offer": marker}}))
        .await;
    a.recv_error("PEER_NOT_FOUND").await;
    let output = server.stop();
    assert!(
        !output.iter().any(|l| l.contains(marker)),
        "relayed content appears in the logs"
    );
}

#[tokio::test]
async fn relay_to_unknown_peer_is_peer_not_found() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    a.send_json(json!({"type": "sdp-offer", "requestId": "o-17",
                       "data": {"peer": "nobody", "offer": {"sdp": "x"}}}))
        .await;
    let err = a.recv_error("PEER_NOT_FOUND").await;
    assert_eq!(err["requestId"], "o-17");
    // Without requestId the error has none.
    a.send_json(json!({"type": "ice-candidate", "data": {"peer": "nobody", "candidate": {}}}))
        .await;
    let err = a.recv_error("PEER_NOT_FOUND").await;
    assert!(
        err.get("requestId").is_none() || err["requestId"].is_null(),
        "{err}"
    );
}

#[tokio::test]
async fn relay_into_another_room_is_refused() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "room-1").await;
    let mut b = server.join("bob", "room-1").await;
    a.recv_type("peer-joined").await;
    let mut c = server.join("carol", "room-2").await;

    for (ty, field) in [
        ("sdp-offer", "offer"),
        ("sdp-answer", "answer"),
        ("ice-candidate", "candidate"),
    ] {
        a.send_json(json!({"type": ty, "requestId": "cross",
                           "data": {"peer": "carol", field: {"sdp": "secret"}}}))
            .await;
        let err = a.recv_error("PEER_NOT_FOUND").await;
        assert_eq!(err["requestId"], "cross");
        // Claiming to be in the other room does not help.
        a.send_json(
            json!({"type": ty, "roomId": "room-2", "requestId": "cross2",
                           "data": {"peer": "carol", field: {"sdp": "secret"}}}),
        )
        .await;
        let err = a.recv_error("PEER_NOT_FOUND").await;
        assert_eq!(err["requestId"], "cross2");
    }
    c.expect_no_message(QUIET).await;
    b.expect_no_message(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn spoofed_user_and_room_ids_do_not_change_attribution() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    let mut c = server.join("carol", "r1").await;
    a.recv_type("peer-joined").await;
    b.recv_type("peer-joined").await;
    let mut other = server.join("mallory-target", "r2").await;

    a.send_json(
        json!({"type": "sdp-offer", "userId": "carol", "roomId": "r2",
                       "from": "carol", "data": {"peer": "bob", "offer": {"sdp": "s"}}}),
    )
    .await;
    let v = b.recv_type("sdp-offer").await;
    assert_eq!(v["from"], "alice");
    assert_eq!(v["userId"], "alice");
    assert_eq!(v["roomId"], "r1");
    assert_eq!(v["data"]["peer"], "alice");

    a.send_json(json!({"type": "message", "userId": "carol", "roomId": "r2",
                       "from": "carol", "data": {"text": "it was carol"}}))
        .await;
    for rx in [&mut b, &mut c] {
        let v = rx.recv_type("message").await;
        assert_eq!(v["from"], "alice");
        assert_eq!(v["userId"], "alice");
        assert_eq!(v["roomId"], "r1");
    }
    a.send_json(json!({"type": "presence", "userId": "bob", "data": {"status": "idle"}}))
        .await;
    for rx in [&mut b, &mut c] {
        let v = rx.recv_type("presence").await;
        assert_eq!(v["from"], "alice");
    }
    let room = server.get("/api/rooms/r1").await;
    assert_eq!(peer(&room.body["peers"], "alice")["status"], "idle");
    assert_eq!(peer(&room.body["peers"], "bob")["status"], "active");

    other.expect_no_message(QUIET).await;
    a.expect_no_message(Duration::from_millis(50)).await;
}

// ---------------------------------------------------------------- broadcast

#[tokio::test]
async fn broadcasts_reach_every_other_peer_and_not_the_sender() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    let mut c = server.join("carol", "r1").await;
    a.recv_type("peer-joined").await;
    b.recv_type("peer-joined").await;
    let mut outsider = server.join("dave", "r2").await;

    let cases = [
        ("presence", json!({"status": "idle"})),
        ("presence", json!({"status": "active"})),
        (
            "cursor-update",
            json!({"line": 3, "column": 14, "selection": [[1, 2], [3, 4]], "file": "é.rs"}),
        ),
        ("message", json!({"text": "hello, wörld 👋"})),
    ];
    for (ty, data) in cases {
        a.send_json(json!({"type": ty, "data": data.clone()})).await;
        for rx in [&mut b, &mut c] {
            let v = rx.recv_type(ty).await;
            assert_eq!(
                v,
                json!({"type": ty, "from": "alice", "userId": "alice", "roomId": "r1", "data": data})
            );
        }
    }
    a.expect_no_message(QUIET).await;
    outsider.expect_no_message(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn presence_updates_the_senders_peer_info() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    a.send_json(json!({"type": "presence", "data": {"status": "idle"}}))
        .await;
    b.recv_type("presence").await;
    let peers = server.get("/api/rooms/r1/peers").await.body;
    assert_eq!(peer(&peers, "alice")["status"], "idle");
    assert_eq!(peer(&peers, "bob")["status"], "active");
    a.send_json(json!({"type": "presence", "data": {"status": "active"}}))
        .await;
    b.recv_type("presence").await;
    let peers = server.get("/api/rooms/r1/peers").await.body;
    assert_eq!(peer(&peers, "alice")["status"], "active");
}

#[tokio::test]
async fn presence_with_unknown_status_is_invalid_input() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    for status in [json!("reconnecting"), json!("away"), json!("")] {
        a.send_json(json!({"type": "presence", "requestId": "p1", "data": {"status": status}}))
            .await;
        let err = a.recv_error("INVALID_INPUT").await;
        assert_eq!(err["requestId"], "p1");
    }
    a.send_json(json!({"type": "presence", "requestId": "p2", "data": {"status": 3}}))
        .await;
    let err = a.recv_error("INVALID_MESSAGE").await;
    assert_eq!(err["requestId"], "p2");
    b.expect_no_message(QUIET).await;
}

// ---------------------------------------------------------------- malformed input

#[tokio::test]
async fn malformed_messages_are_answered_and_the_connection_stays_usable() {
    let server = Server::start(&[]);
    let mut a = server.join("alice", "r1").await;
    let mut b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;

    a.send_text("{not json").await;
    a.recv_error("INVALID_MESSAGE").await;
    a.send_binary(vec![0, 159, 146, 150]).await;
    a.recv_error("INVALID_MESSAGE").await;
    a.send_text("[1,2,3]").await;
    a.recv_error("INVALID_MESSAGE").await;
    a.send_text(r#"{"no_type": true}"#).await;
    a.recv_error("INVALID_MESSAGE").await;
    a.send_text(r#"{"type": 5}"#).await;
    a.recv_error("INVALID_MESSAGE").await;
    a.send_json(json!({"type": "sdp-offer", "requestId": "m1", "data": {"offer": {}}}))
        .await;
    let err = a.recv_error("INVALID_MESSAGE").await;
    assert_eq!(err["requestId"], "m1");
    a.send_json(json!({"type": "sdp-offer", "requestId": "m2", "data": {"peer": 7, "offer": {}}}))
        .await;
    let err = a.recv_error("INVALID_MESSAGE").await;
    assert_eq!(err["requestId"], "m2");
    a.send_json(json!({"type": "bogus-type", "requestId": "u1"}))
        .await;
    let err = a.recv_error("UNKNOWN_TYPE").await;
    assert_eq!(err["requestId"], "u1");
    b.expect_no_message(Duration::from_millis(100)).await;

    a.send_json(json!({"type": "sdp-offer", "data": {"peer": "bob", "offer": {"sdp": "ok"}}}))
        .await;
    let v = b.recv_type("sdp-offer").await;
    assert_eq!(v["data"]["offer"], json!({"sdp": "ok"}));
}

#[tokio::test]
async fn malformed_messages_before_auth_do_not_authenticate() {
    let server = Server::start(&[]);
    let mut c = server.connect_anonymous().await;
    c.send_text("{not json").await;
    c.recv_error("INVALID_MESSAGE").await;
    c.send_json(json!({"type": "bogus"})).await;
    let v = c.recv().await;
    assert_eq!(v["type"], "error");
    assert!(
        v["data"]["code"] == "UNKNOWN_TYPE" || v["data"]["code"] == "NOT_AUTHENTICATED",
        "{v}"
    );
    c.send_json(json!({"type": "join-room"})).await;
    c.recv_error("NOT_AUTHENTICATED").await;
}

// ---------------------------------------------------------------- heartbeats and grace

#[tokio::test]
async fn heartbeats_arrive_every_interval() {
    let server = Server::start(&[("HEARTBEAT_INTERVAL_SECONDS", "1")]);
    let mut a = server.join("alice", "r1").await;
    let mut seen = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while seen < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match a.next_frame(left).await {
            Some(Incoming::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "heartbeat", "unexpected {v}");
                let ts = v["data"]["ts"].as_u64().expect("heartbeat ts");
                assert!(ts.abs_diff(now_ms()) < 5_000, "{v}");
                seen += 1;
            }
            other => panic!("expected heartbeats, got {other:?} after {seen}"),
        }
    }
    // Answering with pong is fine and produces no error.
    a.send_json(json!({"type": "pong"})).await;
    a.send_json(json!({"type": "heartbeat"})).await;
    a.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn pong_message_refreshes_last_heartbeat() {
    let server = Server::start(&[]);
    let (mut a, joined) = server.join_with("alice", "r1").await;
    let first = joined["data"]["self"]["lastHeartbeat"].as_u64().unwrap();
    // Let the millisecond clock move on.
    eventually(Duration::from_secs(1), || async {
        let now = now_ms();
        if now > first + 5 {
            Ok(())
        } else {
            Err(now)
        }
    })
    .await
    .unwrap_or_else(|now| panic!("the clock stayed at {now} ms"));
    a.send_json(json!({"type": "pong"})).await;
    server
        .get_until(
            "/api/rooms/r1/peers",
            Duration::from_secs(1),
            &format!("lastHeartbeat to move on from {first} after a pong"),
            |peers| {
                peer(&peers.body, "alice")["lastHeartbeat"]
                    .as_u64()
                    .unwrap()
                    > first
            },
        )
        .await;
    a.expect_no_message(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn silent_peer_is_timed_out_and_others_are_told() {
    let server = Server::start(&[
        ("HEARTBEAT_INTERVAL_SECONDS", "1"),
        ("PEER_TIMEOUT_SECONDS", "2"),
    ]);
    let mut a = server.join("alice", "r1").await;
    // bob stops reading (so no automatic pongs) and sends nothing.
    let mut bob = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;

    let left = a.recv_within(Duration::from_secs(8)).await;
    assert_eq!(left["type"], "peer-left", "{left}");
    assert_eq!(left["from"], "bob");
    assert_eq!(left["data"]["reason"], "timeout");

    let (msgs, code) = bob.drain_until_close(Duration::from_secs(3)).await;
    assert_eq!(
        msgs.last(),
        Some(&json!({"type": "force-leave", "data": {"reason": "heartbeat_timeout"}})),
        "messages {msgs:?} then close {code}"
    );
    assert_eq!(code, 4011);
    // alice answered the pings by reading and is still there.
    let room = server.get("/api/rooms/r1").await;
    assert_eq!(room.body["peerCount"], 1, "{}", room.body);
}

#[tokio::test]
async fn dropped_peer_is_reconnecting_and_restored_within_grace() {
    let server = Server::start(&[("RECONNECT_GRACE_SECONDS", "30")]);
    let mut a = server.join("alice", "r1").await;
    let b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    drop(b);

    server.wait_reconnecting("r1", "bob").await;

    a.send_json(json!({"type": "sdp-offer", "requestId": "o1",
                       "data": {"peer": "bob", "offer": {}}}))
        .await;
    let err = a.recv_error("PEER_UNAVAILABLE").await;
    assert_eq!(err["requestId"], "o1");

    let (mut b2, joined) = server.join_with("bob", "r1").await;
    assert_eq!(joined["data"]["self"]["status"], "active");
    let pr = a.recv_type("peer-reconnected").await;
    assert_eq!(pr["from"], "bob");
    a.expect_no_message(QUIET).await;
    a.send_json(json!({"type": "sdp-offer", "data": {"peer": "bob", "offer": {"n": 1}}}))
        .await;
    b2.recv_type("sdp-offer").await;
}

#[tokio::test]
async fn dropped_peer_is_removed_after_grace() {
    let server = Server::start(&[
        ("RECONNECT_GRACE_SECONDS", "1"),
        ("ROOM_SWEEP_INTERVAL_SECONDS", "1"),
    ]);
    let mut a = server.join("alice", "r1").await;
    let b = server.join("bob", "r1").await;
    a.recv_type("peer-joined").await;
    drop(b);
    let left = a.recv_within(Duration::from_secs(5)).await;
    assert_eq!(left["type"], "peer-left", "{left}");
    assert_eq!(left["from"], "bob");
    assert_eq!(left["data"]["reason"], "disconnected");
    a.send_json(json!({"type": "sdp-offer", "requestId": "o2",
                       "data": {"peer": "bob", "offer": {}}}))
        .await;
    a.recv_error("PEER_NOT_FOUND").await;
}

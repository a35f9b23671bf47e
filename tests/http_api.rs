//! HTTP API (`docs/protocol.md#1-get-a-token`, `docs/protocol.md#7-rooms-over-http`,
//! `docs/operations.md#admin-calls`): tokens, rooms and their access rules.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use hmac::Mac;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "admin-key-for-integration-tests-0001";
const ISSUER_KEY: &str = "issuer-key-for-integration-tests-0001";

fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

// ---------------------------------------------------------------- tokens

#[tokio::test]
async fn token_response_carries_documented_fields_and_signed_claims() {
    let server = Server::start(&[("TOKEN_TTL_SECONDS", "120")]);
    let before = now_secs();
    let body = server
        .issue(json!({"userId": "u1", "roomId": "r1", "userName": "Ada"}))
        .await;
    let after = now_secs();

    let token = body["token"].as_str().expect("token");
    let claims = verify_token(token);
    assert_eq!(claims["sub"], "u1");
    assert_eq!(claims["room"], "r1");
    assert_eq!(claims["name"], "Ada");
    let iat = claims["iat"].as_u64().expect("iat");
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(iat >= before && iat <= after, "iat {iat} not now");
    assert_eq!(exp - iat, 120);
    assert!(is_uuid_v4(claims["jti"].as_str().expect("jti")), "{claims}");
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);

    assert_eq!(body["expiresAt"].as_u64(), Some(exp * 1000));
    assert_eq!(body["expiresIn"], 120);
    assert_eq!(body["userId"], "u1");
    assert_eq!(body["roomId"], "r1");
    assert_eq!(
        body["signalingUrl"],
        format!("ws://127.0.0.1:{}/ws", server.signaling_port())
    );
    assert!(
        body.get("iceServers").is_none(),
        "iceServers without STUN/TURN config: {body}"
    );
}

#[tokio::test]
async fn token_ids_are_unique_per_issuance() {
    let server = Server::start(&[]);
    let a = verify_token(&server.token("u1", "r1").await);
    let b = verify_token(&server.token("u1", "r1").await);
    assert_ne!(a["jti"], b["jti"]);
}

#[tokio::test]
async fn signaling_url_uses_the_request_host_name() {
    let server = Server::start(&[]);
    let resp = server
        .http_client()
        .post(server.http_url("/api/auth/token"))
        .header("Host", "signal.example.test:8080")
        .json(&json!({"userId": "u1", "roomId": "r1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["signalingUrl"],
        format!("ws://signal.example.test:{}/ws", server.signaling_port())
    );
}

#[tokio::test]
async fn omitted_user_id_is_generated_as_uuid_v4() {
    let server = Server::start(&[]);
    let body = server.issue(json!({"roomId": "r1"})).await;
    let user = body["userId"].as_str().expect("generated userId");
    assert!(is_uuid_v4(user), "not a UUID v4: {user}");
    let claims = verify_token(body["token"].as_str().unwrap());
    assert_eq!(claims["sub"], user);
    let other = server.issue(json!({"roomId": "r1"})).await;
    assert_ne!(other["userId"], body["userId"]);
}

#[tokio::test]
async fn invalid_user_and_room_ids_are_rejected() {
    let server = Server::start(&[]);
    let long = "a".repeat(129);
    for bad in ["a b", long.as_str(), "", "é", "a/b", "a#b", "<script>"] {
        for (field, other) in [("userId", "roomId"), ("roomId", "userId")] {
            let r = server
                .post("/api/auth/token", &json!({ field: bad, other: "ok-id" }))
                .await;
            r.assert_error(400, "INVALID_INPUT");
        }
    }
    // Non-string ids are invalid input too.
    let r = server
        .post("/api/auth/token", &json!({"userId": 5, "roomId": "r1"}))
        .await;
    r.assert_error(400, "INVALID_INPUT");
    let r = server
        .post("/api/auth/token", &json!({"userId": "u1"}))
        .await;
    r.assert_error(400, "INVALID_INPUT");
}

#[tokio::test]
async fn ids_with_every_allowed_character_and_128_chars_are_accepted() {
    let server = Server::start(&[]);
    let max = "b".repeat(128);
    for id in ["A-z.0_9:x@y", max.as_str(), "1"] {
        let body = server.issue(json!({"userId": id, "roomId": id})).await;
        assert_eq!(body["userId"], id);
        assert_eq!(body["roomId"], id);
    }
}

#[tokio::test]
async fn user_name_is_trimmed_and_blank_names_are_rejected() {
    let server = Server::start(&[]);
    let body = server
        .issue(json!({"userId": "u1", "roomId": "r1", "userName": "  Ada Lovelace \t"}))
        .await;
    assert_eq!(
        verify_token(body["token"].as_str().unwrap())["name"],
        "Ada Lovelace"
    );
    for bad in ["", "   ", "\t\n"] {
        server
            .post(
                "/api/auth/token",
                &json!({"userId": "u1", "roomId": "r1", "userName": bad}),
            )
            .await
            .assert_error(400, "INVALID_INPUT");
    }
    server
        .post(
            "/api/auth/token",
            &json!({"userId": "u1", "roomId": "r1", "userName": "x".repeat(101)}),
        )
        .await
        .assert_error(400, "INVALID_INPUT");
    let ok = server
        .issue(json!({"userId": "u1", "roomId": "r1", "userName": "x".repeat(100)}))
        .await;
    assert!(ok["token"].is_string());
}

#[tokio::test]
async fn invalid_json_body_is_invalid_input() {
    let server = Server::start(&[]);
    for raw in [
        "{not json",
        "[1,2]",
        "\"str\"",
        "{\"userId\": \"u1\", \"roomId\": \"r1\"} x",
    ] {
        let r = server.post_raw("/api/auth/token", raw).await;
        r.assert_error(400, "INVALID_INPUT");
    }
    let r = server.post_raw("/api/rooms", "{\"roomId\":").await;
    r.assert_error(400, "INVALID_INPUT");
}

#[tokio::test]
async fn empty_body_is_invalid_input() {
    let server = Server::start(&[]);
    // With an explicit zero length...
    let r = server
        .http_client()
        .post(server.http_url("/api/auth/token"))
        .header("content-type", "application/json")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // ...and with none at all (a request without a body has length 0, RFC 9112 6.3).
    let r = server.post_raw("/api/auth/token", "").await;
    r.assert_error(400, "INVALID_INPUT");
}

#[tokio::test]
async fn body_over_64_kib_is_payload_too_large() {
    let server = Server::start(&[]);
    let pad = "x".repeat(70 * 1024);
    let r = server
        .post(
            "/api/auth/token",
            &json!({"userId": "u1", "roomId": "r1", "pad": pad}),
        )
        .await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
    let r = server
        .post("/api/rooms", &json!({"roomName": "big", "pad": pad}))
        .await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let server = Server::start(&[]);
    let pad = "x".repeat(60 * 1024);
    let body = server
        .issue(json!({"userId": "u1", "roomId": "r1", "color": "red",
                      "nested": {"a": [1, 2]}, "pad": pad}))
        .await;
    assert_eq!(body["userId"], "u1");
    let room = server
        .create_room(json!({"roomId": "r2", "roomName": "x", "hostId": "h", "theme": "dark"}))
        .await;
    assert_eq!(room["roomId"], "r2");
}

#[tokio::test]
async fn validate_accepts_a_fresh_token() {
    let server = Server::start(&[]);
    let issued = server.issue(json!({"userId": "u1", "roomId": "r1"})).await;
    let r = server
        .post(
            "/api/auth/validate",
            &json!({"token": issued["token"], "userId": "u1", "roomId": "r1"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["valid"], true, "{}", r.body);
    assert_eq!(r.body["userId"], "u1");
    assert_eq!(r.body["roomId"], "r1");
    assert_eq!(r.body["expiresAt"], issued["expiresAt"]);
}

async fn validate(server: &Server, body: Value) -> Value {
    let r = server.post("/api/auth/validate", &body).await;
    assert_eq!(r.status, 200, "validate answered {} {}", r.status, r.body);
    r.body
}

#[tokio::test]
async fn validate_reports_expired_token() {
    let server = Server::start(&[]);
    let now = now_secs();
    let expired = forge_token(JWT_SECRET, &claims("u1", "r1", now - 7200, now - 3600));
    let v = validate(&server, json!({"token": expired})).await;
    assert_eq!(v, json!({"valid": false, "error": "TOKEN_EXPIRED"}));
    // Expired by a single second still counts.
    let just = forge_token(JWT_SECRET, &claims("u1", "r1", now - 100, now - 1));
    let v = validate(&server, json!({"token": just})).await;
    assert_eq!(v, json!({"valid": false, "error": "TOKEN_EXPIRED"}));
}

#[tokio::test]
async fn validate_rejects_forged_tokens() {
    let server = Server::start(&[]);
    let now = now_secs();
    let c = claims("u1", "r1", now, now + 600);
    let other_key = forge_token("another-secret-another-secret-another", &c);
    let hs512 = forge_token_alg(JWT_SECRET, &c, jsonwebtoken::Algorithm::HS512);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg_none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(c.to_string())
    );
    let good = server.token("u1", "r1").await;
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims_tampered = verify_token(&good);
    claims_tampered["room"] = json!("r2");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims_tampered.to_string()),
        parts[2]
    );
    for bad in [
        other_key.as_str(),
        hs512.as_str(),
        alg_none.as_str(),
        tampered.as_str(),
        "garbage",
        "",
        "a.b.c",
    ] {
        let v = validate(&server, json!({"token": bad})).await;
        assert_eq!(
            v,
            json!({"valid": false, "error": "INVALID_TOKEN"}),
            "token {bad:?}"
        );
    }
}

#[tokio::test]
async fn validate_reports_user_and_room_mismatch() {
    let server = Server::start(&[]);
    let token = server.token("u1", "r1").await;
    let v = validate(&server, json!({"token": token, "userId": "u2"})).await;
    assert_eq!(v, json!({"valid": false, "error": "USER_MISMATCH"}));
    let v = validate(&server, json!({"token": token, "roomId": "r2"})).await;
    assert_eq!(v, json!({"valid": false, "error": "ROOM_MISMATCH"}));
    let v = validate(&server, json!({"token": token, "roomId": "r1"})).await;
    assert_eq!(v["valid"], true);
}

#[tokio::test]
async fn password_room_requires_the_right_password_for_tokens() {
    let server = Server::start(&[]);
    server
        .create_room(
            json!({"roomId": "secret-room", "roomName": "S", "hostId": "h",
                            "password": "correct horse"}),
        )
        .await;
    server
        .post(
            "/api/auth/token",
            &json!({"userId": "u1", "roomId": "secret-room"}),
        )
        .await
        .assert_error(401, "INVALID_PASSWORD");
    server
        .post(
            "/api/auth/token",
            &json!({"userId": "u1", "roomId": "secret-room", "password": "wrong"}),
        )
        .await
        .assert_error(401, "INVALID_PASSWORD");
    server
        .post(
            "/api/auth/token",
            &json!({"userId": "u1", "roomId": "secret-room", "password": ""}),
        )
        .await
        .assert_error(401, "INVALID_PASSWORD");
    let ok = server
        .issue(json!({"userId": "u1", "roomId": "secret-room", "password": "correct horse"}))
        .await;
    assert_eq!(
        verify_token(ok["token"].as_str().unwrap())["room"],
        "secret-room"
    );
    // A password given for an open room is ignored.
    server
        .create_room(json!({"roomId": "open-room", "roomName": "O", "hostId": "h"}))
        .await;
    server
        .issue(json!({"userId": "u1", "roomId": "open-room", "password": "whatever"}))
        .await;
}

#[tokio::test]
async fn full_room_refuses_new_users_but_not_its_members() {
    let server = Server::start(&[("RECONNECT_GRACE_SECONDS", "30")]);
    server
        .create_room(json!({"roomId": "duo", "roomName": "Duo", "hostId": "a", "maxPeers": 2}))
        .await;
    let mut a = server.join("a", "duo").await;
    let b = server.join("b", "duo").await;
    a.recv_type("peer-joined").await;

    server
        .post("/api/auth/token", &json!({"userId": "c", "roomId": "duo"}))
        .await
        .assert_error(403, "ROOM_FULL");
    // Members always get a token (reload, second tab).
    server.issue(json!({"userId": "a", "roomId": "duo"})).await;
    server.issue(json!({"userId": "b", "roomId": "duo"})).await;

    // A member whose connection dropped is reconnecting and still a member.
    drop(b);
    server.wait_reconnecting("duo", "b").await;
    server.issue(json!({"userId": "b", "roomId": "duo"})).await;
    server
        .post("/api/auth/token", &json!({"userId": "c", "roomId": "duo"}))
        .await
        .assert_error(403, "ROOM_FULL");
}

#[tokio::test]
async fn issuer_api_key_guards_token_and_room_creation() {
    let server = Server::start(&[("ISSUER_API_KEY", ISSUER_KEY)]);
    let token_body = json!({"userId": "u1", "roomId": "r1"});
    server
        .post("/api/auth/token", &token_body)
        .await
        .assert_error(401, "UNAUTHORIZED");
    server
        .post_auth("/api/auth/token", "not-the-key", &token_body)
        .await
        .assert_error(401, "UNAUTHORIZED");
    let ok = server
        .post_auth("/api/auth/token", ISSUER_KEY, &token_body)
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let room_body = json!({"roomId": "r2", "roomName": "R", "hostId": "h"});
    server
        .post("/api/rooms", &room_body)
        .await
        .assert_error(401, "UNAUTHORIZED");
    server
        .post_auth("/api/rooms", "not-the-key", &room_body)
        .await
        .assert_error(401, "UNAUTHORIZED");
    let ok = server.post_auth("/api/rooms", ISSUER_KEY, &room_body).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    // A non-Bearer scheme is not the key either.
    let r = server
        .http_client()
        .post(server.http_url("/api/auth/token"))
        .header("Authorization", format!("Basic {ISSUER_KEY}"))
        .json(&token_body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn admin_calls_are_forbidden_when_no_admin_key_is_configured() {
    let server = Server::start(&[]);
    server
        .get("/api/rooms")
        .await
        .assert_error(403, "FORBIDDEN");
    server
        .get_auth("/api/rooms", "anything")
        .await
        .assert_error(403, "FORBIDDEN");
    server
        .request(
            reqwest::Method::POST,
            "/api/admin/cleanup?level=normal",
            None,
            None,
        )
        .await
        .assert_error(403, "FORBIDDEN");
}

#[tokio::test]
async fn admin_key_is_required_for_admin_calls_when_configured() {
    let server = Server::start(&[("ADMIN_API_KEY", ADMIN_KEY)]);
    server
        .get("/api/rooms")
        .await
        .assert_error(401, "UNAUTHORIZED");
    server
        .get_auth("/api/rooms", "wrong-key")
        .await
        .assert_error(401, "UNAUTHORIZED");
    let ok = server.get_auth("/api/rooms", ADMIN_KEY).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body, json!({"rooms": [], "total": 0}));
}

#[tokio::test]
async fn ice_servers_carry_stun_and_coturn_rest_credentials() {
    let turn_secret = "turn-shared-secret-for-tests";
    let server = Server::start(&[
        (
            "STUN_URLS",
            "stun:stun.example.com:3478,stun:stun2.example.com:19302",
        ),
        (
            "TURN_URLS",
            "turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349",
        ),
        ("TURN_SECRET", turn_secret),
        ("TOKEN_TTL_SECONDS", "900"),
    ]);
    let body = server
        .issue(json!({"userId": "alice", "roomId": "r1"}))
        .await;
    let exp = verify_token(body["token"].as_str().unwrap())["exp"]
        .as_u64()
        .unwrap();
    let servers = body["iceServers"].as_array().expect("iceServers array");
    assert_eq!(servers.len(), 2, "{body}");
    let stun = servers
        .iter()
        .find(|s| {
            s["urls"][0]
                .as_str()
                .is_some_and(|u| u.starts_with("stun:"))
        })
        .expect("STUN entry");
    assert_eq!(
        *stun,
        json!({"urls": ["stun:stun.example.com:3478", "stun:stun2.example.com:19302"]})
    );
    let turn = servers
        .iter()
        .find(|s| s["urls"][0].as_str().is_some_and(|u| u.starts_with("turn")))
        .expect("TURN entry");
    let username = format!("{exp}:alice");
    assert_eq!(
        *turn,
        json!({
            "urls": ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"],
            "username": username,
            "credential": turn_credential(turn_secret, &username),
        })
    );
}

#[tokio::test]
async fn ice_servers_with_stun_only_have_no_credentials() {
    let server = Server::start(&[("STUN_URLS", "stun:stun.example.com:3478")]);
    let body = server.issue(json!({"userId": "u1", "roomId": "r1"})).await;
    assert_eq!(
        body["iceServers"],
        json!([{"urls": ["stun:stun.example.com:3478"]}])
    );
}

#[tokio::test]
async fn secrets_never_appear_in_process_output() {
    let turn_secret = "turn-secret-that-must-not-leak-42";
    let password = "room-password-that-must-not-leak-42";
    let server = Server::start(&[
        ("TURN_URLS", "turn:turn.example.com:3478"),
        ("TURN_SECRET", turn_secret),
        ("ADMIN_API_KEY", ADMIN_KEY),
        ("ISSUER_API_KEY", ISSUER_KEY),
        ("RUST_LOG", "debug"),
    ]);
    let created = server
        .post_auth(
            "/api/rooms",
            ISSUER_KEY,
            &json!({"roomId": "pw", "roomName": "P", "hostId": "h", "password": password}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let host_token = created.body["hostToken"].as_str().unwrap().to_string();
    let issued = server
        .post_auth(
            "/api/auth/token",
            ISSUER_KEY,
            &json!({"userId": "u1", "roomId": "pw", "password": password}),
        )
        .await;
    assert_eq!(issued.status, 200);
    let token = issued.body["token"].as_str().unwrap().to_string();
    let credential = issued.body["iceServers"][0]["credential"]
        .as_str()
        .unwrap()
        .to_string();
    server
        .post_auth(
            "/api/auth/token",
            ISSUER_KEY,
            &json!({"userId": "u2", "roomId": "pw", "password": "wrong-password-also-secret"}),
        )
        .await
        .assert_error(401, "INVALID_PASSWORD");
    server
        .post("/api/auth/validate", &json!({"token": token}))
        .await;
    server.get_auth("/api/rooms/pw", &token).await;
    server.get_auth("/api/rooms", ADMIN_KEY).await;

    // Query-token upgrade, message auth, and a refused upgrade with a forged token.
    let mut ws = server.connect(&token).await;
    ws.send_json(json!({"type": "join-room"})).await;
    ws.recv_type("room-joined").await;
    let mut anon = server.connect_anonymous().await;
    anon.send_json(json!({"type": "auth", "data": {"token": host_token}}))
        .await;
    anon.recv_type("auth-ok").await;
    let forged = forge_token(
        "forged-secret-forged-secret-forged-secret",
        &claims("x", "pw", now_secs(), now_secs() + 60),
    );
    assert_eq!(
        refused_upgrade_status(&server.ws_url(&format!("?token={forged}")), None).await,
        401
    );
    server.delete("/api/rooms/pw", Some(&host_token)).await;

    let output = server.stop();
    let all = output.join("\n");
    for (what, secret) in [
        ("JWT_SECRET", JWT_SECRET),
        ("TURN_SECRET", turn_secret),
        ("ADMIN_API_KEY", ADMIN_KEY),
        ("ISSUER_API_KEY", ISSUER_KEY),
        ("room password", password),
        ("wrong password", "wrong-password-also-secret"),
        ("room token", token.as_str()),
        ("host token", host_token.as_str()),
        ("forged token", forged.as_str()),
        ("TURN credential", credential.as_str()),
    ] {
        assert!(!all.contains(secret), "{what} appears in the server output");
    }
    // The token signature alone must not leak either.
    let sig = token.rsplit('.').next().unwrap();
    assert!(
        !all.contains(sig),
        "a token signature appears in the output"
    );
}

// ---------------------------------------------------------------- rooms

#[tokio::test]
async fn create_room_returns_metadata_and_host_token() {
    let server = Server::start(&[]);
    let before = now_ms();
    let room = server
        .create_room(json!({
            "roomId": "design-1", "roomName": "Design review", "hostId": "h1",
            "hostName": "Ada", "password": "pw-123", "maxPeers": 8, "ttlSeconds": 3600,
            "destroyOnHostLeave": false
        }))
        .await;
    assert_eq!(room["roomId"], "design-1");
    assert_eq!(room["roomName"], "Design review");
    assert_eq!(room["hostId"], "h1");
    assert_eq!(room["hostName"], "Ada");
    let created = room["createdAt"].as_u64().expect("createdAt ms");
    assert!(created >= before - 1000 && created <= now_ms() + 1000);
    assert!(room["lastActivity"].as_u64().is_some(), "{room}");
    assert_eq!(room["state"], "idle");
    assert_eq!(room["peerCount"], 0);
    assert_eq!(room["maxPeers"], 8);
    assert_eq!(room["hasPassword"], true);
    assert!(room["expiresAt"].is_null(), "{room}");
    assert!(room["timeUntilExpiration"].is_null(), "{room}");
    assert!(
        room.get("expiresAt").is_some() && room.get("timeUntilExpiration").is_some(),
        "expiresAt/timeUntilExpiration must be present as null: {room}"
    );
    assert_eq!(room["peers"], json!([]));
    assert!(
        !room.to_string().contains("pw-123"),
        "password echoed: {room}"
    );

    let claims = verify_token(room["hostToken"].as_str().expect("hostToken"));
    assert_eq!(claims["sub"], "h1");
    assert_eq!(claims["room"], "design-1");
}

#[tokio::test]
async fn create_room_with_taken_id_is_a_conflict() {
    let server = Server::start(&[]);
    server
        .create_room(json!({"roomId": "r1", "roomName": "One", "hostId": "h"}))
        .await;
    server
        .post(
            "/api/rooms",
            &json!({"roomId": "r1", "roomName": "Again", "hostId": "h2"}),
        )
        .await
        .assert_error(409, "ROOM_EXISTS");
    // A room created implicitly by a join is taken as well.
    let _p = server.join("p", "joined-room").await;
    server
        .post(
            "/api/rooms",
            &json!({"roomId": "joined-room", "roomName": "X", "hostId": "h"}),
        )
        .await
        .assert_error(409, "ROOM_EXISTS");
}

#[tokio::test]
async fn create_room_generates_missing_ids() {
    let server = Server::start(&[]);
    let a = server.create_room(json!({"roomName": "Gen"})).await;
    let b = server.create_room(json!({"roomName": "Gen"})).await;
    let room_id = a["roomId"].as_str().expect("generated roomId");
    assert!(is_valid_id(room_id), "generated roomId {room_id:?}");
    assert_ne!(a["roomId"], b["roomId"]);
    let host = a["hostId"].as_str().expect("generated hostId");
    assert!(is_uuid_v4(host), "generated hostId {host:?}");
    let claims = verify_token(a["hostToken"].as_str().unwrap());
    assert_eq!(claims["sub"], host);
    assert_eq!(claims["room"], room_id);
    let fetched = server.get(&format!("/api/rooms/{room_id}")).await;
    assert_eq!(fetched.status, 200);
}

#[tokio::test]
async fn create_room_validates_its_input() {
    let server = Server::start(&[("MAX_PEERS_PER_ROOM", "10")]);
    let bad = [
        json!({"roomName": "x", "maxPeers": 0}),
        json!({"roomName": "x", "maxPeers": 11}),
        json!({"roomName": "x", "maxPeers": -1}),
        json!({"roomName": "x", "maxPeers": "5"}),
        json!({"roomName": "x", "ttlSeconds": 0}),
        json!({"roomName": "x", "ttlSeconds": -5}),
        json!({"roomName": "x", "ttlSeconds": 1.5}),
        json!({"roomName": "x", "roomId": "bad id"}),
        json!({"roomName": "x", "hostId": "bad/host"}),
        json!({"roomName": "   "}),
        json!({"roomName": "x".repeat(101)}),
        json!({"roomName": "x", "hostName": " "}),
        json!({"roomName": "x", "destroyOnHostLeave": "yes"}),
    ];
    for body in bad {
        server
            .post("/api/rooms", &body)
            .await
            .assert_error(400, "INVALID_INPUT");
    }
    let ok = server
        .create_room(json!({"roomName": "x", "maxPeers": 10}))
        .await;
    assert_eq!(ok["maxPeers"], 10);
    let ok = server.create_room(json!({"roomName": "y"})).await;
    assert_eq!(ok["maxPeers"], 10, "default maxPeers is MAX_PEERS_PER_ROOM");
    assert_eq!(ok["hasPassword"], false);
}

#[tokio::test]
async fn max_rooms_refuses_new_rooms() {
    let server = Server::start(&[("MAX_ROOMS", "1")]);
    server
        .create_room(json!({"roomId": "only", "roomName": "Only", "hostId": "h"}))
        .await;
    server
        .post(
            "/api/rooms",
            &json!({"roomId": "second", "roomName": "Second", "hostId": "h"}),
        )
        .await
        .assert_error(503, "TOO_MANY_ROOMS");
    let token = server.token("u1", "third").await;
    let mut c = server.connect(&token).await;
    c.send_json(json!({"type": "join-room", "requestId": "j"}))
        .await;
    let err = c.recv_error("TOO_MANY_ROOMS").await;
    assert_eq!(err["requestId"], "j");
    // The existing room still admits peers.
    let (_p, joined) = server.join_with("p", "only").await;
    assert_eq!(joined["data"]["room"]["roomId"], "only");
}

#[tokio::test]
async fn room_state_follows_connected_peers() {
    let server = Server::start(&[]);
    server
        .create_room(json!({"roomId": "st", "roomName": "State", "hostId": "a",
                            "hostName": "Ada", "ttlSeconds": 3600}))
        .await;
    let r = server.get("/api/rooms/st").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "idle");
    assert_eq!(r.body["peerCount"], 0);
    assert!(r.body["expiresAt"].is_null());

    let before_join = now_ms();
    let mut a = server.join("a", "st").await;
    let r = server.get("/api/rooms/st").await;
    assert_eq!(r.body["state"], "active", "{}", r.body);
    assert_eq!(r.body["peerCount"], 1);
    assert_eq!(r.body["hostId"], "a");
    assert_peer_info(peer(&r.body["peers"], "a"), "a", true, "active");
    // The TTL clock starts at the first join.
    let expires = r.body["expiresAt"].as_u64().expect("expiresAt after join");
    assert!(
        expires >= before_join + 3_599_000 && expires <= now_ms() + 3_600_000,
        "expiresAt {expires}"
    );
    let left = r.body["timeUntilExpiration"]
        .as_u64()
        .expect("timeUntilExpiration");
    assert!(
        left > 3_590_000 && left <= 3_600_000,
        "timeUntilExpiration {left}"
    );

    let peers = server.get("/api/rooms/st/peers").await;
    assert_eq!(peers.status, 200);
    assert_eq!(peers.body.as_array().map(|p| p.len()), Some(1));
    assert_peer_info(&peers.body[0], "a", true, "active");

    a.send_json(json!({"type": "leave-room"})).await;
    a.recv_type("room-left").await;
    let r = server.get("/api/rooms/st").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "idle", "{}", r.body);
    assert_eq!(r.body["peerCount"], 0);
    assert_eq!(r.body["peers"], json!([]));
}

#[tokio::test]
async fn unknown_room_is_not_found() {
    let server = Server::start(&[]);
    server
        .get("/api/rooms/nope")
        .await
        .assert_error(404, "ROOM_NOT_FOUND");
    server
        .get("/api/rooms/nope/peers")
        .await
        .assert_error(404, "ROOM_NOT_FOUND");
}

#[tokio::test]
async fn unknown_route_is_not_found() {
    let server = Server::start(&[]);
    server
        .get("/api/nothing-here")
        .await
        .assert_error(404, "NOT_FOUND");
    // `/` is the demo page (tests/web.rs); other unknown paths are JSON 404s.
    server
        .get("/nope.html")
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn password_room_details_require_a_token_for_that_room() {
    let server = Server::start(&[("ADMIN_API_KEY", ADMIN_KEY)]);
    let room = server
        .create_room(json!({"roomId": "locked", "roomName": "L", "hostId": "h",
                            "password": "pw-locked"}))
        .await;
    let host_token = room["hostToken"].as_str().unwrap().to_string();
    let member_token = server
        .issue(json!({"userId": "m", "roomId": "locked", "password": "pw-locked"}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let other_room_token = server.token("m", "elsewhere").await;
    let now = now_secs();
    let expired = forge_token(JWT_SECRET, &claims("m", "locked", now - 7200, now - 3600));

    for path in ["/api/rooms/locked", "/api/rooms/locked/peers"] {
        server.get(path).await.assert_error(401, "UNAUTHORIZED");
        server
            .get_auth(path, &other_room_token)
            .await
            .assert_error(401, "UNAUTHORIZED");
        server
            .get_auth(path, &expired)
            .await
            .assert_error(401, "UNAUTHORIZED");
        server
            .get_auth(path, "garbage")
            .await
            .assert_error(401, "UNAUTHORIZED");
        for cred in [host_token.as_str(), member_token.as_str(), ADMIN_KEY] {
            let r = server.get_auth(path, cred).await;
            assert_eq!(r.status, 200, "{path} with a valid credential: {}", r.body);
        }
    }
    let r = server.get_auth("/api/rooms/locked", &member_token).await;
    assert_eq!(r.body["roomId"], "locked");
    assert_eq!(r.body["hasPassword"], true);

    // Open rooms need no credentials.
    server
        .create_room(json!({"roomId": "open", "roomName": "O", "hostId": "h"}))
        .await;
    assert_eq!(server.get("/api/rooms/open").await.status, 200);
    let peers = server.get("/api/rooms/open/peers").await;
    assert_eq!(peers.status, 200);
    assert_eq!(peers.body, json!([]));
}

#[tokio::test]
async fn delete_room_requires_the_host_token_or_admin_key() {
    let server = Server::start(&[("ADMIN_API_KEY", ADMIN_KEY)]);
    let room = server
        .create_room(json!({"roomId": "del", "roomName": "D", "hostId": "h"}))
        .await;
    let host_token = room["hostToken"].as_str().unwrap().to_string();
    let peer_token = server.token("p", "del").await;
    let host_other_room = server.token("h", "other").await;

    server
        .delete("/api/rooms/del", None)
        .await
        .assert_error(401, "UNAUTHORIZED");
    server
        .delete("/api/rooms/del", Some("garbage"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    server
        .delete("/api/rooms/del", Some("wrong-admin-key"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    server
        .delete("/api/rooms/del", Some(&peer_token))
        .await
        .assert_error(403, "FORBIDDEN");
    let r = server
        .delete("/api/rooms/del", Some(&host_other_room))
        .await;
    assert!(
        r.status == 401 || r.status == 403,
        "host's token for another room deleted or answered {}: {}",
        r.status,
        r.body
    );
    assert_eq!(server.get("/api/rooms/del").await.status, 200);

    let r = server.delete("/api/rooms/del", Some(&host_token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"success": true}));

    server
        .create_room(json!({"roomId": "del2", "roomName": "D", "hostId": "h"}))
        .await;
    let r = server.delete("/api/rooms/del2", Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"success": true}));

    server
        .delete("/api/rooms/never-existed", Some(ADMIN_KEY))
        .await
        .assert_error(404, "ROOM_NOT_FOUND");
}

#[tokio::test]
async fn deleted_room_disconnects_its_peers_and_is_tombstoned() {
    let server = Server::start(&[]);
    let room = server
        .create_room(json!({"roomId": "doomed", "roomName": "D", "hostId": "h"}))
        .await;
    let host_token = room["hostToken"].as_str().unwrap().to_string();
    let late_token = server.token("late", "doomed").await;
    let mut h = server.connect(&host_token).await;
    h.send_json(json!({"type": "join-room"})).await;
    h.recv_type("room-joined").await;
    let mut p = server.join("p", "doomed").await;
    h.recv_type("peer-joined").await;
    let mut bystander = server.join("x", "other-room").await;

    let r = server.delete("/api/rooms/doomed", Some(&host_token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for c in [&mut h, &mut p] {
        let closed = c.recv_type("room-closed").await;
        assert_eq!(closed["data"]["reason"], "deleted", "{closed}");
        assert_eq!(c.expect_close().await, 4010);
    }
    bystander
        .expect_no_message(Duration::from_millis(200))
        .await;

    server
        .get("/api/rooms/doomed")
        .await
        .assert_error(410, "ROOM_CLOSED");
    server
        .post(
            "/api/auth/token",
            &json!({"userId": "p", "roomId": "doomed"}),
        )
        .await
        .assert_error(410, "ROOM_CLOSED");
    // A token issued before the delete cannot recreate the room.
    let mut late = server.connect(&late_token).await;
    late.send_json(json!({"type": "join-room", "requestId": "j1"}))
        .await;
    let err = late.recv_error("ROOM_CLOSED").await;
    assert_eq!(err["requestId"], "j1");
}

#[tokio::test]
async fn admin_lists_rooms_without_peers() {
    let server = Server::start(&[("ADMIN_API_KEY", ADMIN_KEY)]);
    server
        .create_room(json!({"roomId": "a-room", "roomName": "A", "hostId": "h"}))
        .await;
    let _p = server.join("p", "b-room").await;
    let r = server.get_auth("/api/rooms", ADMIN_KEY).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total"], 2);
    let rooms = r.body["rooms"].as_array().expect("rooms array");
    assert_eq!(rooms.len(), 2);
    for room in rooms {
        assert!(room.get("peers").is_none(), "listed room has peers: {room}");
        assert!(room["roomId"].is_string() && room["state"].is_string());
    }
    let b = rooms
        .iter()
        .find(|r| r["roomId"] == "b-room")
        .expect("b-room");
    assert_eq!(b["peerCount"], 1);
    assert_eq!(b["state"], "active");
    let a = rooms
        .iter()
        .find(|r| r["roomId"] == "a-room")
        .expect("a-room");
    assert_eq!(a["state"], "idle");
}

#[tokio::test]
async fn info_describes_the_server() {
    let server = Server::start(&[("HEARTBEAT_INTERVAL_SECONDS", "7")]);
    let r = server.get("/info").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"], "switchboard");
    assert!(
        r.body["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{}",
        r.body
    );
    assert_eq!(
        r.body["signalingPort"].as_u64(),
        Some(server.signaling_port() as u64)
    );
    assert_eq!(r.body["heartbeatIntervalMs"], 7000);
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let server = Server::start(&[("CORS_ORIGINS", "https://app.example.com")]);
    let ok = server
        .http_client()
        .get(server.http_url("/info"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    let bad = server
        .http_client()
        .get(server.http_url("/info"))
        .header("Origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    let allow = bad
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert!(
        allow.is_none() || allow.as_deref() == Some("https://app.example.com"),
        "foreign origin allowed: {allow:?}"
    );
}

#[tokio::test]
async fn admin_calls_with_a_valid_room_token_are_forbidden_not_unauthorized() {
    let server = Server::start(&[("ADMIN_API_KEY", ADMIN_KEY)]);
    let room_token = server.token("u1", "r1").await;
    let host_token = server
        .create_room(json!({"roomId": "r2", "roomName": "R", "hostId": "h"}))
        .await["hostToken"]
        .as_str()
        .unwrap()
        .to_string();
    let now = now_secs();
    let expired = forge_token(JWT_SECRET, &claims("u1", "r1", now - 7200, now - 3600));
    let thresholds = json!({"warningMb": 100000, "criticalMb": 200000});
    let calls = [
        (reqwest::Method::GET, "/api/rooms", None),
        (
            reqwest::Method::POST,
            "/api/admin/cleanup?level=normal",
            None,
        ),
        (
            reqwest::Method::PUT,
            "/api/admin/memory-thresholds",
            Some(&thresholds),
        ),
    ];
    for (method, path, body) in calls {
        for token in [room_token.as_str(), host_token.as_str()] {
            server
                .request(method.clone(), path, Some(token), body)
                .await
                .assert_error(403, "FORBIDDEN");
        }
        // No credential, a wrong key or a token that is no longer valid: still 401.
        for cred in [None, Some("wrong-key"), Some(expired.as_str())] {
            server
                .request(method.clone(), path, cred, body)
                .await
                .assert_error(401, "UNAUTHORIZED");
        }
        let r = server
            .request(method.clone(), path, Some(ADMIN_KEY), body)
            .await;
        assert_eq!(
            r.status, 200,
            "{method} {path} with the admin key: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn malformed_room_ids_in_paths_are_invalid_input() {
    let server = Server::start(&[("ADMIN_API_KEY", ADMIN_KEY)]);
    let too_long = "a".repeat(129);
    for id in ["bad%20id", "%C3%A4", "a%2Fb", "%FF", too_long.as_str()] {
        server
            .get(&format!("/api/rooms/{id}"))
            .await
            .assert_error(400, "INVALID_INPUT");
        server
            .get(&format!("/api/rooms/{id}/peers"))
            .await
            .assert_error(400, "INVALID_INPUT");
        server
            .delete(&format!("/api/rooms/{id}"), Some(ADMIN_KEY))
            .await
            .assert_error(400, "INVALID_INPUT");
    }
    // A well-formed id is decoded before it is looked up, and an unknown one is still 404.
    server
        .create_room(json!({"roomId": "team:a@b", "roomName": "T", "hostId": "h"}))
        .await;
    let r = server.get("/api/rooms/team%3Aa%40b").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["roomId"], "team:a@b");
    assert_eq!(
        server.get("/api/rooms/team%3Aa%40b/peers").await.status,
        200
    );
    server
        .get("/api/rooms/no-such-room")
        .await
        .assert_error(404, "ROOM_NOT_FOUND");
    let r = server
        .delete("/api/rooms/team%3Aa%40b", Some(ADMIN_KEY))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

//! Startup configuration (every setting and its default: `.env.example`; logs:
//! `docs/operations.md#logs`): what starts, what refuses to start and how.

mod common;

use common::{verify_token, ExpectRefusal, Launch, Server, JWT_SECRET};
use serde_json::{json, Value};

#[tokio::test]
async fn starts_on_port_zero_and_reports_both_addresses() {
    let server = Server::start(&[]);
    assert_ne!(server.http_addr, server.signaling_addr);
    let info = server.get("/info").await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.body["name"], "switchboard");
    assert_eq!(
        info.body["signalingPort"].as_u64(),
        Some(server.signaling_port() as u64)
    );
    assert_eq!(info.body["heartbeatIntervalMs"], 30_000);
}

#[tokio::test]
async fn missing_jwt_secret_logs_a_warning_and_uses_a_random_key() {
    let server = Server::launch(Launch::new().unset("JWT_SECRET"));
    let token = server.token("u1", "r1").await;

    // The server's own tokens validate...
    let v = server
        .post("/api/auth/validate", &json!({"token": token}))
        .await;
    assert_eq!(v.status, 200);
    assert_eq!(v.body["valid"], true, "{}", v.body);

    // ...but are not signed with any key the test knows.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    assert!(jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation
    )
    .is_err());

    let output = server.stop();
    let warning = output.iter().find(|line| {
        serde_json::from_str::<Value>(line)
            .map(|v| v["level"] == "WARN" && line.contains("JWT_SECRET"))
            .unwrap_or(false)
    });
    assert!(
        warning.is_some(),
        "no WARN line mentioning JWT_SECRET in {output:#?}"
    );
}

#[tokio::test]
async fn jwt_secret_of_exactly_32_bytes_is_accepted() {
    let secret = "0123456789abcdef0123456789abcdef";
    let server = Server::launch(Launch::new().env("JWT_SECRET", secret));
    let token = server.token("u1", "r1").await;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .expect("token signed with the configured JWT_SECRET")
    .claims;
    assert_eq!(claims["sub"], "u1");
}

#[test]
fn jwt_secret_shorter_than_32_bytes_stops_startup() {
    let short = "0123456789abcdef0123456789abcde"; // 31 bytes
    let failure = Launch::new()
        .env("JWT_SECRET", short)
        .expect_refusal_naming("JWT_SECRET");
    assert!(
        !failure.stderr.contains(short) && !failure.stdout.contains(short),
        "the rejected secret was echoed: {failure:?}"
    );
}

#[test]
fn non_numeric_port_stops_startup() {
    Launch::new()
        .env("PORT", "abc")
        .expect_refusal_naming("PORT");
}

#[test]
fn out_of_range_signaling_port_stops_startup() {
    Launch::new()
        .env("SIGNALING_PORT", "70000")
        .expect_refusal_naming("SIGNALING_PORT");
}

#[test]
fn zero_token_ttl_stops_startup() {
    Launch::new()
        .env("TOKEN_TTL_SECONDS", "0")
        .expect_refusal_naming("TOKEN_TTL_SECONDS");
}

#[test]
fn zero_max_peers_per_room_stops_startup() {
    Launch::new()
        .env("MAX_PEERS_PER_ROOM", "0")
        .expect_refusal_naming("MAX_PEERS_PER_ROOM");
}

/// Duration settings may be fractional (e.g. `0.5` seconds); counts, sizes and ports may not.
const DURATION_SETTINGS: [&str; 8] = [
    "HEARTBEAT_INTERVAL_SECONDS",
    "PEER_TIMEOUT_SECONDS",
    "RECONNECT_GRACE_SECONDS",
    "AUTH_TIMEOUT_SECONDS",
    "ROOM_SWEEP_INTERVAL_SECONDS",
    "ROOM_IDLE_TIMEOUT_SECONDS",
    "ROOM_EMPTY_GRACE_SECONDS",
    "MEMORY_CHECK_INTERVAL_SECONDS",
];
const INTEGER_SETTINGS: [&str; 13] = [
    "PORT",
    "SIGNALING_PORT",
    "TOKEN_TTL_SECONDS",
    "MAX_PEERS_PER_ROOM",
    "MAX_ROOMS",
    "MEMORY_WARNING_MB",
    "MEMORY_CRITICAL_MB",
    "MAX_MESSAGE_BYTES",
    "RATE_LIMIT_PER_SECOND",
    "RATE_LIMIT_BURST",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "OUTBOUND_QUEUE_SIZE",
];

#[test]
fn every_numeric_setting_rejects_non_numbers() {
    let mut cases: Vec<(&'static str, &'static str)> = Vec::new();
    for var in DURATION_SETTINGS.into_iter().chain(INTEGER_SETTINGS) {
        cases.push((var, "abc"));
        cases.push((var, "-5"));
    }
    for var in INTEGER_SETTINGS {
        cases.push((var, "1.5"));
    }
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(var, bad)| {
            std::thread::spawn(move || {
                // A server that accepts the value is killed after the startup bound.
                let result = Launch::new().env(var, bad).expect_exit();
                (var, bad, result)
            })
        })
        .collect();
    let mut problems = Vec::new();
    for h in handles {
        let (var, bad, result) = h.join().unwrap();
        match result {
            Err(_) => problems.push(format!("{var}={bad}: accepted (server started)")),
            Ok(failure) => {
                let lines = failure.stderr_lines();
                if failure.status.success() || lines.len() != 1 || !lines[0].contains(var) {
                    problems.push(format!(
                        "{var}={bad}: exit {}, stderr {lines:?}",
                        failure.status
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn turn_urls_without_turn_secret_stops_startup() {
    Launch::new()
        .env("TURN_URLS", "turn:turn.example.com:3478")
        .expect_refusal_naming("TURN_SECRET");
}

#[test]
fn unknown_log_format_stops_startup() {
    Launch::new()
        .env("LOG_FORMAT", "xml")
        .expect_refusal_naming("LOG_FORMAT");
}

#[test]
fn memory_critical_below_warning_stops_startup() {
    Launch::new()
        .env("MEMORY_WARNING_MB", "300")
        .env("MEMORY_CRITICAL_MB", "200")
        .expect_refusal_naming("MEMORY_CRITICAL_MB");
}

#[test]
fn dotenv_file_in_working_directory_is_loaded() {
    Launch::new()
        .dotenv("# test\nMAX_PEERS_PER_ROOM=0\n")
        .expect_refusal_naming("MAX_PEERS_PER_ROOM");
}

#[tokio::test]
async fn environment_overrides_dotenv_file() {
    let server = Server::launch(
        Launch::new()
            .dotenv("TOKEN_TTL_SECONDS=0\nHEARTBEAT_INTERVAL_SECONDS=0\n")
            .env("TOKEN_TTL_SECONDS", "120")
            .env("HEARTBEAT_INTERVAL_SECONDS", "7"),
    );
    let info = server.get("/info").await;
    assert_eq!(info.body["heartbeatIntervalMs"], 7_000, "{}", info.body);
    let token = server.token("u1", "r1").await;
    let claims = verify_token(&token);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let server = Server::start(&[]);
    let _ = server.get("/info").await;
    let output = server.stop();
    assert!(!output.is_empty());
    for line in output.iter().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("non-JSON log line with LOG_FORMAT=json ({e}): {line}"));
        assert!(v["level"].is_string(), "log line without level: {line}");
    }
}

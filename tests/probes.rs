//! `/livez` and `/readyz` (`docs/operations.md#probes`): alive while serving HTTP, ready
//! only when new peers should come here, with the reasons why not.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::json;

const ADMIN: &str = "probe-admin-key";

#[tokio::test]
async fn fresh_server_is_alive_and_ready() {
    let server = Server::start(&[]);
    let live = server.get("/livez").await;
    assert_eq!((live.status, &live.body), (200, &json!({"status": "ok"})));
    let ready = server.get("/readyz").await;
    assert_eq!(
        (ready.status, &ready.body),
        (200, &json!({"status": "ready"}))
    );
}

#[tokio::test]
async fn draining_server_is_alive_but_not_ready() {
    let mut server = Server::start(&[]);
    // A peer that never reads keeps the drain going long enough to be observed.
    let stuck = server.join("stuck", "r1").await;
    server.terminate();
    let ready = server
        .get_until_status("/readyz", 503, Duration::from_secs(5))
        .await;
    assert_eq!(
        ready.body,
        json!({"status": "not-ready", "reasons": ["draining"]})
    );
    let live = server.get("/livez").await;
    assert_eq!((live.status, &live.body), (200, &json!({"status": "ok"})));
    drop(stuck);
    server.wait_exit(Duration::from_secs(10)).expect("exit");
}

#[tokio::test]
async fn critical_memory_makes_the_server_not_ready() {
    let server = Server::start(&[("ADMIN_API_KEY", ADMIN)]);
    let r = server
        .request(
            reqwest::Method::PUT,
            "/api/admin/memory-thresholds",
            Some(ADMIN),
            Some(&json!({"warningMb": 1, "criticalMb": 2})),
        )
        .await;
    assert_eq!((r.status, &r.body["pressure"]), (200, &json!("critical")));
    let ready = server.get("/readyz").await;
    assert_eq!(
        (ready.status, &ready.body),
        (
            503,
            &json!({"status": "not-ready", "reasons": ["memory-critical"]})
        )
    );
    assert_eq!(server.get("/livez").await.status, 200);
}

#[tokio::test]
async fn unreachable_redis_makes_the_server_not_ready() {
    let closed = switchboard_testkit::free_port().unwrap();
    let server = Server::start(&[("REDIS_URL", &format!("redis://127.0.0.1:{closed}"))]);
    let ready = server
        .get_until_status("/readyz", 503, Duration::from_secs(8))
        .await;
    assert_eq!(
        ready.body,
        json!({"status": "not-ready", "reasons": ["redis-down"]})
    );
    assert_eq!(server.get("/livez").await.status, 200);
}

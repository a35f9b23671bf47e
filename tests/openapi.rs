//! `docs/openapi.json` against the code: the routes declared in `src/api/`, `src/ops.rs`,
//! `src/routes.rs` and `src/web.rs` are exactly the documented operations, the running
//! server answers every documented operation with a documented status, refuses every other
//! method with 405 and an `Allow` header, and serves the document itself at
//! `GET /openapi.json`. schemathesis (in `scripts/test.sh`) then checks the shapes of the
//! answers against the same document.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

const DOC: &str = include_str!("../docs/openapi.json");
const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The HTTP modules of `src/`: they declare the routes and spell out the error codes.
const HTTP_SOURCES: [&str; 9] = [
    include_str!("../src/http.rs"),
    include_str!("../src/access.rs"),
    include_str!("../src/passwords.rs"),
    include_str!("../src/api.rs"),
    include_str!("../src/api/tokens.rs"),
    include_str!("../src/api/rooms.rs"),
    include_str!("../src/ops.rs"),
    include_str!("../src/probes.rs"),
    include_str!("../src/routes.rs"),
];

fn doc() -> Value {
    serde_json::from_str(DOC).expect("docs/openapi.json is JSON")
}

/// `(method, path)` of every documented operation, path parameters written `{}`.
fn documented() -> BTreeSet<(String, String)> {
    let doc = doc();
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.as_str()) {
                ops.insert((method.clone(), normalize(path)));
            }
        }
    }
    ops
}

fn normalize(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// `(method, path)` of every `warp::path!(..)` route in the source, with the method filter
/// that follows it (`warp::get()` ...).
fn routes_in_source(source: &str) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("warp::path!(") {
        rest = &rest[at + "warp::path!(".len()..];
        let end = rest.find(')').expect("path! closes");
        let path: String = rest[..end]
            .split('/')
            .map(|seg| {
                let seg = seg.trim();
                match seg.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(literal) => format!("/{literal}"),
                    None => "/{}".to_string(),
                }
            })
            .collect();
        // The method filter belongs to this route if it comes before the next route.
        let next_route = rest.find("warp::path!(").unwrap_or(rest.len());
        let method = METHODS
            .iter()
            .filter_map(|m| {
                rest[..next_route]
                    .find(&format!("warp::{m}()"))
                    .map(|i| (i, m))
            })
            .min()
            .map(|(_, m)| m.to_string())
            .unwrap_or_else(|| panic!("route {path} has no method filter"));
        routes.push((method, path));
    }
    routes
}

#[test]
fn every_route_in_the_code_is_documented_and_every_documented_route_exists() {
    let mut in_code = BTreeSet::new();
    for source in HTTP_SOURCES {
        in_code.extend(routes_in_source(source));
    }
    // src/web.rs serves its assets by name: `path: "app.js"` is `GET /app.js`.
    let web = include_str!("../src/web.rs");
    for (i, _) in web.match_indices("path: \"") {
        let name = &web[i + 7..];
        let name = &name[..name.find('"').unwrap()];
        in_code.insert(("get".to_string(), format!("/{name}")));
    }
    assert!(
        in_code.len() >= 17,
        "route scan found too little: {in_code:?}"
    );
    let documented = documented();
    let undocumented: Vec<_> = in_code.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&in_code).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/openapi.json: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "documented operations with no route: {missing:?}"
    );
}

#[test]
fn every_error_code_the_api_can_send_is_documented() {
    let doc = doc();
    let documented: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for code in [
        "INVALID_INPUT",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "ROOM_FULL",
        "ROOM_NOT_FOUND",
        "NOT_FOUND",
        "ROOM_EXISTS",
        "ROOM_CLOSED",
        "PAYLOAD_TOO_LARGE",
        "METHOD_NOT_ALLOWED",
        "TOO_MANY_ROOMS",
        "INVALID_PASSWORD",
    ] {
        assert!(documented.contains(code), "{code} is not documented");
    }
    // Codes spelled out in the HTTP layer itself.
    for source in HTTP_SOURCES {
        for (i, _) in source.match_indices("StatusCode::") {
            // `ApiError::new(StatusCode::X, "CODE", ..)`: the first string literal close by.
            let window = source.get(i..(i + 120).min(source.len())).unwrap_or("");
            let Some(q) = window.find('"') else {
                continue;
            };
            let after = &window[q + 1..];
            let Some(end) = after.find('"') else {
                continue;
            };
            let code = &after[..end];
            if !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                assert!(documented.contains(code), "{code} is not documented");
            }
        }
    }
}

/// A request body that reaches the handler's logic for each operation.
fn sample_body(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("post", "/api/auth/token") => Some(json!({"roomId": "r1", "userId": "u1"})),
        ("post", "/api/auth/validate") => Some(json!({"token": "x"})),
        ("post", "/api/rooms") => Some(json!({"roomId": "r2"})),
        ("put", "/api/admin/memory-thresholds") => {
            Some(json!({"warningMb": 100000, "criticalMb": 200000}))
        }
        ("post", _) | ("put", _) => Some(json!({})),
        _ => None,
    }
}

#[tokio::test]
async fn the_server_answers_exactly_the_documented_operations() {
    let server = Server::start(&[
        ("ADMIN_API_KEY", "admin-key-for-openapi-test"),
        ("ISSUER_API_KEY", "issuer-key-for-openapi-test"),
    ]);
    let doc = doc();
    let served = server.get("/openapi.json").await;
    assert_eq!(served.status, 200);
    assert_eq!(
        served.body, doc,
        "GET /openapi.json serves docs/openapi.json"
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));

    // r1 exists so that the room routes reach their handlers.
    let created = server
        .post_auth(
            "/api/rooms",
            "issuer-key-for-openapi-test",
            &json!({"roomId": "r1"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{roomId}", "r1");
        let allowed: Vec<&str> = METHODS
            .iter()
            .copied()
            .filter(|m| item.get(*m).is_some())
            .collect();
        for method in METHODS {
            let key = if path.starts_with("/api/admin") || path == "/api/rooms" && method == "get" {
                "admin-key-for-openapi-test"
            } else if path == "/api/rooms" || path == "/api/auth/token" {
                "issuer-key-for-openapi-test"
            } else {
                "admin-key-for-openapi-test"
            };
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = sample_body(method, path);
            let r = server.request(m, &concrete, Some(key), body.as_ref()).await;
            if r.status >= 400 {
                let code = r.body["error"]["code"].as_str();
                assert!(
                    code.is_some() && r.body["error"]["message"].as_str().is_some(),
                    "{method} {concrete}: error without the documented shape: {}",
                    r.body
                );
            }
            match item.get(method) {
                Some(op) => {
                    let documented = op["responses"].get(r.status.to_string()).is_some();
                    assert!(
                        documented,
                        "{method} {concrete} answered {} {}, which is not documented",
                        r.status, r.body
                    );
                    assert_ne!(r.body["error"]["code"], "NOT_FOUND", "{method} {concrete}");
                    assert_ne!(r.status, 405, "{method} {concrete}");
                }
                None => {
                    r.assert_error(405, "METHOD_NOT_ALLOWED");
                    let allow = r
                        .headers
                        .get("allow")
                        .unwrap_or_else(|| panic!("{method} {concrete}: 405 without Allow"))
                        .to_str()
                        .unwrap()
                        .to_lowercase();
                    let listed: Vec<&str> = allow.split(", ").collect();
                    let mut expected = allowed.clone();
                    expected.sort();
                    let mut listed_sorted = listed.clone();
                    listed_sorted.sort();
                    assert_eq!(listed_sorted, expected, "Allow of {concrete}");
                }
            }
        }
    }

    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        for path in ["/api/nothing-here", "/nothing-here"] {
            let r = server.request(method.clone(), path, None, None).await;
            r.assert_error(404, "NOT_FOUND");
        }
    }
}

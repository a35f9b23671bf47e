//! Operational endpoints (`docs/operations.md`): `/health`, `/stats`, `/metrics` and the
//! admin cleanup and memory-threshold calls.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use switchboard_monitoring::metrics::{self, HistogramSnapshot, Snapshot};
use switchboard_monitoring::{CleanupLevel, Level, Thresholds};
use switchboard_signaling::broker::BrokerStatus;

use crate::http::{authorization, finish, json_response, limited_body, parse_body, ApiError};
use crate::state::App;

fn pressure_str(level: Level) -> &'static str {
    match level {
        Level::Normal => "normal",
        Level::Warning => "warning",
        Level::Critical => "critical",
    }
}

fn memory_json(app: &App) -> serde_json::Value {
    let sample = app.monitor.last_sample();
    let round = |mb: f64| (mb * 10.0).round() / 10.0;
    json!({
        "rssMb": round(sample.rss_mb()),
        "heapUsedMb": round(sample.heap_mb()),
        "systemTotalMb": round(sample.system_total_mb()),
        "pressure": pressure_str(app.monitor.level()),
    })
}

async fn health(app: Arc<App>) -> Response {
    let level = app.monitor.level();
    let (status, code) = if app.draining.load(Relaxed) {
        ("draining", StatusCode::SERVICE_UNAVAILABLE)
    } else if level == Level::Critical {
        ("critical", StatusCode::SERVICE_UNAVAILABLE)
    } else if matches!(
        app.registry.broker().status(),
        BrokerStatus::Redis {
            reachable: false,
            ..
        }
    ) {
        ("degraded", StatusCode::SERVICE_UNAVAILABLE)
    } else if level == Level::Warning {
        ("warning", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    json_response(
        code,
        &json!({
            "status": status,
            "timestamp": switchboard_signaling::now_ms(),
            "uptimeSeconds": app.started.elapsed().as_secs(),
            "memory": memory_json(&app),
            "cluster": cluster_json(&app),
        }),
    )
}

fn cluster_json(app: &App) -> serde_json::Value {
    match app.registry.broker().status() {
        BrokerStatus::Standalone => json!({"mode": "standalone"}),
        BrokerStatus::Redis {
            reachable,
            instance,
        } => json!({
            "mode": "redis",
            "redis": if reachable { "ok" } else { "down" },
            "instance": &*instance,
        }),
    }
}

#[derive(Deserialize)]
struct Page {
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn stats(page: Page, app: Arc<App>) -> Response {
    let limit = page.limit.unwrap_or(100).min(100);
    let (rooms, total) = app.registry.room_summaries(page.offset.unwrap_or(0), limit);
    let s = &app.stats;
    let by_type: serde_json::Map<String, serde_json::Value> = s
        .relayed()
        .map(|(t, n, _)| (t.to_owned(), json!(n)))
        .collect();
    let relayed: u64 = s.relayed().map(|(_, n, _)| n).sum();
    let bytes: u64 = s.relayed().map(|(_, _, b)| b).sum();
    let rejected: u64 = s.rejected().map(|(_, n)| n).sum();
    let mut memory = memory_json(&app);
    memory["lastCleanup"] = json!(app.monitor.last_report());
    let mut cluster = cluster_json(&app);
    if app.registry.broker().shared_rooms().is_some() {
        // Cluster-wide; everything else in /stats is this instance's own.
        cluster["activeRooms"] = json!(app.rooms.cluster_room_count().await);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "server": {
                "uptimeSeconds": app.started.elapsed().as_secs(),
                "activeRooms": total,
                "totalConnections": s.connections.load(Relaxed),
                "authenticatedPeers": s.authenticated.load(Relaxed),
                "version": env!("CARGO_PKG_VERSION"),
            },
            "memory": memory,
            "signaling": {
                "messagesRelayed": relayed,
                "messagesRejected": rejected,
                "bytesRelayed": bytes,
                "byType": by_type,
            },
            "rooms": rooms,
            "roomsTotal": total,
            "cluster": cluster,
        }),
    )
}

fn snapshot(app: &App) -> Snapshot {
    let s = &app.stats;
    let counts = app.registry.counts();
    let sample = app.monitor.last_sample();
    let (buckets, sum, count) = s.relay_latency.snapshot();
    Snapshot {
        connections: s.connections.load(Relaxed),
        authenticated: s.authenticated.load(Relaxed),
        peers: counts.peers as u64,
        rooms: counts.rooms as u64,
        relayed: s.relayed().collect(),
        rejected: s.rejected().collect(),
        heartbeat_timeouts: s.heartbeat_timeouts.load(Relaxed),
        slow_consumers: s.slow_consumers.load(Relaxed),
        sweeps: s.sweeps.load(Relaxed),
        cleanups: CleanupLevel::ALL
            .iter()
            .map(|l| (l.as_str(), app.monitor.cleanups(*l)))
            .collect(),
        tokens_issued: app.tokens_issued.load(Relaxed),
        memory_rss_bytes: sample.rss_bytes,
        memory_heap_bytes: switchboard_monitoring::memory::allocated_bytes(),
        memory_pressure_level: app.monitor.level() as u64,
        relay_latency: HistogramSnapshot {
            buckets,
            sum,
            count,
        },
    }
}

async fn metrics_text(app: Arc<App>) -> Response {
    let mut resp = Response::new(metrics::render(snapshot(&app)).into());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    resp
}

#[derive(Deserialize)]
struct CleanupQuery {
    level: Option<String>,
}

async fn cleanup(query: CleanupQuery, app: Arc<App>, auth: Option<String>) -> Response {
    finish((|| {
        app.require_admin(&auth)?;
        let level = match query.level.as_deref() {
            None | Some("normal") => CleanupLevel::Normal,
            Some("aggressive") => CleanupLevel::Aggressive,
            Some(_) => return Err(ApiError::invalid("level must be normal or aggressive")),
        };
        Ok(json_response(StatusCode::OK, &app.monitor.cleanup(level)))
    })())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThresholdsBody {
    #[serde(
        default,
        deserialize_with = "switchboard_signaling::protocol::whole_number"
    )]
    warning_mb: Option<u64>,
    #[serde(
        default,
        deserialize_with = "switchboard_signaling::protocol::whole_number"
    )]
    critical_mb: Option<u64>,
}

async fn set_thresholds(app: Arc<App>, auth: Option<String>, body: bytes::Bytes) -> Response {
    finish((|| {
        app.require_admin(&auth)?;
        let t: ThresholdsBody = parse_body(&body)?;
        let (Some(warning_mb), Some(critical_mb)) = (t.warning_mb, t.critical_mb) else {
            return Err(ApiError::invalid("warningMb and criticalMb are required"));
        };
        if warning_mb == 0 || critical_mb < warning_mb {
            return Err(ApiError::invalid("need 0 < warningMb <= criticalMb"));
        }
        app.monitor.set_thresholds(Thresholds {
            warning_mb,
            critical_mb,
        });
        let level = app.monitor.check();
        Ok(json_response(
            StatusCode::OK,
            &json!({"warningMb": warning_mb, "criticalMb": critical_mb, "pressure": pressure_str(level)}),
        ))
    })())
}

/// The operational routes.
pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_app = warp::any().map(move || app.clone());
    let health = warp::path!("health")
        .and(warp::get())
        .and(with_app.clone())
        .then(health);
    let stats = warp::path!("stats")
        .and(warp::get())
        .and(warp::query::<Page>())
        .and(with_app.clone())
        .then(stats);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_app.clone())
        .then(metrics_text);
    let cleanup = warp::path!("api" / "admin" / "cleanup")
        .and(warp::post())
        .and(warp::query::<CleanupQuery>())
        .and(with_app.clone())
        .and(authorization())
        .then(cleanup);
    let thresholds = warp::path!("api" / "admin" / "memory-thresholds")
        .and(warp::put())
        .and(with_app)
        .and(authorization())
        .and(limited_body())
        .then(set_thresholds);
    health
        .or(stats)
        .unify()
        .or(metrics)
        .unify()
        .or(cleanup)
        .unify()
        .or(thresholds)
        .unify()
}

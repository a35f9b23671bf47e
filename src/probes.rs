//! Kubernetes-style probes (`docs/operations.md#probes`): `/livez` says the process serves
//! HTTP, `/readyz` whether it should be sent new peers, and if not, why.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use switchboard_monitoring::Level;
use switchboard_signaling::broker::BrokerStatus;

use crate::http::json_response;
use crate::state::App;

/// Why this instance should not get new peers now; empty when it should.
fn not_ready_reasons(app: &App) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    if app.draining.load(Relaxed) {
        reasons.push("draining");
    }
    if matches!(
        app.registry.broker().status(),
        BrokerStatus::Redis {
            reachable: false,
            ..
        }
    ) {
        reasons.push("redis-down");
    }
    if app.monitor.level() == Level::Critical {
        reasons.push("memory-critical");
    }
    if app.jwks.as_ref().is_some_and(|jwks| !jwks.loaded()) {
        reasons.push("starting");
    }
    reasons
}

async fn readyz(app: Arc<App>) -> Response {
    let reasons = not_ready_reasons(&app);
    if reasons.is_empty() {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not-ready", "reasons": reasons}),
        )
    }
}

/// `GET /livez` and `GET /readyz`.
pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    // Answering at all is the liveness signal, draining included.
    let livez = warp::path!("livez")
        .and(warp::get())
        .map(|| json_response(StatusCode::OK, &json!({"status": "ok"})));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(warp::any().map(move || app.clone()))
        .then(readyz);
    livez.or(readyz).unify()
}

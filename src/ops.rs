//! Operational endpoints: `/health`.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::app::App;

async fn health(app: Arc<App>) -> Response {
    let draining = app.draining.load(Relaxed);
    let (status, code) = if draining {
        ("draining", StatusCode::SERVICE_UNAVAILABLE)
    } else {
        ("ok", StatusCode::OK)
    };
    let body = json!({
        "status": status,
        "timestamp": switchboard_signaling::now_ms(),
        "uptimeSeconds": app.started.elapsed().as_secs(),
        "cluster": {"mode": "standalone"},
    });
    warp::reply::with_status(warp::reply::json(&body), code).into_response()
}

/// The operational routes.
pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_app = warp::any().map(move || app.clone());
    let _ = std::marker::PhantomData::<Infallible>;
    warp::path!("health")
        .and(warp::get())
        .and(with_app)
        .then(health)
}

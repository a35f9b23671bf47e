//! The public HTTP API: tokens (`api/tokens.rs`), rooms (`api/rooms.rs`) and `/info`.
//! Errors leave as `{"error": {"code", "message"}}` (`crate::http`).

mod rooms;
mod tokens;

use std::sync::Arc;

use serde_json::json;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::http::{finish, ok};
use crate::state::App;

async fn info(app: Arc<App>) -> Response {
    finish(ok(&json!({
        "name": "switchboard",
        "version": env!("CARGO_PKG_VERSION"),
        "signalingPort": app.signaling_port,
        "heartbeatIntervalMs": app.config.signaling.heartbeat_interval.as_millis() as u64,
    })))
}

/// The token, room and `/info` routes, in that order.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let info = {
        let app = app.clone();
        warp::path!("info")
            .and(warp::get())
            .map(move || app.clone())
            .then(info)
    };
    tokens::routes(app.clone())
        .or(rooms::routes(app))
        .unify()
        .or(info)
        .unify()
}

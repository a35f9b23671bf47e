//! The room routes (`docs/protocol.md#7-rooms-over-http`): create, read, list and delete.
//! Room ids in paths are decoded and checked before anything else (`400 INVALID_INPUT`).

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use switchboard_signaling::broker::NewRoom;
use switchboard_signaling::options::RoomOptions;
use switchboard_signaling::protocol::{CloseReason, CreateOptions, RoomMeta};

use crate::http::{
    authorization, check_id, check_name, finish, json_response, limited_body, new_id, ok,
    parse_body, path_id, ApiError, ApiResult,
};
use crate::state::App;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRoomRequest {
    room_id: Option<String>,
    host_id: Option<String>,
    host_name: Option<String>,
    password: Option<String>,
    #[serde(flatten)]
    options: CreateOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedRoom {
    #[serde(flatten)]
    room: RoomMeta,
    host_token: String,
    host_token_expires_at: u64,
}

async fn create_room(app: Arc<App>, auth: Option<String>, body: Bytes) -> Response {
    finish(create_room_inner(&app, &auth, &body).await)
}

async fn create_room_inner(app: &App, auth: &Option<String>, body: &Bytes) -> ApiResult {
    app.require_issuer(auth)?;
    let req: CreateRoomRequest = parse_body(body)?;
    let room_id = req.room_id.unwrap_or_else(new_id);
    check_id("roomId", &room_id)?;
    let host_id = req.host_id.unwrap_or_else(new_id);
    check_id("hostId", &host_id)?;
    let host_name = check_name("hostName", req.host_name.as_deref())?;
    let options = RoomOptions::from_request(
        &req.options,
        &room_id,
        app.config.signaling.max_peers_per_room,
    )
    .map_err(|e| ApiError::invalid(e.0))?;
    let password_hash = match req.password {
        Some(p) if !p.is_empty() => Some(app.hash(p).await?),
        Some(_) => return Err(ApiError::invalid("password must not be empty")),
        None => None,
    };
    let has_password = password_hash.is_some();
    let meta = app
        .rooms
        .create_room(NewRoom {
            room_id: &room_id,
            options: &options,
            host_id: &host_id,
            host_name: host_name.as_deref(),
            password_hash: password_hash.as_deref(),
        })
        .await?;
    let out = app.issue(&host_id, &room_id, host_name.as_deref(), has_password);
    Ok(json_response(
        StatusCode::CREATED,
        &CreatedRoom {
            room: meta,
            host_token: out.token,
            host_token_expires_at: out.expires_at,
        },
    ))
}

/// The room named by a path, with its peers, if the caller may read it.
async fn readable_room(id: &str, app: &App, auth: &Option<String>) -> Result<RoomMeta, ApiError> {
    let id = path_id("roomId", id)?;
    let room = app.rooms.room(&id, true).await?;
    app.may_read(&room, auth)?;
    Ok(room)
}

async fn get_room(id: String, app: Arc<App>, auth: Option<String>) -> Response {
    finish(
        readable_room(&id, &app, &auth)
            .await
            .and_then(|room| ok(&room)),
    )
}

async fn get_peers(id: String, app: Arc<App>, auth: Option<String>) -> Response {
    finish(
        readable_room(&id, &app, &auth)
            .await
            .and_then(|room| ok(&room.peers.unwrap_or_default())),
    )
}

async fn delete_room(id: String, app: Arc<App>, auth: Option<String>) -> Response {
    finish(
        async {
            let id = path_id("roomId", &id)?;
            let admin = app.is_admin(&auth);
            let claims = if admin {
                None
            } else {
                Some(app.room_token_claims(&auth).ok_or_else(|| {
                    ApiError::unauthorized("the host's room token or the admin key is required")
                })?)
            };
            let room = app.rooms.room(&id, false).await?;
            if let Some(c) = claims {
                if c.room != *room.room_id || room.host_id.as_deref() != Some(c.sub.as_str()) {
                    return Err(ApiError::forbidden("only the room's host may delete it"));
                }
            }
            app.rooms.close_room(&id, CloseReason::Deleted).await?;
            ok(&json!({"success": true}))
        }
        .await,
    )
}

async fn list_rooms(app: Arc<App>, auth: Option<String>) -> Response {
    finish(
        async {
            app.require_admin(&auth)?;
            let rooms = app.rooms.list_rooms().await?;
            ok(&json!({"total": rooms.len(), "rooms": rooms}))
        }
        .await,
    )
}

/// The room routes.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let with_app = warp::any().map(move || app.clone());
    let create = warp::path!("api" / "rooms")
        .and(warp::post())
        .and(with_app.clone())
        .and(authorization())
        .and(limited_body())
        .then(create_room);
    let list = warp::path!("api" / "rooms")
        .and(warp::get())
        .and(with_app.clone())
        .and(authorization())
        .then(list_rooms);
    let room = warp::path!("api" / "rooms" / String)
        .and(warp::get())
        .and(with_app.clone())
        .and(authorization())
        .then(get_room);
    let peers = warp::path!("api" / "rooms" / String / "peers")
        .and(warp::get())
        .and(with_app.clone())
        .and(authorization())
        .then(get_peers);
    let delete = warp::path!("api" / "rooms" / String)
        .and(warp::delete())
        .and(with_app)
        .and(authorization())
        .then(delete_room);
    create
        .or(list)
        .unify()
        .or(room)
        .unify()
        .or(peers)
        .unify()
        .or(delete)
        .unify()
}

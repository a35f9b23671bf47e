//! The HTTP API (SPEC section 3): token issuing and validation, room management and the
//! informational endpoints. Every error leaves here as `{"error": {"code", "message"}}`.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use switchboard_auth::{hash_password, secret_eq, verify_password, Claims, IceServer};
use switchboard_signaling::broker::NewRoom;
use switchboard_signaling::ids::{display_name, is_valid_id};
use switchboard_signaling::options::RoomOptions;
use switchboard_signaling::protocol::CloseReason;
use switchboard_signaling::protocol::{CreateOptions, RoomMeta};
use switchboard_signaling::ErrorCode;

use crate::app::App;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// The OpenAPI 3.1 document of this API, served at `GET /openapi.json`. `tests/openapi.rs`
/// and schemathesis (`scripts/test.sh`) keep it and the routes below in step.
pub const OPENAPI_JSON: &str = include_str!("../docs/openapi.json");

/// An HTTP error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", message)
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    fn into_response(self) -> Response {
        json_response(
            self.status,
            &json!({"error": {"code": self.code, "message": self.message}}),
        )
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        let status = match code {
            ErrorCode::RoomFull | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RoomNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RoomExists => StatusCode::CONFLICT,
            ErrorCode::RoomClosed => StatusCode::GONE,
            ErrorCode::TooManyRooms => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InvalidPassword => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, code.as_str(), code.to_string())
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(bytes.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn ok<T: Serialize>(body: &T) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}

pub fn finish(result: ApiResult) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("request body: {e}")))
}

fn bearer(authorization: &Option<String>) -> Option<&str> {
    authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be 1-128 characters of A-Z a-z 0-9 . _ : @ -"
        )))
    }
}

fn check_name(field: &str, name: Option<&str>) -> Result<Option<String>, ApiError> {
    name.map(|n| {
        display_name(n)
            .ok_or_else(|| ApiError::invalid(format!("{field} must be 1-100 printable characters")))
    })
    .transpose()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl App {
    fn require_issuer(&self, authorization: &Option<String>) -> Result<(), ApiError> {
        let Some(key) = &self.config.issuer_api_key else {
            return Ok(());
        };
        match bearer(authorization) {
            Some(given) if secret_eq(given.as_bytes(), key.expose().as_bytes()) => Ok(()),
            _ => Err(ApiError::unauthorized("a valid issuer API key is required")),
        }
    }

    fn is_admin(&self, authorization: &Option<String>) -> bool {
        match (&self.config.admin_api_key, bearer(authorization)) {
            (Some(key), Some(given)) => secret_eq(given.as_bytes(), key.expose().as_bytes()),
            _ => false,
        }
    }

    /// Admin-only calls: 403 while no admin key is configured, 401 without the right key.
    pub fn require_admin(&self, authorization: &Option<String>) -> Result<(), ApiError> {
        if self.config.admin_api_key.is_none() {
            return Err(ApiError::forbidden(
                "admin calls are disabled (ADMIN_API_KEY is not set)",
            ));
        }
        if self.is_admin(authorization) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("a valid admin API key is required"))
        }
    }

    fn room_token_claims(&self, authorization: &Option<String>) -> Option<Claims> {
        bearer(authorization).and_then(|t| self.keys.verify(t).ok())
    }

    fn signaling_url(&self, host_header: Option<&str>) -> String {
        if let Some(url) = &self.config.public_signaling_url {
            return url.clone();
        }
        let host = host_header
            .map(|h| match h.rsplit_once(':') {
                // Keep IPv6 literals like [::1] intact; drop a trailing :port.
                Some((name, port))
                    if !name.is_empty() && port.chars().all(|c| c.is_ascii_digit()) =>
                {
                    name
                }
                _ => h,
            })
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost");
        let scheme = if self.config.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{host}:{}/ws", self.signaling_port)
    }

    async fn password_matches(&self, password: &str, hash: Arc<str>) -> bool {
        // Argon2 is deliberately slow: run it off the async workers, a few at a time, so
        // password guessing cannot starve everybody else.
        let Ok(_permit) = self.password_slots.acquire().await else {
            return false;
        };
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false)
    }

    async fn hash(&self, password: String) -> Result<Arc<str>, ApiError> {
        let Ok(_permit) = self.password_slots.acquire().await else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "shutting down",
            ));
        };
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .ok()
            .and_then(Result::ok)
            .map(Arc::from)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "password hashing failed",
                )
            })
    }

    fn issue(
        &self,
        user_id: &str,
        room_id: &str,
        name: Option<&str>,
        password_checked: bool,
    ) -> TokenOut {
        let now = switchboard_signaling::now_ms() / 1000;
        let ttl = self.config.token_ttl.as_secs();
        let issued = self
            .keys
            .issue_with(user_id, room_id, name, now, ttl, password_checked);
        self.tokens_issued.fetch_add(1, Relaxed);
        let ice = &self.config.signaling.ice;
        TokenOut {
            expires_at: issued.claims.exp * 1000,
            expires_in: issued.claims.exp - issued.claims.iat,
            ice_servers: (!ice.is_empty()).then(|| ice.servers_for(user_id, issued.claims.exp)),
            token: issued.token,
        }
    }
}

struct TokenOut {
    token: String,
    expires_at: u64,
    expires_in: u64,
    ice_servers: Option<Vec<IceServer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    user_id: Option<String>,
    room_id: Option<String>,
    user_name: Option<String>,
    password: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    token: String,
    expires_at: u64,
    expires_in: u64,
    user_id: String,
    room_id: String,
    signaling_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ice_servers: Option<Vec<IceServer>>,
}

async fn issue_token(
    app: Arc<App>,
    auth: Option<String>,
    host: Option<String>,
    body: Bytes,
) -> Response {
    finish(issue_token_inner(&app, &auth, host.as_deref(), &body).await)
}

async fn issue_token_inner(
    app: &App,
    auth: &Option<String>,
    host: Option<&str>,
    body: &Bytes,
) -> ApiResult {
    app.require_issuer(auth)?;
    let req: TokenRequest = parse_body(body)?;
    let room_id = req
        .room_id
        .ok_or_else(|| ApiError::invalid("roomId is required"))?;
    check_id("roomId", &room_id)?;
    let user_id = req.user_id.unwrap_or_else(new_id);
    check_id("userId", &user_id)?;
    let user_name = check_name("userName", req.user_name.as_deref())?;

    let password_room = app.admission(&room_id, &user_id).await?;
    if let Some(hash) = &password_room {
        let given = req.password.as_deref().unwrap_or("");
        if given.is_empty() || !app.password_matches(given, hash.clone()).await {
            return Err(ErrorCode::InvalidPassword.into());
        }
    }
    let out = app.issue(
        &user_id,
        &room_id,
        user_name.as_deref(),
        password_room.is_some(),
    );
    ok(&TokenResponse {
        token: out.token,
        expires_at: out.expires_at,
        expires_in: out.expires_in,
        signaling_url: app.signaling_url(host),
        ice_servers: out.ice_servers,
        user_id,
        room_id,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidateRequest {
    token: Option<String>,
    user_id: Option<String>,
    room_id: Option<String>,
}

async fn validate_token(app: Arc<App>, body: Bytes) -> Response {
    finish((|| {
        let req: ValidateRequest = parse_body(&body)?;
        let token = req
            .token
            .ok_or_else(|| ApiError::invalid("token is required"))?;
        let claims = match app.keys.verify(&token) {
            Ok(c) => c,
            Err(e) => return ok(&json!({"valid": false, "error": ErrorCode::from(e).as_str()})),
        };
        if req.user_id.is_some_and(|u| u != claims.sub) {
            return ok(&json!({"valid": false, "error": "USER_MISMATCH"}));
        }
        if req.room_id.is_some_and(|r| r != claims.room) {
            return ok(&json!({"valid": false, "error": "ROOM_MISMATCH"}));
        }
        ok(
            &json!({"valid": true, "userId": claims.sub, "roomId": claims.room, "expiresAt": claims.exp * 1000}),
        )
    })())
}

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
        .create_room(
            &room_id,
            options,
            &host_id,
            host_name.clone(),
            password_hash,
        )
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

/// Read access to a room: open rooms to anyone, password rooms to holders of a token for
/// that room or of the admin key.
fn may_read(app: &App, room: &RoomMeta, auth: &Option<String>) -> Result<(), ApiError> {
    if !room.has_password || app.is_admin(auth) {
        return Ok(());
    }
    match app.room_token_claims(auth) {
        Some(c) if c.room == *room.room_id => Ok(()),
        _ => Err(ApiError::unauthorized(
            "this room requires a room token or the admin key",
        )),
    }
}

async fn get_room(id: String, app: Arc<App>, auth: Option<String>) -> Response {
    finish(
        async {
            let room = app.room_meta(&id, true).await?;
            may_read(&app, &room, &auth)?;
            ok(&room)
        }
        .await,
    )
}

async fn get_peers(id: String, app: Arc<App>, auth: Option<String>) -> Response {
    finish(
        async {
            let room = app.room_meta(&id, true).await?;
            may_read(&app, &room, &auth)?;
            ok(&room.peers.unwrap_or_default())
        }
        .await,
    )
}

async fn delete_room(id: String, app: Arc<App>, auth: Option<String>) -> Response {
    finish(
        async {
            let admin = app.is_admin(&auth);
            let claims = if admin {
                None
            } else {
                Some(app.room_token_claims(&auth).ok_or_else(|| {
                    ApiError::unauthorized("the host's room token or the admin key is required")
                })?)
            };
            let room = app.room_meta(&id, false).await?;
            if let Some(c) = claims {
                if c.room != *room.room_id || room.host_id.as_deref() != Some(c.sub.as_str()) {
                    return Err(ApiError::forbidden("only the room's host may delete it"));
                }
            }
            app.close_room(&id, CloseReason::Deleted).await?;
            ok(&json!({"success": true}))
        }
        .await,
    )
}

async fn list_rooms(app: Arc<App>, auth: Option<String>) -> Response {
    finish(
        async {
            app.require_admin(&auth)?;
            let rooms = app.list_rooms().await?;
            ok(&json!({"total": rooms.len(), "rooms": rooms}))
        }
        .await,
    )
}

/// Room operations of the HTTP API, through the directory (the cluster's record while
/// Redis answers, the local registry otherwise).
impl App {
    async fn admission(&self, room_id: &str, user_id: &str) -> Result<Option<Arc<str>>, ErrorCode> {
        self.rooms.admission(room_id, user_id).await
    }

    async fn room_meta(&self, room_id: &str, with_peers: bool) -> Result<RoomMeta, ErrorCode> {
        self.rooms.room(room_id, with_peers).await
    }

    async fn create_room(
        &self,
        room_id: &str,
        options: RoomOptions,
        host_id: &str,
        host_name: Option<String>,
        password_hash: Option<Arc<str>>,
    ) -> Result<RoomMeta, ErrorCode> {
        self.rooms
            .create_room(NewRoom {
                room_id,
                options: &options,
                host_id,
                host_name: host_name.as_deref(),
                password_hash: password_hash.as_deref(),
            })
            .await
    }

    async fn list_rooms(&self) -> Result<Vec<RoomMeta>, ErrorCode> {
        self.rooms.list_rooms().await
    }

    async fn close_room(&self, room_id: &str, reason: CloseReason) -> Result<(), ErrorCode> {
        self.rooms.close_room(room_id, reason).await
    }
}

async fn info(app: Arc<App>) -> Response {
    finish(ok(&json!({
        "name": "switchboard",
        "version": env!("CARGO_PKG_VERSION"),
        "signalingPort": app.signaling_port,
        "heartbeatIntervalMs": app.config.signaling.heartbeat_interval.as_millis() as u64,
    })))
}

#[derive(Debug)]
struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

#[derive(Debug)]
struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

/// The request body, at most [`MAX_BODY_BYTES`] (413 beyond), whether it comes with a
/// `Content-Length`, chunked, or not at all (empty).
pub fn limited_body() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(|len: Option<u64>| async move {
            match len {
                Some(n) if n > MAX_BODY_BYTES => Err(warp::reject::custom(BodyTooLarge)),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(collect_body)
}

async fn collect_body<S, B>(stream: S) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use bytes::BufMut;
    use futures_util::StreamExt;
    let mut stream = Box::pin(stream);
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| warp::reject::custom(BodyUnreadable))?;
        if (body.len() + chunk.remaining()) as u64 > MAX_BODY_BYTES {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.put_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

/// Maps warp's own rejections (unknown route, wrong method, body limits, CORS) to the
/// error shape.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let err = if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
    } else if rejection.find::<BodyTooLarge>().is_some()
        || rejection.find::<warp::reject::PayloadTooLarge>().is_some()
    {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body exceeds 64 KiB",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "INVALID_INPUT",
            "a Content-Length header is required",
        )
    } else if rejection.find::<BodyUnreadable>().is_some() {
        ApiError::invalid("the request body could not be read")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed on this endpoint",
        )
    } else if rejection
        .find::<warp::filters::cors::CorsForbidden>()
        .is_some()
    {
        ApiError::forbidden("origin not allowed")
    } else {
        ApiError::invalid("bad request")
    };
    Ok(err.into_response())
}

/// The methods `docs/openapi.json` lists for `path`, for the `Allow` header that RFC 9110
/// requires on a 405. `None` for a path the document does not know.
fn allowed_methods(path: &str) -> Option<HeaderValue> {
    type Table = Vec<(Vec<String>, HeaderValue)>;
    static TABLE: std::sync::LazyLock<Table> = std::sync::LazyLock::new(|| {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap_or_default();
        let Some(paths) = doc["paths"].as_object() else {
            return Vec::new();
        };
        paths
            .iter()
            .filter_map(|(template, item)| {
                let methods: Vec<String> = item
                    .as_object()?
                    .keys()
                    .filter(|k| *k != "parameters")
                    .map(|k| k.to_uppercase())
                    .collect();
                let segments = template.split('/').map(str::to_owned).collect();
                Some((segments, HeaderValue::from_str(&methods.join(", ")).ok()?))
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    TABLE
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
        })
        .map(|(_, allow)| allow.clone())
}

/// Every HTTP route, with CORS, error mapping and request logging (paths only, never
/// query strings, which could carry tokens).
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let with_app = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    let auth = warp::header::optional::<String>("authorization");
    let host = warp::header::optional::<String>("host");
    let body = limited_body();

    let token = warp::path!("api" / "auth" / "token")
        .and(warp::post())
        .and(with_app.clone())
        .and(auth)
        .and(host)
        .and(body.clone())
        .then(issue_token);
    let validate = warp::path!("api" / "auth" / "validate")
        .and(warp::post())
        .and(with_app.clone())
        .and(body.clone())
        .then(validate_token);
    let create = warp::path!("api" / "rooms")
        .and(warp::post())
        .and(with_app.clone())
        .and(auth)
        .and(body.clone())
        .then(create_room);
    let list = warp::path!("api" / "rooms")
        .and(warp::get())
        .and(with_app.clone())
        .and(auth)
        .then(list_rooms);
    let room = warp::path!("api" / "rooms" / String)
        .and(warp::get())
        .and(with_app.clone())
        .and(auth)
        .then(get_room);
    let peers = warp::path!("api" / "rooms" / String / "peers")
        .and(warp::get())
        .and(with_app.clone())
        .and(auth)
        .then(get_peers);
    let delete = warp::path!("api" / "rooms" / String)
        .and(warp::delete())
        .and(with_app.clone())
        .and(auth)
        .then(delete_room);
    let info = warp::path!("info")
        .and(warp::get())
        .and(with_app.clone())
        .then(info);
    let openapi = warp::path!("openapi.json").and(warp::get()).map(|| {
        let mut resp = Response::new(OPENAPI_JSON.into());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    });

    let cors = match &app.config.cors_origins {
        None => warp::cors().allow_any_origin(),
        Some(origins) => warp::cors().allow_origins(origins.iter().map(String::as_str)),
    }
    .allow_methods(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
    .allow_headers(["content-type", "authorization"])
    .max_age(600);

    let api = token
        .or(validate)
        .unify()
        .or(create)
        .unify()
        .or(list)
        .unify()
        .or(room)
        .unify()
        .or(peers)
        .unify()
        .or(delete)
        .unify()
        .or(info)
        .unify()
        .or(openapi)
        .unify()
        .or(crate::ops::routes(app))
        .unify()
        .or(crate::web::routes())
        .unify()
        // Boxed: the combined filter type is otherwise deep enough to overflow the
        // compiler's trait recursion in release builds.
        .boxed();

    let answered = api
        .with(cors)
        .map(Reply::into_response)
        .recover(recover)
        .unify();
    warp::path::full()
        .and(answered)
        .map(|path: warp::path::FullPath, mut resp: Response| {
            if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
                if let Some(allow) = allowed_methods(path.as_str()) {
                    resp.headers_mut().insert(header::ALLOW, allow);
                }
            }
            resp
        })
        .with(warp::log::custom(|info| {
            tracing::debug!(method = %info.method(), path = info.path(), status = info.status().as_u16(),
                elapsed_ms = info.elapsed().as_secs_f64() * 1000.0, "http request");
        }))
}

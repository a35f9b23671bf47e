//! `POST /api/auth/token` and `POST /api/auth/validate` (`docs/protocol.md#1-get-a-token`),
//! and issuing a token, which room creation does too (its `hostToken`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use warp::reply::Response;
use warp::{Filter, Rejection};

use switchboard_auth::IceServer;
use switchboard_signaling::ErrorCode;

use crate::http::{
    authorization, check_id, check_name, finish, limited_body, new_id, ok, parse_body, ApiError,
    ApiResult,
};
use crate::state::App;

/// A freshly signed room token.
pub struct TokenOut {
    /// The JWT.
    pub token: String,
    /// Expiry, milliseconds since the epoch.
    pub expires_at: u64,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// STUN/TURN servers with credentials that expire with the token, when configured.
    pub ice_servers: Option<Vec<IceServer>>,
}

impl App {
    /// Signs a token admitting `user_id` to `room_id` and counts it.
    pub fn issue(
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
            expires_in: issued.claims.exp - issued.claims.iat.unwrap_or(issued.claims.exp),
            ice_servers: (!ice.is_empty()).then(|| ice.servers_for(user_id, issued.claims.exp)),
            token: issued.token,
        }
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

    let password_room = app.rooms.admission(&room_id, &user_id).await?;
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

/// The token routes.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let with_app = warp::any().map(move || app.clone());
    let token = warp::path!("api" / "auth" / "token")
        .and(warp::post())
        .and(with_app.clone())
        .and(authorization())
        .and(warp::header::optional::<String>("host"))
        .and(limited_body())
        .then(issue_token);
    let validate = warp::path!("api" / "auth" / "validate")
        .and(warp::post())
        .and(with_app)
        .and(limited_body())
        .then(validate_token);
    token.or(validate).unify()
}

//! Who may make which HTTP call: the issuer key for tokens and new rooms, the admin key for
//! admin calls, a room token (or the admin key) for a password room's details. `401` means
//! no valid credential, `403` a valid one that does not allow the call.

use switchboard_auth::{secret_eq, Claims};
use switchboard_signaling::protocol::RoomMeta;

use crate::http::{bearer, ApiError};
use crate::state::App;

impl App {
    /// Token and room creation: open unless `ISSUER_API_KEY` is set, then only with it.
    pub fn require_issuer(&self, authorization: &Option<String>) -> Result<(), ApiError> {
        let Some(key) = &self.config.issuer_api_key else {
            return Ok(());
        };
        match bearer(authorization) {
            Some(given) if secret_eq(given.as_bytes(), key.expose().as_bytes()) => Ok(()),
            _ => Err(ApiError::unauthorized("a valid issuer API key is required")),
        }
    }

    /// Whether the credential is the admin key.
    pub fn is_admin(&self, authorization: &Option<String>) -> bool {
        match (&self.config.admin_api_key, bearer(authorization)) {
            (Some(key), Some(given)) => secret_eq(given.as_bytes(), key.expose().as_bytes()),
            _ => false,
        }
    }

    /// Admin-only calls: 403 while no admin key is configured or with a valid room token,
    /// 401 without a valid credential.
    pub fn require_admin(&self, authorization: &Option<String>) -> Result<(), ApiError> {
        if self.config.admin_api_key.is_none() {
            return Err(ApiError::forbidden(
                "admin calls are disabled (ADMIN_API_KEY is not set)",
            ));
        }
        if self.is_admin(authorization) {
            Ok(())
        } else if self.room_token_claims(authorization).is_some() {
            Err(ApiError::forbidden(
                "a room token does not allow admin calls",
            ))
        } else {
            Err(ApiError::unauthorized("a valid admin API key is required"))
        }
    }

    /// The claims of a valid room token, if that is the credential.
    pub fn room_token_claims(&self, authorization: &Option<String>) -> Option<Claims> {
        bearer(authorization).and_then(|t| self.keys.verify(t).ok())
    }

    /// Read access to a room: open rooms to anyone, password rooms to holders of a token for
    /// that room or of the admin key.
    pub fn may_read(&self, room: &RoomMeta, auth: &Option<String>) -> Result<(), ApiError> {
        if !room.has_password || self.is_admin(auth) {
            return Ok(());
        }
        match self.room_token_claims(auth) {
            Some(c) if c.room == *room.room_id => Ok(()),
            _ => Err(ApiError::unauthorized(
                "this room requires a room token or the admin key",
            )),
        }
    }
}

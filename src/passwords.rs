//! Room passwords: Argon2 hashing and checking, which is deliberately slow, so it runs off
//! the async workers and a few at a time (`App::password_slots`): password guessing cannot
//! starve everybody else.

use std::sync::Arc;

use warp::http::StatusCode;

use switchboard_auth::{hash_password, verify_password};

use crate::http::ApiError;
use crate::state::App;

impl App {
    /// Whether `password` matches the stored `hash`.
    pub async fn password_matches(&self, password: &str, hash: Arc<str>) -> bool {
        let Ok(_permit) = self.password_slots.acquire().await else {
            return false;
        };
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false)
    }

    /// The hash to store for a new room's `password`.
    pub async fn hash(&self, password: String) -> Result<Arc<str>, ApiError> {
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
}

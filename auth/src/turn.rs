//! TURN REST API credentials, as verified by coturn's `use-auth-secret` mode.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// A time-limited TURN username and credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// `<expiry-unix-seconds>:<userId>`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub credential: String,
}

/// Derives the credentials coturn will accept for `user_id` until `expires_at_secs`.
pub fn turn_credentials(secret: &[u8], user_id: &str, expires_at_secs: u64) -> TurnCredentials {
    let username = format!("{expires_at_secs}:{user_id}");
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    let credential = STANDARD.encode(mac.finalize().into_bytes());
    TurnCredentials {
        username,
        credential,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_coturn_credential() {
        // Computed independently: printf '1700000000:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
        let c = turn_credentials(b"s3cret", "alice", 1_700_000_000);
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.credential, "TtElzSjT0GdnTQ9xdcRNxx96yQs=");
    }
}

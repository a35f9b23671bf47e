//! The `iceServers` list handed to browsers: STUN URLs as configured, TURN URLs with
//! per-user REST credentials that expire with the room token.

use serde::Serialize;

use crate::turn::turn_credentials;

/// STUN and TURN settings, as configured by the operator.
#[derive(Clone, Default)]
pub struct IceConfig {
    /// `stun:` URLs, possibly empty.
    pub stun_urls: Vec<String>,
    /// `turn:`/`turns:` URLs, possibly empty.
    pub turn_urls: Vec<String>,
    /// Shared secret with the TURN server (required when `turn_urls` is not empty).
    pub turn_secret: Option<String>,
}

impl std::fmt::Debug for IceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceConfig")
            .field("stun_urls", &self.stun_urls)
            .field("turn_urls", &self.turn_urls)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// Server URLs.
    pub urls: Vec<String>,
    /// TURN username, absent for STUN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential, absent for STUN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceConfig {
    /// True when neither STUN nor TURN is configured (the list is then omitted entirely).
    pub fn is_empty(&self) -> bool {
        self.stun_urls.is_empty() && self.turn_urls.is_empty()
    }

    /// The servers for `user_id`, with TURN credentials valid until `expires_at_secs`.
    pub fn servers_for(&self, user_id: &str, expires_at_secs: u64) -> Vec<IceServer> {
        let mut servers = Vec::with_capacity(2);
        if !self.stun_urls.is_empty() {
            servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (self.turn_urls.is_empty(), &self.turn_secret) {
            let creds = turn_credentials(secret.as_bytes(), user_id, expires_at_secs);
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(creds.username),
                credential: Some(creds.credential),
            });
        }
        servers
    }
}

/// Compares two secrets without leaking, through timing, how long their common prefix is.
pub fn secret_eq(given: &[u8], expected: &[u8]) -> bool {
    use hmac::Mac;
    // Compare fixed-size MACs of both sides: the length difference and content are hidden
    // behind the constant-time `verify_slice`.
    let mac = |data: &[u8]| {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"switchboard-secret-eq")
            .expect("any key length");
        m.update(data);
        m
    };
    let expected_tag = mac(expected).finalize().into_bytes();
    mac(given).verify_slice(&expected_tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_and_turn_entries_are_built() {
        let cfg = IceConfig {
            stun_urls: vec!["stun:s.example:3478".into()],
            turn_urls: vec!["turn:t.example:3478".into()],
            turn_secret: Some("s3cret".into()),
        };
        let servers = cfg.servers_for("alice", 1_700_000_000);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].username.as_deref(), Some("1700000000:alice"));
        assert_eq!(
            servers[1].credential.as_deref(),
            Some("TtElzSjT0GdnTQ9xdcRNxx96yQs=")
        );
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn secret_eq_compares_exactly() {
        assert!(secret_eq(b"key", b"key"));
        assert!(!secret_eq(b"key", b"kez"));
        assert!(!secret_eq(b"ke", b"key"));
        assert!(!secret_eq(b"", b"key"));
    }
}

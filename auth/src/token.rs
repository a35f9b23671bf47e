//! Room tokens: JWTs binding one user to one room for a limited time. Switchboard signs
//! its own with HS256; the app's identity provider may sign them with a public-key
//! algorithm (`docs/auth.md`, see [`crate::external`]).

use jsonwebtoken::{
    decode, decode_header, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header,
    Validation,
};
use serde::{Deserialize, Serialize};

use crate::external::{External, ExternalRules, PublicKey};
use crate::provider_keys::ProviderKeys;

/// The claims a room token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id the token was issued to.
    pub sub: String,
    /// The room the token admits its holder to.
    pub room: String,
    /// Display name suggested at issuance, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Issued-at, seconds since the Unix epoch (always set on Switchboard's own tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Unique token id (always set on Switchboard's own tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Set when the token was issued after checking the room's password (or to the host
    /// of a password room at creation), and on every token of the identity provider.
    /// Password rooms admit only such tokens.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pwd: bool,
}

/// A freshly signed token together with the claims inside it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// What the JWT says.
    pub claims: Claims,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The signature is valid but `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Anything else: malformed, wrong key, wrong algorithm, missing claims.
    #[error("invalid token")]
    Invalid,
}

/// Signing and verification keys: one HMAC secret for Switchboard's own HS256 tokens, and
/// the identity provider's public keys, if any.
///
/// HS256 is verified only with the secret, every other algorithm only with a public key
/// of its type. The leeway (0 unless set) forgives clock skew on `exp` and `nbf` alike.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    external: Option<External>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Builds keys from the raw HMAC secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            external: None,
        }
    }

    /// Allows `secs` of clock skew on `exp` and `nbf`, for every token.
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.validation.leeway = secs;
        if let Some(external) = &mut self.external {
            external.set_leeway(secs);
        }
        self
    }

    /// Also accepts tokens signed by one of `keys` and following `rules`. Without keys,
    /// nothing changes.
    pub fn with_external(self, keys: Vec<PublicKey>, rules: ExternalRules) -> Self {
        if keys.is_empty() {
            return self;
        }
        self.with_provider_keys(ProviderKeys::new(keys), rules)
    }

    /// Also accepts tokens signed by whatever `keys` holds at the time of each verify,
    /// following `rules`: for a key set that is replaced at run time.
    pub fn with_provider_keys(mut self, keys: ProviderKeys, rules: ExternalRules) -> Self {
        self.external = Some(External::new(keys, rules, self.validation.leeway));
        self
    }

    /// Signs a token for `user_id` in `room_id`, valid from `now_secs` for `ttl_secs`.
    pub fn issue(
        &self,
        user_id: &str,
        room_id: &str,
        name: Option<&str>,
        now_secs: u64,
        ttl_secs: u64,
    ) -> IssuedToken {
        self.issue_with(user_id, room_id, name, now_secs, ttl_secs, false)
    }

    /// Like [`issue`](Self::issue); `password_checked` marks a token that may enter a
    /// password room.
    pub fn issue_with(
        &self,
        user_id: &str,
        room_id: &str,
        name: Option<&str>,
        now_secs: u64,
        ttl_secs: u64,
        password_checked: bool,
    ) -> IssuedToken {
        let claims = Claims {
            sub: user_id.to_owned(),
            room: room_id.to_owned(),
            name: name.map(str::to_owned),
            iat: Some(now_secs),
            exp: now_secs.saturating_add(ttl_secs),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            pwd: password_checked,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            // HS256 signing over serializable claims cannot fail; a failure here is a bug.
            .expect("HS256 signing of plain claims");
        IssuedToken { token, claims }
    }

    /// Checks signature, algorithm, expiry and `nbf`, and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return match &self.external {
                Some(external) => external.verify(token, &header),
                None => Err(TokenError::Invalid),
            };
        }
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn issued_token_verifies_with_same_claims() {
        let keys = TokenKeys::new(SECRET);
        let issued = keys.issue("u1", "r1", Some("Ada"), now(), 3600);
        let claims = keys.verify(&issued.token).unwrap();
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.exp - claims.iat.unwrap(), 3600);
        assert_eq!(claims.name.as_deref(), Some("Ada"));
        assert_eq!(
            uuid::Uuid::parse_str(claims.jti.as_deref().unwrap())
                .unwrap()
                .get_version_num(),
            4
        );
    }

    #[test]
    fn expired_token_is_reported_as_expired() {
        let keys = TokenKeys::new(SECRET);
        let issued = keys.issue("u1", "r1", None, now() - 7200, 3600);
        assert_eq!(keys.verify(&issued.token), Err(TokenError::Expired));
    }

    #[test]
    fn token_from_another_key_is_invalid() {
        let other = TokenKeys::new(b"another-secret-another-secret-xx");
        let issued = other.issue("u1", "r1", None, now(), 3600);
        assert_eq!(
            TokenKeys::new(SECRET).verify(&issued.token),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn alg_none_is_rejected() {
        let keys = TokenKeys::new(SECRET);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"u1","room":"r1","iat":{0},"exp":{1},"jti":"x"}}"#,
            now(),
            now() + 60
        ));
        assert_eq!(
            keys.verify(&format!("{header}.{body}.")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn tampered_claims_are_rejected() {
        let keys = TokenKeys::new(SECRET);
        let issued = keys.issue("u1", "r1", None, now(), 3600);
        let mut parts: Vec<&str> = issued.token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"u1","room":"r2","iat":{0},"exp":{1},"jti":"x"}}"#,
            now(),
            now() + 60
        ));
        parts[1] = &forged;
        assert_eq!(keys.verify(&parts.join(".")), Err(TokenError::Invalid));
    }

    #[test]
    fn garbage_is_invalid() {
        let keys = TokenKeys::new(SECRET);
        for bad in ["", ".", "a.b.c", "not a token", "eyJ.eyJ.sig"] {
            assert_eq!(keys.verify(bad), Err(TokenError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        let keys = TokenKeys::new(SECRET);
        assert!(!format!("{keys:?}").contains("0123456789"));
    }
}

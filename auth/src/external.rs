//! Room tokens signed by the app's identity provider with an asymmetric key
//! (`docs/auth.md`): the public keys, the algorithm each one allows, and the claims such a
//! token must carry.
//!
//! The key decides the algorithm, never the token's header: a header only selects among
//! the configured keys of its own type, so `alg: none`, HS256 over a public key's bytes and
//! an RSA signature labelled ES256 all find no key and are refused.

use jsonwebtoken::{decode, errors::ErrorKind, Algorithm, DecodingKey, Header, Validation};
use serde::Deserialize;

use crate::provider_keys::ProviderKeys;
use crate::token::{Claims, TokenError};

/// The kind of a public key, which fixes the one algorithm its tokens may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA, for RS256.
    Rsa,
    /// EC on the P-256 curve, for ES256.
    P256,
    /// Ed25519, for EdDSA.
    Ed25519,
}

impl KeyType {
    /// The only algorithm a key of this type verifies.
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyType::Rsa => Algorithm::RS256,
            KeyType::P256 => Algorithm::ES256,
            KeyType::Ed25519 => Algorithm::EdDSA,
        }
    }
}

/// Why a PEM document cannot be used as a token verification key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is not a PEM public key of type RSA, EC P-256 or Ed25519")]
pub struct KeyError;

/// One public key of the identity provider, with the `kid` tokens may name it by, if any.
#[derive(Clone)]
pub struct PublicKey {
    kid: Option<String>,
    key_type: KeyType,
    decoding: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The kid and type identify the key; its bytes stay out of logs.
        match &self.kid {
            Some(kid) => write!(f, "PublicKey({kid:?}, {:?})", self.key_type),
            None => write!(f, "PublicKey(no kid, {:?})", self.key_type),
        }
    }
}

/// Length of an uncompressed (`04‖x‖y`) and a compressed (`02|03‖x`) P-256 point.
const P256_POINT_LENGTHS: [usize; 2] = [65, 33];

impl PublicKey {
    /// Reads a PEM public key (`BEGIN PUBLIC KEY`) named `kid`.
    pub fn from_pem(kid: impl Into<String>, pem: &[u8]) -> Result<Self, KeyError> {
        let (key_type, decoding) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            (KeyType::Rsa, k)
        } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
            (KeyType::Ed25519, k)
        } else {
            let k = DecodingKey::from_ec_pem(pem).map_err(|_| KeyError)?;
            // `from_ec_pem` takes any curve; only P-256 points have these lengths.
            let point_len = k.try_get_as_bytes().map_err(|_| KeyError)?.len();
            if !P256_POINT_LENGTHS.contains(&point_len) {
                return Err(KeyError);
            }
            (KeyType::P256, k)
        };
        Ok(Self::new(Some(kid.into()), key_type, decoding))
    }

    /// A key of `key_type` whose verification form is `decoding`.
    pub(crate) fn new(kid: Option<String>, key_type: KeyType, decoding: DecodingKey) -> Self {
        Self {
            kid,
            key_type,
            decoding,
        }
    }

    /// The name tokens select this key by; a key without one serves tokens without one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// What kind of key this is.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
}

/// What external tokens must satisfy besides a valid signature.
#[derive(Debug, Clone)]
pub struct ExternalRules {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (or an `aud` array containing it), when set.
    pub audience: Option<String>,
    /// The identifier rule `sub` and `room` must follow. Handed in by the caller, which
    /// owns the rule for every id on the wire, so this crate neither depends on it nor
    /// keeps a second copy of it.
    pub valid_id: fn(&str) -> bool,
}

/// The claims an external token carries: those Switchboard uses, nothing else.
#[derive(Deserialize)]
struct ExternalClaims {
    sub: String,
    room: String,
    #[serde(default)]
    name: Option<String>,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
}

/// The identity provider's keys and the rules its tokens follow.
#[derive(Debug, Clone)]
pub(crate) struct External {
    keys: ProviderKeys,
    rules: ExternalRules,
    leeway_secs: u64,
}

impl External {
    pub(crate) fn new(keys: ProviderKeys, rules: ExternalRules, leeway_secs: u64) -> Self {
        Self {
            keys,
            rules,
            leeway_secs,
        }
    }

    pub(crate) fn set_leeway(&mut self, leeway_secs: u64) {
        self.leeway_secs = leeway_secs;
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway_secs;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        v.validate_aud = self.rules.audience.is_some();
        if let Some(aud) = &self.rules.audience {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        if let Some(iss) = &self.rules.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// Verifies a token whose header names an algorithm other than HS256: against the key
    /// named by its `kid`, or without one against every key of that algorithm's type.
    pub(crate) fn verify(&self, token: &str, header: &Header) -> Result<Claims, TokenError> {
        let validation = self.validation(header.alg);
        let mut outcome = Err(TokenError::Invalid);
        let keys = self.keys.current();
        if let Some(kid) = header.kid.as_deref() {
            if !keys.iter().any(|k| k.kid() == Some(kid)) {
                // The provider may have published it since the set was fetched.
                self.keys.report_unknown_kid();
            }
        }
        let candidates = keys.iter().filter(|k| {
            k.key_type.algorithm() == header.alg
                && header.kid.as_deref().is_none_or(|kid| Some(kid) == k.kid())
        });
        for key in candidates {
            match decode::<ExternalClaims>(token, &key.decoding, &validation) {
                Ok(data) => return self.admit(data.claims),
                // Expiry is checked after the signature: this key did sign the token.
                Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                    outcome = Err(TokenError::Expired)
                }
                Err(_) => {}
            }
        }
        outcome
    }

    /// Signed claims become room claims if their ids are usable. The provider vouches for
    /// its user, so the token admits to password rooms.
    fn admit(&self, c: ExternalClaims) -> Result<Claims, TokenError> {
        if !(self.rules.valid_id)(&c.sub) || !(self.rules.valid_id)(&c.room) {
            return Err(TokenError::Invalid);
        }
        Ok(Claims {
            sub: c.sub,
            room: c.room,
            name: c.name,
            iat: c.iat,
            exp: c.exp,
            jti: c.jti,
            pwd: true,
        })
    }
}

#[cfg(test)]
mod tests;

//! The identity provider's public keys read from a JWK Set (RFC 7517), as served at a
//! `JWKS_URL` (`docs/auth.md`). Fetching is the caller's job; this only parses.
//!
//! The same rule as for PEM keys holds: the key's type decides its one algorithm. A JWK
//! whose `alg` names another algorithm, that is meant for encryption, or whose type or
//! curve Switchboard does not verify with, is left out rather than failing the whole set,
//! so a provider that also publishes other keys keeps working.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::DecodingKey;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::external::{KeyType, PublicKey};

/// Why a document is not a JWK Set at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is not a JWK Set (a JSON object with a \"keys\" array)")]
pub struct JwkSetError;

/// One entry of `keys`: a JWK this crate can read, or anything else, skipped.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Jwk(Box<Jwk>),
    Other(IgnoredAny),
}

#[derive(Deserialize)]
struct Set {
    keys: Vec<Entry>,
}

/// Reads the usable verification keys of a JWK Set document; entries that are not usable
/// are skipped. A key without `kid` gets none and is tried only for tokens without one.
pub fn keys_from_jwk_set(json: &[u8]) -> Result<Vec<PublicKey>, JwkSetError> {
    let set: Set = serde_json::from_slice(json).map_err(|_| JwkSetError)?;
    Ok(set
        .keys
        .iter()
        .filter_map(|entry| match entry {
            Entry::Jwk(jwk) => from_jwk(jwk),
            Entry::Other(_) => None,
        })
        .collect())
}

fn from_jwk(jwk: &Jwk) -> Option<PublicKey> {
    let key_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyType::Rsa,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => KeyType::P256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            KeyType::Ed25519
        }
        _ => return None,
    };
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    if let Some(alg) = jwk.common.key_algorithm {
        let expected = match key_type {
            KeyType::Rsa => KeyAlgorithm::RS256,
            KeyType::P256 => KeyAlgorithm::ES256,
            KeyType::Ed25519 => KeyAlgorithm::EdDSA,
        };
        if alg != expected {
            return None;
        }
    }
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(PublicKey::new(
        jwk.common.key_id.clone(),
        key_type,
        decoding,
    ))
}

#[cfg(test)]
mod tests;

//! JWK Sets: which entries become keys, and that those keys verify their tokens.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::{ExternalRules, TokenError, TokenKeys};

fn rules() -> ExternalRules {
    ExternalRules {
        issuer: None,
        audience: None,
        valid_id: |id| !id.is_empty(),
    }
}

/// A generated key pair: its signing key and its public half as a JWK (without `kid`).
fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    let private = pair.serialize_pem();
    let raw = pair.public_key_raw();
    if alg == &rcgen::PKCS_ED25519 {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(raw)});
        (EncodingKey::from_ed_pem(private.as_bytes()).unwrap(), jwk)
    } else {
        // Uncompressed point: 0x04 ‖ x ‖ y.
        let jwk = json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..])});
        (EncodingKey::from_ec_pem(private.as_bytes()).unwrap(), jwk)
    }
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    encode(
        &header,
        &json!({"sub": "u1", "room": "r1", "exp": exp}),
        key,
    )
    .unwrap()
}

fn keys(set: &Value) -> TokenKeys {
    let public = keys_from_jwk_set(set.to_string().as_bytes()).unwrap();
    TokenKeys::new(b"0123456789abcdef0123456789abcdef").with_external(public, rules())
}

#[test]
fn es256_and_eddsa_keys_of_a_set_verify_their_tokens() {
    let (ec, mut ec_jwk) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (ed, mut ed_jwk) = pair(&rcgen::PKCS_ED25519);
    ec_jwk["kid"] = json!("ec");
    ec_jwk["alg"] = json!("ES256");
    ec_jwk["use"] = json!("sig");
    ed_jwk["kid"] = json!("ed");
    let keys = keys(&json!({"keys": [ec_jwk, ed_jwk]}));
    let claims = keys
        .verify(&token(Algorithm::ES256, Some("ec"), &ec))
        .unwrap();
    assert_eq!((claims.sub.as_str(), claims.pwd), ("u1", true));
    assert!(keys
        .verify(&token(Algorithm::EdDSA, Some("ed"), &ed))
        .is_ok());
    // A kid names one key: the EC token under the Ed25519 key's name finds none.
    assert_eq!(
        keys.verify(&token(Algorithm::ES256, Some("ed"), &ec)),
        Err(TokenError::Invalid)
    );
}

#[test]
fn a_key_without_kid_serves_only_tokens_without_kid() {
    let (ec, jwk) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let set = json!({"keys": [jwk]});
    let parsed = keys_from_jwk_set(set.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].kid(), None);
    let keys = keys(&set);
    assert!(keys.verify(&token(Algorithm::ES256, None, &ec)).is_ok());
    assert_eq!(
        keys.verify(&token(Algorithm::ES256, Some("other"), &ec)),
        Err(TokenError::Invalid)
    );
}

#[test]
fn a_jwk_whose_alg_differs_from_its_type_is_not_used() {
    let (ec, mut jwk) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    jwk["kid"] = json!("k");
    jwk["alg"] = json!("RS256");
    let set = json!({"keys": [jwk]});
    assert!(keys_from_jwk_set(set.to_string().as_bytes())
        .unwrap()
        .is_empty());
    assert_eq!(
        keys(&set).verify(&token(Algorithm::ES256, Some("k"), &ec)),
        Err(TokenError::Invalid)
    );
}

#[test]
fn unusable_entries_are_skipped_and_the_rest_kept() {
    let (_, mut enc) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    enc["use"] = json!("enc");
    let (_, good) = pair(&rcgen::PKCS_ED25519);
    let set = json!({"keys": [
        enc,
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
        {"kty": "made-up"},
        "not even an object",
        good,
    ]});
    let parsed = keys_from_jwk_set(set.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].key_type(), KeyType::Ed25519);
}

#[test]
fn a_document_that_is_not_a_set_is_an_error() {
    for bad in [&b""[..], b"{", b"[]", b"{\"keys\": 1}", b"{\"other\": []}"] {
        assert_eq!(keys_from_jwk_set(bad).err(), Some(JwkSetError), "{bad:?}");
    }
}

#[test]
fn a_replaced_set_takes_effect_and_an_unknown_kid_is_reported() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (ec, mut jwk) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    jwk["kid"] = json!("new");
    let misses = Arc::new(AtomicUsize::new(0));
    let counter = misses.clone();
    let provider = crate::ProviderKeys::new(Vec::new()).on_unknown_kid(Arc::new(move || {
        counter.fetch_add(1, Ordering::Relaxed);
    }));
    let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef")
        .with_provider_keys(provider.clone(), rules());
    let token = token(Algorithm::ES256, Some("new"), &ec);
    assert_eq!(keys.verify(&token), Err(TokenError::Invalid));
    assert_eq!(misses.load(Ordering::Relaxed), 1);
    let set = json!({"keys": [jwk]}).to_string();
    provider.replace(keys_from_jwk_set(set.as_bytes()).unwrap());
    assert!(keys.verify(&token).is_ok());
    assert_eq!(misses.load(Ordering::Relaxed), 1);
    provider.replace(Vec::new());
    assert_eq!(keys.verify(&token), Err(TokenError::Invalid));
}

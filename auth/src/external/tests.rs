//! The verification rules for identity-provider tokens, with keys generated per test.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::TokenKeys;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// The identifier rule of the wire protocol, as the binary hands it in.
fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:@".contains(&b))
}

fn rules() -> ExternalRules {
    ExternalRules {
        issuer: None,
        audience: None,
        valid_id,
    }
}

struct Signer {
    alg: Algorithm,
    encoding: EncodingKey,
    public: PublicKey,
}

fn signer(kid: &str, alg: &'static rcgen::SignatureAlgorithm) -> Signer {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    let private = pair.serialize_pem();
    let (alg, encoding) = if alg == &rcgen::PKCS_ED25519 {
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(private.as_bytes()),
        )
    } else {
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(private.as_bytes()),
        )
    };
    Signer {
        alg,
        encoding: encoding.unwrap(),
        public: PublicKey::from_pem(kid, pair.public_key_pem().as_bytes()).unwrap(),
    }
}

fn ec(kid: &str) -> Signer {
    signer(kid, &rcgen::PKCS_ECDSA_P256_SHA256)
}

fn ed(kid: &str) -> Signer {
    signer(kid, &rcgen::PKCS_ED25519)
}

impl Signer {
    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &self.encoding).unwrap()
    }
}

fn claims(room: &str) -> Value {
    json!({"sub": "u1", "room": room, "exp": now() + 60})
}

fn keys(signers: &[&Signer]) -> TokenKeys {
    let public = signers.iter().map(|s| s.public.clone()).collect();
    TokenKeys::new(SECRET).with_external(public, rules())
}

#[test]
fn pem_keys_are_typed_by_their_content() {
    assert_eq!(ec("a").public.key_type(), KeyType::P256);
    assert_eq!(ed("b").public.key_type(), KeyType::Ed25519);
    assert_eq!(ed("b").public.kid(), Some("b"));
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    assert_eq!(
        PublicKey::from_pem("c", p384.public_key_pem().as_bytes()).unwrap_err(),
        KeyError
    );
    assert!(PublicKey::from_pem("d", b"-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
    assert!(PublicKey::from_pem("e", SECRET).is_err());
}

#[test]
fn signed_tokens_verify_as_password_checked_claims() {
    let (a, b) = (ec("a"), ed("b"));
    let keys = keys(&[&a, &b]);
    for s in [&a, &b] {
        let c = keys.verify(&s.sign(None, &claims("r1"))).unwrap();
        assert_eq!((c.sub.as_str(), c.room.as_str()), ("u1", "r1"));
        assert!(c.pwd && c.iat.is_none() && c.jti.is_none());
    }
    let c = keys.verify(&a.sign(Some("a"), &claims("r1"))).unwrap();
    assert!(c.pwd);
}

#[test]
fn kid_selects_the_key_and_an_unknown_or_other_kid_is_invalid() {
    let (a, b) = (ec("a"), ec("b"));
    let keys = keys(&[&a, &b]);
    assert!(keys.verify(&a.sign(Some("a"), &claims("r1"))).is_ok());
    for kid in ["b", "zzz"] {
        let token = a.sign(Some(kid), &claims("r1"));
        assert_eq!(keys.verify(&token), Err(TokenError::Invalid), "{kid}");
    }
}

#[test]
fn unconfigured_keys_and_no_external_keys_are_invalid() {
    let (a, stranger) = (ec("a"), ec("a"));
    let token = stranger.sign(Some("a"), &claims("r1"));
    assert_eq!(keys(&[&a]).verify(&token), Err(TokenError::Invalid));
    let own_only = TokenKeys::new(SECRET);
    assert_eq!(
        own_only.verify(&a.sign(None, &claims("r1"))),
        Err(TokenError::Invalid)
    );
}

#[test]
fn the_key_decides_the_algorithm() {
    let a = ec("a");
    let keys = keys(&[&a]);
    // A P-256 signature relabelled EdDSA finds no Ed25519 key.
    let token = a.sign(None, &claims("r1"));
    let (_, rest) = token.split_once('.').unwrap();
    let relabelled = format!(
        "{}.{rest}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"EdDSA","typ":"JWT"}"#
        )
    );
    assert_eq!(keys.verify(&relabelled), Err(TokenError::Invalid));
    // HS256 keyed with the public key's PEM: the secret is JWT_SECRET, not that PEM.
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .public_key_pem();
    let confused = PublicKey::from_pem("c", pem.as_bytes()).unwrap();
    let keys = TokenKeys::new(SECRET).with_external(vec![confused], rules());
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims("r1"),
        &EncodingKey::from_secret(pem.as_bytes()),
    )
    .unwrap();
    assert_eq!(keys.verify(&hs), Err(TokenError::Invalid));
}

#[test]
fn required_claims_and_ids_are_enforced() {
    let a = ec("a");
    let keys = keys(&[&a]);
    let exp = now() + 60;
    for bad in [
        json!({"room": "r1", "exp": exp}),
        json!({"sub": "u1", "exp": exp}),
        json!({"sub": "u1", "room": "r1"}),
        json!({"sub": "u 1", "room": "r1", "exp": exp}),
        json!({"sub": "u1", "room": "r/1", "exp": exp}),
        json!({"sub": "", "room": "r1", "exp": exp}),
    ] {
        assert_eq!(
            keys.verify(&a.sign(None, &bad)),
            Err(TokenError::Invalid),
            "{bad}"
        );
    }
}

#[test]
fn leeway_applies_to_exp_and_nbf_of_every_token() {
    let a = ed("a");
    let expired = a.sign(None, &json!({"sub": "u1", "room": "r1", "exp": now() - 20}));
    let early = a.sign(
        None,
        &json!({"sub": "u1", "room": "r1", "exp": now() + 600, "nbf": now() + 20}),
    );
    let own_expired = TokenKeys::new(SECRET).issue("u1", "r1", None, now() - 80, 60);
    let strict = keys(&[&a]);
    assert_eq!(strict.verify(&expired), Err(TokenError::Expired));
    assert_eq!(strict.verify(&early), Err(TokenError::Invalid));
    assert_eq!(strict.verify(&own_expired.token), Err(TokenError::Expired));
    let lenient = keys(&[&a]).with_leeway(60);
    assert!(lenient.verify(&expired).is_ok());
    assert!(lenient.verify(&early).is_ok());
    assert!(lenient.verify(&own_expired.token).is_ok());
}

#[test]
fn issuer_and_audience_are_required_when_configured() {
    let a = ec("a");
    let rules = ExternalRules {
        issuer: Some("https://idp.example".into()),
        audience: Some("switchboard".into()),
        valid_id,
    };
    let keys = TokenKeys::new(SECRET).with_external(vec![a.public.clone()], rules);
    let with = |iss: Value, aud: Value| {
        let token = a.sign(
            None,
            &json!({"sub": "u1", "room": "r1", "exp": now() + 60, "iss": iss, "aud": aud}),
        );
        keys.verify(&token).map(|_| ())
    };
    let iss = json!("https://idp.example");
    assert_eq!(with(iss.clone(), json!("switchboard")), Ok(()));
    assert_eq!(with(iss.clone(), json!(["other", "switchboard"])), Ok(()));
    assert_eq!(with(iss.clone(), json!("other")), Err(TokenError::Invalid));
    assert_eq!(with(iss, Value::Null), Err(TokenError::Invalid));
    let evil = json!("https://evil.example");
    assert_eq!(with(evil, json!("switchboard")), Err(TokenError::Invalid));
}

#[test]
fn debug_output_names_the_key_but_not_its_bytes() {
    let a = ec("a");
    assert_eq!(format!("{:?}", a.public), r#"PublicKey("a", P256)"#);
}

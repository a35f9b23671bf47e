//! Room tokens signed by the app's identity provider (`docs/auth.md`): RS256, ES256 and
//! EdDSA tokens work wherever Switchboard's own do, and everything else is refused with the
//! same codes as a forged token. Keys are generated at run time into a directory per test.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use common::JWT_SECRET;
use common::{forge_token, now_secs, refused_upgrade_status, ExpectRefusal, Launch, Server};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};

/// One key pair of the identity provider: signs tokens, and its public half is configured.
struct Signer {
    alg: Algorithm,
    encoding: EncodingKey,
    public_pem: String,
}

impl Signer {
    fn rsa() -> Signer {
        // 2048-bit generation is the slow part: once per test binary.
        static PEMS: OnceLock<(String, String)> = OnceLock::new();
        let (private, public) = PEMS.get_or_init(|| {
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
            let public = key.to_public_key().to_public_key_pem(LineEnding::LF);
            (private, public.unwrap())
        });
        Signer {
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
            public_pem: public.clone(),
        }
    }

    fn ec() -> Signer {
        Signer::generated(&rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256)
    }

    fn ed() -> Signer {
        Signer::generated(&rcgen::PKCS_ED25519, Algorithm::EdDSA)
    }

    /// A fresh P-256 or Ed25519 pair (rcgen generates both in microseconds).
    fn generated(kind: &'static rcgen::SignatureAlgorithm, alg: Algorithm) -> Signer {
        let pair = rcgen::KeyPair::generate_for(kind).unwrap();
        let private = pair.serialize_pem();
        let encoding = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()),
            _ => EncodingKey::from_ec_pem(private.as_bytes()),
        };
        Signer {
            alg,
            encoding: encoding.unwrap(),
            public_pem: pair.public_key_pem(),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_kid(None, claims)
    }

    fn sign_kid(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The configured keys: `rsa.pem`, `ec.pem`, `ec2.pem` and `ed.pem` (kids `rsa`, `ec`,
/// `ec2`, `ed`) in a fresh directory.
struct Idp {
    dir: PathBuf,
    rsa: Signer,
    ec: Signer,
    ec2: Signer,
    ed: Signer,
}

fn fresh_dir(prefix: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Idp {
    fn new() -> Idp {
        let idp = Idp {
            dir: fresh_dir("switchboard-idp"),
            rsa: Signer::rsa(),
            ec: Signer::ec(),
            ec2: Signer::ec(),
            ed: Signer::ed(),
        };
        for (kid, s) in idp.named() {
            std::fs::write(idp.dir.join(format!("{kid}.pem")), &s.public_pem).unwrap();
        }
        idp
    }

    fn named(&self) -> [(&str, &Signer); 4] {
        [
            ("rsa", &self.rsa),
            ("ec", &self.ec),
            ("ec2", &self.ec2),
            ("ed", &self.ed),
        ]
    }

    fn paths(&self) -> String {
        let paths = self
            .named()
            .map(|(kid, _)| self.dir.join(format!("{kid}.pem")));
        paths.map(|p| p.display().to_string()).join(",")
    }

    /// A server that trusts these keys, plus `vars`.
    fn server(&self, vars: &[(&str, &str)]) -> Server {
        let paths = self.paths();
        Server::launch(Launch::new().env("JWT_PUBLIC_KEYS", &paths).envs(vars))
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn claims(user: &str, room: &str) -> Value {
    json!({"sub": user, "room": room, "exp": now_secs() + 600})
}

/// `claims` with `extra` fields merged in (a `null` removes the field).
fn claims_with(extra: Value) -> Value {
    let mut c = claims("u1", "r1");
    for (k, v) in extra.as_object().unwrap() {
        match v {
            Value::Null => c.as_object_mut().unwrap().remove(k),
            _ => c.as_object_mut().unwrap().insert(k.clone(), v.clone()),
        };
    }
    c
}

/// A token whose header is replaced by `header`, signature kept.
fn with_header(token: &str, header: Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

/// Checks that `token` is accepted on every path: `?token=` and `auth` reach `room-joined`
/// in its room, and `POST /api/auth/validate` says valid.
async fn assert_accepted(server: &Server, token: &str, user: &str, room: &str) {
    let mut c = server.connect(token).await;
    c.send_json(json!({"type": "join-room"})).await;
    let joined = c.recv_type("room-joined").await;
    assert_eq!(joined["data"]["room"]["roomId"], room);
    assert_eq!(joined["data"]["self"]["userId"], user);
    drop(c);

    let mut c = server.connect_anonymous().await;
    c.send_json(json!({"type": "auth", "data": {"token": token}}))
        .await;
    let ok = c.recv_type("auth-ok").await;
    assert_eq!(
        (&ok["data"]["userId"], &ok["data"]["roomId"]),
        (&json!(user), &json!(room))
    );

    let v = server
        .post("/api/auth/validate", &json!({"token": token}))
        .await;
    assert_eq!(v.status, 200);
    assert_eq!(v.body["valid"], true, "{}", v.body);
    assert_eq!(
        (&v.body["userId"], &v.body["roomId"]),
        (&json!(user), &json!(room))
    );
}

/// Checks that `token` is refused with `code` on every path: 401 on `?token=`, an error and
/// close 4001 after `auth`, and `valid: false` from `POST /api/auth/validate`.
async fn assert_refused(server: &Server, token: &str, code: &str) {
    let url = server.ws_url(&format!("?token={token}"));
    assert_eq!(refused_upgrade_status(&url, None).await, 401, "{code}");
    let mut c = server.connect_anonymous().await;
    c.send_json(json!({"type": "auth", "data": {"token": token}}))
        .await;
    c.recv_error(code).await;
    assert_eq!(c.expect_close().await, 4001, "close after {code}");
    let v = server
        .post("/api/auth/validate", &json!({"token": token}))
        .await;
    assert_eq!(v.body, json!({"valid": false, "error": code}));
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_connect_join_and_validate() {
    let idp = Idp::new();
    let server = idp.server(&[]);
    for (kid, signer) in [("rsa", &idp.rsa), ("ec", &idp.ec), ("ed", &idp.ed)] {
        let room = format!("room-{kid}");
        let plain = signer.sign(&claims("u1", &room));
        assert_accepted(&server, &plain, "u1", &room).await;
        let named = signer.sign_kid(Some(kid), &claims("u2", &room));
        assert_accepted(&server, &named, "u2", &room).await;
    }
}

#[tokio::test]
async fn forged_and_confused_tokens_are_invalid() {
    let idp = Idp::new();
    let server = idp.server(&[]);
    let good = idp.rsa.sign(&claims("u1", "r1"));
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        good.split('.').nth(1).unwrap()
    );
    let hs256_over_public_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("u1", "r1"),
        &EncodingKey::from_secret(idp.ec.public_pem.as_bytes()),
    )
    .unwrap();
    let stranger = Signer::ec().sign_kid(Some("ec"), &claims("u1", "r1"));
    let rsa_labelled_es256 = with_header(&good, json!({"alg": "ES256", "typ": "JWT"}));
    let ec_labelled_eddsa = with_header(&idp.ec.sign(&claims("u1", "r1")), json!({"alg": "EdDSA"}));
    let other_kid = idp.ec.sign_kid(Some("ec2"), &claims("u1", "r1"));
    let unknown_kid = idp.ec.sign_kid(Some("nobody"), &claims("u1", "r1"));
    for token in [
        alg_none,
        hs256_over_public_key,
        stranger,
        rsa_labelled_es256,
        ec_labelled_eddsa,
        other_kid,
        unknown_kid,
    ] {
        assert_refused(&server, &token, "INVALID_TOKEN").await;
    }
}

#[tokio::test]
async fn missing_or_invalid_sub_and_room_are_invalid() {
    let idp = Idp::new();
    let server = idp.server(&[]);
    for extra in [
        json!({"sub": null}),
        json!({"room": null}),
        json!({"exp": null}),
        json!({"sub": "user with spaces"}),
        json!({"room": "a/b"}),
        json!({"room": "r".repeat(129)}),
        json!({"sub": ""}),
    ] {
        let token = idp.ed.sign(&claims_with(extra));
        assert_refused(&server, &token, "INVALID_TOKEN").await;
    }
}

#[tokio::test]
async fn expiry_and_not_before_are_enforced_without_leeway() {
    let idp = Idp::new();
    let server = idp.server(&[]);
    let now = now_secs();
    let expired = idp.ec.sign(&claims_with(json!({"exp": now - 30})));
    assert_refused(&server, &expired, "TOKEN_EXPIRED").await;
    let early = idp.ec.sign(&claims_with(json!({"nbf": now + 30})));
    assert_refused(&server, &early, "INVALID_TOKEN").await;
    let started = idp
        .ec
        .sign(&claims_with(json!({"nbf": now - 5, "iat": now - 5})));
    assert_accepted(&server, &started, "u1", "r1").await;
}

#[tokio::test]
async fn leeway_forgives_skew_on_external_and_own_tokens() {
    let idp = Idp::new();
    let server = idp.server(&[("JWT_LEEWAY_SECONDS", "120")]);
    let now = now_secs();
    let expired = idp.rsa.sign(&claims_with(json!({"exp": now - 30})));
    assert_accepted(&server, &expired, "u1", "r1").await;
    let early = idp.rsa.sign(&claims_with(json!({"nbf": now + 30})));
    assert_accepted(&server, &early, "u1", "r1").await;
    let own = forge_token(JWT_SECRET, &common::claims("u1", "r1", now - 90, now - 30));
    assert_accepted(&server, &own, "u1", "r1").await;
    let long_gone = idp.rsa.sign(&claims_with(json!({"exp": now - 300})));
    assert_refused(&server, &long_gone, "TOKEN_EXPIRED").await;
    let own_gone = forge_token(
        JWT_SECRET,
        &common::claims("u1", "r1", now - 900, now - 300),
    );
    assert_refused(&server, &own_gone, "TOKEN_EXPIRED").await;
}

#[tokio::test]
async fn issuer_and_audience_must_match_when_configured() {
    let idp = Idp::new();
    let server = idp.server(&[
        ("JWT_ISSUER", "https://idp.example"),
        ("JWT_AUDIENCE", "switchboard"),
    ]);
    let iss = "https://idp.example";
    for aud in [json!("switchboard"), json!(["other-app", "switchboard"])] {
        let token = idp.ed.sign(&claims_with(json!({"iss": iss, "aud": aud})));
        assert_accepted(&server, &token, "u1", "r1").await;
    }
    for extra in [
        json!({"iss": iss, "aud": "other-app"}),
        json!({"iss": iss, "aud": ["other-app"]}),
        json!({"iss": "https://evil.example", "aud": "switchboard"}),
        json!({"aud": "switchboard"}),
        json!({"iss": iss}),
    ] {
        let token = idp.ed.sign(&claims_with(extra));
        assert_refused(&server, &token, "INVALID_TOKEN").await;
    }
}

#[tokio::test]
async fn the_token_decides_the_room() {
    let idp = Idp::new();
    let server = idp.server(&[]);
    let token = idp.ec.sign(&claims("u1", "room-a"));
    let mut c = server.connect_anonymous().await;
    c.send_json(json!({"type": "auth", "roomId": "room-b", "data": {"token": token}}))
        .await;
    c.recv_error("ROOM_MISMATCH").await;
    let v = server
        .post(
            "/api/auth/validate",
            &json!({"token": token, "roomId": "room-b"}),
        )
        .await;
    assert_eq!(v.body, json!({"valid": false, "error": "ROOM_MISMATCH"}));
    // Joining without naming a room lands in the token's room.
    assert_accepted(&server, &token, "u1", "room-a").await;
    let rooms = server.get("/api/rooms/room-b").await;
    assert_eq!(rooms.status, 404, "{}", rooms.body);
}

#[tokio::test]
async fn external_tokens_enter_password_rooms_and_own_tokens_keep_working() {
    let idp = Idp::new();
    let server = idp.server(&[]);
    server
        .create_room(json!({"roomId": "locked", "roomName": "L", "hostId": "h",
                            "password": "pw-secret"}))
        .await;
    let external = idp.rsa.sign(&claims("u1", "locked"));
    assert_accepted(&server, &external, "u1", "locked").await;
    let details = server.get_auth("/api/rooms/locked", &external).await;
    assert_eq!(details.status, 200, "{}", details.body);

    // Switchboard's own token without the password check stays out.
    let unchecked = common::forge_valid_token("u2", "locked");
    let mut c = server.connect(&unchecked).await;
    c.send_json(json!({"type": "join-room", "requestId": "pw"}))
        .await;
    let err = c.recv_error("INVALID_PASSWORD").await;
    assert_eq!(err["requestId"], "pw");

    // Own tokens work alongside the provider's.
    let own = server.token("u3", "open-room").await;
    assert_accepted(&server, &own, "u3", "open-room").await;
    let checked = server
        .issue(json!({"userId": "u4", "roomId": "locked", "password": "pw-secret"}))
        .await;
    assert_accepted(&server, checked["token"].as_str().unwrap(), "u4", "locked").await;
}

#[test]
fn missing_key_file_stops_startup_naming_the_variable() {
    let dir = fresh_dir("switchboard-idp-missing");
    let path = dir.join("absent.pem").display().to_string();
    let exited = Launch::new()
        .env("JWT_PUBLIC_KEYS", &path)
        .expect_refusal_naming("JWT_PUBLIC_KEYS");
    assert_eq!(exited.status.code(), Some(2));
    assert!(exited.stderr.contains(&path), "{}", exited.stderr);
}

#[test]
fn garbage_or_private_pem_stops_startup_without_echoing_it() {
    let dir = fresh_dir("switchboard-idp-garbage");
    let garbage = "-----BEGIN PUBLIC KEY-----\nc2VjcmV0LWJ5dGVzLW5ldmVyLWxvZ2dlZA==\n-----END PUBLIC KEY-----\n";
    let private = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    for (name, pem) in [("garbage.pem", garbage), ("private.pem", private.as_str())] {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        let exited = Launch::new()
            .env("JWT_PUBLIC_KEYS", &path.display().to_string())
            .expect_refusal_naming("JWT_PUBLIC_KEYS");
        assert_eq!(exited.status.code(), Some(2));
        let body = pem.lines().nth(1).unwrap();
        let output = format!("{}{}", exited.stdout, exited.stderr);
        assert!(!output.contains(body), "key bytes echoed: {output}");
        assert!(exited.stderr.contains(name), "{}", exited.stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_key_files_with_one_kid_stop_startup() {
    let (a, b) = (
        fresh_dir("switchboard-idp-a"),
        fresh_dir("switchboard-idp-b"),
    );
    for dir in [&a, &b] {
        std::fs::write(dir.join("same.pem"), Signer::ec().public_pem).unwrap();
    }
    let paths = format!(
        "{},{}",
        a.join("same.pem").display(),
        b.join("same.pem").display()
    );
    let exited = Launch::new()
        .env("JWT_PUBLIC_KEYS", &paths)
        .expect_refusal_naming("JWT_PUBLIC_KEYS");
    assert_eq!(exited.status.code(), Some(2));
    assert!(exited.stderr.contains("\"same\""), "{}", exited.stderr);
    for dir in [a, b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

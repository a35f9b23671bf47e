//! Provider keys fetched from `JWKS_URL` (`docs/auth.md#jwks`), against a JWKS server the
//! test runs: keys come and go with the set, and a JWKS that is down, slow, malformed or
//! huge never takes the process down or the last good set away.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use common::{now_secs, Server};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A key pair: signs tokens; its public half is a JWK.
struct Signer {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn generated(alg: &'static rcgen::SignatureAlgorithm, kid: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let private = pair.serialize_pem();
        let raw = pair.public_key_raw();
        if alg == &rcgen::PKCS_ED25519 {
            Signer {
                alg: Algorithm::EdDSA,
                encoding: EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
                jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(raw)}),
            }
        } else {
            Signer {
                alg: Algorithm::ES256,
                encoding: EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
                jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&raw[33..])}),
            }
        }
    }

    fn ec(kid: &str) -> Signer {
        Signer::generated(&rcgen::PKCS_ECDSA_P256_SHA256, kid)
    }

    fn ed(kid: &str) -> Signer {
        Signer::generated(&rcgen::PKCS_ED25519, kid)
    }

    fn rsa(kid: &str) -> Signer {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public = key.to_public_key();
        Signer {
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
            jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())}),
        }
    }

    fn token(&self, user: &str, room: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.jwk["kid"].as_str().map(str::to_owned);
        let claims = json!({"sub": user, "room": room, "exp": now_secs() + 600});
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// What the JWKS server answers.
#[derive(Clone)]
enum Answer {
    Body(Vec<u8>),
    /// Accepts the connection and never answers.
    Silent,
}

/// A JWKS server on a local port: an HTTP/1.1 answer per connection.
#[derive(Clone)]
struct JwksServer {
    url: String,
    answer: Arc<Mutex<Answer>>,
}

impl JwksServer {
    async fn start(answer: Answer) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        JwksServer::serve(listener, answer)
    }

    async fn start_on(port: u16) -> JwksServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        JwksServer::serve(listener, Answer::Body(Vec::new()))
    }

    fn serve(listener: TcpListener, answer: Answer) -> JwksServer {
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let server = JwksServer {
            url,
            answer: Arc::new(Mutex::new(answer)),
        };
        let answer = server.answer.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.lock().unwrap().clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let Answer::Body(body) = answer else {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                });
            }
        });
        server
    }

    fn serve_keys(&self, signers: &[&Signer]) {
        let keys: Vec<&Value> = signers.iter().map(|s| &s.jwk).collect();
        self.answer(Answer::Body(
            json!({ "keys": keys }).to_string().into_bytes(),
        ));
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

fn launch(jwks: &str, refresh: &str) -> Server {
    Server::start(&[("JWKS_URL", jwks), ("JWKS_REFRESH_SECONDS", refresh)])
}

async fn valid(server: &Server, token: &str) -> bool {
    let v = server
        .post("/api/auth/validate", &json!({"token": token}))
        .await;
    v.body["valid"] == json!(true)
}

/// Waits until `token` is valid (or not, per `want`), failing after `timeout`.
async fn wait_valid(server: &Server, token: &str, want: bool, timeout: Duration) {
    switchboard_testkit::eventually(timeout, || async {
        if valid(server, token).await == want {
            Ok(())
        } else {
            Err(())
        }
    })
    .await
    .unwrap_or_else(|_| panic!("token never became valid={want} within {timeout:?}"));
}

async fn wait_ready(server: &Server) {
    server
        .get_until_status("/readyz", 200, Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn tokens_signed_by_keys_of_the_set_connect() {
    let (ec, ed, rsa) = (Signer::ec("ec"), Signer::ed("ed"), Signer::rsa("rsa"));
    let jwks = JwksServer::start(Answer::Body(Vec::new())).await;
    jwks.serve_keys(&[&ec, &ed, &rsa]);
    let server = launch(&jwks.url, "300");
    wait_ready(&server).await;
    for (user, signer) in [("u-ec", &ec), ("u-ed", &ed), ("u-rsa", &rsa)] {
        let mut c = server.connect(&signer.token(user, "r1")).await;
        c.send_json(json!({"type": "join-room"})).await;
        let joined = c.recv_type("room-joined").await;
        assert_eq!(joined["data"]["self"]["userId"], user);
    }
}

#[tokio::test]
async fn a_new_kid_is_fetched_after_its_first_token_and_a_removed_one_stops_working() {
    let (old, new) = (Signer::ec("old"), Signer::ed("new"));
    let jwks = JwksServer::start(Answer::Body(Vec::new())).await;
    jwks.serve_keys(&[&old]);
    // A refresh far away: only the unknown kid can bring the new key in time.
    let server = launch(&jwks.url, "3600");
    wait_ready(&server).await;
    assert!(valid(&server, &old.token("u", "r")).await);

    jwks.serve_keys(&[&new]);
    let token = new.token("u", "r");
    assert!(!valid(&server, &token).await, "refused until fetched");
    wait_valid(&server, &token, true, Duration::from_secs(5)).await;
    // The same fetch dropped the old key.
    assert!(!valid(&server, &old.token("u", "r")).await);
}

#[tokio::test]
async fn a_removed_kid_is_refused_after_the_refresh() {
    let (a, b) = (Signer::ec("a"), Signer::ec("b"));
    let jwks = JwksServer::start(Answer::Body(Vec::new())).await;
    jwks.serve_keys(&[&a, &b]);
    let server = launch(&jwks.url, "0.3");
    wait_ready(&server).await;
    assert!(valid(&server, &a.token("u", "r")).await);
    jwks.serve_keys(&[&b]);
    wait_valid(&server, &a.token("u", "r"), false, Duration::from_secs(5)).await;
    assert!(valid(&server, &b.token("u", "r")).await);
}

#[tokio::test]
async fn unreachable_jwks_keeps_the_process_up_and_starting_until_it_answers() {
    let key = Signer::ec("k");
    let port = switchboard_testkit::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let server = launch(&url, "0.3");
    let ready = server.get("/readyz").await;
    assert_eq!(
        (ready.status, &ready.body),
        (
            503,
            &json!({"status": "not-ready", "reasons": ["starting"]})
        )
    );
    assert_eq!(server.get("/livez").await.status, 200);
    assert!(!valid(&server, &key.token("u", "r")).await);

    // The JWKS comes up on the port the server keeps trying.
    let jwks = JwksServer::start_on(port).await;
    jwks.serve_keys(&[&key]);
    wait_ready(&server).await;
    assert!(valid(&server, &key.token("u", "r")).await);
}

#[tokio::test]
async fn a_silent_jwks_is_bounded_by_the_timeout() {
    let jwks = JwksServer::start(Answer::Silent).await;
    let server = launch(&jwks.url, "300");
    // Still starting, and everything else answers meanwhile.
    let ready = server.get("/readyz").await;
    assert_eq!(ready.body["reasons"], json!(["starting"]));
    assert_eq!(server.get("/health").await.status, 200);
    let key = Signer::ec("k");
    jwks.serve_keys(&[&key]);
    // The 5 s timeout ends the silent fetch; the unknown kid brings the next one.
    wait_valid(&server, &key.token("u", "r"), true, Duration::from_secs(12)).await;
}

#[tokio::test]
async fn malformed_or_huge_sets_keep_the_last_good_one() {
    let key = Signer::ec("k");
    let jwks = JwksServer::start(Answer::Body(Vec::new())).await;
    jwks.serve_keys(&[&key]);
    let server = launch(&jwks.url, "0.2");
    wait_ready(&server).await;
    let mut huge = json!({"keys": [key.jwk.clone()]}).to_string().into_bytes();
    huge.splice(1..1, vec![b' '; 1024 * 1024]);
    for body in [b"{\"keys\": [".to_vec(), b"<html>".to_vec(), huge] {
        jwks.answer(Answer::Body(body));
        // Several refreshes pass over the bad body.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(valid(&server, &key.token("u", "r")).await);
    }
    let stderr_and_out = server.output().join("\n");
    assert!(stderr_and_out.contains("JWKS fetch failed"));
    assert!(!stderr_and_out.contains("<html>"), "the body is not logged");
}

#[tokio::test]
async fn a_jwk_whose_alg_mismatches_its_type_is_not_used() {
    let (good, mut bad) = (Signer::ec("good"), Signer::ec("bad"));
    bad.jwk["alg"] = json!("RS256");
    let jwks = JwksServer::start(Answer::Body(Vec::new())).await;
    jwks.serve_keys(&[&good, &bad]);
    let server = launch(&jwks.url, "300");
    wait_ready(&server).await;
    assert!(valid(&server, &good.token("u", "r")).await);
    assert!(!valid(&server, &bad.token("u", "r")).await);
}

#[tokio::test]
async fn a_jwks_url_that_is_not_http_stops_startup() {
    use common::ExpectRefusal;
    common::Launch::new()
        .env("JWKS_URL", "ftp://example.com/jwks.json")
        .expect_refusal_naming("JWKS_URL");
}

//! Fetching the identity provider's JWK Set from `JWKS_URL` (`docs/auth.md#jwks`): at
//! startup, every `JWKS_REFRESH_SECONDS`, and soon after a token names a `kid` the set
//! lacks. Parsing and verification live in `switchboard_auth`; this owns only the I/O.
//!
//! A failed fetch (unreachable, slow, non-200, too large, not a JWK Set) keeps the last
//! good set. Verification never waits for a fetch.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use switchboard_auth::{keys_from_jwk_set, ProviderKeys, PublicKey};

/// Upper bound of one fetch, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWK Set body read; a larger one is a failed fetch.
const MAX_BODY: usize = 1024 * 1024;
/// Fetches caused by unknown kids come at most this often.
const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);

/// The fetched key set and whether it has loaded once.
pub struct Jwks {
    url: String,
    /// `JWT_PUBLIC_KEYS`, kept beside whatever the URL serves.
    static_keys: Vec<PublicKey>,
    refresh: Duration,
    keys: ProviderKeys,
    loaded: AtomicBool,
    unknown_kid: Arc<Notify>,
}

impl Jwks {
    /// A set to be fetched from `url`, holding only `static_keys` until the first good
    /// fetch. Tokens naming a kid it lacks wake the fetcher.
    pub fn new(url: String, refresh: Duration, static_keys: Vec<PublicKey>) -> Self {
        let unknown_kid = Arc::new(Notify::new());
        let wake = unknown_kid.clone();
        let keys = ProviderKeys::new(static_keys.clone()).on_unknown_kid(Arc::new(move || {
            wake.notify_one();
        }));
        Self {
            url,
            static_keys,
            refresh,
            keys,
            loaded: AtomicBool::new(false),
            unknown_kid,
        }
    }

    /// The keys, for `TokenKeys::with_provider_keys`.
    pub fn keys(&self) -> ProviderKeys {
        self.keys.clone()
    }

    /// Whether a fetch has succeeded since start (`/readyz` says `starting` until then).
    pub fn loaded(&self) -> bool {
        self.loaded.load(Relaxed)
    }

    /// Fetches now, then on every refresh tick or unknown kid (rate-limited), forever.
    pub async fn run(self: Arc<Self>) {
        let client = match reqwest::Client::builder().timeout(FETCH_TIMEOUT).build() {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the JWKS HTTP client");
                return;
            }
        };
        self.fetch(&client).await;
        let mut next_refresh = Instant::now() + self.refresh;
        let mut last_kid_fetch: Option<Instant> = None;
        loop {
            let due = tokio::select! {
                _ = tokio::time::sleep_until(next_refresh) => true,
                // Within the interval the kid waits for the next refresh instead.
                _ = self.unknown_kid.notified() => last_kid_fetch
                    .is_none_or(|at| at.elapsed() >= UNKNOWN_KID_INTERVAL),
            };
            if !due {
                continue;
            }
            if next_refresh > Instant::now() {
                last_kid_fetch = Some(Instant::now());
            }
            self.fetch(&client).await;
            next_refresh = Instant::now() + self.refresh;
        }
    }

    async fn fetch(&self, client: &reqwest::Client) {
        match self.download(client).await {
            Ok(body) => match keys_from_jwk_set(&body) {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "JWKS loaded");
                    let mut all = self.static_keys.clone();
                    all.extend(keys);
                    self.keys.replace(all);
                    self.loaded.store(true, Relaxed);
                }
                // The body is not logged: it is the provider's, not ours to print.
                Err(e) => tracing::warn!(error = %e, "JWKS fetch failed; keeping the last set"),
            },
            Err(e) => tracing::warn!(error = %e, "JWKS fetch failed; keeping the last set"),
        }
    }

    /// The body of a 200 answer, at most [`MAX_BODY`] bytes.
    async fn download(&self, client: &reqwest::Client) -> Result<Vec<u8>, String> {
        let resp = client
            .get(&self.url)
            .send()
            .await
            // Without the URL, which may carry credentials.
            .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status().as_u16()));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.without_url().to_string())?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("body larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

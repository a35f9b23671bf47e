//! Configuration from the environment (and an optional `.env` file): every setting of
//! `.env.example`, parsed and checked before anything starts. A bad value stops startup with
//! one line naming the variable.

use std::net::IpAddr;
use std::time::Duration;

use switchboard_auth::{IceConfig, PublicKey};
use switchboard_signaling::SignalingConfig;

use crate::tls::{TlsError, TlsSettings};

/// A setting that cannot be used, named by its variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {problem}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it (never its value, which may be secret).
    pub problem: String,
}

impl From<TlsError> for ConfigError {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::Cert(problem) => Env::err("TLS_CERT_PATH", problem),
            TlsError::Key(problem) => Env::err("TLS_KEY_PATH", problem),
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the binary is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Interface both ports bind to.
    pub host: IpAddr,
    /// HTTP API port.
    pub port: u16,
    /// Signaling WebSocket port.
    pub signaling_port: u16,
    /// HMAC key for room tokens; `None` means generate one at startup.
    pub jwt_secret: Option<Secret>,
    /// Room token lifetime.
    pub token_ttl: Duration,
    /// Tokens signed by the app's identity provider: its keys and required claims.
    pub identity_provider: IdentityProvider,
    /// Clock skew forgiven on `exp` and `nbf` of every token, in seconds.
    pub jwt_leeway_secs: u64,
    /// Bearer key required to issue tokens and create rooms, if set.
    pub issuer_api_key: Option<Secret>,
    /// Bearer key for admin calls, if set.
    pub admin_api_key: Option<Secret>,
    /// Allowed origins; `None` allows any.
    pub cors_origins: Option<Vec<String>>,
    /// Interval of the memory monitor.
    pub memory_check_interval: Duration,
    /// Resident memory that triggers normal cleanup.
    pub memory_warning_mb: u64,
    /// Resident memory that triggers aggressive cleanup.
    pub memory_critical_mb: u64,
    /// Public `ws(s)://` URL of the signaling endpoint, when behind a proxy.
    pub public_signaling_url: Option<String>,
    /// Redis URL: cluster mode when set.
    pub redis_url: Option<Secret>,
    /// Silence after which other instances remove an instance's peers (cluster mode).
    pub instance_timeout: Duration,
    /// Log output format.
    pub log_format: LogFormat,
    /// Certificate and key for `https://` and `wss://` on both ports, when configured.
    pub tls: Option<TlsSettings>,
    /// Signaling limits and timings.
    pub signaling: SignalingConfig,
}

/// The identity provider's public keys and the `iss`/`aud` its tokens must carry
/// (`docs/auth.md`).
#[derive(Debug, Clone, Default)]
pub struct IdentityProvider {
    /// `JWT_PUBLIC_KEYS`, each named by its file name without extension.
    pub keys: Vec<PublicKey>,
    /// `JWT_ISSUER`.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`.
    pub audience: Option<String>,
    /// `JWKS_URL`: where more keys are fetched from, at run time (`src/jwks.rs`).
    pub jwks_url: Option<Secret>,
    /// `JWKS_REFRESH_SECONDS`: how often the JWKS is fetched again.
    pub jwks_refresh: Duration,
}

/// A configuration value that must never be printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret's value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The variable's value; empty counts as unset (as in `KEY=` lines of `.env` files).
    fn raw(&self, var: &str) -> Option<String> {
        (self.get)(var).filter(|v| !v.trim().is_empty())
    }

    fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            var,
            problem: problem.into(),
        }
    }

    fn number<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| Self::err(var, "must be a whole number")),
        }
    }

    fn positive(&self, var: &'static str, default: u64) -> Result<u64, ConfigError> {
        let n = self.number(var, default)?;
        if n == 0 {
            return Err(Self::err(var, "must be greater than 0"));
        }
        Ok(n)
    }

    /// Seconds as a duration; decimals allowed (`0.5`) so tests can run lifecycles fast.
    fn seconds(
        &self,
        var: &'static str,
        default: f64,
        allow_zero: bool,
    ) -> Result<Duration, ConfigError> {
        let secs = match self.raw(var) {
            None => default,
            Some(v) => v
                .trim()
                .parse::<f64>()
                .map_err(|_| Self::err(var, "must be a number of seconds"))?,
        };
        if !secs.is_finite() || secs < 0.0 || (secs == 0.0 && !allow_zero) || secs > 1e9 {
            let range = if allow_zero {
                "0 or more"
            } else {
                "greater than 0"
            };
            return Err(Self::err(var, format!("must be {range} seconds")));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn list(&self, var: &str) -> Vec<String> {
        self.raw(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn secret(&self, var: &str) -> Option<Secret> {
        self.raw(var).map(Secret)
    }
}

impl Env<'_> {
    fn host(&self) -> Result<IpAddr, ConfigError> {
        match self.raw("HOST") {
            None => Ok(IpAddr::from([0, 0, 0, 0])),
            Some(h) if h == "localhost" => Ok(IpAddr::from([127, 0, 0, 1])),
            Some(h) => h
                .parse()
                .map_err(|_| Self::err("HOST", "must be an IP address such as 0.0.0.0")),
        }
    }

    /// `PORT` and `SIGNALING_PORT`, which must differ (0 picks a free port for each).
    fn ports(&self) -> Result<(u16, u16), ConfigError> {
        let port = self.number("PORT", 3000u16)?;
        let signaling_port = self.number("SIGNALING_PORT", 3001u16)?;
        if port != 0 && port == signaling_port {
            return Err(Self::err("SIGNALING_PORT", "must differ from PORT"));
        }
        Ok((port, signaling_port))
    }

    fn jwt_secret(&self) -> Result<Option<Secret>, ConfigError> {
        let secret = self.secret("JWT_SECRET");
        if secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            return Err(Self::err("JWT_SECRET", "must be at least 32 bytes"));
        }
        Ok(secret)
    }

    /// `CORS_ORIGINS`: `None` allows any origin (unset, or `*`).
    fn cors_origins(&self) -> Option<Vec<String>> {
        let cors = self.list("CORS_ORIGINS");
        (!cors.is_empty() && !cors.iter().any(|o| o == "*")).then_some(cors)
    }

    /// STUN and TURN servers handed to peers, with the TURN REST secret.
    fn ice(&self) -> Result<IceConfig, ConfigError> {
        let stun_urls = self.list("STUN_URLS");
        let turn_urls = self.list("TURN_URLS");
        let turn_secret = self.raw("TURN_SECRET");
        if !turn_urls.is_empty() && turn_secret.is_none() {
            return Err(Self::err(
                "TURN_URLS",
                "is set but TURN_SECRET is not (TURN credentials need the shared secret)",
            ));
        }
        if stun_urls
            .iter()
            .any(|u| !u.starts_with("stun:") && !u.starts_with("stuns:"))
        {
            return Err(Self::err(
                "STUN_URLS",
                "every URL must start with stun: or stuns:",
            ));
        }
        if turn_urls
            .iter()
            .any(|u| !u.starts_with("turn:") && !u.starts_with("turns:"))
        {
            return Err(Self::err(
                "TURN_URLS",
                "every URL must start with turn: or turns:",
            ));
        }
        Ok(IceConfig {
            stun_urls,
            turn_urls,
            turn_secret,
        })
    }

    /// `MEMORY_WARNING_MB` and `MEMORY_CRITICAL_MB`, the second not below the first.
    fn memory_thresholds(&self) -> Result<(u64, u64), ConfigError> {
        let warning = self.positive("MEMORY_WARNING_MB", 200)?;
        let critical = self.positive("MEMORY_CRITICAL_MB", 300)?;
        if critical < warning {
            return Err(Self::err(
                "MEMORY_CRITICAL_MB",
                "must not be below MEMORY_WARNING_MB",
            ));
        }
        Ok((warning, critical))
    }

    fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.raw("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(_) => Err(Self::err("LOG_FORMAT", "must be text or json")),
        }
    }

    /// A positive number that must fit a `u32`.
    fn positive_u32(&self, var: &'static str, default: u64) -> Result<u32, ConfigError> {
        u32::try_from(self.positive(var, default)?).map_err(|_| Self::err(var, "is too large"))
    }

    fn public_signaling_url(&self) -> Result<Option<String>, ConfigError> {
        let url = self.raw("PUBLIC_SIGNALING_URL");
        if url
            .as_ref()
            .is_some_and(|u| !u.starts_with("ws://") && !u.starts_with("wss://"))
        {
            return Err(Self::err(
                "PUBLIC_SIGNALING_URL",
                "must start with ws:// or wss://",
            ));
        }
        Ok(url)
    }

    /// The certificate and key for both ports, when both paths are set.
    fn tls(&self) -> Result<Option<TlsSettings>, ConfigError> {
        match (self.raw("TLS_CERT_PATH"), self.raw("TLS_KEY_PATH")) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(Self::err(
                "TLS_KEY_PATH",
                "must be set when TLS_CERT_PATH is",
            )),
            (None, Some(_)) => Err(Self::err(
                "TLS_CERT_PATH",
                "must be set when TLS_KEY_PATH is",
            )),
            (Some(cert), Some(key)) => Ok(Some(TlsSettings::load(cert.trim(), key.trim())?)),
        }
    }

    /// The limits and timings of rooms and connections.
    fn signaling(
        &self,
        allowed_origins: Option<Vec<String>>,
        ice: IceConfig,
    ) -> Result<SignalingConfig, ConfigError> {
        let max_message_bytes = self.positive("MAX_MESSAGE_BYTES", 65_536)?;
        if max_message_bytes < 1024 {
            return Err(Self::err("MAX_MESSAGE_BYTES", "must be at least 1024"));
        }
        let max_connections_per_ip = match self.raw("MAX_CONNECTIONS_PER_IP") {
            None => None,
            Some(_) => Some(self.positive("MAX_CONNECTIONS_PER_IP", 0)? as usize),
        };
        Ok(SignalingConfig {
            max_peers_per_room: self.positive("MAX_PEERS_PER_ROOM", 50)? as usize,
            max_rooms: self.positive("MAX_ROOMS", 100_000)? as usize,
            max_message_bytes: max_message_bytes as usize,
            rate_limit_per_second: self.positive_u32("RATE_LIMIT_PER_SECOND", 50)?,
            rate_limit_burst: self.positive_u32("RATE_LIMIT_BURST", 200)?,
            max_connections: self.positive("MAX_CONNECTIONS", 10_000)? as usize,
            max_connections_per_ip,
            allowed_origins,
            auth_timeout: self.seconds("AUTH_TIMEOUT_SECONDS", 10.0, false)?,
            heartbeat_interval: self.seconds("HEARTBEAT_INTERVAL_SECONDS", 30.0, false)?,
            peer_timeout: self.seconds("PEER_TIMEOUT_SECONDS", 300.0, false)?,
            reconnect_grace: self.seconds("RECONNECT_GRACE_SECONDS", 15.0, true)?,
            room_sweep_interval: self.seconds("ROOM_SWEEP_INTERVAL_SECONDS", 60.0, false)?,
            room_idle_timeout: self.seconds("ROOM_IDLE_TIMEOUT_SECONDS", 10_800.0, false)?,
            room_empty_grace: self.seconds("ROOM_EMPTY_GRACE_SECONDS", 60.0, true)?,
            outbound_queue_size: self.positive("OUTBOUND_QUEUE_SIZE", 256)? as usize,
            ice,
        })
    }

    /// `JWT_PUBLIC_KEYS`, `JWT_ISSUER` and `JWT_AUDIENCE`. Each key's `kid` is its file name
    /// without extension, so two files must not share one.
    fn identity_provider(&self) -> Result<IdentityProvider, ConfigError> {
        const VAR: &str = "JWT_PUBLIC_KEYS";
        let mut keys: Vec<PublicKey> = Vec::new();
        for path in self.list(VAR) {
            let pem = std::fs::read(&path)
                .map_err(|e| Self::err(VAR, format!("cannot read {path}: {e}")))?;
            let kid = std::path::Path::new(&path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = PublicKey::from_pem(kid, &pem)
                .map_err(|e| Self::err(VAR, format!("{path} {e}")))?;
            if keys.iter().any(|k| k.kid() == key.kid()) {
                return Err(Self::err(
                    VAR,
                    format!(
                        "{path}: another key already has the kid {:?}",
                        key.kid().unwrap_or_default()
                    ),
                ));
            }
            keys.push(key);
        }
        Ok(IdentityProvider {
            keys,
            issuer: self.raw("JWT_ISSUER").map(|v| v.trim().to_owned()),
            audience: self.raw("JWT_AUDIENCE").map(|v| v.trim().to_owned()),
            jwks_url: self.jwks_url()?,
            jwks_refresh: self.seconds("JWKS_REFRESH_SECONDS", 300.0, false)?,
        })
    }

    /// `JWKS_URL`, kept out of logs like any URL that may carry credentials.
    fn jwks_url(&self) -> Result<Option<Secret>, ConfigError> {
        let url = self.secret("JWKS_URL");
        if url.as_ref().is_some_and(|u| {
            !["http://", "https://"]
                .iter()
                .any(|s| u.expose().starts_with(s))
        }) {
            return Err(Self::err("JWKS_URL", "must start with http:// or https://"));
        }
        Ok(url)
    }

    fn redis_url(&self) -> Result<Option<Secret>, ConfigError> {
        let url = self.secret("REDIS_URL");
        let schemes = ["redis://", "rediss://", "unix://"];
        if url
            .as_ref()
            .is_some_and(|u| !schemes.iter().any(|s| u.expose().starts_with(s)))
        {
            return Err(Self::err(
                "REDIS_URL",
                "must start with redis://, rediss:// or unix://",
            ));
        }
        Ok(url)
    }
}

impl Config {
    /// Reads the configuration through `get` (the process environment in production).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { get };
        let host = env.host()?;
        let (port, signaling_port) = env.ports()?;
        let jwt_secret = env.jwt_secret()?;
        let cors_origins = env.cors_origins();
        let ice = env.ice()?;
        let (memory_warning_mb, memory_critical_mb) = env.memory_thresholds()?;
        let log_format = env.log_format()?;
        let signaling = env.signaling(cors_origins.clone(), ice)?;
        Ok(Self {
            public_signaling_url: env.public_signaling_url()?,
            tls: env.tls()?,
            redis_url: env.redis_url()?,
            instance_timeout: env.seconds("INSTANCE_TIMEOUT_SECONDS", 6.0, false)?,
            host,
            port,
            signaling_port,
            jwt_secret,
            token_ttl: Duration::from_secs(env.positive("TOKEN_TTL_SECONDS", 3600)?),
            identity_provider: env.identity_provider()?,
            jwt_leeway_secs: env.number("JWT_LEEWAY_SECONDS", 0u64)?,
            issuer_api_key: env.secret("ISSUER_API_KEY"),
            admin_api_key: env.secret("ADMIN_API_KEY"),
            cors_origins,
            memory_check_interval: env.seconds("MEMORY_CHECK_INTERVAL_SECONDS", 30.0, false)?,
            memory_warning_mb,
            memory_critical_mb,
            log_format,
            signaling,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.port, c.signaling_port), (3000, 3001));
        assert_eq!(c.token_ttl, Duration::from_secs(3600));
        assert_eq!(c.signaling.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.signaling.reconnect_grace, Duration::from_secs(15));
        assert_eq!(c.signaling.max_peers_per_room, 50);
        assert!(c.cors_origins.is_none() && c.jwt_secret.is_none());
        assert!(c.identity_provider.keys.is_empty() && c.jwt_leeway_secs == 0);
    }

    #[test]
    fn errors_name_the_variable_and_never_the_value() {
        let e = parse(&[("JWT_SECRET", "short-secret-value")]).unwrap_err();
        assert_eq!(e.var, "JWT_SECRET");
        assert!(!e.to_string().contains("short-secret-value"));
        assert_eq!(
            parse(&[("TURN_URLS", "turn:x")]).unwrap_err().var,
            "TURN_URLS"
        );
        assert_eq!(parse(&[("PORT", "abc")]).unwrap_err().var, "PORT");
        assert_eq!(
            parse(&[("MAX_PEERS_PER_ROOM", "0")]).unwrap_err().var,
            "MAX_PEERS_PER_ROOM"
        );
        assert_eq!(
            parse(&[("HEARTBEAT_INTERVAL_SECONDS", "-1")])
                .unwrap_err()
                .var,
            "HEARTBEAT_INTERVAL_SECONDS"
        );
        assert_eq!(
            parse(&[("MEMORY_WARNING_MB", "500"), ("MEMORY_CRITICAL_MB", "100")])
                .unwrap_err()
                .var,
            "MEMORY_CRITICAL_MB"
        );
    }

    #[test]
    fn fractional_seconds_and_empty_values_are_accepted() {
        let c = parse(&[
            ("HEARTBEAT_INTERVAL_SECONDS", "0.25"),
            ("ADMIN_API_KEY", ""),
            ("RECONNECT_GRACE_SECONDS", "0"),
        ])
        .unwrap();
        assert_eq!(c.signaling.heartbeat_interval, Duration::from_millis(250));
        assert!(c.admin_api_key.is_none());
        assert!(c.signaling.reconnect_grace.is_zero());
    }
}

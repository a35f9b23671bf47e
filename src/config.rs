//! Configuration from the environment (and an optional `.env` file): every setting of
//! `.env.example`, parsed and checked before anything starts. A bad value stops startup with
//! one line naming the variable.

use std::net::IpAddr;
use std::time::Duration;

use switchboard_auth::IceConfig;
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

impl Config {
    /// Reads the configuration through `get` (the process environment in production).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { get };
        let host = match env.raw("HOST") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(h) if h == "localhost" => IpAddr::from([127, 0, 0, 1]),
            Some(h) => h
                .parse()
                .map_err(|_| Env::err("HOST", "must be an IP address such as 0.0.0.0"))?,
        };
        let port = env.number("PORT", 3000u16)?;
        let signaling_port = env.number("SIGNALING_PORT", 3001u16)?;
        if port != 0 && port == signaling_port {
            return Err(Env::err("SIGNALING_PORT", "must differ from PORT"));
        }

        let jwt_secret = env.secret("JWT_SECRET");
        if jwt_secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            return Err(Env::err("JWT_SECRET", "must be at least 32 bytes"));
        }

        let cors = env.list("CORS_ORIGINS");
        let cors_origins = if cors.is_empty() || cors.iter().any(|o| o == "*") {
            None
        } else {
            Some(cors)
        };

        let stun_urls = env.list("STUN_URLS");
        let turn_urls = env.list("TURN_URLS");
        let turn_secret = env.raw("TURN_SECRET");
        if !turn_urls.is_empty() && turn_secret.is_none() {
            return Err(Env::err(
                "TURN_URLS",
                "is set but TURN_SECRET is not (TURN credentials need the shared secret)",
            ));
        }
        if let Some(bad) = stun_urls
            .iter()
            .find(|u| !u.starts_with("stun:") && !u.starts_with("stuns:"))
        {
            let _ = bad;
            return Err(Env::err(
                "STUN_URLS",
                "every URL must start with stun: or stuns:",
            ));
        }
        if turn_urls
            .iter()
            .any(|u| !u.starts_with("turn:") && !u.starts_with("turns:"))
        {
            return Err(Env::err(
                "TURN_URLS",
                "every URL must start with turn: or turns:",
            ));
        }

        let memory_warning_mb = env.positive("MEMORY_WARNING_MB", 200)?;
        let memory_critical_mb = env.positive("MEMORY_CRITICAL_MB", 300)?;
        if memory_critical_mb < memory_warning_mb {
            return Err(Env::err(
                "MEMORY_CRITICAL_MB",
                "must not be below MEMORY_WARNING_MB",
            ));
        }

        let log_format = match env.raw("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(Env::err("LOG_FORMAT", "must be text or json")),
        };

        let max_message_bytes = env.positive("MAX_MESSAGE_BYTES", 65_536)?;
        if max_message_bytes < 1024 {
            return Err(Env::err("MAX_MESSAGE_BYTES", "must be at least 1024"));
        }
        let rate_limit_per_second = env.positive("RATE_LIMIT_PER_SECOND", 50)?;
        let rate_limit_burst = env.positive("RATE_LIMIT_BURST", 200)?;
        let max_connections_per_ip = match env.raw("MAX_CONNECTIONS_PER_IP") {
            None => None,
            Some(_) => Some(env.positive("MAX_CONNECTIONS_PER_IP", 0)? as usize),
        };
        let to_u32 =
            |var: &'static str, v: u64| u32::try_from(v).map_err(|_| Env::err(var, "is too large"));

        let public_signaling_url = env.raw("PUBLIC_SIGNALING_URL");
        if public_signaling_url
            .as_ref()
            .is_some_and(|u| !u.starts_with("ws://") && !u.starts_with("wss://"))
        {
            return Err(Env::err(
                "PUBLIC_SIGNALING_URL",
                "must start with ws:// or wss://",
            ));
        }

        let tls = match (env.raw("TLS_CERT_PATH"), env.raw("TLS_KEY_PATH")) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(Env::err(
                    "TLS_KEY_PATH",
                    "must be set when TLS_CERT_PATH is",
                ))
            }
            (None, Some(_)) => {
                return Err(Env::err(
                    "TLS_CERT_PATH",
                    "must be set when TLS_KEY_PATH is",
                ))
            }
            (Some(cert), Some(key)) => Some(TlsSettings::load(cert.trim(), key.trim())?),
        };

        let signaling = SignalingConfig {
            max_peers_per_room: env.positive("MAX_PEERS_PER_ROOM", 50)? as usize,
            max_rooms: env.positive("MAX_ROOMS", 100_000)? as usize,
            max_message_bytes: max_message_bytes as usize,
            rate_limit_per_second: to_u32("RATE_LIMIT_PER_SECOND", rate_limit_per_second)?,
            rate_limit_burst: to_u32("RATE_LIMIT_BURST", rate_limit_burst)?,
            max_connections: env.positive("MAX_CONNECTIONS", 10_000)? as usize,
            max_connections_per_ip,
            allowed_origins: cors_origins.clone(),
            auth_timeout: env.seconds("AUTH_TIMEOUT_SECONDS", 10.0, false)?,
            heartbeat_interval: env.seconds("HEARTBEAT_INTERVAL_SECONDS", 30.0, false)?,
            peer_timeout: env.seconds("PEER_TIMEOUT_SECONDS", 300.0, false)?,
            reconnect_grace: env.seconds("RECONNECT_GRACE_SECONDS", 15.0, true)?,
            room_sweep_interval: env.seconds("ROOM_SWEEP_INTERVAL_SECONDS", 60.0, false)?,
            room_idle_timeout: env.seconds("ROOM_IDLE_TIMEOUT_SECONDS", 10_800.0, false)?,
            room_empty_grace: env.seconds("ROOM_EMPTY_GRACE_SECONDS", 60.0, true)?,
            outbound_queue_size: env.positive("OUTBOUND_QUEUE_SIZE", 256)? as usize,
            ice: IceConfig {
                stun_urls,
                turn_urls,
                turn_secret,
            },
        };

        let redis_url = env.secret("REDIS_URL");
        if redis_url.as_ref().is_some_and(|u| {
            !u.expose().starts_with("redis://")
                && !u.expose().starts_with("rediss://")
                && !u.expose().starts_with("unix://")
        }) {
            return Err(Env::err(
                "REDIS_URL",
                "must start with redis://, rediss:// or unix://",
            ));
        }
        let instance_timeout = env.seconds("INSTANCE_TIMEOUT_SECONDS", 6.0, false)?;

        Ok(Self {
            redis_url,
            instance_timeout,
            host,
            port,
            signaling_port,
            jwt_secret,
            token_ttl: Duration::from_secs(env.positive("TOKEN_TTL_SECONDS", 3600)?),
            issuer_api_key: env.secret("ISSUER_API_KEY"),
            admin_api_key: env.secret("ADMIN_API_KEY"),
            cors_origins,
            memory_check_interval: env.seconds("MEMORY_CHECK_INTERVAL_SECONDS", 30.0, false)?,
            memory_warning_mb,
            memory_critical_mb,
            public_signaling_url,
            log_format,
            tls,
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

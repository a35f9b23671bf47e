//! Wiring: builds the shared state from the configuration, binds both ports, starts the
//! background tasks and runs until a shutdown signal has drained every connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use switchboard_auth::{ExternalRules, TokenKeys};
use switchboard_monitoring::{Monitor, Thresholds};
use switchboard_signaling::cluster::{ClusterConfig, RedisCluster};
use switchboard_signaling::directory::Directory;
use switchboard_signaling::{Registry, SignalingServer, Stats};

use crate::config::Config;
use crate::jwks::Jwks;
use crate::state::App;

/// How long a drain waits for peers to go before exiting anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The reconnect hint sent with `server-shutdown`.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// How long the cluster publisher gets to send what the drain queued (Redis answers
/// within 2 s or counts as unreachable).
const CLUSTER_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// A key for room tokens when `JWT_SECRET` is not set: 32 bytes from the OS.
fn random_secret() -> std::io::Result<[u8; 32]> {
    let mut secret = [0; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| std::io::Error::other(format!("no random token key: {e}")))?;
    Ok(secret)
}

/// The room token keys: `JWT_SECRET`, or a random key that lives as long as the process,
/// and the identity provider's public keys.
fn token_keys(config: &Config, jwks: Option<&Jwks>) -> std::io::Result<TokenKeys> {
    let idp = &config.identity_provider;
    let rules = ExternalRules {
        issuer: idp.issuer.clone(),
        audience: idp.audience.clone(),
        valid_id: switchboard_signaling::ids::is_valid_id,
    };
    let own = own_token_keys(config)?.with_leeway(config.jwt_leeway_secs);
    Ok(match jwks {
        Some(jwks) => own.with_provider_keys(jwks.keys(), rules),
        None => own.with_external(idp.keys.clone(), rules),
    })
}

/// The HS256 key for Switchboard's own tokens.
fn own_token_keys(config: &Config) -> std::io::Result<TokenKeys> {
    Ok(match &config.jwt_secret {
        Some(secret) => TokenKeys::new(secret.expose().as_bytes()),
        None => {
            tracing::warn!(
                "JWT_SECRET is not set: using a random key; tokens will not survive a restart \
                 and cannot be shared between instances"
            );
            TokenKeys::new(&random_secret()?)
        }
    })
}

/// The Redis broker, when `REDIS_URL` is set (it connects lazily: startup never waits).
fn redis_cluster(config: &Config) -> std::io::Result<Option<Arc<RedisCluster>>> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    let cluster = RedisCluster::new(ClusterConfig {
        redis_url: url.expose().to_owned(),
        instance_timeout: config.instance_timeout,
    })
    .map_err(|e| std::io::Error::other(format!("REDIS_URL: {e}")))?;
    tracing::info!(instance = cluster.instance_id(), "cluster mode (Redis)");
    Ok(Some(cluster))
}

/// The memory monitor, acting on this process's rooms and connections.
fn memory_monitor(
    config: &Config,
    registry: &Arc<Registry>,
    signaling: &SignalingServer,
) -> Arc<Monitor> {
    let janitor = Arc::new(crate::janitor::Rooms {
        registry: registry.clone(),
        signaling: signaling.clone(),
    });
    Arc::new(Monitor::new(
        janitor,
        Thresholds {
            warning_mb: config.memory_warning_mb,
            critical_mb: config.memory_critical_mb,
        },
        config.memory_check_interval,
        config.signaling.heartbeat_interval * 2,
    ))
}

/// Runs the server until SIGINT/SIGTERM, then drains.
pub async fn run(config: Config) -> std::io::Result<()> {
    let idp = &config.identity_provider;
    let jwks = idp.jwks_url.as_ref().map(|url| {
        Arc::new(Jwks::new(
            url.expose().to_owned(),
            idp.jwks_refresh,
            idp.keys.clone(),
        ))
    });
    let keys = token_keys(&config, jwks.as_deref())?;
    let http_listener = TcpListener::bind((config.host, config.port)).await?;
    let signaling_listener = TcpListener::bind((config.host, config.signaling_port)).await?;
    let http_addr = http_listener.local_addr()?;
    let signaling_addr = signaling_listener.local_addr()?;

    let stats = Arc::new(Stats::default());
    let signaling_config = Arc::new(config.signaling.clone());
    let cluster = redis_cluster(&config)?;
    let registry = match &cluster {
        Some(cluster) => Registry::with_broker(signaling_config, stats.clone(), cluster.clone()),
        None => Registry::new(signaling_config, stats.clone()),
    };
    let signaling = SignalingServer::new(registry.clone(), keys.clone());
    // The cluster outlives the drain (departing peers are published through it), so it
    // stops on a token of its own.
    let stop_cluster = CancellationToken::new();
    let cluster_tasks = cluster
        .as_ref()
        .map(|c| c.start(registry.clone(), stop_cluster.clone()));
    let monitor = memory_monitor(&config, &registry, &signaling);
    let app = Arc::new(App {
        monitor: monitor.clone(),
        keys,
        registry: registry.clone(),
        stats,
        signaling_port: signaling_addr.port(),
        started: Instant::now(),
        tokens_issued: AtomicU64::new(0),
        password_slots: Semaphore::new(2),
        draining: AtomicBool::new(false),
        jwks: jwks.clone(),
        rooms: Directory::new(registry.clone()),
        config,
    });

    // What serves connections runs until `stop`, which comes once the drain is over.
    let stop = CancellationToken::new();
    let background = TaskTracker::new();
    let until_stopped = |task: BoxFuture<'static, ()>| {
        background.spawn(stop.clone().run_until_cancelled_owned(task));
    };
    until_stopped(match &app.config.tls {
        Some(tls) => signaling
            .clone()
            .serve_tls(signaling_listener, tls.acceptor())
            .boxed(),
        None => signaling.clone().serve(signaling_listener).boxed(),
    });
    until_stopped(signaling.clone().run_heartbeats().boxed());
    until_stopped(registry.clone().run_sweeper().boxed());
    until_stopped(monitor.run().boxed());
    if let Some(jwks) = jwks {
        until_stopped(jwks.run().boxed());
    }
    until_stopped(crate::allocator::trim_every(app.config.memory_check_interval).boxed());
    background.close();
    let http = Http::serve(&app, http_listener);
    tracing::info!(http_addr = %http_addr, signaling_addr = %signaling_addr, "listening");

    shutdown_signal().await;
    Shutdown {
        app,
        signaling,
        stop,
        background,
        stop_cluster,
        cluster_tasks,
        http,
    }
    .run()
    .await;
    Ok(())
}

/// The HTTP server task and the switch that stops it gracefully.
struct Http {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Http {
    fn serve(app: &Arc<App>, listener: TcpListener) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let routes = crate::routes::all(app.clone());
        let task = match &app.config.tls {
            Some(tls) => tokio::spawn(crate::tls::serve_https(
                routes,
                listener,
                tls.acceptor(),
                stopped,
            )),
            None => tokio::spawn(
                warp::serve(routes)
                    .incoming(listener)
                    .graceful(stopped)
                    .run(),
            ),
        };
        Self { stop, task }
    }
}

/// What a shutdown stops, in its order (`docs/lifecycle.md#shutdown`).
struct Shutdown {
    app: Arc<App>,
    signaling: SignalingServer,
    /// Stops the accept loop, heartbeats, sweeper and monitor (`background`).
    stop: CancellationToken,
    background: TaskTracker,
    stop_cluster: CancellationToken,
    cluster_tasks: Option<TaskTracker>,
    http: Http,
}

impl Shutdown {
    /// Refuses upgrades and tells every peer, waits for the closing handshakes (bounded),
    /// stops what served them, lets the cluster publish the departures, then stops HTTP.
    async fn run(self) {
        let signaling = &self.signaling;
        tracing::info!(
            connections = signaling.connections(),
            "shutdown signal received, draining"
        );
        self.app.draining.store(true, Relaxed);
        signaling.drain(RECONNECT_AFTER);
        if tokio::time::timeout(DRAIN_TIMEOUT, signaling.wait_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = signaling.connections(),
                "drain deadline passed; exiting with connections open"
            );
        }
        self.stop.cancel();
        self.background.wait().await;
        // The cluster last: its publisher sends the departures the drain queued, then ends.
        self.stop_cluster.cancel();
        if let Some(tasks) = self.cluster_tasks {
            if tokio::time::timeout(CLUSTER_FLUSH_TIMEOUT, tasks.wait())
                .await
                .is_err()
            {
                tracing::warn!("cluster publisher did not finish in time; exiting anyway");
            }
        }
        let _ = self.http.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), self.http.task).await;
        tracing::info!(remaining = signaling.connections(), "drained, exiting");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

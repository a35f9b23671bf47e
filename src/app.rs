//! Wiring: builds the shared state from the configuration, binds both ports, starts the
//! background tasks and runs until a shutdown signal has drained every connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use switchboard_auth::TokenKeys;
use switchboard_monitoring::{Monitor, Thresholds};
use switchboard_signaling::cluster::{ClusterConfig, RedisCluster};
use switchboard_signaling::directory::Directory;
use switchboard_signaling::{Registry, SignalingServer, Stats};

use crate::config::Config;
use crate::state::App;

/// How long a drain waits for peers to go before exiting anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The reconnect hint sent with `server-shutdown`.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// A key for room tokens when `JWT_SECRET` is not set: 32 bytes from the OS.
fn random_secret() -> std::io::Result<[u8; 32]> {
    let mut secret = [0; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| std::io::Error::other(format!("no random token key: {e}")))?;
    Ok(secret)
}

/// Runs the server until SIGINT/SIGTERM, then drains.
pub async fn run(config: Config) -> std::io::Result<()> {
    let keys = match &config.jwt_secret {
        Some(secret) => TokenKeys::new(secret.expose().as_bytes()),
        None => {
            tracing::warn!(
                "JWT_SECRET is not set: using a random key; tokens will not survive a restart \
                 and cannot be shared between instances"
            );
            TokenKeys::new(&random_secret()?)
        }
    };

    let http_listener = TcpListener::bind((config.host, config.port)).await?;
    let signaling_listener = TcpListener::bind((config.host, config.signaling_port)).await?;
    let http_addr = http_listener.local_addr()?;
    let signaling_addr = signaling_listener.local_addr()?;

    let stats = Arc::new(Stats::default());
    let signaling_config = Arc::new(config.signaling.clone());
    let cluster = match &config.redis_url {
        None => None,
        Some(url) => {
            let cluster = RedisCluster::new(ClusterConfig {
                redis_url: url.expose().to_owned(),
                instance_timeout: config.instance_timeout,
            })
            .map_err(|e| std::io::Error::other(format!("REDIS_URL: {e}")))?;
            tracing::info!(instance = cluster.instance_id(), "cluster mode (Redis)");
            Some(cluster)
        }
    };
    let registry = match &cluster {
        Some(cluster) => Registry::with_broker(signaling_config, stats.clone(), cluster.clone()),
        None => Registry::new(signaling_config, stats.clone()),
    };
    let signaling = SignalingServer::new(registry.clone(), keys.clone());
    let cluster_tasks = cluster
        .as_ref()
        .map(|c| c.start(registry.clone()))
        .unwrap_or_default();

    let janitor = Arc::new(crate::janitor::Rooms {
        registry: registry.clone(),
        signaling: signaling.clone(),
    });
    let monitor = Arc::new(Monitor::new(
        janitor,
        Thresholds {
            warning_mb: config.memory_warning_mb,
            critical_mb: config.memory_critical_mb,
        },
        config.memory_check_interval,
        config.signaling.heartbeat_interval * 2,
    ));

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
        rooms: Directory::new(registry.clone()),
        config,
    });

    let accept = match &app.config.tls {
        Some(tls) => tokio::spawn(
            signaling
                .clone()
                .serve_tls(signaling_listener, tls.acceptor()),
        ),
        None => tokio::spawn(signaling.clone().serve(signaling_listener)),
    };
    let heartbeats = tokio::spawn(signaling.clone().run_heartbeats());
    let sweeper = tokio::spawn(registry.clone().run_sweeper());
    let memory = tokio::spawn(monitor.run());
    tokio::spawn(crate::allocator::trim_every(
        app.config.memory_check_interval,
    ));

    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_stopped = async {
        let _ = http_stopped.await;
    };
    let http = match &app.config.tls {
        Some(tls) => tokio::spawn(crate::tls::serve_https(
            crate::routes::all(app.clone()),
            http_listener,
            tls.acceptor(),
            http_stopped,
        )),
        None => tokio::spawn(
            warp::serve(crate::routes::all(app.clone()))
                .incoming(http_listener)
                .graceful(http_stopped)
                .run(),
        ),
    };

    tracing::info!(http_addr = %http_addr, signaling_addr = %signaling_addr, "listening");

    shutdown_signal().await;
    tracing::info!(
        connections = signaling.connections(),
        "shutdown signal received, draining"
    );
    app.draining.store(true, Relaxed);
    signaling.drain(RECONNECT_AFTER);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while signaling.connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    accept.abort();
    heartbeats.abort();
    sweeper.abort();
    memory.abort();
    // Leave the cluster tasks running until here: departing peers are published first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for task in cluster_tasks {
        task.abort();
    }
    let _ = stop_http.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    tracing::info!(remaining = signaling.connections(), "drained, exiting");
    Ok(())
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

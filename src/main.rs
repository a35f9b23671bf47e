//! `switchboard`: a WebRTC signaling server for collaborative apps.
//!
//! One process serves the HTTP API (tokens, rooms, operations) and the signaling WebSocket
//! on a separate port. See `README.md` and `docs/` for the contract.

mod access;
mod allocator;
mod api;
mod app;
mod config;
mod http;
mod janitor;
mod jwks;
mod ops;
mod passwords;
mod probes;
mod routes;
mod state;
mod tls;
mod web;

use std::process::ExitCode;

use config::{Config, LogFormat};

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    allocator::return_large_blocks_to_the_os();
    // A missing .env is normal; a malformed one is a configuration error.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("switchboard: invalid configuration: .env: {e}");
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_lookup(&|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    // On one core (a CPU quota of one, or pinned) a work-stealing scheduler has nobody to
    // steal from and only adds cost: every task runs on the main thread instead. Blocking
    // work (password hashing, memory sampling) still goes to the blocking pool.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut builder, scheduler) = if cores == 1 {
        (
            tokio::runtime::Builder::new_current_thread(),
            "current-thread",
        )
    } else {
        (tokio::runtime::Builder::new_multi_thread(), "multi-thread")
    };
    tracing::info!(cores, scheduler, "runtime");
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

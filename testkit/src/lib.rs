//! The processes that Switchboard's black-box tests (`tests/`), the load generator
//! (`switchboard-bench`) and the churn soak (`switchboard-soak`) run against, started one way:
//! the real `switchboard` binary on port 0 with its actual addresses read from its
//! `listening` log line and everything it prints recorded; a real `redis-server` on a free
//! loopback port; and [`eventually`] for conditions that can only be polled.
//!
//! A development crate for those three alone: the server never depends on it.

mod eventually;
mod process;
mod redis;
mod switchboard;

pub use eventually::{eventually, eventually_blocking};
pub use process::{pin_to_core, Process, STOP_TIMEOUT};
pub use redis::Redis;
pub use switchboard::{
    switchboard_binary, Exited, Launch, Switchboard, JWT_SECRET, STARTUP_TIMEOUT,
};

/// A loopback port that was free a moment ago: the kernel picks it for a listener that is
/// closed at once, so the caller can hand it to a process that binds it itself.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

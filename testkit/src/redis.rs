//! A real `redis-server` for cluster runs: on a free loopback port, without persistence, in
//! a temporary working directory, ready once it answers `PING`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::process::Process;
use crate::{eventually_blocking, free_port, STARTUP_TIMEOUT};

/// A running `redis-server`; killed when dropped.
pub struct Redis {
    port: u16,
    core: Option<usize>,
    process: Process,
}

impl Redis {
    /// Starts one on a free port and waits until it answers `PING`.
    pub fn start() -> io::Result<Self> {
        Self::launch(free_port()?, None)
    }

    /// Like [`Redis::start`], with the server allowed on `core` only.
    pub fn start_on_core(core: usize) -> io::Result<Self> {
        Self::launch(free_port()?, Some(core))
    }

    fn launch(port: u16, core: Option<usize>) -> io::Result<Self> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"]);
        let process = Process::start(command, core).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    "redis-server not found on PATH: cluster runs start their own Redis \
                     (Debian/Ubuntu: apt-get install redis-server)",
                )
            } else {
                e
            }
        })?;
        let mut redis = Self {
            port,
            core,
            process,
        };
        // Done when it answers, or when it is gone (and will never answer).
        let exited = eventually_blocking(STARTUP_TIMEOUT, || {
            if let Some(status) = redis.process.wait_exit(Duration::ZERO) {
                return Ok(Some(status));
            }
            if redis.answers_ping() {
                return Ok(None);
            }
            Err(())
        });
        match exited {
            Ok(None) => Ok(redis),
            Ok(Some(status)) => Err(io::Error::other(format!(
                "redis-server on port {port} exited at startup ({status})\n{}",
                redis.process.transcript()
            ))),
            Err(()) => Err(io::Error::other(format!(
                "redis-server on port {port} did not answer PING within {STARTUP_TIMEOUT:?}"
            ))),
        }
    }

    fn answers_ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`, for `REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills it (it keeps nothing, so there is nothing to shut down gracefully): an outage,
    /// as far as its clients can tell.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Stops it and starts a new, empty one on the same port.
    pub fn restart_empty(&mut self) -> io::Result<()> {
        self.stop();
        *self = Self::launch(self.port, self.core)?;
        Ok(())
    }
}

//! The `switchboard` binary as a child process: which binary, with which settings, and the
//! addresses it actually listens on (it is always started on port 0 and reports the ports it
//! got in its `listening` log line).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::Value;

use crate::process::{Process, WorkDir};

/// The HMAC key every server the kit starts signs tokens with, so callers can forge and
/// verify tokens themselves.
pub const JWT_SECRET: &str = "switchboard-testkit-secret-0123456789abcdef-0123456789";
/// Longest a server may take to print its `listening` line, or to refuse its settings.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The built `switchboard` next to the running executable: `target/<profile>/switchboard`
/// beside the bench or the soak, one directory up from an integration test (which runs from
/// `target/<profile>/deps/`). Cargo builds it for the root package's integration tests; the
/// bench and the soak need `cargo build [--release] -p switchboard` first.
pub fn switchboard_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("switchboard")
}

/// How to start one server: which binary, its environment, its `.env` file, its core.
#[derive(Clone)]
pub struct Launch {
    binary: PathBuf,
    vars: Vec<(String, String)>,
    dotenv: Option<String>,
    core: Option<usize>,
}

impl Default for Launch {
    fn default() -> Self {
        Self::new()
    }
}

impl Launch {
    /// [`switchboard_binary`] with only the base environment (nothing inherited): `PATH`,
    /// loopback, port 0 for both listeners, JSON logs at `info`, and [`JWT_SECRET`].
    pub fn new() -> Self {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        Self {
            binary: switchboard_binary(),
            vars: Vec::new(),
            dotenv: None,
            core: None,
        }
        .envs(&[
            ("PATH", path.as_str()),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("SIGNALING_PORT", "0"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("JWT_SECRET", JWT_SECRET),
        ])
    }

    /// Runs another `switchboard` binary.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = path.into();
        self
    }

    /// Sets (or overrides) one variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets (or overrides) several variables.
    pub fn envs<V: AsRef<str>>(mut self, vars: &[(&str, V)]) -> Self {
        for (key, value) in vars {
            self = self.env(key, value.as_ref());
        }
        self
    }

    /// Removes a variable from the base environment.
    pub fn unset(mut self, key: &str) -> Self {
        self.vars.retain(|(k, _)| k != key);
        self
    }

    /// Writes a `.env` file with these contents into the server's working directory.
    pub fn dotenv(mut self, contents: &str) -> Self {
        self.dotenv = Some(contents.to_string());
        self
    }

    /// Lets the server run on this one CPU only (as `taskset -c core` would).
    pub fn on_core(mut self, core: usize) -> Self {
        self.core = Some(core);
        self
    }

    /// Starts the server and waits (at most [`STARTUP_TIMEOUT`]) for its `listening` line.
    pub fn start(self) -> io::Result<Switchboard> {
        let mut process = self.spawn()?;
        let (http_addr, signaling_addr) =
            process.wait_for_line("its `listening` line", STARTUP_TIMEOUT, listening_addrs)?;
        Ok(Switchboard {
            process,
            http_addr,
            signaling_addr,
        })
    }

    /// Runs the server expecting it to exit on its own within [`STARTUP_TIMEOUT`] (it refuses
    /// its settings); a server still running then is killed and reported as the error.
    pub fn expect_exit(self) -> io::Result<Exited> {
        let described = self.to_string();
        let mut process = self.spawn()?;
        match process.wait_exit(STARTUP_TIMEOUT) {
            Some(status) => Ok(Exited {
                status,
                stdout: process.stdout(),
                stderr: process.stderr(),
            }),
            None => {
                process.kill();
                Err(io::Error::other(format!(
                    "switchboard with {described} did not exit within {STARTUP_TIMEOUT:?}\n{}",
                    process.transcript()
                )))
            }
        }
    }

    fn spawn(&self) -> io::Result<Process> {
        let dir = WorkDir::new()?;
        if let Some(contents) = &self.dotenv {
            std::fs::write(dir.path().join(".env"), contents)?;
        }
        // Absolute: a relative path would be looked up from the server's working directory.
        let mut command = Command::new(std::path::absolute(&self.binary)?);
        command.env_clear().envs(self.vars.iter().cloned());
        Process::start_in(command, dir, self.core).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{e} (build it with `cargo build [--release] -p switchboard`)"),
            )
        })
    }
}

/// The variables that differ from the base environment (`-NAME` for a removed one).
impl fmt::Display for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = Launch::new();
        let changed = self
            .vars
            .iter()
            .filter(|kv| !base.vars.contains(kv))
            .map(|(k, v)| format!("{k}={v}"));
        let removed = base
            .vars
            .iter()
            .filter(|(k, _)| !self.vars.iter().any(|(k2, _)| k2 == k))
            .map(|(k, _)| format!("-{k}"));
        let parts: Vec<String> = changed.chain(removed).collect();
        f.write_str(&parts.join(" "))
    }
}

/// A running server and the addresses it reported; killed when dropped.
pub struct Switchboard {
    /// The process: its output, signals, memory.
    pub process: Process,
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// Where the signaling WebSocket listens.
    pub signaling_addr: SocketAddr,
}

/// What a server that exited on its own left behind.
#[derive(Debug)]
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// All of stdout.
    pub stdout: String,
    /// All of stderr.
    pub stderr: String,
}

impl Exited {
    /// The non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// The addresses in switchboard's `listening` log line
/// (`{"fields":{"message":"listening","http_addr":…,"signaling_addr":…}}`).
fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")? != "listening" {
        return None;
    }
    let addr = |key: &str| fields.get(key)?.as_str()?.parse().ok();
    Some((addr("http_addr")?, addr("signaling_addr")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_both_addresses() {
        let line = r#"{"timestamp":"x","level":"INFO","fields":{"message":"listening","http_addr":"127.0.0.1:4000","signaling_addr":"127.0.0.1:4001"}}"#;
        let (http, sig) = listening_addrs(line).unwrap();
        assert_eq!((http.port(), sig.port()), (4000, 4001));
        assert_eq!(listening_addrs(&line.replace("listening", "started")), None);
        assert_eq!(listening_addrs("listening on 127.0.0.1:4000"), None);
    }

    #[test]
    fn a_launch_is_described_by_what_differs_from_the_base() {
        let launch = Launch::new()
            .env("PORT", "99999")
            .unset("JWT_SECRET")
            .env("A", "1");
        assert_eq!(launch.to_string(), "PORT=99999 A=1 -JWT_SECRET");
    }

    #[test]
    fn a_relative_binary_path_is_found_from_the_callers_directory() {
        let err = Launch::new()
            .binary("no/such/switchboard")
            .start()
            .err()
            .unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert!(
            err.to_string()
                .contains(&cwd.join("no/such/switchboard").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = Launch::new()
            .binary("/nonexistent/switchboard")
            .start()
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("cargo build"), "{err}");
    }
}

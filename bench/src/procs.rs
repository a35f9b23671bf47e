//! The processes under test: starting `switchboard` or the ceiling forwarder pinned to one
//! core, finding their addresses in their first log line, and reading their CPU time and
//! resident memory from `/proc`.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a process gets to print its `listening` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Which server a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The real server, `target/release/switchboard`.
    Switchboard,
    /// `switchboard-bench ceiling-server`, the bare forwarder.
    Ceiling,
}

impl Kind {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Switchboard => "switchboard",
            Kind::Ceiling => "ceiling",
        }
    }
}

/// Where a server under test listens.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    /// HTTP API and signaling WebSocket of `switchboard`.
    Switchboard {
        /// `POST /api/auth/token` lives here.
        http: SocketAddr,
        /// `ws://<sig>/ws?token=`.
        sig: SocketAddr,
    },
    /// The forwarder: `ws://<addr>/<room>`.
    Ceiling {
        /// Its only port.
        addr: SocketAddr,
    },
}

/// A running server process, killed when dropped.
pub struct Server {
    /// Which server.
    pub kind: Kind,
    /// Its addresses.
    pub endpoint: Endpoint,
    /// Its pid (the server itself: no wrapper process).
    pub pid: u32,
    /// When its `listening` line was read (its heartbeat timer starts just before).
    pub started: Instant,
    child: Child,
}

/// Pins the calling thread (and so a process that calls it before starting threads, or a
/// child in `pre_exec`) to one core, like `taskset -c <core>`.
pub fn pin_to_core(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit set for which all-zero is valid; CPU_SET only writes
    // into it, and sched_setaffinity only reads it. Both are async-signal-safe.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In a child before `exec`: pin it to `core`, and have the kernel kill it if this
/// generator dies (so an interrupted bench leaves no server or Redis behind).
fn child_setup(core: usize) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and only changes this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    pin_to_core(core)
}

/// A `redis-server` on a free loopback port, without persistence, pinned to one core;
/// killed when dropped.
pub struct Redis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its pid.
    pub pid: u32,
    child: Child,
}

impl Redis {
    /// Starts `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no` pinned to
    /// `core` and waits (at most [`STARTUP_TIMEOUT`]) until it answers `PING`.
    pub fn start(core: usize) -> io::Result<Self> {
        // A free port: the kernel picks one, the listener is closed, redis binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: as in `Server::start`.
        unsafe {
            cmd.pre_exec(move || child_setup(core));
        }
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    "redis-server not found on PATH: the cluster workload starts its own Redis \
                     (Debian/Ubuntu: apt-get install redis-server)",
                )
            } else {
                io::Error::other(format!("cannot start redis-server: {e}"))
            }
        })?;
        let mut redis = Self {
            port,
            pid: child.id(),
            child,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if redis.ping() {
                return Ok(redis);
            }
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(io::Error::other(format!(
                    "redis-server on port {port} exited at startup ({status})"
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "redis-server on port {port} did not answer PING within {STARTUP_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// `redis://127.0.0.1:P/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The cores the process may run on, as the kernel reports them.
    pub fn cpus_allowed(&self) -> String {
        status_field(self.pid, "Cpus_allowed_list:").unwrap_or_else(|| "?".into())
    }

    /// SIGTERM, then SIGKILL if it has not exited in time.
    pub fn stop(mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGTERM, then SIGKILL if `child` has not exited within [`STOP_TIMEOUT`].
fn terminate(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Settings for `switchboard` in every run: loopback, ephemeral ports, JSON logs, limits
/// raised so the load generator measures throughput, not refusals.
fn switchboard_env(extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("SIGNALING_PORT", "0"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
        ("JWT_SECRET", crate::client::JWT_SECRET),
        ("MAX_CONNECTIONS", "19000"),
        ("RATE_LIMIT_PER_SECOND", "1000000"),
        ("RATE_LIMIT_BURST", "1000000"),
        ("MAX_ROOMS", "200000"),
        // The idle run holds ~100 MB; keep memory-pressure cleanup out of the measurement.
        ("MEMORY_WARNING_MB", "8000"),
        ("MEMORY_CRITICAL_MB", "16000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.clone()));
    }
    env
}

impl Server {
    /// Starts `bin` (the `switchboard` binary) pinned to `core`, with `extra` settings.
    pub fn start_switchboard(
        bin: &Path,
        core: usize,
        extra: &[(&str, String)],
    ) -> io::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.env_clear().envs(switchboard_env(extra));
        Self::start(Kind::Switchboard, cmd, core)
    }

    /// Starts this executable's `ceiling-server` subcommand pinned to `core`.
    pub fn start_ceiling(core: usize, heartbeat_secs: u64) -> io::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env_clear()
            .arg("ceiling-server")
            .arg("--heartbeat-secs")
            .arg(heartbeat_secs.to_string());
        Self::start(Kind::Ceiling, cmd, core)
    }

    fn start(kind: Kind, mut cmd: Command, core: usize) -> io::Result<Self> {
        // No stray `.env` from the working directory may change the settings.
        cmd.current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only makes one
        // async-signal-safe system call.
        unsafe {
            cmd.pre_exec(move || child_setup(core));
        }
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        // Keep draining both pipes for the life of the process so it never blocks on a log
        // write; only the first `listening` line is of interest.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && line.contains("listening") {
                    sent = tx.send(line).is_ok();
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = err_tx.send(line);
            }
        });
        let fail = |mut child: Child, what: String| {
            let _ = child.kill();
            let _ = child.wait();
            let stderr: Vec<String> = err_rx.try_iter().collect();
            io::Error::other(format!(
                "{} {what}; stderr: {}",
                kind.name(),
                stderr.join(" | ")
            ))
        };
        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) => line,
            Err(_) => return Err(fail(child, "printed no `listening` line".into())),
        };
        let started = Instant::now();
        let endpoint = match parse_listening(kind, &line) {
            Some(ep) => ep,
            None => return Err(fail(child, format!("unreadable listening line: {line}"))),
        };
        Ok(Self {
            kind,
            endpoint,
            pid,
            started,
            child,
        })
    }

    /// CPU time (user + system, all threads) so far.
    pub fn cpu(&self) -> Duration {
        cpu_time(self.pid).unwrap_or_default()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_field(self.pid, "VmRSS:")
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }

    /// The cores the process may run on, as the kernel reports them.
    pub fn cpus_allowed(&self) -> String {
        status_field(self.pid, "Cpus_allowed_list:").unwrap_or_else(|| "?".into())
    }

    /// SIGTERM, then SIGKILL if it has not exited in time.
    pub fn stop(mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Finds the addresses in a `listening` line: switchboard's JSON log line
/// (`fields.http_addr`, `fields.signaling_addr`) or the ceiling's `{"addr"}`.
fn parse_listening(kind: Kind, line: &str) -> Option<Endpoint> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let addr = |v: &serde_json::Value| v.as_str()?.parse::<SocketAddr>().ok();
    match kind {
        Kind::Switchboard => {
            let fields = v.get("fields")?;
            Some(Endpoint::Switchboard {
                http: addr(fields.get("http_addr")?)?,
                sig: addr(fields.get("signaling_addr")?)?,
            })
        }
        Kind::Ceiling => Some(Endpoint::Ceiling {
            addr: addr(v.get("addr")?)?,
        }),
    }
}

fn status_field(pid: u32, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
}

/// utime + stime of a whole process, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&stat, clock_ticks())
}

/// CPU time of this process (the load generator).
pub fn self_cpu() -> Duration {
    cpu_time(std::process::id()).unwrap_or_default()
}

/// The cores this process may run on.
pub fn self_cpus_allowed() -> String {
    status_field(std::process::id(), "Cpus_allowed_list:").unwrap_or_else(|| "?".into())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn parse_stat_cpu(stat: &str, ticks_per_sec: u64) -> Option<Duration> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')' come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_sec))
}

/// Busy time of every core since boot (user, nice, system, irq, softirq, steal), from
/// `/proc/stat`; used to see how much CPU other processes took during a window.
pub fn cores_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .enumerate()
                // user nice system idle iowait irq softirq steal
                .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks())
}

/// One line about the machine: CPU model, cores, memory, kernel.
pub fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    format!(
        "{model}; cpus online {online} (this process may use {cores}); {:.1} GiB RAM; Linux {kernel}",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_skips_a_command_name_with_spaces_and_parens() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 9 0 0";
        assert_eq!(parse_stat_cpu(stat, 100), Some(Duration::from_secs(3)));
    }

    #[test]
    fn listening_lines_of_both_servers_are_understood() {
        let line = r#"{"timestamp":"x","level":"INFO","fields":{"message":"listening","http_addr":"127.0.0.1:4000","signaling_addr":"127.0.0.1:4001"}}"#;
        match parse_listening(Kind::Switchboard, line) {
            Some(Endpoint::Switchboard { http, sig }) => {
                assert_eq!(http.port(), 4000);
                assert_eq!(sig.port(), 4001);
            }
            other => panic!("unexpected {other:?}"),
        }
        let line = r#"{"message":"listening","addr":"127.0.0.1:5000"}"#;
        assert!(matches!(
            parse_listening(Kind::Ceiling, line),
            Some(Endpoint::Ceiling { addr }) if addr.port() == 5000
        ));
    }
}

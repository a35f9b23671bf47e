//! The processes under test: `switchboard` (started through `switchboard-testkit`) or the
//! ceiling forwarder, pinned to one core, and their CPU time, resident memory and cores read
//! from `/proc`.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_testkit::{Launch, Process, STARTUP_TIMEOUT};

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
    process: Process,
}

/// Settings for `switchboard` in every run, on top of the kit's loopback, port 0 and JSON
/// logs: limits raised so the load generator measures throughput, not refusals.
const SWITCHBOARD_SETTINGS: [(&str, &str); 6] = [
    ("MAX_CONNECTIONS", "19000"),
    ("RATE_LIMIT_PER_SECOND", "1000000"),
    ("RATE_LIMIT_BURST", "1000000"),
    ("MAX_ROOMS", "200000"),
    // The idle run holds ~100 MB; keep memory-pressure cleanup out of the measurement.
    ("MEMORY_WARNING_MB", "8000"),
    ("MEMORY_CRITICAL_MB", "16000"),
];

impl Server {
    /// Starts `bin` (the `switchboard` binary) pinned to `core`, with `extra` settings.
    pub fn start_switchboard(
        bin: &Path,
        core: usize,
        extra: &[(&str, String)],
    ) -> io::Result<Self> {
        let server = Launch::new()
            .binary(bin)
            .envs(&SWITCHBOARD_SETTINGS)
            .envs(extra)
            .on_core(core)
            .start()?;
        let endpoint = Endpoint::Switchboard {
            http: server.http_addr,
            sig: server.signaling_addr,
        };
        Ok(Self::new(Kind::Switchboard, endpoint, server.process))
    }

    /// Starts this executable's `ceiling-server` subcommand pinned to `core`.
    pub fn start_ceiling(core: usize, heartbeat_secs: u64) -> io::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .env_clear()
            .arg("ceiling-server")
            .arg("--heartbeat-secs")
            .arg(heartbeat_secs.to_string());
        let mut process = Process::start(command, Some(core))?;
        let addr = process.wait_for_line("its `listening` line", STARTUP_TIMEOUT, ceiling_addr)?;
        Ok(Self::new(
            Kind::Ceiling,
            Endpoint::Ceiling { addr },
            process,
        ))
    }

    fn new(kind: Kind, endpoint: Endpoint, process: Process) -> Self {
        Self {
            kind,
            endpoint,
            pid: process.pid(),
            started: Instant::now(),
            process,
        }
    }

    /// CPU time (user + system, all threads) so far.
    pub fn cpu(&self) -> Duration {
        cpu_time(self.pid).unwrap_or_default()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.process.rss_kib().unwrap_or(0)
    }

    /// The cores the process may run on, as the kernel reports them.
    pub fn cpus_allowed(&self) -> String {
        cpus_allowed(self.pid)
    }

    /// SIGTERM, then SIGKILL if it has not exited in time.
    pub fn stop(mut self) {
        self.process.stop();
    }
}

/// The forwarder's `listening` line: `{"message":"listening","addr":"127.0.0.1:P"}`.
fn ceiling_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")? != "listening" {
        return None;
    }
    v.get("addr")?.as_str()?.parse().ok()
}

/// The cores process `pid` may run on, as the kernel reports them.
pub fn cpus_allowed(pid: u32) -> String {
    status_field(pid, "Cpus_allowed_list:").unwrap_or_else(|| "?".into())
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
    cpus_allowed(std::process::id())
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
    fn the_ceiling_listening_line_is_understood() {
        let line = r#"{"message":"listening","addr":"127.0.0.1:5000"}"#;
        assert_eq!(ceiling_addr(line).map(|a| a.port()), Some(5000));
        assert_eq!(
            ceiling_addr(r#"{"message":"started","addr":"127.0.0.1:5000"}"#),
            None
        );
    }
}

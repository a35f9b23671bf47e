//! `switchboard-bench`: the load generator for Switchboard, and the ceiling it is compared
//! with.
//!
//! `switchboard-bench all` runs every workload against a fresh `switchboard` process and
//! then against a fresh bare forwarder (`switchboard-bench ceiling-server`), each server
//! pinned to one core and this generator to another, and prints one table of figures with
//! their ratio to the ceiling and the performance targets. See `docs/performance.md`.

mod ceiling;
mod channels;
mod client;
mod procs;
mod report;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use procs::{Kind, Server};
use report::{Goal, Row, Run};
use switchboard_testkit::{eventually, Redis};

const USAGE: &str = "\
usage: switchboard-bench [all|tokens|connect|relay|fanout|idle|cluster|channels] [options]
       switchboard-bench ceiling-server [--addr 127.0.0.1:0] [--heartbeat-secs 30]

`cluster` (not part of `all`) starts redis-server on a free loopback port and two
switchboard instances sharing it (REDIS_URL), all three on the server core, and runs the
relay workload (--pairs, then --small-pairs) with both peers of every pair on instance A
(same) and with the offerer on A and the answerer on B (cross); then, for latency, the
--small-pairs pairs again at a fixed offered load (--rate deliveries/s, open loop: offers
on a timer, each answered once). Needs redis-server.

`channels` (not part of `all`) measures Redis pub/sub alone, for the choice of channels in
cluster mode: --relays relays of --payload bytes over --rooms rooms between two subscriber
connections, on one channel per instance (packed --batch to a PUBLISH, and one per
PUBLISH) and on one channel per room; then per-room SUBSCRIBE/UNSUBSCRIBE churn. Defaults:
--rooms 10000 --relays 500000 --batch 11. Needs redis-server.

Every run starts a fresh switchboard (or ceiling forwarder) process pinned to the server
core; this generator runs on the generator core. Options (defaults in brackets):
  --server-bin PATH      switchboard binary [target/release/switchboard next to this one]
  --server-core N        core for the servers [0]      --gen-core N   core for this generator [1]
  --rounds N             rounds per throughput workload, switchboard and ceiling
                         interleaved, each on a fresh process; figures are medians [3]
  --warmup SECS          [0.5]    --window SECS   measurement window per run [2.5]
  --pairs N              relay pairs [100]          --small-pairs N   second relay run [10]
  --outstanding N        offers in flight per pair [4]    --payload BYTES   SDP size [1024]
  --rate N               cluster: offered deliveries/s of the paced latency run, 0: none [20000]
  --fanout-rooms N       [20]     --room-size N   [10]    --hz N   cursor updates/s per peer [20]
  --peers N              idle peers [10000]         --concurrency N   connects in flight [64]
  --connect-peers N      peers per connect round [5000]
  --heartbeat-secs N     server heartbeat interval in the idle run [30]
  --token-clients N      keep-alive HTTP connections asking for tokens [32]
  --json PATH            also write the rows as JSON
  --noise-limit PCT      a round in which other processes took more than PCT % of a core is
                         repeated, the least disturbed attempt kept [25]
  --repeat-allowance SECS  total time spent on such repeats, to stay under 3 minutes [30]
  --nice N               scheduling priority of this generator and the servers (inherited);
                         below 0 needs root and keeps other processes' builds from
                         skewing the figures [-10]
  --wait-quiet SECS      first wait up to SECS for other processes to leave the cores
                         (under 20% of a core for 3 s in a row) [0]
";

/// Everything a run can be told.
#[derive(Debug, Clone)]
struct Options {
    server_bin: PathBuf,
    server_core: usize,
    gen_core: usize,
    rounds: usize,
    warmup: Duration,
    window: Duration,
    pairs: usize,
    small_pairs: usize,
    outstanding: usize,
    payload: usize,
    fanout_rooms: usize,
    room_size: usize,
    hz: f64,
    peers: usize,
    connect_peers: usize,
    concurrency: usize,
    heartbeat_secs: u64,
    token_clients: usize,
    rate: f64,
    rooms: usize,
    relays: usize,
    batch: usize,
    json: Option<PathBuf>,
    wait_quiet: Duration,
    nice: i32,
    noise_limit: f64,
    retry_allowance: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            server_bin: switchboard_testkit::switchboard_binary(),
            server_core: 0,
            gen_core: 1,
            rounds: 3,
            warmup: Duration::from_millis(500),
            window: Duration::from_millis(2500),
            pairs: 100,
            small_pairs: 10,
            outstanding: 4,
            payload: 1024,
            fanout_rooms: 20,
            room_size: 10,
            hz: 20.0,
            peers: 10_000,
            connect_peers: 5_000,
            concurrency: 64,
            heartbeat_secs: 30,
            token_clients: 32,
            rate: 20_000.0,
            rooms: 10_000,
            relays: 500_000,
            batch: 11,
            json: None,
            wait_quiet: Duration::ZERO,
            nice: -10,
            noise_limit: 25.0,
            retry_allowance: Duration::from_secs(30),
        }
    }
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        let num = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| *x >= 0.0)
                .ok_or_else(|| format!("{flag}: not a number: {v}"))
        };
        let secs = |v: &str| num(v).map(Duration::from_secs_f64);
        match flag.as_str() {
            "--server-bin" => o.server_bin = PathBuf::from(value),
            "--server-core" => o.server_core = num(&value)? as usize,
            "--gen-core" => o.gen_core = num(&value)? as usize,
            "--rounds" => o.rounds = num(&value)?.max(1.0) as usize,
            "--warmup" => o.warmup = secs(&value)?,
            "--window" => o.window = secs(&value)?,
            "--pairs" => o.pairs = num(&value)? as usize,
            "--small-pairs" => o.small_pairs = num(&value)? as usize,
            "--outstanding" => o.outstanding = num(&value)?.max(1.0) as usize,
            "--rate" => o.rate = num(&value)?,
            "--rooms" => o.rooms = num(&value)?.max(1.0) as usize,
            "--relays" => o.relays = num(&value)?.max(1.0) as usize,
            "--batch" => o.batch = num(&value)?.max(1.0) as usize,
            "--payload" => o.payload = num(&value)? as usize,
            "--fanout-rooms" => o.fanout_rooms = num(&value)? as usize,
            "--room-size" => o.room_size = num(&value)?.max(2.0) as usize,
            "--hz" => o.hz = num(&value)?.max(0.1),
            "--peers" => o.peers = num(&value)? as usize,
            "--connect-peers" => o.connect_peers = num(&value)?.max(1.0) as usize,
            "--concurrency" => o.concurrency = num(&value)?.max(1.0) as usize,
            "--heartbeat-secs" => o.heartbeat_secs = num(&value)?.max(1.0) as u64,
            "--token-clients" => o.token_clients = num(&value)?.max(1.0) as usize,
            "--json" => o.json = Some(PathBuf::from(value)),
            "--wait-quiet" => o.wait_quiet = secs(&value)?,
            "--noise-limit" => o.noise_limit = num(&value)?,
            "--repeat-allowance" => o.retry_allowance = secs(&value)?,
            "--nice" => {
                o.nice = value
                    .parse()
                    .map_err(|_| format!("--nice: not an integer: {value}"))?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) if !c.starts_with("--") => (c.as_str(), rest),
        _ => ("all", &args[..]),
    };
    if command == "ceiling-server" {
        return ceiling_server(rest);
    }
    let workloads: &[&str] = match command {
        "all" => &["tokens", "connect", "relay", "fanout", "idle"],
        "relay" => &["relay"],
        "fanout" => &["fanout"],
        "connect" => &["connect"],
        "idle" => &["idle"],
        "tokens" => &["tokens"],
        "cluster" => &["cluster"],
        "channels" => &["channels"],
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprint!("unknown command {other}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let options = match parse_options(rest) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench(&options, workloads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ceiling_server(args: &[String]) -> ExitCode {
    let mut addr = "127.0.0.1:0".to_string();
    let mut heartbeat = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--addr", Some(v)) => addr = v.clone(),
            ("--heartbeat-secs", Some(v)) => match v.parse::<u64>() {
                Ok(0) => heartbeat = None,
                Ok(n) => heartbeat = Some(Duration::from_secs(n)),
                Err(_) => {
                    eprintln!("--heartbeat-secs: not a number: {v}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprint!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Ok(addr) = addr.parse() else {
        eprintln!("--addr: not an address: {addr}");
        return ExitCode::from(2);
    };
    match ceiling::run(addr, heartbeat) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceiling-server: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = client::Error;

/// Raises the open-file limit to the hard limit (the idle run holds 10,000 sockets here).
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn bench(o: &Options, workloads: &[&str]) -> Result<(), Error> {
    if !o.server_bin.is_file() {
        return Err(format!(
            "{} not found: build it first with `cargo build --release -p switchboard`",
            o.server_bin.display()
        )
        .into());
    }
    switchboard_testkit::pin_to_core(o.gen_core)
        .map_err(|e| format!("cannot pin the generator to core {}: {e}", o.gen_core))?;
    raise_nofile();
    // Children inherit the nice value, so the servers run at the same priority.
    // SAFETY: setpriority on this process.
    let niced = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, o.nice) } == 0;
    let nice_note = if niced {
        format!("nice {}", o.nice)
    } else {
        format!(
            "nice {} refused ({}), running at the default priority",
            o.nice,
            std::io::Error::last_os_error()
        )
    };
    // One core, one thread: a current-thread runtime is the cheapest generator.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if workloads == ["channels"] {
        println!("machine: {}; {nice_note}", procs::machine_description());
        let shape = channels::Shape {
            rooms: o.rooms,
            relays: o.relays,
            payload: o.payload,
            batch: o.batch,
            redis_core: o.server_core,
        };
        return rt.block_on(channels::run(shape));
    }
    if !o.wait_quiet.is_zero() {
        println!(
            "waiting up to {:.0} s for the cores to be quiet",
            o.wait_quiet.as_secs_f64()
        );
        wait_quiet(o.wait_quiet, 3, true);
    }
    let began = Instant::now();
    let load_before = procs::load_average();
    println!("switchboard-bench: {}", workloads.join(", "));
    println!("machine: {}", procs::machine_description());
    println!(
        "server binary: {}; load average before: {load_before}",
        o.server_bin.display()
    );
    println!(
        "pinning: servers on core {} (sched_setaffinity in the child, as `taskset -c {}`), \
         generator on core {} (allowed cpus now: {}); {nice_note}",
        o.server_core,
        o.server_core,
        o.gen_core,
        procs::self_cpus_allowed()
    );
    if workloads.contains(&"cluster") {
        println!(
            "cluster: redis-server and both switchboard instances share core {} (the server \
             CPU figures are their sum); the generator is alone on core {}; fresh processes \
             for every attempt; ratio = cross / same",
            o.server_core, o.gen_core
        );
    }
    let mut rows = Vec::new();
    let mut token_cost = None;
    rt.block_on(async {
        for w in workloads {
            let loads = match *w {
                "tokens" => vec![Load::Tokens],
                "connect" => vec![Load::Connect],
                "relay" if o.small_pairs > 0 => {
                    vec![
                        Load::Relay(o.pairs, true),
                        Load::Relay(o.small_pairs, false),
                    ]
                }
                "relay" => vec![Load::Relay(o.pairs, true)],
                "cluster" => {
                    let mut loads = vec![Load::Cluster(o.pairs)];
                    if o.small_pairs > 0 {
                        loads.push(Load::Cluster(o.small_pairs));
                    }
                    if o.rate > 0.0 {
                        let pairs = if o.small_pairs > 0 {
                            o.small_pairs
                        } else {
                            o.pairs
                        };
                        loads.push(Load::ClusterPaced(pairs, o.rate as u32));
                    }
                    loads
                }
                "fanout" => vec![Load::Fanout],
                "idle" => {
                    idle(o, &mut rows).await?;
                    continue;
                }
                _ => unreachable!("workload names are fixed above"),
            };
            for load in loads {
                let runs = rounds(o, load).await?;
                let mut out = load_rows(load, &runs);
                let per = |metric: &str| out.iter().find(|r| r.metric == metric).cloned();
                match load {
                    Load::Tokens => {
                        token_cost = per("server CPU us/token").and_then(|r| r.switchboard)
                    }
                    Load::Connect => {
                        // The ceiling has no token step: compare the rest of the path too.
                        if let (Some(peer), Some(token)) = (per("server CPU us/peer"), token_cost) {
                            let less = Row::new(
                                "connect",
                                "server CPU us/peer less token cost",
                                peer.switchboard.map(|p| p - token),
                                peer.ceiling,
                            );
                            out.insert(2, less);
                        }
                    }
                    Load::Cluster(_) | Load::ClusterPaced(..) => {
                        // The latency Redis adds: cross-instance p50 less same-instance p50.
                        // The target applies at the same offered load: under the closed
                        // loop both placements run saturated, where p50 is the in-flight
                        // count over throughput (queueing) rather than the hop.
                        if let Some(p50) = per("latency p50 ms") {
                            let mut added = Row::new(
                                &load.name(),
                                "latency p50 added ms (cross - same)",
                                p50.switchboard.zip(p50.ceiling).map(|(c, s)| c - s),
                                None,
                            );
                            if let Load::ClusterPaced(..) = load {
                                added.goal = Some(Goal::AtMost(1.0));
                            }
                            out.push(added);
                        }
                    }
                    _ => {}
                }
                rows.extend(out);
            }
        }
        Ok::<(), Error>(())
    })?;
    println!();
    if workloads == ["cluster"] {
        // Ratio = cross / same.
        print!("{}", report::table_with(&rows, "cross", "same"));
    } else {
        print!("{}", report::table(&rows));
    }
    let missed: Vec<String> = rows
        .iter()
        .filter(|r| r.met() == Some(false))
        .map(|r| format!("{} {}", r.workload, r.metric))
        .collect();
    let met = rows.iter().filter(|r| r.met() == Some(true)).count();
    println!(
        "\ntargets met: {met}/{}{}",
        met + missed.len(),
        if missed.is_empty() {
            String::new()
        } else {
            format!("; missed: {}", missed.join("; "))
        }
    );
    println!(
        "load average before: {load_before}; after: {}; total time {:.0} s, of which {:.0} s \
         repeating disturbed rounds",
        procs::load_average(),
        began.elapsed().as_secs_f64(),
        retry_spent().as_secs_f64()
    );
    if let Some(path) = &o.json {
        let doc = serde_json::json!({
            "machine": procs::machine_description(),
            "loadBefore": load_before,
            "loadAfter": procs::load_average(),
            "rows": report::json(&rows),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}

async fn start(o: &Options, kind: Kind, extra: &[(&str, String)]) -> Result<Server, Error> {
    let server = match kind {
        Kind::Switchboard => Server::start_switchboard(&o.server_bin, o.server_core, extra)?,
        Kind::Ceiling => Server::start_ceiling(o.server_core, o.heartbeat_secs)?,
    };
    Ok(server)
}

/// A workload measured in rounds.
#[derive(Debug, Clone, Copy)]
enum Load {
    Tokens,
    Connect,
    /// Pairs, and whether this is the main (100-pair) run that carries the CPU target.
    Relay(usize, bool),
    Fanout,
    /// Relay over a two-instance cluster with Redis: cross-instance pairs, then
    /// same-instance pairs (the ratio is cross / same).
    Cluster(usize),
    /// The same at a fixed offered load (deliveries per second), for latency.
    ClusterPaced(usize, u32),
}

impl Load {
    fn name(self) -> String {
        match self {
            Load::Tokens => "tokens".into(),
            Load::Connect => "connect".into(),
            Load::Relay(pairs, _) => format!("relay-{pairs}"),
            Load::Fanout => "fanout".into(),
            Load::Cluster(pairs) => format!("cluster-{pairs}"),
            Load::ClusterPaced(pairs, rate) => format!("cluster-{pairs}@{rate}"),
        }
    }

    /// What one completion is.
    fn unit(self) -> &'static str {
        match self {
            Load::Tokens => "token",
            Load::Connect => "peer",
            Load::Relay(..) | Load::Cluster(_) | Load::ClusterPaced(..) => "msg",
            Load::Fanout => "delivery",
        }
    }

    /// The servers a round runs against, in order (a cluster round: cross, then same).
    fn kinds(self) -> &'static [Kind] {
        match self {
            Load::Tokens => &[Kind::Switchboard],
            // Two switchboard instances and Redis, in two placements.
            Load::Cluster(_) | Load::ClusterPaced(..) => &[Kind::Switchboard, Kind::Switchboard],
            _ => &[Kind::Switchboard, Kind::Ceiling],
        }
    }

    /// One attempt: fresh server process(es), the load, the processes stopped.
    async fn attempt(self, o: &Options, k: usize) -> Result<Run, Error> {
        match self {
            Load::Cluster(pairs) => return cluster_relay(o, pairs, None, k == 0).await,
            Load::ClusterPaced(pairs, rate) => {
                return cluster_relay(o, pairs, Some(f64::from(rate)), k == 0).await
            }
            _ => {}
        }
        let server = start(o, self.kinds()[k], &[]).await?;
        let run = self.run(o, &server).await;
        if let Ok(run) = &run {
            describe(&self.name(), &server, run, self.unit());
        }
        server.stop();
        run
    }

    async fn run(self, o: &Options, server: &Server) -> Result<Run, Error> {
        match self {
            Load::Tokens => workloads::tokens(server, o.token_clients, o.warmup, o.window).await,
            Load::Connect => {
                workloads::connect(server, o.connect_peers, o.concurrency, CONNECT_LIMIT).await
            }
            Load::Relay(pairs, _) => {
                workloads::relay(server, pairs, o.outstanding, o.payload, o.warmup, o.window).await
            }
            Load::Cluster(_) | Load::ClusterPaced(..) => {
                unreachable!("a cluster round runs through `attempt`")
            }
            Load::Fanout => {
                workloads::fanout(
                    server,
                    o.fanout_rooms,
                    o.room_size,
                    o.hz,
                    o.warmup,
                    o.window,
                )
                .await
            }
        }
    }
}

/// Longest a connect ramp may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(60);

fn describe(label: &str, server: &Server, run: &Run, unit: &str) {
    let latency = if run.latency.count > 0 {
        format!(
            "  p50 {:.2} p99 {:.2} max {:.2} ms",
            ms(run.latency.p50),
            ms(run.latency.p99),
            ms(run.latency.max)
        )
    } else {
        String::new()
    };
    println!(
        "  {label:<10} {:<11} {:>8.0} {unit}/s  server {:>5.1}% cpu {:>6.2} us/{unit}  gen {:>5.1}%  \
         others {:>5.1}%{latency}  failures {}  (server cpus {})",
        server.kind.name(),
        run.rate(),
        run.server_pct(),
        run.cpu_us_per(),
        run.gen_pct(),
        run.others_pct(),
        run.failures,
        server.cpus_allowed(),
    );
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Max minus min as a percentage of the median.
fn spread(values: Vec<f64>) -> Option<f64> {
    let mid = median(values.clone())?;
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    (mid > 0.0).then(|| 100.0 * (hi - lo) / mid)
}

static RETRY_SPENT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn retry_spent() -> Duration {
    Duration::from_millis(RETRY_SPENT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// Counts the time a disturbed attempt cost against the repeat allowance.
fn spend_retry(d: Duration) {
    RETRY_SPENT_MS.fetch_add(d.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Runs `load` in `o.rounds` rounds, switchboard and ceiling (or a cluster's cross and same
/// placements) interleaved, each on fresh processes, and returns the runs per kind.
async fn rounds(o: &Options, load: Load) -> Result<Vec<Vec<Run>>, Error> {
    let kinds = load.kinds();
    let mut runs = vec![Vec::new(); kinds.len()];
    for _ in 0..o.rounds.max(1) {
        for (k, kind_runs) in runs.iter_mut().enumerate() {
            let mut kept: Option<Run> = None;
            loop {
                let began = Instant::now();
                let run = load.attempt(o, k).await?;
                let noisy = run.others_pct() > o.noise_limit;
                if kept
                    .as_ref()
                    .is_none_or(|k| run.others_pct() < k.others_pct())
                {
                    kept = Some(run);
                }
                // A round disturbed by other processes is repeated while the allowance lasts;
                // the least disturbed attempt is kept.
                let left = o.retry_allowance.saturating_sub(retry_spent());
                if !noisy || left.is_zero() {
                    break;
                }
                println!(
                    "    other processes took more than {:.0}% of a core: repeating ({:.0} s of repeats left)",
                    o.noise_limit,
                    left.as_secs_f64()
                );
                // Give the other processes a moment to finish before trying again.
                wait_quiet(left.min(Duration::from_secs(5)), 1, false);
                spend_retry(began.elapsed());
            }
            kind_runs.extend(kept);
        }
    }
    Ok(runs)
}

/// The rows of a workload measured in rounds: medians over the rounds (failures summed).
/// Rounds that completed nothing give no figures.
fn load_rows(load: Load, runs: &[Vec<Run>]) -> Vec<Row> {
    let unit = load.unit();
    let latency = !matches!(load, Load::Connect);
    type Metric = (String, fn(&Run) -> f64);
    let mut metrics: Vec<Metric> = vec![
        (format!("{unit}/s"), Run::rate),
        (format!("server CPU us/{unit}"), Run::cpu_us_per),
        ("server CPU % of its core".into(), Run::server_pct),
        ("generator CPU % of its core".into(), Run::gen_pct),
    ];
    if matches!(load, Load::Cluster(_) | Load::ClusterPaced(..)) {
        // Three processes share the server core: name the sum for what it is, and split it.
        metrics[1].0 = format!("A+B+redis CPU us/{unit}");
        metrics[2].0 = "A+B+redis CPU % of core".into();
        metrics.insert(3, ("instance A CPU % of core".into(), |r| part_pct(r, 0)));
        metrics.insert(4, ("instance B CPU % of core".into(), |r| part_pct(r, 1)));
        metrics.insert(5, ("redis-server CPU % of core".into(), |r| part_pct(r, 2)));
    }
    if latency {
        metrics.extend([
            (
                "latency p50 ms".into(),
                (|r| ms(r.latency.p50)) as fn(&Run) -> f64,
            ),
            ("latency p90 ms".into(), |r| ms(r.latency.p90)),
            ("latency p99 ms".into(), |r| ms(r.latency.p99)),
            ("latency max ms".into(), |r| ms(r.latency.max)),
        ]);
    }
    if matches!(load, Load::Fanout) {
        metrics.insert(
            0,
            ("cursor-updates sent/s".into(), |r| {
                r.sent as f64 / r.window.as_secs_f64().max(1e-9)
            }),
        );
    }
    metrics.push(("others' CPU % of a core (noise)".into(), Run::others_pct));
    let name = load.name();
    let of = |k: usize, f: fn(&Run) -> f64| {
        runs.get(k)
            .and_then(|rs| median(rs.iter().filter(|r| r.count > 0).map(f).collect()))
    };
    let mut rows: Vec<Row> = metrics
        .into_iter()
        .map(|(metric, f)| Row::new(&name, &metric, of(0, f), of(1, f)))
        .collect();
    let sum_failures = |k: usize| {
        runs.get(k)
            .map(|rs| rs.iter().map(|r| r.failures as f64).sum())
    };
    rows.push(Row::new(
        &name,
        "failures (all rounds)",
        sum_failures(0),
        sum_failures(1),
    ));
    let rate_spread = |k: usize| {
        runs.get(k)
            .and_then(|rs| spread(rs.iter().map(Run::rate).collect()))
    };
    rows.push(Row::new(
        &name,
        &format!("{unit}/s spread over rounds %"),
        rate_spread(0),
        rate_spread(1),
    ));
    for r in &mut rows {
        r.goal = match (load, r.metric.as_str()) {
            (Load::Tokens, "token/s") => Some(Goal::AtLeast(20_000.0)),
            (Load::Connect, "peer/s") => Some(Goal::RatioAtLeast(0.8)),
            (Load::Relay(_, true), "server CPU us/msg") => Some(Goal::RatioAtMost(1.25)),
            (Load::Relay(_, false), "msg/s") => Some(Goal::RatioAtLeast(0.9)),
            (Load::Relay(_, false), "latency p99 ms") => Some(Goal::RatioAtMost(1.5)),
            (Load::Fanout, "server CPU us/delivery") => Some(Goal::RatioAtMost(1.5)),
            (Load::Cluster(_), "msg/s") => Some(Goal::RatioAtLeast(0.5)),
            _ => None,
        };
    }
    rows
}

/// Idle: one run each (the heartbeat round comes `heartbeat_secs` after start).
async fn idle(o: &Options, rows: &mut Vec<Row>) -> Result<(), Error> {
    let interval = Duration::from_secs(o.heartbeat_secs);
    let extra = [("HEARTBEAT_INTERVAL_SECONDS", o.heartbeat_secs.to_string())];
    let mut results = Vec::new();
    for kind in [Kind::Switchboard, Kind::Ceiling] {
        let server = start(o, kind, &extra).await?;
        let r = workloads::idle(&server, o.peers, o.concurrency, interval, CONNECT_LIMIT).await?;
        describe("idle-ramp", &server, &r.connect, "peer");
        println!(
            "  {:<10} {:<11} RSS {} -> {} (joined) -> {} KiB (after heartbeat) = {:.2} KiB/peer; \
             CPU {:.3}% over {:.1} s between heartbeats; heartbeat round {:.1} ms CPU \
             ({} beats seen); {:.3}% of a core at {} s heartbeats",
            "idle",
            kind.name(),
            r.rss_base_kib,
            r.rss_joined_kib,
            r.rss_after_kib,
            r.kib_per_peer(),
            100.0 * r.quiet_fraction(),
            r.quiet.0.as_secs_f64(),
            r.beat_cost().as_secs_f64() * 1000.0,
            r.beats_seen,
            r.idle_pct(),
            o.heartbeat_secs,
        );
        server.stop();
        results.push(r);
    }
    let (sb, ce) = (&results[0], &results[1]);
    let pair = |f: &dyn Fn(&workloads::Idle) -> f64| (Some(f(sb)), Some(f(ce)));
    let mut add = |metric: &str, (a, b): (Option<f64>, Option<f64>), goal: Option<Goal>| {
        let mut row = Row::new("idle", metric, a, b);
        row.goal = goal;
        rows.push(row);
    };
    add("peers held", pair(&|r| r.peers as f64), None);
    add(
        "peers/s while ramping to the held set",
        pair(&|r| r.connect.rate()),
        None,
    );
    add(
        "server RSS KiB/peer",
        pair(&|r| r.kib_per_peer()),
        Some(Goal::AtMost(8.0)),
    );
    add(
        "server CPU % between heartbeats",
        pair(&|r| 100.0 * r.quiet_fraction()),
        None,
    );
    add(
        "server CPU ms per heartbeat round",
        pair(&|r| r.beat_cost().as_secs_f64() * 1000.0),
        None,
    );
    add(
        &format!("server CPU % at {} s heartbeats", o.heartbeat_secs),
        pair(&|r| r.idle_pct()),
        Some(Goal::AtMost(2.0)),
    );
    add("heartbeats received", pair(&|r| r.beats_seen as f64), None);
    Ok(())
}

/// Waits (at most `limit`) until other processes have used under 20% of a core for
/// `seconds` whole seconds in a row. `idle` says this process and its children are idle
/// (otherwise only the cores' busy time beyond this generator's own is counted).
fn wait_quiet(limit: Duration, seconds: u32, idle: bool) {
    let deadline = Instant::now() + limit;
    let step = Duration::from_millis(250);
    let mut quiet_steps = 0;
    let (mut last, mut own) = (procs::cores_busy(), procs::self_cpu());
    while Instant::now() < deadline && quiet_steps < seconds * 4 {
        std::thread::sleep(step);
        let (now, mine) = (procs::cores_busy(), procs::self_cpu());
        let mut busy = now.saturating_sub(last);
        if !idle {
            busy = busy.saturating_sub(mine.saturating_sub(own));
        }
        (last, own) = (now, mine);
        if busy.as_secs_f64() < 0.2 * step.as_secs_f64() {
            quiet_steps += 1;
        } else {
            quiet_steps = 0;
        }
    }
}

/// One watched process's CPU as a percentage of a core (0 when absent).
fn part_pct(run: &Run, i: usize) -> f64 {
    let cpu = run.part_cpu.get(i).copied().unwrap_or_default();
    100.0 * cpu.as_secs_f64() / run.window.as_secs_f64().max(1e-9)
}

/// A Redis and two switchboard instances sharing it; all killed when dropped.
struct Cluster {
    a: Server,
    b: Server,
    redis: Redis,
}

impl Cluster {
    /// Starts Redis and two instances on the server core and waits until both report
    /// `"cluster":{"redis":"ok"}` on `GET /health`.
    async fn start(o: &Options) -> Result<Self, Error> {
        let redis = Redis::start_on_core(o.server_core)?;
        let extra = [("REDIS_URL", redis.url())];
        let a = Server::start_switchboard(&o.server_bin, o.server_core, &extra)?;
        let b = Server::start_switchboard(&o.server_bin, o.server_core, &extra)?;
        let cluster = Self { a, b, redis };
        for (name, server) in [("A", &cluster.a), ("B", &cluster.b)] {
            wait_redis_ok(name, server).await?;
        }
        Ok(cluster)
    }

    fn stop(mut self) {
        self.a.stop();
        self.b.stop();
        self.redis.stop();
    }
}

/// Longest wait for an instance to report Redis as ok.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(15);

async fn wait_redis_ok(name: &str, server: &Server) -> Result<(), Error> {
    let procs::Endpoint::Switchboard { http, .. } = server.endpoint else {
        return Err("a cluster instance must be switchboard".into());
    };
    eventually(CLUSTER_READY_TIMEOUT, || async {
        let answer = tokio::time::timeout(Duration::from_secs(2), async {
            let mut client = client::HttpClient::connect(http).await?;
            client.get("/health").await
        })
        .await;
        match answer {
            Ok(Ok((status, body))) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if v["cluster"]["redis"] == "ok" {
                    return Ok(());
                }
                Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 2 s".into()),
        }
    })
    .await
    .map_err(|last| {
        format!(
            "instance {name} did not report \"cluster\":{{\"redis\":\"ok\"}} on /health \
             within {CLUSTER_READY_TIMEOUT:?}; last answer: {last}"
        )
        .into()
    })
}

/// One cluster attempt on fresh processes: `pairs` relay pairs whose offerers join on
/// instance A and whose answerers join on B (`cross`) or on A too, closed loop or `paced`
/// at that many deliveries a second. The server CPU is A's, B's and Redis's together (they
/// share the server core).
async fn cluster_relay(
    o: &Options,
    pairs: usize,
    paced: Option<f64>,
    cross: bool,
) -> Result<Run, Error> {
    let cluster = Cluster::start(o).await?;
    let (a, b) = (&cluster.a.endpoint, &cluster.b.endpoint);
    let watched = [cluster.a.pid, cluster.b.pid, cluster.redis.pid()];
    let shape = workloads::RelayShape {
        pairs,
        outstanding: o.outstanding,
        payload: o.payload,
        paced,
    };
    let answerers = if cross { b } else { a };
    let run = workloads::relay_between(a, answerers, &watched, shape, o.warmup, o.window).await;
    if let Ok(run) = &run {
        println!(
            "  {:<11} {:<5} {:>8.0} msg/s  A {:>5.1}% B {:>5.1}% redis {:>5.1}% cpu {:>6.2} us/msg  \
             gen {:>5.1}%  others {:>5.1}%  p50 {:.2} p99 {:.2} max {:.2} ms  failures {}  \
             (cpus A {} B {} redis {})",
            match paced {
                Some(rate) => format!("cluster-{pairs}@{rate}"),
                None => format!("cluster-{pairs}"),
            },
            if cross { "cross" } else { "same" },
            run.rate(),
            part_pct(run, 0),
            part_pct(run, 1),
            part_pct(run, 2),
            run.cpu_us_per(),
            run.gen_pct(),
            run.others_pct(),
            ms(run.latency.p50),
            ms(run.latency.p99),
            ms(run.latency.max),
            run.failures,
            cluster.a.cpus_allowed(),
            cluster.b.cpus_allowed(),
            procs::cpus_allowed(cluster.redis.pid()),
        );
    }
    cluster.stop();
    run
}

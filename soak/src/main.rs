//! `switchboard-soak`: a bounded churn soak against the real `switchboard` binary.
//!
//! It starts the server on loopback, then for `--duration` runs a crowd of peers in a few
//! hundred rooms that join, relay offers and candidates, broadcast, send garbage, flood past
//! the rate limit, stall without reading, send oversized frames and vanish without a word,
//! reconnecting again and again; meanwhile well-behaved pairs, each in a room of its own,
//! relay numbered offers to each other and time them. At the end it checks that
//!
//! - every well-behaved message arrived exactly once and in order, and no pair was cut;
//! - the server logged no panic;
//! - `/stats` returns to zero connections, peers and rooms;
//! - the allocator's in-use bytes and the resident memory return to their baseline (measured
//!   after a warm-up round of the same workload) within 10%,
//!
//! and prints one summary line. Exit status 0 when everything held, 1 otherwise.
//!
//! ```text
//! switchboard-soak [--duration 3m] [--peers 600] [--pairs 16] [--rooms 150]
//!                  [--server PATH] [--seed N]
//! ```
//!
//! `--server` defaults to the `switchboard` next to this binary (`target/<profile>/`).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use switchboard_auth::TokenKeys;
use switchboard_testkit::{eventually, switchboard_binary, Launch, Switchboard, JWT_SECRET};

/// The server's `MAX_MESSAGE_BYTES` in the soak.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Interval of the well-behaved senders (20/s, well under the rate limit).
const PAIR_INTERVAL: Duration = Duration::from_millis(50);
/// Longest wait for the server to settle (connections, peers, rooms back to 0).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Allowed growth of memory over the baseline.
const MEMORY_TOLERANCE: f64 = 0.10;

type Ws = WebSocketStream<TcpStream>;

struct Args {
    duration: Duration,
    peers: usize,
    pairs: usize,
    rooms: usize,
    server: PathBuf,
    seed: u64,
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    (secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(180),
        peers: 600,
        pairs: 16,
        rooms: 150,
        server: switchboard_binary(),
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let bad = |f: &str| format!("invalid value for {f}");
        match flag.as_str() {
            "--duration" => args.duration = parse_duration(&value()?).ok_or(bad(&flag))?,
            "--peers" => args.peers = value()?.parse().map_err(|_| bad(&flag))?,
            "--pairs" => args.pairs = value()?.parse().map_err(|_| bad(&flag))?,
            "--rooms" => args.rooms = value()?.parse().map_err(|_| bad(&flag))?,
            "--server" => args.server = PathBuf::from(value()?),
            "--seed" => args.seed = value()?.parse().map_err(|_| bad(&flag))?,
            "-h" | "--help" => {
                return Err("usage: switchboard-soak [--duration 3m|20s] [--peers N] \
                            [--pairs N] [--rooms N] [--server PATH] [--seed N]"
                    .into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.peers == 0 || args.rooms == 0 || args.pairs == 0 {
        return Err("--peers, --pairs and --rooms must be positive".into());
    }
    Ok(args)
}

/// xorshift64*: small, seedable, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

// ---- the server process ------------------------------------------------------------------

/// The server under soak, started through the test kit with settings that make churn show
/// quickly: one-second graces, sweeps and memory samples.
struct Server(Switchboard);

impl Server {
    fn start(path: &Path) -> Result<Self, String> {
        Launch::new()
            .binary(path)
            .envs(&[
                ("MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES.to_string().as_str()),
                ("RECONNECT_GRACE_SECONDS", "1"),
                ("ROOM_EMPTY_GRACE_SECONDS", "1"),
                ("ROOM_SWEEP_INTERVAL_SECONDS", "1"),
                ("MAX_CONNECTIONS", "15000"),
                // The soak is about churn, not memory pressure: no cleanup may interfere.
                ("MEMORY_WARNING_MB", "8000"),
                ("MEMORY_CRITICAL_MB", "16000"),
                // Samples (and allocator trims) every second, so a settled server shows it soon.
                ("MEMORY_CHECK_INTERVAL_SECONDS", "1"),
            ])
            .start()
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// The lines the server logged about a panic.
    fn panics(&self) -> Vec<String> {
        let mut output = self.0.process.output();
        output.retain(|line| line.contains("panicked"));
        output
    }

    fn rss_bytes(&self) -> u64 {
        self.0.process.rss_kib().map_or(0, |kib| kib * 1024)
    }

    /// A plain HTTP/1.1 GET; returns the body.
    fn get(&self, path: &str) -> Result<String, String> {
        let http = self.0.http_addr;
        let mut s = std::net::TcpStream::connect(http).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        let (_, body) = out.split_once("\r\n\r\n").ok_or("no HTTP body")?;
        Ok(body.to_string())
    }

    /// Open connections, authenticated peers and rooms, from `/stats`.
    fn figures(&self) -> Result<(u64, u64, u64), String> {
        let s: Value = serde_json::from_str(&self.get("/stats")?).map_err(|e| e.to_string())?;
        let figure = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
        Ok((
            figure(&s["server"]["totalConnections"]),
            figure(&s["server"]["authenticatedPeers"]),
            figure(&s["server"]["activeRooms"]),
        ))
    }

    fn heap_bytes(&self) -> u64 {
        self.get("/metrics")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("switchboard_memory_heap_bytes "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .map_or(0, |v| v as u64)
    }

    /// Waits until no connection, peer or room is left; returns the last figures.
    async fn settle(&self) -> Result<(u64, u64, u64), String> {
        let settled = eventually(SETTLE_TIMEOUT, || async {
            match self.figures() {
                Ok(figures) if figures == (0, 0, 0) => Ok(figures),
                other => Err(other),
            }
        })
        .await;
        settled.or_else(|last| last)
    }
}

// ---- the crowd ---------------------------------------------------------------------------

/// What the crowd did, for the summary.
#[derive(Default)]
struct Tally {
    joins: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    connect_failures: AtomicU64,
    closes: Mutex<BTreeMap<u16, u64>>,
    abrupt: AtomicU64,
}

impl Tally {
    fn closed(&self, code: u16) {
        *self
            .closes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }
}

struct Ctx {
    signaling: SocketAddr,
    keys: TokenKeys,
    rooms: usize,
    stop: AtomicBool,
    tally: Tally,
}

impl Ctx {
    fn token(&self, user: &str, room: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.keys.issue(user, room, Some(user), now, 3600).token
    }

    async fn connect(&self, user: &str, room: &str) -> Option<Ws> {
        let url = format!(
            "ws://{}/ws?token={}",
            self.signaling,
            self.token(user, room)
        );
        let attempt = async {
            let tcp = TcpStream::connect(self.signaling).await.ok()?;
            let _ = tcp.set_nodelay(true);
            let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.ok()?;
            Some(ws)
        };
        let ws = tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .ok()
            .flatten();
        if ws.is_none() {
            self.tally.connect_failures.fetch_add(1, Relaxed);
        }
        ws
    }
}

/// Connects, joins, and returns the socket with the userIds already in the room.
async fn join(ctx: &Ctx, user: &str, room: &str) -> Option<(Ws, Vec<String>)> {
    let mut ws = ctx.connect(user, room).await?;
    ws.send(Message::text(r#"{"type":"join-room"}"#))
        .await
        .ok()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).ok()?;
        match v["type"].as_str() {
            Some("room-joined") => {
                ctx.tally.joins.fetch_add(1, Relaxed);
                let peers = v["data"]["peers"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p["userId"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                return Some((ws, peers));
            }
            Some("error") => return None,
            _ => {}
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// Joins, relays and broadcasts for a while, then leaves one way or another.
    Churner,
    /// Sends invalid frames until it is closed (4008).
    Garbage,
    /// Sends far beyond the rate limit.
    Flooder,
    /// Joins a busy room and stops reading.
    Staller,
    /// Sends a frame over MAX_MESSAGE_BYTES (1009).
    Oversize,
}

fn kind_of(i: usize) -> Kind {
    match i % 20 {
        0 | 1 => Kind::Garbage,
        2 | 3 => Kind::Flooder,
        4 => Kind::Staller,
        5 => Kind::Oversize,
        _ => Kind::Churner,
    }
}

async fn actor(ctx: Arc<Ctx>, index: usize, seed: u64) {
    let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let kind = kind_of(index);
    // Spread the first connects over a second.
    tokio::time::sleep(rng.millis(0, 1000)).await;
    while !ctx.stop.load(Relaxed) {
        // Users are reused across rounds and actors: reconnects and replacements happen.
        let user = format!("p{}", rng.below(ctx.rooms as u64 * 4));
        let room = format!("room-{}", rng.below(ctx.rooms as u64));
        match kind {
            Kind::Churner => churn(&ctx, &mut rng, &user, &room).await,
            Kind::Garbage => garbage(&ctx, &mut rng, &user, &room).await,
            Kind::Flooder => flood(&ctx, &user, &room).await,
            Kind::Staller => stall(&ctx, &mut rng, &user, &room).await,
            Kind::Oversize => oversize(&ctx, &user, &room).await,
        }
        tokio::time::sleep(rng.millis(10, 300)).await;
    }
}

/// Reads what is already there without waiting; returns the close code if the server
/// closed the connection.
fn note_frame(ctx: &Ctx, msg: &Message, peers: &mut Vec<String>) -> Option<u16> {
    match msg {
        Message::Text(text) => {
            ctx.tally.received.fetch_add(1, Relaxed);
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                let who = v["from"].as_str().map(str::to_owned);
                match (v["type"].as_str(), who) {
                    (Some("peer-joined"), Some(u)) => peers.push(u),
                    (Some("peer-left"), Some(u)) => peers.retain(|p| *p != u),
                    _ => {}
                }
            }
            None
        }
        Message::Close(frame) => Some(frame.as_ref().map_or(1005, |f| u16::from(f.code))),
        _ => None,
    }
}

async fn churn(ctx: &Ctx, rng: &mut Rng, user: &str, room: &str) {
    let Some((mut ws, mut peers)) = join(ctx, user, room).await else {
        return;
    };
    let life = tokio::time::Instant::now() + rng.millis(300, 4000);
    let mut next_action = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(msg)) => {
                    if let Some(code) = note_frame(ctx, &msg, &mut peers) {
                        ctx.tally.closed(code);
                        return;
                    }
                }
                _ => return,
            },
            _ = tokio::time::sleep_until(next_action) => {
                if tokio::time::Instant::now() >= life || ctx.stop.load(Relaxed) {
                    break;
                }
                let target = if peers.is_empty() {
                    "nobody".to_string()
                } else {
                    peers[rng.below(peers.len() as u64) as usize].clone()
                };
                let frame = match rng.below(5) {
                    0 => json!({"type": "sdp-offer", "requestId": "o",
                                "data": {"peer": target, "offer": {"type": "offer", "sdp": "v=0\r\n"}}}),
                    1 => json!({"type": "ice-candidate",
                                "data": {"peer": target, "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}}}),
                    2 => json!({"type": "cursor-update", "data": {"line": rng.below(100), "column": rng.below(80)}}),
                    3 => json!({"type": "presence", "data": {"status": if rng.below(2) == 0 { "idle" } else { "active" }}}),
                    _ => json!({"type": "message", "data": {"text": "hello"}}),
                };
                if ws.send(Message::text(frame.to_string())).await.is_err() {
                    return;
                }
                ctx.tally.sent.fetch_add(1, Relaxed);
                next_action = tokio::time::Instant::now() + rng.millis(40, 300);
            }
        }
    }
    match rng.below(3) {
        // Vanish: no leave-room, no close frame.
        0 => {
            ctx.tally.abrupt.fetch_add(1, Relaxed);
            drop(ws);
        }
        1 => {
            let _ = ws.send(Message::text(r#"{"type":"leave-room"}"#)).await;
            let _ = ws.close(None).await;
        }
        _ => {
            let _ = ws.close(None).await;
        }
    }
}

/// Waits (bounded) for the server to close the connection; records the code.
async fn await_close(ctx: &Ctx, ws: &mut Ws, within: Duration) {
    let mut peers = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Some(code) = note_frame(ctx, &msg, &mut peers) {
            ctx.tally.closed(code);
            return;
        }
    }
}

async fn garbage(ctx: &Ctx, rng: &mut Rng, user: &str, room: &str) {
    let Some((mut ws, _)) = join(ctx, user, room).await else {
        return;
    };
    for i in 0..25 {
        let msg = match (i + rng.below(3)) % 3 {
            0 => Message::text("{not json"),
            1 => Message::binary(vec![0u8, 159, 146, 150]),
            _ => Message::text(r#"{"type":"no-such-type"}"#),
        };
        if ws.send(msg).await.is_err() {
            return;
        }
    }
    await_close(ctx, &mut ws, Duration::from_secs(5)).await;
}

async fn flood(ctx: &Ctx, user: &str, room: &str) {
    let Some((mut ws, _)) = join(ctx, user, room).await else {
        return;
    };
    let frame = r#"{"type":"cursor-update","data":{"line":1,"column":2}}"#;
    for _ in 0..400 {
        if ws.send(Message::text(frame)).await.is_err() {
            return;
        }
    }
    await_close(ctx, &mut ws, Duration::from_secs(5)).await;
}

async fn stall(ctx: &Ctx, rng: &mut Rng, user: &str, room: &str) {
    let Some((ws, _)) = join(ctx, user, room).await else {
        return;
    };
    // Holds the socket without reading: the server's queue for it fills and it is cut.
    tokio::time::sleep(rng.millis(2000, 8000)).await;
    ctx.tally.abrupt.fetch_add(1, Relaxed);
    drop(ws);
}

async fn oversize(ctx: &Ctx, user: &str, room: &str) {
    let Some((mut ws, _)) = join(ctx, user, room).await else {
        return;
    };
    let big = format!(
        r#"{{"type":"message","data":{{"text":"{}"}}}}"#,
        "x".repeat(MAX_MESSAGE_BYTES + 10)
    );
    if ws.send(Message::text(big)).await.is_ok() {
        await_close(ctx, &mut ws, Duration::from_secs(5)).await;
    }
}

// ---- the well-behaved pairs ----------------------------------------------------------------

/// One direction of a pair, as seen by the receiving side.
#[derive(Default)]
struct Flow {
    sent: u64,
    received: u64,
    out_of_order: u64,
    latencies_us: Vec<u64>,
    cut: Option<String>,
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Runs one side: sends numbered offers to `other` until told to stop, reads the other's
/// offers throughout, then waits for the other's last one. Returns (what it sent, the flow
/// it received).
async fn pair_side(
    ctx: Arc<Ctx>,
    me: String,
    other: String,
    room: String,
    stop_sending: Arc<AtomicBool>,
    their_total: Arc<Mutex<HashMap<String, u64>>>,
) -> Flow {
    let mut flow = Flow::default();
    let Some((mut ws, present)) = join(&ctx, &me, &room).await else {
        flow.cut = Some(format!("{me} could not join {room}"));
        return flow;
    };
    // Offers go out once the other side is in the room (else PEER_NOT_FOUND).
    let mut other_here = present.contains(&other);
    let mut tick = tokio::time::interval(PAIR_INTERVAL);
    let mut seq = 0u64;
    let mut expected = 0u64;
    let mut finishing: Option<tokio::time::Instant> = None;
    loop {
        if finishing.is_none() && stop_sending.load(Relaxed) {
            their_total
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(me.clone(), seq);
            finishing = Some(tokio::time::Instant::now() + Duration::from_secs(15));
        }
        if let Some(deadline) = finishing {
            let total = their_total
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&other)
                .copied();
            if total.is_some_and(|t| expected >= t) {
                flow.sent = total.unwrap_or(0);
                break;
            }
            if tokio::time::Instant::now() > deadline {
                flow.sent = total.unwrap_or(u64::MAX);
                flow.cut = Some(format!("{me} still waits for {other}'s offers"));
                break;
            }
        }
        tokio::select! {
            _ = tick.tick(), if finishing.is_none() && other_here => {
                let frame = json!({"type": "sdp-offer",
                    "data": {"peer": other, "offer": {"seq": seq, "ts": micros_now()}}});
                if let Err(e) = ws.send(Message::text(frame.to_string())).await {
                    flow.cut = Some(format!("{me}: send failed: {e}"));
                    break;
                }
                seq += 1;
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if finishing.is_some() || !other_here => {}
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => {
                        flow.cut = Some(format!("{me} closed by the server: {f:?}"));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    other => {
                        flow.cut = Some(format!("{me}: connection ended: {other:?}"));
                        break;
                    }
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                match v["type"].as_str() {
                    Some("peer-joined") if v["from"] == other.as_str() => other_here = true,
                    Some("sdp-offer") if v["from"] == other.as_str() => {
                        let n = v["data"]["offer"]["seq"].as_u64().unwrap_or(u64::MAX);
                        if n != expected {
                            flow.out_of_order += 1;
                        }
                        expected = n.saturating_add(1);
                        flow.received += 1;
                        let ts = v["data"]["offer"]["ts"].as_u64().unwrap_or(0);
                        flow.latencies_us.push(micros_now().saturating_sub(ts));
                    }
                    Some("error") => {
                        flow.cut = Some(format!("{me} got an error: {text}"));
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = ws.send(Message::text(r#"{"type":"leave-room"}"#)).await;
    let _ = ws.close(None).await;
    flow
}

// ---- a round: crowd plus pairs ---------------------------------------------------------------

struct RoundResult {
    flows: Vec<Flow>,
}

async fn round(ctx: &Arc<Ctx>, args: &Args, length: Duration, seed: u64) -> RoundResult {
    ctx.stop.store(false, Relaxed);
    let crowd: Vec<_> = (0..args.peers)
        .map(|i| tokio::spawn(actor(ctx.clone(), i, seed)))
        .collect();
    let stop_sending = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Mutex::new(HashMap::new()));
    let mut sides = Vec::new();
    for p in 0..args.pairs {
        let (a, b, room) = (
            format!("pair-{seed}-{p}-a"),
            format!("pair-{seed}-{p}-b"),
            format!("pair-{seed}-{p}"),
        );
        for (me, other) in [(a.clone(), b.clone()), (b, a)] {
            sides.push(tokio::spawn(pair_side(
                ctx.clone(),
                me,
                other,
                room.clone(),
                stop_sending.clone(),
                totals.clone(),
            )));
        }
    }
    tokio::time::sleep(length).await;
    stop_sending.store(true, Relaxed);
    ctx.stop.store(true, Relaxed);
    let mut flows = Vec::new();
    for side in sides {
        flows.push(side.await.unwrap_or_else(|e| Flow {
            cut: Some(format!("pair task failed: {e}")),
            ..Flow::default()
        }));
    }
    for actor in crowd {
        // Every actor's waits are bounded; a stuck one would show as a timeout here.
        if tokio::time::timeout(Duration::from_secs(30), actor)
            .await
            .is_err()
        {
            eprintln!("soak: an actor did not stop within 30 s");
        }
    }
    RoundResult { flows }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn run(args: Args) -> Result<bool, String> {
    let server = Server::start(&args.server)?;
    let ctx = Arc::new(Ctx {
        signaling: server.0.signaling_addr,
        keys: TokenKeys::new(JWT_SECRET.as_bytes()),
        rooms: args.rooms,
        stop: AtomicBool::new(false),
        tally: Tally::default(),
    });

    // Warm-up: the same workload briefly, so that the baseline includes what a server that
    // has served traffic keeps (thread stacks, allocator arenas, lazily built tables).
    let warm = (args.duration / 6).clamp(Duration::from_secs(2), Duration::from_secs(20));
    round(&ctx, &args, warm, args.seed.wrapping_add(1)).await;
    let settled = server.settle().await?;
    if settled != (0, 0, 0) {
        return Err(format!("warm-up did not settle: {settled:?}"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (heap0, rss0) = (server.heap_bytes(), server.rss_bytes());
    let joins0 = ctx.tally.joins.load(Relaxed);

    let started = Instant::now();
    let result = round(&ctx, &args, args.duration, args.seed).await;
    let ran = started.elapsed();
    let settled = server.settle().await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (heap1, rss1) = (server.heap_bytes(), server.rss_bytes());

    let mut lat: Vec<u64> = result
        .flows
        .iter()
        .flat_map(|f| f.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let sent: u64 = result.flows.iter().map(|f| f.sent).sum();
    let received: u64 = result.flows.iter().map(|f| f.received).sum();
    let out_of_order: u64 = result.flows.iter().map(|f| f.out_of_order).sum();
    let cuts: Vec<&String> = result.flows.iter().filter_map(|f| f.cut.as_ref()).collect();
    let panics = server.panics();
    let heap_ok = heap1 as f64 <= heap0 as f64 * (1.0 + MEMORY_TOLERANCE) + 256.0 * 1024.0;
    let rss_ok = rss1 as f64 <= rss0 as f64 * (1.0 + MEMORY_TOLERANCE);
    let delivered_ok = sent == received && out_of_order == 0 && cuts.is_empty() && sent > 0;
    let pass = delivered_ok && panics.is_empty() && settled == (0, 0, 0) && heap_ok && rss_ok;

    let closes = ctx
        .tally
        .closes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(code, n)| format!("{code}x{n}"))
        .collect::<Vec<_>>()
        .join(",");
    for cut in &cuts {
        eprintln!("soak: well-behaved pair disrupted: {cut}");
    }
    for p in &panics {
        eprintln!("soak: server panic: {p}");
    }
    println!(
        "soak: {} in {:.0}s, {} actors + {} pairs in {} rooms: joins {} (+{} warm-up), crowd sent {} got {}, \
         vanished {}, server closes [{}], connect failures {}; pairs delivered {}/{} in order (out of order {}, disrupted {}), \
         relay latency p50 {:.2}ms p99 {:.2}ms max {:.2}ms; panics {}; after: connections/peers/rooms {}/{}/{}; \
         heap {:.1}->{:.1} MB ({:+.1}%), rss {:.1}->{:.1} MB ({:+.1}%)",
        if pass { "PASS" } else { "FAIL" },
        ran.as_secs_f64(),
        args.peers,
        args.pairs,
        args.rooms,
        ctx.tally.joins.load(Relaxed) - joins0,
        joins0,
        ctx.tally.sent.load(Relaxed),
        ctx.tally.received.load(Relaxed),
        ctx.tally.abrupt.load(Relaxed),
        closes,
        ctx.tally.connect_failures.load(Relaxed),
        received,
        sent,
        out_of_order,
        cuts.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().map_or(0.0, |v| *v as f64 / 1000.0),
        panics.len(),
        settled.0,
        settled.1,
        settled.2,
        mb(heap0),
        mb(heap1),
        (heap1 as f64 / heap0.max(1) as f64 - 1.0) * 100.0,
        mb(rss0),
        mb(rss1),
        (rss1 as f64 / rss0.max(1) as f64 - 1.0) * 100.0,
    );
    Ok(pass)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("switchboard-soak: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard-soak: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("switchboard-soak: {e}");
            ExitCode::FAILURE
        }
    }
}

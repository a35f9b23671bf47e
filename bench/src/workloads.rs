//! The workloads. Each runs against one server process (switchboard or the ceiling), with
//! the same client code for both, and returns what it measured over its window: completions,
//! latency, and the CPU time of the server and of this generator. Every loop is bounded by a
//! stop signal and a deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, sent_at, Error, HttpClient, Ws};
use crate::procs::{self, Endpoint, Server};
use crate::report::{Latency, Run};

/// How long stopped tasks get to finish before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Client read buffer where throughput matters.
const BUSY_READ_BUFFER: usize = 16 * 1024;
/// Client read buffer for the idle peers (10,000 of them live in this process too).
const IDLE_READ_BUFFER: usize = 2 * 1024;

const OFFER_PREFIX: &str = r#"{"type":"sdp-offer""#;
const ANSWER_PREFIX: &str = r#"{"type":"sdp-answer""#;
const CURSOR_PREFIX: &str = r#"{"type":"cursor-update""#;
const HEARTBEAT_PREFIX: &str = r#"{"type":"heartbeat""#;
const ERROR_PREFIX: &str = r#"{"type":"error""#;

/// Counters shared by the tasks of one run.
struct Meter {
    origin: Instant,
    completed: AtomicU64,
    failures: AtomicU64,
    sent: AtomicU64,
    recording: AtomicBool,
    first_error: Mutex<Option<String>>,
}

impl Meter {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            completed: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            first_error: Mutex::new(None),
        })
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Counts one completion; keeps its latency when inside the window.
    fn complete(&self, samples: &mut Vec<u64>, sent_ns: Option<u64>) {
        self.completed.fetch_add(1, Relaxed);
        if let Some(t0) = sent_ns {
            if self.recording.load(Relaxed) {
                samples.push(self.now_ns().saturating_sub(t0));
            }
        }
    }

    fn fail(&self, what: impl std::fmt::Display) {
        self.failures.fetch_add(1, Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(what.to_string());
        }
    }

    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Lets the load run for `warmup`, then measures `window`; the server CPU is that of the
/// processes `watched` (the server, or a cluster's instances and Redis).
async fn measure(watched: &[u32], meter: &Meter, warmup: Duration, window: Duration) -> Run {
    tokio::time::sleep(warmup).await;
    let c0 = meter.completed.load(Relaxed);
    let sample = Sample::take(watched);
    let sent0 = meter.sent.load(Relaxed);
    meter.recording.store(true, Relaxed);
    tokio::time::sleep(window).await;
    meter.recording.store(false, Relaxed);
    let mut run = sample.finish(watched);
    run.count = meter.completed.load(Relaxed) - c0;
    run.sent = meter.sent.load(Relaxed) - sent0;
    run
}

/// CPU clocks at the start of a window.
struct Sample {
    parts: Vec<Duration>,
    generator: Duration,
    machine: Duration,
    at: Instant,
}

fn cpu_of(pids: &[u32]) -> Vec<Duration> {
    pids.iter()
        .map(|p| procs::cpu_time(*p).unwrap_or_default())
        .collect()
}

impl Sample {
    /// CPU clocks of the processes `watched` (the server side), this generator and the
    /// machine.
    fn take(watched: &[u32]) -> Self {
        Self {
            parts: cpu_of(watched),
            generator: procs::self_cpu(),
            machine: procs::cores_busy(),
            at: Instant::now(),
        }
    }

    /// The window since `take`, with CPU times filled in (count and latency left empty).
    fn finish(self, watched: &[u32]) -> Run {
        let part_cpu: Vec<Duration> = cpu_of(watched)
            .into_iter()
            .zip(&self.parts)
            .map(|(now, then)| now.saturating_sub(*then))
            .collect();
        let server_cpu = part_cpu.iter().sum();
        let gen_cpu = procs::self_cpu().saturating_sub(self.generator);
        let machine = procs::cores_busy().saturating_sub(self.machine);
        Run {
            window: self.at.elapsed(),
            server_cpu,
            part_cpu,
            gen_cpu,
            others_cpu: machine.saturating_sub(server_cpu + gen_cpu),
            ..Run::default()
        }
    }
}

/// Stops the tasks and gathers their latency samples.
async fn finish(stop: watch::Sender<bool>, mut tasks: JoinSet<Vec<u64>>) -> Vec<u64> {
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    let mut samples = Vec::new();
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok(mut s) = done {
            samples.append(&mut s);
        }
    }
    tasks.abort_all();
    samples
}

fn http_for(endpoint: &Endpoint) -> Option<std::net::SocketAddr> {
    match endpoint {
        Endpoint::Switchboard { http, .. } => Some(*http),
        Endpoint::Ceiling { .. } => None,
    }
}

async fn http_client(endpoint: &Endpoint) -> Result<Option<HttpClient>, Error> {
    Ok(match http_for(endpoint) {
        Some(addr) => Some(HttpClient::connect(addr).await?),
        None => None,
    })
}

/// A frame with a fixed-width `t0` slot that is stamped just before sending.
struct Template {
    text: String,
    slot: usize,
}

impl Template {
    const WIDTH: usize = 20;

    fn new(before: &str, after: &str) -> Self {
        Self {
            text: format!("{before}\"t0\":{:<20}{after}", 0),
            slot: before.len() + 5,
        }
    }

    fn stamp(&self, t0: u64) -> Message {
        let mut text = self.text.clone();
        // Space-padded: JSON allows whitespace after a number, not leading zeros.
        text.replace_range(self.slot..self.slot + Self::WIDTH, &format!("{t0:<20}"));
        Message::text(text)
    }
}

/// An SDP-like string (JSON-escaped) of about `len` bytes.
fn sdp_blob(len: usize) -> String {
    const LINES: &[&str] = &[
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:Xk3q",
        "a=ice-pwd:w1a6eMpsdQ4qk3p1Jt8zW8rq",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
        "a=setup:actpass",
        "a=mid:0",
        "a=sctp-port:5000",
        "a=max-message-size:262144",
    ];
    let mut out = String::with_capacity(len + 128);
    for line in LINES.iter().cycle() {
        if out.len() >= len {
            break;
        }
        out.push_str(line);
        out.push_str("\\r\\n");
    }
    out.truncate(len);
    // Never end inside an escape.
    while out.ends_with('\\') {
        out.pop();
    }
    out
}

/// Relay: `pairs` pairs, each in its own room; the offerer keeps `outstanding` SDP offers in
/// flight, the answerer answers each, and each answer triggers the next offer. Every delivery
/// (either way) counts, with its one-way latency.
pub async fn relay(
    server: &Server,
    pairs: usize,
    outstanding: usize,
    payload: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Run, Error> {
    let shape = RelayShape {
        pairs,
        outstanding,
        payload,
        paced: None,
    };
    let (ep, pid) = (&server.endpoint, [server.pid]);
    relay_between(ep, ep, &pid, shape, warmup, window).await
}

/// The size of a relay run.
#[derive(Debug, Clone, Copy)]
pub struct RelayShape {
    /// Pairs, each in its own room.
    pub pairs: usize,
    /// Offers in flight per pair.
    pub outstanding: usize,
    /// SDP size in bytes.
    pub payload: usize,
    /// Open loop instead: offers go out on a timer so that offers plus answers make this
    /// many deliveries a second in all, whatever the replies do (`outstanding` unused).
    pub paced: Option<f64>,
}

/// Relay (see [`relay`]) with every offerer joined through `offerers` and every answerer
/// through `answerers` (the same server, or two instances of a cluster); the server CPU
/// is that of the processes `watched`.
pub async fn relay_between(
    offerers: &Endpoint,
    answerers: &Endpoint,
    watched: &[u32],
    shape: RelayShape,
    warmup: Duration,
    window: Duration,
) -> Result<Run, Error> {
    let RelayShape {
        pairs,
        outstanding,
        payload,
        paced,
    } = shape;
    // Each offer makes two deliveries (it, and its answer).
    let period = paced.map(|rate| Duration::from_secs_f64(2.0 * pairs as f64 / rate.max(1e-9)));
    let config = client::ws_config(BUSY_READ_BUFFER);
    let mut http_a = http_client(offerers).await?;
    let mut http_b = http_client(answerers).await?;
    let sdp = sdp_blob(payload);
    let mut joined = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let room = format!("relay-{i}");
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        let mut wa = client::join(offerers, http_a.as_mut(), &a, &room, config).await?;
        let wb = client::join(answerers, http_b.as_mut(), &b, &room, config).await?;
        if let Endpoint::Switchboard { .. } = offerers {
            // Across instances the answerer's join reaches the offerer's instance a moment
            // after `room-joined`: an offer sent before that would find no such peer.
            client::expect(&mut wa, "peer-joined").await?;
        }
        joined.push((a, b, wa, wb));
    }
    let meter = Meter::new();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let start = tokio::time::Instant::now();
    for (i, (a, b, wa, wb)) in joined.into_iter().enumerate() {
        let offer = Template::new(
            &format!(r#"{{"type":"sdp-offer","data":{{"peer":"{b}","offer":{{"#),
            &format!(r#","type":"offer","sdp":"{sdp}"}}}}}}"#),
        );
        let answer = Template::new(
            &format!(r#"{{"type":"sdp-answer","data":{{"peer":"{a}","answer":{{"#),
            &format!(r#","type":"answer","sdp":"{sdp}"}}}}}}"#),
        );
        let offerer = match period {
            // Phases spread over the period.
            Some(period) => Sends::Paced {
                first: start + period.mul_f64(i as f64 / pairs as f64),
                period,
            },
            None => Sends::ClosedLoop {
                initial: outstanding,
            },
        };
        tasks.spawn(relay_peer(
            wa,
            offer,
            ANSWER_PREFIX,
            offerer,
            meter.clone(),
            stopped.clone(),
        ));
        tasks.spawn(relay_peer(
            wb,
            answer,
            OFFER_PREFIX,
            Sends::ClosedLoop { initial: 0 },
            meter.clone(),
            stopped.clone(),
        ));
    }
    let mut run = measure(watched, &meter, warmup, window).await;
    let mut samples = finish(stop, tasks).await;
    run.latency = Latency::of(&mut samples);
    run.failures = meter.failures.load(Relaxed);
    if let Some(e) = meter.first_error() {
        eprintln!("  relay: {} failures, first: {e}", run.failures);
    }
    Ok(run)
}

/// One side of a relay pair: sends `initial` frames, then one reply per frame received that
/// starts with `expect`.
/// When a relay peer sends.
#[derive(Debug, Clone, Copy)]
enum Sends {
    /// `initial` frames at once, then one for every frame received.
    ClosedLoop { initial: usize },
    /// One every `period` from `first` (late ticks are caught up), none in reply.
    Paced {
        first: tokio::time::Instant,
        period: Duration,
    },
}

async fn relay_peer(
    mut ws: Ws,
    reply: Template,
    expect: &'static str,
    sends: Sends,
    meter: Arc<Meter>,
    mut stop: watch::Receiver<bool>,
) -> Vec<u64> {
    let mut samples = Vec::new();
    let (initial, mut ticks) = match sends {
        Sends::ClosedLoop { initial } => (initial, None),
        Sends::Paced { first, period } => {
            let mut ticks = tokio::time::interval_at(first, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            (0, Some(ticks))
        }
    };
    let replies = ticks.is_none();
    for _ in 0..initial {
        if let Err(e) = ws.send(reply.stamp(meter.now_ns())).await {
            meter.fail(e);
            return samples;
        }
    }
    loop {
        tokio::select! {
            // The stop signal wins over a ready frame: once stopping, peers leave in any
            // order, and what the server says about that is no failure.
            biased;
            _ = stop.changed() => break,
            _ = async { ticks.as_mut()?.tick().await; Some(()) }, if ticks.is_some() => {
                if let Err(e) = ws.send(reply.stamp(meter.now_ns())).await {
                    meter.fail(e);
                    break;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if text.starts_with(expect) {
                        meter.complete(&mut samples, sent_at(&text));
                        if !replies {
                            continue;
                        }
                        if let Err(e) = ws.send(reply.stamp(meter.now_ns())).await {
                            meter.fail(e);
                            break;
                        }
                    } else if text.starts_with(ERROR_PREFIX) {
                        meter.fail(text);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => { meter.fail(e); break; }
                None => { meter.fail("connection closed"); break; }
            }
        }
    }
    samples
}

/// Fan-out: `rooms` rooms of `room_size`; every peer sends a `cursor-update` `hz` times a
/// second (phases spread evenly) and counts what it receives from the others.
pub async fn fanout(
    server: &Server,
    rooms: usize,
    room_size: usize,
    hz: f64,
    warmup: Duration,
    window: Duration,
) -> Result<Run, Error> {
    let endpoint = server.endpoint;
    let config = client::ws_config(BUSY_READ_BUFFER);
    let mut http = http_client(&endpoint).await?;
    let mut joined = Vec::with_capacity(rooms * room_size);
    for r in 0..rooms {
        let room = format!("fan-{r}");
        for p in 0..room_size {
            let user = format!("f{r}-{p}");
            joined.push(client::join(&endpoint, http.as_mut(), &user, &room, config).await?);
        }
    }
    let meter = Meter::new();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let period = Duration::from_secs_f64(1.0 / hz);
    let total = joined.len() as u32;
    let start = tokio::time::Instant::now();
    for (i, ws) in joined.into_iter().enumerate() {
        let cursor = Template::new(
            r#"{"type":"cursor-update","data":{"#,
            &format!(r#","line":{},"column":{}}}}}"#, 100 + i, 40),
        );
        let phase = period * (i as u32) / total.max(1);
        tasks.spawn(fanout_peer(
            ws,
            cursor,
            start + phase,
            period,
            meter.clone(),
            stopped.clone(),
        ));
    }
    let mut run = measure(&[server.pid], &meter, warmup, window).await;
    let mut samples = finish(stop, tasks).await;
    run.latency = Latency::of(&mut samples);
    run.failures = meter.failures.load(Relaxed);
    if let Some(e) = meter.first_error() {
        eprintln!("  fanout: {} failures, first: {e}", run.failures);
    }
    Ok(run)
}

async fn fanout_peer(
    mut ws: Ws,
    cursor: Template,
    first: tokio::time::Instant,
    period: Duration,
    meter: Arc<Meter>,
    mut stop: watch::Receiver<bool>,
) -> Vec<u64> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            // The stop signal wins over a ready frame: once stopping, peers leave in any
            // order, and what the server says about that is no failure.
            biased;
            _ = stop.changed() => break,
            _ = tick.tick() => {
                meter.sent.fetch_add(1, Relaxed);
                if let Err(e) = ws.send(cursor.stamp(meter.now_ns())).await {
                    meter.fail(e);
                    break;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if text.starts_with(CURSOR_PREFIX) {
                        meter.complete(&mut samples, sent_at(&text));
                    } else if text.starts_with(ERROR_PREFIX) {
                        meter.fail(text);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => { meter.fail(e); break; }
                None => { meter.fail("connection closed"); break; }
            }
        }
    }
    samples
}

/// What the connect + idle run measured.
#[derive(Debug, Clone, Default)]
pub struct Idle {
    /// The connect ramp: `count` peers brought in over `window`.
    pub connect: Run,
    /// Peers held.
    pub peers: u64,
    /// RSS before any connection, KiB.
    pub rss_base_kib: u64,
    /// RSS with every peer joined, KiB.
    pub rss_joined_kib: u64,
    /// RSS after the heartbeat round, KiB.
    pub rss_after_kib: u64,
    /// Length and server CPU of the window between heartbeats.
    pub quiet: (Duration, Duration),
    /// Length and server CPU of the window around one heartbeat round.
    pub beat: (Duration, Duration),
    /// Heartbeat frames the peers received in the beat window.
    pub beats_seen: u64,
    /// The server's heartbeat interval.
    pub interval: Duration,
}

impl Idle {
    /// RSS growth per held peer, KiB (the larger of joined and after a heartbeat).
    pub fn kib_per_peer(&self) -> f64 {
        let top = self.rss_joined_kib.max(self.rss_after_kib);
        top.saturating_sub(self.rss_base_kib) as f64 / self.peers.max(1) as f64
    }
    /// Server CPU between heartbeats, as a fraction of a core.
    pub fn quiet_fraction(&self) -> f64 {
        self.quiet.1.as_secs_f64() / self.quiet.0.as_secs_f64().max(1e-9)
    }
    /// Server CPU spent on one heartbeat round beyond the quiet rate.
    pub fn beat_cost(&self) -> Duration {
        let extra = self.beat.1.as_secs_f64() - self.quiet_fraction() * self.beat.0.as_secs_f64();
        Duration::from_secs_f64(extra.max(0.0))
    }
    /// Idle CPU as a percentage of a core over a whole heartbeat interval: the quiet rate
    /// plus one round's cost spread over the interval.
    pub fn idle_pct(&self) -> f64 {
        100.0
            * (self.quiet_fraction()
                + self.beat_cost().as_secs_f64() / self.interval.as_secs_f64().max(1e-9))
    }
}

/// Peers brought in and held by [`bring_in`].
struct Held {
    holders: Vec<tokio::task::JoinHandle<()>>,
    beats: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl Held {
    /// Stops the holders (dropping their connections) within [`STOP_GRACE`].
    async fn release(self) {
        let _ = self.stop.send(true);
        let until = tokio::time::Instant::now() + STOP_GRACE;
        for h in self.holders {
            if tokio::time::timeout_at(until, h).await.is_err() {
                break;
            }
        }
    }
}

/// Brings `peers` peers in (rooms of 2, `concurrency` at a time, for at most `limit`): for
/// switchboard the full path (token over a keep-alive HTTP connection per worker, upgrade,
/// `auth-ok`, `join-room`, `room-joined`), for the ceiling the upgrade. Each peer is then
/// held by a task that reads (so pings are answered) and counts heartbeats.
async fn bring_in(
    server: &Server,
    peers: usize,
    concurrency: usize,
    limit: Duration,
) -> (Run, Held) {
    let endpoint = server.endpoint;
    let meter = Meter::new();
    let beats = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + limit;
    let sample = Sample::take(&[server.pid]);
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (meter, beats, next, stopped) =
            (meter.clone(), beats.clone(), next.clone(), stopped.clone());
        workers.spawn(async move {
            let mut holders = Vec::new();
            let mut http = match http_client(&endpoint).await {
                Ok(h) => h,
                Err(e) => {
                    meter.fail(e);
                    return holders;
                }
            };
            let config = client::ws_config(IDLE_READ_BUFFER);
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= peers || Instant::now() > deadline {
                    break;
                }
                let (user, room) = (format!("i{i}"), format!("idle-{}", i / 2));
                match client::join(&endpoint, http.as_mut(), &user, &room, config).await {
                    Ok(ws) => {
                        meter.completed.fetch_add(1, Relaxed);
                        holders.push(tokio::spawn(hold(
                            ws,
                            beats.clone(),
                            meter.clone(),
                            stopped.clone(),
                        )));
                    }
                    Err(e) => meter.fail(e),
                }
            }
            holders
        });
    }
    let mut holders = Vec::new();
    while let Some(done) = workers.join_next().await {
        if let Ok(mut h) = done {
            holders.append(&mut h);
        }
    }
    let mut run = sample.finish(&[server.pid]);
    run.count = meter.completed.load(Relaxed);
    run.failures = meter.failures.load(Relaxed);
    if let Some(e) = meter.first_error() {
        eprintln!("  connect: {} failures, first: {e}", run.failures);
    }
    let held = Held {
        holders,
        beats,
        stop,
    };
    (run, held)
}

/// Connect: the rate at which `peers` peers come in (see [`bring_in`]).
pub async fn connect(
    server: &Server,
    peers: usize,
    concurrency: usize,
    limit: Duration,
) -> Result<Run, Error> {
    let (run, held) = bring_in(server, peers, concurrency, limit).await;
    held.release().await;
    Ok(run)
}

/// Idle: brings `peers` peers in and holds them; measures the server's RSS growth, its CPU
/// between heartbeats and around one heartbeat round (whose timer starts with the server).
pub async fn idle(
    server: &Server,
    peers: usize,
    concurrency: usize,
    interval: Duration,
    connect_limit: Duration,
) -> Result<Idle, Error> {
    tokio::time::sleep_until((server.started + Duration::from_millis(300)).into()).await;
    let rss_base_kib = server.rss_kib();
    let (connect, held) = bring_in(server, peers, concurrency, connect_limit).await;
    let held_peers = connect.count;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_joined_kib = server.rss_kib();

    // Rounds come at started + k * interval. Measure a quiet window ending shortly before
    // the next round, then a window around it.
    let margin = Duration::from_millis(1500);
    let now = Instant::now();
    let mut round = server.started + interval;
    while round < now + margin + Duration::from_secs(1) {
        round += interval;
    }
    // Start after the previous round (if any) has settled.
    let previous = round - interval;
    if previous > server.started && previous + margin > now {
        tokio::time::sleep_until((previous + margin).into()).await;
    }
    let quiet_end = round - margin;
    let (qs, qt) = (server.cpu(), Instant::now());
    tokio::time::sleep_until(quiet_end.into()).await;
    let (bs, bt) = (server.cpu(), Instant::now());
    let quiet = (bt - qt, bs.saturating_sub(qs));
    let beats = held.beats.clone();
    let beats0 = beats.load(Relaxed);
    let beat_deadline = round + Duration::from_secs(10);
    while beats.load(Relaxed) - beats0 < held_peers && Instant::now() < beat_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the pongs reach the server and be read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (es, et) = (server.cpu(), Instant::now());
    let beat = (et - bt, es.saturating_sub(bs));
    let beats_seen = beats.load(Relaxed) - beats0;
    let rss_after_kib = server.rss_kib();
    held.release().await;
    Ok(Idle {
        connect,
        peers: held_peers,
        rss_base_kib,
        rss_joined_kib,
        rss_after_kib,
        quiet,
        beat,
        beats_seen,
        interval,
    })
}

/// Holds one idle peer: reads (so pings are answered) and counts heartbeats.
async fn hold(
    mut ws: Ws,
    beats: Arc<AtomicU64>,
    meter: Arc<Meter>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            // The stop signal wins over a ready frame: once stopping, peers leave in any
            // order, and what the server says about that is no failure.
            biased;
            _ = stop.changed() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if text.starts_with(HEARTBEAT_PREFIX) {
                        beats.fetch_add(1, Relaxed);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => { meter.fail(e); break; }
                None => { meter.fail("idle peer dropped"); break; }
            }
        }
    }
}

/// Tokens: `clients` keep-alive HTTP connections each asking for tokens back to back.
pub async fn tokens(
    server: &Server,
    clients: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Run, Error> {
    let addr = http_for(&server.endpoint).ok_or("tokens needs switchboard's HTTP API")?;
    let meter = Meter::new();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for c in 0..clients {
        let (meter, stopped) = (meter.clone(), stopped.clone());
        let mut http = HttpClient::connect(addr).await?;
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut i: u64 = 0;
            while !*stopped.borrow() {
                i += 1;
                let t0 = meter.now_ns();
                let (user, room) = (format!("t{c}-{i}"), format!("tok-{}", i % 1000));
                match http.token(&user, &room).await {
                    Ok(_) => meter.complete(&mut samples, Some(t0)),
                    Err(e) => {
                        meter.fail(e);
                        break;
                    }
                }
            }
            samples
        });
    }
    let mut run = measure(&[server.pid], &meter, warmup, window).await;
    let mut samples = finish(stop, tasks).await;
    run.latency = Latency::of(&mut samples);
    run.failures = meter.failures.load(Relaxed);
    if let Some(e) = meter.first_error() {
        eprintln!("  tokens: {} failures, first: {e}", run.failures);
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_stamps_a_parsable_time_into_valid_json() {
        let t = Template::new(
            r#"{"type":"sdp-offer","data":{"peer":"b","offer":{"#,
            &format!(r#","sdp":"{}"}}}}}}"#, sdp_blob(1000)),
        );
        let Message::Text(text) = t.stamp(123_456_789) else {
            panic!("not text")
        };
        assert_eq!(sent_at(&text), Some(123_456_789));
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert!(v["data"]["offer"]["sdp"]
            .as_str()
            .unwrap()
            .starts_with("v=0\r\n"));
        assert!(text.len() > 1000 && text.len() < 1200);
    }

    #[test]
    fn idle_cpu_spreads_one_round_over_the_interval() {
        let idle = Idle {
            quiet: (Duration::from_secs(20), Duration::from_millis(20)),
            beat: (Duration::from_secs(3), Duration::from_millis(303)),
            interval: Duration::from_secs(30),
            ..Idle::default()
        };
        assert!((idle.beat_cost().as_secs_f64() - 0.300).abs() < 1e-9);
        assert!((idle.idle_pct() - 1.1).abs() < 1e-9);
    }
}

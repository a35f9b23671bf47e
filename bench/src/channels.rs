//! `channels`: what Redis pub/sub costs cluster mode with one channel per instance (what
//! switchboard does) and with one channel per room (the alternative), measured on a real
//! `redis-server` with the same client crate the server uses.
//!
//! Two subscriber connections stand for instances A and B; every room has one member on
//! each, so every relay crosses. A publisher connection sends `relays` relays of
//! `payload` bytes, spread over `rooms` rooms, in one of three shapes:
//!
//! - **per-instance, batched**: relays for one instance packed `batch` to a `PUBLISH` on
//!   that instance's channel (what the server does under load);
//! - **per-instance, one per PUBLISH**: the same channels, no packing (the server without
//!   load);
//! - **per-room**: one `PUBLISH` per relay on the room's channel, to which both instances
//!   are subscribed: each relay reaches both, and the sender drops its own echo. A
//!   `PUBLISH` cannot carry relays of several rooms, so nothing can be packed.
//!
//! Figures: Redis CPU and the clients' CPU (this process: publisher and both subscribers)
//! per relay, and deliveries per relay. Then the churn per-room channels add: a room's
//! first member on an instance must `SUBSCRIBE` before its join completes, and its last
//! must `UNSUBSCRIBE`; per-instance channels subscribe once per instance lifetime.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use switchboard_testkit::Redis;

use crate::client::Error;
use crate::procs;

/// The sizes of a `channels` run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Rooms (channels in the per-room shape).
    pub rooms: usize,
    /// Relays sent per shape.
    pub relays: usize,
    /// Bytes per relay.
    pub payload: usize,
    /// Relays per `PUBLISH` in the batched shape.
    pub batch: usize,
    /// Core for redis-server.
    pub redis_core: usize,
}

/// How relays travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    InstanceBatched,
    InstanceSingle,
    Room,
}

impl Layout {
    fn label(self) -> &'static str {
        match self {
            Layout::InstanceBatched => "per-instance, batched",
            Layout::InstanceSingle => "per-instance, 1 per PUBLISH",
            Layout::Room => "per-room",
        }
    }
}

/// One shape's figures.
struct Figures {
    relays_per_s: f64,
    redis_us: f64,
    clients_us: f64,
    deliveries_per_relay: f64,
}

/// Runs the three shapes and the churn measurement, each on a fresh `redis-server`, and
/// prints the figures.
pub async fn run(shape: Shape) -> Result<(), Error> {
    println!(
        "channels: {} relays of {} B over {} rooms, 2 instances (subscribers), batch {}; \
         redis-server on core {}, clients in this process",
        shape.relays, shape.payload, shape.rooms, shape.batch, shape.redis_core
    );
    println!(
        "{:<30} {:>10} {:>16} {:>18} {:>20}",
        "layout", "relays/s", "redis CPU us/relay", "clients CPU us/relay", "deliveries/relay"
    );
    for layout in [
        Layout::InstanceBatched,
        Layout::InstanceSingle,
        Layout::Room,
    ] {
        let mut redis = Redis::start_on_core(shape.redis_core)?;
        let f = relay(&redis, shape, layout).await?;
        redis.stop();
        println!(
            "{:<30} {:>10.0} {:>16.2} {:>18.2} {:>20.2}",
            layout.label(),
            f.relays_per_s,
            f.redis_us,
            f.clients_us,
            f.deliveries_per_relay
        );
    }
    let mut redis = Redis::start_on_core(shape.redis_core)?;
    let (rtt, redis_us) = churn(&redis, shape.rooms).await?;
    redis.stop();
    println!(
        "per-room churn: SUBSCRIBE on a room's first join + UNSUBSCRIBE on its last leave, {} \
         rooms one after another: {:.1} us round trip each (added to those joins), {:.2} us \
         redis CPU per room; per-instance channels: one SUBSCRIBE per instance lifetime",
        shape.rooms, rtt, redis_us
    );
    Ok(())
}

/// Sends `shape.relays` relays in `layout` and waits until the subscribers have them all.
async fn relay(redis: &Redis, shape: Shape, layout: Layout) -> Result<Figures, Error> {
    let client = redis::Client::open(redis.url())?;
    let instances = ["sb:i:a", "sb:i:b"];
    let room_channel = |r: usize| format!("sb:room:{r}");
    // Subscribers count payload bytes: a relay is `payload` bytes wherever it travels.
    let received = Arc::new(AtomicU64::new(0));
    let deliveries = Arc::new(AtomicU64::new(0));
    let mut subscribers = Vec::new();
    for instance in instances {
        let mut pubsub = client.get_async_pubsub().await?;
        match layout {
            Layout::Room => {
                for r in 0..shape.rooms {
                    pubsub.subscribe(room_channel(r)).await?;
                }
            }
            _ => pubsub.subscribe(instance).await?,
        }
        let (received, deliveries) = (received.clone(), deliveries.clone());
        subscribers.push(tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            while let Some(msg) = stream.next().await {
                received.fetch_add(msg.get_payload_bytes().len() as u64, Relaxed);
                deliveries.fetch_add(1, Relaxed);
            }
        }));
    }
    let mut publisher = client.get_multiplexed_async_connection().await?;
    let relay = vec![b'x'; shape.payload];
    let per_publish = if layout == Layout::InstanceBatched {
        shape.batch.max(1)
    } else {
        1
    };
    let packed = relay.repeat(per_publish);
    // Every relay reaches one instance, or (per-room) both.
    let copies = if layout == Layout::Room { 2 } else { 1 };
    let expected = (shape.relays / per_publish * per_publish * shape.payload * copies) as u64;

    let redis_before = procs::cpu_time(redis.pid()).unwrap_or_default();
    let clients_before = procs::self_cpu();
    let began = Instant::now();
    let mut sent = 0usize;
    let mut k = 0usize;
    while sent + per_publish <= shape.relays {
        // One pipeline of up to 64 PUBLISHes at a time, as the server's publisher does.
        let mut pipe = redis::pipe();
        for _ in 0..64 {
            if sent + per_publish > shape.relays {
                break;
            }
            match layout {
                Layout::Room => {
                    pipe.publish(room_channel(k % shape.rooms), relay.as_slice())
                        .ignore();
                }
                _ => {
                    pipe.publish(instances[k % 2], packed.as_slice()).ignore();
                }
            }
            sent += per_publish;
            k += 1;
        }
        let () = pipe.query_async(&mut publisher).await?;
    }
    // Polled every 200 µs rather than with the kit's `eventually`, whose pauses grow to
    // 100 ms: the end of this wait is the end of the measured time.
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Relaxed) < expected {
        if Instant::now() > deadline {
            return Err(format!(
                "{}: subscribers got {} of {expected} bytes in 30 s",
                layout.label(),
                received.load(Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = began.elapsed();
    let redis_cpu = procs::cpu_time(redis.pid()).unwrap_or_default() - redis_before;
    let clients_cpu = procs::self_cpu() - clients_before;
    for s in subscribers {
        s.abort();
    }
    let n = sent as f64;
    Ok(Figures {
        relays_per_s: n / elapsed.as_secs_f64(),
        redis_us: redis_cpu.as_secs_f64() * 1e6 / n,
        clients_us: clients_cpu.as_secs_f64() * 1e6 / n,
        deliveries_per_relay: (deliveries.load(Relaxed) as f64 * per_publish as f64) / n,
    })
}

/// Subscribes to and unsubscribes from `rooms` room channels one at a time, as joins and
/// leaves would. Returns the mean round trip of one operation (µs) and Redis CPU per room.
async fn churn(redis: &Redis, rooms: usize) -> Result<(f64, f64), Error> {
    let client = redis::Client::open(redis.url())?;
    let mut pubsub = client.get_async_pubsub().await?;
    let redis_before = procs::cpu_time(redis.pid()).unwrap_or_default();
    let began = Instant::now();
    for r in 0..rooms {
        pubsub.subscribe(format!("sb:room:{r}")).await?;
    }
    for r in 0..rooms {
        pubsub.unsubscribe(format!("sb:room:{r}")).await?;
    }
    let elapsed = began.elapsed();
    let redis_cpu = procs::cpu_time(redis.pid()).unwrap_or_default() - redis_before;
    let n = rooms.max(1) as f64;
    Ok((
        elapsed.as_secs_f64() * 1e6 / (2.0 * n),
        redis_cpu.as_secs_f64() * 1e6 / n,
    ))
}

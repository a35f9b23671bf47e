//! The ceiling: a bare tokio-tungstenite forwarder. The request path names the room; every
//! text or binary frame is forwarded verbatim to the room's other members, with no parsing,
//! no authentication and no limits beyond a bounded queue per connection. It uses the
//! server's own socket settings (read and write buffer sizes, `TCP_NODELAY`, one reader
//! task plus one writer task per connection fed by a bounded queue of 256, the same runtime
//! choice: current-thread on one allowed core, else one worker per core), so the gap between it and `switchboard` is the cost of the
//! protocol, not of the plumbing.
//!
//! With `--heartbeat-secs N` it also sends every connection a small heartbeat text frame and
//! a ping every N seconds, as `switchboard` does, so idle CPU compares like with like.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use switchboard_signaling::server::{READ_BUFFER_BYTES, WRITE_BUFFER_BYTES};

/// Frames that may wait for one connection's writer (switchboard's default outbound queue).
const QUEUE: usize = 256;
/// Largest message, as switchboard's default `MAX_MESSAGE_BYTES`.
const MAX_MESSAGE_BYTES: usize = 65_536;

type Members = Mutex<Vec<(u64, mpsc::Sender<Message>)>>;

#[derive(Default)]
struct Hub {
    rooms: Mutex<HashMap<String, Arc<Members>>>,
    next_id: AtomicU64,
}

impl Hub {
    fn join(&self, room: &str, id: u64, tx: mpsc::Sender<Message>) -> Arc<Members> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let members = rooms.entry(room.to_string()).or_default().clone();
        members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, tx));
        members
    }

    fn leave(&self, room: &str, members: &Arc<Members>, id: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let mut list = members.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(m, _)| *m != id);
        if list.is_empty() {
            rooms.remove(room);
        }
    }
}

/// The socket settings switchboard uses (see `switchboard_signaling::server`).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_BYTES + 2 * MAX_MESSAGE_BYTES + 1024)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// Runs the forwarder on `addr` until killed. Prints `{"message":"listening","addr":...}`.
pub fn run(addr: SocketAddr, heartbeat: Option<Duration>) -> std::io::Result<()> {
    // Same runtime shape as switchboard: on one allowed core a current-thread runtime,
    // otherwise multi-threaded with one worker per allowed core.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = builder.enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        let hub = Arc::new(Hub::default());
        if let Some(every) = heartbeat {
            tokio::spawn(heartbeats(hub.clone(), every));
        }
        let line = serde_json::json!({"message": "listening", "addr": listener.local_addr()?});
        println!("{line}");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(handle(hub.clone(), stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
}

async fn heartbeats(hub: Arc<Hub>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let beat: Utf8Bytes = format!(r#"{{"type":"heartbeat","data":{{"ts":{ts}}}}}"#).into();
        let rooms: Vec<Arc<Members>> = hub
            .rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for members in rooms {
            for (_, tx) in members.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                let _ = tx.try_send(Message::Text(beat.clone()));
                let _ = tx.try_send(Message::Ping(Default::default()));
            }
        }
    }
}

async fn handle(hub: Arc<Hub>, stream: TcpStream) {
    let id = hub.next_id.fetch_add(1, Relaxed);
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    let mut joined: Option<(String, Arc<Members>)> = None;
    // Join during the handshake, before the 101 goes out, so a client that has its
    // response is already a member. (The result type is fixed by tungstenite's `Callback`.)
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        let room = req.uri().path().to_string();
        joined = Some((room.clone(), hub.join(&room, id, tx)));
        Ok(resp)
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config())).await;
    let Some((room, members)) = joined else {
        return;
    };
    let Ok(ws) = ws else {
        hub.leave(&room, &members, id);
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(msg) = rx.try_recv() {
                if sink.feed(msg).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                for (member, tx) in members.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    if *member != id {
                        let _ = tx.try_send(msg.clone());
                    }
                }
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    // Dropping the membership drops the last sender, which ends the writer.
    hub.leave(&room, &members, id);
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

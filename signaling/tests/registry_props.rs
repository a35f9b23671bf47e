//! Property tests of the room registry through its public API: any sequence of joins,
//! leaves, disconnects, reconnects (the same user on a new connection), replacements,
//! closes, room creations, presence changes and sweeps keeps the registry's invariants, and
//! once everybody is gone and the sweeps have run, nothing is left.
//!
//! The driver plays the part of `connection.rs`: a connection joins only while it is not in
//! a room, and a connection the registry ended (replaced, room closed) is torn down the way
//! the reader loop does it (`connection_lost`, then `close_conn`). Time is tokio's paused
//! clock, so reconnect graces, empty-room graces, TTLs and tombstones run in microseconds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use switchboard_signaling::conn::{Conn, KillReason};
use switchboard_signaling::options::RoomOptions;
use switchboard_signaling::protocol::{CloseReason, PeerStatus, Presence, RoomMeta};
use switchboard_signaling::registry::{Identity, Room};
use switchboard_signaling::{ErrorCode, Registry, SignalingConfig, Stats};

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const ROOMS: [&str; 3] = ["r0", "r1", "r2"];
const SLOTS: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    /// A new connection in `slot` (if it is free) authenticated as `user` for `room`.
    Open {
        slot: usize,
        user: usize,
        room: usize,
    },
    /// `join-room` (or `create-room` with options) on the connection in `slot`.
    Join { slot: usize, create: Option<Opts> },
    /// `leave-room`.
    Leave { slot: usize },
    /// The socket drops without `leave-room`.
    Disconnect { slot: usize },
    /// The heartbeat timeout removes the peer at once.
    Timeout { slot: usize },
    /// `close-room` (only the host may).
    CloseByHost { slot: usize },
    /// `DELETE /api/rooms/{id}` or an admin close.
    CloseRoom { room: usize },
    /// `POST /api/rooms` with `host` as host.
    CreateRoom {
        room: usize,
        host: usize,
        opts: Opts,
    },
    /// `presence` idle or active.
    Presence { slot: usize, idle: bool },
    /// Time passes by `ms`, then the sweeper runs.
    Sweep { ms: u64 },
}

#[derive(Debug, Clone)]
struct Opts {
    max_peers: usize,
    ttl_secs: Option<u64>,
    destroy_on_host_leave: bool,
}

fn opts() -> impl Strategy<Value = Opts> {
    (1usize..=3, prop::option::of(1u64..200), any::<bool>()).prop_map(|(max_peers, ttl_secs, d)| {
        Opts {
            max_peers,
            ttl_secs,
            destroy_on_host_leave: d,
        }
    })
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    prop_oneof![
        4 => (slot.clone(), 0..USERS.len(), 0..ROOMS.len())
            .prop_map(|(slot, user, room)| Op::Open { slot, user, room }),
        4 => (slot.clone(), prop::option::weighted(0.2, opts()))
            .prop_map(|(slot, create)| Op::Join { slot, create }),
        2 => slot.clone().prop_map(|slot| Op::Leave { slot }),
        2 => slot.clone().prop_map(|slot| Op::Disconnect { slot }),
        1 => slot.clone().prop_map(|slot| Op::Timeout { slot }),
        1 => slot.clone().prop_map(|slot| Op::CloseByHost { slot }),
        1 => (0..ROOMS.len()).prop_map(|room| Op::CloseRoom { room }),
        1 => (0..ROOMS.len(), 0..USERS.len(), opts())
            .prop_map(|(room, host, opts)| Op::CreateRoom { room, host, opts }),
        1 => (slot.clone(), any::<bool>()).prop_map(|(slot, idle)| Op::Presence { slot, idle }),
        2 => prop_oneof![0u64..2_000, 10_000u64..70_000].prop_map(|ms| Op::Sweep { ms }),
    ]
}

fn config() -> SignalingConfig {
    SignalingConfig {
        max_peers_per_room: 3,
        max_rooms: 2,
        reconnect_grace: Duration::from_secs(15),
        room_empty_grace: Duration::from_secs(60),
        room_idle_timeout: Duration::from_secs(600),
        // Nobody drains the queues here: never cut a connection off as a slow consumer.
        outbound_queue_size: 1 << 20,
        ..SignalingConfig::default()
    }
}

/// One simulated connection, as its reader loop would hold it.
struct Client {
    conn: Arc<Conn>,
    who: Identity,
    joined: Option<Arc<Room>>,
}

struct Driver {
    registry: Arc<Registry>,
    slots: Vec<Option<Client>>,
    /// Per room id: the host named by `POST /api/rooms`, and every user that joined the
    /// room since it was created. Such a host need not have joined yet.
    history: HashMap<String, (Option<String>, HashSet<String>)>,
}

impl Driver {
    fn new() -> Self {
        Self {
            registry: Registry::new(Arc::new(config()), Arc::new(Stats::default())),
            slots: (0..SLOTS).map(|_| None).collect(),
            history: HashMap::new(),
        }
    }

    fn options(&self, room: &str, o: &Opts) -> RoomOptions {
        RoomOptions {
            name: room.to_owned(),
            max_peers: o.max_peers,
            ttl: o.ttl_secs.map(Duration::from_secs),
            destroy_on_host_leave: o.destroy_on_host_leave,
        }
    }

    fn apply(&mut self, op: &Op) {
        let reg = self.registry.clone();
        match op {
            Op::Open { slot, user, room } => {
                if self.slots[*slot].is_none() {
                    self.slots[*slot] = Some(Client {
                        conn: reg.open_conn(),
                        who: Identity {
                            user_id: USERS[*user].into(),
                            room_id: ROOMS[*room].into(),
                            password_ok: false,
                        },
                        joined: None,
                    });
                }
            }
            Op::Join { slot, create } => {
                let Some(c) = self.slots[*slot].as_mut() else {
                    return;
                };
                if c.joined.is_some() {
                    return; // ALREADY_IN_ROOM, refused by the connection itself.
                }
                let create = create.as_ref().map(|o| RoomOptions {
                    name: c.who.room_id.to_string(),
                    max_peers: o.max_peers,
                    ttl: o.ttl_secs.map(Duration::from_secs),
                    destroy_on_host_leave: o.destroy_on_host_leave,
                });
                let existed = reg.room_meta(&c.who.room_id, false).is_ok();
                match reg.join_with(&c.conn, &c.who, c.who.user_id.to_string(), create, None) {
                    Ok(room) => {
                        assert_eq!(
                            room.id, c.who.room_id,
                            "joined another room than its token's"
                        );
                        let history = self.history.entry(room.id.to_string()).or_default();
                        if !existed {
                            *history = (None, HashSet::new());
                        }
                        history.1.insert(c.who.user_id.to_string());
                        c.joined = Some(room);
                    }
                    Err(code) => assert!(
                        matches!(
                            code,
                            ErrorCode::RoomClosed
                                | ErrorCode::RoomFull
                                | ErrorCode::RoomExists
                                | ErrorCode::TooManyRooms
                        ),
                        "unexpected join refusal {code:?}"
                    ),
                }
            }
            Op::Leave { slot } => {
                if let Some(c) = self.slots[*slot].as_mut() {
                    if let Some(room) = c.joined.take() {
                        reg.leave(&room, c.conn.id);
                    }
                }
            }
            Op::Disconnect { slot } => {
                if let Some(c) = self.slots[*slot].take() {
                    if let Some(room) = &c.joined {
                        reg.connection_lost(room, c.conn.id);
                    }
                    reg.close_conn(c.conn.id);
                }
            }
            Op::Timeout { slot } => {
                if let Some(c) = self.slots[*slot].take() {
                    if let Some(room) = &c.joined {
                        reg.remove_silent(room, c.conn.id);
                    }
                    reg.close_conn(c.conn.id);
                }
            }
            Op::CloseByHost { slot } => {
                if let Some(Client {
                    conn,
                    joined: Some(room),
                    ..
                }) = self.slots[*slot].as_ref()
                {
                    let r = reg.close_by_host(room, conn.id);
                    assert!(matches!(r, Ok(()) | Err(ErrorCode::Forbidden)), "{r:?}");
                }
            }
            Op::CloseRoom { room } => {
                let r = reg.close_room(ROOMS[*room], CloseReason::Admin);
                assert!(
                    matches!(
                        r,
                        Ok(()) | Err(ErrorCode::RoomNotFound | ErrorCode::RoomClosed)
                    ),
                    "{r:?}"
                );
            }
            Op::CreateRoom { room, host, opts } => {
                let options = self.options(ROOMS[*room], opts);
                let r = reg.create_room(
                    ROOMS[*room].into(),
                    options,
                    USERS[*host].into(),
                    None,
                    None,
                );
                if r.is_ok() {
                    let host = Some(USERS[*host].to_owned());
                    self.history
                        .insert(ROOMS[*room].to_owned(), (host, HashSet::new()));
                }
                if let Err(code) = r {
                    assert!(
                        matches!(
                            code,
                            ErrorCode::RoomExists | ErrorCode::RoomClosed | ErrorCode::TooManyRooms
                        ),
                        "{code:?}"
                    );
                }
            }
            Op::Presence { slot, idle } => {
                if let Some(Client {
                    conn,
                    joined: Some(room),
                    ..
                }) = self.slots[*slot].as_ref()
                {
                    let p = if *idle {
                        Presence::Idle
                    } else {
                        Presence::Active
                    };
                    let frame = Utf8Bytes::from_static(r#"{"type":"presence"}"#);
                    reg.broadcast(room, conn.id, &frame, Some(p))
                        .expect("a joined connection may broadcast");
                }
            }
            Op::Sweep { .. } => unreachable!("async: see run"),
        }
        self.reap();
    }

    /// Tears down every connection the registry ended, as the reader loop would.
    fn reap(&mut self) {
        for slot in self.slots.iter_mut() {
            let ended = slot.as_ref().and_then(|c| c.conn.kill_reason());
            if let Some(reason) = ended {
                let c = slot.take().expect("checked");
                if let Some(room) = &c.joined {
                    if reason == KillReason::HeartbeatTimeout {
                        self.registry.remove_silent(room, c.conn.id);
                    } else {
                        self.registry.connection_lost(room, c.conn.id);
                    }
                }
                self.registry.close_conn(c.conn.id);
            }
        }
    }

    fn rooms(&self) -> Vec<RoomMeta> {
        ROOMS
            .iter()
            .filter_map(|id| self.registry.room_meta(id, true).ok())
            .collect()
    }

    fn check(&self) {
        let rooms = self.rooms();
        let listed = self.registry.list_rooms();
        assert_eq!(
            listed.len(),
            rooms.len(),
            "list_rooms and room_meta disagree"
        );

        // Counts equal membership.
        let counts = self.registry.counts();
        let members: usize = rooms.iter().map(|r| r.peer_count).sum();
        assert_eq!(counts.rooms, rooms.len(), "room count");
        assert_eq!(counts.peers, members, "peer count");

        let mut connected: HashSet<(String, String)> = HashSet::new();
        for room in &rooms {
            let peers = room.peers.as_ref().expect("asked with peers");
            assert_eq!(peers.len(), room.peer_count);
            assert!(
                peers.len() <= room.max_peers,
                "{} over its limit",
                room.room_id
            );
            let ids: HashSet<&str> = peers.iter().map(|p| &*p.user_id).collect();
            assert_eq!(ids.len(), peers.len(), "a user twice in {}", room.room_id);
            // Hosts are members.
            if !peers.is_empty() {
                let host = room
                    .host_id
                    .as_deref()
                    .expect("a room with members has a host");
                if ids.contains(host) {
                    assert_eq!(peers.iter().filter(|p| p.is_host).count(), 1);
                } else {
                    // Only the host named at creation may be absent, until it first joins.
                    let (named, joined) = &self.history[&*room.room_id];
                    assert_eq!(
                        named.as_deref(),
                        Some(host),
                        "host {host} is not in {}",
                        room.room_id
                    );
                    assert!(
                        !joined.contains(host),
                        "host {host} left {} but kept the role",
                        room.room_id
                    );
                    assert!(peers.iter().all(|p| !p.is_host));
                }
            }
            for p in peers {
                if p.status != PeerStatus::Reconnecting {
                    connected.insert((room.room_id.to_string(), p.user_id.to_string()));
                }
            }
        }

        // A connection is in at most one room, and is exactly where it believes it is.
        let mut live: HashMap<(String, String), u64> = HashMap::new();
        for c in self.slots.iter().flatten() {
            if let Some(room) = &c.joined {
                let key = (room.id.to_string(), c.who.user_id.to_string());
                assert!(
                    live.insert(key.clone(), c.conn.id).is_none(),
                    "two live connections hold {key:?}"
                );
                assert!(
                    connected.contains(&key),
                    "{key:?} joined but not a connected member"
                );
            }
        }
        for key in &connected {
            assert!(
                live.contains_key(key),
                "{key:?} connected with no live connection"
            );
        }
    }
}

fn run(ops: Vec<Op>, finish_by_leaving: Vec<bool>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut d = Driver::new();
        for op in &ops {
            match op {
                Op::Sweep { ms } => {
                    tokio::time::advance(Duration::from_millis(*ms)).await;
                    d.registry.sweep(Instant::now());
                    d.reap();
                }
                op => d.apply(op),
            }
            d.check();
        }

        // Everybody goes, some politely, some by dropping; then the sweeps run.
        for (i, slot) in d.slots.iter_mut().enumerate() {
            if let Some(c) = slot.take() {
                if let Some(room) = &c.joined {
                    if finish_by_leaving[i] {
                        d.registry.leave(room, c.conn.id);
                    } else {
                        d.registry.connection_lost(room, c.conn.id);
                    }
                }
                d.registry.close_conn(c.conn.id);
            }
        }
        d.check();
        // Reconnect grace, then empty-room grace, then tombstones (60 s) run out.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(61)).await;
            d.registry.sweep(Instant::now());
        }
        d.check();
        // What is left are rooms created over HTTP that nobody joined (they wait for the
        // idle timeout), each with exactly one pending check: no superseded check keeps a
        // dead room allocated (one did, until its idle timeout fired, hours later).
        assert_eq!(d.registry.counts().peers, 0, "a peer remained");
        assert_eq!(
            d.registry.pending_deadlines(),
            d.registry.counts().rooms,
            "deadlines left behind"
        );
        tokio::time::advance(config().room_idle_timeout).await;
        d.registry.sweep(Instant::now());
        d.check();
        let counts = d.registry.counts();
        assert_eq!((counts.rooms, counts.peers), (0, 0), "something remained");
        assert!(d.registry.list_rooms().is_empty());
        assert!(d.registry.conns().is_empty(), "connections still tracked");
        assert_eq!(d.registry.pending_deadlines(), 0, "deadlines left behind");
        // Tombstones are gone too: every id can be used again.
        for room in ROOMS {
            let conn = d.registry.open_conn();
            let who = Identity {
                user_id: "late".into(),
                room_id: room.into(),
                password_ok: false,
            };
            let joined = d.registry.join_with(&conn, &who, "late".into(), None, None);
            let room = joined.unwrap_or_else(|e| panic!("{room} still refused: {e:?}"));
            d.registry.leave(&room, conn.id);
            d.registry.close_conn(conn.id);
            tokio::time::advance(Duration::from_secs(61)).await;
            d.registry.sweep(Instant::now());
            assert_eq!(d.registry.counts().rooms, 0);
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_sequence_keeps_the_registry_consistent_and_ends_empty(
        ops in prop::collection::vec(op(), 1..80),
        finish_by_leaving in prop::collection::vec(any::<bool>(), SLOTS),
    ) {
        run(ops, finish_by_leaving);
    }
}

/// A room whose host disconnects and whose grace runs out hands the host role on, and the
/// reconnecting member never counts twice.
#[test]
fn reconnect_within_grace_replaces_without_duplicates() {
    run(
        vec![
            Op::Open {
                slot: 0,
                user: 0,
                room: 0,
            },
            Op::Join {
                slot: 0,
                create: None,
            },
            Op::Open {
                slot: 1,
                user: 1,
                room: 0,
            },
            Op::Join {
                slot: 1,
                create: None,
            },
            Op::Disconnect { slot: 0 },
            Op::Open {
                slot: 2,
                user: 0,
                room: 0,
            },
            Op::Join {
                slot: 2,
                create: None,
            },
            Op::Open {
                slot: 3,
                user: 1,
                room: 0,
            },
            Op::Join {
                slot: 3,
                create: None,
            },
            Op::Sweep { ms: 20_000 },
        ],
        vec![true; SLOTS],
    );
}

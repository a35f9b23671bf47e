//! Property tests of one room's state machine (`switchboard_signaling::room::State`),
//! driven directly with no registry, socket or runtime: any sequence of joins (new users
//! and returning ones), leaves, dropped connections, heartbeat timeouts, host closes,
//! relays, presence changes and time passing keeps the rules of `docs/lifecycle.md`:
//! members stay unique and in join order within the limit, everybody else hears each
//! change, the host is handed to the longest present member, replaced and closed
//! connections are ended with the right reason, and after a check nothing due is left.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use proptest::prelude::*;
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use switchboard_signaling::broker::Standalone;
use switchboard_signaling::conn::{Conn, KillReason};
use switchboard_signaling::options::RoomOptions;
use switchboard_signaling::outbox::Outbound;
use switchboard_signaling::protocol::{LeaveReason, Presence};
use switchboard_signaling::room::member::Location;
use switchboard_signaling::room::{Env, Removed, State};
use switchboard_signaling::time::Clock;
use switchboard_signaling::{ErrorCode, SignalingConfig};

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const SLOTS: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    /// A new connection in `slot` (if free) joins as `user`.
    Join {
        slot: usize,
        user: usize,
    },
    Leave {
        slot: usize,
    },
    /// The socket drops without `leave-room`.
    Drop {
        slot: usize,
    },
    /// The heartbeat timeout removes the peer at once.
    Timeout {
        slot: usize,
    },
    CloseByHost {
        slot: usize,
    },
    Relay {
        slot: usize,
        to: usize,
    },
    Presence {
        slot: usize,
        idle: bool,
    },
    /// Time passes by `ms`; the room is checked if anything is due.
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let user = 0..USERS.len();
    prop_oneof![
        5 => (slot.clone(), user.clone()).prop_map(|(slot, user)| Op::Join { slot, user }),
        2 => slot.clone().prop_map(|slot| Op::Leave { slot }),
        2 => slot.clone().prop_map(|slot| Op::Drop { slot }),
        1 => slot.clone().prop_map(|slot| Op::Timeout { slot }),
        1 => slot.clone().prop_map(|slot| Op::CloseByHost { slot }),
        3 => (slot.clone(), user).prop_map(|(slot, to)| Op::Relay { slot, to }),
        1 => (slot.clone(), any::<bool>()).prop_map(|(slot, idle)| Op::Presence { slot, idle }),
        2 => prop_oneof![0u64..3_000, 10_000u64..80_000].prop_map(|ms| Op::Advance { ms }),
    ]
}

fn config() -> SignalingConfig {
    SignalingConfig {
        max_peers_per_room: 3,
        reconnect_grace: Duration::from_secs(15),
        room_empty_grace: Duration::from_secs(60),
        room_idle_timeout: Duration::from_secs(600),
        outbound_queue_size: 1 << 20,
        ..SignalingConfig::default()
    }
}

/// Every text frame queued to `conn` since the last call, as JSON.
fn received(conn: &Conn) -> Vec<Value> {
    let mut batch = VecDeque::new();
    let mut out = Vec::new();
    while !conn.outbox.is_closed() || out.is_empty() {
        match conn.outbox.take(&mut batch).now_or_never() {
            Some(close) => {
                for item in batch.drain(..) {
                    if let Outbound::Text(t) = item {
                        out.push(serde_json::from_str(t.as_str()).expect("frames are JSON"));
                    }
                }
                if close.is_some() {
                    break;
                }
            }
            None => break,
        }
    }
    out
}

fn types(frames: &[Value]) -> Vec<&str> {
    frames.iter().filter_map(|f| f["type"].as_str()).collect()
}

/// What the room runs in: settings, a standalone broker, the clock.
struct World {
    config: SignalingConfig,
    broker: Standalone,
    clock: Clock,
}

impl World {
    fn env(&self) -> Env<'_> {
        Env {
            config: &self.config,
            broker: &self.broker,
            clock: &self.clock,
        }
    }
}

struct Driver {
    world: World,
    now: Instant,
    state: State,
    /// The connection in each slot and the user it joined as.
    slots: Vec<Option<(Arc<Conn>, Arc<str>)>>,
    next_conn: u64,
    closed: bool,
}

impl Driver {
    fn new(destroy_on_host_leave: bool, ttl: Option<u64>) -> Self {
        let config = config();
        let clock = Clock::default();
        let now = Instant::now();
        let opts = RoomOptions {
            destroy_on_host_leave,
            ttl: ttl.map(Duration::from_secs),
            ..RoomOptions::defaults("r", config.max_peers_per_room)
        };
        let state = State::new("r".into(), opts, None, None, &clock, now);
        Self {
            world: World {
                config,
                broker: Standalone::default(),
                clock,
            },
            now,
            state,
            slots: (0..SLOTS).map(|_| None).collect(),
            next_conn: 1,
            closed: false,
        }
    }

    /// Live connections other than `except`, with what they received.
    fn others_hear(&self, except: Option<u64>) -> Vec<(Arc<str>, Vec<Value>)> {
        self.slots
            .iter()
            .flatten()
            .filter(|(c, _)| Some(c.id) != except && c.kill_reason().is_none())
            .map(|(c, u)| (u.clone(), received(c)))
            .collect()
    }

    fn slot_conn(&self, slot: usize) -> Option<Arc<Conn>> {
        self.slots[slot].as_ref().map(|(c, _)| c.clone())
    }

    fn apply(&mut self, op: &Op) {
        if self.closed {
            return;
        }
        let before_host = self.state.host().cloned();
        let before_first = self.state.members().first().map(|m| m.user_id.clone());
        match *op {
            Op::Join { slot, user } => self.join(slot, user),
            Op::Leave { slot } => self.leave(slot, LeaveReason::Left),
            Op::Timeout { slot } => self.leave(slot, LeaveReason::Timeout),
            Op::Drop { slot } => self.drop_conn(slot),
            Op::CloseByHost { slot } => self.close_by_host(slot),
            Op::Relay { slot, to } => self.relay(slot, to),
            Op::Presence { slot, idle } => {
                let Some(conn) = self.slot_conn(slot) else {
                    return;
                };
                let p = if idle {
                    Presence::Idle
                } else {
                    Presence::Active
                };
                let frame = Utf8Bytes::from_static(r#"{"type":"presence"}"#);
                let env = self.world.env();
                let r = self
                    .state
                    .broadcast(conn.id, &frame, Some(p), &env, self.now);
                prop_assert_ok(r.is_ok() || r == Err(ErrorCode::NotInRoom));
            }
            Op::Advance { ms } => self.advance(ms),
        }
        self.check_host_rule(before_host, before_first);
        self.check_structure();
        // Each step starts with empty queues.
        self.others_hear(None);
    }

    fn join(&mut self, slot: usize, user: usize) {
        if self.slots[slot].is_some() {
            return;
        }
        let user: Arc<str> = USERS[user].into();
        let conn = Arc::new(Conn::new(self.next_conn, 1 << 20, 0));
        self.next_conn += 1;
        let was = self.state.members().iter().position(|m| m.user_id == user);
        let old_conn = was.and_then(|i| self.state.members()[i].conn().cloned());
        let full = self.state.members().len() >= self.state.max_peers();
        if was.is_none() {
            let admitted = self.state.admit(&user, false, self.now);
            if full {
                assert_eq!(admitted, Err(ErrorCode::RoomFull));
                return;
            }
            assert_eq!(admitted, Ok(()));
        }
        let env = self.world.env();
        self.state
            .seat(&conn, &user, user.to_string(), None, &env, self.now);
        let mine = received(&conn);
        assert_eq!(types(&mine)[0], "room-joined", "room-joined comes first");
        assert_eq!(mine[0]["data"]["self"]["userId"], &*user);
        if let Some(old) = &old_conn {
            assert_eq!(old.kill_reason(), Some(KillReason::Replaced));
            self.slots.iter_mut().for_each(|s| {
                if s.as_ref().is_some_and(|(c, _)| c.id == old.id) {
                    *s = None;
                }
            });
        }
        let expected = if was.is_some() {
            "peer-reconnected"
        } else {
            "peer-joined"
        };
        for (other, frames) in self.others_hear(Some(conn.id)) {
            assert_eq!(
                types(&frames).iter().filter(|t| **t == expected).count(),
                1,
                "{other} should hear one {expected} of {user}: {frames:?}"
            );
        }
        self.slots[slot] = Some((conn, user));
    }

    fn leave(&mut self, slot: usize, reason: LeaveReason) {
        let Some((conn, user)) = self.slots[slot].take() else {
            return;
        };
        let env = self.world.env();
        match self.state.leave(conn.id, reason, &env, self.now) {
            Ok(closure) => {
                assert!(!self.state.is_member(&user), "{user} left but is a member");
                self.after_removal(closure, &user);
            }
            Err(code) => assert_eq!(code, ErrorCode::NotInRoom),
        }
    }

    fn drop_conn(&mut self, slot: usize) {
        let Some((conn, user)) = self.slots[slot].take() else {
            return;
        };
        let env = self.world.env();
        match self.state.disconnect(conn.id, &env, self.now) {
            Ok(closure) => {
                assert!(closure.is_none());
                let m = self.state.members().iter().find(|m| m.user_id == user);
                assert!(
                    matches!(m.map(|m| &m.location), Some(Location::Reconnecting { .. })),
                    "{user} keeps its place while reconnecting"
                );
            }
            Err(code) => assert_eq!(code, ErrorCode::NotInRoom),
        }
    }

    fn close_by_host(&mut self, slot: usize) {
        let Some((conn, user)) = self.slots[slot].clone() else {
            return;
        };
        let is_host = self.state.host() == Some(&user) && self.state.is_member(&user);
        let env = self.world.env();
        match self.state.close_by_host(conn.id, &env) {
            Ok(_) => {
                assert!(is_host, "only the host may close");
                self.assert_closed();
            }
            Err(code) => assert!(matches!(code, ErrorCode::Forbidden | ErrorCode::NotInRoom)),
        }
    }

    fn relay(&mut self, slot: usize, to: usize) {
        let Some(conn) = self.slot_conn(slot) else {
            return;
        };
        let target = USERS[to];
        let frame = Utf8Bytes::from_static(r#"{"type":"sdp-offer"}"#);
        let sender_in = self.state.members().iter().any(|m| m.is_on(conn.id));
        let location = self
            .state
            .members()
            .iter()
            .find(|m| &*m.user_id == target)
            .map(|m| m.location.clone());
        let env = self.world.env();
        let r = self.state.relay(conn.id, target, &frame, &env, self.now);
        let expected = match (sender_in, &location) {
            (false, _) => Err(ErrorCode::NotInRoom),
            (true, None) => Err(ErrorCode::PeerNotFound),
            (true, Some(Location::Local(_))) => Ok(()),
            (true, Some(_)) => Err(ErrorCode::PeerUnavailable),
        };
        assert_eq!(r, expected);
        if let Some(Location::Local(target_conn)) = location {
            assert_eq!(types(&received(&target_conn)), ["sdp-offer"]);
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        let env = self.world.env();
        let Some(due) = self.state.next_check(&env, self.now) else {
            return;
        };
        if due > self.now {
            return;
        }
        let mut removed = Removed::default();
        let closure = self.state.check(&env, self.now, &mut removed);
        if closure.is_some() {
            self.closed = true;
            assert!(self.state.members().is_empty());
            return;
        }
        let next = self.state.next_check(&self.world.env(), self.now);
        assert!(
            next.is_some_and(|n| n > self.now),
            "a check leaves nothing due"
        );
        let grace = self.world.config.reconnect_grace;
        for m in self.state.members() {
            if let Location::Reconnecting { since } = m.location {
                assert!(since + grace > self.now, "{} outlived its grace", m.user_id);
            }
        }
    }

    fn after_removal(&mut self, closure: Option<switchboard_signaling::room::Closure>, user: &str) {
        if closure.is_some() {
            self.assert_closed();
            return;
        }
        for (other, frames) in self.others_hear(None) {
            let left = frames
                .iter()
                .filter(|f| f["type"] == "peer-left" && f["userId"] == user)
                .count();
            assert_eq!(left, 1, "{other} hears {user} leave once: {frames:?}");
        }
    }

    fn assert_closed(&mut self) {
        self.closed = true;
        assert!(self.state.members().is_empty());
        assert!(self.state.closed().is_some());
        for (conn, _) in self.slots.iter().flatten() {
            if conn.kill_reason() != Some(KillReason::Replaced) {
                assert_eq!(conn.kill_reason(), Some(KillReason::RoomClosed));
            }
        }
    }

    /// When the host left, the longest present member took over (and everybody heard).
    fn check_host_rule(&self, before: Option<Arc<str>>, before_first: Option<Arc<str>>) {
        if self.closed {
            return;
        }
        let after = self.state.host().cloned();
        if before.is_some() && before != after {
            let host_left = before.as_ref().is_some_and(|h| !self.state.is_member(h));
            let first = self.state.members().first().map(|m| m.user_id.clone());
            // The host changes only when it left, or when an emptied room fills again.
            assert!(
                host_left || before_first.is_none(),
                "host changed while it stayed"
            );
            if first.is_some() {
                // (One check may remove several members whose grace ran out together.)
                assert_eq!(after, first, "next host is the longest present member");
            }
        }
    }

    fn check_structure(&self) {
        let members = self.state.members();
        assert!(members.len() <= self.state.max_peers());
        for pair in members.windows(2) {
            assert!(pair[0].order < pair[1].order, "members stay in join order");
        }
        let mut users: Vec<&str> = members.iter().map(|m| &*m.user_id).collect();
        users.sort_unstable();
        users.dedup();
        assert_eq!(users.len(), members.len(), "one place per user");
        for m in members {
            if let Some(conn) = m.conn() {
                assert_eq!(conn.kill_reason(), None, "a seated connection is alive");
            }
        }
    }
}

fn prop_assert_ok(ok: bool) {
    assert!(ok);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_keeps_the_room_rules(
        destroy in any::<bool>(),
        ttl in prop::option::weighted(0.2, 30u64..300),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut d = Driver::new(destroy, ttl);
        for op in &ops {
            d.apply(op);
        }
    }
}

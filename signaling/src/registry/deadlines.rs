//! The deadline queue and the sweeper (`docs/lifecycle.md#deadlines-instead-of-scans`).
//!
//! Every room has at most one pending check in an ordered queue (reconnect graces,
//! empty-room grace, idle timeout, TTL warning and expiry, whichever is first; the room's
//! [`State::next_check`] says when). The sweeper sleeps until the earliest deadline, or at
//! most `ROOM_SWEEP_INTERVAL_SECONDS`, and is woken early when a nearer deadline appears,
//! so a sweep costs what it removes, not the number of rooms.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Registry;
use crate::room::{Removed, Room, State};

/// A queue key: when, and a sequence number that keeps equal instants apart.
pub(crate) type Key = (Instant, u64);

/// What a deadline is for.
pub(crate) enum Deadline {
    /// The room's next check.
    Room(Arc<Room>),
    /// A closed room's id becomes free again.
    Tombstone(Arc<str>),
}

#[derive(Default)]
struct Queue {
    entries: BTreeMap<Key, Deadline>,
    seq: u64,
}

/// The ordered queue of deadlines and the sweeper's wake-up call.
#[derive(Default)]
pub(crate) struct Deadlines {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Deadlines {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `what` at `at`, waking the sweeper when it is the earliest.
    pub(crate) fn push(&self, at: Instant, what: Deadline) -> Key {
        let mut q = self.lock();
        q.seq += 1;
        let key = (at, q.seq);
        let earliest = q.entries.keys().next().is_none_or(|(first, _)| at < *first);
        q.entries.insert(key, what);
        drop(q);
        if earliest {
            self.wake.notify_one();
        }
        key
    }

    /// Makes `at` the room's pending check, unless an earlier one is pending. A check
    /// moved earlier takes its old entry out: a superseded entry would keep the whole room
    /// allocated until it fired (the idle timeout, 3 h by default).
    pub(crate) fn schedule(&self, room: &Arc<Room>, st: &mut State, at: Option<Instant>) {
        let Some(at) = at else { return };
        if st.scheduled.is_some_and(|(s, _)| s <= at) {
            return;
        }
        let key = self.push(at, Deadline::Room(room.clone()));
        self.unschedule(st);
        st.scheduled = Some(key);
    }

    /// Takes the room's pending check out of the queue.
    pub(crate) fn unschedule(&self, st: &mut State) {
        if let Some(key) = st.scheduled.take() {
            self.lock().entries.remove(&key);
        }
    }

    fn pop_due(&self, now: Instant) -> Option<(Key, Deadline)> {
        let mut q = self.lock();
        match q.entries.first_key_value() {
            Some((&(at, _), _)) if at <= now => q.entries.pop_first(),
            _ => None,
        }
    }

    fn earliest(&self) -> Option<Instant> {
        self.lock().entries.keys().next().map(|(at, _)| *at)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Registry {
    /// Runs the sweeper until the task is dropped or cancelled: sleeps until the earliest
    /// deadline (at most the sweep interval), then processes everything due.
    pub async fn run_sweeper(self: Arc<Self>) {
        loop {
            let cap = Instant::now() + self.config.room_sweep_interval;
            let until = self.deadlines.earliest().map_or(cap, |n| n.min(cap));
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = self.deadlines.wake.notified() => continue,
            }
            self.sweep(Instant::now());
        }
    }

    /// Processes every deadline due at `now`: TTL warnings and expiry, reconnect graces,
    /// empty and idle rooms, tombstones. Returns what it removed.
    pub fn sweep(&self, now: Instant) -> Removed {
        let mut removed = Removed::default();
        while let Some(((fired_at, _), what)) = self.deadlines.pop_due(now) {
            match what {
                Deadline::Tombstone(id) => self.expire_tombstone(&id, now),
                Deadline::Room(room) => self.check_room(&room, fired_at, now, &mut removed),
            }
        }
        self.stats.sweeps.fetch_add(1, Relaxed);
        if removed != Removed::default() {
            tracing::debug!(
                rooms = removed.rooms,
                peers = removed.peers,
                "sweep removed"
            );
        }
        removed
    }

    fn check_room(&self, room: &Arc<Room>, fired_at: Instant, now: Instant, removed: &mut Removed) {
        let mut st = room.lock();
        if st.scheduled.is_some_and(|(s, _)| s <= fired_at) {
            st.scheduled = None;
        }
        let closure = st.check(&self.env(), now, removed);
        if closure.is_some() {
            removed.rooms += 1;
        }
        self.settle(room, st, closure, now);
    }

    /// Entries in the deadline queue: one per room with a pending check, plus one per
    /// tombstone. For tests (`tests/registry_props.rs`): 0 once everything has expired.
    #[doc(hidden)]
    pub fn pending_deadlines(&self) -> usize {
        self.deadlines.len()
    }
}

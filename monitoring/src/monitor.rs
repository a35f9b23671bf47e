//! The memory monitor: samples memory on an interval, moves the pressure level, and runs
//! the cleanup each level calls for through a [`Janitor`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use strum::{EnumCount, EnumString, IntoStaticStr, VariantArray};

use crate::memory::{Sample, Sampler, MIB};
use crate::pressure::{Level, State, Thresholds};

/// Rooms closed for memory pressure after this much inactivity
/// (docs/lifecycle.md#memory-pressure).
pub const AGGRESSIVE_IDLE: Duration = Duration::from_secs(5 * 60);

/// What a cleanup step removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Rooms closed or deleted.
    pub rooms: usize,
    /// Peers disconnected or removed.
    pub peers: usize,
}

/// The actions cleanup can take on rooms and peers, implemented by the signaling side.
pub trait Janitor: Send + Sync + 'static {
    /// Runs the room sweep now (due graces, empty, idle and expired rooms).
    fn sweep(&self) -> Removed;
    /// Disconnects peers silent for longer than `silence` (as a heartbeat timeout).
    fn disconnect_silent(&self, silence: Duration) -> usize;
    /// Closes rooms without activity for `idle`, with reason `memory-pressure`.
    fn close_idle_rooms(&self, idle: Duration) -> Removed;
    /// Refuses (or allows again) the creation of new rooms.
    fn refuse_new_rooms(&self, refuse: bool);
}

/// How thorough a cleanup is. Its name (the `level` of reports, metrics and
/// `POST /api/admin/cleanup?level=`) is the variant's in lower case, for serde and strum alike.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, IntoStaticStr, EnumString, EnumCount, VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum CleanupLevel {
    /// Sweep plus silent peers.
    Normal,
    /// Normal plus every room idle for five minutes.
    Aggressive,
}

impl CleanupLevel {
    /// Every level, for labelled metrics.
    pub const ALL: &'static [CleanupLevel] = Self::VARIANTS;

    /// The label value.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What one cleanup did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupReport {
    /// When it ran (ms since epoch).
    pub at: u64,
    /// How thorough it was.
    pub level: CleanupLevel,
    /// Rooms it closed or deleted.
    pub rooms_closed: usize,
    /// Peers it disconnected or removed.
    pub peers_disconnected: usize,
    /// Allocator bytes given back, in MiB.
    pub freed_mb: f64,
}

struct Status {
    state: State,
    thresholds: Thresholds,
    last_sample: Sample,
    last_report: Option<CleanupReport>,
}

/// Samples memory, keeps the pressure level and runs cleanups.
pub struct Monitor {
    janitor: Arc<dyn Janitor>,
    sampler: Sampler,
    interval: Duration,
    silent_after: Duration,
    status: Mutex<Status>,
    cleanups: [AtomicU64; CleanupLevel::COUNT],
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Monitor {
    /// A monitor checking every `interval`; peers silent for `silent_after` are
    /// disconnected by any cleanup.
    pub fn new(
        janitor: Arc<dyn Janitor>,
        thresholds: Thresholds,
        interval: Duration,
        silent_after: Duration,
    ) -> Self {
        let sampler = Sampler::new();
        let last_sample = sampler.sample();
        Self {
            janitor,
            sampler,
            interval,
            silent_after,
            status: Mutex::new(Status {
                state: State::default(),
                thresholds,
                last_sample,
                last_report: None,
            }),
            cleanups: Default::default(),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks memory every interval until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = self.clone();
            // sysinfo reads /proc: keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || me.check()).await;
        }
    }

    /// Samples memory once, updates the level and cleans up as the level demands.
    pub fn check(&self) -> Level {
        let sample = self.sampler.sample();
        let (before, state) = {
            let mut st = self.status();
            let before = st.state;
            st.state = st.state.next(sample.rss_mb(), st.thresholds);
            st.last_sample = sample;
            (before, st.state)
        };
        if state.level != before.level {
            tracing::warn!(from = ?before.level, to = ?state.level, rss_mb = sample.rss_mb(), "memory pressure level changed");
        }
        if state.refuse_new_rooms != before.refuse_new_rooms {
            self.janitor.refuse_new_rooms(state.refuse_new_rooms);
        }
        match state.level {
            Level::Normal => {}
            Level::Warning => {
                self.cleanup(CleanupLevel::Normal);
            }
            Level::Critical => {
                self.cleanup(CleanupLevel::Aggressive);
            }
        }
        state.level
    }

    /// Runs a cleanup now and records its report.
    pub fn cleanup(&self, level: CleanupLevel) -> CleanupReport {
        let heap_before = crate::memory::allocated_bytes();
        let swept = self.janitor.sweep();
        let silent = self.janitor.disconnect_silent(self.silent_after);
        let idle = match level {
            CleanupLevel::Normal => Removed::default(),
            CleanupLevel::Aggressive => self.janitor.close_idle_rooms(AGGRESSIVE_IDLE),
        };
        let heap_after = crate::memory::allocated_bytes();
        let report = CleanupReport {
            at: now_ms(),
            level,
            rooms_closed: swept.rooms + idle.rooms,
            peers_disconnected: swept.peers + silent + idle.peers,
            freed_mb: (heap_before.saturating_sub(heap_after) as f64 / MIB as f64 * 100.0).round()
                / 100.0,
        };
        self.cleanups[level as usize].fetch_add(1, Relaxed);
        self.status().last_report = Some(report);
        tracing::info!(
            level = level.as_str(),
            rooms_closed = report.rooms_closed,
            peers_disconnected = report.peers_disconnected,
            freed_mb = report.freed_mb,
            "memory cleanup"
        );
        report
    }

    /// Replaces the thresholds (takes effect at the next check).
    pub fn set_thresholds(&self, thresholds: Thresholds) {
        self.status().thresholds = thresholds;
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> Thresholds {
        self.status().thresholds
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.status().state.level
    }

    /// The latest memory reading.
    pub fn last_sample(&self) -> Sample {
        self.status().last_sample
    }

    /// The latest cleanup, if any.
    pub fn last_report(&self) -> Option<CleanupReport> {
        self.status().last_report
    }

    /// Cleanups run since start, per level.
    pub fn cleanups(&self, level: CleanupLevel) -> u64 {
        self.cleanups[level as usize].load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[derive(Default)]
    struct FakeRooms {
        refusing: AtomicBool,
        idle_closed: AtomicU64,
    }

    impl Janitor for FakeRooms {
        fn sweep(&self) -> Removed {
            Removed { rooms: 1, peers: 2 }
        }
        fn disconnect_silent(&self, _: Duration) -> usize {
            3
        }
        fn close_idle_rooms(&self, idle: Duration) -> Removed {
            assert_eq!(idle, AGGRESSIVE_IDLE);
            self.idle_closed.fetch_add(1, Relaxed);
            Removed { rooms: 4, peers: 5 }
        }
        fn refuse_new_rooms(&self, refuse: bool) {
            self.refusing.store(refuse, Relaxed);
        }
    }

    #[test]
    fn critical_cleans_aggressively_and_refuses_rooms_until_relieved() {
        let rooms = Arc::new(FakeRooms::default());
        let tiny = Thresholds {
            warning_mb: 1,
            critical_mb: 1,
        };
        let m = Monitor::new(
            rooms.clone(),
            tiny,
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(m.check(), Level::Critical);
        assert!(rooms.refusing.load(Relaxed));
        let r = m.last_report().unwrap();
        assert_eq!(
            (r.level, r.rooms_closed, r.peers_disconnected),
            (CleanupLevel::Aggressive, 5, 10)
        );
        assert_eq!(m.cleanups(CleanupLevel::Aggressive), 1);

        m.set_thresholds(Thresholds {
            warning_mb: 1 << 20,
            critical_mb: 1 << 21,
        });
        assert_eq!(m.check(), Level::Normal);
        assert!(!rooms.refusing.load(Relaxed));
        assert_eq!(m.cleanups(CleanupLevel::Aggressive), 1);
    }

    #[test]
    fn warning_cleans_normally() {
        let rooms = Arc::new(FakeRooms::default());
        let t = Thresholds {
            warning_mb: 1,
            critical_mb: 1 << 20,
        };
        let m = Monitor::new(
            rooms.clone(),
            t,
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(m.check(), Level::Warning);
        assert_eq!(m.last_report().unwrap().level, CleanupLevel::Normal);
        assert_eq!(rooms.idle_closed.load(Relaxed), 0);
        assert!(!rooms.refusing.load(Relaxed));
    }
}

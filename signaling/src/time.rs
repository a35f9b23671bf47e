//! Wall-clock timestamps for the wire (milliseconds since the Unix epoch), and the
//! conversion between them and the monotonic `Instant`s that timers run on.

use std::time::Duration;

use tokio::time::Instant;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Turns `Instant`s into wall-clock milliseconds and back, from one anchor taken at start
/// (so tokio's paused clock in tests moves both together).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
    epoch_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            epoch_ms: now_ms(),
        }
    }
}

impl Clock {
    /// `at` in milliseconds since the Unix epoch.
    pub fn wall_ms(&self, at: Instant) -> u64 {
        if at >= self.epoch {
            self.epoch_ms + (at - self.epoch).as_millis() as u64
        } else {
            self.epoch_ms
                .saturating_sub((self.epoch - at).as_millis() as u64)
        }
    }

    /// The `Instant` of the wall-clock time `ms`, given that it is `now`.
    pub fn instant_of_wall(&self, ms: u64, now: Instant) -> Instant {
        let wall_now = self.wall_ms(now);
        if ms >= wall_now {
            now + Duration::from_millis(ms - wall_now)
        } else {
            now.checked_sub(Duration::from_millis(wall_now - ms))
                .unwrap_or(now)
        }
    }
}

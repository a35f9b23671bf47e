//! The per-connection limits on what a client sends: a token bucket for the message rate,
//! and fixed-window counters for rate-limit refusals and garbage (`docs/protocol.md#4-errors`).

use std::time::Duration;

use tokio::time::Instant;

use crate::config::SignalingConfig;

/// Window over which refusals and garbage are counted.
const ABUSE_WINDOW: Duration = Duration::from_secs(10);
/// Garbage frames within the window that close the connection.
pub(crate) const GARBAGE_LIMIT: u32 = 20;

/// Counts events in a fixed window and says when a limit is exceeded.
struct WindowCounter {
    start: Instant,
    count: u32,
}

impl WindowCounter {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            count: 0,
        }
    }

    /// Counts one event; returns the count within the current window.
    fn hit(&mut self, now: Instant) -> u32 {
        if now.duration_since(self.start) > ABUSE_WINDOW {
            self.start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count
    }
}

/// Token bucket: `rate` tokens per second, at most `burst` stored.
struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            tokens: burst as f64,
            last: now,
            rate: rate as f64,
            burst: burst as f64,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One connection's limits.
pub(crate) struct Limits {
    bucket: TokenBucket,
    refusals: WindowCounter,
    garbage: WindowCounter,
    /// Refusals within the window that close the connection (`RATE_LIMIT_BURST`).
    max_refusals: u32,
}

impl Limits {
    /// Fresh limits for a connection opened at `now`.
    pub(crate) fn new(cfg: &SignalingConfig, now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(cfg.rate_limit_per_second, cfg.rate_limit_burst, now),
            refusals: WindowCounter::new(now),
            garbage: WindowCounter::new(now),
            max_refusals: cfg.rate_limit_burst,
        }
    }

    /// Whether a message read at `now` is within the rate.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        self.bucket.allow(now)
    }

    /// Counts a message dropped for the rate; true when the connection must close.
    pub(crate) fn refused(&mut self, now: Instant) -> bool {
        self.refusals.hit(now) > self.max_refusals
    }

    /// Counts a garbage frame; true when the connection must close.
    pub(crate) fn garbage(&mut self, now: Instant) -> bool {
        self.garbage.hit(now) >= GARBAGE_LIMIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, t0);
        assert!((0..3).all(|_| bucket.allow(t0)));
        assert!(!bucket.allow(t0));
        assert!(bucket.allow(t0 + Duration::from_millis(100)));
        assert!(!bucket.allow(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn window_counts_restart_after_the_window() {
        let t0 = Instant::now();
        let mut counter = WindowCounter::new(t0);
        assert_eq!(counter.hit(t0), 1);
        assert_eq!(counter.hit(t0 + ABUSE_WINDOW), 2);
        assert_eq!(counter.hit(t0 + ABUSE_WINDOW + Duration::from_millis(1)), 1);
    }
}

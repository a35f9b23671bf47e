//! Lock-free counters and gauges of the signaling side, read by `/stats` and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::ErrorCode;

/// Message types that are relayed or broadcast, in the order of their counters.
pub const RELAY_TYPES: [&str; 7] = [
    "sdp-offer",
    "sdp-answer",
    "ice-candidate",
    "presence",
    "cursor-update",
    "message",
    YJS_PUBLISH,
];

/// The relay type label of `/yjs` publishes (one count per subscriber that received one).
pub const YJS_PUBLISH: &str = "yjs-publish";

/// Index of [`YJS_PUBLISH`] in [`RELAY_TYPES`].
pub fn yjs_index() -> usize {
    6
}

/// Reasons a client message is rejected, in the order of their counters: every wire error
/// code in lower case, plus `message_too_big` for frames closed with 1009.
pub const REJECT_REASONS: [&str; 23] = [
    "invalid_message",
    "unknown_type",
    "invalid_input",
    "not_authenticated",
    "already_authenticated",
    "auth_failed",
    "token_expired",
    "invalid_token",
    "user_mismatch",
    "room_mismatch",
    "not_in_room",
    "already_in_room",
    "room_full",
    "room_closed",
    "room_exists",
    "room_not_found",
    "too_many_rooms",
    "forbidden",
    "peer_not_found",
    "peer_unavailable",
    "invalid_password",
    "rate_limited",
    "message_too_big",
];

/// Index of `code` in [`REJECT_REASONS`].
fn reject_index(code: ErrorCode) -> usize {
    use ErrorCode::*;
    match code {
        InvalidMessage => 0,
        UnknownType => 1,
        InvalidInput => 2,
        NotAuthenticated => 3,
        AlreadyAuthenticated => 4,
        AuthFailed => 5,
        TokenExpired => 6,
        InvalidToken => 7,
        UserMismatch => 8,
        RoomMismatch => 9,
        NotInRoom => 10,
        AlreadyInRoom => 11,
        RoomFull => 12,
        RoomClosed => 13,
        RoomExists => 14,
        RoomNotFound => 15,
        TooManyRooms => 16,
        Forbidden => 17,
        PeerNotFound => 18,
        PeerUnavailable => 19,
        InvalidPassword => 20,
        RateLimited => 21,
    }
}

/// Upper bounds (seconds) of the relay latency buckets; a last +Inf bucket follows.
pub const LATENCY_BOUNDS: [f64; 14] = [
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 1e-1,
];

/// A fixed-bucket latency histogram of atomics: recording is three relaxed adds.
#[derive(Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn record(&self, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(elapsed.as_nanos() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Per-bucket counts (upper bound, count; `f64::MAX` for +Inf), sum in seconds, count.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let buckets = LATENCY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.buckets.iter().map(|b| b.load(Relaxed)))
            .collect();
        (
            buckets,
            self.sum_ns.load(Relaxed) as f64 / 1e9,
            self.count.load(Relaxed),
        )
    }
}

/// Counters shared by every connection.
#[derive(Default)]
pub struct Stats {
    /// Open WebSocket connections (gauge).
    pub connections: AtomicU64,
    /// Authenticated connections (gauge).
    pub authenticated: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Peers force-left for silence.
    pub heartbeat_timeouts: AtomicU64,
    /// Connections cut off because their send queue was full.
    pub slow_consumers: AtomicU64,
    /// Sweeper passes.
    pub sweeps: AtomicU64,
    /// Time from receiving a relay message to queueing it for the target.
    pub relay_latency: LatencyHistogram,
    relayed: [AtomicU64; RELAY_TYPES.len()],
    relayed_bytes: [AtomicU64; RELAY_TYPES.len()],
    rejected: [AtomicU64; REJECT_REASONS.len()],
}

impl Stats {
    /// Counts `deliveries` frames of `bytes` each handed to receivers for relay type `index`
    /// (an index into [`RELAY_TYPES`]).
    pub fn count_relayed(&self, index: usize, deliveries: u64, bytes: u64) {
        self.relayed[index].fetch_add(deliveries, Relaxed);
        self.relayed_bytes[index].fetch_add(deliveries * bytes, Relaxed);
    }

    /// Counts one rejected client message.
    pub fn count_rejected(&self, code: ErrorCode) {
        self.rejected[reject_index(code)].fetch_add(1, Relaxed);
    }

    /// Counts one frame closed with 1009.
    pub fn count_too_big(&self) {
        self.rejected[REJECT_REASONS.len() - 1].fetch_add(1, Relaxed);
    }

    /// `(type, deliveries, bytes)` for every relay type.
    pub fn relayed(&self) -> impl Iterator<Item = (&'static str, u64, u64)> + '_ {
        RELAY_TYPES.iter().enumerate().map(|(i, t)| {
            (
                *t,
                self.relayed[i].load(Relaxed),
                self.relayed_bytes[i].load(Relaxed),
            )
        })
    }

    /// `(reason, count)` for every rejection reason.
    pub fn rejected(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REJECT_REASONS
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, self.rejected[i].load(Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_counter_indices_match_the_labels() {
        use crate::protocol::{BroadcastKind, RelayKind};
        for k in [RelayKind::Offer, RelayKind::Answer, RelayKind::Candidate] {
            assert_eq!(RELAY_TYPES[k.stat_index()], k.type_name());
        }
        for k in [
            BroadcastKind::Presence,
            BroadcastKind::Cursor,
            BroadcastKind::Chat,
        ] {
            assert_eq!(RELAY_TYPES[k.stat_index()], k.type_name());
        }
        assert_eq!(RELAY_TYPES[yjs_index()], YJS_PUBLISH);
    }

    #[test]
    fn every_error_code_has_its_own_reason_label() {
        let all = [
            ErrorCode::InvalidMessage,
            ErrorCode::UnknownType,
            ErrorCode::InvalidInput,
            ErrorCode::NotAuthenticated,
            ErrorCode::AlreadyAuthenticated,
            ErrorCode::AuthFailed,
            ErrorCode::TokenExpired,
            ErrorCode::InvalidToken,
            ErrorCode::UserMismatch,
            ErrorCode::RoomMismatch,
            ErrorCode::NotInRoom,
            ErrorCode::AlreadyInRoom,
            ErrorCode::RoomFull,
            ErrorCode::RoomClosed,
            ErrorCode::RoomExists,
            ErrorCode::RoomNotFound,
            ErrorCode::TooManyRooms,
            ErrorCode::Forbidden,
            ErrorCode::PeerNotFound,
            ErrorCode::PeerUnavailable,
            ErrorCode::InvalidPassword,
            ErrorCode::RateLimited,
        ];
        for code in all {
            assert_eq!(
                REJECT_REASONS[reject_index(code)],
                code.as_str().to_ascii_lowercase()
            );
        }
    }
}

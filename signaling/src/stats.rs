//! Lock-free counters and gauges of the signaling side, read by `/stats` and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use std::sync::LazyLock;

use strum::{EnumCount, VariantArray};

use crate::error::ErrorCode;
use crate::protocol::RelayType;

/// Index of the `yjs-publish` counter ([`RelayType::YjsPublish`]).
pub fn yjs_index() -> usize {
    RelayType::YjsPublish.index()
}

/// Why a client message was refused, as counted in `switchboard_messages_rejected_total`
/// (docs/operations.md#metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Refused with this wire error code.
    Code(ErrorCode),
    /// A frame over `MAX_MESSAGE_BYTES`, closed with 1009 and no error message.
    TooBig,
}

impl RejectReason {
    /// How many reasons there are: every error code, then [`TooBig`](Self::TooBig).
    pub const COUNT: usize = ErrorCode::COUNT + 1;

    /// Every reason, in counter order.
    pub fn all() -> impl Iterator<Item = Self> {
        ErrorCode::VARIANTS
            .iter()
            .map(|code| Self::Code(*code))
            .chain([Self::TooBig])
    }

    /// Index of its counter: a code's position among the codes, `TooBig` after them all.
    pub const fn index(self) -> usize {
        match self {
            Self::Code(code) => code as usize,
            Self::TooBig => ErrorCode::COUNT,
        }
    }

    /// The `reason` label: the wire code in lower case, or `message_too_big`.
    pub fn label(self) -> &'static str {
        // Built once, at the first scrape; counting never touches a label.
        static LABELS: LazyLock<Vec<String>> = LazyLock::new(|| {
            RejectReason::all()
                .map(|reason| match reason {
                    RejectReason::Code(code) => code.as_str().to_ascii_lowercase(),
                    RejectReason::TooBig => "message_too_big".to_owned(),
                })
                .collect()
        });
        &LABELS[self.index()]
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
    relayed: [AtomicU64; RelayType::COUNT],
    relayed_bytes: [AtomicU64; RelayType::COUNT],
    rejected: [AtomicU64; RejectReason::COUNT],
}

impl Stats {
    /// Counts `deliveries` frames of `bytes` each handed to receivers for relay type `index`
    /// (a [`RelayType::index`]).
    pub fn count_relayed(&self, index: usize, deliveries: u64, bytes: u64) {
        self.relayed[index].fetch_add(deliveries, Relaxed);
        self.relayed_bytes[index].fetch_add(deliveries * bytes, Relaxed);
    }

    /// Counts one rejected client message.
    pub fn count_rejected(&self, code: ErrorCode) {
        self.count_reason(RejectReason::Code(code));
    }

    /// Counts one frame closed with 1009.
    pub fn count_too_big(&self) {
        self.count_reason(RejectReason::TooBig);
    }

    fn count_reason(&self, reason: RejectReason) {
        self.rejected[reason.index()].fetch_add(1, Relaxed);
    }

    /// `(type, deliveries, bytes)` for every relay type.
    pub fn relayed(&self) -> impl Iterator<Item = (&'static str, u64, u64)> + '_ {
        RelayType::VARIANTS.iter().map(|t| {
            (
                t.as_str(),
                self.relayed[t.index()].load(Relaxed),
                self.relayed_bytes[t.index()].load(Relaxed),
            )
        })
    }

    /// `(reason, count)` for every rejection reason.
    pub fn rejected(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        RejectReason::all().map(|r| (r.label(), self.rejected[r.index()].load(Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The labels column of the metric's row in docs/operations.md#metrics, as the values
    /// written in backticks after the label's name.
    fn documented_labels(metric: &str) -> Vec<&'static str> {
        const OPERATIONS_DOC: &str = include_str!("../../docs/operations.md");
        let row = OPERATIONS_DOC
            .lines()
            .find(|l| l.starts_with(&format!("| `{metric}` |")))
            .unwrap_or_else(|| panic!("{metric} is not in docs/operations.md#metrics"));
        let labels = row.split('|').nth(3).expect("a labels column");
        let values = labels.split_once(':').map_or("", |(_, values)| values);
        values.split('`').skip(1).step_by(2).collect()
    }

    fn assert_unique(labels: &[&str]) {
        let distinct: HashSet<_> = labels.iter().collect();
        assert_eq!(distinct.len(), labels.len(), "{labels:?}");
    }

    #[test]
    fn relay_type_labels_are_the_documented_ones() {
        let labels: Vec<_> = Stats::default().relayed().map(|(t, ..)| t).collect();
        assert_unique(&labels);
        assert_eq!(
            labels,
            documented_labels("switchboard_messages_relayed_total")
        );
        assert_eq!(labels[yjs_index()], "yjs-publish");
    }

    #[test]
    fn reject_reasons_are_every_code_in_lower_case_then_too_big() {
        let labels: Vec<_> = Stats::default().rejected().map(|(r, _)| r).collect();
        assert_unique(&labels);
        let mut expected: Vec<String> = ErrorCode::VARIANTS
            .iter()
            .map(|c| c.as_str().to_ascii_lowercase())
            .collect();
        expected.push("message_too_big".into());
        assert_eq!(labels, expected);
        let documented = documented_labels("switchboard_messages_rejected_total");
        assert!(documented.contains(&"message_too_big"), "{documented:?}");
        for label in documented {
            assert!(
                labels.contains(&label),
                "docs name an unknown reason {label}"
            );
        }
    }

    #[test]
    fn each_reason_counts_on_its_own_counter() {
        let stats = Stats::default();
        for (i, reason) in RejectReason::all().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
        stats.count_rejected(ErrorCode::PeerNotFound);
        stats.count_too_big();
        stats.count_too_big();
        let counted: Vec<_> = stats.rejected().filter(|(_, n)| *n > 0).collect();
        assert_eq!(counted, [("peer_not_found", 1), ("message_too_big", 2)]);
    }
}

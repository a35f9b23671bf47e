//! `/metrics`: the server's figures in the Prometheus/OpenMetrics text format, encoded by
//! `prometheus-client` from a [`Snapshot`] taken at scrape time.
//!
//! The counters themselves live where they are counted (lock-free atomics in the signaling
//! crate and here); a scrape copies them into a snapshot and encodes that, so counting never
//! pays for the exposition format.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram's state: per-bucket counts (upper bound, count; the last bound is
/// `f64::MAX` for +Inf), their sum and total.
#[derive(Debug, Clone, Default)]
pub struct HistogramSnapshot {
    /// Non-cumulative counts per bucket.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// Every figure `/metrics` shows, copied at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Open WebSocket connections.
    pub connections: u64,
    /// Authenticated connections.
    pub authenticated: u64,
    /// Room members (reconnecting ones included).
    pub peers: u64,
    /// Rooms.
    pub rooms: u64,
    /// (type, deliveries, bytes) per relayed/broadcast message type.
    pub relayed: Vec<(&'static str, u64, u64)>,
    /// (reason, count) per rejection reason.
    pub rejected: Vec<(&'static str, u64)>,
    /// Peers force-left for silence.
    pub heartbeat_timeouts: u64,
    /// Connections cut off for not reading.
    pub slow_consumers: u64,
    /// Sweeper passes.
    pub sweeps: u64,
    /// (level, count) of memory cleanups.
    pub cleanups: Vec<(&'static str, u64)>,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Resident memory.
    pub memory_rss_bytes: u64,
    /// Allocator bytes in use.
    pub memory_heap_bytes: u64,
    /// 0 normal, 1 warning, 2 critical.
    pub memory_pressure_level: u64,
    /// Time from receiving a relay message to handing it to the target's queue.
    pub relay_latency: HistogramSnapshot,
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> std::fmt::Result {
    let g = ConstGauge::new(v as i64);
    g.encode(enc.encode_descriptor(name, help, unit, g.metric_type())?)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn labelled_counter<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl SnapshotCollector {
    /// Connections, peers and rooms now.
    fn encode_occupancy(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        gauge(
            enc,
            "switchboard_connections",
            "Open WebSocket connections",
            None,
            s.connections,
        )?;
        gauge(
            enc,
            "switchboard_authenticated_connections",
            "Authenticated connections",
            None,
            s.authenticated,
        )?;
        gauge(
            enc,
            "switchboard_peers",
            "Room members, reconnecting ones included",
            None,
            s.peers,
        )?;
        gauge(enc, "switchboard_rooms", "Rooms", None, s.rooms)
    }

    /// Messages relayed and refused, per type or reason.
    fn encode_traffic(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        labelled_counter(
            enc,
            "switchboard_messages_relayed",
            "Messages handed to receivers, per type (one per receiver)",
            None,
            "type",
            s.relayed.iter().map(|(t, n, _)| (*t, *n)),
        )?;
        labelled_counter(
            enc,
            "switchboard_bytes_relayed",
            "Bytes handed to receivers, per type",
            None,
            "type",
            s.relayed.iter().map(|(t, _, b)| (*t, *b)),
        )?;
        labelled_counter(
            enc,
            "switchboard_messages_rejected",
            "Client messages refused, per reason",
            None,
            "reason",
            s.rejected.iter().copied(),
        )
    }

    /// Timeouts, cut-offs, sweeps, cleanups and tokens since start.
    fn encode_upkeep(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        counter(
            enc,
            "switchboard_heartbeat_timeouts",
            "Peers disconnected for silence",
            s.heartbeat_timeouts,
        )?;
        counter(
            enc,
            "switchboard_slow_consumers",
            "Connections cut off for not reading",
            s.slow_consumers,
        )?;
        counter(enc, "switchboard_sweeps", "Room sweeps run", s.sweeps)?;
        labelled_counter(
            enc,
            "switchboard_cleanups",
            "Memory cleanups run, per level",
            None,
            "level",
            s.cleanups.iter().copied(),
        )?;
        counter(
            enc,
            "switchboard_tokens_issued",
            "Room tokens issued",
            s.tokens_issued,
        )
    }

    /// Memory in use and the pressure level.
    fn encode_memory(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        gauge(
            enc,
            "switchboard_memory_rss",
            "Resident memory",
            Some(&Unit::Bytes),
            s.memory_rss_bytes,
        )?;
        gauge(
            enc,
            "switchboard_memory_heap",
            "Allocator bytes in use",
            Some(&Unit::Bytes),
            s.memory_heap_bytes,
        )?;
        gauge(
            enc,
            "switchboard_memory_pressure_level",
            "Memory pressure: 0 normal, 1 warning, 2 critical",
            None,
            s.memory_pressure_level,
        )
    }

    /// The relay latency histogram.
    fn encode_latency(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let h = &self.0.relay_latency;
        // Named with its unit suffix rather than a UNIT line: several OpenMetrics parsers
        // refuse units on histograms.
        let mut m = enc.encode_descriptor(
            "switchboard_relay_latency_seconds",
            "Time from receiving a relay message to handing it to the target's socket queue",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum, h.count, &h.buckets, None,
        )
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        self.encode_occupancy(&mut enc)?;
        self.encode_traffic(&mut enc)?;
        self.encode_upkeep(&mut enc)?;
        self.encode_memory(&mut enc)?;
        self.encode_latency(&mut enc)
    }
}

/// Encodes `snapshot` as OpenMetrics text.
pub fn render(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;
    use crate::{CleanupLevel, Level};

    /// The row of `metric` in the table of docs/operations.md#metrics.
    fn documented_row(metric: &str) -> &'static str {
        include_str!("../../docs/operations.md")
            .lines()
            .find(|l| l.starts_with(&format!("| `{metric}` |")))
            .unwrap_or_else(|| panic!("{metric} is not in docs/operations.md#metrics"))
    }

    #[test]
    fn level_labels_are_the_documented_ones() {
        let list = |items: Vec<String>| items.join(", ");
        let cleanups = CleanupLevel::ALL
            .iter()
            .map(|l| format!("`{}`", l.as_str()));
        // The gauge's meaning column: "0 normal, 1 warning, 2 critical".
        let pressure = Level::VARIANTS
            .iter()
            .map(|l| format!("{} {}", *l as u64, l.as_str()));
        let expected = [
            (
                "switchboard_cleanups_total",
                format!("`level`: {} |", list(cleanups.collect())),
            ),
            (
                "switchboard_memory_pressure_level",
                format!("| {} |", list(pressure.collect())),
            ),
        ];
        for (metric, cell) in expected {
            let row = documented_row(metric);
            assert!(row.contains(&cell), "{row} does not say {cell}");
        }
    }

    #[test]
    fn level_names_are_what_serde_writes() {
        for level in CleanupLevel::ALL {
            assert_eq!(serde_json::to_value(level).unwrap(), level.as_str());
            assert_eq!(level.as_str().parse(), Ok(*level));
        }
        for level in Level::VARIANTS {
            assert_eq!(serde_json::to_value(level).unwrap(), level.as_str());
        }
    }

    #[test]
    fn renders_names_labels_and_histogram() {
        let text = render(Snapshot {
            connections: 3,
            relayed: vec![("sdp-offer", 2, 200), ("message", 0, 0)],
            rejected: vec![("rate_limited", 1)],
            cleanups: vec![("normal", 0), ("aggressive", 0)],
            relay_latency: HistogramSnapshot {
                buckets: vec![(0.001, 2), (f64::MAX, 1)],
                sum: 0.5,
                count: 3,
            },
            ..Snapshot::default()
        });
        assert!(text.contains("switchboard_connections 3\n"), "{text}");
        assert!(text.contains("switchboard_messages_relayed_total{type=\"sdp-offer\"} 2\n"));
        assert!(text.contains("switchboard_messages_relayed_total{type=\"message\"} 0\n"));
        assert!(text.contains("switchboard_cleanups_total{level=\"aggressive\"} 0\n"));
        assert!(text.contains("switchboard_relay_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("switchboard_memory_rss_bytes 0\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}

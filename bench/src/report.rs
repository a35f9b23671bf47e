//! Figures and the results table: each row is one metric of one workload, measured against
//! switchboard and (where it applies) the ceiling, with the ratio and the performance target.

use std::fmt::Write as _;
use std::time::Duration;

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// Percentiles of `samples` (nanoseconds), sorting them.
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64 / 1000.0
        };
        Self {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: samples[samples.len() - 1] as f64 / 1000.0,
        }
    }
}

/// What one loaded run measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Length of the measurement window.
    pub window: Duration,
    /// Deliveries (or requests, or connections) completed in the window.
    pub count: u64,
    /// Server CPU time used in the window.
    pub server_cpu: Duration,
    /// The same per watched process (one for a server; a cluster's instances and Redis).
    pub part_cpu: Vec<Duration>,
    /// Load-generator CPU time used in the window.
    pub gen_cpu: Duration,
    /// Latency over the window.
    pub latency: Latency,
    /// Messages the generator sent in the window (fan-out's offered load).
    pub sent: u64,
    /// Failures (errors, refused connections) during the run.
    pub failures: u64,
    /// CPU time other processes (anything but the server and this generator) took on the
    /// machine during the window: the noise.
    pub others_cpu: Duration,
}

impl Run {
    /// Completions per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.window.as_secs_f64().max(1e-9)
    }
    /// Server CPU in microseconds per completion.
    pub fn cpu_us_per(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / (self.count.max(1) as f64)
    }
    /// Server CPU as a percentage of one core.
    pub fn server_pct(&self) -> f64 {
        100.0 * self.server_cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9)
    }
    /// Other processes' CPU as a percentage of one core.
    pub fn others_pct(&self) -> f64 {
        100.0 * self.others_cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9)
    }
    /// Generator CPU as a percentage of one core.
    pub fn gen_pct(&self) -> f64 {
        100.0 * self.gen_cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9)
    }
}

/// A performance target on a row.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// switchboard / ceiling must be at most this.
    RatioAtMost(f64),
    /// switchboard / ceiling must be at least this.
    RatioAtLeast(f64),
    /// switchboard's figure must be at most this.
    AtMost(f64),
    /// switchboard's figure must be at least this.
    AtLeast(f64),
}

impl Goal {
    fn describe(self) -> String {
        match self {
            Goal::RatioAtMost(x) => format!("<= {x}x"),
            Goal::RatioAtLeast(x) => format!(">= {x}x"),
            Goal::AtMost(x) => format!("<= {x}"),
            Goal::AtLeast(x) => format!(">= {x}"),
        }
    }
}

/// One metric of one workload.
#[derive(Debug, Clone)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Metric with its unit.
    pub metric: String,
    /// switchboard's figure.
    pub switchboard: Option<f64>,
    /// The ceiling's figure.
    pub ceiling: Option<f64>,
    /// The performance target, if this row has one.
    pub goal: Option<Goal>,
}

impl Row {
    /// A row with both figures.
    pub fn new(workload: &str, metric: &str, sb: Option<f64>, ceiling: Option<f64>) -> Self {
        Self {
            workload: workload.into(),
            metric: metric.into(),
            switchboard: sb,
            ceiling,
            goal: None,
        }
    }

    /// switchboard / ceiling.
    pub fn ratio(&self) -> Option<f64> {
        match (self.switchboard, self.ceiling) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c),
            _ => None,
        }
    }

    /// Whether the target is met (`None` without a target or figures).
    pub fn met(&self) -> Option<bool> {
        let goal = self.goal?;
        // switchboard produced no figure (the run failed): the target is missed.
        let Some(sb) = self.switchboard else {
            return Some(false);
        };
        match goal {
            Goal::RatioAtMost(x) => Some(self.ratio()? <= x),
            Goal::RatioAtLeast(x) => Some(self.ratio()? >= x),
            Goal::AtMost(x) => Some(sb <= x),
            Goal::AtLeast(x) => Some(sb >= x),
        }
    }
}

fn figure(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 10_000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The results table as fixed-width text.
pub fn table(rows: &[Row]) -> String {
    table_with(rows, "switchboard", "ceiling")
}

/// The table with other names for the two figures (the ratio is first / second).
pub fn table_with(rows: &[Row], first: &str, second: &str) -> String {
    let mut out = String::new();
    let header = format!(
        "{:<12} {:<34} {:>12} {:>12} {:>7} {:>10} {:>5}",
        "workload", "metric", first, second, "ratio", "target", "met"
    );
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{}", "-".repeat(header.len()));
    for r in rows {
        let ratio = r.ratio().map_or("-".into(), |x| format!("{x:.2}"));
        let goal = r.goal.map_or(String::new(), Goal::describe);
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        let line = format!(
            "{:<12} {:<34} {:>12} {:>12} {:>7} {:>10} {:>5}",
            r.workload,
            r.metric,
            figure(r.switchboard),
            figure(r.ceiling),
            ratio,
            goal,
            met
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The rows as a JSON array.
pub fn json(rows: &[Row]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            serde_json::json!({
                "workload": r.workload,
                "metric": r.metric,
                "switchboard": r.switchboard,
                "ceiling": r.ceiling,
                "ratio": r.ratio(),
                "target": r.goal.map(Goal::describe),
                "met": r.met(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Latency::of(&mut []).count, 0);
    }

    #[test]
    fn targets_compare_ratio_or_absolute_figure() {
        let r = Row {
            goal: Some(Goal::RatioAtMost(1.25)),
            ..Row::new("relay", "x", Some(12.0), Some(10.0))
        };
        assert_eq!(r.met(), Some(true));
        let r = Row {
            goal: Some(Goal::RatioAtLeast(0.9)),
            ..Row::new("relay", "x", Some(8.0), Some(10.0))
        };
        assert_eq!(r.met(), Some(false));
        let r = Row {
            goal: Some(Goal::AtLeast(20_000.0)),
            ..Row::new("tokens", "x", Some(25_000.0), None)
        };
        assert_eq!(r.met(), Some(true));
        assert_eq!(Row::new("t", "x", None, None).met(), None);
        let r = Row {
            goal: Some(Goal::RatioAtLeast(0.8)),
            ..Row::new("t", "x", None, Some(1.0))
        };
        assert_eq!(r.met(), Some(false));
    }
}

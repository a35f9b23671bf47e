//! Memory pressure levels with hysteresis: a level is entered at its threshold and left
//! only once memory is 10% below it, so a process hovering around a threshold does not
//! flap between cleaning and not cleaning.

use serde::Serialize;
use strum::{IntoStaticStr, VariantArray};

/// How much memory pressure the process is under. Its name (`/health`'s `pressure`) is the
/// variant's in lower case, for serde and strum alike; its number (the
/// `switchboard_memory_pressure_level` gauge) is its position.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, IntoStaticStr, VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Level {
    /// Below the warning threshold.
    Normal,
    /// Above `MEMORY_WARNING_MB`: normal cleanup.
    Warning,
    /// Above `MEMORY_CRITICAL_MB`: aggressive cleanup, new rooms refused.
    Critical,
}

impl Level {
    /// Its name: `normal`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The two thresholds, in MiB of resident memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Normal cleanup from here.
    pub warning_mb: u64,
    /// Aggressive cleanup from here.
    pub critical_mb: u64,
}

/// The fraction of a threshold memory must fall below to leave its level.
const EXIT_RATIO: f64 = 0.9;

/// Where the policy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Current level.
    pub level: Level,
    /// Whether new rooms are refused: from critical until memory is below warning.
    pub refuse_new_rooms: bool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            level: Level::Normal,
            refuse_new_rooms: false,
        }
    }
}

impl State {
    /// The state after observing `rss_mb` under `t`.
    pub fn next(self, rss_mb: f64, t: Thresholds) -> Self {
        let (warn, crit) = (t.warning_mb as f64, t.critical_mb as f64);
        let level = if rss_mb >= crit {
            Level::Critical
        } else if rss_mb >= warn {
            // Leaving critical needs 10% headroom below it.
            if self.level == Level::Critical && rss_mb >= crit * EXIT_RATIO {
                Level::Critical
            } else {
                Level::Warning
            }
        } else if self.level >= Level::Warning && rss_mb >= warn * EXIT_RATIO {
            Level::Warning
        } else {
            Level::Normal
        };
        let refuse_new_rooms =
            level == Level::Critical || (self.refuse_new_rooms && rss_mb >= warn);
        Self {
            level,
            refuse_new_rooms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        warning_mb: 200,
        critical_mb: 300,
    };

    fn walk(readings: &[f64]) -> Vec<(Level, bool)> {
        let mut s = State::default();
        readings
            .iter()
            .map(|r| {
                s = s.next(*r, T);
                (s.level, s.refuse_new_rooms)
            })
            .collect()
    }

    #[test]
    fn levels_enter_at_threshold_and_leave_ten_percent_below() {
        use Level::*;
        assert_eq!(
            walk(&[100.0, 200.0, 190.0, 179.0, 300.0, 280.0, 269.0, 199.0, 150.0]),
            vec![
                (Normal, false),
                (Warning, false),
                (Warning, false),
                (Normal, false),
                (Critical, true),
                (Critical, true),
                (Warning, true),
                (Warning, false),
                (Normal, false),
            ]
        );
    }

    #[test]
    fn thresholds_raised_at_runtime_take_effect_at_once() {
        let s = State::default().next(500.0, T);
        assert_eq!(s.level, Level::Critical);
        let s = s.next(
            500.0,
            Thresholds {
                warning_mb: 1000,
                critical_mb: 2000,
            },
        );
        assert_eq!((s.level, s.refuse_new_rooms), (Level::Normal, false));
    }
}

//! Switchboard's self-observation: how much memory it holds, what level of pressure that
//! is, what to clean up about it, and how all of that (plus the signaling counters) is
//! reported through `/health`, `/stats` and `/metrics`.
//!
//! This crate knows nothing about rooms or sockets. What a cleanup does is behind the small
//! [`Janitor`] trait, which the binary implements over the signaling registry, and the
//! figures it renders come in as a plain [`metrics::Snapshot`].

pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod pressure;

pub use monitor::{CleanupLevel, CleanupReport, Janitor, Monitor, Removed};
pub use pressure::{Level, Thresholds};

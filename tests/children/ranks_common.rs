//! What `tests/ranks.rs` and its children (`tests/children/ranks.rs`)
//! share: the experiment, the points per rank, the run's settings. The
//! test includes this file with `#[path]`; the helper program as a module.

use std::time::Duration;

use ml_dash::BufferConfig;

/// The experiment every case writes.
pub const PREFIX: &str = "alice/ddp/job";
/// Points each rank logs in the rank-mode tests.
pub const POINTS: u64 = 500;

/// Quiet, with small batches (the writers' appends interleave) and a short
/// flush interval.
pub fn quiet() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = true;
    c.metric_batch_size = 100; // many batches: the writers' appends interleave
    c.log_batch_size = 20;
    c.track_batch_size = 20;
    c.flush_interval = Duration::from_millis(50);
    c
}

/// Variable `name` as a number, `default` when unset.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

//! Shared settings of the loom models (the models themselves are in `tests/`,
//! one file per protocol). Build only through `run.sh`, which sets
//! `--cfg ml_dash_loom`.

#![cfg(ml_dash_loom)]

use std::time::Duration;

pub use ml_dash::__loom::{Handle, Run, Sink, ring, start};
use ml_dash::BufferConfig;

/// A run's settings for a model: batches of `batch` records (so a producer
/// nudges the collector every `batch` pushes), first rings of `ring` bytes, a
/// memory budget of `budget` bytes, a timer that never fires, no console.
pub fn config(batch: usize, ring: usize, budget: usize) -> BufferConfig {
    let mut c = BufferConfig::default();
    c.log_batch_size = batch;
    c.metric_batch_size = batch;
    c.track_batch_size = batch;
    c.ring_capacity = ring;
    c.memory_budget = budget;
    c.flush_interval = Duration::from_secs(3600);
    c.quiet = true;
    c
}

/// Runs `f` under loom with the bounds from the environment
/// (`LOOM_MAX_PREEMPTIONS`, set by `run.sh`).
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

//! Writing batches to the sink: a stream's batch at its batch size, every
//! batch on the timer, at a flush and at close.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use super::batch::MetricSlot;
use super::hold::RETRY_WHILE_FAILING;
use super::{Collector, Counts};
use crate::record::kind;
use crate::sink::Sink;
use crate::sync::Instant;

impl<S: Sink> Collector<S> {
    /// Writes batches that reached their size, or everything when the timer is due.
    pub(super) fn write_due(&mut self) {
        if self.last_write.elapsed() >= self.write_interval() {
            let _ = self.write_everything();
            return;
        }
        let cfg = &self.core.cfg;
        if self.hold.store_failing {
            return; // retry on the timer, a flush or close, not every tick
        }
        let (mb, lb, tb) = (
            cfg.metric_batch_size,
            cfg.log_batch_size,
            cfg.track_batch_size,
        );
        // A failing stream is retried on the timer, a flush or close, not
        // every tick; the others are written as usual.
        let r = self.write_where(|n, k, failing| {
            !failing
                && match k {
                    kind::METRIC => n >= mb,
                    kind::LOG => n >= lb,
                    _ => n >= tb,
                }
        });
        self.note(r);
    }

    /// Time between timed writes: the flush interval, shorter while the
    /// store fails (the retry).
    pub(super) fn write_interval(&self) -> Duration {
        let interval = self.core.cfg.flush_interval;
        if self.hold.failing {
            interval.min(RETRY_WHILE_FAILING)
        } else {
            interval
        }
    }

    /// Writes the parameter sets still held (first: they were called before
    /// anything batched since), every batch (each stream is tried, whichever
    /// others fail), then fsyncs what was written (`sync_on_flush`).
    pub(super) fn write_everything(&mut self) -> Result<(), String> {
        self.last_write = Instant::now();
        self.pump_files();
        let mut r = write_params(&mut self.store, &mut self.params, &mut self.params_failing);
        r = r.and(self.write_where(|n, _, _| n > 0));
        let synced = self.store.sync_all().map_err(|e| e.to_string());
        self.hold.store_failing = synced.is_err();
        r = r.and(synced);
        self.update_failing();
        self.note(r.clone());
        r
    }

    /// Writes every batch for which `due(len, kind, its last write failed)`
    /// holds; the first error names its stream.
    fn write_where(&mut self, due: impl Fn(usize, u8, bool) -> bool) -> Result<(), String> {
        let mut first_err = None;
        let mut tried = false;
        for (id, slot) in self.metrics.iter_mut().enumerate() {
            if let Some(m) = slot
                && due(m.batch.count, kind::METRIC, m.failing)
            {
                tried = true;
                let r = write_metrics(&mut self.store, id, m, &mut self.report.stored);
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
        }
        if due(self.logs.len(), kind::LOG, self.logs_failing) {
            tried = true;
            match self.store.append_logs(&self.logs) {
                Ok(()) => {
                    self.report.stored.logs += self.logs.len() as u64;
                    self.logs.clear();
                    self.logs_failing = false;
                }
                Err(e) => {
                    self.logs_failing = true;
                    first_err.get_or_insert(format!("logs: {e}"));
                }
            }
        }
        for (id, slot) in self.tracks.iter_mut().enumerate() {
            if let Some(t) = slot
                && due(t.entries.len(), kind::TRACK, t.failing)
            {
                tried = true;
                match self
                    .store
                    .append_tracks(id as u32, &t.topic, &mut t.entries)
                {
                    Ok(()) => {
                        self.report.stored.tracks += t.entries.len() as u64;
                        t.entries.clear();
                        t.by_ts.clear();
                        t.failing = false;
                    }
                    Err(e) => {
                        // The store may have sorted the rows: re-index them
                        // so later rows with the same timestamp still merge.
                        t.by_ts = (t.entries.iter().enumerate())
                            .map(|(i, e)| (e.ts.to_bits(), i))
                            .collect();
                        t.failing = true;
                        first_err.get_or_insert(format!("track {:?}: {e}", t.topic));
                    }
                }
            }
        }
        if tried {
            self.hold.held = self.pending_bytes();
            self.update_failing();
            self.store_warnings();
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Writes one metric batch and counts it; a failure marks the stream failing.
pub(super) fn write_metrics(
    store: &mut impl Sink,
    id: usize,
    m: &mut MetricSlot,
    stored: &mut Counts,
) -> Result<(), String> {
    if let Err(e) = store.append_metrics(id as u32, m.name.as_deref(), &mut m.batch) {
        m.failing = true;
        let name = m.name.as_deref().unwrap_or("None");
        return Err(format!("metric stream {name:?}: {e}"));
    }
    stored.metrics += m.batch.count as u64;
    m.batch.clear();
    m.failing = false;
    Ok(())
}

/// Writes the held parameter sets, oldest first, each as its own version;
/// stops at the first failure (the rest wait behind it, in call order).
pub(super) fn write_params(
    store: &mut impl Sink,
    params: &mut VecDeque<Map<String, Json>>,
    failing: &mut bool,
) -> Result<(), String> {
    while let Some(set) = params.front() {
        if let Err(e) = store.set_params(set) {
            *failing = true;
            return Err(format!("parameters: {e}"));
        }
        params.pop_front();
    }
    *failing = false;
    Ok(())
}

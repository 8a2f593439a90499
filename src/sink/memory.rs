//! An in-memory sink for tests and the loom models: every batch is kept as
//! text, nothing touches the file system. A test keeps a clone of the handle
//! and reads what arrived with [`MemorySink::snapshot`], or waits for it with
//! [`MemorySink::wait_until`] (a condition variable: no sleeps, no polling).
//!
//! Its lock is the test's own synchronisation, not the engine's: a model that
//! checks "in the sink when `flush()` returns" still fails when the collector
//! completes an epoch before writing, because the write is then simply not
//! there yet.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::{Batch, MetricBatch, Sink, TrackEntry};
use crate::api::Status;
use crate::error::{Error, Result};
use crate::sync::{Condvar, Mutex, MutexGuard};

/// What reached the sink so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryData {
    /// Log entries in arrival order, each a JSON object's text.
    pub(crate) logs: Vec<String>,
    /// Metric lines per stream id, in arrival order.
    pub(crate) metrics: Vec<(u32, String)>,
    /// Track entries per topic, in arrival order (each batch sorted by time).
    pub(crate) tracks: Vec<(String, TrackEntry)>,
    /// Each `set` call's parameters, in arrival order.
    pub(crate) params: Vec<Map<String, Json>>,
    /// The final status, once the run closed.
    pub(crate) status: Option<Status>,
    /// Successful write calls (batches, params, finish).
    pub(crate) writes: u64,
    /// While true every write fails (and leaves the data with the collector).
    pub(crate) failing: bool,
}

impl MemoryData {
    /// The `message` of every log entry, in arrival order.
    pub(crate) fn log_messages(&self) -> Vec<String> {
        self.logs
            .iter()
            .map(|entry| {
                let v: Json = serde_json::from_str(entry).expect("a log entry is a JSON object");
                v["message"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }
}

#[derive(Debug)]
struct Shared {
    data: Mutex<MemoryData>,
    changed: Condvar,
}

/// The in-memory sink; clones share the same data.
#[derive(Debug, Clone)]
pub(crate) struct MemorySink {
    shared: Arc<Shared>,
}

impl MemorySink {
    pub(crate) fn new() -> MemorySink {
        MemorySink {
            shared: Arc::new(Shared {
                data: Mutex::new(MemoryData::default()),
                changed: Condvar::new(),
            }),
        }
    }

    /// A copy of what arrived so far.
    pub(crate) fn snapshot(&self) -> MemoryData {
        self.lock().clone()
    }

    /// Makes every following write fail (`true`) or succeed again.
    pub(crate) fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Blocks until `done` holds for the data (checked after each write).
    pub(crate) fn wait_until(&self, mut done: impl FnMut(&MemoryData) -> bool) -> MemoryData {
        let mut g = self.lock();
        while !done(&g) {
            g = self
                .shared
                .changed
                .wait(g)
                .unwrap_or_else(|e| e.into_inner());
        }
        g.clone()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryData> {
        self.shared.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one write: fails while `failing`, else applies `f` and wakes waiters.
    fn write(&self, f: impl FnOnce(&mut MemoryData)) -> Result<()> {
        let mut g = self.lock();
        if g.failing {
            return Err(Error::Sink("the in-memory sink is set to fail".into()));
        }
        f(&mut g);
        g.writes += 1;
        drop(g);
        self.shared.changed.notify_all();
        Ok(())
    }
}

impl Sink for MemorySink {
    fn location(&self) -> &Path {
        Path::new("<memory>")
    }

    fn metric_next_index(&mut self, id: u32, _name: Option<&str>) -> Result<u64> {
        let g = self.lock();
        Ok(g.metrics.iter().filter(|(i, _)| *i == id).count() as u64)
    }

    fn append_metrics(
        &mut self,
        id: u32,
        _name: Option<&str>,
        batch: &mut MetricBatch,
    ) -> Result<()> {
        if batch.count == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&batch.lines).into_owned();
        self.write(|d| {
            d.metrics
                .extend(text.lines().map(|line| (id, line.to_string())));
        })
    }

    fn append_logs(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let items: Vec<String> = batch
            .items()
            .map(|b| format!("{{{}}}", String::from_utf8_lossy(b)))
            .collect();
        self.write(|d| d.logs.extend(items))
    }

    fn append_tracks(&mut self, _id: u32, topic: &str, entries: &mut [TrackEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        entries.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        self.write(|d| {
            d.tracks
                .extend(entries.iter().map(|e| (topic.to_string(), e.clone())));
        })
    }

    fn set_params(&mut self, params: &Map<String, Json>) -> Result<()> {
        self.write(|d| d.params.push(params.clone()))
    }

    fn sync_all(&mut self) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self, status: Status) -> Result<()> {
        self.write(|d| d.status = Some(status))
    }
}

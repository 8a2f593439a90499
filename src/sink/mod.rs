//! Where batches go. Sinks never see rings or records: they receive batches of
//! JSON objects that the collector serialized, and write them out.
//!
//! - [`local`]: the ML-Dash `.dash/<prefix>` layout (the default);
//! - `memory` (tests and the loom models only): keeps every batch in memory,
//!   no I/O.
//!
//! The collector writes through the [`Sink`] trait, so the same collector code
//! runs against either.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::core::{Status, StreamInfo};
use crate::error::Result;
use crate::files::FileEntry;

pub(crate) mod local;
#[cfg(any(test, ml_dash_loom))]
pub(crate) mod memory;
pub(crate) mod tee;

/// What the collector needs from a store. Every method is called from the
/// collector thread only; a failed write leaves the batch with the caller,
/// which keeps it and retries.
pub(crate) trait Sink {
    /// Where the data goes, for messages.
    fn location(&self) -> &Path;
    /// The index the next point of metric stream `id` gets.
    fn metric_next_index(&mut self, id: u32, name: Option<&str>) -> Result<u64>;
    /// Appends one batch of metric lines (renumbered if another writer appended).
    fn append_metrics(
        &mut self,
        id: u32,
        name: Option<&str>,
        batch: &mut MetricBatch,
    ) -> Result<()>;
    /// Appends one batch of log entries.
    fn append_logs(&mut self, batch: &Batch) -> Result<()>;
    /// Appends the entries of one track topic.
    fn append_tracks(&mut self, id: u32, topic: &str, entries: &mut [TrackEntry]) -> Result<()>;
    /// Stores one `params.set` call (a flat map) as the next version.
    fn set_params(&mut self, params: &Map<String, Json>) -> Result<()>;
    /// Makes everything written so far durable (when the store is set to).
    fn sync_all(&mut self) -> Result<()>;
    /// Records the run's final status.
    fn finish(&mut self, status: Status) -> Result<()>;
    /// A file was stored locally at `content` (a remote sink sends a copy).
    fn file_stored(&mut self, _entry: &FileEntry, _content: &Path, _checksum: &str) -> Result<()> {
        Ok(())
    }
    /// What the store repaired when it opened a file (a torn tail cut, a
    /// stale counter fixed) since the last call: one warning each.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Last step of close, after `finish`: a remote sink drains its spool
    /// within its deadline and returns its report line.
    fn shutdown(&mut self) -> Option<String> {
        None
    }
    /// After `shutdown`: a background thread of the store that died (the
    /// remote sender), with where its data stays; close then fails.
    fn dead_thread(&self) -> Option<String> {
        None
    }
}

impl Sink for local::LocalStore {
    fn location(&self) -> &Path {
        self.dir()
    }

    fn metric_next_index(&mut self, id: u32, name: Option<&str>) -> Result<u64> {
        local::LocalStore::metric_next_index(self, id, name)
    }

    fn append_metrics(
        &mut self,
        id: u32,
        name: Option<&str>,
        batch: &mut MetricBatch,
    ) -> Result<()> {
        local::LocalStore::append_metrics(self, id, name, batch)
    }

    fn append_logs(&mut self, batch: &Batch) -> Result<()> {
        local::LocalStore::append_logs(self, batch)
    }

    fn append_tracks(&mut self, id: u32, topic: &str, entries: &mut [TrackEntry]) -> Result<()> {
        local::LocalStore::append_tracks(self, id, topic, entries)
    }

    fn set_params(&mut self, params: &Map<String, Json>) -> Result<()> {
        local::LocalStore::merge_params(self, params)
    }

    fn sync_all(&mut self) -> Result<()> {
        local::LocalStore::sync_all(self)
    }

    fn finish(&mut self, status: Status) -> Result<()> {
        local::LocalStore::finish(self, status)
    }

    fn take_warnings(&mut self) -> Vec<String> {
        local::LocalStore::take_warnings(self)
    }
}

/// A batch of serialized JSON objects, back to back in one buffer.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    /// The buffer to append the next object to; call [`end_item`](Self::end_item) after.
    #[inline]
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Marks the end of the object just written.
    #[inline]
    pub(crate) fn end_item(&mut self) {
        self.ends.push(self.buf.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// The objects in order.
    pub(crate) fn items(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let s = &self.buf[start..end];
            start = end;
            s
        })
    }
}

/// Metric points as finished store lines,
/// `{"index":N,"data":{...},"createdAt":"..."}\n`, written straight from the
/// ring's bytes. The store renumbers them in the rare case that another writer
/// appended to the stream in between.
#[derive(Debug, Default)]
pub(crate) struct MetricBatch {
    pub(crate) lines: Vec<u8>,
    pub(crate) first_index: u64,
    pub(crate) count: usize,
    pub(crate) created_at: String,
    /// The stream's description, tags and metadata (set once, kept by `clear`).
    pub(crate) info: Option<Arc<StreamInfo>>,
}

impl MetricBatch {
    pub(crate) fn clear(&mut self) {
        self.lines.clear();
        self.count = 0;
    }
}

/// One track row: its timestamp and its fields as (name, JSON value text).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrackEntry {
    pub(crate) ts: f64,
    pub(crate) fields: Vec<(String, String)>,
}

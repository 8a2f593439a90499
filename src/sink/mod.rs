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

use crate::api::Status;
use crate::error::Result;
use crate::files::FileEntry;
use crate::read::Feed;
use crate::run::StreamInfo;

#[allow(unsafe_code)] // getrlimit and gethostname
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
    /// Whether it keeps the block summaries of metric streams (the local
    /// store), so that the collector folds points into [`MetricBatch::summary`].
    fn keeps_summaries(&self) -> bool {
        false
    }

    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Refreshes the run's liveness marker (`heartbeat_at` in the local
    /// `experiment.json`); called every [`local::HEARTBEAT_INTERVAL`] while
    /// the run is open.
    fn heartbeat(&mut self) -> Result<()> {
        Ok(())
    }
    /// Last step of close, after `finish`: a remote sink drains its spool
    /// within its deadline and returns its report line.
    fn shutdown(&mut self) -> Option<String> {
        None
    }
    /// A background thread of the store that died (the remote sender), with
    /// where its data stays: every flush after it fails, and close. The
    /// store itself still takes writes (this is not a store failure).
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

    fn heartbeat(&mut self) -> Result<()> {
        local::LocalStore::heartbeat(self)
    }

    fn keeps_summaries(&self) -> bool {
        true
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
    /// The stream's block summary as the collector encodes it, for a sink
    /// that keeps one ([`Sink::keeps_summaries`]); kept by `clear`, dropped
    /// when the sink cannot follow the stream.
    pub(crate) summary: Option<Box<Feed>>,
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

/// Calls `f` with each field of a track row as the local store writes it,
/// `(name, JSON value text)`: as the Python SDK's `_flatten_dict`, an object
/// becomes dotted keys (`"cam":{"pos":[1,2]}` is `"cam.pos":[1,2]`), an empty
/// one disappears, lists stay as they are, and a name met again takes the
/// later value in the earlier place. The server gets the row unflattened.
pub(crate) fn flat_fields(fields: &[(String, String)], mut f: impl FnMut(&str, &str)) {
    if !fields.iter().any(|(_, v)| v.starts_with('{')) {
        for (k, v) in fields {
            f(k, v);
        }
        return;
    }
    let mut flat = Vec::new();
    for (k, v) in fields {
        flatten(&mut flat, k.clone(), v);
    }
    for (k, v) in &flat {
        f(k, v);
    }
}

fn flatten<'a>(flat: &mut Vec<(String, &'a str)>, name: String, value: &'a str) {
    if !value.starts_with('{') {
        match flat.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => flat.push((name, value)),
        }
        return;
    }
    for (key, v) in members(value) {
        flatten(flat, format!("{name}.{key}"), v);
    }
}

/// The members of a JSON object text as `encode` writes it (no whitespace):
/// each key unescaped, each value as text.
fn members(obj: &str) -> Vec<(String, &str)> {
    let b = obj.as_bytes();
    let mut out = Vec::new();
    let mut i = 1; // past '{'
    while i < b.len() && b[i] == b'"' {
        let key_end = value_end(b, i);
        let key = serde_json::from_str(&obj[i..key_end]).unwrap_or_default();
        let start = key_end + 1; // past ':'
        let end = value_end(b, start);
        out.push((key, &obj[start..end]));
        i = end + 1; // past ',' (or the closing '}')
    }
    out
}

/// The end of the JSON value text that starts at `i`.
fn value_end(b: &[u8], mut i: usize) -> usize {
    let (mut depth, mut in_str) = (0usize, false);
    while i < b.len() {
        match (in_str, b[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => {
                in_str = false;
                if depth == 0 {
                    return i + 1;
                }
            }
            (true, _) => {}
            (false, b'"') => in_str = true,
            (false, b'{' | b'[') => depth += 1,
            (false, b'}' | b']') if depth == 0 => return i,
            (false, b'}' | b']') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            (false, b',') if depth == 0 => return i,
            (false, _) => {}
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::flat_fields;

    fn flat(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        let fields: Vec<(String, String)> = (fields.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut out = Vec::new();
        flat_fields(&fields, |k, v| out.push((k.to_string(), v.to_string())));
        out
    }

    #[test]
    fn objects_flatten_into_dotted_keys_as_the_sdk_does() {
        let got = flat(&[
            ("q", "[0.1,{\"k\":[1]}]"),
            (
                "cam",
                r#"{"pos":[1,2],"rot":{"w":1.0,"e":{}},"s":"a,}\"{","e":{}}"#,
            ),
            ("x", "{}"),
            ("n", "null"),
        ]);
        let want = [
            ("q", "[0.1,{\"k\":[1]}]"),
            ("cam.pos", "[1,2]"),
            ("cam.rot.w", "1.0"),
            ("cam.s", r#""a,}\"{""#),
            ("n", "null"),
        ];
        let want: Vec<_> = (want.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_repeated_name_keeps_its_place_and_takes_the_later_value() {
        let got = flat(&[("a.b", "1"), ("c", "2"), ("a", r#"{"b":3,"\u00e9":4}"#)]);
        let got: Vec<_> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, [("a.b", "3"), ("c", "2"), ("a.é", "4")]);
    }
}

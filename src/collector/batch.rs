//! Per-stream batches: each record from a ring becomes a JSON object in its
//! stream's batch (metric points, log lines, track rows), a parameter set is
//! written at once, a file record becomes a job for the upload workers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::hold::{Hold, MAX_HELD_PARAMS};
use super::stamp::{Given, Stamp, metric_stamp};
use super::write::{write_metrics, write_params};
use super::{Collector, Counts};
use crate::encode;
use crate::files::{FileJob, FileRecord, Pool};
use crate::read::Feed;
use crate::record::{self, FieldValue, Level, RecordView, kind};
use crate::run::{RunCore, StreamKind};
use crate::sink::{Batch, MetricBatch, Sink, TrackEntry};

/// A metric batch this large is written during the drain, whatever the batch
/// size: it bounds the collector's memory and keeps its buffers in cache.
const INLINE_WRITE_BYTES: usize = 1 << 20;

pub(super) struct MetricSlot {
    pub(super) name: Option<Arc<str>>,
    pub(super) batch: MetricBatch,
    /// Its last write failed (see `Hold`).
    pub(super) failing: bool,
}

pub(super) struct TrackState {
    pub(super) topic: Arc<str>,
    pub(super) entries: Vec<TrackEntry>,
    pub(super) by_ts: HashMap<u64, usize>,
    /// Its last write failed (see `Hold`).
    pub(super) failing: bool,
}

/// Bytes a track row holds in the collector.
/// Folds a field of the point being encoded into the stream's summary,
/// as a reader would parse it from the line (see `read::scan`): numbers and
/// booleans, not NaN, strings or `null`; false when the summary cannot
/// follow the point (a nested value, a name that is escaped).
fn fold(f: &mut Feed, name: &str, v: FieldValue<'_>) -> bool {
    let x = match v {
        FieldValue::F64(x) if x.is_nan() => return true,
        FieldValue::F64(x) => x,
        FieldValue::I64(x) => x as f64,
        FieldValue::U64(x) => x as f64,
        FieldValue::Bool(b) => f64::from(u8::from(b)),
        FieldValue::Str(_) | FieldValue::Null => return encode::plain(name),
        FieldValue::F64s(_) | FieldValue::List(_) | FieldValue::Object(_) => return false,
    };
    f.number(name, x)
}

fn entry_bytes(e: &TrackEntry) -> usize {
    e.fields.iter().map(|(k, v)| k.len() + v.len()).sum()
}

impl<S: Sink> Collector<S> {
    pub(super) fn pending(&self) -> Counts {
        Counts {
            logs: self.logs.len() as u64,
            metrics: self
                .metrics
                .iter()
                .flatten()
                .map(|m| m.batch.count as u64)
                .sum(),
            tracks: self
                .tracks
                .iter()
                .flatten()
                .map(|t| t.entries.len() as u64)
                .sum(),
            files: (self.file_jobs.len() + self.files.as_ref().map_or(0, Pool::outstanding)) as u64,
        }
    }

    pub(super) fn pending_bytes(&self) -> usize {
        let metrics: usize = self
            .metrics
            .iter()
            .flatten()
            .map(|m| m.batch.lines.len())
            .sum();
        let tracks: usize = self
            .tracks
            .iter()
            .flatten()
            .flat_map(|t| t.entries.iter())
            .map(entry_bytes)
            .sum();
        metrics + tracks + self.logs.bytes()
    }
}

/// Turns records into JSON in the right batch.
pub(super) struct Decoder<'a, S: Sink> {
    pub(super) core: &'a RunCore,
    pub(super) store: &'a mut S,
    pub(super) stored: &'a mut Counts,
    pub(super) error: &'a mut Option<String>,
    pub(super) metrics: &'a mut Vec<Option<MetricSlot>>,
    pub(super) tracks: &'a mut Vec<Option<TrackState>>,
    pub(super) logs: &'a mut Batch,
    /// The last write of the logs failed.
    pub(super) logs_failing: bool,
    pub(super) params: &'a mut VecDeque<Map<String, Json>>,
    /// The last write of the parameters failed.
    pub(super) params_failing: &'a mut bool,
    pub(super) last_track_ts: &'a mut f64,
    /// The drained chain's [`Chain::last_ts`].
    pub(super) last_ts: &'a mut Option<Stamp>,
    pub(super) scratch: &'a mut Vec<u8>,
    pub(super) file_jobs: &'a mut Vec<FileJob>,
    pub(super) hold: &'a mut Hold,
}

impl<S: Sink> Decoder<'_, S> {
    pub(super) fn record(&mut self, bytes: &[u8]) {
        let r = RecordView::parse(bytes);
        match r.head.kind {
            kind::METRIC => self.metric(&r),
            kind::LOG => self.log(&r),
            kind::TRACK => self.track(&r),
            kind::PARAMS => self.params(&r),
            kind::FILE => {
                // The producer serialized a FileRecord with serde_json.
                if let Ok(rec) = serde_json::from_slice::<FileRecord>(r.msg) {
                    self.file_jobs.push(rec.into_job());
                }
            }
            _ => {}
        }
    }

    fn metric(&mut self, r: &RecordView<'_>) {
        let id = r.head.stream as usize;
        if self.metrics.len() <= id {
            self.metrics.resize_with(id + 1, || None);
        }
        let slot = &mut self.metrics[id];
        if slot.is_none() {
            let Some(desc) = self.core.streams.desc(r.head.stream) else {
                return;
            };
            debug_assert_eq!(desc.kind, StreamKind::Metric);
            // Shared mode has other writers: readers summarise the stream.
            let summary = (self.store.keeps_summaries() && self.core.role.rank_field.is_none())
                .then(Box::default);
            *slot = Some(MetricSlot {
                name: desc.name,
                batch: MetricBatch {
                    info: desc.info,
                    summary,
                    ..MetricBatch::default()
                },
                failing: false,
            });
        }
        let m = slot.as_mut().expect("just set");
        if self.hold.full(m.failing) {
            self.hold.drop_record(kind::METRIC);
            // A later `_ts = -1` of this thread still means this point's time.
            metric_stamp(Given::field(r), r.head.ts, self.last_ts);
            return;
        }
        let batch = &mut m.batch;
        let before = batch.lines.len();
        if batch.count == 0 {
            // A wrong guess (the store is unreadable now) is renumbered at write.
            batch.first_index = self
                .store
                .metric_next_index(id as u32, m.name.as_deref())
                .unwrap_or(0);
            batch.created_at = encode::iso_now();
        }
        let index = batch.first_index + batch.count as u64;
        let (out, feed) = (&mut batch.lines, &mut batch.summary);
        if let Some(f) = feed {
            f.begin(index);
        }
        out.extend_from_slice(b"{\"index\":");
        encode::u64(out, index);
        out.extend_from_slice(b",\"data\":{");
        // `_ts` goes last, as a float; the caller's value wins over the clock's.
        let mut given = Given::Clock;
        let mut first = true;
        let mut rank = self.core.role.rank_field;
        for (name, v) in r.fields() {
            if name == "_ts" {
                given = Given::of(v);
                continue;
            }
            if name == "rank" {
                rank = None; // the caller's own wins
            }
            if !first {
                out.push(b',');
            }
            first = false;
            encode::member(out, name, v);
            if let Some(f) = feed
                && !fold(f, name, v)
            {
                *feed = None;
            }
        }
        if let Some(rank) = rank {
            // Shared mode: which rank logged it (see `crate::ranks`).
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"\"rank\":");
            encode::u64(out, u64::from(rank));
        }
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"_ts\":");
        let ts = metric_stamp(given, r.head.ts, self.last_ts);
        ts.write(out);
        out.extend_from_slice(b"},\"createdAt\":\"");
        out.extend_from_slice(batch.created_at.as_bytes());
        out.extend_from_slice(b"\"}\n");
        if let Some(f) = feed {
            if !ts.secs().is_nan() {
                f.number("_ts", ts.secs());
            }
            f.end(&out[before..]);
        }
        batch.count += 1;
        self.hold.held += batch.lines.len() - before;
        // Not while the stream fails: it is retried on the timer, a flush or close.
        if batch.lines.len() >= INLINE_WRITE_BYTES && !m.failing && !self.hold.store_failing {
            let bytes = batch.lines.len();
            match write_metrics(self.store, id, m, self.stored) {
                Ok(()) => self.hold.held = self.hold.held.saturating_sub(bytes),
                Err(e) => {
                    self.hold.failing = true;
                    self.error.get_or_insert(e);
                }
            }
        }
    }

    fn log(&mut self, r: &RecordView<'_>) {
        if self.hold.full(self.logs_failing) {
            self.hold.drop_record(kind::LOG);
            return;
        }
        let before = self.logs.bytes();
        let out = self.logs.buf();
        out.extend_from_slice(b"\"timestamp\":");
        encode::str(out, &encode::iso(r.head.ts));
        out.extend_from_slice(b",\"level\":\"");
        out.extend_from_slice(Level::from_u8(r.head.aux).as_str().as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        encode::str(out, std::str::from_utf8(r.msg).unwrap_or(""));
        let mut fields = r.fields().peekable();
        let mut rank = self.core.role.rank_field;
        if fields.peek().is_some() || rank.is_some() {
            out.extend_from_slice(b",\"metadata\":{");
            for (i, (name, v)) in fields.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if name == "rank" {
                    rank = None;
                }
                encode::member(out, name, v);
            }
            if let Some(rank) = rank {
                if out.last() != Some(&b'{') {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"rank\":");
                encode::u64(out, u64::from(rank));
            }
            out.push(b'}');
        }
        self.logs.end_item();
        self.hold.held += self.logs.bytes() - before;
    }

    fn track(&mut self, r: &RecordView<'_>) {
        let id = r.head.stream as usize;
        if self.tracks.len() <= id {
            self.tracks.resize_with(id + 1, || None);
        }
        if self.tracks[id].is_none() {
            let Some(desc) = self.core.streams.desc(r.head.stream) else {
                return;
            };
            self.tracks[id] = Some(TrackState {
                topic: desc.name.unwrap_or_else(|| Arc::from("")),
                entries: Vec::new(),
                by_ts: HashMap::new(),
                failing: false,
            });
        }
        let (ts, from_field) = self.track_ts(r);
        let t = self.tracks[id].as_mut().expect("just set");
        // A dropped row still gives this thread its timestamp (taken above).
        if self.hold.full(t.failing) {
            self.hold.drop_record(kind::TRACK);
            return;
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        for (name, v) in r.fields() {
            if name == "_ts" || (name == "timestamp" && from_field) {
                continue;
            }
            self.scratch.clear();
            encode::value(self.scratch, v);
            let text = String::from_utf8_lossy(self.scratch).into_owned();
            fields.push((name.to_string(), text));
        }
        if let Some(rank) = self.core.role.rank_field
            && !fields.iter().any(|(k, _)| k == "rank")
        {
            fields.push(("rank".into(), rank.to_string()));
        }
        // Same timestamp in one flush window: merge, later fields win.
        match t.by_ts.get(&ts.to_bits()) {
            Some(&i) => {
                let e = &mut t.entries[i];
                let before = entry_bytes(e);
                for (k, v) in fields {
                    match e.fields.iter_mut().find(|(ek, _)| *ek == k) {
                        Some(slot) => slot.1 = v,
                        None => e.fields.push((k, v)),
                    }
                }
                let after = entry_bytes(e);
                self.hold.held = (self.hold.held + after).saturating_sub(before);
            }
            None => {
                let e = TrackEntry { ts, fields };
                self.hold.held += entry_bytes(&e);
                t.by_ts.insert(ts.to_bits(), t.entries.len());
                t.entries.push(e);
            }
        }
    }

    /// A track row's timestamp, and whether its `timestamp` field gave it. A
    /// numeric `timestamp` field wins (the SDK's rule), then the caller's
    /// time (`_ts` or `append_at`; `-1` is the thread's previous timestamp),
    /// else the wall clock, made strictly increasing per experiment (as the
    /// SDK does). It becomes the thread's previous.
    fn track_ts(&mut self, r: &RecordView<'_>) -> (f64, bool) {
        let field = r.fields().find_map(|(name, v)| match (name, v) {
            ("timestamp", FieldValue::F64(x)) if x.is_finite() => Some(x),
            ("timestamp", FieldValue::I64(x)) => Some(x as f64),
            _ => None,
        });
        let given = if r.head.aux & record::TRACK_EXPLICIT_TS != 0 {
            Given::At(f64::from_bits(r.head.ts))
        } else if r.head.aux & record::TRACK_PREVIOUS_TS != 0 {
            Given::Previous
        } else {
            Given::field(r)
        };
        let stamp = match (field, given, *self.last_ts) {
            (Some(x), ..) | (None, Given::At(x), _) => Stamp::Secs(x),
            (None, Given::Previous, Some(prev)) => prev,
            _ => {
                let wall = encode::epoch_secs(r.head.ts);
                let ts = if wall <= *self.last_track_ts {
                    *self.last_track_ts + 1e-6
                } else {
                    wall
                };
                *self.last_track_ts = ts;
                Stamp::Secs(ts)
            }
        };
        *self.last_ts = Some(stamp);
        (stamp.secs(), field.is_some())
    }

    /// One `set` call: written at once, ahead of the batches still being
    /// filled, as the SDK sends it at call time (while earlier sets or the
    /// store fail, it waits behind them for the retry).
    fn params(&mut self, r: &RecordView<'_>) {
        // The producer serialized a flat JSON object with serde_json.
        let Ok(Json::Object(m)) = serde_json::from_slice::<Json>(r.msg) else {
            return;
        };
        if *self.params_failing || self.hold.store_failing {
            // Held behind the set being retried (the front, which a hybrid
            // run may have spooled already), each its own version; past
            // MAX_HELD_PARAMS the later ones merge into the last, so a set
            // per step during a long outage holds a bounded number of maps.
            if self.params.len() >= MAX_HELD_PARAMS
                && let Some(last) = self.params.back_mut()
            {
                last.extend(m);
            } else {
                self.params.push_back(m);
            }
            return;
        }
        self.params.push_back(m);
        if let Err(e) = write_params(self.store, self.params, self.params_failing) {
            self.hold.failing = true;
            self.error.get_or_insert(e);
        }
    }
}

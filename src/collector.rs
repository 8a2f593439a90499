//! The collector: one thread per run that sweeps the producers' rings,
//! serializes records into per-stream batches and hands them to the store.
//!
//! ```text
//!  wake-ups: tick (250 µs while producers are active, keeps the rings small)
//!            batch threshold nudge | flush() | close | flush_interval timer
//!  loop:  target = requested epoch (Acquire)
//!         control messages (new rings, grown rings, retired rings, flush waiters)
//!         drain every ring -> decode -> JSON objects in per-stream batches
//!         write full batches; on the timer or a flush epoch write everything
//!         publish completed epoch (Release), unpark its waiters
//!         sleep: short tick while active, long park when idle
//! ```
//!
//! One collector per run (not per process): each run has its own store, its
//! own close and its own failure domain, and a thread that logs into two runs
//! simply has two rings. It may depend on `core`, `ring`, `record`, `encode`
//! and `sink`; it never touches the public API types.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};

use crate::core::{Control, RingShared, RunCore, Status, StreamKind};
use crate::encode;
use crate::record::{self, FieldValue, Level, RecordView, kind};
use crate::ring::RingConsumer;
use crate::sink::local::LocalStore;
use crate::sink::{Batch, MetricBatch, TrackEntry};
use crate::sync::{Ordering, heavy_barrier, mpsc, thread};

/// Tick period while producers are active.
const TICK: Duration = Duration::from_micros(250);
/// Empty ticks before the collector parks until the next trigger.
const IDLE_TICKS: u32 = 40;
/// A metric batch this large is written during the drain, whatever the batch
/// size: it bounds the collector's memory and keeps its buffers in cache.
const INLINE_WRITE_BYTES: usize = 1 << 20;

/// Counts of records by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Log lines.
    pub logs: u64,
    /// Metric points.
    pub metrics: u64,
    /// Track entries.
    pub tracks: u64,
    /// Files.
    pub files: u64,
}

impl Counts {
    fn any(&self) -> bool {
        self.logs + self.metrics + self.tracks + self.files > 0
    }
}

/// What closing a run did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CloseReport {
    /// Records written to the store over the run's life.
    pub stored: Counts,
    /// Records still buffered when close began (what the console report counts).
    pub pending_at_close: Counts,
    /// Records dropped under the lossy backpressure policy (0 by default).
    pub dropped: u64,
    /// Records that could not be written (the store kept failing); each error is
    /// also printed as a warning.
    pub unwritten: Counts,
    /// Errors met while writing, most recent last.
    pub errors: Vec<String>,
}

struct Chain {
    id: u64,
    consumer: RingConsumer,
    shared: Arc<RingShared>,
    bytes: usize,
    retired: bool,
}

struct MetricSlot {
    name: Option<Arc<str>>,
    batch: MetricBatch,
}

struct TrackState {
    topic: Arc<str>,
    entries: Vec<TrackEntry>,
    by_ts: HashMap<u64, usize>,
}

/// The collector's state; lives on its own thread.
pub(crate) struct Collector {
    core: Arc<RunCore>,
    rx: mpsc::Receiver<Control>,
    store: LocalStore,
    chains: Vec<Chain>,
    metrics: Vec<Option<MetricSlot>>,
    tracks: Vec<Option<TrackState>>,
    logs: Batch,
    params: Map<String, Json>,
    params_calls: u64,
    waiters: Vec<(u64, thread::Thread)>,
    completed: u64,
    last_write: Instant,
    idle_ticks: u32,
    last_track_ts: f64,
    failing: bool,
    dropped_retired: u64,
    report: CloseReport,
    status: Status,
    scratch: Vec<u8>,
}

impl Collector {
    pub(crate) fn new(core: Arc<RunCore>, rx: mpsc::Receiver<Control>, store: LocalStore) -> Self {
        Collector {
            core,
            rx,
            store,
            chains: Vec::new(),
            metrics: Vec::new(),
            tracks: Vec::new(),
            logs: Batch::default(),
            params: Map::new(),
            params_calls: 0,
            waiters: Vec::new(),
            completed: 0,
            last_write: Instant::now(),
            idle_ticks: 0,
            last_track_ts: 0.0,
            failing: false,
            dropped_retired: 0,
            report: CloseReport::default(),
            status: Status::Completed,
            scratch: Vec::new(),
        }
    }

    /// The thread body: runs until close, then returns the report.
    pub(crate) fn run(mut self) -> CloseReport {
        loop {
            // Acquire: pairs with the SeqCst fetch_add in `RunCore::flush`.
            let target = self.core.epochs.requested.load(Ordering::Acquire);
            if self.poll_control() {
                return self.close();
            }
            // While the store fails, stop draining past half the memory budget:
            // the rings then fill and the backpressure policy applies.
            let drained = if self.failing && self.pending_bytes() > self.core.cfg.memory_budget / 2
            {
                0
            } else {
                self.drain_all()
            };
            self.idle_ticks = if drained > 0 { 0 } else { self.idle_ticks + 1 };
            self.write_due();
            if target > self.completed {
                self.complete_epoch(target);
            }
            self.sleep();
        }
    }

    /// Applies control messages; returns true on `Close`.
    fn poll_control(&mut self) -> bool {
        let mut close = false;
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Control::Register {
                    chain,
                    consumer,
                    shared,
                    bytes,
                } => self.chains.push(Chain {
                    id: chain,
                    consumer,
                    shared,
                    bytes,
                    retired: false,
                }),
                Control::Grow {
                    chain,
                    consumer,
                    bytes,
                } => {
                    if let Some(i) = self.chains.iter().position(|c| c.id == chain) {
                        // Everything in the old ring was pushed before the new
                        // ring existed: drain it completely, then switch.
                        self.drain_chain(i);
                        let c = &mut self.chains[i];
                        let old = std::mem::replace(&mut c.bytes, bytes);
                        c.consumer = consumer;
                        self.core.ring_bytes.fetch_sub(old, Ordering::Relaxed);
                    }
                }
                Control::Retire { chain } => {
                    if let Some(i) = self.chains.iter().position(|c| c.id == chain) {
                        self.chains[i].retired = true;
                    }
                }
                Control::Flush { epoch, waiter } => self.waiters.push((epoch, waiter)),
                Control::Close { status } => {
                    self.status = status;
                    close = true;
                }
            }
        }
        close
    }

    fn drain_all(&mut self) -> usize {
        let mut total = 0;
        let mut i = 0;
        while i < self.chains.len() {
            total += self.drain_chain(i);
            if self.chains[i].retired && self.chains[i].consumer.is_empty() {
                let c = self.chains.swap_remove(i);
                self.core.ring_bytes.fetch_sub(c.bytes, Ordering::Relaxed);
                self.dropped_retired += c.shared.dropped.load(Ordering::Relaxed);
            } else {
                i += 1;
            }
        }
        let live: u64 = self
            .chains
            .iter()
            .map(|c| c.shared.dropped.load(Ordering::Relaxed))
            .sum();
        // Relaxed: a statistic, read for reports only.
        self.core
            .dropped
            .store(live + self.dropped_retired, Ordering::Relaxed);
        total
    }

    fn drain_chain(&mut self, i: usize) -> usize {
        let Collector {
            chains,
            metrics,
            tracks,
            logs,
            params,
            params_calls,
            core,
            last_track_ts,
            scratch,
            store,
            report,
            ..
        } = self;
        let chain = &mut chains[i];
        chain.shared.wake_wanted.store(false, Ordering::Relaxed);
        let mut error = None;
        let mut dec = Decoder {
            core,
            metrics,
            tracks,
            logs,
            params,
            params_calls,
            last_track_ts,
            scratch,
            store,
            stored: &mut report.stored,
            error: &mut error,
        };
        let n = chain.consumer.drain(|bytes| dec.record(bytes));
        if let Some(e) = error {
            self.note(Err(e));
        }
        n
    }

    fn pending(&self) -> Counts {
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
            files: 0,
        }
    }

    fn pending_bytes(&self) -> usize {
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
            .map(|e| {
                e.fields
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
            })
            .sum();
        metrics + tracks + self.logs.bytes()
    }

    /// Writes batches that reached their size, or everything when the timer is due.
    fn write_due(&mut self) {
        let cfg = &self.core.cfg;
        if self.last_write.elapsed() >= cfg.flush_interval {
            let _ = self.write_everything();
            return;
        }
        if self.failing {
            return; // retry on the timer, a flush or close, not every tick
        }
        let (mb, lb, tb) = (
            cfg.metric_batch_size,
            cfg.log_batch_size,
            cfg.track_batch_size,
        );
        let r = self.write_where(|n, k| match k {
            kind::METRIC => n >= mb,
            kind::LOG => n >= lb,
            _ => n >= tb,
        });
        self.note(r);
    }

    fn write_everything(&mut self) -> Result<(), String> {
        self.last_write = Instant::now();
        let mut r = self.write_where(|n, _| n > 0);
        if r.is_ok() && !self.params.is_empty() {
            let params = std::mem::take(&mut self.params);
            let calls = std::mem::take(&mut self.params_calls);
            if let Err(e) = self.store.merge_params(&params, calls) {
                self.params_calls += calls;
                // Keep them (older values first, newer ones win on merge).
                let newer = std::mem::replace(&mut self.params, params);
                self.params.extend(newer);
                r = Err(e.to_string());
            }
        }
        if r.is_ok() {
            r = self.store.sync_all().map_err(|e| e.to_string());
        }
        self.note(r.clone());
        r
    }

    /// Writes every batch for which `due(len, kind)` holds.
    fn write_where(&mut self, due: impl Fn(usize, u8) -> bool) -> Result<(), String> {
        let mut first_err = None;
        for (id, slot) in self.metrics.iter_mut().enumerate() {
            if let Some(m) = slot
                && due(m.batch.count, kind::METRIC)
            {
                let r = write_metrics(&mut self.store, id, m, &mut self.report.stored);
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
        }
        if due(self.logs.len(), kind::LOG) {
            match self.store.append_logs(&self.logs) {
                Ok(()) => {
                    self.report.stored.logs += self.logs.len() as u64;
                    self.logs.clear();
                }
                Err(e) => {
                    first_err.get_or_insert(e.to_string());
                }
            }
        }
        for (id, slot) in self.tracks.iter_mut().enumerate() {
            if let Some(t) = slot
                && due(t.entries.len(), kind::TRACK)
            {
                match self
                    .store
                    .append_tracks(id as u32, &t.topic, &mut t.entries)
                {
                    Ok(()) => {
                        self.report.stored.tracks += t.entries.len() as u64;
                        t.entries.clear();
                        t.by_ts.clear();
                    }
                    Err(e) => {
                        first_err.get_or_insert(e.to_string());
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Records the outcome of a write: one warning when the store starts failing,
    /// one line when it recovers.
    fn note(&mut self, r: Result<(), String>) {
        match r {
            Ok(()) => {
                if self.failing && !self.core.cfg.quiet {
                    eprintln!("[ML-Dash] the store is writable again; buffered data was written");
                }
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    eprintln!(
                        "[ML-Dash] warning: could not write to {}: {e}; data stays buffered and is retried",
                        self.store.dir().display()
                    );
                }
                self.failing = true;
                self.core.last_error.store(Some(Arc::new(e.clone())));
                if self.report.errors.last() != Some(&e) {
                    self.report.errors.push(e);
                }
            }
        }
    }

    fn complete_epoch(&mut self, target: u64) {
        if self.write_everything().is_err() {
            // Release: read by the waiter after its Acquire of `completed`.
            self.core.epochs.failed.store(target, Ordering::Release);
        }
        self.publish_completed(target);
    }

    fn publish_completed(&mut self, target: u64) {
        self.completed = target;
        // Release: pairs with the Acquire load in `RunCore::flush`; the store's
        // writes above happen-before the waiter's return.
        self.core.epochs.completed.store(target, Ordering::Release);
        self.waiters.retain(|(e, t)| {
            if *e <= target {
                t.unpark();
                false
            } else {
                true
            }
        });
    }

    fn has_work(&mut self) -> bool {
        if self.core.epochs.requested.load(Ordering::SeqCst) > self.completed {
            return true;
        }
        // SeqCst: pairs with the SeqCst store of `wake_wanted` in `RunCore::nudge`.
        self.chains
            .iter()
            .any(|c| c.shared.wake_wanted.load(Ordering::SeqCst) || !c.consumer.is_empty())
    }

    fn sleep(&mut self) {
        if self.idle_ticks < IDLE_TICKS {
            park_timeout(TICK);
            return;
        }
        // SeqCst: the collector half of the no-lost-wake-up pair with `nudge`.
        self.core.sleeping.store(true, Ordering::SeqCst);
        if !self.has_work() {
            let pending = self.pending().any() || !self.params.is_empty();
            let interval = self.core.cfg.flush_interval;
            let wait = if pending {
                interval.saturating_sub(self.last_write.elapsed())
            } else {
                interval
            };
            park_timeout(wait.max(TICK));
        }
        self.core.sleeping.store(false, Ordering::SeqCst);
        self.idle_ticks = 0;
    }

    fn close(mut self) -> CloseReport {
        // `mark_closed` stored `closed` (SeqCst). The heavy barrier completes the
        // Dekker pair with the producers' light barrier: from here each producer
        // either saw `closed`, or its `in_push = true` is visible below.
        heavy_barrier();
        self.poll_control();
        let mut i = 0;
        while i < self.chains.len() {
            // Acquire: pairs with the Release store of `in_push = false` in
            // `ProducerRing::push`, so the racing record is in the ring now.
            while self.chains[i].shared.in_push.load(Ordering::Acquire) {
                self.drain_all(); // a producer blocked on a full ring needs room
                self.poll_control();
                crate::sync::yield_now();
            }
            i += 1;
        }
        self.poll_control();
        self.drain_all();
        let pending = self.pending();
        let quiet = self.core.cfg.quiet;
        if pending.any() && !quiet {
            eprintln!("[ML-Dash] Flushing buffered data...");
            eprintln!(
                "[ML-Dash]   - {} log(s), {} metric(s), {} track(s), {} file(s)",
                pending.logs, pending.metrics, pending.tracks, pending.files
            );
        }
        self.report.pending_at_close = pending;
        let written = self.write_everything();
        let finished = self.store.finish(self.status).map_err(|e| e.to_string());
        let outcome = written.and(finished);
        if let Err(e) = &outcome {
            self.note(Err(e.clone()));
        }
        self.report.unwritten = self.pending();
        self.report.dropped = self.core.dropped.load(Ordering::Relaxed);
        if !quiet {
            if self.report.unwritten.any() {
                let u = self.report.unwritten;
                eprintln!(
                    "[ML-Dash] error: {} log(s), {} metric(s), {} track(s) could not be written to {}: {}",
                    u.logs,
                    u.metrics,
                    u.tracks,
                    self.store.dir().display(),
                    self.report.errors.last().map_or("", String::as_str)
                );
            } else if pending.any() {
                eprintln!("[ML-Dash] All data flushed successfully");
            }
            if self.report.dropped > 0 {
                eprintln!(
                    "[ML-Dash] warning: {} record(s) were dropped by the lossy backpressure policy",
                    self.report.dropped
                );
            }
        }
        if outcome.is_err() {
            self.core.epochs.failed.store(u64::MAX, Ordering::Release);
        }
        let target = self.core.epochs.requested.load(Ordering::Acquire);
        self.publish_completed(target.max(self.completed));
        std::mem::take(&mut self.report)
    }
}

fn park_timeout(d: Duration) {
    #[cfg(not(ml_dash_loom))]
    thread::park_timeout(d);
    #[cfg(ml_dash_loom)]
    {
        let _ = d;
        thread::yield_now();
    }
}

/// Writes one metric batch and counts it.
fn write_metrics(
    store: &mut LocalStore,
    id: usize,
    m: &mut MetricSlot,
    stored: &mut Counts,
) -> Result<(), String> {
    store
        .append_metrics(id as u32, m.name.as_deref(), &mut m.batch)
        .map_err(|e| e.to_string())?;
    stored.metrics += m.batch.count as u64;
    m.batch.clear();
    Ok(())
}

/// Turns records into JSON in the right batch.
struct Decoder<'a> {
    core: &'a RunCore,
    store: &'a mut LocalStore,
    stored: &'a mut Counts,
    error: &'a mut Option<String>,
    metrics: &'a mut Vec<Option<MetricSlot>>,
    tracks: &'a mut Vec<Option<TrackState>>,
    logs: &'a mut Batch,
    params: &'a mut Map<String, Json>,
    params_calls: &'a mut u64,
    last_track_ts: &'a mut f64,
    scratch: &'a mut Vec<u8>,
}

impl Decoder<'_> {
    fn record(&mut self, bytes: &[u8]) {
        let r = RecordView::parse(bytes);
        match r.head.kind {
            kind::METRIC => self.metric(&r),
            kind::LOG => self.log(&r),
            kind::TRACK => self.track(&r),
            kind::PARAMS => self.params(&r),
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
            *slot = Some(MetricSlot {
                name: desc.name,
                batch: MetricBatch::default(),
            });
        }
        let m = slot.as_mut().expect("just set");
        let batch = &mut m.batch;
        if batch.count == 0 {
            // A wrong guess (the store is unreadable now) is renumbered at write.
            batch.first_index = self
                .store
                .metric_next_index(id as u32, m.name.as_deref())
                .unwrap_or(0);
            batch.created_at = encode::iso_now();
        }
        let out = &mut batch.lines;
        out.extend_from_slice(b"{\"index\":");
        encode::u64(out, batch.first_index + batch.count as u64);
        out.extend_from_slice(b",\"data\":{");
        // `_ts` goes last, as a float; the caller's value wins over the clock's
        // (`-1`, the SDK's "same time as before", is the call's own clock time).
        let mut ts = None;
        let mut first = true;
        for (name, v) in r.fields() {
            if name == "_ts" {
                ts = match v {
                    FieldValue::F64(x) if x != -1.0 => Some(x),
                    FieldValue::I64(x) if x != -1 => Some(x as f64),
                    FieldValue::U64(x) => Some(x as f64),
                    _ => None,
                };
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            encode::member(out, name, v);
        }
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"_ts\":");
        match ts {
            Some(x) => encode::f64(out, x),
            None => encode::epoch_secs_micros(out, r.head.ts),
        }
        out.extend_from_slice(b"},\"createdAt\":\"");
        out.extend_from_slice(batch.created_at.as_bytes());
        out.extend_from_slice(b"\"}\n");
        batch.count += 1;
        if batch.lines.len() >= INLINE_WRITE_BYTES
            && let Err(e) = write_metrics(self.store, id, m, self.stored)
        {
            *self.error = Some(e);
        }
    }

    fn log(&mut self, r: &RecordView<'_>) {
        let out = self.logs.buf();
        out.extend_from_slice(b"\"timestamp\":");
        encode::str(out, &encode::iso(r.head.ts));
        out.extend_from_slice(b",\"level\":\"");
        out.extend_from_slice(Level::from_u8(r.head.aux).as_str().as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        encode::str(out, std::str::from_utf8(r.msg).unwrap_or(""));
        let mut fields = r.fields().peekable();
        if fields.peek().is_some() {
            out.extend_from_slice(b",\"metadata\":{");
            for (i, (name, v)) in fields.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode::member(out, name, v);
            }
            out.push(b'}');
        }
        self.logs.end_item();
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
            });
        }
        let t = self.tracks[id].as_mut().expect("just set");
        // A numeric field named `timestamp` is the row's timestamp (the SDK's rule).
        let field_ts = r.fields().find_map(|(name, v)| match (name, v) {
            ("timestamp", FieldValue::F64(x)) if x.is_finite() => Some(x),
            ("timestamp", FieldValue::I64(x)) => Some(x as f64),
            _ => None,
        });
        let ts = if let Some(x) = field_ts {
            x
        } else if r.head.aux & record::TRACK_EXPLICIT_TS != 0 {
            f64::from_bits(r.head.ts)
        } else {
            // Wall time, made strictly increasing per experiment (as the SDK does).
            let wall = encode::epoch_secs(r.head.ts);
            let ts = if wall <= *self.last_track_ts {
                *self.last_track_ts + 1e-6
            } else {
                wall
            };
            *self.last_track_ts = ts;
            ts
        };
        let mut fields: Vec<(String, String)> = Vec::new();
        for (name, v) in r.fields() {
            if name == "timestamp" && field_ts.is_some() {
                continue;
            }
            self.scratch.clear();
            encode::value(self.scratch, v);
            let text = String::from_utf8_lossy(self.scratch).into_owned();
            fields.push((name.to_string(), text));
        }
        // Same timestamp in one flush window: merge, later fields win.
        match t.by_ts.get(&ts.to_bits()) {
            Some(&i) => {
                let e = &mut t.entries[i];
                for (k, v) in fields {
                    match e.fields.iter_mut().find(|(ek, _)| *ek == k) {
                        Some(slot) => slot.1 = v,
                        None => e.fields.push((k, v)),
                    }
                }
            }
            None => {
                t.by_ts.insert(ts.to_bits(), t.entries.len());
                t.entries.push(TrackEntry { ts, fields });
            }
        }
    }

    fn params(&mut self, r: &RecordView<'_>) {
        // The producer serialized a flat JSON object with serde_json.
        *self.params_calls += 1;
        if let Ok(Json::Object(m)) = serde_json::from_slice::<Json>(r.msg) {
            for (k, v) in m {
                self.params.insert(k, v);
            }
        }
    }
}

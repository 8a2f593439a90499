//! The collector: one thread per run that sweeps the producers' rings,
//! serializes records into per-stream batches and hands them to the store.
//!
//! ```text
//!  wake-ups: tick (250 µs while producers are active, keeps the rings small)
//!            batch threshold nudge | flush() | close | flush_interval timer
//!  loop:  target = requested epoch (Acquire)
//!         control messages (new rings, grown rings, retired rings, flush waiters)
//!         drain every ring -> decode -> JSON objects in per-stream batches
//!         (a parameter set is written at once, as its own version)
//!         write full batches; on the timer or a flush epoch write everything
//!         (store failing: hold up to half the memory budget, retry each
//!          second / flush / close, drop and count past it; see `Hold`)
//!         publish completed epoch (Release), unpark its waiters
//!         sleep: short tick while active, long park when idle
//! ```
//!
//! One collector per run (not per process): each run has its own store, its
//! own close and its own failure domain, and a thread that logs into two runs
//! simply has two rings. It may depend on `core`, `ring`, `record`, `encode`
//! and `sink`; it never touches the public API types.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::config::Backpressure;
use crate::core::{Control, RingShared, RunCore, Status, StreamKind};
use crate::encode;
use crate::files::{FileJob, FileRecord, Pool};
use crate::record::{self, FieldValue, Level, RecordView, kind};
use crate::ring::RingConsumer;
use crate::sink::local::{HEARTBEAT_INTERVAL, LocalStore};
use crate::sink::{Batch, MetricBatch, Sink, TrackEntry};
use crate::sync::{Instant, Ordering, fence, heavy_barrier, mpsc, park_timeout, thread};

/// Tick period while producers are active.
const TICK: Duration = Duration::from_micros(250);
/// Empty ticks before the collector parks until the next trigger. The models
/// have no time, so there every sleep is the full sleep protocol (a tick
/// would be a wake-up that nobody sends).
const IDLE_TICKS: u32 = 40;
/// A metric batch this large is written during the drain, whatever the batch
/// size: it bounds the collector's memory and keeps its buffers in cache.
const INLINE_WRITE_BYTES: usize = 1 << 20;
/// While the store fails, the collector retries it at least this often (and
/// at every flush and at close), so a short fault costs little data.
const RETRY_WHILE_FAILING: Duration = Duration::from_secs(1);

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
        self.total() > 0
    }

    /// All records, whatever their kind.
    pub fn total(&self) -> u64 {
        self.logs + self.metrics + self.tracks + self.files
    }

    fn add_kind(&mut self, k: u8) {
        match k {
            kind::METRIC => self.metrics += 1,
            kind::LOG => self.logs += 1,
            _ => self.tracks += 1,
        }
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
    /// Records that could not be written (the store kept failing), and files
    /// that were not stored (each one's warning says where its content is);
    /// each error is also printed as a warning. A file that was not stored is
    /// never in `stored`.
    pub unwritten: Counts,
    /// Records dropped while the store failed: the collector holds accepted
    /// data for a failing store up to half the memory budget, then drops what
    /// comes next (so logging calls never wait on a broken disk) and counts it
    /// here. Logged = stored + dropped + lost_to_store + unwritten, exactly.
    pub lost_to_store: Counts,
    /// Errors met while writing, most recent last.
    pub errors: Vec<String>,
    /// Every warning the collector gave (also printed unless `quiet`).
    pub warnings: Vec<String>,
    /// A background thread of the store died (the remote sender): close fails.
    pub(crate) dead_thread: Option<String>,
}

struct Chain {
    id: u64,
    consumer: RingConsumer,
    shared: Arc<RingShared>,
    bytes: usize,
    retired: bool,
    /// The timestamp of the last metric point or track row from this chain,
    /// for its next `_ts = -1`: a chain is one thread's records in one run,
    /// drained in order, so this is the SDK's thread-local `_last_timestamp`.
    last_ts: Option<Stamp>,
}

/// A timestamp a metric point or track row got.
#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// The producer's clock, nanoseconds (stored with microseconds).
    Clock(u64),
    /// Float seconds (a caller's `_ts`, a track row's timestamp).
    Secs(f64),
}

impl Stamp {
    /// Float seconds: the value a reader parses from the stored record.
    fn secs(self) -> f64 {
        match self {
            Stamp::Clock(nanos) => (nanos / 1_000) as f64 / 1e6,
            Stamp::Secs(x) => x,
        }
    }

    /// Appends it as a metric point's `_ts` (the same text as the point it
    /// was taken from).
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Stamp::Clock(nanos) => encode::epoch_secs_micros(out, nanos),
            Stamp::Secs(x) => encode::f64(out, x),
        }
    }
}

/// What a record's `_ts` (or `Track::append_at` time) asks for.
#[derive(Debug, Clone, Copy)]
enum Given {
    /// Nothing: the time of the call.
    Clock,
    /// This time.
    At(f64),
    /// `-1`: the thread's previous timestamp.
    Previous,
}

impl Given {
    /// From the value of a `_ts` field (the producer checked it is a number).
    fn of(v: FieldValue<'_>) -> Given {
        match v {
            FieldValue::F64(-1.0) | FieldValue::I64(-1) => Given::Previous,
            FieldValue::F64(x) => Given::At(x),
            FieldValue::I64(x) => Given::At(x as f64),
            FieldValue::U64(x) => Given::At(x as f64),
            _ => Given::Clock,
        }
    }

    /// From a record's `_ts` field, if any.
    fn field(r: &RecordView<'_>) -> Given {
        r.fields()
            .find(|(name, _)| *name == "_ts")
            .map_or(Given::Clock, |(_, v)| Given::of(v))
    }
}

/// A metric point's `_ts`: the caller's, the thread's previous for `-1` (the
/// producer refused a `-1` with none; the call's time after a one-off ring at
/// thread exit or points dropped under `DropNewest`), else the call's time.
/// It becomes the thread's previous.
fn metric_stamp(given: Given, clock: u64, last: &mut Option<Stamp>) -> Stamp {
    let s = match (given, *last) {
        (Given::At(x), _) => Stamp::Secs(x),
        (Given::Previous, Some(prev)) => prev,
        _ => Stamp::Clock(clock),
    };
    *last = Some(s);
    s
}

struct MetricSlot {
    name: Option<Arc<str>>,
    batch: MetricBatch,
    /// Its last write failed (see `Hold`).
    failing: bool,
}

struct TrackState {
    topic: Arc<str>,
    entries: Vec<TrackEntry>,
    by_ts: HashMap<u64, usize>,
    /// Its last write failed (see `Hold`).
    failing: bool,
}

/// Bytes a track row holds in the collector.
fn entry_bytes(e: &TrackEntry) -> usize {
    e.fields.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The collector's own memory while the store fails: what it holds, what it
/// may hold, and what it dropped.
///
/// Healthy, the collector's batches stay small (written at their batch size,
/// metric batches at 1 MiB during a drain). While the store fails it keeps
/// accepted records and retries, and so that a broken disk neither grows
/// memory without bound nor stalls the producers (a training loop must not
/// hang on a full disk), it holds at most `room` bytes: half the memory
/// budget, less if the rings hold more than the other half. Those bytes are
/// charged to the budget the rings grow in (`RunCore::ring_bytes`), so rings
/// and held batches together stay within `memory_budget`; the one excess is
/// what was already batched when the first write failed (at most the batch
/// sizes and one drain of the rings), which is kept, not dropped. Past `room`
/// it keeps draining the rings but drops metric points, log lines and track
/// Parameter sets held while the store fails before later ones merge.
const MAX_HELD_PARAMS: usize = 64;

/// rows, counting each in `lost` (parameters and file records are kept: they
/// are small, and a file's content is on disk already).
///
/// Failure is per stream: each metric stream, track topic, the logs and the
/// parameters know whether their own last write failed. Only a failing
/// stream's batch waits for the retry (the timer, a flush, close) and only its
/// records are dropped past `room`; the others are written as usual, so one
/// folder the store cannot write (a bad permission, a name the file system
/// refuses) costs nothing but that stream. A failed fsync concerns every file:
/// `store_failing` makes every stream count as failing.
#[derive(Debug, Default)]
struct Hold {
    /// Some stream is failing, or the store is (recomputed after each write).
    failing: bool,
    /// The last fsync of the store failed.
    store_failing: bool,
    /// The warning of the current failure episode was given.
    warned: bool,
    /// Bytes of serialized batches held (recomputed after each write).
    held: usize,
    /// Bytes of `held` charged to `RunCore::ring_bytes`.
    charged: usize,
    /// What may be held while failing (set before each drain).
    room: usize,
    /// Records dropped because the store failed and `room` was spent.
    lost: Counts,
    /// Drops in the current failure episode (for the recovery line).
    episode_lost: u64,
    /// `lost.total()` when the last flush epoch completed: a flush fails when
    /// records logged before it were dropped since.
    lost_at_epoch: u64,
    /// The current episode's drop warning was given.
    drop_warned: bool,
}

impl Hold {
    /// Whether a record of a stream whose last write failed (`failing`) must
    /// be dropped now.
    #[inline]
    fn full(&self, failing: bool) -> bool {
        (failing || self.store_failing) && self.held >= self.room
    }

    #[cold]
    fn drop_record(&mut self, k: u8) {
        self.lost.add_kind(k);
        self.episode_lost += 1;
    }
}

/// The collector's state; lives on its own thread. It writes to any [`Sink`]:
/// the local store in the product, the in-memory sink in tests and models.
pub(crate) struct Collector<S: Sink = LocalStore> {
    core: Arc<RunCore>,
    rx: mpsc::Receiver<Control>,
    store: S,
    chains: Vec<Chain>,
    metrics: Vec<Option<MetricSlot>>,
    tracks: Vec<Option<TrackState>>,
    logs: Batch,
    /// The last write of the logs failed.
    logs_failing: bool,
    /// `set` calls not written yet, oldest first: each is its own version.
    params: VecDeque<Map<String, Json>>,
    /// The last write of the parameters failed.
    params_failing: bool,
    waiters: Vec<(u64, thread::Thread)>,
    completed: u64,
    last_write: Instant,
    /// The last liveness mark (`Sink::heartbeat`).
    last_heartbeat: Instant,
    idle_ticks: u32,
    last_track_ts: f64,
    hold: Hold,
    dropped_retired: u64,
    dropped_seen: u64,
    report: CloseReport,
    status: Status,
    scratch: Vec<u8>,
    /// The upload workers (none in tests and models: file records are dropped).
    files: Option<Pool>,
    /// File jobs decoded and not yet handed to the workers.
    file_jobs: Vec<FileJob>,
    /// Files not stored when the last flush epoch completed: a flush fails
    /// when a file saved before it was not stored.
    files_failed_at_epoch: u64,
}

impl<S: Sink> Collector<S> {
    /// Stores the run's files with `pool`.
    pub(crate) fn with_files(mut self, pool: Pool) -> Self {
        self.files = Some(pool);
        self
    }

    /// Hands decoded file jobs to the workers and collects finished ones.
    fn pump_files(&mut self) {
        let Some(pool) = self.files.as_mut() else {
            self.file_jobs.clear();
            return;
        };
        for job in self.file_jobs.drain(..) {
            pool.submit(job);
        }
        let errors = pool.poll();
        self.report.stored.files = pool.stored;
        for e in errors {
            self.file_error(e);
        }
        self.send_recorded_files();
    }

    /// A file that was not stored (or not sent): a warning of its own, which
    /// says where its content is, also kept for `flush()` and the report.
    /// The other records are unaffected: a file's content is not held here.
    fn file_error(&mut self, e: String) {
        self.core.last_error.store(Some(Arc::new(e.clone())));
        self.report.errors.push(e.clone());
        self.warn(e);
    }

    /// Files that were not stored so far.
    fn files_failed(&self) -> u64 {
        self.files.as_ref().map_or(0, |p| p.failed)
    }

    /// Hands files the pool stored to the sink (a remote sink spools a copy).
    fn send_recorded_files(&mut self) {
        let Some(pool) = self.files.as_mut() else {
            return;
        };
        for (entry, content, _size, sum) in pool.take_recorded() {
            if let Err(e) = self.store.file_stored(&entry, &content, &sum) {
                self.file_error(format!(
                    "file {} not sent: {e}; it is stored locally at {}",
                    entry.filename,
                    content.display()
                ));
            }
        }
    }

    /// Waits for every queued file.
    fn wait_files(&mut self) {
        self.pump_files();
        let Some(pool) = self.files.as_mut() else {
            return;
        };
        let errors = pool.wait_idle();
        self.report.stored.files = pool.stored;
        for e in errors {
            self.file_error(e);
        }
        self.send_recorded_files();
    }

    pub(crate) fn new(core: Arc<RunCore>, rx: mpsc::Receiver<Control>, store: S) -> Self {
        Collector {
            core,
            rx,
            store,
            chains: Vec::new(),
            metrics: Vec::new(),
            tracks: Vec::new(),
            logs: Batch::default(),
            logs_failing: false,
            params: VecDeque::new(),
            params_failing: false,
            waiters: Vec::new(),
            completed: 0,
            last_write: Instant::now(),
            last_heartbeat: Instant::now(),
            idle_ticks: 0,
            last_track_ts: 0.0,
            hold: Hold::default(),
            dropped_retired: 0,
            dropped_seen: 0,
            report: CloseReport::default(),
            status: Status::Completed,
            scratch: Vec::new(),
            files: None,
            file_jobs: Vec::new(),
            files_failed_at_epoch: 0,
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
            if target > self.completed && self.hold.failing {
                // A flush while the store fails: retry it before draining, so
                // what was logged before the flush finds room if it recovered.
                let _ = self.write_everything();
            }
            // Always drain, also while the store fails: producers never wait
            // on a broken disk (past the hold's room, records are dropped and
            // counted; see `Hold`).
            let drained = self.drain_all();
            self.idle_ticks = if drained > 0 { 0 } else { self.idle_ticks + 1 };
            self.write_due();
            self.heartbeat_due();
            if target > self.completed {
                self.complete_epoch(target);
            }
            self.sleep();
        }
    }

    /// Refreshes the store's liveness mark every `HEARTBEAT_INTERVAL` (a
    /// failure is retried at the next one: the mark is advisory).
    fn heartbeat_due(&mut self) {
        if self.last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL {
            self.last_heartbeat = Instant::now();
            let _ = self.store.heartbeat();
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
                    last_ts: None,
                }),
                Control::Grow {
                    chain,
                    consumer,
                    bytes,
                } => {
                    if let Some(i) = self.chains.iter().position(|c| c.id == chain) {
                        // Everything in the old ring was pushed before the new
                        // ring existed (and before this message was sent, so
                        // this receive made it visible): drain it completely,
                        // then switch.
                        #[cfg(not(ml_dash_mutant = "grow_skips_old_ring"))]
                        self.drain_chain(i);
                        let c = &mut self.chains[i];
                        let old = std::mem::replace(&mut c.bytes, bytes);
                        c.consumer = consumer;
                        self.core.ring_bytes.fetch_sub(old, Ordering::Relaxed);
                    }
                }
                Control::Retire { chain } => {
                    if let Some(i) = self.chains.iter().position(|c| c.id == chain) {
                        // Freed by `drain_all` once drained (the producer's
                        // last records were pushed before this message).
                        #[cfg(not(ml_dash_mutant = "retire_frees_undrained"))]
                        {
                            self.chains[i].retired = true;
                        }
                        #[cfg(ml_dash_mutant = "retire_frees_undrained")]
                        {
                            let c = self.chains.swap_remove(i);
                            self.core.ring_bytes.fetch_sub(c.bytes, Ordering::Relaxed);
                        }
                    }
                }
                Control::Flush { epoch, waiter } => {
                    #[cfg(not(ml_dash_mutant = "flush_late_no_unpark"))]
                    let late = epoch <= self.completed;
                    #[cfg(ml_dash_mutant = "flush_late_no_unpark")]
                    let late = false;
                    if late {
                        // Its epoch completed before this message arrived (the
                        // collector read `requested` first): its waiter may
                        // have missed `completed` and parked, so wake it now.
                        waiter.unpark();
                    } else {
                        self.waiters.push((epoch, waiter));
                    }
                }
                Control::Close { status } => {
                    self.status = status;
                    close = true;
                }
            }
        }
        close
    }

    fn drain_all(&mut self) -> usize {
        self.set_room();
        let n = self.drain_rings();
        self.settle_hold();
        self.store_warnings();
        n
    }

    /// Gives the store's repair warnings (a torn tail cut when a stream was
    /// opened, a stale counter fixed).
    fn store_warnings(&mut self) {
        for w in self.store.take_warnings() {
            self.warn(w);
        }
    }

    /// What the collector may hold while the store fails: half the memory
    /// budget, less what the rings take beyond the other half.
    fn set_room(&mut self) {
        let budget = self.core.cfg.memory_budget;
        // Relaxed: a budget estimate; growth of the rings races it either way.
        let total = self.core.ring_bytes.load(Ordering::Relaxed);
        let rings = total.saturating_sub(self.hold.charged);
        self.hold.room = (budget / 2).min(budget.saturating_sub(rings));
    }

    /// After a drain: charges the held bytes to the rings' budget while the
    /// store fails (and releases the charge once it recovers), and gives the
    /// one drop warning of the episode.
    fn settle_hold(&mut self) {
        let want = if self.hold.failing { self.hold.held } else { 0 };
        let have = self.hold.charged;
        if want != have {
            // Relaxed: a budget counter; no data is published through it.
            if want > have {
                self.core
                    .ring_bytes
                    .fetch_add(want - have, Ordering::Relaxed);
            } else {
                self.core
                    .ring_bytes
                    .fetch_sub(have - want, Ordering::Relaxed);
            }
            self.hold.charged = want;
        }
        if self.hold.episode_lost > 0 && !self.hold.drop_warned {
            self.hold.drop_warned = true;
            let msg = format!(
                "{} still cannot be written ({}) and the {} KiB the collector may hold for it are \
                 full: newer metric points, log lines and track rows are dropped and counted \
                 (lost_to_store in the close report) until it is writable again",
                self.store.location().display(),
                self.report.errors.last().map_or("", String::as_str),
                self.hold.room >> 10,
            );
            self.warn(msg);
        }
    }

    /// Prints a warning (unless `quiet`) and keeps it for the close report.
    fn warn(&mut self, msg: String) {
        if !self.core.cfg.quiet {
            eprintln!("[ML-Dash] warning: {msg}");
        }
        self.report.warnings.push(msg);
    }

    fn drain_rings(&mut self) -> usize {
        // Only the lossy policy ever counts a drop.
        let lossy = self.core.cfg.backpressure == Backpressure::DropNewest;
        let mut total = 0;
        let mut i = 0;
        while i < self.chains.len() {
            total += self.drain_chain(i);
            if self.chains[i].retired && self.chains[i].consumer.is_empty() {
                let c = self.chains.swap_remove(i);
                self.core.ring_bytes.fetch_sub(c.bytes, Ordering::Relaxed);
                if lossy {
                    self.dropped_retired += c.shared.dropped.load(Ordering::Relaxed);
                }
            } else {
                i += 1;
            }
        }
        if lossy {
            let live: u64 = self
                .chains
                .iter()
                .map(|c| c.shared.dropped.load(Ordering::Relaxed))
                .sum();
            let all = live + self.dropped_retired;
            if all != self.dropped_seen {
                self.dropped_seen = all;
                // Relaxed: a statistic, read for reports only.
                self.core.dropped.store(all, Ordering::Relaxed);
            }
        }
        total
    }

    fn drain_chain(&mut self, i: usize) -> usize {
        let Collector {
            chains,
            metrics,
            tracks,
            logs,
            logs_failing,
            params,
            params_failing,
            core,
            last_track_ts,
            scratch,
            store,
            report,
            file_jobs,
            hold,
            ..
        } = self;
        let chain = &mut chains[i];
        // Relaxed: clearing the request can overwrite one whose records this
        // drain does not see yet, but then `has_work`, after its SC fence,
        // sees those records in the ring (see `sleep`).
        chain.shared.wake_wanted.store(false, Ordering::Relaxed);
        let mut error = None;
        let mut dec = Decoder {
            core,
            metrics,
            tracks,
            logs,
            logs_failing: *logs_failing,
            params,
            params_failing,
            last_track_ts,
            last_ts: &mut chain.last_ts,
            scratch,
            store,
            stored: &mut report.stored,
            error: &mut error,
            file_jobs,
            hold,
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
            files: (self.file_jobs.len() + self.files.as_ref().map_or(0, Pool::outstanding)) as u64,
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
            .map(entry_bytes)
            .sum();
        metrics + tracks + self.logs.bytes()
    }

    /// Writes batches that reached their size, or everything when the timer is due.
    fn write_due(&mut self) {
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
    fn write_interval(&self) -> Duration {
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
    fn write_everything(&mut self) -> Result<(), String> {
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

    /// Recomputes `hold.failing` from the streams' own flags.
    fn update_failing(&mut self) {
        self.hold.failing = self.hold.store_failing
            || self.logs_failing
            || self.params_failing
            || self.metrics.iter().flatten().any(|m| m.failing)
            || self.tracks.iter().flatten().any(|t| t.failing);
    }

    /// Records the outcome of a write (after `hold.failing` was updated): one
    /// warning when the store starts failing, one line when no stream fails
    /// any more.
    fn note(&mut self, r: Result<(), String>) {
        match r {
            Ok(()) => {
                if self.hold.warned && !self.hold.failing {
                    if !self.core.cfg.quiet {
                        let lost = match self.hold.episode_lost {
                            0 => String::new(),
                            n => format!(
                                " ({n} record(s) logged while its buffer was full were lost)"
                            ),
                        };
                        eprintln!(
                            "[ML-Dash] the store is writable again; buffered data was written{lost}"
                        );
                    }
                    self.hold.warned = false;
                    self.hold.episode_lost = 0;
                    self.hold.drop_warned = false;
                }
            }
            Err(e) => {
                if !self.hold.warned {
                    self.hold.warned = true;
                    let msg = format!(
                        "could not write to {}: {e}; data stays buffered (up to {} KiB) and is retried",
                        self.store.location().display(),
                        (self.core.cfg.memory_budget / 2) >> 10,
                    );
                    self.warn(msg);
                }
                self.core.last_error.store(Some(Arc::new(e.clone())));
                if self.report.errors.last() != Some(&e) {
                    self.report.errors.push(e);
                }
            }
        }
    }

    fn complete_epoch(&mut self, target: u64) {
        let written = self.write_everything().is_ok();
        let lost = self.hold.lost.total();
        let dropped = lost > self.hold.lost_at_epoch;
        if dropped {
            let why = format!(
                "{} record(s) logged before this flush were dropped while the store failed \
                 (lost_to_store in the close report): {}",
                lost - self.hold.lost_at_epoch,
                self.report.errors.last().map_or("", String::as_str)
            );
            self.core.last_error.store(Some(Arc::new(why)));
            self.hold.lost_at_epoch = lost;
        }
        self.wait_files();
        let files_failed = self.files_failed();
        let file_lost = files_failed > self.files_failed_at_epoch;
        self.files_failed_at_epoch = files_failed;
        let dead = self.store.dead_thread();
        if let Some(why) = &dead {
            self.core.dead_thread.store(Some(Arc::new(why.clone())));
        }
        if file_lost || !written || dropped || dead.is_some() {
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

    /// The re-check before a long park. Runs after `sleeping = true` and an
    /// SC fence (see `sleep`).
    fn has_work(&mut self) -> bool {
        // Acquire (and no lost wake-up without it): `flush` always unparks us
        // after its RMW, so a stale value here costs one empty loop at most.
        if self.core.epochs.requested.load(Ordering::Acquire) > self.completed {
            return true;
        }
        // Relaxed is enough for `wake_wanted`: the SC fences order it (see
        // `sleep`), and `true` only sends us round the loop. The ring's tail
        // is read with Acquire (the ring's own pair with the producer's
        // commit); after the fence it is at least as new as any tail stored
        // before a nudge that missed `sleeping`.
        self.chains
            .iter()
            .any(|c| c.shared.wake_wanted.load(Ordering::Relaxed) || !c.consumer.is_empty())
    }

    fn sleep(&mut self) {
        if cfg!(not(ml_dash_loom)) && self.idle_ticks < IDLE_TICKS {
            park_timeout(TICK);
            return;
        }
        // The collector half of the Dekker pair with `RunCore::nudge`: store
        // `sleeping`, SC fence, then re-check. Either a producer's nudge sees
        // `sleeping` and unparks us, or this re-check sees its `wake_wanted`.
        // Relaxed store: the fence orders it.
        self.core.sleeping.store(true, Ordering::Relaxed);
        #[cfg(not(ml_dash_mutant = "wake_no_fence"))]
        fence(Ordering::SeqCst);
        if !self.has_work() {
            let pending = self.pending().any() || !self.params.is_empty();
            let interval = self.write_interval();
            let wait = if pending {
                interval.saturating_sub(self.last_write.elapsed())
            } else {
                interval
            };
            park_timeout(wait.max(TICK).min(HEARTBEAT_INTERVAL));
        }
        // Relaxed: only the nudges read it, and they re-check after their fence.
        self.core.sleeping.store(false, Ordering::Relaxed);
        self.idle_ticks = 0;
    }

    fn close(mut self) -> CloseReport {
        // `mark_closed` stored `closed` (SeqCst) before sending `Close`, which we
        // received. The heavy barrier completes the Dekker pair with the
        // producers' light barrier in `ProducerRing::push`: from here each
        // producer either saw `closed` (and pushed nothing), or its
        // `in_push = true` -- and its `Register` / `Grow`, sent before it -- is
        // visible below.
        #[cfg(not(ml_dash_mutant = "close_no_barrier"))]
        heavy_barrier();
        if self.hold.failing {
            // Retry before the last drains, as a flush does (see `run`).
            let _ = self.write_everything();
        }
        // Wait out the pushes under way, re-scanning every chain until one
        // pass finds none mid-push: `drain_all` reorders chains (it frees
        // retired ones with `swap_remove`) and `poll_control` adds new ones,
        // so a single pass by index could skip a chain. A chain seen idle
        // after the barrier stays idle: its next push sees `closed`.
        #[cfg(not(ml_dash_mutant = "close_single_pass"))]
        loop {
            self.poll_control();
            // Acquire: pairs with the Release store of `in_push = false` in
            // `ProducerRing::push`, so a finished racing record is in the ring.
            let busy = self
                .chains
                .iter()
                .any(|c| c.shared.in_push.load(Ordering::Acquire));
            if !busy {
                break;
            }
            self.drain_all(); // a producer blocked on a full ring needs room
            crate::sync::yield_now();
        }
        // The loop as it was: one pass by index.
        #[cfg(ml_dash_mutant = "close_single_pass")]
        {
            self.poll_control();
            let mut i = 0;
            while i < self.chains.len() {
                while self.chains[i].shared.in_push.load(Ordering::Acquire) {
                    self.drain_all();
                    self.poll_control();
                    crate::sync::yield_now();
                }
                i += 1;
            }
            self.poll_control();
        }
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
        if pending.files > 0 && !quiet {
            eprintln!("[ML-Dash]   Uploading {} file(s)...", pending.files);
        }
        self.report.pending_at_close = pending;
        let written = self.write_everything();
        self.wait_files();
        let files_failed = self.files_failed();
        if let Some(mut pool) = self.files.take() {
            pool.shutdown();
        }
        let finished = self.store.finish(self.status).map_err(|e| e.to_string());
        self.store_warnings();
        if let Some(line) = self.store.shutdown()
            && !quiet
        {
            eprintln!("{line}");
        }
        self.report.dead_thread = self.store.dead_thread();
        let outcome = written.and(finished);
        if let Err(e) = &outcome {
            self.note(Err(e.clone()));
        }
        self.report.unwritten = self.pending();
        self.report.unwritten.files += files_failed;
        self.report.dropped = self.core.dropped.load(Ordering::Relaxed);
        self.report.lost_to_store = self.hold.lost;
        // The held batches are freed with the collector: release their charge.
        self.hold.failing = false;
        self.settle_hold();
        if !quiet {
            if self.report.unwritten.any() {
                let u = self.report.unwritten;
                eprintln!(
                    "[ML-Dash] error: {} log(s), {} metric(s), {} track(s), {} file(s) could not \
                     be written to {}: {}",
                    u.logs,
                    u.metrics,
                    u.tracks,
                    u.files,
                    self.store.location().display(),
                    self.report.errors.last().map_or("", String::as_str)
                );
            } else if pending.any() {
                eprintln!("[ML-Dash] All data flushed successfully");
            }
            let l = self.report.lost_to_store;
            if l.any() {
                eprintln!(
                    "[ML-Dash] warning: {} log(s), {} metric(s), {} track(s) were lost because \
                     {} could not be written and the collector's buffer for it was full \
                     (lost_to_store)",
                    l.logs,
                    l.metrics,
                    l.tracks,
                    self.store.location().display(),
                );
            }
            if self.report.dropped > 0 {
                eprintln!(
                    "[ML-Dash] warning: {} record(s) were dropped by the lossy backpressure policy",
                    self.report.dropped
                );
            }
        }
        if outcome.is_err() || files_failed > self.files_failed_at_epoch {
            // Release: read by a waiter after its Acquire of `completed`.
            self.core.epochs.failed.store(u64::MAX, Ordering::Release);
        }
        // Every epoch, requested or still to be requested, is complete: the
        // store holds everything any push accepted (pushes after this point
        // see `closed`). A flush that races close returns with this.
        self.publish_completed(u64::MAX);
        // SC fence, then one last look for flush waiters: pairs with the SC
        // fence after the send in `RunCore::flush`. Either that waiter's load
        // of `completed` sees `u64::MAX`, or this receive sees its message and
        // unparks it (a Dekker pair: no waiter parks with nobody to wake it).
        #[cfg(not(ml_dash_mutant = "close_no_final_poll"))]
        {
            fence(Ordering::SeqCst);
            self.poll_control();
        }
        std::mem::take(&mut self.report)
    }
}

/// Writes one metric batch and counts it; a failure marks the stream failing.
fn write_metrics(
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
fn write_params(
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

/// Turns records into JSON in the right batch.
struct Decoder<'a, S: Sink> {
    core: &'a RunCore,
    store: &'a mut S,
    stored: &'a mut Counts,
    error: &'a mut Option<String>,
    metrics: &'a mut Vec<Option<MetricSlot>>,
    tracks: &'a mut Vec<Option<TrackState>>,
    logs: &'a mut Batch,
    /// The last write of the logs failed.
    logs_failing: bool,
    params: &'a mut VecDeque<Map<String, Json>>,
    /// The last write of the parameters failed.
    params_failing: &'a mut bool,
    last_track_ts: &'a mut f64,
    /// The drained chain's [`Chain::last_ts`].
    last_ts: &'a mut Option<Stamp>,
    scratch: &'a mut Vec<u8>,
    file_jobs: &'a mut Vec<FileJob>,
    hold: &'a mut Hold,
}

impl<S: Sink> Decoder<'_, S> {
    fn record(&mut self, bytes: &[u8]) {
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
            *slot = Some(MetricSlot {
                name: desc.name,
                batch: MetricBatch {
                    info: desc.info,
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
        let out = &mut batch.lines;
        out.extend_from_slice(b"{\"index\":");
        encode::u64(out, batch.first_index + batch.count as u64);
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
        metric_stamp(given, r.head.ts, self.last_ts).write(out);
        out.extend_from_slice(b"},\"createdAt\":\"");
        out.extend_from_slice(batch.created_at.as_bytes());
        out.extend_from_slice(b"\"}\n");
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

/// The collector against the in-memory sink, with std threads: the registry,
/// flush-epoch and shutdown protocols end to end (what `loom-tests/` models
/// exhaustively, here on real threads; these also run under Miri and TSan,
/// see `loom-tests/sanitizers.sh`).
#[cfg(all(test, not(ml_dash_loom)))]
mod tests {
    use std::time::Duration;

    use crate::__loom::start;
    use crate::config::BufferConfig;
    use crate::error::Error;

    fn config(batch: usize, ring: usize) -> BufferConfig {
        BufferConfig {
            log_batch_size: batch,
            metric_batch_size: batch,
            track_batch_size: batch,
            ring_capacity: ring,
            flush_interval: Duration::from_secs(3600),
            quiet: true,
            ..BufferConfig::default()
        }
    }

    #[test]
    fn retired_rings_are_drained_before_they_are_freed() {
        let mut run = start(config(1000, 64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = run.handle();
                crate::sync::thread::spawn(move || {
                    for i in 0..50 {
                        h.log(&format!("{t}-{i}")).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let report = run.close().unwrap();
        assert_eq!(report.stored.logs, 200);
        let got = run.sink().messages();
        for t in 0..4 {
            let mine: Vec<_> = got
                .iter()
                .filter(|m| m.starts_with(&format!("{t}-")))
                .cloned()
                .collect();
            let want: Vec<_> = (0..50).map(|i| format!("{t}-{i}")).collect();
            assert_eq!(mine, want, "thread {t}: order and completeness");
        }
    }

    #[test]
    fn a_record_that_can_never_fit_is_an_error_at_once() {
        // Settings `validate` refuses (a 1 KiB ring, a 1.5 KiB budget, 1 MiB
        // records): a 2 KB line needs a 2 KB ring beside the first one, which
        // the budget never has room for. Before, the producer waited forever.
        let mut cfg = config(1000, 1024);
        cfg.memory_budget = 1536;
        let mut run = start(cfg);
        let h = run.handle();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send((h.log(&"x".repeat(2000)), h.log(&"y".repeat(500))));
        });
        let (big, small) = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the 2 KB line waited for room that never comes");
        match big {
            Err(Error::RecordTooLarge { size, limit }) => assert_eq!((size, limit), (2024, 1024)),
            other => panic!("{other:?}"),
        }
        small.unwrap();
        let report = run.close().unwrap();
        assert_eq!(report.stored.logs, 1);
    }

    #[test]
    fn flush_covers_everything_pushed_before_it() {
        let mut run = start(config(1000, 256));
        let threads: Vec<_> = (0..3)
            .map(|t| {
                let h = run.handle();
                let sink = run.sink();
                crate::sync::thread::spawn(move || {
                    for round in 0..5 {
                        h.log(&format!("{t}-{round}")).unwrap();
                        h.flush().unwrap();
                        let got = sink.messages();
                        assert!(got.contains(&format!("{t}-{round}")), "{got:?}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(run.close().unwrap().stored.logs, 15);
    }

    #[test]
    fn full_rings_grow_and_keep_order() {
        let mut run = start(config(1000, 64));
        let h = run.handle();
        for i in 0..100 {
            h.log(&format!("m{i}")).unwrap();
        }
        h.flush().unwrap();
        let want: Vec<_> = (0..100).map(|i| format!("m{i}")).collect();
        assert_eq!(run.sink().messages(), want);
        run.close().unwrap();
    }

    #[test]
    fn close_is_idempotent_and_later_calls_are_refused() {
        let mut run = start(config(2, 64));
        let h = run.handle();
        h.log("a").unwrap();
        let report = run.close().unwrap();
        assert_eq!(report.stored.logs, 1);
        assert!(matches!(run.close(), Err(Error::Closed)));
        assert!(!h.request_close());
        assert!(matches!(h.log("b"), Err(Error::Closed)));
        assert!(matches!(h.flush(), Err(Error::Closed)));
        assert_eq!(run.sink().messages(), ["a"]);
    }

    #[test]
    fn a_failing_sink_fails_the_flush_and_keeps_the_data() {
        let mut run = start(config(1000, 256));
        let h = run.handle();
        let sink = run.sink();
        sink.set_failing(true);
        h.log("kept").unwrap();
        assert!(matches!(h.flush(), Err(Error::Sink(_))));
        assert!(sink.messages().is_empty());
        sink.set_failing(false);
        h.flush().unwrap();
        assert_eq!(sink.messages(), ["kept"]);
        run.close().unwrap();
    }

    #[test]
    fn a_flush_after_drops_fails_even_when_the_store_is_back() {
        // 20 000 lines (~1 MB) through rings capped at 64 KiB: the collector
        // drains while the sink fails, holds 32 KiB and drops the rest before
        // the producer finishes; then the sink recovers.
        let mut cfg = config(1000, 1024);
        cfg.memory_budget = 64 * 1024;
        let mut run = start(cfg);
        let sink = run.sink();
        sink.set_failing(true);
        let h = run.handle();
        for i in 0..20_000 {
            h.log(&format!("line {i}")).unwrap();
        }
        sink.set_failing(false);
        // The store takes what was held, but lines logged before the flush
        // were dropped: the flush says so.
        let e = h.flush().unwrap_err();
        assert!(
            e.to_string().contains("dropped while the store failed"),
            "{e}"
        );
        h.log("after").unwrap();
        h.flush().unwrap(); // nothing dropped since the last flush
        let report = run.close().unwrap();
        assert!(report.lost_to_store.logs > 0);
        assert_eq!(report.stored.logs + report.lost_to_store.logs, 20_001);
    }

    #[test]
    fn a_failing_sink_never_blocks_producers_and_counts_what_it_drops() {
        let mut cfg = config(1000, 1024);
        cfg.memory_budget = 64 * 1024;
        let mut run = start(cfg);
        let sink = run.sink();
        sink.set_failing(true);
        let n = 20_000;
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let h = run.handle();
                crate::sync::thread::spawn(move || {
                    for i in 0..n {
                        h.log(&format!("{t}-{i}")).unwrap();
                    }
                    // Everything was accepted: the flush reports the store's error.
                    assert!(matches!(h.flush(), Err(Error::Sink(_))));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        sink.set_failing(false);
        let h = run.handle();
        h.log("after").unwrap();
        h.flush().unwrap();
        let report = run.close().unwrap();
        let got = sink.messages();
        let lost = report.lost_to_store;
        assert!(lost.logs > 0, "a 32 KiB hold cannot keep 40 000 lines");
        assert_eq!((lost.metrics, lost.tracks, report.dropped), (0, 0, 0));
        assert_eq!(report.stored.logs, got.len() as u64);
        assert_eq!(
            got.len() as u64 + lost.logs,
            2 * n + 1,
            "logged = stored + lost"
        );
        assert_eq!(got.last().map(String::as_str), Some("after"));
        for t in 0..2 {
            let mine: Vec<u64> = (got.iter())
                .filter_map(|m| m.strip_prefix(&format!("{t}-"))?.parse().ok())
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "order kept");
        }
    }
}

//! The state one run shares between its handles, its producer threads and its
//! collector: the closed flag, the coarse clock, the flush epochs, the stream
//! registry and the control channel into the collector.
//!
//! # Synchronization
//!
//! | write (side) | read (side) | what it publishes |
//! |---|---|---|
//! | ring tail, Release (producer, `ring::try_write`) | Acquire (collector, `ring::drain`) | record bytes |
//! | `epochs.requested` fetch_add SeqCst (`flush`) | Acquire load (collector loop top) | everything the flusher saw before |
//! | `epochs.completed` Release (collector after the sink wrote) | Acquire (`flush` waiter) | the store's contents |
//! | `in_push` false, Release (producer) | Acquire (collector `close`) | the last record of a racing push |
//! | `closed` SeqCst + heavy barrier (close) | Relaxed after light barrier (producer) | store-load order (Dekker) |
//! | `wake_wanted` + SC fence (producer, `nudge`) / `sleeping` + SC fence (collector, `sleep`) | each other's load after the fence (and the ring tails) | no lost wake-up |
//! | `Control` send (RMW inside the channel) + SC fence (`flush`) | SC fence + receive (end of `Collector::close`) | a flush racing close is woken |

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use crossbeam_utils::CachePadded;

use crate::api::Status;
use crate::config::{Backpressure, BufferConfig};
use crate::error::{Error, Result};
use crate::ranks::Role;
use crate::record::{self, Encoder, Fields, Head, kind};
use crate::ring::{self, Fill, RingConsumer, RingProducer};
use std::sync::{Arc, Mutex, Weak};

use crate::sync::{
    AtomicBool, AtomicU64, AtomicUsize, Backoff, Ordering, const_thread_local, fence,
    light_barrier, mpsc, park_timeout, thread,
};

/// Kind of a named stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StreamKind {
    Metric,
    Track,
}

/// What the collector needs to know about a stream id.
#[derive(Debug, Clone)]
pub(crate) struct StreamDesc {
    pub(crate) kind: StreamKind,
    /// `None` is the unnamed metric stream.
    pub(crate) name: Option<Arc<str>>,
    /// Description, tags and metadata given when the stream was created.
    pub(crate) info: Option<Arc<StreamInfo>>,
}

/// What a stream's creator said about it (the SDK's `metrics(name,
/// description=, tags=, metadata=)`); the first handle's info wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StreamInfo {
    pub(crate) description: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) metadata: Option<serde_json::Value>,
}

/// Messages into the collector. All are cold-path.
#[derive(Debug)]
pub(crate) enum Control {
    /// A producer thread's first ring.
    Register {
        chain: u64,
        consumer: RingConsumer,
        shared: Arc<RingShared>,
        bytes: usize,
    },
    /// A producer replaced its full ring by a larger one; drain the old one first.
    Grow {
        chain: u64,
        consumer: RingConsumer,
        bytes: usize,
    },
    /// A producer is gone; drain its ring, then free it.
    Retire { chain: u64 },
    /// A flush waiter to unpark once `completed >= epoch`.
    Flush { epoch: u64, waiter: thread::Thread },
    /// Close the run with this final status.
    Close { status: Status },
}

/// Per-ring state both sides see.
#[derive(Debug, Default)]
pub(crate) struct RingShared {
    /// True while the producer is inside a push (see `RunCore::close`).
    pub(crate) in_push: CachePadded<AtomicBool>,
    /// The producer crossed its batch threshold while the collector slept.
    pub(crate) wake_wanted: AtomicBool,
    /// Records this producer dropped under the lossy policy (exact).
    pub(crate) dropped: AtomicU64,
}

/// Flush epochs: requests and completions, both monotonic.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    pub(crate) requested: CachePadded<AtomicU64>,
    pub(crate) completed: CachePadded<AtomicU64>,
    /// Highest epoch whose write failed (0: none).
    pub(crate) failed: AtomicU64,
}

/// A name table slot: the stream's kind, name and id.
type NameSlot = OnceLock<(StreamKind, Arc<str>, u32)>;

/// The run's stream names and ids. Handles look names up without a lock (a
/// loop may call `run.metrics(name)` every step), the collector resolves ids
/// without one, and a new name costs O(1) amortised.
///
/// Both tables are arrays of set-once slots behind an `ArcSwap`. Under the
/// mutex a writer fills an empty slot in place (`OnceLock::set` publishes it:
/// a Release store that the readers' `get`, an Acquire load, pairs with), and
/// when a table is half full it publishes a copy twice the size, so each
/// entry is copied O(1) times on average. A reader holding an older table
/// may miss the newest names; a miss is re-checked under the mutex.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// Open addressing (linear probing) on `hash(kind, name)`; the length
    /// is 0 or a power of two, and at most half the slots are set.
    by_name: ArcSwap<Vec<NameSlot>>,
    /// Slot `id` describes stream `id`.
    by_id: ArcSwap<Vec<OnceLock<StreamDesc>>>,
    /// The next id; held while a stream is created.
    insert: Mutex<u32>,
    hasher: RandomState,
}

/// Where `(kind, name)` is in `table`: `Ok(id)`, or `Err(slot)`, the empty
/// slot it would take (`Err(0)` for an empty table).
fn probe(table: &[NameSlot], hash: u64, kind: StreamKind, name: &str) -> Result<u32, usize> {
    let mask = table.len().wrapping_sub(1);
    let mut i = hash as usize & mask;
    for _ in 0..table.len() {
        match table[i].get() {
            None => return Err(i),
            Some((k, n, id)) if *k == kind && **n == *name => return Ok(*id),
            Some(_) => i = (i + 1) & mask,
        }
    }
    Err(0) // only for the empty table: a table is never full
}

impl Streams {
    /// The id of a stream, created on first use. The unnamed stream is `""`.
    pub(crate) fn id(&self, kind: StreamKind, name: &str) -> u32 {
        self.id_with(kind, name, None)
    }

    /// As [`id`](Self::id); a stream created here gets `info`, an existing
    /// one keeps its own (the first handle's info wins, as in the SDK).
    pub(crate) fn id_with(&self, kind: StreamKind, name: &str, info: Option<StreamInfo>) -> u32 {
        let hash = self.hasher.hash_one((kind, name));
        if let Ok(id) = probe(&self.by_name.load(), hash, kind, name) {
            return id;
        }
        let mut next = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        let names = self.by_name.load_full();
        let slot = match probe(&names, hash, kind, name) {
            Ok(id) => return id,
            Err(slot) => slot,
        };
        let id = *next;
        *next += 1;
        let desc = StreamDesc {
            kind,
            name: (!name.is_empty()).then(|| Arc::from(name)),
            info: info.map(Arc::new),
        };
        // by_id first: whoever learns the id can resolve it.
        let ids = self.by_id.load_full();
        if (id as usize) < ids.len() {
            let _ = ids[id as usize].set(desc);
        } else {
            let grown: Vec<_> = (ids.iter().map(|d| d.get().cloned()))
                .chain([Some(desc)])
                .chain(std::iter::repeat_with(|| None))
                .take((2 * ids.len()).max(16))
                .map(|d| d.map_or_else(OnceLock::new, OnceLock::from))
                .collect();
            self.by_id.store(Arc::new(grown));
        }
        let entry = (kind, Arc::<str>::from(name), id);
        if 2 * (id as usize + 1) <= names.len() {
            let _ = names[slot].set(entry);
        } else {
            let len = (2 * names.len()).max(16);
            let grown: Vec<NameSlot> = (0..len).map(|_| OnceLock::new()).collect();
            let old = names.iter().filter_map(OnceLock::get).cloned();
            for e in old.chain([entry]) {
                let h = self.hasher.hash_one((e.0, &*e.1));
                if let Err(i) = probe(&grown, h, e.0, &e.1) {
                    let _ = grown[i].set(e);
                }
            }
            self.by_name.store(Arc::new(grown));
        }
        id
    }

    /// The description of a published id.
    pub(crate) fn desc(&self, id: u32) -> Option<StreamDesc> {
        self.by_id.load().get(id as usize)?.get().cloned()
    }

    /// Names of the existing streams of one kind.
    pub(crate) fn names(&self, kind: StreamKind) -> Vec<Box<str>> {
        (self.by_id.load().iter().filter_map(OnceLock::get))
            .filter(|d| d.kind == kind)
            .map(|d| d.name.as_deref().unwrap_or("").into())
            .collect()
    }
}

/// Everything a run's handles, producers and collector share.
#[derive(Debug)]
pub(crate) struct RunCore {
    pub(crate) id: u64,
    pub(crate) cfg: BufferConfig,
    pub(crate) closed: CachePadded<AtomicBool>,
    pub(crate) epochs: Epochs,
    pub(crate) streams: Streams,
    /// Parked in a long sleep (not ticking).
    pub(crate) sleeping: CachePadded<AtomicBool>,
    /// The collector thread has exited (or never started).
    pub(crate) collector_done: AtomicBool,
    pub(crate) collector: OnceLock<thread::Thread>,
    pub(crate) ring_bytes: AtomicUsize,
    pub(crate) last_error: ArcSwapOption<String>,
    /// Why a background thread of the sink died (a panic): a flush failed by
    /// it is `Error::Panicked`, not a store error that a retry could mend.
    pub(crate) dead_thread: ArcSwapOption<String>,
    /// Records dropped under the lossy policy, summed by the collector.
    pub(crate) dropped: AtomicU64,
    control: mpsc::Sender<Control>,
    next_chain: AtomicU64,
    /// Wake threshold: records per producer between nudges.
    wake_every: u32,
    /// Largest record the fast path takes: `max_record_bytes`, or 0 in
    /// unbuffered mode (every record then takes the general path, which flushes).
    fast_max: usize,
    /// The fork generation the run was opened in (see `crate::fork`).
    generation: u64,
    /// What the run does in this process of a job (see `crate::ranks`).
    pub(crate) role: Role,
}

/// A record's header before its timestamp is taken.
#[derive(Debug, Clone, Copy)]
struct Meta {
    kind: u8,
    aux: u8,
    stream: u32,
    /// `None`: the time of the call, read by [`Meta::head`].
    ts: Option<u64>,
}

impl Meta {
    /// Whether the record gives its thread a timestamp for a later `_ts = -1`.
    #[inline(always)]
    fn stamps(self) -> bool {
        self.kind == kind::METRIC || self.kind == kind::TRACK
    }

    #[inline(always)]
    fn head(self) -> Head {
        Head {
            kind: self.kind,
            aux: self.aux,
            stream: self.stream,
            ts: self.ts.unwrap_or_else(crate::clock::now),
        }
    }
}

impl RunCore {
    #[cfg_attr(not(any(test, ml_dash_loom)), allow(dead_code))] // the models' door
    pub(crate) fn new(cfg: BufferConfig) -> (Arc<RunCore>, mpsc::Receiver<Control>) {
        RunCore::with_role(cfg, Role::default())
    }

    /// A run with `role` (an inert one starts no collector: see
    /// [`Role::inert`]).
    pub(crate) fn with_role(
        cfg: BufferConfig,
        role: Role,
    ) -> (Arc<RunCore>, mpsc::Receiver<Control>) {
        crate::sync::init_barriers();
        crate::fork::install();
        let (tx, rx) = mpsc::channel();
        let wake_every = cfg
            .metric_batch_size
            .min(cfg.log_batch_size)
            .min(cfg.track_batch_size)
            .clamp(1, u32::MAX as usize) as u32;
        let fast_max = if cfg.buffer_enabled {
            cfg.max_record_bytes
        } else {
            0
        };
        let core = RunCore {
            id: crate::sync::next_run_id(),
            cfg,
            closed: CachePadded::new(AtomicBool::new(false)),
            epochs: Epochs::default(),
            streams: Streams::default(),
            sleeping: CachePadded::new(AtomicBool::new(false)),
            collector_done: AtomicBool::new(false),
            collector: OnceLock::new(),
            ring_bytes: AtomicUsize::new(0),
            last_error: ArcSwapOption::empty(),
            dead_thread: ArcSwapOption::empty(),
            dropped: AtomicU64::new(0),
            control: tx,
            next_chain: AtomicU64::new(1),
            wake_every,
            fast_max,
            generation: crate::fork::generation(),
            role,
        };
        (Arc::new(core), rx)
    }

    /// `Err(Forked)` in the child of a fork: the run, its threads and its
    /// store are the parent's. Every call that reaches shared state (a ring,
    /// the control channel, a lock, the store) checks this first.
    #[inline]
    pub(crate) fn check_owner(&self) -> Result<()> {
        if self.generation == crate::fork::generation() {
            Ok(())
        } else {
            Err(Error::Forked)
        }
    }

    pub(crate) fn send(&self, msg: Control) {
        // A send fails only once the collector is gone; `collector_done` reports that.
        let _ = self.control.send(msg);
    }

    pub(crate) fn wake_collector(&self) {
        if let Some(t) = self.collector.get() {
            t.unpark();
        }
    }

    pub(crate) fn alive(&self) -> bool {
        // Acquire: pairs with the Release store in `collector_exited`.
        !self.collector_done.load(Ordering::Acquire)
    }

    /// Marks the collector gone (called when its thread ends, however it
    /// ends): no waiter hangs on it, and no push is accepted any more.
    #[cfg_attr(not(ml_dash_loom), allow(dead_code))] // the API's `ExitGuard` does the same
    pub(crate) fn collector_exited(&self) {
        // Release: pairs with the Acquire load in `alive`; everything the
        // collector did (its last `completed`) happens-before a waiter's
        // "not alive".
        self.collector_done.store(true, Ordering::Release);
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Sends one record: encodes it straight into this thread's ring.
    #[inline(always)]
    pub(crate) fn push(
        self: &Arc<Self>,
        head: Head,
        msg: &[u8],
        fields: &Fields<'_>,
    ) -> Result<()> {
        let Head {
            kind,
            aux,
            stream,
            ts,
        } = head;
        let meta = Meta {
            kind,
            aux,
            stream,
            ts: Some(ts),
        };
        self.push_with(meta, msg, fields)
    }

    /// Sends a record of `fields` stamped with the time of the call.
    #[inline(always)]
    pub(crate) fn push_now(
        self: &Arc<Self>,
        kind: u8,
        stream: u32,
        fields: &Fields<'_>,
    ) -> Result<()> {
        let meta = Meta {
            kind,
            aux: 0,
            stream,
            ts: None,
        };
        self.push_with(meta, &[], fields)
    }

    /// The common case runs in straight-line code that only answers "done or
    /// not": a valid record, this thread's last ring is this run's, room in
    /// it. Everything else (a thread's first call, a bad record, growth,
    /// waiting for room, close, unbuffered mode) starts over on the general
    /// path, which also builds the typed error. The timestamp is read after
    /// the fields are checked (so the compiler keeps a caller's field array in
    /// registers across it).
    #[inline(always)]
    fn push_with(self: &Arc<Self>, meta: Meta, msg: &[u8], fields: &Fields<'_>) -> Result<()> {
        if let Some(len) = record::encoded_len(msg, fields, self.fast_max) {
            let Ok(hot) = HOT.try_with(Cell::get) else {
                return self.push_general(meta, msg, fields);
            };
            if hot.run != self.id {
                if self.role.inert {
                    // A valid record on a run that records nothing (it has
                    // no ring, so this is its every call): done.
                    return self.check_owner().and_then(|()| self.noop_result());
                }
                return self.push_general(meta, msg, fields);
            }
            let head = meta.head();
            // SAFETY: `hot.ring` points at the ring of this thread's first slot
            // in SLOTS, which lives (unmoved: SLOTS is not borrowed here) until
            // `with_producer` next borrows SLOTS, and it clears HOT first (and
            // sets it again last), as SLOTS' destructor clears it.
            // Nothing below reaches them: `push_fast` runs only our encoder,
            // the ring, and an unpark; no user code, no allocation. So this is
            // the only reference to that ring while it lives.
            let ring = unsafe { &mut *hot.ring };
            if ring.push_fast(self, len, meta.stamps(), &mut Encoder { head, msg, fields }) {
                return Ok(());
            }
        }
        self.push_general(meta, msg, fields)
    }

    #[cold]
    #[inline(never)]
    fn push_general(self: &Arc<Self>, meta: Meta, msg: &[u8], fields: &Fields<'_>) -> Result<()> {
        // The child of a fork reaches here for an inherited run: its handler
        // cleared HOT (see `crate::fork`).
        self.check_owner()?;
        let (len, inherits) = record::checked_len(msg, fields, self.cfg.max_record_bytes)?;
        if self.role.inert {
            // Never on the hot path's ring (it has none): checked, then nothing.
            return self.noop_result();
        }
        let head = meta.head();
        let mut fill = Encoder { head, msg, fields };
        let r = with_producer(self, |p| {
            // The SDK's rule: a metric `_ts = -1` needs a previous timestamp in
            // this thread (a track row without one takes the clock).
            if inherits && meta.kind == kind::METRIC && !p.stamped {
                return Err(record::no_previous_ts());
            }
            p.push(self, len, meta.stamps(), &mut fill)
        });
        if let Err(Error::Closed) = r {
            crate::signals::wait_out(); // a signal closed it: the process is ending
        }
        r?;
        if !self.cfg.buffer_enabled {
            return self.flush_unbuffered();
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn flush_unbuffered(&self) -> Result<()> {
        self.flush()
    }

    /// The answer of a call that does nothing here (an inert run, or a
    /// shared-mode write that only rank 0 makes): `Closed` after close, else done.
    #[inline]
    pub(crate) fn noop_result(&self) -> Result<()> {
        // Relaxed: nothing is written, so there is nothing to order.
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Waits until everything logged before the call is in the store.
    pub(crate) fn flush(&self) -> Result<()> {
        self.flush_within(Duration::MAX).unwrap_or(Ok(()))
    }

    /// [`flush`](Self::flush) that gives up after `limit` (`None`; the
    /// flush then completes without a waiter).
    pub(crate) fn flush_within(&self, limit: Duration) -> Option<Result<()>> {
        if let Err(e) = self.check_owner() {
            return Some(Err(e));
        }
        if self.role.inert {
            return Some(self.noop_result());
        }
        if self.closed.load(Ordering::Acquire) {
            crate::signals::wait_out(); // a signal closed it: the process is ending
            return Some(Err(Error::Closed));
        }
        let start = crate::sync::Instant::now();
        // SeqCst (an AcqRel RMW would do): pairs with the collector's Acquire load
        // of `requested` at the top of its loop, so every record pushed before
        // this call (by any thread that happens-before it) is drained for this epoch.
        #[cfg(not(ml_dash_mutant = "flush_request_relaxed"))]
        let epoch = self.epochs.requested.fetch_add(1, Ordering::SeqCst) + 1;
        #[cfg(ml_dash_mutant = "flush_request_relaxed")]
        let epoch = self.epochs.requested.fetch_add(1, Ordering::Relaxed) + 1;
        self.send(Control::Flush {
            epoch,
            waiter: thread::current(),
        });
        // SC fence between the send and the first load of `completed`: pairs
        // with the SC fence at the end of `Collector::close`, so a flush that
        // races close either sees close's final `completed` or has its message
        // received (and is unparked). Every other case has its unpark in
        // `Collector::publish_completed` or `poll_control`.
        fence(Ordering::SeqCst);
        self.wake_collector();
        loop {
            // Acquire: pairs with the collector's Release store of `completed`.
            if self.epochs.completed.load(Ordering::Acquire) >= epoch {
                break;
            }
            if !self.alive() {
                // `alive` (Acquire) ordered the collector's last `completed`.
                if self.epochs.completed.load(Ordering::Acquire) >= epoch {
                    break;
                }
                return Some(Err(Error::Collector(
                    "it stopped before this flush completed".into(),
                )));
            }
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return None;
            }
            // The timeout is a safety net only (a collector that died in a
            // panic unparks nobody); the models run without it.
            park_timeout(Duration::from_millis(100).min(left));
        }
        if self.epochs.failed.load(Ordering::Acquire) >= epoch {
            if let Some(why) = self.dead_thread.load_full() {
                return Some(Err(Error::Panicked(why.to_string())));
            }
            let why = self.last_error.load_full();
            return Some(Err(Error::Sink(
                why.map_or_else(String::new, |s| s.to_string()),
            )));
        }
        Some(Ok(()))
    }

    /// Marks the run closed: from here every push returns `Closed`. The
    /// collector then waits out pushes already under way (`Collector::close`).
    pub(crate) fn mark_closed(&self) -> bool {
        // SeqCst store, then the heavy barrier in `Collector::close`: the pair of
        // the light barrier in `ProducerRing::push` (Dekker on closed/in_push).
        !self.closed.swap(true, Ordering::SeqCst)
    }

    #[cold]
    pub(crate) fn nudge(&self, ring: &RingShared) {
        // A store-buffering (Dekker) pair written with SC fences: store
        // `wake_wanted`, fence, load `sleeping` here; store `sleeping`, fence,
        // load `wake_wanted` (and the rings) in `Collector::sleep`. Whichever
        // fence comes second sees the other side's store: either we see the
        // collector asleep and unpark it, or its re-check sees our request.
        // (SeqCst stores and loads without the fences would be as correct in
        // C++, but loom cannot check that form: it lets an SC load return an
        // initial value older than an SC store. The fences cost the same.)
        // Relaxed: the fence orders it, and it publishes nothing (the records
        // are published by the ring's own commit, which the fence also orders
        // before the collector's re-check).
        ring.wake_wanted.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // Relaxed: the fence orders the load; the swap makes one unpark per sleep.
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::Relaxed) {
            self.wake_collector();
        }
    }
}

/// A producer thread's end of its ring chain in one run.
#[derive(Debug)]
pub(crate) struct ProducerRing {
    ring: RingProducer,
    shared: Arc<RingShared>,
    chain: u64,
    since_wake: u32,
    /// A metric point or track row of this thread went into this ring chain
    /// (or was dropped under the lossy policy): the collector has a timestamp
    /// for its `_ts = -1`.
    stamped: bool,
    control: mpsc::Sender<Control>,
    /// The run's fork generation: in a fork's child the channel is the
    /// parent's (a sender there may spin on a half-written block for ever).
    generation: u64,
}

impl Drop for ProducerRing {
    fn drop(&mut self) {
        if self.generation == crate::fork::generation() {
            let _ = self.control.send(Control::Retire { chain: self.chain });
        }
    }
}

impl ProducerRing {
    #[cold]
    fn register(core: &RunCore) -> Result<ProducerRing> {
        let bytes = ring::round_capacity(core.cfg.ring_capacity);
        let Some((p, c)) = ring::try_channel(bytes) else {
            return Err(Error::Config {
                name: "ring_capacity",
                value: bytes.to_string(),
                reason: "the machine could not allocate a ring this large now: lower \
                         ring_capacity (ML_DASH_RING_CAPACITY)",
            });
        };
        core.ring_bytes.fetch_add(bytes, Ordering::Relaxed); // a counter; no data rides on it
        let shared = Arc::new(RingShared::default());
        let chain = core.next_chain.fetch_add(1, Ordering::Relaxed); // unique id only
        core.send(Control::Register {
            chain,
            consumer: c,
            shared: shared.clone(),
            bytes,
        });
        // A collector about to park cannot see this ring in its `has_work`
        // re-check until it reads the message, so a later nudge that finds it
        // not yet `sleeping` would be lost: leave it an unpark token now (the
        // park after the re-check returns, and the next loop reads the message).
        #[cfg(not(ml_dash_mutant = "register_no_wake"))]
        core.wake_collector();
        Ok(ProducerRing {
            ring: p,
            shared,
            chain,
            since_wake: 0,
            stamped: false,
            control: core.control.clone(),
            generation: core.generation,
        })
    }

    /// [`ProducerRing::push`] when there is room and the run is open: returns
    /// `false`, having written nothing, otherwise.
    #[inline(always)]
    fn push_fast(
        &mut self,
        core: &RunCore,
        len: usize,
        stamps: bool,
        fill: &mut impl Fill,
    ) -> bool {
        // The same Dekker half as in `push`: Relaxed store + light barrier +
        // Relaxed load, paired with `mark_closed` + `Collector::close`.
        self.shared.in_push.store(true, Ordering::Relaxed);
        light_barrier();
        let done = !core.closed.load(Ordering::Relaxed) && self.ring.try_write(len, fill);
        // Release: pairs with the Acquire load in `Collector::close`.
        self.shared.in_push.store(false, Ordering::Release);
        if done {
            self.stamped |= stamps;
            self.count_and_nudge(core);
        }
        done
    }

    #[inline(always)]
    fn count_and_nudge(&mut self, core: &RunCore) {
        self.since_wake += 1;
        if self.since_wake >= core.wake_every {
            self.since_wake = 0;
            core.nudge(&self.shared);
        }
    }

    #[inline(always)]
    fn push(
        &mut self,
        core: &RunCore,
        len: usize,
        stamps: bool,
        fill: &mut impl Fill,
    ) -> Result<()> {
        // Relaxed store + light barrier + Relaxed load: the producer half of the
        // Dekker pair with `mark_closed` + `Collector::close`.
        self.shared.in_push.store(true, Ordering::Relaxed);
        light_barrier();
        let r = if core.closed.load(Ordering::Relaxed) {
            Err(Error::Closed)
        } else if self.ring.try_write(len, fill) {
            Ok(())
        } else {
            self.push_slow(core, len, fill)
        };
        // Release: pairs with the Acquire load in `Collector::close`.
        self.shared.in_push.store(false, Ordering::Release);
        self.stamped |= stamps && r.is_ok();
        self.count_and_nudge(core);
        r
    }

    /// The ring is full, or the record is larger than it. The ring grows
    /// when the budget allows; then the producer waits for room (or drops,
    /// under the lossy policy).
    ///
    /// How large a record can ever be: this ring stays counted against the
    /// budget until the collector drained it, so a record larger than it
    /// needs a second ring of at least its own size beside it. If the two do
    /// not fit the budget, no waiting helps: that is an immediate error
    /// (`BufferConfig::validate` refuses settings where `max_record_bytes`
    /// could meet this). A record that fits this ring always fits it once
    /// drained (the ring pads to its end eagerly).
    #[cold]
    #[inline(never)]
    fn push_slow(&mut self, core: &RunCore, len: usize, fill: &mut impl Fill) -> Result<()> {
        let cap = self.ring.capacity();
        let budget = core.cfg.memory_budget;
        if len > cap && cap.saturating_add(len) > budget {
            let limit = cap.max(budget.saturating_sub(cap)) & !7;
            return Err(Error::RecordTooLarge { size: len, limit });
        }
        // Grow: a ring twice as large (and twice the record), chained after
        // the full one; if the budget refuses that, a record larger than this
        // ring takes the smallest ring it fits in.
        let double = cap
            .saturating_mul(2)
            .max(len.saturating_mul(2).saturating_add(64));
        if (self.grow(core, double) || (len > cap && self.grow(core, len)))
            && self.ring.try_write(len, fill)
        {
            return Ok(());
        }
        match core.cfg.backpressure {
            Backpressure::DropNewest => {
                // Single writer: the producer owns this counter.
                let d = self.shared.dropped.load(Ordering::Relaxed);
                self.shared.dropped.store(d + 1, Ordering::Relaxed);
                Ok(())
            }
            _ => {
                // A poll: the collector never unparks producers.
                let backoff = Backoff::new(Duration::from_micros(50));
                loop {
                    core.nudge(&self.shared);
                    core.wake_collector();
                    // A record larger than its ring waits for budget (other
                    // threads' rings, batches held for a failing store), not room.
                    let fits = len <= self.ring.capacity() || self.grow(core, len);
                    if fits && self.ring.try_write(len, fill) {
                        return Ok(());
                    }
                    if !core.alive() {
                        return Err(Error::Collector(
                            "it stopped while this thread waited for room".into(),
                        ));
                    }
                    backoff.wait();
                }
            }
        }
    }

    /// Replaces the ring by a new one of at least `bytes`, chained after
    /// it, if the budget has room and the machine gives the memory.
    #[cold]
    fn grow(&mut self, core: &RunCore, bytes: usize) -> bool {
        if bytes > core.cfg.memory_budget {
            return false;
        }
        let bytes = ring::round_capacity(bytes);
        // Relaxed: a budget counter; no data rides on it.
        let prev = core.ring_bytes.fetch_add(bytes, Ordering::Relaxed);
        if prev.saturating_add(bytes) <= core.cfg.memory_budget
            && let Some((p, c)) = ring::try_channel(bytes)
        {
            core.send(Control::Grow {
                chain: self.chain,
                consumer: c,
                bytes,
            });
            self.ring = p;
            return true;
        }
        core.ring_bytes.fetch_sub(bytes, Ordering::Relaxed);
        false
    }
}

struct Slot {
    run: u64,
    core: Weak<RunCore>,
    ring: ProducerRing,
}

/// This thread's rings, one per run it logged to, the last used in front.
struct Slots(Vec<Slot>);

impl Drop for Slots {
    fn drop(&mut self) {
        // The rings go with this (at thread exit): the hot path must not find them.
        let _ = HOT.try_with(|h| h.set(Hot::NONE));
    }
}

/// A copy of "SLOTS[0]" for the hot path: no borrow flag, no destructor
/// state to check (the type has no drop glue). Valid while SLOTS is not
/// borrowed; see `RunCore::push_with`.
#[derive(Clone, Copy)]
struct Hot {
    run: u64,
    ring: *mut ProducerRing,
}

impl Hot {
    /// Run ids start at 1, so this matches no run.
    const NONE: Hot = Hot {
        run: 0,
        ring: std::ptr::null_mut(),
    };
}

const_thread_local! {
    static SLOTS: std::cell::RefCell<Slots> = std::cell::RefCell::new(Slots(Vec::new()));
}

const_thread_local! {
    static HOT: Cell<Hot> = Cell::new(Hot::NONE);
}

/// The `fork` child handler's part (see `crate::fork`): the hot path of the
/// forking thread, the only thread of the child, must not find its ring.
/// Only a `Cell` write: async-signal-safe.
#[cfg_attr(any(not(unix), ml_dash_loom), allow(dead_code))]
pub(crate) fn forget_hot_ring() {
    let _ = HOT.try_with(|h| h.set(Hot::NONE));
}

/// Runs `f` on this thread's ring for `core`, registering one on first use.
#[inline]
fn with_producer<R>(
    core: &Arc<RunCore>,
    mut f: impl FnMut(&mut ProducerRing) -> Result<R>,
) -> Result<R> {
    let r = SLOTS.try_with(|cell| {
        let slots = &mut cell.borrow_mut().0;
        // SLOTS may change below (and `f` may unwind): the hot path must not
        // use its copy until it is set again at the end.
        let _ = HOT.try_with(|h| h.set(Hot::NONE));
        let r = match slots.first_mut() {
            Some(s) if s.run == core.id => f(&mut s.ring),
            _ => {
                let i = find_or_register(slots, core)?;
                f(&mut slots[i].ring)
            }
        };
        if let Some(s) = slots.first_mut() {
            let _ = HOT.try_with(|h| {
                h.set(Hot {
                    run: s.run,
                    ring: &mut s.ring,
                })
            });
        }
        r
    });
    match r {
        Ok(r) => r,
        Err(_) => with_oneoff_ring(core, f),
    }
}

/// Thread-local storage is being torn down: use a one-off ring.
#[cold]
#[inline(never)]
fn with_oneoff_ring<R>(
    core: &Arc<RunCore>,
    mut f: impl FnMut(&mut ProducerRing) -> Result<R>,
) -> Result<R> {
    if core.closed.load(Ordering::Relaxed) {
        return Err(Error::Closed);
    }
    let mut ring = ProducerRing::register(core)?;
    // This thread's ring went with its thread-locals, and the collector sees
    // a new chain: a `_ts = -1` there takes the call's own time.
    ring.stamped = true;
    f(&mut ring)
}

#[cold]
#[inline(never)]
fn find_or_register(slots: &mut Vec<Slot>, core: &Arc<RunCore>) -> Result<usize> {
    // Forget rings of runs that are closed, gone, or the parent's (in a fork's child).
    slots.retain(|s| {
        s.core
            .upgrade()
            .is_some_and(|c| !c.closed.load(Ordering::Relaxed) && c.check_owner().is_ok())
    });
    if let Some(i) = slots.iter().position(|s| s.run == core.id) {
        slots.swap(0, i);
        return Ok(0);
    }
    if core.closed.load(Ordering::Relaxed) {
        return Err(Error::Closed);
    }
    slots.insert(
        0,
        Slot {
            run: core.id,
            core: Arc::downgrade(core),
            ring: ProducerRing::register(core)?,
        },
    );
    Ok(0)
}

#[cfg(all(test, not(ml_dash_loom)))]
mod tests {
    use super::{StreamKind, Streams};

    #[test]
    fn stream_ids_are_stable_across_table_growth() {
        let s = Streams::default();
        let unnamed = s.id(StreamKind::Metric, "");
        let n = 5000u32;
        for k in 0..n {
            assert_eq!(s.id(StreamKind::Metric, &format!("m{k}")), k + 1);
        }
        // The same name of another kind is another stream.
        assert_eq!(s.id(StreamKind::Track, "m7"), n + 1);
        assert_eq!(s.id(StreamKind::Metric, ""), unnamed);
        for k in 0..n {
            assert_eq!(s.id(StreamKind::Metric, &format!("m{k}")), k + 1);
            let d = s.desc(k + 1).unwrap();
            assert_eq!(
                (d.kind, d.name.as_deref()),
                (StreamKind::Metric, Some(&*format!("m{k}")))
            );
        }
        assert_eq!(s.desc(unnamed).unwrap().name, None);
        assert!(s.desc(n + 2).is_none());
        assert_eq!(s.names(StreamKind::Track), vec!["m7".into()]);
        assert_eq!(s.names(StreamKind::Metric).len(), n as usize + 1);
    }

    #[test]
    fn racing_threads_get_one_id_per_name() {
        let s = Streams::default();
        let ids: Vec<Vec<u32>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    sc.spawn(|| {
                        (0..2000)
                            .map(|k| s.id(StreamKind::Metric, &format!("n{k}")))
                            .collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "every thread sees the same ids"
        );
        let mut sorted = ids[0].clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..2000).collect::<Vec<u32>>());
    }
}

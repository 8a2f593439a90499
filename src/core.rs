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
//! | `wake_wanted` SeqCst (producer) / `sleeping` SeqCst (collector) | each other's SeqCst load | no lost wake-up |

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::OnceLock;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use crossbeam_utils::CachePadded;

use crate::config::{Backpressure, BufferConfig};
use crate::error::{Error, Result};
use crate::record::{self, Fields, Head};
use crate::ring::{self, RingConsumer, RingProducer};
use std::sync::{Arc, Mutex, Weak};

use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, light_barrier, mpsc, thread};

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

/// The run's stream names and ids; read lock-free, written under a mutex on
/// the cold path of creating a handle.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    by_name: ArcSwap<HashMap<(StreamKind, Box<str>), u32>>,
    by_id: ArcSwap<Vec<StreamDesc>>,
    insert: Mutex<()>,
}

impl Streams {
    /// The id of a stream, created on first use. The unnamed stream is `""`.
    pub(crate) fn id(&self, kind: StreamKind, name: &str) -> u32 {
        if let Some(&id) = self.by_name.load().get(&(kind, name.into())) {
            return id;
        }
        let _guard = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = self.by_name.load().get(&(kind, name.into())) {
            return id;
        }
        let mut ids = Vec::clone(&self.by_id.load());
        let id = ids.len() as u32;
        ids.push(StreamDesc {
            kind,
            name: (!name.is_empty()).then(|| Arc::from(name)),
        });
        // by_id first: whoever learns the id can resolve it.
        self.by_id.store(Arc::new(ids));
        let mut names = HashMap::clone(&self.by_name.load());
        names.insert((kind, name.into()), id);
        self.by_name.store(Arc::new(names));
        id
    }

    /// The description of a published id.
    pub(crate) fn desc(&self, id: u32) -> Option<StreamDesc> {
        self.by_id.load().get(id as usize).cloned()
    }

    /// Names of the existing streams of one kind.
    pub(crate) fn names(&self, kind: StreamKind) -> Vec<Box<str>> {
        self.by_name
            .load()
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// Final status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Open and accepting records.
    Running,
    /// Closed normally.
    Completed,
    /// Closed after an error or a panic.
    Failed,
    /// Closed on request.
    Cancelled,
}

impl Status {
    /// The name the ML-Dash server and store use.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
        }
    }
}

static NEXT_RUN_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

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
    /// Records dropped under the lossy policy, summed by the collector.
    pub(crate) dropped: AtomicU64,
    control: mpsc::Sender<Control>,
    next_chain: AtomicU64,
    /// Wake threshold: records per producer between nudges.
    wake_every: u32,
}

impl RunCore {
    pub(crate) fn new(cfg: BufferConfig) -> (Arc<RunCore>, mpsc::Receiver<Control>) {
        crate::sync::init_barriers();
        let (tx, rx) = mpsc::channel();
        let wake_every = cfg
            .metric_batch_size
            .min(cfg.log_batch_size)
            .min(cfg.track_batch_size)
            .clamp(1, u32::MAX as usize) as u32;
        let core = RunCore {
            id: NEXT_RUN_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            cfg,
            closed: CachePadded::new(AtomicBool::new(false)),
            epochs: Epochs::default(),
            streams: Streams::default(),
            sleeping: CachePadded::new(AtomicBool::new(false)),
            collector_done: AtomicBool::new(false),
            collector: OnceLock::new(),
            ring_bytes: AtomicUsize::new(0),
            last_error: ArcSwapOption::empty(),
            dropped: AtomicU64::new(0),
            control: tx,
            next_chain: AtomicU64::new(1),
            wake_every,
        };
        (Arc::new(core), rx)
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
        !self.collector_done.load(Ordering::Acquire)
    }

    /// The `_ts` of a record logged now (see [`crate::clock`]).
    #[inline(always)]
    pub(crate) fn now(&self) -> u64 {
        crate::clock::now()
    }

    /// Sends one record: encodes it straight into this thread's ring.
    #[inline(always)]
    pub(crate) fn push(
        self: &Arc<Self>,
        head: Head,
        msg: &[u8],
        fields: &Fields<'_>,
    ) -> Result<()> {
        let len = record::encoded_len(msg, fields, self.cfg.max_record_bytes)?;
        let mut fill = |out: &mut [MaybeUninit<u8>]| record::encode(out, head, msg, fields);
        with_producer(self, |p| p.push(self, len, &mut fill))?;
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

    /// Waits until everything logged before the call is in the store.
    pub(crate) fn flush(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // SeqCst (an AcqRel RMW would do): pairs with the collector's Acquire load
        // of `requested` at the top of its loop, so every record pushed before
        // this call (by any thread that happens-before it) is drained for this epoch.
        let epoch = self.epochs.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.send(Control::Flush {
            epoch,
            waiter: thread::current(),
        });
        self.wake_collector();
        // Acquire: pairs with the collector's Release store of `completed`.
        while self.epochs.completed.load(Ordering::Acquire) < epoch {
            if !self.alive() {
                return Err(Error::Collector(
                    "it stopped before this flush completed".into(),
                ));
            }
            park_timeout(Duration::from_millis(100));
        }
        if self.epochs.failed.load(Ordering::Acquire) >= epoch {
            let why = self.last_error.load_full();
            return Err(Error::Sink(why.map_or_else(String::new, |s| s.to_string())));
        }
        Ok(())
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
        // SeqCst pair: store wake_wanted / load sleeping here, store sleeping /
        // load wake_wanted in `collector::sleep`: one of the two sees the other.
        ring.wake_wanted.store(true, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.wake_collector();
        }
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

/// A producer thread's end of its ring chain in one run.
#[derive(Debug)]
pub(crate) struct ProducerRing {
    ring: RingProducer,
    shared: Arc<RingShared>,
    chain: u64,
    since_wake: u32,
    control: mpsc::Sender<Control>,
}

impl Drop for ProducerRing {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Retire { chain: self.chain });
    }
}

impl ProducerRing {
    #[cold]
    fn register(core: &RunCore) -> ProducerRing {
        let bytes = ring::round_capacity(core.cfg.ring_capacity);
        let (p, c) = ring::channel(bytes);
        core.ring_bytes.fetch_add(bytes, Ordering::Relaxed); // a counter; no data rides on it
        let shared = Arc::new(RingShared::default());
        let chain = core.next_chain.fetch_add(1, Ordering::Relaxed); // unique id only
        core.send(Control::Register {
            chain,
            consumer: c,
            shared: shared.clone(),
            bytes,
        });
        ProducerRing {
            ring: p,
            shared,
            chain,
            since_wake: 0,
            control: core.control.clone(),
        }
    }

    #[inline(always)]
    fn push(
        &mut self,
        core: &RunCore,
        len: usize,
        fill: &mut impl FnMut(&mut [MaybeUninit<u8>]),
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
        self.since_wake += 1;
        if self.since_wake >= core.wake_every {
            self.since_wake = 0;
            core.nudge(&self.shared);
        }
        r
    }

    #[cold]
    #[inline(never)]
    fn push_slow(
        &mut self,
        core: &RunCore,
        len: usize,
        fill: &mut impl FnMut(&mut [MaybeUninit<u8>]),
    ) -> Result<()> {
        // Grow: a new ring at least twice as large, chained after the full one.
        let cap = self.ring.capacity();
        let want = ring::round_capacity((cap * 2).max(2 * len + 64));
        let budget = core.cfg.memory_budget;
        let prev = core.ring_bytes.fetch_add(want, Ordering::Relaxed);
        if prev + want <= budget {
            let (p, c) = ring::channel(want);
            core.send(Control::Grow {
                chain: self.chain,
                consumer: c,
                bytes: want,
            });
            self.ring = p;
            if self.ring.try_write(len, fill) {
                return Ok(());
            }
        } else {
            core.ring_bytes.fetch_sub(want, Ordering::Relaxed);
        }
        match core.cfg.backpressure {
            Backpressure::DropNewest => {
                // Single writer: the producer owns this counter.
                let d = self.shared.dropped.load(Ordering::Relaxed);
                self.shared.dropped.store(d + 1, Ordering::Relaxed);
                Ok(())
            }
            _ => {
                let backoff = crossbeam_utils::Backoff::new();
                loop {
                    core.nudge(&self.shared);
                    core.wake_collector();
                    if self.ring.try_write(len, fill) {
                        return Ok(());
                    }
                    if !core.alive() {
                        return Err(Error::Collector(
                            "it stopped while this thread waited for room".into(),
                        ));
                    }
                    if backoff.is_completed() {
                        park_timeout(Duration::from_micros(50));
                    } else {
                        backoff.snooze();
                    }
                }
            }
        }
    }
}

struct Slot {
    run: u64,
    core: Weak<RunCore>,
    ring: ProducerRing,
}

#[cfg(not(ml_dash_loom))]
std::thread_local! {
    static SLOTS: std::cell::RefCell<Vec<Slot>> = const { std::cell::RefCell::new(Vec::new()) };
}
#[cfg(ml_dash_loom)]
loom::thread_local! {
    static SLOTS: std::cell::RefCell<Vec<Slot>> = std::cell::RefCell::new(Vec::new());
}

/// Runs `f` on this thread's ring for `core`, registering one on first use.
#[inline(always)]
fn with_producer<R>(
    core: &Arc<RunCore>,
    mut f: impl FnMut(&mut ProducerRing) -> Result<R>,
) -> Result<R> {
    let r = SLOTS.try_with(|cell| {
        let mut slots = cell.borrow_mut();
        match slots.first_mut() {
            Some(s) if s.run == core.id => f(&mut s.ring),
            _ => {
                let i = find_or_register(&mut slots, core)?;
                f(&mut slots[i].ring)
            }
        }
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
    f(&mut ProducerRing::register(core))
}

#[cold]
#[inline(never)]
fn find_or_register(slots: &mut Vec<Slot>, core: &Arc<RunCore>) -> Result<usize> {
    // Forget rings of runs that are closed or gone.
    slots.retain(|s| {
        s.core
            .upgrade()
            .is_some_and(|c| !c.closed.load(Ordering::Relaxed))
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
            ring: ProducerRing::register(core),
        },
    );
    Ok(0)
}

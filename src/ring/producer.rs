//! The producer's side of the rings: this thread's ring chain for each run it
//! logs to (a thread-local slot, found by the hot path with two loads), and
//! `RunCore::push`, which encodes a record straight into it. A full ring
//! grows into a larger one chained after it, or waits (or drops, under the
//! lossy policy); the collector drains a chain's rings in order.
//!
//! # Synchronization
//!
//! The run's orderings, both sides of each pair:
//!
//! | write (side) | read (side) | what it publishes |
//! |---|---|---|
//! | ring tail, Release (producer, `ring::try_write`) | Acquire (collector, `ring::drain`) | record bytes |
//! | `epochs.requested` fetch_add SeqCst (`RunCore::flush`) | Acquire load (collector loop top) | everything the flusher saw before |
//! | `epochs.completed` Release (collector after the sink wrote) | Acquire (`RunCore::flush` waiter) | the store's contents |
//! | `in_push` false, Release (producer) | Acquire (collector `close`) | the last record of a racing push |
//! | `closed` SeqCst + heavy barrier (close) | Relaxed after light barrier (producer) | store-load order (Dekker) |
//! | `wake_wanted` + SC fence (producer, `nudge`) / `sleeping` + SC fence (collector, `sleep`) | each other's load after the fence (and the ring tails) | no lost wake-up |
//! | `Control` send (RMW inside the channel) + SC fence (`RunCore::flush`) | SC fence + receive (end of `Collector::close`) | a flush racing close is woken |

use std::cell::Cell;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::config::Backpressure;
use crate::error::{Error, Result};
use crate::record::{self, Encoder, Fields, Head, kind};
use crate::ring::{self, Fill, RingProducer};
use crate::run::{Control, RunCore};
use crate::sync::{
    AtomicBool, AtomicU64, Backoff, Ordering, const_thread_local, fence, light_barrier, mpsc,
};

/// Per-ring state both sides see.
#[derive(Debug, Default)]
pub(crate) struct RingShared {
    /// True while the producer is inside a push (see `Collector::close`).
    pub(crate) in_push: CachePadded<AtomicBool>,
    /// The producer crossed its batch threshold while the collector slept.
    pub(crate) wake_wanted: AtomicBool,
    /// Records this producer dropped under the lossy policy (exact).
    pub(crate) dropped: AtomicU64,
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
            // the only reference to that ring while it lives. (SLOTS and HOT
            // are private to this module: no code elsewhere can break this.)
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
pub(crate) struct RingChain {
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

impl Drop for RingChain {
    fn drop(&mut self) {
        if self.generation == crate::fork::generation() {
            let _ = self.control.send(Control::Retire { chain: self.chain });
        }
    }
}

impl RingChain {
    #[cold]
    fn register(core: &RunCore) -> Result<RingChain> {
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
        Ok(RingChain {
            ring: p,
            shared,
            chain,
            since_wake: 0,
            stamped: false,
            control: core.control.clone(),
            generation: core.generation,
        })
    }

    /// [`RingChain::push`] when there is room and the run is open: returns
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
    ring: RingChain,
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
    ring: *mut RingChain,
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
    mut f: impl FnMut(&mut RingChain) -> Result<R>,
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
    mut f: impl FnMut(&mut RingChain) -> Result<R>,
) -> Result<R> {
    if core.closed.load(Ordering::Relaxed) {
        return Err(Error::Closed);
    }
    let mut ring = RingChain::register(core)?;
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
            ring: RingChain::register(core)?,
        },
    );
    Ok(0)
}

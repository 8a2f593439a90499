//! What a run's handles, producers and collector share: [`RunCore`], and
//! the [`Control`] messages into the collector.
//!
//! `RunCore`'s push (the hot path) and its wake-up nudge are in
//! `crate::ring::producer`, its flush in `super::epochs`.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use crossbeam_utils::CachePadded;

use super::epochs::Epochs;
use super::streams::Streams;
use crate::api::Status;
use crate::config::BufferConfig;
use crate::error::{Error, Result};
use crate::ranks::Role;
use crate::ring::RingConsumer;
use crate::ring::producer::RingShared;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, mpsc, thread};

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
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) next_chain: AtomicU64,
    /// Wake threshold: records per producer between nudges.
    pub(crate) wake_every: u32,
    /// Largest record the fast path takes: `max_record_bytes`, or 0 in
    /// unbuffered mode (every record then takes the general path, which flushes).
    pub(crate) fast_max: usize,
    /// The fork generation the run was opened in (see `crate::fork`).
    pub(crate) generation: u64,
    /// What the run does in this process of a job (see `crate::ranks`).
    pub(crate) role: Role,
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

    /// Marks the run closed: from here every push returns `Closed`. The
    /// collector then waits out pushes already under way (`Collector::close`).
    pub(crate) fn mark_closed(&self) -> bool {
        // SeqCst store, then the heavy barrier in `Collector::close`: the pair of
        // the light barrier in `RingChain::push` (Dekker on closed/in_push).
        !self.closed.swap(true, Ordering::SeqCst)
    }
}

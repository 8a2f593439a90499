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
//! simply has two rings. It may depend on `run`, `ring`, `record`, `encode`
//! and `sink`; it never touches the public API types.
//!
//! The parts, in the order a record meets them (this file holds the state,
//! the loop and the control messages):
//!
//! - `drain`: drains every chain of rings; frees a retired chain once empty
//! - `batch`: records into per-stream batches (`stamp`: their timestamps)
//! - `uploads`: file jobs to the upload workers, stored files to the sink
//! - `write`: batches to the sink, at their size, on the timer, at a flush
//! - `hold`: the disk-fault hold: keep, retry, drop and count while the
//!   store fails, one warning per episode
//! - `epoch`: completes a flush epoch and unparks its waiters
//! - `wake`: the tick, the long park, the collector half of the Dekker pair
//! - `close`: the last drains and writes, every epoch completed
//! - `report`: `Counts`, `CloseReport` and the warnings

mod batch;
mod close;
mod drain;
mod epoch;
mod hold;
mod report;
mod stamp;
mod uploads;
mod wake;
mod write;

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::api::Status;
use crate::files::{FileJob, Pool};
use crate::run::{Control, RunCore};
use crate::sink::local::{HEARTBEAT_INTERVAL, LocalStore};
use crate::sink::{Batch, Sink};
use crate::sync::{Instant, Ordering, mpsc, thread};

use batch::{MetricSlot, TrackState};
use drain::Chain;
use hold::Hold;
pub use report::{CloseReport, Counts};

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
}

#[cfg(all(test, not(ml_dash_loom)))]
mod tests;

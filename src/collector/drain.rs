//! The rings: each sweep drains every chain of rings into the batches, and a
//! retired chain (its thread exited) is freed once it is empty.

use std::sync::Arc;

use super::Collector;
use super::batch::Decoder;
use super::stamp::Stamp;
use crate::config::Backpressure;
use crate::ring::RingConsumer;
use crate::ring::producer::RingShared;
use crate::sink::Sink;
use crate::sync::Ordering;

pub(super) struct Chain {
    pub(super) id: u64,
    pub(super) consumer: RingConsumer,
    pub(super) shared: Arc<RingShared>,
    pub(super) bytes: usize,
    pub(super) retired: bool,
    /// The timestamp of the last metric point or track row from this chain,
    /// for its next `_ts = -1`: a chain is one thread's records in one run,
    /// drained in order, so this is the SDK's thread-local `_last_timestamp`.
    pub(super) last_ts: Option<Stamp>,
}

impl<S: Sink> Collector<S> {
    pub(super) fn drain_all(&mut self) -> usize {
        self.set_room();
        let n = self.drain_rings();
        self.settle_hold();
        self.store_warnings();
        n
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

    pub(super) fn drain_chain(&mut self, i: usize) -> usize {
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
}

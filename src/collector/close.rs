//! Close: wait out the pushes under way, drain and write everything, finish
//! the store, fill in the close report, and complete every epoch.

use super::{CloseReport, Collector};
use crate::sink::Sink;
use crate::sync::Ordering;
#[cfg(not(ml_dash_mutant = "close_no_final_poll"))]
use crate::sync::fence;
#[cfg(not(ml_dash_mutant = "close_no_barrier"))]
use crate::sync::heavy_barrier;

impl<S: Sink> Collector<S> {
    pub(super) fn close(mut self) -> CloseReport {
        // `mark_closed` stored `closed` (SeqCst) before sending `Close`, which we
        // received. The heavy barrier completes the Dekker pair with the
        // producers' light barrier in `RingChain::push`: from here each
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
            // `RingChain::push`, so a finished racing record is in the ring.
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
        // What the console report counts (see `CloseReport`'s `Display`):
        // its opening lines now, the rest when close has ended.
        self.report.pending_at_close = self.pending();
        self.say_lines(format_args!("{}", self.report.opening()));
        let written = self.write_everything();
        self.wait_files();
        let files_failed = self.files_failed();
        if let Some(mut pool) = self.files.take() {
            pool.shutdown();
        }
        let finished = self.store.finish(self.status).map_err(|e| e.to_string());
        self.report.status = Some(self.status);
        self.store_warnings();
        self.report.server = self.store.shutdown();
        self.report.dead_thread = self.store.dead_thread();
        let outcome = written.and(finished);
        if let Err(e) = &outcome {
            self.note(Err(e.clone()));
        }
        self.report.unwritten = self.pending();
        self.report.unwritten.files += files_failed;
        self.report.dropped = self.core.dropped.load(Ordering::Relaxed);
        self.report.lost_to_store = self.hold.lost;
        self.report.location = self.store.location().to_path_buf();
        // The held batches are freed with the collector: release their charge.
        self.hold.failing = false;
        self.settle_hold();
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

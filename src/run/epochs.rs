//! Flush epochs, the flusher's half: `flush` requests an epoch and waits
//! until the collector completed it (the collector's half is
//! `crate::collector::epoch`; the orderings are in the table of
//! `crate::ring::producer`).

use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::state::{Control, RunCore};
use crate::error::{Error, Result};
use crate::sync::{AtomicU64, Ordering, fence, park_timeout, thread};

/// Flush epochs: requests and completions, both monotonic.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    pub(crate) requested: CachePadded<AtomicU64>,
    pub(crate) completed: CachePadded<AtomicU64>,
    /// Highest epoch whose write failed (0: none).
    pub(crate) failed: AtomicU64,
}

impl RunCore {
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
}

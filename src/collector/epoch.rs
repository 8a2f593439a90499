//! Flush epochs, the collector's half: complete the requested epoch (write
//! everything, wait for the files), publish it and unpark its waiters.

use std::sync::Arc;

use super::Collector;
use crate::sink::Sink;
use crate::sync::Ordering;

impl<S: Sink> Collector<S> {
    pub(super) fn complete_epoch(&mut self, target: u64) {
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

    pub(super) fn publish_completed(&mut self, target: u64) {
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
}

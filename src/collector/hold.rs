//! The disk-fault hold: while the store fails, the collector keeps what it
//! accepted (within its limits), retries, drops and counts past them, and
//! gives one warning per failure episode.

use std::sync::Arc;
use std::time::Duration;

use super::{Collector, Counts};
use crate::sink::Sink;
use crate::sync::Ordering;

/// While the store fails, the collector retries it at least this often (and
/// at every flush and at close), so a short fault costs little data.
pub(super) const RETRY_WHILE_FAILING: Duration = Duration::from_secs(1);

/// Parameter sets held while the store fails before later ones merge.
pub(super) const MAX_HELD_PARAMS: usize = 64;

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
pub(super) struct Hold {
    /// Some stream is failing, or the store is (recomputed after each write).
    pub(super) failing: bool,
    /// The last fsync of the store failed.
    pub(super) store_failing: bool,
    /// The warning of the current failure episode was given.
    warned: bool,
    /// Bytes of serialized batches held (recomputed after each write).
    pub(super) held: usize,
    /// Bytes of `held` charged to `RunCore::ring_bytes`.
    charged: usize,
    /// What may be held while failing (set before each drain).
    room: usize,
    /// Records dropped because the store failed and `room` was spent.
    pub(super) lost: Counts,
    /// Drops in the current failure episode (for the recovery line).
    episode_lost: u64,
    /// `lost.total()` when the last flush epoch completed: a flush fails when
    /// records logged before it were dropped since.
    pub(super) lost_at_epoch: u64,
    /// The current episode's drop warning was given.
    drop_warned: bool,
}

impl Hold {
    /// Whether a record of a stream whose last write failed (`failing`) must
    /// be dropped now.
    #[inline]
    pub(super) fn full(&self, failing: bool) -> bool {
        (failing || self.store_failing) && self.held >= self.room
    }

    #[cold]
    pub(super) fn drop_record(&mut self, k: u8) {
        self.lost.add_kind(k);
        self.episode_lost += 1;
    }
}

impl<S: Sink> Collector<S> {
    /// What the collector may hold while the store fails: half the memory
    /// budget, less what the rings take beyond the other half.
    pub(super) fn set_room(&mut self) {
        let budget = self.core.cfg.memory_budget;
        // Relaxed: a budget estimate; growth of the rings races it either way.
        let total = self.core.ring_bytes.load(Ordering::Relaxed);
        let rings = total.saturating_sub(self.hold.charged);
        self.hold.room = (budget / 2).min(budget.saturating_sub(rings));
    }

    /// After a drain: charges the held bytes to the rings' budget while the
    /// store fails (and releases the charge once it recovers), and gives the
    /// one drop warning of the episode.
    pub(super) fn settle_hold(&mut self) {
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

    /// Recomputes `hold.failing` from the streams' own flags.
    pub(super) fn update_failing(&mut self) {
        self.hold.failing = self.hold.store_failing
            || self.logs_failing
            || self.params_failing
            || self.metrics.iter().flatten().any(|m| m.failing)
            || self.tracks.iter().flatten().any(|t| t.failing);
    }

    /// Records the outcome of a write (after `hold.failing` was updated): one
    /// warning when the store starts failing, one line when no stream fails
    /// any more.
    pub(super) fn note(&mut self, r: Result<(), String>) {
        match r {
            Ok(()) => {
                if self.hold.warned && !self.hold.failing {
                    let lost = match self.hold.episode_lost {
                        0 => String::new(),
                        n => format!(" ({n} record(s) logged while its buffer was full were lost)"),
                    };
                    self.say(format_args!(
                        "[ML-Dash] the store is writable again; buffered data was written{lost}"
                    ));
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
}

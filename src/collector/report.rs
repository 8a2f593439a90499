//! What the collector tells: the counts of a run (`Counts`), the report
//! close returns (`CloseReport`), and the warnings it gives while it runs.

use super::Collector;
use crate::record::kind;
use crate::sink::Sink;

/// Counts of records by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Log lines.
    pub logs: u64,
    /// Metric points.
    pub metrics: u64,
    /// Track entries.
    pub tracks: u64,
    /// Files.
    pub files: u64,
}

impl Counts {
    pub(super) fn any(&self) -> bool {
        self.total() > 0
    }

    /// All records, whatever their kind.
    pub fn total(&self) -> u64 {
        self.logs + self.metrics + self.tracks + self.files
    }

    pub(super) fn add_kind(&mut self, k: u8) {
        match k {
            kind::METRIC => self.metrics += 1,
            kind::LOG => self.logs += 1,
            _ => self.tracks += 1,
        }
    }
}

/// What closing a run did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CloseReport {
    /// Records written to the store over the run's life.
    pub stored: Counts,
    /// Records still buffered when close began (what the console report counts).
    pub pending_at_close: Counts,
    /// Records dropped under the lossy backpressure policy (0 by default).
    pub dropped: u64,
    /// Records that could not be written (the store kept failing), and files
    /// that were not stored (each one's warning says where its content is);
    /// each error is also printed as a warning. A file that was not stored is
    /// never in `stored`.
    pub unwritten: Counts,
    /// Records dropped while the store failed: the collector holds accepted
    /// data for a failing store up to half the memory budget, then drops what
    /// comes next (so logging calls never wait on a broken disk) and counts it
    /// here. Logged = stored + dropped + lost_to_store + unwritten, exactly.
    pub lost_to_store: Counts,
    /// Errors met while writing, most recent last.
    pub errors: Vec<String>,
    /// Every warning the collector gave (also printed unless `quiet`).
    pub warnings: Vec<String>,
    /// A background thread of the store died (the remote sender): close fails.
    pub(crate) dead_thread: Option<String>,
}

impl<S: Sink> Collector<S> {
    /// Gives the store's repair warnings (a torn tail cut when a stream was
    /// opened, a stale counter fixed).
    pub(super) fn store_warnings(&mut self) {
        for w in self.store.take_warnings() {
            self.warn(w);
        }
    }

    /// Prints a warning (unless `quiet`) and keeps it for the close report.
    pub(super) fn warn(&mut self, msg: String) {
        if !self.core.cfg.quiet {
            eprintln!("[ML-Dash] warning: {msg}");
        }
        self.report.warnings.push(msg);
    }
}

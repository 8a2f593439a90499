//! What the collector tells: the counts of a run (`Counts`), the report
//! close returns (`CloseReport`, whose `Display` is the console report the
//! collector thread prints after close), and the warnings it gives while it
//! runs.

use std::fmt;
use std::path::PathBuf;

use super::Collector;
use crate::record::kind;
use crate::sink::Sink;

/// Counts of records by kind.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.log("one")?;
/// run.metrics("train")?.log(&ml_dash::point! {"loss" => 0.5})?;
/// let stored = run.complete()?.stored;
/// assert_eq!((stored.logs, stored.metrics, stored.tracks, stored.files), (1, 1, 0, 0));
/// # Ok::<(), ml_dash::Error>(())
/// ```
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
    ///
    /// # Examples
    /// ```
    /// let c = ml_dash::Counts { logs: 2, metrics: 3, tracks: 0, files: 1 };
    /// assert_eq!(c.total(), 6);
    /// ```
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
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.metrics("train")?.log(&ml_dash::point! {"loss" => 0.5})?;
/// let report = run.complete()?;
/// assert_eq!(report.status, Some(ml_dash::Status::Completed));
/// assert_eq!(report.stored.metrics, 1);
/// assert_eq!((report.dropped, report.unwritten.total(), report.lost_to_store.total()), (0, 0, 0));
/// assert!(report.errors.is_empty());
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CloseReport {
    /// The status close gave the run (`None`: a run that records nothing,
    /// [`Run::noop`](crate::Run::noop) or a rank in `RankMode::Rank0`).
    pub status: Option<crate::Status>,
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
    /// Where the store is, as the console lines name it.
    pub(crate) location: PathBuf,
    /// The remote sink's closing line: what was sent, what is still spooled
    /// and how to send it.
    pub(crate) server: Option<String>,
}

/// The console report of close, one line each (every line ends with a
/// newline; nothing when nothing was buffered at close and nothing was lost):
/// what was still buffered, the server's line in remote mode, then whether
/// everything was written, what was lost to a failing store and what the
/// lossy policy dropped. The collector thread prints it to stderr after close
/// unless `quiet`.
///
/// # Examples
/// ```
/// use ml_dash::{BufferConfig, Experiment};
/// let root = tempfile::tempdir().unwrap();
/// let mut cfg = BufferConfig::default();
/// cfg.quiet = true;
/// let run = Experiment::new("alice/mnist/report")
///     .dash_root(root.path())
///     .buffer_config(cfg)
///     .run()?;
/// run.log("done")?;
/// let report = run.complete()?;
/// // What close would have printed without `quiet`.
/// assert!(report.to_string().lines().all(|l| l.starts_with("[ML-Dash]")));
/// # Ok::<(), ml_dash::Error>(())
/// ```
/// The console report: [`CloseReport::opening`], then
/// [`CloseReport::outcome`] (nothing for a clean close with nothing left).
impl fmt::Display for CloseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.opening(), self.outcome())
    }
}

impl CloseReport {
    /// The report's first lines, which the collector prints as close begins
    /// (what it still has to write; nothing when that is nothing).
    ///
    /// # Examples
    /// ```
    /// // Nothing was buffered at close: no opening lines.
    /// let report = ml_dash::CloseReport::default();
    /// assert_eq!(report.opening().to_string(), "");
    /// ```
    pub fn opening(&self) -> impl fmt::Display + '_ {
        Opening(self)
    }

    /// The rest, printed when close has ended: the server's line, what was
    /// or was not written, losses.
    ///
    /// # Examples
    /// ```
    /// // A clean close with nothing left: nothing to say.
    /// let report = ml_dash::CloseReport::default();
    /// assert_eq!(report.outcome().to_string(), "");
    /// assert_eq!(report.to_string(), format!("{}{}", report.opening(), report.outcome()));
    /// ```
    pub fn outcome(&self) -> impl fmt::Display + '_ {
        Outcome(self)
    }
}

struct Opening<'a>(&'a CloseReport);

impl fmt::Display for Opening<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending = self.0.pending_at_close;
        if pending.any() {
            writeln!(f, "[ML-Dash] Flushing buffered data...")?;
            writeln!(
                f,
                "[ML-Dash]   - {} log(s), {} metric(s), {} track(s), {} file(s)",
                pending.logs, pending.metrics, pending.tracks, pending.files
            )?;
        }
        if pending.files > 0 {
            writeln!(f, "[ML-Dash]   Uploading {} file(s)...", pending.files)?;
        }
        Ok(())
    }
}

struct Outcome<'a>(&'a CloseReport);

impl fmt::Display for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let (pending, u, l) = (r.pending_at_close, r.unwritten, r.lost_to_store);
        if let Some(line) = &r.server {
            writeln!(f, "{line}")?;
        }
        if u.any() {
            writeln!(
                f,
                "[ML-Dash] error: {} log(s), {} metric(s), {} track(s), {} file(s) could not \
                 be written to {}: {}",
                u.logs,
                u.metrics,
                u.tracks,
                u.files,
                r.location.display(),
                r.errors.last().map_or("", String::as_str)
            )?;
        } else if pending.any() {
            writeln!(f, "[ML-Dash] All data flushed successfully")?;
        }
        if l.any() {
            writeln!(
                f,
                "[ML-Dash] warning: {} log(s), {} metric(s), {} track(s) were lost because \
                 {} could not be written and the collector's buffer for it was full \
                 (lost_to_store)",
                l.logs,
                l.metrics,
                l.tracks,
                r.location.display(),
            )?;
        }
        if r.dropped > 0 {
            writeln!(
                f,
                "[ML-Dash] warning: {} record(s) were dropped by the lossy backpressure policy",
                r.dropped
            )?;
        }
        Ok(())
    }
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
        self.say(format_args!("[ML-Dash] warning: {msg}"));
        self.report.warnings.push(msg);
    }

    /// Prints one line to stderr unless `quiet`: the collector's only console
    /// output while it runs (warnings, the recovery line), given as it
    /// happens; what close has to say is in the report (`Display`).
    pub(super) fn say(&self, line: fmt::Arguments<'_>) {
        self.say_lines(format_args!("{line}\n"));
    }

    /// [`Collector::say`] for text that ends its own lines.
    pub(super) fn say_lines(&self, text: fmt::Arguments<'_>) {
        if !self.core.cfg.quiet {
            eprint!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(logs: u64, metrics: u64, tracks: u64, files: u64) -> Counts {
        Counts {
            logs,
            metrics,
            tracks,
            files,
        }
    }

    #[test]
    fn a_report_with_pending_items_renders_the_flush_block() {
        let report = CloseReport {
            stored: counts(1, 300, 3, 2),
            pending_at_close: counts(1, 300, 3, 2),
            location: PathBuf::from("/runs/.dash/alice/mnist/baseline"),
            server: Some(
                "[ML-Dash] server: 2 batch(es) sent (304 item(s)), 0 still spooled".into(),
            ),
            ..CloseReport::default()
        };
        assert_eq!(
            report.to_string(),
            "[ML-Dash] Flushing buffered data...\n\
             [ML-Dash]   - 1 log(s), 300 metric(s), 3 track(s), 2 file(s)\n\
             [ML-Dash]   Uploading 2 file(s)...\n\
             [ML-Dash] server: 2 batch(es) sent (304 item(s)), 0 still spooled\n\
             [ML-Dash] All data flushed successfully\n"
        );
    }

    #[test]
    fn a_clean_report_renders_nothing() {
        let report = CloseReport {
            stored: counts(10, 5000, 0, 1),
            location: PathBuf::from("/runs/.dash/alice/mnist/baseline"),
            ..CloseReport::default()
        };
        assert_eq!(report.to_string(), "");
    }

    #[test]
    fn a_report_names_what_was_not_written_lost_or_dropped() {
        let report = CloseReport {
            pending_at_close: counts(2, 40, 0, 1),
            unwritten: counts(2, 40, 0, 1),
            lost_to_store: counts(7, 1200, 3, 0),
            dropped: 9,
            errors: vec!["logs: No space left on device (os error 28)".into()],
            location: PathBuf::from("/full/.dash/a/b/c"),
            ..CloseReport::default()
        };
        assert_eq!(
            report.to_string(),
            "[ML-Dash] Flushing buffered data...\n\
             [ML-Dash]   - 2 log(s), 40 metric(s), 0 track(s), 1 file(s)\n\
             [ML-Dash]   Uploading 1 file(s)...\n\
             [ML-Dash] error: 2 log(s), 40 metric(s), 0 track(s), 1 file(s) could not be \
             written to /full/.dash/a/b/c: logs: No space left on device (os error 28)\n\
             [ML-Dash] warning: 7 log(s), 1200 metric(s), 3 track(s) were lost because \
             /full/.dash/a/b/c could not be written and the collector's buffer for it was \
             full (lost_to_store)\n\
             [ML-Dash] warning: 9 record(s) were dropped by the lossy backpressure policy\n"
        );
    }
}

//! One place wires a run: the collector thread that drains the run's core
//! into a sink (handing stored files to the upload pool), and the close
//! sequence. [`Experiment::run`](crate::Experiment::run) and the loom harness
//! (`__loom::start`) both call it, so the models drive the code users run.
//!
//! ```text
//!  producers --push--> RunCore (rings, epochs) --drain--> Collector --> Sink
//!                         ^                                   |
//!  Pipeline::close:  mark closed, Control::Close, wake ----- join -> CloseReport
//! ```

use std::sync::Arc;

use crate::api::Status;
use crate::collector::{CloseReport, Collector};
use crate::error::{Error, Result};
use crate::files::Pool;
use crate::run::{Control, RunCore};
use crate::sink::Sink;
use crate::sync::{mpsc, thread};

/// A run's collector thread, until close takes it.
#[derive(Debug)]
pub(crate) struct Pipeline {
    collector: Option<thread::JoinHandle<CloseReport>>,
}

/// Marks the collector gone however its thread ends (a panic included), so
/// no waiter hangs.
struct ExitGuard(Arc<RunCore>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.collector_exited();
    }
}

impl Pipeline {
    /// Starts the collector of `core` on a thread of its own, writing to
    /// `store` and, with a `pool`, uploading files through it. The thread
    /// prints the close report's outcome unless the run is quiet (its
    /// opening lines print as close begins), so that a close by the signal
    /// watcher, which nobody joins, prints it too.
    pub(crate) fn start<S: Sink + Send + 'static>(
        core: &Arc<RunCore>,
        rx: mpsc::Receiver<Control>,
        store: S,
        pool: Option<Pool>,
    ) -> Result<Pipeline> {
        let mut collector = Collector::new(core.clone(), rx, store);
        if let Some(pool) = pool {
            collector = collector.with_files(pool);
        }
        let done = core.clone();
        let quiet = core.cfg.quiet;
        let handle = thread::Builder::new()
            .name(format!("ml-dash-collector-{}", core.id))
            .spawn(move || {
                let _exit = ExitGuard(done);
                let report = collector.run();
                if !quiet {
                    eprint!("{}", report.outcome());
                }
                report
            })
            .map_err(|e| Error::Collector(format!("could not start it: {e}")))?;
        let _ = core.collector.set(handle.thread().clone());
        Ok(Pipeline {
            collector: Some(handle),
        })
    }

    /// A run that records nothing: no thread.
    pub(crate) fn none() -> Pipeline {
        Pipeline { collector: None }
    }

    /// Whether close has not run yet (and there is a collector).
    pub(crate) fn is_open(&self) -> bool {
        self.collector.is_some()
    }

    /// Closes the run as `status`: marks the core closed (later calls are
    /// refused), asks the collector to drain and close, wakes it, and waits
    /// for its report. `Err(Closed)` once closed; `Err(Forked)` in a fork's
    /// child, which leaves the parent's collector as it is.
    pub(crate) fn close(&mut self, core: &RunCore, status: Status) -> Result<CloseReport> {
        let Some(handle) = self.collector.take() else {
            return Err(Error::Closed);
        };
        if let Err(e) = core.check_owner() {
            // The collector is a thread of the parent; there is nothing here
            // to join or detach, and its state (the join handle) is not ours.
            std::mem::forget(handle);
            return Err(e);
        }
        request_close(core, status);
        handle
            .join()
            .map_err(|_| Error::Collector("it panicked; see the message above".into()))
    }
}

/// Asks the collector of `core` to close the run as `status`, without
/// waiting: marks the core closed (later calls are refused), sends
/// `Control::Close` and wakes the collector. Returns whether this call closed
/// it (false: an earlier one did, and its status stands).
pub(crate) fn request_close(core: &RunCore, status: Status) -> bool {
    let first = core.mark_closed();
    if first {
        core.send(Control::Close { status });
        core.wake_collector();
    }
    first
}

//! # ml-dash: the buffering core of the ML-Dash experiment tracker
//!
//! Record every step of a training loop, every data-loader thread and every
//! benchmark iteration at the cost of a store into L1 cache, and never lose it.
//!
//! ```text
//!  producer threads                      collector thread (one per run)        store
//!  ----------------                      ------------------------------        -----
//!  metrics("train").log(..) --encode--> [SPSC byte ring per thread] --+
//!  log(..) / tracks(..).append(..)       (rtrb; registered once)       |  sweep on: tick, batch
//!  params().set(..)                                                    |  threshold, flush(), close,
//!                                                                      v  flush_interval
//!                                        decode -> JSON objects per stream -> .dash/<prefix>/...
//! ```
//!
//! ## Quickstart
//!
//! ```
//! use ml_dash::{Experiment, point};
//! # let dir = tempfile::tempdir().unwrap();
//! // A run in the local store (`.dash/` unless told otherwise; here a temp dir).
//! let run = Experiment::new("alice/mnist/quickstart").dash_root(dir.path()).run()?;
//! run.params().set(serde_json::json!({"lr": 0.001, "batch_size": 64}))?;
//! let train = run.metrics("train")?;
//! for step in 0..100u64 {
//!     train.log(&point! {"loss" => 1.0 / (1 + step) as f64, "step" => step})?;
//! }
//! run.log("done")?;
//! run.flush()?; // everything above is in the store now
//! let stream = ml_dash::read::metric_stream(run.dir(), Some("train"));
//! assert_eq!(ml_dash::read::Lines::open(stream.data())?.count(), 100);
//! run.complete()?;
//! # Ok::<(), ml_dash::Error>(())
//! ```
//!
//! ## Guarantees
//! - **Hot path**: no lock, no allocation, no system call after a thread's first
//!   call into a run. A record is the raw values (and field names) copied into
//!   the thread's own ring; JSON is written by the collector.
//! - **Flush**: [`Run::flush`] returns when everything logged before it (by any
//!   thread whose call happens-before it) is in the store. Epoch counters, no mutex.
//! - **Close**: [`Run::complete`] (or dropping the [`Run`]) drains everything,
//!   writes the final status, and prints the ML-Dash close report to stderr
//!   when anything was still buffered.
//! - **Backpressure**: a full ring grows (a larger ring chained after it, drained
//!   in order) up to [`BufferConfig::memory_budget`]; then the producer waits.
//!   [`Backpressure::DropNewest`] is the opt-in lossy policy, with exact counters.
//! - **Timestamps**: `_ts` comes from a process-wide clock word that a small
//!   clock thread refreshes every 200 µs while producers use it (a relaxed load
//!   on the hot path); when idle the word is marked stale and the producer
//!   reads the system clock instead, so `_ts` is within 1 ms of the call unless
//!   the machine starves that thread of CPU for longer.
//! - **Fork**: a run belongs to the process that opened it; in the child of a
//!   `fork()` its calls return [`Error::Forked`] at once (no hang) and dropping
//!   it is silent. The child may open runs of its own.
//! - **Many processes**: a rank of a torchrun / SLURM job records as
//!   [`RankMode`] says (only rank 0 by default; a run per rank; or one shared
//!   experiment whose points carry their rank); [`Experiment::handle_signals`]
//!   closes runs on SIGTERM / SIGINT before the signal takes its course.
//! - **Errors**: bad input is a typed [`Error`]; nothing already accepted is lost
//!   by it. No panic crosses the API; the collector survives store errors and
//!   retries them.

// `unsafe` is allowed in the modules `ring` (the record stores, the `Fill`
// contract, rtrb's commits, the hot path's ring pointer), `os` (libc calls std
// has no safe form of), `signals::linux` (the signal handler), `sync::asym`
// (membarrier) and `sink::local` (getrlimit, gethostname), and on the items
// `fork::register` (pthread_atfork), `clock::thread_handle` and three in
// `record` (`Fill` for the encoder, a UTF-8 shortcut, a test's read).
#![deny(missing_docs, unsafe_code, unsafe_op_in_unsafe_fn)]
#![warn(
    clippy::undocumented_unsafe_blocks,
    missing_debug_implementations,
    unreachable_pub
)]

mod api;
mod clock;
mod collector;
pub mod config;
mod encode;
mod error;
mod files;
mod fork;
#[allow(unsafe_code)]
mod os;
mod pipeline;
pub mod ranks;
pub mod read;
mod record;
mod remote;
#[allow(unsafe_code)]
mod ring;
mod run;
mod signals;
mod sink;
mod spool;
mod sync;

// The bridges (README "Bridges").
#[cfg(feature = "log")]
pub mod log;
#[cfg(feature = "tracing")]
pub mod tracing;

/// The remote sink's pieces for `tests/sink_remote_*` (not a public API).
#[doc(hidden)]
pub use remote::testing as __remote_testing;

/// Fault injection (fsync EIO) for `tests/disk_faults.rs` (not a public API).
#[doc(hidden)]
pub mod __fault;

/// Internal doors for the loom models in `loom-tests/` (only under
/// `--cfg ml_dash_loom`; never part of a normal build).
#[cfg(ml_dash_loom)]
#[doc(hidden)]
pub mod __loom;
// The same doors for the engine's own unit tests (std threads, in-memory sink).
#[cfg(all(test, not(ml_dash_loom)))]
mod __loom;

pub use api::{
    DEFAULT_DASH_ROOT, Experiment, Files, Logger, MetricInfo, Metrics, Params, Run, Status, Track,
    remote_work_dir, validate_prefix,
};
pub use collector::{CloseReport, Counts};
pub use config::{Backpressure, BufferConfig};

pub use error::{Error, Result};
pub use files::{FileInfo, Image};
pub use ranks::{RankMode, Ranks};
pub use record::{Fields, Level, Value};
pub use remote::{
    RemoteConfig, RemoteReport, SYNC_DIR, SpooledRun, Stats as RemoteStats, SyncOptions,
    UndeliverableSession, spool_run, spool_run_part, sync,
};
pub use signals::{
    DEFAULT_SIGNAL_DEADLINE, ENV_HANDLE_SIGNALS, ENV_SIGNAL_DEADLINE, HandleSignals,
};

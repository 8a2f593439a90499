//! One run's shared state: what its handles, its producer threads and its
//! collector share.
//!
//! - [`state`]: [`RunCore`] (the closed flag, the configuration, the
//!   collector's handle, the budget counters) and [`Control`], the messages
//!   into the collector;
//! - [`streams`]: the registry of stream names and ids;
//! - [`epochs`]: the flush epochs and the flusher's wait (the collector's half
//!   is `crate::collector::epoch`).
//!
//! A producer's push into its thread's ring is `crate::ring::producer` (which
//! also holds the run's synchronization table); `crate::pipeline` starts and
//! closes a run's collector.

mod epochs;
mod state;
mod streams;

pub(crate) use state::{Control, RunCore};
pub(crate) use streams::{StreamInfo, StreamKind};

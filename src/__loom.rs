//! What the loom models in `loom-tests/` drive: compiled under
//! `--cfg ml_dash_loom` (hidden, not an API), and for the crate's own unit
//! tests (private); absent from normal builds.
//!
//! Everything here is a thin door onto the real code: [`start`] builds a
//! [`RunCore`] and starts the run's pipeline as `Experiment::run` does
//! (`crate::pipeline`: the real collector loop, on a loom thread, writing to
//! the in-memory sink); [`Handle::log`] is `RunCore::push` (thread-local
//! ring, registration, the `in_push` barrier, growth, the nudge);
//! [`Handle::flush`] is `RunCore::flush`; [`Run::close`] is
//! `Pipeline::close`, the public `Run::close`'s sequence (mark closed, send
//! `Close`, wake, join).

#![allow(missing_docs, missing_debug_implementations, unreachable_pub)]
// The unit tests use a part of it.
#![cfg_attr(not(ml_dash_loom), allow(dead_code))]

use std::sync::Arc;

use crate::api::Status;
use crate::collector::CloseReport;
use crate::config::BufferConfig;
use crate::error::Result;
use crate::pipeline::Pipeline;
use crate::record::{Head, Level, kind};
use crate::run::RunCore;
use crate::sink::memory::{MemoryData, MemorySink};

/// A run whose collector writes to an in-memory sink.
pub struct Run {
    core: Arc<RunCore>,
    pipeline: Pipeline,
    sink: MemorySink,
}

/// Starts a run: its core, and its collector on a new (loom) thread.
pub fn start(cfg: BufferConfig) -> Run {
    let (core, rx) = RunCore::new(cfg);
    let sink = MemorySink::new();
    let pipeline = Pipeline::start(&core, rx, sink.clone(), None).expect("loom spawns never fail");
    Run {
        core,
        pipeline,
        sink,
    }
}

impl Run {
    /// A handle for producer threads.
    pub fn handle(&self) -> Handle {
        Handle(self.core.clone())
    }

    /// The sink's view for assertions.
    pub fn sink(&self) -> Sink {
        Sink(self.sink.clone())
    }

    /// Closes as the public `Run::close` does; a second call is `Err(Closed)`.
    /// (The close report is what the collector returned.)
    pub fn close(&mut self) -> Result<CloseReport> {
        self.pipeline.close(&self.core, Status::Completed)
    }
}

/// A producer's (or flusher's) view of the run; cheap to clone.
#[derive(Clone)]
pub struct Handle(Arc<RunCore>);

impl Handle {
    /// Logs `message` at info through the real hot path (fixed timestamp).
    pub fn log(&self, message: &str) -> Result<()> {
        let head = Head {
            kind: kind::LOG,
            aux: Level::Info.to_u8(),
            stream: 0,
            ts: 0,
        };
        self.0.push(head, message.as_bytes(), &[])
    }

    /// `RunCore::flush`.
    pub fn flush(&self) -> Result<()> {
        self.0.flush()
    }

    /// Closes the run from this thread: marks it closed and asks the collector
    /// to close (it does not wait; [`Run::close`] joins). Returns whether this
    /// call was the one that closed it.
    pub fn request_close(&self) -> bool {
        crate::pipeline::request_close(&self.0, Status::Completed)
    }

    /// Bytes of ring memory the run holds.
    pub fn ring_bytes(&self) -> usize {
        self.0.ring_bytes.load(crate::sync::Ordering::Relaxed)
    }
}

/// What reached the in-memory sink.
#[derive(Clone)]
pub struct Sink(MemorySink);

impl Sink {
    /// Log messages in arrival order.
    pub fn messages(&self) -> Vec<String> {
        self.0.snapshot().log_messages()
    }

    /// Blocks (on the sink's condition variable) until `n` log entries arrived.
    pub fn wait_for_messages(&self, n: usize) -> Vec<String> {
        self.0
            .wait_until(|d: &MemoryData| d.logs.len() >= n)
            .log_messages()
    }

    /// The final status, once closed.
    pub fn status(&self) -> Option<Status> {
        self.0.snapshot().status
    }

    /// Makes the sink's writes fail (or succeed again).
    pub fn set_failing(&self, failing: bool) {
        self.0.set_failing(failing);
    }
}

/// The ring alone: the loom-visible model with the rtrb wrapper's contract.
pub mod ring {
    use std::mem::MaybeUninit;

    use crate::ring::{self, RingConsumer, RingProducer};

    pub struct Producer(RingProducer);
    pub struct Consumer(RingConsumer);

    /// A ring of `capacity` bytes (rounded up to a multiple of 8, at least 64).
    pub fn channel(capacity: usize) -> (Producer, Consumer) {
        let (p, c) = ring::channel(capacity);
        (Producer(p), Consumer(c))
    }

    impl Producer {
        /// Writes one record of `len` bytes (a multiple of 8, at least 16): its
        /// length, kind 1, then `tag` in every other byte. `false` when full.
        pub fn try_write(&mut self, len: usize, tag: u8) -> bool {
            assert!(len >= 16 && len.is_multiple_of(8));
            self.0.try_write(
                len,
                &mut crate::ring::Zeroed(|out: &mut [MaybeUninit<u8>]| {
                    assert_eq!(out.len(), len);
                    for (i, b) in out.iter_mut().enumerate() {
                        b.write(match i {
                            0..4 => (len as u32).to_le_bytes()[i],
                            4 => 1,
                            _ => tag,
                        });
                    }
                }),
            )
        }

        pub fn capacity(&self) -> usize {
            self.0.capacity()
        }
    }

    impl Consumer {
        /// Drains every published record; returns (length, tag) of each after
        /// checking that all its bytes carry the tag.
        pub fn drain(&mut self) -> Vec<(usize, u8)> {
            let mut out = Vec::new();
            self.0.drain(|r| {
                let tag = r[8];
                assert!(r[5..].iter().all(|&b| b == tag), "torn record {r:?}");
                out.push((r.len(), tag));
            });
            out
        }

        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }
}

//! The coarse wall clock of the hot path: one process-wide word of nanoseconds
//! since the Unix epoch, refreshed every 200 µs by a small clock thread while
//! producers use it. Reading it is one relaxed load (about the cost of an L1
//! hit), against ≈ 26 ns for `SystemTime::now()` here.
//!
//! When no producer has asked for the time for 50 ms, the thread stores `0`
//! (stale) and parks. A producer that reads `0` takes the system clock itself
//! and wakes the thread (at most one unpark per idle period), so the first
//! point after a pause is exact and the following ones are fresh again.
//!
//! The thread does nothing else: no I/O, no locks, so its word is as fresh as
//! the scheduler lets a sleeping thread be (well under 1 ms unless the machine
//! is starved of CPU). It is not part of the loom models (no real time there).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::encode::now_nanos;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

/// Refresh period while active.
const TICK: Duration = Duration::from_micros(200);
/// How long the thread ticks after its last wake-up before going idle.
const ACTIVE_FOR: Duration = Duration::from_millis(50);

static WORD: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static SLEEPING: AtomicBool = AtomicBool::new(true);
static THREAD: OnceLock<Option<thread::Thread>> = OnceLock::new();

/// Now, in nanoseconds since the Unix epoch, within a tick of the truth.
#[inline(always)]
pub(crate) fn now() -> u64 {
    // Relaxed: the word is a self-contained value; nothing is published with it.
    let w = WORD.load(Ordering::Relaxed);
    if w != 0 { w } else { now_slow() }
}

#[cold]
#[inline(never)]
fn now_slow() -> u64 {
    let t = THREAD.get_or_init(start);
    // SeqCst pair with the clock thread's SeqCst store of SLEEPING: either we
    // see it asleep and wake it, or it sees our wake-up token in `park`.
    if SLEEPING.load(Ordering::Relaxed)
        && SLEEPING.swap(false, Ordering::SeqCst)
        && let Some(t) = t
    {
        t.unpark();
    }
    now_nanos()
}

fn start() -> Option<thread::Thread> {
    thread::Builder::new()
        .name("ml-dash-clock".into())
        .spawn(run)
        .ok()
        .map(|h| h.thread().clone())
}

fn run() {
    loop {
        let until = Instant::now() + ACTIVE_FOR;
        while Instant::now() < until {
            WORD.store(now_nanos(), Ordering::Relaxed);
            thread::park_timeout(TICK);
        }
        WORD.store(0, Ordering::Relaxed);
        SLEEPING.store(true, Ordering::SeqCst);
        // A producer that saw the stale word after this point unparks us; an
        // earlier one left a token, so `park` returns at once.
        thread::park();
        SLEEPING.store(false, Ordering::SeqCst);
    }
}

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
//!
//! The child of a `fork` has no clock thread and a frozen copy of the word:
//! [`reset_after_fork`] marks the word stale and forgets the thread, so the
//! child's first call starts its own.

use std::ptr;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::encode::now_nanos;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::thread;

/// Refresh period while active.
const TICK: Duration = Duration::from_micros(200);
/// How long the thread ticks after its last wake-up before going idle.
const ACTIVE_FOR: Duration = Duration::from_millis(50);

static WORD: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static SLEEPING: AtomicBool = AtomicBool::new(true);
/// The clock thread's handle, leaked (it lives as long as the process); null
/// before anyone started it, [`STARTING`] while one caller starts it (and for
/// good if the thread could not be spawned). Not a `OnceLock`: one that was
/// being initialised when the process forked would block the child for ever.
static THREAD: AtomicPtr<thread::Thread> = AtomicPtr::new(ptr::null_mut());
/// Never a handle's address: a handle is at least 8 bytes and aligned.
const STARTING: *mut thread::Thread = ptr::dangling_mut();

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
    let t = thread_handle();
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

/// The clock thread, started by the first caller; `None` while another
/// caller starts it (the caller then reads the system clock, as it would anyway).
#[allow(unsafe_code)] // the leaked handle's dereference
fn thread_handle() -> Option<&'static thread::Thread> {
    // Acquire: pairs with the Release store in `start` (the handle is complete).
    let mut p = THREAD.load(Ordering::Acquire);
    if p.is_null() {
        // Relaxed: the winner publishes the handle with the Release store.
        if THREAD
            .compare_exchange(p, STARTING, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        p = start();
    }
    if p == STARTING {
        return None;
    }
    // SAFETY: any other value is a handle leaked by `start`: never freed, and
    // published (Release/Acquire) after it was written.
    Some(unsafe { &*p })
}

fn start() -> *mut thread::Thread {
    let Ok(h) = thread::Builder::new()
        .name("ml-dash-clock".into())
        .spawn(run)
    else {
        return STARTING; // no thread: every caller reads the system clock
    };
    let p = Box::into_raw(Box::new(h.thread().clone()));
    // Release: pairs with the Acquire load in `thread_handle`.
    THREAD.store(p, Ordering::Release);
    p
}

/// The `fork` child handler's part (see `crate::fork`): the parent's clock
/// thread does not exist in the child. Atomic stores only: async-signal-safe.
#[cfg_attr(any(not(unix), ml_dash_loom), allow(dead_code))]
pub(crate) fn reset_after_fork() {
    // Relaxed: the child has one thread until it spawns more (spawn orders these).
    WORD.store(0, Ordering::Relaxed);
    SLEEPING.store(true, Ordering::Relaxed);
    THREAD.store(ptr::null_mut(), Ordering::Relaxed);
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

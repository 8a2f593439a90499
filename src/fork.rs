//! `fork()` and the engine: a run belongs to the process that opened it.
//!
//! The child of a `fork` (a Python DataLoader worker, `multiprocessing`) has
//! a copy of the parent's memory and only the thread that forked: no
//! collector, no clock thread, no upload workers, and every lock one of them
//! held stays held. So the child must not touch an inherited run's rings,
//! channels or locks at all. It tells an inherited run by the process-wide
//! fork *generation*: the `pthread_atfork` child handler below bumps it, and
//! every [`RunCore`](crate::run::RunCore) records the generation it was
//! created in; a run whose generation is not the current one is the parent's,
//! and each of its calls returns [`Error::Forked`](crate::Error::Forked)
//! before it reaches any shared state (no lock, no channel, no thread join,
//! no write into the parent's store).
//!
//! The hot path never reads the generation: the child handler clears the
//! forking thread's cached ring (the only thread-local state that survives
//! into the child), so the child's first call on an inherited run takes the
//! general path, which compares generations. The handler also resets the
//! process-wide clock (its thread is the parent's), so runs the child opens
//! itself start their own threads and work as in any process. (The
//! `membarrier` registration of the barrier pair is the kernel's, per address
//! space, and a fork's child keeps it.)
//!
//! Everything the handler does is an atomic store or a thread-local `Cell`
//! write: async-signal-safe, as a child handler must be.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bumped in each child of a fork; a run records the value it was opened in.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The child handler is registered in this process (or its parent).
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// The current fork generation.
#[inline]
pub(crate) fn generation() -> u64 {
    // Relaxed: only the child handler writes it, in the child, before fork()
    // returns there (one thread); later threads are ordered by their spawn.
    GENERATION.load(Ordering::Relaxed)
}

/// Registers the child handler; called before a run's generation is read.
///
/// Not a `std::sync::Once`: a `Once` that another thread was running when the
/// process forked stays "running" in the child for ever, and the child's
/// first run would wait on it. Two threads opening their first runs at once
/// may both register instead; the handler is idempotent (one more bump of
/// the generation changes nothing), so that costs one list entry in libc.
pub(crate) fn install() {
    // Acquire: pairs with the Release store below (the registration is done).
    if !REGISTERED.load(Ordering::Acquire) {
        register();
    }
}

#[cold]
#[inline(never)]
#[allow(unsafe_code)] // pthread_atfork
fn register() {
    #[cfg(all(unix, not(ml_dash_loom)))]
    {
        // SAFETY: `in_child` is an `extern "C" fn()` that lives for the
        // process and does only async-signal-safe work (atomic stores and a
        // thread-local `Cell` write); no prepare or parent handler.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            // ENOMEM only: leave REGISTERED false so the next run tries again.
            return;
        }
    }
    // Release: pairs with the Acquire load in `install`.
    REGISTERED.store(true, Ordering::Release);
}

/// The `pthread_atfork` child handler: runs in the child, in the thread that
/// forked (the only one there), before `fork()` returns.
#[cfg(all(unix, not(ml_dash_loom)))]
extern "C" fn in_child() {
    // Relaxed: see `generation`.
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::ring::producer::forget_hot_ring();
    crate::clock::reset_after_fork();
}

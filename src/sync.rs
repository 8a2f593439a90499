//! The only place that names atomics, fences, threads, parking, channels,
//! thread-locals, locks and the collector's clock.
//!
//! Under `--cfg ml_dash_loom` every item here is loom's model of it (or a
//! small loom-visible stand-in), so the loom suite in `loom-tests/` runs the
//! real protocol code of the ring hand-off, registration, the collector's
//! wake-up, the flush epochs, growth and shutdown. The engine's protocol code
//! (`ring`, `run`, `collector`, the sinks' hand-off) names none of those
//! itself. Outside the models, with their own std threads: `clock.rs` (real
//! time by nature), the file upload pool and the remote sender.
//!
//! Time in the models: there is none. [`park_timeout`] becomes a plain `park`
//! (the timeout never fires, so every wake-up must come from the protocol's
//! `unpark`, and a lost one is a deadlock loom reports), [`Backoff::wait`]
//! becomes `yield_now` (a poll with no wake-up partner), and [`Instant`] is a
//! frozen clock (timed flushes never fire).
//!
//! It also holds the asymmetric barrier pair used by the hot path (see
//! [`light_barrier`] and [`heavy_barrier`]).

use std::time::Duration;

#[cfg(all(test, not(ml_dash_loom)))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(ml_dash_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
    mpsc,
};
#[cfg(not(ml_dash_loom))]
pub(crate) use std::thread;
#[cfg(not(ml_dash_loom))]
pub(crate) use std::time::Instant;

#[cfg(ml_dash_loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(ml_dash_loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
};
#[cfg(ml_dash_loom)]
pub(crate) mod thread;

/// Declares a thread-local with a `const` initialiser (std: no lazy-init
/// check on access, which the hot path relies on; loom: loom's own
/// thread-local, which runs its destructor when the model thread ends).
macro_rules! const_thread_local {
    (static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(not(ml_dash_loom))]
        std::thread_local! { static $name: $t = const { $init }; }
        #[cfg(ml_dash_loom)]
        loom::thread_local! { static $name: $t = $init; }
    };
}
pub(crate) use const_thread_local;

/// Give up the processor in a wait loop (every spin loop calls this, so loom
/// knows the thread waits for another one).
#[inline]
pub(crate) fn yield_now() {
    thread::yield_now();
}

/// Parks the current thread until it is unparked, or at most `d` (std). Use it
/// only where the awaited event has an `unpark` partner: under loom the
/// timeout never fires, so a lost wake-up is a reported deadlock.
pub(crate) fn park_timeout(d: Duration) {
    #[cfg(not(ml_dash_loom))]
    thread::park_timeout(d);
    #[cfg(ml_dash_loom)]
    {
        let _ = d;
        thread::park();
    }
}

/// Spin, then yield, then sleep `d` at a time: the wait of a poll loop that
/// has no wake-up partner (a producer waiting for room in its ring).
#[derive(Debug)]
pub(crate) struct Backoff {
    #[cfg(not(ml_dash_loom))]
    inner: crossbeam_utils::Backoff,
    sleep: Duration,
}

impl Backoff {
    /// A backoff that ends up sleeping `sleep` per round.
    pub(crate) fn new(sleep: Duration) -> Backoff {
        Backoff {
            #[cfg(not(ml_dash_loom))]
            inner: crossbeam_utils::Backoff::new(),
            sleep,
        }
    }

    /// Waits one round.
    pub(crate) fn wait(&self) {
        #[cfg(not(ml_dash_loom))]
        if self.inner.is_completed() {
            thread::park_timeout(self.sleep);
        } else {
            self.inner.snooze();
        }
        #[cfg(ml_dash_loom)]
        {
            let _ = self.sleep;
            thread::yield_now();
        }
    }
}

/// A unique id per run (process-wide; not part of any protocol, so it stays a
/// std atomic in the models too: loom atomics cannot live in statics).
pub(crate) fn next_run_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Relaxed: a counter that only has to hand out distinct values.
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The collector's clock under loom: frozen, so timed flushes never fire and
/// every model execution is deterministic.
#[cfg(ml_dash_loom)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Instant;

#[cfg(ml_dash_loom)]
impl Instant {
    pub(crate) fn now() -> Instant {
        Instant
    }

    pub(crate) fn elapsed(&self) -> Duration {
        Duration::ZERO
    }
}

#[cfg(ml_dash_loom)]
pub(crate) mod mpsc {
    //! A loom-visible stand-in for `std::sync::mpsc` (unbounded, FIFO, many
    //! senders, one receiver). loom's own channel prints on every receive and
    //! panics on messages sent after the receiver is gone (a producer that
    //! retires its ring after close does exactly that), so this one has the
    //! std semantics: a send to a dropped receiver returns the message.
    //!
    //! Every send is an RMW on the queue length (Release), every receive an
    //! Acquire load of it, like the tail index of std's lock-free list
    //! channel; so a receive happens-after the send of its message, and an
    //! SC fence before `try_recv` orders it against an SC fence after a send.
    //! The queue itself is a std mutex that is never contended (loom runs one
    //! thread at a time, and no loom operation runs while it is held).

    use std::collections::VecDeque;
    use std::fmt;
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::AtomicBool as StdBool;

    use super::{AtomicUsize, Ordering};

    pub(crate) use std::sync::mpsc::{SendError, TryRecvError};

    struct Chan<T> {
        queue: StdMutex<VecDeque<T>>,
        len: AtomicUsize,
        receiver_gone: StdBool,
    }

    /// Sending half.
    pub(crate) struct Sender<T>(std::sync::Arc<Chan<T>>);
    /// Receiving half.
    pub(crate) struct Receiver<T>(std::sync::Arc<Chan<T>>);

    pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
        let c = std::sync::Arc::new(Chan {
            queue: StdMutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            receiver_gone: StdBool::new(false),
        });
        (Sender(c.clone()), Receiver(c))
    }

    impl<T> Sender<T> {
        pub(crate) fn send(&self, msg: T) -> Result<(), SendError<T>> {
            // Not a modelled access: loom runs one thread at a time, and a
            // send after the receiver left carries no data anyone reads.
            if self
                .0
                .receiver_gone
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return Err(SendError(msg));
            }
            // Release: pairs with the Acquire load in `try_recv`. The push
            // below runs in the same loom step (no loom operation between).
            self.0.len.fetch_add(1, Ordering::Release);
            self.0.queue.lock().unwrap().push_back(msg);
            Ok(())
        }
    }

    impl<T> Clone for Sender<T> {
        fn clone(&self) -> Self {
            Sender(self.0.clone())
        }
    }

    impl<T> Receiver<T> {
        pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
            // Acquire: pairs with the Release RMW in `send` (all of them form
            // one release sequence, so this also covers every earlier send).
            if self.0.len.load(Ordering::Acquire) == 0 {
                return Err(TryRecvError::Empty);
            }
            let msg = self.0.queue.lock().unwrap().pop_front();
            let msg = msg.expect("a counted message is queued");
            // Relaxed: only the receiver decrements; senders' RMWs order it.
            self.0.len.fetch_sub(1, Ordering::Relaxed);
            Ok(msg)
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            self.0
                .receiver_gone
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let rest = std::mem::take(&mut *self.0.queue.lock().unwrap());
            drop(rest);
        }
    }

    impl<T> fmt::Debug for Sender<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Sender { .. }")
        }
    }

    impl<T> fmt::Debug for Receiver<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Receiver { .. }")
        }
    }
}

#[cfg(not(ml_dash_loom))]
#[allow(unsafe_code)] // membarrier(2)
mod asym {
    use std::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const MEMBARRIER: u8 = 1;
    const FENCES: u8 = 2;

    /// Which barrier pair this process uses; decided once by [`init`].
    static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    /// Registers the process for expedited `membarrier` (Linux 4.14+), or falls
    /// back to full fences on both sides. Called before any producer exists.
    pub(crate) fn init() {
        if MODE.load(Ordering::Relaxed) != UNKNOWN {
            return;
        }
        let mode = if register() { MEMBARRIER } else { FENCES };
        // Relaxed: every thread that reads MODE got here through the run's
        // creation (a thread spawn or an Arc hand-off), which orders it.
        MODE.store(mode, Ordering::Relaxed);
    }

    #[cfg(target_os = "linux")]
    fn register() -> bool {
        if cfg!(miri) {
            return false; // Miri has no membarrier: use fences on both sides
        }
        // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                0,
            )
        };
        rc == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn register() -> bool {
        false
    }

    #[inline(always)]
    pub(crate) fn light() {
        if MODE.load(Ordering::Relaxed) == MEMBARRIER {
            // The heavy side's membarrier makes this a full fence whenever it matters.
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    pub(crate) fn heavy() {
        std::sync::atomic::fence(Ordering::SeqCst);
        if MODE.load(Ordering::Relaxed) == MEMBARRIER {
            #[cfg(target_os = "linux")]
            {
                // SAFETY: as in `register`; the process registered for this command.
                let rc = unsafe {
                    libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0)
                };
                assert_eq!(rc, 0, "membarrier failed after a successful registration");
            }
        }
    }
}

/// Prepare the asymmetric barrier (idempotent).
pub(crate) fn init_barriers() {
    #[cfg(not(ml_dash_loom))]
    asym::init();
}

/// The producer's half of a store-load barrier. With `membarrier` available it
/// is a compiler fence only (no instruction); its partner is [`heavy_barrier`]
/// in `collector::close`, which forces a full fence on every running thread.
/// Under loom it is an SC fence (what `membarrier` turns it into).
#[inline(always)]
pub(crate) fn light_barrier() {
    #[cfg(not(ml_dash_loom))]
    asym::light();
    #[cfg(ml_dash_loom)]
    fence(Ordering::SeqCst);
}

/// The closing side's half; pairs with [`light_barrier`] in the producer.
pub(crate) fn heavy_barrier() {
    #[cfg(not(ml_dash_loom))]
    asym::heavy();
    #[cfg(ml_dash_loom)]
    fence(Ordering::SeqCst);
}

/// `loom-tests/run.sh --mutants` passes `--cfg ml_dash_mutant="<name>"` to this
/// crate only (through a rustc wrapper, so the dependencies are built once);
/// reading the variable here makes cargo rebuild the crate when it changes.
#[cfg(ml_dash_loom)]
const _MUTANT: Option<&str> = option_env!("ML_DASH_MUTANT");

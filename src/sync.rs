//! The only place that names atomics, threads, channels and fences.
//!
//! Under `--cfg ml_dash_loom` every item here is loom's model of it, so the loom
//! suite in `loom-tests/` runs the real protocol code of the ring, the collector
//! hand-off, the flush epochs and shutdown. Nothing else in the crate imports
//! `std::sync::atomic`, `std::thread` or `std::sync::mpsc` directly.
//!
//! It also holds the asymmetric barrier pair used by the hot path (see
//! [`light_barrier`] and [`heavy_barrier`]).

#[cfg(not(ml_dash_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    mpsc,
};
#[cfg(not(ml_dash_loom))]
pub(crate) use std::thread;

#[cfg(ml_dash_loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
    mpsc,
};
#[cfg(ml_dash_loom)]
pub(crate) use loom::thread;

/// Give up the processor in a wait loop.
#[inline]
pub(crate) fn yield_now() {
    thread::yield_now();
}

#[cfg(not(ml_dash_loom))]
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

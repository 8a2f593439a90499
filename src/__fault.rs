//! Fault injection for `tests/disk_faults.rs` and `tests/config_limits.rs`
//! (hidden; not an API).
//!
//! Full disks and read-only folders are real in those tests (a small tmpfs,
//! filled or remounted read-only), but no filesystem here fails an fsync on
//! demand: device-mapper's `error` and `flakey` targets are not available to
//! tests. So every fsync of the local store and of the spool goes through
//! `sync_data` / `sync_all`, which fail with `EIO` while `fail_fsyncs`
//! has armed them. Disarmed, the cost is one relaxed load beside a system
//! call, on cold paths only (flush epochs, close, spool segment changes);
//! the logging hot path never reaches it.
//!
//! [`panic_once`](crate::__fault::panic_once) makes a background thread
//! panic (a stand-in for a bug), to show that the run reports it instead of
//! saying Ok: checked once per sender thread and once per file job, never on
//! the logging path.

use std::fs::File;
use std::io;
// A std atomic also under the loom cfg: loom atomics cannot live in statics,
// and no protocol runs through this counter.
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Fsyncs still to fail (`u64::MAX`: all, until disarmed).
static FAIL_FSYNCS: AtomicU64 = AtomicU64::new(0);

/// Makes the next `n` fsyncs of the engine (every run in this process) fail
/// with `EIO`; `u64::MAX` fails all of them until `fail_fsyncs(0)`.
pub fn fail_fsyncs(n: u64) {
    // Relaxed: a switch that tests set between steps they order themselves
    // (a flush's acknowledgement), not a publication.
    FAIL_FSYNCS.store(n, Ordering::Relaxed);
}

/// Fsyncs still armed to fail.
pub fn armed() -> u64 {
    FAIL_FSYNCS.load(Ordering::Relaxed) // Relaxed: see `fail_fsyncs`
}

fn injected() -> io::Result<()> {
    // Relaxed: see `fail_fsyncs`; the RMW alone makes each failure counted once.
    if FAIL_FSYNCS.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let took = FAIL_FSYNCS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| match n {
        0 => None,
        u64::MAX => Some(u64::MAX),
        n => Some(n - 1),
    });
    match took {
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EIO)),
        Err(_) => Ok(()),
    }
}

/// `file.sync_data()`, or the injected `EIO`.
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    injected()?;
    file.sync_data()
}

/// `file.sync_all()`, or the injected `EIO`.
pub(crate) fn sync_all(file: &File) -> io::Result<()> {
    injected()?;
    file.sync_all()
}

/// Where [`panic_once`] can make a thread panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PanicAt {
    /// The remote sink's sender thread, as it starts.
    Sender = 1,
    /// An upload worker, as it takes its next file.
    Upload = 2,
}

/// Armed panic points, one bit per [`PanicAt`].
static PANICS: AtomicU8 = AtomicU8::new(0);

/// Makes the next thread that passes `at` (in any run of this process) panic, once.
pub fn panic_once(at: PanicAt) {
    // Relaxed: see `fail_fsyncs`.
    PANICS.fetch_or(at as u8, Ordering::Relaxed);
}

/// Panics if `at` is armed (and disarms it).
pub(crate) fn panic_point(at: PanicAt) {
    let bit = at as u8;
    // Relaxed: see `fail_fsyncs`; the RMW makes the panic happen once.
    if PANICS.load(Ordering::Relaxed) & bit != 0
        && PANICS.fetch_and(!bit, Ordering::Relaxed) & bit != 0
    {
        panic!("injected panic at {at:?} (ml_dash::__fault::panic_once)");
    }
}

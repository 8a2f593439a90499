//! Fault injection for `tests/disk_faults.rs` (hidden; not an API).
//!
//! Full disks and read-only folders are real in those tests (a small tmpfs,
//! filled or remounted read-only), but no filesystem here fails an fsync on
//! demand: device-mapper's `error` and `flakey` targets are not available to
//! tests. So every fsync of the local store and of the spool goes through
//! `sync_data` / `sync_all`, which fail with `EIO` while `fail_fsyncs`
//! has armed them. Disarmed, the cost is one relaxed load beside a system
//! call, on cold paths only (flush epochs, close, spool segment changes);
//! the logging hot path never reaches it.

use std::fs::File;
use std::io;
// A std atomic also under the loom cfg: loom atomics cannot live in statics,
// and no protocol runs through this counter.
use std::sync::atomic::{AtomicU64, Ordering};

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

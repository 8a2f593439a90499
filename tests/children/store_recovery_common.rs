//! What `tests/store_recovery.rs` and its children
//! (`tests/children/store_recovery.rs`) share. The test includes this file
//! with `#[path]`; the helper program as a module.

/// The experiment of the kill test.
pub const PREFIX: &str = "alice/proj/kill";
/// Threads logging in the kill test's child.
pub const THREADS: i64 = 4;
/// The descriptor limit the names test's child starts under.
pub const NAMES_LIMIT: u64 = 256;

/// A track row's timestamp: unique per (run, thread, i).
pub fn track_ts(r: i64, t: i64, i: i64) -> f64 {
    ((r * THREADS + t) * 10_000_000 + i) as f64
}

/// Streams of the names test that get a second point, after a flush (their
/// files were closed in between: the reopen path). Not all of them: each
/// second batch replaces a `metadata.json`, and a burst of 100 000 deleted
/// inodes makes file creation slow on some file systems (ext4 without a
/// journal scans recently deleted inodes on every allocation).
pub fn second_point(k: usize) -> bool {
    k.is_multiple_of(10)
}

//! Helpers for driving the remote sink against the server: a config and
//! sync options with fast retries, metric points and their census, the
//! session lock, the process's peak memory.

use std::collections::HashMap;
use std::os::unix::io::AsRawFd;
use std::time::Duration;

use ml_dash::__remote_testing as rt;
use serde_json::Value;

/// The test token.
pub const TOKEN: &str = "test-token";

/// A sink config for `server`: fast retries, quiet, explicit token.
pub fn config(url: &str, prefix: &str, spool_dir: &std::path::Path) -> rt::RemoteConfig {
    let mut c = rt::RemoteConfig::new(url, prefix, spool_dir);
    c.token = Some(TOKEN.into());
    c.retry_base_delay = Duration::from_millis(1);
    c.retry_max_delay = Duration::from_millis(20);
    c.request_timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c.quiet = true;
    c
}

/// Options of a replay against `url`.
pub fn sync_options(url: &str) -> rt::SyncOptions {
    let mut o = rt::SyncOptions::default();
    o.dash_url = Some(url.into());
    o.token = Some(TOKEN.into());
    o.retry_base_delay = Duration::from_millis(1);
    o.retry_max_delay = Duration::from_millis(20);
    o.request_timeout = Duration::from_secs(5);
    o.deadline = Duration::from_secs(60);
    o.quiet = true;
    o
}

/// `n` metric points `{"i":k,"t":tag,"_ts":…}` for k in `from..from+n`.
pub fn points(tag: u32, from: u64, n: u64) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("{{\"i\":{i},\"t\":{tag},\"_ts\":{}.5}}", 1_795_817_645 + i).into_bytes())
        .collect()
}

/// Slices of `v` for an `append_*` call.
pub fn refs(v: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> {
    v.iter().map(Vec::as_slice)
}

/// `(t, i)` of stored points, with how many times each is there.
pub fn census(points: &[Value]) -> HashMap<(u64, u64), u32> {
    let mut m = HashMap::new();
    for p in points {
        let key = (
            p["t"].as_u64().unwrap_or(u64::MAX),
            p["i"].as_u64().unwrap_or(u64::MAX),
        );
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// Blocks until no one holds the session's lock (a sender left running by a
/// close that timed out lets go of it when its request ends).
pub fn wait_unlocked(session_dir: &std::path::Path) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(session_dir.join("lock"));
    if let Ok(f) = f {
        // SAFETY: flock on a file we own; blocks until the holder lets go.
        unsafe {
            libc::flock(f.as_raw_fd(), libc::LOCK_EX);
            libc::flock(f.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Peak resident size of this process (KiB), from /proc (0 where there is none).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

//! Buffer settings: each one an `ENV_*` name and a `DEFAULT_*` value, read from
//! the environment by [`BufferConfig::from_env`] and overridden in code.
//!
//! Depends on nothing but `crate::error`.

use std::time::Duration;

use crate::error::{Error, Result};

/// `ML_DASH_BUFFER_ENABLED`: `false` makes every write synchronous (debugging).
pub const ENV_BUFFER_ENABLED: &str = "ML_DASH_BUFFER_ENABLED";
/// Default of [`BufferConfig::buffer_enabled`].
pub const DEFAULT_BUFFER_ENABLED: bool = true;
/// Longest duration a setting takes (the flush interval, retry delays, and
/// the remote timeouts of [`RemoteConfig`](crate::RemoteConfig)): one day.
/// Longer ones are refused with [`Error::Config`], not saturated: a day is
/// already longer than any of them is useful.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `ML_DASH_FLUSH_INTERVAL`: seconds between timed flushes.
pub const ENV_FLUSH_INTERVAL: &str = "ML_DASH_FLUSH_INTERVAL";
/// Default of [`BufferConfig::flush_interval`]: 5 s.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// `ML_DASH_LOG_BATCH_SIZE`.
pub const ENV_LOG_BATCH_SIZE: &str = "ML_DASH_LOG_BATCH_SIZE";
/// Default of [`BufferConfig::log_batch_size`].
pub const DEFAULT_LOG_BATCH_SIZE: usize = 100;
/// `ML_DASH_METRIC_BATCH_SIZE`.
pub const ENV_METRIC_BATCH_SIZE: &str = "ML_DASH_METRIC_BATCH_SIZE";
/// Default of [`BufferConfig::metric_batch_size`]: 1000, as in the newest Python SDK
/// (the seed used 100; per-step metrics are the hottest stream, so larger batches win).
pub const DEFAULT_METRIC_BATCH_SIZE: usize = 1000;
/// `ML_DASH_TRACK_BATCH_SIZE`.
pub const ENV_TRACK_BATCH_SIZE: &str = "ML_DASH_TRACK_BATCH_SIZE";
/// Default of [`BufferConfig::track_batch_size`].
pub const DEFAULT_TRACK_BATCH_SIZE: usize = 100;
/// `ML_DASH_FILE_UPLOAD_WORKERS`.
pub const ENV_FILE_UPLOAD_WORKERS: &str = "ML_DASH_FILE_UPLOAD_WORKERS";
/// Most file upload threads a run starts.
pub const MAX_FILE_UPLOAD_WORKERS: usize = 256;
/// Default of [`BufferConfig::file_upload_workers`].
pub const DEFAULT_FILE_UPLOAD_WORKERS: usize = 4;
/// `ML_DASH_MAX_RETRIES`.
pub const ENV_MAX_RETRIES: &str = "ML_DASH_MAX_RETRIES";
/// Default of [`BufferConfig::max_retries`].
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// `ML_DASH_RETRY_BASE_DELAY` (seconds, doubling per retry).
pub const ENV_RETRY_BASE_DELAY: &str = "ML_DASH_RETRY_BASE_DELAY";
/// Default of [`BufferConfig::retry_base_delay`]: 1 s.
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_secs(1);
/// `ML_DASH_RETRY_MAX_DELAY` (seconds).
pub const ENV_RETRY_MAX_DELAY: &str = "ML_DASH_RETRY_MAX_DELAY";
/// Default of [`BufferConfig::retry_max_delay`]: 30 s.
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(30);
/// `ML_DASH_RING_CAPACITY`: bytes of each producer thread's first ring.
pub const ENV_RING_CAPACITY: &str = "ML_DASH_RING_CAPACITY";
/// Default of [`BufferConfig::ring_capacity`]: 256 KiB, small enough to stay in L2.
pub const DEFAULT_RING_CAPACITY: usize = 256 * 1024;
/// `ML_DASH_MEMORY_BUDGET`: bytes all rings of one run may hold together.
pub const ENV_MEMORY_BUDGET: &str = "ML_DASH_MEMORY_BUDGET";
/// Default of [`BufferConfig::memory_budget`]: 64 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 64 * 1024 * 1024;
/// `ML_DASH_MAX_RECORD_BYTES`: the largest single record (a point, a log line).
pub const ENV_MAX_RECORD_BYTES: &str = "ML_DASH_MAX_RECORD_BYTES";
/// Default of [`BufferConfig::max_record_bytes`]: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// `ML_DASH_BACKPRESSURE`: `block` (default) or `drop`.
pub const ENV_BACKPRESSURE: &str = "ML_DASH_BACKPRESSURE";
/// Default of [`BufferConfig::backpressure`].
pub const DEFAULT_BACKPRESSURE: Backpressure = Backpressure::Block;
/// `ML_DASH_SYNC_ON_FLUSH`: fsync the store at every flush and at close.
pub const ENV_SYNC_ON_FLUSH: &str = "ML_DASH_SYNC_ON_FLUSH";
/// Default of [`BufferConfig::sync_on_flush`]: off (data survives a killed process, not a power cut).
pub const DEFAULT_SYNC_ON_FLUSH: bool = false;
/// `ML_DASH_QUIET`: silence the console report at close and the warnings.
pub const ENV_QUIET: &str = "ML_DASH_QUIET";
/// Default of [`BufferConfig::quiet`].
pub const DEFAULT_QUIET: bool = false;

/// What a producer does when its ring is full and the memory budget is spent.
///
/// # Examples
/// ```
/// use ml_dash::{Backpressure, BufferConfig};
/// let mut cfg = BufferConfig::default();
/// assert_eq!(cfg.backpressure, Backpressure::Block); // lossless by default
/// cfg.backpressure = Backpressure::DropNewest; // never wait; count what is dropped
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backpressure {
    /// Wait for the collector to make room (lossless; the default).
    Block,
    /// Drop the new record and count it in the run's drop counter (opt-in, lossy).
    DropNewest,
}

/// Buffer settings of a run. Build it with [`BufferConfig::default`] (the
/// documented defaults) or [`BufferConfig::from_env`] (defaults overridden by
/// the `ML_DASH_*` variables), then override fields in code.
///
/// # Examples
/// ```
/// use ml_dash::{BufferConfig, Experiment};
/// use std::time::Duration;
/// # let root = tempfile::tempdir().unwrap();
/// let mut cfg = BufferConfig::default();
/// cfg.flush_interval = Duration::from_secs(1);
/// cfg.metric_batch_size = 5000;
/// cfg.validate()?;
/// let run = Experiment::new("a/b").dash_root(root.path()).buffer_config(cfg).run()?;
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BufferConfig {
    /// Buffer writes (default `true`); `false` makes every call wait until stored.
    pub buffer_enabled: bool,
    /// Timed flush period (default 5 s; more than 0, at most [`MAX_DURATION`]).
    pub flush_interval: Duration,
    /// Logs per batch written to the store (default 100).
    pub log_batch_size: usize,
    /// Metric points per stream per batch (default 1000).
    pub metric_batch_size: usize,
    /// Track entries per topic per batch (default 100).
    pub track_batch_size: usize,
    /// File upload threads (default 4; 1 to [`MAX_FILE_UPLOAD_WORKERS`]).
    pub file_upload_workers: usize,
    /// Once the run closes, how many times one request to the server is
    /// retried before close stops sending and leaves the rest in the spool,
    /// where the next run or [`sync`](crate::sync) sends it (default 3, as
    /// the SDK's final flush; `close_timeout` bounds close too). Nothing is
    /// dropped: during the run requests are retried without limit.
    pub max_retries: u32,
    /// First retry delay, doubling (default 1 s; 1 ms to [`MAX_DURATION`]).
    pub retry_base_delay: Duration,
    /// Largest retry delay (default 30 s; 1 ms to [`MAX_DURATION`]; a value
    /// below `retry_base_delay` means `retry_base_delay`).
    pub retry_max_delay: Duration,
    /// Bytes of a producer thread's first ring (default 256 KiB; at least
    /// 1 KiB, at most `memory_budget`); it grows on demand.
    pub ring_capacity: usize,
    /// Bytes all rings of a run may hold together (default 64 MiB). Each
    /// producer thread's first ring is always allocated; growth beyond it
    /// stays within this budget. While the store fails, the batches the
    /// collector holds for it count against it too, up to half of it; past
    /// that, new records are dropped and counted
    /// ([`CloseReport::lost_to_store`](crate::CloseReport::lost_to_store)).
    /// At most half the machine's physical memory (where the OS reports it).
    pub memory_budget: usize,
    /// Largest encoded record (default 1 MiB; 64 bytes to 4 GiB); larger ones
    /// are refused with [`Error::RecordTooLarge`]. A record larger than its
    /// thread's ring needs a second ring beside it, so unless `ring_capacity`
    /// is at least this large, `memory_budget` must be at least twice it.
    pub max_record_bytes: usize,
    /// Full-ring policy (default [`Backpressure::Block`]).
    pub backpressure: Backpressure,
    /// fsync the store files at each flush and at close (default `false`).
    pub sync_on_flush: bool,
    /// No console report at close and no warnings on stderr (default
    /// `false`); warnings stay in
    /// [`CloseReport::warnings`](crate::CloseReport::warnings), and `flush()`
    /// still returns the store's errors.
    pub quiet: bool,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            buffer_enabled: DEFAULT_BUFFER_ENABLED,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            log_batch_size: DEFAULT_LOG_BATCH_SIZE,
            metric_batch_size: DEFAULT_METRIC_BATCH_SIZE,
            track_batch_size: DEFAULT_TRACK_BATCH_SIZE,
            file_upload_workers: DEFAULT_FILE_UPLOAD_WORKERS,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base_delay: DEFAULT_RETRY_BASE_DELAY,
            retry_max_delay: DEFAULT_RETRY_MAX_DELAY,
            ring_capacity: DEFAULT_RING_CAPACITY,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            backpressure: DEFAULT_BACKPRESSURE,
            sync_on_flush: DEFAULT_SYNC_ON_FLUSH,
            quiet: DEFAULT_QUIET,
        }
    }
}

impl BufferConfig {
    /// The defaults, overridden by every `ML_DASH_*` variable that is set.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first variable whose value does not parse.
    ///
    /// # Examples
    /// ```
    /// let mut cfg = ml_dash::BufferConfig::from_env().unwrap();
    /// cfg.metric_batch_size = 5000; // code overrides the environment
    /// ```
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`
    /// (for tests and embedding).
    ///
    /// # Errors
    /// [`Error::Config`] naming the first variable whose value does not parse.
    ///
    /// # Examples
    /// ```
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    /// let vars = HashMap::from([("ML_DASH_FLUSH_INTERVAL", "2.5"), ("ML_DASH_BACKPRESSURE", "drop")]);
    /// let cfg = ml_dash::BufferConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string()))?;
    /// assert_eq!(cfg.flush_interval, Duration::from_millis(2500));
    /// assert_eq!(cfg.backpressure, ml_dash::Backpressure::DropNewest);
    /// let bad = ml_dash::BufferConfig::from_lookup(|name| (name == "ML_DASH_LOG_BATCH_SIZE").then(|| "many".into()));
    /// assert!(matches!(bad, Err(ml_dash::Error::Config { name: "ML_DASH_LOG_BATCH_SIZE", .. })));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut c = BufferConfig::default();
        let get = |name: &'static str| lookup(name).map(|v| (name, v));
        if let Some((n, v)) = get(ENV_BUFFER_ENABLED) {
            c.buffer_enabled = parse_bool(n, &v)?;
        }
        if let Some((n, v)) = get(ENV_FLUSH_INTERVAL) {
            c.flush_interval = parse_duration(n, &v, &FLUSH_INTERVAL_RANGE)?;
        }
        if let Some((n, v)) = get(ENV_LOG_BATCH_SIZE) {
            c.log_batch_size = parse_count(n, &v)?;
        }
        if let Some((n, v)) = get(ENV_METRIC_BATCH_SIZE) {
            c.metric_batch_size = parse_count(n, &v)?;
        }
        if let Some((n, v)) = get(ENV_TRACK_BATCH_SIZE) {
            c.track_batch_size = parse_count(n, &v)?;
        }
        if let Some((n, v)) = get(ENV_FILE_UPLOAD_WORKERS) {
            c.file_upload_workers = check_workers(n, parse_count(n, &v)?)?;
        }
        if let Some((n, v)) = get(ENV_MAX_RETRIES) {
            c.max_retries = v
                .trim()
                .parse()
                .map_err(|_| bad(n, &v, "a whole number >= 0"))?;
        }
        if let Some((n, v)) = get(ENV_RETRY_BASE_DELAY) {
            c.retry_base_delay = parse_duration(n, &v, &RETRY_DELAY_RANGE)?;
        }
        if let Some((n, v)) = get(ENV_RETRY_MAX_DELAY) {
            c.retry_max_delay = parse_duration(n, &v, &RETRY_DELAY_RANGE)?;
        }
        if let Some((n, v)) = get(ENV_RING_CAPACITY) {
            c.ring_capacity = check_memory(n, parse_count(n, &v)?)?;
        }
        if let Some((n, v)) = get(ENV_MEMORY_BUDGET) {
            c.memory_budget = check_memory(n, parse_count(n, &v)?)?;
        }
        if let Some((n, v)) = get(ENV_MAX_RECORD_BYTES) {
            c.max_record_bytes = parse_count(n, &v)?;
        }
        if let Some((n, v)) = get(ENV_BACKPRESSURE) {
            c.backpressure = match v.trim().to_ascii_lowercase().as_str() {
                "block" => Backpressure::Block,
                "drop" => Backpressure::DropNewest,
                _ => return Err(bad(n, &v, "`block` or `drop`")),
            };
        }
        if let Some((n, v)) = get(ENV_SYNC_ON_FLUSH) {
            c.sync_on_flush = parse_bool(n, &v)?;
        }
        if let Some((n, v)) = get(ENV_QUIET) {
            c.quiet = parse_bool(n, &v)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks that the settings are usable together: each within its
    /// documented range, and no two contradicting each other.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting at fault and what to change.
    ///
    /// # Examples
    /// ```
    /// let mut cfg = ml_dash::BufferConfig::default();
    /// assert!(cfg.validate().is_ok());
    /// cfg.metric_batch_size = 0;
    /// assert!(matches!(cfg.validate(), Err(ml_dash::Error::Config { name: "metric_batch_size", .. })));
    /// ```
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("log_batch_size", self.log_batch_size),
            ("metric_batch_size", self.metric_batch_size),
            ("track_batch_size", self.track_batch_size),
            ("file_upload_workers", self.file_upload_workers),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(bad(name, &v.to_string(), "must be at least 1"));
            }
        }
        check_workers("file_upload_workers", self.file_upload_workers)?;
        check_duration("flush_interval", self.flush_interval, &FLUSH_INTERVAL_RANGE)?;
        check_duration(
            "retry_base_delay",
            self.retry_base_delay,
            &RETRY_DELAY_RANGE,
        )?;
        check_duration("retry_max_delay", self.retry_max_delay, &RETRY_DELAY_RANGE)?;
        if self.ring_capacity < 1024 {
            return Err(bad(
                "ring_capacity",
                &self.ring_capacity.to_string(),
                "must be at least 1024 bytes",
            ));
        }
        check_memory("ring_capacity", self.ring_capacity)?;
        check_memory("memory_budget", self.memory_budget)?;
        if self.max_record_bytes < 64 || self.max_record_bytes > u32::MAX as usize {
            return Err(bad(
                "max_record_bytes",
                &self.max_record_bytes.to_string(),
                "must be between 64 bytes and 4 GiB",
            ));
        }
        if self.memory_budget < self.ring_capacity {
            return Err(bad(
                "memory_budget",
                &self.memory_budget.to_string(),
                "must be at least ring_capacity",
            ));
        }
        // A record larger than its thread's ring takes a second ring of its
        // own size beside it (the first stays counted until the collector
        // drained it): both must fit the budget, or it would wait forever.
        if self.max_record_bytes > self.ring_capacity
            && self.max_record_bytes.saturating_mul(2) > self.memory_budget
        {
            return Err(bad(
                "memory_budget",
                &self.memory_budget.to_string(),
                "must be at least twice max_record_bytes (a record larger than its thread's \
                 ring needs a second ring beside it): raise memory_budget \
                 (ML_DASH_MEMORY_BUDGET), or lower max_record_bytes (ML_DASH_MAX_RECORD_BYTES) \
                 to at most half of it or to ring_capacity",
            ));
        }
        Ok(())
    }
}

/// A range of durations, `min..=max`, with the sentence that describes it.
#[derive(Debug)]
pub(crate) struct Range {
    min: Duration,
    max: Duration,
    reason: &'static str,
}

const FLUSH_INTERVAL_RANGE: Range = Range {
    min: Duration::from_nanos(1),
    max: MAX_DURATION,
    reason: "a number of seconds more than 0 and at most 86400 (one day), such as 5.0",
};

/// Retry delays (here and in [`RemoteConfig`](crate::RemoteConfig)); a zero
/// delay would hammer a failing server.
pub(crate) const RETRY_DELAY_RANGE: Range = Range {
    min: Duration::from_millis(1),
    max: MAX_DURATION,
    reason: "a number of seconds from 0.001 to 86400 (one day), such as 1.0",
};

/// Timeouts where 0 means "do not wait" (close, the delivery warning).
pub(crate) const WAIT_RANGE: Range = Range {
    min: Duration::ZERO,
    max: MAX_DURATION,
    reason: "a number of seconds from 0 to 86400 (one day), such as 30",
};

/// Timeouts of one request or connection.
pub(crate) const REQUEST_TIMEOUT_RANGE: Range = Range {
    min: Duration::from_millis(1),
    max: MAX_DURATION,
    reason: "a number of seconds from 0.001 to 86400 (one day), such as 30",
};

/// `d` if it is in `range`, else [`Error::Config`] naming `name`.
pub(crate) fn check_duration(name: &'static str, d: Duration, range: &Range) -> Result<Duration> {
    if d < range.min || d > range.max {
        return Err(bad(name, &format!("{} s", d.as_secs_f64()), range.reason));
    }
    Ok(d)
}

/// Parses a number of seconds in `range` (never panics: `1e20` is an error).
pub(crate) fn parse_duration(name: &'static str, v: &str, range: &Range) -> Result<Duration> {
    match v.trim().parse::<f64>().map(Duration::try_from_secs_f64) {
        Ok(Ok(d)) => check_duration(name, d, range).map_err(|_| bad(name, v, range.reason)),
        _ => Err(bad(name, v, range.reason)),
    }
}

fn check_workers(name: &'static str, n: usize) -> Result<usize> {
    if n > MAX_FILE_UPLOAD_WORKERS {
        return Err(bad(name, &n.to_string(), "must be at most 256"));
    }
    Ok(n)
}

/// `bytes` if one run may hold that much memory on this machine: at most
/// half its physical memory (where the OS says how much it has).
fn check_memory(name: &'static str, bytes: usize) -> Result<usize> {
    if bytes > max_memory() {
        return Err(bad(
            name,
            &bytes.to_string(),
            "must be at most half of this machine's physical memory",
        ));
    }
    Ok(bytes)
}

/// Half the physical memory, or (where the OS does not say) the largest
/// allocation Rust allows; a ring that still cannot be allocated is refused
/// when it is created (`ring::try_channel`).
/// Read each time (a cold path), not cached: nothing here can be left
/// half-initialised by a `fork()` (see `crate::fork`).
fn max_memory() -> usize {
    crate::os::physical_memory().map_or(isize::MAX as usize, |m| m / 2)
}

fn bad(name: &'static str, value: &str, reason: &'static str) -> Error {
    Error::Config {
        name,
        value: value.to_string(),
        reason,
    }
}

fn parse_bool(name: &'static str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(bad(name, v, "use true/1/yes or false/0/no")),
    }
}

fn parse_count(name: &'static str, v: &str) -> Result<usize> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad(name, v, "a whole number >= 1")),
    }
}

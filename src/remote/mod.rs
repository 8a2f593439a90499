//! The remote sink: batches for an ML-Dash server go through a durable
//! on-disk spool ([`crate::spool`]) and one sender thread with a few workers.
//! Nothing is lost on outages, kills or bad answers: a batch leaves the spool
//! only when the server took it (2xx) or refused it for good (4xx, kept in the
//! dead-letter file).
//!
//! ```text
//!  collector thread                      sender thread ("ml-dash-sender")        server
//!  ----------------                      --------------------------------        ------
//!  append_metrics/logs/tracks/params --> spool segment (one write per batch)
//!  finish(status)                        | read in order (orphaned sessions first)
//!  sync() = fsync, once per flush epoch  +-> experiment upsert (GraphQL, folders) --> /graphql, nodes
//!  close(deadline) -> RemoteReport       +-> batches, split <= 1000 items / 1 MB  --> /api/experiments/..
//!                                        |   (workers "ml-dash-send": up to
//!                                        |   max_in_flight streams at once, each
//!                                        |   stream one batch at a time)
//!                                        +-> status PATCH                         --> /api/nodes/{id}
//!                                        ack cursor over the records done, in order
//!                                        (+ items of a split one)
//! ```
//!
//! # How the collector uses it
//!
//! ```text
//!  open:        let sink = RemoteSink::open(RemoteConfig::from_env(prefix, spool_dir)?)?;
//!  per batch:   sink.append_metrics(name, batch.items())?   // name None = the unnamed stream
//!               sink.append_logs(batch.items())?
//!               sink.append_tracks(topic, rows)?             // rows: {"timestamp":..,"q":[..]}
//!               sink.merge_params(&flat_map)?
//!  per file:    sink.append_file(&FileUpload { source, owned, path, filename, .. })?
//!  flush epoch: sink.sync()?        (after this the epoch's batches survive kill -9 / power loss)
//!  close:       sink.finish(status)?; let report = sink.close(close_timeout);
//! ```
//!
//! An `append_*` error means nothing was kept (the segment is cut back): the
//! collector keeps the batch and retries, as with the local store. `close`
//! returns within its deadline plus a few milliseconds whatever the server
//! does (it never waits on an in-flight request: the sender thread is left to
//! finish or time out on its own, and its record stays counted as spooled).
//! The spool's disk budget (`ML_DASH_SPOOL_BUDGET`, 1 GiB) is a warning line,
//! not a limit: past it the sink warns once (again after it drains below half)
//! and keeps spooling, because refusing or dropping would lose accepted data
//! while the disk still has room; a full disk is then a store failure (the
//! collector holds and counts, see README "Disk faults").
//! [`RemoteSink::spool_bytes`] / [`RemoteSink::over_budget`] report it.
//!
//! The spool folder should be the experiment's work area:
//! `<dash_root>/<prefix>/.spool` (hybrid, and remote-only with the default
//! `.dash` root). The next sink opened on the same folder adopts the sessions
//! that no live process holds (their `flock` is free) and sends them first, in
//! order, with their original idempotency keys; [`sync`] does the same from
//! any program (`ml-dash sync`).
//!
//! # Requests (ML-DASH.md §4) and what the Python SDK 0.11.0 sends
//!
//! Recorded from `ml-dash` 0.11.0 against the test server
//! (`tests/sink_remote_conformance.rs`), for a run `alice/proj/f1/f2/exp1`
//! with params, three logs, two metric streams, one track topic, one file and
//! `complete()` (buffered mode; all JSON, `Authorization: Bearer <token>`):
//!
//! 1. `POST /graphql` `{"query": "<GetProject>", "variables": {"namespace": "alice"}}`
//!    (the query text is byte-for-byte [`sender::GET_PROJECT_QUERY`]); answer
//!    `{"data":{"namespace":{"projects":[{"id","slug"}]}}}`.
//! 2. Only if the project is not found and there are folders:
//!    `POST /api/namespaces/alice/nodes` `{"type":"PROJECT","name":"proj","slug":"proj"}`.
//! 3. Per folder: `POST /api/namespaces/alice/nodes`
//!    `{"type":"FOLDER","projectId":<id>,"parentId":"ROOT"|<folder id>,"name":"f1"}`
//!    (ids are sent back as the JSON the server gave: bare integers).
//! 4. `POST /api/namespaces/alice/nodes` `{"type":"EXPERIMENT","name":"exp1",
//!    "parentId":<last folder id>,"projectId":<id>[,"description","tags","bindrs","metadata"]}`
//!    (`"projectSlug":"proj"` instead of `projectId` when the project is unknown);
//!    answer `{"experiment":{"id"},"node":{"id"},"project":{..}}`.
//! 5. Each `params.set`: `POST /api/experiments/{id}/parameters` `{"data":{flat map}}`
//!    with that call's values only (sent at once, unbuffered, so ahead of data
//!    logged before it and still buffered; `model={"lr":..}` arrives as
//!    `"model.lr"`). The collector spools each set as soon as it sees it.
//! 6. At flush/close, in this order: `POST /api/experiments/{id}/logs`
//!    `{"logs":[{"timestamp":"…Z","level","message"[,"metadata"]}]}`;
//!    per metric stream `POST /api/experiments/{id}/metrics/{name}/append-batch`
//!    `{"dataPoints":[{...fields,"_ts":float}][,"description","tags","metadata"]}`
//!    (unnamed stream: name `None`; the stream's info where truthy, as the SDK);
//!    per topic `POST /api/experiments/{id}/tracks/{quote(topic)}/append_batch`
//!    `{"entries":[{"timestamp":float,...}]}`.
//! 7. Per file: three GraphQL lookups (`GetExperimentProject` →
//!    `experimentById.projectId`, `GetExpInfo` → the project and namespace
//!    slugs, `GetExperimentPath` → the node tree, 3 levels), then per folder
//!    of the file's path `POST /api/namespaces/alice/nodes`
//!    `{"type":"FOLDER","projectId":<id>,"experimentId":<id>,"parentId":<experiment node id>
//!    or the previous folder,"name":"configs"}`, then the same URL as
//!    `multipart/form-data` with text fields `type=FILE`, `projectId`,
//!    `experimentId`, `parentId` (the last folder), `name`, `checksum`
//!    (sha256 hex), `description`?, `tags`? (comma-joined), `metadata`? (JSON
//!    text), and the part `file` (`filename`, its content type); answer
//!    `{"node":{..},"physicalFile":{..}}`.
//! 8. `PATCH /api/nodes/{node id}` `{"status":"COMPLETED"}`.
//!
//! This sink sends the same methods, paths and bodies, with these deliberate
//! differences: every data request carries an `Idempotency-Key`
//! (`<run id hex>-<pid>-<stream>-<seq>[.<from>-<to>]`) so retries and
//! replays never duplicate on a server that honours it; a metric name is
//! percent-encoded like a topic (the SDK puts it raw in the path, so a `/` in
//! it breaks the URL); NaN and ±Infinity are sent as `null` and counted (the
//! SDK refuses the whole batch); batches over 1000 items or 1 MB, and any
//! batch answered 413, are split; a file upload skips the SDK's three GraphQL
//! lookups (the project id and the experiment node come from the
//! experiment's creation) and streams the content instead of reading it
//! whole; batches of different streams (logs, each metric, each topic) go
//! in parallel (`ML_DASH_MAX_IN_FLIGHT`, 4), so the server may get them
//! interleaved otherwise than above, each stream in order (params and the
//! status go alone, the status last; with `max_in_flight` 1 the order is the
//! SDK's); and nothing is dropped on failure.

mod auth;
mod flight;
mod http;
mod local;
mod sender;

use std::any::Any;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};

use crate::api::Status;
use crate::config::{
    ENV_RETRY_BASE_DELAY, ENV_RETRY_MAX_DELAY, REQUEST_TIMEOUT_RANGE, RETRY_DELAY_RANGE, Range,
    WAIT_RANGE, check_duration, parse_duration,
};
use crate::error::{Error, Result};
use crate::spool::{self, Damage, Kind, SessionId, SpoolWriter};
use sender::{Descriptor, Job, SendConfig, Sender, Shared};

pub use auth::{
    ENV_CONFIG_DIR, ENV_TOKEN, KEYRING_SERVICE, TOKEN_KEY, TokenLookup, TokenSource, config_dir,
    read_token_files, resolve_token,
};
pub use local::{SYNC_DIR, SpooledRun, spool_run, spool_run_part};

/// `ML_DASH_API_URL`: the server (default `https://api.dash.ml`).
pub const ENV_API_URL: &str = "ML_DASH_API_URL";
/// Default of [`RemoteConfig::dash_url`].
pub const DEFAULT_API_URL: &str = sender::DEFAULT_DASH_URL;
/// `ML_DASH_CLOSE_TIMEOUT`: seconds close waits for the spool to drain.
pub const ENV_CLOSE_TIMEOUT: &str = "ML_DASH_CLOSE_TIMEOUT";
/// Default of [`RemoteConfig::close_timeout`]: 30 s.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);
/// `ML_DASH_DELIVERY_TIMEOUT`: seconds of failed delivery before a warning
/// (sending goes on at `retry_max_delay`; nothing is dropped).
pub const ENV_DELIVERY_TIMEOUT: &str = "ML_DASH_DELIVERY_TIMEOUT";
/// Default of [`RemoteConfig::delivery_timeout`]: 120 s.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// `ML_DASH_REQUEST_TIMEOUT`: seconds one request may take.
pub const ENV_REQUEST_TIMEOUT: &str = "ML_DASH_REQUEST_TIMEOUT";
/// Default of [`RemoteConfig::request_timeout`]: 30 s (as the Python SDK).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `ML_DASH_SPOOL_BUDGET`: bytes the spool may hold before it warns.
pub const ENV_SPOOL_BUDGET: &str = "ML_DASH_SPOOL_BUDGET";
/// Default of [`RemoteConfig::disk_budget`]: 1 GiB.
pub const DEFAULT_SPOOL_BUDGET: u64 = 1 << 30;
/// Default of [`RemoteConfig::segment_bytes`]: 16 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;
/// Default of [`RemoteConfig::max_batch_points`]: the server's limit per request.
pub const DEFAULT_MAX_BATCH_POINTS: usize = 1000;
/// Default of [`RemoteConfig::max_batch_bytes`]: 1 MB per request body.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1_000_000;
/// `ML_DASH_MAX_IN_FLIGHT`: records in delivery at once, at most (1 to 64).
pub const ENV_MAX_IN_FLIGHT: &str = "ML_DASH_MAX_IN_FLIGHT";
/// Default of [`RemoteConfig::max_in_flight`]: 4.
pub const DEFAULT_MAX_IN_FLIGHT: usize = flight::DEFAULT_MAX_IN_FLIGHT;

/// Settings of a remote sink.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let mut cfg = ml_dash::RemoteConfig::new("https://api.dash.ml", "alice/mnist/a", "/tmp/spool");
/// cfg.close_timeout = Duration::from_secs(5);
/// cfg.tags = Some(vec!["cnn".into()]);
/// cfg.validate()?;
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemoteConfig {
    /// Server URL without `/api` (default `ML_DASH_API_URL`, else `https://api.dash.ml`).
    pub dash_url: String,
    /// Token given in code (default none: `ML_DASH_TOKEN`, then the ml-dash
    /// CLI's stores, `tokens.encrypted` and `tokens.json`: see the README).
    pub token: Option<String>,
    /// The spool folder (the experiment's work area).
    pub spool_dir: PathBuf,
    /// `owner/project/[folders/]name`.
    pub prefix: String,
    /// Experiment description (the SDK's `readme`).
    pub description: Option<String>,
    /// Experiment tags.
    pub tags: Option<Vec<String>>,
    /// Experiment bindrs.
    pub bindrs: Option<Vec<String>>,
    /// Experiment metadata.
    pub metadata: Option<Json>,
    /// First retry delay, doubling (default 1 s; 1 ms to one day).
    pub retry_base_delay: Duration,
    /// Largest retry delay (default 30 s; 1 ms to one day).
    pub retry_max_delay: Duration,
    /// One request's limit (default 30 s; 1 ms to one day).
    pub request_timeout: Duration,
    /// TCP connect limit (default 10 s; 1 ms to one day).
    pub connect_timeout: Duration,
    /// Failed delivery this long gives one warning (default 120 s; 0 to one
    /// day); sending goes on.
    pub delivery_timeout: Duration,
    /// How long [`RemoteSink`]'s drop (and a run's close) waits for the spool
    /// to drain (default 30 s; 0 to one day).
    pub close_timeout: Duration,
    /// Once close has begun, how many times one request is retried before
    /// close stops sending and leaves the rest in the spool for the next run
    /// or [`sync`] (`None`, the default: until `close_timeout`). A run sets it
    /// from [`BufferConfig::max_retries`](crate::BufferConfig::max_retries).
    pub max_close_retries: Option<u32>,
    /// Spool bytes before the over-budget warning (default 1 GiB).
    pub disk_budget: u64,
    /// Spool segment size (default 16 MiB); acknowledged segments are deleted.
    pub segment_bytes: u64,
    /// Items per request (default 1000).
    pub max_batch_points: usize,
    /// Bytes per request body (default 1 MB; one larger item goes alone).
    pub max_batch_bytes: usize,
    /// Records in delivery at once, at most (default 4, 1 to 64): records of
    /// different streams go in parallel, each stream's in order; the limit
    /// in use adapts to the failure rate between 1 and this.
    pub max_in_flight: usize,
    /// No warnings on stderr (they are still in [`Stats::warnings`]).
    pub quiet: bool,
}

impl RemoteConfig {
    /// The documented defaults, for `prefix`, spooling in `spool_dir`.
    ///
    /// # Examples
    /// ```
    /// let cfg = ml_dash::RemoteConfig::new("http://127.0.0.1:8080", "alice/mnist/a", "spool");
    /// assert_eq!((cfg.max_in_flight, cfg.max_batch_points), (4, 1000));
    /// assert_eq!(cfg.token, None); // found at send time: ML_DASH_TOKEN, then the CLI's stores
    /// ```
    pub fn new(
        dash_url: impl Into<String>,
        prefix: impl Into<String>,
        spool_dir: impl Into<PathBuf>,
    ) -> RemoteConfig {
        RemoteConfig {
            dash_url: dash_url.into(),
            token: None,
            spool_dir: spool_dir.into(),
            prefix: prefix.into(),
            description: None,
            tags: None,
            bindrs: None,
            metadata: None,
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(30),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            max_close_retries: None,
            disk_budget: DEFAULT_SPOOL_BUDGET,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_batch_points: DEFAULT_MAX_BATCH_POINTS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            quiet: false,
        }
    }

    /// Defaults overridden by `ML_DASH_API_URL`, `ML_DASH_CLOSE_TIMEOUT`,
    /// `ML_DASH_DELIVERY_TIMEOUT`, `ML_DASH_REQUEST_TIMEOUT`,
    /// `ML_DASH_SPOOL_BUDGET`, `ML_DASH_RETRY_BASE_DELAY`,
    /// `ML_DASH_RETRY_MAX_DELAY` and `ML_DASH_MAX_IN_FLIGHT`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first variable whose value does not parse
    /// or is outside its range (the fields' docs; at most one day).
    ///
    /// # Examples
    /// ```
    /// let cfg = ml_dash::RemoteConfig::from_env("alice/mnist/a", "spool")?;
    /// assert_eq!(cfg.prefix, "alice/mnist/a");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn from_env(
        prefix: impl Into<String>,
        spool_dir: impl Into<PathBuf>,
    ) -> Result<RemoteConfig> {
        Self::from_lookup(prefix, spool_dir, |name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let vars = |name: &str| match name {
    ///     "ML_DASH_API_URL" => Some("http://127.0.0.1:8080".to_string()),
    ///     "ML_DASH_CLOSE_TIMEOUT" => Some("5".to_string()),
    ///     _ => None,
    /// };
    /// let cfg = ml_dash::RemoteConfig::from_lookup("alice/mnist/a", "spool", vars)?;
    /// assert_eq!(cfg.dash_url, "http://127.0.0.1:8080");
    /// assert_eq!(cfg.close_timeout, Duration::from_secs(5));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn from_lookup(
        prefix: impl Into<String>,
        spool_dir: impl Into<PathBuf>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<RemoteConfig> {
        let url = lookup(ENV_API_URL)
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        let mut c = RemoteConfig::new(url, prefix, spool_dir);
        let secs = |name: &'static str, d: &mut Duration, range: &Range| -> Result<()> {
            if let Some(v) = lookup(name) {
                *d = parse_duration(name, &v, range)?;
            }
            Ok(())
        };
        secs(ENV_CLOSE_TIMEOUT, &mut c.close_timeout, &WAIT_RANGE)?;
        secs(ENV_DELIVERY_TIMEOUT, &mut c.delivery_timeout, &WAIT_RANGE)?;
        secs(
            ENV_REQUEST_TIMEOUT,
            &mut c.request_timeout,
            &REQUEST_TIMEOUT_RANGE,
        )?;
        secs(
            ENV_RETRY_BASE_DELAY,
            &mut c.retry_base_delay,
            &RETRY_DELAY_RANGE,
        )?;
        secs(
            ENV_RETRY_MAX_DELAY,
            &mut c.retry_max_delay,
            &RETRY_DELAY_RANGE,
        )?;
        if let Some(v) = lookup(ENV_SPOOL_BUDGET) {
            c.disk_budget = v.trim().parse().map_err(|_| Error::Config {
                name: ENV_SPOOL_BUDGET,
                value: v.clone(),
                reason: "expected a number of bytes",
            })?;
        }
        if let Some(v) = lookup(ENV_MAX_IN_FLIGHT) {
            c.max_in_flight = parse_in_flight(&v)?;
        }
        Ok(c)
    }

    /// Checks that every duration is in its range (the fields' docs), so the
    /// sender's arithmetic on them cannot overflow. [`RemoteSink::open`]
    /// calls it.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    ///
    /// # Examples
    /// ```
    /// let mut cfg = ml_dash::RemoteConfig::new("https://api.dash.ml", "alice/mnist/a", "spool");
    /// assert!(cfg.validate().is_ok());
    /// cfg.dash_url = "api.dash.ml".into(); // no scheme
    /// assert!(matches!(cfg.validate(), Err(ml_dash::Error::Config { .. })));
    /// ```
    pub fn validate(&self) -> Result<()> {
        check_url(&self.dash_url)?;
        check_duration(
            "retry_base_delay",
            self.retry_base_delay,
            &RETRY_DELAY_RANGE,
        )?;
        check_duration("retry_max_delay", self.retry_max_delay, &RETRY_DELAY_RANGE)?;
        check_duration(
            "request_timeout",
            self.request_timeout,
            &REQUEST_TIMEOUT_RANGE,
        )?;
        check_duration(
            "connect_timeout",
            self.connect_timeout,
            &REQUEST_TIMEOUT_RANGE,
        )?;
        check_duration("delivery_timeout", self.delivery_timeout, &WAIT_RANGE)?;
        check_duration("close_timeout", self.close_timeout, &WAIT_RANGE)?;
        check_in_flight("max_in_flight", self.max_in_flight)?;
        Ok(())
    }

    fn send_config(&self) -> SendConfig {
        SendConfig {
            dash_url: Some(self.dash_url.clone()),
            token: self.token.clone(),
            retry_base_delay: self.retry_base_delay,
            retry_max_delay: self.retry_max_delay.max(self.retry_base_delay),
            request_timeout: self.request_timeout,
            connect_timeout: self.connect_timeout,
            delivery_timeout: self.delivery_timeout,
            max_close_retries: self.max_close_retries,
            max_batch_points: self.max_batch_points,
            max_batch_bytes: self.max_batch_bytes,
            max_in_flight: self.max_in_flight,
            quiet: self.quiet,
            spool_dir: self.spool_dir.clone(),
        }
    }
}

/// A `max_in_flight` setting `name` is from 1 to 64.
fn check_in_flight(name: &'static str, n: usize) -> Result<()> {
    if (1..=flight::MAX_IN_FLIGHT).contains(&n) {
        return Ok(());
    }
    Err(Error::Config {
        name,
        value: n.to_string(),
        reason: "expected a number of requests from 1 to 64",
    })
}

/// An `ML_DASH_MAX_IN_FLIGHT` value: an integer from 1 to 64.
fn parse_in_flight(v: &str) -> Result<usize> {
    v.trim()
        .parse()
        .ok()
        .filter(|n| (1..=flight::MAX_IN_FLIGHT).contains(n))
        .ok_or_else(|| Error::Config {
            name: ENV_MAX_IN_FLIGHT,
            value: v.to_owned(),
            reason: "expected a number of requests from 1 to 64",
        })
}

/// Counters of a sink or a [`sync`], live.
///
/// # Examples
/// ```
/// // An empty spool: nothing to send, no request made.
/// let spool = tempfile::tempdir().unwrap();
/// let stats = ml_dash::sync(spool.path(), &ml_dash::SyncOptions::default())?.stats;
/// assert_eq!((stats.sent_records, stats.pending_records, stats.requests), (0, 0, 0));
/// assert!(stats.undeliverable.is_empty() && !stats.auth_failed);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Records (batches, param sets, the status) fully taken by the server.
    pub sent_records: u64,
    /// Items (points, logs, rows, param sets, status) taken by the server.
    pub sent_items: u64,
    /// Records still in the spool.
    pub pending_records: u64,
    /// Bytes of spool segments on disk.
    pub spool_bytes: u64,
    /// HTTP requests made (retries included).
    pub requests: u64,
    /// Retries after a transient failure.
    pub retries: u64,
    /// Retries that waited a server's `Retry-After`.
    pub retry_after_honoured: u64,
    /// Requests split in two after a 413.
    pub splits: u64,
    /// Requests refused for good (4xx), kept in the dead-letter file.
    pub dead_lettered: u64,
    /// Items in those requests.
    pub dead_lettered_items: u64,
    /// The dead-letter file, once anything went there.
    pub dead_letter_file: Option<PathBuf>,
    /// NaN / ±Infinity values sent as `null`.
    pub nonfinite_nulled: u64,
    /// Damage found in adopted spool sessions (truncated or skipped).
    pub damage: Damage,
    /// The server refused the token (401/403) and has not taken anything since.
    pub auth_failed: bool,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// Adopted sessions fully sent and removed.
    pub sessions_replayed: u64,
    /// Sessions left alone because a live process holds them.
    pub locked_sessions: u64,
    /// Sessions whose `session.json` was missing or damaged, rebuilt from the
    /// copy every spool segment holds (and sent).
    pub sessions_restored: u64,
    /// Sessions that cannot be sent as they are: their records stay on disk,
    /// untouched and counted in `pending_records`, until someone acts on the reason.
    pub undeliverable: Vec<UndeliverableSession>,
    /// Every warning given (also printed unless quiet).
    pub warnings: Vec<String>,
}

/// A spool session that cannot be sent as it is (see [`Stats::undeliverable`]).
///
/// # Examples
/// ```no_run
/// let report = ml_dash::sync(".dash/alice/mnist/a/.spool", &ml_dash::SyncOptions::default())?;
/// for stuck in &report.stats.undeliverable {
///     eprintln!("{} record(s) in {}: {}", stuck.records, stuck.session_dir.display(), stuck.reason);
/// }
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UndeliverableSession {
    /// The session folder (its segments are kept as they are).
    pub session_dir: PathBuf,
    /// Records it holds (batches, param sets, the status), counted in `pending_records`.
    pub records: u64,
    /// Why, and what to do.
    pub reason: String,
}

/// What close (or [`sync`]) achieved.
///
/// # Examples
/// ```
/// let spool = tempfile::tempdir().unwrap();
/// let report = ml_dash::sync(spool.path(), &ml_dash::SyncOptions::default())?;
/// assert_eq!(report.spool_dir, spool.path());
/// assert!(report.is_drained() && !report.timed_out);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemoteReport {
    /// The spool folder.
    pub spool_dir: PathBuf,
    /// The counters at the end.
    pub stats: Stats,
    /// The deadline passed before the spool was drained.
    pub timed_out: bool,
    /// The sender thread panicked (why, and where its data stays).
    pub(crate) sender_panic: Option<String>,
}

impl RemoteReport {
    /// Everything was delivered (or dead-lettered): nothing stays spooled.
    /// `false` while any record is pending, undeliverable ones included.
    ///
    /// # Examples
    /// ```
    /// let spool = tempfile::tempdir().unwrap();
    /// assert!(ml_dash::sync(spool.path(), &ml_dash::SyncOptions::default())?.is_drained());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn is_drained(&self) -> bool {
        self.stats.pending_records == 0
    }

    /// The exit status for a command that delivers the spool (`ml-dash sync`
    /// exits with it): 0 when drained, 1 when anything stays spooled: not
    /// sent in time (retry later) or undeliverable (`stats.undeliverable`
    /// says why; retrying alone does not help).
    ///
    /// # Examples
    /// ```no_run
    /// let report = ml_dash::sync(".dash/alice/mnist/a/.sync", &ml_dash::SyncOptions::default())?;
    /// std::process::exit(report.exit_code());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn exit_code(&self) -> i32 {
        if self.is_drained() { 0 } else { 1 }
    }

    /// How to send what stays spooled, when anything does.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?.complete()?;
    /// use std::time::Duration;
    /// // A spooled run and a server that takes nothing (nothing listens there).
    /// let spooled = ml_dash::spool_run(&root.path().join("a/b"), "a/b", Some("http://127.0.0.1:1"))?;
    /// let mut options = ml_dash::SyncOptions::default();
    /// (options.deadline, options.quiet) = (Duration::ZERO, true);
    /// let report = ml_dash::sync(&spooled.spool_dir, &options)?;
    /// assert_eq!(report.exit_code(), 1);
    /// assert!(report.how_to_send().unwrap().contains("stay in the spool"));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn how_to_send(&self) -> Option<String> {
        if self.is_drained() {
            return None;
        }
        let s = &self.stats;
        let stuck: u64 = s.undeliverable.iter().map(|u| u.records).sum();
        let mut lines = Vec::new();
        let retry = s.pending_records.saturating_sub(stuck);
        if retry > 0 || s.undeliverable.is_empty() {
            lines.push(format!(
                "{retry} batch(es) ({} bytes) stay in the spool at {}: they are sent by the next run that \
                 opens this experiment, or now with `ml_dash::sync({:?}, &SyncOptions::default())`{}",
                s.spool_bytes,
                self.spool_dir.display(),
                self.spool_dir,
                if s.auth_failed {
                    " after `ml-dash login`"
                } else {
                    ""
                }
            ));
        }
        for u in &s.undeliverable {
            lines.push(format!(
                "{} batch(es) in {} cannot be sent as they are (kept there untouched): {}",
                u.records,
                u.session_dir.display(),
                u.reason
            ));
        }
        Some(lines.join("\n[ML-Dash]   "))
    }
}

impl std::fmt::Display for RemoteReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "[ML-Dash] server: {} batch(es) sent ({} item(s)), {} still spooled",
            s.sent_records, s.sent_items, s.pending_records
        )?;
        if s.dead_lettered > 0 {
            write!(f, ", {} refused", s.dead_lettered)?;
            if let Some(p) = &s.dead_letter_file {
                write!(f, " (kept in {})", p.display())?;
            }
        }
        if s.nonfinite_nulled > 0 {
            write!(f, ", {} NaN/Infinity sent as null", s.nonfinite_nulled)?;
        }
        if !s.damage.is_clean() {
            write!(f, ", {} damaged spool byte(s) dropped", s.damage.bytes)?;
        }
        if s.sessions_restored > 0 {
            write!(
                f,
                ", {} session(s) rebuilt from their segments (session.json lost)",
                s.sessions_restored
            )?;
        }
        if s.locked_sessions > 0 {
            write!(
                f,
                ", {} session(s) skipped (held by a live process)",
                s.locked_sessions
            )?;
        }
        if let Some(h) = self.how_to_send() {
            write!(f, "\n[ML-Dash]   {h}")?;
            if let Some(e) = &s.last_error {
                write!(f, "\n[ML-Dash]   last error: {e}")?;
            }
        }
        Ok(())
    }
}

/// A file for the server, as [`RemoteSink::append_file`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct FileUpload<'a> {
    /// Where the content is.
    pub source: &'a Path,
    /// `true` for a file the engine owns (a `save_*` temp file): it is moved
    /// into the spool. `false` (a user's file): it is copied, never touched.
    pub owned: bool,
    /// The logical folder, `"/configs"` (`"/"` for the experiment's root).
    pub path: &'a str,
    /// The file's name.
    pub filename: &'a str,
    /// Its MIME type.
    pub content_type: &'a str,
    /// SHA-256 of the content, lowercase hex.
    pub checksum: &'a str,
    /// Optional description.
    pub description: Option<&'a str>,
    /// Tags (sent comma-joined, as the SDK).
    pub tags: &'a [String],
    /// Optional metadata (sent as JSON text, as the SDK).
    pub metadata: Option<&'a Json>,
}

/// The remote sink of one run: a spool writer used by the collector thread,
/// and the sender thread that empties the spool.
#[derive(Debug)]
pub struct RemoteSink {
    writer: SpoolWriter,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Set once if the sender thread panicked: why, and where its data stays.
    died: Arc<OnceLock<String>>,
    spool_dir: PathBuf,
    disk_budget: u64,
    close_timeout: Duration,
    quiet: bool,
    over_budget_warned: bool,
    closed: Option<RemoteReport>,
    _lock: Arc<File>,
}

impl RemoteSink {
    /// Creates this run's spool session, adopts the sessions left by dead
    /// processes (sent first, in order), and starts the sender thread.
    pub fn open(cfg: RemoteConfig) -> Result<RemoteSink> {
        cfg.validate()?;
        let id = SessionId::new();
        let desc = Descriptor {
            prefix: cfg.prefix.clone(),
            dash_url: Some(cfg.dash_url.clone()),
            description: cfg.description.clone(),
            tags: cfg.tags.clone(),
            bindrs: cfg.bindrs.clone(),
            metadata: cfg.metadata.clone(),
        };
        let io = |e| Error::io(&cfg.spool_dir, e);
        let (writer, lock) =
            SpoolWriter::create(&cfg.spool_dir, id, &desc.to_json(&id), cfg.segment_bytes)
                .map_err(io)?;
        let lock = Arc::new(lock);
        let (mut jobs, _) = adopt(&cfg.spool_dir, writer.id()).map_err(io)?;
        jobs.push(Job {
            dir: writer.dir().to_owned(),
            id,
            live: true,
            lock: lock.clone(),
        });
        let shared = Arc::new(Shared::default());
        {
            let mut st = shared.lock();
            st.written = writer.end();
            st.stats.spool_bytes = writer.end().off;
        }
        let sender = Sender::new(cfg.send_config(), shared.clone());
        let died = Arc::new(OnceLock::new());
        let (on_panic, died_at) = (shared.clone(), died.clone());
        let (dir, quiet) = (cfg.spool_dir.clone(), cfg.quiet);
        let thread = std::thread::Builder::new()
            .name("ml-dash-sender".into())
            .spawn(move || {
                // A panic (a bug) must not end sending silently: it is
                // reported, and close stops waiting for this thread.
                let run = catch_unwind(AssertUnwindSafe(|| {
                    crate::__fault::panic_point(crate::__fault::PanicAt::Sender);
                    sender.run(jobs)
                }));
                if let Err(p) = run {
                    let _ = sender_panicked(&on_panic, &died_at, &dir, quiet, &*p);
                }
            })
            .map_err(|e| Error::Collector(format!("cannot start the sender thread: {e}")))?;
        Ok(RemoteSink {
            writer,
            shared,
            thread: Some(thread),
            died,
            spool_dir: cfg.spool_dir,
            disk_budget: cfg.disk_budget,
            close_timeout: cfg.close_timeout,
            quiet: cfg.quiet,
            over_budget_warned: false,
            closed: None,
            _lock: lock,
        })
    }

    fn append<'a, I>(
        &mut self,
        kind: Kind,
        stream: Option<&str>,
        info: Option<&'a [u8]>,
        items: I,
    ) -> Result<()>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return Ok(()); // an empty batch is a no-op
        }
        if self.closed.is_some() {
            return Err(Error::Closed);
        }
        let a = self
            .writer
            .append_with(kind, stream, info, items)
            .map_err(|e| Error::io(self.writer.dir(), e))?;
        let bytes = {
            let mut st = self.shared.lock();
            st.written = a.end;
            st.live_appended += 1;
            st.stats.pending_records += 1;
            st.stats.spool_bytes += a.bytes;
            self.shared.cv.notify_all();
            st.stats.spool_bytes
        };
        self.check_budget(bytes);
        Ok(())
    }

    fn check_budget(&mut self, bytes: u64) {
        if bytes > self.disk_budget && !self.over_budget_warned {
            self.over_budget_warned = true;
            let msg = format!(
                "the spool at {} holds {} MiB, over its disk budget of {} MiB \
                 (ML_DASH_SPOOL_BUDGET): the server is not taking data as fast as it is logged, \
                 or is down. Nothing is dropped, but the disk fills; {}",
                self.spool_dir.display(),
                bytes >> 20,
                self.disk_budget >> 20,
                self.shared
                    .lock()
                    .stats
                    .last_error
                    .as_deref()
                    .map(|e| format!("last error: {e}"))
                    .unwrap_or_else(|| "no error so far".into())
            );
            if !self.quiet {
                eprintln!("[ML-Dash] warning: {msg}");
            }
            self.shared.lock().stats.warnings.push(msg);
        } else if bytes < self.disk_budget / 2 {
            self.over_budget_warned = false;
        }
    }

    /// Spools one batch of metric points (`{"loss":0.5,"step":1,"_ts":…}`
    /// each) of stream `name` (`None`: the unnamed stream). An empty batch is a no-op.
    pub fn append_metrics<'a, I>(&mut self, name: Option<&str>, points: I) -> Result<()>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        self.append(Kind::Metrics, name, None, points)
    }

    /// As [`append_metrics`](Self::append_metrics); `info` (the stream's
    /// `{"description":…,"tags":…,"metadata":…}`, only the fields the SDK
    /// would send) goes into the request body beside `dataPoints`.
    pub fn append_metrics_with<'a, I>(
        &mut self,
        name: Option<&str>,
        info: Option<&'a [u8]>,
        points: I,
    ) -> Result<()>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        self.append(Kind::Metrics, name, info, points)
    }

    /// Spools one batch of log entries (`{"timestamp":"…Z","level":"info","message":"…"}` each).
    pub fn append_logs<'a, I>(&mut self, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        self.append(Kind::Logs, None, None, entries)
    }

    /// Spools one batch of rows (`{"timestamp":1.0,"q":[0.1,0.2]}` each) of track `topic`.
    pub fn append_tracks<'a, I>(&mut self, topic: &str, rows: I) -> Result<()>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        self.append(Kind::Tracks, Some(topic), None, rows)
    }

    /// Spools one `params.set` call (a flat map, as `parameters.json`'s
    /// `data`): one request, one version on the server.
    pub fn merge_params(&mut self, params: &Map<String, Json>) -> Result<()> {
        let bytes = serde_json::to_vec(params).map_err(|e| Error::InvalidValue(e.to_string()))?;
        self.append(Kind::Params, None, None, [bytes.as_slice()])
    }

    /// Spools a file: its content is moved (`owned`: an engine temp file) or
    /// copied (a user's file, left alone) into the session's `files/` folder
    /// and fsynced, then a record describes it. The sender streams it to the
    /// server as the SDK's multipart `FILE` node and deletes it once sent.
    pub fn append_file(&mut self, f: &FileUpload<'_>) -> Result<()> {
        if self.closed.is_some() {
            return Err(Error::Closed);
        }
        let files = self.writer.dir().join(spool::FILES_DIR);
        std::fs::create_dir_all(&files).map_err(|e| Error::io(&files, e))?;
        let safe: String = f
            .filename
            .chars()
            .map(|c| {
                if c == '/' || c == '\\' || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .take(100)
            .collect();
        let name = format!("{}-{safe}", self.writer.next_seq());
        let blob = files.join(&name);
        let moved = f.owned && std::fs::rename(f.source, &blob).is_ok();
        if !moved {
            std::fs::copy(f.source, &blob).map_err(|e| Error::io(f.source, e))?;
        }
        let spooled = File::open(&blob)
            .and_then(|b| {
                b.sync_all()?;
                b.metadata()
            })
            .map(|m| m.len())
            .map_err(|e| Error::io(&blob, e))
            .and_then(|size| {
                let desc = serde_json::json!({
                    "blob": format!("{}/{name}", spool::FILES_DIR),
                    "path": f.path,
                    "filename": f.filename,
                    "contentType": f.content_type,
                    "checksum": f.checksum,
                    "sizeBytes": size,
                    "description": f.description,
                    "tags": f.tags,
                    "metadata": f.metadata,
                });
                let bytes =
                    serde_json::to_vec(&desc).map_err(|e| Error::InvalidValue(e.to_string()))?;
                self.append(Kind::File, None, None, [bytes.as_slice()])?;
                Ok(size)
            });
        match spooled {
            Ok(size) => {
                // Only now is the spool's copy the content: the source may go.
                if f.owned && !moved {
                    let _ = std::fs::remove_file(f.source);
                }
                self.shared.lock().stats.spool_bytes += size;
                Ok(())
            }
            Err(e) => {
                // Give the content back (or drop the copy): the caller keeps the file.
                if moved {
                    let _ = std::fs::rename(&blob, f.source);
                } else {
                    let _ = std::fs::remove_file(&blob);
                }
                Err(e)
            }
        }
    }

    /// Spools the run's final status (sent after everything before it).
    pub fn finish(&mut self, status: Status) -> Result<()> {
        self.append(Kind::Status, None, None, [status.as_str().as_bytes()])
    }

    /// Makes everything spooled so far durable (fsync): call once per flush
    /// epoch and before close.
    pub fn sync(&mut self) -> Result<()> {
        self.writer
            .sync()
            .map_err(|e| Error::io(self.writer.dir(), e))
    }

    /// Why the sender thread died, if it did: the spool still takes every
    /// batch (the data is safe), but nothing sends it until the next run or
    /// [`sync`].
    pub fn died(&self) -> Option<&str> {
        self.died.get().map(String::as_str)
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Bytes the spool holds now.
    pub fn spool_bytes(&self) -> u64 {
        self.shared.lock().stats.spool_bytes
    }

    /// The spool is over its disk budget (a collector may stop draining).
    pub fn over_budget(&self) -> bool {
        self.spool_bytes() > self.disk_budget
    }

    /// This run's spool session folder.
    pub fn session_dir(&self) -> &Path {
        self.writer.dir()
    }

    /// Waits until the server has taken (or refused) every record appended
    /// so far, or `timeout` passes; `true` when it has. No effect on sending.
    pub fn wait_sent(&self, timeout: Duration) -> bool {
        let end = flight::after(Instant::now(), timeout);
        let mut st = self.shared.lock();
        loop {
            if st.live_done >= st.live_appended && st.stats.pending_records == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= end || st.finished {
                return st.live_done >= st.live_appended && st.stats.pending_records == 0;
            }
            st = self.shared.wait(st, end - now);
        }
    }

    /// Closes the spool (fsync), lets the sender drain it until `deadline`,
    /// and reports. Returns within `deadline` (plus scheduling noise) even
    /// against a server that accepts connections and never answers. What is
    /// not sent stays in the spool for the next run or [`sync`].
    pub fn close(mut self, deadline: Duration) -> RemoteReport {
        self.close_inner(deadline)
    }

    fn close_inner(&mut self, deadline: Duration) -> RemoteReport {
        if let Some(r) = &self.closed {
            return r.clone();
        }
        let end = flight::after(Instant::now(), deadline);
        if let Err(e) = self.writer.sync() {
            let msg = format!(
                "the spool at {} could not be synced at close: {e}",
                self.writer.dir().display()
            );
            if !self.quiet {
                eprintln!("[ML-Dash] warning: {msg}");
            }
            self.shared.lock().stats.warnings.push(msg);
        }
        let mut st = self.shared.lock();
        st.closing = Some(end);
        st.close_calls += 1;
        self.shared.cv.notify_all();
        loop {
            if st.live_drained || st.finished {
                break;
            }
            let now = Instant::now();
            if now >= end {
                break;
            }
            st = self.shared.wait(st, end - now);
        }
        let drained = st.live_drained && st.live_done >= st.live_appended;
        let live_left = st.live_appended.saturating_sub(st.live_done);
        let dir = self.writer.dir();
        if let Some(u) = st
            .stats
            .undeliverable
            .iter_mut()
            .find(|u| u.session_dir == dir)
        {
            u.records = live_left;
        }
        if !st.live_drained {
            st.abandon = true;
            self.shared.cv.notify_all();
        }
        let stats = st.stats.clone();
        let done = st.live_drained || st.finished;
        drop(st);
        if done && let Some(t) = self.thread.take() {
            // The sender is past its last request: joining is immediate.
            let _ = t.join();
        }
        if drained {
            // Everything of this session was handled: remove it.
            let freed = spool::session_bytes(self.writer.dir());
            if std::fs::remove_dir_all(self.writer.dir()).is_ok() {
                let mut st = self.shared.lock();
                st.stats.spool_bytes = st.stats.spool_bytes.saturating_sub(freed);
            }
        }
        let stats = if drained { self.stats() } else { stats };
        let report = RemoteReport {
            spool_dir: self.spool_dir.clone(),
            timed_out: !drained && Instant::now() >= end,
            stats,
            sender_panic: self.died.get().cloned(),
        };
        self.closed = Some(report.clone());
        report
    }
}

impl Drop for RemoteSink {
    fn drop(&mut self) {
        if self.closed.is_none() {
            let r = self.close_inner(self.close_timeout);
            if !self.quiet && !r.is_drained() {
                eprintln!("{r}");
            }
        }
    }
}

/// A server URL the sink can reach: `http://` or (with the `tls` feature) `https://`.
fn check_url(url: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::Config {
            name: ENV_API_URL,
            value: url.to_owned(),
            reason,
        })
    };
    if url.starts_with("https://") {
        if cfg!(feature = "tls") {
            Ok(())
        } else {
            bad("https needs the `tls` feature of ml-dash (on by default)")
        }
    } else if url.starts_with("http://") && url.len() > "http://".len() {
        Ok(())
    } else {
        bad("expected an http:// or https:// URL")
    }
}

/// Locks the sessions in `spool_dir` that no live process holds (oldest
/// first); also returns how many were held.
fn adopt(spool_dir: &Path, own: SessionId) -> std::io::Result<(Vec<Job>, u64)> {
    let mut jobs = Vec::new();
    let mut locked = 0;
    for (id, dir) in spool::sessions(spool_dir)? {
        if id == own {
            continue;
        }
        if let Some(lock) = spool::try_lock(&dir)? {
            jobs.push(Job {
                dir,
                id,
                live: false,
                lock: Arc::new(lock),
            });
        } else {
            locked += 1;
        }
    }
    Ok((jobs, locked))
}

/// Options of [`sync`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let mut options = ml_dash::SyncOptions::default();
/// options.dash_url = Some("https://api.dash.ml".into());
/// options.deadline = Duration::from_secs(60);
/// assert_eq!(options.max_in_flight, 4);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Server URL; default: the one each session was written for.
    pub dash_url: Option<String>,
    /// Token; default `ML_DASH_TOKEN`, then the ml-dash CLI's stores.
    pub token: Option<String>,
    /// How long to try before returning with what is left (default 5 min;
    /// any value: one longer than the clock can count, such as
    /// `Duration::MAX`, is no deadline).
    pub deadline: Duration,
    /// First retry delay (default 1 s; 1 ms to one day).
    pub retry_base_delay: Duration,
    /// Largest retry delay (default 30 s; 1 ms to one day).
    pub retry_max_delay: Duration,
    /// One request's limit (default 30 s; 1 ms to one day).
    pub request_timeout: Duration,
    /// Items per request (default 1000).
    pub max_batch_points: usize,
    /// Bytes per request body (default 1 MB).
    pub max_batch_bytes: usize,
    /// Records in delivery at once, at most (default 4, as
    /// [`RemoteConfig::max_in_flight`]).
    pub max_in_flight: usize,
    /// No warnings on stderr.
    pub quiet: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            dash_url: None,
            token: None,
            deadline: Duration::from_secs(300),
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(30),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_batch_points: DEFAULT_MAX_BATCH_POINTS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            quiet: false,
        }
    }
}

/// Sends what a spool folder holds (sessions left by runs that ended before
/// the server took everything), in order and with each batch's original
/// idempotency key, on the calling thread; returns within `deadline` (plus
/// scheduling noise). Sessions a live process holds are skipped. What is not
/// sent in time stays for the next call.
///
/// A session whose `session.json` is missing or damaged is rebuilt from the
/// copy in its segments (`stats.sessions_restored`). One that cannot be sent
/// as it is (no intact copy, an invalid prefix, the server refusing to create
/// its experiment) is left on disk untouched, counted in `pending_records`
/// and listed in `stats.undeliverable` with the reason; the report is then
/// not drained and [`RemoteReport::exit_code`] is 1.
///
/// # Errors
/// [`Error::Config`] for a bad URL or a duration out of its range;
/// [`Error::Io`] when the folder cannot be read; [`Error::Panicked`] if the
/// sender panicked (what it had not sent stays in the spool).
///
/// # Examples
/// ```no_run
/// // What a run left spooled when the server was away, sent now.
/// let dir = ml_dash::remote_work_dir("alice/mnist/a").join(".spool");
/// let report = ml_dash::sync(&dir, &ml_dash::SyncOptions::default())?;
/// if let Some(how) = report.how_to_send() {
///     eprintln!("not all sent: {how}");
/// }
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn sync(spool_dir: impl AsRef<Path>, options: &SyncOptions) -> Result<RemoteReport> {
    let spool_dir = spool_dir.as_ref();
    if let Some(u) = &options.dash_url {
        check_url(u)?;
    }
    let o = options;
    check_duration(
        "SyncOptions::retry_base_delay",
        o.retry_base_delay,
        &RETRY_DELAY_RANGE,
    )?;
    check_duration(
        "SyncOptions::retry_max_delay",
        o.retry_max_delay,
        &RETRY_DELAY_RANGE,
    )?;
    let timeout = &REQUEST_TIMEOUT_RANGE;
    check_duration("SyncOptions::request_timeout", o.request_timeout, timeout)?;
    check_in_flight("SyncOptions::max_in_flight", o.max_in_flight)?;
    let none = SessionId {
        run: 0,
        pid: 0,
        created_ms: 0,
    };
    let (jobs, locked) = adopt(spool_dir, none).map_err(|e| Error::io(spool_dir, e))?;
    let shared = Arc::new(Shared::default());
    {
        let mut st = shared.lock();
        st.closing = Some(flight::after(Instant::now(), options.deadline));
        st.stats.locked_sessions = locked;
    }
    let cfg = SendConfig {
        dash_url: options.dash_url.clone(),
        token: options.token.clone(),
        retry_base_delay: options.retry_base_delay,
        retry_max_delay: options.retry_max_delay.max(options.retry_base_delay),
        request_timeout: options.request_timeout,
        connect_timeout: options.request_timeout.min(Duration::from_secs(10)),
        delivery_timeout: options.deadline.min(crate::config::MAX_DURATION),
        // A sync is bounded by its deadline.
        max_close_retries: None,
        max_batch_points: options.max_batch_points,
        max_batch_bytes: options.max_batch_bytes,
        max_in_flight: options.max_in_flight,
        quiet: options.quiet,
        spool_dir: spool_dir.to_owned(),
    };
    let sender = Sender::new(cfg, shared.clone());
    // No panic crosses the API (a panic here is a bug in the sender).
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| sender.run(jobs))) {
        let why = sender_panicked(&shared, &OnceLock::new(), spool_dir, options.quiet, &*p);
        return Err(Error::Panicked(why));
    }
    let st = shared.lock();
    let undeliverable: u64 = st.stats.undeliverable.iter().map(|u| u.records).sum();
    Ok(RemoteReport {
        spool_dir: spool_dir.to_owned(),
        timed_out: st.stats.pending_records > undeliverable,
        stats: st.stats.clone(),
        sender_panic: None,
    })
}

/// Records a sender panic in `died` and the stats, where close, the report
/// and `RemoteSink::sync` see it, and ends close's wait for the thread;
/// returns the message.
fn sender_panicked(
    shared: &Shared,
    died: &OnceLock<String>,
    spool_dir: &Path,
    quiet: bool,
    panic: &(dyn Any + Send),
) -> String {
    let why = crate::error::panic_message(panic);
    let msg = format!(
        "the remote sender stopped on a panic ({why}); what it had not sent stays in the spool at \
         {}, and is sent by the next run that opens this experiment or by ml_dash::sync",
        spool_dir.display()
    );
    if !quiet {
        eprintln!("[ML-Dash] error: {msg}");
    }
    let _ = died.set(msg.clone());
    let mut st = shared.lock();
    st.stats.last_error = Some(msg.clone());
    st.stats.warnings.push(msg.clone());
    st.finished = true;
    shared.cv.notify_all();
    msg
}

/// The remote sink's pieces, for the integration tests (`tests/sink_remote_*`).
#[doc(hidden)]
pub mod testing {
    pub use super::*;
    pub use crate::spool::*;
    /// The GraphQL query the SDK and this sink send to find a project.
    pub const GET_PROJECT_QUERY: &str = super::sender::GET_PROJECT_QUERY;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_limits_are_checked() {
        assert_eq!(DEFAULT_MAX_IN_FLIGHT, 4);
        assert_eq!(parse_in_flight(" 8 ").unwrap(), 8);
        assert_eq!(parse_in_flight("64").unwrap(), 64);
        assert!(check_in_flight("max_in_flight", 64).is_ok());
        let e = check_in_flight("max_in_flight", 0).unwrap_err().to_string();
        assert!(e.contains("max_in_flight") && e.contains("1 to 64"), "{e}");
        for bad in ["0", "65", "-1", "two", ""] {
            let e = parse_in_flight(bad).unwrap_err().to_string();
            assert!(
                e.contains(ENV_MAX_IN_FLIGHT) && e.contains("1 to 64"),
                "{e}"
            );
        }
    }

    #[test]
    fn urls_are_checked_at_open() {
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert_eq!(
            check_url("https://api.dash.ml").is_ok(),
            cfg!(feature = "tls")
        );
        for bad in ["api.dash.ml", "ftp://x", "http://", ""] {
            let e = check_url(bad).unwrap_err().to_string();
            assert!(e.contains("ML_DASH_API_URL"), "{e}");
        }
    }

    #[test]
    fn the_report_says_how_to_send_what_is_left() {
        let mut r = RemoteReport {
            spool_dir: "/w/.spool".into(),
            stats: Stats::default(),
            timed_out: false,
            sender_panic: None,
        };
        assert!(r.is_drained() && r.how_to_send().is_none());
        r.stats.pending_records = 3;
        r.stats.auth_failed = true;
        let how = r.how_to_send().unwrap();
        assert!(
            how.contains("3 batch")
                && how.contains("ml_dash::sync")
                && how.contains("ml-dash login")
        );
        assert!(r.to_string().contains("3 still spooled"));
        assert_eq!(r.exit_code(), 1);
        r.stats.undeliverable.push(UndeliverableSession {
            session_dir: "/w/.spool/s1".into(),
            records: 3,
            reason: "no prefix".into(),
        });
        let how = r.how_to_send().unwrap();
        assert!(
            how.contains("3 batch(es) in /w/.spool/s1 cannot be sent") && !how.contains("next run"),
            "{how}"
        );
        assert_eq!(r.exit_code(), 1);
    }
}

//! The public API: [`Experiment`] (a builder), the [`Run`] guard, and the
//! handles [`Metrics`], [`Track`], [`Logger`] and [`Params`], which are cheap to
//! clone and may be moved into other threads.
//!
//! It depends on `run` (to push records and flush) and on the store only to
//! open it; it never reaches into the collector's internals.

mod files;
mod names;
mod status;

pub use files::Files;
pub use status::Status;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::collector::CloseReport;
use crate::config::BufferConfig;
use crate::error::{Error, Result};
use crate::files::{Copies, FileStore, Pool};
use crate::pipeline::Pipeline;
use crate::ranks::{DEFAULT_RANK_MODE, RankMode, Ranks};
use crate::record::{Fields, Head, Level, TRACK_EXPLICIT_TS, TRACK_PREVIOUS_TS, Value, kind};
use crate::remote::{RemoteConfig, RemoteSink};
use crate::run::{RunCore, StreamInfo, StreamKind};
use crate::signals::HandleSignals;
use crate::sink::local::{ExperimentInfo, LocalStore, check_topic};
use crate::sink::tee::Tee;
use crate::sync::Ordering;

pub use names::validate_prefix;

/// An experiment to run, named by its prefix `owner/project/[folders/]name`.
///
/// # Examples
/// ```
/// use ml_dash::{Experiment, point};
/// let root = tempfile::tempdir().unwrap();
/// let run = Experiment::new("alice/mnist/baseline")
///     .dash_root(root.path())
///     .readme("first try")
///     .tags(["cnn"])
///     .run()?;
/// let train = run.metrics("train")?;
/// for step in 0..3 {
///     train.log(&point! {"loss" => 1.0 / (step + 1) as f64, "step" => step})?;
/// }
/// run.log("done")?;
/// run.complete()?;
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Experiment {
    prefix: String,
    readme: Option<String>,
    tags: Option<Vec<String>>,
    metadata: Option<std::result::Result<Json, String>>,
    config: Option<BufferConfig>,
    /// Root of the local store; `None`: remote only (the SDK's `dash_root=None`).
    dash_root: Option<PathBuf>,
    dash_url: Option<String>,
    token: Option<String>,
    /// `(rank, world size)` set in code; `None`: from the environment.
    rank: Option<(u32, u32)>,
    rank_mode: Option<RankMode>,
    signals: Option<HandleSignals>,
}

impl Experiment {
    /// An experiment named by `prefix`; an empty prefix reads `ML_DASH_PREFIX`.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("alice/mnist/baseline").dash_root(root.path()).run()?;
    /// assert_eq!(run.prefix(), "alice/mnist/baseline");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn new(prefix: impl Into<String>) -> Experiment {
        Experiment {
            prefix: prefix.into(),
            readme: None,
            tags: None,
            metadata: None,
            config: None,
            dash_root: Some(PathBuf::from(DEFAULT_DASH_ROOT)),
            dash_url: None,
            token: None,
            rank: None,
            rank_mode: None,
            signals: None,
        }
    }

    /// This process is rank `rank` of `world_size` (default: from the
    /// environment, [`Ranks::from_env`]: torchrun's `RANK` / `WORLD_SIZE`,
    /// else SLURM's `SLURM_PROCID` / `SLURM_NTASKS`). A world size of 1 is a
    /// single process.
    ///
    /// # Examples
    /// ```
    /// use ml_dash::{Experiment, RankMode};
    /// # let root = tempfile::tempdir().unwrap();
    /// // Rank 1 of 4 in the default mode records nothing.
    /// let run = Experiment::new("alice/ddp/job").dash_root(root.path()).rank(1, 4).run()?;
    /// assert!(!run.is_recording());
    /// assert_eq!(run.ranks().map(|r| r.rank), Some(1));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn rank(mut self, rank: u32, world_size: u32) -> Self {
        self.rank = Some((rank, world_size));
        self
    }

    /// How the ranks of a distributed job record (default: `ML_DASH_RANKS`,
    /// else [`RankMode::Rank0`]: only rank 0 records). See [`RankMode`].
    ///
    /// # Examples
    /// ```
    /// use ml_dash::{Experiment, RankMode};
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = Experiment::new("alice/ddp/job")
    ///     .dash_root(root.path())
    ///     .rank(1, 4)
    ///     .rank_mode(RankMode::PerRank)
    ///     .run()?;
    /// assert_eq!(run.prefix(), "alice/ddp/job/rank-1");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn rank_mode(mut self, mode: RankMode) -> Self {
        self.rank_mode = Some(mode);
        self
    }

    /// Close the run on termination signals before they take their course
    /// (default: `ML_DASH_HANDLE_SIGNALS`, else [`HandleSignals::Off`]).
    /// On the signal the run drains within `ML_DASH_SIGNAL_DEADLINE` (10 s),
    /// logs a warn line `"SIGTERM: closing the run as CANCELLED"` (metadata
    /// `{"signal": "SIGTERM"}`), records CANCELLED, and then the signal's
    /// previous disposition runs: the program's own handler, or the default
    /// action (the process ends by the signal). Linux only (elsewhere it is
    /// off). See the README, "Many processes".
    ///
    /// # Examples
    /// ```
    /// use ml_dash::{Experiment, HandleSignals};
    /// # let root = tempfile::tempdir().unwrap();
    /// // A SIGTERM (from SLURM, say) now closes the run as CANCELLED.
    /// let run = Experiment::new("alice/mnist/slurm")
    ///     .dash_root(root.path())
    ///     .handle_signals(HandleSignals::Term)
    ///     .run()?;
    /// run.complete()?;
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn handle_signals(mut self, which: HandleSignals) -> Self {
        self.signals = Some(which);
        self
    }

    /// Root of the local store (default `.dash`, relative to the working
    /// directory, as in the SDK).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("alice/mnist/a").dash_root(root.path()).run()?;
    /// assert_eq!(run.dir(), root.path().join("alice/mnist/a"));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn dash_root(mut self, path: impl AsRef<Path>) -> Self {
        self.dash_root = Some(path.as_ref().to_path_buf());
        self
    }

    /// No local store: the run goes to the server of
    /// [`dash_url`](Self::dash_url) only (the SDK's `dash_root=None`). Its
    /// work area (the spool and the files being sent) is
    /// [`remote_work_dir`]`(prefix)`, outside the working directory. A later
    /// [`dash_root`](Self::dash_root) turns the local store back on.
    ///
    /// # Examples
    /// ```
    /// use ml_dash::{Error, Experiment};
    /// // Remote only needs a server: `.dash_url(url)`.
    /// let no_server = Experiment::new("alice/mnist/a").remote_only().run();
    /// assert!(matches!(no_server, Err(Error::Config { name: "remote_only", .. })));
    /// ```
    pub fn remote_only(mut self) -> Self {
        self.dash_root = None;
        self
    }

    /// Send the run to an ML-Dash server at `url` (without `/api`; `""` means
    /// `ML_DASH_API_URL`, else `https://api.dash.ml`), through a durable spool
    /// in `<dash_root>/<prefix>/.spool`. As in the SDK
    /// (`Experiment(prefix, dash_url=url)`) the run is hybrid: the local store
    /// in [`dash_root`](Self::dash_root) (default `.dash`) and the server;
    /// add [`remote_only`](Self::remote_only) for the server alone.
    ///
    /// # Examples
    /// ```no_run
    /// // Hybrid: `.dash/alice/mnist/a` and the server.
    /// let run = ml_dash::Experiment::new("alice/mnist/a")
    ///     .dash_url("https://api.dash.ml")
    ///     .run()?;
    /// run.log("sent to the server too")?;
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn dash_url(mut self, url: impl Into<String>) -> Self {
        self.dash_url = Some(url.into());
        self
    }

    /// The server token (default: `ML_DASH_TOKEN`, then what `ml-dash login`
    /// stored: `$ML_DASH_CONFIG_DIR/tokens.encrypted`, then `tokens.json`,
    /// default `~/.dash`; the OS keyring first with the feature `keyring`).
    ///
    /// # Examples
    /// ```no_run
    /// let run = ml_dash::Experiment::new("alice/mnist/a")
    ///     .remote_only()
    ///     .dash_url("https://api.dash.ml")
    ///     .token(std::env::var("MY_DASH_TOKEN").unwrap_or_default())
    ///     .run()?;
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The experiment's description (default none; a reopen keeps the old one).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("alice/mnist/a")
    ///     .dash_root(root.path())
    ///     .readme("lr sweep, first try")
    ///     .run()?;
    /// let doc = ml_dash::read::document(root.path(), "alice/mnist/a", "experiment.json")?.unwrap();
    /// assert_eq!(doc["description"], "lr sweep, first try");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn readme(mut self, text: impl Into<String>) -> Self {
        self.readme = Some(text.into());
        self
    }

    /// Tags (default none; a reopen keeps the old ones).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("alice/mnist/a")
    ///     .dash_root(root.path())
    ///     .tags(["cnn", "baseline"])
    ///     .run()?;
    /// let doc = ml_dash::read::document(root.path(), "alice/mnist/a", "experiment.json")?.unwrap();
    /// assert_eq!(doc["tags"], serde_json::json!(["cnn", "baseline"]));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Free-form metadata, any `Serialize` value (default none).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("alice/mnist/a")
    ///     .dash_root(root.path())
    ///     .metadata(serde_json::json!({"gpu": "H100"}))
    ///     .run()?;
    /// let doc = ml_dash::read::document(root.path(), "alice/mnist/a", "experiment.json")?.unwrap();
    /// assert_eq!(doc["metadata"]["gpu"], "H100");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn metadata(mut self, value: impl Serialize) -> Self {
        self.metadata = Some(serde_json::to_value(value).map_err(|e| e.to_string()));
        self
    }

    /// Buffer settings (default: [`BufferConfig::from_env`], so the
    /// `ML_DASH_*` variables apply unless code sets a config).
    ///
    /// # Examples
    /// ```
    /// use ml_dash::{BufferConfig, Experiment};
    /// # let root = tempfile::tempdir().unwrap();
    /// let mut cfg = BufferConfig::from_env()?;
    /// cfg.buffer_enabled = false; // each call returns once it is stored
    /// let run = Experiment::new("alice/mnist/a").dash_root(root.path()).buffer_config(cfg).run()?;
    /// run.log("stored at once")?;
    /// assert_eq!(ml_dash::read::logs(root.path(), "alice/mnist/a")?.len(), 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn buffer_config(mut self, config: BufferConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Opens (or reopens, appending) the experiment and starts its collector.
    /// The run is RUNNING until [`Run::complete`] (or a drop) closes it.
    ///
    /// # Errors
    /// [`Error::InvalidPrefix`], [`Error::Config`] (also for
    /// [`remote_only`](Self::remote_only) without a `dash_url`), or
    /// [`Error::Io`] when the store cannot be created.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("alice/mnist/a").dash_root(root.path()).run()?;
    /// let info = ml_dash::read::run(root.path(), "alice/mnist/a").unwrap();
    /// assert_eq!(info.status(), Some("RUNNING"));
    /// assert!(ml_dash::Experiment::new("no-project").run().is_err()); // not owner/project/name
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn run(self) -> Result<Run> {
        let prefix = if self.prefix.is_empty() {
            std::env::var("ML_DASH_PREFIX").unwrap_or_default()
        } else {
            self.prefix
        };
        validate_prefix(&prefix)?;
        let cfg = match self.config {
            Some(c) => c,
            None => BufferConfig::from_env()?,
        };
        cfg.validate()?;
        let ranks = match self.rank {
            Some((r, w)) => Some(Ranks::new(r, w)?),
            None => Ranks::from_env()?,
        };
        let mode = match self.rank_mode {
            Some(m) => m,
            None => RankMode::from_env()?.unwrap_or(DEFAULT_RANK_MODE),
        };
        let signals = match self.signals {
            Some(s) => s,
            None => HandleSignals::from_env()?.unwrap_or_default(),
        };
        let deadline = crate::signals::deadline_from_env()?;
        let metadata = match self.metadata {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => return Err(Error::InvalidValue(format!("metadata: {e}"))),
            None => None,
        };
        let copies = match (self.dash_root.is_some(), self.dash_url.is_some()) {
            (true, false) => Copies::Local,
            (true, true) => Copies::Hybrid,
            (false, true) => Copies::RemoteOnly,
            (false, false) => {
                return Err(Error::Config {
                    name: "remote_only",
                    value: "true".into(),
                    reason: "a run without a local store needs a server: add .dash_url(url), \
                             or drop .remote_only() to write to the local store",
                });
            }
        };
        let joined = crate::ranks::join(self.dash_root.as_deref(), &prefix, ranks, mode)?;
        let prefix = joined.prefix;
        validate_prefix(&prefix)?;
        let ranks = ranks.filter(|r| r.world_size > 1);
        let dir = match &self.dash_root {
            Some(root) => crate::sink::local::experiment_dir(root, &prefix),
            None => remote_work_dir(&prefix),
        };
        if joined.role.inert {
            // Nothing on disk, no thread: the handles check their input and
            // return (see `RankMode::Rank0`).
            let files = Arc::new(FileStore::new(&dir, &prefix, false, copies));
            let (core, _) = RunCore::with_role(cfg, joined.role);
            return Ok(Run {
                core,
                pipeline: Pipeline::none(),
                dir,
                prefix,
                files,
                ranks,
            });
        }
        let info = ExperimentInfo {
            prefix: prefix.clone(),
            description: self.readme,
            tags: self.tags,
            metadata,
            unmarked: joined.member.as_ref().is_some_and(|m| !m.records_status()),
        };
        let local = match &self.dash_root {
            Some(root) => Some(LocalStore::open(root, &info, cfg.sync_on_flush)?),
            None => None,
        };
        let (remote, close_timeout) = match &self.dash_url {
            Some(url) => {
                let mut rc = RemoteConfig::from_env(prefix.clone(), dir.join(".spool"))?;
                if !url.is_empty() {
                    rc.dash_url = url.clone();
                }
                rc.token = self.token.clone();
                rc.description = info.description.clone();
                rc.tags = info.tags.clone();
                rc.metadata = info.metadata.clone();
                rc.retry_base_delay = cfg.retry_base_delay;
                rc.retry_max_delay = cfg.retry_max_delay;
                rc.max_close_retries = Some(cfg.max_retries);
                rc.quiet = cfg.quiet;
                let t = rc.close_timeout;
                (Some(RemoteSink::open(rc)?), t)
            }
            None => (None, std::time::Duration::ZERO),
        };
        let location = if local.is_some() {
            dir.clone()
        } else {
            dir.join(".spool")
        };
        let mut store = Tee::new(local, remote, location, close_timeout);
        store.member = joined.member;
        let files = Arc::new(FileStore::new(&dir, &prefix, cfg.sync_on_flush, copies));
        let cfg_workers = cfg.file_upload_workers;
        let (core, rx) = RunCore::with_role(cfg, joined.role);
        let pool = Pool::new(FileStore::clone(&files), cfg_workers);
        let pipeline = Pipeline::start(&core, rx, store, Some(pool))?;
        crate::signals::watch(&core, signals, deadline)?;
        Ok(Run {
            core,
            pipeline,
            dir,
            prefix,
            files,
            ranks,
        })
    }
}

/// Default of [`Experiment::dash_root`]: `.dash` (relative to the working directory).
pub const DEFAULT_DASH_ROOT: &str = ".dash";

/// The work area of a remote-only run of `prefix` (its spool `.spool` and the
/// files being sent, `files/`): `$XDG_CACHE_HOME/ml-dash/<prefix>` (an
/// absolute `XDG_CACHE_HOME`), else `$HOME/.cache/ml-dash/<prefix>`, else
/// `<temp dir>/ml-dash-<uid>/<prefix>`. The next remote-only run of the same
/// prefix sends what an earlier one left spooled, and
/// `ml_dash::sync(remote_work_dir(prefix).join(".spool"), ..)` does so from
/// any program. A cache folder survives reboots; the temp fallback may not
/// (some systems clear it at boot), so set `HOME` or `XDG_CACHE_HOME` where a
/// spooled backlog must survive one.
///
/// # Examples
/// ```
/// let dir = ml_dash::remote_work_dir("alice/mnist/a");
/// assert!(dir.is_absolute() && dir.ends_with("alice/mnist/a"));
/// ```
pub fn remote_work_dir(prefix: &str) -> PathBuf {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        });
    let root = match cache {
        Some(c) => c.join("ml-dash"),
        None => {
            let uid = crate::os::uid();
            std::env::temp_dir().join(format!("ml-dash-{uid}"))
        }
    };
    crate::sink::local::experiment_dir(&root, prefix)
}

/// The handle of metric stream `name` of the run of `core` ([`Run::metrics`]).
fn metrics_of(core: &Arc<RunCore>, name: &str) -> Result<Metrics> {
    // Before the stream registry: its lock may be held by a parent's thread.
    core.check_owner()?;
    names::validate_name(name, names::What::Metric)?;
    Ok(Metrics {
        id: core.streams.id(StreamKind::Metric, name),
        core: core.clone(),
    })
}

/// A running experiment. Dropping it completes the run (FAILED when dropped
/// during a panic) and drains everything; [`complete`](Run::complete),
/// [`fail`](Run::fail) and [`cancel`](Run::cancel) do so explicitly and report.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("alice/mnist/a").dash_root(root.path()).run()?;
/// run.log("started")?;
/// let report = run.complete()?; // or drop it: the same, with no report to look at
/// assert_eq!(report.status, Some(ml_dash::Status::Completed));
/// assert_eq!(report.stored.logs, 1);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[must_use = "dropping the run closes it at once"]
#[derive(Debug)]
pub struct Run {
    core: Arc<RunCore>,
    pipeline: Pipeline,
    dir: PathBuf,
    prefix: String,
    files: Arc<FileStore>,
    /// This process's rank in a distributed job (world size > 1).
    ranks: Option<Ranks>,
}

impl Run {
    /// A run that records nothing: every call checks its input as a real
    /// run's does and returns, with nothing written and no thread started
    /// (what the ranks other than 0 get in [`RankMode::Rank0`]). For code
    /// that logs unconditionally where no run is wanted (a test, a dry run).
    ///
    /// ```
    /// let run = ml_dash::Run::noop();
    /// run.metrics("train")?.log(&ml_dash::point! {"loss" => 0.5})?;
    /// assert!(!run.is_recording());
    /// assert!(run.metrics("bad/..").is_err()); // input is still checked
    /// assert_eq!(run.complete()?.status, None); // nothing was recorded
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn noop() -> Run {
        let role = crate::ranks::Role {
            inert: true,
            ..Default::default()
        };
        let (core, _) = RunCore::with_role(BufferConfig::default(), role);
        let dir = PathBuf::new();
        Run {
            core,
            pipeline: Pipeline::none(),
            files: Arc::new(FileStore::new(&dir, "", false, Copies::Local)),
            dir,
            prefix: String::new(),
            ranks: None,
        }
    }

    /// The files of folder `dir` of the run (`""` is the root). The folder is
    /// checked when a file is saved.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b/c").dash_root(root.path()).run()?;
    /// let info = run.files("configs").save_text("notes.txt", "lr 1e-3")?;
    /// assert_eq!(info.path, "/configs");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn files(&self, dir: &str) -> Files {
        Files {
            core: self.core.clone(),
            store: self.files.clone(),
            dir: dir.to_string(),
            description: None,
            tags: Vec::new(),
            metadata: None,
            shared: false,
        }
    }

    /// The handle of metric stream `name` (created on first use). Keep it
    /// across iterations; clone it into other threads.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an empty, too long, path-escaping or reserved
    /// (`None`) name, and for one the store cannot hold: a segment (between
    /// `/`) over 255 bytes, or one that begins with `.`, `data.jsonl` or
    /// `metadata.json` (the store's own files in a stream folder);
    /// [`Error::Forked`].
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let train = run.metrics("train")?;
    /// train.log(&ml_dash::point! {"loss" => 0.5})?;
    /// assert!(run.metrics("../escape").is_err());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn metrics(&self, name: &str) -> Result<Metrics> {
        metrics_of(&self.core, name)
    }

    /// As [`metrics`](Run::metrics), with the stream's description, tags and
    /// metadata (the SDK's `metrics(name, description=, tags=, metadata=)`).
    /// The first handle of a stream sets them; a later call keeps them, and
    /// a stream whose `metadata.json` exists keeps what it says. They go to
    /// the new `metadata.json` and with each batch sent to the server.
    ///
    /// # Errors
    /// As [`metrics`](Run::metrics).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// use ml_dash::MetricInfo;
    /// let info = MetricInfo::default()
    ///     .description("training loss")
    ///     .tags(["train"])
    ///     .metadata(serde_json::json!({"unit": "nats"}))?;
    /// let train = run.metrics_with("train", info)?;
    /// train.log(&ml_dash::point! {"loss" => 0.5})?;
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn metrics_with(&self, name: &str, info: MetricInfo) -> Result<Metrics> {
        self.core.check_owner()?;
        names::validate_name(name, names::What::Metric)?;
        Ok(Metrics {
            id: (self.core.streams).id_with(StreamKind::Metric, name, Some(info.0)),
            core: self.core.clone(),
        })
    }

    /// The unnamed metric stream (stored as `metrics/None`).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.unnamed_metrics().log(&ml_dash::point! {"epoch" => 1})?;
    /// run.flush()?;
    /// assert_eq!(ml_dash::read::metrics(root.path(), "a/b", None)?.len(), 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn unnamed_metrics(&self) -> Metrics {
        // In a fork's child: a handle whose calls return `Forked` (the
        // registry's lock may be held by a parent's thread).
        let id = match self.core.check_owner() {
            Ok(()) => self.core.streams.id(StreamKind::Metric, ""),
            Err(_) => 0,
        };
        Metrics {
            id,
            core: self.core.clone(),
        }
    }

    /// The handle of track topic `topic` (`robot/pose` is stored in `tracks/robot_pose`).
    ///
    /// # Errors
    /// [`Error::InvalidName`] as for [`metrics`](Run::metrics) (a topic is one
    /// folder, so at most 255 bytes in all), also when the topic's folder would
    /// collide with another topic's (`a/b` and `a_b`); [`Error::Forked`].
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let pose = run.tracks("robot/pose")?;
    /// pose.append(&ml_dash::point! {"x" => 1.0, "y" => 2.0})?;
    /// assert!(run.tracks("robot_pose").is_err()); // the same folder
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn tracks(&self, topic: &str) -> Result<Track> {
        self.core.check_owner()?;
        names::validate_name(topic, names::What::Topic)?;
        let folder = crate::sink::local::topic_folder(topic);
        for other in self.core.streams.names(StreamKind::Track) {
            if *other != *topic && crate::sink::local::topic_folder(&other) == folder {
                return Err(Error::InvalidName {
                    name: topic.to_string(),
                    reason: "its folder collides with another topic of this run ('/' and '_' map to the same folder)",
                });
            }
        }
        check_topic(&self.dir, topic)?;
        Ok(Track {
            id: self.core.streams.id(StreamKind::Track, topic),
            core: self.core.clone(),
        })
    }

    /// A log handle for other threads.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let logger = run.logger();
    /// std::thread::spawn(move || logger.info("from a worker")).join().unwrap()?;
    /// run.flush()?;
    /// assert_eq!(ml_dash::read::logs(root.path(), "a/b")?[0]["message"], "from a worker");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn logger(&self) -> Logger {
        Logger {
            core: self.core.clone(),
        }
    }

    /// Logs `message` at level info.
    ///
    /// # Errors
    /// [`Error::Closed`] after close; [`Error::RecordTooLarge`].
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.log("epoch 1 done")?;
    /// run.flush()?;
    /// let logs = ml_dash::read::logs(root.path(), "a/b")?;
    /// assert_eq!((logs[0]["level"].as_str(), logs[0]["message"].as_str()), (Some("info"), Some("epoch 1 done")));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn log(&self, message: &str) -> Result<()> {
        self.logger().log(Level::Info, message, &[])
    }

    /// Logs `message` at `level` with metadata fields.
    ///
    /// # Errors
    /// As [`log`](Run::log).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// use ml_dash::{Level, point};
    /// run.log_with(Level::Warn, "loss spiked", &point! {"step" => 120, "loss" => 9.5})?;
    /// run.flush()?;
    /// let logs = ml_dash::read::logs(root.path(), "a/b")?;
    /// assert_eq!(logs[0]["metadata"]["step"], 120);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn log_with(&self, level: Level, message: &str, metadata: &Fields<'_>) -> Result<()> {
        Logger::push(&self.core, level, message, metadata)
    }

    /// The parameters handle.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.params().set(serde_json::json!({"lr": 0.001}))?;
    /// run.flush()?;
    /// assert_eq!(ml_dash::read::params(run.dir())?["lr"], 0.001);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn params(&self) -> Params {
        Params {
            core: self.core.clone(),
        }
    }

    /// Returns when everything logged before the call (by any thread, when the
    /// call happens after it) is in the store.
    ///
    /// # Errors
    /// [`Error::Sink`] when the store refused the write (the data stays
    /// buffered, up to half the memory budget, and is retried) or when records
    /// logged before the call were dropped because the store kept failing
    /// (counted in [`CloseReport::lost_to_store`]); [`Error::Closed`] after close;
    /// [`Error::Forked`] in the child of a fork (at once: nothing waits).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let train = run.metrics("train")?;
    /// train.log(&ml_dash::point! {"loss" => 0.5})?;
    /// run.flush()?; // now it is on disk
    /// assert_eq!(ml_dash::read::metrics(root.path(), "a/b", Some("train"))?.len(), 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn flush(&self) -> Result<()> {
        self.core.flush()
    }

    /// Records dropped so far under the lossy backpressure policy (0 by default).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.log("kept")?;
    /// assert_eq!(run.dropped(), 0); // the default policy never drops
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn dropped(&self) -> u64 {
        self.core.dropped.load(Ordering::Relaxed)
    }

    /// The experiment's folder in the local store; for a remote-only run its
    /// work area, [`remote_work_dir`]`(prefix)`.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// assert!(run.dir().join("experiment.json").is_file());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The experiment prefix (in [`RankMode::PerRank`], `<prefix>/rank-<r>`).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("alice/mnist/a").dash_root(root.path()).run()?;
    /// assert_eq!(run.prefix(), "alice/mnist/a");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// This process's rank, when it is one of a distributed job (world size
    /// above 1).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// use ml_dash::{Experiment, RankMode};
    /// let run = Experiment::new("a/ddp/job").dash_root(root.path()).rank(2, 4).rank_mode(RankMode::Shared).run()?;
    /// let ranks = run.ranks().unwrap();
    /// assert_eq!((ranks.rank, ranks.world_size), (2, 4));
    /// assert_eq!(ml_dash::Run::noop().ranks(), None);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn ranks(&self) -> Option<Ranks> {
        self.ranks
    }

    /// Whether this run records anything: false on the ranks other than 0
    /// in [`RankMode::Rank0`] and for [`Run::noop`], whose calls succeed and
    /// do nothing.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// assert!(run.is_recording());
    /// assert!(!ml_dash::Run::noop().is_recording());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn is_recording(&self) -> bool {
        !self.core.role.inert
    }

    /// Closes the run as COMPLETED after draining everything.
    ///
    /// # Errors
    /// [`Error::Sink`] when some records could not be written (the report in
    /// the message counts them), [`Error::Collector`] if the collector died,
    /// [`Error::Panicked`] if the remote sender did (its data stays spooled);
    /// [`Error::Forked`] in a fork's child, which leaves the parent's run as it is.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.log("done")?;
    /// let report = run.complete()?;
    /// assert_eq!(report.stored.logs, 1);
    /// let info = ml_dash::read::run(root.path(), "a/b").unwrap();
    /// assert_eq!(info.status(), Some("COMPLETED"));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn complete(mut self) -> Result<CloseReport> {
        self.close(Status::Completed)
    }

    /// Closes the run as FAILED after draining everything.
    ///
    /// # Errors
    /// As [`complete`](Run::complete).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.logger().error("out of memory")?;
    /// assert_eq!(run.fail()?.status, Some(ml_dash::Status::Failed));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn fail(mut self) -> Result<CloseReport> {
        self.close(Status::Failed)
    }

    /// Closes the run as CANCELLED after draining everything.
    ///
    /// # Errors
    /// As [`complete`](Run::complete).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.cancel()?;
    /// assert_eq!(ml_dash::read::run(root.path(), "a/b").unwrap().status(), Some("CANCELLED"));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn cancel(mut self) -> Result<CloseReport> {
        self.close(Status::Cancelled)
    }

    fn close(&mut self, status: Status) -> Result<CloseReport> {
        if self.core.role.inert {
            self.core.check_owner()?;
            return match self.core.mark_closed() {
                true => Ok(CloseReport::default()),
                false => Err(Error::Closed),
            };
        }
        let report = self.pipeline.close(&self.core, status)?;
        if let Some(why) = &report.dead_thread {
            return Err(Error::Panicked(why.clone()));
        }
        if report.unwritten.total() > 0 {
            let (u, l) = (report.unwritten, report.lost_to_store);
            return Err(Error::Sink(format!(
                "{} log(s), {} metric(s), {} track(s) not written, {} file(s) not stored, \
                 and {} log(s), {} metric(s), {} track(s) dropped earlier while the store \
                 failed: {}",
                u.logs,
                u.metrics,
                u.tracks,
                u.files,
                l.logs,
                l.metrics,
                l.tracks,
                report.errors.last().map_or("", String::as_str)
            )));
        }
        Ok(report)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.pipeline.is_open() {
            let status = if std::thread::panicking() {
                Status::Failed
            } else {
                Status::Completed
            };
            match self.close(status) {
                // A fork's child drops the parent's run silently (stderr's
                // lock may be held by a parent's thread, too).
                Ok(_) | Err(Error::Forked) => {}
                Err(e) => eprintln!("[ML-Dash] warning: closing {} failed: {e}", self.prefix),
            }
        }
    }
}

/// A metric stream's description, tags and metadata, for
/// [`Run::metrics_with`] (each default none).
///
/// # Examples
/// ```
/// use ml_dash::MetricInfo;
/// let info = MetricInfo::default().description("eval loss").tags(["eval"]);
/// assert_ne!(info, MetricInfo::default());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricInfo(StreamInfo);

impl MetricInfo {
    /// What the stream holds.
    ///
    /// # Examples
    /// ```
    /// let info = ml_dash::MetricInfo::default().description("training loss, per step");
    /// assert_ne!(info, ml_dash::MetricInfo::default());
    /// ```
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.0.description = Some(text.into());
        self
    }

    /// Tags for the stream.
    ///
    /// # Examples
    /// ```
    /// let info = ml_dash::MetricInfo::default().tags(["train", "loss"]);
    /// assert_ne!(info, ml_dash::MetricInfo::default());
    /// ```
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.0.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Structured metadata (units, type, ...), any `Serialize` value.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `value` does not serialize.
    ///
    /// # Examples
    /// ```
    /// let info = ml_dash::MetricInfo::default().metadata(serde_json::json!({"unit": "nats"}))?;
    /// assert_ne!(info, ml_dash::MetricInfo::default());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn metadata(mut self, value: impl Serialize) -> Result<Self> {
        self.0.metadata =
            Some(serde_json::to_value(value).map_err(|e| Error::InvalidValue(e.to_string()))?);
        Ok(self)
    }
}

/// A metric stream. Cheap to clone; `Send + Sync`.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let train = run.metrics("train")?;
/// let worker = train.clone();
/// std::thread::spawn(move || worker.log(&ml_dash::point! {"loss" => 0.5})).join().unwrap()?;
/// train.log(&ml_dash::point! {"loss" => 0.25})?;
/// run.flush()?;
/// assert_eq!(ml_dash::read::metrics(root.path(), "a/b", Some("train"))?.len(), 2);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a metric stream's handle does nothing until its `log` is called"]
pub struct Metrics {
    core: Arc<RunCore>,
    id: u32,
}

impl Metrics {
    /// Logs one point. Every point gets `_ts` (float epoch seconds of the call)
    /// unless it has a field named `_ts`: a number of seconds, or `-1` for the
    /// timestamp of this thread's previous metric point or track row in this
    /// run (the SDK's rule).
    ///
    /// # Errors
    /// [`Error::Closed`] after close; [`Error::InvalidName`] for a field name
    /// of 0 or over 255 bytes; [`Error::RecordTooLarge`];
    /// [`Error::InvalidValue`] for a `_ts` that is not a finite number, or
    /// `-1` from a thread that has logged no metric point or track row to
    /// this run yet; [`Error::Forked`] in the child of a fork (nothing is
    /// logged there).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let train = run.metrics("train")?;
    /// train.log(&ml_dash::point! {"loss" => 0.5, "step" => 1})?;
    /// train.log(&[("loss", 0.25.into()), ("_ts", 1_700_000_000.0.into())])?;
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    #[inline(always)]
    pub fn log(&self, fields: &Fields<'_>) -> Result<()> {
        self.core.push_now(kind::METRIC, self.id, fields)
    }

    /// Logs `scalars` to this stream and each group to its own stream with the
    /// scalars in it, all with one timestamp: the SDK's
    /// `metrics.log(epoch=1, train={..}, eval={..})`. A group's field wins
    /// over a scalar of the same name, except `_ts`: a `_ts` among the
    /// scalars is every point's. Scalars that are empty or only `_ts` log no
    /// point to this stream (as in the SDK). Every point is checked before
    /// any is logged.
    ///
    /// # Errors
    /// As [`log`](Metrics::log); [`Error::InvalidValue`] for a group stream of
    /// another run.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// use ml_dash::point;
    /// let (train, eval) = (run.metrics("train")?, run.metrics("eval")?);
    /// run.unnamed_metrics().log_groups(
    ///     &point! {"epoch" => 100},
    ///     &[
    ///         (&train, &point! {"loss" => 0.142, "accuracy" => 0.80}),
    ///         (&eval, &point! {"loss" => 0.201, "accuracy" => 0.76}),
    ///     ],
    /// )?;
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn log_groups(
        &self,
        scalars: &Fields<'_>,
        groups: &[(&Metrics, &Fields<'_>)],
    ) -> Result<()> {
        if groups
            .iter()
            .any(|(m, _)| !Arc::ptr_eq(&m.core, &self.core))
        {
            return Err(Error::InvalidValue(
                "log_groups: every group's stream must be a handle of this run".into(),
            ));
        }
        let own = scalars.iter().any(|(name, _)| *name != "_ts");
        let max = self.core.cfg.max_record_bytes;
        if own {
            crate::record::checked_len(&[], scalars, max)?;
        }
        for (_, group) in groups {
            with_merged(scalars, group, |f| crate::record::checked_len(&[], f, max))?;
        }
        // One time for all, read once.
        let head = Head {
            kind: kind::METRIC,
            aux: 0,
            stream: self.id,
            ts: crate::clock::now(),
        };
        if own {
            self.core.push(head, &[], scalars)?;
        }
        for (m, group) in groups {
            let head = Head {
                stream: m.id,
                ..head
            };
            with_merged(scalars, group, |f| self.core.push(head, &[], f))?;
        }
        Ok(())
    }
}

/// Runs `f` on `{**scalars, **group}` as the SDK builds a group's point: the
/// scalars in order, each replaced by the group's field of the same name
/// (except `_ts`), then the group's other fields. On the stack up to 32 fields.
fn with_merged<R>(scalars: &Fields<'_>, group: &Fields<'_>, f: impl FnOnce(&Fields<'_>) -> R) -> R {
    let own = scalars
        .iter()
        .map(|&(name, v)| match group.iter().rfind(|(g, _)| *g == name) {
            Some(&(_, gv)) if name != "_ts" => (name, gv),
            _ => (name, v),
        });
    let rest = (group.iter())
        .filter(|(g, _)| !scalars.iter().any(|(s, _)| s == g))
        .copied();
    let merged = own.chain(rest);
    const INLINE: usize = 32;
    if scalars.len() + group.len() <= INLINE {
        let mut buf = [("", Value::Null); INLINE];
        let mut n = 0;
        for (slot, field) in buf.iter_mut().zip(merged) {
            *slot = field;
            n += 1;
        }
        f(&buf[..n])
    } else {
        f(&merged.collect::<Vec<_>>())
    }
}

/// A track topic. Cheap to clone; `Send + Sync`.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let pose = run.tracks("robot/pose")?;
/// pose.append_at(0.5, &ml_dash::point! {"x" => 1.0})?;
/// run.flush()?;
/// let rows = ml_dash::read::tracks(root.path(), "a/b", "robot/pose")?;
/// assert_eq!(rows[0], serde_json::json!({"timestamp": 0.5, "x": 1.0}));
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a track's handle does nothing until its `append` is called"]
pub struct Track {
    core: Arc<RunCore>,
    id: u32,
}

impl Track {
    /// Appends a row at the wall-clock time (strictly increasing per
    /// experiment), or at its field `_ts` (the SDK's keyword: seconds, or `-1`
    /// as in [`append_at`](Track::append_at)), which is not stored as a field.
    ///
    /// # Errors
    /// As [`Metrics::log`], except that `_ts = -1` with no previous timestamp
    /// takes the wall clock.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let pose = run.tracks("robot/pose")?;
    /// pose.append(&ml_dash::point! {"x" => 1.0, "q" => &[0.1, 0.2]})?;
    /// pose.append(&ml_dash::point! {"x" => 2.0, "_ts" => 1_700_000_000.0})?;
    /// run.flush()?;
    /// let rows = ml_dash::read::tracks(root.path(), "a/b", "robot/pose")?;
    /// assert_eq!(rows.len(), 2);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn append(&self, fields: &Fields<'_>) -> Result<()> {
        self.core.push_now(kind::TRACK, self.id, fields)
    }

    /// Appends a row at `timestamp`; rows of one timestamp in one flush window
    /// merge (later fields win). `-1` is the timestamp of this thread's
    /// previous metric point or track row in this run (the SDK's rule; the
    /// wall clock, as in [`append`](Track::append), when it has none).
    ///
    /// # Errors
    /// As [`Metrics::log`]; [`Error::InvalidValue`] for a non-finite timestamp.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let pose = run.tracks("robot/pose")?;
    /// pose.append_at(1.0, &ml_dash::point! {"x" => 1})?;
    /// pose.append_at(1.0, &ml_dash::point! {"y" => 2})?; // same time: one row
    /// run.flush()?;
    /// let rows = ml_dash::read::tracks(root.path(), "a/b", "robot/pose")?;
    /// assert_eq!(rows, [serde_json::json!({"timestamp": 1.0, "x": 1, "y": 2})]);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn append_at(&self, timestamp: f64, fields: &Fields<'_>) -> Result<()> {
        if !timestamp.is_finite() {
            return Err(Error::InvalidValue(format!(
                "track timestamp {timestamp} is not a finite number"
            )));
        }
        let (aux, ts) = if timestamp == -1.0 {
            (TRACK_PREVIOUS_TS, crate::clock::now())
        } else {
            (TRACK_EXPLICIT_TS, timestamp.to_bits())
        };
        let head = Head {
            kind: kind::TRACK,
            aux,
            stream: self.id,
            ts,
        };
        self.core.push(head, &[], fields)
    }
}

/// `info(message)` and `info_with(message, metadata)` for each level: the
/// SDK's `logs.info(msg, **metadata)`.
macro_rules! level_methods {
    ($($plain:ident, $with:ident, $level:ident, $name:literal;)*) => {$(
        #[doc = concat!("Logs at ", $name, ".")]
        ///
        /// # Errors
        /// As [`log`](Logger::log).
        ///
        /// # Examples
        /// ```
        /// # let root = tempfile::tempdir().unwrap();
        /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
        #[doc = concat!("run.logger().", stringify!($plain), r#"("epoch done")?;"#)]
        /// run.flush()?;
        #[doc = concat!(r#"assert_eq!(ml_dash::read::logs(root.path(), "a/b")?[0]["level"], ""#, $name, r#"");"#)]
        /// # Ok::<(), ml_dash::Error>(())
        /// ```
        pub fn $plain(&self, message: &str) -> Result<()> {
            self.log(Level::$level, message, &[])
        }

        #[doc = concat!("Logs at ", $name, " with metadata fields (none: no `metadata` key).")]
        ///
        /// # Errors
        /// As [`log`](Logger::log).
        ///
        /// # Examples
        /// ```
        /// # let root = tempfile::tempdir().unwrap();
        /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
        #[doc = concat!("run.logger().", stringify!($with), r#"("epoch done", &ml_dash::point! {"epoch" => 1, "loss" => 0.5})?;"#)]
        /// # Ok::<(), ml_dash::Error>(())
        /// ```
        pub fn $with(&self, message: &str, metadata: &Fields<'_>) -> Result<()> {
            self.log(Level::$level, message, metadata)
        }
    )*};
}

/// Logs of a run, for any thread. Cheap to clone.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let logger = run.logger();
/// logger.info("loading data")?;
/// logger.warn_with("slow batch", &ml_dash::point! {"ms" => 250})?;
/// logger.flush()?;
/// assert_eq!(ml_dash::read::logs(root.path(), "a/b")?.len(), 2);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a logger does nothing until it logs"]
pub struct Logger {
    core: Arc<RunCore>,
}

impl Logger {
    fn push(core: &Arc<RunCore>, level: Level, message: &str, metadata: &Fields<'_>) -> Result<()> {
        let head = Head {
            kind: kind::LOG,
            aux: level.to_u8(),
            stream: 0,
            ts: crate::encode::now_nanos(),
        };
        core.push(head, message.as_bytes(), metadata)
    }

    /// Logs `message` at `level` with metadata fields.
    ///
    /// # Errors
    /// [`Error::Closed`] after close; [`Error::RecordTooLarge`].
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// use ml_dash::{Level, point};
    /// run.logger().log(Level::Debug, "batch", &point! {"size" => 64})?;
    /// run.flush()?;
    /// assert_eq!(ml_dash::read::logs(root.path(), "a/b")?[0]["level"], "debug");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn log(&self, level: Level, message: &str, metadata: &Fields<'_>) -> Result<()> {
        Self::push(&self.core, level, message, metadata)
    }

    /// [`Run::metrics`] for code that holds only a logger (the `tracing`
    /// bridge names a stream per event).
    #[cfg(feature = "tracing")]
    pub(crate) fn metrics(&self, name: &str) -> Result<Metrics> {
        metrics_of(&self.core, name)
    }

    /// [`Run::flush`] from any thread.
    ///
    /// # Errors
    /// As [`Run::flush`].
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let logger = run.logger();
    /// logger.info("checkpoint saved")?;
    /// logger.flush()?;
    /// assert_eq!(ml_dash::read::logs(root.path(), "a/b")?.len(), 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn flush(&self) -> Result<()> {
        self.core.flush()
    }

    /// Logs at a level given by name (`"info"`, `"WARN"`, ...).
    ///
    /// # Errors
    /// [`Error::InvalidLevel`] for any other name.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.logger().log_level("WARN", "from a config string", &[])?;
    /// assert!(run.logger().log_level("warning", "no such level", &[]).is_err());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn log_level(&self, level: &str, message: &str, metadata: &Fields<'_>) -> Result<()> {
        self.log(level.parse()?, message, metadata)
    }

    level_methods! {
        info, info_with, Info, "info";
        warn, warn_with, Warn, "warn";
        error, error_with, Error, "error";
        debug, debug_with, Debug, "debug";
        fatal, fatal_with, Fatal, "fatal";
    }
}

/// The run's parameters. Cheap to clone.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let params = run.params();
/// params.set(serde_json::json!({"model": {"lr": 0.001}}))?;
/// params.set(serde_json::json!({"epochs": 10}))?; // merged in
/// run.flush()?;
/// let stored = ml_dash::read::params(run.dir())?;
/// assert_eq!((stored["model.lr"].as_f64(), stored["epochs"].as_i64()), (Some(0.001), Some(10)));
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a params handle does nothing until its `set` is called"]
pub struct Params {
    core: Arc<RunCore>,
}

impl Params {
    /// Merges `values` (a map; nested maps are flattened with `.`) into the
    /// stored parameters (upsert). Each call is its own version, as in the
    /// SDK: `parameters.json` is rewritten with the version bumped by one, and
    /// a remote run sends one `POST .../parameters` with this call's values
    /// alone, ahead of the data still being batched (see the README).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `values` is not a map; [`Error::Closed`].
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.params().set(serde_json::json!({"model": {"lr": 1e-3}, "optimizer": "adam"}))?;
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn set(&self, values: impl Serialize) -> Result<()> {
        let v = serde_json::to_value(values).map_err(|e| Error::InvalidValue(e.to_string()))?;
        let Json::Object(m) = v else {
            return Err(Error::InvalidValue(format!(
                "parameters must be a map of names to values, not {v}"
            )));
        };
        let mut flat = Map::new();
        flatten("", m, &mut flat);
        if !self.core.role.writes_shared {
            // Shared mode: rank 0 alone writes the parameters.
            self.core.check_owner()?;
            return self.core.noop_result();
        }
        if flat.is_empty() {
            return Ok(());
        }
        let text = serde_json::to_vec(&Json::Object(flat)).expect("a Value always serializes");
        let head = Head {
            kind: kind::PARAMS,
            aux: 0,
            stream: 0,
            ts: 0,
        };
        self.core.push(head, &text, &[])?;
        // The SDK sends a set at call time: the collector writes it (and a
        // remote run spools it) as soon as it wakes, not at the next timer.
        self.core.wake_collector();
        Ok(())
    }
}

fn flatten(prefix: &str, m: Map<String, Json>, out: &mut Map<String, Json>) {
    for (k, v) in m {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Json::Object(inner) => flatten(&key, inner, out),
            other => {
                out.insert(key, other);
            }
        }
    }
}

//! The runs of a store and what each holds: discovery under a `.dash` root,
//! the experiment document and its liveness, metric streams, track topics,
//! parameters and stored files. Nothing here loads a data file whole.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::files::FileInfo;
use crate::sink::local::{HEARTBEAT_INTERVAL, hostname, read_json};

/// How often an open run refreshes `heartbeat_at` in its `experiment.json`
/// (the collector does, also while nothing is logged).
pub const HEARTBEAT: Duration = HEARTBEAT_INTERVAL;

/// A heartbeat older than this many [`HEARTBEAT`]s is stale.
pub const STALE_HEARTBEATS: u32 = 4;

/// One run (experiment folder) of a store.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// ml_dash::Experiment::new("alice/mnist/a").dash_root(root.path()).run()?.complete()?;
/// let info = ml_dash::read::run(root.path(), "alice/mnist/a").unwrap();
/// assert_eq!(info.prefix, "alice/mnist/a");
/// assert_eq!(info.experiment["status"], "COMPLETED");
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `owner/project/[folders/]name`.
    pub prefix: String,
    /// Its folder.
    pub dir: PathBuf,
    /// `experiment.json` (`Null` when it does not parse; see
    /// [`verify`](super::verify_run) for why).
    pub experiment: Json,
}

/// Whether the process writing a RUNNING run is still there, from the marker
/// this crate writes in `experiment.json` while a run is open: `pid`,
/// `host` and `heartbeat_at` (refreshed every [`HEARTBEAT`]).
///
/// # Examples
/// ```
/// use ml_dash::read::Liveness;
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let now = std::time::SystemTime::now();
/// assert_eq!(ml_dash::read::run(root.path(), "a/b").unwrap().liveness(now), Liveness::Alive);
/// run.complete()?;
/// assert_eq!(ml_dash::read::run(root.path(), "a/b").unwrap().liveness(now), Liveness::Final);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// The status is final (COMPLETED, FAILED, CANCELLED).
    Final,
    /// RUNNING, and its process is alive (same host: the pid exists and the
    /// heartbeat is fresh; another host: the heartbeat is fresh).
    Alive,
    /// RUNNING, but its process (on this host) is gone: it died without
    /// closing the run (`kill -9`, a crash, an out-of-memory kill).
    Dead {
        /// The pid it had.
        pid: u32,
    },
    /// RUNNING, with a heartbeat older than [`STALE_HEARTBEATS`] ×
    /// [`HEARTBEAT`]: its process is on another host and has likely died, or
    /// is stopped.
    Stale {
        /// How old the heartbeat is.
        age: Duration,
    },
    /// No status, or no marker (runs of the Python SDK, which writes neither).
    Unknown,
}

impl Liveness {
    /// A short word for listings: `final`, `alive`, `dead`, `stale`, `unknown`.
    ///
    /// # Examples
    /// ```
    /// use ml_dash::read::Liveness;
    /// assert_eq!(Liveness::Dead { pid: 42 }.word(), "dead");
    /// assert_eq!(Liveness::Unknown.word(), "unknown");
    /// ```
    pub fn word(&self) -> &'static str {
        match self {
            Liveness::Final => "final",
            Liveness::Alive => "alive",
            Liveness::Dead { .. } => "dead",
            Liveness::Stale { .. } => "stale",
            Liveness::Unknown => "unknown",
        }
    }
}

impl RunInfo {
    fn str_field(&self, key: &str) -> Option<&str> {
        self.experiment.get(key).and_then(Json::as_str)
    }

    /// The status (`RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`), if recorded.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// assert_eq!(ml_dash::read::run(root.path(), "a/b").unwrap().status(), Some("RUNNING"));
    /// run.fail()?;
    /// assert_eq!(ml_dash::read::run(root.path(), "a/b").unwrap().status(), Some("FAILED"));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn status(&self) -> Option<&str> {
        self.str_field("status")
    }

    /// When the run (last) started: `started_at`, else `created_at`.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let before = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
    /// ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?.complete()?;
    /// let started = ml_dash::read::run(root.path(), "a/b").unwrap().started_at().unwrap();
    /// assert!(started >= before);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn started_at(&self) -> Option<SystemTime> {
        (self
            .str_field("started_at")
            .or_else(|| self.str_field("created_at")))
        .and_then(parse_time)
    }

    /// When it ended (`ended_at`).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// assert_eq!(ml_dash::read::run(root.path(), "a/b").unwrap().ended_at(), None);
    /// run.complete()?;
    /// let info = ml_dash::read::run(root.path(), "a/b").unwrap();
    /// assert!(info.ended_at().unwrap() >= info.started_at().unwrap());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn ended_at(&self) -> Option<SystemTime> {
        self.str_field("ended_at").and_then(parse_time)
    }

    /// Whether its writer is alive (see [`Liveness`]), at `now`.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let info = ml_dash::read::run(root.path(), "a/b").unwrap();
    /// assert_eq!(info.liveness(std::time::SystemTime::now()).word(), "alive");
    /// // Seen an hour later the heartbeat is old: its process may be stopped.
    /// let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    /// assert!(matches!(info.liveness(later), ml_dash::read::Liveness::Stale { .. }));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn liveness(&self, now: SystemTime) -> Liveness {
        match self.status() {
            Some("RUNNING") => {}
            Some(_) => return Liveness::Final,
            None => return Liveness::Unknown,
        }
        let beat = self.str_field("heartbeat_at").and_then(parse_time);
        let pid = self.experiment.get("pid").and_then(Json::as_u64);
        let host = self.str_field("host");
        let (Some(beat), Some(pid)) = (beat, pid.and_then(|p| u32::try_from(p).ok())) else {
            return Liveness::Unknown;
        };
        let age = now.duration_since(beat).unwrap_or_default();
        if host == Some(hostname().as_str()) && !crate::os::process_exists(pid) {
            return Liveness::Dead { pid };
        }
        if age > HEARTBEAT * STALE_HEARTBEATS {
            return Liveness::Stale { age };
        }
        Liveness::Alive
    }
}

/// An RFC 3339 time as the store writes it (`2026-01-02T03:04:05.123456Z`).
///
/// # Examples
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = ml_dash::read::parse_time("1970-01-01T00:00:01.500000Z").unwrap();
/// assert_eq!(t, UNIX_EPOCH + Duration::from_millis(1500));
/// assert_eq!(ml_dash::read::parse_time("yesterday"), None);
/// ```
pub fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()
}

/// Every run under `root` (a folder holding `experiment.json`; folders
/// whose names start with `.` are not searched), sorted by prefix. A
/// missing root has none.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// for name in ["alice/mnist/b", "alice/mnist/a"] {
///     ml_dash::Experiment::new(name).dash_root(root.path()).run()?.complete()?;
/// }
/// let runs = ml_dash::read::runs(root.path())?;
/// let prefixes: Vec<_> = runs.iter().map(|r| r.prefix.as_str()).collect();
/// assert_eq!(prefixes, ["alice/mnist/a", "alice/mnist/b"]);
/// assert!(ml_dash::read::runs(&root.path().join("none"))?.is_empty());
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn runs(root: &Path) -> Result<Vec<RunInfo>> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<RunInfo>) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut subdirs = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if e.file_type()
            .map_err(|er| Error::io(e.path(), er))?
            .is_dir()
        {
            subdirs.push(e.path());
        }
    }
    if dir != root && dir.join("experiment.json").is_file() {
        out.push(open_dir(root, dir));
        return Ok(());
    }
    for d in subdirs {
        walk(root, &d, out)?;
    }
    Ok(())
}

fn open_dir(root: &Path, dir: &Path) -> RunInfo {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let prefix: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    RunInfo {
        prefix: prefix.join("/"),
        dir: dir.to_path_buf(),
        experiment: read_json(&dir.join("experiment.json"))
            .ok()
            .flatten()
            .unwrap_or(Json::Null),
    }
}

/// The run `prefix` under `root`; `None` when it has no `experiment.json`.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// ml_dash::Experiment::new("alice/mnist/a").dash_root(root.path()).run()?.complete()?;
/// let info = ml_dash::read::run(root.path(), "alice/mnist/a").unwrap();
/// assert_eq!(info.dir, root.path().join("alice/mnist/a"));
/// assert!(ml_dash::read::run(root.path(), "alice/mnist/none").is_none());
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn run(root: &Path, prefix: &str) -> Option<RunInfo> {
    let dir = root.join(prefix.trim_matches('/'));
    dir.join("experiment.json")
        .is_file()
        .then(|| open_dir(root, &dir))
}

/// One metric stream of a run.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.metrics("train")?.log(&ml_dash::point! {"loss" => 0.5})?;
/// run.flush()?;
/// let stream = ml_dash::read::metric_stream(run.dir(), Some("train"));
/// assert_eq!(stream.name.as_deref(), Some("train"));
/// assert_eq!(stream.dir, run.dir().join("metrics/train"));
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDir {
    /// Its name (`None`: the unnamed stream, folder `None`); track topics
    /// are named as in their `metadata.json`.
    pub name: Option<String>,
    /// Its folder (holding `data.jsonl` and `metadata.json`).
    pub dir: PathBuf,
}

impl StreamDir {
    /// Its `data.jsonl`.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let stream = ml_dash::read::metric_stream(run.dir(), Some("train"));
    /// assert_eq!(stream.data(), run.dir().join("metrics/train/data.jsonl"));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn data(&self) -> PathBuf {
        self.dir.join("data.jsonl")
    }

    /// Its `metadata.json`, if there is one that parses.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let info = ml_dash::MetricInfo::default().description("training loss");
    /// run.metrics_with("train", info)?.log(&ml_dash::point! {"loss" => 0.5})?;
    /// run.flush()?;
    /// let meta = ml_dash::read::metric_stream(run.dir(), Some("train")).metadata()?.unwrap();
    /// assert_eq!(meta["description"], "training loss");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn metadata(&self) -> Result<Option<Json>> {
        read_json(&self.dir.join("metadata.json"))
    }

    /// The name to show: the stream's, or `None` for the unnamed one.
    ///
    /// # Examples
    /// ```
    /// let dir = std::path::Path::new("run");
    /// assert_eq!(ml_dash::read::metric_stream(dir, Some("train")).label(), "train");
    /// assert_eq!(ml_dash::read::metric_stream(dir, None).label(), "None");
    /// ```
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("None")
    }
}

/// The metric streams of the run in `dir`, sorted by name (folders holding
/// a `data.jsonl` or `metadata.json` under `metrics/`; names with `/` are
/// nested folders).
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.metrics("train/loss")?.log(&ml_dash::point! {"v" => 0.5})?;
/// run.metrics("eval")?.log(&ml_dash::point! {"v" => 0.7})?;
/// run.flush()?;
/// let names: Vec<_> = ml_dash::read::metric_streams(run.dir())?.into_iter().map(|s| s.name).collect();
/// assert_eq!(names, [Some("eval".to_string()), Some("train/loss".to_string())]);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn metric_streams(dir: &Path) -> Result<Vec<StreamDir>> {
    let mut out = Vec::new();
    streams_under(&dir.join("metrics"), "", &mut out)?;
    for s in &mut out {
        if s.name.as_deref() == Some("None") {
            s.name = None;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn streams_under(dir: &Path, rel: &str, out: &mut Vec<StreamDir>) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let p = e.path();
        if p.join("data.jsonl").exists() || p.join("metadata.json").exists() {
            out.push(StreamDir {
                name: Some(rel.clone()),
                dir: p.clone(),
            });
        }
        streams_under(&p, &rel, out)?;
    }
    Ok(())
}

/// The metric stream `name` of the run in `dir` (`None` or `"None"`: the
/// unnamed stream), whether or not it has data yet.
///
/// # Examples
/// ```
/// let dir = std::path::Path::new(".dash/a/b");
/// assert_eq!(ml_dash::read::metric_stream(dir, None).dir, dir.join("metrics/None"));
/// assert_eq!(ml_dash::read::metric_stream(dir, Some("train")).dir, dir.join("metrics/train"));
/// ```
pub fn metric_stream(dir: &Path, name: Option<&str>) -> StreamDir {
    let name = name.filter(|n| *n != "None");
    StreamDir {
        dir: dir.join("metrics").join(name.unwrap_or("None")),
        name: name.map(String::from),
    }
}

/// The track topics of the run in `dir`, sorted by topic (the topic as its
/// `metadata.json` says, else the folder name).
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.tracks("robot/pose")?.append(&ml_dash::point! {"x" => 1})?;
/// run.flush()?;
/// let topics = ml_dash::read::track_topics(run.dir())?;
/// assert_eq!(topics[0].name.as_deref(), Some("robot/pose"));
/// assert_eq!(topics[0].dir, run.dir().join("tracks/robot_pose"));
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn track_topics(dir: &Path) -> Result<Vec<StreamDir>> {
    let tracks = dir.join("tracks");
    let rd = match fs::read_dir(&tracks) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&tracks, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(&tracks, e))?;
        let folder = e.file_name().to_string_lossy().into_owned();
        if folder.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        let meta = read_json(&e.path().join("metadata.json")).ok().flatten();
        let topic = meta
            .as_ref()
            .and_then(|m| m.get("topic"))
            .and_then(Json::as_str)
            .map_or(folder, String::from);
        out.push(StreamDir {
            name: Some(topic),
            dir: e.path(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The track topic `topic` of the run in `dir`.
///
/// # Examples
/// ```
/// let dir = std::path::Path::new(".dash/a/b");
/// let topic = ml_dash::read::track_topic(dir, "robot/pose");
/// assert_eq!(topic.data(), dir.join("tracks/robot_pose/data.jsonl"));
/// ```
pub fn track_topic(dir: &Path, topic: &str) -> StreamDir {
    StreamDir {
        name: Some(topic.to_string()),
        dir: dir
            .join("tracks")
            .join(crate::sink::local::topic_folder(topic)),
    }
}

/// The logs file of the run in `dir`.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.log("hello")?;
/// run.flush()?;
/// let path = ml_dash::read::logs_path(run.dir());
/// assert_eq!(ml_dash::read::Lines::open(&path)?.count(), 1);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn logs_path(dir: &Path) -> PathBuf {
    dir.join("logs").join("logs.jsonl")
}

/// The run's parameters (`parameters.json`'s `data`, flat `a.b` keys as
/// stored); empty when none were set.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// assert!(ml_dash::read::params(run.dir())?.is_empty());
/// run.params().set(serde_json::json!({"opt": {"lr": 0.1}}))?;
/// run.flush()?;
/// assert_eq!(ml_dash::read::params(run.dir())?["opt.lr"], 0.1);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn params(dir: &Path) -> Result<Map<String, Json>> {
    Ok(match read_json(&dir.join("parameters.json"))? {
        Some(Json::Object(mut m)) => match m.remove("data") {
            Some(Json::Object(d)) => d,
            _ => Map::new(),
        },
        _ => Map::new(),
    })
}

/// A stored file and where its content is.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.files("configs").save_text("a.txt", "hi")?;
/// run.flush()?;
/// let stored = &ml_dash::read::stored_files(run.dir())?[0];
/// assert_eq!(stored.info.filename, "a.txt");
/// assert_eq!(std::fs::read_to_string(&stored.content).unwrap(), "hi");
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// Its entry in `files/.files_metadata.json`.
    pub info: FileInfo,
    /// `files/<path>/<id>/<filename>`.
    pub content: PathBuf,
}

/// The run's stored files (deleted ones left out), in the store's order.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.files("").save_text("keep.txt", "1")?;
/// run.files("").save_text("drop.txt", "2")?;
/// run.files("").delete("drop.txt")?;
/// let names: Vec<_> = ml_dash::read::stored_files(run.dir())?.into_iter().map(|f| f.info.filename).collect();
/// assert_eq!(names, ["keep.txt"]);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn stored_files(dir: &Path) -> Result<Vec<StoredFile>> {
    let files = dir.join("files");
    let meta = files.join(".files_metadata.json");
    let entries = match read_json(&meta)? {
        Some(Json::Object(mut m)) => match m.remove("files") {
            Some(Json::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for e in entries {
        let info: FileInfo = serde_json::from_value(e).map_err(|e| Error::Corrupt {
            path: meta.clone(),
            reason: format!("an entry of \"files\" is not a file's metadata: {e}"),
        })?;
        if info.deleted_at.is_some() {
            continue;
        }
        let rel = info.path.trim_start_matches('/');
        let base = if rel.is_empty() {
            files.clone()
        } else {
            files.join(rel)
        };
        out.push(StoredFile {
            content: base.join(&info.id).join(&info.filename),
            info,
        });
    }
    Ok(out)
}

//! Many processes of one job (torchrun, SLURM, DDP): which rank this process
//! is, and how the ranks record ([`RankMode`]).
//!
//! ```text
//!  RANK / WORLD_SIZE (torchrun), else SLURM_PROCID / SLURM_NTASKS, or Experiment::rank(..)
//!       |
//!       v  ML_DASH_RANKS / Experiment::rank_mode(..)     (default rank0)
//!  rank0     rank 0: a normal run; other ranks: inert handles (no-ops; nothing on disk or server)
//!  per_rank  rank r: a normal run of <prefix>/rank-<r>
//!  shared    every rank writes <prefix>; points carry "rank"; rank 0 alone: params,
//!            files marked shared, the final status (after the other ranks closed)
//! ```
//!
//! The ranks of a job meet in the local store: each rank's process keeps an
//! entry `<dash_root>/<prefix>/.ranks/<rank>.json` (mode, world size, pid,
//! host, status), written atomically by that process alone. It is how a
//! mismatched configuration is caught (a rank compares itself with rank 0's
//! entry, and rank 0 with every entry), how a process that opens the run of
//! a rank whose process is its parent (a forked or spawned data-loader worker)
//! joins as one more writer instead of a second rank, and how rank 0 knows
//! when the other ranks have closed. An entry counts while it says RUNNING
//! and its process may be alive: on this host `kill(pid, 0)` says so; an
//! entry of another host is taken at its word. A remote-only run has no
//! entries (nothing in it is shared between nodes): it checks nothing across
//! ranks and rank 0 does not wait.
//!
//! Depends on `config` (parsing) and the local store's lock and JSON helpers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};

use crate::api::Status;
use crate::config::{Range, parse_duration};
use crate::error::{Error, Result};
use crate::sink::local::{hostname as host, read_json, write_json_atomic};

/// `ML_DASH_RANKS`: `rank0`, `per_rank` or `shared`.
pub const ENV_RANKS: &str = "ML_DASH_RANKS";
/// Default of [`Experiment::rank_mode`](crate::Experiment::rank_mode).
pub const DEFAULT_RANK_MODE: RankMode = RankMode::Rank0;

/// How the processes of a distributed job record (`ML_DASH_RANKS`). A
/// process outside one (no rank variables, or a world size of 1) records as
/// a single process in every mode.
///
/// # Examples
/// ```
/// use ml_dash::{Experiment, RankMode};
/// # let root = tempfile::tempdir().unwrap();
/// // Under torchrun every rank writes one experiment; each point carries its rank.
/// let run = Experiment::new("alice/ddp/job").dash_root(root.path()).rank(0, 2).rank_mode(RankMode::Shared).run()?;
/// assert_eq!("per-rank".parse::<RankMode>()?, RankMode::PerRank);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RankMode {
    /// Only rank 0 records (the default: a script written for one GPU runs
    /// unchanged under torchrun and makes one run, not one per GPU). Other
    /// ranks get handles whose calls succeed and do nothing: nothing on
    /// disk, nothing sent, no thread started.
    Rank0,
    /// One run per rank, `<prefix>/rank-<r>`, grouped under the prefix.
    PerRank,
    /// One experiment that every rank writes: each metric point, track row
    /// and log line carries the field `rank`; rank 0 alone writes parameters
    /// and files marked [`shared`](crate::Files::shared), and records the
    /// final status once every other rank whose run is open when rank 0
    /// closes has closed (or `ML_DASH_CLOSE_TIMEOUT` has passed); other
    /// ranks never send a status.
    Shared,
}

impl RankMode {
    /// The name `ML_DASH_RANKS` takes.
    ///
    /// # Examples
    /// ```
    /// use ml_dash::RankMode;
    /// assert_eq!(RankMode::PerRank.as_str(), "per_rank");
    /// assert_eq!(RankMode::Shared.as_str().parse::<RankMode>()?, RankMode::Shared);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            RankMode::Rank0 => "rank0",
            RankMode::PerRank => "per_rank",
            RankMode::Shared => "shared",
        }
    }

    /// `ML_DASH_RANKS` (`None` when unset).
    ///
    /// # Errors
    /// [`Error::Config`] for any other value.
    ///
    /// # Examples
    /// ```
    /// use ml_dash::ranks::{DEFAULT_RANK_MODE, RankMode};
    /// // What `Experiment::run` does when code sets no mode.
    /// let mode = RankMode::from_env()?.unwrap_or(DEFAULT_RANK_MODE);
    /// # let _ = mode;
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn from_env() -> Result<Option<RankMode>> {
        match std::env::var(ENV_RANKS) {
            Ok(v) => v.parse().map(Some),
            Err(_) => Ok(None),
        }
    }
}

impl std::str::FromStr for RankMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<RankMode> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "rank0" | "rank_0" => Ok(RankMode::Rank0),
            "per_rank" => Ok(RankMode::PerRank),
            "shared" => Ok(RankMode::Shared),
            _ => Err(Error::Config {
                name: ENV_RANKS,
                value: s.to_string(),
                reason: "use rank0 (only rank 0 records), per_rank (a run per rank) or shared \
                         (one experiment every rank writes)",
            }),
        }
    }
}

/// This process's place in a distributed job.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/ddp/job").dash_root(root.path()).rank(3, 8).run()?;
/// let ranks = run.ranks().unwrap();
/// assert_eq!((ranks.rank, ranks.local_rank, ranks.world_size), (3, None, 8));
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ranks {
    /// The global rank, `0..world_size`.
    pub rank: u32,
    /// The rank on this node (`LOCAL_RANK` / `SLURM_LOCALID`), if known.
    pub local_rank: Option<u32>,
    /// How many ranks the job has.
    pub world_size: u32,
}

impl Ranks {
    /// Rank `rank` of `world_size` (for [`Experiment::rank`](crate::Experiment::rank)).
    ///
    /// # Errors
    /// [`Error::Config`] unless `rank < world_size`.
    ///
    /// # Examples
    /// ```
    /// use ml_dash::Ranks;
    /// assert_eq!(Ranks::new(1, 4)?.world_size, 4);
    /// assert!(Ranks::new(4, 4).is_err());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn new(rank: u32, world_size: u32) -> Result<Ranks> {
        let r = Ranks {
            rank,
            local_rank: None,
            world_size,
        };
        r.check("rank")?;
        Ok(r)
    }

    /// From torchrun's `RANK` / `LOCAL_RANK` / `WORLD_SIZE`, else SLURM's
    /// `SLURM_PROCID` / `SLURM_LOCALID` / `SLURM_NTASKS` (torchrun's win:
    /// `srun torchrun ..` sets both, and `RANK` is the process's own).
    /// `None` outside a job (SLURM variables count only with `SLURM_NTASKS`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable: not a number, `RANK` without
    /// `WORLD_SIZE`, or a rank not below the world size.
    ///
    /// # Examples
    /// ```
    /// // `None` outside torchrun and SLURM: one process.
    /// match ml_dash::Ranks::from_env()? {
    ///     Some(r) => println!("rank {} of {}", r.rank, r.world_size),
    ///     None => println!("a single process"),
    /// }
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn from_env() -> Result<Option<Ranks>> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (names, rank) = match (var("RANK"), var("SLURM_PROCID")) {
            (Some(r), _) => (["RANK", "LOCAL_RANK", "WORLD_SIZE"], r),
            (None, Some(r)) if var("SLURM_NTASKS").is_some() => {
                (["SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"], r)
            }
            _ => return Ok(None),
        };
        let num = |name: &'static str, v: String| {
            v.trim().parse::<u32>().map_err(|_| Error::Config {
                name,
                value: v,
                reason: "a whole number >= 0 (the job launcher sets it; unset it to record as \
                         one process)",
            })
        };
        let Some(world) = var(names[2]) else {
            return Err(Error::Config {
                name: names[2],
                value: String::new(),
                reason: "is missing while the rank variable is set: set both (torchrun sets \
                         RANK, LOCAL_RANK and WORLD_SIZE), or neither",
            });
        };
        let r = Ranks {
            rank: num(names[0], rank)?,
            local_rank: var(names[1]).map(|v| num(names[1], v)).transpose()?,
            world_size: num(names[2], world)?,
        };
        r.check(names[0])?;
        Ok(Some(r))
    }

    fn check(&self, name: &'static str) -> Result<()> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(Error::Config {
                name,
                value: format!("{} of world size {}", self.rank, self.world_size),
                reason: "a rank must be below the world size (ranks count from 0)",
            });
        }
        Ok(())
    }
}

/// What a run's handles do in its process (set once, read on cold paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Role {
    /// Every call succeeds and does nothing (rank0 mode, ranks other than 0).
    pub(crate) inert: bool,
    /// Metric points, track rows and log lines carry `"rank": r` (shared mode).
    pub(crate) rank_field: Option<u32>,
    /// Parameters and files marked shared are written (false: other ranks
    /// and workers of shared mode, whose calls skip them).
    pub(crate) writes_shared: bool,
}

impl Default for Role {
    fn default() -> Role {
        Role {
            inert: false,
            rank_field: None,
            writes_shared: true,
        }
    }
}

/// Where a run of a job records, and its entry among the ranks.
#[derive(Debug)]
pub(crate) struct Joined {
    /// The run's prefix (`<prefix>/rank-<r>` in per_rank mode).
    pub(crate) prefix: String,
    pub(crate) role: Role,
    /// Kept by the run's store: closes the entry, gates and times the status.
    pub(crate) member: Option<Member>,
}

/// The process that opened a shared run as its rank (not as a worker): a
/// fork's child sees its parent's pid here, and joins as a worker.
static SHARED_OWNER: AtomicU32 = AtomicU32::new(0);

/// Places this process in the job: its prefix, its role, and (with a local
/// store) its entry in `<root>/<prefix>/.ranks/`.
///
/// # Errors
/// [`Error::Config`] when another rank of the job (see the module docs)
/// records in another mode or world size, or this rank is already open in
/// another live process of this host that is not its parent;
/// [`Error::Io`] when the entry cannot be written.
pub(crate) fn join(
    root: Option<&Path>,
    prefix: &str,
    ranks: Option<Ranks>,
    mode: RankMode,
) -> Result<Joined> {
    let single = Joined {
        prefix: prefix.to_string(),
        role: Role::default(),
        member: None,
    };
    let Some(ranks) = ranks.filter(|r| r.world_size > 1) else {
        return Ok(single);
    };
    let dir = root.map(|r| crate::sink::local::experiment_dir(r, prefix).join(".ranks"));
    let me = Entry::new(ranks, mode);
    let worker = || Joined {
        prefix: prefix.to_string(),
        role: Role {
            inert: false,
            rank_field: Some(ranks.rank),
            writes_shared: false,
        },
        member: Some(Member::worker()),
    };
    match mode {
        RankMode::Rank0 if ranks.rank != 0 => {
            if let Some(dir) = &dir {
                me.check_against(&dir.join("0.json"))?;
            }
            Ok(Joined {
                role: Role {
                    inert: true,
                    ..Role::default()
                },
                ..single
            })
        }
        RankMode::Shared if is_worker(dir.as_deref(), ranks.rank)? => Ok(worker()),
        _ => {
            let member = match &dir {
                Some(dir) => Some(Member::claim(dir, me)?),
                None => Some(Member::unregistered(ranks, mode)),
            };
            if mode == RankMode::Shared {
                // Relaxed: read only by this process's forks (copied memory).
                SHARED_OWNER.store(std::process::id(), Ordering::Relaxed);
            }
            Ok(Joined {
                prefix: match mode {
                    RankMode::PerRank => format!("{prefix}/rank-{}", ranks.rank),
                    _ => prefix.to_string(),
                },
                role: match mode {
                    RankMode::Shared => Role {
                        inert: false,
                        rank_field: Some(ranks.rank),
                        writes_shared: ranks.rank == 0,
                    },
                    _ => Role::default(),
                },
                member,
            })
        }
    }
}

/// A shared run opened in a process whose parent holds that rank (its own
/// entry names the parent, or, without a store, the parent opened a shared
/// run before it forked): a data-loader worker, one more writer of the rank.
fn is_worker(dir: Option<&Path>, rank: u32) -> Result<bool> {
    let parent = std::os::unix::process::parent_id();
    match dir {
        Some(dir) => Ok(read_entry(&dir.join(format!("{rank}.json")))?
            .is_some_and(|e| e.live() && e.host == host() && e.pid == parent)),
        // Relaxed: see SHARED_OWNER.
        None => Ok(SHARED_OWNER.load(Ordering::Relaxed) == parent),
    }
}

/// One rank's entry (`.ranks/<rank>.json`).
#[derive(Debug, Clone)]
struct Entry {
    rank: u32,
    world_size: u32,
    mode: String,
    pid: u32,
    host: String,
    status: String,
    doc: Map<String, Json>,
}

impl Entry {
    fn new(r: Ranks, mode: RankMode) -> Entry {
        let now = crate::encode::iso_now();
        let doc = json!({
            "rank": r.rank,
            "local_rank": r.local_rank,
            "world_size": r.world_size,
            "mode": mode.as_str(),
            "pid": std::process::id(),
            "host": host(),
            "status": Status::Running.as_str(),
            "opened_at": now,
        });
        Entry::of(doc).expect("a complete entry")
    }

    fn of(v: Json) -> Option<Entry> {
        let Json::Object(doc) = v else { return None };
        let num = |k: &str| doc.get(k).and_then(Json::as_u64).map(|n| n as u32);
        let text = |k: &str| doc.get(k).and_then(Json::as_str).unwrap_or("").to_string();
        Some(Entry {
            rank: num("rank")?,
            world_size: num("world_size")?,
            pid: num("pid")?,
            mode: text("mode"),
            host: text("host"),
            status: text("status"),
            doc,
        })
    }

    /// Says RUNNING, and its process may be alive (see the module docs).
    fn live(&self) -> bool {
        self.status == Status::Running.as_str()
            && (self.host != host() || crate::os::process_exists(self.pid))
    }

    /// `Err` when the entry at `path` is live and disagrees with this one.
    fn check_against(&self, path: &Path) -> Result<()> {
        match read_entry(path)? {
            Some(other) if other.live() && other.pid != self.pid => self.agrees(&other),
            _ => Ok(()),
        }
    }

    fn agrees(&self, other: &Entry) -> Result<()> {
        if other.mode == self.mode && other.world_size == self.world_size {
            return Ok(());
        }
        Err(Error::Config {
            name: ENV_RANKS,
            value: format!(
                "{} with world size {} (rank {}), but rank {} (pid {} on {}) records as {} with \
                 world size {}",
                self.mode,
                self.world_size,
                self.rank,
                other.rank,
                other.pid,
                other.host,
                other.mode,
                other.world_size
            ),
            reason: "every rank of a job must have the same ML_DASH_RANKS (or rank_mode) and \
                     world size; if that other process is gone, delete its entry in \
                     <prefix>/.ranks/",
        })
    }
}

fn read_entry(path: &Path) -> Result<Option<Entry>> {
    // A damaged entry is no entry (its rank rewrites it when it opens).
    Ok(match read_json(path) {
        Ok(v) => v.and_then(Entry::of),
        Err(Error::Corrupt { .. }) => None,
        Err(e) => return Err(e),
    })
}

/// A rank's part in closing the run (kept by the run's store).
#[derive(Debug)]
pub(crate) struct Member {
    /// The entry file; `None` without a local store, or for a worker.
    path: Option<PathBuf>,
    entry: Option<Entry>,
    /// Records the run's final status (every rank except shared mode's
    /// non-zero ranks and workers).
    records_status: bool,
    /// Shared mode's rank 0: waits for the other ranks before the status.
    waits: bool,
    warnings: Vec<String>,
}

impl Member {
    fn worker() -> Member {
        Member {
            path: None,
            entry: None,
            records_status: false,
            waits: false,
            warnings: Vec::new(),
        }
    }

    fn unregistered(r: Ranks, mode: RankMode) -> Member {
        Member {
            records_status: mode != RankMode::Shared || r.rank == 0,
            ..Member::worker()
        }
    }

    /// Writes this rank's entry after checking it against the job's.
    fn claim(dir: &Path, me: Entry) -> Result<Member> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut warnings = Vec::new();
        if me.rank == 0 {
            for other in entries(dir)? {
                if other.rank != 0 && other.live() {
                    me.agrees(&other)?;
                }
            }
        } else {
            me.check_against(&dir.join("0.json"))?;
        }
        let path = dir.join(format!("{}.json", me.rank));
        if let Some(old) = read_entry(&path)?
            && old.live()
            && old.pid != me.pid
        {
            if old.host == me.host {
                return Err(Error::Config {
                    name: "rank",
                    value: format!(
                        "{} (already open in process {} on this host)",
                        me.rank, old.pid
                    ),
                    reason: "two live processes claim one rank of this experiment: give each \
                             process of the job its own RANK (SLURM_PROCID), or let a worker \
                             open its run from a process its rank's process started",
                });
            }
            warnings.push(format!(
                "rank {} of {} was recorded as running on {} (pid {}): taken over by this \
                 process (a node that died, or two nodes with one rank)",
                me.rank,
                dir.display(),
                old.host,
                old.pid
            ));
        }
        write_json_atomic(&path, &Json::Object(me.doc.clone()), false)?;
        let shared = me.mode == RankMode::Shared.as_str();
        Ok(Member {
            records_status: !shared || me.rank == 0,
            waits: shared && me.rank == 0,
            path: Some(path),
            entry: Some(me),
            warnings,
        })
    }

    /// Whether this process records the run's final status.
    pub(crate) fn records_status(&self) -> bool {
        self.records_status
    }

    /// Shared mode's rank 0, before its status: waits until no other rank's
    /// entry is live (none still open), at most `ML_DASH_CLOSE_TIMEOUT`
    /// (30 s), and not at all when a termination signal closes the run
    /// (every rank got it; the deadline is short).
    pub(crate) fn wait_for_ranks(&mut self) {
        let (Some(path), Some(me), true) = (&self.path, &self.entry, self.waits) else {
            return;
        };
        if crate::signals::fired() {
            return;
        }
        let Some(dir) = path.parent() else { return };
        let limit = close_wait();
        let start = Instant::now();
        let mut open: Vec<u32> = (1..me.world_size).collect();
        loop {
            open.retain(|r| {
                read_entry(&dir.join(format!("{r}.json")))
                    .ok()
                    .flatten()
                    .is_some_and(|e| e.live() && e.pid != me.pid)
            });
            if open.is_empty() {
                return;
            }
            if start.elapsed() >= limit {
                self.warnings.push(format!(
                    "rank(s) {open:?} of {} still open after {:?}: the final status is rank 0's \
                     without them",
                    dir.display(),
                    limit
                ));
                return;
            }
            std::thread::sleep(Duration::from_millis(20).min(limit));
        }
    }

    /// Marks this rank's entry closed with `status`.
    pub(crate) fn close(&mut self, status: Status) -> Result<()> {
        let (Some(path), Some(me)) = (&self.path, &mut self.entry) else {
            return Ok(());
        };
        me.doc.insert("status".into(), json!(status.as_str()));
        me.doc
            .insert("closed_at".into(), json!(crate::encode::iso_now()));
        write_json_atomic(path, &Json::Object(me.doc.clone()), false).map(drop)
    }

    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

/// Every entry in `dir` (unreadable ones left out).
fn entries(dir: &Path) -> Result<Vec<Entry>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for f in rd.flatten() {
        let p = f.path();
        if p.extension().is_some_and(|x| x == "json")
            && let Some(e) = read_entry(&p)?
        {
            out.push(e);
        }
    }
    Ok(out)
}

/// `ML_DASH_CLOSE_TIMEOUT` (30 s; an invalid value is the remote config's
/// error to report, so here it is the default).
fn close_wait() -> Duration {
    const RANGE: &Range = &crate::config::WAIT_RANGE;
    std::env::var(crate::remote::ENV_CLOSE_TIMEOUT)
        .ok()
        .and_then(|v| parse_duration(crate::remote::ENV_CLOSE_TIMEOUT, &v, RANGE).ok())
        .unwrap_or(crate::remote::DEFAULT_CLOSE_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_name_themselves() {
        for m in [RankMode::Rank0, RankMode::PerRank, RankMode::Shared] {
            assert_eq!(m.as_str().parse::<RankMode>().unwrap(), m);
        }
        assert_eq!("per-rank".parse::<RankMode>().unwrap(), RankMode::PerRank);
        assert!(matches!(
            "all".parse::<RankMode>(),
            Err(Error::Config {
                name: ENV_RANKS,
                ..
            })
        ));
    }

    #[test]
    fn a_rank_must_be_below_the_world_size() {
        assert!(Ranks::new(3, 4).is_ok());
        assert!(Ranks::new(4, 4).is_err());
        assert!(Ranks::new(0, 0).is_err());
    }
}

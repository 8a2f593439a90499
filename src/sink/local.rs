//! The local store: the ML-Dash `.dash/<prefix>/` layout, written the way the
//! Python SDK 0.11 writes it, so either can read (and append to) what the other
//! wrote.
//!
//! Differences that are deliberate improvements over the Python store:
//! - one append (one `write`) per batch, not one lock + rewrite per record;
//! - JSON documents (`metadata.json`, `experiment.json`, ...) are replaced
//!   atomically (temp file + rename; fsync first when `sync_on_flush` is set);
//! - metric names with `/` work (nested folders); track topics whose folders
//!   would collide (`a/b` and `a_b`) are refused instead of mixed;
//! - the run status (and its end time) is recorded in `experiment.json`,
//!   with a liveness marker while it runs: `pid` and `host` of the writing
//!   process and `heartbeat_at`, refreshed every [`HEARTBEAT_INTERVAL`] by
//!   the collector, so a reader can tell a RUNNING run whose process died
//!   (`ml_dash::read::Liveness`).
//!
//! Each file is guarded with `flock` on the same sibling `.<name>.lock` files as
//! the Python SDK, and the next `index` / `sequenceNumber` is read from the
//! store under that lock, so both writers can share one experiment folder.
//!
//! Recovery from a writer killed mid-append (this engine or the SDK): when a
//! stream's data file is not as we left it (its first use in this run, or
//! another writer appended since), a torn last line is cut off and kept in
//! `<file>.torn` beside it, and the next `index` / `sequenceNumber` comes
//! from the last complete line, not from `metadata.json` / `.log_sequence`,
//! which are repaired when they disagree (a kill between the two writes).
//! Both only read the file's tail, backwards, under the stream's lock.
//!
//! Descriptors: each stream holds two (data and lock file) while it is among
//! the most recently used (at most 256, fewer under a low `RLIMIT_NOFILE`);
//! the others are opened for a batch and closed, so the number of metric
//! names is not bounded by the descriptor limit.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

use super::{Batch, MetricBatch, TrackEntry};
use crate::api::Status;
use crate::encode;
use crate::error::{Error, Result};
use crate::read::summary_path;

/// What `experiment.json` says about a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExperimentInfo {
    pub(crate) prefix: String,
    pub(crate) description: Option<String>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) metadata: Option<Json>,
    /// Another process of the job holds the liveness marker (a shared-mode
    /// rank other than 0, or a worker): `pid` / `host` / `heartbeat_at` are
    /// left as they are.
    pub(crate) unmarked: bool,
}

/// A data file and its lock file, while open.
#[derive(Debug)]
struct Files {
    data: File,
    lock: File,
}

/// One append file (`data.jsonl` or `logs.jsonl`) and what we know of it.
/// Its two descriptors are open only while the stream is among the most
/// recently used (see [`Open`]); the rest of the state stays.
#[derive(Debug)]
struct Stream {
    dir: PathBuf,
    data_name: &'static str,
    lock_name: &'static str,
    files: Option<Files>,
    /// Used since the eviction clock last passed (second chance).
    used: bool,
    /// Written since the last fsync (`sync_on_flush` only).
    dirty: bool,
    /// The data file's length as we left it; `None` until it was checked.
    /// A different length means another writer appended (or one died
    /// mid-append): the tail is checked and the counters re-derived.
    end: Option<u64>,
    /// The next `sequenceNumber` (logs), valid while `end` matches.
    next_seq: u64,
    /// What we know of `metadata.json` since we last wrote it (metrics only).
    known: Option<KnownMeta>,
    /// A failed append that could not be cut back: (length before, length after).
    cut: Option<(u64, u64)>,
}

impl Stream {
    fn new(dir: PathBuf, data_name: &'static str, lock_name: &'static str) -> Stream {
        Stream {
            dir,
            data_name,
            lock_name,
            files: None,
            used: true,
            dirty: false,
            end: None,
            next_seq: 0,
            known: None,
            cut: None,
        }
    }

    fn data_path(&self) -> PathBuf {
        self.dir.join(self.data_name)
    }

    fn open_files(&mut self) -> std::io::Result<()> {
        // Read too: recovery reads the tail.
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        let data = match opts.open(self.data_path()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.dir)?;
                opts.open(self.data_path())?
            }
            r => r?,
        };
        let lock = OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join(self.lock_name))?;
        self.files = Some(Files { data, lock });
        Ok(())
    }

    /// Fsyncs the data file if it was written since the last fsync.
    fn sync(&mut self) -> Result<()> {
        if let Some(f) = &self.files
            && self.dirty
        {
            crate::__fault::sync_data(&f.data).map_err(|e| Error::io(self.data_path(), e))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Closes the files (fsyncing a written data file first when `sync`).
    fn close(&mut self, sync: bool) -> Result<()> {
        let r = if sync { self.sync() } else { Ok(()) };
        self.files = None;
        self.dirty = false;
        r
    }

    /// Appends `bytes` to the data file with one `write`, then runs `then`
    /// (the metadata update). When either fails, the file is cut back to its
    /// length before, so the caller's retry appends the batch exactly once: a
    /// full disk leaves neither a torn line nor a duplicate. A cut that fails
    /// as well (a folder remounted read-only) is remembered in `cut` and done
    /// by the next [`check_end`](Self::check_end), if nobody appended since.
    /// Call it holding the lock, after `check_end`.
    fn append<T>(
        &mut self,
        data: &mut File,
        bytes: &[u8],
        then: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let path = self.data_path();
        let len = |f: &File| f.metadata().map(|m| m.len());
        let before = match self.end {
            Some(end) => end, // `check_end` just read it
            None => len(data).map_err(|e| Error::io(&path, e))?,
        };
        let r = (data.write_all(bytes).map_err(|e| Error::io(&path, e))).and_then(|()| then());
        if r.is_ok() {
            self.dirty = true;
            self.end = Some(before + bytes.len() as u64);
            return r;
        }
        match len(data) {
            Ok(now) if now != before && data.set_len(before).is_err() => {
                self.cut = Some((before, now));
            }
            Err(_) => self.cut = Some((before, before + bytes.len() as u64)),
            _ => {}
        }
        self.end = Some(before);
        r
    }

    /// Runs `f` holding this stream's lock, with its data file. Open files only.
    fn locked<T>(&mut self, f: impl FnOnce(&mut Self, &mut File) -> Result<T>) -> Result<T> {
        let mut files = self.files.take().expect("opened by Open::get");
        let lock_path = || self.dir.join(self.lock_name);
        let r = match files.lock.lock() {
            Ok(()) => {
                let r = f(self, &mut files.data);
                let _ = files.lock.unlock();
                r
            }
            Err(e) => Err(Error::io(lock_path(), e)),
        };
        self.files = Some(files);
        r
    }

    /// Under the lock: when the data file is not as we left it (first use,
    /// or another writer appended), cuts a torn last line off (see
    /// [`cut_torn_tail`]) and returns true: the caller re-derives its
    /// counters from the data.
    fn check_end(&mut self, data: &mut File, warnings: &mut Vec<String>) -> Result<bool> {
        let path = self.data_path();
        let mut len = data.metadata().map_err(|e| Error::io(&path, e))?.len();
        if let Some((before, torn)) = self.cut {
            if len == torn {
                data.set_len(before).map_err(|e| Error::io(&path, e))?;
                len = before;
            }
            self.cut = None;
        }
        if self.end == Some(len) {
            return Ok(false);
        }
        let (len, note) = cut_torn_tail(data, &path, len)?;
        if let Some(n) = note {
            warnings.push(n);
        }
        self.end = Some(len);
        Ok(true)
    }
}

/// The metric and track streams, at most `max` of them with open files: a
/// stream used again soon keeps its descriptors, the others are opened for
/// a batch and closed (a clock of second chances over the open ones), so a
/// run with 100 000 metric names stays within the descriptor limit.
#[derive(Debug)]
struct Open {
    metrics: Vec<Option<Stream>>,
    tracks: Vec<Option<Stream>>,
    /// Streams with open files, in the order the clock visits them.
    clock: VecDeque<(bool, u32)>,
    max: usize,
    /// An fsync that failed when its stream was closed: the next `sync_all` fails.
    sync_error: Option<Error>,
}

/// Streams whose files may stay open: 2 descriptors each, within an eighth
/// of the soft descriptor limit for one run (other runs, the spool, the
/// file workers and the temp files of atomic writes need the rest).
fn max_open_streams() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives here.
    let soft = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
        0 => lim.rlim_cur,
        _ => 1024,
    };
    usize::try_from(soft / 16).map_or(256, |n| n.clamp(2, 256))
}

fn too_many_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Open {
    fn new() -> Open {
        Open {
            metrics: Vec::new(),
            tracks: Vec::new(),
            clock: VecDeque::new(),
            max: max_open_streams(),
            sync_error: None,
        }
    }

    fn slot(&mut self, track: bool, id: u32) -> &mut Option<Stream> {
        let slots = if track {
            &mut self.tracks
        } else {
            &mut self.metrics
        };
        let i = id as usize;
        if slots.len() <= i {
            slots.resize_with(i + 1, || None);
        }
        &mut slots[i]
    }

    /// The stream's state, created on first use, without opening its files.
    fn state(&mut self, track: bool, id: u32, dir: impl FnOnce() -> PathBuf) -> &mut Stream {
        self.slot(track, id)
            .get_or_insert_with(|| Stream::new(dir(), "data.jsonl", ".metadata.lock"))
    }

    /// The stream with its files open, closing the least recently used
    /// others first when `max` are open.
    fn get(
        &mut self,
        track: bool,
        id: u32,
        dir: impl FnOnce() -> PathBuf,
        sync: bool,
    ) -> Result<&mut Stream> {
        let open = self.state(track, id, dir).files.is_some();
        if !open {
            while self.clock.len() >= self.max {
                self.evict_one(sync);
            }
            let s = self.slot(track, id).as_mut().expect("created above");
            let r = match s.open_files() {
                Err(e) if too_many_files(&e) => {
                    // Other parts of the process hold descriptors: give back ours.
                    while !self.clock.is_empty() {
                        self.evict_one(sync);
                    }
                    let s = self.slot(track, id).as_mut().expect("created above");
                    s.open_files()
                }
                r => r,
            };
            let s = self.slot(track, id).as_mut().expect("created above");
            r.map_err(|e| Error::io(&s.dir, e))?;
            self.clock.push_back((track, id));
        }
        let s = self.slot(track, id).as_mut().expect("created above");
        s.used = true;
        Ok(s)
    }

    /// Closes the files of the first stream the clock finds unused since its
    /// last pass (used ones get a second chance).
    fn evict_one(&mut self, sync: bool) {
        while let Some((track, id)) = self.clock.pop_front() {
            let Some(s) = self.slot(track, id).as_mut() else {
                continue;
            };
            if std::mem::take(&mut s.used) {
                self.clock.push_back((track, id));
                continue;
            }
            if let Err(e) = s.close(sync) {
                self.sync_error.get_or_insert(e);
            }
            return;
        }
    }
}

/// The side file that keeps the torn tails cut off `data` (`data.jsonl.torn`
/// beside `data.jsonl`): one line per cut, as the bytes were. The Python SDK
/// and this crate's readers ignore it.
pub(crate) fn torn_path(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(".torn");
    data.with_file_name(name)
}

/// Chunk size for reading an append file backwards.
const CHUNK: u64 = 64 * 1024;

/// The position just after the last `\n` before `len` (0 when there is none),
/// reading backwards in chunks.
fn after_last_newline(f: &File, len: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8];
    if len == 0 || (f.read_exact_at(&mut last, len - 1).is_ok() && last[0] == b'\n') {
        return Ok(len);
    }
    let mut buf = vec![0u8; len.min(CHUNK) as usize];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        f.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&c| c == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Cuts a torn last line (the bytes after the last `\n`: a writer was killed
/// mid-append, so they were never acknowledged) off the data file at `path`
/// of length `len`, after copying them to its [`torn_path`]. Returns the new
/// length and the warning to give. Call it holding the file's lock.
pub(crate) fn cut_torn_tail(data: &File, path: &Path, len: u64) -> Result<(u64, Option<String>)> {
    use std::os::unix::fs::FileExt;
    let keep = after_last_newline(data, len).map_err(|e| Error::io(path, e))?;
    if keep == len {
        return Ok((len, None));
    }
    let side = torn_path(path);
    let saved = (|| {
        let mut out = OpenOptions::new().append(true).create(true).open(&side)?;
        let mut buf = vec![0u8; CHUNK as usize];
        let mut at = keep;
        while at < len {
            let n = (len - at).min(CHUNK) as usize;
            data.read_exact_at(&mut buf[..n], at)?;
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        out.write_all(b"\n")
    })();
    // Cut also when the bytes could not be kept: the next append must not
    // glue onto them, and they were never acknowledged.
    data.set_len(keep).map_err(|e| Error::io(path, e))?;
    let kept = match saved {
        Ok(()) => format!("they are kept in {}", side.display()),
        Err(e) => format!("they could not be kept in {} ({e})", side.display()),
    };
    let note = format!(
        "{} ended in a torn line ({} bytes after its last complete line: a writer was killed \
         mid-append, before acknowledging them): cut back to its last complete line; {kept}",
        path.display(),
        len - keep,
    );
    Ok((keep, Some(note)))
}

/// Lines the index repair looks back through for one that parses.
const LOOK_BACK_LINES: usize = 8;
/// Bytes it reads at most.
const LOOK_BACK_BYTES: u64 = 64 << 20;

/// The number `key` of the last line before `end` (a line boundary) that
/// parses as a JSON object holding it: the last `index` of a metric stream,
/// the last `sequenceNumber` of the logs. `None` when the file is empty or
/// none of its last lines parses.
fn last_number(f: &File, end: u64, key: &str) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let mut size = CHUNK;
    loop {
        let start = end.saturating_sub(size);
        let mut buf = vec![0u8; (end - start) as usize];
        f.read_exact_at(&mut buf, start)?;
        let mut lines: Vec<&[u8]> = buf.split(|&c| c == b'\n').collect();
        lines.pop(); // after the last newline: empty
        if start > 0 {
            lines.remove(0); // may be the end of a longer line
        }
        let found = (lines.iter().rev().take(LOOK_BACK_LINES))
            .find_map(|l| crate::read::parse_lenient(l).ok()?.get(key)?.as_u64());
        if found.is_some()
            || start == 0
            || lines.len() >= LOOK_BACK_LINES
            || size >= LOOK_BACK_BYTES
        {
            return Ok(found);
        }
        size *= 4;
    }
}

fn unparsed(data: &Path, key: &str, counter: &Path) -> String {
    format!(
        "none of the last lines of {} parses with a numeric \"{key}\": the next {key} \
         continues from {}",
        data.display(),
        counter.display()
    )
}

/// Our last write of a metric stream's `metadata.json`: if the file still has
/// this identity, nobody else appended and the numbers are current.
#[derive(Debug, Clone)]
struct KnownMeta {
    stamp: (u64, u64, i64, i64),
    next: u64,
    total: u64,
    created_at: Json,
    description: Json,
    tags: Json,
    metadata: Json,
}

fn stamp(m: &fs::Metadata) -> (u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (m.ino(), m.len(), m.mtime(), m.mtime_nsec())
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Opens `path` (created if missing) and takes an exclusive `flock` on it,
/// waiting for it: held until the file is dropped.
pub(crate) fn open_lock_exclusive(path: &Path) -> Result<File> {
    let lock = open_lock(path)?;
    lock.lock().map_err(|e| Error::io(path, e))?;
    Ok(lock)
}

/// Holds an exclusive `flock` on a lock file for the guard's lifetime.
pub(crate) fn with_lock<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let lock = open_lock(path)?;
    lock.lock().map_err(|e| Error::io(path, e))?;
    let r = f();
    let _ = lock.unlock();
    r
}

/// The local store of one experiment.
#[derive(Debug)]
pub(crate) struct LocalStore {
    dir: PathBuf,
    sync: bool,
    streams: Open,
    logs: Stream,
    buf: Vec<u8>,
    /// What recovery repaired (torn tails, stale counters), for the
    /// collector to warn about.
    warnings: Vec<String>,
}

/// How often an open run refreshes `heartbeat_at` in its `experiment.json`.
pub(crate) const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// This machine's host name (`""` when it has none), as `experiment.json`'s
/// `host` records it.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`, which
    // lives here; the result is cut at the first NUL below.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return String::new();
    }
    let n = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The folder of an experiment.
pub(crate) fn experiment_dir(root: &Path, prefix: &str) -> PathBuf {
    root.join(prefix)
}

/// The folder name of a track topic (`/` becomes `_`, as in the Python SDK).
pub(crate) fn topic_folder(topic: &str) -> String {
    topic.replace('/', "_")
}

/// Refuses a topic whose folder already holds another topic (`a/b` vs `a_b`).
pub(crate) fn check_topic(dir: &Path, topic: &str) -> Result<()> {
    let meta = dir
        .join("tracks")
        .join(topic_folder(topic))
        .join("metadata.json");
    if let Some(m) = read_json(&meta)?
        && let Some(existing) = m.get("topic").and_then(Json::as_str)
        && existing != topic
    {
        return Err(Error::InvalidName {
            name: topic.to_string(),
            reason: "its folder already holds another track topic ('/' and '_' map to the same folder): rename one of them",
        });
    }
    Ok(())
}

/// Reads a JSON document with simd-json; `None` when the file does not exist.
/// Python's non-finite tokens (`NaN`, `Infinity`, `-Infinity`) are kept as
/// marker strings that [`write_json_atomic`] turns back into the tokens, so a
/// document another writer put them in survives our read-modify-write.
pub(crate) fn read_json(path: &Path) -> Result<Option<Json>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut marked = crate::read::nonfinite_to_markers(&bytes);
    let v = simd_json::serde::from_slice::<Json>(&mut marked).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Some(v))
}

/// Replaces `path` atomically with `v` (ASCII JSON, as the Python SDK writes;
/// non-finite markers back to their tokens). Returns the new file's identity
/// (inode, size, mtime).
pub(crate) fn write_json_atomic(path: &Path, v: &Json, sync: bool) -> Result<(u64, u64, i64, i64)> {
    write_bytes_atomic(path, &crate::read::to_ascii_json(v), sync)
}

fn write_bytes_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<(u64, u64, i64, i64)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    if sync {
        crate::__fault::sync_data(tmp.as_file()).map_err(|e| Error::io(tmp.path(), e))?;
    }
    let meta = tmp
        .as_file()
        .metadata()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(stamp(&meta))
}

/// Adds a writer's summary frames (see `read::summary`) beside the data
/// file: the first ones start the file, the others are appended.
fn append_summary(data: &Path, (first, bytes): (bool, Vec<u8>)) -> std::io::Result<()> {
    let path = summary_path(data);
    let mut f = if first {
        File::create(path)?
    } else {
        OpenOptions::new().append(true).open(path)?
    };
    f.write_all(&bytes)
}

/// Rewrites the `index` of every line of `batch`, starting at `first`.
fn renumber(batch: &mut MetricBatch, first: u64) {
    let mut out = Vec::with_capacity(batch.lines.len() + 8 * batch.count);
    for (i, line) in (first..).zip(batch.lines.split_inclusive(|&c| c == b'\n')) {
        // Lines start with `{"index":<digits>,`.
        let head = b"{\"index\":".len();
        let digits = line[head..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        out.extend_from_slice(&line[..head]);
        encode::u64(&mut out, i);
        out.extend_from_slice(&line[head + digits..]);
    }
    batch.lines = out;
    batch.first_index = first;
}

fn u64_of(m: &Option<Json>, key: &str) -> u64 {
    m.as_ref()
        .and_then(|m| m.get(key))
        .and_then(Json::as_u64)
        .unwrap_or(0)
}

fn field_or(m: &Option<Json>, key: &str, default: Json) -> Json {
    m.as_ref()
        .and_then(|m| m.get(key))
        .cloned()
        .unwrap_or(default)
}

impl LocalStore {
    /// Opens (or reopens) the experiment folder and upserts `experiment.json`.
    pub(crate) fn open(root: &Path, info: &ExperimentInfo, sync: bool) -> Result<LocalStore> {
        let dir = experiment_dir(root, &info.prefix);
        for sub in ["logs", "metrics", "files"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        let store = LocalStore {
            logs: Stream::new(dir.join("logs"), "logs.jsonl", ".log_sequence.lock"),
            dir,
            sync,
            streams: Open::new(),
            buf: Vec::with_capacity(1 << 16),
            warnings: Vec::new(),
        };
        store.upsert_experiment(info)?;
        Ok(store)
    }

    /// The experiment folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery repaired since the last call, one warning each.
    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn upsert_experiment(&self, info: &ExperimentInfo) -> Result<()> {
        let path = self.dir.join("experiment.json");
        with_lock(&self.dir.join(".experiment.lock"), || {
            let now = encode::iso_now();
            let segs: Vec<&str> = info.prefix.split('/').collect();
            let mut doc = match read_json(&path)? {
                Some(Json::Object(m)) => {
                    let mut m = m;
                    if let Some(d) = &info.description {
                        m.insert("description".into(), json!(d));
                    }
                    if let Some(t) = &info.tags {
                        m.insert("tags".into(), json!(t));
                    }
                    if let Some(md) = &info.metadata {
                        m.insert("metadata".into(), md.clone());
                    }
                    m.insert("prefix".into(), json!(info.prefix));
                    m.insert("updated_at".into(), json!(now));
                    m
                }
                _ => {
                    let v = json!({
                        "name": segs[segs.len() - 1],
                        "project": segs[1],
                        "description": info.description,
                        "tags": info.tags.clone().unwrap_or_default(),
                        "bindrs": [],
                        "prefix": info.prefix,
                        "metadata": info.metadata,
                        "created_at": now,
                        "write_protected": false,
                    });
                    match v {
                        Json::Object(m) => m,
                        _ => unreachable!(),
                    }
                }
            };
            doc.insert("status".into(), json!(Status::Running.as_str()));
            doc.insert("started_at".into(), json!(now));
            doc.remove("ended_at");
            if !info.unmarked {
                doc.insert("pid".into(), json!(std::process::id()));
                doc.insert("host".into(), json!(hostname()));
                doc.insert("heartbeat_at".into(), json!(now));
            }
            write_json_atomic(&path, &Json::Object(doc), self.sync).map(drop)
        })
    }

    /// Refreshes `heartbeat_at` in `experiment.json` (see the module docs).
    pub(crate) fn heartbeat(&mut self) -> Result<()> {
        let path = self.dir.join("experiment.json");
        with_lock(&self.dir.join(".experiment.lock"), || {
            let Some(Json::Object(mut doc)) = read_json(&path)? else {
                return Ok(()); // removed under us: nothing to mark
            };
            doc.insert("heartbeat_at".into(), json!(encode::iso_now()));
            write_json_atomic(&path, &Json::Object(doc), false).map(drop)
        })
    }

    /// Records the final status and end time in `experiment.json`.
    pub(crate) fn finish(&mut self, status: Status) -> Result<()> {
        self.sync_all()?;
        let path = self.dir.join("experiment.json");
        with_lock(&self.dir.join(".experiment.lock"), || {
            let mut doc = match read_json(&path)? {
                Some(Json::Object(m)) => m,
                _ => Map::new(),
            };
            doc.insert("status".into(), json!(status.as_str()));
            doc.insert("ended_at".into(), json!(encode::iso_now()));
            write_json_atomic(&path, &Json::Object(doc), self.sync).map(drop)
        })
    }

    /// The index the next point of a metric stream will probably get: what
    /// the stream had after our last write (0 for a stream not written yet
    /// in this run). A wrong guess costs a renumbering at write; reading the
    /// store here would open the stream twice per batch when many are used.
    pub(crate) fn metric_next_index(&mut self, id: u32, _name: Option<&str>) -> Result<u64> {
        let stream = self
            .streams
            .metrics
            .get(id as usize)
            .and_then(Option::as_ref);
        Ok(stream.and_then(|s| s.known.as_ref()).map_or(0, |k| k.next))
    }

    /// Under the stream's lock: brings `known` up to date with the store
    /// (unless the data file and `metadata.json` are still as we left them).
    /// The data file wins: when the metadata disagrees with it (a writer
    /// was killed between its append and its metadata update), the next
    /// index is the last line's index + 1 and `metadata.json` is repaired.
    fn sync_metric(
        s: &mut Stream,
        data: &mut File,
        name: Option<&str>,
        sync: bool,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let changed = s.check_end(data, warnings)?;
        let meta_path = s.dir.join("metadata.json");
        let current = fs::metadata(&meta_path).ok().map(|m| stamp(&m));
        if !changed
            && let (Some(k), Some(c)) = (&s.known, current)
            && k.stamp == c
        {
            return Ok(());
        }
        let meta = read_json(&meta_path)?;
        let mut known = KnownMeta {
            stamp: current.unwrap_or_default(),
            next: u64_of(&meta, "nextIndex"),
            total: u64_of(&meta, "totalDataPoints"),
            created_at: field_or(&meta, "createdAt", Json::Null),
            description: field_or(&meta, "description", Json::Null),
            tags: field_or(&meta, "tags", json!([])),
            metadata: field_or(&meta, "metadata", Json::Null),
        };
        let end = s.end.unwrap_or(0);
        let from_data = match end {
            0 => Some(0),
            _ => last_number(data, end, "index")
                .map_err(|e| Error::io(s.data_path(), e))?
                .map(|i| i + 1),
        };
        if from_data.is_none() {
            warnings.push(unparsed(&s.data_path(), "index", &meta_path));
        }
        // Repaired upwards only: a counter behind its data would hand out
        // used indices (a kill between append and update); one ahead of it
        // (a last line that does not parse) leaves a gap, which is harmless.
        if let Some(next) = from_data
            && next > known.next
        {
            let total = known.total + (next - known.next);
            warnings.push(format!(
                "{} said nextIndex {}, but its data file ends at index {} (a writer was killed \
                 between its append and its metadata update): repaired to nextIndex {next}, \
                 totalDataPoints {total}",
                meta_path.display(),
                known.next,
                next.checked_sub(1)
                    .map_or("(empty)".into(), |i| i.to_string()),
            ));
            known.next = next;
            known.total = total;
            known.stamp = write_json_atomic(&meta_path, &metric_doc(name, &known), sync)?;
        }
        s.known = Some(known);
        Ok(())
    }

    /// Appends one batch of metric lines to a stream: one `write`, then its
    /// `metadata.json` replaced, all under the stream's lock.
    pub(crate) fn append_metrics(
        &mut self,
        id: u32,
        name: Option<&str>,
        batch: &mut MetricBatch,
    ) -> Result<()> {
        if batch.count == 0 {
            return Ok(());
        }
        let metrics_dir = self.dir.join("metrics");
        let dir = || metrics_dir.join(name.unwrap_or("None"));
        let (sync, warnings) = (self.sync, &mut self.warnings);
        let stream = self.streams.get(false, id, dir, sync)?;
        stream.locked(|s, data| {
            Self::sync_metric(s, data, name, sync, warnings)?;
            let known = s.known.as_mut().expect("synced");
            if known.next != batch.first_index {
                renumber(batch, known.next);
                batch.summary = None; // another writer: readers summarise it
            }
            // What `known` becomes once both writes succeeded.
            let n = batch.count as u64;
            let mut after = KnownMeta {
                next: known.next + n,
                total: known.total + n,
                ..known.clone()
            };
            if after.created_at.is_null() {
                // A new document: the stream's own info, as the SDK's first
                // append writes it; an existing one keeps what it says.
                if let Some(info) = &batch.info {
                    after.description = json!(info.description);
                    after.tags = json!(info.tags);
                    after.metadata = json!(info.metadata);
                }
                after.created_at = json!(batch.created_at);
            }
            let doc = metric_doc(name, &after);
            let meta_path = s.dir.join("metadata.json");
            let before = s.end.unwrap_or(0);
            after.stamp = s.append(data, &batch.lines, || {
                write_json_atomic(&meta_path, &doc, sync)
            })?;
            s.known = Some(after);
            if let Some(f) = batch.summary.as_mut() {
                let ours = f.produced() == before + batch.lines.len() as u64;
                // Not this writer's file alone, or the summary could not be
                // written (a cache): readers summarise the stream.
                if !ours
                    || f.frames()
                        .is_some_and(|b| append_summary(&s.data_path(), b).is_err())
                {
                    batch.summary = None;
                }
            }
            Ok(())
        })
    }

    /// Appends one batch of log entries (objects without `sequenceNumber`).
    pub(crate) fn append_logs(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let s = &mut self.logs;
        if s.files.is_none() {
            s.open_files().map_err(|e| Error::io(&s.dir, e))?;
        }
        let (buf, warnings, sync) = (&mut self.buf, &mut self.warnings, self.sync);
        s.locked(|s, data| {
            if s.check_end(data, warnings)? {
                Self::sync_log_sequence(s, data, sync, warnings)?;
            }
            let next = s.next_seq;
            buf.clear();
            for (i, entry) in batch.items().enumerate() {
                buf.extend_from_slice(b"{\"sequenceNumber\":");
                encode::u64(buf, next + i as u64);
                buf.push(b',');
                buf.extend_from_slice(entry);
                buf.extend_from_slice(b"}\n");
            }
            let n = next + batch.len() as u64;
            let seq_path = s.dir.join(".log_sequence");
            s.append(data, buf, || {
                write_bytes_atomic(&seq_path, n.to_string().as_bytes(), sync).map(drop)
            })?;
            s.next_seq = n;
            Ok(())
        })
    }

    /// Under the logs' lock, after their data file changed: the next
    /// sequence number is the last line's `sequenceNumber` + 1, and
    /// `.log_sequence` is repaired when it says otherwise.
    fn sync_log_sequence(
        s: &mut Stream,
        data: &mut File,
        sync: bool,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let seq_path = s.dir.join(".log_sequence");
        let stored = match fs::read_to_string(&seq_path) {
            Ok(t) => t.trim().parse().unwrap_or(0),
            Err(_) => 0,
        };
        let end = s.end.unwrap_or(0);
        let from_data = match end {
            0 => Some(0),
            _ => last_number(data, end, "sequenceNumber")
                .map_err(|e| Error::io(s.data_path(), e))?
                .map(|n| n + 1),
        };
        if from_data.is_none() {
            warnings.push(unparsed(&s.data_path(), "sequenceNumber", &seq_path));
        }
        // Upwards only, as for metric indices.
        s.next_seq = from_data.map_or(stored, |n| n.max(stored));
        if s.next_seq != stored {
            write_bytes_atomic(&seq_path, s.next_seq.to_string().as_bytes(), sync)?;
            warnings.push(format!(
                "{} said {stored}, but {} ends at sequenceNumber {} (a writer was killed \
                 between its append and its update): repaired to {}",
                seq_path.display(),
                s.data_path().display(),
                s.next_seq - 1,
                s.next_seq,
            ));
        }
        Ok(())
    }

    /// Appends track entries of one topic (sorted by timestamp, as the SDK does).
    pub(crate) fn append_tracks(
        &mut self,
        id: u32,
        topic: &str,
        entries: &mut [TrackEntry],
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        entries.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        let tracks_dir = self.dir.join("tracks");
        let folder = topic_folder(topic);
        let (buf, warnings, sync) = (&mut self.buf, &mut self.warnings, self.sync);
        let stream = self
            .streams
            .get(true, id, || tracks_dir.join(&folder), sync)?;
        stream.locked(|s, data| {
            // A torn line is cut; `totalEntries` is the metadata's (the
            // rows have no index to count from without reading them all).
            s.check_end(data, warnings)?;
            let meta_path = s.dir.join("metadata.json");
            let meta = read_json(&meta_path)?;
            if let Some(t) = meta
                .as_ref()
                .and_then(|m| m.get("topic"))
                .and_then(Json::as_str)
                && t != topic
            {
                return Err(Error::InvalidName {
                    name: topic.to_string(),
                    reason: "its folder already holds another track topic",
                });
            }
            let mut columns: Vec<String> = meta
                .as_ref()
                .and_then(|m| m.get("columns"))
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            buf.clear();
            for e in entries.iter() {
                buf.extend_from_slice(b"{\"timestamp\":");
                encode::f64(buf, e.ts);
                super::flat_fields(&e.fields, |name, value| {
                    buf.push(b',');
                    encode::str(buf, name);
                    buf.push(b':');
                    buf.extend_from_slice(value.as_bytes());
                    if !columns.iter().any(|c| c == name) {
                        columns.push(name.to_string());
                    }
                });
                buf.extend_from_slice(b"}\n");
            }
            columns.sort();
            let first = entries[0].ts;
            let last = entries[entries.len() - 1].ts;
            let old_first = meta
                .as_ref()
                .and_then(|m| m.get("firstTimestamp"))
                .and_then(Json::as_f64);
            let old_last = meta
                .as_ref()
                .and_then(|m| m.get("lastTimestamp"))
                .and_then(Json::as_f64);
            let doc = json!({
                "trackId": format!("local-track-{}", topic_folder(topic)),
                "topic": topic,
                "columns": columns,
                "totalEntries": u64_of(&meta, "totalEntries") + entries.len() as u64,
                "firstTimestamp": json_f64(old_first.map_or(first, |o| o.min(first))),
                "lastTimestamp": json_f64(old_last.map_or(last, |o| o.max(last))),
                "createdAt": field_or(&meta, "createdAt", json!(encode::iso_now())),
            });
            s.append(data, buf, || {
                write_json_atomic(&meta_path, &doc, sync).map(drop)
            })
        })
    }

    /// Merges one `set` call's flat parameters into `parameters.json`
    /// (upsert), as the Python SDK's `write_parameters` does: the first call
    /// writes `{"version":1,"data","createdAt","updatedAt"}`, each later one
    /// `{"version":<old + 1>,"data":<merged>,"updatedAt"}` (`createdAt` is
    /// not kept: the SDK drops it on every rewrite).
    pub(crate) fn merge_params(&mut self, params: &Map<String, Json>) -> Result<()> {
        let path = self.dir.join("parameters.json");
        let sync = self.sync;
        with_lock(&self.dir.join(".parameters.lock"), || {
            let now = encode::iso_now();
            let doc = match read_json(&path)? {
                // Python's `if existing_doc:`: any non-empty object is merged into.
                Some(Json::Object(old)) if !old.is_empty() => {
                    let mut data = match old.get("data") {
                        Some(Json::Object(m)) => m.clone(),
                        _ => Map::new(),
                    };
                    for (k, v) in params {
                        data.insert(k.clone(), v.clone());
                    }
                    let version = old.get("version").and_then(Json::as_u64).unwrap_or(1) + 1;
                    json!({"version": version, "data": data, "updatedAt": now})
                }
                _ => json!({"version": 1, "data": params, "createdAt": now, "updatedAt": now}),
            };
            write_json_atomic(&path, &doc, sync).map(drop)
        })
    }

    /// fsyncs every data file (when `sync_on_flush` is set).
    pub(crate) fn sync_all(&mut self) -> Result<()> {
        if !self.sync {
            return Ok(());
        }
        if let Some(e) = self.streams.sync_error.take() {
            return Err(e);
        }
        for i in 0..self.streams.clock.len() {
            let (track, id) = self.streams.clock[i];
            if let Some(s) = self.streams.slot(track, id) {
                s.sync()?;
            }
        }
        self.logs.sync()
    }
}

/// A metric stream's `metadata.json`.
fn metric_doc(name: Option<&str>, k: &KnownMeta) -> Json {
    json!({
        "metricId": format!("local-metric-{}", name.unwrap_or("None")),
        "name": name,
        "description": k.description,
        "tags": k.tags,
        "metadata": k.metadata,
        "totalDataPoints": k.total,
        "nextIndex": k.next,
        "createdAt": k.created_at,
        "updatedAt": encode::iso_now(),
    })
}

fn json_f64(v: f64) -> Json {
    serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)
}

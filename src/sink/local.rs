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
//! - the run status (and its end time) is recorded in `experiment.json`.
//!
//! Each file is guarded with `flock` on the same sibling `.<name>.lock` files as
//! the Python SDK, and the next `index` / `sequenceNumber` is read from the
//! store under that lock, so both writers can share one experiment folder.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

use super::{Batch, MetricBatch, TrackEntry};
use crate::core::Status;
use crate::encode;
use crate::error::{Error, Result};

/// What `experiment.json` says about a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExperimentInfo {
    pub(crate) prefix: String,
    pub(crate) description: Option<String>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) metadata: Option<Json>,
}

#[derive(Debug)]
struct Stream {
    dir: PathBuf,
    data: File,
    lock: File,
    /// What we know of `metadata.json` since we last wrote it (metrics only).
    known: Option<KnownMeta>,
    /// A failed append that could not be cut back: (length before, length after).
    cut: Option<(u64, u64)>,
}

/// Appends `bytes` to `data` with one `write`, then runs `then` (the
/// metadata update). When either fails, `data` is cut back to its length
/// before, so the caller's retry appends the batch exactly once: a full disk
/// leaves neither a torn line nor a duplicate. A cut that fails as well (a
/// folder remounted read-only) is remembered in `cut` and done before the
/// next append, if nobody appended since. Call it holding the file's lock.
fn append_undoable<T>(
    data: &mut File,
    cut: &mut Option<(u64, u64)>,
    path: &Path,
    bytes: &[u8],
    then: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let len = |f: &File| f.metadata().map(|m| m.len());
    if let Some((before, torn)) = *cut {
        if len(data).map_err(|e| Error::io(path, e))? == torn {
            data.set_len(before).map_err(|e| Error::io(path, e))?;
        }
        *cut = None;
    }
    let before = len(data).map_err(|e| Error::io(path, e))?;
    let r = (data.write_all(bytes).map_err(|e| Error::io(path, e))).and_then(|()| then());
    if r.is_err() {
        match len(data) {
            Ok(now) if now != before && data.set_len(before).is_err() => *cut = Some((before, now)),
            Err(_) => *cut = Some((before, before + bytes.len() as u64)),
            _ => {}
        }
    }
    r
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

impl Stream {
    fn open(dir: PathBuf, data_name: &str, lock_name: &str) -> Result<Stream> {
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let data_path = dir.join(data_name);
        let data = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&data_path)
            .map_err(|e| Error::io(&data_path, e))?;
        let lock = open_lock(&dir.join(lock_name))?;
        Ok(Stream {
            dir,
            data,
            lock,
            known: None,
            cut: None,
        })
    }

    /// Runs `f` holding this stream's lock.
    fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let lock_path = || self.dir.join(".metadata.lock");
        self.lock.lock().map_err(|e| Error::io(lock_path(), e))?;
        let r = f(self);
        let _ = self.lock.unlock();
        r
    }
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Holds an exclusive `flock` on a lock file for the guard's lifetime.
fn with_lock<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
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
    metrics: Vec<Option<Stream>>,
    tracks: Vec<Option<Stream>>,
    logs: Option<Stream>,
    buf: Vec<u8>,
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
            dir,
            sync,
            metrics: Vec::new(),
            tracks: Vec::new(),
            logs: None,
            buf: Vec::with_capacity(1 << 16),
        };
        store.upsert_experiment(info)?;
        Ok(store)
    }

    /// The experiment folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
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
            write_json_atomic(&path, &Json::Object(doc), self.sync).map(drop)
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

    fn stream(
        slots: &mut Vec<Option<Stream>>,
        id: u32,
        dir: impl FnOnce() -> PathBuf,
    ) -> Result<&mut Stream> {
        let i = id as usize;
        if slots.len() <= i {
            slots.resize_with(i + 1, || None);
        }
        if slots[i].is_none() {
            slots[i] = Some(Stream::open(dir(), "data.jsonl", ".metadata.lock")?);
        }
        Ok(slots[i].as_mut().expect("just opened"))
    }

    /// The index the next point of a metric stream will get (read from its
    /// `metadata.json` when the stream is first opened).
    pub(crate) fn metric_next_index(&mut self, id: u32, name: Option<&str>) -> Result<u64> {
        let metrics_dir = self.dir.join("metrics");
        let stream = Self::stream(&mut self.metrics, id, || {
            metrics_dir.join(name.unwrap_or("None"))
        })?;
        if stream.known.is_none() {
            stream.locked(Self::refresh_meta)?;
        }
        Ok(stream.known.as_ref().map_or(0, |k| k.next))
    }

    /// Re-reads `metadata.json` unless it is still the file we wrote last.
    fn refresh_meta(s: &mut Stream) -> Result<()> {
        let meta_path = s.dir.join("metadata.json");
        let current = fs::metadata(&meta_path).ok().map(|m| stamp(&m));
        if let (Some(k), Some(c)) = (&s.known, current)
            && k.stamp == c
        {
            return Ok(());
        }
        let meta = read_json(&meta_path)?;
        s.known = Some(KnownMeta {
            stamp: current.unwrap_or_default(),
            next: u64_of(&meta, "nextIndex"),
            total: u64_of(&meta, "totalDataPoints"),
            created_at: field_or(&meta, "createdAt", Json::Null),
            description: field_or(&meta, "description", Json::Null),
            tags: field_or(&meta, "tags", json!([])),
            metadata: field_or(&meta, "metadata", Json::Null),
        });
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
        let folder = name.unwrap_or("None");
        let metrics_dir = self.dir.join("metrics");
        let stream = Self::stream(&mut self.metrics, id, || metrics_dir.join(folder))?;
        let sync = self.sync;
        stream.locked(|s| {
            Self::refresh_meta(s)?;
            let known = s.known.as_mut().expect("refreshed");
            if known.next != batch.first_index {
                renumber(batch, known.next);
            }
            // What `known` becomes once both writes succeeded.
            let n = batch.count as u64;
            let (next, total) = (known.next + n, known.total + n);
            let created_at = if known.created_at.is_null() {
                // A new document: the stream's own info, as the SDK's first
                // append writes it; an existing one keeps what it says.
                if let Some(info) = &batch.info {
                    known.description = json!(info.description);
                    known.tags = json!(info.tags);
                    known.metadata = json!(info.metadata);
                }
                json!(batch.created_at)
            } else {
                known.created_at.clone()
            };
            let doc = json!({
                "metricId": format!("local-metric-{folder}"),
                "name": name,
                "description": known.description,
                "tags": known.tags,
                "metadata": known.metadata,
                "totalDataPoints": total,
                "nextIndex": next,
                "createdAt": created_at,
                "updatedAt": encode::iso_now(),
            });
            let meta_path = s.dir.join("metadata.json");
            let data_path = s.dir.join("data.jsonl");
            let stamp = append_undoable(&mut s.data, &mut s.cut, &data_path, &batch.lines, || {
                write_json_atomic(&meta_path, &doc, sync)
            })?;
            *known = KnownMeta {
                stamp,
                next,
                total,
                created_at,
                ..known.clone()
            };
            Ok(())
        })
    }

    /// Appends one batch of log entries (objects without `sequenceNumber`).
    pub(crate) fn append_logs(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.logs.is_none() {
            self.logs = Some(Stream::open(
                self.dir.join("logs"),
                "logs.jsonl",
                ".log_sequence.lock",
            )?);
        }
        let s = self.logs.as_mut().expect("just opened");
        let lock_path = s.dir.join(".log_sequence.lock");
        s.lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        let seq_path = s.dir.join(".log_sequence");
        let next: u64 = match fs::read_to_string(&seq_path) {
            Ok(t) => t.trim().parse().unwrap_or(0),
            Err(_) => 0,
        };
        let buf = &mut self.buf;
        buf.clear();
        for (i, entry) in batch.items().enumerate() {
            buf.extend_from_slice(b"{\"sequenceNumber\":");
            encode::u64(buf, next + i as u64);
            buf.push(b',');
            buf.extend_from_slice(entry);
            buf.extend_from_slice(b"}\n");
        }
        let n = next + batch.len() as u64;
        let data_path = s.dir.join("logs.jsonl");
        let sync = self.sync;
        let r = append_undoable(&mut s.data, &mut s.cut, &data_path, buf, || {
            write_bytes_atomic(&seq_path, n.to_string().as_bytes(), sync).map(drop)
        });
        let _ = s.lock.unlock();
        r
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
        let stream = Self::stream(&mut self.tracks, id, || tracks_dir.join(&folder))?;
        let buf = &mut self.buf;
        let sync = self.sync;
        stream.locked(|s| {
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
                for (name, value) in &e.fields {
                    buf.push(b',');
                    encode::str(buf, name);
                    buf.push(b':');
                    buf.extend_from_slice(value.as_bytes());
                    if !columns.iter().any(|c| c == name) {
                        columns.push(name.clone());
                    }
                }
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
            let data_path = s.dir.join("data.jsonl");
            append_undoable(&mut s.data, &mut s.cut, &data_path, buf, || {
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
        let all = self
            .metrics
            .iter()
            .chain(self.tracks.iter())
            .flatten()
            .chain(self.logs.iter());
        for s in all {
            crate::__fault::sync_data(&s.data).map_err(|e| Error::io(&s.dir, e))?;
        }
        Ok(())
    }
}

fn json_f64(v: f64) -> Json {
    serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)
}

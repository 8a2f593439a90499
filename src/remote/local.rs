//! Sending a local run that never had a server (`ml-dash sync PREFIX`): what
//! the run holds that no earlier call spooled is written as a new spool
//! session in `<run>/.sync/`, which [`sync`](super::sync) then sends like any
//! spool (in order, each batch under its own idempotency key).
//!
//! Exactly once across kills: a session is built under `<run>/.sync-build/`
//! and renamed into `.sync/` whole, with the export cursor it brings the run
//! to (`export.json`: the byte offset reached in each append file, the
//! parameters and files sent, the status) inside it; `.sync/export.json` is
//! the cursor of the sessions already sent. The cursor in force is the
//! newest of those, so a kill at any point re-exports nothing that a
//! session holds, and a half-built session is never seen (it is rebuilt).
//! Only complete lines are exported: a run still being written is sent up
//! to where it is, and the next call sends what came after.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

use super::sender::Descriptor;
use crate::error::{Error, Result};
use crate::read::{self, LineReader};
use crate::spool::{self, Kind, SessionId, SpoolWriter};

/// The spool folder `ml-dash sync` uses for a local run.
pub const SYNC_DIR: &str = ".sync";
const BUILD_DIR: &str = ".sync-build";
const CURSOR_FILE: &str = "export.json";
/// Items per spooled record (one request each).
const RECORD_ITEMS: usize = 1000;

/// What [`spool_run`] added to the run's `.sync` spool.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.log("hello")?;
/// run.complete()?;
/// let dir = root.path().join("a/b");
/// let first = ml_dash::spool_run(&dir, "a/b", Some("https://api.dash.ml"))?;
/// assert_eq!(first.spool_dir, dir.join(ml_dash::SYNC_DIR));
/// assert!(first.records > 0 && first.finished && !first.more);
/// assert_eq!(ml_dash::spool_run(&dir, "a/b", None)?.records, 0); // nothing new
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SpooledRun {
    /// The spool folder to [`sync`](super::sync): `<run>/.sync`.
    pub spool_dir: PathBuf,
    /// Records added (0: nothing new).
    pub records: u64,
    /// Items in them (points, log lines, rows, parameter sets, files, status).
    pub items: u64,
    /// The run's status is final and was spooled (now or before): nothing
    /// more will come.
    pub finished: bool,
    /// It stopped at the most items asked for ([`spool_run_part`]): call
    /// again for the rest.
    pub more: bool,
}

/// The export cursor.
#[derive(Debug, Default, Clone, PartialEq)]
struct Cursor {
    /// Byte offset reached per append file (relative path).
    offsets: BTreeMap<String, u64>,
    /// The `parameters.json` document last sent.
    params: Json,
    /// Ids of the stored files sent.
    files: Vec<String>,
    /// The final status sent.
    status: Option<String>,
    /// When the session holding this cursor was made (orders cursors).
    created_ms: u64,
}

impl Cursor {
    fn to_json(&self) -> Json {
        json!({"offsets": self.offsets, "params": self.params, "files": self.files,
               "status": self.status, "createdMs": self.created_ms})
    }

    fn read(path: &Path) -> Option<Cursor> {
        let v: Json = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        Some(Cursor {
            offsets: v["offsets"]
                .as_object()?
                .iter()
                .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                .collect(),
            params: v["params"].clone(),
            files: (v["files"].as_array()?.iter())
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
            status: v["status"].as_str().map(String::from),
            created_ms: v["createdMs"].as_u64().unwrap_or(0),
        })
    }
}

/// The cursor in force: the newest of `.sync/export.json` and the sessions'.
fn current_cursor(sync_dir: &Path) -> std::io::Result<Cursor> {
    let mut best = Cursor::read(&sync_dir.join(CURSOR_FILE)).unwrap_or_default();
    for (_, dir) in spool::sessions(sync_dir)? {
        if let Some(c) = Cursor::read(&dir.join(CURSOR_FILE))
            && c.created_ms >= best.created_ms
        {
            best = c;
        }
    }
    Ok(best)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Spools what the local run in `run_dir` (prefix `prefix`) holds beyond
/// what earlier calls spooled into `<run_dir>/.sync` (see the module docs):
/// new complete lines of every metric stream, the logs and every track
/// topic, the parameters when they changed, stored files not sent yet, and
/// the final status once the run has one (last). `dash_url` goes into the
/// session (`None`: the caller's [`SyncOptions::dash_url`](super::SyncOptions)
/// must name the server). Safe against a concurrent call (a lock) and a kill
/// at any point; returns what it added.
///
/// # Examples
/// ```no_run
/// // `ml-dash sync alice/mnist/a`: the local run, to the server.
/// let dir = std::path::Path::new(".dash/alice/mnist/a");
/// let spooled = ml_dash::spool_run(dir, "alice/mnist/a", Some("https://api.dash.ml"))?;
/// let report = ml_dash::sync(&spooled.spool_dir, &ml_dash::SyncOptions::default())?;
/// println!("{report}");
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn spool_run(run_dir: &Path, prefix: &str, dash_url: Option<&str>) -> Result<SpooledRun> {
    spool_run_part(run_dir, prefix, dash_url, u64::MAX)
}

/// [`spool_run`], stopping once a session holds `max_items` points, log
/// lines and track rows ([`SpooledRun::more`] then says so; the status
/// comes with the last part). A caller sends each part while it spools the
/// next, as `ml-dash sync` does.
///
/// ```
/// # fn main() -> ml_dash::Result<()> {
/// let root = tempfile::tempdir().unwrap();
/// let mut cfg = ml_dash::BufferConfig::default();
/// cfg.quiet = true;
/// let run = ml_dash::Experiment::new("me/p/r").dash_root(root.path()).buffer_config(cfg).run()?;
/// for step in 0..2500u64 {
///     run.metrics("train")?.log(&ml_dash::point! {"step" => step})?;
/// }
/// run.complete()?;
/// let dir = root.path().join("me/p/r");
/// let mut parts = 0;
/// loop {
///     let part = ml_dash::spool_run_part(&dir, "me/p/r", Some("http://127.0.0.1:1"), 1000)?;
///     parts += 1;
///     if !part.more {
///         assert!(part.finished);
///         break;
///     }
/// }
/// assert_eq!(parts, 3);
/// # Ok(()) }
/// ```
pub fn spool_run_part(
    run_dir: &Path,
    prefix: &str,
    dash_url: Option<&str>,
    max_items: u64,
) -> Result<SpooledRun> {
    let mut budget = max_items;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::io(&p, e)
    };
    let sync_dir = run_dir.join(SYNC_DIR);
    fs::create_dir_all(&sync_dir).map_err(io(&sync_dir))?;
    let _lock = crate::sink::local::open_lock_exclusive(&sync_dir.join("lock"))?;
    let build = run_dir.join(BUILD_DIR);
    // A session half built by a killed call: never seen by a sender; rebuilt.
    if build.exists() {
        fs::remove_dir_all(&build).map_err(io(&build))?;
    }
    let mut cur = current_cursor(&sync_dir).map_err(io(&sync_dir))?;
    let mut out = SpooledRun {
        spool_dir: sync_dir.clone(),
        finished: cur.status.is_some(),
        ..SpooledRun::default()
    };
    if cur.status.is_some() {
        return Ok(out);
    }
    // The status first: everything written before it is read below.
    let info = read::RunInfo {
        prefix: prefix.to_string(),
        dir: run_dir.to_path_buf(),
        experiment: crate::sink::local::read_json(&run_dir.join("experiment.json"))?
            .unwrap_or(Json::Null),
    };
    let status = info.status().filter(|s| *s != "RUNNING").map(String::from);

    let id = SessionId::new();
    let e = &info.experiment;
    let strings = |k: &str| {
        e.get(k).and_then(Json::as_array).map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect::<Vec<_>>()
        })
    };
    let desc = Descriptor {
        prefix: prefix.to_string(),
        dash_url: dash_url.map(String::from),
        description: e
            .get("description")
            .and_then(Json::as_str)
            .map(String::from),
        tags: strings("tags"),
        bindrs: strings("bindrs").filter(|b| !b.is_empty()),
        metadata: e.get("metadata").cloned().filter(|m| !m.is_null()),
    };
    let (mut w, lock) =
        SpoolWriter::create(&build, id, &desc.to_json(&id), 16 << 20).map_err(io(&build))?;
    let mut next = cur.clone();
    next.created_ms = id.created_ms.max(cur.created_ms + 1);
    let mut add = |w: &mut SpoolWriter,
                   kind: Kind,
                   stream: Option<&str>,
                   info: Option<&[u8]>,
                   items: &[Vec<u8>]|
     -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        w.append_with(kind, stream, info, items.iter().map(Vec::as_slice))
            .map_err(io(w.dir()))?;
        out.records += 1;
        out.items += items.len() as u64;
        Ok(())
    };

    let params =
        crate::sink::local::read_json(&run_dir.join("parameters.json"))?.unwrap_or(Json::Null);
    if params != cur.params {
        if let Some(Json::Object(data)) = params.get("data")
            && !data.is_empty()
        {
            let bytes = serde_json::to_vec(data).map_err(|e| Error::InvalidValue(e.to_string()))?;
            add(&mut w, Kind::Params, None, None, &[bytes])?;
        }
        next.params = params;
    }

    let rel = |p: &Path| {
        p.strip_prefix(run_dir)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    // Metric streams: each line's `data` object, as the sink spools it.
    for s in read::metric_streams(run_dir)? {
        let path = s.data();
        let key = rel(&path);
        let from = cur.offsets.get(&key).copied().unwrap_or(0);
        let meta = s.metadata().ok().flatten().unwrap_or(Json::Null);
        let mut stream_info = None;
        if from == 0 {
            let mut i = Map::new();
            for k in ["description", "tags", "metadata"] {
                let v = &meta[k];
                let truthy = match v {
                    Json::Null | Json::Bool(false) => false,
                    Json::String(s) => !s.is_empty(),
                    Json::Array(a) => !a.is_empty(),
                    Json::Object(o) => !o.is_empty(),
                    _ => true,
                };
                if truthy {
                    i.insert(k.into(), v.clone());
                }
            }
            if !i.is_empty() {
                stream_info = serde_json::to_vec(&i).ok();
            }
        }
        let end = export_lines(
            &path,
            from,
            &mut budget,
            |batch| {
                let r = add(
                    &mut w,
                    Kind::Metrics,
                    s.name.as_deref(),
                    stream_info.as_deref(),
                    batch,
                );
                stream_info = None;
                r
            },
            |line| read::member_bytes(line, "data").map(<[u8]>::to_vec),
        )?;
        next.offsets.insert(key, end);
    }
    // Logs: the line without its `sequenceNumber` (the server numbers them).
    let logs = read::logs_path(run_dir);
    let key = rel(&logs);
    let from = cur.offsets.get(&key).copied().unwrap_or(0);
    let end = export_lines(
        &logs,
        from,
        &mut budget,
        |b| add(&mut w, Kind::Logs, None, None, b),
        |line| read::without_member(line, "sequenceNumber"),
    )?;
    next.offsets.insert(key, end);
    // Track rows, as stored (`{"timestamp":..,<columns>}`).
    for t in read::track_topics(run_dir)? {
        let path = t.data();
        let key = rel(&path);
        let from = cur.offsets.get(&key).copied().unwrap_or(0);
        let topic = t.label().to_string();
        let end = export_lines(
            &path,
            from,
            &mut budget,
            |b| add(&mut w, Kind::Tracks, Some(&topic), None, b),
            |l| Some(l.to_vec()),
        )?;
        next.offsets.insert(key, end);
    }
    // Stored files not sent yet: a copy of the content in the session.
    for f in read::stored_files(run_dir)? {
        if cur.files.contains(&f.info.id) {
            continue;
        }
        let files = w.dir().join(spool::FILES_DIR);
        fs::create_dir_all(&files).map_err(io(&files))?;
        let safe: String = (f.info.filename.chars())
            .map(|c| {
                if c == '/' || c == '\\' || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .take(100)
            .collect();
        let name = format!("{}-{safe}", w.next_seq());
        let blob = files.join(&name);
        fs::copy(&f.content, &blob).map_err(io(&f.content))?;
        let size = fs::File::open(&blob)
            .and_then(|b| {
                b.sync_all()?;
                b.metadata()
            })
            .map_err(io(&blob))?
            .len();
        let d = json!({
            "blob": format!("{}/{name}", spool::FILES_DIR),
            "path": f.info.path,
            "filename": f.info.filename,
            "contentType": f.info.content_type,
            "checksum": f.info.checksum,
            "sizeBytes": size,
            "description": f.info.description,
            "tags": f.info.tags,
            "metadata": f.info.metadata,
        });
        let bytes = serde_json::to_vec(&d).map_err(|e| Error::InvalidValue(e.to_string()))?;
        add(&mut w, Kind::File, None, None, &[bytes])?;
        next.files.push(f.info.id.clone());
    }
    out.more = budget == 0;
    if let Some(s) = status.as_ref().filter(|_| !out.more) {
        add(&mut w, Kind::Status, None, None, &[s.as_bytes().to_vec()])?;
        next.status = Some(s.clone());
        out.finished = true;
    }

    if out.records == 0 && next == cur {
        drop(lock);
        let _ = fs::remove_dir_all(&build);
        return Ok(out);
    }
    w.sync().map_err(io(w.dir()))?;
    let session = w.dir().to_path_buf();
    write_atomic(
        &session.join(CURSOR_FILE),
        next.to_json().to_string().as_bytes(),
    )
    .map_err(io(&session))?;
    drop(w);
    // Whole into the spool: a sender sees all of it or nothing.
    let target = sync_dir.join(session.file_name().unwrap_or_default());
    fs::rename(&session, &target).map_err(io(&target))?;
    drop(lock);
    let _ = fs::remove_dir(&build);
    cur = next;
    write_atomic(
        &sync_dir.join(CURSOR_FILE),
        cur.to_json().to_string().as_bytes(),
    )
    .map_err(io(&sync_dir))?;
    Ok(out)
}

/// Sends the complete lines of `path` from byte `from` through `item` into
/// batches of [`RECORD_ITEMS`] given to `flush`, at most `budget` items
/// (less what it took); returns the offset reached.
fn export_lines(
    path: &Path,
    from: u64,
    budget: &mut u64,
    mut flush: impl FnMut(&[Vec<u8>]) -> Result<()>,
    item: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<u64> {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len <= from || *budget == 0 {
        return Ok(from);
    }
    let mut r = LineReader::range(path, from..u64::MAX)?;
    let mut batch = Vec::with_capacity(RECORD_ITEMS);
    while *budget > 0
        && let Some((_, line)) = r.next_line()?
    {
        if let Some(i) = item(line) {
            batch.push(i);
            *budget -= 1;
        }
        if batch.len() == RECORD_ITEMS {
            flush(&batch)?;
            batch.clear();
        }
    }
    flush(&batch)?;
    Ok(r.offset())
}

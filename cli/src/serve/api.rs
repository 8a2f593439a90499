//! The JSON API under `/api/` (README "ml-dash serve"): every data file is
//! streamed through `ml_dash::read` (a buffer at a time, never loaded
//! whole); metric series are downsampled per pixel column with
//! [`crate::downsample::M4`], the code `ml-dash plot` uses.
//!
//! ```text
//! GET /api/runs                         every run: prefix, status, liveness, times, last values
//! GET /api/runs/<prefix>                one run: experiment, params, streams and fields, tracks, files
//! GET /api/series?run=P&metric=M        a stream downsampled: &x=step|index|time &width=PX
//!                                       &x0=&x1= (a zoom) &smooth=N &fields=a,b
//! GET /api/logs?run=P                   log lines from byte &offset= (&limit= &level= &q=)
//! GET /api/tracks?run=P&topic=T         track rows from byte &offset= (&limit=)
//! GET /api/files?run=P&id=ID            a stored file (&download=1: attachment; &head=N bytes)
//! GET /api/events?run=P                 server-sent events: status, log, point, grew
//! ```

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ml_dash::read::{self, LineReader, RunInfo, Tail};
use serde_json::{Map, Value as Json, json};

use super::{Body, Ctx, Query, Reply};
use crate::series::{self as chart_series, Stream, X};

type R<T> = std::result::Result<T, Reply>;

/// How many series answers are kept (each ~30 bytes per pixel column
/// and field).
const SERIES_CACHE: usize = 64;
/// How far back from a file's end its last line is looked for.
const TAIL_BYTES: u64 = 64 << 10;
/// How often an event stream polls the run's files.
const POLL: Duration = Duration::from_millis(200);
/// More new points than this in one poll: a `grew` event (fetch the series
/// again) instead of the points.
const MAX_EVENT_POINTS: usize = 2000;

pub(crate) fn route(ctx: &Ctx, rest: &str, q: &Query) -> Reply {
    let r = match rest {
        "runs" => runs(ctx),
        "series" => series(ctx, q),
        "logs" => logs(ctx, q),
        "tracks" => tracks(ctx, q),
        "files" => file(ctx, q),
        _ => match rest.strip_prefix("runs/") {
            Some(prefix) => run_of(ctx, prefix).map(|r| detail(&r)),
            None => Err(Reply::error(404, format!("no API /api/{rest}"))),
        },
    };
    r.unwrap_or_else(|e| e)
}

/// A name from a URL (a prefix, a stream): `/`-separated segments, none
/// empty, `.`-led (`..`, hidden folders) or holding `\` or NUL.
fn check_name(what: &str, s: &str) -> R<()> {
    let ok = !s.is_empty()
        && s.split('/')
            .all(|seg| !seg.is_empty() && !seg.starts_with('.') && !seg.contains(['\\', '\0']));
    if ok {
        Ok(())
    } else {
        Err(Reply::error(
            400,
            format!("{what} {s:?} is not a valid name"),
        ))
    }
}

/// `path`, resolved (symlinks followed), if it lies inside `inside`.
fn contained(path: &Path, inside: &Path) -> R<PathBuf> {
    let real = path
        .canonicalize()
        .map_err(|_| Reply::error(404, "not found"))?;
    if real.starts_with(inside) {
        Ok(real)
    } else {
        Err(Reply::error(403, "outside the store's root"))
    }
}

/// The run named by a URL's prefix: a checked name whose folder, symlinks
/// resolved, is inside the root and holds `experiment.json`.
pub(crate) fn run_of(ctx: &Ctx, prefix: &str) -> R<RunInfo> {
    let prefix = prefix.trim_matches('/');
    check_name("prefix", prefix)?;
    let dir = contained(&ctx.root.join(prefix), &ctx.root)?;
    contained(&dir.join("experiment.json"), &dir)?;
    read::run(&ctx.root, prefix).ok_or_else(|| Reply::error(404, format!("no run {prefix:?}")))
}

fn run_param(ctx: &Ctx, q: &Query) -> R<RunInfo> {
    run_of(
        ctx,
        q.get("run")
            .ok_or_else(|| Reply::error(400, "run= is missing"))?,
    )
}

fn time(t: Option<SystemTime>) -> Json {
    t.map_or(Json::Null, |t| {
        Json::String(humantime::format_rfc3339_millis(t).to_string())
    })
}

fn summary(r: &RunInfo, now: SystemTime) -> Json {
    let (start, end) = (r.started_at(), r.ended_at());
    let duration = start.and_then(|s| end.unwrap_or(now).duration_since(s).ok());
    json!({
        "prefix": r.prefix,
        "status": r.status(),
        "liveness": r.liveness(now).word(),
        "started_at": time(start),
        "ended_at": time(end),
        "duration_s": duration.map(|d| d.as_secs_f64()),
    })
}

/// The last complete line of a file (within its last [`TAIL_BYTES`]) and
/// the offset where it starts.
fn last_line(path: &Path) -> Option<(u64, Vec<u8>)> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::with_capacity((len - from) as usize);
    f.take(len - from).read_to_end(&mut buf).ok()?;
    let end = buf.iter().rposition(|&c| c == b'\n')?;
    let start = buf[..end]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |i| i + 1);
    if start == 0 && from > 0 {
        return None;
    }
    Some((from + start as u64, buf[start..end].to_vec()))
}

/// Where the complete lines of a file end now (a live stream starts there).
fn lines_end(path: &Path) -> u64 {
    last_line(path).map_or_else(
        || std::fs::metadata(path).map_or(0, |m| m.len()),
        |(at, l)| at + l.len() as u64 + 1,
    )
}

fn data_of(line: &[u8]) -> Option<Map<String, Json>> {
    match read::parse_lenient(line).ok()?.get_mut("data")?.take() {
        Json::Object(m) => Some(m),
        _ => None,
    }
}

fn runs(ctx: &Ctx) -> R<Reply> {
    let now = SystemTime::now();
    let all = read::runs(&ctx.root).map_err(|e| Reply::error(500, e.to_string()))?;
    let list: Vec<Json> = all
        .iter()
        .map(|r| {
            let mut s = summary(r, now);
            let mut last = Map::new();
            for m in read::metric_streams(&r.dir).unwrap_or_default() {
                if let Some(d) = last_line(&m.data()).and_then(|(_, l)| data_of(&l)) {
                    last.insert(m.label().to_string(), Json::Object(d));
                }
            }
            s["last"] = Json::Object(last);
            s
        })
        .collect();
    Ok(Reply::json(&Json::Array(list)))
}

/// Numeric fields of a stream's first points.
fn fields_of(path: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Ok(lines) = read::Lines::open(path) else {
        return out;
    };
    for line in lines.take(20).flatten() {
        if let Some(Json::Object(d)) = line.value.get("data") {
            for (k, v) in d {
                let num =
                    v.is_number() || matches!(v.as_str(), Some("NaN" | "Infinity" | "-Infinity"));
                if num && !out.contains(k) {
                    out.push(k.clone());
                }
            }
        }
    }
    out
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn detail(r: &RunInfo) -> Reply {
    let now = SystemTime::now();
    let mut s = summary(r, now);
    s["experiment"] = r.experiment.clone();
    s["params"] = Json::Object(read::params(&r.dir).unwrap_or_default());
    s["metrics"] = read::metric_streams(&r.dir)
        .unwrap_or_default()
        .iter()
        .map(|m| json!({"name": m.label(), "fields": fields_of(&m.data()), "bytes": size(&m.data())}))
        .collect();
    s["tracks"] = read::track_topics(&r.dir)
        .unwrap_or_default()
        .iter()
        .map(|t| json!({"topic": t.label(), "bytes": size(&t.data())}))
        .collect();
    s["files"] = read::stored_files(&r.dir)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            json!({"id": f.info.id, "path": f.info.path, "filename": f.info.filename,
                   "size": f.info.size_bytes, "kind": kind(&f.info.filename).1})
        })
        .collect();
    s["logs_bytes"] = json!(size(&read::logs_path(&r.dir)));
    Reply::json(&s)
}

fn series(ctx: &Ctx, q: &Query) -> R<Reply> {
    let run = run_param(ctx, q)?;
    let metric = q.get("metric").unwrap_or("None");
    check_name("metric", metric)?;
    let stream = read::metric_stream(&run.dir, Some(metric));
    let path = stream.data();
    if path.exists() {
        contained(&path, &run.dir.canonicalize().unwrap_or_default())?;
    }
    let x = match q.get("x").unwrap_or("step") {
        "step" => X::Step,
        "index" => X::Index,
        "time" => X::Time,
        other => {
            return Err(Reply::error(
                400,
                format!("x={other:?}: step, index or time"),
            ));
        }
    };
    let x_key = match x {
        X::Step => Some("step"),
        X::Index => None,
        X::Time => Some("_ts"),
    };
    let fields: Vec<String> = match q.get("fields").filter(|f| !f.is_empty()) {
        Some(f) => f.split(',').map(String::from).collect(),
        None => fields_of(&path)
            .into_iter()
            .filter(|f| f != "_ts" && Some(f.as_str()) != x_key)
            .collect(),
    };
    let width: usize = q.num("width")?.unwrap_or(1000usize).clamp(1, 8192);
    let smooth: usize = q.num("smooth")?.unwrap_or(1usize);
    let zoom: Option<(f64, f64)> = match (q.num::<f64>("x0")?, q.num::<f64>("x1")?) {
        (Some(a), Some(b)) if a < b => Some((a, b)),
        _ => None,
    };
    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let key = format!(
        "{path:?} {:?} {mtime:?} {} {width} {smooth} {zoom:?} {fields:?}",
        size(&path),
        q.get("x").unwrap_or("step")
    );
    if let Some(hit) = ctx
        .series_cache
        .lock()
        .ok()
        .and_then(|c| c.get(&key).cloned())
    {
        return Ok(Reply::bytes(200, "application/json", hit));
    }
    let fail = |e: crate::Fail| {
        Reply::error(
            500,
            match e {
                crate::Fail::Usage(m) | crate::Fail::Problem(m) => m,
                crate::Fail::Reported => "cannot read the stream".into(),
            },
        )
    };
    let stream = Stream::open(&path, x).map_err(fail)?;
    let got = stream
        .series(&chart_series::Query {
            x,
            fields: &fields,
            columns: width,
            range: zoom,
            smooth,
            log_y: false,
        })
        .map_err(fail)?;
    let (t0, range) = (got.t0, got.range);
    let last_index = got
        .fields
        .iter()
        .filter_map(|kept| kept.iter().map(|p| p.0).max())
        .max();
    let series: Vec<Json> = fields
        .iter()
        .zip(&got.fields)
        .map(|(f, kept)| {
            json!({
                "field": f,
                "x": kept.iter().map(|p| p.1).collect::<Vec<_>>(),
                "y": kept.iter().map(|p| p.2).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = serde_json::to_vec(&json!({
        "run": run.prefix, "metric": metric, "x": q.get("x").unwrap_or("step"),
        "t0": t0, "range": [range.0, range.1], "width": width,
        "points": got.points, "end": got.end, "last_index": last_index,
        "series": series,
    }))
    .unwrap_or_default();
    if let Ok(mut c) = ctx.series_cache.lock() {
        if c.len() >= SERIES_CACHE {
            c.clear();
        }
        c.insert(key, body.clone());
    }
    Ok(Reply::bytes(200, "application/json", body))
}

const LEVELS: [&str; 5] = ["debug", "info", "warn", "error", "fatal"];

fn rank(level: &str) -> usize {
    let l = level.to_ascii_lowercase();
    let l = if l == "warning" { "warn".into() } else { l };
    LEVELS.iter().position(|x| *x == l).unwrap_or(1)
}

/// Lines of an append-only file from byte `offset`: `(offset, value)`.
fn page(path: &Path, q: &Query, keep: impl Fn(&Json) -> bool) -> R<Reply> {
    let offset: u64 = q.num("offset")?.unwrap_or(0);
    let limit: usize = q.num("limit")?.unwrap_or(500usize).clamp(1, 10_000);
    let mut r = match LineReader::range(path, offset..u64::MAX) {
        Ok(r) => r,
        Err(_) if !path.exists() => {
            return Ok(Reply::json(&json!({"lines": [], "next": 0, "eof": true})));
        }
        Err(e) => return Err(Reply::error(500, e.to_string())),
    };
    let mut lines = Vec::new();
    let mut next = offset;
    let mut eof = true;
    while let Some((at, l)) = r
        .next_line()
        .map_err(|e| Reply::error(500, e.to_string()))?
    {
        if lines.len() == limit {
            eof = false;
            next = at;
            break;
        }
        next = at + l.len() as u64 + 1;
        if let Ok(v) = read::parse_lenient(l)
            && keep(&v)
        {
            lines.push(json!({"offset": at, "line": v}));
        }
    }
    Ok(Reply::json(
        &json!({"lines": lines, "next": next, "eof": eof}),
    ))
}

fn logs(ctx: &Ctx, q: &Query) -> R<Reply> {
    let run = run_param(ctx, q)?;
    let min = q.get("level").map_or(0, rank);
    let needle = q.get("q").unwrap_or("").to_lowercase();
    page(&read::logs_path(&run.dir), q, |v| {
        rank(v["level"].as_str().unwrap_or("info")) >= min
            && (needle.is_empty() || v.to_string().to_lowercase().contains(&needle))
    })
}

fn tracks(ctx: &Ctx, q: &Query) -> R<Reply> {
    let run = run_param(ctx, q)?;
    let topic = q
        .get("topic")
        .ok_or_else(|| Reply::error(400, "topic= is missing"))?;
    let t = read::track_topics(&run.dir)
        .unwrap_or_default()
        .into_iter()
        .find(|t| t.label() == topic)
        .ok_or_else(|| Reply::error(404, format!("no track topic {topic:?}")))?;
    page(&t.data(), q, |_| true)
}

/// A file name's content type for serving, and its kind for the page
/// (`image`, `text`, `binary`). Nothing is ever served as HTML or script.
fn kind(name: &str) -> (&'static str, &'static str) {
    let ext = name
        .rsplit_once('.')
        .map_or("", |(_, e)| e)
        .to_ascii_lowercase();
    match ext.as_str() {
        "png" => ("image/png", "image"),
        "jpg" | "jpeg" => ("image/jpeg", "image"),
        "gif" => ("image/gif", "image"),
        "webp" => ("image/webp", "image"),
        "svg" => ("image/svg+xml", "image"),
        "json" | "jsonl" | "txt" | "log" | "md" | "csv" | "tsv" | "yaml" | "yml" | "toml"
        | "py" | "rs" | "sh" | "cfg" | "ini" | "html" | "htm" | "xml" | "js" => {
            ("text/plain; charset=utf-8", "text")
        }
        _ => ("application/octet-stream", "binary"),
    }
}

fn file(ctx: &Ctx, q: &Query) -> R<Reply> {
    let run = run_param(ctx, q)?;
    let id = q
        .get("id")
        .ok_or_else(|| Reply::error(400, "id= is missing"))?;
    let f = read::stored_files(&run.dir)
        .map_err(|e| Reply::error(500, e.to_string()))?
        .into_iter()
        .find(|f| f.info.id == id)
        .ok_or_else(|| Reply::error(404, format!("no file {id:?}")))?;
    let dir = run
        .dir
        .canonicalize()
        .map_err(|_| Reply::error(404, "not found"))?;
    let real = contained(&f.content, &dir)?;
    let file = std::fs::File::open(&real).map_err(|e| Reply::error(404, e.to_string()))?;
    let mut n = file.metadata().map_or(0, |m| m.len());
    if let Some(head) = q.num::<u64>("head")? {
        n = n.min(head);
    }
    let (ctype, _) = kind(&f.info.filename);
    let how = if q.get("download").is_some() {
        "attachment"
    } else {
        "inline"
    };
    let ascii: String = f
        .info
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(Reply {
        status: 200,
        body: Body::Stream(Box::new(file.take(n)), n),
        headers: vec![
            ("Content-Type", ctype.into()),
            (
                "Content-Disposition",
                format!(
                    "{how}; filename=\"{ascii}\"; filename*=UTF-8''{}",
                    super::pct(&f.info.filename)
                ),
            ),
            (
                "Content-Security-Policy",
                "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'".into(),
            ),
        ],
    })
}

/// Server-sent events for one run: `status` when its status or liveness
/// changes, `log` per new log line, `point` per new metric point (`grew`
/// when a poll finds more than [`MAX_EVENT_POINTS`]: fetch it again). Each
/// poll reads only the bytes appended since the last ([`Tail`]).
pub(crate) fn events(ctx: &Ctx, q: &Query, req: tiny_http::Request) {
    let run = match run_param(ctx, q) {
        Ok(r) => r,
        Err(e) => return super::respond(req, e),
    };
    let mut w = req.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 1000\n\n";
    if w.write_all(head.as_bytes())
        .and_then(|()| w.flush())
        .is_err()
    {
        return;
    }
    let _ = follow(&ctx.root, &run, &mut w);
}

fn send(w: &mut dyn Write, event: &str, data: &Json) -> std::io::Result<()> {
    write!(w, "event: {event}\ndata: {data}\n\n")
}

fn follow(root: &Path, run: &RunInfo, w: &mut dyn Write) -> std::io::Result<()> {
    let logs_path = read::logs_path(&run.dir);
    let mut logs = Tail::from_offset(&logs_path, lines_end(&logs_path));
    let mut streams: Vec<(String, Tail)> = Vec::new();
    let known = |streams: &mut Vec<(String, Tail)>, fresh: bool| {
        for m in read::metric_streams(&run.dir).unwrap_or_default() {
            if !streams.iter().any(|(n, _)| n == m.label()) {
                let at = if fresh { lines_end(&m.data()) } else { 0 };
                streams.push((m.label().to_string(), Tail::from_offset(m.data(), at)));
            }
        }
    };
    known(&mut streams, true);
    let mut last_status = Json::Null;
    let mut quiet = 0u32;
    loop {
        // The status first: what was written before it is read below.
        let status = read::run(root, &run.prefix)
            .map(|r| summary(&r, SystemTime::now()))
            .map(|mut s| {
                s.as_object_mut().map(|o| o.remove("duration_s"));
                s
            })
            .unwrap_or(Json::Null);
        let mut sent = false;
        known(&mut streams, false);
        for (name, tail) in &mut streams {
            let mut lines = Vec::new();
            let mut many = false;
            tail.poll(|l| {
                if lines.len() < MAX_EVENT_POINTS {
                    lines.push(l.to_vec());
                } else {
                    many = true;
                }
            })
            .ok();
            if many {
                send(w, "grew", &json!({ "metric": name }))?;
                sent = true;
                continue;
            }
            for l in lines {
                if let Ok(mut v) = read::parse_lenient(&l) {
                    v["metric"] = Json::String(name.clone());
                    send(w, "point", &v)?;
                    sent = true;
                }
            }
        }
        let mut new_logs = Vec::new();
        logs.poll(|l| new_logs.push(read::parse_lenient(l))).ok();
        for v in new_logs.into_iter().flatten() {
            send(w, "log", &v)?;
            sent = true;
        }
        if status != last_status {
            send(w, "status", &status)?;
            last_status = status;
            sent = true;
        }
        quiet = if sent { 0 } else { quiet + 1 };
        if quiet >= 25 {
            // A comment now and then: a closed page ends this thread.
            w.write_all(b":\n\n")?;
            quiet = 0;
            sent = true;
        }
        if sent {
            w.flush()?;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds() {
        for bad in [
            "",
            "..",
            "a/../b",
            "a//b",
            ".hidden/x",
            "a\\b",
            "/",
            "a/.git",
        ] {
            assert!(check_name("prefix", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("prefix", "alice/p/run-1").is_ok());
        assert_eq!(kind("x.HTML").0, "text/plain; charset=utf-8");
        assert_eq!(kind("a.png"), ("image/png", "image"));
        assert_eq!(kind("noext").0, "application/octet-stream");
    }
}

//! `ml-dash list`: every run, sorted by start time.

use std::path::Path;
use std::time::SystemTime;

use ml_dash::read::{self, Liveness, RunInfo, StreamDir};
use serde_json::{Value as Json, json};

use crate::Result;
use crate::args::ListArgs;
use crate::out::{self, Table};

pub(crate) fn run(root: &Path, a: &ListArgs) -> Result {
    let mut runs = read::runs(root)?;
    if let Some(g) = &a.glob {
        runs.retain(|r| out::glob_match(g, &r.prefix));
    }
    runs.sort_by(|x, y| {
        (x.started_at(), &x.prefix)
            .partial_cmp(&(y.started_at(), &y.prefix))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for r in &runs {
        rows.push(summary(r, &a.fields, now)?);
    }
    let mut w = std::io::stdout().lock();
    if a.json {
        out::json(&mut w, &Json::Array(rows))?;
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!(
            "no runs under {}{}",
            root.display(),
            a.glob
                .as_ref()
                .map_or(String::new(), |g| format!(" match {g:?}"))
        );
        return Ok(());
    }
    let mut header = vec!["PREFIX", "STATUS", "STARTED", "DURATION", "POINTS"];
    header.extend(a.fields.iter().map(String::as_str));
    let mut t = Table::new(header);
    for row in &rows {
        let points: Vec<String> = row["points"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
            .unwrap_or_default();
        let mut cells = vec![
            row["prefix"].as_str().unwrap_or("").to_string(),
            status_cell(row),
            row["started"].as_str().unwrap_or("-").to_string(),
            row["duration"].as_str().unwrap_or("-").to_string(),
            if points.is_empty() {
                "-".into()
            } else {
                points.join(" ")
            },
        ];
        for f in &a.fields {
            cells.push(row["fields"].get(f).map_or("-".into(), out::value));
        }
        t.row(cells);
    }
    t.write(&mut w, "")?;
    Ok(())
}

/// `COMPLETED`, `RUNNING`, `RUNNING (dead)`, `RUNNING (stale)`, `-`.
pub(crate) fn status_cell(row: &Json) -> String {
    let status = row["status"].as_str().unwrap_or("-");
    match row["liveness"].as_str() {
        Some(l @ ("dead" | "stale")) => format!("{status} ({l})"),
        _ => status.to_string(),
    }
}

/// One run as `list --json` prints it.
pub(crate) fn summary(r: &RunInfo, fields: &[String], now: SystemTime) -> Result<Json> {
    let liveness = r.liveness(now);
    let started = r.started_at();
    let end = match (&liveness, r.ended_at()) {
        (_, Some(e)) => Some(e),
        (Liveness::Alive, None) => Some(now),
        _ => None,
    };
    let duration = match (started, end) {
        (Some(s), Some(e)) => e.duration_since(s).ok(),
        _ => None,
    };
    let streams = read::metric_streams(&r.dir)?;
    let mut points = serde_json::Map::new();
    for s in &streams {
        points.insert(s.label().to_string(), json!(point_count(s)?));
    }
    let mut values = serde_json::Map::new();
    for f in fields {
        if let Some(v) = field_value(&streams, f)? {
            values.insert(f.clone(), v);
        }
    }
    let mut row = json!({
        "prefix": r.prefix,
        "status": r.status(),
        "liveness": liveness.word(),
        "started": started.map(out::time),
        "ended": r.ended_at().map(out::time),
        "duration": duration.map(out::duration),
        "duration_s": duration.map(|d| d.as_secs_f64()),
        "points": points,
        "fields": values,
    });
    if let Liveness::Dead { pid } = liveness {
        row["pid"] = json!(pid);
    }
    Ok(row)
}

/// Points in a stream: its `metadata.json`'s `totalDataPoints`, else its lines counted.
pub(crate) fn point_count(s: &StreamDir) -> Result<u64> {
    if let Ok(Some(m)) = s.metadata()
        && let Some(n) = m.get("totalDataPoints").and_then(Json::as_u64)
    {
        return Ok(n);
    }
    let mut r = read::LineReader::open(s.data())?;
    let mut n = 0;
    while r.next_line()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// The last value of `name` (`stream.field` or a bare field).
fn field_value(streams: &[StreamDir], name: &str) -> Result<Option<Json>> {
    // The longest stream name that `name` starts with, then `.`.
    let by_stream = streams
        .iter()
        .filter(|s| {
            name.strip_prefix(s.label())
                .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
        })
        .max_by_key(|s| s.label().len());
    if let Some(s) = by_stream {
        return last_value(s, &name[s.label().len() + 1..]);
    }
    for s in streams {
        if let Some(v) = last_value(s, name)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The last value of `field` in a metric stream, reading its file backwards
/// from the end in growing steps.
pub(crate) fn last_value(s: &StreamDir, field: &str) -> Result<Option<Json>> {
    let path = s.data();
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(None);
    };
    let len = meta.len();
    let mut back = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(back);
        let mut reader = read::LineReader::range(&path, start..len)?;
        let mut lines = Vec::new();
        while let Some((_, l)) = reader.next_line()? {
            lines.push(l.to_vec());
        }
        for l in lines.iter().rev() {
            if let Ok(v) = read::parse_lenient(l)
                && let Some(x) = v.get("data").and_then(|d| d.get(field))
            {
                return Ok(Some(x.clone()));
            }
        }
        if start == 0 {
            return Ok(None);
        }
        back = back.saturating_mul(8);
    }
}

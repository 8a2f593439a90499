//! `ml-dash show PREFIX`: everything one run holds.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use ml_dash::read::{self, StreamDir};
use serde_json::{Map, Value as Json, json};

use crate::args::{LogLevel, ShowArgs};
use crate::out::{self, Table};
use crate::{Fail, Result};

pub(crate) fn run(root: &Path, a: &ShowArgs) -> Result {
    let r = super::one_run(root, &a.prefix)?;
    let mut head = super::list::summary(&r, &[], SystemTime::now())?;
    let params = read::params(&r.dir)?;
    let mut metrics = Vec::new();
    for s in read::metric_streams(&r.dir)? {
        metrics.push(metric_stats(&s)?);
    }
    let mut tracks = Vec::new();
    for t in read::track_topics(&r.dir)? {
        tracks.push(track_stats(&t)?);
    }
    let logs = last_logs(&read::logs_path(&r.dir), a.logs, a.level)?;
    let files: Vec<Json> = read::stored_files(&r.dir)?
        .into_iter()
        .map(|f| {
            json!({
                "path": format!("{}/{}", f.info.path.trim_end_matches('/'), f.info.filename),
                "size": f.info.size_bytes,
                "type": f.info.content_type,
                "sha256": f.info.checksum,
            })
        })
        .collect();
    let e = &r.experiment;
    head["description"] = e.get("description").cloned().unwrap_or(Json::Null);
    head["tags"] = e.get("tags").cloned().unwrap_or(json!([]));
    let doc = json!({
        "run": head,
        "params": params,
        "metrics": metrics,
        "tracks": tracks,
        "logs": logs,
        "files": files,
    });
    let mut w = std::io::stdout().lock();
    if a.json {
        out::json(&mut w, &doc)?;
        return Ok(());
    }
    print_doc(&mut w, &doc, a)?;
    Ok(())
}

fn print_doc(w: &mut impl Write, doc: &Json, a: &ShowArgs) -> std::io::Result<()> {
    let run = &doc["run"];
    let s = |v: &Json| v.as_str().unwrap_or("-").to_string();
    writeln!(w, "{}", s(&run["prefix"]))?;
    let mut t = Table::new(["status", &super::list::status_cell(run)]);
    t.row(vec!["started".into(), s(&run["started"])]);
    t.row(vec!["ended".into(), s(&run["ended"])]);
    t.row(vec!["duration".into(), s(&run["duration"])]);
    if let Some(d) = run["description"].as_str() {
        t.row(vec!["description".into(), d.to_string()]);
    }
    let tags: Vec<String> = run["tags"]
        .as_array()
        .map(|a| a.iter().map(out::value).collect())
        .unwrap_or_default();
    if !tags.is_empty() {
        t.row(vec!["tags".into(), tags.join(", ")]);
    }
    t.write(w, "  ")?;

    let params = doc["params"].as_object().cloned().unwrap_or_default();
    writeln!(w, "\nparams ({})", params.len())?;
    if !params.is_empty() {
        let mut keys: Vec<&String> = params.keys().collect();
        keys.sort();
        let mut t = Table::new(["NAME", "VALUE"]);
        for k in keys {
            t.row(vec![k.clone(), out::value(&params[k])]);
        }
        t.write(w, "  ")?;
    }

    let metrics = doc["metrics"].as_array().cloned().unwrap_or_default();
    writeln!(w, "\nmetrics ({})", metrics.len())?;
    if !metrics.is_empty() {
        let mut t = Table::new(["STREAM", "POINTS", "FIELD", "COUNT", "MIN", "MAX", "LAST"]);
        for m in &metrics {
            let fields = m["fields"].as_array().cloned().unwrap_or_default();
            let name = s(&m["name"]);
            let points = m["points"].to_string();
            if fields.is_empty() {
                t.row(vec![name.clone(), points.clone()]);
            }
            for (i, f) in fields.iter().enumerate() {
                let (n, p) = if i == 0 {
                    (name.clone(), points.clone())
                } else {
                    (String::new(), String::new())
                };
                let num = |k: &str| {
                    f.get(k)
                        .and_then(Json::as_f64)
                        .map_or("-".into(), out::number)
                };
                t.row(vec![
                    n,
                    p,
                    s(&f["name"]),
                    f["count"].to_string(),
                    num("min"),
                    num("max"),
                    f.get("last").map_or("-".into(), out::value),
                ]);
            }
        }
        t.write(w, "  ")?;
    }

    let tracks = doc["tracks"].as_array().cloned().unwrap_or_default();
    writeln!(w, "\ntracks ({})", tracks.len())?;
    if !tracks.is_empty() {
        let mut t = Table::new(["TOPIC", "ROWS", "FIRST", "LAST", "COLUMNS"]);
        for x in &tracks {
            let num = |k: &str| x[k].as_f64().map_or("-".into(), out::number);
            let cols: Vec<String> = x["columns"]
                .as_array()
                .map(|a| a.iter().map(out::value).collect())
                .unwrap_or_default();
            t.row(vec![
                s(&x["topic"]),
                x["rows"].to_string(),
                num("first"),
                num("last"),
                cols.join(", "),
            ]);
        }
        t.write(w, "  ")?;
    }

    let logs = doc["logs"]["lines"].as_array().cloned().unwrap_or_default();
    let level = a.level.map_or(String::new(), |l| {
        format!(", level >= {l:?}").to_lowercase()
    });
    writeln!(
        w,
        "\nlogs ({} in all; the last {}{level})",
        doc["logs"]["total"],
        logs.len()
    )?;
    for l in &logs {
        writeln!(w, "  {}", log_line(l))?;
    }

    let files = doc["files"].as_array().cloned().unwrap_or_default();
    writeln!(w, "\nfiles ({})", files.len())?;
    if !files.is_empty() {
        let mut t = Table::new(["PATH", "SIZE", "TYPE", "SHA256"]);
        for f in &files {
            t.row(vec![
                s(&f["path"]),
                out::bytes(f["size"].as_u64().unwrap_or(0)),
                s(&f["type"]),
                f["sha256"]
                    .as_str()
                    .map_or("-".into(), |c| c.chars().take(16).collect()),
            ]);
        }
        t.write(w, "  ")?;
    }
    Ok(())
}

/// `2026-01-02T03:04:05.123456Z INFO  message {"k":1}`.
pub(crate) fn log_line(l: &Json) -> String {
    let mut line = format!(
        "{} {:<5} {}",
        l["timestamp"].as_str().unwrap_or("-"),
        l["level"].as_str().unwrap_or("-").to_uppercase(),
        l["message"]
            .as_str()
            .map_or_else(|| l["message"].to_string(), String::from)
    );
    if let Some(m) = l.get("metadata").filter(|m| !m.is_null()) {
        line.push(' ');
        line.push_str(&m.to_string());
    }
    line
}

/// Per field: count (numeric values), min, max, last value.
fn metric_stats(s: &StreamDir) -> Result<Json> {
    let mut fields: Vec<(String, u64, f64, f64, Json)> = Vec::new();
    let mut points = 0u64;
    let mut bad = 0u64;
    for line in read::Lines::open(s.data())? {
        let Ok(line) = line else {
            bad += 1;
            continue;
        };
        points += 1;
        let Some(data) = line.value.get("data").and_then(Json::as_object) else {
            continue;
        };
        for (k, v) in data {
            let i = match fields.iter().position(|f| f.0 == *k) {
                Some(i) => i,
                None => {
                    fields.push((k.clone(), 0, f64::INFINITY, f64::NEG_INFINITY, Json::Null));
                    fields.len() - 1
                }
            };
            let f = &mut fields[i];
            let x = read::number_of(v);
            if v.is_number() || v.is_string() && !x.is_nan() {
                f.1 += 1;
                f.2 = f.2.min(x);
                f.3 = f.3.max(x);
            }
            f.4 = v.clone();
        }
    }
    let fields: Vec<Json> = fields
        .into_iter()
        .map(|(name, count, min, max, last)| {
            let mut f = json!({"name": name, "count": count, "last": last});
            if count > 0 {
                f["min"] = json!(min);
                f["max"] = json!(max);
            }
            f
        })
        .collect();
    let mut m = json!({"name": s.label(), "points": points, "fields": fields});
    if bad > 0 {
        m["unparsed_lines"] = json!(bad);
    }
    Ok(m)
}

fn track_stats(t: &StreamDir) -> Result<Json> {
    let (mut rows, mut lo, mut hi) = (0u64, f64::INFINITY, f64::NEG_INFINITY);
    let mut cols: Vec<String> = Vec::new();
    for line in read::Lines::open(t.data())? {
        let Ok(line) = line else { continue };
        rows += 1;
        if let Some(o) = line.value.as_object() {
            for k in o.keys() {
                if k == "timestamp" {
                    continue;
                }
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        if let Some(ts) = line.value.get("timestamp").and_then(Json::as_f64) {
            lo = lo.min(ts);
            hi = hi.max(ts);
        }
    }
    cols.sort();
    let mut x = json!({"topic": t.label(), "rows": rows, "columns": cols});
    if rows > 0 && lo.is_finite() {
        x["first"] = json!(lo);
        x["last"] = json!(hi);
    }
    Ok(x)
}

fn level_of(s: &str) -> Option<LogLevel> {
    Some(match s.to_ascii_lowercase().as_str() {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" | "warning" => LogLevel::Warn,
        "error" => LogLevel::Error,
        "fatal" | "critical" => LogLevel::Fatal,
        _ => return None,
    })
}

/// The last `n` log lines at `min` or above, and how many there are in all.
fn last_logs(path: &Path, n: usize, min: Option<LogLevel>) -> Result<Json> {
    let mut keep: VecDeque<Json> = VecDeque::with_capacity(n.min(1 << 16));
    let mut total = 0u64;
    for line in read::Lines::open(path)? {
        let line = line.map_err(|e| Fail::Problem(e.to_string()))?;
        total += 1;
        let level = line.value["level"].as_str().and_then(level_of);
        if min.is_some_and(|m| level.is_none_or(|l| l < m)) {
            continue;
        }
        if n == 0 {
            continue;
        }
        if keep.len() == n {
            keep.pop_front();
        }
        keep.push_back(line.value);
    }
    let lines: Vec<Json> = keep.into_iter().collect();
    let mut m = Map::new();
    m.insert("total".into(), json!(total));
    m.insert("lines".into(), Json::Array(lines));
    Ok(Json::Object(m))
}

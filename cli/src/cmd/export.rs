//! `ml-dash export`: a metric stream, the logs or a track topic as CSV or
//! JSON lines, streamed (two passes for CSV: the columns, then the rows).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ml_dash::read;
use serde_json::{Map, Value as Json};

use crate::args::{ExportArgs, Format};
use crate::out::csv_cell;
use crate::{Fail, Result};

/// What one line becomes: a flat object of columns.
type Flatten = fn(Json) -> Option<Map<String, Json>>;

pub(crate) fn run(root: &Path, a: &ExportArgs) -> Result {
    let r = super::one_run(root, &a.prefix)?;
    let (path, flatten, first): (PathBuf, Flatten, &[&str]) = if let Some(m) = &a.metric {
        let s = read::metric_stream(&r.dir, Some(m.as_str()));
        if !s.data().exists() && !s.dir.exists() {
            return Err(Fail::Usage(format!(
                "run {} has no metric stream {m:?} (`ml-dash show {}` lists them)",
                r.prefix, r.prefix
            )));
        }
        (s.data(), metric_row, &["index"])
    } else if let Some(t) = &a.track {
        let s = read::track_topic(&r.dir, t);
        if !s.dir.exists() {
            return Err(Fail::Usage(format!(
                "run {} has no track topic {t:?} (`ml-dash show {}` lists them)",
                r.prefix, r.prefix
            )));
        }
        (s.data(), plain_row, &["timestamp"])
    } else {
        (
            read::logs_path(&r.dir),
            log_row,
            &["sequenceNumber", "timestamp", "level", "message"],
        )
    };
    // JSON lines keep a log line or a track row as stored.
    let flatten = match a.format {
        Format::Jsonl if a.metric.is_none() => plain_row as Flatten,
        _ => flatten,
    };
    let sink: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| Fail::Problem(format!("cannot create {}: {e}", p.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = BufWriter::with_capacity(1 << 16, sink);
    match a.format {
        Format::Jsonl => {
            for line in read::Lines::open(&path)? {
                if let Some(row) = flatten(line?.value) {
                    serde_json::to_writer(&mut w, &row).map_err(std::io::Error::from)?;
                    w.write_all(b"\n")?;
                }
            }
        }
        Format::Csv => {
            let mut cols: Vec<String> = first.iter().map(|s| s.to_string()).collect();
            for line in read::Lines::open(&path)? {
                if let Some(row) = flatten(line?.value) {
                    for k in row.keys() {
                        if !cols.contains(k) {
                            cols.push(k.clone());
                        }
                    }
                }
            }
            let header: Vec<String> = cols.iter().map(|c| csv_cell(c)).collect();
            writeln!(w, "{}", header.join(","))?;
            let mut cells = Vec::with_capacity(cols.len());
            for line in read::Lines::open(&path)? {
                let Some(row) = flatten(line?.value) else {
                    continue;
                };
                cells.clear();
                cells.extend(cols.iter().map(|c| csv_cell(&cell(row.get(c)))));
                writeln!(w, "{}", cells.join(","))?;
            }
        }
    }
    w.flush()?;
    Ok(())
}

/// A cell: numbers as stored, strings bare, nothing for null or absent,
/// other values as JSON.
fn cell(v: Option<&Json>) -> String {
    match v {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// `{"index", ...data}`.
fn metric_row(v: Json) -> Option<Map<String, Json>> {
    let Json::Object(mut o) = v else { return None };
    let mut row = Map::new();
    row.insert("index".into(), o.remove("index").unwrap_or(Json::Null));
    if let Some(Json::Object(d)) = o.remove("data") {
        row.extend(d);
    }
    Some(row)
}

fn plain_row(v: Json) -> Option<Map<String, Json>> {
    match v {
        Json::Object(o) => Some(o),
        _ => None,
    }
}

/// The log line, its metadata as `metadata.<key>` columns.
fn log_row(v: Json) -> Option<Map<String, Json>> {
    let Json::Object(mut o) = v else { return None };
    let meta = o.remove("metadata");
    if let Some(Json::Object(m)) = meta {
        for (k, v) in m {
            o.insert(format!("metadata.{k}"), v);
        }
    }
    Some(o)
}

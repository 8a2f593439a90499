//! Reading a local store back: the public read API that the `ml-dash`
//! command-line tool (and tests, and your own tools) use. Everything streams:
//! append files are read through one buffer ([`LineReader`], [`Lines`],
//! [`Tail`] for a live run), never loaded whole; JSON is parsed with
//! simd-json, and [`scan_metric`] pulls numbers out of metric lines without
//! building a JSON tree.
//!
//! ```text
//!  runs(root) -> RunInfo { prefix, dir, experiment }   status, started_at, liveness()
//!  metric_streams(dir) / track_topics(dir) -> StreamDir { name, dir }   data(), metadata()
//!  logs_path(dir), params(dir), stored_files(dir)
//!  Lines::open(path)            parsed lines, one at a time (a bad line is an Err, then on)
//!  LineReader::range(path, r)   raw complete lines starting in a byte range (split a file)
//!  scan_metric(reader, fields)  numbers of some fields per point (charts, summaries)
//!  Summary::open(data)         per block of lines: each field's first/min/max/last (charts)
//!  Tail::new(path).poll(f)      lines appended since the last poll (no inotify: NFS, Lustre)
//!  verify_run(dir, repair) / verify_spool(dir) -> Vec<Problem>
//! ```
//!
//! The store holds Python's non-finite tokens (`NaN`, `Infinity`,
//! `-Infinity`), which JSON values cannot hold: these readers return them as
//! the strings `"NaN"`, `"Infinity"` and `"-Infinity"` ([`scan_metric`] as
//! the floats).
//!
//! Lines are only ever read up to the last newline: bytes after it are a
//! line being written or one a killed writer tore ([`LineReader::torn`]).

use std::path::Path;

mod lines;
mod scan;
mod store;
mod summary;
mod verify;

pub use lines::{BUF, Line, LineReader, Lines, Tail, Torn};
pub use scan::{ScanReport, member_bytes, number_of, scan_metric, without_member};
pub use store::{
    HEARTBEAT, Liveness, RunInfo, STALE_HEARTBEATS, StoredFile, StreamDir, logs_path,
    metric_stream, metric_streams, params, parse_time, run, runs, stored_files, track_topic,
    track_topics,
};
pub(crate) use summary::Feed;
pub use summary::{Agg, BLOCK_LINES, Block, Pt, Summary, summary_path};
pub use verify::{
    MAX_PER_FILE, Problem, hash_file, is_spool, spool_backlog, verify_run, verify_spool,
};

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::sink::local::{experiment_dir, read_json, topic_folder};

/// Rewrites the non-finite tokens outside strings with `with(token)`.
fn rewrite_nonfinite(b: &[u8], with: impl Fn(&str) -> &'static [u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 16);
    let (mut i, mut in_str) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| b[i..].starts_with(t.as_bytes()));
        match token {
            Some(t) => {
                out.extend_from_slice(with(t));
                i += t.len();
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The marker strings that stand for non-finite tokens while a document is a
/// `serde_json::Value` (which cannot hold them).
const MARKERS: [(&str, &[u8]); 3] = [
    ("NaN", b"\"\\u0000ml-dash:NaN\""),
    ("Infinity", b"\"\\u0000ml-dash:Infinity\""),
    ("-Infinity", b"\"\\u0000ml-dash:-Infinity\""),
];

/// `NaN` / `Infinity` / `-Infinity` outside strings become marker strings.
pub(crate) fn nonfinite_to_markers(b: &[u8]) -> Vec<u8> {
    rewrite_nonfinite(b, |t| {
        MARKERS
            .iter()
            .find(|(tok, _)| *tok == t)
            .map_or(b"null", |(_, m)| m)
    })
}

/// ASCII JSON of `v` (non-ASCII escaped as `\uXXXX`, like Python's
/// `json.dumps`), with marker strings turned back into non-finite tokens.
pub(crate) fn to_ascii_json(v: &Json) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    serde::Serialize::serialize(v, &mut ser).expect("a Value always serializes");
    if out.windows(7).any(|w| w == b"\\u0000m") {
        for (tok, marker) in MARKERS {
            out = replace_all(&out, marker, tok.as_bytes());
        }
    }
    out
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// serde_json's compact formatter, escaping every non-ASCII character.
struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for ch in fragment.chars() {
            if ch.is_ascii() {
                w.write_all(&[ch as u8])?;
            } else {
                for u in ch.encode_utf16(&mut units).iter() {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Parses one JSON text, reading non-finite tokens as strings.
///
/// # Examples
/// ```
/// let v = ml_dash::read::parse_lenient(br#"{"loss": NaN, "note": "NaN"}"#)?;
/// assert_eq!(v["loss"], "NaN"); // the token, as a string
/// assert!(ml_dash::read::parse_lenient(b"{oops").is_err());
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn parse_lenient(text: &[u8]) -> Result<Json> {
    let mut bytes = rewrite_nonfinite(text, |t| match t {
        "NaN" => b"\"NaN\"",
        "Infinity" => b"\"Infinity\"",
        _ => b"\"-Infinity\"",
    });
    simd_json::serde::from_slice::<Json>(&mut bytes).map_err(|e| Error::Corrupt {
        path: Default::default(),
        reason: e.to_string(),
    })
}

/// Every line of a `.jsonl` file, parsed (use [`Lines`] to stream them);
/// a missing file is empty. A torn last line (no newline) is left out.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("a.jsonl");
/// std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\"").unwrap();
/// let lines = ml_dash::read::jsonl(&path)?;
/// assert_eq!(lines, [serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]);
/// assert!(ml_dash::read::jsonl(&dir.path().join("missing.jsonl"))?.is_empty());
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn jsonl(path: &Path) -> Result<Vec<Json>> {
    Lines::open(path)?.map(|l| l.map(|l| l.value)).collect()
}

/// The lines of a metric stream (`None`: the unnamed stream).
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.metrics("train")?.log(&ml_dash::point! {"loss" => 0.5})?;
/// run.complete()?;
/// let points = ml_dash::read::metrics(root.path(), "a/b", Some("train"))?;
/// assert_eq!(points[0]["data"]["loss"], 0.5);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn metrics(dash_root: &Path, prefix: &str, stream: Option<&str>) -> Result<Vec<Json>> {
    let dir = experiment_dir(dash_root, prefix).join("metrics");
    jsonl(&dir.join(stream.unwrap_or("None")).join("data.jsonl"))
}

/// The log lines.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.log("hello")?;
/// run.complete()?;
/// let logs = ml_dash::read::logs(root.path(), "a/b")?;
/// assert_eq!(logs[0]["message"], "hello");
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn logs(dash_root: &Path, prefix: &str) -> Result<Vec<Json>> {
    jsonl(&experiment_dir(dash_root, prefix).join("logs/logs.jsonl"))
}

/// The rows of a track topic.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.tracks("robot/pose")?.append_at(2.0, &ml_dash::point! {"x" => 1})?;
/// run.complete()?;
/// let rows = ml_dash::read::tracks(root.path(), "a/b", "robot/pose")?;
/// assert_eq!(rows, [serde_json::json!({"timestamp": 2.0, "x": 1})]);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn tracks(dash_root: &Path, prefix: &str, topic: &str) -> Result<Vec<Json>> {
    let dir = experiment_dir(dash_root, prefix).join("tracks");
    jsonl(&dir.join(topic_folder(topic)).join("data.jsonl"))
}

/// A JSON document of the experiment (`experiment.json`, `parameters.json`,
/// `metrics/<m>/metadata.json`, ...), by path relative to its folder.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.complete()?;
/// let exp = ml_dash::read::document(root.path(), "a/b", "experiment.json")?.unwrap();
/// assert_eq!(exp["status"], "COMPLETED");
/// assert_eq!(ml_dash::read::document(root.path(), "a/b", "parameters.json")?, None);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn document(dash_root: &Path, prefix: &str, rel: &str) -> Result<Option<Json>> {
    read_json(&experiment_dir(dash_root, prefix).join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_outside_strings_only() {
        let v =
            parse_lenient(br#"{"a":NaN,"b":"NaN \"Infinity","c":[-Infinity,Infinity]}"#).unwrap();
        assert_eq!(v["a"], "NaN");
        assert_eq!(v["b"], "NaN \"Infinity");
        assert_eq!(v["c"][0], "-Infinity");
        assert_eq!(v["c"][1], "Infinity");
        let marked =
            nonfinite_to_markers(r#"{"a":NaN,"b":[Infinity,-Infinity],"c":"é"}"#.as_bytes());
        let v: Json = serde_json::from_slice(&marked).unwrap();
        assert_eq!(
            to_ascii_json(&v),
            br#"{"a":NaN,"b":[Infinity,-Infinity],"c":"\u00e9"}"#
        );
    }
}

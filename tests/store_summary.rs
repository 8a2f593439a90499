//! The block summary the engine keeps as it writes a metric stream
//! (`.data.summary`, see `ml_dash::read::Summary`): what a reader would build
//! from the lines, bit for bit, so that `ml-dash plot` and `ml-dash serve`
//! read a stream the engine wrote without reading its lines.
//!
//! - `the_engines_summary_is_what_a_reader_builds_from_the_lines`: values
//!   of every kind, batches of many sizes; readers use it as it is.
//! - `a_reader_that_stored_its_own_is_followed_by_the_engine`: the summary
//!   replaced mid-run by a reader's; the engine's blocks still join it.
//! - `where_the_engine_stops_readers_summarise`: a nested value, and a run
//!   that reopens a stream another run wrote.

use std::fs;
use std::path::{Path, PathBuf};

use ml_dash::read::{BLOCK_LINES, Summary, summary_path};
use ml_dash::{BufferConfig, Experiment, Metrics, Run, point};

const PREFIX: &str = "alice/summaries/run";

fn open(root: &Path) -> Run {
    let mut c = BufferConfig::default();
    c.quiet = true;
    Experiment::new(PREFIX)
        .dash_root(root)
        .buffer_config(c)
        .run()
        .unwrap()
}

fn data(root: &Path) -> PathBuf {
    root.join(PREFIX).join("metrics/train/data.jsonl")
}

/// The summary a reader builds from the lines alone (of a copy, so that no
/// stored summary is seen).
fn from_lines(data: &Path) -> Vec<u8> {
    let fresh = tempfile::tempdir().unwrap();
    let copy = fresh.path().join("data.jsonl");
    fs::copy(data, &copy).unwrap();
    Summary::open(&copy).unwrap().encode()
}

/// The summary as stored now.
fn stored(data: &Path) -> Summary {
    let bytes = fs::read(summary_path(data)).unwrap();
    Summary::decode(&bytes[..]).unwrap()
}

/// Points `from..to` of every kind of value a reader sees as a number or
/// not: floats, -0, NaN and infinities, integers, booleans, strings;
/// `step` and the caller's `_ts` on some. A flush every 97 points: blocks
/// span batches of many sizes.
fn log(run: &Run, m: &Metrics, from: u64, to: u64) {
    for i in from..to {
        let y = match i % 11 {
            0 => f64::NAN,
            1 => -0.0,
            2 => f64::INFINITY,
            3 => f64::NEG_INFINITY,
            _ => ((i * 7919) % 1000) as f64 / 7.0,
        };
        let n = -(i as i64) * 1_000_000_007;
        if i % 5 == 0 {
            m.log(
                &point! {"loss" => y, "ok" => i % 3 == 0, "n" => n, "_ts" => 1e9 + i as f64 / 8.0},
            )
        } else {
            m.log(&point! {"step" => i, "loss" => y, "tag" => "x", "big" => u64::MAX - i})
        }
        .unwrap();
        if i % 97 == 0 {
            run.flush().unwrap();
        }
    }
}

#[test]
fn the_engines_summary_is_what_a_reader_builds_from_the_lines() {
    let t = tempfile::tempdir().unwrap();
    let run = open(t.path());
    let m = run.metrics("train").unwrap();
    log(&run, &m, 0, 3000);
    run.flush().unwrap();
    let data = data(t.path());
    // While the run writes: its completed blocks are there, kept by it.
    let kept = stored(&data);
    assert!(kept.kept_by_writer() && Summary::is_kept(&data));
    assert_eq!(
        kept.points(),
        3000 / u64::from(BLOCK_LINES) * u64::from(BLOCK_LINES)
    );
    let before = fs::read(summary_path(&data)).unwrap();
    let s = Summary::open(&data).unwrap();
    assert!(
        s.encode() == from_lines(&data),
        "the engine's summary differs"
    );
    assert_eq!(s.points(), 3000);
    assert_eq!(
        fs::read(summary_path(&data)).unwrap(),
        before,
        "a reader replaced the summary its writer keeps"
    );
    log(&run, &m, 3000, 5000);
    run.complete().unwrap();
    let s = Summary::open(&data).unwrap();
    assert!(
        s.encode() == from_lines(&data),
        "the engine's summary differs"
    );
    assert_eq!(s.points(), 5000);
    assert!(stored(&data).kept_by_writer());
}

#[test]
fn a_reader_that_stored_its_own_is_followed_by_the_engine() {
    let t = tempfile::tempdir().unwrap();
    let run = open(t.path());
    let m = run.metrics("train").unwrap();
    log(&run, &m, 0, 1000);
    run.flush().unwrap();
    let data = data(t.path());
    // A reader finds none and stores its own, ending in a short block.
    fs::remove_file(summary_path(&data)).unwrap();
    assert_eq!(Summary::open(&data).unwrap().points(), 1000);
    assert!(!stored(&data).kept_by_writer() && !Summary::is_kept(&data));
    log(&run, &m, 1000, 3000);
    run.complete().unwrap();
    // The engine's blocks joined it, the first replacing its short block.
    let full = 3000 / u64::from(BLOCK_LINES) * u64::from(BLOCK_LINES);
    assert_eq!(stored(&data).points(), full);
    assert!(Summary::open(&data).unwrap().encode() == from_lines(&data));
}

#[test]
fn where_the_engine_stops_readers_summarise() {
    let t = tempfile::tempdir().unwrap();
    let data = data(t.path());
    let run = open(t.path());
    let m = run.metrics("train").unwrap();
    log(&run, &m, 0, 1000);
    // A nested value: readers parse such a line whole, the engine stops.
    let opt = serde_json::json!({"lr": 0.1});
    m.log(&point! {"loss" => 1.0, "opt" => &opt}).unwrap();
    log(&run, &m, 1001, 2000);
    run.complete().unwrap();
    assert_eq!(stored(&data).points(), 768);
    let s = Summary::open(&data).unwrap();
    assert_eq!(s.points(), 2000);
    assert!(s.encode() == from_lines(&data));
    assert!(
        !stored(&data).kept_by_writer(),
        "behind: the reader stores its own"
    );
    // Another run on the stream: not its file from the start.
    let run = open(t.path());
    let m = run.metrics("train").unwrap();
    log(&run, &m, 0, 1000);
    run.complete().unwrap();
    assert_eq!(stored(&data).points(), 2000);
    let s = Summary::open(&data).unwrap();
    assert_eq!(s.points(), 3000);
    assert!(s.encode() == from_lines(&data));
}

//! The local store after a `kill -9`, and with many metric names.
//!
//! - `kill_nine_then_reopen_keeps_every_acknowledged_record`: a child process
//!   logs metric points, log lines and track rows flat out from 4 threads,
//!   each flushing every 1 000 points and printing its acknowledgement; after
//!   a few of them (read from its stdout) it is SIGKILLed as soon as one of
//!   its files grows again (the collector is mid-way through a write), and a
//!   new run on the same prefix appends and flushes. 8 kills in a row
//!   (`ML_DASH_STORE_KILLS` for more): every line of every append file
//!   parses, indices and sequence numbers are unique and contiguous from 0,
//!   every acknowledged record is there once, the metadata totals match, and
//!   each torn tail and stale counter is warned about.
//! - `torn_tails_are_cut_and_kept`, `stale_counters_follow_the_data`: the same
//!   repairs, set up by hand (also while the run holds the stream open, and
//!   with lines written the Python SDK's way).
//! - `many_names_under_a_low_descriptor_limit`: 5 000 metric names (100 000
//!   in the `#[ignore]`d variant) in a child started under `ulimit -n 256`;
//!   nothing lost.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ml_dash::{CloseReport, Run, point, read};
use serde_json::Value as Json;

mod local;
#[path = "children/store_recovery_common.rs"]
mod store_recovery_common;
use local::open;
use store_recovery_common::{NAMES_LIMIT, PREFIX, second_point, track_ts};

/// The helper program that runs the children (`tests/children/store_recovery.rs`).
const CHILD: &str = env!("CARGO_BIN_EXE_ml-dash-test-child");

fn kills() -> u64 {
    std::env::var("ML_DASH_STORE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// The lines of a `.jsonl` file that must be whole: it ends with a newline
/// and every line parses.
fn whole_lines(path: &Path) -> Vec<Json> {
    let text = fs::read(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with(b"\n"),
        "{} ends in a torn line",
        path.display()
    );
    read::jsonl(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ends_torn(path: &Path) -> bool {
    fs::read(path).is_ok_and(|t| !t.is_empty() && !t.ends_with(b"\n"))
}

/// Complete lines of a file (its torn tail not counted).
fn complete_lines(path: &Path) -> u64 {
    fs::read(path).map_or(0, |t| t.iter().filter(|&&c| c == b'\n').count() as u64)
}

fn num(v: &Json, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn count(report: &CloseReport, what: &str) -> usize {
    report.warnings.iter().filter(|w| w.contains(what)).count()
}

/// Every acknowledged record, as (run, thread) -> the last acknowledged i.
type Acked = HashMap<(i64, i64), i64>;

fn check_store(dir: &Path, acked: &Acked) {
    let want = |keep: fn(i64) -> bool| -> HashSet<(i64, i64, i64)> {
        (acked.iter())
            .flat_map(|(&(r, t), &last)| {
                (0..=last).filter(move |&i| keep(i)).map(move |i| (r, t, i))
            })
            .collect()
    };
    // Metric points: indices 0..n, each point once, the totals of the data.
    let points = whole_lines(&dir.join("metrics/train/data.jsonl"));
    let mut seen = HashSet::new();
    for (n, p) in points.iter().enumerate() {
        assert_eq!(num(p, "index"), n as i64, "indices unique and contiguous");
        let d = &p["data"];
        assert!(
            seen.insert((num(d, "r"), num(d, "t"), num(d, "i"))),
            "{p} twice"
        );
    }
    let missing = want(|_| true).difference(&seen).count();
    assert_eq!(missing, 0, "acknowledged points missing");
    let meta: Json =
        serde_json::from_slice(&fs::read(dir.join("metrics/train/metadata.json")).unwrap())
            .unwrap();
    assert_eq!(meta["totalDataPoints"], points.len());
    assert_eq!(meta["nextIndex"], points.len());

    // Log lines: sequence numbers 0..n, `.log_sequence` n.
    let logs = whole_lines(&dir.join("logs/logs.jsonl"));
    let mut seen = HashSet::new();
    for (n, l) in logs.iter().enumerate() {
        assert_eq!(
            num(l, "sequenceNumber"),
            n as i64,
            "sequence numbers contiguous"
        );
        let msg = l["message"].as_str().unwrap();
        let v: Vec<i64> = msg.split('-').map(|x| x.parse().unwrap()).collect();
        assert!(seen.insert((v[0], v[1], v[2])), "{l} twice");
    }
    assert_eq!(
        want(|i| i % 4 == 0).difference(&seen).count(),
        0,
        "acknowledged logs missing"
    );
    let seq = fs::read_to_string(dir.join("logs/.log_sequence")).unwrap();
    assert_eq!(seq.trim().parse::<usize>().unwrap(), logs.len());

    // Track rows: whole, each once.
    let rows = whole_lines(&dir.join("tracks/robot_pose/data.jsonl"));
    let mut seen = HashSet::new();
    for row in &rows {
        assert!(
            seen.insert((num(row, "r"), num(row, "t"), num(row, "i"))),
            "{row} twice"
        );
    }
    assert_eq!(
        want(|i| i % 4 == 1).difference(&seen).count(),
        0,
        "acknowledged rows missing"
    );
}

/// Items 1 and 2 of the hardening issue, end to end.
#[test]
fn kill_nine_then_reopen_keeps_every_acknowledged_record() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(PREFIX);
    let files = [
        "metrics/train/data.jsonl",
        "logs/logs.jsonl",
        "tracks/robot_pose/data.jsonl",
    ];
    let mut rng = xorshift();
    let mut acked = Acked::new();
    let (mut torn, mut stale) = (0, 0);
    for r in 0..kills() as i64 {
        let mut child = Command::new(CHILD)
            .args(["store_recovery", "kill"])
            .arg(root.path())
            .arg(r.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 1 + rng() % 3;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("the child logs until killed").unwrap();
            if let Some(rest) = line.strip_prefix("acked ") {
                let (t, i) = rest.split_once(' ').unwrap();
                acked.insert((r, t.parse().unwrap()), i.parse().unwrap());
                seen += 1;
            }
        }
        // Then right after the collector's next append to one of the files
        // (it grows): between a data append and its counter update, or in
        // the middle of a large append, where a kill does the most harm.
        let target = dir.join(files[r as usize % files.len()]);
        let len = || fs::metadata(&target).map_or(0, |m| m.len());
        let before = len();
        while len() == before {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the child logs until killed"
            );
            std::hint::spin_loop();
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // What the next run must repair.
        let tears = files.iter().filter(|f| ends_torn(&dir.join(f))).count();
        let meta: Json = serde_json::from_slice(
            &fs::read(dir.join("metrics/train/metadata.json")).unwrap_or_else(|_| b"{}".to_vec()),
        )
        .unwrap();
        let seq: u64 = fs::read_to_string(dir.join("logs/.log_sequence"))
            .map_or(0, |s| s.trim().parse().unwrap());
        let stale_now = usize::from(
            meta["nextIndex"].as_u64().unwrap_or(0) != complete_lines(&dir.join(files[0])),
        ) + usize::from(seq != complete_lines(&dir.join(files[1])));
        torn += tears;
        stale += stale_now;

        // The next run on the same prefix appends; its flush acknowledges.
        let run = open(root.path(), PREFIX);
        let (m, k) = (
            run.metrics("train").unwrap(),
            run.tracks("robot/pose").unwrap(),
        );
        let (r2, t) = (1000 + r, 0);
        for i in 0..20 {
            m.log(&point! {"r" => r2, "t" => t, "i" => i}).unwrap();
            match i % 4 {
                0 => run.log(&format!("{r2}-{t}-{i}")).unwrap(),
                1 => k
                    .append_at(track_ts(r2, t, i), &point! {"r" => r2, "t" => t, "i" => i})
                    .unwrap(),
                _ => {}
            }
        }
        run.flush().unwrap();
        acked.insert((r2, t), 19);
        let report = run.complete().unwrap();
        assert_eq!(count(&report, "torn line"), tears, "{:?}", report.warnings);
        assert_eq!(
            count(&report, "repaired"),
            stale_now,
            "{:?}",
            report.warnings
        );
    }
    check_store(&dir, &acked);
    for f in files {
        let side = dir.join(format!("{f}.torn"));
        let kept = fs::read(&side).map_or(0, |t| t.iter().filter(|&&c| c == b'\n').count());
        eprintln!("{f}: {kept} torn tail(s) kept in {}", side.display());
    }
    eprintln!(
        "{} kills: {torn} torn tail(s), {stale} stale counter(s) repaired",
        kills()
    );
}

/// A small seeded generator: the kill points differ from kill to kill.
fn xorshift() -> impl FnMut() -> usize {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    }
}

fn append(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Logs `n` points, log lines and track rows, numbered from `from`.
fn write_some(run: &Run, from: i64, n: i64) {
    let (m, k) = (
        run.metrics("train").unwrap(),
        run.tracks("robot/pose").unwrap(),
    );
    for i in from..from + n {
        m.log(&point! {"i" => i}).unwrap();
        run.log(&format!("line {i}")).unwrap();
        k.append_at(i as f64, &point! {"i" => i}).unwrap();
    }
    run.flush().unwrap();
}

fn paths(dir: &Path) -> [PathBuf; 3] {
    [
        "metrics/train/data.jsonl",
        "logs/logs.jsonl",
        "tracks/robot_pose/data.jsonl",
    ]
    .map(|f| dir.join(f))
}

#[test]
fn torn_tails_are_cut_and_kept() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "alice/proj/torn";
    let dir = root.path().join(prefix);
    write_some(&open(root.path(), prefix), 0, 10);
    let tears: [&[u8]; 3] = [
        br#"{"index":10,"data":{"i":10,"_t"#,
        br#"{"sequenceNumber":10,"timest"#,
        br#"{"timestamp":10.0,"i""#,
    ];
    for (p, t) in paths(&dir).iter().zip(tears) {
        append(p, t);
    }
    // A new run cuts them when it opens the streams.
    let run = open(root.path(), prefix);
    write_some(&run, 10, 5);
    // Another writer dies mid-append while this run holds the streams open.
    for (p, t) in paths(&dir).iter().zip(tears) {
        append(p, t);
    }
    write_some(&run, 15, 5);
    let report = run.complete().unwrap();
    for (p, t) in paths(&dir).iter().zip(tears) {
        let side = fs::read(
            p.with_file_name(format!("{}.torn", p.file_name().unwrap().to_str().unwrap())),
        )
        .unwrap_or_default();
        assert_eq!(whole_lines(p).len(), 20);
        assert_eq!(
            side,
            [t, b"\n", t, b"\n"].concat(),
            "the torn bytes are kept, one line per cut"
        );
    }
    let points = whole_lines(&paths(&dir)[0]);
    assert!(
        points
            .iter()
            .enumerate()
            .all(|(n, p)| num(p, "index") == n as i64 && num(&p["data"], "i") == n as i64)
    );
    let logs = whole_lines(&paths(&dir)[1]);
    assert!(
        logs.iter()
            .enumerate()
            .all(|(n, l)| num(l, "sequenceNumber") == n as i64)
    );
    assert_eq!(count(&report, "torn line"), 6, "{:?}", report.warnings);
}

/// A metric line and a log line as the Python SDK writes them (spaces after
/// the separators).
fn sdk_lines(i: i64) -> (String, String) {
    let ts = "2026-01-01T00:00:00Z";
    (
        format!(r#"{{"index": {i}, "data": {{"i": {i}, "_ts": 1.0}}, "createdAt": "{ts}"}}"#)
            + "\n",
        format!(
            r#"{{"sequenceNumber": {i}, "timestamp": "{ts}", "level": "info", "message": "line {i}"}}"#
        ) + "\n",
    )
}

#[test]
fn stale_counters_follow_the_data() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "alice/proj/stale";
    let dir = root.path().join(prefix);
    write_some(&open(root.path(), prefix), 0, 10);
    // A writer killed between its appends and its counter updates: five
    // more lines each.
    let [metrics, logs, _] = paths(&dir);
    let stray = |from, to| {
        for i in from..to {
            let (m, l) = sdk_lines(i);
            append(&metrics, m.as_bytes());
            append(&logs, l.as_bytes());
        }
    };
    stray(10, 15);
    let run = open(root.path(), prefix);
    write_some(&run, 15, 5);
    // And again while this run holds the streams open.
    stray(20, 23);
    write_some(&run, 23, 2);
    let report = run.complete().unwrap();
    let points = whole_lines(&metrics);
    assert_eq!(points.len(), 25);
    assert!(
        points
            .iter()
            .enumerate()
            .all(|(n, p)| num(p, "index") == n as i64 && num(&p["data"], "i") == n as i64)
    );
    let meta = read::document(root.path(), prefix, "metrics/train/metadata.json")
        .unwrap()
        .unwrap();
    assert_eq!(
        (meta["nextIndex"].as_u64(), meta["totalDataPoints"].as_u64()),
        (Some(25), Some(25))
    );
    let lines = whole_lines(&logs);
    assert_eq!(lines.len(), 25);
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(n, l)| num(l, "sequenceNumber") == n as i64
                && l["message"] == format!("line {n}"))
    );
    let seq = fs::read_to_string(dir.join("logs/.log_sequence")).unwrap();
    assert_eq!(seq, "25");
    assert_eq!(count(&report, "repaired"), 4, "{:?}", report.warnings);
}

/// Item 6: 5 000 metric names with 256 file descriptors (at most 16
/// streams keep their files open), each stream registered and written.
#[test]
fn many_names_under_a_low_descriptor_limit() {
    many_names(5_000);
}

/// The same with 100 000 names: 20 s on tmpfs, 45 s or more on ext4 (a
/// 2-core VM), most of it the file system creating (and, at the end,
/// deleting) 400 000 files and folders: the SDK's layout is a folder,
/// `data.jsonl`, `.metadata.lock` and `metadata.json` per stream.
/// `cargo test --test store_recovery -- --ignored`.
#[test]
#[ignore = "about a minute: 100 000 streams on disk"]
fn many_names_100k_under_a_low_descriptor_limit() {
    many_names(100_000);
}

fn many_names(n: usize) {
    let root = tempfile::tempdir().unwrap();
    // The child starts under the lower limit (soft and hard).
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {NAMES_LIMIT} && exec \"$0\" \"$@\""))
        .arg(CHILD)
        .args(["store_recovery", "names"])
        .arg(root.path())
        .arg(n.to_string())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    eprintln!(
        "{}",
        stdout.lines().find(|l| l.contains("names:")).unwrap_or("")
    );
    let metrics = root.path().join("alice/proj/names/metrics/m");
    for k in 0..n {
        let lines = whole_lines(&metrics.join(k.to_string()).join("data.jsonl"));
        assert_eq!(
            lines.len(),
            1 + usize::from(second_point(k)),
            "stream m/{k}"
        );
        for (step, l) in lines.iter().enumerate() {
            assert_eq!(
                (
                    num(l, "index"),
                    num(&l["data"], "k"),
                    num(&l["data"], "step")
                ),
                (step as i64, k as i64, step as i64)
            );
        }
    }
}

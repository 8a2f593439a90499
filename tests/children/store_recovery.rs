//! The children of `tests/store_recovery.rs`: a logger killed with
//! `kill -9` (`kill <root> <r>`) and a run of many metric names started
//! under `ulimit -n` (`names <root> <n>`).

use std::fs;
use std::path::Path;
use std::time::Instant;

use ml_dash::{BufferConfig, Experiment, point};

use crate::local::open;
use crate::store_recovery_common::{NAMES_LIMIT, PREFIX, THREADS, second_point, track_ts};

/// Records each thread logs between the flushes it acknowledges.
const FLUSH_EVERY: i64 = 1000;

/// Runs the child `args` name.
pub fn main(args: &[&str]) {
    match *args {
        ["kill", root, r] => kill_child(Path::new(root), r.parse().unwrap()),
        ["names", root, n] => names_child(Path::new(root), n.parse().unwrap()),
        _ => panic!("store_recovery: bad arguments {args:?}"),
    }
}

/// Logs until killed. Thread `t` logs point `(r, t, i)` for i = 0, 1, ...,
/// a log line `r-t-i` when i % 4 == 0 and a track row when i % 4 == 1,
/// flushes after every `FLUSH_EVERY` points and prints `acked t i`: every
/// record of thread t up to i is acknowledged.
fn kill_child(root: &Path, r: i64) {
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    let run = Experiment::new(PREFIX)
        .dash_root(root)
        .buffer_config(cfg)
        .run()
        .unwrap();
    let pad = "x".repeat(200);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let m = run.metrics("train").unwrap();
            let k = run.tracks("robot/pose").unwrap();
            let l = run.logger();
            let pad = pad.as_str();
            s.spawn(move || {
                for i in 0.. {
                    m.log(&point! {"r" => r, "t" => t, "i" => i, "pad" => pad})
                        .unwrap();
                    match i % 4 {
                        0 => l.info(&format!("{r}-{t}-{i}")).unwrap(),
                        1 => k
                            .append_at(track_ts(r, t, i), &point! {"r" => r, "t" => t, "i" => i})
                            .unwrap(),
                        _ => {}
                    }
                    if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
                        l.flush().unwrap();
                        println!("acked {t} {i}");
                    }
                }
            });
        }
    });
}

/// The soft limit on open files, from /proc/self/limits.
fn fd_limit() -> u64 {
    let limits = fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Logs a point into each of `n` metric streams, a flush, then a second
/// point into some of them.
fn names_child(root: &Path, n: usize) {
    assert_eq!(fd_limit(), NAMES_LIMIT, "started under `ulimit -n`");
    let t0 = Instant::now();
    let run = open(root, "alice/proj/names");
    let handles: Vec<_> = (0..n)
        .map(|k| run.metrics(&format!("m/{k}")).unwrap())
        .collect();
    let registered = t0.elapsed();
    for (k, m) in handles.iter().enumerate() {
        m.log(&point! {"k" => k as i64, "step" => 0}).unwrap();
    }
    run.flush().unwrap();
    let first = t0.elapsed();
    for (k, m) in handles.iter().enumerate().filter(|(k, _)| second_point(*k)) {
        m.log(&point! {"k" => k as i64, "step" => 1}).unwrap();
    }
    let report = run.complete().unwrap();
    let want = n + (0..n).filter(|&k| second_point(k)).count();
    assert_eq!(report.stored.metrics, want as u64);
    assert_eq!(report.unwritten.total() + report.lost_to_store.total(), 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    println!(
        "{n} names: registered in {registered:.2?}, first points stored in {first:.2?}, all in {:.2?}",
        t0.elapsed()
    );
}

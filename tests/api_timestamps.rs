//! The `_ts` rule. What holds on any machine is checked: a point's `_ts` is
//! never later than the call returned nor earlier than the run's clock
//! started, and the first point after the engine sat idle reads the system
//! clock itself (exact). How close to the call the coarse clock is (within
//! 1 ms while its thread gets the CPU) depends on the scheduler: that is a
//! measurement, `cargo test --release --test api_timestamps -- --ignored
//! --nocapture`, not a test a loaded machine could fail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ml_dash::{BufferConfig, Experiment, point, read};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Logs 4 rounds of 1000 points, the engine idle before round 2; returns
/// each point's `_ts` with the wall clock before and after its call.
fn rounds() -> Vec<(f64, f64, f64)> {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    let run = Experiment::new("o/p/ts")
        .dash_root(root.path())
        .buffer_config(cfg)
        .run()
        .unwrap();
    let m = run.metrics("m").unwrap();
    let mut bounds = Vec::new();
    for round in 0..4i64 {
        if round == 2 {
            // The scenario itself, not synchronisation: let the clock go idle.
            std::thread::sleep(Duration::from_millis(1500));
        }
        for i in 0..1000i64 {
            let before = now();
            m.log(&point! {"round" => round, "i" => i}).unwrap();
            bounds.push((before, now()));
        }
    }
    run.complete().unwrap();
    let lines = read::metrics(root.path(), "o/p/ts", Some("m")).unwrap();
    assert_eq!(lines.len(), bounds.len());
    (lines.iter().zip(bounds))
        .map(|(l, (b, a))| (l["data"]["_ts"].as_f64().unwrap(), b, a))
        .collect()
}

#[test]
fn ts_is_never_from_the_future_and_exact_after_an_idle_pause() {
    let got = rounds();
    let started = got[0].1 - 1.0; // the run opened within a second before
    for (n, &(ts, _, after)) in got.iter().enumerate() {
        assert!(
            ts <= after && ts >= started,
            "point {n}: _ts {ts}, call ended {after}"
        );
    }
    // The first point after the pause: the clock word was stale, so the call
    // read the system clock between `before` and `after`.
    let (ts, before, after) = got[2000];
    assert!(
        before <= ts && ts <= after,
        "first point after the pause: _ts {ts} outside [{before}, {after}]"
    );
}

#[test]
#[ignore = "a measurement: run with --release --nocapture on a quiet machine"]
fn measure_ts_lag() {
    let mut lag: Vec<f64> = rounds()
        .iter()
        .map(|&(ts, b, _)| (b - ts).max(0.0))
        .collect();
    lag.sort_by(f64::total_cmp);
    let q = |p: f64| lag[((lag.len() - 1) as f64 * p) as usize] * 1e6;
    println!(
        "_ts lag behind the call (µs): p50 {:.0}, p99 {:.0}, max {:.0}; over 1 ms: {}",
        q(0.5),
        q(0.99),
        q(1.0),
        lag.iter().filter(|&&l| l > 1e-3).count()
    );
}

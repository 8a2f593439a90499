//! The `_ts` accuracy rule: within 1 ms of the wall clock at the call, also
//! for the first call after the engine sat idle. Its own test binary, so no
//! other test competes for the two cores while it runs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ml_dash::{BufferConfig, Experiment, point, read};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn ts_is_within_a_millisecond_also_after_an_idle_pause() {
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
            // The scenario itself, not synchronisation: let the collector go idle.
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
    for (line, (before, after)) in lines.iter().zip(bounds) {
        let ts = line["data"]["_ts"].as_f64().unwrap();
        assert!(
            ts >= before - 1e-3 && ts <= after + 1e-3,
            "_ts {ts} outside [{before}, {after}] ± 1 ms: {line}"
        );
    }
}

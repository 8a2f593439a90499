//! Engine behaviour through the public API: conservation, order, flush, close,
//! several runs at once, reopen, backpressure, synchronous mode.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use ml_dash::{Backpressure, BufferConfig, Experiment, Level, Run, Status, point, read};
use serde_json::Value as Json;

fn quiet() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = true;
    c
}

fn open(root: &Path, prefix: &str, cfg: BufferConfig) -> Run {
    Experiment::new(prefix)
        .dash_root(root)
        .buffer_config(cfg)
        .run()
        .unwrap()
}

fn int(v: &Json, k: &str) -> i64 {
    v["data"][k]
        .as_i64()
        .unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn conservation_and_order_with_ring_growth() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = quiet();
    cfg.ring_capacity = 4096; // force many chained rings
    cfg.metric_batch_size = 777;
    let run = open(root.path(), "o/p/conservation", cfg);
    let (threads, n) = (4i64, 50_000i64);
    std::thread::scope(|s| {
        for t in 0..threads {
            let m = run.metrics("train").unwrap();
            s.spawn(move || {
                for i in 0..n {
                    m.log(&point! {"thread" => t, "i" => i, "loss" => i as f64 * 0.5})
                        .unwrap();
                }
            });
        }
    });
    let report = run.complete().unwrap();
    assert_eq!(report.stored.metrics, (threads * n) as u64);
    assert_eq!(report.dropped, 0);
    assert_eq!(report.status, Some(ml_dash::Status::Completed));

    let lines = read::metrics(root.path(), "o/p/conservation", Some("train")).unwrap();
    assert_eq!(lines.len() as i64, threads * n);
    let mut next: HashMap<i64, i64> = HashMap::new();
    for (idx, line) in lines.iter().enumerate() {
        assert_eq!(
            line["index"].as_u64(),
            Some(idx as u64),
            "indices count from 0"
        );
        let (t, i) = (int(line, "thread"), int(line, "i"));
        let expect = next.entry(t).or_insert(0);
        assert_eq!(
            i, *expect,
            "thread {t}: order kept, nothing lost or doubled"
        );
        *expect += 1;
        assert_eq!(line["data"]["loss"].as_f64(), Some(i as f64 * 0.5));
    }
    assert!(next.values().all(|&v| v == n));
    let meta = read::document(
        root.path(),
        "o/p/conservation",
        "metrics/train/metadata.json",
    )
    .unwrap()
    .unwrap();
    assert_eq!(meta["totalDataPoints"], threads * n);
    assert_eq!(meta["nextIndex"], threads * n);
    assert_eq!(meta["name"], "train");
}

#[test]
fn flush_makes_everything_logged_before_it_visible() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = quiet();
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.metric_batch_size = 1_000_000;
    let run = open(root.path(), "o/p/flush", cfg);
    let m = run.metrics("loss").unwrap();
    for round in 0..5i64 {
        // Points from another thread that finished before the flush.
        let m2 = m.clone();
        std::thread::spawn(move || {
            for i in 0..100i64 {
                m2.log(&point! {"round" => round, "i" => i}).unwrap();
            }
        })
        .join()
        .unwrap();
        for i in 100..200i64 {
            m.log(&point! {"round" => round, "i" => i}).unwrap();
        }
        run.log_with(Level::Warn, "round", &point! {"round" => round})
            .unwrap();
        run.flush().unwrap();
        let lines = read::metrics(root.path(), "o/p/flush", Some("loss")).unwrap();
        assert_eq!(lines.len() as i64, (round + 1) * 200);
        let logs = read::logs(root.path(), "o/p/flush").unwrap();
        assert_eq!(logs.len() as i64, round + 1);
        assert_eq!(logs[round as usize]["level"], "warn");
        assert_eq!(logs[round as usize]["sequenceNumber"], round);
    }
    let exp = read::document(root.path(), "o/p/flush", "experiment.json")
        .unwrap()
        .unwrap();
    assert_eq!(exp["status"], "RUNNING");
    drop(run);
    let exp = read::document(root.path(), "o/p/flush", "experiment.json")
        .unwrap()
        .unwrap();
    assert_eq!(exp["status"], "COMPLETED");
    assert!(exp["ended_at"].is_string());
}

#[test]
fn close_drains_everything_and_records_status() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = quiet();
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.metric_batch_size = 1_000_000;
    cfg.log_batch_size = 1_000_000;
    cfg.track_batch_size = 1_000_000;
    let run = open(root.path(), "o/p/close", cfg);
    let m = run.metrics("m").unwrap();
    let tr = run.tracks("robot/pose").unwrap();
    for i in 0..1000i64 {
        m.log(&point! {"i" => i}).unwrap();
        tr.append_at(i as f64, &point! {"x" => i}).unwrap();
    }
    run.log("bye").unwrap();
    run.params()
        .set(serde_json::json!({"a": {"b": 1}}))
        .unwrap();
    let report = run.cancel().unwrap();
    assert_eq!(report.pending_at_close.metrics, 1000);
    assert_eq!(report.pending_at_close.tracks, 1000);
    assert_eq!(report.pending_at_close.logs, 1);
    assert_eq!(
        read::metrics(root.path(), "o/p/close", Some("m"))
            .unwrap()
            .len(),
        1000
    );
    assert_eq!(
        read::tracks(root.path(), "o/p/close", "robot/pose")
            .unwrap()
            .len(),
        1000
    );
    let exp = read::document(root.path(), "o/p/close", "experiment.json")
        .unwrap()
        .unwrap();
    assert_eq!(exp["status"], Status::Cancelled.as_str());
    let params = read::document(root.path(), "o/p/close", "parameters.json")
        .unwrap()
        .unwrap();
    assert_eq!(params["data"]["a.b"], 1);
    // Handles outlive the run: every call is now a typed error, never a panic.
    assert!(matches!(
        m.log(&point! {"i" => 1}),
        Err(ml_dash::Error::Closed)
    ));
    assert!(matches!(
        tr.append(&point! {"x" => 1}),
        Err(ml_dash::Error::Closed)
    ));
}

#[test]
fn dropping_during_a_panic_marks_the_run_failed() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    let r = std::panic::catch_unwind(move || {
        let run = open(&path, "o/p/panic", quiet());
        run.metrics("m").unwrap().log(&point! {"x" => 1}).unwrap();
        panic!("training crashed");
    });
    assert!(r.is_err());
    let exp = read::document(root.path(), "o/p/panic", "experiment.json")
        .unwrap()
        .unwrap();
    assert_eq!(exp["status"], "FAILED");
    assert_eq!(
        read::metrics(root.path(), "o/p/panic", Some("m"))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn several_runs_at_once_from_the_same_threads() {
    let root = tempfile::tempdir().unwrap();
    let a = open(root.path(), "o/p/a", quiet());
    let b = open(root.path(), "o/p/b", quiet());
    std::thread::scope(|s| {
        for t in 0..3i64 {
            let (ma, mb) = (a.metrics("x").unwrap(), b.metrics("x").unwrap());
            s.spawn(move || {
                for i in 0..10_000i64 {
                    ma.log(&point! {"t" => t, "i" => i}).unwrap();
                    mb.log(&point! {"t" => t, "i" => -i}).unwrap();
                }
            });
        }
    });
    a.flush().unwrap();
    let rb = b.complete().unwrap();
    let ra = a.complete().unwrap();
    assert_eq!((ra.stored.metrics, rb.stored.metrics), (30_000, 30_000));
    let la = read::metrics(root.path(), "o/p/a", Some("x")).unwrap();
    let lb = read::metrics(root.path(), "o/p/b", Some("x")).unwrap();
    assert!(la.iter().all(|l| int(l, "i") >= 0));
    assert!(lb.iter().all(|l| int(l, "i") <= 0));
    assert_eq!((la.len(), lb.len()), (30_000, 30_000));
}

/// The hot path caches this thread's last ring; switching runs, closing the
/// cached one and opening another on the same thread must keep every point in
/// its own run, in order, and refuse only the closed run's.
#[test]
fn switching_runs_on_one_thread_keeps_every_point_in_its_run() {
    let root = tempfile::tempdir().unwrap();
    let a = open(root.path(), "o/p/sw-a", quiet());
    let b = open(root.path(), "o/p/sw-b", quiet());
    let (ma, mb) = (a.metrics("x").unwrap(), b.metrics("x").unwrap());
    for i in 0..1_000i64 {
        ma.log(&point! {"i" => i}).unwrap();
        if i % 3 == 0 {
            mb.log(&point! {"i" => i}).unwrap();
        }
    }
    // `b`'s ring is this thread's cached one now; close it.
    mb.log(&point! {"i" => 1_000}).unwrap();
    assert_eq!(b.complete().unwrap().stored.metrics, 335);
    assert!(matches!(
        mb.log(&point! {"i" => 1_001}),
        Err(ml_dash::Error::Closed)
    ));
    let c = open(root.path(), "o/p/sw-c", quiet());
    let mc = c.metrics("x").unwrap();
    for i in 1_000..2_000i64 {
        mc.log(&point! {"i" => i}).unwrap();
        ma.log(&point! {"i" => i}).unwrap();
    }
    assert_eq!(c.complete().unwrap().stored.metrics, 1_000);
    assert_eq!(a.complete().unwrap().stored.metrics, 2_000);
    for (name, want) in [("sw-a", 0..2_000), ("sw-c", 1_000..2_000)] {
        let got: Vec<i64> = read::metrics(root.path(), &format!("o/p/{name}"), Some("x"))
            .unwrap()
            .iter()
            .map(|l| int(l, "i"))
            .collect();
        assert_eq!(got, want.collect::<Vec<_>>(), "{name}");
    }
    let got_b: Vec<i64> = read::metrics(root.path(), "o/p/sw-b", Some("x"))
        .unwrap()
        .iter()
        .map(|l| int(l, "i"))
        .collect();
    let want_b: Vec<i64> = (0..1_000).step_by(3).chain([1_000]).collect();
    assert_eq!(got_b, want_b);
}

#[test]
fn reopening_appends() {
    let root = tempfile::tempdir().unwrap();
    for round in 0..3i64 {
        let run = Experiment::new("o/p/again")
            .dash_root(root.path())
            .readme(format!("round {round}"))
            .buffer_config(quiet())
            .run()
            .unwrap();
        let m = run.metrics("train").unwrap();
        for i in 0..10i64 {
            m.log(&point! {"round" => round, "i" => i}).unwrap();
        }
        run.log(&format!("round {round}")).unwrap();
        run.params()
            .set(serde_json::json!({"round": round, "first": round == 0}))
            .unwrap();
        run.complete().unwrap();
    }
    let lines = read::metrics(root.path(), "o/p/again", Some("train")).unwrap();
    assert_eq!(lines.len(), 30);
    for (k, l) in lines.iter().enumerate() {
        assert_eq!(l["index"], k as u64);
        assert_eq!(int(l, "round"), k as i64 / 10);
    }
    let logs = read::logs(root.path(), "o/p/again").unwrap();
    let seq: Vec<_> = logs
        .iter()
        .map(|l| l["sequenceNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, [0, 1, 2]);
    let p = read::document(root.path(), "o/p/again", "parameters.json")
        .unwrap()
        .unwrap();
    assert_eq!(p["version"], 3);
    assert_eq!(p["data"]["round"], 2);
    assert_eq!(p["data"]["first"], false);
    let e = read::document(root.path(), "o/p/again", "experiment.json")
        .unwrap()
        .unwrap();
    assert_eq!(e["description"], "round 2");
    assert!(e["updated_at"].is_string());
    let meta = read::document(root.path(), "o/p/again", "metrics/train/metadata.json")
        .unwrap()
        .unwrap();
    assert_eq!(meta["nextIndex"], 30);
}

#[test]
fn lossy_policy_counts_every_drop_exactly() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = quiet();
    cfg.ring_capacity = 1024;
    cfg.memory_budget = 4096;
    cfg.max_record_bytes = 1024;
    cfg.backpressure = Backpressure::DropNewest;
    let run = open(root.path(), "o/p/lossy", cfg);
    let n = 200_000u64;
    std::thread::scope(|s| {
        for t in 0..2i64 {
            let m = run.metrics("m").unwrap();
            s.spawn(move || {
                for i in 0..n {
                    m.log(&point! {"t" => t, "i" => i}).unwrap();
                }
            });
        }
    });
    let report = run.complete().unwrap();
    let stored = read::metrics(root.path(), "o/p/lossy", Some("m"))
        .unwrap()
        .len() as u64;
    assert_eq!(stored, report.stored.metrics);
    assert_eq!(stored + report.dropped, 2 * n, "logged = stored + dropped");
}

#[test]
fn blocking_policy_under_a_tiny_budget_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = quiet();
    cfg.ring_capacity = 1024;
    cfg.memory_budget = 4096;
    cfg.max_record_bytes = 1024;
    let run = open(root.path(), "o/p/block", cfg);
    std::thread::scope(|s| {
        for t in 0..2i64 {
            let m = run.metrics("m").unwrap();
            s.spawn(move || {
                for i in 0..100_000i64 {
                    m.log(&point! {"t" => t, "i" => i}).unwrap();
                }
            });
        }
    });
    let report = run.complete().unwrap();
    assert_eq!((report.stored.metrics, report.dropped), (200_000, 0));
}

#[test]
fn unbuffered_mode_writes_before_returning() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = quiet();
    cfg.buffer_enabled = false;
    let run = open(root.path(), "o/p/sync", cfg);
    let m = run.metrics("m").unwrap();
    for i in 0..20i64 {
        m.log(&point! {"i" => i}).unwrap();
        assert_eq!(
            read::metrics(root.path(), "o/p/sync", Some("m"))
                .unwrap()
                .len() as i64,
            i + 1
        );
    }
    run.complete().unwrap();
}

#[test]
fn a_thread_that_exits_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/exit", quiet());
    for t in 0..20i64 {
        let m = run.metrics("m").unwrap();
        std::thread::spawn(move || m.log(&point! {"t" => t}).unwrap())
            .join()
            .unwrap();
    }
    run.flush().unwrap();
    assert_eq!(
        read::metrics(root.path(), "o/p/exit", Some("m"))
            .unwrap()
            .len(),
        20
    );
    run.complete().unwrap();
}

#[test]
fn tracks_merge_equal_timestamps_and_auto_timestamps_increase() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/tracks", quiet());
    let pose = run.tracks("robot/pose").unwrap();
    pose.append_at(1.0, &point! {"x" => 1, "y" => 2}).unwrap();
    pose.append_at(1.0, &point! {"y" => 3, "z" => 4}).unwrap();
    pose.append_at(0.5, &point! {"q" => &[0.1, 0.2]}).unwrap();
    let auto = run.tracks("auto").unwrap();
    for i in 0..100i64 {
        auto.append(&point! {"i" => i}).unwrap();
    }
    run.complete().unwrap();
    let rows = read::tracks(root.path(), "o/p/tracks", "robot/pose").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["timestamp"], 0.5);
    assert_eq!(rows[0]["q"], serde_json::json!([0.1, 0.2]));
    assert_eq!(
        rows[1],
        serde_json::json!({"timestamp": 1.0, "x": 1, "y": 3, "z": 4})
    );
    let meta = read::document(root.path(), "o/p/tracks", "tracks/robot_pose/metadata.json")
        .unwrap()
        .unwrap();
    assert_eq!(meta["topic"], "robot/pose");
    assert_eq!(meta["columns"], serde_json::json!(["q", "x", "y", "z"]));
    assert_eq!(meta["totalEntries"], 2);
    assert_eq!(meta["firstTimestamp"], 0.5);
    assert_eq!(meta["lastTimestamp"], 1.0);
    let ts: Vec<f64> = read::tracks(root.path(), "o/p/tracks", "auto")
        .unwrap()
        .iter()
        .map(|r| r["timestamp"].as_f64().unwrap())
        .collect();
    assert_eq!(ts.len(), 100);
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
}

#[test]
fn flushes_racing_close_neither_hang_nor_lose() {
    for _ in 0..50 {
        let root = tempfile::tempdir().unwrap();
        let run = open(root.path(), "o/p/race", quiet());
        let m = run.metrics("m").unwrap();
        let logger = run.logger();
        let go = std::sync::Barrier::new(4);
        let logged = std::thread::scope(|s| {
            let mut hs = Vec::new();
            for t in 0..3i64 {
                let (m, logger, go) = (m.clone(), logger.clone(), &go);
                hs.push(s.spawn(move || {
                    go.wait();
                    let mut ok = 0u64;
                    for i in 0..200i64 {
                        match m.log(&point! {"t" => t, "i" => i}) {
                            Ok(()) => ok += 1,
                            Err(ml_dash::Error::Closed) => {}
                            Err(e) => panic!("{e}"),
                        }
                        if i % 20 == 0 {
                            match logger.flush() {
                                Ok(()) | Err(ml_dash::Error::Closed) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    ok
                }));
            }
            go.wait();
            run.complete().unwrap();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        assert_eq!(
            read::metrics(root.path(), "o/p/race", Some("m"))
                .unwrap()
                .len() as u64,
            logged
        );
    }
}

#[test]
fn logs_racing_close_are_stored_or_refused_never_lost() {
    for _ in 0..30 {
        let root = tempfile::tempdir().unwrap();
        let run = open(root.path(), "o/p/closerace", quiet());
        let m = run.metrics("m").unwrap();
        let go = std::sync::Barrier::new(3);
        let (accepted, _) = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2i64)
                .map(|t| {
                    let (m, go) = (m.clone(), &go);
                    s.spawn(move || {
                        go.wait();
                        let mut ok = 0u64;
                        for i in 0..100_000i64 {
                            match m.log(&point! {"t" => t, "i" => i}) {
                                Ok(()) => ok += 1,
                                Err(ml_dash::Error::Closed) => break,
                                Err(e) => panic!("{e}"),
                            }
                        }
                        ok
                    })
                })
                .collect();
            go.wait();
            let report = run.complete().unwrap();
            (
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>(),
                report,
            )
        });
        let stored = read::metrics(root.path(), "o/p/closerace", Some("m"))
            .unwrap()
            .len() as u64;
        assert_eq!(stored, accepted, "every accepted point is stored");
    }
}

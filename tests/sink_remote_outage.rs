//! R4 (CI variant): the server is down while two threads log 1 M points each
//! at full speed through the public API (the outage is bounded by points, not
//! seconds: at ~5 M points/s a 30 s outage would spool gigabytes). The process
//! stays under its memory budget (rings are bounded; the backlog is on disk in
//! the spool), and everything arrives, once and in order per thread, after the
//! server returns. Its own test binary, so the peak resident size read from
//! /proc is this test's. The wall-time variant (30 s of refused connections
//! while logging at a paced rate) and the 10-minute documented run are in
//! `tests/sink_remote_stall.rs`.

mod support;

use std::time::Duration;

use ml_dash::{BufferConfig, Experiment, point};
use support::{TestServer, peak_rss_kib};

#[cfg(target_os = "linux")]
#[test]
fn an_outage_under_full_load_loses_nothing_and_stays_under_budget() {
    let server = TestServer::start();
    server.faults(|f| f.down = true);
    let root = tempfile::tempdir().unwrap();
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    cfg.memory_budget = 16 << 20;
    cfg.retry_base_delay = Duration::from_millis(50);
    cfg.retry_max_delay = Duration::from_millis(500);
    let run = Experiment::new("alice/proj/exp-outage")
        .dash_root(root.path())
        .dash_url(server.url())
        .token("test-token")
        .buffer_config(cfg)
        .run()
        .unwrap();
    let before = peak_rss_kib();
    let n = 1_000_000u64;
    let counts: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2i64)
            .map(|t| {
                let m = run.metrics("train").unwrap();
                s.spawn(move || {
                    for i in 0..n {
                        m.log(&point! {"t" => t, "i" => i}).unwrap();
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    run.flush().unwrap(); // durable in the spool while the server is still down
    let peak = peak_rss_kib();
    let total: u64 = counts.iter().sum();
    assert!(
        peak < before + 16 * 1024 + 96 * 1024,
        "peak RSS {peak} KiB (before {before} KiB) for {total} points"
    );
    let spool = root.path().join("alice/proj/exp-outage/.spool");
    assert!(
        server.state().points("exp-outage", "train").is_empty(),
        "the server was down"
    );
    server.faults(|f| f.down = false);
    run.complete().unwrap();
    // Whatever close's deadline left in the spool is sent by a replay.
    let mut opts = ml_dash::SyncOptions::default();
    opts.dash_url = Some(server.url());
    opts.token = Some("test-token".into());
    ml_dash::sync(&spool, &opts).unwrap();
    assert!(
        server.wait_for(
            Duration::from_secs(600),
            |st| st.points("exp-outage", "train").len() as u64 >= total
        ),
        "not everything arrived"
    );
    let st = server.state();
    let points = st.points("exp-outage", "train");
    assert_eq!(points.len() as u64, total, "each point exactly once");
    let mut next = [0u64; 2];
    for p in &points {
        let t = p["t"].as_u64().unwrap() as usize;
        assert_eq!(p["i"].as_u64().unwrap(), next[t], "order per thread");
        next[t] += 1;
    }
    assert_eq!(next.to_vec(), counts);
}

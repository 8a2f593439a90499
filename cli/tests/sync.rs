//! `ml-dash sync` as a process against the project's loopback test server
//! (`tests/support`): local runs sent whole and once (a second sync sends
//! nothing), under random faults, killed with SIGKILL in the middle and run
//! again (each point once), and `--follow` on a run still being written.

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ml_dash::point;
use support::{RandomFaults, TOKEN, TestServer};

fn sync_cmd(root: &std::path::Path, url: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ml-dash"));
    c.arg("--dash-root")
        .arg(root)
        .args([
            "sync",
            "--dash-url",
            url,
            "--token",
            TOKEN,
            "--retry-delay",
            "1",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .env_remove("ML_DASH_TOKEN");
    c
}

fn steps(server: &TestServer, name: &str, metric: &str) -> HashMap<u64, u32> {
    let mut m = HashMap::new();
    for p in server.state().points(name, metric) {
        *m.entry(p["step"].as_u64().unwrap()).or_insert(0) += 1;
    }
    m
}

fn assert_each_once(got: &HashMap<u64, u32>, n: u64) {
    assert_eq!(got.len() as u64, n, "distinct steps");
    assert!(got.values().all(|&c| c == 1), "a step sent twice");
}

fn data_requests(server: &TestServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.applied() && r.path.starts_with("/api/experiments/"))
        .count()
}

#[test]
fn local_runs_are_sent_whole_and_a_second_sync_sends_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    write_train_run(&root, "alice/mnist/run-1", 1.0);
    write_train_run(&root, "alice/mnist/run-2", 2.0);
    let server = TestServer::start();
    let out = sync_cmd(&root, &server.url(), &["--jobs", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("synced alice/mnist/run-1: sent") && err.contains("synced alice/mnist/run-2"),
        "{err}"
    );
    for name in ["run-1", "run-2"] {
        assert_each_once(&steps(&server, name, "train"), 50);
        assert_each_once(&steps(&server, name, "eval"), 5);
    }
    {
        // Per experiment (ids as the server gave them): logs, tracks,
        // params, the status (per node), one file each.
        let st = server.state();
        let logs: Vec<usize> = st.logs.values().map(Vec::len).collect();
        assert_eq!(logs, [2, 2]);
        let rows: Vec<usize> = st.tracks.values().map(Vec::len).collect();
        assert_eq!(rows, [5, 5]);
        assert!(st.params.values().all(|p| p["model.lr"] == 0.001) && st.params.len() == 2);
        let statuses: Vec<&Vec<String>> = st.statuses.values().collect();
        assert_eq!(statuses.len(), 2);
        assert!(statuses.iter().all(|s| s.as_slice() == ["COMPLETED"]));
        assert_eq!(st.files.len(), 2);
    }
    let before = data_requests(&server);
    // Again: nothing new is sent.
    let out = sync_cmd(&root, &server.url(), &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        data_requests(&server),
        before,
        "the second sync sent data again"
    );
    assert_each_once(&steps(&server, "run-1", "train"), 50);
    // The sync spool verifies clean.
    assert_eq!(ml_dash(&root, &["verify"]).status.code(), Some(0));
}

#[test]
fn sync_under_random_faults_sends_each_point_once() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    let run = open(&root, "alice/mnist/faulty");
    let m = run.metrics("train").unwrap();
    for step in 0..5000i64 {
        m.log(&point! {"loss" => 1.0 / (1 + step) as f64, "step" => step})
            .unwrap();
    }
    run.complete().unwrap();
    let server = TestServer::start();
    server.faults(|f| {
        f.random = Some(RandomFaults {
            p_5xx: 0.3,
            p_reset: 0.05,
            seed: 7,
            ..RandomFaults::default()
        })
    });
    let out = sync_cmd(&root, &server.url(), &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_each_once(&steps(&server, "faulty", "train"), 5000);
    let applied = data_requests(&server) as u64;
    assert!(server.state().request_count > applied, "no fault hit");
}

#[test]
fn a_sync_killed_in_the_middle_resumes_and_sends_each_point_once() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    let run = open(&root, "alice/mnist/big");
    let m = run.metrics("train").unwrap();
    let n = 40_000u64;
    for step in 0..n {
        m.log(&point! {"loss" => 1.0 / (1 + step) as f64, "step" => step})
            .unwrap();
    }
    run.complete().unwrap();
    let server = TestServer::start();
    let mut child = sync_cmd(&root, &server.url(), &["--jobs", "1"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once a few batches are in, the server stops answering: the sync
    // cannot finish; then it is killed.
    let metric_batches = |st: &support::State| {
        st.requests
            .iter()
            .filter(|r| r.applied() && r.path.contains("/metrics/"))
            .count()
    };
    assert!(server.wait_for(Duration::from_secs(60), |st| metric_batches(st) >= 5));
    server.faults(|f| f.black_hole = true);
    let sent_before = metric_batches(&server.state());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        sent_before < n as usize / 1000,
        "the sync ended before the kill"
    );
    server.faults(|f| f.black_hole = false);
    server.drop_connections();

    let out = sync_cmd(&root, &server.url(), &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_each_once(&steps(&server, "big", "train"), n);
    let st = server.state();
    assert_eq!(
        st.statuses.values().collect::<Vec<_>>(),
        [&vec!["COMPLETED".to_string()]]
    );
}

#[test]
fn follow_sends_a_live_run_until_it_ends() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    let run = open(&root, "alice/mnist/live");
    let m = run.metrics("train").unwrap();
    for step in 0..100i64 {
        m.log(&point! {"loss" => 1.0, "step" => step}).unwrap();
    }
    run.flush().unwrap();
    let server = TestServer::start();
    let mut child = sync_cmd(&root, &server.url(), &["--follow", "alice/mnist/live"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(server.wait_for(
        Duration::from_secs(60),
        |st| st.point_count("live", "train") == 100
    ));
    for step in 100..200i64 {
        m.log(&point! {"loss" => 0.5, "step" => step}).unwrap();
    }
    run.complete().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_each_once(&steps(&server, "live", "train"), 200);
    let st = server.state();
    assert_eq!(
        st.statuses.values().collect::<Vec<_>>(),
        [&vec!["COMPLETED".to_string()]]
    );
}

/// Throughput: a 1 M-point local run synced by `ml-dash sync` against the
/// library's own remote sink sending the same points to the same kind of
/// server. A measurement, not a check:
/// `cargo test --release -p ml-dash-cli --test sync -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_against_the_library_remote_sink() {
    use std::time::Instant;
    let n: u64 = std::env::var("ML_DASH_BENCH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    let run = open(&root, "alice/bench/local");
    let m = run.metrics("train").unwrap();
    for step in 0..n {
        m.log(&point! {"loss" => 1.0 / (1 + step) as f64, "step" => step})
            .unwrap();
    }
    run.complete().unwrap();

    // The library's remote sink: the same points, batches of 1000, until drained.
    let server = TestServer::start();
    let spool = t.path().join("spool");
    let mut sink = ml_dash::__remote_testing::RemoteSink::open(support::config(
        &server.url(),
        "alice/bench/sink",
        &spool,
    ))
    .unwrap();
    let points: Vec<Vec<u8>> = (0..n)
        .map(|s| {
            format!(
                "{{\"loss\":{},\"step\":{s},\"_ts\":1796303099.5}}",
                1.0 / (1 + s) as f64
            )
            .into_bytes()
        })
        .collect();
    let t0 = Instant::now();
    for chunk in points.chunks(1000) {
        sink.append_metrics(Some("train"), chunk.iter().map(Vec::as_slice))
            .unwrap();
    }
    sink.sync().unwrap();
    assert!(sink.wait_sent(Duration::from_secs(600)));
    let sink_s = t0.elapsed().as_secs_f64();
    drop(sink.close(Duration::from_secs(5)));
    assert_eq!(server.state().point_count("sink", "train"), n);

    let server = TestServer::start();
    let t0 = Instant::now();
    let out = sync_cmd(&root, &server.url(), &[]).output().unwrap();
    let sync_s = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.state().point_count("local", "train"), n);
    println!(
        "| {n} points | library remote sink {:.0} points/s ({sink_s:.2} s) | ml-dash sync {:.0} points/s ({sync_s:.2} s) | ratio {:.0} % |",
        n as f64 / sink_s,
        n as f64 / sync_s,
        100.0 * sink_s / sync_s
    );
}

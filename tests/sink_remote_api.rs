//! The remote sink through the public API: `Experiment::dash_url` sends a run
//! to the (loopback) test server; with `dash_root` too it is hybrid.

mod support;

use std::time::Duration;

use ml_dash::{BufferConfig, Experiment, Level, point, read};
use serde_json::json;
use support::TestServer;

fn cfg() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = true;
    c
}

#[test]
fn remote_only_run_arrives_whole_with_its_status() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    std::env::set_current_dir(work.path()).unwrap(); // the default `.dash` work area
    let run = Experiment::new("alice/proj/f1/exp-remote")
        .dash_url(server.url())
        .token("test-token")
        .buffer_config(cfg())
        .run()
        .unwrap();
    run.params().set(json!({"model": {"lr": 0.001}})).unwrap();
    run.log_with(Level::Warn, "hello", &point! {"epoch" => 1})
        .unwrap();
    let train = run.metrics("train").unwrap();
    for i in 0..2500i64 {
        train
            .log(&point! {"i" => i, "loss" => 1.0 / (i + 1) as f64})
            .unwrap();
    }
    run.tracks("robot/pose")
        .unwrap()
        .append_at(1.0, &point! {"q" => &[0.1, 0.2]})
        .unwrap();
    run.complete().unwrap();
    assert!(
        !work
            .path()
            .join(".dash/alice/proj/f1/exp-remote/experiment.json")
            .exists(),
        "remote only: no local store"
    );
    let st = server.state();
    let points = st.points("exp-remote", "train");
    assert_eq!(points.len(), 2500);
    let is: Vec<i64> = points.iter().map(|p| p["i"].as_i64().unwrap()).collect();
    assert_eq!(is, (0..2500).collect::<Vec<_>>(), "in order, once each");
    assert!(points[0]["_ts"].is_f64());
    let exp = st.experiment("exp-remote").unwrap();
    assert_eq!(st.logs[&exp][0]["level"], "warn");
    assert_eq!(st.logs[&exp][0]["metadata"]["epoch"], 1);
    assert_eq!(st.params[&exp]["model.lr"], 0.001);
    assert_eq!(
        st.tracks[&(exp, "robot/pose".to_string())][0]["q"],
        json!([0.1, 0.2])
    );
    let statuses: Vec<&String> = st.statuses.values().flatten().collect();
    assert_eq!(statuses, ["COMPLETED"]);
    assert!(
        st.requests
            .iter()
            .filter(|r| r.path.contains("/api/experiments/"))
            .all(|r| r.key().is_some()),
        "every data request carries an idempotency key"
    );
}

/// A hybrid run (local store under `root` and the test server).
fn hybrid(server: &TestServer, root: &std::path::Path, prefix: &str) -> ml_dash::Run {
    Experiment::new(prefix)
        .dash_root(root)
        .dash_url(server.url())
        .token("test-token")
        .buffer_config(cfg())
        .run()
        .unwrap()
}

#[test]
fn hybrid_run_writes_both() {
    let server = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let run = hybrid(&server, root.path(), "alice/proj/exp-hybrid");
    let m = run.metrics("m").unwrap();
    for i in 0..100i64 {
        m.log(&point! {"i" => i}).unwrap();
    }
    run.flush().unwrap();
    assert_eq!(
        read::metrics(root.path(), "alice/proj/exp-hybrid", Some("m"))
            .unwrap()
            .len(),
        100
    );
    run.complete().unwrap();
    assert!(server.wait_for(
        Duration::from_secs(10),
        |st| st.points("exp-hybrid", "m").len() == 100
    ));
    let exp = read::document(root.path(), "alice/proj/exp-hybrid", "experiment.json")
        .unwrap()
        .unwrap();
    assert_eq!(exp["status"], "COMPLETED");
}

#[test]
fn files_of_a_remote_run_reach_the_server() {
    let server = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let run = hybrid(&server, root.path(), "alice/proj/exp-files");
    run.files("configs")
        .save_json("config.json", json!({"lr": 0.001}))
        .unwrap();
    let user = tempfile::tempdir().unwrap();
    let src = user.path().join("w.bin");
    std::fs::write(&src, vec![7u8; 100_000]).unwrap();
    run.files("uploads").upload(&src).unwrap();
    run.complete().unwrap();
    assert!(server.wait_for(Duration::from_secs(10), |st| st.files.len() == 2));
    let st = server.state();
    let cfg_file = st.files.iter().find(|f| f.name == "config.json").unwrap();
    let local = read::document(
        root.path(),
        "alice/proj/exp-files",
        "files/.files_metadata.json",
    )
    .unwrap()
    .unwrap();
    let entry = local["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == "config.json")
        .unwrap()
        .clone();
    assert_eq!(cfg_file.checksum, entry["checksum"].as_str().unwrap());
    let up = st.files.iter().find(|f| f.name == "w.bin").unwrap();
    assert_eq!(up.content, vec![7u8; 100_000]);
    assert_eq!(
        std::fs::read(&src).unwrap(),
        vec![7u8; 100_000],
        "user file untouched"
    );
}

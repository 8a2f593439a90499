//! The remote sink through the public API: `Experiment::dash_url` sends a run
//! to the (loopback) test server, hybrid with the local store in `dash_root`.
//! Remote-only runs (whose work area is in the cache folder) are tested in a
//! child process in `tests/sdk_params_mode.rs`.

mod support;

use std::time::Duration;

use ml_dash::{BufferConfig, Experiment, point, read};
use serde_json::json;
use support::TestServer;

fn cfg() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = true;
    c
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
    assert!(matches!(
        run.files("uploads").delete_matching("*"),
        Err(ml_dash::Error::Unsupported(_))
    ));
    assert!(run.files("uploads").exists("w.bin").unwrap());
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

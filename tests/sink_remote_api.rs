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

/// `metrics(name, description=, tags=, metadata=)`: the first call of a
/// stream sets them, in `metadata.json` as the SDK 0.11 writes it (for the
/// same calls it wrote the document compared here) and in every batch sent
/// to the server, where the SDK leaves out the falsy ones.
#[test]
fn metric_info_reaches_metadata_json_and_the_server() {
    use ml_dash::MetricInfo;
    let server = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let prefix = "alice/proj/exp-info";
    let run = hybrid(&server, root.path(), prefix);
    let info = MetricInfo::default()
        .description("training loss")
        .tags(["train", "loss"])
        .metadata(json!({"unit": "nats"}))
        .unwrap();
    run.metrics_with("train", info)
        .unwrap()
        .log(&point! {"loss" => 0.5})
        .unwrap();
    // A later call keeps the first info, as the SDK's cached builder does.
    let other = MetricInfo::default().description("other").tags(["x"]);
    run.metrics_with("train", other)
        .unwrap()
        .log(&point! {"loss" => 0.25})
        .unwrap();
    // Falsy values: stored locally, not sent.
    let empty = MetricInfo::default()
        .description("")
        .metadata(json!({}))
        .unwrap();
    run.metrics_with("eval", empty)
        .unwrap()
        .log(&point! {"acc" => 0.9})
        .unwrap();
    run.complete().unwrap();

    let doc = |name| {
        read::document(
            root.path(),
            prefix,
            &format!("metrics/{name}/metadata.json"),
        )
        .unwrap()
        .unwrap()
    };
    // The SDK: {"metricId": "local-metric-train", "name": "train",
    // "description": "training loss", "tags": ["train", "loss"],
    // "metadata": {"unit": "nats"}, "totalDataPoints": 2, "nextIndex": 2, ...}
    let train = doc("train");
    assert_eq!(train["description"], "training loss");
    assert_eq!(train["tags"], json!(["train", "loss"]));
    assert_eq!(train["metadata"], json!({"unit": "nats"}));
    assert_eq!(train["totalDataPoints"], 2);
    let eval = doc("eval");
    assert_eq!(
        (&eval["description"], &eval["tags"], &eval["metadata"]),
        (&json!(""), &json!([]), &json!({}))
    );

    assert!(server.wait_for(Duration::from_secs(10), |st| {
        st.points("exp-info", "train").len() == 2 && st.points("exp-info", "eval").len() == 1
    }));
    let bodies = |name: &str| -> Vec<serde_json::Value> {
        let path = format!("/metrics/{name}/append-batch");
        (server.requests().iter())
            .filter(|r| r.path.ends_with(&path) && r.applied())
            .map(|r| r.json())
            .collect()
    };
    let train = bodies("train");
    assert!(!train.is_empty());
    for b in &train {
        assert_eq!(b["description"], "training loss", "{b}");
        assert_eq!(b["tags"], json!(["train", "loss"]));
        assert_eq!(b["metadata"], json!({"unit": "nats"}));
    }
    for b in bodies("eval") {
        let keys: Vec<_> = b.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["dataPoints"], "{b}");
    }
}

/// `BufferConfig::max_retries` bounds close against a server that is down:
/// each request gets that many retries once close began, then close stops
/// sending and the rest stays in the spool (nothing is dropped: a sync later
/// sends it all).
#[test]
fn close_gives_up_after_max_retries_and_keeps_the_rest_spooled() {
    let server = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let prefix = "alice/proj/exp-down";
    let mut c = cfg();
    c.max_retries = 2;
    c.retry_base_delay = Duration::from_millis(1);
    c.retry_max_delay = Duration::from_millis(50);
    let run = Experiment::new(prefix)
        .dash_root(root.path())
        .dash_url(server.url())
        .token("test-token")
        .buffer_config(c)
        .run()
        .unwrap();
    server.faults(|f| f.down = true);
    let m = run.metrics("m").unwrap();
    for i in 0..100i64 {
        m.log(&point! {"i" => i}).unwrap();
    }
    run.flush().unwrap();
    let before = server.requests().len();
    let report = run.complete();
    let during_close = server.requests().len() - before;
    // Without the limit close would retry every 50 ms for its whole
    // close_timeout (30 s: ~600 requests). A few requests were in flight.
    assert!(during_close <= 20, "{during_close} requests during close");
    assert!(report.is_ok(), "{report:?}");
    server.faults(|f| f.down = false);
    let spool = root.path().join(prefix).join(".spool");
    let sent = ml_dash::sync(&spool, &support::sync_options(&server.url())).unwrap();
    assert!(sent.is_drained(), "{sent:?}");
    assert_eq!(server.state().points("exp-down", "m").len(), 100);
}

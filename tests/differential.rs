//! The differential test (issue 11 item 9): one scenario through the Python
//! SDK 0.11 (`tests/differential/scenario.py` under `ml_dash`, run by
//! `run.py`) and through this crate (`examples/sdk_scenario.rs`, the same
//! calls, run in this process), each against its own loopback test server
//! (`tests/support`) and into its own store; `tests/differential/compare.py`
//! compares the requests and the stores after normalising ids and times, and
//! allows only the differences in its table (README.md lists the same).
//!
//! - `hybrid_run_sends_and_stores_what_the_sdk_does`: `dash_url` + `dash_root`;
//! - `local_run_stores_what_the_sdk_does`: `dash_root` alone;
//! - each then changes one thing on our side and checks the comparison finds it.
//!
//! Python as for `tests/interop.rs` (`tests/sdk_python`): skipped with
//! `ML_DASH_INTEROP_OPTIONAL=1` when there is none. See `tests/differential/README.md`.

mod sdk_python;
mod support;

#[allow(dead_code)] // its `main`
#[path = "../examples/sdk_scenario.rs"]
mod sdk_scenario;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ml_dash::BufferConfig;
use sdk_python::{python, python_command, tail};
use support::{TOKEN, TestServer};
use tempfile::TempDir;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/differential")
        .join(name)
}

/// The SDK's run into `<dir>/store` (`run.py`), against `url` when given.
fn sdk_side(py: &Path, url: Option<&str>) -> TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut c = python_command(py);
    c.arg(script("run.py"))
        .arg(out.path())
        .arg(py)
        .arg("ml_dash");
    match url {
        Some(url) => c.args(["--url", url]),
        None => c.arg("--local"),
    };
    let o = c.output().expect("run python");
    assert!(o.status.success(), "the SDK's run failed:\n{}", tail(&o));
    out
}

/// Our run into `<dir>/store`, with the settings `run.py` gives the SDK.
fn our_side(url: Option<&str>) -> TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = BufferConfig::from_lookup(|_| None).expect("default settings");
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.quiet = true;
    sdk_scenario::scenario(&out.path().join("store"), url, |e| {
        e.token(TOKEN).buffer_config(cfg)
    })
    .expect("the scenario runs");
    out
}

/// What `server` received, as `<dir>/requests.json`.
fn save_requests(dir: &Path, server: &TestServer) -> PathBuf {
    let doc = support::requests_json(&server.requests());
    let path = dir.join("requests.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

/// `compare.py` on the two sides: its exit status and output.
fn compare(py: &Path, sdk: &[PathBuf; 2], ours: &[PathBuf; 2]) -> (i32, String) {
    let o = python_command(py)
        .arg(script("compare.py"))
        .args(sdk)
        .args(ours)
        .output()
        .expect("run compare.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

#[test]
fn hybrid_run_sends_and_stores_what_the_sdk_does() {
    let Some(py) = python() else { return };
    let (theirs, ours) = (TestServer::start(), TestServer::start());
    let sdk = sdk_side(py, Some(&theirs.url()));
    let us = our_side(Some(&ours.url()));
    let sdk_paths = [save_requests(sdk.path(), &theirs), sdk.path().join("store")];
    let our_paths = [save_requests(us.path(), &ours), us.path().join("store")];
    let (code, text) = compare(py, &sdk_paths, &our_paths);
    assert_eq!(code, 0, "the runs differ:\n{text}");
    println!("{text}");

    // The comparison sees the requests: drop our last `train` batch.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&our_paths[0]).unwrap()).unwrap();
    let reqs = doc["requests"].as_array_mut().unwrap();
    let last = reqs
        .iter()
        .rposition(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .ends_with("/metrics/train/append-batch")
        })
        .expect("a train batch");
    reqs.remove(last);
    std::fs::write(&our_paths[0], serde_json::to_vec(&doc).unwrap()).unwrap();
    let (code, text) = compare(py, &sdk_paths, &our_paths);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "/metrics/train/append-batch[0].body.dataPoints: 1206 items in sdk, 1205 in other"
        ),
        "{text}"
    );
}

#[test]
fn local_run_stores_what_the_sdk_does() {
    let Some(py) = python() else { return };
    let sdk = sdk_side(py, None);
    let us = our_side(None);
    let none = PathBuf::from("-");
    let sdk_paths = [none.clone(), sdk.path().join("store")];
    let our_paths = [none, us.path().join("store")];
    let (code, text) = compare(py, &sdk_paths, &our_paths);
    assert_eq!(code, 0, "the stores differ:\n{text}");
    println!("{text}");

    // The comparison sees the store: change one stored value of ours.
    let data = our_paths[1]
        .join(sdk_scenario::PREFIX)
        .join("metrics/train/data.jsonl");
    let text = std::fs::read_to_string(&data).unwrap();
    assert!(text.contains(r#""loss":0.9,"#), "{text}");
    std::fs::write(&data, text.replacen(r#""loss":0.9,"#, r#""loss":0.8,"#, 1)).unwrap();
    let (code, text) = compare(py, &sdk_paths, &our_paths);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("metrics/train/data.jsonl[0].data.loss: sdk 0.9, other 0.8"),
        "{text}"
    );
}

//! Parity with the Python SDK 0.11 (issue 11, items 1 and 2):
//!
//! - each `params.set` call is its own version: one `POST .../parameters`
//!   with that call's values alone, ahead of the data still buffered (the SDK
//!   sends it at call time), and one rewrite of `parameters.json` as the SDK's
//!   storage writes it;
//! - `dash_url` alone is hybrid (the local store in `./.dash`), as in the
//!   SDK; `remote_only()` is the SDK's `dash_root=None` and leaves nothing in
//!   the working directory: its work area is under the cache folder, where the
//!   next run finds a backlog.
//!
//! The tests that depend on the working directory or on `HOME` /
//! `XDG_CACHE_HOME` run their scenario in a child process (this test binary
//! again, one test), since changing either in the test harness would race
//! with the other tests. The SDK comparison is skipped (with a note) when no
//! Python with `ml_dash` is found: set `ML_DASH_PYTHON`, or it tries
//! `target/interop-venv/bin/python`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ml_dash::{BufferConfig, Error, Experiment, Level, point, read, remote_work_dir};
use serde_json::{Value, json};
use support::{Request, TOKEN, TestServer};

fn cfg() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = true;
    c.flush_interval = Duration::from_secs(3600); // only flush() and close write
    c.retry_base_delay = Duration::from_millis(20);
    c.retry_max_delay = Duration::from_millis(200);
    c
}

// ---------------------------------------------------------------------------
// Item 1: parameters, one version per call
// ---------------------------------------------------------------------------

const PARAMS_PREFIX: &str = "alice/proj/exp-params";

/// The calls of the parameter scenario, as the SDK script makes them.
const SDK_PARAMS: &str = r#"
import sys
from ml_dash import Experiment
with Experiment(prefix="alice/proj/exp-params", dash_url=sys.argv[1]).run as exp:
    exp.metrics("train").log(loss=0.5, step=0)
    exp.params.set(model={"lr": 0.001, "layers": 3}, optimizer="adam")
    exp.metrics("train").log(loss=0.25, step=1)
    exp.params.set(epochs=3)
    exp.flush()
    exp.metrics("train").log(loss=0.125, step=2)
    exp.params.set(model={"lr": 0.0005})
"#;

/// The requests that carry the run's data (its creation left out), as
/// (method, path with ids as `<id>`, body with `_ts` as `"<ts>"`).
fn data_requests(reqs: &[Request]) -> Vec<(String, String, Value)> {
    reqs.iter()
        .filter(|r| r.path.starts_with("/api/experiments/") || r.path.starts_with("/api/nodes/"))
        .map(|r| {
            let path: Vec<&str> = (r.path.split('/'))
                .map(
                    |s| match s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
                        true => "<id>",
                        false => s,
                    },
                )
                .collect();
            let mut body = r.json();
            if let Some(Value::Array(points)) = body.get_mut("dataPoints") {
                for p in points {
                    assert!(p["_ts"].is_f64(), "{p}");
                    p["_ts"] = json!("<ts>");
                }
            }
            (r.method.clone(), path.join("/"), body)
        })
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn each_params_set_is_its_own_version_in_call_order() {
    let server = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let run = Experiment::new(PARAMS_PREFIX)
        .dash_root(root.path())
        .dash_url(server.url())
        .token(TOKEN)
        .buffer_config(cfg())
        .run()
        .unwrap();
    let train = run.metrics("train").unwrap();
    let params = run.params();
    train.log(&point! {"loss" => 0.5, "step" => 0}).unwrap();
    params
        .set(json!({"model": {"lr": 0.001, "layers": 3}, "optimizer": "adam"}))
        .unwrap();
    train.log(&point! {"loss" => 0.25, "step" => 1}).unwrap();
    params.set(json!({"epochs": 3})).unwrap();
    assert!(
        server.wait_for(Duration::from_secs(10), |st| st
            .param_versions
            .values()
            .sum::<u64>()
            == 2),
        "both sets reach the server without a flush"
    );
    assert!(
        server.state().points("exp-params", "train").is_empty(),
        "ahead of the points still buffered"
    );
    run.flush().unwrap();
    let doc = read::document(root.path(), PARAMS_PREFIX, "parameters.json")
        .unwrap()
        .unwrap();
    assert_eq!(
        keys(&doc),
        ["version", "data", "updatedAt"],
        "the second write drops createdAt, as the SDK's does: {doc}"
    );
    assert_eq!(doc["version"], 2);
    train.log(&point! {"loss" => 0.125, "step" => 2}).unwrap();
    params.set(json!({"model": {"lr": 0.0005}})).unwrap();
    run.complete().unwrap();

    let ours = data_requests(&server.requests());
    let post = |path: &str, body: Value| ("POST".to_string(), path.to_string(), body);
    let p = "/api/experiments/<id>/parameters";
    let m = "/api/experiments/<id>/metrics/train/append-batch";
    let pt = |loss: f64, step: i64| json!({"loss": loss, "step": step, "_ts": "<ts>"});
    let want = vec![
        post(
            p,
            json!({"data": {"model.lr": 0.001, "model.layers": 3, "optimizer": "adam"}}),
        ),
        post(p, json!({"data": {"epochs": 3}})),
        post(m, json!({"dataPoints": [pt(0.5, 0), pt(0.25, 1)]})),
        post(p, json!({"data": {"model.lr": 0.0005}})),
        post(m, json!({"dataPoints": [pt(0.125, 2)]})),
        (
            "PATCH".to_string(),
            "/api/nodes/<id>".to_string(),
            json!({"status": "COMPLETED"}),
        ),
    ];
    assert_eq!(ours, want, "one request per set call, sent at call time");
    let st = server.state();
    let exp = st.experiment("exp-params").unwrap();
    assert_eq!(st.param_versions[&exp], 3, "the server keeps 3 versions");
    drop(st);

    let doc = read::document(root.path(), PARAMS_PREFIX, "parameters.json")
        .unwrap()
        .unwrap();
    assert_eq!(keys(&doc), ["version", "data", "updatedAt"], "{doc}");
    assert_eq!(doc["version"], 3);
    let data = json!({"model.lr": 0.0005, "model.layers": 3, "optimizer": "adam", "epochs": 3});
    assert_eq!(doc["data"], data);
    assert_eq!(
        keys(&doc["data"]),
        ["model.lr", "model.layers", "optimizer", "epochs"],
        "upsert in place, new keys last (Python's dict.update)"
    );

    // The SDK with the same calls, against its own server.
    let Some(py) = python() else {
        eprintln!("skipped the SDK comparison: no Python with ml_dash 0.11 (set ML_DASH_PYTHON)");
        return;
    };
    let sdk = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    run_sdk(&py, SDK_PARAMS, &sdk.url(), work.path());
    assert_eq!(data_requests(&sdk.requests()), want, "the SDK's requests");
    let sdk_doc = read::document(&work.path().join(".dash"), PARAMS_PREFIX, "parameters.json")
        .unwrap()
        .expect("the SDK's dash_url alone is hybrid: parameters.json in ./.dash");
    assert_eq!(keys(&sdk_doc), keys(&doc), "{sdk_doc}");
    assert_eq!(sdk_doc["version"], doc["version"]);
    assert_eq!(sdk_doc["data"], doc["data"]);
    assert_eq!(keys(&sdk_doc["data"]), keys(&doc["data"]));
}

/// The first version has `createdAt`; later versions do not, even after a
/// reopen (as the SDK's storage writes them).
#[test]
fn the_first_version_has_created_at_and_a_reopen_counts_on() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "o/p/params-local";
    let open = || {
        Experiment::new(prefix)
            .dash_root(root.path())
            .buffer_config(cfg())
            .run()
            .unwrap()
    };
    let run = open();
    run.params().set(json!({"a": 1})).unwrap();
    run.flush().unwrap();
    let doc = read::document(root.path(), prefix, "parameters.json")
        .unwrap()
        .unwrap();
    assert_eq!(
        keys(&doc),
        ["version", "data", "createdAt", "updatedAt"],
        "{doc}"
    );
    assert_eq!(
        (doc["version"].clone(), doc["data"].clone()),
        (json!(1), json!({"a": 1}))
    );
    run.complete().unwrap();
    let run = open();
    for i in 0..3 {
        run.params().set(json!({"b": i})).unwrap();
    }
    run.complete().unwrap();
    let doc = read::document(root.path(), prefix, "parameters.json")
        .unwrap()
        .unwrap();
    assert_eq!(keys(&doc), ["version", "data", "updatedAt"], "{doc}");
    assert_eq!(doc["version"], 4, "one version per call, across runs");
    assert_eq!(doc["data"], json!({"a": 1, "b": 2}));
}

// ---------------------------------------------------------------------------
// Item 2: `dash_url` alone is hybrid; `remote_only()` leaves nothing behind
// ---------------------------------------------------------------------------

/// Set in a child process: the test server's URL.
const CHILD_URL: &str = "ML_DASH_SDK_MODE_URL";
/// Set in a child process: which part of a two-part scenario to run.
const CHILD_PHASE: &str = "ML_DASH_SDK_MODE_PHASE";

/// The folders of a child run: its working directory, `HOME` and `XDG_CACHE_HOME`.
struct Place {
    work: tempfile::TempDir,
    home: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        let t = || tempfile::tempdir().unwrap();
        Place {
            work: t(),
            home: t(),
            cache: t(),
        }
    }

    /// Runs test `name` again in a child process there (its scenario runs
    /// when [`child_url`] says so), with `env` added; asserts it passed.
    fn run_child(&self, name: &str, url: &str, env: &[(&str, &str)]) -> String {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_URL, url)
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.cache.path())
            .envs(env.iter().copied())
            .current_dir(self.work.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the child failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        stderr
    }

    /// Every file and folder under the working directory.
    fn work_entries(&self) -> Vec<PathBuf> {
        walk(self.work.path())
    }
}

/// Inside a child process: the server's URL.
fn child_url() -> Option<String> {
    std::env::var(CHILD_URL).ok()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn dash_url_alone_is_hybrid_with_the_store_in_dot_dash() {
    let prefix = "alice/proj/exp-default-hybrid";
    if let Some(url) = child_url() {
        let run = Experiment::new(prefix)
            .dash_url(url)
            .token(TOKEN)
            .buffer_config(cfg())
            .run()
            .unwrap();
        assert_eq!(run.dir(), Path::new(".dash").join(prefix));
        run.params().set(json!({"lr": 0.1})).unwrap();
        let m = run.metrics("train").unwrap();
        for i in 0..10i64 {
            m.log(&point! {"i" => i}).unwrap();
        }
        run.complete().unwrap();
        return;
    }
    let server = TestServer::start();
    let place = Place::new();
    place.run_child(
        "dash_url_alone_is_hybrid_with_the_store_in_dot_dash",
        &server.url(),
        &[],
    );
    let root = place.work.path().join(".dash");
    let exp = read::document(&root, prefix, "experiment.json")
        .unwrap()
        .expect("a local copy in ./.dash");
    assert_eq!(exp["status"], "COMPLETED");
    assert_eq!(
        read::metrics(&root, prefix, Some("train")).unwrap().len(),
        10
    );
    let params = read::document(&root, prefix, "parameters.json")
        .unwrap()
        .unwrap();
    assert_eq!(params["data"], json!({"lr": 0.1}));
    assert!(
        root.join(prefix).join(".spool").is_dir(),
        "the spool is beside it"
    );
    assert!(
        walk(place.cache.path()).is_empty(),
        "a hybrid run keeps its work area in its store"
    );
    let st = server.state();
    assert_eq!(st.points("exp-default-hybrid", "train").len(), 10);
}

#[test]
fn remote_only_leaves_nothing_in_the_working_directory() {
    let prefix = "alice/proj/f1/exp-remote";
    if let Some(url) = child_url() {
        let run = Experiment::new(prefix)
            .dash_url(url)
            .remote_only()
            .token(TOKEN)
            .buffer_config(cfg())
            .run()
            .unwrap();
        let cache = PathBuf::from(std::env::var_os("XDG_CACHE_HOME").unwrap());
        assert_eq!(run.dir(), cache.join("ml-dash").join(prefix));
        assert_eq!(run.dir(), remote_work_dir(prefix));
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
        run.files("configs")
            .save_json("config.json", json!({"lr": 0.001}))
            .unwrap();
        // No local copy to read or delete: a typed error, not an empty list.
        for r in [
            run.files("configs").list().map(drop),
            run.files("configs").delete("config.json").map(drop),
        ] {
            assert!(matches!(r, Err(ml_dash::Error::Unsupported(_))), "{r:?}");
        }
        run.complete().unwrap();
        return;
    }
    let server = TestServer::start();
    let place = Place::new();
    place.run_child(
        "remote_only_leaves_nothing_in_the_working_directory",
        &server.url(),
        &[],
    );
    assert_eq!(
        place.work_entries(),
        Vec::<PathBuf>::new(),
        "nothing in the working directory"
    );
    let area = place.cache.path().join("ml-dash").join(prefix);
    assert!(
        area.join(".spool").is_dir(),
        "the work area is in the cache"
    );
    let left: Vec<PathBuf> = walk(&area)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "config.json"))
        .collect();
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "a sent file's content is not kept"
    );

    let st = server.state();
    let points = st.points("exp-remote", "train");
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
    assert_eq!(st.files.len(), 1);
    assert_eq!(st.files[0].name, "config.json");
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

/// A remote-only run that could not reach the server leaves its backlog in
/// the cache work area (durable: fsynced at close); the next remote-only
/// run of the prefix finds it there and sends it first.
#[test]
fn the_next_remote_only_run_sends_the_backlog_from_the_cache() {
    let prefix = "alice/proj/exp-backlog";
    if let Some(url) = child_url() {
        let first = std::env::var(CHILD_PHASE).unwrap() == "1";
        let mut c = cfg();
        c.quiet = !first; // the first run's close report is checked
        let run = Experiment::new(prefix)
            .dash_url(url)
            .remote_only()
            .token(TOKEN)
            .buffer_config(c)
            .run()
            .unwrap();
        let m = run.metrics("train").unwrap();
        let from = if first { 0 } else { 10 };
        for i in from..from + 10i64 {
            m.log(&point! {"i" => i}).unwrap();
        }
        run.complete().unwrap();
        return;
    }
    let name = "the_next_remote_only_run_sends_the_backlog_from_the_cache";
    let server = TestServer::start();
    let place = Place::new();
    server.refuse_connections(true);
    let stderr = place.run_child(
        name,
        &server.url(),
        &[(CHILD_PHASE, "1"), ("ML_DASH_CLOSE_TIMEOUT", "0.2")],
    );
    assert_eq!(server.state().point_count("exp-backlog", "train"), 0);
    let spool = place
        .cache
        .path()
        .join("ml-dash")
        .join(prefix)
        .join(".spool");
    assert!(
        stderr.contains(&spool.display().to_string()),
        "the close report says where the backlog is:\n{stderr}"
    );
    server.refuse_connections(false);
    place.run_child(name, &server.url(), &[(CHILD_PHASE, "2")]);
    assert_eq!(place.work_entries(), Vec::<PathBuf>::new());
    let st = server.state();
    let is: Vec<i64> = (st.points("exp-backlog", "train").iter())
        .map(|p| p["i"].as_i64().unwrap())
        .collect();
    assert_eq!(
        is,
        (0..20).collect::<Vec<_>>(),
        "the backlog first, once each"
    );
}

#[test]
fn remote_only_needs_a_server() {
    let e = Experiment::new("o/p/nowhere")
        .remote_only()
        .buffer_config(cfg())
        .run()
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config {
                name: "remote_only",
                ..
            }
        ) && e.to_string().contains("dash_url"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------

fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ML_DASH_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| {
        p.exists()
            && Command::new(p)
                .args(["-c", "import ml_dash"])
                .env("ML_DASH_NO_VERSION_CHECK", "1")
                .status()
                .is_ok_and(|s| s.success())
    })
}

/// Runs an SDK script with the server's URL as its argument, in `work`, with
/// the test token in its config folder and no timed flushes.
fn run_sdk(py: &Path, script: &str, url: &str, work: &Path) {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join(".dash");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("tokens.json"),
        format!("{{\"ml-dash-token\": \"{TOKEN}\"}}"),
    )
    .unwrap();
    let out = Command::new(py)
        .args(["-c", script, url])
        .current_dir(work)
        .env("HOME", home.path())
        .env("ML_DASH_CONFIG_DIR", &cfg)
        .env("ML_DASH_NO_VERSION_CHECK", "1")
        .env("ML_DASH_FLUSH_INTERVAL", "3600")
        .env("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Conformance with the Python SDK (`ml-dash` 0.11.0): for the same calls,
//! the SDK (pointed at the test server with a token file) and the remote sink
//! send the same requests: method, path and JSON body, up to timestamps and
//! ids. Skipped (with a note) when no Python with `ml_dash` is available:
//! set `ML_DASH_PYTHON`, or it tries `target/interop-venv/bin/python`.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ml_dash::__remote_testing as rt;
use ml_dash::Status;
use serde_json::{Value, json};
use support::{Request, TestServer, config, refs};

const SCRIPT: &str = r#"
import os, sys
from ml_dash import Experiment
url = sys.argv[1]
with Experiment(prefix="alice/proj/f1/f2/exp1", dash_url=url).run as exp:
    exp.params.set(model={"lr": 0.001, "layers": 3}, optimizer="adam")
    exp.log("Training started", level="info", epoch=0)
    exp.logs.warn("GPU memory low", memory_gb=1.5)
    exp.log("Bad batch", level="error", metadata={"batch": 7, "ids": [1, 2]})
    exp.metrics("train", description="training loss", tags=["train"], metadata={"unit": "nats"}).log(loss=0.5, step=0)
    exp.metrics("train", description="ignored: the first call's info stays").log(loss=0.25, step=1)
    exp.metrics("eval").log(acc=0.9, step=1)
    exp.params.set(epochs=3)
    exp.tracks("robot/pose").append(q=[0.1, 0.2], frame=0, _ts=1.0)
    exp.tracks("robot/pose").append(q=[0.3, 0.4], frame=1, _ts=2.0)
    exp.files("configs").save_json({"lr": 0.001}, to="config.json")
"#;

fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ML_DASH_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python")),
        Some(PathBuf::from("/tmp/mldash-venv/bin/python")),
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

/// Replaces what legitimately differs (ids, timestamps) by placeholders.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match k.as_str() {
                        "projectId" | "parentId" | "experimentId" if x.is_u64() => {
                            json!("<integer id>")
                        }
                        "projectId" | "parentId" | "experimentId" if x != "ROOT" => {
                            json!("<string id>")
                        }
                        _ => normalize(x),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        x => x.clone(),
    }
}

/// A multipart body as JSON: fields by name, the file part as an object.
fn multipart_json(r: &Request) -> Value {
    let parts = support::multipart(r.header("content-type").unwrap_or(""), &r.body);
    let mut m = serde_json::Map::new();
    for p in parts {
        let text = String::from_utf8_lossy(&p.data).into_owned();
        let v = match (&p.filename, p.name.as_str()) {
            (Some(f), _) => json!({"filename": f, "contentType": p.content_type, "content": text}),
            (None, "projectId" | "experimentId" | "parentId")
                if text.bytes().all(|b| b.is_ascii_digit()) =>
            {
                json!("<integer id>")
            }
            (None, "metadata") => serde_json::from_str(&text).unwrap_or(json!(text)),
            _ => json!(text),
        };
        m.insert(p.name, v);
    }
    Value::Object(m)
}

fn shape(r: &Request) -> (String, String, Value) {
    let body = if r
        .header("content-type")
        .is_some_and(|c| c.starts_with("multipart/"))
    {
        multipart_json(r)
    } else {
        normalize(&r.json())
    };
    let path: Vec<String> = r
        .path
        .split('/')
        .map(|s| {
            if s.len() >= 16 && s.bytes().all(|b| b.is_ascii_digit()) {
                "<id>".into()
            } else {
                s.to_owned()
            }
        })
        .collect();
    (r.method.clone(), path.join("/"), body)
}

#[test]
fn the_sink_sends_what_the_python_sdk_sends() {
    let Some(py) = python() else {
        eprintln!("skipped: no Python with ml_dash 0.11 (set ML_DASH_PYTHON)");
        return;
    };
    // The SDK against the test server.
    let sdk = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join(".dash");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("tokens.json"),
        format!("{{\"ml-dash-token\": \"{}\"}}", support::TOKEN),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(&py)
        .args(["-c", SCRIPT, &sdk.url()])
        .current_dir(work.path())
        .env("HOME", home.path())
        .env("ML_DASH_CONFIG_DIR", &cfg)
        .env("ML_DASH_NO_VERSION_CHECK", "1")
        .env("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sdk_reqs = sdk.requests();
    let dump: Vec<Value> = sdk_reqs
        .iter()
        .map(|r| json!({"method": r.method, "path": r.path, "body": if r.json().is_null() { json!(String::from_utf8_lossy(&r.body[..r.body.len().min(4000)])) } else { r.json() }}))
        .collect();
    let dump_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk-requests.json");
    let _ = std::fs::write(&dump_path, serde_json::to_string_pretty(&dump).unwrap());

    // The sink with the same calls, as the collector will hand them over.
    let ours = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&ours.url(), "alice/proj/f1/f2/exp1", dir.path());
    // One record in flight: the SDK's order across streams (with more, the
    // streams interleave, each in order).
    c.max_in_flight = 1;
    let mut sink = rt::RemoteSink::open(c).unwrap();
    let params = json!({"model.lr": 0.001, "model.layers": 3, "optimizer": "adam"});
    sink.merge_params(params.as_object().unwrap()).unwrap();
    // The second set, logged after the metrics: the SDK sends it at call
    // time, so before the buffered logs and points (the collector spools a
    // set as soon as it sees it, ahead of the batches; tests/sdk_params_mode.rs).
    sink.merge_params(json!({"epochs": 3}).as_object().unwrap())
        .unwrap();
    let logs = [
        json!({"timestamp": "2026-01-01T00:00:00.000001Z", "level": "info", "message": "Training started", "metadata": {"epoch": 0}}),
        json!({"timestamp": "2026-01-01T00:00:00.000002Z", "level": "warn", "message": "GPU memory low", "metadata": {"memory_gb": 1.5}}),
        json!({"timestamp": "2026-01-01T00:00:00.000003Z", "level": "error", "message": "Bad batch", "metadata": {"batch": 7, "ids": [1, 2]}}),
    ]
    .map(|v| serde_json::to_vec(&v).unwrap());
    sink.append_logs(refs(&logs)).unwrap();
    sink.append_metrics_with(
        Some("train"),
        Some(br#"{"description":"training loss","tags":["train"],"metadata":{"unit":"nats"}}"#),
        [
            &br#"{"loss":0.5,"step":0,"_ts":1795817645.891359}"#[..],
            br#"{"loss":0.25,"step":1,"_ts":1795817645.891400}"#,
        ],
    )
    .unwrap();
    sink.append_metrics(
        Some("eval"),
        [&br#"{"acc":0.9,"step":1,"_ts":1795817645.891500}"#[..]],
    )
    .unwrap();
    sink.append_tracks(
        "robot/pose",
        [
            &br#"{"timestamp":1.0,"q":[0.1,0.2],"frame":0}"#[..],
            br#"{"timestamp":2.0,"q":[0.3,0.4],"frame":1}"#,
        ],
    )
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    let tmp = src.path().join("save.tmp");
    let content = b"{\n  \"lr\": 0.001\n}";
    std::fs::write(&tmp, content).unwrap();
    let sum: String = {
        use sha2::Digest;
        sha2::Sha256::digest(content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    sink.append_file(&rt::FileUpload {
        source: &tmp,
        owned: true,
        path: "/configs",
        filename: "config.json",
        content_type: "application/json",
        checksum: &sum,
        description: None,
        tags: &[],
        metadata: None,
    })
    .unwrap();
    sink.finish(Status::Completed).unwrap();
    let report = sink.close(Duration::from_secs(20));
    assert!(report.is_drained(), "{report}");

    // Deliberate difference: before a file upload the SDK asks GraphQL for the
    // project id, the experiment's project and its folder path; the sink has
    // them from the experiment's creation and does not ask.
    let is_lookup = |r: &&Request| {
        r.path == "/graphql"
            && !r.json()["query"]
                .as_str()
                .unwrap_or("")
                .contains("GetProject(")
    };
    let mut sdk_shapes: Vec<_> = sdk_reqs
        .iter()
        .filter(|r| !is_lookup(r))
        .map(shape)
        .collect();
    let mut ours_shapes: Vec<_> = ours.requests().iter().map(shape).collect();
    // Timestamps differ (the values, not the types: `_ts` and track
    // `timestamp` are floats on both sides, log timestamps strings).
    for s in sdk_shapes.iter_mut().chain(ours_shapes.iter_mut()) {
        strip_times(&mut s.2);
    }
    assert!(
        ours_shapes.iter().any(|s| s.2.get("file").is_some()),
        "the file upload is compared too"
    );
    assert_eq!(ours_shapes.len(), 14, "{ours_shapes:#?}");
    for (i, (a, b)) in sdk_shapes.iter().zip(&ours_shapes).enumerate() {
        assert_eq!(
            a,
            b,
            "request {i} differs (SDK left, ours right); SDK requests in {}",
            dump_path.display()
        );
    }
    assert_eq!(
        sdk_shapes.len(),
        ours_shapes.len(),
        "SDK: {sdk_shapes:#?}\nours: {ours_shapes:#?}"
    );
}

fn strip_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "_ts" && x.is_f64() {
                    *x = json!("<float time>");
                } else if k == "timestamp" && x.is_string() {
                    *x = json!("<time>");
                } else {
                    strip_times(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_times),
        _ => {}
    }
}

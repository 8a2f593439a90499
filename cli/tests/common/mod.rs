//! Shared by the CLI's tests: running `ml-dash` as a process, stores written
//! by the engine with pinned times, golden files, and the Python SDK 0.11
//! (`tests/sdk_python`, the library tests' own: `ML_DASH_PYTHON`, else the
//! virtualenv `target/interop-venv`, made once under a lock).
#![allow(dead_code)]

pub mod server;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use ml_dash::{BufferConfig, Experiment, Level, Run, point};
use serde_json::{Value as Json, json};

/// The `prefix` of each run in a runs listing (`list --json`, `/api/runs`).
pub fn prefixes(runs: &Json) -> Vec<&str> {
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap())
        .collect()
}

/// `ml-dash --dash-root ROOT ARGS...`, stdin closed.
pub fn ml_dash(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ml-dash"))
        .arg("--dash-root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("ML_DASH_TOKEN")
        .env_remove("ML_DASH_API_URL")
        .output()
        .expect("ml-dash runs")
}

/// Its stdout, asserting the exit code.
pub fn ok_out(root: &Path, args: &[&str], code: i32) -> String {
    let o = ml_dash(root, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "ml-dash {args:?}: stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// A quiet engine configuration.
pub fn quiet() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = true;
    c
}

pub fn open(root: &Path, prefix: &str) -> Run {
    Experiment::new(prefix)
        .dash_root(root)
        .readme("a test run")
        .tags(["cli", "test"])
        .buffer_config(quiet())
        .run()
        .unwrap()
}

/// Sets `started_at` / `ended_at` / `created_at` (and the heartbeat) of a
/// run to fixed times, so listings are the same every time.
pub fn pin_times(root: &Path, prefix: &str, start: &str, end: Option<&str>) {
    let p = root.join(prefix).join("experiment.json");
    let mut doc: Json = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    doc["created_at"] = json!(start);
    doc["started_at"] = json!(start);
    if doc.get("heartbeat_at").is_some() {
        doc["heartbeat_at"] = json!(start);
    }
    match end {
        Some(e) => doc["ended_at"] = json!(e),
        None => {
            doc.as_object_mut().unwrap().remove("ended_at");
        }
    }
    fs::write(&p, serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// The main test run: params, two metric streams (fixed `_ts`), a track,
/// logs, a file; completed, times pinned.
pub fn write_train_run(root: &Path, prefix: &str, scale: f64) {
    let run = open(root, prefix);
    run.params()
        .set(json!({"model": {"lr": 0.001, "layers": [64, 64]}, "optimizer": "adam", "seed": 7}))
        .unwrap();
    run.log("training started").unwrap();
    let train = run.metrics("train").unwrap();
    let eval = run.metrics("eval").unwrap();
    let pose = run.tracks("robot/pose").unwrap();
    for step in 0..50i64 {
        let loss = scale / (1.0 + step as f64);
        train
            .log(&point! {"loss" => loss, "step" => step, "_ts" => 1000.0 + step as f64})
            .unwrap();
        if step % 10 == 9 {
            eval.log(&point! {"acc" => 0.5 + step as f64 / 100.0, "step" => step, "_ts" => 1000.5 + step as f64})
                .unwrap();
            pose.append_at(step as f64, &point! {"q" => &[0.1, 0.2], "frame" => step})
                .unwrap();
        }
    }
    run.log_with(Level::Warn, "loss is low", &point! {"loss" => 0.02})
        .unwrap();
    run.files("configs")
        .save_text("notes.txt", "hello from the cli tests\n")
        .unwrap();
    run.complete().unwrap();
    pin_times(
        root,
        prefix,
        "2025-01-02T03:04:05.000000Z",
        Some("2025-01-02T03:06:10.500000Z"),
    );
}

/// Replaces the variable parts of output (ISO times with `T`) with `<time>`.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let is_iso = b.len() - i >= 20
            && b[i..i + 4].iter().all(u8::is_ascii_digit)
            && b[i + 4] == b'-'
            && b[i + 10] == b'T';
        if is_iso {
            let mut j = i + 19;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.' || b[j] == b'Z') {
                j += 1;
            }
            out.push_str("<time>");
            i = j;
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Compares `actual` with `tests/golden/NAME` (`UPDATE_GOLDEN=1` rewrites it).
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).unwrap();
        return;
    }
    let want = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        want,
        "output differs from {} (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

// ---------------------------------------------------------------------------
// The Python SDK
// ---------------------------------------------------------------------------

// The library's own tests' finder (one venv for the whole workspace).
#[path = "../../../tests/sdk_python/mod.rs"]
mod sdk_python;
#[allow(unused_imports)] // not every test binary runs the SDK
pub use sdk_python::python;
use sdk_python::python_command as py_command;

/// The SDK writes the run `prefix` under `root` with the interop test's
/// `write_run.py initial` (params, logs, 5 train points, 2 track rows).
pub fn sdk_write(py: &Path, root: &Path, prefix: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/write_run.py");
    let o = py_command(py)
        .current_dir(root.parent().unwrap_or(root))
        .arg(script)
        .arg(root)
        .arg(prefix)
        .arg("initial")
        .output()
        .unwrap();
    assert!(
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .trim_end()
                .ends_with("ok"),
        "write_run.py: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

//! Shared by the CLI's tests: running `ml-dash` as a process, stores written
//! by the engine with pinned times, golden files, and the Python SDK 0.11
//! (found or made as `tests/interop.rs` does: `ML_DASH_PYTHON`, else the
//! virtualenv `target/interop-venv`, made once under the same lock).
#![allow(dead_code)]

pub mod server;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use ml_dash::{BufferConfig, Experiment, Level, Run, point};
use serde_json::{Value as Json, json};

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

pub const SDK_VERSION: &str = "0.11.0";

/// A Python with ml-dash 0.11.0, or `None` when `ML_DASH_INTEROP_OPTIONAL=1`
/// and there is none (the test then prints `skipped` and passes).
pub fn python() -> Option<&'static Path> {
    static PY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PY.get_or_init(find_python) {
        Ok(p) => Some(p),
        Err(why) if std::env::var("ML_DASH_INTEROP_OPTIONAL").as_deref() == Ok("1") => {
            eprintln!("skipped: {why}");
            None
        }
        Err(why) => panic!(
            "this test needs a Python with ml-dash=={SDK_VERSION}: {why} (set ML_DASH_PYTHON, \
             or ML_DASH_INTEROP_OPTIONAL=1 to skip)"
        ),
    }
}

fn sdk_version(py: &Path) -> Result<String, String> {
    let o = py_command(py)
        .args([
            "-c",
            "import importlib.metadata as m, ml_dash; print(m.version('ml-dash'))",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !o.status.success() {
        return Err(format!(
            "`import ml_dash` failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn find_python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ML_DASH_PYTHON") {
        let p = PathBuf::from(p);
        let v = sdk_version(&p)?;
        return (v == SDK_VERSION)
            .then_some(p)
            .ok_or(format!("ML_DASH_PYTHON has ml-dash {v}"));
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    fs::create_dir_all(target).map_err(|e| e.to_string())?;
    let lock = File::create(target.join("interop-venv.lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    let venv = target.join("interop-venv");
    let py = venv.join("bin").join("python");
    if py.exists() && sdk_version(&py).as_deref() == Ok(SDK_VERSION) {
        return Ok(py);
    }
    if !py.exists() {
        let o = Command::new("python3")
            .args([OsStr::new("-m"), OsStr::new("venv"), venv.as_os_str()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "python3 -m venv failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    let spec = format!("ml-dash=={SDK_VERSION}");
    let o = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            &spec,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "pip install {spec} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let v = sdk_version(&py)?;
    (v == SDK_VERSION)
        .then_some(py)
        .ok_or(format!("the venv has ml-dash {v}"))
}

fn py_command(py: &Path) -> Command {
    let mut c = Command::new(py);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ML_DASH_") {
            c.env_remove(k.as_ref());
        }
    }
    c.env("ML_DASH_NO_VERSION_CHECK", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    c
}

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

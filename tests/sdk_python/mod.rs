//! A Python with the SDK `ml-dash==0.11.0`, for the tests that run it
//! (`tests/interop.rs`, `tests/differential.rs`; each includes this with
//! `mod sdk_python;`): `ML_DASH_PYTHON` if set (it must already have ml-dash
//! 0.11.0), else a virtualenv made once at `target/interop-venv` with
//! `python3 -m venv` and `pip install ml-dash==0.11.0`. Without Python or
//! without network the tests fail, unless `ML_DASH_INTEROP_OPTIONAL=1`, which
//! makes them print `skipped: ...` and pass. See `tests/interop/README.md`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const SDK_VERSION: &str = "0.11.0";

// ---------------------------------------------------------------------------
// Locating (or making) a Python with the SDK
// ---------------------------------------------------------------------------

/// The Python to use, or `None` when the tests are skipped. Panics (fails the
/// test) when no usable Python exists and `ML_DASH_INTEROP_OPTIONAL` is not `1`.
pub fn python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(find_python) {
        Ok(p) => Some(p),
        Err(why) if std::env::var("ML_DASH_INTEROP_OPTIONAL").as_deref() == Ok("1") => {
            println!("skipped: {why}");
            eprintln!("skipped: {why}");
            None
        }
        Err(why) => panic!(
            "this test needs a Python with ml-dash=={SDK_VERSION}: {why}\n\
             (set ML_DASH_PYTHON to such an interpreter, or ML_DASH_INTEROP_OPTIONAL=1 to skip)"
        ),
    }
}

fn find_python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ML_DASH_PYTHON") {
        let p = PathBuf::from(p);
        sdk_version(&p)
            .and_then(check_version)
            .map_err(|e| format!("ML_DASH_PYTHON={}: {e}", p.display()))?;
        return Ok(p);
    }
    // CARGO_TARGET_TMPDIR is <target>/tmp; the venv goes next to it.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    let venv = target.join("interop-venv");
    fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    // One cargo process at a time makes the venv (threads share the OnceLock).
    let lock_path = target.join("interop-venv.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let r = make_venv(&venv);
    let _ = lock.unlock();
    r
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

fn make_venv(venv: &Path) -> Result<PathBuf, String> {
    let py = venv_python(venv);
    if py.exists() {
        match sdk_version(&py) {
            Ok(v) if v == SDK_VERSION => return Ok(py),
            Ok(_) | Err(_) if python_works(&py) => {} // reuse the venv, (re)install the SDK
            _ => {
                // A broken venv (its base Python moved, say): start again.
                fs::remove_dir_all(venv)
                    .map_err(|e| format!("cannot remove broken {}: {e}", venv.display()))?;
            }
        }
    }
    if !py.exists() {
        let out = Command::new("python3")
            .args([OsStr::new("-m"), OsStr::new("venv"), venv.as_os_str()])
            .stdin(Stdio::null())
            .output();
        match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("no `python3` on PATH".into());
            }
            Err(e) => return Err(format!("cannot run python3: {e}")),
            Ok(o) if !o.status.success() => {
                let _ = fs::remove_dir_all(venv);
                return Err(format!(
                    "`python3 -m venv {}` failed ({}):\n{}",
                    venv.display(),
                    o.status,
                    tail(&o)
                ));
            }
            Ok(_) => {}
        }
    }
    let spec = format!("ml-dash=={SDK_VERSION}");
    let out = Command::new(&py)
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
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`pip install {spec}` into {} failed ({}; no network?):\n{}",
            venv.display(),
            out.status,
            tail(&out)
        ));
    }
    sdk_version(&py).and_then(check_version)?;
    Ok(py)
}

fn python_works(py: &Path) -> bool {
    Command::new(py)
        .args(["-c", "pass"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The installed ml-dash version, as pip's metadata says.
fn sdk_version(py: &Path) -> Result<String, String> {
    let out = python_command(py)
        .args([
            "-c",
            "import importlib.metadata as m, ml_dash; print(m.version('ml-dash'))",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!("`import ml_dash` failed:\n{}", tail(&out)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn check_version(v: String) -> Result<(), String> {
    if v == SDK_VERSION {
        Ok(())
    } else {
        Err(format!("it has ml-dash {v}, not {SDK_VERSION}"))
    }
}

/// A Python command with a clean SDK environment: no version check (it makes
/// an HTTP request), no inherited `ML_DASH_*` / job-broker settings, no
/// `__pycache__` left in the source tree.
pub fn python_command(py: &Path) -> Command {
    let mut c = Command::new(py);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ML_DASH_") || k.starts_with("DREAMLAKE_") {
            c.env_remove(k.as_ref());
        }
    }
    c.env("ML_DASH_NO_VERSION_CHECK", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null());
    c
}

pub fn tail(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[start..].to_string()
}

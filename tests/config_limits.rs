//! Settings that used to hang, panic or abort (issue 10, items 3 and 4).
//!
//! - A record that can never fit is an immediate typed error; settings whose
//!   limits contradict each other (`max_record_bytes` against
//!   `memory_budget`) are refused when the run opens.
//! - Every duration is checked against its documented range (at most one
//!   day) or saturated (`SyncOptions::deadline`), and memory settings against
//!   the machine: `Error::Config` naming the variable, never a panic, an
//!   abort or a dead background thread.
//! - A background thread that panics (injected with `__fault::panic_once`)
//!   makes `flush()` / close fail instead of the run saying Ok.
//!
//! The cases that panicked or aborted the process, and those that arm a
//! process-wide fault, run in a child process (`tests/children/config_limits.rs`,
//! in the helper program `ml-dash-test-child`), with the variables set, so an
//! abort or a hang fails the test instead of killing the harness. Hangs are caught by a watchdog
//! (a channel receive with a generous limit), not by timing assertions.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ml_dash::{BufferConfig, Error, Experiment, RemoteConfig, SyncOptions};

/// How long a case may take before it counts as a hang (it takes
/// milliseconds; the limit only turns a hang into a failure).
const HANG: Duration = Duration::from_secs(120);

/// A loopback port nothing listens on (the remote cases never get to send).
const NO_SERVER: &str = "http://127.0.0.1:1";

/// Runs `f` on a thread; fails the test if it does not return within `HANG`.
fn no_hang<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still waiting after {HANG:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked (above)"),
    }
}

/// Runs `case` (of `tests/children/config_limits.rs`) in a child process
/// with `env` set; returns its result line (what the child printed after
/// `RESULT `). An abort, a panic or a hang in the child fails the test.
fn child(case: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ml-dash-test-child"));
    cmd.args(["config_limits", case])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut c = cmd.spawn().unwrap();
    let pid = c.id();
    let (mut out, mut err) = (c.stdout.take().unwrap(), c.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let mut stdout = String::new();
    let read = thread::spawn(move || {
        let _ = out.read_to_string(&mut stdout);
        stdout
    });
    let stderr = match rx.recv_timeout(HANG) {
        Ok(s) => s,
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = c.wait();
            panic!("case {case}: the child hung (killed after {HANG:?})");
        }
    };
    let status = c.wait().unwrap();
    let stdout = read.join().unwrap();
    assert!(
        status.success(),
        "case {case}: the child failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("case {case}: no result\nstdout:\n{stdout}\nstderr:\n{stderr}"))
        .to_owned()
}

#[test]
fn huge_timeouts_in_the_environment_are_refused_when_the_run_opens() {
    // 1e20 panicked in `Experiment::run()` (Duration::from_secs_f64), 1e19
    // passed and then panicked the collector at close (an abort: exit 134)
    // or killed the sender thread while the run said Ok.
    for (var, value) in [
        ("ML_DASH_CLOSE_TIMEOUT", "1e20"),
        ("ML_DASH_DELIVERY_TIMEOUT", "1e20"),
        ("ML_DASH_REQUEST_TIMEOUT", "1e20"),
        ("ML_DASH_CLOSE_TIMEOUT", "1e19"),
        ("ML_DASH_REQUEST_TIMEOUT", "1e19"),
        ("ML_DASH_RETRY_BASE_DELAY", "1e19"),
        ("ML_DASH_RETRY_MAX_DELAY", "86401"),
    ] {
        let got = child("remote", &[(var, value), ("ML_DASH_QUIET", "1")]);
        assert_eq!(got, format!("config {var}"), "{var}={value}");
    }
    // The bounds themselves are fine (and nothing is sent: no server).
    let got = child(
        "remote",
        &[
            ("ML_DASH_CLOSE_TIMEOUT", "0"),
            ("ML_DASH_REQUEST_TIMEOUT", "86400"),
            ("ML_DASH_QUIET", "1"),
        ],
    );
    assert_eq!(got, "ok");
}

#[test]
fn memory_settings_beyond_the_machine_are_refused_not_aborted() {
    // 1 TiB of ring and budget aborted the first log() (a failed allocation).
    let tib = (1u64 << 40).to_string();
    let got = child(
        "local",
        &[
            ("ML_DASH_RING_CAPACITY", &tib),
            ("ML_DASH_MEMORY_BUDGET", &tib),
        ],
    );
    assert_eq!(got, "config ML_DASH_RING_CAPACITY");
    let got = child("local", &[("ML_DASH_MEMORY_BUDGET", &tib)]);
    assert_eq!(got, "config ML_DASH_MEMORY_BUDGET");
    // In code: the field is named.
    let mut c = BufferConfig::default();
    c.memory_budget = usize::MAX;
    match c.validate() {
        Err(Error::Config { name, .. }) => assert_eq!(name, "memory_budget"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_duration_and_count_variable_has_a_range() {
    // A million upload threads was a million thread spawns.
    let workers = |v: &'static str| {
        BufferConfig::from_lookup(move |k| (k == "ML_DASH_FILE_UPLOAD_WORKERS").then(|| v.into()))
    };
    assert!(matches!(
        workers("1000000"),
        Err(Error::Config {
            name: "ML_DASH_FILE_UPLOAD_WORKERS",
            ..
        })
    ));
    assert!(workers("256").is_ok());
    let cases = [
        "ML_DASH_FLUSH_INTERVAL",
        "ML_DASH_RETRY_BASE_DELAY",
        "ML_DASH_RETRY_MAX_DELAY",
    ];
    for var in cases {
        for value in ["1e20", "1e19", "86401", "inf", "NaN", "-1", "0"] {
            let err = BufferConfig::from_lookup(|k| (k == var).then(|| value.to_string()))
                .expect_err(value);
            match &err {
                Error::Config { name, value: v, .. } => {
                    assert_eq!((*name, v.as_str()), (var, value))
                }
                other => panic!("{other}"),
            }
            assert!(err.to_string().contains("86400"), "{err}");
        }
        assert!(BufferConfig::from_lookup(|k| (k == var).then(|| "86400".into())).is_ok());
    }
    let remote = [
        ("ML_DASH_CLOSE_TIMEOUT", "0"),
        ("ML_DASH_DELIVERY_TIMEOUT", "0"),
        ("ML_DASH_REQUEST_TIMEOUT", "0.001"),
        ("ML_DASH_RETRY_BASE_DELAY", "0.001"),
        ("ML_DASH_RETRY_MAX_DELAY", "0.001"),
    ];
    for (var, lowest) in remote {
        let lookup = |v: &'static str| move |k: &str| (k == var).then(|| v.to_string());
        for value in ["1e20", "1e19", "86400.5", "inf", "-1"] {
            let err = RemoteConfig::from_lookup("o/p", "/tmp/s", lookup(value)).unwrap_err();
            match &err {
                Error::Config { name, .. } => assert_eq!(*name, var, "{value}"),
                other => panic!("{other}"),
            }
        }
        assert!(RemoteConfig::from_lookup("o/p", "/tmp/s", lookup(lowest)).is_ok());
        assert!(RemoteConfig::from_lookup("o/p", "/tmp/s", lookup("86400")).is_ok());
    }
}

#[test]
fn durations_set_in_code_are_checked_when_the_run_opens() {
    // Retry delays of Duration::MAX panicked the sender at its first retry
    // (a dead thread while the run said Ok); now the run does not open.
    let root = tempfile::tempdir().unwrap();
    let open = |c: BufferConfig| {
        Experiment::new("o/p/code")
            .dash_root(root.path())
            .dash_url(NO_SERVER)
            .buffer_config(c)
            .run()
    };
    let mut c = BufferConfig::default();
    c.retry_base_delay = Duration::MAX;
    assert!(matches!(
        open(c),
        Err(Error::Config {
            name: "retry_base_delay",
            ..
        })
    ));
    let mut c = BufferConfig::default();
    c.retry_max_delay = Duration::MAX;
    assert!(matches!(
        open(c),
        Err(Error::Config {
            name: "retry_max_delay",
            ..
        })
    ));
    let mut c = BufferConfig::default();
    c.flush_interval = Duration::MAX;
    assert!(matches!(
        open(c),
        Err(Error::Config {
            name: "flush_interval",
            ..
        })
    ));

    let mut r = RemoteConfig::new(NO_SERVER, "o/p", root.path().join("s"));
    assert!(r.validate().is_ok());
    for field in [
        "request_timeout",
        "connect_timeout",
        "close_timeout",
        "delivery_timeout",
    ] {
        let mut bad = r.clone();
        let d = match field {
            "request_timeout" => &mut bad.request_timeout,
            "connect_timeout" => &mut bad.connect_timeout,
            "close_timeout" => &mut bad.close_timeout,
            _ => &mut bad.delivery_timeout,
        };
        *d = Duration::MAX;
        match bad.validate() {
            Err(Error::Config { name, .. }) => assert_eq!(name, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    r.retry_base_delay = Duration::ZERO;
    assert!(matches!(
        r.validate(),
        Err(Error::Config {
            name: "retry_base_delay",
            ..
        })
    ));
}

#[test]
fn sync_saturates_its_deadline_and_checks_its_timeouts() {
    let spool = tempfile::tempdir().unwrap();
    // Duration::MAX panicked `sync` (Instant + deadline overflowed): it
    // means "no deadline".
    let mut o = SyncOptions::default();
    o.deadline = Duration::MAX;
    let report = no_hang("sync", move || {
        ml_dash::sync(spool.path(), &o).map(|r| r.is_drained())
    });
    assert!(report.unwrap());
    let spool = tempfile::tempdir().unwrap();
    let mut o = SyncOptions::default();
    o.request_timeout = Duration::MAX;
    match ml_dash::sync(spool.path(), &o) {
        Err(Error::Config { name, .. }) => assert_eq!(name, "SyncOptions::request_timeout"),
        other => panic!("{other:?}"),
    }
}

/// The first ring is 256 KiB (the default) in all cases below.
fn limits(memory_budget: usize, max_record_bytes: usize) -> BufferConfig {
    let mut c = BufferConfig::default();
    c.memory_budget = memory_budget;
    c.max_record_bytes = max_record_bytes;
    c.quiet = true;
    c
}

#[test]
fn contradicting_record_and_memory_limits_are_refused_when_the_run_opens() {
    let root = tempfile::tempdir().unwrap();
    let open = |c: BufferConfig| {
        Experiment::new("o/p/lim")
            .dash_root(root.path())
            .buffer_config(c)
            .run()
    };
    // A 1 MiB budget with the default 1 MiB records was accepted, and a
    // 600 KB line then waited forever for ring room the budget never gave.
    let e = open(limits(1 << 20, 1 << 20)).unwrap_err();
    match &e {
        Error::Config { name, reason, .. } => {
            assert_eq!(*name, "memory_budget");
            assert!(reason.contains("twice max_record_bytes"), "{reason}");
        }
        other => panic!("{other}"),
    }
    // So was max_record_bytes = 64 MiB with the default 64 MiB budget (what
    // the RecordTooLarge message advised), and a 40 MB value then hung.
    assert!(matches!(
        open(limits(64 << 20, 64 << 20)),
        Err(Error::Config {
            name: "memory_budget",
            ..
        })
    ));
    // The same from the environment.
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(matches!(
        BufferConfig::from_lookup(env(&[("ML_DASH_MEMORY_BUDGET", "1048576")])),
        Err(Error::Config {
            name: "memory_budget",
            ..
        })
    ));
    assert!(matches!(
        BufferConfig::from_lookup(env(&[("ML_DASH_MAX_RECORD_BYTES", "67108864")])),
        Err(Error::Config {
            name: "memory_budget",
            ..
        })
    ));
    // Twice is enough; so is a first ring as large as the largest record.
    assert!(limits(2 << 20, 1 << 20).validate().is_ok());
    let mut c = limits(1 << 20, 1 << 20);
    c.ring_capacity = 1 << 20;
    assert!(c.validate().is_ok());
}

#[test]
fn a_record_larger_than_its_ring_takes_a_ring_it_fits_in() {
    // 1 MiB budget, 512 KiB records, a 256 KiB first ring: doubling for a
    // 500 KB line would take 1 MB beside the first ring (refused); the ring
    // the line fits in (500 KB) is granted. Before, this waited forever.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_owned();
    let line = "x".repeat(500_000);
    let stored = no_hang("a 500 KB line", move || {
        let run = Experiment::new("o/p/big")
            .dash_root(&dir)
            .buffer_config(limits(1 << 20, 512 << 10))
            .run()
            .unwrap();
        run.log("small").unwrap();
        run.log(&line).unwrap();
        run.log(&line).unwrap(); // the same ring again, once drained
        run.log("small again").unwrap();
        run.complete().unwrap();
        ml_dash::read::logs(&dir, "o/p/big").unwrap()
    });
    let lens: Vec<usize> = stored
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .collect();
    assert_eq!(lens, [5, 500_000, 500_000, 11]);
    // Over the limit: the typed error, at once.
    let root = tempfile::tempdir().unwrap();
    let run = Experiment::new("o/p/big")
        .dash_root(root.path())
        .buffer_config(limits(1 << 20, 512 << 10))
        .run()
        .unwrap();
    let e = run.log(&"x".repeat(600_000)).unwrap_err();
    assert!(
        matches!(e, Error::RecordTooLarge { limit, .. } if limit == 512 << 10),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("memory_budget must be at least twice"),
        "{e}"
    );
    run.complete().unwrap();
}

#[test]
fn a_panicking_sender_fails_flush_and_close() {
    // The sender thread panics as it starts (a stand-in for a bug). Before,
    // flush() and complete() said Ok, and close waited its whole timeout.
    let got = child(
        "sender_panics",
        &[("ML_DASH_QUIET", "1"), ("ML_DASH_CLOSE_TIMEOUT", "60")],
    );
    let parts: Vec<&str> = got.split(" | ").collect();
    let [flush, again, close] = parts[..] else {
        panic!("{got}")
    };
    assert!(
        flush.starts_with("flush: panicked the remote sender stopped"),
        "{got}"
    );
    assert!(
        again.starts_with("again: panicked the remote sender stopped"),
        "{got}"
    );
    assert!(
        close.starts_with("close: panicked the remote sender stopped"),
        "{got}"
    );
    assert!(
        close.contains(".spool") && close.contains("ml_dash::sync"),
        "{got}"
    );
}

#[test]
fn a_dead_sender_costs_the_local_copy_nothing() {
    // Before, a dead sender made every sync fail, so the collector held the
    // local writes back as for a failing disk until the budget ran out.
    let got = child(
        "sender_dies_local_keeps",
        &[("ML_DASH_CLOSE_TIMEOUT", "60")],
    );
    let (stored, close) = got.split_once(" | ").unwrap();
    assert_eq!(stored, "stored 200000 contiguous true", "{got}");
    assert!(close.starts_with("close: panicked"), "{got}");
}

#[test]
fn a_panicking_upload_worker_fails_its_file_and_lives_on() {
    // Before, the panicking worker took its job with it: flush() then waited
    // forever for that file.
    let got = child("upload_panics", &[("ML_DASH_QUIET", "1")]);
    let parts: Vec<&str> = got.split(" | ").collect();
    let [first, second, close, stored] = parts[..] else {
        panic!("{got}")
    };
    assert!(
        first.starts_with("first: error ") && first.contains("upload thread panicked"),
        "{got}"
    );
    assert_eq!((second, stored), ("second: ok", "stored: 1"), "{got}");
    // Close counts the file that was not stored, and says why.
    assert!(
        close.starts_with("close: error ") && close.contains("1 file(s) not stored"),
        "{got}"
    );
    assert!(close.contains("upload thread panicked"), "{got}");
}

//! The two 30-second reliability scenarios of RELIABILITY.md, run in
//! parallel (one binary, so CI waits ~35 s for both):
//!
//! - **R4 by wall time**: the server is really down (its port closed,
//!   connects refused) for 30 s while two threads log through the public API
//!   at a paced 25 000 points/s each (1.5 M points, ~100 MB of spool). The
//!   process stays under its memory budget plus an allowance, the backlog
//!   drains once the server is back, and the server holds every point once,
//!   in order per thread. The same harness, `#[ignore]`d, is the documented
//!   10-minute run:
//!   `ML_DASH_OUTAGE_SECS=600 ML_DASH_OUTAGE_RATE=100000 cargo test --release --test sink_remote_stall -- --ignored --nocapture`
//!   (rate per thread, two threads).
//! - **R8**: a child process (`tests/children/sink_remote_stall.rs`, in the
//!   helper program `ml-dash-test-child`) logs to the loopback server; once the server has some but not all points the
//!   whole child is stopped with SIGSTOP for 30 s (the server closes its
//!   connection when it goes idle), then continued; it must finish on its own
//!   and the server must hold all of its points exactly once.
//!
//! The test server runs in counting mode (points tallied per producer, not
//! kept), so its memory stays small and the resident-size check measures the
//! engine; the R8 child is another process.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ml_dash::{BufferConfig, Experiment, point};
use support::{TestServer, peak_rss_kib};

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `threads` producers each log `{"t": t, "i": i}` to stream `train` at
/// `rate` points/s (paced every 250 points) until `secs` have passed;
/// returns the points of each.
fn log_paced(run: &ml_dash::Run, threads: usize, rate: f64, secs: f64) -> Vec<u64> {
    let until = Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads as i64)
            .map(|t| {
                let m = run.metrics("train").unwrap();
                s.spawn(move || {
                    let start = Instant::now();
                    let mut i = 0u64;
                    while start.elapsed() < until {
                        for _ in 0..250 {
                            m.log(&point! {"t" => t, "i" => i}).unwrap();
                            i += 1;
                        }
                        // Pacing is the scenario (a steady logger), not a wait on the engine.
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(ahead);
                        }
                    }
                    i
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// What one outage run measured.
#[derive(Debug)]
struct Outage {
    points: u64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    spool_peak_bytes: u64,
    drain: Duration,
    requests: u64,
    duplicates: u64,
}

const BUDGET: usize = 16 << 20;

/// R4: the server refuses connections for `secs` while `threads` threads log
/// at `rate` points/s each; then it listens again and the backlog drains.
fn outage_while_logging(name: &str, secs: f64, threads: usize, rate: f64) -> Outage {
    let server = TestServer::start();
    server.set_counting(true);
    let root = tempfile::tempdir().unwrap();
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    cfg.memory_budget = BUDGET;
    cfg.retry_base_delay = Duration::from_millis(50);
    cfg.retry_max_delay = Duration::from_millis(500);
    let rss_before_kib = peak_rss_kib();
    server.refuse_connections(true);
    let run = Experiment::new(format!("alice/proj/{name}"))
        .dash_root(root.path())
        .dash_url(server.url())
        .token("test-token")
        .buffer_config(cfg)
        .run()
        .unwrap();
    let counts = log_paced(&run, threads, rate, secs);
    run.flush().unwrap(); // all in the spool, durable, while the server is still down
    let total: u64 = counts.iter().sum();
    let spool = root.path().join(format!("alice/proj/{name}/.spool"));
    let spool_peak_bytes = dir_bytes(&spool);
    {
        let st = server.state();
        assert_eq!(
            st.request_count, 0,
            "the server was down: nothing reached it"
        );
    }
    server.refuse_connections(false);
    let back = Instant::now();
    let drained = server.wait_for(Duration::from_secs(60 + total / 20_000), |st| {
        st.point_count(name, "train") >= total
    });
    let drain = back.elapsed();
    assert!(
        drained,
        "not everything arrived: {} of {total} points",
        server.state().point_count(name, "train")
    );
    run.complete().unwrap();
    let rss_peak_kib = peak_rss_kib();
    let st = server.state();
    let tally = st.tally(name, "train");
    tally.assert_each_once(&counts);
    assert_eq!(
        dir_bytes(&spool),
        0,
        "the spool is empty once everything is sent"
    );
    Outage {
        points: total,
        rss_before_kib,
        rss_peak_kib,
        spool_peak_bytes,
        drain,
        requests: st.request_count,
        duplicates: st.duplicate_count,
    }
}

/// R4 (CI variant by wall time): 30 s of real outage while two threads log
/// 25 000 points/s each (1.5 M points). Peak resident size stays under the
/// 16 MiB ring budget plus a 96 MiB allowance (the spool reader's buffers,
/// the sender's request bodies, the server's parsing and the test's own
/// threads), measured over the whole run, drain included.
#[cfg(target_os = "linux")]
#[test]
fn thirty_seconds_of_refused_connections_while_logging_lose_nothing() {
    let r = outage_while_logging("exp-outage-30s", 30.0, 2, 25_000.0);
    eprintln!("R4 30 s: {r:?}");
    // At least half the paced rate (a debug build on a shared 2-core CI
    // machine may fall behind it; the point is that logging went on).
    assert!(
        r.points >= 2 * 25_000 * 15,
        "the producers kept logging: {r:?}"
    );
    assert!(
        r.rss_peak_kib < r.rss_before_kib + (BUDGET as u64 >> 10) + 96 * 1024,
        "memory over budget + allowance: {r:?}"
    );
}

/// The documented R4 run: `ML_DASH_OUTAGE_SECS` (default 600) of outage,
/// two threads at `ML_DASH_OUTAGE_RATE` points/s each (default 100 000, i.e.
/// 200 k/s total: ~120 M points and ~5.7 GB of spool in 10 minutes, at ~48
/// bytes a point; full speed, ~5 M points/s, would spool ~140 GB). Prints
/// what it measured.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn documented_outage_run() {
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(d)
    };
    let secs = env("ML_DASH_OUTAGE_SECS", 600.0);
    let rate = env("ML_DASH_OUTAGE_RATE", 100_000.0);
    let r = outage_while_logging("exp-outage-long", secs, 2, rate);
    println!(
        "outage_secs={secs} threads=2 rate_per_thread={rate} points={} points_per_sec={:.0} \
         peak_rss_kib={} rss_before_kib={} budget_kib={} spool_bytes_at_peak={} \
         drain_secs={:.1} drain_points_per_sec={:.0} requests={} duplicates_dropped_by_key={} \
         points_on_server={} (each once, in order)",
        r.points,
        r.points as f64 / secs,
        r.rss_peak_kib,
        r.rss_before_kib,
        BUDGET >> 10,
        r.spool_peak_bytes,
        r.drain.as_secs_f64(),
        r.points as f64 / r.drain.as_secs_f64(),
        r.requests,
        r.duplicates,
        r.points,
    );
    assert!(
        r.rss_peak_kib < r.rss_before_kib + (BUDGET as u64 >> 10) + 96 * 1024,
        "memory over budget + allowance: {r:?}"
    );
}

// ---------------------------------------------------------------------------
// R8: the whole process stopped.

const R8_THREADS: u64 = 2;
const R8_POINTS: u64 = 100_000;
/// Points per second per thread in the child (a 5 s run when not stopped).
const R8_RATE: f64 = 20_000.0;
const R8_STOP: Duration = Duration::from_secs(30);

/// Every thread of process `pid` is stopped (state `T` in its
/// `/proc/<pid>/task/<tid>/stat`): SIGSTOP reaches the threads one by one.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
            s.rfind(')')
                .and_then(|at| s[at + 1..].trim_start().chars().next())
                == Some('T')
        })
    })
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of our own child, which we have not reaped
    // yet (its waiter thread is still waiting), so the pid is not reused.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// R8: the child is stopped (SIGSTOP) for 30 s mid-run, then continued
/// (SIGCONT). While it is stopped the server gets at most the one request
/// already on the wire and closes the quiet connection (idle timeout 5 s);
/// after it continues, its requests time out or find the connection closed
/// and are retried, and it completes with all 200 000 points on the server,
/// each once.
#[cfg(target_os = "linux")]
#[test]
fn a_process_stopped_for_thirty_seconds_loses_nothing() {
    let server = TestServer::start();
    server.set_counting(true);
    server.set_idle_timeout(Some(Duration::from_secs(5)));
    let work = tempfile::tempdir().unwrap();
    let total = R8_THREADS * R8_POINTS;
    let child = Command::new(env!("CARGO_BIN_EXE_ml-dash-test-child"))
        .args(["sink_remote_stall", "r8", &server.url()])
        .args([R8_THREADS, R8_POINTS].map(|n| n.to_string()))
        .arg(R8_RATE.to_string())
        .env("XDG_CACHE_HOME", work.path()) // the remote-only work area
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let name = "exp-sigstop";
    assert!(
        server.wait_for(Duration::from_secs(60), |st| st.point_count(name, "train")
            >= total / 10),
        "the child sent nothing"
    );
    signal(pid, libc::SIGSTOP);
    let end = Instant::now() + Duration::from_secs(10);
    while !all_threads_stopped(pid) {
        assert!(Instant::now() < end, "the child did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (at_stop, idle_at_stop) = {
        let st = server.state();
        (st.point_count(name, "train"), st.idle_closed)
    };
    // Keeping the child stopped for 30 s is the scenario itself.
    std::thread::sleep(R8_STOP);
    let (before_cont, idle_before_cont) = {
        let st = server.state();
        (st.point_count(name, "train"), st.idle_closed)
    };
    signal(pid, libc::SIGCONT);
    let out = match rx.recv_timeout(Duration::from_secs(180)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            signal(pid, libc::SIGKILL);
            panic!("the child did not finish within 180 s of SIGCONT");
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("RESULT ok"), "the child ran: {stdout}");
    let spool = work.path().join(".dash/alice/proj/exp-sigstop/.spool");
    assert_eq!(dir_bytes(&spool), 0, "close sent everything");
    assert!(
        before_cont < total,
        "stopped mid-run: {before_cont} of {total} before SIGCONT"
    );
    assert!(
        before_cont - at_stop <= 1000,
        "nothing but the request on the wire arrived while stopped ({at_stop} -> {before_cont})"
    );
    assert!(
        idle_before_cont > idle_at_stop,
        "the server closed the stopped client's connection when it went quiet"
    );
    assert!(
        server.wait_for(Duration::from_secs(30), |st| st.point_count(name, "train")
            >= total),
        "lost: {} of {total} points",
        server.state().point_count(name, "train")
    );
    let st = server.state();
    let tally = st.tally(name, "train");
    tally.assert_each_once(&[R8_POINTS; R8_THREADS as usize]);
    eprintln!(
        "R8: {at_stop} points at SIGSTOP, {before_cont} before SIGCONT, {} idle closes while \
         stopped ({} mid-request), {} requests, {} answered from the key record, {} points",
        idle_before_cont - idle_at_stop,
        st.idle_mid_request,
        st.request_count,
        st.duplicate_count,
        tally.points
    );
}

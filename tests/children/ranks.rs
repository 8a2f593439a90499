//! The children of `tests/ranks.rs`: the ranks, writers, forked worker and
//! signalled processes it starts with torchrun's variables (or Slurm's),
//! the store at `T_ROOT`. The parent and a child talk over the child's stdin
//! and stdout, one line per step.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ml_dash::{BufferConfig, Error, Experiment, HandleSignals, point, read};
use serde_json::{Value as Json, json};

use crate::ranks_common::{POINTS, PREFIX, env_u64, quiet};

/// Runs `case`.
pub fn main(case: &str) {
    let root = PathBuf::from(std::env::var("T_ROOT").unwrap());
    match case {
        "log" => child_log(&root),
        "open" => child_open(&root),
        "writer" => child_writer(&root),
        "fork_worker" => child_fork_worker(&root),
        "sigterm" => child_sigterm(&root, false),
        "own_handler" => child_sigterm(&root, true),
        "kill9" => child_kill9(&root),
        "pace" => child_pace(),
        other => panic!("unknown case {other}"),
    }
}

fn stdin_line() -> String {
    let mut s = String::new();
    std::io::stdin().read_line(&mut s).unwrap();
    s.trim().to_string()
}

fn say(line: &str) {
    println!("{line}");
    std::io::stdout().flush().unwrap();
}

/// A rank of the rank-mode tests: parameters, a shared and an own file,
/// `POINTS` points, track rows and logs; then (with `T_WAIT`) it waits for
/// a line on stdin before it completes.
fn child_log(root: &Path) {
    let mut e = Experiment::new(PREFIX)
        .dash_root(root)
        .buffer_config(quiet());
    if let Ok(url) = std::env::var("T_URL") {
        e = e.dash_url(url);
    }
    let run = e.run().unwrap();
    let rank = run.ranks().map_or(0, |r| r.rank);
    say(&format!(
        "OPENED recording={} prefix={}",
        run.is_recording(),
        run.prefix()
    ));
    run.params().set(json!({"set_by": rank})).unwrap();
    run.files("cfg")
        .shared()
        .save_text("job.txt", &format!("rank {rank}"))
        .unwrap();
    run.files("own")
        .save_text(&format!("r{rank}.txt"), "mine")
        .unwrap();
    let train = run.metrics("train").unwrap();
    let pose = run.tracks("pose").unwrap();
    for i in 0..POINTS {
        train.log(&point! {"i" => i, "w" => rank}).unwrap();
        if i % 50 == 0 {
            pose.append_at(i as f64, &point! {"x" => i}).unwrap();
            run.log(&format!("rank {rank} step {i}")).unwrap();
        }
    }
    run.flush().unwrap();
    say("LOGGED");
    if std::env::var("T_WAIT").is_ok() {
        assert_eq!(stdin_line(), "close");
    }
    run.complete().unwrap();
    say("RESULT ok");
}

/// Opens a shared run and reports the outcome; completes on "close".
fn child_open(root: &Path) {
    match Experiment::new(PREFIX)
        .dash_root(root)
        .buffer_config(quiet())
        .run()
    {
        Ok(run) => {
            say("OPENED");
            assert_eq!(stdin_line(), "close");
            run.complete().unwrap();
        }
        Err(e @ Error::Config { .. }) => say(&format!("ERROR {e}")),
        Err(e) => panic!("{e}"),
    }
}

/// One of several writers of one experiment (no ranks: plain runs of one
/// prefix): `T_POINTS` points `{"w", "i"}` and a log line every 10.
fn child_writer(root: &Path) {
    let w = env_u64("T_WRITER", 0);
    let n = env_u64("T_POINTS", 1000);
    let run = Experiment::new(PREFIX)
        .dash_root(root)
        .buffer_config(quiet())
        .run()
        .unwrap();
    let train = run.metrics("train").unwrap();
    for i in 0..n {
        train.log(&point! {"w" => w, "i" => i}).unwrap();
        if i % 10 == 0 {
            run.logger()
                .info_with("step", &point! {"w" => w, "i" => i})
                .unwrap();
        }
    }
    run.complete().unwrap();
    say("RESULT ok");
}

/// Rank 0 of 2 in shared mode forks a data-loader worker that opens its
/// own run of the same experiment, logs its throughput and completes.
fn child_fork_worker(root: &Path) {
    let open = || {
        Experiment::new(PREFIX)
            .dash_root(root)
            .buffer_config(quiet())
            .run()
            .unwrap()
    };
    let run = open();
    run.params().set(json!({"lr": 0.1})).unwrap();
    let train = run.metrics("train").unwrap();
    for i in 0..10 {
        train.log(&point! {"i" => i}).unwrap();
    }
    run.flush().unwrap();
    // SAFETY: fork in a process whose other threads the child does not
    // need; the child runs only the code below and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(|| {
            let own = open();
            assert!(own.is_recording());
            let loader = own.metrics("loader").unwrap();
            for i in 0..100 {
                loader
                    .log(&point! {"i" => i, "samples_per_s" => 1000})
                    .unwrap();
            }
            own.params().set(json!({"from_worker": true})).unwrap();
            own.complete().unwrap();
        })
        .map_or(1, |()| 0);
        // SAFETY: leaving the forked child without running the parent's exit code.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child; `status` lives here.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the worker failed ({status})"
    );
    for i in 10..20 {
        train.log(&point! {"i" => i}).unwrap();
    }
    run.complete().unwrap();
    say("RESULT ok");
}

/// The program's own SIGTERM handler writes to this pipe.
static OWN_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn own_handler(_: libc::c_int) {
    let b = 1u8;
    // SAFETY: one byte from a local into our pipe (async-signal-safe).
    unsafe { libc::write(OWN_PIPE.load(Ordering::Relaxed), (&raw const b).cast(), 1) };
}

/// Two threads log as fast as they can while the main thread flushes and
/// prints how many points each had logged before the flush ("ACKED a b").
/// With `own`, a SIGTERM handler of the program is installed first; it runs
/// after the engine's drain, and the child reports the status it finds.
fn child_sigterm(root: &Path, own: bool) {
    if own {
        let mut fds = [-1; 2];
        // SAFETY: pipe writes two descriptors into `fds`.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        OWN_PIPE.store(fds[1], Ordering::Relaxed);
        // SAFETY: a zeroed sigaction with our handler and an empty mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = own_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut()), 0);
        }
        std::thread::spawn(move || {
            let mut b = [0u8];
            // SAFETY: reading one byte from our pipe into a local.
            unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
            let doc = read::document(
                Path::new(&std::env::var("T_ROOT").unwrap()),
                PREFIX,
                "experiment.json",
            );
            let status = doc
                .ok()
                .flatten()
                .map_or(Json::Null, |d| d["status"].clone());
            say(&format!("HANDLER status={status}"));
            std::process::exit(0);
        });
    }
    let mut e = Experiment::new(PREFIX)
        .dash_root(root)
        .buffer_config(quiet());
    if own {
        e = e.handle_signals(HandleSignals::TermAndInt);
    } // else: ML_DASH_HANDLE_SIGNALS from the parent
    let run = e.run().unwrap();
    let train = run.metrics("train").unwrap();
    // Each thread logs up to `allowed`, which grows by `BURST` per flush:
    // heavy logging at any moment, and a bounded store for the checks.
    const BURST: u64 = 10_000;
    let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let allowed = Arc::new(AtomicU64::new(BURST));
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (train, counts, allowed) = (train.clone(), counts.clone(), allowed.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                loop {
                    // Acquire: pairs with the main thread's Release raise.
                    while i >= allowed.load(Ordering::Acquire) {
                        std::thread::park();
                    }
                    if train.log(&point! {"t" => t, "i" => i}).is_err() {
                        return; // closed by the signal
                    }
                    i += 1;
                    // Release: the main thread's Acquire load sees the log before it.
                    counts[t as usize].store(i, Ordering::Release);
                }
            })
        })
        .collect();
    loop {
        let acked = [
            counts[0].load(Ordering::Acquire),
            counts[1].load(Ordering::Acquire),
        ];
        if run.flush().is_err() {
            break; // closed by the signal
        }
        say(&format!("ACKED {} {}", acked[0], acked[1]));
        allowed.fetch_add(BURST, Ordering::Release);
        for t in &threads {
            t.thread().unpark();
        }
    }
    // The signal's default action ends the process (or the own handler's
    // thread exits it); a child still here after its drain is a failure.
    loop {
        std::thread::park();
    }
}

/// Logs and acknowledges ("ACKED n" after each flush) until it is killed.
fn child_kill9(root: &Path) {
    let run = Experiment::new(PREFIX)
        .dash_root(root)
        .buffer_config(quiet())
        .run()
        .unwrap();
    let train = run.metrics("train").unwrap();
    let mut i = 0u64;
    loop {
        for _ in 0..1000 {
            train.log(&point! {"i" => i}).unwrap();
            run.log(&format!("line {i}")).unwrap();
            i += 1;
        }
        run.flush().unwrap();
        say(&format!("ACKED {i}"));
    }
}

/// A rank of the simulation: a remote-only run of the shared experiment
/// logging one point of 4 fields every `1 / T_RATE` s for `T_SECS` s,
/// paced by the clock (a rate to hold, not a wait for another thread).
fn child_pace() {
    let rate = env_u64("T_RATE", 1000);
    let secs = env_u64("T_SECS", 10);
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    let run = Experiment::new(PREFIX)
        .dash_url(std::env::var("T_URL").unwrap())
        .remote_only()
        .buffer_config(cfg)
        .run()
        .unwrap();
    let train = run.metrics("train").unwrap();
    let start = Instant::now();
    for k in 0..rate * secs {
        let due = start + Duration::from_secs_f64(k as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let x = k as f64;
        train
            .log(&point! {"step" => k, "loss" => 1.0 / (x + 1.0), "acc" => x / 1e6, "lr" => 1e-3})
            .unwrap();
    }
    run.complete().unwrap();
    say("RESULT ok");
}

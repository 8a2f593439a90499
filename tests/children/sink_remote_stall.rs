//! The child of `tests/sink_remote_stall.rs` (R8, the process stopped for
//! 30 s): `r8 <url> <threads> <points> <rate>` logs `points` points `{"t",
//! "i"}` from each of `threads` threads to the server at `rate` points/s per
//! thread, remote only (the spool in the working folder), then completes
//! the run and prints `RESULT ok`. The test checks that the spool is empty.

use std::time::{Duration, Instant};

use ml_dash::{BufferConfig, Experiment, point};

/// Runs the child `args` name.
pub fn main(args: &[&str]) {
    match *args {
        ["r8", url, threads, points, rate] => r8(
            url,
            threads.parse().unwrap(),
            points.parse().unwrap(),
            rate.parse().unwrap(),
        ),
        _ => panic!("sink_remote_stall: bad arguments {args:?}"),
    }
}

fn r8(url: &str, threads: i64, points: u64, rate: f64) {
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    cfg.retry_base_delay = Duration::from_millis(50);
    cfg.retry_max_delay = Duration::from_millis(500);
    let run = Experiment::new("alice/proj/exp-sigstop")
        .dash_url(url)
        .remote_only()
        .token("test-token")
        .buffer_config(cfg)
        .run()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..threads {
            let m = run.metrics("train").unwrap();
            s.spawn(move || {
                let start = Instant::now();
                for i in 0..points {
                    m.log(&point! {"t" => t, "i" => i}).unwrap();
                    if i % 250 == 249 {
                        let due = start + Duration::from_secs_f64((i + 1) as f64 / rate);
                        if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(ahead);
                        }
                    }
                }
            });
        }
    });
    let report = run.complete().unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    println!("RESULT ok");
}

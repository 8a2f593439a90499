//! `ml-dash follow` as a process: started before the run exists, it prints
//! every log line and the latest metric values as the run is written, and
//! exits by itself once the run's status is final (or its process died).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ml_dash::point;

/// Kills the child if the test has not finished with it within a minute
/// (a safety net for a follower that never ends, not a synchronisation).
fn watchdog(pid: u32) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    });
}

#[test]
fn follows_a_run_from_before_it_exists_to_its_end() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ml-dash"))
        .arg("--dash-root")
        .arg(&root)
        .args(["follow", "o/p/live", "--no-tty", "--interval", "5"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    watchdog(child.id());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("waiting for o/p/live"), "{first}");

    // The run appears only now, and is written in three flushes.
    let run = open(&root, "o/p/live");
    let train = run.metrics("train").unwrap();
    for round in 0..3i64 {
        for step in 0..100 {
            let i = round * 100 + step;
            train
                .log(&point! {"loss" => 1.0 / (1 + i) as f64, "step" => i})
                .unwrap();
        }
        run.log_with(
            ml_dash::Level::Info,
            "round done",
            &point! {"round" => round},
        )
        .unwrap();
        run.flush().unwrap();
    }
    run.complete().unwrap();

    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{rest}");
    let logs: Vec<&str> = rest.lines().filter(|l| l.starts_with("log ")).collect();
    assert_eq!(logs.len(), 3, "{rest}");
    for (i, l) in logs.iter().enumerate() {
        assert!(
            l.ends_with(&format!("INFO  round done {{\"round\":{i}}}")),
            "{l}"
        );
    }
    let last_metric = rest
        .lines()
        .rfind(|l| l.starts_with("metric train"))
        .unwrap();
    assert_eq!(
        last_metric,
        format!(
            "metric train points=300 loss={} step=299",
            ml_dash_cli::out::number(1.0 / 300.0)
        )
    );
    assert_eq!(rest.lines().last(), Some("run o/p/live ended: COMPLETED"));
}

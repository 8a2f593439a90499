//! The children of `tests/config_limits.rs`: the cases that panicked or
//! aborted the process, and those that arm a process-wide fault
//! (`__fault::panic_once`). Each prints its outcome on a line `RESULT ...`.

use ml_dash::__fault::{PanicAt, panic_once};
use ml_dash::{BufferConfig, Error, Experiment, point, read};

/// A loopback port nothing listens on (the remote cases never get to send).
const NO_SERVER: &str = "http://127.0.0.1:1";

/// How an outcome reads in a child's result line.
fn outcome<T>(r: ml_dash::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(Error::Config { name, .. }) => format!("config {name}"),
        Err(Error::Panicked(why)) => format!("panicked {why}"),
        Err(e) => format!("error {e}"),
    }
}

/// `limits` of `tests/config_limits.rs`: the first ring is 256 KiB (the default).
fn limits(memory_budget: usize, max_record_bytes: usize) -> BufferConfig {
    let mut c = BufferConfig::default();
    c.memory_budget = memory_budget;
    c.max_record_bytes = max_record_bytes;
    c.quiet = true;
    c
}

/// Runs `case`, with the settings of the environment.
pub fn main(case: &str) {
    let root = tempfile::tempdir().unwrap();
    let result = match case {
        // Opens a local run (and a remote one, `remote`), logs, completes.
        "local" | "remote" => {
            let mut e = Experiment::new("o/p/child").dash_root(root.path());
            if case == "remote" {
                e = e.dash_url(NO_SERVER);
            }
            match e.run() {
                Ok(run) => outcome(run.log("one line").and_then(|()| run.complete())),
                Err(e) => outcome::<()>(Err(e)),
            }
        }
        // The sender thread panics as it starts.
        "sender_panics" => {
            panic_once(PanicAt::Sender);
            let run = Experiment::new("o/p/child")
                .dash_root(root.path())
                .dash_url(NO_SERVER)
                .run()
                .unwrap();
            run.log("one line").unwrap();
            // The thread dies as it starts, racing this: flushes before its
            // death are fine; every one after it fails (and it does die).
            let flush = loop {
                if let Err(e) = run.flush() {
                    break outcome::<()>(Err(e));
                }
            };
            let again = outcome(run.flush());
            format!(
                "flush: {flush} | again: {again} | close: {}",
                outcome(run.complete())
            )
        }
        // The sender dies; the local copy of a hybrid run keeps everything.
        // 200 000 points are ~20 MB against a 2 MiB budget: held back for
        // the dead sender, most of them would be lost.
        "sender_dies_local_keeps" => {
            panic_once(PanicAt::Sender);
            let run = Experiment::new("o/p/child")
                .dash_root(root.path())
                .dash_url(NO_SERVER)
                .buffer_config(limits(2 << 20, 1 << 20))
                .run()
                .unwrap();
            let m = run.metrics("train").unwrap();
            while run.flush().is_ok() {}
            for i in 0..200_000u64 {
                m.log(&point! {"i" => i, "loss" => i as f64 * 0.5}).unwrap();
            }
            let close = outcome(run.complete());
            let stored = read::metrics(root.path(), "o/p/child", Some("train")).unwrap();
            let contiguous = stored
                .iter()
                .enumerate()
                .all(|(n, p)| p["data"]["i"] == n as u64 && p["index"] == n as u64);
            format!(
                "stored {} contiguous {contiguous} | close: {close}",
                stored.len()
            )
        }
        // An upload worker panics on the first file.
        "upload_panics" => {
            panic_once(PanicAt::Upload);
            let run = Experiment::new("o/p/child")
                .dash_root(root.path())
                .run()
                .unwrap();
            run.files("d").save_text("first.txt", "1").unwrap();
            let first = outcome(run.flush());
            run.files("d").save_text("second.txt", "2").unwrap();
            let second = outcome(run.flush());
            let close = outcome(run.complete());
            let stored = std::fs::read_dir(root.path().join("o/p/child/files/d"))
                .map(|d| d.count())
                .unwrap_or(0);
            format!("first: {first} | second: {second} | close: {close} | stored: {stored}")
        }
        other => panic!("no case {other}"),
    };
    println!("RESULT {result}");
}

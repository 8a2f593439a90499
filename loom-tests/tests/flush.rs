//! Flush epochs: `flush()` publishes a request epoch (RMW), the collector
//! reads it (Acquire) before it drains, writes everything, publishes the
//! completed epoch (Release) and unparks the waiters.
//!
//! Batches are large here (nothing is written on a batch threshold), so a
//! record is in the sink only if a flush (or close) wrote it.
//!
//! Proves: everything pushed before `flush()` (happens-before: same thread,
//! or a joined one) is in the sink when it returns; two concurrent flushes
//! each cover their own thread's records; a flush racing close returns (never
//! hangs: the waiter's park has no timeout here) with `Ok` -- and then its
//! records are in the sink -- or `Err(Closed)`.

#![cfg(ml_dash_loom)]

use loom::thread;
use ml_dash::Error;
use ml_dash_loom_tests::{config, model, start};

#[test]
fn flush_covers_what_two_producers_pushed_before_it() {
    model(|| {
        let mut run = start(config(100, 256, 1 << 20));
        let producers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let h = run.handle();
                thread::spawn(move || h.log(name).unwrap())
            })
            .collect();
        for p in producers {
            p.join().unwrap(); // happens-before the flush below
        }
        run.handle().flush().unwrap();
        let mut got = run.sink().messages();
        got.sort();
        assert_eq!(got, ["a", "b"]);
        run.close().unwrap();
    });
}

#[test]
fn two_concurrent_flushes_each_cover_their_own_records() {
    model(|| {
        let mut run = start(config(100, 256, 1 << 20));
        let flushers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let h = run.handle();
                let sink = run.sink();
                thread::spawn(move || {
                    h.log(name).unwrap();
                    h.flush().unwrap();
                    let got = sink.messages();
                    assert!(got.iter().any(|m| m == name), "{name} missing: {got:?}");
                })
            })
            .collect();
        for f in flushers {
            f.join().unwrap();
        }
        run.close().unwrap();
    });
}

#[test]
fn flush_racing_close_returns_and_loses_nothing() {
    model(|| {
        let mut run = start(config(100, 256, 1 << 20));
        let h = run.handle();
        let sink = run.sink();
        let flusher = thread::spawn(move || {
            let logged = h.log("a").is_ok();
            match h.flush() {
                Ok(()) => assert!(!logged || sink.messages() == ["a"]),
                Err(Error::Closed) => {}
                Err(e) => panic!("flush racing close: {e}"),
            }
            logged
        });
        let report = run.close().unwrap();
        let logged = flusher.join().unwrap();
        let expect: &[&str] = if logged { &["a"] } else { &[] };
        assert_eq!(run.sink().messages(), expect);
        assert_eq!(report.stored.logs, expect.len() as u64);
    });
}

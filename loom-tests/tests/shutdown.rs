//! Shutdown: close while a producer is mid-push and a flush waits.
//!
//! Proves: no deadlock (every park in the models has no timeout); every push
//! that returned `Ok` is in the sink after close, every other one returned
//! `Err(Closed)` (the `in_push` / `closed` Dekker pair with the asymmetric
//! barrier); the waiting flush returns `Ok` or `Err(Closed)`; close is
//! idempotent (a second close is `Err(Closed)`, a second close request is a
//! no-op) and records the final status once.

#![cfg(ml_dash_loom)]

use loom::thread;
use ml_dash::{Error, Status};
use ml_dash_loom_tests::{config, model, start};

#[test]
fn close_with_a_push_in_flight_and_a_flush_waiting() {
    model(|| {
        let mut run = start(config(100, 256, 1 << 20));
        let h = run.handle();
        let producer = thread::spawn(move || {
            let mut ok = Vec::new();
            for m in ["p0", "p1"] {
                match h.log(m) {
                    Ok(()) => ok.push(m.to_string()),
                    Err(Error::Closed) => {}
                    Err(e) => panic!("push during close: {e}"),
                }
            }
            ok
        });
        let h = run.handle();
        let flusher = thread::spawn(move || match h.flush() {
            Ok(()) | Err(Error::Closed) => {}
            Err(e) => panic!("flush during close: {e}"),
        });
        let report = run.close().unwrap();
        assert!(!run.handle().request_close(), "already closed");
        assert!(matches!(run.close(), Err(Error::Closed)));
        let accepted = producer.join().unwrap();
        flusher.join().unwrap();
        assert_eq!(run.sink().messages(), accepted, "accepted = stored");
        assert_eq!(report.stored.logs, accepted.len() as u64);
        assert_eq!(run.sink().status(), Some(Status::Completed));
    });
}

/// Close while two threads push and a third one's retired ring still holds a
/// record: freeing that ring during the wait for in-flight pushes reorders
/// the collector's chains, and the wait must still cover every pusher.
#[test]
fn close_while_a_retired_ring_is_freed_and_two_threads_push() {
    model(|| {
        let mut run = start(config(100, 256, 1 << 20));
        let h = run.handle();
        thread::spawn(move || h.log("r").unwrap()).join().unwrap();
        let pushers: Vec<_> = ["b", "c"]
            .into_iter()
            .map(|m| {
                let h = run.handle();
                thread::spawn(move || match h.log(m) {
                    Ok(()) => Some(m.to_string()),
                    Err(Error::Closed) => None,
                    Err(e) => panic!("push during close: {e}"),
                })
            })
            .collect();
        let report = run.close().unwrap();
        let mut accepted = vec!["r".to_string()];
        accepted.extend(pushers.into_iter().filter_map(|p| p.join().unwrap()));
        let mut got = run.sink().messages();
        got.sort();
        accepted.sort();
        assert_eq!(got, accepted, "accepted = stored");
        assert_eq!(report.stored.logs, accepted.len() as u64);
    });
}

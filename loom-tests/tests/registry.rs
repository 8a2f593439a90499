//! Registration and retirement: two producer threads each register a ring on
//! their first push (thread-local slot, `Register` message) and retire it when
//! they exit (thread-local destructor, `Retire` message), while the collector
//! sweeps; then the run closes.
//!
//! Proves: a ring registered at any point of the sweep is found; a retired
//! ring is drained before it is freed (its last records arrive although the
//! `Retire` may overtake the sweep that would have drained them); nothing is
//! lost or duplicated; per-thread order is kept; no use after free (loom
//! checks every ring byte access and every model `Arc`).

#![cfg(ml_dash_loom)]

use loom::thread;
use ml_dash_loom_tests::{config, model, start};

#[test]
fn rings_register_and_retire_while_the_collector_sweeps() {
    model(|| {
        // Each registration unparks the collector, which sweeps while the
        // threads register, push and retire (large batches: the records are
        // written at close, so a ring freed before it was drained shows).
        let mut run = start(config(100, 64, 1 << 20));
        let producers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let h = run.handle();
                thread::spawn(move || {
                    h.log(&format!("{name}0")).unwrap();
                    h.log(&format!("{name}1")).unwrap();
                    // The thread ends here: its slot retires the ring.
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let report = run.close().unwrap();
        let mut got = run.sink().messages();
        assert_eq!(report.stored.logs, 4, "sink: {got:?}");
        let a: Vec<_> = got.iter().filter(|m| m.starts_with('a')).cloned().collect();
        assert_eq!(a, ["a0", "a1"], "per-thread order");
        got.sort();
        assert_eq!(got, ["a0", "a1", "b0", "b1"]);
    });
}

//! Collector wake-up: a producer that crosses its batch threshold wakes a
//! collector that is (or is about to be) parked.
//!
//! In the models the collector's timer never fires and its park has no
//! timeout, so the only way the batch reaches the sink is the producer's
//! nudge (`wake_wanted` + `sleeping` + unpark) against the collector's sleep
//! protocol (`sleeping`, then the re-check of `has_work`, then park). A lost
//! wake-up leaves every thread blocked: loom reports it as a deadlock.

#![cfg(ml_dash_loom)]

use loom::thread;
use ml_dash_loom_tests::{config, model, start};

#[test]
fn crossing_the_batch_threshold_wakes_the_collector() {
    model(|| {
        // Batches of 2: the second push is the one that nudges.
        let mut run = start(config(2, 64, 1 << 20));
        let h = run.handle();
        let producer = thread::spawn(move || {
            h.log("x0").unwrap();
            h.log("x1").unwrap();
        });
        // Wait for the batch itself, not for the producer: no flush, no close
        // until it is written, so only the nudge can get it there.
        let got = run.sink().wait_for_messages(2);
        assert_eq!(got, ["x0", "x1"]);
        producer.join().unwrap();
        run.close().unwrap();
    });
}

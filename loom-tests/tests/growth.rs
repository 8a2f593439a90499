//! Growth: a producer whose ring is full replaces it by a larger one, chained
//! after it (`Control::Grow`); the collector drains the old ring completely
//! before it reads the new one.
//!
//! Proves: nothing is lost, nothing duplicated, order is kept across the
//! switch, whatever the collector was doing when the ring filled; with the
//! budget spent instead, the producer waits for the collector (no drop).

#![cfg(ml_dash_loom)]

use loom::thread;
use ml_dash_loom_tests::{config, model, start};

/// Four 32-byte records (`m0`..`m3`): two fill the 64-byte first ring.
const N: usize = 4;

fn check(got: Vec<String>) {
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn full_ring_grows_keeping_order() {
    model(|| {
        // Batches of 2: the collector sweeps while the ring fills.
        let mut run = start(config(2, 64, 1 << 20));
        let h = run.handle();
        let producer = thread::spawn(move || {
            for i in 0..N {
                h.log(&format!("m{i}")).unwrap();
            }
        });
        producer.join().unwrap();
        let report = run.close().unwrap();
        assert_eq!(report.stored.logs, N as u64);
        check(run.sink().messages());
    });
}

#[test]
fn full_ring_at_budget_waits_for_the_collector() {
    model(|| {
        // The budget holds the first ring only: the producer must wait.
        let mut run = start(config(2, 64, 64));
        let h = run.handle();
        let producer = thread::spawn(move || {
            for i in 0..N - 1 {
                h.log(&format!("m{i}")).unwrap();
            }
        });
        producer.join().unwrap();
        let report = run.close().unwrap();
        assert_eq!(report.stored.logs, (N - 1) as u64);
        assert_eq!(report.dropped, 0);
        let got = run.sink().messages();
        assert_eq!(got, ["m0", "m1", "m2"]);
    });
}

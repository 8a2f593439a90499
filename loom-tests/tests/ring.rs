//! Ring hand-off: one producer and one consumer on the loom model of the
//! byte ring (the same framing code as the rtrb wrapper: padding records,
//! whole-record commits, one Release commit per drain).
//!
//! Proves: every record arrives once, whole (no torn byte: loom checks each
//! byte access against the Release/Acquire pair on `tail` and `head`), in
//! order; a full ring refuses without writing; an empty ring yields nothing;
//! a record that does not fit before the end is preceded by a padding record
//! and written at the start.

#![cfg(ml_dash_loom)]

use loom::thread;
use ml_dash_loom_tests::{model, ring};

/// Lengths chosen for a 64-byte ring: 24 + 32 fill it to 56; 16 does not fit
/// in the last 8 bytes (padding, then the record at 0, once the consumer freed
/// 24); 40 needs the consumer to have freed up to 56.
const RECORDS: [(usize, u8); 4] = [(24, 1), (32, 2), (16, 3), (40, 4)];

#[test]
fn variable_records_wrap_fill_and_drain_in_order() {
    model(|| {
        let (mut p, mut c) = ring::channel(64);
        assert_eq!(p.capacity(), 64);
        let producer = thread::spawn(move || {
            for (len, tag) in RECORDS {
                // Full: nothing is written; wait for the consumer.
                while !p.try_write(len, tag) {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < RECORDS.len() {
            let batch = c.drain();
            if batch.is_empty() {
                thread::yield_now(); // empty (or only padding so far)
            }
            got.extend(batch);
        }
        producer.join().unwrap();
        assert_eq!(got, RECORDS);
        assert!(c.is_empty());
        assert!(c.drain().is_empty());
    });
}

#[test]
fn full_ring_refuses_and_recovers() {
    model(|| {
        let (mut p, mut c) = ring::channel(64);
        // Fill it completely before the consumer starts.
        assert!(p.try_write(32, 1));
        assert!(p.try_write(32, 2));
        assert!(!p.try_write(16, 3), "a full ring refuses");
        let producer = thread::spawn(move || {
            while !p.try_write(48, 3) {
                thread::yield_now();
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            let batch = c.drain();
            if batch.is_empty() {
                thread::yield_now();
            }
            got.extend(batch);
        }
        producer.join().unwrap();
        assert_eq!(got, [(32, 1), (32, 2), (48, 3)]);
    });
}

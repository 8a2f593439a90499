//! The collector against the in-memory sink, with std threads: the registry,
//! flush-epoch and shutdown protocols end to end (what `loom-tests/` models
//! exhaustively, here on real threads; these also run under Miri and TSan,
//! see `loom-tests/sanitizers.sh`).

use std::time::Duration;

use crate::__loom::start;
use crate::config::BufferConfig;
use crate::error::Error;

fn config(batch: usize, ring: usize) -> BufferConfig {
    BufferConfig {
        log_batch_size: batch,
        metric_batch_size: batch,
        track_batch_size: batch,
        ring_capacity: ring,
        flush_interval: Duration::from_secs(3600),
        quiet: true,
        ..BufferConfig::default()
    }
}

#[test]
fn retired_rings_are_drained_before_they_are_freed() {
    let mut run = start(config(1000, 64));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let h = run.handle();
            crate::sync::thread::spawn(move || {
                for i in 0..50 {
                    h.log(&format!("{t}-{i}")).unwrap();
                }
                // This thread's ring is registered and charged until the
                // thread exits (its producer's drop sends `Retire`).
                assert!(h.ring_bytes() >= 64, "thread {t}: its ring is counted");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every thread has exited, so every ring is retired; a flush drains them
    // (its pass reads the `Retire`s sent before it) and frees each drained
    // retired ring, releasing its charge: none is left while the run goes on.
    let h = run.handle();
    h.flush().unwrap();
    assert_eq!(h.ring_bytes(), 0, "every retired ring was freed");
    let report = run.close().unwrap();
    assert_eq!(report.stored.logs, 200);
    let got = run.sink().messages();
    for t in 0..4 {
        let mine: Vec<_> = got
            .iter()
            .filter(|m| m.starts_with(&format!("{t}-")))
            .cloned()
            .collect();
        let want: Vec<_> = (0..50).map(|i| format!("{t}-{i}")).collect();
        assert_eq!(mine, want, "thread {t}: order and completeness");
    }
}

#[test]
fn a_record_that_can_never_fit_is_an_error_at_once() {
    // Settings `validate` refuses (a 1 KiB ring, a 1.5 KiB budget, 1 MiB
    // records): a 2 KB line needs a 2 KB ring beside the first one, which
    // the budget never has room for. Before, the producer waited forever.
    let mut cfg = config(1000, 1024);
    cfg.memory_budget = 1536;
    let mut run = start(cfg);
    let h = run.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send((h.log(&"x".repeat(2000)), h.log(&"y".repeat(500))));
    });
    let (big, small) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the 2 KB line waited for room that never comes");
    match big {
        Err(Error::RecordTooLarge { size, limit }) => assert_eq!((size, limit), (2024, 1024)),
        other => panic!("{other:?}"),
    }
    small.unwrap();
    let report = run.close().unwrap();
    assert_eq!(report.stored.logs, 1);
}

#[test]
fn flush_covers_everything_pushed_before_it() {
    let mut run = start(config(1000, 256));
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let h = run.handle();
            let sink = run.sink();
            crate::sync::thread::spawn(move || {
                for round in 0..5 {
                    h.log(&format!("{t}-{round}")).unwrap();
                    h.flush().unwrap();
                    let got = sink.messages();
                    assert!(got.contains(&format!("{t}-{round}")), "{got:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(run.close().unwrap().stored.logs, 15);
}

#[test]
fn full_rings_grow_and_keep_order() {
    let mut run = start(config(1000, 64));
    let h = run.handle();
    for i in 0..100 {
        h.log(&format!("m{i}")).unwrap();
    }
    h.flush().unwrap();
    let want: Vec<_> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(run.sink().messages(), want);
    run.close().unwrap();
}

#[test]
fn close_is_idempotent_and_later_calls_are_refused() {
    let mut run = start(config(2, 64));
    let h = run.handle();
    h.log("a").unwrap();
    let report = run.close().unwrap();
    assert_eq!(report.stored.logs, 1);
    assert!(matches!(run.close(), Err(Error::Closed)));
    assert!(!h.request_close());
    assert!(matches!(h.log("b"), Err(Error::Closed)));
    assert!(matches!(h.flush(), Err(Error::Closed)));
    assert_eq!(run.sink().messages(), ["a"]);
}

#[test]
fn a_failing_sink_fails_the_flush_and_keeps_the_data() {
    let mut run = start(config(1000, 256));
    let h = run.handle();
    let sink = run.sink();
    sink.set_failing(true);
    h.log("kept").unwrap();
    assert!(matches!(h.flush(), Err(Error::Sink(_))));
    assert!(sink.messages().is_empty());
    sink.set_failing(false);
    h.flush().unwrap();
    assert_eq!(sink.messages(), ["kept"]);
    run.close().unwrap();
}

#[test]
fn a_flush_after_drops_fails_even_when_the_store_is_back() {
    // 20 000 lines (~1 MB) through rings capped at 64 KiB: the collector
    // drains while the sink fails, holds 32 KiB and drops the rest before
    // the producer finishes; then the sink recovers.
    let mut cfg = config(1000, 1024);
    cfg.memory_budget = 64 * 1024;
    let mut run = start(cfg);
    let sink = run.sink();
    sink.set_failing(true);
    let h = run.handle();
    for i in 0..20_000 {
        h.log(&format!("line {i}")).unwrap();
    }
    sink.set_failing(false);
    // The store takes what was held, but lines logged before the flush
    // were dropped: the flush says so.
    let e = h.flush().unwrap_err();
    assert!(
        e.to_string().contains("dropped while the store failed"),
        "{e}"
    );
    h.log("after").unwrap();
    h.flush().unwrap(); // nothing dropped since the last flush
    let report = run.close().unwrap();
    assert!(report.lost_to_store.logs > 0);
    assert_eq!(report.stored.logs + report.lost_to_store.logs, 20_001);
}

#[test]
fn a_failing_sink_never_blocks_producers_and_counts_what_it_drops() {
    let mut cfg = config(1000, 1024);
    cfg.memory_budget = 64 * 1024;
    let mut run = start(cfg);
    let sink = run.sink();
    sink.set_failing(true);
    let n = 20_000;
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let h = run.handle();
            crate::sync::thread::spawn(move || {
                for i in 0..n {
                    h.log(&format!("{t}-{i}")).unwrap();
                }
                // Everything was accepted: the flush reports the store's error.
                assert!(matches!(h.flush(), Err(Error::Sink(_))));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    sink.set_failing(false);
    let h = run.handle();
    h.log("after").unwrap();
    h.flush().unwrap();
    let report = run.close().unwrap();
    let got = sink.messages();
    let lost = report.lost_to_store;
    assert!(lost.logs > 0, "a 32 KiB hold cannot keep 40 000 lines");
    assert_eq!((lost.metrics, lost.tracks, report.dropped), (0, 0, 0));
    assert_eq!(report.stored.logs, got.len() as u64);
    assert_eq!(
        got.len() as u64 + lost.logs,
        2 * n + 1,
        "logged = stored + lost"
    );
    assert_eq!(got.last().map(String::as_str), Some("after"));
    for t in 0..2 {
        let mine: Vec<u64> = (got.iter())
            .filter_map(|m| m.strip_prefix(&format!("{t}-"))?.parse().ok())
            .collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "order kept");
    }
}

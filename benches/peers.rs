//! Peers: the producer-side cost of one call, ours against what a user would
//! pick instead, in one process and one run.
//!
//! Results (see perf/RESULTS.md for the machine line, the date and the tables):
//!
//! | case | p50 ns | p99 ns |
//! |---|---|---|
//! | see perf/RESULTS.md | | |
//!
//! Each case is timed with the paced harness of `common` (batches of 20 calls
//! timed with rdtsc, divided by 20, then a ~2 µs pause; the first tenth is
//! warm-up), with a consumer on another thread:
//!
//! - `rtrb push (floor)`: a 32-byte record pushed into a per-producer rtrb ring
//!   of 512 KiB, no clock; a consumer sweeps every ring every ~1 ms;
//! - `crossbeam try_send`: one shared bounded crossbeam channel, drained every ~1 ms;
//! - `std sync_channel try_send`: one shared std `sync_channel`, drained every ~1 ms;
//! - `tracing json appender`: a `tracing` event through the fmt JSON layer,
//!   written by `tracing-appender` non_blocking to a file in a tempdir (its
//!   worker thread is the consumer);
//! - `ml_dash log`: `metrics("train").log(&point!{"loss" => x})` with the run's
//!   collector running;
//! - with `--features tracing` (issue 17's bridge), three more:
//!   `ml_dash logger.log`, the engine's log call with a target and a field
//!   (`logger.log(Info, "", &point!{"target" => "train", "loss" => x})`);
//!   `tracing -> ml_dash log`, the same event as the appender's
//!   (`tracing::info!(target: "train", loss = x)`) through the registry and
//!   `ml_dash::tracing::Layer`, which stores that log; and
//!   `tracing -> ml_dash metric`, `info!(metric.loss = x)` through it (a point in
//!   `train`).
//!
//! First at 1 producer thread, then at 2 (each producer its own histogram,
//! `2p/t0` and `2p/t1`). With 2 producers on a 2-core machine the consumer
//! shares a core with a producer: label such results oversubscribed.
//!
//! The case setup (rings, channels, the run) is made afresh for each round and
//! dropped after it, so no other case's consumer runs meanwhile. A full run
//! makes 5 rounds and prints, per case, the median over rounds of each
//! percentile (the same line format as `common::report`), then the spread
//! (min-max over rounds) of p50 and p99.
//!
//! `cargo bench --bench peers` (`-- --quick` for a smoke pass of a few seconds;
//! `--features tracing` for the bridge's cases).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{paced, report, tick_rate};
use hdrhistogram::Histogram;
use ml_dash::{BufferConfig, Experiment, point};

/// 512 KiB of 32-byte records, as in PERF.md's floor row.
const RING_SLOTS: usize = 512 * 1024 / 32;
/// Capacity of the shared channels (records).
const CHANNEL_CAP: usize = 1 << 16;
/// How often the consumers drain.
const DRAIN_EVERY: Duration = Duration::from_millis(1);

/// The record the queue peers carry: 32 bytes, like a small binary log record.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Rec {
    seq: u64,
    bits: u64,
    stream: u64,
    aux: u64,
}

const _: () = assert!(std::mem::size_of::<Rec>() == 32);

/// What one case measured in one round.
struct Outcome {
    /// One histogram per producer thread.
    hists: Vec<Histogram<u64>>,
    /// Calls that did not get their record in (queue full, lossy peers).
    dropped: u64,
    /// Records the consumer side saw (where it can tell).
    received: Option<u64>,
    /// Calls made (warm-up included).
    sent: u64,
    /// Longest gap between two consumer sweeps, where the case has such a consumer.
    gap: Option<Duration>,
}

/// A consumer thread that calls `sweep` every ~1 ms until stopped, and once
/// more after; it returns the sum of what the sweeps returned and the longest
/// gap between two sweeps (how long the scheduler kept it off a core).
struct Drain {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(u64, Duration)>,
}

impl Drain {
    fn start(mut sweep: impl FnMut() -> u64 + Send + 'static) -> Drain {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::Builder::new()
            .name("peers-consumer".into())
            .spawn(move || {
                let mut n = 0;
                let mut gap = Duration::ZERO;
                let mut last = Instant::now();
                while !flag.load(Ordering::Acquire) {
                    thread::sleep(DRAIN_EVERY);
                    let now = Instant::now();
                    gap = gap.max(now - last);
                    last = now;
                    n += sweep();
                }
                (n + sweep(), gap)
            })
            .unwrap();
        Drain { stop, handle }
    }

    fn stop(self) -> (u64, Duration) {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap()
    }
}

type Producer<'a> = Box<dyn FnOnce(&Barrier) -> (Histogram<u64>, u64) + Send + 'a>;

/// Runs the producers against a consumer thread, then stops it: the outcome
/// of a queue case.
fn run_against(work: Vec<Producer<'_>>, drain: Drain, batches: usize) -> Outcome {
    let producers = work.len() as u64;
    let (hists, dropped) = run_producers(work);
    let (received, gap) = drain.stop();
    Outcome {
        hists,
        dropped,
        received: Some(received),
        sent: calls(batches) * producers,
        gap: Some(gap),
    }
}

/// Runs the producers together (each on its own thread, started at a barrier)
/// and returns their histograms and the sum of their drop counts.
fn run_producers(producers: Vec<Producer<'_>>) -> (Vec<Histogram<u64>>, u64) {
    let barrier = Barrier::new(producers.len());
    thread::scope(|s| {
        let joins: Vec<_> = producers
            .into_iter()
            .enumerate()
            .map(|(t, p)| {
                let b = &barrier;
                thread::Builder::new()
                    .name(format!("peers-producer-{t}"))
                    .spawn_scoped(s, move || p(b))
                    .unwrap()
            })
            .collect();
        let mut hists = Vec::new();
        let mut dropped = 0;
        for j in joins {
            let (h, d) = j.join().unwrap();
            hists.push(h);
            dropped += d;
        }
        (hists, dropped)
    })
}

fn calls(batches: usize) -> u64 {
    ((batches + batches / 10) * 20) as u64
}

/// (a) the floor: a per-producer rtrb ring, a 32-byte record, no clock.
fn case_rtrb(producers: usize, batches: usize, rate: f64) -> Outcome {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..producers)
        .map(|_| rtrb::RingBuffer::<Rec>::new(RING_SLOTS))
        .unzip();
    let mut rxs = rxs;
    let drain = Drain::start(move || {
        let mut n = 0u64;
        let mut sum = 0u64;
        for rx in &mut rxs {
            let k = rx.slots();
            if k == 0 {
                continue;
            }
            let chunk = rx.read_chunk(k).unwrap();
            let (a, b) = chunk.as_slices();
            for r in a.iter().chain(b) {
                sum = sum.wrapping_add(r.bits ^ r.seq);
            }
            chunk.commit_all();
            n += k as u64;
        }
        std::hint::black_box(sum);
        n
    });
    let work: Vec<Producer<'_>> = txs
        .into_iter()
        .enumerate()
        .map(|(t, mut tx)| -> Producer<'_> {
            Box::new(move |b: &Barrier| {
                b.wait();
                let (mut i, mut dropped) = (0u64, 0u64);
                let h = paced(batches, rate, || {
                    i += 1;
                    let rec = Rec {
                        seq: i,
                        bits: (i as f64).to_bits(),
                        stream: t as u64,
                        aux: 0,
                    };
                    if tx.push(rec).is_err() {
                        dropped += 1;
                    }
                });
                (h, dropped)
            })
        })
        .collect();
    run_against(work, drain, batches)
}

/// (b) one shared bounded crossbeam channel, `try_send`.
fn case_crossbeam(producers: usize, batches: usize, rate: f64) -> Outcome {
    case_queue(
        producers,
        batches,
        rate,
        crossbeam_channel::bounded::<Rec>(CHANNEL_CAP),
        |tx, r| tx.try_send(r).is_ok(),
        |rx| rx.try_iter().map(checksum).sum(),
    )
}

/// (c) one shared std `sync_channel`, `try_send`.
fn case_std(producers: usize, batches: usize, rate: f64) -> Outcome {
    case_queue(
        producers,
        batches,
        rate,
        std::sync::mpsc::sync_channel::<Rec>(CHANNEL_CAP),
        |tx, r| tx.try_send(r).is_ok(),
        |rx| rx.try_iter().map(checksum).sum(),
    )
}

/// Reads a record the way a consumer would (so the compiler keeps the work).
fn checksum(r: Rec) -> u64 {
    std::hint::black_box(r.bits ^ r.seq);
    1
}

/// A bounded queue shared by the producers: `try_send` counts a full queue as
/// a drop; the consumer thread empties it every `DRAIN_EVERY` with `drain`
/// (which returns how many records it took). Closures, not fn pointers, so
/// each queue's `try_send` is inlined as it was in its own function.
fn case_queue<Tx, Rx>(
    producers: usize,
    batches: usize,
    rate: f64,
    (tx, rx): (Tx, Rx),
    try_send: impl Fn(&Tx, Rec) -> bool + Copy + Send,
    drain: impl Fn(&Rx) -> u64 + Send + 'static,
) -> Outcome
where
    Tx: Clone + Send,
    Rx: Send + 'static,
{
    let drain = Drain::start(move || drain(&rx));
    let work: Vec<Producer<'_>> = (0..producers)
        .map(|t| -> Producer<'_> {
            let tx = tx.clone();
            Box::new(move |b: &Barrier| {
                b.wait();
                let (mut i, mut dropped) = (0u64, 0u64);
                let h = paced(batches, rate, || {
                    i += 1;
                    let rec = Rec {
                        seq: i,
                        bits: (i as f64).to_bits(),
                        stream: t as u64,
                        aux: 0,
                    };
                    if !try_send(&tx, rec) {
                        dropped += 1;
                    }
                });
                (h, dropped)
            })
        })
        .collect();
    drop(tx);
    run_against(work, drain, batches)
}

/// (d) `tracing` + fmt JSON layer + `tracing-appender` non_blocking to a file.
fn case_tracing(producers: usize, batches: usize, rate: f64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let file = tracing_appender::rolling::never(dir.path(), "peers.jsonl");
    let (writer, guard) = tracing_appender::non_blocking(file);
    let lost = writer.error_counter();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let work: Vec<Producer<'_>> = (0..producers)
        .map(|_| -> Producer<'_> {
            let d = dispatch.clone();
            Box::new(move |b: &Barrier| {
                let _scope = tracing::dispatcher::set_default(&d);
                b.wait();
                let mut i = 0u64;
                let h = paced(batches, rate, || {
                    i += 1;
                    tracing::info!(target: "train", loss = i as f64);
                });
                (h, 0)
            })
        })
        .collect();
    let (hists, _) = run_producers(work);
    drop(dispatch);
    drop(guard); // flushes the worker's queue to the file
    Outcome {
        hists,
        dropped: lost.dropped_lines() as u64,
        received: None,
        sent: calls(batches) * producers as u64,
        gap: None,
    }
}

/// (e) ours: `metrics("train").log(&point!{"loss" => x})`, collector running.
fn case_ml_dash(producers: usize, batches: usize, rate: f64) -> Outcome {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    let run = Experiment::new(format!("bench/peers/p{producers}"))
        .dash_root(root.path())
        .buffer_config(cfg)
        .run()
        .unwrap();
    let work: Vec<Producer<'_>> = (0..producers)
        .map(|_| -> Producer<'_> {
            let m = run.metrics("train").unwrap();
            Box::new(move |b: &Barrier| {
                b.wait();
                let (mut i, mut dropped) = (0u64, 0u64);
                let h = paced(batches, rate, || {
                    i += 1;
                    if m.log(&point! {"loss" => i as f64}).is_err() {
                        dropped += 1;
                    }
                });
                (h, dropped)
            })
        })
        .collect();
    let (hists, failed) = run_producers(work);
    let report = run.complete().unwrap();
    Outcome {
        hists,
        dropped: failed + report.dropped,
        received: Some(report.stored.metrics),
        sent: calls(batches) * producers as u64,
        gap: None,
    }
}

/// With `--features tracing`: the engine behind `tracing`, beside the
/// appender. What an event costs through `ml_dash::tracing::Layer` (on the
/// registry, as the appender's fmt layer is) against the engine's own call
/// with the same fields.
#[cfg(feature = "tracing")]
mod bridge {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// How the producers call: `Some(layer)` through `tracing`, else the
    /// engine's `Logger::log` directly.
    fn case(producers: usize, batches: usize, rate: f64, how: How) -> Outcome {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = BufferConfig::default();
        cfg.quiet = true;
        let run = Experiment::new(format!("bench/peers/bridge-p{producers}"))
            .dash_root(root.path())
            .buffer_config(cfg)
            .run()
            .unwrap();
        let layer = ml_dash::tracing::Layer::new(&run)
            .metrics_stream("train")
            .unwrap();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let work: Vec<Producer<'_>> = (0..producers)
            .map(|_| -> Producer<'_> {
                let (d, logger) = (dispatch.clone(), run.logger());
                Box::new(move |b: &Barrier| {
                    let _scope = tracing::dispatcher::set_default(&d);
                    b.wait();
                    let (mut i, mut dropped) = (0u64, 0u64);
                    let h = paced(batches, rate, || {
                        i += 1;
                        let x = i as f64;
                        match how {
                            How::Logger => {
                                let meta = point! {"target" => "train", "loss" => x};
                                if logger.log(ml_dash::Level::Info, "", &meta).is_err() {
                                    dropped += 1;
                                }
                            }
                            How::LayerLog => tracing::info!(target: "train", loss = x),
                            How::LayerMetric => tracing::info!(metric.loss = x),
                        }
                    });
                    (h, dropped)
                })
            })
            .collect();
        let (hists, failed) = run_producers(work);
        drop(dispatch);
        let report = run.complete().unwrap();
        Outcome {
            hists,
            dropped: failed + report.dropped,
            received: Some(report.stored.logs + report.stored.metrics),
            sent: calls(batches) * producers as u64,
            gap: None,
        }
    }

    #[derive(Clone, Copy)]
    enum How {
        Logger,
        LayerLog,
        LayerMetric,
    }

    pub(super) fn logger(p: usize, b: usize, r: f64) -> Outcome {
        case(p, b, r, How::Logger)
    }

    pub(super) fn layer_log(p: usize, b: usize, r: f64) -> Outcome {
        case(p, b, r, How::LayerLog)
    }

    pub(super) fn layer_metric(p: usize, b: usize, r: f64) -> Outcome {
        case(p, b, r, How::LayerMetric)
    }
}

type Case = fn(usize, usize, f64) -> Outcome;

/// name, function, batches in quick and full mode (tracing is ~500x slower
/// per call, so it gets fewer batches).
fn cases() -> Vec<(&'static str, Case, usize, usize)> {
    let cases: Vec<(&str, Case, usize, usize)> = vec![
        ("rtrb push (floor)", case_rtrb, 2_000, 100_000),
        ("crossbeam try_send", case_crossbeam, 2_000, 100_000),
        ("std sync_channel", case_std, 2_000, 100_000),
        ("tracing json appender", case_tracing, 300, 15_000),
        ("ml_dash log", case_ml_dash, 2_000, 100_000),
    ];
    #[cfg(feature = "tracing")]
    let cases = [
        cases,
        vec![
            ("ml_dash logger.log", bridge::logger as Case, 2_000, 100_000),
            ("tracing -> ml_dash log", bridge::layer_log, 2_000, 100_000),
            (
                "tracing -> ml_dash metric",
                bridge::layer_metric,
                2_000,
                100_000,
            ),
        ],
    ]
    .concat();
    cases
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// One line in `common::report`'s format, each value the median over rounds
/// of that percentile; then the spread of p50 and p99 over rounds.
fn report_rounds(name: &str, hs: &[Histogram<u64>]) {
    if hs.len() == 1 {
        report(name, &hs[0]);
        return;
    }
    let q = |f: &dyn Fn(&Histogram<u64>) -> u64| median(hs.iter().map(f).collect());
    let p50 = q(&|h| h.value_at_quantile(0.5));
    let p90 = q(&|h| h.value_at_quantile(0.9));
    let p99 = q(&|h| h.value_at_quantile(0.99));
    let p999 = q(&|h| h.value_at_quantile(0.999));
    let max = q(&|h| h.max());
    println!(
        "paced {name:<28} p50 {p50:>5} p90 {p90:>5} p99 {p99:>6} p99.9 {p999:>6} max {max:>8} ns"
    );
    let range = |f: &dyn Fn(&Histogram<u64>) -> u64| {
        let v: Vec<u64> = hs.iter().map(f).collect();
        (*v.iter().min().unwrap(), *v.iter().max().unwrap())
    };
    let (a, b) = range(&|h| h.value_at_quantile(0.5));
    let (c, d) = range(&|h| h.value_at_quantile(0.99));
    println!(
        "spread {name:<27} p50 {a}-{b} p99 {c}-{d} ns over {} rounds",
        hs.len()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let rounds = if quick { 1 } else { 5 };
    let rate = tick_rate();
    let cases = cases();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# peers: {rounds} round(s), tick rate {rate:.3} ticks/ns, {cores} cores, consumer drains every {DRAIN_EVERY:?}"
    );
    for producers in [1usize, 2] {
        if producers + 1 > cores {
            println!(
                "# {producers} producers + consumer on {cores} cores: oversubscribed when the consumer runs"
            );
        }
        // per case: per producer: one histogram per round
        let mut results: Vec<Vec<Vec<Histogram<u64>>>> =
            vec![vec![Vec::new(); producers]; cases.len()];
        for _ in 0..rounds {
            for (k, &(name, case, quick_batches, full_batches)) in cases.iter().enumerate() {
                let batches = if quick { quick_batches } else { full_batches };
                let out = case(producers, batches, rate);
                for (t, h) in out.hists.into_iter().enumerate() {
                    results[k][t].push(h);
                }
                let lost = match out.received {
                    Some(r) => out.dropped.max(out.sent.saturating_sub(r)),
                    None => out.dropped,
                };
                if lost > 0 {
                    let gap = out
                        .gap
                        .map(|g| format!(" (longest consumer gap {:.1} ms)", g.as_secs_f64() * 1e3))
                        .unwrap_or_default();
                    println!(
                        "lost {producers}p {name}: {lost} of {} calls did not get their record through{gap}",
                        out.sent
                    );
                }
            }
        }
        for (k, &(name, ..)) in cases.iter().enumerate() {
            for (t, hs) in results[k].iter().enumerate() {
                let label = if producers == 1 {
                    format!("1p {name}")
                } else {
                    format!("{producers}p/t{t} {name}")
                };
                report_rounds(&label, hs);
            }
        }
    }
}

//! Hot path: one `metrics(..).log(..)` with the collector running.
//!
//! Results: perf/RESULTS.md (machine line, commands, tables).
//!
//! Three measurements:
//! - criterion `log_1_field` / `log_8_fields`: the mean per call over chunks of
//!   1000 back-to-back calls, the run flushed (untimed) between chunks, so the
//!   ring never fills: the call's own cost with the collector running;
//! - criterion `.._saturated`: back-to-back calls with no pause, so the ring fills
//!   and the producer waits for the collector: the mean is the collector's
//!   throughput (and the backpressure wait), not the call;
//! - paced: batches of 20 calls timed with rdtsc, divided by 20, then a short
//!   pause, into an hdrhistogram: p50/p90/p99/p99.9/max per call.
//!
//! `cargo bench --bench hot_path` (`-- --quick` for a smoke pass,
//! `-- --paced-only` to skip the criterion part, `-- --threads N` for N paced
//! producers at once, as `perf/scaling.sh` runs it).

mod common;

use common::{paced, report, tick_rate};
use criterion::{Criterion, criterion_group};
use ml_dash::{BufferConfig, Experiment, Run, point};

fn run(root: &std::path::Path, name: &str) -> Run {
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    Experiment::new(format!("bench/hot/{name}"))
        .dash_root(root)
        .buffer_config(cfg)
        .run()
        .unwrap()
}

/// Times `calls` calls of `f` in chunks of 1000, flushing the run (untimed)
/// after each chunk so the ring never fills.
fn chunked(run: &Run, calls: u64, mut f: impl FnMut()) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    let mut left = calls;
    while left > 0 {
        let n = left.min(1000);
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        total += t0.elapsed();
        left -= n;
        run.flush().unwrap();
    }
    total
}

fn criterion_benches(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let r = run(root.path(), "criterion");
    let m = r.metrics("train").unwrap();
    let mut i = 0i64;
    let one = |i: &mut i64| {
        *i += 1;
        m.log(&point! {"loss" => *i as f64}).unwrap()
    };
    c.bench_function("log_1_field", |b| {
        b.iter_custom(|calls| chunked(&r, calls, || one(&mut i)))
    });
    c.bench_function("log_1_field_saturated", |b| b.iter(|| one(&mut i)));
    let eight = |i: &mut i64| {
        *i += 1;
        let x = *i as f64;
        m.log(&point! {"a" => x, "b" => x, "c" => x, "d" => x, "e" => x, "f" => x, "step" => *i, "epoch" => 1})
            .unwrap()
    };
    c.bench_function("log_8_fields", |b| {
        b.iter_custom(|calls| chunked(&r, calls, || eight(&mut i)))
    });
    c.bench_function("log_8_fields_saturated", |b| b.iter(|| eight(&mut i)));
    r.complete().unwrap();
}

criterion_group!(benches, criterion_benches);

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `--threads N`: N producers run the paced 1-field loop at once into one run.
fn paced_threads(n: usize, batches: usize, rate: f64) {
    let root = tempfile::tempdir().unwrap();
    let r = run(root.path(), "threads");
    let hists: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|t| {
                let m = r.metrics("train").unwrap();
                s.spawn(move || {
                    let mut i = 0i64;
                    paced(batches, rate, || {
                        i += 1;
                        m.log(&point! {"loss" => i as f64, "thread" => t}).unwrap();
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let report_ = r.complete().unwrap();
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for h in &hists {
        all.add(h).unwrap();
    }
    let p50s: Vec<u64> = hists.iter().map(|h| h.value_at_quantile(0.5)).collect();
    let p99s: Vec<u64> = hists.iter().map(|h| h.value_at_quantile(0.99)).collect();
    println!(
        "threads={n} p50={} p99={} p99.9={} max={} per_thread_p50={:?} per_thread_p99={:?} dropped={} stored={}",
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        all.value_at_quantile(0.999),
        all.max(),
        p50s,
        p99s,
        report_.dropped,
        report_.stored.metrics
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let rate = tick_rate();
    let batches = if quick { 2_000 } else { 200_000 };
    if let Some(n) = arg("--threads") {
        paced_threads(n.parse().expect("--threads N"), batches, rate);
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = run(root.path(), "paced");
    let m = r.metrics("train").unwrap();
    let mut i = 0i64;
    let h = paced(batches, rate, || {
        i += 1;
        m.log(&point! {"loss" => i as f64}).unwrap();
    });
    report("log 1 field", &h);
    let h = paced(batches, rate, || {
        i += 1;
        let x = i as f64;
        m.log(&point! {"a" => x, "b" => x, "c" => x, "d" => x, "e" => x, "f" => x, "step" => i, "epoch" => 1})
            .unwrap();
    });
    report("log 8 fields", &h);
    r.complete().unwrap();

    if std::env::args().any(|a| a == "--paced-only") {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

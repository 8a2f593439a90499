//! `flush()` latency with 0, 1 k, 10 k and 100 k records pending; engine
//! memory per producer thread and with 64 threads; the full-ring behaviour
//! (back-to-back producers against a small memory budget, blocking and lossy);
//! the collector thread's CPU per point.
//!
//! `cargo bench --bench flush_memory` (`-- --quick` for a smoke pass).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ml_dash::{Backpressure, BufferConfig, Experiment, Run, point};

fn cfg() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = true;
    c.flush_interval = Duration::from_secs(3600);
    c.metric_batch_size = 10_000_000;
    c
}

fn open(root: &std::path::Path, name: &str, c: BufferConfig) -> Run {
    Experiment::new(format!("bench/flush/{name}"))
        .dash_root(root)
        .buffer_config(c)
        .run()
        .unwrap()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn flush_latency(quick: bool) {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "latency", cfg());
    let m = run.metrics("m").unwrap();
    let reps = if quick { 3 } else { 30 };
    for pending in [0u64, 1_000, 10_000, 100_000] {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for _ in 0..reps {
            for i in 0..pending {
                m.log(&point! {"i" => i, "loss" => i as f64}).unwrap();
            }
            let t = Instant::now();
            run.flush().unwrap();
            h.record(t.elapsed().as_micros() as u64).unwrap();
        }
        println!(
            "flush pending={pending:>6} p50 {:>6} us p99 {:>6} us max {:>6} us ({} runs)",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max(),
            reps
        );
    }
    run.complete().unwrap();
}

fn memory() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "memory", cfg());
    let m = run.metrics("m").unwrap();
    m.log(&point! {"warm" => 1}).unwrap(); // the collector and the clock thread exist
    run.flush().unwrap();
    for n in [1usize, 64] {
        let before = rss_kib();
        let ready = Barrier::new(n + 1);
        let done = Barrier::new(n + 1);
        std::thread::scope(|s| {
            for t in 0..n {
                let (m, ready, done) = (m.clone(), &ready, &done);
                s.spawn(move || {
                    m.log(&point! {"thread" => t}).unwrap(); // registers its ring
                    ready.wait();
                    done.wait();
                });
            }
            ready.wait();
            let during = rss_kib();
            println!(
                "memory threads={n:>2} rss_delta {:>6} KiB per_thread {:>5} KiB (ring_capacity {} KiB, memory_budget {} MiB)",
                during.saturating_sub(before),
                during.saturating_sub(before) / n as u64,
                BufferConfig::default().ring_capacity / 1024,
                BufferConfig::default().memory_budget >> 20
            );
            done.wait();
        });
    }
    run.complete().unwrap();
}

fn full_ring(quick: bool) {
    let n: u64 = if quick { 200_000 } else { 2_000_000 };
    for policy in [Backpressure::Block, Backpressure::DropNewest] {
        let root = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.ring_capacity = 64 * 1024;
        c.memory_budget = 256 * 1024;
        c.max_record_bytes = 64 * 1024;
        c.metric_batch_size = 1000;
        c.backpressure = policy;
        let run = open(root.path(), "full", c);
        let t = Instant::now();
        let worst = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|th| {
                    let m = run.metrics("m").unwrap();
                    s.spawn(move || {
                        let mut worst = Duration::ZERO;
                        for i in 0..n {
                            let c0 = Instant::now();
                            m.log(&point! {"t" => th, "i" => i}).unwrap();
                            worst = worst.max(c0.elapsed());
                        }
                        worst
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).max().unwrap()
        });
        let secs = t.elapsed().as_secs_f64();
        let report = run.complete().unwrap();
        println!(
            "full_ring policy={policy:?} producers=2 points={} points_per_sec {:.0} worst_call {:?} stored {} dropped {}",
            2 * n,
            (2 * n) as f64 / secs,
            worst,
            report.stored.metrics,
            report.dropped
        );
    }
}

/// CPU time (user, system) of this process's thread named `name`, in seconds.
fn thread_cpu(name: &str) -> Option<(f64, f64)> {
    let hz = 100.0; // USER_HZ on Linux
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(name) {
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (u, s): (f64, f64) = (f[11].parse().ok()?, f[12].parse().ok()?);
            return Some((u / hz, s / hz));
        }
    }
    None
}

/// The collector's CPU per point: one producer logs N three-field points, then
/// a flush; the collector thread's user and system time divided by N.
fn collector_cost(quick: bool) {
    let n: i64 = if quick { 200_000 } else { 5_000_000 };
    let root = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.metric_batch_size = 1000;
    let run = open(root.path(), "collector", c);
    let m = run.metrics("train").unwrap();
    for i in 0..n {
        m.log(&point! {"thread" => 0, "i" => i, "loss" => 1.0 / (i + 1) as f64})
            .unwrap();
    }
    run.flush().unwrap();
    let (u, s) = thread_cpu("ml-dash-collect").unwrap_or((f64::NAN, f64::NAN));
    run.complete().unwrap();
    println!(
        "collector points={n} user_ns_per_point {:.0} system_ns_per_point {:.0} (decode + JSONL + write syscalls; USER_HZ resolution)",
        u * 1e9 / n as f64,
        s * 1e9 / n as f64
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    collector_cost(quick);
    flush_latency(quick);
    memory();
    full_ring(quick);
}

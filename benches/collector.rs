//! Collector cost per record, the serializer side: what generic JSON writers
//! cost for the exact metric line the collector writes,
//! `{"index":N,"data":{"loss":x,"step":N,"_ts":t},"createdAt":"..."}\n`,
//! into a reused `Vec` (no I/O).
//!
//! Results (see perf/RESULTS.md for the machine line, the date and the tables):
//!
//! | writer | ns per record |
//! |---|---|
//! | see perf/RESULTS.md | |
//!
//! - `serde_json to_writer`: `serde_json::to_writer` of a `#[derive(Serialize)]` struct;
//! - `simd-json to_writer`: `simd_json::to_writer` of the same struct.
//!
//! The engine's own decode + serialize path is internal to the crate and is
//! not reachable from a bench; its number comes from the end-to-end stress run
//! (`perf/compare.sh`, points/s of the `stress` example).
//!
//! `cargo bench --bench collector` (`-- --quick` for a smoke pass).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use serde::Serialize;

#[derive(Serialize)]
struct Data {
    loss: f64,
    step: u64,
    #[serde(rename = "_ts")]
    ts: f64,
}

#[derive(Serialize)]
struct Line<'a> {
    index: u64,
    data: Data,
    #[serde(rename = "createdAt")]
    created_at: &'a str,
}

/// One batch's `createdAt` (the collector formats it once per batch).
const CREATED_AT: &str = "2026-11-27T22:20:31.123456Z";
/// A wall time in epoch seconds with microseconds, like the collector's `_ts`.
const TS0: f64 = 1_795_818_031.123_456;

fn line(n: u64) -> Line<'static> {
    Line {
        index: n,
        data: Data {
            loss: 1.0 / (n + 1) as f64,
            step: n,
            ts: TS0 + (n % 1000) as f64 * 1e-6,
        },
        created_at: CREATED_AT,
    }
}

fn bytes_per_record() -> u64 {
    let mut v = Vec::new();
    for n in 0..1000 {
        serde_json::to_writer(&mut v, &line(1_000_000 + n)).unwrap();
        v.push(b'\n');
    }
    v.len() as u64 / 1000
}

fn writers(c: &mut Criterion) {
    let mut g = c.benchmark_group("collector_line");
    g.throughput(Throughput::Bytes(bytes_per_record()));
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut n = 1_000_000u64;
    g.bench_function("serde_json to_writer", |b| {
        b.iter(|| {
            if buf.len() > (1 << 20) - 256 {
                buf.clear();
            }
            n += 1;
            serde_json::to_writer(&mut buf, &line(n)).unwrap();
            buf.push(b'\n');
        })
    });
    black_box(&buf);
    buf.clear();
    g.bench_function("simd-json to_writer", |b| {
        b.iter(|| {
            if buf.len() > (1 << 20) - 256 {
                buf.clear();
            }
            n += 1;
            simd_json::to_writer(&mut buf, &line(n)).unwrap();
            buf.push(b'\n');
        })
    });
    black_box(&buf);
    g.finish();
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    // The two writers must produce the same line, or the comparison is moot.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    serde_json::to_writer(&mut a, &line(42)).unwrap();
    simd_json::to_writer(&mut b, &line(42)).unwrap();
    println!("# line: {}", String::from_utf8_lossy(&a));
    if a != b {
        println!("# simd-json writes: {}", String::from_utf8_lossy(&b));
    }
    println!(
        "# bytes per record: {} (with the newline)",
        bytes_per_record()
    );
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    if quick {
        c = c
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
            .sample_size(10);
    }
    writers(&mut c);
    c.final_summary();
    println!(
        "# note: the engine's own collector cost (decode + serialize) is not reachable from \
         outside the crate; its number comes from the end-to-end stress run (perf/compare.sh)"
    );
}

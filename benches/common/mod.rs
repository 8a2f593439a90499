//! The paced latency harness shared by the benches (PERF.md, "How to measure
//! fairly here"): batches of 20 calls timed with rdtsc, divided by 20, then a
//! pause of about 2 µs, into an hdrhistogram; the first tenth is warm-up.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions; it only reads the time-stamp counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Ticks per nanosecond, measured against the monotonic clock.
pub fn tick_rate() -> f64 {
    let (t0, c0) = (Instant::now(), ticks());
    while t0.elapsed() < Duration::from_millis(200) {}
    (ticks() - c0) as f64 / t0.elapsed().as_nanos() as f64
}

/// Batches of 20 calls timed together, then a pause; ns per call.
pub fn paced(batches: usize, rate: f64, mut f: impl FnMut()) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).unwrap();
    for b in 0..batches + batches / 10 {
        let c0 = ticks();
        for _ in 0..20 {
            f();
        }
        let c1 = ticks();
        if b >= batches / 10 {
            // skip the warm-up tenth
            h.record((((c1 - c0) as f64 / rate) / 20.0).round() as u64)
                .unwrap();
        }
        let pause = ticks();
        while ticks() - pause < (2_000.0 * rate) as u64 {
            std::hint::spin_loop();
        }
    }
    h
}

pub fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "paced {name:<28} p50 {:>5} p90 {:>5} p99 {:>6} p99.9 {:>6} max {:>8} ns",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

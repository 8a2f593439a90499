//! End-to-end throughput of the remote sink to the loopback test server
//! (spool write, sender, HTTP, server parse), and the collector-side cost
//! of spooling a point. A measurement, not a check: it is `#[ignore]`d.
//!
//! `cargo test --release --test sink_remote_bench -- --ignored --nocapture`

mod support;

use std::time::{Duration, Instant};

use ml_dash::__remote_testing as rt;
use support::{TestServer, config, points, refs};

#[test]
#[ignore]
fn throughput_to_loopback_server() {
    let total: u64 = std::env::var("ML_DASH_BENCH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("| batch | points | end to end (points/s) | spool append (ns/point) | requests |");
    println!("|---|---|---|---|---|");
    for batch in [100u64, 1000, 10_000] {
        let server = TestServer::start();
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            rt::RemoteSink::open(config(&server.url(), "alice/proj/bench", dir.path())).unwrap();
        let data: Vec<Vec<Vec<u8>>> = (0..total / batch)
            .map(|k| points(0, k * batch, batch))
            .collect();
        let t0 = Instant::now();
        let mut in_append = Duration::ZERO;
        for (k, b) in data.iter().enumerate() {
            let a = Instant::now();
            sink.append_metrics(Some("train"), refs(b)).unwrap();
            if k % 16 == 15 {
                sink.sync().unwrap();
            }
            in_append += a.elapsed();
        }
        sink.sync().unwrap();
        assert!(sink.wait_sent(Duration::from_secs(600)));
        let took = t0.elapsed();
        let r = sink.close(Duration::from_secs(10));
        assert!(r.is_drained());
        println!(
            "| {batch} | {total} | {:.0} | {:.0} | {} |",
            total as f64 / took.as_secs_f64(),
            in_append.as_nanos() as f64 / total as f64,
            r.stats.requests
        );
    }
}

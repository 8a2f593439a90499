use ml_dash::{BufferConfig, Experiment, Metrics, point};
#[inline(never)]
fn burst(m: &Metrics, n: i64) {
    for i in 0..n {
        m.log(&point! {"loss" => i as f64}).unwrap();
    }
}
#[inline(never)]
fn burst8(m: &Metrics, n: i64) {
    for i in 0..n {
        let x = i as f64;
        m.log(&point!{"a" => x, "b" => x, "c" => x, "d" => x, "e" => x, "f" => x, "step" => i, "epoch" => 1}).unwrap();
    }
}
fn main() {
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    cfg.memory_budget = 8 << 30;
    cfg.ring_capacity = 64 << 20;
    let root = tempfile::tempdir().unwrap();
    let run = Experiment::new("a/b/c")
        .dash_root(root.path())
        .buffer_config(cfg)
        .run()
        .unwrap();
    let m = run.metrics("train").unwrap();
    burst(&m, 1000);
    let n: i64 = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().unwrap());
    let t = std::time::Instant::now();
    burst(&m, n);
    eprintln!("{:.2} ns/call", t.elapsed().as_nanos() as f64 / n as f64);
    burst8(&m, 100_000);
    run.complete().unwrap();
}

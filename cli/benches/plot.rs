//! `ml-dash plot` on a stream of 10 M points, end to end (a process: read,
//! downsample, draw, encode), terminal and PNG. The stream is written by the
//! engine once into `target/plot-bench` and reused.
//!
//! `cargo bench -p ml-dash-cli --bench plot [-- POINTS]`; results in
//! `perf/RESULTS.md` ("ml-dash plot").

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ml_dash::{BufferConfig, Experiment, point};

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("plot-bench-{n}"));
    let prefix = "bench/plot/run";
    let data = root.join(prefix).join("metrics/train/data.jsonl");
    if !data.exists() {
        let t = Instant::now();
        let mut cfg = BufferConfig::default();
        cfg.quiet = true;
        let run = Experiment::new(prefix)
            .dash_root(&root)
            .buffer_config(cfg)
            .run()
            .unwrap();
        let m = run.metrics("train").unwrap();
        for step in 0..n {
            let loss = 1.0 / (1.0 + step as f64 * 1e-4) + (step % 97) as f64 * 1e-4;
            m.log(&point! {"loss" => loss, "step" => step}).unwrap();
        }
        run.complete().unwrap();
        eprintln!("wrote {n} points in {:.1} s", t.elapsed().as_secs_f64());
    }
    let size = std::fs::metadata(&data).unwrap().len();
    println!(
        "stream: {n} points, {:.0} MiB",
        size as f64 / (1 << 20) as f64
    );
    let png = root.join("plot.png");
    for (what, extra) in [
        ("terminal", vec!["--width", "120", "--height", "30"]),
        ("png", vec!["--png", png.to_str().unwrap()]),
    ] {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_ml-dash"))
                .arg("--dash-root")
                .arg(&root)
                .args(["plot", prefix, "--metric", "train", "--field", "loss"])
                .args(&extra)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "plot {what}: best of 3 {best:.3} s ({:.1} M points/s)",
            n as f64 / best / 1e6
        );
    }
}

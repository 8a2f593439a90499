//! `ml-dash plot` on a stream of 10 M points, end to end (a process: read,
//! downsample, draw, encode), terminal and PNG. The stream is written by the
//! engine once into `target/plot-bench` and reused. Each chart is drawn
//! first without the stream's block summary (the run builds it), then with it.
//!
//! `cargo bench -p ml-dash-cli --bench plot [-- POINTS]`; results in
//! `perf/RESULTS.md` ("ml-dash plot").

use std::process::Command;
use std::time::Instant;

mod common;

fn plot(root: &std::path::Path, extra: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ml-dash"))
        .arg("--dash-root")
        .arg(root)
        .args([
            "plot",
            common::PREFIX,
            "--metric",
            "train",
            "--field",
            "loss",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn main() {
    let n = common::points_arg();
    let (root, data) = common::store(n);
    let png = root.join("plot.png");
    let png = png.to_str().unwrap();
    for (what, extra) in [
        ("terminal", vec!["--width", "120", "--height", "30"]),
        ("png", vec!["--png", png]),
    ] {
        common::drop_summary(&data);
        let cold = plot(&root, &extra);
        let warm: Vec<f64> = (0..3).map(|_| plot(&root, &extra)).collect();
        let best = warm.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "plot {what}: first (builds the summary) {cold:.3} s; then best of 3 {best:.3} s (all {warm:.3?})"
        );
    }
    let summary = std::fs::metadata(ml_dash::read::summary_path(&data)).map_or(0, |m| m.len());
    println!("summary: {:.1} MiB", summary as f64 / (1 << 20) as f64);
}

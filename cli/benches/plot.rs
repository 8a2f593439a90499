//! `ml-dash plot` on a stream of 10 M points, end to end (a process: read,
//! downsample, draw, encode), terminal and PNG. The stream is written by the
//! engine once into the target folder and reused. Each chart is drawn first
//! on the block summary the engine kept as it wrote the stream, then
//! without one (the run builds it, as for a stream the SDK wrote), then with
//! the one it stored.
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
        common::engine_summary(&data);
        let engines = plot(&root, &extra);
        common::drop_summary(&data);
        let cold = plot(&root, &extra);
        let warm: Vec<f64> = (0..3).map(|_| plot(&root, &extra)).collect();
        let best = warm.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "plot {what}: first, on the summary as the engine wrote it {engines:.3} s; \
             first without one (builds it) {cold:.3} s; then best of 3 {best:.3} s (all {warm:.3?})"
        );
    }
    let summary = std::fs::metadata(ml_dash::read::summary_path(&data)).map_or(0, |m| m.len());
    println!("summary: {:.1} MiB", summary as f64 / (1 << 20) as f64);
}

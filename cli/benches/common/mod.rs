//! The benches' shared store: one metric stream `train` of `n` points
//! (`{"loss","step","_ts"}`), written by the engine once into the target
//! folder and reused, with a copy of the block summary the engine kept.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ml_dash::{BufferConfig, Experiment, point};

/// The run's prefix in [`store`].
pub const PREFIX: &str = "bench/plot/run";

/// Points asked for on the command line (`-- POINTS`), else 10 M.
pub fn points_arg() -> u64 {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000)
}

/// A config that prints nothing.
pub fn quiet() -> BufferConfig {
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    cfg
}

/// The store's root and the stream's `data.jsonl`.
pub fn store(n: u64) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("plot-bench-{n}"));
    let data = root.join(PREFIX).join("metrics/train/data.jsonl");
    if !engines(&data).exists() {
        // (A store an older build wrote has no engine-kept summary.)
        let _ = std::fs::remove_dir_all(&root);
        let t = Instant::now();
        let run = Experiment::new(PREFIX)
            .dash_root(&root)
            .buffer_config(quiet())
            .run()
            .unwrap();
        let m = run.metrics("train").unwrap();
        for step in 0..n {
            let loss = 1.0 / (1.0 + step as f64 * 1e-4) + (step % 97) as f64 * 1e-4;
            m.log(&point! {"loss" => loss, "step" => step}).unwrap();
        }
        run.complete().unwrap();
        eprintln!("wrote {n} points in {:.1} s", t.elapsed().as_secs_f64());
        std::fs::copy(ml_dash::read::summary_path(&data), engines(&data)).unwrap();
    }
    let size = std::fs::metadata(&data).unwrap().len();
    println!(
        "stream: {n} points, {:.0} MiB",
        size as f64 / (1 << 20) as f64
    );
    (root, data)
}

/// Removes the stream's block summary (the next reader builds it).
pub fn drop_summary(data: &Path) {
    let _ = std::fs::remove_file(ml_dash::read::summary_path(data));
}

/// A copy of the block summary the engine kept as it wrote the stream.
fn engines(data: &Path) -> PathBuf {
    data.with_file_name("engine.summary")
}

/// Puts back the block summary as the engine wrote it.
pub fn engine_summary(data: &Path) {
    std::fs::copy(engines(data), ml_dash::read::summary_path(data)).unwrap();
}

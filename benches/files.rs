//! Files: small files per second (1 KiB JSON documents, saved and stored) and
//! MB/s for one large upload, each timed from the first call to the end of
//! `complete()` (everything stored, metadata written).
//!
//! `cargo bench --bench files` (`-- --quick` for a smoke pass).

use std::time::Instant;

use ml_dash::{BufferConfig, Experiment};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let (small, big_mib) = if quick { (200, 16u64) } else { (5_000, 512u64) };
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;

    let root = tempfile::tempdir().unwrap();
    let doc = serde_json::json!({"blob": "x".repeat(1000)});
    let t = Instant::now();
    let run = Experiment::new("bench/files/small")
        .dash_root(root.path())
        .buffer_config(cfg.clone())
        .run()
        .unwrap();
    let files = run.files("docs");
    for i in 0..small {
        files.save_json(&format!("{i}.json"), &doc).unwrap();
    }
    run.complete().unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "files small_json_1kib count={small} seconds={secs:.3} files_per_sec={:.0}",
        small as f64 / secs
    );

    let user = tempfile::tempdir().unwrap();
    let src = user.path().join("big.bin");
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&src).unwrap();
        for _ in 0..big_mib {
            f.write_all(&chunk).unwrap();
        }
    }
    let t = Instant::now();
    let run = Experiment::new("bench/files/big")
        .dash_root(root.path())
        .buffer_config(cfg)
        .run()
        .unwrap();
    run.files("uploads").upload(&src).unwrap();
    run.complete().unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "files upload mib={big_mib} seconds={secs:.3} mb_per_sec={:.0}",
        big_mib as f64 * 1.048576 / secs
    );
}

//! Eight data-loader threads logging into one experiment: each keeps a clone
//! of the stream handles; the main thread flushes and closes.
//!
//! `cargo run --release --example data_loader`

use std::time::Instant;

use ml_dash::{Experiment, point};

fn main() -> ml_dash::Result<()> {
    let run = Experiment::new("alice/imagenet/data-loader").run()?;
    let batches = run.metrics("loader")?;
    let logger = run.logger();
    let start = Instant::now();
    std::thread::scope(|s| -> ml_dash::Result<()> {
        let mut workers = Vec::new();
        for worker in 0..8i64 {
            let (batches, logger) = (batches.clone(), logger.clone());
            workers.push(s.spawn(move || -> ml_dash::Result<()> {
                for batch in 0..50_000i64 {
                    let t = Instant::now();
                    let bytes = (batch * 7919 + worker) % 65_536; // stand-in for decoding
                    batches.log(&point! {
                        "worker" => worker,
                        "batch" => batch,
                        "bytes" => bytes,
                        "load_us" => t.elapsed().as_secs_f64() * 1e6,
                    })?;
                }
                logger.info(&format!("worker {worker} done"))
            }));
        }
        for w in workers {
            w.join().expect("a loader thread panicked")?;
        }
        Ok(())
    })?;
    run.flush()?;
    let report = run.complete()?;
    println!(
        "stored {} points from 8 threads in {:.2}s",
        report.stored.metrics,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

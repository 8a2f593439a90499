//! A per-step training loop: several metrics every step, an eval stream every
//! epoch, and a `flush()` before each checkpoint so the checkpoint never claims
//! steps the store has not seen.
//!
//! `cargo run --release --example training_loop`

use ml_dash::{Experiment, Level, point};

fn main() -> ml_dash::Result<()> {
    let run = Experiment::new("alice/cifar/training-loop")
        .readme("per-step logging with checkpoints")
        .run()?;
    run.params()
        .set(serde_json::json!({"lr": 3e-4, "batch_size": 128, "epochs": 5}))?;
    let train = run.metrics("train")?;
    let eval = run.metrics("eval")?;
    let steps_per_epoch = 2_000;
    let mut weights = 1.0f64;
    for epoch in 0..5i64 {
        for step in 0..steps_per_epoch {
            // Stand-in for forward/backward: a little arithmetic per step.
            weights = weights * 0.9999 + 1e-5;
            let global = epoch * steps_per_epoch + step;
            train.log(&point! {
                "loss" => weights,
                "lr" => 3e-4,
                "grad_norm" => weights.sqrt(),
                "step" => global,
                "epoch" => epoch,
            })?;
        }
        eval.log(&point! {"accuracy" => 1.0 - weights / 2.0, "epoch" => epoch})?;
        // Checkpoint: everything logged so far is in the store first.
        run.flush()?;
        run.log_with(Level::Info, "checkpoint saved", &point! {"epoch" => epoch})?;
    }
    let report = run.complete()?;
    println!("stored {} points", report.stored.metrics);
    Ok(())
}

//! The ML-Dash quickstart, in Rust: a short training run into `./.dash`.
//!
//! `cargo run --example quickstart`, then look at `.dash/alice/mnist/quickstart/`.

use ml_dash::{Experiment, Level, point};

fn main() -> ml_dash::Result<()> {
    let run = Experiment::new("alice/mnist/quickstart")
        .readme("Quickstart: a tiny training loop")
        .tags(["quickstart", "rust"])
        .run()?;

    run.params().set(serde_json::json!({
        "model": {"lr": 1e-3, "layers": [64, 64]},
        "optimizer": "adam",
        "epochs": 3,
    }))?;
    run.log("Training started")?;

    let train = run.metrics("train")?;
    let eval = run.metrics("eval")?;
    let pose = run.tracks("robot/pose")?;
    for epoch in 0..3 {
        for i in 0..100 {
            // The step counts on across epochs, as a training loop's global step does.
            let step = epoch * 100 + i;
            let loss = 1.0 / (1.0 + step as f64);
            train.log(&point! {"loss" => loss, "epoch" => epoch, "step" => step})?;
        }
        eval.log(&point! {"accuracy" => 0.8 + 0.05 * epoch as f64, "epoch" => epoch})?;
        pose.append_at(
            epoch as f64,
            &point! {"q" => &[0.1, 0.2, 0.3], "v.x" => epoch},
        )?;
        run.log_with(Level::Info, "epoch done", &point! {"epoch" => epoch})?;
    }
    let report = run.complete()?;
    println!(
        "stored {} metric points, {} logs, {} track rows in .dash/alice/mnist/quickstart",
        report.stored.metrics, report.stored.logs, report.stored.tracks
    );
    Ok(())
}

//! burn's `Learner` training an MLP on data it makes, every step and every
//! epoch of both splits logged through `ml_dash_burn::DashLogger` into
//! `./.dash/alice/synthetic/burn-learner`.
//!
//! `cargo run --release -p ml-dash-burn --example learner -- [--epochs N] [--check]`
//! (`--check`: exit 1 unless the training loss fell).

use std::process::ExitCode;

use ml_dash::{Experiment, read};
use ml_dash_burn::DashLogger;
use ml_dash_burn::demo::{Setup, train};

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut setup = Setup::default();
    if let Some(i) = args.iter().position(|a| a == "--epochs") {
        setup.epochs = args.get(i + 1).ok_or("--epochs needs a number")?.parse()?;
    }
    let prefix = "alice/synthetic/burn-learner";
    let run = Experiment::new(prefix)
        .readme("burn's Learner on three Gaussian blobs (bridges/burn)")
        .tags(["burn", "mlp", "synthetic"])
        .run()?;
    run.params().set(serde_json::json!({
        "epochs": setup.epochs, "train": setup.train, "valid": setup.valid,
        "batch": setup.batch, "hidden": setup.hidden, "lr": setup.lr,
    }))?;
    let artifacts = tempfile::tempdir()?;
    let logger = DashLogger::new(&run)?;
    train(artifacts.path(), &setup, |t| t.with_metric_logger(logger));
    run.complete()?;

    let root = std::path::Path::new(ml_dash::DEFAULT_DASH_ROOT);
    let epochs = |split: &str| read::metrics(root, prefix, Some(&format!("{split}/epoch")));
    let (train_epochs, valid_epochs) = (epochs("train")?, epochs("valid")?);
    for (t, v) in train_epochs.iter().zip(&valid_epochs) {
        let (t, v) = (&t["data"], &v["data"]);
        println!(
            "epoch {}: train loss {:.4} accuracy {:.1}%, valid loss {:.4} accuracy {:.1}%",
            t["epoch"],
            t["loss"].as_f64().unwrap_or(f64::NAN),
            t["accuracy"].as_f64().unwrap_or(f64::NAN),
            v["loss"].as_f64().unwrap_or(f64::NAN),
            v["accuracy"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let steps: Vec<f64> = (read::metrics(root, prefix, Some("train"))?.iter())
        .filter_map(|p| p["data"]["loss"].as_f64())
        .collect();
    let k = (steps.len() / 10).max(1).min(steps.len());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (first, last) = (mean(&steps[..k]), mean(&steps[steps.len() - k..]));
    println!(
        "{} train steps stored in ./.dash/{prefix}: loss {first:.4} -> {last:.4} (first and last tenth)",
        steps.len()
    );
    if args.iter().any(|a| a == "--check") && last >= 0.8 * first {
        eprintln!("the training loss did not fall: {first:.4} -> {last:.4}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

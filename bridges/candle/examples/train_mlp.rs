//! An MLP trained on synthetic data with data-loader threads, every step
//! logged through ml-dash into `./.dash/alice/synthetic/train-mlp`; then what
//! logging cost per step, from the same loop run first with logging off.
//!
//! `cargo run --release -p ml-dash-candle --example train_mlp -- [--steps N]
//! [--batch B] [--hidden H] [--loaders K] [--repeats R] [--check]`: R runs with
//! logging off and R with it on, in turns (default 3); `--check`: exit 1 unless
//! the loss fell.

use std::path::PathBuf;
use std::process::ExitCode;

use ml_dash_candle::{Config, Error, Report, Store, train};

fn arg(args: &[String], name: &str) -> Result<Option<usize>, Error> {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            let v = args.get(i + 1).ok_or(format!("{name} needs a number"))?;
            Ok(Some(
                v.parse().map_err(|_| format!("{name} {v}: not a number"))?,
            ))
        }
        None => Ok(None),
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Mean loss of the first and of the last tenth of the steps.
fn loss_ends(r: &Report) -> (f64, f64) {
    let k = (r.losses.len() / 10).max(1);
    let l: Vec<f64> = r.losses.iter().map(|&x| f64::from(x)).collect();
    (mean(&l[..k]), mean(&l[l.len() - k..]))
}

fn main() -> Result<ExitCode, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = Config::default();
    cfg.steps = arg(&args, "--steps")?.unwrap_or(cfg.steps);
    cfg.batch = arg(&args, "--batch")?.unwrap_or(cfg.batch);
    cfg.hidden = arg(&args, "--hidden")?.unwrap_or(cfg.hidden);
    cfg.loaders = arg(&args, "--loaders")?.unwrap_or(cfg.loaders);
    cfg.warmup = cfg.warmup.min(cfg.steps / 10).max(1);
    cfg.checkpoint_every = cfg.checkpoint_every.min(cfg.steps);

    let repeats = arg(&args, "--repeats")?.unwrap_or(3).max(1);

    // Off and on in turns; per mode the fastest loop (the least disturbed by
    // whatever else the machine runs). The last run with logging on logs into
    // ./.dash, the others into a temporary store.
    let scratch = tempfile::tempdir()?;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for i in 0..repeats {
        off.push(train(&cfg)?);
        let dash_root = match i + 1 == repeats {
            true => PathBuf::from(ml_dash::DEFAULT_DASH_ROOT),
            false => scratch.path().join(i.to_string()),
        };
        let store = Store {
            dash_root,
            prefix: "alice/synthetic/train-mlp".into(),
        };
        on.push(train(&Config {
            store: Some(store),
            ..cfg.clone()
        })?);
    }
    let fastest = |runs: Vec<Report>| -> Report {
        (runs.into_iter())
            .min_by(|a, b| a.loop_secs.total_cmp(&b.loop_secs))
            .unwrap_or_default()
    };
    let (off, on) = (fastest(off), fastest(on));

    let (first, last) = loss_ends(&on);
    let (_, eval_loss, eval_acc) = on.evals.last().copied().unwrap_or_default();
    println!(
        "{} steps of {} samples, {} loader threads: loss {first:.3} -> {last:.3} \
         (first and last tenth), held-out loss {eval_loss:.3}, accuracy {:.1}%",
        cfg.steps,
        cfg.batch,
        cfg.loaders,
        eval_acc * 100.0
    );
    let n = cfg.steps as f64;
    let (per_on, per_off) = (on.loop_secs / n, off.loop_secs / n);
    println!(
        "step time (the fastest of {repeats} runs each): logging on {:.1} us (median step {:.1}), \
         off {:.1} us (median step {:.1}), whole loop per step",
        per_on * 1e6,
        median(&on.step_secs) * 1e6,
        per_off * 1e6,
        median(&off.step_secs) * 1e6,
    );
    let step = mean(&on.step_secs);
    println!(
        "logging cost per step: {:.2} us ({:.2}% of the step; on - off, whole loop); \
         the train.log call: median {:.0} ns ({:.4}% of the step), mean {:.0} ns \
         (the first, registering the thread: {:.0} ns)",
        (per_on - per_off) * 1e6,
        (per_on - per_off) / per_off * 100.0,
        median(&on.log_secs) * 1e9,
        median(&on.log_secs) / step * 100.0,
        mean(&on.log_secs) * 1e9,
        on.log_secs.first().copied().unwrap_or(0.0) * 1e9,
    );
    println!("stored in ./.dash/alice/synthetic/train-mlp");
    if args.iter().any(|a| a == "--check") && last >= 0.8 * first {
        eprintln!("the loss did not fall: {first:.3} -> {last:.3}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

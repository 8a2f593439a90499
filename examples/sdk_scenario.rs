//! `tests/differential/scenario.py`, call for call, through this crate.
//!
//! `cargo run --example sdk_scenario -- DASH_ROOT [DASH_URL]`: a local run
//! into DASH_ROOT, or with DASH_URL a hybrid one (the server and DASH_ROOT;
//! the token as for any run: `ML_DASH_TOKEN` or what `ml-dash login` stored).
//! `tests/differential.rs` runs it beside the Python SDK running the script
//! and compares what both sent and stored (`tests/differential/compare.py`).

use std::path::Path;

use ml_dash::{Experiment, Level, MetricInfo, point};
use serde_json::json;

pub const PREFIX: &str = "alice/vision/sweeps/lr-3e-4/run-7";

/// The scenario; `configure` adds what the caller decides beyond the
/// script's arguments (a token, buffer settings).
pub fn scenario(
    dash_root: &Path,
    dash_url: Option<&str>,
    configure: impl FnOnce(Experiment) -> Experiment,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut exp = Experiment::new(PREFIX)
        .readme("ResNet-18 on CIFAR-10, lr sweep")
        .tags(["resnet", "sweep"])
        .metadata(json!({"gpu": "A100", "workers": 8}))
        .dash_root(dash_root);
    if let Some(url) = dash_url {
        exp = exp.dash_url(url);
    }
    let run = configure(exp).run()?;

    let params = run.params();
    params.set(json!({
        "model": {"arch": "resnet18", "lr": 3e-4, "widths": [64, 128]},
        "optimizer": "adamw",
        "flags": {"amp": true, "resume": null},
        "seed": 7,
    }))?;
    params.set(json!({"model": {"lr": 1e-4}, "epochs": 2}))?;

    let train = run.metrics("train")?;
    train.log(&point! {"loss" => 0.9, "step" => 0})?;
    train.log(&point! {"loss" => 0.7, "step" => 1, "_ts" => 1000.25})?;
    train.log(&point! {"loss" => 0.6, "step" => 2, "_ts" => -1})?;
    let info = MetricInfo::default()
        .description("held-out split")
        .tags(["eval"])
        .metadata(json!({"split": "val"}))?;
    let evals = run.metrics_with("eval", info)?;
    evals.log(&point! {"acc" => 0.5, "epoch" => 0, "_ts" => 1001.5})?;
    run.unnamed_metrics().log_groups(
        &point! {"epoch" => 1},
        &[
            (&train, &point! {"loss" => 0.5}),
            (&evals, &point! {"acc" => 0.61}),
        ],
    )?;
    run.unnamed_metrics().log_groups(
        &point! {"epoch" => 2, "_ts" => 1002.0},
        &[(&train, &point! {"loss" => 0.45})],
    )?;

    let lr = [3e-4, 1e-4];
    run.log_with(
        Level::Info,
        "epoch 1 done",
        &point! {"epoch" => 1, "lr" => &lr},
    )?;
    let logs = run.logger();
    logs.info("checkpoint saved: époque 1 ✓")?;
    logs.warn_with("GPU memory high", &point! {"used_gb" => 10.5})?;
    logs.error_with("NaN gradient", &point! {"step" => 17})?;
    run.log("plain message")?;
    let shapes = json!([[32, 3], [32]]);
    logs.debug_with("batch shapes", &point! {"shapes" => &shapes})?;

    // The loop: more points than a metric batch, more logs than a log
    // batch, more rows than a track batch.
    let imu = run.tracks("imu")?;
    for step in 3..1203i64 {
        train.log(&point! {"loss" => 1.0 / step as f64, "step" => step})?;
        if step % 8 == 0 {
            logs.info_with(&format!("step {step}"), &point! {"step" => step})?;
        }
        if step % 10 == 0 {
            imu.append_at(10.0 + step as f64, &point! {"acc" => &[step, -step]})?;
        }
    }
    let pose = run.tracks("robot/pose")?;
    pose.append_at(1.0, &point! {"q" => &[0.1, 0.2], "frame" => 0})?;
    let cam = point! {"pos" => &[1, 2], "fov" => 60};
    pose.append_at(
        2.0,
        &point! {"q" => &[0.3, 0.4], "cam" => &cam, "frame" => 1},
    )?;
    pose.append_at(-1.0, &point! {"speed" => 0.5})?; // the same row: merged
    evals.log(&point! {"acc" => 0.58, "epoch" => 1, "_ts" => -1})?; // the track row's time
    pose.append(&point! {"q" => &[0.5, 0.6], "frame" => 2})?;
    run.flush()?;

    let cfg = run.files("configs");
    cfg.save_json("config.json", json!({"lr": 3e-4, "widths": [64, 128]}))?;
    cfg.save_text("notes.txt", "lr sweep, run 7: α = 3e-4\n")?;
    let blob: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
    run.files("blobs").save_blob("weights.bin", &blob)?;
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("model.pt");
    std::fs::write(&src, b"not really a checkpoint\n".repeat(100))?;
    run.files("models")
        .description("best so far")
        .tags(["ckpt"])
        .metadata(json!({"epoch": 2}))?
        .upload_as(&src, "best.pt")?;
    run.flush()?;
    drop(tmp);
    let note: Option<&str> = None;
    train.log(&point! {
        "loss" => 0.4, "step" => 1203, "phase" => "final", "finite" => true, "note" => note,
    })?;
    run.complete()?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (root, url) = match args.as_slice() {
        [root] => (root, None),
        [root, url] => (root, Some(url.as_str())),
        _ => {
            eprintln!("usage: sdk_scenario DASH_ROOT [DASH_URL]");
            return std::process::ExitCode::from(2);
        }
    };
    match scenario(Path::new(root), url, |e| e) {
        Ok(()) => {
            println!("ok");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sdk_scenario: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! The training loop at a small size, end to end into a local store: the loss
//! falls, and the store holds exactly what the loop logged.

use std::collections::BTreeSet;

use ml_dash::read;
use ml_dash_candle::{Config, Store, train};

#[test]
fn the_loss_falls_and_every_step_is_stored() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "alice/synthetic/test-mlp";
    let cfg = Config {
        steps: 150,
        batch: 32,
        hidden: 32,
        warmup: 10,
        loaders: 3,
        checkpoint_every: 50,
        store: Some(Store {
            dash_root: root.path().to_path_buf(),
            prefix: prefix.into(),
        }),
        ..Config::default()
    };
    let r = train(&cfg).unwrap();

    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&r.losses[..15]), mean(&r.losses[135..]));
    assert!(last < 0.8 * first, "the loss fell: {first:.3} -> {last:.3}");

    assert_eq!(r.log_secs.len(), 150);
    let train_pts = read::metrics(root.path(), prefix, Some("train")).unwrap();
    assert_eq!(train_pts.len(), 150);
    for (step, p) in train_pts.iter().enumerate() {
        let d = &p["data"];
        assert_eq!(d["step"], step);
        assert_eq!(d["loss"].as_f64().unwrap(), f64::from(r.losses[step]));
        assert_eq!(
            d["accuracy"].as_f64().unwrap(),
            f64::from(r.accuracies[step])
        );
        assert_eq!(d["lr"].as_f64().unwrap(), r.lrs[step]);
        assert_eq!(d["step_ms"].as_f64().unwrap(), r.step_secs[step] * 1e3);
    }
    let batches: BTreeSet<_> = (train_pts.iter())
        .map(|p| p["data"]["batch"].as_u64().unwrap())
        .collect();
    assert_eq!(batches, (0..150).collect(), "each batch trained on once");

    let loader = read::metrics(root.path(), prefix, Some("loader")).unwrap();
    assert_eq!(loader.len(), 150, "each loader logs each batch it made");
    for worker in 0..3u64 {
        let mine: Vec<_> = (loader.iter())
            .filter(|p| p["data"]["worker"] == worker)
            .map(|p| p["data"]["batch"].as_u64().unwrap())
            .collect();
        assert_eq!(mine, (worker..150).step_by(3).collect::<Vec<_>>());
    }

    let eval: Vec<_> = (read::metrics(root.path(), prefix, Some("eval")).unwrap())
        .iter()
        .map(|p| {
            let d = &p["data"];
            let f = |k: &str| d[k].as_f64().unwrap() as f32;
            (
                d["step"].as_u64().unwrap() as usize,
                f("loss"),
                f("accuracy"),
            )
        })
        .collect();
    assert_eq!(eval, r.evals);
    assert_eq!(eval.iter().map(|e| e.0).collect::<Vec<_>>(), [49, 99, 149]);

    let marks: Vec<_> = (read::logs(root.path(), prefix).unwrap())
        .iter()
        .map(|l| (l["message"].clone(), l["metadata"]["step"].clone()))
        .collect();
    assert_eq!(
        marks,
        [49, 99, 149].map(|s| (serde_json::json!("checkpoint saved"), serde_json::json!(s)))
    );
    // The store keeps a saved file as files/<dir>/<id>/<name>.
    let mut saved: Vec<(String, serde_json::Value)> = Vec::new();
    let dir = root.path().join(prefix).join("files/checkpoints");
    for id in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(id.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let doc = read::parse_lenient(&std::fs::read(f.path()).unwrap()).unwrap();
            saved.push((f.file_name().into_string().unwrap(), doc["step"].clone()));
        }
    }
    saved.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        saved,
        [49, 99, 149].map(|s| (format!("step-{s:06}.json"), serde_json::json!(s)))
    );
    let params = read::document(root.path(), prefix, "parameters.json").unwrap();
    assert_eq!(params.unwrap()["data"]["steps"], 150);
}

#[test]
fn logging_off_writes_nothing() {
    let cfg = Config {
        steps: 20,
        batch: 8,
        hidden: 8,
        warmup: 2,
        checkpoint_every: 10,
        ..Config::default()
    };
    let r = train(&cfg).unwrap();
    assert_eq!((r.losses.len(), r.evals.len()), (20, 2));
    assert!(r.log_secs.is_empty());
}

//! burn's `Learner` into a local store through `DashLogger`: every step and
//! every epoch of both splits, checked against what burn sent to a second,
//! recording logger (counts and values exact), and the loss falls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use ml_dash::{BufferConfig, Experiment, read};
use ml_dash_burn::demo::{Setup, train};
use ml_dash_burn::{DashLogger, field_name};
use serde_json::{Value as Json, json};

/// One update's numeric batch values, with its epoch.
type Step = (usize, Vec<(String, f64)>);

/// What burn sent, per split name.
#[derive(Default)]
struct Sent {
    names: HashMap<MetricId, String>,
    /// Per split: each update's numeric batch values, in order.
    steps: HashMap<String, Vec<Step>>,
    /// Per split and epoch: each metric's last running mean.
    running: HashMap<(String, usize), HashMap<String, f64>>,
    /// Per split and epoch: each metric's final value, where burn sent one.
    finals: HashMap<(String, usize), HashMap<String, f64>>,
    /// Per split: the epochs summarised, in order.
    epochs: HashMap<String, Vec<usize>>,
}

struct Recorder(Arc<Mutex<Sent>>);

impl MetricLogger for Recorder {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let mut sent = self.0.lock().unwrap();
        let mut values = Vec::new();
        for u in &update.entries_numeric {
            let name = sent.names[&u.entry.metric_id].clone();
            let key = (split.to_string(), epoch);
            match &u.numeric_entry {
                Some(NumericEntry::Final(v)) => {
                    let finals = sent.finals.entry(key.clone()).or_default();
                    finals.insert(name.clone(), *v);
                }
                Some(e) => values.push((name.clone(), e.current())),
                None => {}
            }
            if let Some(r) = &u.running_entry {
                let running = sent.running.entry(key).or_default();
                running.insert(name, r.current());
            }
        }
        // An update of final (epoch) values only is not a step.
        if !values.is_empty() {
            let steps = sent.steps.entry(split.to_string()).or_default();
            steps.push((epoch, values));
        }
    }

    fn read_numeric(&mut self, _: &str, _: usize, _: &Split) -> Result<Vec<NumericEntry>, String> {
        Err("the recorder keeps no history".into())
    }

    fn log_metric_definition(&mut self, d: MetricDefinition) {
        let name = field_name(&d.name);
        self.0.lock().unwrap().names.insert(d.metric_id, name);
    }

    fn log_epoch_summary(&mut self, s: EpochSummary) {
        let mut sent = self.0.lock().unwrap();
        sent.epochs
            .entry(s.split.to_string())
            .or_default()
            .push(s.epoch_number);
    }
}

fn data(lines: Vec<Json>) -> Vec<serde_json::Map<String, Json>> {
    (lines.into_iter())
        .map(|l| {
            let mut d = l["data"].as_object().unwrap().clone();
            assert!(d.remove("_ts").unwrap().as_f64().unwrap() > 1.6e9);
            d
        })
        .collect()
}

#[test]
fn a_learner_logs_every_step_and_epoch_of_both_splits() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "alice/synthetic/burn-test";
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    let run = Experiment::new(prefix)
        .dash_root(root.path())
        .buffer_config(cfg)
        .run()
        .unwrap();
    let setup = Setup {
        epochs: 3,
        train: 256,
        valid: 96,
        batch: 32,
        hidden: 16,
        ..Setup::default()
    };
    let sent = Arc::new(Mutex::new(Sent::default()));
    let dash = DashLogger::new(&run).unwrap();
    let recorder = Recorder(sent.clone());
    let artifacts = tempfile::tempdir().unwrap();
    train(artifacts.path(), &setup, |t| {
        t.with_metric_logger(dash).with_metric_logger(recorder)
    });
    run.complete().unwrap();
    let sent = sent.lock().unwrap();

    for (split, per_epoch) in [("train", 8), ("valid", 3)] {
        let points = data(read::metrics(root.path(), prefix, Some(split)).unwrap());
        let expected = &sent.steps[split];
        assert_eq!(points.len(), 3 * per_epoch, "{split}: one point per batch");
        assert_eq!(points.len(), expected.len());
        for (step, (p, (epoch, values))) in points.iter().zip(expected).enumerate() {
            let mut want: serde_json::Map<String, Json> =
                values.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
            want.insert("epoch".into(), json!(epoch));
            want.insert("step".into(), json!(step));
            assert_eq!(p, &want, "{split} step {step}");
            assert_eq!(*epoch, 1 + step / per_epoch);
        }
        let names: Vec<_> = points[0].keys().map(String::as_str).collect();
        let want: &[&str] = match split {
            "train" => &["loss", "accuracy", "learning_rate", "epoch", "step"],
            _ => &["loss", "accuracy", "epoch", "step"],
        };
        assert_eq!(names, want, "burn's names in snake case");

        let epochs =
            data(read::metrics(root.path(), prefix, Some(&format!("{split}/epoch"))).unwrap());
        assert_eq!(sent.epochs[split], [1, 2, 3]);
        assert_eq!(epochs.len(), 3);
        for (i, p) in epochs.iter().enumerate() {
            let key = (split.to_string(), i + 1);
            let finals = sent.finals.get(&key).cloned().unwrap_or_default();
            let mut want: serde_json::Map<String, Json> = (sent.running[&key].iter())
                .map(|(n, v)| (n.clone(), json!(finals.get(n).unwrap_or(v))))
                .collect();
            want.insert("epoch".into(), json!(i + 1));
            assert_eq!(p, &want, "{split} epoch {}: burn's epoch values", i + 1);
        }
        if split == "train" {
            let loss = |i: usize| epochs[i]["loss"].as_f64().unwrap();
            assert!(
                loss(2) < loss(0),
                "the loss fell: {} -> {}",
                loss(0),
                loss(2)
            );
        }
    }
}

#[test]
fn metric_names_become_snake_case() {
    assert_eq!(field_name("Learning Rate"), "learning_rate");
    assert_eq!(field_name("Loss"), "loss");
    assert_eq!(field_name(" Top-5 Accuracy (%) "), "top_5_accuracy");
}

//! A [`MetricLogger`] for burn-train 0.22 that records a `Learner`'s metrics
//! into an ml-dash run.
//!
//! ```text
//! SupervisedTraining::new(dir, train, valid)
//!     .metric_train_numeric(LossMetric::new())
//!     .with_metric_logger(ml_dash_burn::DashLogger::new(&run)?)
//!     .launch(learner);
//! ```
//!
//! - **Per step**: each batch's update is a point in the split's stream
//!   (`train`, `valid`, `test`): every numeric metric under its name in snake
//!   case (`Loss` is `loss`, `Learning Rate` is `learning_rate`), its batch
//!   value; text metrics as strings; then `epoch` and `step` (the split's
//!   batch count over the whole run, from 0). A test split's tag is the field
//!   `tag`.
//! - **Per epoch**: at the end of each epoch a point in `<split>/epoch`: each
//!   numeric metric's epoch value (burn's final value where the metric has
//!   one, else its running mean at the epoch's last batch, which is what burn
//!   shows) and `epoch`; then the run is flushed, so an epoch is in the store
//!   once burn has moved past it.
//! - `read_numeric` (burn's early stopping and best-checkpoint search) is
//!   answered from memory, as burn's `InMemoryMetricLogger` does.
//!
//! A call the run refuses (the run is closed) drops that point: burn's
//! `MetricLogger` has no way to return an error.

pub mod demo;

use std::collections::{BTreeMap, HashMap};

use burn::train::logger::{InMemoryMetricLogger, MetricLogger};
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry, SerializedEntry};
use ml_dash::{Logger, Metrics, Run, Value};

/// The streams of one split: per step and per epoch.
struct Streams {
    step: Metrics,
    epoch: Metrics,
    /// Points so far (the next point's `step`).
    steps: u64,
    /// This epoch's value per metric so far: (final, last running mean).
    current: BTreeMap<String, (Option<f64>, Option<f64>)>,
}

impl Streams {
    fn new(run: &Run, split: &str) -> ml_dash::Result<Streams> {
        Ok(Streams {
            step: run.metrics(split)?,
            epoch: run.metrics(&format!("{split}/epoch"))?,
            steps: 0,
            current: BTreeMap::new(),
        })
    }
}

/// Records burn-train's metrics into a run: see the [crate docs](self).
pub struct DashLogger {
    logger: Logger,
    names: HashMap<MetricId, String>,
    train: Streams,
    valid: Streams,
    test: Streams,
    memory: InMemoryMetricLogger,
}

impl DashLogger {
    /// A logger that records into `run`.
    ///
    /// # Errors
    /// As [`Run::metrics`] (a run of another process: [`ml_dash::Error::Forked`]).
    pub fn new(run: &Run) -> ml_dash::Result<DashLogger> {
        Ok(DashLogger {
            logger: run.logger(),
            names: HashMap::new(),
            train: Streams::new(run, "train")?,
            valid: Streams::new(run, "valid")?,
            test: Streams::new(run, "test")?,
            memory: InMemoryMetricLogger::new(),
        })
    }

    fn streams(&mut self, split: &Split) -> &mut Streams {
        match split {
            Split::Train => &mut self.train,
            Split::Valid => &mut self.valid,
            Split::Test(_) => &mut self.test,
        }
    }

    fn name(&self, id: &MetricId) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| "metric".into())
    }
}

/// `Learning Rate` -> `learning_rate`.
pub fn field_name(metric: &str) -> String {
    let mut out = String::with_capacity(metric.len());
    for c in metric.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// A field value owned until the point is logged.
enum Owned {
    F64(f64),
    Text(String),
    U64(u64),
}

impl Owned {
    fn value(&self) -> Value<'_> {
        match self {
            Owned::F64(v) => Value::F64(*v),
            Owned::Text(s) => Value::Str(s),
            Owned::U64(v) => (*v).into(),
        }
    }
}

impl MetricLogger for DashLogger {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let mut fields: Vec<(String, Owned)> = Vec::new();
        for u in &update.entries {
            let SerializedEntry { serialized, .. } = &u.serialized_entry;
            if !u.serialized_entry.is_not_available() {
                fields.push((self.name(&u.metric_id), Owned::Text(serialized.clone())));
            }
        }
        let mut running = Vec::new();
        for u in &update.entries_numeric {
            let name = self.name(&u.entry.metric_id);
            match &u.numeric_entry {
                // Computed once at the end of the epoch: the epoch's value.
                Some(NumericEntry::Final(v)) => running.push((name, Some(*v), None)),
                Some(e) => {
                    fields.push((name.clone(), Owned::F64(e.current())));
                    running.push((name, None, u.running_entry.as_ref().map(|r| r.current())));
                }
                None => {}
            }
        }
        let tag = match split {
            Split::Test(Some(tag)) => Some(tag.to_string()),
            _ => None,
        };
        let s = self.streams(split);
        for (name, fin, run) in running {
            let slot = s.current.entry(name).or_default();
            slot.0 = fin.or(slot.0);
            slot.1 = run.or(slot.1);
        }
        if !fields.is_empty() {
            fields.push(("epoch".into(), Owned::U64(epoch as u64)));
            fields.push(("step".into(), Owned::U64(s.steps)));
            if let Some(tag) = tag {
                fields.push(("tag".into(), Owned::Text(tag)));
            }
            s.steps += 1;
            let point: Vec<(&str, Value<'_>)> = fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.value()))
                .collect();
            let _ = s.step.log(&point);
        }
        self.memory.log(update, epoch, split);
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        self.memory.read_numeric(name, epoch, split)
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        (self.names).insert(definition.metric_id.clone(), field_name(&definition.name));
        self.memory.log_metric_definition(definition);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        let s = self.streams(&summary.split);
        let values: Vec<(String, f64)> = std::mem::take(&mut s.current)
            .into_iter()
            .filter_map(|(name, (fin, run))| Some((name, fin.or(run)?)))
            .collect();
        let mut point: Vec<(&str, Value<'_>)> = values
            .iter()
            .map(|(n, v)| (n.as_str(), Value::F64(*v)))
            .collect();
        point.push(("epoch", (summary.epoch_number as u64).into()));
        let _ = s.epoch.log(&point);
        // The epoch is in the store before training goes on.
        let _ = self.logger.flush();
        self.memory.log_epoch_summary(summary);
    }
}

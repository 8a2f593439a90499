//! A real training loop on candle (CPU), logging every step through ml-dash.
//!
//! An MLP learns a synthetic classification task (inputs from a Gaussian,
//! labels from a fixed random "teacher" network) while data-loader threads
//! make the batches and feed them through a bounded channel. Every step logs
//! loss, accuracy, learning rate and step time to the stream `train`; each
//! loader logs its batches to `loader`; every `checkpoint_every` steps the
//! loop evaluates on a held-out set (`eval`), calls `flush()` and then saves a
//! checkpoint marker (`checkpoints/step-NNNNNN.json` and a log line), so a
//! marker never names a step the store has not got.
//!
//! [`train`] with `store: None` runs the same loop with logging off, which is
//! how `examples/train_mlp.rs` measures what logging costs per step.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{AdamW, Linear, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap, linear};
use ml_dash::{BufferConfig, Experiment, Metrics, point};

/// Input features per sample.
pub const FEATURES: usize = 16;
/// Classes.
pub const CLASSES: usize = 4;

/// Any error of the loop (candle's or the engine's).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What to train, and where to log it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Optimizer steps (one batch each).
    pub steps: usize,
    /// Samples per batch.
    pub batch: usize,
    /// Width of the two hidden layers.
    pub hidden: usize,
    /// Peak learning rate (AdamW), after a linear warm-up; cosine decay to a
    /// tenth of it at the last step.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Data-loader threads.
    pub loaders: usize,
    /// Evaluate, `flush()` and save a checkpoint marker every so many steps
    /// (and after the last).
    pub checkpoint_every: usize,
    /// Seed of the data and the teacher network.
    pub seed: u64,
    /// Where to log; `None`: logging off (the same loop otherwise).
    pub store: Option<Store>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            steps: 2_000,
            batch: 64,
            hidden: 64,
            lr: 1e-2,
            warmup: 100,
            loaders: 2,
            checkpoint_every: 500,
            seed: 17,
            store: None,
        }
    }
}

/// The local store and the experiment to log into.
#[derive(Debug, Clone)]
pub struct Store {
    /// Root of the local store (`.dash`).
    pub dash_root: PathBuf,
    /// `owner/project/name`.
    pub prefix: String,
}

/// What a run of [`train`] did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Training loss per step.
    pub losses: Vec<f32>,
    /// Training accuracy per step (on the step's batch).
    pub accuracies: Vec<f32>,
    /// Learning rate per step.
    pub lrs: Vec<f64>,
    /// Seconds per step: waiting for the batch, forward, backward, update
    /// (not the logging call).
    pub step_secs: Vec<f64>,
    /// Seconds inside each step's `train.log(..)` call (empty with logging off).
    pub log_secs: Vec<f64>,
    /// `(step, loss, accuracy)` of each evaluation.
    pub evals: Vec<(usize, f32, f32)>,
    /// Seconds of the whole loop, from the first batch requested to the last
    /// step done (opening and closing the run not included).
    pub loop_secs: f64,
}

/// The learning rate at `step`.
pub fn lr_at(cfg: &Config, step: usize) -> f64 {
    if step < cfg.warmup {
        return cfg.lr * (step + 1) as f64 / cfg.warmup as f64;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup).max(1) as f64;
    let t = (step - cfg.warmup) as f64 / span;
    cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

/// A batch: inputs (row-major, `batch x FEATURES`) and labels.
struct Batch {
    index: usize,
    x: Vec<f32>,
    y: Vec<u32>,
}

/// splitmix64: small, fast, good enough for synthetic data.
struct Rng(u64);

/// splitmix64's finaliser: neighbouring inputs give unrelated outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// Stream `stream` of `seed`: the states of two streams do not overlap
    /// (each starts at a hashed point, not one step after the other).
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix(mix(seed) ^ mix(stream.wrapping_add(1))))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// The fixed random network whose argmax is the label.
struct Teacher {
    w1: Vec<f32>, // FEATURES x TEACHER_HIDDEN
    w2: Vec<f32>, // TEACHER_HIDDEN x CLASSES
}

const TEACHER_HIDDEN: usize = 32;

impl Teacher {
    fn new(seed: u64) -> Teacher {
        let mut r = Rng::new(seed, u64::MAX);
        let w1 = (0..FEATURES * TEACHER_HIDDEN).map(|_| r.normal()).collect();
        let w2 = (0..TEACHER_HIDDEN * CLASSES).map(|_| r.normal()).collect();
        Teacher { w1, w2 }
    }

    fn label(&self, x: &[f32]) -> u32 {
        let mut h = [0f32; TEACHER_HIDDEN];
        for (j, hj) in h.iter_mut().enumerate() {
            let s: f32 = (0..FEATURES)
                .map(|i| x[i] * self.w1[i * TEACHER_HIDDEN + j])
                .sum();
            *hj = s.tanh();
        }
        let score = |c: usize| -> f32 {
            (0..TEACHER_HIDDEN)
                .map(|j| h[j] * self.w2[j * CLASSES + c])
                .sum()
        };
        (0..CLASSES)
            .max_by(|&a, &b| score(a).total_cmp(&score(b)))
            .unwrap_or(0) as u32
    }

    /// Batch `index` of the data set (the same for the same seed).
    fn batch(&self, seed: u64, index: usize, n: usize) -> Batch {
        let mut r = Rng::new(seed, index as u64);
        let x: Vec<f32> = (0..n * FEATURES).map(|_| r.normal()).collect();
        let y = x.chunks(FEATURES).map(|s| self.label(s)).collect();
        Batch { index, x, y }
    }
}

struct Mlp {
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

impl Mlp {
    fn new(vb: VarBuilder<'_>, hidden: usize) -> candle_core::Result<Mlp> {
        Ok(Mlp {
            l1: linear(FEATURES, hidden, vb.pp("l1"))?,
            l2: linear(hidden, hidden, vb.pp("l2"))?,
            l3: linear(hidden, CLASSES, vb.pp("l3"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.l1.forward(x)?.relu()?;
        let h = self.l2.forward(&h)?.relu()?;
        self.l3.forward(&h)
    }
}

fn tensors(b: &Batch, dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let n = b.y.len();
    let x = Tensor::from_slice(&b.x, (n, FEATURES), dev)?;
    let y = Tensor::from_slice(&b.y, n, dev)?;
    Ok((x, y))
}

/// Loss and accuracy of `logits` against `y`.
fn scores(logits: &Tensor, y: &Tensor) -> candle_core::Result<(Tensor, f32)> {
    let loss = candle_nn::loss::cross_entropy(logits, y)?;
    let hits = logits.argmax(D::Minus1)?.eq(y)?.to_dtype(DType::F32)?;
    Ok((loss, hits.mean_all()?.to_scalar::<f32>()?))
}

/// The run's stream handles (logging on).
struct Streams {
    run: ml_dash::Run,
    train: Metrics,
    eval: Metrics,
}

/// Trains the MLP as `cfg` says; see the [crate docs](self).
///
/// # Errors
/// A candle error, or the engine's (opening the run, a refused call).
pub fn train(cfg: &Config) -> Result<Report, Error> {
    let dev = Device::Cpu;
    let vars = VarMap::new();
    let model = Mlp::new(VarBuilder::from_varmap(&vars, DType::F32, &dev), cfg.hidden)?;
    let params = ParamsAdamW {
        lr: lr_at(cfg, 0),
        ..Default::default()
    };
    let mut opt = AdamW::new(vars.all_vars(), params)?;
    let teacher = std::sync::Arc::new(Teacher::new(cfg.seed));
    // A batch index no loader makes (the teacher's weights use stream u64::MAX).
    let held_out = teacher.batch(cfg.seed, usize::MAX - 1, 512);
    let (eval_x, eval_y) = tensors(&held_out, &dev)?;

    let streams = match &cfg.store {
        Some(s) => Some(open(cfg, s)?),
        None => None,
    };
    let loader_stream = match &streams {
        Some(s) => Some(s.run.metrics("loader")?),
        None => None,
    };
    let mut report = Report::default();
    let started = Instant::now();
    thread::scope(|scope| -> Result<(), Error> {
        // Bounded: the loaders run at most two batches each ahead of the step.
        let (tx, rx) = mpsc::sync_channel::<Batch>(2 * cfg.loaders.max(1));
        let mut loaders = Vec::new();
        for worker in 0..cfg.loaders.max(1) {
            let (tx, teacher, stream) = (tx.clone(), teacher.clone(), loader_stream.clone());
            loaders.push(scope.spawn(move || -> Result<(), Error> {
                for index in (worker..cfg.steps).step_by(cfg.loaders.max(1)) {
                    let t = Instant::now();
                    let b = teacher.batch(cfg.seed, index, cfg.batch);
                    if let Some(s) = &stream {
                        s.log(&point! {
                            "worker" => worker,
                            "batch" => index,
                            "load_us" => t.elapsed().as_secs_f64() * 1e6,
                        })?;
                    }
                    if tx.send(b).is_err() {
                        break; // the loop stopped (an error): nothing to feed
                    }
                }
                Ok(())
            }));
        }
        drop(tx);
        for step in 0..cfg.steps {
            let t = Instant::now();
            let batch = rx.recv().map_err(|_| "a data loader stopped early")?;
            let (x, y) = tensors(&batch, &dev)?;
            let lr = lr_at(cfg, step);
            opt.set_learning_rate(lr);
            let logits = model.forward(&x)?;
            let (loss, acc) = scores(&logits, &y)?;
            opt.backward_step(&loss)?;
            let loss = loss.to_scalar::<f32>()?;
            let step_secs = t.elapsed().as_secs_f64();
            if let Some(s) = &streams {
                let t = Instant::now();
                s.train.log(&point! {
                    "loss" => loss,
                    "accuracy" => acc,
                    "lr" => lr,
                    "step_ms" => step_secs * 1e3,
                    "batch" => batch.index,
                    "step" => step,
                })?;
                report.log_secs.push(t.elapsed().as_secs_f64());
            }
            report.losses.push(loss);
            report.accuracies.push(acc);
            report.lrs.push(lr);
            report.step_secs.push(step_secs);
            let last = step + 1 == cfg.steps;
            if (step + 1) % cfg.checkpoint_every.max(1) == 0 || last {
                let (eval_loss, eval_acc) = scores(&model.forward(&eval_x)?, &eval_y)?;
                let eval_loss = eval_loss.to_scalar::<f32>()?;
                report.evals.push((step, eval_loss, eval_acc));
                if let Some(s) = &streams {
                    s.eval.log(&point! {
                        "loss" => eval_loss,
                        "accuracy" => eval_acc,
                        "step" => step,
                    })?;
                    // Everything up to this step is in the store before the
                    // marker says so.
                    s.run.flush()?;
                    let marker = serde_json::json!({"step": step, "loss": loss});
                    s.run
                        .files("checkpoints")
                        .save_json(&format!("step-{step:06}.json"), marker)?;
                    s.run
                        .logger()
                        .info_with("checkpoint saved", &point! {"step" => step})?;
                }
            }
        }
        report.loop_secs = started.elapsed().as_secs_f64();
        drop(rx);
        for l in loaders {
            l.join().map_err(|_| "a data loader panicked")??;
        }
        Ok(())
    })?;
    if let Some(s) = streams {
        s.run.complete()?;
    }
    Ok(report)
}

fn open(cfg: &Config, store: &Store) -> Result<Streams, Error> {
    let mut buffer = BufferConfig::from_env()?;
    buffer.quiet = true;
    let run = Experiment::new(&store.prefix)
        .dash_root(&store.dash_root)
        .readme("an MLP on synthetic data (bridges/candle)")
        .tags(["candle", "mlp", "synthetic"])
        .buffer_config(buffer)
        .run()?;
    run.params().set(serde_json::json!({
        "model": {"kind": "mlp", "hidden": cfg.hidden, "features": FEATURES, "classes": CLASSES},
        "optimizer": {"kind": "adamw", "lr": cfg.lr, "warmup": cfg.warmup, "schedule": "cosine"},
        "data": {"batch": cfg.batch, "loaders": cfg.loaders, "seed": cfg.seed},
        "steps": cfg.steps,
    }))?;
    Ok(Streams {
        train: run.metrics("train")?,
        eval: run.metrics("eval")?,
        run,
    })
}

//! The example's model and data, shared by `examples/learner.rs` and the
//! tests: an MLP that tells apart three Gaussian blobs in 8 dimensions (data
//! made from a seed: nothing to download), trained by burn's `Learner` with
//! loss, accuracy and learning rate registered for both splits.

use std::path::Path;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::AdamConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, SupervisedTraining, TrainOutput, TrainStep,
};

/// Input features.
pub const FEATURES: usize = 8;
/// Classes (blobs).
pub const CLASSES: usize = 3;

/// Two linear layers with a ReLU between.
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    act: Relu,
}

impl Mlp {
    /// A fresh model on `device`.
    pub fn new(hidden: usize, device: &Device) -> Mlp {
        Mlp {
            l1: LinearConfig::new(FEATURES, hidden).init(device),
            l2: LinearConfig::new(hidden, CLASSES).init(device),
            act: Relu::new(),
        }
    }

    fn classify(&self, b: Batch) -> ClassificationOutput {
        let logits = self.l2.forward(self.act.forward(self.l1.forward(b.x)));
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), b.y.clone());
        ClassificationOutput::new(loss, logits, b.y)
    }
}

impl TrainStep for Mlp {
    type Input = Batch;
    type Output = ClassificationOutput;

    fn step(&self, b: Batch) -> TrainOutput<ClassificationOutput> {
        let out = self.classify(b);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for Mlp {
    type Input = Batch;
    type Output = ClassificationOutput;

    fn step(&self, b: Batch) -> ClassificationOutput {
        self.classify(b)
    }
}

/// One sample: features and class.
#[derive(Debug, Clone)]
pub struct Sample {
    x: [f32; FEATURES],
    y: i64,
}

/// A batch of samples as tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    x: Tensor<2>,
    y: Tensor<1, Int>,
}

#[derive(Debug, Clone)]
struct ToBatch;

impl Batcher<Sample, Batch> for ToBatch {
    fn batch(&self, items: Vec<Sample>, device: &Device) -> Batch {
        let n = items.len();
        let x: Vec<f32> = items.iter().flat_map(|s| s.x).collect();
        let y: Vec<i64> = items.iter().map(|s| s.y).collect();
        Batch {
            x: Tensor::from_data(TensorData::new(x, [n, FEATURES]), device),
            y: Tensor::from_data(TensorData::new(y, [n]), device),
        }
    }
}

/// splitmix64.
struct Rng(u64);

/// splitmix64's finaliser: neighbouring inputs give unrelated outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u = ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let v = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// `n` samples of the blobs of `seed` (the centres depend on the seed only).
pub fn samples(seed: u64, stream: u64, n: usize) -> Vec<Sample> {
    let mut centres = Rng(mix(seed));
    let c: Vec<[f32; FEATURES]> = (0..CLASSES)
        .map(|_| std::array::from_fn(|_| centres.normal()))
        .collect();
    let mut r = Rng(mix(mix(seed) ^ mix(stream.wrapping_add(1))));
    (0..n)
        .map(|i| {
            let y = i % CLASSES;
            Sample {
                x: std::array::from_fn(|k| c[y][k] + r.normal()),
                y: y as i64,
            }
        })
        .collect()
}

/// What to train.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Epochs.
    pub epochs: usize,
    /// Training samples (a multiple of `batch` keeps every batch full).
    pub train: usize,
    /// Validation samples.
    pub valid: usize,
    /// Samples per batch.
    pub batch: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Learning rate (Adam, constant).
    pub lr: f64,
    /// Data-loader threads.
    pub workers: usize,
    /// Seed of the data.
    pub seed: u64,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            epochs: 5,
            train: 4_096,
            valid: 1_024,
            batch: 64,
            hidden: 32,
            lr: 1e-2,
            workers: 2,
            seed: 7,
        }
    }
}

/// Trains on `s`'s data with burn's `Learner` (artifacts in `dir`), after
/// `configure` has added its loggers (such as `ml_dash_burn::DashLogger`).
pub fn train(
    dir: &Path,
    s: &Setup,
    configure: impl FnOnce(SupervisedTraining<Mlp>) -> SupervisedTraining<Mlp>,
) -> Mlp {
    let device = Device::flex().autodiff();
    let loader = |stream, n, shuffle: bool| {
        let b = DataLoaderBuilder::new(ToBatch)
            .batch_size(s.batch)
            .num_workers(s.workers);
        let b = if shuffle { b.shuffle(s.seed) } else { b };
        b.build(InMemDataset::new(samples(s.seed, stream, n)))
    };
    let training =
        SupervisedTraining::new(dir, loader(1, s.train, true), loader(2, s.valid, false))
            .metric_train_numeric(LossMetric::new())
            .metric_valid_numeric(LossMetric::new())
            .metric_train_numeric(AccuracyMetric::new())
            .metric_valid_numeric(AccuracyMetric::new())
            .metric_train_numeric(LearningRateMetric::new())
            .with_application_logger(None)
            .num_epochs(s.epochs);
    let learner = Learner::new(Mlp::new(s.hidden, &device), AdamConfig::new().init(), s.lr);
    configure(training).launch(learner).model
}

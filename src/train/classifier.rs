//! The digit classifier's part of training: softmax cross-entropy, Adam, test loss and
//! accuracy after every epoch.

use rand::SeedableRng;
use serde::Serialize;

use crate::autograd::no_grad;
use crate::data::{Dataset, Mnist};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::infer::{EVAL_BATCH, Rows, for_each_chunk};
use crate::models::{Classifier, Model, predicted_class};
use crate::nn::Module;
use crate::ops::softmax_cross_entropy;
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::train::{Batch, EpochStats, Metrics, Optimizer, Step, TrainConfig, Trainable, fit};

/// One line of metrics.jsonl for the classifier.
#[derive(Clone, Debug, Serialize)]
pub struct ClassifierMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches, nats per image.
    pub train_loss: f64,
    /// Mean cross-entropy on the test split, nats per image.
    pub test_loss: f64,
    /// Fraction of test images classified correctly, 0 to 1.
    pub test_accuracy: f64,
    /// Seconds of training steps.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

impl Metrics for ClassifierMetrics {
    fn line(&self, epochs: usize) -> String {
        format!(
            "epoch {:>3}/{epochs}  train_loss {:.4}  test_loss {:.4}  test_accuracy {:.4}  {:.1} s  {:.0} img/s",
            self.epoch,
            self.train_loss,
            self.test_loss,
            self.test_accuracy,
            self.seconds,
            self.images_per_second
        )
    }

    fn finite_values(&self) -> Vec<f64> {
        vec![self.train_loss, self.test_loss, self.test_accuracy]
    }
}

/// The labels of `indices` as an f32 tensor of class indices, shape (B,).
fn labels(gpu: &Gpu, data: &Dataset, indices: impl Iterator<Item = usize>) -> Result<Tensor> {
    let l: Vec<f32> = indices.map(|i| data.labels[i] as f32).collect();
    let n = l.len();
    Tensor::from_slice(gpu, &l, [n])
}

/// Mean cross-entropy (nats per image) and accuracy (0 to 1) of `model` on `data`, in eval
/// mode, in chunks of [`EVAL_BATCH`] images.
///
/// Errors: GPU and readback errors.
pub fn evaluate_classifier(model: &Classifier, gpu: &Gpu, data: &Dataset) -> Result<(f64, f64)> {
    model.set_training(false);
    let mut loss_sum: Option<Tensor> = None;
    let mut correct = 0usize;
    let pass = for_each_chunk(gpu, Rows::images(data), EVAL_BATCH, |x, range| {
        let logits = model.forward(x)?;
        let loss = softmax_cross_entropy(&logits, &labels(gpu, data, range.clone())?)?.sum()?;
        loss_sum = Some(match loss_sum.take() {
            Some(s) => s.add(&loss)?,
            None => loss,
        });
        for (row, i) in logits.to_vec()?.chunks_exact(10).zip(range) {
            correct += (predicted_class(row) == data.labels[i] as usize) as usize;
        }
        Ok(())
    });
    model.set_training(true);
    pass?;
    let n = data.len().max(1) as f64;
    let loss = match loss_sum {
        Some(s) => s.item()? as f64,
        None => 0.0,
    };
    Ok((loss / n, correct as f64 / n))
}

/// One classifier training step on `x (B, 784)` with class indices `labels (B,)`: softmax
/// cross-entropy (dropout active), `backward()`, one Adam update. Shows `loss`; sums the
/// per-image cross-entropy.
///
/// Errors: shape and GPU errors.
pub fn classifier_step(
    model: &Classifier,
    optimizer: &mut Optimizer,
    x: &Tensor,
    labels: &Tensor,
) -> Result<Step> {
    let per_sample = softmax_cross_entropy(&model.forward(x)?, labels)?;
    let loss = per_sample.mean()?;
    let grads = loss.backward()?;
    optimizer.step(&grads)?;
    let _no_grad = no_grad();
    Ok(Step {
        sums: vec![per_sample.sum()?],
        shown: vec![("loss", loss)],
    })
}

/// The classifier's part of [`fit`].
pub struct ClassifierTrainer<'m> {
    /// The classifier.
    pub model: &'m Classifier,
    /// Adam over every parameter.
    pub optimizer: Optimizer,
    /// MNIST with its labels.
    pub data: Mnist,
    gpu: Gpu,
}

impl<'m> ClassifierTrainer<'m> {
    /// A trainer for `model` on `data` with `cfg`'s learning rate.
    pub fn new(gpu: &Gpu, cfg: &TrainConfig, model: &'m Classifier, data: Mnist) -> Self {
        ClassifierTrainer {
            model,
            optimizer: Optimizer::new(Adam::new(cfg.lr), model.parameters()),
            data,
            gpu: gpu.clone(),
        }
    }
}

impl Trainable for ClassifierTrainer<'_> {
    type Metrics = ClassifierMetrics;

    fn model(&self) -> &dyn Model {
        self.model
    }

    fn train_set(&self) -> &Dataset {
        &self.data.train
    }

    fn step(&mut self, batch: &Batch) -> Result<Step> {
        let y = labels(&self.gpu, &self.data.train, batch.indices.iter().copied())?;
        classifier_step(self.model, &mut self.optimizer, batch.x, &y)
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("adam", &mut self.optimizer)]
    }

    fn end_epoch(&mut self, stats: &EpochStats) -> Result<ClassifierMetrics> {
        let (test_loss, test_accuracy) =
            evaluate_classifier(self.model, &self.gpu, &self.data.test)?;
        Ok(ClassifierMetrics {
            epoch: stats.epoch,
            train_loss: stats.means[0],
            test_loss,
            test_accuracy,
            seconds: stats.seconds,
            images_per_second: stats.images_per_second(),
        })
    }
}

/// Trains the [`Classifier`] on MNIST with [`fit`]; writes metrics.jsonl and
/// model.safetensors.
///
/// Errors: data errors; [`crate::Error::NonFiniteLoss`]; I/O errors naming the file.
pub fn train_classifier(
    gpu: &Gpu,
    cfg: &TrainConfig,
) -> Result<(Classifier, Vec<ClassifierMetrics>)> {
    let data = cfg.load_data()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = Classifier::new(gpu, &mut rng)?;
    let history = fit(
        gpu,
        cfg,
        &mut ClassifierTrainer::new(gpu, cfg, &model, data),
    )?;
    Ok((model, history))
}

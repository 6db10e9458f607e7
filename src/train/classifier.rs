//! Training the digit classifier: softmax cross-entropy, Adam, test accuracy per epoch.

use std::time::Instant;

use rand::SeedableRng;
use serde::Serialize;

use crate::autograd::no_grad;
use crate::data::{Batches, Dataset};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Classifier, ModelKind, predicted_class};
use crate::nn::Module;
use crate::ops::softmax_cross_entropy;
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::train::{
    EVAL_BATCH, TrainConfig, append_jsonl, end_step, epoch_bar, prepare_out_dir, save_checkpoint,
};

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

/// The labels of `indices` as an f32 tensor of class indices, shape (B,).
fn labels(gpu: &Gpu, data: &Dataset, indices: &[usize]) -> Result<Tensor> {
    let l: Vec<f32> = indices.iter().map(|&i| data.labels[i] as f32).collect();
    Tensor::from_slice(gpu, &l, [indices.len()])
}

/// Mean cross-entropy and accuracy of `model` on `data` (eval mode, no recording).
pub fn evaluate_classifier(model: &Classifier, gpu: &Gpu, data: &Dataset) -> Result<(f64, f64)> {
    let _no_grad = no_grad();
    model.set_training(false);
    let mut loss_sum = Tensor::zeros(gpu, [])?;
    let mut correct = 0usize;
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = Tensor::from_slice(gpu, &data.gather(chunk), [chunk.len(), data.pixels()])?;
        let logits = model.forward(&x)?;
        loss_sum =
            loss_sum.add(&softmax_cross_entropy(&logits, &labels(gpu, data, chunk)?)?.sum()?)?;
        let host = logits.to_vec()?;
        for (row, &i) in host.chunks_exact(10).zip(chunk) {
            correct += (predicted_class(row) == data.labels[i] as usize) as usize;
        }
    }
    model.set_training(true);
    let n = data.len().max(1) as f64;
    Ok((loss_sum.item()? as f64 / n, correct as f64 / n))
}

/// Trains the [`Classifier`] on MNIST; writes metrics.jsonl and model.safetensors.
///
/// Errors: data errors; [`crate::Error::NonFiniteLoss`]; I/O errors naming the file.
pub fn train_classifier(
    gpu: &Gpu,
    cfg: &TrainConfig,
) -> Result<(Classifier, Vec<ClassifierMetrics>)> {
    let data = cfg.load_data()?;
    let pixels = data.train.pixels();
    prepare_out_dir(cfg)?;
    gpu.manual_seed(cfg.seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = Classifier::new(gpu, &mut rng)?;
    let params = model.parameters();
    let mut optimizer = Adam::new(cfg.lr);
    let mut history = Vec::new();
    for epoch in 1..=cfg.epochs {
        let batches = Batches::new(data.train.len(), cfg.batch_size, cfg.seed, epoch as u64);
        let steps = batches.num_batches();
        let bar = epoch_bar(cfg.progress, epoch, cfg.epochs, steps);
        let start = Instant::now();
        let mut loss_sum = Tensor::zeros(gpu, [])?;
        for (step, indices) in batches.enumerate() {
            let x = Tensor::from_slice(gpu, &data.train.gather(&indices), [indices.len(), pixels])?;
            let per_sample =
                softmax_cross_entropy(&model.forward(&x)?, &labels(gpu, &data.train, &indices)?)?;
            let loss = per_sample.mean()?;
            let grads = loss.backward()?;
            optimizer.step(&params, &grads)?;
            {
                let _no_grad = no_grad();
                loss_sum = loss_sum.add(&per_sample.sum()?)?;
            }
            end_step(gpu, cfg, &bar, &[("loss", &loss)], epoch, step, steps)?;
        }
        let train_loss = loss_sum.item()? as f64 / data.train.len() as f64;
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let (test_loss, test_accuracy) = evaluate_classifier(&model, gpu, &data.test)?;
        let metrics = ClassifierMetrics {
            epoch,
            train_loss,
            test_loss,
            test_accuracy,
            seconds,
            images_per_second: data.train.len() as f64 / seconds,
        };
        println!(
            "epoch {epoch:>3}/{}  train_loss {:.4}  test_loss {:.4}  test_accuracy {:.4}  {:.1} s  {:.0} img/s",
            cfg.epochs,
            metrics.train_loss,
            metrics.test_loss,
            metrics.test_accuracy,
            metrics.seconds,
            metrics.images_per_second
        );
        append_jsonl(&cfg.metrics_path(), &metrics)?;
        save_checkpoint(
            cfg,
            ModelKind::Classifier,
            model.metadata(),
            &model.named_state(),
            epoch,
        )?;
        history.push(metrics);
    }
    Ok((model, history))
}

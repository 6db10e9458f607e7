//! Counts the GPU work of one MLP-VAE training step (batch 128): submits, dispatches,
//! bind groups and buffers created, uploads and readbacks, after two warm-up steps.
//!
//!     cargo run --release --example step_stats

use deepgen::data::{Batches, Mnist};
use deepgen::models::{MlpConfig, Vae};
use deepgen::nn::Module;
use deepgen::optim::Adam;
use deepgen::{Gpu, Tensor};
use rand::SeedableRng;

fn main() -> deepgen::Result<()> {
    let gpu = Gpu::new()?;
    let mnist = Mnist::load("data/mnist".as_ref())?;
    let model = Vae::new(
        &gpu,
        MlpConfig::default(),
        &mut rand::rngs::StdRng::seed_from_u64(0),
    )?;
    let params = model.parameters();
    let mut adam = Adam::new(1e-3);
    for (step, idx) in Batches::new(1280, 128, 0, 1).enumerate() {
        let before = gpu.stats();
        let start = std::time::Instant::now();
        let x = Tensor::from_slice(&gpu, &mnist.train.gather(&idx), [idx.len(), 784])?;
        let loss = model.loss(&x, 1.0)?;
        let grads = loss.loss.backward()?;
        adam.step(&params, &grads)?;
        drop((loss, grads, x));
        gpu.synchronize()?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let a = gpu.stats();
        println!(
            "step {step}: {} submit, {} dispatches, {} bind groups created, {} buffers created, {} uploads, {} readbacks, {ms:.1} ms",
            a.submits - before.submits,
            a.dispatches - before.dispatches,
            a.bind_groups_created - before.bind_groups_created,
            a.buffers_created - before.buffers_created,
            a.uploads - before.uploads,
            a.readbacks - before.readbacks
        );
    }
    Ok(())
}

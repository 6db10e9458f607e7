//! Counts the GPU work of one MLP-VAE training step (batch 128): submits, dispatches,
//! bind groups and buffers created, uploads and readbacks, after two warm-up steps. Then,
//! where the adapter has timestamp queries, splits the step's GPU time into forward,
//! backward and Adam (each phase submitted on its own, medians of 20 steps).
//!
//!     cargo run --release --example step_stats

use deepgen::data::{Batches, Mnist};
use deepgen::models::{MlpConfig, Vae, VariationalModel};
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
    if !gpu.has_gpu_timer() {
        println!("no GPU timestamps on this adapter: no phase split");
        return Ok(());
    }
    let (mut fwd, mut bwd, mut opt) = (Vec::new(), Vec::new(), Vec::new());
    for idx in Batches::new(128 * 22, 128, 1, 1) {
        let x = Tensor::from_slice(&gpu, &mnist.train.gather(&idx), [idx.len(), 784])?;
        let mut loss = None;
        let mut grads = None;
        let f = gpu.gpu_seconds(|| {
            loss = Some(model.loss(&x, 1.0)?);
            Ok(())
        })?;
        let loss = loss.expect("recorded");
        let b = gpu.gpu_seconds(|| {
            grads = Some(loss.loss.backward()?);
            Ok(())
        })?;
        let grads = grads.expect("recorded");
        let o = gpu.gpu_seconds(|| adam.step(&params, &grads))?;
        if let (Some(f), Some(b), Some(o)) = (f, b, o) {
            fwd.push(f * 1e3);
            bwd.push(b * 1e3);
            opt.push(o * 1e3);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.drain(..2);
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (f, b, o) = (median(&mut fwd), median(&mut bwd), median(&mut opt));
    println!(
        "GPU time per step (ms, median of 20): forward {f:.2}, backward {b:.2}, Adam {o:.2}, total {:.2}",
        f + b + o
    );
    Ok(())
}

//! The cost of the gradient penalty: seconds per WGAN-GP critic step (batch 128) with the
//! penalty (lambda = 10: the critic at the interpolates, its input gradient with
//! `create_graph`, the penalty, and a backward through both) against the same step without
//! it (lambda = 0: the Wasserstein loss alone), for both architectures. Alternates the two
//! kinds of step after two warm-up steps of each; prints the medians and the GPU work per step.
//!
//!     cargo run --release --example wgan_gp_cost [-- STEPS]

use deepgen::data::{Batches, Mnist};
use deepgen::models::{Adversarial, WganArch, WganGp};
use deepgen::optim::Adam;
use deepgen::train::Optimizer;
use deepgen::train::wgan::critic_step;
use deepgen::{Gpu, Tensor};
use rand::SeedableRng;

fn main() -> deepgen::Result<()> {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let gpu = Gpu::new()?;
    let mnist = Mnist::load("data/mnist".as_ref())?;
    let b = 128;
    for arch in [WganArch::Conv, WganArch::Mlp] {
        let model = WganGp::new(&gpu, arch, 100, &mut rand::rngs::StdRng::seed_from_u64(0))?;
        let params = model
            .discriminator_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let mut critic = Optimizer::new(Adam::new(1e-4).with_betas(0.5, 0.9), params);
        let eps = Tensor::full(&gpu, [b, 784], 0.3)?;
        let mut batches = Batches::new(60_000, b, 0, 1);
        let mut run = |lambda: f32| -> deepgen::Result<(f64, u64)> {
            let idx = batches.next().expect("enough batches");
            let x = Tensor::from_slice(&gpu, &mnist.train.gather(&idx), [b, 784])?;
            gpu.synchronize()?;
            let before = gpu.stats().dispatches;
            let start = std::time::Instant::now();
            let out = critic_step(&model, &mut critic, &x, &eps, lambda)?;
            out.loss.item()?;
            Ok((
                start.elapsed().as_secs_f64(),
                gpu.stats().dispatches - before,
            ))
        };
        for _ in 0..2 {
            run(10.0)?;
            run(0.0)?;
        }
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let (mut d_with, mut d_without) = (0, 0);
        for _ in 0..steps {
            let (s, d) = run(10.0)?;
            with.push(s);
            d_with = d;
            let (s, d) = run(0.0)?;
            without.push(s);
            d_without = d;
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (w, wo) = (median(&mut with), median(&mut without));
        println!(
            "{}: critic step with the penalty {w:.3} s ({d_with} dispatches), without {wo:.3} s ({d_without} dispatches): {:.2}x (medians of {steps}, batch {b})",
            arch.name(),
            w / wo
        );
    }
    Ok(())
}

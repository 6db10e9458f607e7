//! A GAN on MNIST, on one page: the MLP GAN or the DCGAN, one adversarial loop.
//!
//!     cargo run --release --example gan_mnist -- [EPOCHS] [gan|dcgan] [IMAGES]
//!
//! The same models and loop as `deepgen train gan` / `deepgen train dcgan` (Goodfellow et al.
//! 2014, non-saturating generator loss, sec. 3; Radford et al. 2016 for the DCGAN), without the
//! bookkeeping (metrics file, checkpoints, progress bars): read it top to bottom.

use deepgen::data::{Batches, Mnist};
use deepgen::models::{Adversarial, Dcgan, MlpGan};
use deepgen::ops::bce_with_logits;
use deepgen::optim::Adam;
use deepgen::{Gpu, Tensor, no_grad};
use rand::SeedableRng;

fn main() -> deepgen::Result<()> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let which = args.next().unwrap_or_else(|| "gan".to_string());
    // Train on the first IMAGES training images (default: all 60,000).
    let images: Option<usize> = args.next().and_then(|s| s.parse().ok());
    let (batch_size, lr, noise_dim, seed) = (128, 2e-4, 100, 0);

    // 1. The GPU, the data (pixels scaled to [-1, 1], the generator's tanh range) and the model.
    let gpu = Gpu::new()?;
    let mut mnist = Mnist::load("data/mnist".as_ref())?;
    if let Some(n) = images {
        mnist.train = mnist.train.truncate(n);
    }
    gpu.manual_seed(seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let model: Box<dyn Adversarial> = match which.as_str() {
        "dcgan" => Box::new(Dcgan::new(&gpu, noise_dim, &mut rng)?),
        _ => Box::new(MlpGan::new(&gpu, noise_dim, &mut rng)?),
    };
    let params = |named: Vec<(String, Tensor)>| named.into_iter().map(|(_, t)| t).collect();
    let (g_params, d_params): (Vec<Tensor>, Vec<Tensor>) = (
        params(model.generator_parameters()),
        params(model.discriminator_parameters()),
    );
    // Two optimizers, Adam with beta1 = 0.5 as in the DCGAN paper.
    let mut opt_g = Adam::new(lr).with_betas(0.5, 0.999);
    let mut opt_d = Adam::new(lr).with_betas(0.5, 0.999);

    for epoch in 1..=epochs {
        let (mut d_sum, mut g_sum) = (Tensor::zeros(&gpu, [])?, Tensor::zeros(&gpu, [])?);
        for indices in Batches::new(mnist.train.len(), batch_size, seed, epoch as u64) {
            let b = indices.len();
            let real = Tensor::from_slice(&gpu, &mnist.train.gather(&indices), [b, 784])?
                .affine(2.0, -1.0)?;
            let (ones, zeros) = (
                Tensor::full(&gpu, [b, 1], 1.0)?,
                Tensor::zeros(&gpu, [b, 1])?,
            );

            // 2. Discriminator step: real images labelled 1, generated ones (detached, so no
            //    gradient reaches the generator) labelled 0.
            let z = Tensor::randn(&gpu, [b, noise_dim])?;
            let fake = model.generator(&z)?;
            let d_loss = bce_with_logits(&model.discriminator(&real)?, &ones)?
                .add(&bce_with_logits(
                    &model.discriminator(&fake.detach())?,
                    &zeros,
                )?)?
                .mean()?;
            let d_grads = d_loss.backward()?;
            opt_d.step(&d_params, &d_grads)?;

            // 3. Generator step through the updated discriminator: label the fakes 1, i.e.
            //    maximise log D(G(z)) (the non-saturating loss).
            let g_loss = bce_with_logits(&model.discriminator(&fake)?, &ones)?.mean()?;
            let g_grads = g_loss.backward()?;
            opt_g.step(&g_params, &g_grads)?;

            // 4. Losses summed on the GPU; one submit for the whole step.
            let _no_grad = no_grad();
            d_sum = d_sum.add(&d_loss.scale(b as f32)?)?;
            g_sum = g_sum.add(&g_loss.scale(b as f32)?)?;
            gpu.flush();
        }
        // 5. One readback per epoch.
        let n = mnist.train.len() as f32;
        println!(
            "epoch {epoch}: d_loss {:.3}  g_loss {:.3}",
            d_sum.item()? / n,
            g_sum.item()? / n
        );
    }

    // 6. 64 samples, with the generator's batch norms (DCGAN) on their running statistics.
    model.set_generator_training(false);
    let _no_grad = no_grad();
    let z = Tensor::randn(&gpu, [64, noise_dim])?;
    let images = model.generate(&z)?.to_vec()?;
    let path = format!("{which}_samples.png");
    deepgen::viz::save_grid(path.as_ref(), &images, 28, 28, 8)?;
    println!("wrote {path}");
    Ok(())
}

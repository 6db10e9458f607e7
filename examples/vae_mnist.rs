//! A variational autoencoder on MNIST, on one page: the MLP VAE or the convolutional one.
//!
//!     cargo run --release --example vae_mnist -- [EPOCHS] [vae|conv-vae] [IMAGES]
//!
//! The loop `deepgen train vae` / `deepgen train conv-vae` runs, calling the same step
//! (`deepgen::train::vae::vae_step`), without the bookkeeping (metrics file, checkpoints,
//! progress bars, test evaluation): read it top to bottom, then the step in src/train/vae.rs.

use deepgen::data::{Batches, Mnist};
use deepgen::models::{ConvVae, MlpConfig, Vae, VariationalModel};
use deepgen::optim::Adam;
use deepgen::train::Optimizer;
use deepgen::train::vae::vae_step;
use deepgen::{Gpu, Tensor, no_grad};
use rand::SeedableRng;

fn main() -> deepgen::Result<()> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let which = args.next().unwrap_or_else(|| "vae".to_string());
    // Train on the first IMAGES training images (default: all 60,000).
    let images: Option<usize> = args.next().and_then(|s| s.parse().ok());
    let (batch_size, lr, latent_dim, beta, seed) = (128, 1e-3, 20, 1.0, 0);

    // 1. The GPU, the data (pixels in [0, 1]) and the model: the MLP VAE 784-400-(20, 20) /
    //    20-400-784, or the conv VAE (two strided convs / two transposed convs).
    let gpu = Gpu::new()?;
    let mut mnist = Mnist::load("data/mnist".as_ref())?;
    if let Some(n) = images {
        mnist.train = mnist.train.truncate(n);
    }
    gpu.manual_seed(seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vae: Box<dyn VariationalModel> = match which.as_str() {
        "conv-vae" => Box::new(ConvVae::new(&gpu, latent_dim, &mut rng)?),
        _ => Box::new(Vae::new(&gpu, MlpConfig::default(), &mut rng)?),
    };
    // 2. Adam over every parameter.
    let mut optimizer = Optimizer::new(Adam::new(lr), vae.parameters());

    for epoch in 1..=epochs {
        let mut loss_sum = Tensor::zeros(&gpu, [])?;
        for indices in Batches::new(mnist.train.len(), batch_size, seed, epoch as u64) {
            // 3. A batch x: (B, 784).
            let x = Tensor::from_slice(&gpu, &mnist.train.gather(&indices), [indices.len(), 784])?;
            // 4. One step: encode to (mu, logvar); z = mu + exp(logvar / 2) * eps and
            //    KL(q(z|x) || N(0, I)) from one fused kernel; decode to logits; negative ELBO
            //    per sample = BCE summed over pixels + beta * KL, averaged over the batch;
            //    backward; Adam. Returns the batch's sums (loss, recon, KL), still on the GPU.
            let step = vae_step(vae.as_ref(), &mut optimizer, &x, beta)?;
            // 5. Sum on the GPU; everything so far is recorded, and flush submits it at once.
            let _no_grad = no_grad();
            loss_sum = loss_sum.add(&step.sums[0])?;
            gpu.flush();
        }
        // 6. One readback per epoch.
        println!(
            "epoch {epoch}: train loss {:.2} nats per image",
            loss_sum.item()? / mnist.train.len() as f32
        );
    }

    // 7. Decode 64 draws from the prior N(0, I) into an image grid.
    let _no_grad = no_grad();
    let z = Tensor::randn(&gpu, [64, latent_dim])?;
    let images = vae.decode(&z)?.sigmoid()?.to_vec()?;
    let path = format!("{which}_samples.png");
    deepgen::viz::save_grid(path.as_ref(), &images, 28, 28, 8)?;
    println!("wrote {path}");
    Ok(())
}

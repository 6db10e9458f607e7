//! A variational autoencoder on MNIST, on one page: the MLP VAE or the convolutional one.
//!
//!     cargo run --release --example vae_mnist -- [EPOCHS] [vae|conv-vae] [IMAGES]
//!
//! The same models and loop as `deepgen train vae` / `deepgen train conv-vae`, without the
//! bookkeeping (metrics file, checkpoints, progress bars): read it top to bottom.

use deepgen::data::{Batches, Mnist};
use deepgen::models::{ConvVae, MlpConfig, Vae, VariationalModel};
use deepgen::optim::Adam;
use deepgen::{Gpu, Tensor, no_grad};
use rand::SeedableRng;

fn main() -> deepgen::Result<()> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let which = args.next().unwrap_or_else(|| "vae".to_string());
    // Train on the first IMAGES training images (default: all 60,000).
    let images: Option<usize> = args.next().and_then(|s| s.parse().ok());
    let (batch_size, lr, latent_dim, seed) = (128, 1e-3, 20, 0);

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
    let params = vae.parameters();
    let mut adam = Adam::new(lr);

    for epoch in 1..=epochs {
        let mut loss_sum = Tensor::zeros(&gpu, [])?;
        for indices in Batches::new(mnist.train.len(), batch_size, seed, epoch as u64) {
            // 2. A batch x: (B, 784).
            let x = Tensor::from_slice(&gpu, &mnist.train.gather(&indices), [indices.len(), 784])?;
            // 3. Encode to (mu, logvar), sample z = mu + exp(logvar / 2) * eps, decode to logits.
            let (mu, logvar) = vae.encode(&x)?;
            let eps = Tensor::randn(&gpu, mu.shape().clone())?;
            let z = deepgen::ops::reparameterize(&mu, &logvar, &eps)?;
            let logits = vae.decode(&z)?;
            // 4. Negative ELBO per sample: BCE summed over pixels + KL(q(z|x) || N(0, I)); mean over the batch.
            let recon = deepgen::ops::bce_with_logits(&logits, &x)?;
            let kl = deepgen::ops::kl_divergence(&mu, &logvar)?;
            let per_sample = recon.add(&kl)?;
            let loss = per_sample.mean()?;
            // 5. Backpropagate and update. Everything so far is recorded; flush submits it at once.
            let grads = loss.backward()?;
            adam.step(&params, &grads)?;
            let _no_grad = no_grad();
            loss_sum = loss_sum.add(&per_sample.sum()?)?;
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

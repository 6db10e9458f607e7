//! A GAN on MNIST, on one page: the MLP GAN or the DCGAN, one adversarial loop.
//!
//!     cargo run --release --example gan_mnist -- [EPOCHS] [gan|dcgan] [IMAGES]
//!
//! The loop `deepgen train gan` / `deepgen train dcgan` runs (Goodfellow et al. 2014,
//! non-saturating generator loss, sec. 3; Radford et al. 2016 for the DCGAN), calling the same
//! step (`deepgen::train::gan::gan_step`), without the bookkeeping (metrics file, checkpoints,
//! progress bars, per-epoch grids): read it top to bottom, then the step in src/train/gan.rs.

use deepgen::data::{Batches, Mnist};
use deepgen::models::{Adversarial, Dcgan, MlpGan};
use deepgen::optim::Adam;
use deepgen::train::Optimizer;
use deepgen::train::gan::gan_step;
use deepgen::{Gpu, Tensor, no_grad};
use rand::SeedableRng;

fn main() -> deepgen::Result<()> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let which = args.next().unwrap_or_else(|| "gan".to_string());
    // Train on the first IMAGES training images (default: all 60,000).
    let images: Option<usize> = args.next().and_then(|s| s.parse().ok());
    let (batch_size, lr, noise_dim, seed) = (128, 2e-4, 100, 0);

    // 1. The GPU, the data (pixels in [0, 1]; the step scales them to [-1, 1], the
    //    generator's tanh range) and the model.
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
    // 2. Two optimizers, one per player (the layers named generator.* and discriminator.*),
    //    Adam with beta1 = 0.5 as in the DCGAN paper.
    let adam = |named: Vec<(String, Tensor)>| {
        let params = named.into_iter().map(|(_, t)| t).collect();
        Optimizer::new(Adam::new(lr).with_betas(0.5, 0.999), params)
    };
    let mut opt_d = adam(model.discriminator_parameters());
    let mut opt_g = adam(model.generator_parameters());

    for epoch in 1..=epochs {
        let (mut d_sum, mut g_sum) = (Tensor::zeros(&gpu, [])?, Tensor::zeros(&gpu, [])?);
        for indices in Batches::new(mnist.train.len(), batch_size, seed, epoch as u64) {
            let x = Tensor::from_slice(&gpu, &mnist.train.gather(&indices), [indices.len(), 784])?;
            // 3. One step of the game:
            //    - discriminator: real images labelled 1, generated ones G(z) (detached, so no
            //      gradient reaches the generator) labelled 0; backward; Adam on D;
            //    - generator: label the fakes 1 through the updated discriminator, i.e.
            //      maximise log D(G(z)) (the non-saturating loss); backward; Adam on G.
            //    Returns the batch's sums: d_loss, g_loss, D(x), D(G(z)), still on the GPU.
            let step = gan_step(model.as_ref(), &mut opt_d, &mut opt_g, &x)?;
            // 4. Losses summed on the GPU; one submit for the whole step.
            let _no_grad = no_grad();
            d_sum = d_sum.add(&step.sums[0])?;
            g_sum = g_sum.add(&step.sums[1])?;
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

//! `cargo bench`: GFLOP/s of the matmul kernels at 1024^3 and at the MLP VAE's own shapes.
//!
//! Shapes are M x K x N: C (M x N) = op(A) op(B) with K contracted. The VAE's layers
//! (batch 128): encoder 784 -> 400 and decoder 400 -> 784 run `matmul_nt` forward;
//! their input gradients run `matmul` and their weight gradients `matmul_tn`.

use deepgen::Gpu;
use deepgen::bench::{MatmulVariant, bench_matmul};

fn main() -> deepgen::Result<()> {
    // `cargo bench -- <filter>` runs only the rows whose name contains the filter.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let gpu = Gpu::new()?;
    println!(
        "adapter: {} ({})",
        gpu.summary().name,
        gpu.summary().backend
    );
    println!(
        "{:<10} {:>16} {:>12} {:>10}",
        "kernel", "M x K x N", "median ms", "GFLOP/s"
    );
    use MatmulVariant::*;
    let cases = [
        (NN, 1024, 1024, 1024),
        (NT, 1024, 1024, 1024),
        (TN, 1024, 1024, 1024),
        // Forward of the encoder's first layer and of the decoder's last layer.
        (NT, 128, 784, 400),
        (NT, 128, 400, 784),
        // Input gradient of the decoder's last layer: dh = dy W.
        (NN, 128, 784, 400),
        (NN, 128, 400, 784),
        // Weight gradients: dW = dy^T x.
        (TN, 400, 128, 784),
        (TN, 784, 128, 400),
        // The latent layers.
        (NT, 128, 400, 20),
        (NT, 128, 20, 400),
    ];
    for (variant, m, k, n) in cases {
        let name = format!("{} {m}x{k}x{n}", variant.name());
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let r = bench_matmul(&gpu, variant, m, k, n, 4e9)?;
        println!(
            "{:<10} {:>16} {:>12.3} {:>10.2}",
            r.kernel,
            r.shape,
            r.median_seconds * 1e3,
            r.gflops()
        );
    }
    Ok(())
}

use deepgen::bench::time_op;
use deepgen::ops::{Conv2dOptions, conv2d};
use deepgen::{Gpu, Tensor};
use std::time::Instant;
fn main() -> deepgen::Result<()> {
    let gpu = Gpu::new()?;
    for (n, c, h, o) in [
        (128usize, 1usize, 28usize, 32usize),
        (128, 32, 14, 64),
        (128, 64, 14, 128),
    ] {
        let x = Tensor::randn(&gpu, [n, c, h, h])?;
        let w = Tensor::randn(&gpu, [o, c, 4, 4])?.requires_grad_();
        let b = Tensor::randn(&gpu, [o])?;
        let opt = Conv2dOptions::new(2, 1);
        let oh = h / 2;
        let flops = 2.0 * (n * oh * oh * o * c * 16) as f64;
        let t = time_op(&gpu, 5, 3, || conv2d(&x, &w, Some(&b), opt))?;
        println!(
            "conv2d fwd {n}x{c}x{h}x{h} -> {o}: {:.2} ms {:.1} GFLOP/s",
            t * 1e3,
            flops / t / 1e9
        );
        let (m, k) = (n * oh * oh, c * 16);
        let col = Tensor::randn(&gpu, [m, k])?;
        let wf = Tensor::randn(&gpu, [o, k])?;
        let t = time_op(&gpu, 5, 3, || col.matmul_nt(&wf))?;
        println!(
            "   matmul_nt {m}x{k}x{o}: {:.2} ms {:.1} GFLOP/s",
            t * 1e3,
            flops / t / 1e9
        );
        let dy = Tensor::randn(&gpu, [m, o])?;
        let t = time_op(&gpu, 5, 3, || dy.matmul_tn(&col))?;
        println!(
            "   matmul_tn {o}x{m}x{k}: {:.2} ms {:.1} GFLOP/s",
            t * 1e3,
            flops / t / 1e9
        );
        let t = time_op(&gpu, 5, 3, || dy.matmul(&wf))?;
        println!(
            "   matmul {m}x{o}x{k}: {:.2} ms {:.1} GFLOP/s",
            t * 1e3,
            flops / t / 1e9
        );
        let x2 = x.clone().requires_grad_();
        let y = conv2d(&x2, &w, Some(&b), opt)?;
        let l = y.sum()?;
        gpu.synchronize()?;
        let s = Instant::now();
        let g = l.backward()?;
        gpu.synchronize()?;
        println!(
            "   backward: {:.2} ms ({})",
            s.elapsed().as_secs_f64() * 1e3,
            g.len()
        );
    }
    Ok(())
}

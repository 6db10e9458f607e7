use deepgen::bench::time_op;
use deepgen::ops::{bce_with_logits, kl_divergence, reparameterize};
use deepgen::{Gpu, Tensor};
fn main() -> deepgen::Result<()> {
    let gpu = Gpu::new()?;
    let h = Tensor::randn(&gpu, [128, 400])?;
    let b = Tensor::randn(&gpu, [400])?;
    let x = Tensor::randn(&gpu, [128, 784])?;
    let t = Tensor::randn(&gpu, [128, 784])?.sigmoid()?;
    let mu = Tensor::randn(&gpu, [128, 20])?;
    let lv = Tensor::randn(&gpu, [128, 20])?;
    let w = Tensor::randn(&gpu, [784, 400])?;
    let p = |name: &str, s: f64| println!("{name:<28} {:8.3} ms", s * 1e3);
    p("add bias 128x400", time_op(&gpu, 20, 5, || h.add(&b))?);
    p("add same 128x400", time_op(&gpu, 20, 5, || h.add(&h))?);
    p("relu 128x400", time_op(&gpu, 20, 5, || h.relu())?);
    p("sum_axis0 128x400", time_op(&gpu, 20, 5, || h.sum_axis(0))?);
    p(
        "bce fwd 128x784",
        time_op(&gpu, 20, 5, || bce_with_logits(&x, &t))?,
    );
    p(
        "kl fwd 128x20",
        time_op(&gpu, 20, 5, || kl_divergence(&mu, &lv))?,
    );
    p(
        "randn 128x20",
        time_op(&gpu, 20, 5, || Tensor::randn(&gpu, [128, 20]))?,
    );
    p(
        "reparam 128x20",
        time_op(&gpu, 20, 5, || reparameterize(&mu, &lv, &mu))?,
    );
    p("copy 784x400", time_op(&gpu, 20, 5, || w.deep_clone())?);
    p("affine 784x400", time_op(&gpu, 20, 5, || w.scale(0.5))?);
    p(
        "empty fill 1",
        time_op(&gpu, 20, 5, || Tensor::zeros(&gpu, [1]))?,
    );
    Ok(())
}

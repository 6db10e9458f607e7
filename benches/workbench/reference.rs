//! The f64 references of the kernels: plain loops, written once, used by the tests (through
//! `tests/common/mod.rs`, which includes this file) and by the workbench's checks (every
//! family checks its kernel against these before timing it).
//!
//! Each function computes in f64 what a kernel computes in f32, with the formula in its doc
//! comment; layouts are the engine's (row-major, NCHW, PyTorch's weight layouts). Gradients are
//! of the sum of the op's output (`d sum(op(...)) / d input`), the loss the tests and the
//! workbench backpropagate.
//!
//! Not every includer uses every function (the benchmark binary needs no batch norm), hence the
//! `allow` below.
#![allow(dead_code)]

use deepgen::ops::Activation;

// ---- matmul ------------------------------------------------------------------------------------

/// C (m x n) = op(A) op(B) with A, B given in their stored layouts: A is (m, k), or (k, m) when
/// `trans_a`; B is (k, n), or (n, k) when `trans_b`.
pub fn ref_matmul(
    a: &[f64],
    b: &[f64],
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0;
            for p in 0..k {
                let av = if trans_a { a[p * m + i] } else { a[i * k + p] };
                let bv = if trans_b { b[j * k + p] } else { b[p * n + j] };
                acc += av * bv;
            }
            c[i * n + j] = acc;
        }
    }
    c
}

// ---- element-wise ------------------------------------------------------------------------------

/// 1 / (1 + exp(-x)).
pub fn ref_sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The f64 reference of every activation (an exhaustive match: a new activation needs its
/// formula here, and then every test that loops over the activations checks it).
pub fn ref_activation(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Identity => x,
        Activation::Relu => x.max(0.0),
        Activation::LeakyRelu(slope) => {
            if x > 0.0 {
                x
            } else {
                slope as f64 * x
            }
        }
        Activation::Sigmoid => ref_sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Exp => x.exp(),
        Activation::Affine(alpha, beta) => alpha as f64 * x + beta as f64,
        Activation::Sqrt => x.max(0.0).sqrt(),
    }
}

// ---- reductions --------------------------------------------------------------------------------

/// `scale` times the sum over the middle axis of a tensor viewed as (outer, len, inner):
/// y[o, i] = scale * sum_l x[o, l, i].
pub fn ref_reduce(x: &[f64], outer: usize, len: usize, inner: usize, scale: f64) -> Vec<f64> {
    let mut y = vec![0.0; outer * inner];
    for o in 0..outer {
        for l in 0..len {
            for i in 0..inner {
                y[o * inner + i] += x[(o * len + l) * inner + i];
            }
        }
    }
    y.iter().map(|v| v * scale).collect()
}

// ---- losses (x, t: (rows, dim); one value per row) ---------------------------------------------

/// Per-row sums of binary cross-entropy on logits, in the stable form
/// max(x, 0) - x t + log(1 + exp(-|x|)) (nats).
pub fn ref_bce_with_logits(x: &[f64], t: &[f64], rows: usize) -> Vec<f64> {
    let dim = x.len() / rows;
    (0..rows)
        .map(|r| {
            (0..dim)
                .map(|d| {
                    let (xv, tv) = (x[r * dim + d], t[r * dim + d]);
                    xv.max(0.0) - xv * tv + (1.0 + (-xv.abs()).exp()).ln()
                })
                .sum()
        })
        .collect()
}

/// d sum(bce_with_logits(x, t)) / dx = sigmoid(x) - t, element-wise.
pub fn ref_bce_with_logits_grad(x: &[f64], t: &[f64]) -> Vec<f64> {
    x.iter().zip(t).map(|(&x, &t)| ref_sigmoid(x) - t).collect()
}

/// Per-row mean squared error: sum_d (x - t)^2 / dim.
pub fn ref_mse(x: &[f64], t: &[f64], rows: usize) -> Vec<f64> {
    let dim = x.len() / rows;
    (0..rows)
        .map(|r| {
            (0..dim)
                .map(|d| (x[r * dim + d] - t[r * dim + d]).powi(2))
                .sum::<f64>()
                / dim as f64
        })
        .collect()
}

/// Per-row softmax cross-entropy of logits x (rows, classes) against class indices `labels`
/// (one per row, as floats): logsumexp(x_r) - x_r[label_r] (nats), with the max subtracted.
pub fn ref_softmax_cross_entropy(x: &[f64], labels: &[f64], rows: usize) -> Vec<f64> {
    let c = x.len() / rows;
    (0..rows)
        .map(|r| {
            let row = &x[r * c..(r + 1) * c];
            let m = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            lse - row[labels[r] as usize]
        })
        .collect()
}

// ---- the VAE's latent terms (mu, logvar, eps: (rows, latent_dim)) -------------------------------

/// Per-row KL(N(mu, exp(logvar)) || N(0, I)) = -1/2 sum_d (1 + logvar - mu^2 - exp(logvar))
/// (nats; Kingma & Welling 2014, appendix B).
pub fn ref_kl_divergence(mu: &[f64], logvar: &[f64], rows: usize) -> Vec<f64> {
    let dim = mu.len() / rows;
    (0..rows)
        .map(|r| {
            -0.5 * (0..dim)
                .map(|d| {
                    let (m, lv) = (mu[r * dim + d], logvar[r * dim + d]);
                    1.0 + lv - m * m - lv.exp()
                })
                .sum::<f64>()
        })
        .collect()
}

/// (dmu, dlogvar) of sum(kl_divergence(mu, logvar)): mu and (exp(logvar) - 1) / 2.
pub fn ref_kl_divergence_grad(mu: &[f64], logvar: &[f64]) -> (Vec<f64>, Vec<f64>) {
    (
        mu.to_vec(),
        logvar.iter().map(|&l| (l.exp() - 1.0) / 2.0).collect(),
    )
}

/// The reparameterization trick: z = mu + exp(logvar / 2) eps, element-wise.
pub fn ref_reparameterize(mu: &[f64], logvar: &[f64], eps: &[f64]) -> Vec<f64> {
    (0..mu.len())
        .map(|i| mu[i] + (logvar[i] / 2.0).exp() * eps[i])
        .collect()
}

/// (dmu, dlogvar) of sum(reparameterize(mu, logvar, eps)): 1 and eps exp(logvar / 2) / 2.
pub fn ref_reparameterize_grad(logvar: &[f64], eps: &[f64]) -> (Vec<f64>, Vec<f64>) {
    (
        vec![1.0; logvar.len()],
        logvar
            .iter()
            .zip(eps)
            .map(|(&l, &e)| e * (l / 2.0).exp() / 2.0)
            .collect(),
    )
}

// ---- batch norm (x: (outer, C, inner), statistics per channel) ---------------------------------

/// Training-mode batch norm: y = gamma (x - mean) / sqrt(var + eps) + beta with the batch's
/// mean and biased variance per channel; returns (y, mean, biased var).
pub fn ref_batch_norm(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    outer: usize,
    c: usize,
    inner: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (outer * inner) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let vals: Vec<f64> = (0..outer)
            .flat_map(|n| (0..inner).map(move |i| (n * c + ch) * inner + i))
            .map(|k| x[k])
            .collect();
        mean[ch] = vals.iter().sum::<f64>() / m;
        var[ch] = vals.iter().map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / m;
    }
    let y = ref_batch_norm_eval(x, gamma, beta, &mean, &var, c, inner, eps);
    (y, mean, var)
}

/// Batch norm with given statistics (eval mode, the running ones):
/// y = gamma (x - mean) / sqrt(var + eps) + beta, channel (k / inner) mod C.
#[allow(clippy::too_many_arguments)]
pub fn ref_batch_norm_eval(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    var: &[f64],
    c: usize,
    inner: usize,
    eps: f64,
) -> Vec<f64> {
    (0..x.len())
        .map(|k| {
            let ch = (k / inner) % c;
            gamma[ch] * (x[k] - mean[ch]) / (var[ch] + eps).sqrt() + beta[ch]
        })
        .collect()
}

// ---- convolutions (NCHW) -----------------------------------------------------------------------

/// Output size of a convolution along one axis: (in + 2 pad - dil (k - 1) - 1) / stride + 1.
fn conv_out(len: usize, k: usize, stride: usize, pad: usize, dil: usize) -> usize {
    (len + 2 * pad - dil * (k - 1) - 1) / stride + 1
}

/// Calls `f(y index, x index, w index)` for every multiply-add of a conv2d of x (n, c, h, w)
/// with w (o, c, kh, kw) into y (n, o, oh, ow): output pixel (oy, ox) sees input
/// (oy stride - pad + ky dil, ox stride - pad + kx dil), skipped outside the input (zero
/// padding). The index algebra of both conv2d references.
#[allow(clippy::too_many_arguments)]
fn conv2d_taps(
    [n, c, h, w]: [usize; 4],
    [o, kh, kw]: [usize; 3],
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    mut f: impl FnMut(usize, usize, usize),
) {
    let oh = conv_out(h, kh, stride[0], pad[0], dil[0]);
    let ow = conv_out(w, kw, stride[1], pad[1], dil[1]);
    for ni in 0..n {
        for oi in 0..o {
            for y0 in 0..oh {
                for x0 in 0..ow {
                    for ci in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y0 * stride[0] + ky * dil[0]) as isize - pad[0] as isize;
                                let ix = (x0 * stride[1] + kx * dil[1]) as isize - pad[1] as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    f(
                                        ((ni * o + oi) * oh + y0) * ow + x0,
                                        ((ni * c + ci) * h + iy as usize) * w + ix as usize,
                                        ((oi * c + ci) * kh + ky) * kw + kx,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Direct 2-D cross-correlation: x (n, c, h, w), w (o, c, kh, kw), optional bias (o); returns
/// y (n, o, oh, ow) and (oh, ow), OH = (H + 2 pad - dil (KH - 1) - 1) / stride + 1:
/// y[n, o, oy, ox] = bias[o] + sum over (c, ky, kx) of
/// x[n, c, oy stride - pad + ky dil, ox stride - pad + kx dil] w[o, c, ky, kx].
#[allow(clippy::too_many_arguments)]
pub fn ref_conv2d(
    x: &[f64],
    wt: &[f64],
    bias: Option<&[f64]>,
    input: [usize; 4],
    kernel: [usize; 3],
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
) -> (Vec<f64>, [usize; 2]) {
    let [n, _, h, w] = input;
    let [o, kh, kw] = kernel;
    let oh = conv_out(h, kh, stride[0], pad[0], dil[0]);
    let ow = conv_out(w, kw, stride[1], pad[1], dil[1]);
    let mut y = vec![0.0; n * o * oh * ow];
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v = b[(i / (oh * ow)) % o];
        }
    }
    conv2d_taps(input, kernel, stride, pad, dil, |yi, xi, wi| {
        y[yi] += x[xi] * wt[wi]
    });
    (y, [oh, ow])
}

/// The weight gradient of [`ref_conv2d`]: dw[o, c, ky, kx] = sum over (n, oy, ox) of
/// dy[n, o, oy, ox] x[n, c, oy stride - pad + ky dil, ox stride - pad + kx dil] (0 outside), for
/// x (n, c, h, w) and dy (n, o, oh, ow); returns dw (o, c, kh, kw).
///
/// It is also conv_transpose2d's weight gradient with the roles swapped: a transposed
/// convolution's input x (n, c_in, h, w) is the output side of a conv2d from its output y, so its
/// dw (c_in, c_out, kh, kw) is this function of (dy, x) with geometry [n, c_out, OH, OW] and
/// [c_in, kh, kw] (for output padding below the stride, as PyTorch requires).
#[allow(clippy::too_many_arguments)]
pub fn ref_conv2d_backward_weight(
    x: &[f64],
    dy: &[f64],
    input: [usize; 4],
    kernel: [usize; 3],
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
) -> Vec<f64> {
    let [o, kh, kw] = kernel;
    let mut dw = vec![0.0; o * input[1] * kh * kw];
    conv2d_taps(input, kernel, stride, pad, dil, |yi, xi, wi| {
        dw[wi] += dy[yi] * x[xi]
    });
    dw
}

/// Direct 2-D transposed convolution: x (n, cin, h, w), w (cin, cout, kh, kw), optional bias
/// (cout); returns y (n, cout, oh, ow) and (oh, ow),
/// OH = (H - 1) stride + dil (KH - 1) + out_pad + 1 - 2 pad. Input pixel (iy, ix) adds into
/// output (iy stride - pad + ky dil, ix stride - pad + kx dil).
#[allow(clippy::too_many_arguments)]
pub fn ref_conv_transpose2d(
    x: &[f64],
    wt: &[f64],
    bias: Option<&[f64]>,
    [n, cin, h, w]: [usize; 4],
    [cout, kh, kw]: [usize; 3],
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    out_pad: [usize; 2],
) -> (Vec<f64>, [usize; 2]) {
    let oh = (h - 1) * stride[0] + dil[0] * (kh - 1) + out_pad[0] + 1 - 2 * pad[0];
    let ow = (w - 1) * stride[1] + dil[1] * (kw - 1) + out_pad[1] + 1 - 2 * pad[1];
    let mut y = vec![0.0; n * cout * oh * ow];
    for ni in 0..n {
        for co in 0..cout {
            for v in y[(ni * cout + co) * oh * ow..(ni * cout + co + 1) * oh * ow].iter_mut() {
                *v = bias.map_or(0.0, |b| b[co]);
            }
        }
        for ci in 0..cin {
            for iy in 0..h {
                for ix in 0..w {
                    let xv = x[((ni * cin + ci) * h + iy) * w + ix];
                    for co in 0..cout {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let y0 = (iy * stride[0] + ky * dil[0]) as isize - pad[0] as isize;
                                let x0 = (ix * stride[1] + kx * dil[1]) as isize - pad[1] as isize;
                                if y0 >= 0 && x0 >= 0 && (y0 as usize) < oh && (x0 as usize) < ow {
                                    y[((ni * cout + co) * oh + y0 as usize) * ow + x0 as usize] +=
                                        xv * wt[((ci * cout + co) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (y, [oh, ow])
}

// ---- optimizer ---------------------------------------------------------------------------------

/// Adam's hyperparameters, as `deepgen::optim::Adam` holds them.
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// (beta1, beta2).
    pub betas: (f64, f64),
    /// Added to the root of the second moment.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

/// Step `t` (1-based) of Adam (Kingma & Ba 2015, Algorithm 1) on p, with moments m and v,
/// in place: g' = g + wd p; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
/// p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
pub fn ref_adam_step(
    p: &mut [f64],
    m: &mut [f64],
    v: &mut [f64],
    grad: &[f64],
    t: i32,
    c: AdamConfig,
) {
    let (b1, b2) = c.betas;
    for i in 0..p.len() {
        let g = grad[i] + c.weight_decay * p[i];
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        let m_hat = m[i] / (1.0 - b1.powi(t));
        let v_hat = v[i] / (1.0 - b2.powi(t));
        p[i] -= c.lr * m_hat / (v_hat.sqrt() + c.eps);
    }
}

// ---- random numbers ----------------------------------------------------------------------------

/// `n` standard normals as `randn` draws them with `seed` from Philox counter `counter`: host
/// Philox-4x32-10 (Salmon et al. 2011) with the counter/key layout and Box-Muller transform of
/// `shaders/random.wgsl` (each counter gives four normals).
pub fn ref_randn(seed: u64, counter: u64, n: usize) -> Vec<f64> {
    const M0: u64 = 0xD2511F53;
    const M1: u64 = 0xCD9E8D57;
    let mut out = Vec::new();
    let mut t = 0u64;
    while out.len() < n {
        let ctr = counter + t;
        let mut c = [ctr as u32, (ctr >> 32) as u32, 0u32, 0u32];
        let mut k = [seed as u32, (seed >> 32) as u32];
        for _ in 0..10 {
            let p0 = M0 * c[0] as u64;
            let p1 = M1 * c[2] as u64;
            c = [
                (p1 >> 32) as u32 ^ c[1] ^ k[0],
                p1 as u32,
                (p0 >> 32) as u32 ^ c[3] ^ k[1],
                p0 as u32,
            ];
            k = [k[0].wrapping_add(0x9E3779B9), k[1].wrapping_add(0xBB67AE85)];
        }
        let unit = |x: u32| ((x >> 8) as f64 + 0.5) / 16777216.0;
        let tau = std::f64::consts::TAU;
        let (r0, r1) = (
            (-2.0 * unit(c[0]).ln()).sqrt(),
            (-2.0 * unit(c[2]).ln()).sqrt(),
        );
        out.extend([
            r0 * (tau * unit(c[1])).cos(),
            r0 * (tau * unit(c[1])).sin(),
            r1 * (tau * unit(c[3])).cos(),
            r1 * (tau * unit(c[3])).sin(),
        ]);
        t += 1;
    }
    out.truncate(n);
    out
}

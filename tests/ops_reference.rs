//! Every kernel's forward against a plain-Rust f64 reference on random inputs,
//! at sizes 1, 7, 33 and larger ones that are not multiples of any tile.
//! Tolerances: f32 arithmetic with K-term sums, so |got - ref| <= 1e-5 * |ref| + 1e-5 * sqrt(K) * scale.

mod common;

use common::*;
use deepgen::ops::{Activation, bce_with_logits, kl_divergence, mse_loss, reparameterize};
use deepgen::{Error, Tensor};

fn check_matmul(m: usize, k: usize, n: usize, seed: u64) {
    for (trans_a, trans_b) in [(false, false), (false, true), (true, false)] {
        let a = rand_vec(m * k, seed, -1.0, 1.0);
        let b = rand_vec(k * n, seed + 1, -1.0, 1.0);
        let a_shape = if trans_a { [k, m] } else { [m, k] };
        let b_shape = if trans_b { [n, k] } else { [k, n] };
        let (ta, tb) = (tensor(&a, &a_shape), tensor(&b, &b_shape));
        let c = match (trans_a, trans_b) {
            (false, false) => ta.matmul(&tb),
            (false, true) => ta.matmul_nt(&tb),
            _ => ta.matmul_tn(&tb),
        }
        .unwrap();
        assert_eq!(c.dims(), &[m, n]);
        let want = ref_matmul(&to_f64(&a), &to_f64(&b), m, k, n, trans_a, trans_b);
        let atol = 1e-5 * (k as f64).sqrt().max(1.0);
        assert_close(
            &format!("matmul {m}x{k}x{n} trans_a={trans_a} trans_b={trans_b}"),
            &c.to_vec().unwrap(),
            &want,
            1e-5,
            atol,
        );
    }
}

#[test]
fn matmul_matches_reference_at_awkward_sizes() {
    for_each_matmul_path(|_| matmul_awkward_sizes());
}

fn matmul_awkward_sizes() {
    for (i, &(m, k, n)) in [
        (1, 1, 1),
        (7, 7, 7),
        (33, 33, 33),
        (33, 65, 17),
        (1, 7, 33),
        (65, 1, 9),
        (5, 130, 3),
        (128, 20, 400),
        (100, 257, 129),
        (9, 12, 8),
        (12, 20, 36),
    ]
    .iter()
    .enumerate()
    {
        check_matmul(m, k, n, 10 + i as u64);
    }
}

#[test]
fn matmul_matches_reference_at_vae_shapes() {
    for_each_matmul_path(|_| {
        check_matmul(128, 784, 400, 1);
        check_matmul(128, 400, 20, 2);
        // Multiples of 4 but not of the texture kernels' 8-lane K blocks or 5/6/8-row tiles.
        check_matmul(36, 44, 12, 3);
        check_matmul(4, 4, 4, 4);
        check_matmul(68, 132, 100, 5);
    });
}

#[test]
fn matmul_matches_reference_in_both_texture_layouts() {
    // Stored operands whose rows are a multiple of 64 floats go into the padded rows layout,
    // the others into the flat one (see TexLayout in src/ops/matmul_texture.rs). With row counts of 1, 7
    // and 33 these shapes give NN and TN all four (A, B) layout pairs; NT rows/rows and
    // flat/flat, and flat/rows through the texture-height fallback of the last shape (both NT
    // operands are K wide, so only a row count over the limit can mix them).
    for_each_matmul_path(|_| {
        for (i, &(m, k, n)) in [
            (33, 64, 64),
            (7, 64, 128),
            (64, 128, 7),
            (128, 33, 64),
            (4, 200, 64),
            (64, 12, 20),
            (1, 64, 64),
            (8, 64, 1),
            (33, 128, 12),
            // More rows than lavapipe's 16,384-texel texture height: flat despite the width.
            (16_392, 64, 8),
        ]
        .iter()
        .enumerate()
        {
            check_matmul(m, k, n, 40 + i as u64);
        }
    });
}

#[test]
fn matmul_refuses_mismatched_shapes() {
    let a = tensor(&[0.0; 6], &[2, 3]);
    let b = tensor(&[0.0; 8], &[4, 2]);
    let err = a.matmul(&b).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "matmul", .. }));
    let msg = err.to_string();
    assert!(msg.contains("(2, 3)") && msg.contains("(4, 2)"), "{msg}");
    assert!(a.matmul_nt(&tensor(&[0.0; 8], &[2, 4])).is_err());
    assert!(a.matmul_tn(&tensor(&[0.0; 9], &[3, 3])).is_err());
}

#[test]
fn activations_match_reference() {
    for n in [1usize, 7, 33, 1000, 70_001] {
        let x = rand_vec(n, n as u64, -4.0, 4.0);
        let t = tensor(&x, &[n]);
        let x64 = to_f64(&x);
        for act in activations() {
            let want: Vec<f64> = x64.iter().map(|&v| ref_activation(act, v)).collect();
            assert_close(
                &format!("{act:?} n={n}"),
                &t.activation(act).unwrap().to_vec().unwrap(),
                &want,
                1e-5,
                1e-6,
            );
        }
    }
}

#[test]
fn named_activations_are_their_variants() {
    let x = rand_vec(33, 5, -4.0, 4.0);
    let t = tensor(&x, &[33]);
    let same = |a: Tensor, b: Activation| {
        assert_eq!(
            a.to_vec().unwrap(),
            t.activation(b).unwrap().to_vec().unwrap(),
            "{b:?}"
        )
    };
    same(t.relu().unwrap(), Activation::Relu);
    same(t.leaky_relu(0.2).unwrap(), Activation::LeakyRelu(0.2));
    same(t.sigmoid().unwrap(), Activation::Sigmoid);
    same(t.tanh().unwrap(), Activation::Tanh);
    same(t.exp().unwrap(), Activation::Exp);
    same(
        t.affine(-1.5, 0.25).unwrap(),
        Activation::Affine(-1.5, 0.25),
    );
    same(t.scale(3.0).unwrap(), Activation::Affine(3.0, 0.0));
}

#[test]
fn linear_epilogue_matches_reference_for_every_activation() {
    for_each_matmul_path(|path| {
        // (5, 36, 12): every stored operand 4-aligned, so the texture path takes it.
        for (b, i, o) in [(1usize, 1usize, 1usize), (7, 33, 9), (5, 36, 12)] {
            let x = rand_vec(b * i, 61, -1.0, 1.0);
            let w = rand_vec(o * i, 62, -1.0, 1.0);
            let bias = rand_vec(o, 63, -1.0, 1.0);
            let pre = ref_matmul(&to_f64(&x), &to_f64(&w), b, i, o, false, true);
            for act in activations() {
                let y = tensor(&x, &[b, i])
                    .linear(&tensor(&w, &[o, i]), &tensor(&bias, &[o]), act)
                    .unwrap();
                let want: Vec<f64> = pre
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| ref_activation(act, v + bias[k % o] as f64))
                    .collect();
                assert_close(
                    &format!("linear {b}x{i}x{o} {act:?} {path:?}"),
                    &y.to_vec().unwrap(),
                    &want,
                    1e-5,
                    1e-5,
                );
            }
        }
    });
}

#[test]
fn sigmoid_is_finite_at_extreme_inputs() {
    let x = [-1e4f32, -100.0, -88.0, 0.0, 88.0, 100.0, 1e4];
    let y = tensor(&x, &[7]).sigmoid().unwrap().to_vec().unwrap();
    let want: Vec<f64> = x.iter().map(|&v| ref_sigmoid(v as f64)).collect();
    assert_close("sigmoid extremes", &y, &want, 1e-6, 1e-30);
}

#[test]
fn binary_kernels_match_reference_with_broadcasting() {
    for (rows, cols) in [(1usize, 1usize), (7, 7), (33, 5), (3, 33), (300, 301)] {
        let n = rows * cols;
        let a = rand_vec(n, 1, -2.0, 2.0);
        // Keep divisors away from zero.
        let b_full = rand_vec(n, 2, 0.5, 2.0);
        let b_row = rand_vec(cols, 3, 0.5, 2.0);
        let b_scalar = rand_vec(1, 4, 0.5, 2.0);
        let ta = tensor(&a, &[rows, cols]);
        for (label, b, shape) in [
            ("same shape", &b_full, vec![rows, cols]),
            ("row", &b_row, vec![cols]),
            ("scalar", &b_scalar, vec![1]),
        ] {
            let tb = tensor(b, &shape);
            let bl = b.len();
            let ops: [(&str, Tensor, Ref2); 4] = [
                ("add", ta.add(&tb).unwrap(), |x, y| x + y),
                ("sub", ta.sub(&tb).unwrap(), |x, y| x - y),
                ("mul", ta.mul(&tb).unwrap(), |x, y| x * y),
                ("div", ta.div(&tb).unwrap(), |x, y| x / y),
            ];
            for (name, out, f) in ops {
                assert_eq!(out.dims(), &[rows, cols]);
                let want: Vec<f64> = (0..n).map(|i| f(a[i] as f64, b[i % bl] as f64)).collect();
                assert_close(
                    &format!("{name} {label} {rows}x{cols}"),
                    &out.to_vec().unwrap(),
                    &want,
                    1e-6,
                    1e-6,
                );
            }
        }
    }
}

#[test]
fn binary_refuses_incompatible_shapes() {
    let a = tensor(&[0.0; 6], &[2, 3]);
    let b = tensor(&[0.0; 2], &[2]);
    let msg = a.add(&b).unwrap_err().to_string();
    assert!(
        msg.contains("add") && msg.contains("(2, 3)") && msg.contains("(2,)"),
        "{msg}"
    );
}

#[test]
fn reductions_match_reference() {
    for dims in [
        vec![1usize],
        vec![7],
        vec![33, 7],
        vec![7, 33],
        vec![5, 70, 3],
        vec![300, 301],
        vec![70_001],
    ] {
        let n: usize = dims.iter().product();
        let x = rand_vec(n, n as u64, -1.0, 1.0);
        let x64 = to_f64(&x);
        let t = tensor(&x, &dims);
        let total: f64 = x64.iter().sum();
        let tol = 1e-5 * (n as f64).sqrt();
        assert_close(
            &format!("sum {dims:?}"),
            &t.sum().unwrap().to_vec().unwrap(),
            &[total],
            1e-5,
            tol,
        );
        assert_close(
            &format!("mean {dims:?}"),
            &t.mean().unwrap().to_vec().unwrap(),
            &[total / n as f64],
            1e-5,
            tol / n as f64,
        );
        for axis in 0..dims.len() {
            let outer: usize = dims[..axis].iter().product();
            let inner: usize = dims[axis + 1..].iter().product();
            let len = dims[axis];
            let s = t.sum_axis(axis).unwrap();
            let mut want_dims = dims.clone();
            want_dims.remove(axis);
            assert_eq!(s.dims(), &want_dims[..]);
            let tol = 1e-5 * (len as f64).sqrt();
            assert_close(
                &format!("sum_axis({axis}) {dims:?}"),
                &s.to_vec().unwrap(),
                &ref_reduce(&x64, outer, len, inner, 1.0),
                1e-5,
                tol,
            );
            let m = t.mean_axis(axis).unwrap();
            assert_close(
                &format!("mean_axis({axis}) {dims:?}"),
                &m.to_vec().unwrap(),
                &ref_reduce(&x64, outer, len, inner, 1.0 / len as f64),
                1e-5,
                tol / len as f64,
            );
        }
    }
    assert!(tensor(&[1.0], &[1]).sum_axis(1).is_err());
}

#[test]
fn reparameterize_matches_reference() {
    for (b, d) in [(1usize, 1usize), (7, 7), (33, 20), (128, 33)] {
        let mu = rand_vec(b * d, 1, -2.0, 2.0);
        let lv = rand_vec(b * d, 2, -3.0, 2.0);
        let eps = rand_vec(b * d, 3, -2.0, 2.0);
        let z = reparameterize(
            &tensor(&mu, &[b, d]),
            &tensor(&lv, &[b, d]),
            &tensor(&eps, &[b, d]),
        )
        .unwrap();
        let want = ref_reparameterize(&to_f64(&mu), &to_f64(&lv), &to_f64(&eps));
        assert_close(
            &format!("reparameterize {b}x{d}"),
            &z.to_vec().unwrap(),
            &want,
            1e-5,
            1e-6,
        );
    }
}

#[test]
fn kl_divergence_matches_reference() {
    for (b, d) in [(1usize, 1usize), (7, 7), (33, 20), (130, 33)] {
        let mu = rand_vec(b * d, 4, -2.0, 2.0);
        let lv = rand_vec(b * d, 5, -3.0, 2.0);
        let kl = kl_divergence(&tensor(&mu, &[b, d]), &tensor(&lv, &[b, d])).unwrap();
        assert_eq!(kl.dims(), &[b]);
        assert_close(
            &format!("kl {b}x{d}"),
            &kl.to_vec().unwrap(),
            &ref_kl_divergence(&to_f64(&mu), &to_f64(&lv), b),
            1e-5,
            1e-5,
        );
    }
    // KL of N(0, I) from itself is zero.
    let zeros = tensor(&[0.0; 20], &[2, 10]);
    assert_eq!(
        kl_divergence(&zeros, &zeros).unwrap().to_vec().unwrap(),
        vec![0.0, 0.0]
    );
}

#[test]
fn bce_with_logits_matches_reference() {
    for (b, d) in [(1usize, 1usize), (7, 7), (33, 33), (3, 784), (129, 300)] {
        let x = rand_vec(b * d, 6, -8.0, 8.0);
        let t = rand_vec(b * d, 7, 0.0, 1.0);
        let loss = bce_with_logits(&tensor(&x, &[b, d]), &tensor(&t, &[b, d])).unwrap();
        assert_eq!(loss.dims(), &[b]);
        let tol = 1e-5 * (d as f64).sqrt();
        assert_close(
            &format!("bce {b}x{d}"),
            &loss.to_vec().unwrap(),
            &ref_bce_with_logits(&to_f64(&x), &to_f64(&t), b),
            1e-5,
            tol,
        );
    }
}

#[test]
fn bce_with_logits_stays_finite_at_extreme_logits() {
    let x = [
        100.0f32, -100.0, 100.0, -100.0, 1e4, -1e4, 88.7, -88.7, 0.5, 1e30, -1e30, 0.0,
    ];
    let t = [
        1.0f32, 0.0, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0, 0.3, 0.0, 1.0, 1.0,
    ];
    let n = x.len();
    let gpu = gpu();
    let logits = Tensor::from_slice(&gpu, &x, [n, 1])
        .unwrap()
        .requires_grad_();
    let loss = bce_with_logits(&logits, &tensor(&t, &[n, 1])).unwrap();
    let got = loss.to_vec().unwrap();
    let want = ref_bce_with_logits(&to_f64(&x), &to_f64(&t), n);
    assert!(got.iter().all(|v| v.is_finite()), "{got:?}");
    assert_close("bce extremes", &got, &want, 1e-6, 1e-6);
    // Correct labels at |logit| = 100 cost ~0; wrong ones cost ~100 nats.
    assert!(got[0] < 1e-6 && got[1] < 1e-6);
    assert!((got[2] - 100.0).abs() < 1e-3 && (got[3] - 100.0).abs() < 1e-3);
    let grads = loss.sum().unwrap().backward().unwrap();
    let g = grads.get(&logits).unwrap().to_vec().unwrap();
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    let want_g = ref_bce_with_logits_grad(&to_f64(&x), &to_f64(&t));
    assert_close("bce gradient extremes", &g, &want_g, 1e-6, 1e-6);
}

#[test]
fn mse_matches_reference() {
    for (b, d) in [(1usize, 1usize), (7, 7), (33, 33), (5, 1000)] {
        let x = rand_vec(b * d, 8, -2.0, 2.0);
        let t = rand_vec(b * d, 9, -2.0, 2.0);
        let loss = mse_loss(&tensor(&x, &[b, d]), &tensor(&t, &[b, d])).unwrap();
        assert_close(
            &format!("mse {b}x{d}"),
            &loss.to_vec().unwrap(),
            &ref_mse(&to_f64(&x), &to_f64(&t), b),
            1e-5,
            1e-6,
        );
    }
    assert!(mse_loss(&tensor(&[0.0; 4], &[2, 2]), &tensor(&[0.0; 4], &[4, 1])).is_err());
}

#[test]
fn fill_and_reshape() {
    let gpu = gpu();
    for n in [1usize, 7, 33, 70_000] {
        let t = Tensor::full(&gpu, [n], 2.5).unwrap();
        assert!(t.to_vec().unwrap().iter().all(|&v| v == 2.5));
    }
    let t = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let r = t.reshape([3, 2]).unwrap();
    assert_eq!(r.dims(), &[3, 2]);
    assert_eq!(r.to_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert!(t.reshape([4, 2]).is_err());
}

#[test]
fn randn_matches_host_philox_and_is_seeded() {
    let gpu = gpu();
    gpu.manual_seed(1234);
    let a = Tensor::randn(&gpu, [7, 33]).unwrap().to_vec().unwrap();
    let b = Tensor::randn(&gpu, [5]).unwrap().to_vec().unwrap();
    // 231 values use 58 counters; the next call starts after them.
    assert_close("randn vs Philox", &a, &ref_randn(1234, 0, 231), 1e-4, 1e-4);
    assert_close("randn second call", &b, &ref_randn(1234, 58, 5), 1e-4, 1e-4);
    gpu.manual_seed(1234);
    let again = Tensor::randn(&gpu, [7, 33]).unwrap().to_vec().unwrap();
    assert_eq!(a, again, "same seed, same numbers");
    gpu.manual_seed(1235);
    let other = Tensor::randn(&gpu, [7, 33]).unwrap().to_vec().unwrap();
    assert_ne!(a, other);
}

#[test]
fn randn_is_standard_normal() {
    let gpu = gpu();
    gpu.manual_seed(7);
    let n = 200_001;
    let x = Tensor::randn(&gpu, [n]).unwrap().to_vec().unwrap();
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    let within_one = x.iter().filter(|v| v.abs() < 1.0).count() as f64 / n as f64;
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((var - 1.0).abs() < 0.02, "variance {var}");
    assert!(
        (within_one - 0.6827).abs() < 0.01,
        "P(|x| < 1) = {within_one}"
    );
    assert!(x.iter().all(|v| v.is_finite()));
}

#[test]
fn adam_matches_reference_update() {
    use deepgen::optim::Adam;
    let gpu = gpu();
    for n in [1usize, 7, 33, 1000] {
        let p0 = rand_vec(n, 1, -1.0, 1.0);
        let p = Tensor::from_slice(&gpu, &p0, [n]).unwrap().requires_grad_();
        let mut opt = Adam::new(0.01);
        opt.weight_decay = 0.1;
        let config = AdamConfig {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut want = to_f64(&p0);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        for step in 1..=3 {
            let target = rand_vec(n, 10 + step, -1.0, 1.0);
            // loss = sum(p * target): the gradient is target.
            let loss = p.mul(&tensor(&target, &[n])).unwrap().sum().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(std::slice::from_ref(&p), &grads).unwrap();
            ref_adam_step(
                &mut want,
                &mut m,
                &mut v,
                &to_f64(&target),
                step as i32,
                config,
            );
        }
        assert_close(
            &format!("adam n={n}"),
            &p.to_vec().unwrap(),
            &want,
            1e-5,
            1e-6,
        );
    }
}

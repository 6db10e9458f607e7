//! Every backward rule against central finite differences (see `common::gradcheck`):
//! element-wise against the f64 reference (h = 1e-6, rtol 1e-3 for f32 kernels) and
//! along a random direction against the GPU forward itself.

mod common;

use common::*;
use deepgen::autograd::{clear_tape, tape_len};
use deepgen::ops::{bce_with_logits, kl_divergence, mse_loss, reparameterize};
use deepgen::{Error, Tensor};

const RTOL: f64 = 1e-3;

#[test]
fn matmul_backward() {
    for (m, k, n) in [
        (1usize, 1usize, 1usize),
        (7, 7, 7),
        (33, 65, 17),
        (3, 33, 1),
    ] {
        let a = rand_vec(m * k, 1, -1.0, 1.0);
        let b = rand_vec(k * n, 2, -1.0, 1.0);
        gradcheck(
            &format!("matmul {m}x{k}x{n}"),
            &[input(a.clone(), &[m, k]), input(b.clone(), &[k, n])],
            |t| t[0].matmul(&t[1]),
            |x| ref_matmul(&x[0], &x[1], m, k, n, false, false),
            RTOL,
        );
        gradcheck(
            &format!("matmul_nt {m}x{k}x{n}"),
            &[input(a.clone(), &[m, k]), input(b.clone(), &[n, k])],
            |t| t[0].matmul_nt(&t[1]),
            |x| ref_matmul(&x[0], &x[1], m, k, n, false, true),
            RTOL,
        );
        gradcheck(
            &format!("matmul_tn {m}x{k}x{n}"),
            &[input(a, &[k, m]), input(b, &[k, n])],
            |t| t[0].matmul_tn(&t[1]),
            |x| ref_matmul(&x[0], &x[1], m, k, n, true, false),
            RTOL,
        );
    }
}

#[test]
fn activation_backward() {
    for n in [1usize, 7, 33] {
        let x = rand_away_from_zero(n, n as u64, 0.05);
        for act in activations() {
            gradcheck(
                &format!("{act:?} n={n}"),
                &[input(x.clone(), &[n])],
                |t| t[0].activation(act),
                |xs| xs[0].iter().map(|&v| ref_activation(act, v)).collect(),
                RTOL,
            );
        }
    }
}

#[test]
fn binary_backward_with_broadcasting() {
    for (rows, cols) in [(1usize, 1usize), (7, 7), (33, 5)] {
        let n = rows * cols;
        let a = rand_vec(n, 3, -1.0, 1.0);
        for (label, blen, bshape) in [
            ("same", n, vec![rows, cols]),
            ("row", cols, vec![cols]),
            ("scalar", 1, vec![1]),
        ] {
            let b = rand_vec(blen, 4, 0.5, 1.5);
            let ops: [(&str, BinaryOp, Ref2); 4] = [
                ("add", |x, y| x.add(y), |x, y| x + y),
                ("sub", |x, y| x.sub(y), |x, y| x - y),
                ("mul", |x, y| x.mul(y), |x, y| x * y),
                ("div", |x, y| x.div(y), |x, y| x / y),
            ];
            for (name, f, r) in ops {
                gradcheck(
                    &format!("{name} {label} {rows}x{cols}"),
                    &[input(a.clone(), &[rows, cols]), input(b.clone(), &bshape)],
                    |t| f(&t[0], &t[1]),
                    |x| (0..n).map(|i| r(x[0][i], x[1][i % blen])).collect(),
                    RTOL,
                );
            }
        }
    }
}

#[test]
fn reduction_backward() {
    for dims in [vec![1usize], vec![7], vec![7, 33], vec![3, 5, 7]] {
        let n: usize = dims.iter().product();
        let x = rand_vec(n, 5, -1.0, 1.0);
        gradcheck(
            &format!("sum {dims:?}"),
            &[input(x.clone(), &dims)],
            |t| t[0].sum(),
            |x| vec![x[0].iter().sum()],
            RTOL,
        );
        gradcheck(
            &format!("mean {dims:?}"),
            &[input(x.clone(), &dims)],
            |t| t[0].mean(),
            |x| vec![x[0].iter().sum::<f64>() / n as f64],
            RTOL,
        );
        for axis in 0..dims.len() {
            let outer: usize = dims[..axis].iter().product();
            let inner: usize = dims[axis + 1..].iter().product();
            let len = dims[axis];
            gradcheck(
                &format!("sum_axis({axis}) {dims:?}"),
                &[input(x.clone(), &dims)],
                |t| t[0].sum_axis(axis),
                |x| ref_reduce(&x[0], outer, len, inner, 1.0),
                RTOL,
            );
            gradcheck(
                &format!("mean_axis({axis}) {dims:?}"),
                &[input(x.clone(), &dims)],
                |t| t[0].mean_axis(axis),
                |x| ref_reduce(&x[0], outer, len, inner, 1.0 / len as f64),
                RTOL,
            );
        }
    }
}

#[test]
fn reshape_backward() {
    let x = rand_vec(12, 6, -1.0, 1.0);
    gradcheck(
        "reshape",
        &[input(x, &[3, 4])],
        |t| t[0].reshape([2, 6])?.sigmoid(),
        |x| x[0].iter().map(|&v| ref_sigmoid(v)).collect(),
        RTOL,
    );
}

#[test]
fn reparameterize_backward() {
    for (b, d) in [(1usize, 1usize), (7, 7), (33, 3)] {
        let mu = rand_vec(b * d, 7, -1.0, 1.0);
        let lv = rand_vec(b * d, 8, -2.0, 1.0);
        let eps = rand_vec(b * d, 9, -2.0, 2.0);
        gradcheck(
            &format!("reparameterize {b}x{d}"),
            &[
                input(mu, &[b, d]),
                input(lv, &[b, d]),
                constant(eps, &[b, d]),
            ],
            |t| reparameterize(&t[0], &t[1], &t[2]),
            |x| ref_reparameterize(&x[0], &x[1], &x[2]),
            RTOL,
        );
    }
}

#[test]
fn kl_divergence_backward() {
    for (b, d) in [(1usize, 1usize), (7, 7), (33, 20)] {
        let mu = rand_vec(b * d, 10, -1.0, 1.0);
        let lv = rand_vec(b * d, 11, -2.0, 1.0);
        gradcheck(
            &format!("kl_divergence {b}x{d}"),
            &[input(mu, &[b, d]), input(lv, &[b, d])],
            |t| kl_divergence(&t[0], &t[1]),
            |x| ref_kl_divergence(&x[0], &x[1], b),
            RTOL,
        );
    }
}

#[test]
fn loss_backward() {
    for (b, d) in [(1usize, 1usize), (7, 7), (33, 33), (2, 784)] {
        let x = rand_vec(b * d, 12, -4.0, 4.0);
        let t = rand_vec(b * d, 13, 0.0, 1.0);
        gradcheck(
            &format!("bce_with_logits {b}x{d}"),
            &[input(x.clone(), &[b, d]), constant(t.clone(), &[b, d])],
            |ts| bce_with_logits(&ts[0], &ts[1]),
            |xs| ref_bce_with_logits(&xs[0], &xs[1], b),
            RTOL,
        );
        gradcheck(
            &format!("mse_loss {b}x{d}"),
            &[input(x, &[b, d]), constant(t, &[b, d])],
            |ts| mse_loss(&ts[0], &ts[1]),
            |xs| ref_mse(&xs[0], &xs[1], b),
            RTOL,
        );
    }
}

#[test]
fn linear_layer_backward_through_a_small_mlp() {
    // x -> matmul_nt(W1) + b1 -> relu -> matmul_nt(W2) + b2 -> sigmoid: gradients for all four parameters.
    let (b, i, h, o) = (5usize, 7usize, 33usize, 3usize);
    let x = rand_vec(b * i, 14, -1.0, 1.0);
    let w1 = rand_vec(h * i, 15, -0.5, 0.5);
    let b1 = rand_vec(h, 16, -0.5, 0.5);
    let w2 = rand_vec(o * h, 17, -0.5, 0.5);
    let b2 = rand_vec(o, 18, -0.5, 0.5);
    gradcheck(
        "mlp",
        &[
            constant(x, &[b, i]),
            input(w1, &[h, i]),
            input(b1, &[h]),
            input(w2, &[o, h]),
            input(b2, &[o]),
        ],
        |t| {
            t[0].matmul_nt(&t[1])?
                .add(&t[2])?
                .relu()?
                .matmul_nt(&t[3])?
                .add(&t[4])?
                .sigmoid()
        },
        |x| {
            let mut hid = ref_matmul(&x[0], &x[1], b, i, h, false, true);
            for (k, v) in hid.iter_mut().enumerate() {
                *v = (*v + x[2][k % h]).max(0.0);
            }
            let mut out = ref_matmul(&hid, &x[3], b, h, o, false, true);
            for (k, v) in out.iter_mut().enumerate() {
                *v = ref_sigmoid(*v + x[4][k % o]);
            }
            out
        },
        RTOL,
    );
}

#[test]
fn gradients_accumulate_when_a_tensor_is_used_twice() {
    let gpu = gpu();
    let x = Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0], [3])
        .unwrap()
        .requires_grad_();
    // L = sum(x * x + 3x): dL/dx = 2x + 3.
    let loss = x
        .mul(&x)
        .unwrap()
        .add(&x.scale(3.0).unwrap())
        .unwrap()
        .sum()
        .unwrap();
    let g = loss.backward().unwrap().get(&x).unwrap().to_vec().unwrap();
    assert_eq!(g, vec![5.0, 7.0, 9.0]);
}

#[test]
fn no_grad_and_detach_stop_recording() {
    let gpu = gpu();
    clear_tape();
    let w = Tensor::from_slice(&gpu, &[1.0, -2.0], [2])
        .unwrap()
        .requires_grad_();
    {
        let _g = deepgen::no_grad();
        let y = w.scale(2.0).unwrap();
        assert!(!y.requires_grad());
        assert_eq!(tape_len(), 0);
    }
    let d = w.detach();
    assert!(!d.requires_grad());
    let y = d.scale(2.0).unwrap().sum().unwrap();
    assert!(!y.requires_grad());
    assert!(matches!(y.backward(), Err(Error::Invalid(_))));
    // A non-scalar loss is refused.
    let v = w.scale(2.0).unwrap();
    assert!(v.backward().unwrap_err().to_string().contains("scalar"));
    clear_tape();
}

#[test]
fn backward_consumes_only_the_nodes_it_reaches() {
    // The GAN pattern: a generator's output feeds a detached loss first, then a second loss.
    let gpu = gpu();
    clear_tape();
    let w = Tensor::from_slice(&gpu, &[0.5, 1.5], [2])
        .unwrap()
        .requires_grad_();
    let v = Tensor::from_slice(&gpu, &[2.0, -1.0], [2])
        .unwrap()
        .requires_grad_();
    let fake = w.scale(3.0).unwrap();
    let d_loss = fake.detach().mul(&v).unwrap().sum().unwrap();
    let g1 = d_loss.backward().unwrap();
    assert!(g1.get(&w).is_none());
    assert_eq!(g1.get(&v).unwrap().to_vec().unwrap(), vec![1.5, 4.5]);
    // The scale node of `fake` was not reached, so the second loss still reaches w.
    let g_loss = fake.mul(&v).unwrap().sum().unwrap();
    let g2 = g_loss.backward().unwrap();
    assert_eq!(g2.get(&w).unwrap().to_vec().unwrap(), vec![6.0, -3.0]);
    assert_eq!(tape_len(), 0);
}

#[test]
fn fused_reparameterize_kl_matches_the_separate_ops() {
    use deepgen::ops::reparameterize_kl;
    let gpu = gpu();
    for (b, d) in [(1usize, 1usize), (7, 7), (33, 20)] {
        let mu0 = rand_vec(b * d, 21, -1.0, 1.0);
        let lv0 = rand_vec(b * d, 22, -2.0, 1.0);
        let eps = tensor(&rand_vec(b * d, 23, -2.0, 2.0), &[b, d]);
        let wz = tensor(&rand_vec(b * d, 24, -1.0, 1.0), &[b, d]);
        let wk = tensor(&rand_vec(b, 25, -1.0, 1.0), &[b]);
        // Which outputs the loss uses: both, only z, only kl.
        for (use_z, use_kl) in [(true, true), (true, false), (false, true)] {
            let run = |fused: bool| -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
                let mu = Tensor::from_slice(&gpu, &mu0, [b, d])
                    .unwrap()
                    .requires_grad_();
                let lv = Tensor::from_slice(&gpu, &lv0, [b, d])
                    .unwrap()
                    .requires_grad_();
                let (z, kl) = if fused {
                    reparameterize_kl(&mu, &lv, &eps).unwrap()
                } else {
                    (
                        reparameterize(&mu, &lv, &eps).unwrap(),
                        kl_divergence(&mu, &lv).unwrap(),
                    )
                };
                let mut loss = Tensor::zeros(&gpu, []).unwrap();
                if use_z {
                    loss = loss.add(&z.mul(&wz).unwrap().sum().unwrap()).unwrap();
                }
                if use_kl {
                    loss = loss.add(&kl.mul(&wk).unwrap().sum().unwrap()).unwrap();
                }
                let g = loss.backward().unwrap();
                clear_tape();
                (
                    z.to_vec().unwrap(),
                    kl.to_vec().unwrap(),
                    g.get(&mu).unwrap().to_vec().unwrap(),
                    g.get(&lv).unwrap().to_vec().unwrap(),
                )
            };
            let (f, s) = (run(true), run(false));
            let close = |a: &[f32], b: &[f32], what: &str| {
                assert_close(
                    &format!("{what} {b:?}x{d} z={use_z} kl={use_kl}"),
                    a,
                    &to_f64(b),
                    1e-5,
                    1e-6,
                )
            };
            close(&f.0, &s.0, "z");
            close(&f.1, &s.1, "kl");
            close(&f.2, &s.2, "dmu");
            close(&f.3, &s.3, "dlogvar");
        }
    }
}

#[test]
fn fused_linear_backward_on_both_matmul_paths() {
    for_each_matmul_path(|path| {
        for (b, i, o) in [
            (1usize, 1usize, 1usize),
            (7, 7, 7),
            (5, 33, 12),
            (33, 20, 16),
        ] {
            for act in activations() {
                gradcheck(
                    &format!("linear {b}x{i}x{o} {act:?} {path:?}"),
                    &[
                        input(rand_vec(b * i, 31, -1.0, 1.0), &[b, i]),
                        input(rand_vec(o * i, 32, -1.0, 1.0), &[o, i]),
                        input(rand_vec(o, 33, -1.0, 1.0), &[o]),
                    ],
                    |t| t[0].linear(&t[1], &t[2], act),
                    |x| {
                        let y = ref_matmul(&x[0], &x[1], b, i, o, false, true);
                        y.iter()
                            .enumerate()
                            .map(|(k, v)| ref_activation(act, v + x[2][k % o]))
                            .collect()
                    },
                    RTOL,
                );
            }
        }
    });
}

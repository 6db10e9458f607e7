//! Higher-order reverse mode (`autograd::grad` with `create_graph`).

mod common;

use common::*;
use deepgen::Tensor;
use deepgen::autograd::{clear_tape, grad, tape_len};
use deepgen::models::{Adversarial, Dcgan, MlpConfig, MlpGan, Vae, WganArch, WganGp};
use deepgen::nn::Module;
use deepgen::ops::Activation;
use deepgen::optim::Adam;
use deepgen::train::Optimizer;
use deepgen::train::gan::gan_step;
use deepgen::train::vae::vae_step;
use rand::SeedableRng;

/// Dispatches of one training step after two warm-up steps, and the tape's length after it.
fn step_dispatches(mut step: impl FnMut(&Tensor)) -> (u64, usize) {
    let gpu = gpu();
    let x = tensor(&rand_vec(128 * 784, 3, 0.0, 1.0), &[128, 784]);
    step(&x);
    step(&x);
    gpu.synchronize().unwrap();
    let before = gpu.stats().dispatches;
    step(&x);
    let after = gpu.stats().dispatches;
    (after - before, tape_len())
}

#[test]
fn the_first_order_path_records_and_dispatches_what_it_did_before() {
    // The figures of the code before higher-order autodiff (commit 0db1623), measured with this
    // same test: every step's dispatches (its forward, backward and Adam updates, the epoch
    // sums included), the nodes each forward records, and an empty tape after each step (the
    // first-order backward records nothing: its rules run with recording off).
    let gpu = gpu();
    clear_tape();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let vae = Vae::new(&gpu, MlpConfig::default(), &mut rng).unwrap();
    let mut opt = Optimizer::new(Adam::new(1e-3), vae.parameters());
    let vae_counts = step_dispatches(|x| {
        vae_step(&vae, &mut opt, x, 1.0).unwrap();
    });
    let gan = MlpGan::new(&gpu, 100, &mut rng).unwrap();
    let adam = |m: &dyn Adversarial, d: bool| {
        let p = if d {
            m.discriminator_parameters()
        } else {
            m.generator_parameters()
        };
        Optimizer::new(Adam::new(2e-4), p.into_iter().map(|(_, t)| t).collect())
    };
    let (mut od, mut og) = (adam(&gan, true), adam(&gan, false));
    let gan_counts = step_dispatches(|x| {
        gan_step(&gan, &mut od, &mut og, x).unwrap();
    });
    let dcgan = Dcgan::new(&gpu, 100, &mut rng).unwrap();
    let (mut od, mut og) = (adam(&dcgan, true), adam(&dcgan, false));
    let dcgan_counts = step_dispatches(|x| {
        gan_step(&dcgan, &mut od, &mut og, x).unwrap();
    });
    assert_eq!(vae_counts, (44, 0), "VAE step: (dispatches, nodes left)");
    assert_eq!(gan_counts, (117, 0), "MLP GAN step");
    assert_eq!(dcgan_counts, (156, 0), "DCGAN step");

    // Nodes recorded by the forward passes, and none by the backward.
    use deepgen::models::VariationalModel;
    let x = tensor(&rand_vec(128 * 784, 3, 0.0, 1.0), &[128, 784]);
    let loss = vae.loss(&x, 1.0).unwrap();
    assert_eq!(tape_len(), 9, "nodes of the VAE's forward");
    loss.loss.backward().unwrap();
    assert_eq!(tape_len(), 0);
    let z = tensor(&rand_vec(128 * 100, 4, -1.0, 1.0), &[128, 100]);
    let d = dcgan
        .discriminator(&dcgan.generator(&z).unwrap())
        .unwrap()
        .sum()
        .unwrap();
    assert_eq!(
        tape_len(),
        19,
        "nodes of the DCGAN's generator and discriminator"
    );
    d.backward().unwrap();
    assert_eq!(tape_len(), 0);
}

// ---- Hessian-vector products ------------------------------------------------------------

/// An f64 reference: the op's output from its inputs.
type RefFn<'a> = dyn Fn(&[Vec<f64>]) -> Vec<f64> + 'a;

/// Largest |got - want| over the largest |want| (at least `floor`).
fn rel_err(got: &[f64], want: &[f64], floor: f64) -> f64 {
    let scale = want.iter().fold(floor, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max)
        / scale
}

/// Uploads the inputs, the checked ones requiring grad.
fn leaves(inputs: &[Input], shift: Option<(&[Vec<f32>], f32)>) -> Vec<Tensor> {
    inputs
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let data: Vec<f32> = match shift {
                Some((v, h)) if i.check => {
                    i.data.iter().zip(&v[k]).map(|(x, d)| x + h * d).collect()
                }
                _ => i.data.clone(),
            };
            let t = tensor(&data, &i.shape);
            if i.check { t.requires_grad_() } else { t }
        })
        .collect()
}

/// The HVP of L(x) = sum(w * op(x)) along v (one direction per checked input, random), by
/// double backward on the GPU: g = grad(L, x, create_graph), then grad(sum_k sum(g_k v_k), x).
/// Checked against (1) central differences of the GPU's first-order gradient along v
/// (steps 1e-2 and 1e-3, the better kept), (2) the f64 reference's loss by a four-point mixed
/// difference (h = 1e-4) where `reference` is given. The error is the worst over the elements
/// of every input's HVP, relative to the reference's largest element; prints both errors
/// (`HVP name: ...` on stderr, the figures of the README's table) and asserts they are within
/// `tol_fd` and `tol_ref`.
fn hvp_check(
    name: &str,
    inputs: &[Input],
    op: impl Fn(&[Tensor]) -> deepgen::Result<Tensor>,
    reference: Option<&RefFn<'_>>,
    (tol_fd, tol_ref): (f64, f64),
) {
    clear_tape();
    let checked: Vec<usize> = (0..inputs.len()).filter(|&k| inputs[k].check).collect();
    let v: Vec<Vec<f32>> = inputs
        .iter()
        .enumerate()
        .map(|(k, i)| rand_vec(i.data.len(), 500 + k as u64, -1.0, 1.0))
        .collect();
    let out_numel = {
        let _ng = deepgen::no_grad();
        op(&leaves(inputs, None)).unwrap().numel()
    };
    let w = rand_vec(out_numel, 99, -1.0, 1.0);
    let loss_of = |x: &[Tensor]| -> Tensor {
        let out = op(x).unwrap();
        out.mul(&tensor(&w, out.dims())).unwrap().sum().unwrap()
    };
    // Double backward.
    let x = leaves(inputs, None);
    let xs: Vec<&Tensor> = checked.iter().map(|&k| &x[k]).collect();
    let g = grad(&[&loss_of(&x)], &xs, true).unwrap_or_else(|e| panic!("{name}: grad: {e}"));
    let mut gv: Option<Tensor> = None;
    for (j, &k) in checked.iter().enumerate() {
        let gk = g[j]
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no gradient for input {k}"));
        let term = gk.mul(&tensor(&v[k], gk.dims())).unwrap().sum().unwrap();
        gv = Some(match gv {
            Some(acc) => acc.add(&term).unwrap(),
            None => term,
        });
    }
    let gv = gv.unwrap();
    let hv: Vec<Vec<f64>> = if gv.requires_grad() {
        grad(&[&gv], &xs, false)
            .unwrap()
            .iter()
            .zip(&checked)
            .map(|(h, &k)| match h {
                Some(h) => to_f64(&h.to_vec().unwrap()),
                None => vec![0.0; inputs[k].data.len()],
            })
            .collect()
    } else {
        // A Hessian that is zero everywhere (e.g. relu alone): nothing to differentiate.
        checked
            .iter()
            .map(|&k| vec![0.0; inputs[k].data.len()])
            .collect()
    };
    clear_tape();
    let hv_flat: Vec<f64> = hv.concat();

    // (1) Central differences of the GPU gradient along v.
    let gpu_grad = |h: f32| -> Vec<f64> {
        let xh = leaves(inputs, Some((&v, h)));
        let grads = loss_of(&xh).backward().unwrap();
        clear_tape();
        checked
            .iter()
            .flat_map(|&k| match grads.get(&xh[k]) {
                Some(g) => to_f64(&g.to_vec().unwrap()),
                None => vec![0.0; inputs[k].data.len()],
            })
            .collect()
    };
    let fd_err = [1e-2f32, 1e-3]
        .iter()
        .map(|&h| {
            let (p, m) = (gpu_grad(h), gpu_grad(-h));
            let fd: Vec<f64> = p
                .iter()
                .zip(&m)
                .map(|(a, b)| (a - b) / (2.0 * h as f64))
                .collect();
            rel_err(&hv_flat, &fd, 1e-3)
        })
        .fold(f64::INFINITY, f64::min);

    // (2) The f64 reference: d/dx_i of the directional derivative along v.
    let ref_err = reference.map(|reference| {
        let w64 = to_f64(&w);
        let x64: Vec<Vec<f64>> = inputs.iter().map(|i| to_f64(&i.data)).collect();
        let v64: Vec<Vec<f64>> = v.iter().map(|d| to_f64(d)).collect();
        let loss =
            |xs: &[Vec<f64>]| -> f64 { reference(xs).iter().zip(&w64).map(|(a, b)| a * b).sum() };
        let h = 1e-4;
        let at = |k: usize, i: usize, si: f64, sv: f64| -> f64 {
            let xs: Vec<Vec<f64>> = x64
                .iter()
                .enumerate()
                .map(|(kk, xk)| {
                    let mut xk = xk.clone();
                    if inputs[kk].check {
                        for (a, d) in xk.iter_mut().zip(&v64[kk]) {
                            *a += sv * h * d;
                        }
                    }
                    if kk == k {
                        xk[i] += si * h;
                    }
                    xk
                })
                .collect();
            loss(&xs)
        };
        let mut want = Vec::new();
        for &k in &checked {
            for i in 0..inputs[k].data.len() {
                want.push(
                    (at(k, i, 1.0, 1.0) - at(k, i, 1.0, -1.0) - at(k, i, -1.0, 1.0)
                        + at(k, i, -1.0, -1.0))
                        / (4.0 * h * h),
                );
            }
        }
        rel_err(&hv_flat, &want, 1e-3)
    });
    eprintln!(
        "HVP {name}: worst relative error vs GPU FD {fd_err:.2e}, vs f64 {}",
        ref_err.map_or("-".into(), |e| format!("{e:.2e}"))
    );
    assert!(
        fd_err <= tol_fd,
        "{name}: HVP vs GPU finite differences: {fd_err:.3e} > {tol_fd}"
    );
    if let Some(e) = ref_err {
        assert!(
            e <= tol_ref,
            "{name}: HVP vs the f64 reference: {e:.3e} > {tol_ref}"
        );
    }
}

/// Tolerances: f32 double backward against f32 finite differences of the gradient (the
/// differences' rounding and truncation dominate) and against the f64 reference.
const TOL: (f64, f64) = (2e-2, 2e-3);

#[test]
fn hvp_matmul_all_layouts() {
    for (m, k, n) in [(1usize, 1usize, 1usize), (7, 7, 7), (33, 17, 9)] {
        let a = rand_vec(m * k, 1, -1.0, 1.0);
        let b = rand_vec(k * n, 2, -1.0, 1.0);
        hvp_check(
            &format!("matmul {m}x{k}x{n}"),
            &[input(a.clone(), &[m, k]), input(b.clone(), &[k, n])],
            |t| t[0].matmul(&t[1]),
            Some(&|x: &[Vec<f64>]| ref_matmul(&x[0], &x[1], m, k, n, false, false)),
            TOL,
        );
        hvp_check(
            &format!("matmul_nt {m}x{k}x{n}"),
            &[input(a.clone(), &[m, k]), input(b.clone(), &[n, k])],
            |t| t[0].matmul_nt(&t[1]),
            Some(&|x: &[Vec<f64>]| ref_matmul(&x[0], &x[1], m, k, n, false, true)),
            TOL,
        );
        hvp_check(
            &format!("matmul_tn {m}x{k}x{n}"),
            &[input(a, &[k, m]), input(b, &[k, n])],
            |t| t[0].matmul_tn(&t[1]),
            Some(&|x: &[Vec<f64>]| ref_matmul(&x[0], &x[1], m, k, n, true, false)),
            TOL,
        );
    }
}

// ---- The gradient penalty through the real critics -----------------------------------------

/// The gradient penalty `mean (||grad_x D(x)|| - 1)^2` of `model`'s critic at `x`, and the
/// gradient norms, computed with `create_graph` so that the penalty can be backpropagated.
fn penalty(model: &WganGp, x: &Tensor, create_graph: bool) -> (Tensor, Tensor) {
    let d = model.critic(x).unwrap();
    let g = grad(&[&d], &[x], create_graph)
        .unwrap()
        .pop()
        .flatten()
        .unwrap();
    let norm = g.mul(&g).unwrap().sum_axis(1).unwrap().sqrt().unwrap();
    let gap = norm.affine(1.0, -1.0).unwrap();
    (gap.mul(&gap).unwrap().mean().unwrap(), norm)
}

/// The critic's parameters scaled by `scale` (so that the gradient norms are not tiny and the
/// leaky units mix their two slopes), their host values, and the penalty's gradient along a
/// random direction `dirs` over the parameters named by `moved` (the others: 0), from the GPU's
/// double backward at `x (b, 784)`.
fn penalty_directional(
    model: &WganGp,
    x: &Tensor,
    scale: f32,
    moved: impl Fn(&str) -> bool,
) -> (Vec<(String, Tensor)>, Vec<Vec<f32>>, f64) {
    clear_tape();
    let params = model.critic_parameters();
    for (_, p) in &params {
        let v: Vec<f32> = p.to_vec().unwrap().iter().map(|x| x * scale).collect();
        p.copy_from(&tensor(&v, p.dims())).unwrap();
    }
    let (gp, norm) = penalty(model, x, true);
    let grads = gp.backward().unwrap();
    clear_tape();
    let dirs: Vec<Vec<f32>> = params
        .iter()
        .enumerate()
        .map(|(i, (name, p))| {
            if moved(name) {
                rand_vec(p.numel(), 40 + i as u64, -1.0, 1.0)
            } else {
                vec![0.0; p.numel()]
            }
        })
        .collect();
    let analytic: f64 = params
        .iter()
        .zip(&dirs)
        .map(|((_, p), d)| {
            // None: the penalty does not depend on it (a bias moves a piecewise-linear
            // critic's input gradient only through its kinks).
            grads.get(p).map_or(0.0, |g| {
                let g = g.to_vec().unwrap();
                g.iter()
                    .zip(d)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
            })
        })
        .sum();
    eprintln!("gradient norms at x: {:?}", norm.to_vec().unwrap());
    (params, dirs, analytic)
}

#[test]
fn gradient_penalty_gradient_through_the_mlp_critic_matches_an_f64_reference() {
    // The MLP critic D(x) = w3 . leaky(W2 leaky(W1 x + b1) + b2) + b3 has the input gradient
    // W1^T (m1 * (W2^T (m2 * w3))), m the leaky slopes (1 or 0.2) of each unit. With the
    // slopes held at their values here (the derivative autodiff takes), the penalty is smooth
    // in every weight: its f64 directional derivative along a direction over all parameters
    // is a central difference with h = 1e-5.
    let gpu = gpu();
    let model = WganGp::new(
        &gpu,
        WganArch::Mlp,
        8,
        &mut rand::rngs::StdRng::seed_from_u64(1),
    )
    .unwrap();
    let b = 3;
    let xv = rand_vec(b * 784, 5, -1.0, 1.0);
    let x = tensor(&xv, &[b, 784]).requires_grad_();
    let (params, dirs, analytic) = penalty_directional(&model, &x, 2.0, |_| true);
    let host: Vec<Vec<f64>> = params
        .iter()
        .map(|(_, p)| to_f64(&p.to_vec().unwrap()))
        .collect();
    let d64: Vec<Vec<f64>> = dirs.iter().map(|d| to_f64(d)).collect();
    let (h1, h2) = (512usize, 256usize);
    let x64 = to_f64(&xv);
    // The slopes at the base point.
    let slope = |v: f64| if v > 0.0 { 1.0 } else { 0.2 };
    let masks: Vec<(Vec<f64>, Vec<f64>)> = (0..b)
        .map(|s| {
            let xs = &x64[s * 784..(s + 1) * 784];
            let a1: Vec<f64> = (0..h1)
                .map(|j| (0..784).map(|i| host[0][j * 784 + i] * xs[i]).sum::<f64>() + host[1][j])
                .collect();
            let m1: Vec<f64> = a1.iter().map(|&v| slope(v)).collect();
            let m2: Vec<f64> = (0..h2)
                .map(|k| {
                    let v = (0..h1)
                        .map(|j| host[2][k * h1 + j] * a1[j] * m1[j])
                        .sum::<f64>()
                        + host[3][k];
                    slope(v)
                })
                .collect();
            (m1, m2)
        })
        .collect();
    let gp_at = |t: f64| -> f64 {
        let p: Vec<Vec<f64>> = host
            .iter()
            .zip(&d64)
            .map(|(h, d)| h.iter().zip(d).map(|(a, b)| a + t * b).collect())
            .collect();
        masks
            .iter()
            .map(|(m1, m2)| {
                // u = m2 * w3 (256), r = m1 * (W2^T u) (512), g = W1^T r (784).
                let u: Vec<f64> = (0..h2).map(|k| m2[k] * p[4][k]).collect();
                let r: Vec<f64> = (0..h1)
                    .map(|j| m1[j] * (0..h2).map(|k| p[2][k * h1 + j] * u[k]).sum::<f64>())
                    .collect();
                let norm2: f64 = (0..784)
                    .map(|i| {
                        (0..h1)
                            .map(|j| p[0][j * 784 + i] * r[j])
                            .sum::<f64>()
                            .powi(2)
                    })
                    .sum();
                (norm2.sqrt() - 1.0).powi(2)
            })
            .sum::<f64>()
            / b as f64
    };
    let h = 1e-5;
    let reference = (gp_at(h) - gp_at(-h)) / (2.0 * h);
    let error = (analytic - reference).abs() / reference.abs();
    eprintln!(
        "gradient penalty, MLP critic: directional derivative {analytic:.6e}, f64 reference {reference:.6e}, relative error {error:.2e}"
    );
    assert!(error <= 1e-3, "relative error {error:.3e}");
}

#[test]
fn gradient_penalty_gradient_through_the_conv_critic_matches_finite_differences() {
    // Along the last layer's weights the critic's kinks stay put (they depend on the conv
    // layers alone), so the penalty is smooth along that direction: a central difference of
    // the GPU's penalty checks the double backward through both convolutions' recorded rules.
    let gpu = gpu();
    let model = WganGp::new(
        &gpu,
        WganArch::Conv,
        8,
        &mut rand::rngs::StdRng::seed_from_u64(1),
    )
    .unwrap();
    let b = 3;
    let x = tensor(&rand_vec(b * 784, 5, -1.0, 1.0), &[b, 784]).requires_grad_();
    let (params, dirs, analytic) =
        penalty_directional(&model, &x, 4.0, |name| name == "critic.fc.weight");
    let originals: Vec<Vec<f32>> = params.iter().map(|(_, p)| p.to_vec().unwrap()).collect();
    let at = |t: f32| -> f64 {
        for (((_, p), o), d) in params.iter().zip(&originals).zip(&dirs) {
            let v: Vec<f32> = o.iter().zip(d).map(|(a, b)| a + t * b).collect();
            p.copy_from(&tensor(&v, p.dims())).unwrap();
        }
        let value = penalty(&model, &x, false).0.item().unwrap() as f64;
        clear_tape();
        value
    };
    let errors: Vec<f64> = [1e-2f32, 1e-3]
        .iter()
        .map(|&h| {
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            (fd - analytic).abs() / analytic.abs()
        })
        .collect();
    let best = errors.iter().copied().fold(f64::INFINITY, f64::min);
    eprintln!(
        "gradient penalty, conv critic: directional derivative {analytic:.6e}, relative errors vs GPU FD (h 1e-2, 1e-3) {errors:?}"
    );
    assert!(best <= 1e-3, "relative error {best:.3e}");
}

#[test]
fn a_critic_step_leaves_the_tape_empty() {
    use deepgen::train::wgan::critic_step;
    let gpu = gpu();
    clear_tape();
    let model = WganGp::new(
        &gpu,
        WganArch::Mlp,
        8,
        &mut rand::rngs::StdRng::seed_from_u64(2),
    )
    .unwrap();
    let params = model
        .critic_parameters()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let mut critic = Optimizer::new(Adam::new(1e-4), params);
    let x = tensor(&rand_vec(4 * 784, 6, 0.0, 1.0), &[4, 784]);
    let eps = tensor(&rand_vec(4 * 784, 7, 0.0, 1.0), &[4, 784]);
    let out = critic_step(&model, &mut critic, &x, &eps, 10.0).unwrap();
    assert_eq!(tape_len(), 0, "the critic step left nodes on the tape");
    assert!(out.penalty.item().unwrap() > 0.0);
}

#[test]
fn hvp_linear_with_every_activation_on_both_matmul_paths() {
    for_each_matmul_path(|path| {
        for (b, i, o) in [(1usize, 1usize, 1usize), (7, 7, 7), (33, 20, 16)] {
            for act in activations() {
                // Weights small enough that exp stays moderate and sqrt's pre-activations are
                // mostly away from its kink at 0.
                hvp_check(
                    &format!("linear {b}x{i}x{o} {act:?} {path:?}"),
                    &[
                        input(rand_vec(b * i, 31, -1.0, 1.0), &[b, i]),
                        input(rand_vec(o * i, 32, -0.5, 0.5), &[o, i]),
                        input(rand_vec(o, 33, -0.5, 0.5), &[o]),
                    ],
                    |t| t[0].linear(&t[1], &t[2], act),
                    Some(&|x: &[Vec<f64>]| {
                        let y = ref_matmul(&x[0], &x[1], b, i, o, false, true);
                        y.iter()
                            .enumerate()
                            .map(|(k, v)| ref_activation(act, v + x[2][k % o]))
                            .collect()
                    }),
                    TOL,
                );
            }
        }
    });
}

#[test]
fn hvp_elementwise_activations() {
    for n in [1usize, 7, 33] {
        for act in activations() {
            // Away from the kinks of relu and leaky_relu; positive for sqrt.
            let x = if act == Activation::Sqrt {
                rand_vec(n, n as u64, 0.2, 1.5)
            } else {
                rand_away_from_zero(n, n as u64, 0.05)
            };
            hvp_check(
                &format!("{act:?} n={n}"),
                &[input(x, &[n])],
                |t| t[0].activation(act),
                Some(&|xs: &[Vec<f64>]| xs[0].iter().map(|&v| ref_activation(act, v)).collect()),
                TOL,
            );
        }
    }
}

#[test]
fn hvp_reductions_of_squares() {
    // Sums are linear: their second derivative shows through x * x before them.
    for dims in [vec![1usize], vec![7], vec![33, 7], vec![3, 5, 7]] {
        let n: usize = dims.iter().product();
        let x = rand_vec(n, 5, -1.0, 1.0);
        let sq = |x: &[f64]| x.iter().map(|v| v * v).collect::<Vec<_>>();
        hvp_check(
            &format!("sum(x*x) {dims:?}"),
            &[input(x.clone(), &dims)],
            |t| t[0].mul(&t[0])?.sum(),
            Some(&|x: &[Vec<f64>]| vec![sq(&x[0]).iter().sum()]),
            TOL,
        );
        hvp_check(
            &format!("mean(x*x) {dims:?}"),
            &[input(x.clone(), &dims)],
            |t| t[0].mul(&t[0])?.mean(),
            Some(&|x: &[Vec<f64>]| vec![sq(&x[0]).iter().sum::<f64>() / n as f64]),
            TOL,
        );
        for axis in 0..dims.len() {
            let outer: usize = dims[..axis].iter().product();
            let inner: usize = dims[axis + 1..].iter().product();
            let len = dims[axis];
            hvp_check(
                &format!("sum_axis({axis})(x*x) {dims:?}"),
                &[input(x.clone(), &dims)],
                |t| t[0].mul(&t[0])?.sum_axis(axis),
                Some(&|x: &[Vec<f64>]| ref_reduce(&sq(&x[0]), outer, len, inner, 1.0)),
                TOL,
            );
            hvp_check(
                &format!("mean_axis({axis})(x*x) {dims:?}"),
                &[input(x.clone(), &dims)],
                |t| t[0].mul(&t[0])?.mean_axis(axis),
                Some(&|x: &[Vec<f64>]| ref_reduce(&sq(&x[0]), outer, len, inner, 1.0 / len as f64)),
                TOL,
            );
        }
    }
}

#[test]
fn hvp_binary_ops_with_broadcasting() {
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
                // Squared after the op, so that add and sub have a second derivative too.
                hvp_check(
                    &format!("({name} {label})^2 {rows}x{cols}"),
                    &[input(a.clone(), &[rows, cols]), input(b.clone(), &bshape)],
                    |t| {
                        let y = f(&t[0], &t[1])?;
                        y.mul(&y)
                    },
                    Some(&|x: &[Vec<f64>]| {
                        (0..n).map(|i| r(x[0][i], x[1][i % blen]).powi(2)).collect()
                    }),
                    TOL,
                );
            }
        }
    }
}

#[test]
fn hvp_row_norm() {
    // The penalty's norm: sqrt(sum over a row of x^2 + eps).
    for (rows, cols) in [(1usize, 1usize), (7, 7), (33, 9)] {
        hvp_check(
            &format!("row norm {rows}x{cols}"),
            &[input(
                rand_away_from_zero(rows * cols, 8, 0.1),
                &[rows, cols],
            )],
            |t| t[0].mul(&t[0])?.sum_axis(1)?.affine(1.0, 1e-12)?.sqrt(),
            Some(&|x: &[Vec<f64>]| {
                (0..rows)
                    .map(|r| {
                        (x[0][r * cols..(r + 1) * cols]
                            .iter()
                            .map(|v| v * v)
                            .sum::<f64>()
                            + 1e-12)
                            .sqrt()
                    })
                    .collect()
            }),
            TOL,
        );
    }
}

#[test]
fn hvp_conv2d_and_conv_transpose2d() {
    use deepgen::ops::{Conv2dOptions, conv_transpose2d, conv2d};
    // (N, C, H, W), (O, K), stride, padding
    for (xs, (o, k), s, p) in [
        ([1usize, 1, 5, 5], (1usize, 3usize), 1usize, 0usize),
        ([2, 3, 7, 7], (4, 4), 2, 1),
        ([1, 2, 9, 9], (3, 3), 2, 1),
    ] {
        let [n, c, h, w] = xs;
        let opt = Conv2dOptions::new(s, p);
        let xv = rand_vec(n * c * h * w, 11, -1.0, 1.0);
        let wv = rand_vec(o * c * k * k, 12, -0.5, 0.5);
        let bv = rand_vec(o, 13, -0.5, 0.5);
        hvp_check(
            &format!("conv2d {xs:?} -> {o} k{k} s{s} p{p}"),
            &[
                input(xv.clone(), &xs),
                input(wv.clone(), &[o, c, k, k]),
                input(bv.clone(), &[o]),
            ],
            |t| conv2d(&t[0], &t[1], Some(&t[2]), opt),
            Some(&|x: &[Vec<f64>]| {
                ref_conv2d(
                    &x[0],
                    &x[1],
                    Some(&x[2]),
                    xs,
                    [o, k, k],
                    [s; 2],
                    [p; 2],
                    [1; 2],
                )
                .0
            }),
            TOL,
        );
        // conv_transpose2d from C to O channels (weight (C, O, K, K)).
        hvp_check(
            &format!("conv_transpose2d {xs:?} -> {o} k{k} s{s} p{p}"),
            &[
                input(xv.clone(), &xs),
                input(wv.clone(), &[c, o, k, k]),
                input(bv.clone(), &[o]),
            ],
            |t| conv_transpose2d(&t[0], &t[1], Some(&t[2]), opt, [0, 0]),
            Some(&|x: &[Vec<f64>]| {
                ref_conv_transpose2d(
                    &x[0],
                    &x[1],
                    Some(&x[2]),
                    xs,
                    [o, k, k],
                    [s; 2],
                    [p; 2],
                    [1; 2],
                    [0; 2],
                )
                .0
            }),
            TOL,
        );
    }
}

#[test]
fn hvp_small_critic_with_leaky_relu() {
    // x -> linear(leaky 0.2) -> linear: the mixed input-weight terms a gradient penalty uses.
    let (b, i, h) = (5usize, 7usize, 33usize);
    let act = Activation::LeakyRelu(0.2);
    hvp_check(
        "critic 5x7 -> 33 leaky -> 1",
        &[
            input(rand_vec(b * i, 14, -1.0, 1.0), &[b, i]),
            input(rand_vec(h * i, 15, -0.5, 0.5), &[h, i]),
            input(rand_vec(h, 16, -0.5, 0.5), &[h]),
            input(rand_vec(h, 17, -0.5, 0.5), &[1, h]),
        ],
        |t| {
            let hid = t[0].linear(&t[1], &t[2], act)?;
            let d = hid.matmul_nt(&t[3])?;
            // The squared input gradient's norm would be the penalty; here D itself squared.
            d.mul(&d)
        },
        Some(&|x: &[Vec<f64>]| {
            let mut hid = ref_matmul(&x[0], &x[1], b, i, h, false, true);
            for (k, v) in hid.iter_mut().enumerate() {
                *v = ref_activation(act, *v + x[2][k % h]);
            }
            ref_matmul(&hid, &x[3], b, h, 1, false, true)
                .iter()
                .map(|d| d * d)
                .collect()
        }),
        TOL,
    );
}

#[test]
fn create_graph_refuses_an_op_without_a_second_derivative() {
    let gpu = gpu();
    clear_tape();
    let x = tensor(&[0.5, -1.0], &[1, 2]).requires_grad_();
    let t = tensor(&[1.0, 0.0], &[1, 2]);
    let loss = deepgen::ops::bce_with_logits(&x, &t)
        .unwrap()
        .sum()
        .unwrap();
    let err = grad(&[&loss], &[&x], true).unwrap_err().to_string();
    assert!(err.contains("bce_with_logits"), "{err}");
    // First order still works.
    assert!(grad(&[&loss], &[&x], false).unwrap()[0].is_some());
    drop(gpu);
    clear_tape();
}

#[test]
fn wgan_gp_trains_from_the_command_line_and_its_checkpoint_samples_and_interpolates() {
    // A few hundred images: 10 critic steps of 64 and 2 generator steps per epoch.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wgan");
    let bin = env!("CARGO_BIN_EXE_deepgen");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin)
            .args(args)
            .output()
            .expect("spawn deepgen");
        assert!(
            o.status.success(),
            "deepgen {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let out_s = out.to_str().unwrap();
    run(&[
        "train",
        "wgan-gp",
        "--arch",
        "mlp",
        "--limit",
        "640",
        "--batch-size",
        "64",
        "--epochs",
        "2",
        "--out",
        out_s,
        "--no-progress",
    ]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (e, m) in lines.iter().enumerate() {
        assert_eq!(m["epoch"], e + 1);
        assert_eq!(m["critic_steps"], 10);
        assert_eq!(m["generator_steps"], 2);
        for key in [
            "wasserstein",
            "gradient_penalty",
            "grad_norm",
            "critic_loss",
            "g_loss",
        ] {
            assert!(m[key].as_f64().unwrap().is_finite(), "{key} in {m}");
        }
        assert!(m["gradient_penalty"].as_f64().unwrap() >= 0.0);
        assert!(m["grad_norm"].as_f64().unwrap() > 0.0);
    }
    // The penalty is active: far from the unit norm at the start, the critic is pushed to it.
    let csv = std::fs::read_to_string(out.join("wasserstein.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 2,
        "one point per 10 critic steps: {csv}"
    );
    for file in [
        "wasserstein.png",
        "samples.png",
        "samples_epoch_002.png",
        "model.safetensors",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let ckpt = deepgen::checkpoint::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(ckpt.metadata["model"], "wgan-gp");
    assert_eq!(ckpt.metadata["arch"], "mlp");
    let ckpt_s = out.join("model.safetensors");
    let ckpt_s = ckpt_s.to_str().unwrap();
    let npy = dir.path().join("s.npy");
    run(&[
        "sample",
        "--checkpoint",
        ckpt_s,
        "--n",
        "5",
        "--out",
        npy.to_str().unwrap(),
    ]);
    assert!(npy.is_file());
    let png = dir.path().join("i.png");
    let said = run(&[
        "interpolate",
        "--checkpoint",
        ckpt_s,
        "--from",
        "1",
        "--to",
        "2",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(said.contains("spherical"), "{said}");
    // Another kind is refused by name.
    let o = std::process::Command::new(bin)
        .args([
            "sample",
            "--checkpoint",
            ckpt_s,
            "--model",
            "dcgan",
            "--out",
        ])
        .arg(dir.path().join("x.png"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("wgan-gp"));
}

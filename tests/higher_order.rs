//! Higher-order reverse mode (`autograd::grad` with `create_graph`).

mod common;

use common::*;
use deepgen::Tensor;
use deepgen::autograd::{clear_tape, grad, tape_len};
use deepgen::models::{Adversarial, Dcgan, MlpConfig, MlpGan, Vae, WganArch, WganGp};
use deepgen::nn::Module;
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
fn first_order_steps_keep_their_dispatch_counts_and_leave_an_empty_tape() {
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
    eprintln!("vae {vae_counts:?} gan {gan_counts:?} dcgan {dcgan_counts:?}");
}

// ---- Hessian-vector products ------------------------------------------------------------

/// What one HVP check measured: the worst relative error (over the elements of every input's
/// HVP, relative to the largest reference element) against each reference.
struct HvpErrors {
    /// Against central differences of the GPU's first-order gradient.
    fd: f64,
    /// Against the f64 reference (None where there is none).
    f64_ref: Option<f64>,
}

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
/// difference (h = 1e-4) where `reference` is given. Returns the two worst relative errors and
/// asserts they are within `tol_fd` and `tol_ref`.
fn hvp_check(
    name: &str,
    inputs: &[Input],
    op: impl Fn(&[Tensor]) -> deepgen::Result<Tensor>,
    reference: Option<&dyn Fn(&[Vec<f64>]) -> Vec<f64>>,
    (tol_fd, tol_ref): (f64, f64),
) -> HvpErrors {
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
    HvpErrors {
        fd: fd_err,
        f64_ref: ref_err,
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

#[test]
fn gradient_penalty_gradient_matches_finite_differences_through_both_critics() {
    let gpu = gpu();
    for arch in [WganArch::Mlp, WganArch::Conv] {
        clear_tape();
        let model = WganGp::new(&gpu, arch, 8, &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
        // Larger weights than the init, so that the norms are far from 0 and the leaky units mix.
        let params = model.critic_parameters();
        for (i, (_, p)) in params.iter().enumerate() {
            let scale = if arch == WganArch::Conv { 8.0 } else { 2.0 };
            let v: Vec<f32> = p.to_vec().unwrap().iter().map(|x| x * scale).collect();
            p.copy_from(&tensor(&v, p.dims())).unwrap();
            let _ = i;
        }
        let b = 3;
        let x = tensor(&rand_vec(b * 784, 5, -1.0, 1.0), &[b, 784]).requires_grad_();
        let (gp, norm) = penalty(&model, &x, true);
        let grads = gp.backward().unwrap();
        clear_tape();
        // Directional derivative along a random direction in every critic parameter.
        let dirs: Vec<Vec<f32>> = params
            .iter()
            .enumerate()
            .map(|(i, (name, p))| {
                if std::env::var("ALLDIR").is_ok()
                    || name.ends_with("fc3.weight")
                    || name == "critic.fc.weight"
                {
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
                // None: the penalty does not depend on it (a first layer's bias moves a
                // piecewise-linear critic's input gradient only through its kinks).
                grads.get(p).map_or(0.0, |g| {
                    g.to_vec()
                        .unwrap()
                        .iter()
                        .zip(d)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                })
            })
            .sum();
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
        let errors: Vec<f64> = [1e-2f32, 3e-3, 1e-3]
            .iter()
            .map(|&h| {
                let fd = (at(h) - at(-h)) / (2.0 * h as f64);
                (fd - analytic).abs() / analytic.abs().max(1e-6)
            })
            .collect();
        at(0.0);
        let best = errors.iter().copied().fold(f64::INFINITY, f64::min);
        eprintln!(
            "gradient penalty {arch:?}: norms {:?}, d penalty along v {analytic:.5e}, relative errors vs GPU FD {errors:?}",
            norm.to_vec().unwrap()
        );
        assert!(best <= 1e-2, "{arch:?}: penalty gradient off by {best:.3e}");
    }
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

//! The kernels of image-to-image translation (issue 13): channel concatenation and its
//! inverses, L1, the least-squares GAN loss, instance norm. Each forward against a plain-Rust
//! f64 reference, each backward against finite differences (`common::gradcheck`), at awkward
//! sizes (1, 7, 33); concat/narrow/pad's second derivatives by double backward; the refusal
//! of `create_graph` by the first-order-only ops.

mod common;

use common::*;
use deepgen::autograd::{clear_tape, grad};
use deepgen::ops::{
    concat_channels, instance_norm, l1_loss, least_squares_loss, narrow_channels, pad_channels,
    split_channels,
};

const RTOL: f64 = 1e-3;

/// f64 concat along axis 1 of (n, ca, inner) and (n, cb, inner).
fn ref_concat(a: &[f64], b: &[f64], n: usize, ca: usize, cb: usize, inner: usize) -> Vec<f64> {
    let mut y = Vec::with_capacity(n * (ca + cb) * inner);
    for s in 0..n {
        y.extend_from_slice(&a[s * ca * inner..(s + 1) * ca * inner]);
        y.extend_from_slice(&b[s * cb * inner..(s + 1) * cb * inner]);
    }
    y
}

/// f64 x[:, start..start + len] of (n, c, inner).
fn ref_narrow(x: &[f64], n: usize, c: usize, inner: usize, start: usize, len: usize) -> Vec<f64> {
    let mut y = Vec::with_capacity(n * len * inner);
    for s in 0..n {
        let base = (s * c + start) * inner;
        y.extend_from_slice(&x[base..base + len * inner]);
    }
    y
}

/// f64 x (n, len, inner) placed at channel `start` of zeros (n, total, inner).
fn ref_pad(x: &[f64], n: usize, len: usize, inner: usize, start: usize, total: usize) -> Vec<f64> {
    let mut y = vec![0.0; n * total * inner];
    for s in 0..n {
        let base = (s * total + start) * inner;
        y[base..base + len * inner].copy_from_slice(&x[s * len * inner..(s + 1) * len * inner]);
    }
    y
}

/// f64 instance norm of (n, c, inner) with optional per-channel gamma, beta.
fn ref_instance_norm(
    x: &[f64],
    affine: Option<(&[f64], &[f64])>,
    c: usize,
    inner: usize,
    eps: f64,
) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for (r, plane) in x.chunks(inner).enumerate() {
        let mean = plane.iter().sum::<f64>() / inner as f64;
        let var = plane.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / inner as f64;
        let invstd = 1.0 / (var + eps).sqrt();
        let (g, b) = affine.map_or((1.0, 0.0), |(g, b)| (g[r % c], b[r % c]));
        for (j, v) in plane.iter().enumerate() {
            y[r * inner + j] = g * (v - mean) * invstd + b;
        }
    }
    y
}

/// (n, ca, cb, h, w): sizes 1, 7 and 33 among the axes.
const CONCAT_SHAPES: [(usize, usize, usize, usize, usize); 4] = [
    (1, 1, 1, 1, 1),
    (7, 1, 7, 1, 1),
    (2, 7, 3, 3, 11),
    (1, 33, 1, 7, 1),
];

#[test]
fn concat_channels_matches_reference_and_its_gradient_is_the_split() {
    for (k, &(n, ca, cb, h, w)) in CONCAT_SHAPES.iter().enumerate() {
        let inner = h * w;
        let a = rand_vec(n * ca * inner, 10 + k as u64, -1.0, 1.0);
        let b = rand_vec(n * cb * inner, 20 + k as u64, -1.0, 1.0);
        let y = concat_channels(&tensor(&a, &[n, ca, h, w]), &tensor(&b, &[n, cb, h, w])).unwrap();
        assert_eq!(y.dims(), &[n, ca + cb, h, w]);
        let want = ref_concat(&to_f64(&a), &to_f64(&b), n, ca, cb, inner);
        // A copy: exact.
        assert_close("concat", &y.to_vec().unwrap(), &want, 0.0, 0.0);
        gradcheck(
            &format!("concat_channels {n}x({ca}+{cb})x{h}x{w}"),
            &[input(a, &[n, ca, h, w]), input(b, &[n, cb, h, w])],
            |t| concat_channels(&t[0], &t[1]),
            |x| ref_concat(&x[0], &x[1], n, ca, cb, inner),
            RTOL,
        );
        clear_tape();
    }
}

#[test]
fn narrow_pad_and_split_match_reference_with_gradients() {
    for (k, &(n, c, start, len, inner)) in [
        (1usize, 1usize, 0usize, 1usize, 1usize),
        (7, 7, 2, 4, 1),
        (2, 33, 5, 27, 7),
        (3, 7, 6, 1, 33),
    ]
    .iter()
    .enumerate()
    {
        let x = rand_vec(n * c * inner, 30 + k as u64, -1.0, 1.0);
        let got = narrow_channels(&tensor(&x, &[n, c, inner]), start, len).unwrap();
        let want = ref_narrow(&to_f64(&x), n, c, inner, start, len);
        assert_close("narrow", &got.to_vec().unwrap(), &want, 0.0, 0.0);
        gradcheck(
            &format!("narrow_channels {n}x{c}x{inner} [{start}, +{len})"),
            &[input(x.clone(), &[n, c, inner])],
            |t| narrow_channels(&t[0], start, len),
            |x| ref_narrow(&x[0], n, c, inner, start, len),
            RTOL,
        );
        let small = rand_vec(n * len * inner, 40 + k as u64, -1.0, 1.0);
        let got = pad_channels(&tensor(&small, &[n, len, inner]), start, c).unwrap();
        let want = ref_pad(&to_f64(&small), n, len, inner, start, c);
        assert_close("pad", &got.to_vec().unwrap(), &want, 0.0, 0.0);
        gradcheck(
            &format!("pad_channels {n}x{len}x{inner} at {start} of {c}"),
            &[input(small, &[n, len, inner])],
            |t| pad_channels(&t[0], start, c),
            |x| ref_pad(&x[0], n, len, inner, start, c),
            RTOL,
        );
        // split is two narrows: its halves concatenated give x back.
        let (p, q) = split_channels(&tensor(&x, &[n, c, inner]), start).unwrap();
        let back = concat_channels(&p, &q).unwrap();
        assert_close(
            "split then concat",
            &back.to_vec().unwrap(),
            &to_f64(&x),
            0.0,
            0.0,
        );
        clear_tape();
    }
}

#[test]
fn channel_ops_refuse_bad_shapes_naming_them() {
    let a = tensor(&[0.0; 8], &[2, 1, 2, 2]);
    let b = tensor(&[0.0; 6], &[2, 1, 3, 1]);
    let err = concat_channels(&a, &b).unwrap_err().to_string();
    assert!(
        err.contains("concat_channels") && err.contains("(2, 1, 3, 1)"),
        "{err}"
    );
    let err = narrow_channels(&a, 1, 1).unwrap_err().to_string();
    assert!(err.contains("channels 1..2"), "{err}");
    let err = pad_channels(&a, 1, 1).unwrap_err().to_string();
    assert!(err.contains("does not fit in 1 channels"), "{err}");
    assert!(split_channels(&a, 2).is_err());
    let flat = tensor(&[0.0; 2], &[2]);
    assert!(concat_channels(&flat, &flat).is_err());
}

/// Second derivatives through the linear channel ops: for L = sum(w * f(x)^2) with f one of
/// them, the Hessian is diag(2 w') (w' = w carried back through f), so the HVP along v,
/// computed by double backward, must be 2 (f^T (w * f v)). Without recorded backward rules the
/// gradient would be a constant and the second grad would fail or be zero.
#[test]
fn channel_ops_have_second_derivatives() {
    let (n, ca, cb, inner) = (2usize, 3usize, 4usize, 7usize);
    let a = rand_vec(n * ca * inner, 51, -1.0, 1.0);
    let b = rand_vec(n * cb * inner, 52, -1.0, 1.0);
    let w = rand_vec(n * (ca + cb) * inner, 53, -1.0, 1.0);
    let (va, vb) = (
        rand_vec(a.len(), 54, -1.0, 1.0),
        rand_vec(b.len(), 55, -1.0, 1.0),
    );
    clear_tape();
    let (ta, tb) = (
        tensor(&a, &[n, ca, inner]).requires_grad_(),
        tensor(&b, &[n, cb, inner]).requires_grad_(),
    );
    let y = concat_channels(&ta, &tb).unwrap();
    let loss = y
        .mul(&y)
        .unwrap()
        .mul(&tensor(&w, y.dims()))
        .unwrap()
        .sum()
        .unwrap();
    let g = grad(&[&loss], &[&ta, &tb], true).unwrap();
    let (ga, gb) = (g[0].clone().unwrap(), g[1].clone().unwrap());
    assert!(
        ga.requires_grad() && gb.requires_grad(),
        "the gradient was not recorded"
    );
    let s = ga
        .mul(&tensor(&va, ga.dims()))
        .unwrap()
        .sum()
        .unwrap()
        .add(&gb.mul(&tensor(&vb, gb.dims())).unwrap().sum().unwrap())
        .unwrap();
    let h = grad(&[&s], &[&ta, &tb], false).unwrap();
    let v_cat = ref_concat(&to_f64(&va), &to_f64(&vb), n, ca, cb, inner);
    let hv: Vec<f64> = v_cat
        .iter()
        .zip(&w)
        .map(|(v, &w)| 2.0 * w as f64 * v)
        .collect();
    let want_a = ref_narrow(&hv, n, ca + cb, inner, 0, ca);
    let want_b = ref_narrow(&hv, n, ca + cb, inner, ca, cb);
    assert_close(
        "concat HVP a",
        &h[0].as_ref().unwrap().to_vec().unwrap(),
        &want_a,
        1e-5,
        1e-6,
    );
    assert_close(
        "concat HVP b",
        &h[1].as_ref().unwrap().to_vec().unwrap(),
        &want_b,
        1e-5,
        1e-6,
    );
    clear_tape();

    // narrow then pad: f = pad(narrow(x, 2, 3), 2, 7), a mask on channels 2..5.
    let c = ca + cb;
    let x = rand_vec(n * c * inner, 56, -1.0, 1.0);
    let v = rand_vec(x.len(), 57, -1.0, 1.0);
    let tx = tensor(&x, &[n, c, inner]).requires_grad_();
    let f = pad_channels(&narrow_channels(&tx, 2, 3).unwrap(), 2, c).unwrap();
    let loss = f
        .mul(&f)
        .unwrap()
        .mul(&tensor(&w, f.dims()))
        .unwrap()
        .sum()
        .unwrap();
    let g = grad(&[&loss], &[&tx], true).unwrap()[0].clone().unwrap();
    let s = g.mul(&tensor(&v, g.dims())).unwrap().sum().unwrap();
    let h = grad(&[&s], &[&tx], false).unwrap()[0].clone().unwrap();
    let want: Vec<f64> = (0..x.len())
        .map(|i| {
            let ch = (i / inner) % c;
            if (2..5).contains(&ch) {
                2.0 * w[i] as f64 * v[i] as f64
            } else {
                0.0
            }
        })
        .collect();
    assert_close("narrow/pad HVP", &h.to_vec().unwrap(), &want, 1e-5, 1e-6);
    clear_tape();
}

#[test]
fn l1_loss_matches_reference_with_gradient() {
    for (k, &(rows, dim)) in [(1usize, 1usize), (7, 7), (3, 33), (33, 65)]
        .iter()
        .enumerate()
    {
        let t = rand_vec(rows * dim, 60 + k as u64, -1.0, 1.0);
        // x - t kept away from the kink at 0.
        let d = rand_away_from_zero(rows * dim, 70 + k as u64, 0.05);
        let x: Vec<f32> = t.iter().zip(&d).map(|(t, d)| t + d).collect();
        let reference = |x: &[f64], t: &[f64]| -> Vec<f64> {
            x.chunks(dim)
                .zip(t.chunks(dim))
                .map(|(x, t)| x.iter().zip(t).map(|(a, b)| (a - b).abs()).sum::<f64>() / dim as f64)
                .collect()
        };
        let got = l1_loss(&tensor(&x, &[rows, dim]), &tensor(&t, &[rows, dim])).unwrap();
        assert_eq!(got.dims(), &[rows]);
        let want = reference(&to_f64(&x), &to_f64(&t));
        assert_close("l1_loss", &got.to_vec().unwrap(), &want, 1e-5, 1e-6);
        gradcheck(
            &format!("l1_loss {rows}x{dim}"),
            &[input(x, &[rows, dim]), constant(t, &[rows, dim])],
            |t| l1_loss(&t[0], &t[1]),
            |x| reference(&x[0], &x[1]),
            RTOL,
        );
        clear_tape();
    }
    let err = l1_loss(&tensor(&[0.0; 4], &[2, 2]), &tensor(&[0.0; 4], &[4]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("l1_loss") && err.contains("(2, 2)"), "{err}");
}

#[test]
fn least_squares_loss_is_mse_against_a_constant() {
    for (k, &(rows, c, hw)) in [(1usize, 1usize, 1usize), (7, 1, 7), (3, 1, 33), (33, 2, 49)]
        .iter()
        .enumerate()
    {
        let dim = c * hw;
        let x = rand_vec(rows * dim, 80 + k as u64, -2.0, 2.0);
        for target in [0.0f32, 1.0] {
            let reference = |x: &[f64]| -> Vec<f64> {
                x.chunks(dim)
                    .map(|r| {
                        r.iter().map(|v| (v - target as f64).powi(2)).sum::<f64>() / dim as f64
                    })
                    .collect()
            };
            let got = least_squares_loss(&tensor(&x, &[rows, c, hw]), target).unwrap();
            assert_close(
                "least_squares_loss",
                &got.to_vec().unwrap(),
                &reference(&to_f64(&x)),
                1e-5,
                1e-6,
            );
            // The same values as mse_loss against a tensor full of the target.
            let mse = deepgen::ops::mse_loss(
                &tensor(&x, &[rows, c, hw]),
                &tensor(&vec![target; x.len()], &[rows, c, hw]),
            )
            .unwrap();
            assert_close(
                "vs mse_loss",
                &got.to_vec().unwrap(),
                &to_f64(&mse.to_vec().unwrap()),
                1e-6,
                1e-7,
            );
            gradcheck(
                &format!("least_squares_loss {rows}x{c}x{hw} target {target}"),
                &[input(x.clone(), &[rows, c, hw])],
                |t| least_squares_loss(&t[0], target),
                |x| reference(&x[0]),
                RTOL,
            );
            clear_tape();
        }
    }
}

#[test]
fn instance_norm_matches_reference_with_gradients() {
    let eps = 1e-5;
    for (k, &(n, c, h, w)) in [
        (1usize, 1usize, 1usize, 7usize),
        (7, 1, 1, 1),
        (2, 3, 3, 11),
        (1, 7, 33, 1),
        (3, 2, 7, 7),
    ]
    .iter()
    .enumerate()
    {
        let inner = h * w;
        let x = rand_vec(n * c * inner, 90 + k as u64, -2.0, 2.0);
        let gamma = rand_vec(c, 100 + k as u64, 0.5, 1.5);
        let beta = rand_vec(c, 110 + k as u64, -0.5, 0.5);
        let (tg, tb) = (tensor(&gamma, &[c]), tensor(&beta, &[c]));
        let got = instance_norm(&tensor(&x, &[n, c, h, w]), Some((&tg, &tb)), eps).unwrap();
        let want = ref_instance_norm(
            &to_f64(&x),
            Some((&to_f64(&gamma), &to_f64(&beta))),
            c,
            inner,
            eps as f64,
        );
        assert_close(
            "instance_norm affine",
            &got.to_vec().unwrap(),
            &want,
            1e-4,
            1e-4,
        );
        let got = instance_norm(&tensor(&x, &[n, c, h, w]), None, eps).unwrap();
        let want = ref_instance_norm(&to_f64(&x), None, c, inner, eps as f64);
        assert_close("instance_norm", &got.to_vec().unwrap(), &want, 1e-4, 1e-4);
        gradcheck(
            &format!("instance_norm affine {n}x{c}x{h}x{w}"),
            &[
                input(x.clone(), &[n, c, h, w]),
                input(gamma.clone(), &[c]),
                input(beta.clone(), &[c]),
            ],
            |t| instance_norm(&t[0], Some((&t[1], &t[2])), eps),
            |x| ref_instance_norm(&x[0], Some((&x[1], &x[2])), c, inner, eps as f64),
            RTOL,
        );
        gradcheck(
            &format!("instance_norm {n}x{c}x{h}x{w}"),
            &[input(x.clone(), &[n, c, h, w])],
            |t| instance_norm(&t[0], None, eps),
            |x| ref_instance_norm(&x[0], None, c, inner, eps as f64),
            RTOL,
        );
        clear_tape();
    }
    let x = tensor(&[0.0; 8], &[2, 2, 2]);
    let g = tensor(&[1.0; 3], &[3]);
    let err = instance_norm(&x, Some((&g, &g)), eps)
        .unwrap_err()
        .to_string();
    assert!(err.contains("gamma (3,)") && err.contains("(2,)"), "{err}");
    assert!(instance_norm(&tensor(&[0.0; 2], &[2]), None, eps).is_err());
}

#[test]
fn first_order_ops_refuse_create_graph_naming_themselves() {
    clear_tape();
    let x = tensor(&rand_vec(2 * 3 * 4, 120, -1.0, 1.0), &[2, 3, 2, 2]).requires_grad_();
    let t = tensor(&rand_vec(2 * 3 * 4, 121, -1.0, 1.0), &[2, 3, 2, 2]);
    type Loss<'a> = Box<dyn Fn() -> deepgen::Tensor + 'a>;
    let cases: [(&str, Loss); 3] = [
        (
            "l1_loss",
            Box::new(|| l1_loss(&x, &t).unwrap().sum().unwrap()),
        ),
        (
            "least_squares_loss",
            Box::new(|| least_squares_loss(&x, 1.0).unwrap().sum().unwrap()),
        ),
        (
            "instance_norm",
            Box::new(|| {
                let y = instance_norm(&x, None, 1e-5).unwrap();
                y.mul(&t).unwrap().sum().unwrap()
            }),
        ),
    ];
    for (name, f) in cases {
        let loss = f();
        let err = grad(&[&loss], &[&x], true).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains("create_graph"),
            "{name}: {err}"
        );
        // First order still works.
        let loss = f();
        assert!(grad(&[&loss], &[&x], false).unwrap()[0].is_some(), "{name}");
        clear_tape();
    }
}

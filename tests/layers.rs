//! batch_norm, dropout and softmax cross-entropy against f64 references and finite differences.

mod common;

use common::*;
use deepgen::Tensor;
use deepgen::ops::{batch_norm, softmax_cross_entropy};

#[test]
fn batch_norm_matches_reference_and_updates_running_stats() {
    for dims in [
        vec![1usize, 1],
        vec![7, 3],
        vec![33, 5],
        vec![2, 3, 7, 5],
        vec![1, 4, 3, 3],
        vec![16, 8, 7, 7],
    ] {
        let (n, c) = (dims[0], dims[1]);
        let inner: usize = dims[2..].iter().product();
        let x = rand_vec(dims.iter().product(), 1, -2.0, 3.0);
        let gamma = rand_vec(c, 2, 0.5, 1.5);
        let beta = rand_vec(c, 3, -0.5, 0.5);
        let rm0 = rand_vec(c, 4, -0.1, 0.1);
        let rv0 = rand_vec(c, 5, 0.8, 1.2);
        let (rm, rv) = (tensor(&rm0, &[c]), tensor(&rv0, &[c]));
        let y = batch_norm(
            &tensor(&x, &dims),
            &tensor(&gamma, &[c]),
            &tensor(&beta, &[c]),
            &rm,
            &rv,
            true,
            0.1,
            1e-5,
        )
        .unwrap();
        let (want, mean, var) = ref_batch_norm(
            &to_f64(&x),
            &to_f64(&gamma),
            &to_f64(&beta),
            n,
            c,
            inner,
            1e-5,
        );
        // A single value per channel has zero variance: y = beta exactly.
        assert_close(
            &format!("batch_norm {dims:?}"),
            &y.to_vec().unwrap(),
            &want,
            1e-4,
            1e-4,
        );
        let m = (n * inner) as f64;
        let unbiased: Vec<f64> = var.iter().map(|v| v * m / (m - 1.0).max(1.0)).collect();
        let want_rm: Vec<f64> = (0..c)
            .map(|i| 0.9 * rm0[i] as f64 + 0.1 * mean[i])
            .collect();
        let want_rv: Vec<f64> = (0..c)
            .map(|i| 0.9 * rv0[i] as f64 + 0.1 * unbiased[i])
            .collect();
        assert_close("running_mean", &rm.to_vec().unwrap(), &want_rm, 1e-5, 1e-6);
        assert_close("running_var", &rv.to_vec().unwrap(), &want_rv, 1e-5, 1e-6);
        // Eval mode normalises with the running statistics and leaves them alone.
        let y_eval = batch_norm(
            &tensor(&x, &dims),
            &tensor(&gamma, &[c]),
            &tensor(&beta, &[c]),
            &rm,
            &rv,
            false,
            0.1,
            1e-5,
        )
        .unwrap();
        let want_eval = ref_batch_norm_eval(
            &to_f64(&x),
            &to_f64(&gamma),
            &to_f64(&beta),
            &want_rm,
            &want_rv,
            c,
            inner,
            1e-5,
        );
        assert_close(
            "batch_norm eval",
            &y_eval.to_vec().unwrap(),
            &want_eval,
            1e-4,
            1e-5,
        );
        assert_close(
            "running_mean unchanged in eval",
            &rm.to_vec().unwrap(),
            &want_rm,
            1e-6,
            1e-7,
        );
    }
}

#[test]
fn batch_norm_backward() {
    for dims in [vec![7usize, 3], vec![2, 3, 5, 3], vec![1, 2, 3, 3]] {
        let (n, c) = (dims[0], dims[1]);
        let inner: usize = dims[2..].iter().product();
        let total: usize = dims.iter().product();
        for training in [true, false] {
            let rm = rand_vec(c, 11, -0.2, 0.2);
            let rv = rand_vec(c, 12, 0.5, 1.5);
            let (rm2, rv2) = (to_f64(&rm), to_f64(&rv));
            let d1 = dims.clone();
            gradcheck(
                &format!("batch_norm {dims:?} training={training}"),
                &[
                    input(rand_vec(total, 6, -2.0, 2.0), &d1),
                    input(rand_vec(c, 7, 0.5, 1.5), &[c]),
                    input(rand_vec(c, 8, -0.5, 0.5), &[c]),
                ],
                move |t| {
                    // Fresh running statistics per call, so eval mode sees the same ones every time.
                    let (rm_t, rv_t) = (tensor(&rm, &[c]), tensor(&rv, &[c]));
                    batch_norm(&t[0], &t[1], &t[2], &rm_t, &rv_t, training, 0.1, 1e-5)
                },
                move |x| {
                    if training {
                        ref_batch_norm(&x[0], &x[1], &x[2], n, c, inner, 1e-5).0
                    } else {
                        ref_batch_norm_eval(&x[0], &x[1], &x[2], &rm2, &rv2, c, inner, 1e-5)
                    }
                },
                2e-3,
            );
        }
    }
}

#[test]
fn dropout_masks_scale_and_backpropagate() {
    let gpu = gpu();
    gpu.manual_seed(3);
    let n = 100_003;
    let x = Tensor::from_slice(&gpu, &vec![2.0; n], [n])
        .unwrap()
        .requires_grad_();
    let y = x.dropout(0.3).unwrap();
    let yv = y.to_vec().unwrap();
    let kept = yv.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
    assert!((kept - 0.7).abs() < 0.01, "kept fraction {kept}");
    assert!(
        yv.iter().all(|&v| v == 0.0 || (v - 2.0 / 0.7).abs() < 1e-5),
        "survivors scaled by 1/(1-p)"
    );
    let g = y
        .sum()
        .unwrap()
        .backward()
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec()
        .unwrap();
    for (gi, yi) in g.iter().zip(&yv) {
        assert_eq!(*gi, if *yi == 0.0 { 0.0 } else { 1.0 / 0.7 });
    }
    // Seeded: the same seed gives the same mask; p = 0 is the identity; p >= 1 is refused.
    gpu.manual_seed(3);
    let again = Tensor::from_slice(&gpu, &vec![2.0; n], [n])
        .unwrap()
        .dropout(0.3)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(yv, again);
    assert_eq!(x.dropout(0.0).unwrap().to_vec().unwrap(), vec![2.0; n]);
    assert!(x.dropout(1.0).is_err());
}

#[test]
fn softmax_cross_entropy_matches_reference() {
    for (b, c) in [(1usize, 1usize), (7, 10), (33, 7), (5, 1000)] {
        let x = rand_vec(b * c, 20, -5.0, 5.0);
        let labels: Vec<f32> = (0..b).map(|i| ((i * 7) % c) as f32).collect();
        let loss = softmax_cross_entropy(&tensor(&x, &[b, c]), &tensor(&labels, &[b])).unwrap();
        assert_close(
            &format!("softmax_ce {b}x{c}"),
            &loss.to_vec().unwrap(),
            &ref_softmax_cross_entropy(&to_f64(&x), &to_f64(&labels), b),
            1e-5,
            1e-5,
        );
        gradcheck(
            &format!("softmax_ce {b}x{c}"),
            &[input(x, &[b, c]), constant(labels, &[b])],
            |t| softmax_cross_entropy(&t[0], &t[1]),
            |x| ref_softmax_cross_entropy(&x[0], &x[1], b),
            1e-3,
        );
    }
}

#[test]
fn softmax_cross_entropy_extremes_and_bad_labels() {
    let x = [1000.0f32, -1000.0, 0.0, -1e4, 1e4, 50.0];
    let loss = softmax_cross_entropy(&tensor(&x, &[2, 3]), &tensor(&[0.0, 2.0], &[2]))
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(loss.iter().all(|v| v.is_finite()), "{loss:?}");
    assert!(
        loss[0].abs() < 1e-3 && (loss[1] - (1e4 - 50.0)).abs() < 1.0,
        "{loss:?}"
    );
    let bad = softmax_cross_entropy(&tensor(&x, &[2, 3]), &tensor(&[3.0, -1.0], &[2]))
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(bad.iter().all(|v| v.is_nan()), "{bad:?}");
    assert!(softmax_cross_entropy(&tensor(&x, &[2, 3]), &tensor(&[0.0; 3], &[3])).is_err());
}

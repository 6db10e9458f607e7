//! conv2d and conv_transpose2d against direct f64 references (forward) and finite
//! differences (backward), at awkward sizes: odd spatial sizes, stride 2 with
//! padding 1, 1x1 kernels, dilation, batch 1, output_padding.

mod common;

use common::*;
use deepgen::ops::{Conv2dOptions, conv_transpose2d, conv2d};

/// (input NCHW, (out channels, KH, KW), stride, padding, dilation)
type Case = ([usize; 4], [usize; 3], [usize; 2], [usize; 2], [usize; 2]);

/// (input NCHW, (C_out, KH, KW), stride, padding, dilation, output_padding)
type TransposeCase = (
    [usize; 4],
    [usize; 3],
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
);

const CASES: [Case; 7] = [
    ([1, 1, 1, 1], [1, 1, 1], [1, 1], [0, 0], [1, 1]),
    ([1, 3, 7, 7], [4, 3, 3], [1, 1], [1, 1], [1, 1]),
    ([2, 3, 7, 5], [5, 4, 4], [2, 2], [1, 1], [1, 1]),
    ([3, 2, 9, 8], [3, 1, 1], [1, 1], [0, 0], [1, 1]),
    ([2, 2, 11, 9], [3, 3, 2], [2, 3], [2, 0], [2, 1]),
    ([1, 1, 28, 28], [8, 4, 4], [2, 2], [1, 1], [1, 1]),
    ([2, 8, 14, 14], [16, 4, 4], [2, 2], [1, 1], [1, 1]),
];

fn options(stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2]) -> Conv2dOptions {
    Conv2dOptions {
        stride,
        padding,
        dilation,
    }
}

#[test]
fn conv2d_forward_matches_reference() {
    for_each_conv_algorithm(|alg| {
        for (i, (xs, [o, kh, kw], s, p, d)) in CASES.into_iter().enumerate() {
            let c = xs[1];
            let x = rand_vec(xs.iter().product(), 1 + i as u64, -1.0, 1.0);
            let w = rand_vec(o * c * kh * kw, 50 + i as u64, -1.0, 1.0);
            let b = rand_vec(o, 90 + i as u64, -1.0, 1.0);
            let y = conv2d(
                &tensor(&x, &xs),
                &tensor(&w, &[o, c, kh, kw]),
                Some(&tensor(&b, &[o])),
                options(s, p, d),
            )
            .unwrap();
            let (want, [oh, ow]) = ref_conv2d(
                &to_f64(&x),
                &to_f64(&w),
                Some(&to_f64(&b)),
                xs,
                [o, kh, kw],
                s,
                p,
                d,
            );
            assert_eq!(y.dims(), &[xs[0], o, oh, ow], "case {i}");
            assert_close(
                &format!("conv2d case {i} {alg:?}"),
                &y.to_vec().unwrap(),
                &want,
                1e-5,
                1e-5 * ((c * kh * kw) as f64).sqrt(),
            );
        }
    });
}

#[test]
fn conv_transpose2d_forward_matches_reference() {
    for_each_conv_algorithm(|alg| {
        // (input, (C_out, KH, KW), stride, padding, dilation, output_padding)
        let cases: [TransposeCase; 6] = [
            ([1, 1, 1, 1], [1, 1, 1], [1, 1], [0, 0], [1, 1], [0, 0]),
            ([1, 3, 7, 7], [2, 3, 3], [1, 1], [1, 1], [1, 1], [0, 0]),
            ([2, 4, 7, 7], [3, 4, 4], [2, 2], [1, 1], [1, 1], [0, 0]),
            ([2, 3, 5, 6], [2, 3, 3], [2, 2], [1, 1], [1, 1], [1, 1]),
            ([1, 2, 4, 3], [3, 2, 3], [3, 2], [0, 1], [2, 1], [1, 0]),
            ([2, 16, 7, 7], [8, 4, 4], [2, 2], [1, 1], [1, 1], [0, 0]),
        ];
        for (i, (xs, [cout, kh, kw], s, p, d, op)) in cases.into_iter().enumerate() {
            let cin = xs[1];
            let x = rand_vec(xs.iter().product(), 3 + i as u64, -1.0, 1.0);
            let w = rand_vec(cin * cout * kh * kw, 60 + i as u64, -1.0, 1.0);
            let b = rand_vec(cout, 70 + i as u64, -1.0, 1.0);
            let y = conv_transpose2d(
                &tensor(&x, &xs),
                &tensor(&w, &[cin, cout, kh, kw]),
                Some(&tensor(&b, &[cout])),
                options(s, p, d),
                op,
            )
            .unwrap();
            let (want, [oh, ow]) = ref_conv_transpose2d(
                &to_f64(&x),
                &to_f64(&w),
                Some(&to_f64(&b)),
                xs,
                [cout, kh, kw],
                s,
                p,
                d,
                op,
            );
            assert_eq!(y.dims(), &[xs[0], cout, oh, ow], "case {i}");
            assert_close(
                &format!("conv_transpose2d case {i} {alg:?}"),
                &y.to_vec().unwrap(),
                &want,
                1e-5,
                1e-5 * ((cin * kh * kw) as f64).sqrt(),
            );
        }
    });
}

#[test]
fn dcgan_shapes_follow_pytorch() {
    // Generator: 128x7x7 -> 64x14x14 -> 1x28x28 with k=4, s=2, p=1; discriminator back down.
    let x = tensor(&vec![0.1; 2 * 128 * 49], &[2, 128, 7, 7]);
    let w = tensor(&vec![0.01; 128 * 64 * 16], &[128, 64, 4, 4]);
    let y = conv_transpose2d(&x, &w, None, Conv2dOptions::new(2, 1), [0, 0]).unwrap();
    assert_eq!(y.dims(), &[2, 64, 14, 14]);
    let w2 = tensor(&vec![0.01; 64 * 16], &[64, 1, 4, 4]);
    assert_eq!(
        conv_transpose2d(&y, &w2, None, Conv2dOptions::new(2, 1), [0, 0])
            .unwrap()
            .dims(),
        &[2, 1, 28, 28]
    );
    let img = tensor(&vec![0.5; 2 * 784], &[2, 1, 28, 28]);
    let wd = tensor(&vec![0.01; 64 * 16], &[64, 1, 4, 4]);
    let h = conv2d(&img, &wd, None, Conv2dOptions::new(2, 1)).unwrap();
    assert_eq!(h.dims(), &[2, 64, 14, 14]);
    let wd2 = tensor(&vec![0.01; 128 * 64 * 16], &[128, 64, 4, 4]);
    assert_eq!(
        conv2d(&h, &wd2, None, Conv2dOptions::new(2, 1))
            .unwrap()
            .dims(),
        &[2, 128, 7, 7]
    );
}

#[test]
fn conv_refuses_bad_shapes() {
    let x = tensor(&[0.0; 2 * 3 * 5 * 5], &[2, 3, 5, 5]);
    let msg = conv2d(
        &x,
        &tensor(&[0.0; 4 * 2 * 9], &[4, 2, 3, 3]),
        None,
        Conv2dOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("conv2d") && msg.contains("(2, 3, 5, 5)") && msg.contains("(4, 2, 3, 3)"),
        "{msg}"
    );
    assert!(
        conv2d(
            &x,
            &tensor(&[0.0; 4 * 3 * 49], &[4, 3, 7, 7]),
            None,
            Conv2dOptions::default()
        )
        .is_err()
    );
    assert!(
        conv2d(
            &x,
            &tensor(&[0.0; 4 * 3 * 9], &[4, 3, 3, 3]),
            Some(&tensor(&[0.0; 3], &[3])),
            Conv2dOptions::default()
        )
        .is_err()
    );
    assert!(
        conv2d(
            &x,
            &tensor(&[0.0; 4 * 3 * 9], &[4, 3, 3, 3]),
            None,
            Conv2dOptions::new(0, 0)
        )
        .is_err()
    );
    let w = tensor(&[0.0; 3 * 2 * 9], &[3, 2, 3, 3]);
    assert!(
        conv_transpose2d(&x, &w, None, Conv2dOptions::new(2, 1), [2, 0]).is_err(),
        "output_padding must be < stride"
    );
    assert!(
        conv_transpose2d(
            &x,
            &tensor(&[0.0; 18], &[2, 1, 3, 3]),
            None,
            Conv2dOptions::default(),
            [0, 0]
        )
        .is_err()
    );
}

#[test]
fn conv2d_backward() {
    for_each_conv_algorithm(|alg| {
        for (i, (xs, [o, kh, kw], s, p, d)) in CASES.into_iter().enumerate().take(5) {
            let c = xs[1];
            gradcheck(
                &format!("conv2d case {i} {alg:?}"),
                &[
                    input(rand_vec(xs.iter().product(), 5 + i as u64, -1.0, 1.0), &xs),
                    input(
                        rand_vec(o * c * kh * kw, 15 + i as u64, -1.0, 1.0),
                        &[o, c, kh, kw],
                    ),
                    input(rand_vec(o, 25 + i as u64, -1.0, 1.0), &[o]),
                ],
                |t| conv2d(&t[0], &t[1], Some(&t[2]), options(s, p, d)),
                |x| ref_conv2d(&x[0], &x[1], Some(&x[2]), xs, [o, kh, kw], s, p, d).0,
                1e-3,
            );
        }
    });
}

#[test]
fn conv_transpose2d_backward() {
    for_each_conv_algorithm(|alg| {
        let cases: [TransposeCase; 4] = [
            ([1, 1, 1, 1], [1, 1, 1], [1, 1], [0, 0], [1, 1], [0, 0]),
            ([1, 3, 5, 5], [2, 3, 3], [1, 1], [1, 1], [1, 1], [0, 0]),
            ([2, 3, 4, 3], [2, 4, 4], [2, 2], [1, 1], [1, 1], [0, 0]),
            ([1, 2, 3, 4], [3, 3, 2], [2, 3], [1, 0], [1, 2], [1, 2]),
        ];
        for (i, (xs, [cout, kh, kw], s, p, d, op)) in cases.into_iter().enumerate() {
            let cin = xs[1];
            gradcheck(
                &format!("conv_transpose2d case {i} {alg:?}"),
                &[
                    input(rand_vec(xs.iter().product(), 35 + i as u64, -1.0, 1.0), &xs),
                    input(
                        rand_vec(cin * cout * kh * kw, 45 + i as u64, -1.0, 1.0),
                        &[cin, cout, kh, kw],
                    ),
                    input(rand_vec(cout, 55 + i as u64, -1.0, 1.0), &[cout]),
                ],
                |t| conv_transpose2d(&t[0], &t[1], Some(&t[2]), options(s, p, d), op),
                |x| {
                    ref_conv_transpose2d(&x[0], &x[1], Some(&x[2]), xs, [cout, kh, kw], s, p, d, op)
                        .0
                },
                1e-3,
            );
        }
    });
}

/// The direct weight-gradient reference, which the workbench checks its conv rows against,
/// agrees with the engine's weight gradients: conv2d's, and conv_transpose2d's through the
/// same function with the roles of x and dy swapped (a transposed convolution's input is the
/// output side of a conv2d from its output).
#[test]
fn weight_gradients_match_the_direct_reference() {
    for_each_conv_algorithm(|alg| {
        for (i, (xs, [o, kh, kw], s, p, d)) in CASES.into_iter().enumerate() {
            let c = xs[1];
            let x = rand_vec(xs.iter().product(), 60 + i as u64, -1.0, 1.0);
            let w = tensor(
                &rand_vec(o * c * kh * kw, 70 + i as u64, -1.0, 1.0),
                &[o, c, kh, kw],
            )
            .requires_grad_();
            let y = conv2d(&tensor(&x, &xs), &w, None, options(s, p, d)).unwrap();
            let dy = rand_vec(y.numel(), 80 + i as u64, -1.0, 1.0);
            let grads = y
                .mul(&tensor(&dy, y.dims()))
                .unwrap()
                .sum()
                .unwrap()
                .backward()
                .unwrap();
            let want =
                ref_conv2d_backward_weight(&to_f64(&x), &to_f64(&dy), xs, [o, kh, kw], s, p, d);
            assert_close(
                &format!("conv2d case {i} {alg:?}: dweight"),
                &grads.get(&w).unwrap().to_vec().unwrap(),
                &want,
                1e-4,
                1e-4,
            );
        }
        let cases: [TransposeCase; 3] = [
            ([1, 3, 5, 5], [2, 3, 3], [1, 1], [1, 1], [1, 1], [0, 0]),
            ([2, 3, 4, 3], [2, 4, 4], [2, 2], [1, 1], [1, 1], [0, 0]),
            ([1, 2, 3, 4], [3, 3, 2], [2, 3], [1, 0], [1, 2], [1, 2]),
        ];
        for (i, (xs, [cout, kh, kw], s, p, d, op)) in cases.into_iter().enumerate() {
            let cin = xs[1];
            let x = rand_vec(xs.iter().product(), 90 + i as u64, -1.0, 1.0);
            let w = tensor(
                &rand_vec(cin * cout * kh * kw, 100 + i as u64, -1.0, 1.0),
                &[cin, cout, kh, kw],
            )
            .requires_grad_();
            let y = conv_transpose2d(&tensor(&x, &xs), &w, None, options(s, p, d), op).unwrap();
            let ys: [usize; 4] = y.dims().try_into().unwrap();
            let dy = rand_vec(y.numel(), 110 + i as u64, -1.0, 1.0);
            let grads = y
                .mul(&tensor(&dy, &ys))
                .unwrap()
                .sum()
                .unwrap()
                .backward()
                .unwrap();
            let want = ref_conv2d_backward_weight(
                &to_f64(&dy),
                &to_f64(&x),
                [ys[0], cout, ys[2], ys[3]],
                [cin, kh, kw],
                s,
                p,
                d,
            );
            assert_close(
                &format!("conv_transpose2d case {i} {alg:?}: dweight"),
                &grads.get(&w).unwrap().to_vec().unwrap(),
                &want,
                1e-4,
                1e-4,
            );
        }
    });
}

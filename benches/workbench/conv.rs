//! conv2d and conv_transpose2d (NCHW, PyTorch's layouts), forward and backward, at the layers of
//! the DCGAN and the conv VAE (batch 128, k4 s2 p1).
//!
//! How the engine computes them (src/ops/conv.rs has the index algebra): conv2d forward is
//! im2col (`shaders/conv.wgsl`) + `matmul_nt` + `rows_to_nchw` with the bias; its input gradient
//! `matmul` + `col2im`; its weight gradient `matmul_tn`. conv_transpose2d runs the same kernels
//! with the roles of input and output swapped. So a conv row moves with the matmul version
//! (`--matmul`), and its products are also rows of the matmul family (full suite: [`products`]),
//! which splits a layer's time into its products and the data movement around them.
//!
//! Versions (the unfolding around the product); GFLOP/s of the DCGAN discriminator's second
//! layer (64 -> 128 channels, 14x14 -> 7x7) forward on lavapipe:
//!
//! | version | kernel | figure |
//! | --- | --- | --- |
//! | v1 direct: one invocation per output pixel, 8 output channels in registers, weights uniform across the workgroup | not kept (a per-lane buffer load per multiply-add on CPU adapters) | 1.0 (1,648 ms, benches/NOTES.md) |
//! | v2 im2col (one invocation per pixel and channel writes its KH*KW floats) + matmul | `im2col` (KW != 4) | 7.7 (217 ms under load; commit 45eb031, the first bench run) |
//! | v3 im2col_kw4 (one invocation per pixel, channel and kernel row writes its 4 taps as one vec4) + matmul | `im2col_kw4` (KW = 4) | 9.7 (170 ms under load, commit 6c3cfe8); 29.9 (54.9 ms) with matmul v5's rows layout and epilogue constant (docs/bench_lavapipe.json, commit f7f5e66) |
//!
//! Algorithms (src/ops/conv.rs; the autotuner picks per product and geometry): `im2col` above
//! (with the matmul the tuner picks for each product), and `implicit`, implicit GEMM on matmul
//! v3's tiling (`shaders/conv_implicit.wgsl`: the operands gathered from the NCHW tensors into
//! workgroup memory, no im2col matrix in global memory, NCHW out). Each case has a row per
//! algorithm forced and one `auto` row (the tuner's choice per product, what the models run),
//! compared with the faster forced one in the report's `tuner` list. GFLOP/s on lavapipe in one
//! run (`deepgen bench --quick`, see matmul.rs for the load):
//!
//! | conv (N x C x H x W -> O, k4 s2 p1) | im2col | implicit | auto (the tuner's choices) | auto vs faster forced |
//! | --- | --- | --- | --- | --- |
//! | conv2d 128x1x28x28->64 k4s2p1 | 0.21 (245 ms) | 0.13 (405 ms) | 0.36 (144 ms) | 0.59x (im2col fastest) |
//! | conv2d_backward 128x1x28x28->64 k4s2p1 | 0.26 (391 ms) | 0.00 (48960 ms) | 0.32 (323 ms) | 0.83x (im2col fastest) |
//! | conv2d 128x64x14x14->128 k4s2p1 | 1.32 (1244 ms) | 0.19 (8677 ms) | 3.19 (516 ms) | 0.41x (im2col fastest) |
//! | conv2d_backward 128x64x14x14->128 k4s2p1 | 0.71 (4603 ms) | 0.09 (38169 ms) | 3.42 (962 ms) | 0.21x (im2col fastest) |
//! | conv_transpose2d 128x128x7x7->64 k4s2p1 | 2.77 (593 ms) | 0.08 (21590 ms) | 1.39 (1182 ms) | 1.99x (im2col fastest) |
//! | conv_transpose2d_backward 128x128x7x7->64 k4s2p1 | 1.67 (1973 ms) | 0.23 (14157 ms) | 2.64 (1246 ms) | 0.63x (im2col fastest) |
//! | conv_transpose2d 128x64x14x14->1 k4s2p1 | 0.92 (56 ms) | 0.00 (21884 ms) | 0.63 (81 ms) | 1.45x (im2col fastest) |
//! | conv_transpose2d_backward 128x64x14x14->1 k4s2p1 | 0.47 (217 ms) | 0.26 (394 ms) | 0.82 (125 ms) | 0.58x (im2col fastest) |
//!
//! conv: auto at or below the faster forced in 6/8, within 10% in 6/8
//!
//! On paper (H100, see matmul.rs): the implicit kernel stages the same BM x BN x BK tiles as v3,
//! so it moves the same 1/16 byte per FLOP at the 64x64 GPU tile, plus the index arithmetic of
//! the gather; the im2col path writes and reads the unfolded matrix (KH KW / stride^2 = 4 times
//! the input for the models' k4 s2 layers) through global memory on top of its product.
//!
//! Cases: [`CASES`] (`--quick`: the DCGAN's four). Each is checked against the f64 references
//! (reference.rs) on the first and last samples of the batch (output and input gradient) and on
//! the first and last rows of the weight gradient (over the whole batch), then timed forward (as
//! inference) and backward, once per algorithm.
//!
//! Version switch: `DEEPGEN_CONV=implicit|im2col` or `Gpu::force_conv_algorithm`; the im2col
//! path's unfolding is `im2col_kw4` for kernels 4 wide (every case here) and `im2col` otherwise,
//! and its products follow `--matmul`.

use deepgen::ops::{Conv2dOptions, ConvAlgorithm, conv_transpose2d, conv2d};
use deepgen::{Result, Tensor};

use super::matmul::{self, Variant};
use super::reference::{ref_conv_transpose2d, ref_conv2d, ref_conv2d_backward_weight};
use super::{Bench, Work, check, gradient, pick, to_f64};

/// GPU memory the graphs of one timed backward batch may hold (they are alive together).
const BACKWARD_BATCH_BYTES: f64 = 256.0 * 1048576.0;

/// A convolution layer (square images and kernels).
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// conv_transpose2d instead of conv2d.
    transpose: bool,
    n: usize,
    cin: usize,
    /// Input height and width.
    hw: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    bias: bool,
}

/// A layer of batch 128 with a 4x4 kernel, stride 2, padding 1.
const fn layer(transpose: bool, cin: usize, hw: usize, cout: usize, bias: bool) -> Case {
    Case {
        transpose,
        n: 128,
        cin,
        hw,
        cout,
        k: 4,
        stride: 2,
        pad: 1,
        bias,
    }
}

/// The first [`CASES`] are the DCGAN's (the `--quick` suite's).
const DCGAN_CASES: usize = 4;

/// The convolution layers of the DCGAN (discriminator, then generator, first four) and of the
/// conv VAE (encoder, then decoder).
pub const CASES: [Case; 8] = [
    layer(false, 1, 28, 64, true),
    layer(false, 64, 14, 128, false),
    layer(true, 128, 7, 64, false),
    layer(true, 64, 14, 1, true),
    layer(false, 1, 28, 32, true),
    layer(false, 32, 14, 64, true),
    layer(true, 64, 7, 32, true),
    layer(true, 32, 14, 1, true),
];

/// The im2col products of every conv2d layer in [`CASES`], for the matmul family: with
/// M = N OH OW and K = C KH KW, the forward `col (M, K) W^T` (NT, M x K x O), the input
/// gradient's `dY W` (NN, M x O x K) and the weight gradient `dY^T col` (TN, O x M x K).
/// `quick`: the DCGAN's layers only.
pub fn products(quick: bool) -> Vec<matmul::Case> {
    CASES
        .iter()
        .take(if quick { DCGAN_CASES } else { CASES.len() })
        .filter(|c| !c.transpose)
        .flat_map(|c| {
            let [n, o, oh, ow] = c.output_dims();
            let (m, k) = (n * oh * ow, c.cin * c.k * c.k);
            let product = |variant, m, k, n| matmul::Case {
                variant,
                m,
                k,
                n,
                quick: false,
            };
            [
                product(Variant::NT, m, k, o),
                product(Variant::NN, m, o, k),
                product(Variant::TN, o, m, k),
            ]
        })
        .collect()
}

impl Case {
    fn kernel(&self) -> &'static str {
        if self.transpose {
            "conv_transpose2d"
        } else {
            "conv2d"
        }
    }

    /// `128x64x14x14->128 k4s2p1`: input (N, C, H, W) -> output channels, kernel, stride, padding.
    fn shape(&self) -> String {
        format!(
            "{}x{}x{}x{}->{} k{}s{}p{}",
            self.n, self.cin, self.hw, self.hw, self.cout, self.k, self.stride, self.pad
        )
    }

    fn input_dims(&self) -> [usize; 4] {
        [self.n, self.cin, self.hw, self.hw]
    }

    /// conv2d: (O, C, KH, KW); conv_transpose2d: (C_in, C_out, KH, KW) (PyTorch's layouts).
    fn weight_dims(&self) -> [usize; 4] {
        if self.transpose {
            [self.cin, self.cout, self.k, self.k]
        } else {
            [self.cout, self.cin, self.k, self.k]
        }
    }

    fn output_dims(&self) -> [usize; 4] {
        let o = if self.transpose {
            (self.hw - 1) * self.stride + self.k - 2 * self.pad
        } else {
            (self.hw + 2 * self.pad - self.k) / self.stride + 1
        };
        [self.n, self.cout, o, o]
    }

    /// Forward FLOPs: 2 N OH OW O C KH KW of the convolution (for a transposed convolution, of
    /// the convolution it is the transpose of: 2 N H W C_in C_out KH KW).
    fn forward_flops(&self) -> f64 {
        let small = if self.transpose {
            self.hw
        } else {
            self.output_dims()[2]
        };
        2.0 * (self.n * small * small * self.cin * self.cout * self.k * self.k) as f64
    }

    /// Forward: reads x, weight, bias, writes y. Backward: reads x, weight, dy, writes dx,
    /// dweight, dbias.
    fn work(&self, backward: bool) -> Work {
        let numel = |d: [usize; 4]| d.iter().product::<usize>();
        let x = numel(self.input_dims());
        let w = numel(self.weight_dims());
        let y = numel(self.output_dims());
        let b = if self.bias { self.cout } else { 0 };
        if backward {
            Work {
                flops: 2.0 * self.forward_flops(),
                bytes: 4.0 * (x + w + y + x + w + b) as f64,
            }
        } else {
            Work {
                flops: self.forward_flops(),
                bytes: 4.0 * (x + w + b + y) as f64,
            }
        }
    }

    /// GPU bytes one forward graph holds for its backward (unfolded input, output, loss).
    fn graph_bytes(&self) -> f64 {
        let [_, _, oh, ow] = self.output_dims();
        let unfolded = if self.transpose {
            self.n * self.hw * self.hw * (self.cin + self.cout * self.k * self.k)
        } else {
            self.n * oh * ow * self.cin * self.k * self.k
        };
        4.0 * (unfolded + 2 * self.output_dims().iter().product::<usize>()) as f64
    }

    /// (kernel sizes, stride, padding, dilation) as the references take them.
    fn geometry(&self) -> ([usize; 2], [usize; 2], [usize; 2]) {
        ([self.stride; 2], [self.pad; 2], [1, 1])
    }

    /// The f64 forward of `n` samples `x` (n, C_in, H, W), bias added.
    fn reference_forward(&self, x: &[f64], n: usize, w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
        let (s, p, d) = self.geometry();
        let input = [n, self.cin, self.hw, self.hw];
        let kernel = [self.cout, self.k, self.k];
        if self.transpose {
            ref_conv_transpose2d(x, w, b, input, kernel, s, p, d, [0, 0]).0
        } else {
            ref_conv2d(x, w, b, input, kernel, s, p, d).0
        }
    }

    /// The f64 input gradient of `n` samples from their `dy` (n, C_out, OH, OW): the transposed
    /// operation with the same weight (read in the other operation's layout, which is the same
    /// memory: conv2d's (O, C) is conv_transpose2d's (C_in, C_out) and the other way round).
    fn reference_dx(&self, dy: &[f64], n: usize, w: &[f64]) -> Vec<f64> {
        let (s, p, d) = self.geometry();
        let [_, _, oh, ow] = self.output_dims();
        let input = [n, self.cout, oh, ow];
        let kernel = [self.cin, self.k, self.k];
        if self.transpose {
            ref_conv2d(dy, w, None, input, kernel, s, p, d).0
        } else {
            // The output padding that brings the transposed convolution back to H.
            let pad_out = self.hw - ((oh - 1) * self.stride + self.k - 2 * self.pad);
            ref_conv_transpose2d(dy, w, None, input, kernel, s, p, d, [pad_out; 2]).0
        }
    }

    /// Rows `w0s` (first index) of the f64 weight gradient, over the whole batch.
    fn reference_dw(&self, x: &[f64], dy: &[f64], w0s: &[usize]) -> Vec<f64> {
        let (s, p, d) = self.geometry();
        let [n, _, oh, ow] = self.output_dims();
        // Rows `w0s` of a weight gradient come from those channels of one operand.
        let channels = |data: &[f64], count: usize, plane: usize| {
            let rows: Vec<usize> = (0..n)
                .flat_map(|i| w0s.iter().map(move |&c| i * count + c))
                .collect();
            pick(data, &rows, plane)
        };
        let kernel = [w0s.len(), self.k, self.k];
        if self.transpose {
            // dW (C_in, C_out, KH, KW): conv2d's weight gradient with x and dy swapped.
            let x = channels(x, self.cin, self.hw * self.hw);
            ref_conv2d_backward_weight(dy, &x, [n, self.cout, oh, ow], kernel, s, p, d)
        } else {
            let dy = channels(dy, self.cout, oh * ow);
            ref_conv2d_backward_weight(x, &dy, [n, self.cin, self.hw, self.hw], kernel, s, p, d)
        }
    }
}

/// Checks and times every case.
pub fn run(bench: &mut Bench) -> Result<()> {
    let cases = if bench.quick {
        DCGAN_CASES
    } else {
        CASES.len()
    };
    for case in CASES.into_iter().take(cases) {
        row(bench, case)?;
    }
    Ok(())
}

/// Checks and times `case` with each algorithm forced, then with the autotuner's choice per
/// product (`auto`, what the models run), and records the pick against the fastest.
fn row(bench: &mut Bench, case: Case) -> Result<()> {
    let gpu = bench.gpu;
    for algorithm in [
        Some(ConvAlgorithm::Im2col),
        Some(ConvAlgorithm::Implicit),
        None,
    ] {
        gpu.force_conv_algorithm(algorithm);
        bench.version = Some(algorithm.map_or("auto", ConvAlgorithm::name).into());
        let done = row_with(bench, case);
        bench.version = None;
        gpu.force_conv_algorithm(None);
        done?;
    }
    let kernel = case.kernel();
    let shape = case.shape();
    bench.tuner_pick(kernel, &shape, "auto", false);
    bench.tuner_pick(&format!("{kernel}_backward"), &shape, "auto", false);
    Ok(())
}

fn row_with(bench: &mut Bench, case: Case) -> Result<()> {
    let kernel = case.kernel();
    let backward_kernel = format!("{kernel}_backward");
    let shape = case.shape();
    let (want_forward, want_backward) = (
        bench.wants(kernel, &shape),
        bench.wants(&backward_kernel, &shape),
    );
    if !want_forward && !want_backward {
        return Ok(());
    }
    let (x_dims, w_dims, y_dims) = (case.input_dims(), case.weight_dims(), case.output_dims());
    let (xs, x) = bench.tensor(&x_dims, -1.0, 1.0)?;
    let (ws, w) = bench.tensor(&w_dims, -0.5, 0.5)?;
    let (bs, b) = if case.bias {
        let (bs, b) = bench.tensor(&[case.cout], -0.5, 0.5)?;
        (Some(to_f64(&bs)), Some(b))
    } else {
        (None, None)
    };
    let (xs, ws) = (to_f64(&xs), to_f64(&ws));
    let opt = Conv2dOptions::new(case.stride, case.pad);
    let forward = |x: &Tensor, w: &Tensor, b: Option<&Tensor>| {
        if case.transpose {
            conv_transpose2d(x, w, b, opt, [0, 0])
        } else {
            conv2d(x, w, b, opt)
        }
    };
    // The checks take the first and last samples of the batch, and the first and last rows of
    // the weight gradient.
    let samples = [0, case.n - 1];
    let w0s = [0, w_dims[0] - 1];
    let y_len = y_dims[1..].iter().product::<usize>();
    let x_len = x_dims[1..].iter().product::<usize>();
    let w_len = w_dims[1..].iter().product::<usize>();
    if want_forward {
        let got = {
            let _no_grad = deepgen::no_grad();
            forward(&x, &w, b.as_ref())?.to_vec()?
        };
        let want = case.reference_forward(&pick(&xs, &samples, x_len), 2, &ws, bs.as_deref());
        check(
            kernel,
            &shape,
            "output",
            &pick(&got, &samples, y_len),
            &want,
        )?;
        let (seconds, timing) = bench.inference_seconds(|| forward(&x, &w, b.as_ref()))?;
        bench.push(kernel, &shape, seconds, case.work(false), timing, None);
    }
    if want_backward {
        let xg = x.clone().requires_grad_();
        let wg = w.clone().requires_grad_();
        let bg = b.clone().map(Tensor::requires_grad_);
        // Check with a random output gradient: loss = sum(y * g), so dy = g.
        let (gs, g) = bench.tensor(&y_dims, -1.0, 1.0)?;
        let gs = to_f64(&gs);
        let grads = forward(&xg, &wg, bg.as_ref())?.mul(&g)?.sum()?.backward()?;
        let dx = gradient(&grads, &xg, &backward_kernel)?;
        let dw = gradient(&grads, &wg, &backward_kernel)?;
        let want_dx = case.reference_dx(&pick(&gs, &samples, y_len), 2, &ws);
        check(
            &backward_kernel,
            &shape,
            "input gradient",
            &pick(&dx, &samples, x_len),
            &want_dx,
        )?;
        check(
            &backward_kernel,
            &shape,
            "weight gradient",
            &pick(&dw, &w0s, w_len),
            &case.reference_dw(&xs, &gs, &w0s),
        )?;
        if let Some(bg) = &bg {
            // db[o] = the sum of dy over the batch and the plane.
            let db = gradient(&grads, bg, &backward_kernel)?;
            let plane = y_dims[2] * y_dims[3];
            let mut want_db = vec![0.0f64; case.cout];
            for (i, &v) in gs.iter().enumerate() {
                want_db[(i / plane) % case.cout] += v;
            }
            check(&backward_kernel, &shape, "bias gradient", &db, &want_db)?;
        }
        drop(grads);
        let max_live = ((BACKWARD_BATCH_BYTES / case.graph_bytes()) as usize).max(1);
        bench.backward_row(
            &backward_kernel,
            &shape,
            &y_dims,
            max_live,
            case.work(true),
            || forward(&xg, &wg, bg.as_ref()),
        )?;
    }
    Ok(())
}

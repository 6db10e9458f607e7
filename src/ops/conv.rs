//! conv2d and conv_transpose2d, NCHW, with stride, padding, dilation (and output_padding),
//! following PyTorch's definitions exactly (kernels in `shaders/conv.wgsl` and `shaders/matmul.wgsl`).
//!
//! Two algorithms, chosen per adapter and geometry by the autotuner (`ops/tune.rs`) or forced
//! (`DEEPGEN_CONV=implicit|im2col`, [`Gpu::force_conv_algorithm`]), each product on its own
//! (forward, input gradient, weight gradient): [`ConvAlgorithm::Im2col`], described next, and
//! [`ConvAlgorithm::Implicit`], implicit GEMM on matmul v3's tiling (`shaders/conv_implicit.wgsl`:
//! the operands are gathered from the NCHW tensors straight into workgroup memory, no im2col
//! matrix in global memory, NCHW out). Gradients of gradients (recording on) always take the
//! im2col path, whose layout kernels are recorded ops.
//!
//! Algorithm of the im2col path: im2col + our matmul, chosen by measurement. The input's receptive fields are
//! unfolded into the rows of a matrix `col (N*OH*OW, C*KH*KW)`; the convolution is then one
//! product with the weight viewed as `(O, C*KH*KW)`, done by the register-tiled matmul kernel.
//! On lavapipe, for the DCGAN discriminator's second layer (batch 128, 64 -> 128 channels,
//! 14x14 -> 7x7, k4 s2 p1), measured back to back under the same load: a direct kernel (one
//! invocation per output pixel with 8 output channels in registers, the weights uniform across
//! the workgroup) ran at 1.0 GFLOP/s; im2col + matmul at 9.7 GFLOP/s. On CPU adapters every
//! per-invocation buffer load is a loop over the SIMD lanes, and the direct kernel does one per
//! multiply-add, while the matmul reads its operands from textures in vector gathers and reuses
//! each value across a register block. An implicit GEMM (the gather inside the matmul's k loop)
//! brings those per-lane loads back into the tile loads: it is the second algorithm, for GPUs,
//! and the autotuner measures which one wins where (benches/workbench/conv.rs has the figures).

//! Index algebra (one output pixel (oh, ow) sees input (oh*s - p + kh*d, ow*s - p + kw*d)):
//!
//! | op | as matrices |
//! | --- | --- |
//! | conv2d forward | `Y = im2col(X) W^T` (rows: output pixels; cols: output channels), then rows -> NCHW + bias |
//! | conv2d dW | `dW = dY^T im2col(X)` |
//! | conv2d dX | `dX = col2im(dY W)`: the transposed convolution of dY |
//! | conv2d db | `db = sum over rows of dY` |
//! | conv_transpose2d forward | `Y = col2im(X W)`: conv2d's dX with the roles of input and output swapped |
//! | conv_transpose2d dX | `dX = im2col(dY) W^T`: a conv2d of dY |
//! | conv_transpose2d dW | `dW = X^T im2col(dY)` |

use std::cell::Cell;

use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Storage, grid_1d};
use crate::ops::kernels::{Kernel, WORKGROUP_1D, tiled_tile};
use crate::ops::tune;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Environment variable that forces the convolution algorithm: `implicit`, `im2col` or `auto`.
pub const CONV_ENV: &str = "DEEPGEN_CONV";

/// How a convolution's three products (forward, input gradient, weight gradient) are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvAlgorithm {
    /// Unfold the receptive fields into a matrix (`shaders/conv.wgsl`), then a matmul of any
    /// version, then a layout pass.
    Im2col,
    /// Implicit GEMM on matmul v3's tiling (`shaders/conv_implicit.wgsl`): one kernel, no
    /// unfolded matrix in global memory.
    Implicit,
}

impl ConvAlgorithm {
    /// `im2col` or `implicit`.
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgorithm::Im2col => "im2col",
            ConvAlgorithm::Implicit => "implicit",
        }
    }

    /// Parses [`ConvAlgorithm::name`] (any case).
    pub fn parse(text: &str) -> Option<ConvAlgorithm> {
        match text.trim().to_ascii_lowercase().as_str() {
            "im2col" => Some(ConvAlgorithm::Im2col),
            "implicit" => Some(ConvAlgorithm::Implicit),
            _ => None,
        }
    }
}

/// The forced convolution algorithm of one GPU context (kept in [`Gpu::extension`]).
#[derive(Default)]
struct ForcedConv {
    /// None until first asked; then Some(the forced algorithm, or None for the tuner).
    algorithm: Cell<Option<Option<ConvAlgorithm>>>,
}

impl Gpu {
    /// The convolution algorithm forced on this context: by [`Gpu::force_conv_algorithm`],
    /// else by `DEEPGEN_CONV` (`implicit`, `im2col`; `auto` or unset: none). None: the
    /// autotuner chooses per geometry and product.
    pub fn forced_conv_algorithm(&self) -> Option<ConvAlgorithm> {
        let state = self.extension::<ForcedConv>();
        if let Some(a) = state.algorithm.get() {
            return a;
        }
        let forced =
            tune::forced_by_env(CONV_ENV, "auto, implicit or im2col", ConvAlgorithm::parse);
        state.algorithm.set(Some(forced));
        forced
    }

    /// Forces every convolution product of this context to use `algorithm` (None: the
    /// autotuner chooses), overriding `DEEPGEN_CONV`; for tests and benchmarks.
    pub fn force_conv_algorithm(&self, algorithm: Option<ConvAlgorithm>) {
        self.extension::<ForcedConv>()
            .algorithm
            .set(Some(algorithm));
    }
}

/// One of the three products of a convolution (see `shaders/conv_implicit.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvProduct {
    /// `y = conv(x, w)`.
    Forward,
    /// `dx` from `dy` and `w` (also conv_transpose2d's forward).
    Dx,
    /// `dw` from `dy` and `x`.
    Dw,
}

/// Params of `shaders/conv_implicit.wgsl`: the geometry of [`ConvParams`] with the output
/// channels in place of its padding word.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ImplicitConvParams {
    /// Batch size.
    pub n: u32,
    /// Channels of the convolution's input.
    pub c: u32,
    /// Input height.
    pub h: u32,
    /// Input width.
    pub w: u32,
    /// Kernel height.
    pub kh: u32,
    /// Kernel width.
    pub kw: u32,
    /// Output height.
    pub oh: u32,
    /// Output width.
    pub ow: u32,
    /// Vertical stride.
    pub stride_h: u32,
    /// Horizontal stride.
    pub stride_w: u32,
    /// Zero padding above and below.
    pub pad_h: u32,
    /// Zero padding left and right.
    pub pad_w: u32,
    /// Vertical dilation.
    pub dil_h: u32,
    /// Horizontal dilation.
    pub dil_w: u32,
    /// Output channels of the convolution.
    pub o: u32,
    /// Add `bias[column]` to the product (forward: per output channel; dx: per input channel).
    pub has_bias: u32,
}

/// Records `which` product of the convolution `geom` with `o` output channels as one
/// implicit-GEMM kernel: Forward `src0` = x, `src1` = w -> y (N, O, OH, OW); Dx `src0` = dy,
/// `src1` = w -> dx (N, C, H, W); Dw `src0` = dy, `src1` = x -> dw (O, C, KH, KW). The bias
/// (Forward, Dx only) is added per column.
fn implicit(
    which: ConvProduct,
    src0: &Tensor,
    src1: &Tensor,
    bias: Option<&Tensor>,
    geom: ConvParams,
    o: usize,
) -> Result<Tensor> {
    let gpu = src0.gpu();
    let g = geom;
    let p = ImplicitConvParams {
        n: g.n,
        c: g.c,
        h: g.h,
        w: g.w,
        kh: g.kh,
        kw: g.kw,
        oh: g.oh,
        ow: g.ow,
        stride_h: g.stride_h,
        stride_w: g.stride_w,
        pad_h: g.pad_h,
        pad_w: g.pad_w,
        dil_h: g.dil_h,
        dil_w: g.dil_w,
        o: o as u32,
        has_bias: u32::from(bias.is_some()),
    };
    let (o32, kk) = (o as u32, g.kh * g.kw);
    let (kernel, rows, cols, shape): (Kernel, u32, u32, [u32; 4]) = match which {
        ConvProduct::Forward => (
            Kernel::ConvImplicitForward,
            g.n * g.oh * g.ow,
            o32,
            [g.n, o32, g.oh, g.ow],
        ),
        ConvProduct::Dx => (
            Kernel::ConvImplicitDx,
            g.n * g.h * g.w,
            g.c,
            [g.n, g.c, g.h, g.w],
        ),
        ConvProduct::Dw => (
            Kernel::ConvImplicitDw,
            o32,
            g.c * kk,
            [o32, g.c, g.kh, g.kw],
        ),
    };
    let numel = (rows * cols) as usize;
    let out = Tensor::alloc(gpu, "conv_implicit", numel)?;
    let tile = tiled_tile(gpu.capabilities());
    let bias_storage: &Storage = bias.map_or(src0.storage(), |b| b.storage());
    kernel.dispatch_with(
        gpu,
        &tile.constants(),
        &[],
        &[src0.storage(), src1.storage(), bias_storage, &out],
        &p,
        [cols.div_ceil(tile.bn), rows.div_ceil(tile.bm), 1],
    );
    let shape = shape.map(|d| d as usize);
    Ok(Tensor::from_storage(gpu, out, shape.into()))
}

/// The algorithm for product `which` of the convolution `geom` (`o` output channels): the
/// forced one, else the autotuner's choice, timed with `run` (which records the product by the
/// given algorithm for the given geometry: `geom` or its first images) the first time this
/// geometry is seen on this adapter. Small convolutions
/// (and the browser) take the default: im2col on CPU adapters (measured there, see above),
/// implicit GEMM on GPUs.
fn choose_algorithm(
    gpu: &Gpu,
    which: ConvProduct,
    geom: ConvParams,
    o: usize,
    mut run: impl FnMut(ConvAlgorithm, ConvParams) -> Result<()>,
) -> ConvAlgorithm {
    if let Some(a) = gpu.forced_conv_algorithm() {
        return a;
    }
    let default = if gpu.capabilities().device_type == wgpu::DeviceType::Cpu {
        ConvAlgorithm::Im2col
    } else {
        ConvAlgorithm::Implicit
    };
    let g = geom;
    let macs = [g.n, g.oh, g.ow, g.c, g.kh, g.kw]
        .iter()
        .fold(o as f64, |acc, &d| acc * d as f64);
    if macs < tune::MIN_TUNED_MACS {
        return default;
    }
    let class = format!(
        "conv {which:?} x{}x{}x{}x{} o{o} k{}x{} s{}x{} p{}x{} d{}x{}",
        g.n, g.c, g.h, g.w, g.kh, g.kw, g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w
    );
    let _no_grad = no_grad();
    tune::choose(
        gpu,
        &class,
        &[ConvAlgorithm::Im2col, ConvAlgorithm::Implicit],
        ConvAlgorithm::name,
        default,
        |alg, fraction| {
            // The leading slice: the first images of the batch.
            let mut g = geom;
            g.n = ((g.n as f64 * fraction).ceil() as u32).clamp(1, g.n);
            run(alg, g)
        },
    )
}

/// The algorithm the engine runs for product `which` of `conv2d(x, weight)` with `opt` (tuning
/// now if this geometry has not been seen); for `deepgen bench` and tests.
///
/// Errors: [`Error::Shape`] as [`conv2d`].
pub fn chosen_conv_algorithm(
    x: &Tensor,
    weight: &Tensor,
    opt: Conv2dOptions,
    which: ConvProduct,
) -> Result<ConvAlgorithm> {
    let _no_grad = no_grad();
    let (geom, o) = conv2d_geometry(x, weight, None, &opt)?;
    let dy = Tensor::zeros(
        x.gpu(),
        [geom.n as usize, o, geom.oh as usize, geom.ow as usize],
    )?;
    Ok(algorithm_for(which, x, weight, &dy, None, geom, o))
}

/// Params of `im2col` and `col2im`: the geometry of a convolution from
/// `(N, C, H, W)` to `(N, *, OH, OW)` with a `(KH, KW)` kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvParams {
    /// Batch size.
    pub n: u32,
    /// Channels of the convolution's input.
    pub c: u32,
    /// Input height.
    pub h: u32,
    /// Input width.
    pub w: u32,
    /// Kernel height.
    pub kh: u32,
    /// Kernel width.
    pub kw: u32,
    /// Output height.
    pub oh: u32,
    /// Output width.
    pub ow: u32,
    /// Vertical stride.
    pub stride_h: u32,
    /// Horizontal stride.
    pub stride_w: u32,
    /// Zero padding above and below.
    pub pad_h: u32,
    /// Zero padding left and right.
    pub pad_w: u32,
    /// Vertical dilation.
    pub dil_h: u32,
    /// Horizontal dilation.
    pub dil_w: u32,
    /// col2im adds `bias[c]` when non-zero.
    pub has_bias: u32,
    /// Padding to 64 bytes.
    pub _pad: u32,
}

/// Params of `rows_to_nchw` / `nchw_to_rows`: `(N*P, O)` rows <-> `(N, O, P)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LayoutParams {
    /// Batch size.
    pub n: u32,
    /// Channels.
    pub o: u32,
    /// Pixels per channel (OH * OW).
    pub p: u32,
    /// rows_to_nchw adds `bias[o]` when non-zero.
    pub has_bias: u32,
}

/// Stride, padding and dilation of a 2-D convolution, as (height, width) pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between receptive fields (>= 1).
    pub stride: [usize; 2],
    /// Implicit zeros on each side.
    pub padding: [usize; 2],
    /// Spacing between kernel taps (>= 1).
    pub dilation: [usize; 2],
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        }
    }
}

impl Conv2dOptions {
    /// Square stride and padding, no dilation: the common case.
    pub fn new(stride: usize, padding: usize) -> Conv2dOptions {
        Conv2dOptions {
            stride: [stride, stride],
            padding: [padding, padding],
            dilation: [1, 1],
        }
    }
}

/// The geometry of a convolution from `input (N, C, H, W)` to `output (N, _, OH, OW)`.
fn conv_params(
    input: [usize; 4],
    kernel: [usize; 2],
    output: [usize; 2],
    opt: &Conv2dOptions,
) -> ConvParams {
    ConvParams {
        n: input[0] as u32,
        c: input[1] as u32,
        h: input[2] as u32,
        w: input[3] as u32,
        kh: kernel[0] as u32,
        kw: kernel[1] as u32,
        oh: output[0] as u32,
        ow: output[1] as u32,
        stride_h: opt.stride[0] as u32,
        stride_w: opt.stride[1] as u32,
        pad_h: opt.padding[0] as u32,
        pad_w: opt.padding[1] as u32,
        dil_h: opt.dilation[0] as u32,
        dil_w: opt.dilation[1] as u32,
        has_bias: 0,
        _pad: 0,
    }
}

/// Unfolds the receptive fields of `x` (NCHW storage) into `col (N*OH*OW, C*KH*KW)`.
fn im2col(x: &Tensor, p: ConvParams) -> Result<Tensor> {
    let rows = (p.n * p.oh * p.ow) as usize;
    let cols = (p.c * p.kh * p.kw) as usize;
    let col = Tensor::alloc(x.gpu(), "im2col", rows * cols)?;
    if p.kw == 4 {
        let threads = rows as u64 * (p.c * p.kh) as u64;
        Kernel::Im2colKw4.dispatch(
            x.gpu(),
            &[x.storage(), &col],
            &p,
            grid_1d(threads, WORKGROUP_1D),
        );
    } else {
        let threads = rows as u64 * p.c as u64;
        Kernel::Im2col.dispatch(
            x.gpu(),
            &[x.storage(), &col],
            &p,
            grid_1d(threads, WORKGROUP_1D),
        );
    }
    Ok(Tensor::from_storage(x.gpu(), col, [rows, cols].into()))
}

/// Folds `col (N*OH*OW, C*KH*KW)` back into `(N, C, H, W)`, summing overlaps, plus `bias[c]`.
fn col2im(col: &Tensor, mut p: ConvParams, bias: Option<&Tensor>) -> Result<Tensor> {
    let n = (p.n * p.c * p.h * p.w) as usize;
    let out = Tensor::alloc(col.gpu(), "col2im", n)?;
    p.has_bias = bias.is_some() as u32;
    // Without a bias the binding is unused; any buffer fills it.
    let bias_storage: &Storage = bias.map_or(col.storage(), |b| b.storage());
    Kernel::Col2im.dispatch(
        col.gpu(),
        &[col.storage(), bias_storage, &out],
        &p,
        grid_1d(n as u64, WORKGROUP_1D),
    );
    let shape = [p.n, p.c, p.h, p.w].map(|d| d as usize);
    Ok(Tensor::from_storage(col.gpu(), out, shape.into()))
}

/// `m (N*P, O)` -> `(N, O, P)` reshaped to `shape`, plus `bias[o]`.
fn rows_to_nchw(
    m: &Tensor,
    bias: Option<&Tensor>,
    n: usize,
    o: usize,
    p: usize,
    shape: Shape,
) -> Result<Tensor> {
    let out = Tensor::alloc(m.gpu(), "rows_to_nchw", n * o * p)?;
    let params = LayoutParams {
        n: n as u32,
        o: o as u32,
        p: p as u32,
        has_bias: bias.is_some() as u32,
    };
    let bias_storage: &Storage = bias.map_or(m.storage(), |b| b.storage());
    Kernel::RowsToNchw.dispatch(
        m.gpu(),
        &[m.storage(), bias_storage, &out],
        &params,
        grid_1d((n * o * p) as u64, WORKGROUP_1D),
    );
    Ok(Tensor::from_storage(m.gpu(), out, shape))
}

/// `(N, O, P)` -> rows `(N*P, O)`.
fn nchw_to_rows(y: &Tensor, n: usize, o: usize, p: usize) -> Result<Tensor> {
    let out = Tensor::alloc(y.gpu(), "nchw_to_rows", n * o * p)?;
    let params = LayoutParams {
        n: n as u32,
        o: o as u32,
        p: p as u32,
        has_bias: 0,
    };
    Kernel::NchwToRows.dispatch(
        y.gpu(),
        &[y.storage(), &out],
        &params,
        grid_1d((n * o * p) as u64, WORKGROUP_1D),
    );
    Ok(Tensor::from_storage(y.gpu(), out, [n * p, o].into()))
}

// ---- The same four layout kernels as recorded ops -------------------------------------
// For the backward rules run with recording on (a gradient of a gradient, e.g. a gradient
// penalty through a convolutional critic): each is linear, and its backward is its adjoint,
// itself one of the four (im2col <-> col2im, nchw_to_rows <-> rows_to_nchw), so they are
// differentiable to any order.

/// [`im2col`] recorded: its backward folds the gradient back with [`col2im`].
fn im2col_op(x: &Tensor, p: ConvParams) -> Result<Tensor> {
    let col = im2col(x, p)?;
    let backward = Box::new(
        move |dcol: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(col2im_op(dcol, p)?)])
        },
    );
    Ok(Tensor::record_op(&col, &[x], backward))
}

/// [`col2im`] without bias, recorded: its backward unfolds the gradient with [`im2col`].
fn col2im_op(col: &Tensor, p: ConvParams) -> Result<Tensor> {
    let x = col2im(col, p, None)?;
    let backward = Box::new(
        move |dx: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(im2col_op(dx, p)?)])
        },
    );
    Ok(Tensor::record_op(&x, &[col], backward))
}

/// [`nchw_to_rows`] recorded: `(N, O, P)` -> `(N*P, O)`; its backward is the inverse permutation.
fn nchw_to_rows_op(y: &Tensor, n: usize, o: usize, p: usize) -> Result<Tensor> {
    let m = nchw_to_rows(y, n, o, p)?;
    let shape = y.shape().clone();
    let backward = Box::new(
        move |dm: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(rows_to_nchw_op(dm, n, o, p, shape.clone())?)])
        },
    );
    Ok(Tensor::record_op(&m, &[y], backward))
}

/// [`rows_to_nchw`] without bias, recorded: `(N*P, O)` -> `(N, O, P)` viewed as `shape`.
fn rows_to_nchw_op(m: &Tensor, n: usize, o: usize, p: usize, shape: Shape) -> Result<Tensor> {
    let y = rows_to_nchw(m, None, n, o, p, shape)?;
    let backward = Box::new(
        move |dy: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(nchw_to_rows_op(dy, n, o, p)?)])
        },
    );
    Ok(Tensor::record_op(&y, &[m], backward))
}

fn dims4(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 4]> {
    t.dims()
        .try_into()
        .map_err(|_| Error::shape(op, format!("{what} must be 4-D (NCHW), got {}", t.shape())))
}

fn check_options(op: &'static str, opt: &Conv2dOptions) -> Result<()> {
    if opt.stride.contains(&0) || opt.dilation.contains(&0) {
        return Err(Error::shape(
            op,
            format!(
                "stride {:?} and dilation {:?} must be >= 1",
                opt.stride, opt.dilation
            ),
        ));
    }
    Ok(())
}

fn check_bias(op: &'static str, bias: Option<&Tensor>, channels: usize) -> Result<()> {
    if let Some(b) = bias
        && b.dims() != [channels]
    {
        return Err(Error::shape(
            op,
            format!("bias {} must be ({channels},)", b.shape()),
        ));
    }
    Ok(())
}

/// Output size of a convolution along one axis (PyTorch's formula), if at least 1.
fn conv_out(input: usize, kernel: usize, stride: usize, pad: usize, dil: usize) -> Option<usize> {
    let span = dil * (kernel - 1) + 1;
    (input + 2 * pad).checked_sub(span).map(|v| v / stride + 1)
}

/// Checks conv2d's shapes and options and returns its geometry and output channels.
///
/// Errors: as [`conv2d`].
fn conv2d_geometry(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    opt: &Conv2dOptions,
) -> Result<(ConvParams, usize)> {
    const OP: &str = "conv2d";
    check_options(OP, opt)?;
    let [n, c, h, w] = dims4(OP, "input", x)?;
    let [o, wc, kh, kw] = dims4(OP, "weight", weight)?;
    if wc != c || kh == 0 || kw == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "input {} has {c} channels; weight {} must be (out_channels, {c}, KH, KW)",
                x.shape(),
                weight.shape()
            ),
        ));
    }
    check_bias(OP, bias, o)?;
    let (Some(oh), Some(ow)) = (
        conv_out(h, kh, opt.stride[0], opt.padding[0], opt.dilation[0]),
        conv_out(w, kw, opt.stride[1], opt.padding[1], opt.dilation[1]),
    ) else {
        return Err(Error::shape(
            OP,
            format!(
                "kernel {kh}x{kw} (dilation {:?}) is larger than the padded input {}",
                opt.dilation,
                x.shape()
            ),
        ));
    };
    Ok((conv_params([n, c, h, w], [kh, kw], [oh, ow], opt), o))
}

/// One product of the convolution `geom` (x (N, C, H, W) -> y (N, O, OH, OW), `o` = O), off
/// the tape, by `alg`:
///
/// | which | from | result |
/// | --- | --- | --- |
/// | Forward | `x`, `weight` (O, C, KH, KW), `bias` (O,) | y (N, O, OH, OW) |
/// | Dx | `dy` (N, O, OH, OW), `weight`, `bias` (C,) | dx (N, C, H, W) |
/// | Dw | `dy`, `x` | dw (O, C, KH, KW) |
///
/// The im2col path reuses `col` (im2col(x)) and `dy_rows` (`dy` as rows (N OH OW, O)) when
/// given. conv_transpose2d is the same three products with the roles swapped (see there).
#[allow(clippy::too_many_arguments)]
fn conv_product(
    alg: ConvAlgorithm,
    which: ConvProduct,
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    bias: Option<&Tensor>,
    geom: ConvParams,
    o: usize,
    (col, dy_rows): (Option<&Tensor>, Option<&Tensor>),
) -> Result<Tensor> {
    if alg == ConvAlgorithm::Implicit {
        return match which {
            ConvProduct::Forward => implicit(which, x, weight, bias, geom, o),
            ConvProduct::Dx => implicit(which, dy, weight, bias, geom, o),
            ConvProduct::Dw => implicit(which, dy, x, None, geom, o),
        };
    }
    let [n, c, kh, kw, oh, ow] =
        [geom.n, geom.c, geom.kh, geom.kw, geom.oh, geom.ow].map(|d| d as usize);
    let p = oh * ow;
    let w_flat = weight.detach().reshape([o, c * kh * kw])?;
    let col = || match col {
        Some(col) => Ok(col.clone()),
        None => im2col(x, geom),
    };
    let dy_rows = || match dy_rows {
        Some(m) => Ok(m.clone()),
        None => nchw_to_rows(dy, n, o, p),
    };
    match which {
        ConvProduct::Forward => {
            let m = col()?.matmul_nt(&w_flat)?;
            rows_to_nchw(&m, bias, n, o, p, [n, o, oh, ow].into())
        }
        ConvProduct::Dx => col2im(&dy_rows()?.matmul(&w_flat)?, geom, bias),
        ConvProduct::Dw => dy_rows()?.matmul_tn(&col()?)?.reshape([o, c, kh, kw]),
    }
}

/// The algorithm for product `which` of the convolution `geom` (see [`conv_product`]), tuned
/// on these operands if need be.
#[allow(clippy::too_many_arguments)]
fn algorithm_for(
    which: ConvProduct,
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    bias: Option<&Tensor>,
    geom: ConvParams,
    o: usize,
) -> ConvAlgorithm {
    choose_algorithm(x.gpu(), which, geom, o, |alg, g| {
        conv_product(alg, which, x, weight, dy, bias, g, o, (None, None)).map(|_| ())
    })
}

/// 2-D convolution (cross-correlation, as `torch.nn.functional.conv2d`).
///
/// Shapes: `x (N, C, H, W)`, `weight (O, C, KH, KW)`, `bias (O,)` ->
/// `(N, O, OH, OW)` with `OH = (H + 2 padding - dilation (KH - 1) - 1) / stride + 1`.
///
/// Errors: [`Error::Shape`] naming the shapes if they are not 4-D, the channels
/// differ, the bias is not `(O,)`, stride or dilation is 0, or the output would be empty.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    opt: Conv2dOptions,
) -> Result<Tensor> {
    let (geom, o) = conv2d_geometry(x, weight, bias, &opt)?;
    let [n, c, kh, kw, oh, ow] =
        [geom.n, geom.c, geom.kh, geom.kw, geom.oh, geom.ow].map(|d| d as usize);
    let p = oh * ow;
    let (col, w_flat, y) = {
        let _no_grad = no_grad();
        let w_flat = weight.detach().reshape([o, c * kh * kw])?;
        let alg = algorithm_for(ConvProduct::Forward, x, &w_flat, x, bias, geom, o);
        let col = match alg {
            ConvAlgorithm::Im2col => Some(im2col(x, geom)?),
            ConvAlgorithm::Implicit => None,
        };
        let y = conv_product(
            alg,
            ConvProduct::Forward,
            x,
            &w_flat,
            x,
            bias,
            geom,
            o,
            (col.as_ref(), None),
        )?;
        (col, w_flat, y)
    };
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    let has_bias = bias.is_some();
    let x_shape = x.shape().clone();
    let (sx, sw) = (x.clone(), weight.clone());
    let backward = Box::new(
        move |dy: &Tensor, wanted: &[bool]| -> Result<Vec<Option<Tensor>>> {
            if crate::autograd::is_grad_enabled() {
                // Recording (a gradient of a gradient): the same algebra in recorded ops, from the
                // attached input and weight; im2col(x) is unfolded again, since the forward's copy
                // was made off the tape.
                let dy_m = nchw_to_rows_op(dy, n, o, p)?;
                let dx = if wanted[0] {
                    let w_m = sw.reshape([o, c * kh * kw])?;
                    Some(col2im_op(&dy_m.matmul(&w_m)?, geom)?.reshape(x_shape.clone())?)
                } else {
                    None
                };
                let dw = if wanted[1] {
                    Some(
                        dy_m.matmul_tn(&im2col_op(&sx, geom)?)?
                            .reshape([o, c, kh, kw])?,
                    )
                } else {
                    None
                };
                let mut grads = vec![dx, dw];
                if has_bias {
                    grads.push(if wanted[2] {
                        Some(dy_m.sum_axis(0)?)
                    } else {
                        None
                    });
                }
                return Ok(grads);
            }
            // (An unwanted product's entry is never used.)
            let algs = [(ConvProduct::Dx, wanted[0]), (ConvProduct::Dw, wanted[1])].map(
                |(which, want)| {
                    if want {
                        algorithm_for(which, &sx, &w_flat, dy, None, geom, o)
                    } else {
                        ConvAlgorithm::Implicit
                    }
                },
            );
            // dy as rows, shared by the im2col path's products and the bias gradient.
            let dy_m = if has_bias || algs.contains(&ConvAlgorithm::Im2col) {
                Some(nchw_to_rows(dy, n, o, p)?)
            } else {
                None
            };
            let product = |i: usize, which: ConvProduct| {
                conv_product(
                    algs[i],
                    which,
                    &sx,
                    &w_flat,
                    dy,
                    None,
                    geom,
                    o,
                    (col.as_ref(), dy_m.as_ref()),
                )
            };
            let dx = if wanted[0] {
                Some(product(0, ConvProduct::Dx)?.reshape(x_shape.clone())?)
            } else {
                None
            };
            let dw = if wanted[1] {
                Some(product(1, ConvProduct::Dw)?)
            } else {
                None
            };
            let mut grads = vec![dx, dw];
            if let Some(dy_m) = dy_m.as_ref().filter(|_| has_bias) {
                grads.push(if wanted[2] {
                    Some(dy_m.sum_axis(0)?)
                } else {
                    None
                });
            }
            Ok(grads)
        },
    );
    Ok(Tensor::record_op(&y, &inputs, backward))
}

/// 2-D transposed convolution (`torch.nn.functional.conv_transpose2d`): the gradient
/// of conv2d with respect to its input, used to upsample in generators and decoders.
///
/// Shapes: `x (N, C_in, H, W)`, `weight (C_in, C_out, KH, KW)` (PyTorch's layout),
/// `bias (C_out,)` -> `(N, C_out, OH, OW)` with
/// `OH = (H - 1) stride - 2 padding + dilation (KH - 1) + output_padding + 1`.
///
/// As products of the convolution `geom` from y (N, C_out, OH, OW) to x (N, C_in, H, W)
/// (weight (C_in, C_out, KH, KW) is that convolution's weight): forward = its Dx (with the
/// bias), dx = its Forward of dy, dw = its Dw with dy and x in swapped roles.
///
/// Errors: [`Error::Shape`] if the shapes do not fit, stride or dilation is 0,
/// `output_padding` is not smaller than the stride or the dilation (PyTorch's rule),
/// or the output would be empty.
pub fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    opt: Conv2dOptions,
    output_padding: [usize; 2],
) -> Result<Tensor> {
    const OP: &str = "conv_transpose2d";
    check_options(OP, &opt)?;
    let [n, cin, h, w] = dims4(OP, "input", x)?;
    let [wcin, cout, kh, kw] = dims4(OP, "weight", weight)?;
    if wcin != cin || kh == 0 || kw == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "input {} has {cin} channels; weight {} must be ({cin}, out_channels, KH, KW)",
                x.shape(),
                weight.shape()
            ),
        ));
    }
    check_bias(OP, bias, cout)?;
    for a in 0..2 {
        if output_padding[a] >= opt.stride[a].max(opt.dilation[a]) {
            return Err(Error::shape(
                OP,
                format!(
                    "output_padding {output_padding:?} must be smaller than stride {:?} or dilation {:?}",
                    opt.stride, opt.dilation
                ),
            ));
        }
    }
    let out_size = |i: usize, k: usize, a: usize| -> Option<usize> {
        ((i - 1) * opt.stride[a] + opt.dilation[a] * (k - 1) + output_padding[a] + 1)
            .checked_sub(2 * opt.padding[a])
            .filter(|&v| v > 0)
    };
    let (Some(oh), Some(ow)) = (out_size(h, kh, 0), out_size(w, kw, 1)) else {
        return Err(Error::shape(
            OP,
            format!(
                "padding {:?} leaves no output for input {}",
                opt.padding,
                x.shape()
            ),
        ));
    };
    // The convolution this op is the transpose of: from y (N, C_out, OH, OW) to x (N, C_in, H, W).
    let geom = conv_params([n, cout, oh, ow], [kh, kw], [h, w], &opt);
    let p = h * w;
    let (x_m, w_flat, y) = {
        let _no_grad = no_grad();
        let w_flat = weight.detach().reshape([cin, cout * kh * kw])?;
        // Forward: the convolution's Dx of x (dy's role); its x is not read.
        let alg = algorithm_for(ConvProduct::Dx, x, &w_flat, x, bias, geom, cin);
        let x_m = match alg {
            ConvAlgorithm::Im2col => Some(nchw_to_rows(x, n, cin, p)?),
            ConvAlgorithm::Implicit => None,
        };
        let y = conv_product(
            alg,
            ConvProduct::Dx,
            x,
            &w_flat,
            x,
            bias,
            geom,
            cin,
            (None, x_m.as_ref()),
        )?;
        (x_m, w_flat, y)
    };
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    let has_bias = bias.is_some();
    let x_shape = x.shape().clone();
    let (sx, sw) = (x.clone(), weight.clone());
    let backward = Box::new(
        move |dy: &Tensor, wanted: &[bool]| -> Result<Vec<Option<Tensor>>> {
            let recording = crate::autograd::is_grad_enabled();
            let (dx, dw) = if recording {
                // Recording (a gradient of a gradient): the same algebra in recorded ops, from
                // the attached input and weight.
                let dcol = im2col_op(dy, geom)?;
                let dx = if wanted[0] {
                    let w_m = sw.reshape([cin, cout * kh * kw])?;
                    Some(rows_to_nchw_op(
                        &dcol.matmul_nt(&w_m)?,
                        n,
                        cin,
                        p,
                        x_shape.clone(),
                    )?)
                } else {
                    None
                };
                let dw = if wanted[1] {
                    let x_rows = nchw_to_rows_op(&sx, n, cin, p)?;
                    Some(x_rows.matmul_tn(&dcol)?.reshape([cin, cout, kh, kw])?)
                } else {
                    None
                };
                (dx, dw)
            } else {
                // dx: the convolution's Forward of dy (x's role); dw: its Dw of (x, dy) in
                // (dy, x)'s roles.
                // (An unwanted product's entry is never used.)
                let algs = [
                    (ConvProduct::Forward, wanted[0]),
                    (ConvProduct::Dw, wanted[1]),
                ]
                .map(|(which, want)| {
                    if want {
                        algorithm_for(which, dy, &w_flat, &sx, None, geom, cin)
                    } else {
                        ConvAlgorithm::Implicit
                    }
                });
                let dcol = if algs.contains(&ConvAlgorithm::Im2col) {
                    Some(im2col(dy, geom)?)
                } else {
                    None
                };
                let dx = if wanted[0] {
                    Some(
                        conv_product(
                            algs[0],
                            ConvProduct::Forward,
                            dy,
                            &w_flat,
                            &sx,
                            None,
                            geom,
                            cin,
                            (dcol.as_ref(), None),
                        )?
                        .reshape(x_shape.clone())?,
                    )
                } else {
                    None
                };
                let dw = if wanted[1] {
                    Some(conv_product(
                        algs[1],
                        ConvProduct::Dw,
                        dy,
                        &w_flat,
                        &sx,
                        None,
                        geom,
                        cin,
                        (dcol.as_ref(), x_m.as_ref()),
                    )?)
                } else {
                    None
                };
                (dx, dw)
            };
            let mut grads = vec![dx, dw];
            if has_bias && wanted[2] {
                grads.push(Some(
                    dy.reshape([n, cout, oh * ow])?.sum_axis(2)?.sum_axis(0)?,
                ));
            } else if has_bias {
                grads.push(None);
            }
            Ok(grads)
        },
    );
    Ok(Tensor::record_op(&y, &inputs, backward))
}

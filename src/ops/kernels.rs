//! The kernel table: every compute kernel of deepgen, its shader file, entry point, binding
//! signature and per-adapter tuning, and the WGSL each shader file is built from.
//!
//! [`Kernel`] is the one place that names a WGSL entry point. The GPU layer sees a kernel only
//! as a [`KernelDesc`] (module, source, entry, bindings) and a list of override constants; what
//! it computes, and the constants it is tuned with, are known here.
//!
//! Op codes have one definition, the Rust enums ([`ActivationKind`], [`Binary`]): the WGSL of
//! the files that switch on them starts with constants generated from those enums
//! (`const ACT_RELU: u32 = 1u;`, ...) and then `shaders/activation.wgsl`, the activation
//! functions shared by the element-wise kernels and the matmul epilogues. [`ShaderFile::source`]
//! is exactly what the pipeline compiles and what `tests/shaders.rs` validates.

use std::fmt::Write;
use std::sync::OnceLock;

use strum::VariantArray;

use crate::gpu::{Bindings, Capabilities, Gpu, KernelDesc, Storage, Texture};
use crate::ops::elementwise::{ActivationKind, Binary};

/// Invocations per workgroup of the one-dimensional kernels (element-wise, losses' backwards,
/// ...): their `@workgroup_size(256)`.
pub const WORKGROUP_1D: u32 = 256;

/// A WGSL source file in `shaders/`, compiled into one shader module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, VariantArray)]
pub enum ShaderFile {
    /// `shaders/matmul.wgsl`
    Matmul,
    /// `shaders/elementwise.wgsl`
    Elementwise,
    /// `shaders/reduce.wgsl`
    Reduce,
    /// `shaders/random.wgsl`
    Random,
    /// `shaders/vae.wgsl`
    Vae,
    /// `shaders/loss.wgsl`
    Loss,
    /// `shaders/adam.wgsl`
    Adam,
    /// `shaders/conv.wgsl`
    Conv,
    /// `shaders/norm.wgsl`
    Norm,
    /// `shaders/matmul_texture.wgsl` (needs 8-lane subgroups; compiled only where available)
    MatmulTexture,
    /// `shaders/concat.wgsl`
    Concat,
    /// `shaders/pair_loss.wgsl`
    PairLoss,
    /// `shaders/instance_norm.wgsl`
    InstanceNorm,
    /// `shaders/matmul_naive.wgsl` (matmul v1)
    MatmulNaive,
    /// `shaders/matmul_tiled.wgsl` (matmul v3)
    MatmulTiled,
    /// `shaders/matmul_subgroup.wgsl` (matmul v4; needs subgroups of a fixed size)
    MatmulSubgroup,
    /// `shaders/conv_implicit.wgsl` (convolution as implicit GEMM on v3's tiling)
    ConvImplicit,
}

/// `shaders/activation.wgsl`: the activation functions, prepended to the files that use them.
pub const ACTIVATION_WGSL: &str = include_str!("../../shaders/activation.wgsl");

impl ShaderFile {
    /// File name under `shaders/`.
    pub fn name(self) -> &'static str {
        match self {
            ShaderFile::Matmul => "matmul.wgsl",
            ShaderFile::Elementwise => "elementwise.wgsl",
            ShaderFile::Reduce => "reduce.wgsl",
            ShaderFile::Random => "random.wgsl",
            ShaderFile::Vae => "vae.wgsl",
            ShaderFile::Loss => "loss.wgsl",
            ShaderFile::Adam => "adam.wgsl",
            ShaderFile::Conv => "conv.wgsl",
            ShaderFile::Norm => "norm.wgsl",
            ShaderFile::MatmulTexture => "matmul_texture.wgsl",
            ShaderFile::Concat => "concat.wgsl",
            ShaderFile::PairLoss => "pair_loss.wgsl",
            ShaderFile::InstanceNorm => "instance_norm.wgsl",
            ShaderFile::MatmulNaive => "matmul_naive.wgsl",
            ShaderFile::MatmulTiled => "matmul_tiled.wgsl",
            ShaderFile::MatmulSubgroup => "matmul_subgroup.wgsl",
            ShaderFile::ConvImplicit => "conv_implicit.wgsl",
        }
    }

    /// The file as written, embedded at compile time.
    pub fn text(self) -> &'static str {
        match self {
            ShaderFile::Matmul => include_str!("../../shaders/matmul.wgsl"),
            ShaderFile::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            ShaderFile::Reduce => include_str!("../../shaders/reduce.wgsl"),
            ShaderFile::Random => include_str!("../../shaders/random.wgsl"),
            ShaderFile::Vae => include_str!("../../shaders/vae.wgsl"),
            ShaderFile::Loss => include_str!("../../shaders/loss.wgsl"),
            ShaderFile::Adam => include_str!("../../shaders/adam.wgsl"),
            ShaderFile::Conv => include_str!("../../shaders/conv.wgsl"),
            ShaderFile::Norm => include_str!("../../shaders/norm.wgsl"),
            ShaderFile::MatmulTexture => include_str!("../../shaders/matmul_texture.wgsl"),
            ShaderFile::Concat => include_str!("../../shaders/concat.wgsl"),
            ShaderFile::PairLoss => include_str!("../../shaders/pair_loss.wgsl"),
            ShaderFile::InstanceNorm => include_str!("../../shaders/instance_norm.wgsl"),
            ShaderFile::MatmulNaive => include_str!("../../shaders/matmul_naive.wgsl"),
            ShaderFile::MatmulTiled => include_str!("../../shaders/matmul_tiled.wgsl"),
            ShaderFile::MatmulSubgroup => include_str!("../../shaders/matmul_subgroup.wgsl"),
            ShaderFile::ConvImplicit => include_str!("../../shaders/conv_implicit.wgsl"),
        }
    }

    /// Whether the file switches on op codes: then [`op_prelude`] is prepended to it.
    pub fn uses_op_codes(self) -> bool {
        matches!(
            self,
            ShaderFile::Elementwise
                | ShaderFile::Matmul
                | ShaderFile::MatmulTexture
                | ShaderFile::MatmulNaive
                | ShaderFile::MatmulTiled
                | ShaderFile::MatmulSubgroup
        )
    }

    /// The WGSL the pipeline compiles: [`op_prelude`] then the file where
    /// [`ShaderFile::uses_op_codes`], the file alone otherwise. Built once per process.
    pub fn source(self) -> &'static str {
        const FILES: usize = ShaderFile::VARIANTS.len();
        static BUILT: [OnceLock<String>; FILES] = [const { OnceLock::new() }; FILES];
        if !self.uses_op_codes() {
            return self.text();
        }
        BUILT[self as usize].get_or_init(|| format!("{}\n{}", op_prelude(), self.text()))
    }
}

/// The WGSL prepended to the files that use op codes: a `const` per activation
/// (`ACT_<NAME>`) and per binary op (`BIN_<NAME>`), each equal to the Rust enum's code, then
/// `shaders/activation.wgsl`.
pub fn op_prelude() -> String {
    let mut s = String::from(
        "// Generated by src/ops/kernels.rs (op_prelude) from the Rust enums ActivationKind and\n\
         // Binary: the op codes, then shaders/activation.wgsl.\n",
    );
    for &kind in ActivationKind::VARIANTS {
        let name: &str = kind.into();
        writeln!(s, "const ACT_{name}: u32 = {}u;", kind as u32).expect("write to String");
    }
    for &op in Binary::VARIANTS {
        let name: &str = op.into();
        writeln!(s, "const BIN_{name}: u32 = {}u;", op as u32).expect("write to String");
    }
    s.push('\n');
    s.push_str(ACTIVATION_WGSL);
    s
}

/// Every compute kernel of deepgen. See [`Kernel::spec`] for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, VariantArray)]
#[allow(missing_docs)]
pub enum Kernel {
    MatmulNN,
    MatmulNT,
    MatmulTN,
    MatmulTextureNN,
    MatmulTextureNT,
    MatmulTextureTN,
    MatmulNaiveNN,
    MatmulNaiveNT,
    MatmulNaiveTN,
    MatmulTiledNN,
    MatmulTiledNT,
    MatmulTiledTN,
    MatmulSubgroupNN,
    MatmulSubgroupNT,
    MatmulSubgroupTN,
    ConvImplicitForward,
    ConvImplicitDx,
    ConvImplicitDw,
    UnaryForward,
    UnaryBackward,
    BinaryForward,
    BinaryBackward,
    Fill,
    RepeatRows,
    ReduceSum,
    ReduceSumRows,
    ReduceBackward,
    Randn,
    Dropout,
    Bernoulli,
    ReparameterizeForward,
    ReparameterizeBackward,
    KlDivergenceForward,
    KlDivergenceBackward,
    VaeSampleForward,
    VaeSampleBackward,
    BceWithLogitsForward,
    BceWithLogitsForwardGrad,
    BceWithLogitsBackward,
    MseForward,
    MseBackward,
    SoftmaxCrossEntropyForward,
    SoftmaxCrossEntropyBackward,
    AdamStep,
    Im2col,
    Im2colKw4,
    Col2im,
    RowsToNchw,
    NchwToRows,
    BatchNormStats,
    BatchNormForward,
    BatchNormBackwardReduce,
    BatchNormBackwardDx,
    ConcatChannels,
    NarrowChannels,
    PadChannels,
    L1Forward,
    L1Backward,
    LeastSquaresForward,
    LeastSquaresBackward,
    InstanceNormStats,
    InstanceNormForward,
    InstanceNormBackwardReduce,
    InstanceNormBackwardAffine,
    InstanceNormBackwardDx,
}

/// An override constant a kernel is compiled with, set per adapter from its capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// `ROW_WG`, invocations per workgroup of a row reduction: [`row_workgroup`].
    RowWorkgroup,
    /// `WG`, the side of the generic matmul's square workgroup: [`matmul_workgroup`].
    MatmulWorkgroup,
    /// `TILE_THREADS`, invocations per workgroup of the workgroup-tiled kernels (matmul v3,
    /// implicit-GEMM convolution): `(BM / 4) (BN / 4)` of [`tiled_tile`].
    TileThreads,
    /// `SG`, the adapter's subgroup size, the workgroup of matmul v4: [`subgroup_size`].
    SubgroupSize,
}

impl Tuning {
    /// The name of the WGSL `override` it sets.
    pub fn name(self) -> &'static str {
        match self {
            Tuning::RowWorkgroup => "ROW_WG",
            Tuning::MatmulWorkgroup => "WG",
            Tuning::TileThreads => "TILE_THREADS",
            Tuning::SubgroupSize => "SG",
        }
    }

    /// The constant's name and its value on an adapter with `caps`.
    pub fn constant(self, caps: &Capabilities) -> (&'static str, f64) {
        let value = match self {
            Tuning::RowWorkgroup => row_workgroup(caps),
            Tuning::MatmulWorkgroup => matmul_workgroup(caps),
            Tuning::TileThreads => tiled_tile(caps).threads(),
            Tuning::SubgroupSize => subgroup_size(caps),
        };
        (self.name(), value as f64)
    }
}

/// Invocations per workgroup of the reduction kernels (the `ROW_WG` override constant of
/// loss.wgsl, reduce.wgsl and norm.wgsl): one subgroup on CPU adapters, where every barrier
/// is a context switch per subgroup; 64 elsewhere. A power of two (the reductions halve it),
/// at least 8.
pub fn row_workgroup(caps: &Capabilities) -> u32 {
    if caps.device_type == wgpu::DeviceType::Cpu {
        caps.subgroup_max_size.clamp(8, 64).next_power_of_two()
    } else {
        64
    }
}

/// Side of the square workgroup of the generic matmul (`WG` in matmul.wgsl): 8 on CPU
/// adapters, 16 elsewhere; each invocation computes a 4 x 4 block of C.
pub fn matmul_workgroup(caps: &Capabilities) -> u32 {
    if caps.device_type == wgpu::DeviceType::Cpu {
        8
    } else {
        16
    }
}

/// The block sizes of the workgroup-tiled kernels (matmul v3 in `shaders/matmul_tiled.wgsl`,
/// `shaders/conv_implicit.wgsl`): a `bm x bn` block of C per workgroup, `bk`-deep slices of the
/// operands staged in workgroup memory, a 4 x 4 register tile per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Rows of C per workgroup (a multiple of 4).
    pub bm: u32,
    /// Columns of C per workgroup (a multiple of 4).
    pub bn: u32,
    /// Depth of a staged slice of the contracted dimension (a multiple of 4).
    pub bk: u32,
}

impl Tile {
    /// Invocations per workgroup: one per 4 x 4 register tile.
    pub fn threads(self) -> u32 {
        (self.bm / 4) * (self.bn / 4)
    }

    /// The override constants `BM`, `BN`, `BK` (the workgroup size, `TILE_THREADS`, is the
    /// kernel's [`Tuning::TileThreads`]).
    pub fn constants(self) -> [(&'static str, f64); 3] {
        [
            ("BM", self.bm as f64),
            ("BN", self.bn as f64),
            ("BK", self.bk as f64),
        ]
    }
}

/// The tile of the workgroup-tiled kernels on an adapter: 32 x 32 x 16 (64 invocations) on CPU
/// adapters, where every barrier costs a context switch per subgroup; 64 x 64 x 16 (256
/// invocations, 8 KiB of workgroup memory) elsewhere.
pub fn tiled_tile(caps: &Capabilities) -> Tile {
    if caps.device_type == wgpu::DeviceType::Cpu {
        Tile {
            bm: 32,
            bn: 32,
            bk: 16,
        }
    } else {
        Tile {
            bm: 64,
            bn: 64,
            bk: 16,
        }
    }
}

/// The subgroup size matmul v4 is compiled for (`SG`): the adapter's, where it is fixed
/// (`subgroup_min_size == subgroup_max_size`; v4 runs only there), else its largest.
pub fn subgroup_size(caps: &Capabilities) -> u32 {
    caps.subgroup_max_size.max(1)
}

/// Where a kernel lives, what it binds, and how it is tuned.
#[derive(Clone, Copy, Debug)]
pub struct KernelSpec {
    /// The shader file.
    pub file: ShaderFile,
    /// The `@compute` entry point in that file.
    pub entry: &'static str,
    /// Number of read-only bindings (0..inputs): textures first, then buffers.
    pub inputs: u32,
    /// Number of `var<storage, read_write>` bindings that follow them.
    pub outputs: u32,
    /// How many of the inputs (the first ones) are read-only `rgba32float` storage textures.
    pub texture_inputs: u32,
    /// The per-adapter override constant it is compiled with, if any.
    pub tuning: Option<Tuning>,
}

impl Kernel {
    /// The kernel table: file, entry point, (read inputs, read_write outputs), tuning.
    pub const fn spec(self) -> KernelSpec {
        use Kernel::*;
        use ShaderFile as F;
        use Tuning::*;
        let (file, entry, inputs, outputs, tuning) = match self {
            MatmulNN => (F::Matmul, "matmul_nn", 3, 1, Some(MatmulWorkgroup)),
            MatmulNT => (F::Matmul, "matmul_nt", 3, 1, Some(MatmulWorkgroup)),
            MatmulTN => (F::Matmul, "matmul_tn", 3, 1, Some(MatmulWorkgroup)),
            MatmulTextureNN => (F::MatmulTexture, "matmul_texture_nn", 3, 1, None),
            MatmulTextureNT => (F::MatmulTexture, "matmul_texture_nt", 3, 1, None),
            MatmulTextureTN => (F::MatmulTexture, "matmul_texture_tn", 3, 1, None),
            MatmulNaiveNN => (
                F::MatmulNaive,
                "matmul_naive_nn",
                3,
                1,
                Some(MatmulWorkgroup),
            ),
            MatmulNaiveNT => (
                F::MatmulNaive,
                "matmul_naive_nt",
                3,
                1,
                Some(MatmulWorkgroup),
            ),
            MatmulNaiveTN => (
                F::MatmulNaive,
                "matmul_naive_tn",
                3,
                1,
                Some(MatmulWorkgroup),
            ),
            MatmulTiledNN => (F::MatmulTiled, "matmul_tiled_nn", 3, 1, Some(TileThreads)),
            MatmulTiledNT => (F::MatmulTiled, "matmul_tiled_nt", 3, 1, Some(TileThreads)),
            MatmulTiledTN => (F::MatmulTiled, "matmul_tiled_tn", 3, 1, Some(TileThreads)),
            MatmulSubgroupNN => (
                F::MatmulSubgroup,
                "matmul_subgroup_nn",
                3,
                1,
                Some(SubgroupSize),
            ),
            MatmulSubgroupNT => (
                F::MatmulSubgroup,
                "matmul_subgroup_nt",
                3,
                1,
                Some(SubgroupSize),
            ),
            MatmulSubgroupTN => (
                F::MatmulSubgroup,
                "matmul_subgroup_tn",
                3,
                1,
                Some(SubgroupSize),
            ),
            ConvImplicitForward => (
                F::ConvImplicit,
                "conv_implicit_forward",
                3,
                1,
                Some(TileThreads),
            ),
            ConvImplicitDx => (F::ConvImplicit, "conv_implicit_dx", 3, 1, Some(TileThreads)),
            ConvImplicitDw => (F::ConvImplicit, "conv_implicit_dw", 3, 1, Some(TileThreads)),
            UnaryForward => (F::Elementwise, "unary_forward", 1, 1, None),
            UnaryBackward => (F::Elementwise, "unary_backward", 3, 1, None),
            BinaryForward => (F::Elementwise, "binary_forward", 2, 1, None),
            BinaryBackward => (F::Elementwise, "binary_backward", 3, 2, None),
            Fill => (F::Elementwise, "fill", 0, 1, None),
            RepeatRows => (F::Elementwise, "repeat_rows", 1, 1, None),
            ReduceSum => (F::Reduce, "reduce_sum", 1, 1, None),
            ReduceSumRows => (F::Reduce, "reduce_sum_rows", 1, 1, Some(RowWorkgroup)),
            ReduceBackward => (F::Reduce, "reduce_backward", 1, 1, None),
            Randn => (F::Random, "randn", 0, 1, None),
            Dropout => (F::Random, "dropout", 1, 2, None),
            Bernoulli => (F::Random, "bernoulli", 1, 1, None),
            ReparameterizeForward => (F::Vae, "reparameterize_forward", 3, 1, None),
            ReparameterizeBackward => (F::Vae, "reparameterize_backward", 3, 1, None),
            KlDivergenceForward => (F::Vae, "kl_divergence_forward", 2, 1, None),
            KlDivergenceBackward => (F::Vae, "kl_divergence_backward", 3, 2, None),
            VaeSampleForward => (F::Vae, "vae_sample_forward", 3, 2, None),
            VaeSampleBackward => (F::Vae, "vae_sample_backward", 5, 2, None),
            BceWithLogitsForward => (F::Loss, "bce_with_logits_forward", 2, 1, Some(RowWorkgroup)),
            BceWithLogitsForwardGrad => (
                F::Loss,
                "bce_with_logits_forward_grad",
                2,
                2,
                Some(RowWorkgroup),
            ),
            BceWithLogitsBackward => (F::Loss, "bce_with_logits_backward", 2, 1, None),
            MseForward => (F::Loss, "mse_forward", 2, 1, Some(RowWorkgroup)),
            MseBackward => (F::Loss, "mse_backward", 3, 1, None),
            SoftmaxCrossEntropyForward => (
                F::Loss,
                "softmax_cross_entropy_forward",
                2,
                2,
                Some(RowWorkgroup),
            ),
            SoftmaxCrossEntropyBackward => (F::Loss, "softmax_cross_entropy_backward", 4, 1, None),
            AdamStep => (F::Adam, "adam_step", 1, 3, None),
            Im2col => (F::Conv, "im2col", 1, 1, None),
            Im2colKw4 => (F::Conv, "im2col_kw4", 1, 1, None),
            Col2im => (F::Conv, "col2im", 2, 1, None),
            RowsToNchw => (F::Conv, "rows_to_nchw", 2, 1, None),
            NchwToRows => (F::Conv, "nchw_to_rows", 1, 1, None),
            BatchNormStats => (F::Norm, "batch_norm_stats", 1, 4, Some(RowWorkgroup)),
            BatchNormForward => (F::Norm, "batch_norm_forward", 5, 1, None),
            BatchNormBackwardReduce => (
                F::Norm,
                "batch_norm_backward_reduce",
                4,
                2,
                Some(RowWorkgroup),
            ),
            BatchNormBackwardDx => (F::Norm, "batch_norm_backward_dx", 7, 1, None),
            ConcatChannels => (F::Concat, "concat_channels", 2, 1, None),
            NarrowChannels => (F::Concat, "narrow_channels", 1, 1, None),
            PadChannels => (F::Concat, "pad_channels", 1, 1, None),
            L1Forward => (F::PairLoss, "l1_forward", 2, 1, Some(RowWorkgroup)),
            L1Backward => (F::PairLoss, "l1_backward", 3, 1, None),
            LeastSquaresForward => (
                F::PairLoss,
                "least_squares_forward",
                1,
                1,
                Some(RowWorkgroup),
            ),
            LeastSquaresBackward => (F::PairLoss, "least_squares_backward", 2, 1, None),
            InstanceNormStats => (
                F::InstanceNorm,
                "instance_norm_stats",
                1,
                2,
                Some(RowWorkgroup),
            ),
            InstanceNormForward => (F::InstanceNorm, "instance_norm_forward", 5, 1, None),
            InstanceNormBackwardReduce => (
                F::InstanceNorm,
                "instance_norm_backward_reduce",
                4,
                2,
                Some(RowWorkgroup),
            ),
            InstanceNormBackwardAffine => {
                (F::InstanceNorm, "instance_norm_backward_affine", 2, 2, None)
            }
            InstanceNormBackwardDx => (F::InstanceNorm, "instance_norm_backward_dx", 7, 1, None),
        };
        KernelSpec {
            file,
            entry,
            inputs,
            outputs,
            texture_inputs: if matches!(file, F::MatmulTexture) {
                2
            } else {
                0
            },
            tuning,
        }
    }

    /// The kernel as the GPU layer sees it.
    pub fn desc(self) -> KernelDesc {
        let spec = self.spec();
        KernelDesc {
            module: spec.file.name(),
            source: spec.file.source(),
            entry: spec.entry,
            bindings: Bindings {
                inputs: spec.inputs,
                texture_inputs: spec.texture_inputs,
                outputs: spec.outputs,
            },
        }
    }

    /// Records one dispatch of this kernel over `groups` workgroups: `buffers` are its inputs
    /// then its outputs in binding order, `params` the Rust twin of its `Params` struct. Its
    /// tuning constant, if any, is set from the adapter's capabilities.
    pub(crate) fn dispatch<P: bytemuck::Pod>(
        self,
        gpu: &Gpu,
        buffers: &[&Storage],
        params: &P,
        groups: [u32; 3],
    ) {
        self.dispatch_with(gpu, &[], &[], buffers, params, groups);
    }

    /// [`Kernel::dispatch`] with override `constants` chosen per call, and `textures` bound
    /// before the buffers (the first `spec().texture_inputs` inputs).
    pub(crate) fn dispatch_with<P: bytemuck::Pod>(
        self,
        gpu: &Gpu,
        constants: &[(&'static str, f64)],
        textures: &[&Texture],
        buffers: &[&Storage],
        params: &P,
        groups: [u32; 3],
    ) {
        let desc = self.desc();
        match (self.spec().tuning, constants) {
            (None, _) => gpu.dispatch(&desc, constants, textures, buffers, params, groups),
            (Some(tuning), []) => {
                let tuned = [tuning.constant(gpu.capabilities())];
                gpu.dispatch(&desc, &tuned, textures, buffers, params, groups)
            }
            (Some(tuning), _) => {
                let mut all = constants.to_vec();
                all.push(tuning.constant(gpu.capabilities()));
                gpu.dispatch(&desc, &all, textures, buffers, params, groups)
            }
        }
    }
}

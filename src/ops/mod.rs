//! The ops: one file per op family, each with the forward (host-side shape
//! checks, output allocation, kernel dispatch, tape record) beside its backward
//! rule (the kernels that turn the output gradient `dy` into input gradients).
//!
//! | file | ops | shader |
//! | --- | --- | --- |
//! | `kernels.rs` | the kernel table (every kernel's file, entry point, bindings, tuning) and the op-code prelude of the shaders | all |
//! | `matmul.rs` | `matmul`, `matmul_nt`, `matmul_tn`, `linear` (bias + activation fused), in numbered versions [`MatmulVersion`] v1-v4 | `shaders/matmul_naive.wgsl`, `matmul.wgsl`, `matmul_tiled.wgsl`, `matmul_subgroup.wgsl` |
//! | `matmul_texture.rs` | matmul v5, the texture-operand path of the same products, [`MatmulPath`] | `shaders/matmul_texture.wgsl` |
//! | `tune.rs` | the autotuner: which version runs per adapter and shape, by measurement, cached on disk | |
//! | `elementwise.rs` | [`Activation`] (`activation`, `relu`, `leaky_relu`, `sigmoid`, `tanh`, `exp`, `scale`, `affine`), `add`, `sub`, `mul`, `div` (with row/scalar broadcast), `repeat_rows` | `shaders/elementwise.wgsl`, `shaders/activation.wgsl` |
//! | `reduce.rs` | `sum`, `mean`, `sum_axis`, `mean_axis` | `shaders/reduce.wgsl` |
//! | `vae.rs` | `reparameterize`, `kl_divergence`, and both fused: `reparameterize_kl` | `shaders/vae.wgsl` |
//! | `conv.rs` | `conv2d`, `conv_transpose2d` (im2col + matmul, or implicit GEMM: [`ConvAlgorithm`]) | `shaders/conv.wgsl`, `shaders/conv_implicit.wgsl` |
//! | `loss.rs` | `bce_with_logits`, `mse_loss`, `softmax_cross_entropy` | `shaders/loss.wgsl` |
//! | `norm.rs` | `batch_norm` (1-D and 2-D) | `shaders/norm.wgsl` |
//! | `random.rs` | `randn`, `dropout`, `bernoulli` | `shaders/random.wgsl` |
//! | `concat.rs` | `concat_channels`, `narrow_channels`, `pad_channels`, `split_channels` (U-Net skips) | `shaders/concat.wgsl` |
//! | `pair_loss.rs` | `l1_loss`, `least_squares_loss` (image-to-image translation) | `shaders/pair_loss.wgsl` |
//! | `instance_norm.rs` | `instance_norm` | `shaders/instance_norm.wgsl` |
//!
//! Every Params struct here is `#[repr(C)]` + `Pod` with the fields of its WGSL twin;
//! `tests/shaders.rs` checks that names and offsets agree.

/// Workgroups for the row kernels: one workgroup per row, spilling into y beyond 65,535 rows
/// (the kernels rebuild the row as `wid.x + wid.y * num_workgroups.x`).
pub(crate) fn rows_grid(rows: usize) -> [u32; 3] {
    crate::gpu::grid_1d(rows as u64, 1)
}

pub mod concat;
pub mod conv;
pub mod elementwise;
pub mod instance_norm;
pub mod kernels;
pub mod loss;
pub mod matmul;
pub mod matmul_texture;
pub mod norm;
pub mod pair_loss;
pub mod random;
pub mod reduce;
pub mod tune;
pub mod vae;

pub use concat::{ChannelParams, concat_channels, narrow_channels, pad_channels, split_channels};
pub use conv::{
    CONV_ENV, Conv2dOptions, ConvAlgorithm, ConvParams, ConvProduct, ImplicitConvParams,
    LayoutParams, chosen_conv_algorithm, conv_transpose2d, conv2d,
};
pub use elementwise::{
    Activation, ActivationKind, Binary, BinaryParams, RepeatParams, UnaryParams,
};
pub use instance_norm::{InstanceNormParams, instance_norm};
pub use kernels::{Kernel, ShaderFile};
pub use loss::{RowParams, bce_with_logits, mse_loss, softmax_cross_entropy};
pub use matmul::{Layout, MatmulParams, MatmulVersion, TexMatmulParams, chosen_version};
pub use matmul_texture::{MATMUL_ENV, MatmulPath};
pub use norm::{NormParams, batch_norm};
pub use pair_loss::{PairLossParams, l1_loss, least_squares_loss};
pub use random::{DropoutParams, RandnParams};
pub use reduce::{ReduceParams, RowsParams};
pub use vae::{ElemParams, kl_divergence, reparameterize, reparameterize_kl};

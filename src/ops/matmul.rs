//! Matrix products and their gradients, and the fused linear layer, in five numbered versions
//! ([`MatmulVersion`], figures in benches/workbench/matmul.rs), the one that runs chosen per
//! adapter and shape by the autotuner (`ops/tune.rs`) or forced (`DEEPGEN_MATMUL=v3`,
//! [`Gpu::force_matmul_version`]):
//!
//! | version | kernel | runs on |
//! | --- | --- | --- |
//! | v1 | `shaders/matmul_naive.wgsl`: one element of C per invocation | every adapter |
//! | v2 | `shaders/matmul.wgsl`: a 4 x 4 register block per invocation, operands from global memory | every adapter |
//! | v3 | `shaders/matmul_tiled.wgsl`: BM x BN blocks per workgroup, BK-deep slices staged in workgroup memory by vec4 loads, 4 x 4 register tiles | every adapter |
//! | v4 | `shaders/matmul_subgroup.wgsl`: one subgroup per workgroup, A shared by `subgroupShuffle` | adapters with subgroups of a fixed size |
//! | v5 | `shaders/matmul_texture.wgsl`: operands in rgba32float textures (`matmul_texture.rs`) | 8-lane subgroups (lavapipe); operands with a contiguous dimension divisible by 4 |
//!
//! Backward reuses the same three kernels with the operands swapped:
//!
//! | forward | dA | dB |
//! | --- | --- | --- |
//! | C = A B   (`matmul`)    | dC B^T  (`matmul_nt`) | A^T dC  (`matmul_tn`) |
//! | C = A B^T (`matmul_nt`) | dC B    (`matmul`)    | dC^T A  (`matmul_tn`) |
//! | C = A^T B (`matmul_tn`) | B dC^T  (`matmul_nt`) | A dC    (`matmul`)    |

use std::cell::Cell;

use strum::VariantArray;

use crate::error::{Error, Result};
use crate::gpu::{Capabilities, Gpu, Storage};
use crate::ops::elementwise::{Activation, unary_backward};
use crate::ops::kernels::{Kernel, matmul_workgroup, subgroup_size, tiled_tile};
use crate::ops::matmul_texture::{self, MATMUL_ENV, MatmulPath};
use crate::ops::tune;
use crate::tensor::Tensor;

/// The numbered matmul versions (see the module doc and benches/workbench/matmul.rs). Every
/// version computes the same products with the same epilogue; they differ in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, VariantArray)]
pub enum MatmulVersion {
    /// One element of C per invocation (`shaders/matmul_naive.wgsl`).
    V1,
    /// 4 x 4 register blocks, operands from global memory (`shaders/matmul.wgsl`).
    V2,
    /// Workgroup-memory tiling with vec4 loads (`shaders/matmul_tiled.wgsl`).
    V3,
    /// Subgroup shuffles of A (`shaders/matmul_subgroup.wgsl`).
    V4,
    /// Texture operands, 8-lane subgroups (`shaders/matmul_texture.wgsl`).
    V5,
}

impl MatmulVersion {
    /// `v1` .. `v5`.
    pub fn name(self) -> &'static str {
        match self {
            MatmulVersion::V1 => "v1",
            MatmulVersion::V2 => "v2",
            MatmulVersion::V3 => "v3",
            MatmulVersion::V4 => "v4",
            MatmulVersion::V5 => "v5",
        }
    }

    /// Parses `v1` .. `v5` (any case), and the older names `generic` (v2) and `texture` (v5).
    pub fn parse(text: &str) -> Option<MatmulVersion> {
        let text = text.trim().to_ascii_lowercase();
        match text.as_str() {
            "generic" => return Some(MatmulVersion::V2),
            "texture" => return Some(MatmulVersion::V5),
            _ => {}
        }
        MatmulVersion::VARIANTS
            .iter()
            .copied()
            .find(|v| v.name() == text)
    }

    /// Why an adapter with `caps` cannot run this version, or None if it can.
    pub fn unsupported_reason(self, caps: &Capabilities) -> Option<String> {
        match self {
            MatmulVersion::V1 | MatmulVersion::V2 | MatmulVersion::V3 => None,
            MatmulVersion::V4 => {
                if !caps.subgroups {
                    Some("the adapter has no subgroup operations".into())
                } else if caps.subgroup_min_size != caps.subgroup_max_size
                    || !(4..=128).contains(&caps.subgroup_max_size)
                {
                    Some(format!(
                        "it needs one fixed subgroup size of 4 to 128 lanes (a workgroup is one \
                         subgroup); this adapter runs {} to {}",
                        caps.subgroup_min_size, caps.subgroup_max_size
                    ))
                } else {
                    None
                }
            }
            MatmulVersion::V5 => MatmulPath::Texture.unsupported_reason(caps),
        }
    }

    /// The kernel of this version for `layout` (None for v5, which has its own dispatch).
    fn kernel(self, layout: Layout) -> Option<Kernel> {
        use Kernel::*;
        Some(match (self, layout) {
            (MatmulVersion::V1, Layout::NN) => MatmulNaiveNN,
            (MatmulVersion::V1, Layout::NT) => MatmulNaiveNT,
            (MatmulVersion::V1, Layout::TN) => MatmulNaiveTN,
            (MatmulVersion::V2, Layout::NN) => MatmulNN,
            (MatmulVersion::V2, Layout::NT) => MatmulNT,
            (MatmulVersion::V2, Layout::TN) => MatmulTN,
            (MatmulVersion::V3, Layout::NN) => MatmulTiledNN,
            (MatmulVersion::V3, Layout::NT) => MatmulTiledNT,
            (MatmulVersion::V3, Layout::TN) => MatmulTiledTN,
            (MatmulVersion::V4, Layout::NN) => MatmulSubgroupNN,
            (MatmulVersion::V4, Layout::NT) => MatmulSubgroupNT,
            (MatmulVersion::V4, Layout::TN) => MatmulSubgroupTN,
            (MatmulVersion::V5, _) => return None,
        })
    }
}

/// The forced matmul version of one GPU context (kept in [`Gpu::extension`]).
#[derive(Default)]
struct ForcedMatmul {
    /// None until first asked; then Some(the forced version, or None for the tuner).
    version: Cell<Option<Option<MatmulVersion>>>,
}

impl Gpu {
    /// The matmul version forced on this context: by [`Gpu::force_matmul_version`], else by
    /// `DEEPGEN_MATMUL` (`v1`..`v5`; `generic` = v2, `texture` = v5; `auto` or unset: none),
    /// if the adapter can run it (a version it cannot run is ignored, with a warning). None: the
    /// autotuner chooses per shape.
    pub fn forced_matmul_version(&self) -> Option<MatmulVersion> {
        let state = self.extension::<ForcedMatmul>();
        if let Some(v) = state.version.get() {
            return v;
        }
        let mut forced = tune::forced_by_env(
            MATMUL_ENV,
            "auto, v1, v2, v3, v4, v5, generic or texture",
            MatmulVersion::parse,
        );
        if let Some(v) = forced
            && let Some(why) = v.unsupported_reason(self.capabilities())
        {
            eprintln!("deepgen: ignoring {MATMUL_ENV}={}: {why}", v.name());
            forced = None;
        }
        state.version.set(Some(forced));
        forced
    }

    /// Forces every matmul of this context to run `version` (None: the autotuner chooses),
    /// overriding `DEEPGEN_MATMUL`; for tests and benchmarks. v5 still hands shapes it cannot
    /// take (no contiguous dimension divisible by 4) to v2.
    ///
    /// Errors: [`Error::Invalid`] saying why, if the adapter cannot run `version`.
    pub fn force_matmul_version(&self, version: Option<MatmulVersion>) -> Result<()> {
        if let Some(v) = version
            && let Some(why) = v.unsupported_reason(self.capabilities())
        {
            return Err(Error::Invalid(format!(
                "matmul {} cannot run on this adapter: {why}",
                v.name()
            )));
        }
        self.extension::<ForcedMatmul>().version.set(Some(version));
        Ok(())
    }
}

/// The versions that can run the product `(m, k, n)` in `layout` of `a`, `b` on this adapter.
fn eligible(
    a: &Tensor,
    b: &Tensor,
    layout: Layout,
    dims: (usize, usize, usize),
) -> Vec<MatmulVersion> {
    let caps = a.gpu().capabilities();
    MatmulVersion::VARIANTS
        .iter()
        .copied()
        .filter(|v| v.unsupported_reason(caps).is_none())
        .filter(|&v| v != MatmulVersion::V5 || matmul_texture::accepts(a, b, layout, dims))
        .collect()
}

/// The version that runs when nothing is measured (small products, the browser): v5 where it
/// can take the product, else v2 on CPU adapters (per-lane loads are loops there; see
/// benches/NOTES.md) and v3 on GPUs.
fn default_version(caps: &Capabilities, eligible: &[MatmulVersion]) -> MatmulVersion {
    if eligible.contains(&MatmulVersion::V5) {
        MatmulVersion::V5
    } else if caps.device_type == wgpu::DeviceType::Cpu {
        MatmulVersion::V2
    } else {
        MatmulVersion::V3
    }
}

/// The version to run for the product `(m, k, n)` in `layout`: the forced one (v5 falling back
/// to v2 on shapes it cannot take), else the autotuner's choice among the eligible versions,
/// timed on `a` and `b` themselves the first time this shape is seen on this adapter.
pub(crate) fn choose_version(
    a: &Tensor,
    b: &Tensor,
    layout: Layout,
    (m, k, n): (usize, usize, usize),
) -> MatmulVersion {
    let gpu = a.gpu();
    let candidates = eligible(a, b, layout, (m, k, n));
    if let Some(v) = gpu.forced_matmul_version() {
        return if candidates.contains(&v) {
            v
        } else {
            MatmulVersion::V2
        };
    }
    let default = default_version(gpu.capabilities(), &candidates);
    if ((m * k * n) as f64) < tune::MIN_TUNED_MACS {
        return default;
    }
    let class = format!("matmul {layout:?} {m}x{k}x{n}");
    // The timed calls' output, allocated only if this shape is timed.
    let mut scratch: Option<Storage> = None;
    tune::choose(
        gpu,
        &class,
        &candidates,
        MatmulVersion::name,
        default,
        |v, f| {
            // The leading slice: the first rows of C (NN, NT), or of the contracted dimension
            // (TN, whose A is stored K x M), at least 32 of them.
            let keep = |d: usize| ((d as f64 * f).ceil() as usize).clamp(d.min(32), d);
            let (a, b, dims) = match layout {
                Layout::NN | Layout::NT => {
                    let m2 = keep(m);
                    (a.prefix_view([m2, k]), b.clone(), (m2, k, n))
                }
                Layout::TN => {
                    let k2 = keep(k);
                    (a.prefix_view([k2, m]), b.prefix_view([k2, n]), (m, k2, n))
                }
            };
            if scratch.is_none() {
                scratch = Some(Tensor::alloc(gpu, "matmul tuning", m * n)?);
            }
            let out = scratch.as_ref().expect("allocated above");
            record(v, &a, &b, layout, dims, None, Activation::Identity, out);
            Ok(())
        },
    )
}

/// The version the engine runs for the product `(m, k, n)` in `layout` (`op(A)` M x K,
/// `op(B)` K x N) of `a` and `b` (stored as the layout says): what `matmul`, `matmul_nt`,
/// `matmul_tn` and `linear` would choose, tuning now if this shape has not been seen. For
/// `deepgen bench` and tests.
///
/// Errors: [`Error::Shape`] if the stored shapes do not fit the layout.
pub fn chosen_version(a: &Tensor, b: &Tensor, layout: Layout) -> Result<MatmulVersion> {
    let dims = dims(a, b, layout)?;
    Ok(choose_version(a, b, layout, dims))
}

/// Records `out = act(op(a) op(b) + bias)` with `version` (v5 hands a shape it cannot take to
/// v2).
#[allow(clippy::too_many_arguments)]
fn record(
    version: MatmulVersion,
    a: &Tensor,
    b: &Tensor,
    layout: Layout,
    (m, k, n): (usize, usize, usize),
    bias: Option<&Tensor>,
    act: Activation,
    out: &Storage,
) {
    let gpu = a.gpu();
    let version = if version == MatmulVersion::V5 {
        if matmul_texture::dispatch(a, b, layout, (m, k, n), bias, act, out) {
            return;
        }
        MatmulVersion::V2
    } else {
        version
    };
    let kernel = version.kernel(layout).expect("v5 handled above");
    let (alpha, beta) = act.params();
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        has_bias: u32::from(bias.is_some()),
        act: act.code(),
        alpha,
        beta,
        _pad: 0,
    };
    // Without a bias the binding is unused; any buffer fills it.
    let bias_storage = bias.map_or(a.storage(), |t| t.storage());
    let buffers = [a.storage(), b.storage(), bias_storage, out];
    let caps = gpu.capabilities();
    let (m, n) = (m as u32, n as u32);
    match version {
        MatmulVersion::V1 => {
            let wg = matmul_workgroup(caps);
            kernel.dispatch(gpu, &buffers, &params, [n.div_ceil(wg), m.div_ceil(wg), 1]);
        }
        MatmulVersion::V2 => {
            let tile = THREAD_TILE * matmul_workgroup(caps);
            kernel.dispatch(
                gpu,
                &buffers,
                &params,
                [n.div_ceil(tile), m.div_ceil(tile), 1],
            );
        }
        MatmulVersion::V3 => {
            let tile = tiled_tile(caps);
            // vec4 loads where the stored operand's contiguous dimension is a multiple of 4.
            let vec_a = match layout {
                Layout::NN | Layout::NT => k % 4 == 0,
                Layout::TN => m % 4 == 0,
            };
            let vec_b = match layout {
                Layout::NN | Layout::TN => n % 4 == 0,
                Layout::NT => k % 4 == 0,
            };
            let [bm, bn, bk] = tile.constants();
            let constants = [
                bm,
                bn,
                bk,
                ("VEC_A", f64::from(u8::from(vec_a))),
                ("VEC_B", f64::from(u8::from(vec_b))),
            ];
            let groups = [n.div_ceil(tile.bn), m.div_ceil(tile.bm), 1];
            kernel.dispatch_with(gpu, &constants, &[], &buffers, &params, groups);
        }
        MatmulVersion::V4 => {
            let sg = subgroup_size(caps);
            kernel.dispatch(
                gpu,
                &buffers,
                &params,
                [n.div_ceil(4 * sg), m.div_ceil(8), 1],
            );
        }
        MatmulVersion::V5 => unreachable!("v5 handled above"),
    }
}

/// Params of the entry points of `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    /// Rows of C.
    pub m: u32,
    /// Columns of C.
    pub n: u32,
    /// The contracted dimension.
    pub k: u32,
    /// 1: add `bias[col]` to each element of C; 0: no bias.
    pub has_bias: u32,
    /// The activation applied after it (an [`Activation::code`]; identity for a plain product).
    pub act: u32,
    /// The activation's first parameter (leaky_relu slope, affine scale).
    pub alpha: f32,
    /// Its second parameter (affine shift).
    pub beta: f32,
    /// Padding to 32 bytes.
    pub _pad: u32,
}

/// Params of the entry points of `shaders/matmul_texture.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TexMatmulParams {
    /// Rows of C.
    pub m: u32,
    /// Columns of C.
    pub n: u32,
    /// The contracted dimension.
    pub k: u32,
    /// log2 of the width in texels of the operand textures in the flat layout.
    pub shift: u32,
    /// The epilogue activation's first parameter (the epilogue itself is the override
    /// constants `HAS_BIAS` and `ACT`).
    pub alpha: f32,
    /// Its second parameter.
    pub beta: f32,
    /// Padding to 32 bytes.
    pub _pad: [u32; 2],
}

/// Which operand is stored transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A (M, K), B (K, N).
    NN,
    /// A (M, K), B stored (N, K).
    NT,
    /// A stored (K, M), B (K, N).
    TN,
}

impl Layout {
    /// The op's name: `matmul`, `matmul_nt`, `matmul_tn`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::NN => "matmul",
            Layout::NT => "matmul_nt",
            Layout::TN => "matmul_tn",
        }
    }
}

/// Rows and columns of C per invocation of the generic kernel (see the shader header).
const THREAD_TILE: u32 = 4;

/// Checks the shapes and returns (M, K, N) of op(A) op(B).
fn dims(a: &Tensor, b: &Tensor, layout: Layout) -> Result<(usize, usize, usize)> {
    let name = layout.name();
    let (&[a0, a1], &[b0, b1]) = (a.dims(), b.dims()) else {
        return Err(Error::shape(
            name,
            format!("needs two matrices, got {} and {}", a.shape(), b.shape()),
        ));
    };
    let (m, ka) = if layout == Layout::TN {
        (a1, a0)
    } else {
        (a0, a1)
    };
    let (kb, n) = if layout == Layout::NT {
        (b1, b0)
    } else {
        (b0, b1)
    };
    if ka != kb {
        let rule = match layout {
            Layout::NN => "A (M, K) * B (K, N)",
            Layout::NT => "A (M, K) * B^T with B (N, K)",
            Layout::TN => "A^T * B with A (K, M), B (K, N)",
        };
        return Err(Error::shape(
            name,
            format!(
                "inner dimensions differ: {} and {} ({rule})",
                a.shape(),
                b.shape()
            ),
        ));
    }
    Ok((m, ka, n))
}

/// Records the product (with an optional bias-and-activation epilogue) into new storage, with
/// the version [`choose_version`] picks.
fn dispatch_matmul(
    a: &Tensor,
    b: &Tensor,
    layout: Layout,
    dims: (usize, usize, usize),
    bias: Option<&Tensor>,
    act: Activation,
) -> Result<Storage> {
    let out = Tensor::alloc(a.gpu(), layout.name(), dims.0 * dims.2)?;
    let version = choose_version(a, b, layout, dims);
    record(version, a, b, layout, dims, bias, act, &out);
    Ok(out)
}

fn matmul_op(a: &Tensor, b: &Tensor, layout: Layout) -> Result<Tensor> {
    let (m, k, n) = dims(a, b, layout)?;
    let out = dispatch_matmul(a, b, layout, (m, k, n), None, Activation::Identity)?;
    let (sa, sb) = (a.clone(), b.clone());
    // In recorded ops already: with recording on (a gradient of a gradient) the two products
    // are ops on the tape like any other, differentiable in dc and in the saved operands.
    let backward = Box::new(
        move |dc: &Tensor, wanted: &[bool]| -> Result<Vec<Option<Tensor>>> {
            let da = if wanted[0] {
                Some(match layout {
                    Layout::NN => dc.matmul_nt(&sb)?,
                    Layout::NT => dc.matmul(&sb)?,
                    Layout::TN => sb.matmul_nt(dc)?,
                })
            } else {
                None
            };
            let db = if wanted[1] {
                Some(match layout {
                    Layout::NN => sa.matmul_tn(dc)?,
                    Layout::NT => dc.matmul_tn(&sa)?,
                    Layout::TN => sa.matmul(dc)?,
                })
            } else {
                None
            };
            Ok(vec![da, db])
        },
    );
    Ok(Tensor::from_op(
        a.gpu(),
        out,
        [m, n].into(),
        &[a, b],
        backward,
    ))
}

impl Tensor {
    /// Matrix product `self (M, K) * b (K, N) -> (M, N)`.
    ///
    /// Errors: [`Error::Shape`] unless both are matrices with matching inner dimension.
    pub fn matmul(&self, b: &Tensor) -> Result<Tensor> {
        matmul_op(self, b, Layout::NN)
    }

    /// `self (M, K) * b^T -> (M, N)` with `b` stored `(N, K)`: a linear layer's
    /// forward with PyTorch's weight layout `(out_features, in_features)`.
    ///
    /// Errors: [`Error::Shape`] unless both are matrices with equal second dimension.
    pub fn matmul_nt(&self, b: &Tensor) -> Result<Tensor> {
        matmul_op(self, b, Layout::NT)
    }

    /// `self^T * b -> (M, N)` with `self` stored `(K, M)` and `b` `(K, N)`: the weight
    /// gradient of a linear layer.
    ///
    /// Errors: [`Error::Shape`] unless both are matrices with equal first dimension.
    pub fn matmul_tn(&self, b: &Tensor) -> Result<Tensor> {
        matmul_op(self, b, Layout::TN)
    }

    /// A linear layer in one kernel: `activation(self W^T + bias)` with `self (B, in)`,
    /// `weight (out, in)` (PyTorch's layout), `bias (out,)` -> `(B, out)`; the bias and the
    /// activation are applied as the product is stored, saving two passes over the output.
    ///
    /// Backward: `dy' = dy * activation'` (computed from the output alone, which keeps the
    /// sign of the input), `db = sum over rows of dy'`, `dW = dy'^T x`, `dx = dy' W`.
    ///
    /// Errors: [`Error::Shape`] unless `self` is `(B, in)`, `weight` `(out, in)`, `bias` `(out,)`.
    pub fn linear(&self, weight: &Tensor, bias: &Tensor, activation: Activation) -> Result<Tensor> {
        let (m, k, n) = dims(self, weight, Layout::NT)?;
        if bias.dims() != [n] {
            return Err(Error::shape(
                "linear",
                format!(
                    "bias {} must be ({n},) for weight {}",
                    bias.shape(),
                    weight.shape()
                ),
            ));
        }
        let out = dispatch_matmul(self, weight, Layout::NT, (m, k, n), Some(bias), activation)?;
        let (sx, sw) = (self.clone(), weight.clone());
        Ok(Tensor::from_op_with(
            self.gpu(),
            out,
            [m, n].into(),
            &[self, weight, bias],
            |y| {
                let y = y.clone();
                Box::new(
                    move |dy: &Tensor, wanted: &[bool]| -> Result<Vec<Option<Tensor>>> {
                        let dy = match activation {
                            Activation::Identity => dy.clone(),
                            // NOTE: y stands in for the pre-activation, which is never stored (see
                            // act_derivative in shaders/activation.wgsl): right for every activation
                            // whose output keeps the sign of its input (leaky_relu with a positive
                            // slope). It is right to second order too: unary_backward's rule
                            // differentiates f' in y alone (sigmoid, tanh, exp, sqrt), and y's own
                            // node, this one, carries that on to the pre-activation.
                            _ => unary_backward(&y, &y, dy, activation)?,
                        };
                        let dx = if wanted[0] {
                            Some(dy.matmul(&sw)?)
                        } else {
                            None
                        };
                        let dw = if wanted[1] {
                            Some(dy.matmul_tn(&sx)?)
                        } else {
                            None
                        };
                        let db = if wanted[2] {
                            Some(dy.sum_axis(0)?)
                        } else {
                            None
                        };
                        Ok(vec![dx, dw, db])
                    },
                )
            },
        ))
    }
}

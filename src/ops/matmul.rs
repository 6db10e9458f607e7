//! Matrix products and their gradients (kernels in `shaders/matmul.wgsl`, and on adapters
//! with 8-lane subgroups the faster `shaders/matmul_texture.wgsl`), and the fused linear layer.
//!
//! Backward reuses the same three kernels with the operands swapped:
//!
//! | forward | dA | dB |
//! | --- | --- | --- |
//! | C = A B   (`matmul`)    | dC B^T  (`matmul_nt`) | A^T dC  (`matmul_tn`) |
//! | C = A B^T (`matmul_nt`) | dC B    (`matmul`)    | dC^T A  (`matmul_tn`) |
//! | C = A^T B (`matmul_tn`) | B dC^T  (`matmul_nt`) | A dC    (`matmul`)    |

use crate::error::{Error, Result};
use crate::gpu::Storage;
use crate::ops::elementwise::{Activation, unary_backward};
use crate::ops::kernels::{Kernel, matmul_workgroup};
use crate::ops::matmul_texture;
use crate::tensor::Tensor;

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
pub(crate) enum Layout {
    /// A (M, K), B (K, N).
    NN,
    /// A (M, K), B stored (N, K).
    NT,
    /// A stored (K, M), B (K, N).
    TN,
}

impl Layout {
    fn name(self) -> &'static str {
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

/// Records the product (with an optional bias-and-activation epilogue) into new storage,
/// on the texture path when the adapter and the shapes allow it.
fn dispatch_matmul(
    a: &Tensor,
    b: &Tensor,
    layout: Layout,
    (m, k, n): (usize, usize, usize),
    bias: Option<&Tensor>,
    act: Activation,
) -> Result<Storage> {
    let gpu = a.gpu();
    let out = Tensor::alloc(gpu, layout.name(), m * n)?;
    if matmul_texture::dispatch(a, b, layout, (m, k, n), bias, act, &out) {
        return Ok(out);
    }
    let kernel = match layout {
        Layout::NN => Kernel::MatmulNN,
        Layout::NT => Kernel::MatmulNT,
        Layout::TN => Kernel::MatmulTN,
    };
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
    let tile = THREAD_TILE * matmul_workgroup(gpu.capabilities());
    let groups = [(n as u32).div_ceil(tile), (m as u32).div_ceil(tile), 1];
    // Without a bias the binding is unused; any buffer fills it.
    let bias_storage = bias.map_or(a.storage(), |t| t.storage());
    kernel.dispatch(
        gpu,
        &[a.storage(), b.storage(), bias_storage, &out],
        &params,
        groups,
    );
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

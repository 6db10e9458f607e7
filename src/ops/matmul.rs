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
use crate::gpu::{Kernel, MatmulPath, OperandTexture, Storage, TexLayout};
use crate::ops::elementwise::{Unary, UnaryParams, unary_backward};
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
    /// 0 none, 1 + bias, 2 + bias then relu, 3 + bias then leaky_relu (see [`Activation`]).
    pub epilogue: u32,
    /// leaky_relu slope.
    pub slope: f32,
    /// Padding to 32 bytes.
    pub _pad: [u32; 3],
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
    /// leaky_relu slope (the epilogue itself is the override constant `EPILOGUE`).
    pub slope: f32,
    /// Padding to 32 bytes.
    pub _pad: [u32; 3],
}

/// The activation a [`Tensor::linear`] applies in the matmul's epilogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// None: `x W^T + b`.
    Identity,
    /// `relu(x W^T + b)`.
    Relu,
    /// `leaky_relu(x W^T + b, slope)`.
    LeakyRelu(f32),
}

impl Activation {
    /// The epilogue code and slope of the kernels (with a bias).
    fn epilogue(self) -> (u32, f32) {
        match self {
            Activation::Identity => (1, 0.0),
            Activation::Relu => (2, 0.0),
            Activation::LeakyRelu(slope) => (3, slope),
        }
    }
}

/// Which operand is stored transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
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
    (epilogue, slope): (u32, f32),
) -> Result<Storage> {
    let gpu = a.gpu();
    let out = Tensor::alloc(gpu, layout.name(), m * n)?;
    // Without a bias the binding is unused; any buffer fills it.
    let bias_storage = bias.map_or(a.storage(), |t| t.storage());
    // The texture path needs each stored operand's contiguous dimension divisible by 4.
    let aligned = match layout {
        Layout::NN => k % 4 == 0 && n % 4 == 0,
        Layout::NT => k % 4 == 0,
        Layout::TN => m % 4 == 0 && n % 4 == 0,
    };
    let shift = gpu
        .flat_shift(a.numel().max(b.numel()))
        .filter(|_| gpu.matmul_path() == MatmulPath::Texture && aligned && m * n * k > 0);
    if let Some(shift) = shift {
        let (kernel, rows) = match layout {
            Layout::NN => (Kernel::MatmulTextureNN, 5),
            Layout::NT => (Kernel::MatmulTextureNT, 6),
            Layout::TN => (Kernel::MatmulTextureTN, 8),
        };
        let stored = |t: &Tensor| (t.dims()[0], t.dims()[1]);
        let ta = gpu.operand_texture(a.storage(), stored(a), 0, shift);
        let tb = gpu.operand_texture(b.storage(), stored(b), 1, shift);
        // Each operand's addressing is compiled in (a pipeline per combination).
        let rows_layout = |t: &OperandTexture| f64::from(u8::from(t.layout == TexLayout::Rows));
        let constants = [
            ("A_ROWS", rows_layout(&ta)),
            ("B_ROWS", rows_layout(&tb)),
            ("EPILOGUE", f64::from(epilogue)),
        ];
        let params = TexMatmulParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            shift,
            slope,
            _pad: [0; 3],
        };
        let groups = [(m as u32).div_ceil(rows), (n as u32).div_ceil(32), 1];
        gpu.dispatch_textures(
            kernel,
            &constants,
            &[&ta, &tb],
            &[bias_storage, &out],
            &params,
            groups,
        );
    } else {
        let kernel = match layout {
            Layout::NN => Kernel::MatmulNN,
            Layout::NT => Kernel::MatmulNT,
            Layout::TN => Kernel::MatmulTN,
        };
        let params = MatmulParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            epilogue,
            slope,
            _pad: [0; 3],
        };
        let wg = gpu.matmul_workgroup();
        let tile = THREAD_TILE * wg;
        let groups = [(n as u32).div_ceil(tile), (m as u32).div_ceil(tile), 1];
        let constants = [("WG", wg as f64)];
        gpu.dispatch(
            kernel,
            &constants,
            &[a.storage(), b.storage(), bias_storage, &out],
            &params,
            groups,
        );
    }
    Ok(out)
}

fn matmul_op(a: &Tensor, b: &Tensor, layout: Layout) -> Result<Tensor> {
    let (m, k, n) = dims(a, b, layout)?;
    let out = dispatch_matmul(a, b, layout, (m, k, n), None, (0, 0.0))?;
    let (sa, sb) = (a.clone(), b.clone());
    let backward = Box::new(move |dc: &Tensor| -> Result<Vec<Option<Tensor>>> {
        let da = if sa.requires_grad() {
            Some(match layout {
                Layout::NN => dc.matmul_nt(&sb)?,
                Layout::NT => dc.matmul(&sb)?,
                Layout::TN => sb.matmul_nt(dc)?,
            })
        } else {
            None
        };
        let db = if sb.requires_grad() {
            Some(match layout {
                Layout::NN => sa.matmul_tn(dc)?,
                Layout::NT => dc.matmul_tn(&sa)?,
                Layout::TN => sa.matmul(dc)?,
            })
        } else {
            None
        };
        Ok(vec![da, db])
    });
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
    /// Backward: `dy' = dy * activation'` (computed from the output: relu and leaky_relu keep
    /// the sign of their input), `db = sum over rows of dy'`, `dW = dy'^T x`, `dx = dy' W`.
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
        let out = dispatch_matmul(
            self,
            weight,
            Layout::NT,
            (m, k, n),
            Some(bias),
            activation.epilogue(),
        )?;
        let (sx, sw) = (self.clone(), weight.clone());
        let (x_wants, w_wants, b_wants) = (
            self.requires_grad(),
            weight.requires_grad(),
            bias.requires_grad(),
        );
        Ok(Tensor::from_op_with(
            self.gpu(),
            out,
            [m, n].into(),
            &[self, weight, bias],
            |y| {
                let y = y.clone();
                Box::new(move |dy: &Tensor| -> Result<Vec<Option<Tensor>>> {
                    let dy = match activation {
                        Activation::Identity => dy.clone(),
                        Activation::Relu => activation_backward(&y, dy, Unary::Relu, 0.0)?,
                        Activation::LeakyRelu(slope) => {
                            activation_backward(&y, dy, Unary::LeakyRelu, slope)?
                        }
                    };
                    let dx = if x_wants { Some(dy.matmul(&sw)?) } else { None };
                    let dw = if w_wants {
                        Some(dy.matmul_tn(&sx)?)
                    } else {
                        None
                    };
                    let db = if b_wants { Some(dy.sum_axis(0)?) } else { None };
                    Ok(vec![dx, dw, db])
                })
            },
        ))
    }
}

/// `dy * f'(y)` for relu and leaky_relu, read off the output `y`: it has the input's sign, so
/// `y` stands in for the input of `unary_backward`.
fn activation_backward(y: &Tensor, dy: &Tensor, op: Unary, slope: f32) -> Result<Tensor> {
    let params = UnaryParams {
        n: y.numel() as u32,
        op: op as u32,
        alpha: slope,
        beta: 0.0,
    };
    unary_backward(y, y, dy, params)
}

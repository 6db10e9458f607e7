//! Matrix products and their gradients (kernels in `shaders/matmul.wgsl`).
//!
//! Backward reuses the same three kernels with the operands swapped:
//!
//! | forward | dA | dB |
//! | --- | --- | --- |
//! | C = A B   (`matmul`)    | dC B^T  (`matmul_nt`) | A^T dC  (`matmul_tn`) |
//! | C = A B^T (`matmul_nt`) | dC B    (`matmul`)    | dC^T A  (`matmul_tn`) |
//! | C = A^T B (`matmul_tn`) | B dC^T  (`matmul_nt`) | A dC    (`matmul`)    |

use crate::error::{Error, Result};
use crate::gpu::{Kernel, MatmulPath};
use crate::tensor::Tensor;

/// Params of every entry point of `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    /// Rows of C.
    pub m: u32,
    /// Columns of C.
    pub n: u32,
    /// The contracted dimension.
    pub k: u32,
    /// Padding to 16 bytes.
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
    /// log2 of the operand textures' width in texels.
    pub shift: u32,
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

/// Output rows and columns covered by one workgroup (see the shader header).
const TILE_M: u32 = 32;
const TILE_N: u32 = 32;

fn matmul_op(a: &Tensor, b: &Tensor, layout: Layout) -> Result<Tensor> {
    let name = match layout {
        Layout::NN => "matmul",
        Layout::NT => "matmul_nt",
        Layout::TN => "matmul_tn",
    };
    let (&[a0, a1], &[b0, b1]) = (a.dims(), b.dims()) else {
        return Err(Error::shape(
            name,
            format!("needs two matrices, got {} and {}", a.shape(), b.shape()),
        ));
    };
    // (m, k) of op(A) and (k, n) of op(B).
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
    let gpu = a.gpu();
    let out = Tensor::alloc(gpu, name, m * n)?;
    let kernel = match layout {
        Layout::NN => Kernel::MatmulNN,
        Layout::NT => Kernel::MatmulNT,
        Layout::TN => Kernel::MatmulTN,
    };
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: ka as u32,
        _pad: 0,
    };
    // The texture path needs each stored operand's contiguous dimension divisible by 4.
    let aligned = match layout {
        Layout::NN => ka % 4 == 0 && n % 4 == 0,
        Layout::NT => ka % 4 == 0,
        Layout::TN => m % 4 == 0 && n % 4 == 0,
    };
    let shift = gpu
        .flat_shift(a.numel().max(b.numel()))
        .filter(|_| gpu.matmul_path() == MatmulPath::Texture && aligned && m * n * ka > 0);
    if let Some(shift) = shift {
        let (kernel, rows) = match layout {
            Layout::NN => (Kernel::MatmulTextureNN, 5),
            Layout::NT => (Kernel::MatmulTextureNT, 6),
            Layout::TN => (Kernel::MatmulTextureTN, 8),
        };
        let ta = gpu.flat_texture(a.storage(), a.numel(), 0, shift);
        let tb = gpu.flat_texture(b.storage(), b.numel(), 1, shift);
        let params = TexMatmulParams {
            m: m as u32,
            n: n as u32,
            k: ka as u32,
            shift,
        };
        let groups = [(m as u32).div_ceil(rows), (n as u32).div_ceil(32), 1];
        gpu.dispatch_textures(kernel, &[], &[&ta, &tb], &[&out], &params, groups);
    } else {
        let groups = [(n as u32).div_ceil(TILE_N), (m as u32).div_ceil(TILE_M), 1];
        gpu.dispatch(
            kernel,
            &[],
            &[a.storage(), b.storage(), &out],
            &params,
            groups,
        );
    }
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
    Ok(Tensor::from_op(gpu, out, [m, n].into(), &[a, b], backward))
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
}

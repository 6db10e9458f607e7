//! Element-wise ops: activations, affine maps, and binary arithmetic with
//! broadcasting of a bias row or a scalar (kernels in `shaders/elementwise.wgsl`).

use crate::error::{Error, Result};
use crate::gpu::grid_1d;
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::tensor::Tensor;

/// Params of `unary_forward` / `unary_backward`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UnaryParams {
    /// Number of elements.
    pub n: u32,
    /// Which function: an [`Activation::code`].
    pub op: u32,
    /// leaky_relu slope; affine scale.
    pub alpha: f32,
    /// affine shift.
    pub beta: f32,
}

/// Params of `binary_forward` / `binary_backward`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BinaryParams {
    /// Number of elements of the left operand (and of the output).
    pub n: u32,
    /// Elements of the right operand; it is read at `i % b_len`.
    pub b_len: u32,
    /// Which operation: a [`Binary`] as u32.
    pub op: u32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

/// Params of `repeat_rows`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RepeatParams {
    /// Rows of the input.
    pub rows: u32,
    /// Row length.
    pub dim: u32,
    /// Copies of each row.
    pub times: u32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

/// The activation functions: of the element-wise kernels ([`Tensor::activation`] and its
/// named forms, [`Tensor::relu`], ...) and of the matmul epilogue ([`Tensor::linear`]), with
/// their parameters.
///
/// The one definition of their op codes: a variant's code is its position in this list
/// ([`Activation::code`], the discriminant of its twin [`ActivationKind`]); the WGSL gets
/// them as generated constants `ACT_<NAME>` (see `ops/kernels.rs`), and the functions
/// themselves are written once, in `shaders/activation.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ActivationKind),
    derive(Hash, strum::VariantArray, strum::IntoStaticStr),
    strum(serialize_all = "SCREAMING_SNAKE_CASE"),
    doc = "The variants of [`Activation`] without their parameters; `kind as u32` is the \
           activation's code in the shaders, and the name (`LEAKY_RELU`) that of its WGSL \
           constant (`ACT_LEAKY_RELU`)."
)]
pub enum Activation {
    /// x (a linear layer without activation).
    Identity,
    /// max(x, 0).
    Relu,
    /// x if x > 0 else slope * x.
    LeakyRelu(f32),
    /// 1 / (1 + exp(-x)), evaluated stably.
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// exp(x).
    Exp,
    /// alpha * x + beta (as `Affine(alpha, beta)`).
    Affine(f32, f32),
    /// sqrt(max(x, 0)) (for norms): 0, with derivative 0, below 0, where a plain sqrt is NaN.
    /// NOTE: its derivative 1 / (2 sqrt(x)) is infinite at 0; a norm that may be 0 takes
    /// sqrt(s + eps) (as the gradient penalty does).
    Sqrt,
}

impl Activation {
    /// The shader code of this activation.
    pub fn code(self) -> u32 {
        ActivationKind::from(self) as u32
    }

    /// Its parameters as the kernels take them, `(alpha, beta)`: the slope of leaky_relu, the
    /// scale and shift of affine, zeros for the others.
    pub fn params(self) -> (f32, f32) {
        match self {
            Activation::LeakyRelu(slope) => (slope, 0.0),
            Activation::Affine(alpha, beta) => (alpha, beta),
            _ => (0.0, 0.0),
        }
    }

    /// `g * d f'/dy`: the derivative of the backward's factor f' (which `act_derivative` in
    /// `shaders/activation.wgsl` writes as a function of the output y; of x only through its
    /// sign) with respect to y, times `g`, in recorded ops; None where f' does not vary with y
    /// (identity, affine, and relu and leaky_relu, which are piecewise linear). This is the
    /// second-order rule of [`unary_backward`]: d(dy f'(y))/dy = dy f''... reached through y's
    /// own node, so no term flows to x directly.
    ///
    /// NOTE: relu and leaky_relu have a zero second derivative wherever it exists and none at
    /// 0, where it is taken as 0, as in PyTorch (their double backward is the mask again).
    fn derivative_in_y(self, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(match self {
            Activation::Identity
            | Activation::Relu
            | Activation::LeakyRelu(_)
            | Activation::Affine(..) => None,
            // f' = y (1 - y): d/dy = 1 - 2y.
            Activation::Sigmoid => Some(g.mul(&y.affine(-2.0, 1.0)?)?),
            // f' = 1 - y^2: d/dy = -2y.
            Activation::Tanh => Some(g.mul(&y.scale(-2.0)?)?),
            // f' = y: d/dy = 1.
            Activation::Exp => Some(g.clone()),
            // f' = 1 / (2y) for y > 0: d/dy = -1 / (2 y^2) = -2 f'^2, written with the
            // kernel's f' so that it is 0, like f', where y = 0.
            Activation::Sqrt => {
                Some(unary_backward(y, y, &unary_backward(y, y, g, self)?, self)?.scale(-2.0)?)
            }
        })
    }

    /// The Params of `unary_forward` / `unary_backward` for `n` elements.
    pub(crate) fn unary_params(self, n: usize) -> UnaryParams {
        let (alpha, beta) = self.params();
        UnaryParams {
            n: n as u32,
            op: self.code(),
            alpha,
            beta,
        }
    }
}

/// The binary operations of `binary_forward`: the one definition of their op codes (a
/// variant's code is its position here; the WGSL gets them as generated constants `BIN_<NAME>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Binary {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
}

fn unary_op(x: &Tensor, act: Activation) -> Result<Tensor> {
    let gpu = x.gpu();
    let n = x.numel();
    let y = Tensor::alloc(gpu, "unary", n)?;
    let params = act.unary_params(n);
    let grid = grid_1d((n as u64).div_ceil(4), WORKGROUP_1D);
    Kernel::UnaryForward.dispatch(gpu, &[x.storage(), &y], &params, grid);
    let sx = x.clone();
    Ok(Tensor::from_op_with(gpu, y, x.shape().clone(), &[x], |y| {
        // The saved output gives sigmoid', tanh' and exp' without recomputing them.
        let sy = y.clone();
        Box::new(move |dy: &Tensor, _: &[bool]| Ok(vec![Some(unary_backward(&sx, &sy, dy, act)?)]))
    }))
}

/// `dx = dy * f'(x)` of the activation `act`, from its input `x` and output `y` (the
/// `unary_backward` kernel); shaped like `x`. An op of its own, recorded when recording is on
/// (inside [`crate::autograd::grad`] with `create_graph`), with inputs (x, y, dy):
/// d/d(dy) = ddx f'(x) (this kernel again), d/dy = ddx dy df'/dy
/// ([`Activation::derivative_in_y`]), d/dx = 0 (f' reads x only through its sign).
pub(crate) fn unary_backward(
    x: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    let gpu = dy.gpu();
    let n = x.numel();
    let dx = Tensor::alloc(gpu, "unary_backward", n)?;
    Kernel::UnaryBackward.dispatch(
        gpu,
        &[x.storage(), y.storage(), dy.storage(), &dx],
        &act.unary_params(n),
        grid_1d((n as u64).div_ceil(4), WORKGROUP_1D),
    );
    let (sx, sy, sdy) = (x.clone(), y.clone(), dy.clone());
    let backward = Box::new(
        move |ddx: &Tensor, wanted: &[bool]| -> Result<Vec<Option<Tensor>>> {
            let d_y = if wanted[1] {
                act.derivative_in_y(&sy, &ddx.mul(&sdy)?)?
            } else {
                None
            };
            let d_dy = if wanted[2] {
                Some(unary_backward(&sx, &sy, ddx, act)?)
            } else {
                None
            };
            Ok(vec![None, d_y, d_dy])
        },
    );
    Ok(Tensor::from_op(
        gpu,
        dx,
        x.shape().clone(),
        &[x, y, dy],
        backward,
    ))
}

/// How `b` is broadcast against `a`: returns `b_len` (elements of `b` read cyclically).
fn broadcast_len(op: &'static str, a: &Tensor, b: &Tensor) -> Result<usize> {
    if a.shape() == b.shape() {
        return Ok(a.numel());
    }
    if b.numel() == 1 {
        return Ok(1);
    }
    let row = a.shape().last();
    let b_is_row = b.numel() == row && b.dims().iter().rev().skip(1).all(|&d| d == 1);
    if b_is_row && a.numel().is_multiple_of(row) {
        return Ok(row);
    }
    Err(Error::shape(
        op,
        format!(
            "cannot combine {} with {}: the right operand must have the same shape, \
             be a row of the last dimension's length ({row}), or be a scalar",
            a.shape(),
            b.shape()
        ),
    ))
}

/// Sums a per-element gradient `g` (shaped like `a`) down to `b`'s shape.
fn reduce_to(g: Tensor, b: &Tensor, b_len: usize) -> Result<Tensor> {
    if b_len == g.numel() {
        return g.reshape(b.shape().clone());
    }
    g.reshape([g.numel() / b_len, b_len])?
        .sum_axis(0)?
        .reshape(b.shape().clone())
}

fn binary_op(a: &Tensor, b: &Tensor, op: Binary, name: &'static str) -> Result<Tensor> {
    let b_len = broadcast_len(name, a, b)?;
    let gpu = a.gpu();
    let n = a.numel();
    let c = Tensor::alloc(gpu, name, n)?;
    let params = BinaryParams {
        n: n as u32,
        b_len: b_len as u32,
        op: op as u32,
        _pad: 0,
    };
    let grid = grid_1d((n as u64).div_ceil(4), WORKGROUP_1D);
    Kernel::BinaryForward.dispatch(gpu, &[a.storage(), b.storage(), &c], &params, grid);
    let (sa, sb) = (a.clone(), b.clone());
    let backward = Box::new(
        move |dy: &Tensor, wanted: &[bool]| -> Result<Vec<Option<Tensor>>> {
            if crate::autograd::is_grad_enabled() {
                // Recording (a gradient of a gradient): the same rule in recorded ops.
                return binary_backward_recorded(op, &sa, &sb, dy, b_len, wanted);
            }
            match op {
                Binary::Add => Ok(vec![
                    Some(dy.clone()),
                    Some(reduce_to(dy.clone(), &sb, b_len)?),
                ]),
                Binary::Sub => Ok(vec![
                    Some(dy.clone()),
                    Some(reduce_to(dy.scale(-1.0)?, &sb, b_len)?),
                ]),
                Binary::Mul | Binary::Div => {
                    let gpu = dy.gpu();
                    let da = Tensor::alloc(gpu, "binary_backward", n)?;
                    let db = Tensor::alloc(gpu, "binary_backward", n)?;
                    Kernel::BinaryBackward.dispatch(
                        gpu,
                        &[sa.storage(), sb.storage(), dy.storage(), &da, &db],
                        &params,
                        grid,
                    );
                    let wrap = |s| Tensor::from_storage(gpu, s, sa.shape().clone());
                    Ok(vec![Some(wrap(da)), Some(reduce_to(wrap(db), &sb, b_len)?)])
                }
            }
        },
    );
    Ok(Tensor::from_op(
        gpu,
        c,
        a.shape().clone(),
        &[a, b],
        backward,
    ))
}

/// The gradients of `a (op) b` in recorded ops, for [`crate::autograd::grad`] with
/// `create_graph`: mul: `(dy b, dy a)`, div: `(dy / b, -dy a / b^2)`, each summed to b's shape.
fn binary_backward_recorded(
    op: Binary,
    a: &Tensor,
    b: &Tensor,
    dy: &Tensor,
    b_len: usize,
    wanted: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let da = if wanted[0] {
        Some(match op {
            Binary::Add | Binary::Sub => dy.clone(),
            Binary::Mul => dy.mul(b)?,
            Binary::Div => dy.div(b)?,
        })
    } else {
        None
    };
    let db = if wanted[1] {
        let full = match op {
            Binary::Add => dy.clone(),
            Binary::Sub => dy.scale(-1.0)?,
            Binary::Mul => dy.mul(a)?,
            Binary::Div => dy.mul(a)?.div(&b.mul(b)?)?.scale(-1.0)?,
        };
        Some(reduce_to(full, b, b_len)?)
    } else {
        None
    };
    Ok(vec![da, db])
}

impl Tensor {
    /// `self + b`; `b` has the same shape, is a row broadcast over the rows (a bias), or a scalar.
    ///
    /// Errors: [`Error::Shape`] for any other pair of shapes.
    pub fn add(&self, b: &Tensor) -> Result<Tensor> {
        binary_op(self, b, Binary::Add, "add")
    }

    /// `self - b`, broadcasting as [`Tensor::add`].
    pub fn sub(&self, b: &Tensor) -> Result<Tensor> {
        binary_op(self, b, Binary::Sub, "sub")
    }

    /// `self * b` element-wise, broadcasting as [`Tensor::add`].
    pub fn mul(&self, b: &Tensor) -> Result<Tensor> {
        binary_op(self, b, Binary::Mul, "mul")
    }

    /// `self / b` element-wise, broadcasting as [`Tensor::add`].
    pub fn div(&self, b: &Tensor) -> Result<Tensor> {
        binary_op(self, b, Binary::Div, "div")
    }

    /// `activation(self)`, element-wise; the gradient is `dy * activation'` (see
    /// `shaders/activation.wgsl`).
    pub fn activation(&self, activation: Activation) -> Result<Tensor> {
        unary_op(self, activation)
    }

    /// max(x, 0). NOTE: the gradient at exactly 0 is taken as 0, as in PyTorch.
    pub fn relu(&self) -> Result<Tensor> {
        unary_op(self, Activation::Relu)
    }

    /// x for x > 0, `negative_slope * x` otherwise (DCGAN uses 0.2).
    pub fn leaky_relu(&self, negative_slope: f32) -> Result<Tensor> {
        unary_op(self, Activation::LeakyRelu(negative_slope))
    }

    /// The logistic function 1 / (1 + exp(-x)), stable for any x.
    pub fn sigmoid(&self) -> Result<Tensor> {
        unary_op(self, Activation::Sigmoid)
    }

    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Result<Tensor> {
        unary_op(self, Activation::Tanh)
    }

    /// exp(x).
    pub fn exp(&self) -> Result<Tensor> {
        unary_op(self, Activation::Exp)
    }

    /// `alpha * x`.
    pub fn scale(&self, alpha: f32) -> Result<Tensor> {
        unary_op(self, Activation::Affine(alpha, 0.0))
    }

    /// `alpha * x + beta`.
    pub fn affine(&self, alpha: f32, beta: f32) -> Result<Tensor> {
        unary_op(self, Activation::Affine(alpha, beta))
    }

    /// sqrt(max(x, 0)), element-wise. NOTE: the gradient 1 / (2 sqrt(x)) is infinite at 0.
    pub fn sqrt(&self) -> Result<Tensor> {
        unary_op(self, Activation::Sqrt)
    }
}

impl Tensor {
    /// Each row repeated `times` times in a row: `(B, D) -> (B * times, D)`, row `r` at rows
    /// `r * times .. (r + 1) * times` (`torch.repeat_interleave(x, times, dim=0)`). The
    /// gradient sums the copies back.
    ///
    /// Errors: [`Error::Shape`] unless the tensor is a matrix; `times` 0 is refused.
    pub fn repeat_rows(&self, times: usize) -> Result<Tensor> {
        let [rows, dim] = self.dims()[..] else {
            return Err(Error::shape(
                "repeat_rows",
                format!("needs a matrix, got {}", self.shape()),
            ));
        };
        if times == 0 {
            return Err(Error::shape("repeat_rows", "times must be at least 1"));
        }
        let gpu = self.gpu();
        let n = rows * times * dim;
        let y = Tensor::alloc(gpu, "repeat_rows", n)?;
        let params = RepeatParams {
            rows: rows as u32,
            dim: dim as u32,
            times: times as u32,
            _pad: 0,
        };
        Kernel::RepeatRows.dispatch(
            gpu,
            &[self.storage(), &y],
            &params,
            grid_1d(n as u64, WORKGROUP_1D),
        );
        let backward = Box::new(
            move |dy: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
                Ok(vec![Some(dy.reshape([rows, times, dim])?.sum_axis(1)?)])
            },
        );
        Ok(Tensor::from_op(
            gpu,
            y,
            [rows * times, dim].into(),
            &[self],
            backward,
        ))
    }
}

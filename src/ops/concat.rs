//! Channel concatenation and its inverse (kernels in `shaders/concat.wgsl`): the skip
//! connections of a U-Net (Ronneberger et al. 2015; pix2pix's generator, Isola et al. 2017,
//! sec. 3.1), where the decoder's features are concatenated with the encoder's along C.
//!
//! The three ops are linear and each one's backward is another of them, run as a recorded op:
//! concat's backward narrows, narrow's pads, pad's narrows. So their gradients are
//! differentiable in turn ([`crate::autograd::grad`] with `create_graph`: second derivatives
//! pass through them).

use crate::error::{Error, Result};
use crate::gpu::grid_1d;
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::tensor::Tensor;

/// Params of every entry point of `concat.wgsl`: tensors viewed as `(n, channels, inner)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ChannelParams {
    /// Samples N.
    pub n: u32,
    /// concat: channels of `a`; narrow and pad: channels of the wide tensor.
    pub c0: u32,
    /// concat: channels of `b`; narrow and pad: channels of the narrow tensor.
    pub c1: u32,
    /// Values per channel per sample: H * W.
    pub inner: u32,
    /// narrow and pad: the first channel of the window.
    pub start: u32,
    /// Padding to 32 bytes.
    pub _pad: [u32; 3],
}

/// `(N, C, rest...)` -> (N, C, product of rest), or a shape error naming `op` and `what`.
fn ncx(op: &'static str, what: &str, x: &Tensor) -> Result<(usize, usize, usize)> {
    match x.dims() {
        [n, c, rest @ ..] => Ok((*n, *c, rest.iter().product())),
        _ => Err(Error::shape(
            op,
            format!("{what} {} must be (N, C, ...) (NCHW)", x.shape()),
        )),
    }
}

fn dispatch_1d(kernel: Kernel, x: &[&Tensor], y: &Tensor, params: &ChannelParams) {
    let mut buffers: Vec<&crate::gpu::Storage> = x.iter().map(|t| t.storage()).collect();
    buffers.push(y.storage());
    kernel.dispatch(
        y.gpu(),
        &buffers,
        params,
        grid_1d(y.numel() as u64, WORKGROUP_1D),
    );
}

/// Concatenates `a (N, Ca, H, W)` and `b (N, Cb, H, W)` along the channel axis into
/// `(N, Ca + Cb, H, W)` (`torch.cat([a, b], dim=1)`); any trailing dims, equal in both.
/// Gradients flow to both: `da = dy[:, ..Ca]`, `db = dy[:, Ca..]` ([`narrow_channels`]).
///
/// Errors: [`Error::Shape`] unless both are at least `(N, C)` and agree on every axis but 1.
pub fn concat_channels(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    const OP: &str = "concat_channels";
    let (n, ca, inner) = ncx(OP, "a", a)?;
    let (nb, cb, inner_b) = ncx(OP, "b", b)?;
    if nb != n || inner_b != inner || a.dims()[2..] != b.dims()[2..] {
        return Err(Error::shape(
            OP,
            format!(
                "a {} and b {} must agree on every axis but the channels (1)",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let gpu = a.gpu();
    let mut dims = a.dims().to_vec();
    dims[1] = ca + cb;
    let y = Tensor::from_storage(
        gpu,
        Tensor::alloc(gpu, OP, n * (ca + cb) * inner)?,
        dims.into(),
    );
    let params = ChannelParams {
        n: n as u32,
        c0: ca as u32,
        c1: cb as u32,
        inner: inner as u32,
        start: 0,
        _pad: [0; 3],
    };
    dispatch_1d(Kernel::ConcatChannels, &[a, b], &y, &params);
    let backward = Box::new(
        move |dy: &Tensor, wanted: &[bool]| -> Result<Vec<Option<Tensor>>> {
            let da = if wanted[0] {
                Some(narrow_channels(dy, 0, ca)?)
            } else {
                None
            };
            let db = if wanted[1] {
                Some(narrow_channels(dy, ca, cb)?)
            } else {
                None
            };
            Ok(vec![da, db])
        },
    );
    Ok(Tensor::record_op(&y, &[a, b], backward))
}

/// Channels `start .. start + len` of `x (N, C, H, W)`: `(N, len, H, W)` (`x[:, start:start+len]`,
/// copied). The gradient is `dy` padded with zeros back to C channels ([`pad_channels`]).
///
/// Errors: [`Error::Shape`] if `x` is not at least `(N, C)` or the window leaves `0..C`.
pub fn narrow_channels(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    const OP: &str = "narrow_channels";
    let (n, c, inner) = ncx(OP, "x", x)?;
    if start.checked_add(len).is_none_or(|end| end > c) {
        return Err(Error::shape(
            OP,
            format!(
                "channels {start}..{} are outside x {} ({c} channels)",
                start.saturating_add(len),
                x.shape()
            ),
        ));
    }
    let gpu = x.gpu();
    let mut dims = x.dims().to_vec();
    dims[1] = len;
    let y = Tensor::from_storage(gpu, Tensor::alloc(gpu, OP, n * len * inner)?, dims.into());
    let params = ChannelParams {
        n: n as u32,
        c0: c as u32,
        c1: len as u32,
        inner: inner as u32,
        start: start as u32,
        _pad: [0; 3],
    };
    dispatch_1d(Kernel::NarrowChannels, &[x], &y, &params);
    let backward = Box::new(
        move |dy: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(pad_channels(dy, start, c)?)])
        },
    );
    Ok(Tensor::record_op(&y, &[x], backward))
}

/// `x (N, len, H, W)` placed at channels `start .. start + len` of a zero `(N, total, H, W)`:
/// the backward of [`narrow_channels`], and its inverse. The gradient is
/// `dy[:, start:start+len]` ([`narrow_channels`]).
///
/// Errors: [`Error::Shape`] if `x` is not at least `(N, C)` or the window leaves `0..total`.
pub fn pad_channels(x: &Tensor, start: usize, total: usize) -> Result<Tensor> {
    const OP: &str = "pad_channels";
    let (n, len, inner) = ncx(OP, "x", x)?;
    if start.checked_add(len).is_none_or(|end| end > total) {
        return Err(Error::shape(
            OP,
            format!(
                "x {} placed at channel {start} does not fit in {total} channels",
                x.shape()
            ),
        ));
    }
    let gpu = x.gpu();
    let mut dims = x.dims().to_vec();
    dims[1] = total;
    let y = Tensor::from_storage(gpu, Tensor::alloc(gpu, OP, n * total * inner)?, dims.into());
    let params = ChannelParams {
        n: n as u32,
        c0: total as u32,
        c1: len as u32,
        inner: inner as u32,
        start: start as u32,
        _pad: [0; 3],
    };
    dispatch_1d(Kernel::PadChannels, &[x], &y, &params);
    let backward = Box::new(
        move |dy: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(narrow_channels(dy, start, len)?)])
        },
    );
    Ok(Tensor::record_op(&y, &[x], backward))
}

/// Splits `x (N, C, H, W)` at channel `at` into `(x[:, ..at], x[:, at..])`
/// (`torch.split(x, [at, C - at], dim=1)`): two [`narrow_channels`], each with its gradient.
///
/// Errors: [`Error::Shape`] if `x` is not at least `(N, C)` or `at > C`.
pub fn split_channels(x: &Tensor, at: usize) -> Result<(Tensor, Tensor)> {
    let (_, c, _) = ncx("split_channels", "x", x)?;
    if at > c {
        return Err(Error::shape(
            "split_channels",
            format!("cannot split x {} at channel {at}", x.shape()),
        ));
    }
    Ok((narrow_channels(x, 0, at)?, narrow_channels(x, at, c - at)?))
}

//! `Tensor`: a shape, f32 storage resident on the GPU, and a place in the autodiff graph.

use std::cell::Cell;
use std::rc::Rc;

use crate::autograd;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Storage, block_on, grid_1d};
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::shape::Shape;

/// Process-unique identity of a tensor (the key of [`crate::Gradients`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl std::fmt::Display for TensorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t{}", self.0)
    }
}

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
}

/// The id the next tensor will get (for [`autograd::tape_mark`]): ids only grow.
pub(crate) fn next_tensor_id() -> TensorId {
    NEXT_ID.with(|n| TensorId(n.get()))
}

fn next_id() -> TensorId {
    NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        TensorId(id)
    })
}

struct Inner {
    id: TensorId,
    shape: Shape,
    storage: Rc<Storage>,
    gpu: Gpu,
    requires_grad: bool,
}

/// An f32 tensor in GPU memory, row-major (NCHW for images).
///
/// Cloning is cheap and shares the data. Ops are methods (`a.matmul(&b)`,
/// `x.relu()`), defined beside their backward rules in `src/ops/`. A tensor
/// *requires grad* if it is a parameter ([`Tensor::requires_grad_`]) or was
/// computed, with recording on, from one that does.
#[derive(Clone)]
pub struct Tensor {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor(id={}, shape={}, requires_grad={})",
            self.inner.id.0, self.inner.shape, self.inner.requires_grad
        )
    }
}

/// Params of `fill` in `shaders/elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FillParams {
    /// Number of elements.
    pub n: u32,
    /// The value written.
    pub value: f32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 2],
}

impl Tensor {
    /// Wraps freshly written storage as a tensor, recording it on the tape if any
    /// input requires grad. Used by every op.
    #[track_caller]
    pub(crate) fn from_op(
        gpu: &Gpu,
        storage: Storage,
        shape: Shape,
        inputs: &[&Tensor],
        backward: autograd::BackwardFn,
    ) -> Tensor {
        let requires_grad = autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let t = Tensor::wrap(gpu, Rc::new(storage), shape, requires_grad);
        autograd::record(&t, inputs, backward);
        t
    }

    /// Like [`Tensor::from_op`], for backward rules that need the op's own output
    /// (sigmoid' = y (1 - y)): `make_backward` receives the output tensor itself, attached to
    /// the graph, so that a rule run with recording on ([`autograd::grad`] with `create_graph`)
    /// records its dependence on y (the second derivative flows back through y's own node).
    #[track_caller]
    pub(crate) fn from_op_with(
        gpu: &Gpu,
        storage: Storage,
        shape: Shape,
        inputs: &[&Tensor],
        make_backward: impl FnOnce(&Tensor) -> autograd::BackwardFn,
    ) -> Tensor {
        let requires_grad = autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let t = Tensor::wrap(gpu, Rc::new(storage), shape, requires_grad);
        if requires_grad {
            autograd::record(&t, inputs, make_backward(&t));
        }
        t
    }

    /// Puts `value`, computed without recording by a composite op (conv2d), on the
    /// tape as the output of `inputs` with one backward rule for the whole op.
    #[track_caller]
    pub(crate) fn record_op(
        value: &Tensor,
        inputs: &[&Tensor],
        backward: autograd::BackwardFn,
    ) -> Tensor {
        let requires_grad = autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let t = Tensor::wrap(
            value.gpu(),
            value.inner.storage.clone(),
            value.shape().clone(),
            requires_grad,
        );
        autograd::record(&t, inputs, backward);
        t
    }

    /// Wraps storage written by a kernel as a tensor outside the graph (gradients, buffers).
    pub(crate) fn from_storage(gpu: &Gpu, storage: Storage, shape: Shape) -> Tensor {
        Tensor::wrap(gpu, Rc::new(storage), shape, false)
    }

    fn wrap(gpu: &Gpu, storage: Rc<Storage>, shape: Shape, requires_grad: bool) -> Tensor {
        Tensor {
            inner: Rc::new(Inner {
                id: next_id(),
                shape,
                storage,
                gpu: gpu.clone(),
                requires_grad,
            }),
        }
    }

    /// A tensor of `shape` over the first `shape.numel()` values of this one's storage, outside
    /// the graph: the autotuner times kernels on such leading slices (ops/tune.rs).
    pub(crate) fn prefix_view(&self, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        debug_assert!(shape.numel() <= self.numel());
        Tensor::wrap(self.gpu(), self.inner.storage.clone(), shape, false)
    }

    /// Storage for `numel` f32 values, uninitialised. Errors if it exceeds the
    /// adapter's largest storage binding.
    pub(crate) fn alloc(gpu: &Gpu, op: &'static str, numel: usize) -> Result<Storage> {
        let bytes = numel as u64 * 4;
        if bytes > gpu.max_binding_bytes() {
            return Err(Error::Invalid(format!(
                "{op}: {numel} elements ({bytes} bytes) exceed this adapter's largest storage binding ({} bytes)",
                gpu.max_binding_bytes()
            )));
        }
        Ok(gpu.alloc(bytes))
    }

    /// Uploads `data` as a tensor of `shape`.
    ///
    /// Errors: [`Error::Shape`] if `data.len()` differs from the shape's element count.
    pub fn from_slice(gpu: &Gpu, data: &[f32], shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::shape(
                "from_slice",
                format!(
                    "{} values cannot fill shape {shape} ({} elements)",
                    data.len(),
                    shape.numel()
                ),
            ));
        }
        Tensor::alloc(gpu, "from_slice", data.len())?;
        let storage = gpu.upload(bytemuck::cast_slice(data));
        Ok(Tensor::wrap(gpu, Rc::new(storage), shape, false))
    }

    /// A tensor of `shape` filled with `value` (the `fill` kernel).
    pub fn full(gpu: &Gpu, shape: impl Into<Shape>, value: f32) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.numel();
        let out = Tensor::alloc(gpu, "full", n)?;
        let params = FillParams {
            n: n as u32,
            value,
            _pad: [0; 2],
        };
        // Four elements per invocation (see shaders/elementwise.wgsl).
        Kernel::Fill.dispatch(
            gpu,
            &[&out],
            &params,
            grid_1d((n as u64).div_ceil(4), WORKGROUP_1D),
        );
        Ok(Tensor::wrap(gpu, Rc::new(out), shape, false))
    }

    /// A tensor of zeros.
    pub fn zeros(gpu: &Gpu, shape: impl Into<Shape>) -> Result<Tensor> {
        Tensor::full(gpu, shape, 0.0)
    }

    /// This tensor as a new tensor that requires grad, sharing the data: a parameter leaf, or
    /// an output of an op with several outputs that records itself with
    /// `autograd::record_multi`.
    pub fn requires_grad_(self) -> Tensor {
        Tensor::wrap(
            &self.inner.gpu,
            self.inner.storage.clone(),
            self.inner.shape.clone(),
            true,
        )
    }

    /// The same data cut off from the graph: gradients do not flow through it.
    pub fn detach(&self) -> Tensor {
        Tensor::wrap(
            &self.inner.gpu,
            self.inner.storage.clone(),
            self.inner.shape.clone(),
            false,
        )
    }

    /// Copies the data into new storage (not recorded: a detached copy).
    pub fn deep_clone(&self) -> Result<Tensor> {
        let out = Tensor::alloc(self.gpu(), "deep_clone", self.numel())?;
        self.gpu()
            .copy(self.storage(), &out, self.numel() as u64 * 4);
        Ok(Tensor::wrap(
            self.gpu(),
            Rc::new(out),
            self.shape().clone(),
            false,
        ))
    }

    /// Overwrites this tensor's data with `src`'s, in stream order (same element count).
    /// Used to load checkpoints into parameters without changing their identity.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        if src.numel() != self.numel() {
            return Err(Error::shape(
                "copy_from",
                format!("source {} and destination {}", src.shape(), self.shape()),
            ));
        }
        self.gpu()
            .copy(src.storage(), self.storage(), self.numel() as u64 * 4);
        Ok(())
    }

    /// The same data viewed with another shape of equal element count; gradients
    /// flow back reshaped.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {} as {shape}", self.shape()),
            ));
        }
        let requires_grad = autograd::is_grad_enabled() && self.requires_grad();
        let out = Tensor::wrap(self.gpu(), self.inner.storage.clone(), shape, requires_grad);
        let input_shape = self.shape().clone();
        autograd::record(
            &out,
            &[self],
            Box::new(move |dy: &Tensor, _: &[bool]| {
                Ok(vec![Some(dy.reshape(input_shape.clone())?)])
            }),
        );
        Ok(out)
    }

    /// Reads the data back to the host (waits for the GPU): the one async host read.
    pub async fn to_vec_async(&self) -> Result<Vec<f32>> {
        let bytes = self
            .gpu()
            .read_async(self.storage(), self.numel() as u64 * 4)
            .await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// Blocking form of [`Tensor::to_vec_async`].
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        block_on(self.to_vec_async())
    }

    /// The value of a one-element tensor (waits for the GPU).
    ///
    /// Errors: [`Error::Shape`] if it has more elements; [`Error::Gpu`] if the read fails.
    pub async fn item_async(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!("needs one element, got shape {}", self.shape()),
            ));
        }
        Ok(self.to_vec_async().await?[0])
    }

    /// Blocking form of [`Tensor::item_async`].
    pub fn item(&self) -> Result<f32> {
        block_on(self.item_async())
    }

    /// The tensor's identity.
    pub fn id(&self) -> TensorId {
        self.inner.id
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.inner.shape
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        self.inner.shape.dims()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.inner.shape.numel()
    }

    /// Whether gradients flow to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad
    }

    /// The GPU context the tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.inner.gpu
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.inner.storage
    }
}

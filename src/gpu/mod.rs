//! The GPU layer: one context (adapter, device, queue), the pipeline cache, the buffer pool,
//! command batching and host reads.
//!
//! It knows neither ops nor kernels. A kernel reaches it as a [`KernelDesc`] (a shader module's
//! name and source, an entry point, a binding signature) plus override constants; the table that
//! says which kernels exist, where their code is and what they bind lives one layer up, in
//! `ops/kernels.rs`, beside the ops that use them. State that the layers above keep per context
//! (the matmul operand textures, the random-number counter) sits in [`Gpu::extension`], a slot
//! map keyed by type that this layer stores without reading.
//!
//! | file | concern |
//! | --- | --- |
//! | `context.rs` | adapter selection, device and queue, limits, [`Capabilities`]; [`Gpu::new`] |
//! | `pipeline.rs` | [`KernelDesc`]; shader modules, bind-group layouts and pipelines, each built once |
//! | `record.rs` | batching: `Gpu::dispatch`, bind groups, the Params arena, uploads, copies, [`Gpu::flush`] |
//! | `readback.rs` | the one async host read, the one blocking wrapper ([`block_on`]), [`Gpu::synchronize`], GPU timestamps |
//! | `buffer.rs` | the buffer pool and the storage a tensor owns |
//!
//! One [`Gpu`] is made per process and shared (it is a cheap `Rc` handle). Ops record
//! dispatches into one shared command encoder; nothing reaches the GPU until [`Gpu::flush`]
//! submits it: a training step records all its dispatches (and the upload of its batch) and
//! submits once. Host reads (`Gpu::read_async`) flush first.

mod buffer;
mod context;
mod pipeline;
mod readback;
mod record;

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use buffer::BufferPool;
pub(crate) use buffer::Storage;
pub use context::{ADAPTER_ENV, AdapterSummary, Capabilities};
use pipeline::PipelineCache;
pub use pipeline::{Bindings, KernelDesc};
pub use readback::block_on;
use record::Batch;
pub use record::{MAX_PARAMS_BYTES, Texture, grid_1d};

/// Counters of the work the engine has done: the figures `deepgen bench` and the
/// tests use to check that a training step is one submit with no allocations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Queue submits.
    pub submits: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Bind groups created (cache misses).
    pub bind_groups_created: u64,
    /// Storage buffers created (buffer pool misses).
    pub buffers_created: u64,
    /// Pipelines compiled (kernel cache misses).
    pub pipelines_compiled: u64,
    /// Host-to-GPU uploads.
    pub uploads: u64,
    /// GPU-to-host reads (each one waits for the GPU).
    pub readbacks: u64,
}

struct GpuInner {
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    /// What the adapter can do (see [`Capabilities`]).
    capabilities: Capabilities,
    pipelines: PipelineCache,
    pool: Rc<RefCell<BufferPool>>,
    batch: RefCell<Batch>,
    bind_groups: RefCell<HashMap<Vec<u64>, wgpu::BindGroup>>,
    /// Uniform buffer holding the Params of every dispatch of one submit, one slot each.
    arena: wgpu::Buffer,
    /// Bytes between arena slots (the adapter's uniform offset alignment, at least MAX_PARAMS_BYTES).
    slot: u64,
    /// Staging ring for uploads: filled by `Queue::write_buffer`, copied in stream order.
    upload_ring: wgpu::Buffer,
    stats: Cell<Stats>,
    /// Ids of textures made by [`Gpu::create_texture`] (a range apart from the buffers' ids:
    /// both key the bind-group cache).
    next_texture_id: Cell<u64>,
    /// See [`Gpu::extension`].
    extensions: RefCell<HashMap<TypeId, Rc<dyn Any>>>,
}

/// Handle to the GPU context. Cloning is cheap and shares the context.
#[derive(Clone)]
pub struct Gpu {
    inner: Rc<GpuInner>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.inner.adapter.get_info().name)
    }
}

impl Gpu {
    /// Work counters since the context was made.
    pub fn stats(&self) -> Stats {
        let mut s = self.inner.stats.get();
        s.buffers_created = self.inner.pool.borrow().created;
        s.pipelines_compiled = self.inner.pipelines.compiled.get();
        s
    }

    fn bump(&self, f: impl FnOnce(&mut Stats)) {
        let mut s = self.inner.stats.get();
        f(&mut s);
        self.inner.stats.set(s);
    }

    /// This context's value of `T`, made with `T::default()` on first use: per-context state
    /// of the layers above, which this layer keeps without knowing what it is (a slot map
    /// keyed by type). The ops keep the matmul operand-texture cache and the random-number
    /// counter here. `T` holds its own interior mutability (`Cell`, `RefCell`).
    pub fn extension<T: Default + 'static>(&self) -> Rc<T> {
        let slot = self
            .inner
            .extensions
            .borrow_mut()
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Rc::new(T::default()))
            .clone();
        slot.downcast::<T>()
            .unwrap_or_else(|_| unreachable!("each slot holds the type of its key"))
    }
}

//! The context: adapter selection, the device and its queue, limits and capabilities.
//!
//! wgpu exposes every driver it finds as an *adapter*. We rank them (a discrete
//! GPU before an integrated one, both before a CPU implementation such as
//! Mesa's lavapipe) and open a *device* (our handle for allocations and
//! pipelines) and its *queue* (where command buffers are submitted) on the best.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::buffer::BufferPool;
use super::pipeline::PipelineCache;
use super::record::{ARENA_SLOTS, Batch, MAX_PARAMS_BYTES, UPLOAD_RING_BYTES};
use super::{Gpu, GpuInner, Stats, block_on};
use crate::error::{Error, Result};

/// Environment variable that picks an adapter: every word of its value (case-insensitive)
/// must occur in the adapter's name or its backend, e.g. `DEEPGEN_ADAPTER=nvidia`,
/// `DEEPGEN_ADAPTER=llvmpipe` (the first llvmpipe), `DEEPGEN_ADAPTER="llvmpipe vulkan"` or
/// `DEEPGEN_ADAPTER="llvmpipe gl"` (Mesa exposes its CPU rasteriser through both backends
/// under one name; the backend tells them apart).
pub const ADAPTER_ENV: &str = "DEEPGEN_ADAPTER";

/// What the adapter can do, as the layers above need it to choose kernels and tune them.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// Discrete, integrated, CPU, ...
    pub device_type: wgpu::DeviceType,
    /// Whether the device was opened with subgroup operations.
    pub subgroups: bool,
    /// Smallest subgroup the adapter may run, lanes.
    pub subgroup_min_size: u32,
    /// Largest subgroup the adapter may run, lanes.
    pub subgroup_max_size: u32,
    /// Whether `rgba32float` textures can be bound as read-only storage textures.
    pub rgba32float_storage_read: bool,
    /// Largest width or height of a 2-D texture, texels.
    pub max_texture_dimension_2d: u32,
}

/// What `deepgen info` prints about the adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Backend: Vulkan, Metal, Dx12, Gl or BrowserWebGpu.
    pub backend: String,
    /// Device type: DiscreteGpu, IntegratedGpu, Cpu, ...
    pub device_type: String,
    /// Driver name and version string.
    pub driver: String,
    /// Largest storage buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Largest workgroup, invocations.
    pub max_compute_invocations_per_workgroup: u32,
    /// Largest workgroup extents (x, y, z).
    pub max_compute_workgroup_size: [u32; 3],
    /// Largest dispatch per dimension, workgroups.
    pub max_compute_workgroups_per_dimension: u32,
    /// Workgroup shared memory, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Whether GPU timestamp queries are available (used by `deepgen bench`).
    pub timestamp_query: bool,
}

/// Rank of an adapter type: lower is preferred.
fn rank(kind: wgpu::DeviceType) -> u8 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Rank of a backend: the native compute APIs before OpenGL, which lacks features we use.
fn backend_rank(backend: wgpu::Backend) -> u8 {
    match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::BrowserWebGpu => 1,
        _ => 2,
    }
}

/// Picks the best adapter, or the one whose name contains `$DEEPGEN_ADAPTER`.
///
/// Errors: [`Error::NoAdapter`] when wgpu finds none at all (with the install hint);
/// [`Error::AdapterNotFound`] when the environment variable matches none.
async fn select_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
    let mut adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
    // The GL backend cannot run our compute shaders; keep it only as a last resort.
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (backend_rank(info.backend), rank(info.device_type))
    });
    if adapters.is_empty() {
        return Err(Error::NoAdapter);
    }
    if let Ok(wanted) = std::env::var(ADAPTER_ENV)
        && !wanted.trim().is_empty()
    {
        let words: Vec<String> = wanted.split_whitespace().map(str::to_lowercase).collect();
        let label = |a: &wgpu::Adapter| {
            let info = a.get_info();
            format!("{} [{:?}]", info.name, info.backend)
        };
        let names: Vec<String> = adapters.iter().map(label).collect();
        return match adapters.into_iter().find(|a| {
            let haystack = label(a).to_lowercase();
            words.iter().all(|w| haystack.contains(w.as_str()))
        }) {
            Some(a) => Ok(a),
            None => Err(Error::AdapterNotFound {
                wanted,
                available: names.join(", "),
            }),
        };
    }
    Ok(adapters.remove(0))
}

/// Opens the device with the adapter's own limits (so large buffers fit) and, where
/// the adapter has them, timestamp queries (used by `deepgen bench`) and subgroup
/// operations (used by the fast matmul path).
async fn open_device(adapter: &wgpu::Adapter) -> Result<(wgpu::Device, wgpu::Queue)> {
    let wanted = wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::SUBGROUP;
    let desc = wgpu::DeviceDescriptor {
        label: Some("deepgen"),
        required_features: adapter.features() & wanted,
        required_limits: adapter.limits(),
        experimental_features: Default::default(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: Default::default(),
    };
    adapter
        .request_device(&desc)
        .await
        .map_err(|e| Error::Device {
            adapter: adapter.get_info().name,
            reason: e.to_string(),
        })
}

/// What the opened device and its adapter can do.
fn capabilities(adapter: &wgpu::Adapter, device: &wgpu::Device) -> Capabilities {
    let info = adapter.get_info();
    let rgba32float = adapter.get_texture_format_features(wgpu::TextureFormat::Rgba32Float);
    Capabilities {
        device_type: info.device_type,
        subgroups: device.features().contains(wgpu::Features::SUBGROUP),
        subgroup_min_size: info.subgroup_min_size,
        subgroup_max_size: info.subgroup_max_size,
        rgba32float_storage_read: rgba32float
            .allowed_usages
            .contains(wgpu::TextureUsages::STORAGE_BINDING)
            && rgba32float
                .flags
                .contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_ONLY),
        max_texture_dimension_2d: device.limits().max_texture_dimension_2d,
    }
}

impl Gpu {
    /// Opens the best adapter (see [`ADAPTER_ENV`] to choose another). Blocks: the native
    /// wrapper of [`Gpu::new_async`].
    ///
    /// Errors: [`Error::NoAdapter`] with the driver to install, [`Error::AdapterNotFound`],
    /// [`Error::Device`].
    pub fn new() -> Result<Gpu> {
        block_on(Self::new_async())
    }

    /// Async form of [`Gpu::new`], for callers that must not block (the browser).
    pub async fn new_async() -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = select_adapter(&instance).await?;
        let (device, queue) = open_device(&adapter).await?;
        let limits = device.limits();
        let slot = (limits.min_uniform_buffer_offset_alignment as u64).max(MAX_PARAMS_BYTES);
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deepgen params arena"),
            size: slot * ARENA_SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let upload_ring = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deepgen upload ring"),
            size: UPLOAD_RING_BYTES,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let capabilities = capabilities(&adapter, &device);
        Ok(Gpu {
            inner: Rc::new(GpuInner {
                adapter,
                device,
                queue,
                capabilities,
                pipelines: PipelineCache::default(),
                pool: Rc::new(RefCell::new(BufferPool::default())),
                batch: RefCell::new(Batch::default()),
                bind_groups: RefCell::new(HashMap::new()),
                arena,
                slot,
                upload_ring,
                stats: Cell::new(Stats::default()),
                next_texture_id: Cell::new(1 << 48),
                extensions: RefCell::new(HashMap::new()),
            }),
        })
    }

    /// The wgpu device (for benchmarks and advanced use).
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// What the adapter can do (device type, subgroup sizes, storage-texture support).
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// Largest storage binding, bytes; ops refuse tensors larger than this.
    pub fn max_binding_bytes(&self) -> u64 {
        self.inner.device.limits().max_storage_buffer_binding_size
    }

    /// Adapter, backend, driver and the limits that matter for compute.
    pub fn summary(&self) -> AdapterSummary {
        let info = self.inner.adapter.get_info();
        let l = self.inner.device.limits();
        AdapterSummary {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size: [
                l.max_compute_workgroup_size_x,
                l.max_compute_workgroup_size_y,
                l.max_compute_workgroup_size_z,
            ],
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            timestamp_query: self
                .inner
                .device
                .features()
                .contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }
}

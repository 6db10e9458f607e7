//! The GPU context: adapter, device and queue; kernel cache; buffer pool; command batching.
//!
//! One [`Gpu`] is made per process and shared (it is a cheap `Rc` handle).
//! Ops do not talk to wgpu directly: they call [`Gpu::dispatch`], which
//!
//! 1. fetches the kernel's pipeline from the cache (compiling it the first time),
//! 2. fetches or creates a bind group for exactly these buffers (cached by buffer id),
//! 3. writes the kernel's `Params` into a slot of the per-submit uniform arena,
//! 4. records the dispatch into the open compute pass of the shared command encoder.
//!
//! Nothing reaches the GPU until [`Gpu::flush`] submits the encoder: a
//! training step records all its dispatches (and the upload of its batch)
//! and submits once. Host reads ([`Gpu::read_async`]) flush first.

mod buffer;
mod device;
pub mod kernel;
mod timer;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

pub(crate) use buffer::Storage;
use buffer::{BufferPool, RawBuffer};
pub use device::ADAPTER_ENV;
use kernel::KernelCache;
pub use kernel::{Kernel, KernelSpec, ShaderFile};
pub(crate) use timer::TimestampPair;

use crate::error::{Error, Result};

/// Largest Params struct any kernel uses, in bytes (a test checks every shader fits).
pub const MAX_PARAMS_BYTES: u64 = 64;
/// Uniform slots per submit; a batch that needs more is submitted early.
const ARENA_SLOTS: u64 = 2048;
/// Bytes of the upload staging ring; larger uploads get a buffer of their own.
const UPLOAD_RING_BYTES: u64 = 8 << 20;
/// Bind groups kept before the cache is cleared.
const MAX_BIND_GROUPS: usize = 8192;
/// Invocations per workgroup of the one-dimensional kernels (elementwise, losses...).
pub const WORKGROUP_1D: u32 = 256;

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

/// Which matmul kernels the ops use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulPath {
    /// `shaders/matmul.wgsl`: storage buffers, any adapter, any size.
    Generic,
    /// `shaders/matmul_texture.wgsl`: operands copied into rgba32float textures, 8-lane subgroups;
    /// used for shapes whose stored operands have a contiguous dimension divisible by 4.
    Texture,
}

/// Environment variable that forces the generic matmul (`DEEPGEN_MATMUL=generic`).
pub const MATMUL_ENV: &str = "DEEPGEN_MATMUL";

/// Texels of padding after each matrix row in [`TexLayout::Rows`]: 64 bytes, so that a row
/// pitch that is a multiple of 4 KiB (e.g. 1024 floats) does not map every row of a column
/// strip to the same cache set. At 1024^3 this took `matmul_nt` from 28 to 59 GFLOP/s on
/// lavapipe (benches/NOTES.md).
pub(crate) const ROW_PAD_TEXELS: usize = 4;

/// How a matrix sits in an rgba32float operand texture of `matmul_texture.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TexLayout {
    /// Texel t holds floats 4t..4t+3 of the row-major matrix, 2^shift texels per texture row:
    /// any shape fits, at the cost of a mask and a shift per load.
    Flat {
        /// log2 of the texture's width in texels.
        shift: u32,
    },
    /// Matrix row r is texture row r (texels 0..cols/4, then [`ROW_PAD_TEXELS`] of padding):
    /// a texel's coordinates are (column / 4, row) with no arithmetic.
    Rows,
}

/// A texture kept for operand copies of one shape (reused by every matmul of that shape).
pub(crate) struct TextureSlot {
    view: wgpu::TextureView,
    id: u64,
}

/// A matrix copied into a matmul operand texture, and its layout.
pub(crate) struct OperandTexture {
    slot: std::rc::Rc<TextureSlot>,
    /// How the matrix sits in the texture.
    pub layout: TexLayout,
}

/// Commands recorded but not yet submitted.
#[derive(Default)]
struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    /// The open compute pass; every dispatch until the next copy goes into it.
    pass: Option<wgpu::ComputePass<'static>>,
    /// Host copy of the uniform arena for this submit.
    params: Vec<u8>,
    /// Bytes of the upload ring used in this submit.
    upload_cursor: u64,
}

struct GpuInner {
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    kernels: KernelCache,
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
    /// (seed, counter) of the GPU random generator (Philox-4x32-10).
    rng: Cell<(u64, u64)>,
    /// Whether the adapter can run `matmul_texture.wgsl`.
    texture_matmul_supported: bool,
    /// The matmul path in use.
    matmul_path: Cell<MatmulPath>,
    /// Operand textures by (width, height, operand slot), reused by every matmul of that size.
    textures: RefCell<HashMap<(u32, u32, u8), std::rc::Rc<TextureSlot>>>,
    next_texture_id: Cell<u64>,
    /// See [`Gpu::row_workgroup`].
    row_workgroup: u32,
    /// See [`Gpu::matmul_workgroup`].
    matmul_workgroup: u32,
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
    /// Opens the best adapter (see [`ADAPTER_ENV`] to choose another). Blocks; native only.
    ///
    /// Errors: [`Error::NoAdapter`] with the driver to install, [`Error::AdapterNotFound`],
    /// [`Error::Device`].
    pub fn new() -> Result<Gpu> {
        pollster::block_on(Self::new_async())
    }

    /// Async form of [`Gpu::new`], for callers that must not block (the browser).
    pub async fn new_async() -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = device::select_adapter(&instance).await?;
        let (device, queue) = device::open_device(&adapter).await?;
        let limits = device.limits();
        let slot = (limits.min_uniform_buffer_offset_alignment as u64).max(MAX_PARAMS_BYTES);
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deepgen params arena"),
            size: slot * ARENA_SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // The fast matmul needs subgroups of exactly 8 lanes (its tiling assumes them) and
        // read-only rgba32float storage textures.
        let info = adapter.get_info();
        let texture_ok = adapter
            .get_texture_format_features(wgpu::TextureFormat::Rgba32Float)
            .allowed_usages
            .contains(wgpu::TextureUsages::STORAGE_BINDING)
            && adapter
                .get_texture_format_features(wgpu::TextureFormat::Rgba32Float)
                .flags
                .contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_ONLY);
        let texture_matmul_supported = device.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == 8
            && info.subgroup_max_size == 8
            && texture_ok;
        let forced_generic =
            std::env::var(MATMUL_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("generic"));
        let matmul_path = if texture_matmul_supported && !forced_generic {
            MatmulPath::Texture
        } else {
            MatmulPath::Generic
        };
        // A power of two (the reductions halve it), at least 8.
        let row_workgroup = if info.device_type == wgpu::DeviceType::Cpu {
            info.subgroup_max_size.clamp(8, 64).next_power_of_two()
        } else {
            64
        };
        let upload_ring = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deepgen upload ring"),
            size: UPLOAD_RING_BYTES,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Gpu {
            inner: Rc::new(GpuInner {
                adapter,
                device,
                queue,
                kernels: KernelCache::default(),
                pool: Rc::new(RefCell::new(BufferPool::default())),
                batch: RefCell::new(Batch::default()),
                bind_groups: RefCell::new(HashMap::new()),
                arena,
                slot,
                upload_ring,
                stats: Cell::new(Stats::default()),
                rng: Cell::new((0x5eed, 0)),
                texture_matmul_supported,
                matmul_path: Cell::new(matmul_path),
                textures: RefCell::new(HashMap::new()),
                next_texture_id: Cell::new(1 << 48),
                row_workgroup,
                matmul_workgroup: if info.device_type == wgpu::DeviceType::Cpu {
                    8
                } else {
                    16
                },
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

    /// Work counters since the context was made.
    pub fn stats(&self) -> Stats {
        let mut s = self.inner.stats.get();
        s.buffers_created = self.inner.pool.borrow().created;
        s.pipelines_compiled = self.inner.kernels.compiled.get();
        s
    }

    fn bump(&self, f: impl FnOnce(&mut Stats)) {
        let mut s = self.inner.stats.get();
        f(&mut s);
        self.inner.stats.set(s);
    }

    /// Seeds the GPU random generator (used by `randn`, hence the reparameterization trick).
    pub fn manual_seed(&self, seed: u64) {
        self.inner.rng.set((seed, 0));
    }

    /// Reserves `n` counter values of the generator: returns (seed, first counter).
    pub(crate) fn next_random_offset(&self, n: u64) -> (u64, u64) {
        let (seed, counter) = self.inner.rng.get();
        self.inner.rng.set((seed, counter + n));
        (seed, counter)
    }

    /// Invocations per workgroup of the reduction kernels (the `ROW_WG` override constant of
    /// loss.wgsl, reduce.wgsl and norm.wgsl): one subgroup on CPU adapters, where every
    /// barrier is a context switch per subgroup; 64 elsewhere.
    pub fn row_workgroup(&self) -> u32 {
        self.inner.row_workgroup
    }

    /// Side of the square workgroup of the generic matmul (`WG` in matmul.wgsl): 8 on CPU
    /// adapters, 16 elsewhere; each invocation computes a 4 x 4 block of C.
    pub fn matmul_workgroup(&self) -> u32 {
        self.inner.matmul_workgroup
    }

    /// The override constants that set [`Gpu::row_workgroup`] in a reduction kernel.
    pub(crate) fn row_constants(&self) -> [(&'static str, f64); 1] {
        [("ROW_WG", self.inner.row_workgroup as f64)]
    }

    /// The matmul kernels in use.
    pub fn matmul_path(&self) -> MatmulPath {
        self.inner.matmul_path.get()
    }

    /// Chooses the matmul kernels (for tests and benchmarks). Returns false, changing
    /// nothing, if the adapter cannot run the texture path.
    pub fn set_matmul_path(&self, path: MatmulPath) -> bool {
        if path == MatmulPath::Texture && !self.inner.texture_matmul_supported {
            return false;
        }
        self.inner.matmul_path.set(path);
        true
    }

    /// The narrowest flat-texture width (log2 of texels, at least 64 texels) whose height
    /// stays within the adapter's limit for `numel` floats; None if none does.
    pub(crate) fn flat_shift(&self, numel: usize) -> Option<u32> {
        let texels = numel.div_ceil(4) as u64;
        let max = self.inner.device.limits().max_texture_dimension_2d as u64;
        (6..=max.ilog2()).find(|&s| texels.div_ceil(1 << s) <= max)
    }

    /// Copies the row-major `rows` x `cols` matrix in `src` (cols divisible by 4) into the
    /// texture of operand `slot` for that shape, in stream order, and returns it. The texture
    /// is reused by every later matmul of the same shape: the copy for the next one is ordered
    /// after this one's reads.
    ///
    /// The layout is [`TexLayout::Rows`] when one copy can write it (`cols` a multiple of 64,
    /// since a copy's `bytes_per_row` must be a multiple of 256) and the rows fit the texture
    /// height limit; otherwise [`TexLayout::Flat`] with 2^`shift` texels per texture row.
    pub(crate) fn operand_texture(
        &self,
        src: &Storage,
        (rows, cols): (usize, usize),
        slot: u8,
        shift: u32,
    ) -> OperandTexture {
        debug_assert!(cols.is_multiple_of(4) && rows * cols > 0);
        let max = self.inner.device.limits().max_texture_dimension_2d as usize;
        let row_texels = (cols / 4) as u32;
        let layout = if cols.is_multiple_of(64) && rows <= max && cols / 4 + ROW_PAD_TEXELS <= max {
            TexLayout::Rows
        } else {
            TexLayout::Flat { shift }
        };
        let texels = (rows * cols / 4) as u32;
        let (width, height) = match layout {
            TexLayout::Rows => (row_texels + ROW_PAD_TEXELS as u32, rows as u32),
            TexLayout::Flat { shift } => (1u32 << shift, texels.div_ceil(1 << shift)),
        };
        let tex = self
            .inner
            .textures
            .borrow_mut()
            .entry((width, height, slot))
            .or_insert_with(|| {
                let texture = self.inner.device.create_texture(&wgpu::TextureDescriptor {
                    label: Some("deepgen matmul operand"),
                    size: wgpu::Extent3d {
                        width,
                        height,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: wgpu::TextureFormat::Rgba32Float,
                    usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
                    view_formats: &[],
                });
                let id = self.inner.next_texture_id.get();
                self.inner.next_texture_id.set(id + 1);
                std::rc::Rc::new(TextureSlot {
                    view: texture.create_view(&Default::default()),
                    id,
                })
            })
            .clone();
        let texture = tex.view.texture();
        let mut batch = self.inner.batch.borrow_mut();
        let encoder = Self::encoder(&mut batch, &self.inner.device);
        // Rows of `bytes_per_row` bytes of the buffer, from `offset`, into texture rows from y.
        let copy = |encoder: &mut wgpu::CommandEncoder,
                    (offset, bytes_per_row): (u64, u32),
                    y: u32,
                    extent: (u32, u32)| {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: src.buffer(),
                    layout: wgpu::TexelCopyBufferLayout {
                        offset,
                        bytes_per_row: Some(bytes_per_row),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: extent.0,
                    height: extent.1,
                    depth_or_array_layers: 1,
                },
            );
        };
        match layout {
            TexLayout::Rows => copy(encoder, (0, row_texels * 16), 0, (row_texels, height)),
            TexLayout::Flat { .. } => {
                let full_rows = texels / width;
                let rest = texels % width;
                if full_rows > 0 {
                    copy(encoder, (0, width * 16), 0, (width, full_rows));
                }
                if rest > 0 {
                    let offset = full_rows as u64 * width as u64 * 16;
                    copy(encoder, (offset, width * 16), full_rows, (rest, 1));
                }
            }
        }
        OperandTexture { slot: tex, layout }
    }

    /// Largest storage binding, bytes; ops refuse tensors larger than this.
    pub fn max_binding_bytes(&self) -> u64 {
        self.inner.device.limits().max_storage_buffer_binding_size
    }

    /// Bytes held by idle pooled buffers.
    pub fn pool_idle_bytes(&self) -> u64 {
        self.inner.pool.borrow().idle_bytes()
    }

    /// Frees the idle pooled buffers and the bind groups that refer to them.
    pub fn trim_memory(&self) {
        self.inner.bind_groups.borrow_mut().clear();
        self.inner.pool.borrow_mut().clear();
    }

    /// Allocates uninitialised storage of `bytes` from the pool.
    pub(crate) fn alloc(&self, bytes: u64) -> Storage {
        let raw: RawBuffer = self.inner.pool.borrow_mut().take(&self.inner.device, bytes);
        Storage::new(raw, &self.inner.pool)
    }

    /// Ends the open compute pass (copies cannot be recorded inside one) and
    /// returns the encoder, creating it if needed.
    fn encoder<'a>(batch: &'a mut Batch, device: &wgpu::Device) -> &'a mut wgpu::CommandEncoder {
        batch.pass = None;
        batch.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("deepgen batch"),
            })
        })
    }

    /// Copies `data` into new pooled storage. Recorded in stream order, so it is
    /// safe even if the pooled buffer was read by a command not yet submitted.
    pub(crate) fn upload(&self, data: &[u8]) -> Storage {
        let storage = self.alloc(data.len() as u64);
        self.bump(|s| s.uploads += 1);
        if data.is_empty() {
            return storage;
        }
        let len = data.len() as u64;
        debug_assert!(len.is_multiple_of(4));
        if len > UPLOAD_RING_BYTES {
            // Too big for the ring: a staging buffer of its own.
            use wgpu::util::DeviceExt;
            let staging = self
                .inner
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("deepgen large upload"),
                    contents: data,
                    usage: wgpu::BufferUsages::COPY_SRC,
                });
            let mut batch = self.inner.batch.borrow_mut();
            Self::encoder(&mut batch, &self.inner.device).copy_buffer_to_buffer(
                &staging,
                0,
                storage.buffer(),
                0,
                len,
            );
            return storage;
        }
        let aligned = len.div_ceil(256) * 256;
        if self.inner.batch.borrow().upload_cursor + aligned > UPLOAD_RING_BYTES {
            self.flush();
        }
        let mut batch = self.inner.batch.borrow_mut();
        let offset = batch.upload_cursor;
        batch.upload_cursor += aligned;
        // Queue writes land at the start of the next submit, before its commands;
        // each ring range is written once per submit, so the copy below sees it.
        self.inner
            .queue
            .write_buffer(&self.inner.upload_ring, offset, data);
        Self::encoder(&mut batch, &self.inner.device).copy_buffer_to_buffer(
            &self.inner.upload_ring,
            offset,
            storage.buffer(),
            0,
            len,
        );
        storage
    }

    /// Records a copy of `bytes` bytes from `src` to `dst`.
    pub(crate) fn copy(&self, src: &Storage, dst: &Storage, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut batch = self.inner.batch.borrow_mut();
        Self::encoder(&mut batch, &self.inner.device).copy_buffer_to_buffer(
            src.buffer(),
            0,
            dst.buffer(),
            0,
            bytes,
        );
    }

    /// The bind group for `textures` then `buffers` under `spec`'s layout, from the cache or new.
    fn bind_group(
        &self,
        spec: KernelSpec,
        textures: &[&OperandTexture],
        buffers: &[&Storage],
    ) -> wgpu::BindGroup {
        let mut key = Vec::with_capacity(textures.len() + buffers.len() + 1);
        key.push(
            ((spec.inputs as u64) << 32)
                | ((spec.texture_inputs as u64) << 16)
                | spec.outputs as u64,
        );
        key.extend(textures.iter().map(|t| t.slot.id));
        key.extend(buffers.iter().map(|b| b.id()));
        if let Some(bg) = self.inner.bind_groups.borrow().get(&key) {
            return bg.clone();
        }
        let layout = self.inner.kernels.layout(&self.inner.device, &spec);
        let resources = textures
            .iter()
            .map(|t| wgpu::BindingResource::TextureView(&t.slot.view))
            .chain(buffers.iter().map(|b| b.buffer().as_entire_binding()));
        let mut entries: Vec<wgpu::BindGroupEntry> = resources
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: (textures.len() + buffers.len()) as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.inner.arena,
                offset: 0,
                size: std::num::NonZeroU64::new(MAX_PARAMS_BYTES),
            }),
        });
        let bg = self
            .inner
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(spec.entry),
                layout: &layout.0,
                entries: &entries,
            });
        self.bump(|s| s.bind_groups_created += 1);
        let mut cache = self.inner.bind_groups.borrow_mut();
        if cache.len() >= MAX_BIND_GROUPS {
            cache.clear();
        }
        cache.insert(key, bg.clone());
        bg
    }

    /// Records one dispatch of `kernel` over `groups` workgroups.
    ///
    /// `buffers` are the kernel's inputs then outputs, in binding order; `params`
    /// is the Rust twin (`#[repr(C)]`, Pod) of the shader's `Params` struct;
    /// `constants` are WGSL `override` values (tile sizes), part of the pipeline key.
    pub(crate) fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
        buffers: &[&Storage],
        params: &P,
        groups: [u32; 3],
    ) {
        self.dispatch_textures(kernel, constants, &[], buffers, params, groups);
    }

    /// [`Gpu::dispatch`] for kernels whose first `spec.texture_inputs` inputs are operand
    /// textures: `textures` bind first, then `buffers`.
    pub(crate) fn dispatch_textures<P: bytemuck::Pod>(
        &self,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
        textures: &[&OperandTexture],
        buffers: &[&Storage],
        params: &P,
        groups: [u32; 3],
    ) {
        let spec = kernel.spec();
        let expected_textures = spec.texture_inputs;
        assert_eq!(
            textures.len() as u32,
            expected_textures,
            "{} binds {expected_textures} textures",
            spec.entry
        );
        assert_eq!(
            (textures.len() + buffers.len()) as u32,
            spec.inputs + spec.outputs,
            "{} binds {} inputs and {} outputs",
            spec.entry,
            spec.inputs,
            spec.outputs
        );
        let bytes = bytemuck::bytes_of(params);
        assert!(bytes.len() as u64 <= MAX_PARAMS_BYTES);
        if groups.contains(&0) {
            return;
        }
        let pipeline = self
            .inner
            .kernels
            .pipeline(&self.inner.device, kernel, constants);
        let bind_group = self.bind_group(spec, textures, buffers);
        if self.inner.batch.borrow().params.len() as u64 >= self.inner.slot * ARENA_SLOTS {
            self.flush();
        }
        let mut batch = self.inner.batch.borrow_mut();
        let offset = batch.params.len() as u32;
        batch.params.extend_from_slice(bytes);
        batch
            .params
            .resize(offset as usize + self.inner.slot as usize, 0);
        if batch.pass.is_none() {
            let encoder = Self::encoder(&mut batch, &self.inner.device);
            let pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("deepgen kernels"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            batch.pass = Some(pass);
        }
        let pass = batch.pass.as_mut().expect("pass opened above");
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[offset]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        drop(batch);
        self.bump(|s| s.dispatches += 1);
    }

    /// Submits everything recorded so far (no-op when nothing is pending).
    pub fn flush(&self) {
        let mut batch = self.inner.batch.borrow_mut();
        batch.pass = None;
        let Some(encoder) = batch.encoder.take() else {
            return;
        };
        if !batch.params.is_empty() {
            self.inner
                .queue
                .write_buffer(&self.inner.arena, 0, &batch.params);
        }
        batch.params.clear();
        batch.upload_cursor = 0;
        drop(batch);
        self.inner.queue.submit([encoder.finish()]);
        self.bump(|s| s.submits += 1);
    }

    /// Whether [`Gpu::gpu_seconds`] can time work with GPU timestamps on this adapter.
    pub fn has_gpu_timer(&self) -> bool {
        self.inner.device.features().contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        )
    }

    /// Runs `record` (which records ops) between two GPU timestamps written into the command
    /// stream, submits, waits, and returns the GPU time between them in seconds; None where the
    /// adapter has no timestamp queries inside encoders (then `record` still runs and is
    /// submitted). Timestamps are written after all earlier commands complete, so the span
    /// covers exactly the recorded work (used by `deepgen bench`).
    ///
    /// Errors: those of `record`; [`Error::Gpu`] if the timestamps cannot be read back.
    pub fn gpu_seconds(&self, record: impl FnOnce() -> Result<()>) -> Result<Option<f64>> {
        if !self.has_gpu_timer() {
            record()?;
            self.synchronize()?;
            return Ok(None);
        }
        self.flush();
        let device = &self.inner.device;
        let pair = TimestampPair::new(device);
        {
            let mut batch = self.inner.batch.borrow_mut();
            Self::encoder(&mut batch, device).write_timestamp(&pair.set, 0);
        }
        record()?;
        {
            let mut batch = self.inner.batch.borrow_mut();
            let encoder = Self::encoder(&mut batch, device);
            encoder.write_timestamp(&pair.set, 1);
            pair.resolve(encoder);
        }
        self.flush();
        let ticks = pair.read(self)?;
        let period = self.inner.queue.get_timestamp_period() as f64;
        Ok(Some(
            ticks[1].saturating_sub(ticks[0]) as f64 * period * 1e-9,
        ))
    }

    /// Submits pending work and blocks until the GPU has finished it (native only).
    pub fn synchronize(&self) -> Result<()> {
        self.flush();
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(e.to_string()))
    }

    /// Reads `bytes` bytes of `storage` back to the host: the one async host read.
    pub(crate) async fn read_async(&self, storage: &Storage, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deepgen readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut batch = self.inner.batch.borrow_mut();
            Self::encoder(&mut batch, &self.inner.device).copy_buffer_to_buffer(
                storage.buffer(),
                0,
                &staging,
                0,
                bytes,
            );
        }
        self.flush();
        self.bump(|s| s.readbacks += 1);
        self.map_read(&staging).await
    }

    /// Maps `staging` (a MAP_READ buffer whose filling has been submitted), waits for the
    /// GPU, and returns its bytes, unmapping it again.
    ///
    /// Errors: [`Error::Gpu`] if the device is lost or the buffer cannot be mapped.
    pub(crate) async fn map_read(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let mapped = MapFuture::default();
        let shared = mapped.0.clone();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let mut state = shared.lock().expect("map state lock");
            state.0 = Some(result.map_err(|e| e.to_string()));
            if let Some(waker) = state.1.take() {
                waker.wake();
            }
        });
        // Native backends run callbacks only when polled; on the web this is a no-op.
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        mapped.await.map_err(Error::Gpu)?;
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("{e:?}")))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// Blocking wrapper around [`Gpu::read_async`] for native callers.
    pub(crate) fn read(&self, storage: &Storage, bytes: u64) -> Result<Vec<u8>> {
        pollster::block_on(self.read_async(storage, bytes))
    }
}

/// Future that resolves when `map_async`'s callback has run.
#[derive(Default)]
#[allow(clippy::type_complexity)]
struct MapFuture(Arc<Mutex<(Option<std::result::Result<(), String>>, Option<Waker>)>>);

impl Future for MapFuture {
    type Output = std::result::Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.lock().expect("map state lock");
        match state.0.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Workgroup counts for a one-dimensional kernel over `n` items with
/// `per_group` items per workgroup. Spills into `y` when `x` would exceed the
/// 65,535-workgroup limit; kernels rebuild the index as
/// `gid.x + gid.y * num_workgroups.x * WORKGROUP_SIZE`.
pub fn grid_1d(n: u64, per_group: u32) -> [u32; 3] {
    let groups = n.div_ceil(per_group as u64);
    if groups <= 65_535 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(65_535);
        [groups.div_ceil(y) as u32, y as u32, 1]
    }
}

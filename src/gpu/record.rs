//! Recording and batching: every command the engine sends goes into one shared command encoder
//! and reaches the GPU at [`Gpu::flush`].
//!
//! [`Gpu::dispatch`]
//! 1. fetches the kernel's pipeline from the cache (compiling it the first time),
//! 2. fetches or creates a bind group for exactly these buffers (cached by buffer id),
//! 3. writes the kernel's `Params` into a slot of the per-submit uniform arena,
//! 4. records the dispatch into the open compute pass of the shared command encoder.
//!
//! Copies (uploads, [`Gpu::copy`], and whatever an op or a tool records through [`Gpu::record`])
//! cannot go into a compute pass: they end it, and the next dispatch opens another.

use super::buffer::RawBuffer;
use super::pipeline::KernelDesc;
use super::{Gpu, Storage};

/// Largest Params struct any kernel uses, in bytes (a test checks every shader fits).
pub const MAX_PARAMS_BYTES: u64 = 64;
/// Uniform slots per submit; a batch that needs more is submitted early.
pub(super) const ARENA_SLOTS: u64 = 2048;
/// Bytes of the upload staging ring; larger uploads get a buffer of their own.
pub(super) const UPLOAD_RING_BYTES: u64 = 8 << 20;
/// Bind groups kept before the cache is cleared.
const MAX_BIND_GROUPS: usize = 8192;

/// Commands recorded but not yet submitted.
#[derive(Default)]
pub(super) struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    /// The open compute pass; every dispatch until the next copy goes into it.
    pass: Option<wgpu::ComputePass<'static>>,
    /// Host copy of the uniform arena for this submit.
    params: Vec<u8>,
    /// Bytes of the upload ring used in this submit.
    upload_cursor: u64,
}

impl Batch {
    /// Ends the open compute pass (copies cannot be recorded inside one) and
    /// returns the encoder, creating it if needed.
    pub(super) fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("deepgen batch"),
            })
        })
    }
}

/// A texture made by the context (`Gpu::create_texture`), with an id for the bind-group cache.
pub struct Texture {
    view: wgpu::TextureView,
    id: u64,
}

impl Texture {
    /// The texture (for copies into it).
    pub fn texture(&self) -> &wgpu::Texture {
        self.view.texture()
    }
}

impl Gpu {
    /// Allocates uninitialised storage of `bytes` from the pool.
    pub(crate) fn alloc(&self, bytes: u64) -> Storage {
        let raw: RawBuffer = self.inner.pool.borrow_mut().take(&self.inner.device, bytes);
        Storage::new(raw, &self.inner.pool)
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

    /// Creates a texture (with a view of the whole of it) that kernels can bind.
    pub(crate) fn create_texture(&self, desc: &wgpu::TextureDescriptor) -> Texture {
        let texture = self.inner.device.create_texture(desc);
        let id = self.inner.next_texture_id.get();
        self.inner.next_texture_id.set(id + 1);
        Texture {
            view: texture.create_view(&Default::default()),
            id,
        }
    }

    /// Records the commands of `f` into the shared encoder, in stream order after everything
    /// recorded so far, and ends the open compute pass first (copies cannot go into one). The
    /// ops record their copies here; tools outside the engine record raw wgpu work here (the
    /// workbench's ceiling probes: a buffer copy and its own compute passes), so that it is
    /// submitted, ordered and timed ([`Gpu::gpu_seconds`]) with the engine's own commands.
    pub fn record<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut batch = self.inner.batch.borrow_mut();
        f(batch.encoder(&self.inner.device))
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
            self.record(|encoder| {
                encoder.copy_buffer_to_buffer(&staging, 0, storage.buffer(), 0, len)
            });
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
        batch.encoder(&self.inner.device).copy_buffer_to_buffer(
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
        self.record(|encoder| {
            encoder.copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, bytes)
        });
    }

    /// The bind group for `textures` then `buffers` under `kernel`'s layout, from the cache or new.
    fn bind_group(
        &self,
        kernel: &KernelDesc,
        textures: &[&Texture],
        buffers: &[&Storage],
    ) -> wgpu::BindGroup {
        let b = kernel.bindings;
        let mut key = Vec::with_capacity(textures.len() + buffers.len() + 1);
        key.push(((b.inputs as u64) << 32) | ((b.texture_inputs as u64) << 16) | b.outputs as u64);
        key.extend(textures.iter().map(|t| t.id));
        key.extend(buffers.iter().map(|b| b.id()));
        if let Some(bg) = self.inner.bind_groups.borrow().get(&key) {
            return bg.clone();
        }
        let layout = self.inner.pipelines.layout(&self.inner.device, b);
        let resources = textures
            .iter()
            .map(|t| wgpu::BindingResource::TextureView(&t.view))
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
                label: Some(kernel.entry),
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
    /// `constants` are WGSL `override` values (tile sizes, variants), part of the pipeline key;
    /// `textures` bind first (`kernel.bindings.texture_inputs` of them), then `buffers`, the
    /// remaining inputs then the outputs, in binding order; `params` is the Rust twin
    /// (`#[repr(C)]`, Pod) of the shader's `Params` struct. A grid with a zero extent records
    /// nothing.
    pub(crate) fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: &KernelDesc,
        constants: &[(&'static str, f64)],
        textures: &[&Texture],
        buffers: &[&Storage],
        params: &P,
        groups: [u32; 3],
    ) {
        let b = kernel.bindings;
        assert_eq!(
            textures.len() as u32,
            b.texture_inputs,
            "{} binds {} textures",
            kernel.entry,
            b.texture_inputs
        );
        assert_eq!(
            (textures.len() + buffers.len()) as u32,
            b.inputs + b.outputs,
            "{} binds {} inputs and {} outputs",
            kernel.entry,
            b.inputs,
            b.outputs
        );
        let bytes = bytemuck::bytes_of(params);
        assert!(bytes.len() as u64 <= MAX_PARAMS_BYTES);
        if groups.contains(&0) {
            return;
        }
        let pipeline = self
            .inner
            .pipelines
            .pipeline(&self.inner.device, kernel, constants);
        let bind_group = self.bind_group(kernel, textures, buffers);
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
            let pass = batch
                .encoder(&self.inner.device)
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

//! Two GPU timestamps and the buffers that bring them back to the host: shared by
//! [`Gpu::gpu_seconds`] (timestamps written into the engine's command stream) and the
//! benchmark's probes (timestamps written by compute passes).

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A query set of two timestamps (0: start, 1: end), its resolve buffer and its readback buffer.
pub(crate) struct TimestampPair {
    /// The two timestamp queries.
    pub(crate) set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl TimestampPair {
    /// Creates the query set and the two 16-byte buffers (the device must have
    /// `TIMESTAMP_QUERY`).
    pub(crate) fn new(device: &wgpu::Device) -> TimestampPair {
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("deepgen timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deepgen timestamp resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deepgen timestamp readback"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        TimestampPair {
            set,
            resolve,
            readback,
        }
    }

    /// Records the resolve of both queries and their copy into the readback buffer, after
    /// both timestamps have been written in `encoder`'s stream.
    pub(crate) fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.set, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, 16);
    }

    /// Reads the two ticks back (once the submit that resolved them has been made).
    ///
    /// Errors: [`Error::Gpu`] if the device is lost or the buffer cannot be mapped.
    pub(crate) fn read(&self, gpu: &Gpu) -> Result<[u64; 2]> {
        let bytes = pollster::block_on(gpu.map_read(&self.readback))?;
        match bytemuck::pod_collect_to_vec::<u8, u64>(&bytes)[..] {
            [start, end] => Ok([start, end]),
            _ => Err(Error::Gpu(format!(
                "timestamp readback: {} bytes, expected 16",
                bytes.len()
            ))),
        }
    }
}

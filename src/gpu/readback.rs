//! Waiting for the GPU: the one async host read, GPU timestamps, and the one blocking wrapper.
//!
//! Everything here that waits is async ([`Gpu::read_async`], [`Gpu::synchronize_async`],
//! [`Gpu::gpu_seconds_async`]): on the web nothing may block. Each has a blocking twin for
//! native callers, and every one of those goes through [`block_on`], the crate's only blocking
//! call.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{Gpu, Storage};
use crate::error::{Error, Result};

/// Runs `future` to completion on this thread: the crate's one blocking call, the native
/// wrapper of every async function of the engine. Not for the browser, where the async
/// functions are awaited instead.
pub fn block_on<F: Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

/// What a wgpu callback hands to the future waiting for it, and that future's waker.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// Future that resolves with the value a wgpu callback (`map_async`,
/// `on_submitted_work_done`) passes to [`callback`]'s sender.
struct CallbackFuture<T>(Arc<Mutex<Slot<T>>>);

/// A future and the `Send` closure that completes it (wgpu callbacks must be `Send`).
fn callback<T: Send + 'static>() -> (CallbackFuture<T>, impl FnOnce(T) + Send + 'static) {
    let shared = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    let sender = shared.clone();
    let send = move |value: T| {
        let mut slot = sender.lock().expect("callback slot lock");
        slot.value = Some(value);
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    };
    (CallbackFuture(shared), send)
}

impl<T> Future for CallbackFuture<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.0.lock().expect("callback slot lock");
        match slot.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Gpu {
    /// Native backends run wgpu's callbacks only when polled: waits for all submitted work and
    /// runs them. On the web this is a no-op (the browser runs them).
    fn poll_wait(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(e.to_string()))
    }

    /// Submits pending work and waits until the GPU has finished it.
    ///
    /// Errors: [`Error::Gpu`] if the device is lost.
    pub async fn synchronize_async(&self) -> Result<()> {
        self.flush();
        let (done, send) = callback();
        self.inner.queue.on_submitted_work_done(move || send(()));
        self.poll_wait()?;
        done.await;
        Ok(())
    }

    /// Blocking form of [`Gpu::synchronize_async`].
    pub fn synchronize(&self) -> Result<()> {
        block_on(self.synchronize_async())
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
        self.record(|encoder| {
            encoder.copy_buffer_to_buffer(storage.buffer(), 0, &staging, 0, bytes)
        });
        self.flush();
        self.bump(|s| s.readbacks += 1);
        self.map_read(&staging).await
    }

    /// Maps `staging` (a MAP_READ buffer whose filling has been submitted), waits for the
    /// GPU, and returns its bytes, unmapping it again.
    ///
    /// Errors: [`Error::Gpu`] if the device is lost or the buffer cannot be mapped.
    pub(crate) async fn map_read(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let (mapped, send) = callback();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            send(result.map_err(|e| e.to_string()))
        });
        self.poll_wait()?;
        mapped.await.map_err(Error::Gpu)?;
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("{e:?}")))?
            .to_vec();
        staging.unmap();
        Ok(data)
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
    /// covers exactly the recorded work (used by the workbench, `deepgen bench`).
    ///
    /// Errors: those of `record`; [`Error::Gpu`] if the timestamps cannot be read back.
    pub async fn gpu_seconds_async(
        &self,
        record: impl FnOnce() -> Result<()>,
    ) -> Result<Option<f64>> {
        if !self.has_gpu_timer() {
            record()?;
            self.synchronize_async().await?;
            return Ok(None);
        }
        self.flush();
        let pair = TimestampPair::new(&self.inner.device);
        self.record(|encoder| encoder.write_timestamp(&pair.set, 0));
        record()?;
        self.record(|encoder| {
            encoder.write_timestamp(&pair.set, 1);
            pair.resolve(encoder);
        });
        self.flush();
        let ticks = pair.read_async(self).await?;
        let period = self.inner.queue.get_timestamp_period() as f64;
        Ok(Some(
            ticks[1].saturating_sub(ticks[0]) as f64 * period * 1e-9,
        ))
    }

    /// Blocking form of [`Gpu::gpu_seconds_async`].
    pub fn gpu_seconds(&self, record: impl FnOnce() -> Result<()>) -> Result<Option<f64>> {
        block_on(self.gpu_seconds_async(record))
    }
}

/// A query set of two timestamps (0: start, 1: end), its resolve buffer and its readback buffer,
/// for [`Gpu::gpu_seconds`] (timestamps written into the engine's command stream; the
/// workbench's probes are recorded into that stream too, so this is the only timer).
struct TimestampPair {
    /// The two timestamp queries.
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl TimestampPair {
    /// Creates the query set and the two 16-byte buffers (the device must have
    /// `TIMESTAMP_QUERY`).
    fn new(device: &wgpu::Device) -> TimestampPair {
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
    fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.set, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, 16);
    }

    /// Reads the two ticks back (once the submit that resolved them has been made).
    ///
    /// Errors: [`Error::Gpu`] if the device is lost or the buffer cannot be mapped.
    async fn read_async(&self, gpu: &Gpu) -> Result<[u64; 2]> {
        let bytes = gpu.map_read(&self.readback).await?;
        match bytemuck::pod_collect_to_vec::<u8, u64>(&bytes)[..] {
            [start, end] => Ok([start, end]),
            _ => Err(Error::Gpu(format!(
                "timestamp readback: {} bytes, expected 16",
                bytes.len()
            ))),
        }
    }
}

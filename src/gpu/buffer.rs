//! GPU memory: a pool of storage buffers, and the storage handle a tensor owns.
//!
//! Allocating a wgpu buffer is expensive (a driver call, zeroing), and a
//! training step allocates the same sizes every time. So buffers are pooled by
//! size: a dropped [`Storage`] hands its buffer back to the pool and the next
//! allocation of that size takes it. Reuse is safe even while earlier commands
//! that read the buffer are still unsubmitted, because every write to a pooled
//! buffer goes through the same command stream (dispatches and
//! `copy_buffer_to_buffer`, never `Queue::write_buffer`), so it runs after them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

/// Sizes are rounded up to this many bytes, so near-equal sizes share buffers
/// and no buffer is empty (wgpu cannot bind a zero-sized storage buffer).
const SIZE_QUANTUM: u64 = 256;

/// How many idle buffers of one size the pool keeps; more are freed.
const MAX_IDLE_PER_SIZE: usize = 64;

/// A GPU buffer with a process-unique id (the key of the bind-group cache).
#[derive(Debug)]
pub(crate) struct RawBuffer {
    pub buffer: wgpu::Buffer,
    pub id: u64,
    pub bytes: u64,
}

/// Idle buffers by size, and counters for `deepgen bench` / tests.
///
/// Each size keeps its idle buffers sorted by id and hands out the lowest id, so
/// that a training step, which allocates and frees the same sizes in the same
/// order every time, gets the same buffers every time whatever order they were
/// freed in: its bind groups (cached by buffer id) are then reused.
#[derive(Default)]
pub(crate) struct BufferPool {
    idle: HashMap<u64, Vec<RawBuffer>>,
    next_id: u64,
    /// Buffers created since the pool was made (a pool miss each).
    pub created: u64,
}

impl BufferPool {
    /// Takes an idle buffer of at least `bytes` (rounded), or creates one.
    pub fn take(&mut self, device: &wgpu::Device, bytes: u64) -> RawBuffer {
        let bytes = bytes.max(1).div_ceil(SIZE_QUANTUM) * SIZE_QUANTUM;
        // Lists are sorted by descending id: pop() yields the lowest.
        if let Some(buf) = self.idle.get_mut(&bytes).and_then(Vec::pop) {
            return buf;
        }
        self.created += 1;
        self.next_id += 1;
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deepgen tensor"),
            size: bytes,
            // STORAGE for kernels; COPY_SRC for readback; COPY_DST for uploads.
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        RawBuffer {
            buffer,
            id: self.next_id,
            bytes,
        }
    }

    /// Returns a buffer to the pool (or frees it if the pool already holds enough of its size).
    pub fn give_back(&mut self, buf: RawBuffer) {
        let list = self.idle.entry(buf.bytes).or_default();
        if list.len() < MAX_IDLE_PER_SIZE {
            let at = list.partition_point(|b| b.id > buf.id);
            list.insert(at, buf);
        }
    }

    /// Frees every idle buffer.
    pub fn clear(&mut self) {
        self.idle.clear();
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> u64 {
        self.idle.iter().map(|(b, v)| b * v.len() as u64).sum()
    }
}

/// The GPU memory behind a tensor. Shared (via `Rc`) by tensors that are views
/// of the same data (reshape, detach); returned to the pool when the last one drops.
pub(crate) struct Storage {
    raw: Option<RawBuffer>,
    pool: Weak<RefCell<BufferPool>>,
}

impl Storage {
    pub fn new(raw: RawBuffer, pool: &Rc<RefCell<BufferPool>>) -> Self {
        Storage {
            raw: Some(raw),
            pool: Rc::downgrade(pool),
        }
    }

    pub fn raw(&self) -> &RawBuffer {
        self.raw.as_ref().expect("storage is alive until dropped")
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.raw().buffer
    }

    pub fn id(&self) -> u64 {
        self.raw().id
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let (Some(raw), Some(pool)) = (self.raw.take(), self.pool.upgrade())
            && let Ok(mut pool) = pool.try_borrow_mut()
        {
            pool.give_back(raw);
        }
    }
}

//! Adapter selection and device creation.
//!
//! wgpu exposes every driver it finds as an *adapter*. We rank them (a discrete
//! GPU before an integrated one, both before a CPU implementation such as
//! Mesa's lavapipe) and open a *device* (our handle for allocations and
//! pipelines) and its *queue* (where command buffers are submitted) on the best.

use crate::error::{Error, Result};

/// Environment variable that picks an adapter by (case-insensitive) substring of its name,
/// e.g. `DEEPGEN_ADAPTER=llvmpipe` or `DEEPGEN_ADAPTER=nvidia`.
pub const ADAPTER_ENV: &str = "DEEPGEN_ADAPTER";

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
pub(crate) async fn select_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
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
        && !wanted.is_empty()
    {
        let needle = wanted.to_lowercase();
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return match adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&needle))
        {
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
pub(crate) async fn open_device(adapter: &wgpu::Adapter) -> Result<(wgpu::Device, wgpu::Queue)> {
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

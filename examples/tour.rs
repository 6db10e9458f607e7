//! A tour of the engine in one run: a two-op graph, its tape, its backward pass, one
//! gradient checked by finite differences, and one WGSL kernel dispatched with wgpu by hand.
//!
//!     cargo run --release --example tour
//!
//! Read it beside the README's "Read the code" list: every step names the file that does
//! the same thing inside deepgen.

use deepgen::{Gpu, Tensor, autograd};

fn main() -> deepgen::Result<()> {
    // 1. The GPU context (src/gpu/context.rs): adapter, device and queue, opened once.
    let gpu = Gpu::new()?;
    println!("adapter: {}\n", gpu.summary().name);

    // 2. Two leaf tensors that require grad: parameters, as far as autograd is concerned.
    //    a (2, 3), b (3, 2); values live in GPU buffers from the pool (src/gpu/buffer.rs).
    let a = Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?.requires_grad_();
    let b = Tensor::from_slice(&gpu, &[0.5, -1.0, 0.25, 2.0, -0.5, 1.5], [3, 2])?.requires_grad_();

    // 3. Two ops. Each records a dispatch (nothing has run yet) and, because an input
    //    requires grad, appends a node to the tape with its backward rule (src/autograd.rs).
    let c = a.matmul(&b)?; // (2, 2), src/ops/matmul.rs + shaders/matmul*.wgsl
    let loss = c.tanh()?.sum()?; // tanh: src/ops/elementwise.rs; sum: src/ops/reduce.rs
    println!("the tape, oldest first (backward walks it from the end):");
    for (i, node) in autograd::tape().iter().enumerate() {
        println!("  node {i}: {node}");
    }
    println!("  (a = {}, b = {}, loss = {})\n", a.id(), b.id(), loss.id());

    // 4. Backward: each node's rule turns d(loss)/d(output) into d(loss)/d(inputs), on the GPU.
    //    Reading a value back is the only point where the host waits (src/gpu/readback.rs).
    let grads = loss.backward()?;
    let da = grads.get(&a).expect("the loss depends on a").to_vec()?;
    println!("loss = {:.6}", loss.item()?);
    println!("d(loss)/d(a) = {da:?}");

    // 5. Check one entry against a central finite difference of the same computation.
    let (i, h) = (4, 1e-2_f32);
    let f = |delta: f32| -> deepgen::Result<f32> {
        let _no_grad = autograd::no_grad(); // evaluate without recording
        let mut v = a.to_vec()?;
        v[i] += delta;
        let a2 = Tensor::from_slice(&gpu, &v, [2, 3])?;
        a2.matmul(&b)?.tanh()?.sum()?.item()
    };
    let numeric = (f(h)? - f(-h)?) / (2.0 * h);
    println!(
        "d(loss)/d(a[{i}]): backward {:.5}, finite difference {numeric:.5} (relative difference {:.1e})\n",
        da[i],
        ((da[i] - numeric) / numeric).abs()
    );

    // 6. One kernel by hand: what Kernel::dispatch does for every op, without the caches.
    raw_kernel(&gpu)?;
    Ok(())
}

/// y = 2 x + 1 over 10 floats with plain wgpu calls on deepgen's device.
fn raw_kernel(gpu: &Gpu) -> deepgen::Result<()> {
    use wgpu::util::DeviceExt;
    let (device, queue) = (gpu.device(), gpu.queue());
    // The kernel: one invocation per element, bindings read-only input then output, as in
    // every shader of shaders/ (which also pass a uniform Params struct; this one needs none).
    let source = "
        @group(0) @binding(0) var<storage, read> x: array<f32>;
        @group(0) @binding(1) var<storage, read_write> y: array<f32>;
        @compute @workgroup_size(64)
        fn twice_plus_one(@builtin(global_invocation_id) gid: vec3<u32>) {
            if (gid.x < arrayLength(&x)) { y[gid.x] = 2.0 * x[gid.x] + 1.0; }
        }";
    // Compile WGSL into a shader module (wgpu validates it with naga here).
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("tour"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    // A compute pipeline: the module's entry point plus a binding layout (derived from the
    // shader here; deepgen declares its layouts in src/gpu/pipeline.rs and caches them).
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("tour"),
        layout: None,
        module: &module,
        entry_point: Some("twice_plus_one"),
        compilation_options: Default::default(),
        cache: None,
    });
    let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
    // A storage buffer created with its contents (deepgen uploads through a staging ring).
    let input = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("x"),
        contents: bytemuck::cast_slice(&x),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let bytes = (x.len() * 4) as u64;
    // The output buffer, readable by kernels and copyable out.
    let output = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("y"),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    // A buffer the host can map, to receive a copy of y.
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("y readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    // A bind group: which buffers sit at which binding (deepgen caches these by buffer id).
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("tour"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: input.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: output.as_entire_binding(),
            },
        ],
    });
    // Record commands: a compute pass with one dispatch, then a copy out (src/gpu/record.rs
    // records every op of a training step into one such encoder).
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups((x.len() as u32).div_ceil(64), 1, 1); // ceil(n / 64) groups
    }
    encoder.copy_buffer_to_buffer(&output, 0, &staging, 0, bytes);
    // Submit: only now does the GPU run anything.
    queue.submit([encoder.finish()]);
    // Map the staging buffer and wait for the GPU (the one blocking wait, gpu::block_on).
    let (sender, receiver) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = sender.send(r);
    });
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| deepgen::Error::Gpu(e.to_string()))?;
    receiver
        .recv()
        .map_err(|e| deepgen::Error::Gpu(e.to_string()))?
        .map_err(|e| deepgen::Error::Gpu(e.to_string()))?;
    let y: Vec<f32> = bytemuck::cast_slice(
        &staging
            .get_mapped_range(..)
            .map_err(|e| deepgen::Error::Gpu(format!("{e:?}")))?,
    )
    .to_vec();
    println!("raw kernel y = 2 x + 1: {y:?}");
    Ok(())
}

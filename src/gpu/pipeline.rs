//! Kernels as this layer sees them, and the cache that compiles each once.
//!
//! A [`KernelDesc`] says where a kernel's code is (a shader module's name and full WGSL source)
//! and what it binds; which kernels exist and what they compute is the business of the layer
//! above (`ops/kernels.rs`). Shader modules are compiled on first use and cached by name,
//! bind-group layouts by binding signature, pipelines by (module, entry point, override
//! constants).
//!
//! Binding convention, shared by every shader: `@group(0)`, first the inputs (read-only
//! `rgba32float` storage textures, then `var<storage, read>` buffers), then the outputs
//! (`var<storage, read_write>`), then one `var<uniform>` Params struct, bound with a dynamic
//! offset into the per-submit uniform arena (see `record.rs`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// A compute kernel: its code and its binding signature.
#[derive(Clone, Copy, Debug)]
pub struct KernelDesc {
    /// Name of the shader module (its file name): the key of the module cache and its label.
    pub module: &'static str,
    /// The module's complete WGSL source, compiled the first time `module` is used.
    pub source: &'static str,
    /// The `@compute` entry point in that module.
    pub entry: &'static str,
    /// What it binds.
    pub bindings: Bindings,
}

/// A kernel's binding signature (see the module doc for the order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bindings {
    /// Read-only inputs (bindings `0..inputs`).
    pub inputs: u32,
    /// How many of the inputs (the first ones) are read-only `rgba32float` storage textures
    /// instead of buffers.
    pub texture_inputs: u32,
    /// `var<storage, read_write>` outputs that follow the inputs.
    pub outputs: u32,
}

/// A bind-group layout and the pipeline layout made from it.
pub(crate) type Layouts = Rc<(wgpu::BindGroupLayout, wgpu::PipelineLayout)>;

/// Key of a compiled pipeline: module, entry point and override constants (name, value bits).
type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// Compiled shader modules, bind-group layouts and pipelines, each built once.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: RefCell<HashMap<&'static str, Rc<wgpu::ShaderModule>>>,
    layouts: RefCell<HashMap<Bindings, Layouts>>,
    pipelines: RefCell<HashMap<PipelineKey, Rc<wgpu::ComputePipeline>>>,
    /// Pipelines compiled so far (a cache miss each).
    pub compiled: Cell<u64>,
}

impl PipelineCache {
    /// The bind-group layout for `bindings` (textures, then read-only buffers, then read-write
    /// buffers, then one dynamically-offset uniform) and its pipeline layout.
    pub fn layout(&self, device: &wgpu::Device, bindings: Bindings) -> Layouts {
        let Bindings {
            inputs,
            texture_inputs,
            outputs,
        } = bindings;
        self.layouts
            .borrow_mut()
            .entry(bindings)
            .or_insert_with(|| {
                let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                };
                let texture = |binding: u32| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::ReadOnly,
                        format: wgpu::TextureFormat::Rgba32Float,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                    count: None,
                };
                let mut entries: Vec<_> = (0..inputs)
                    .map(|b| {
                        if b < texture_inputs {
                            texture(b)
                        } else {
                            storage(b, true)
                        }
                    })
                    .collect();
                entries.extend((inputs..inputs + outputs).map(|b| storage(b, false)));
                entries.push(wgpu::BindGroupLayoutEntry {
                    binding: inputs + outputs,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        // The Params of each dispatch sit at their own offset in one arena.
                        has_dynamic_offset: true,
                        min_binding_size: None,
                    },
                    count: None,
                });
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("deepgen bind group layout"),
                    entries: &entries,
                });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some("deepgen pipeline layout"),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                Rc::new((bgl, pl))
            })
            .clone()
    }

    /// The pipeline for `kernel` with the given override constants, compiled on first use.
    pub fn pipeline(
        &self,
        device: &wgpu::Device,
        kernel: &KernelDesc,
        constants: &[(&'static str, f64)],
    ) -> Rc<wgpu::ComputePipeline> {
        let key: PipelineKey = (
            kernel.module,
            kernel.entry,
            constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        );
        if let Some(p) = self.pipelines.borrow().get(&key) {
            return p.clone();
        }
        let module = self
            .modules
            .borrow_mut()
            .entry(kernel.module)
            .or_insert_with(|| {
                Rc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.module),
                    source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
                }))
            })
            .clone();
        let layout = self.layout(device, kernel.bindings);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(&layout.1),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Our kernels initialise the workgroup memory they read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.compiled.set(self.compiled.get() + 1);
        let pipeline = Rc::new(pipeline);
        self.pipelines.borrow_mut().insert(key, pipeline.clone());
        pipeline
    }
}

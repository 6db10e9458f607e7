//! The kernel table and the pipeline cache.
//!
//! [`Kernel`] is the one place that names a WGSL entry point: each variant maps
//! to its shader file, its entry point and its binding signature. Pipelines
//! are compiled on first use and cached by (kernel, override constants).
//!
//! Binding convention, shared by every shader: `@group(0)`, first the inputs
//! (`var<storage, read>`), then the outputs (`var<storage, read_write>`), then
//! one `var<uniform>` Params struct, bound with a dynamic offset into the
//! per-submit uniform arena (see `gpu/mod.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A WGSL source file in `shaders/`, compiled into one shader module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderFile {
    /// `shaders/matmul.wgsl`
    Matmul,
    /// `shaders/elementwise.wgsl`
    Elementwise,
    /// `shaders/reduce.wgsl`
    Reduce,
    /// `shaders/random.wgsl`
    Random,
    /// `shaders/vae.wgsl`
    Vae,
    /// `shaders/loss.wgsl`
    Loss,
    /// `shaders/adam.wgsl`
    Adam,
    /// `shaders/conv.wgsl`
    Conv,
    /// `shaders/norm.wgsl`
    Norm,
    /// `shaders/matmul_texture.wgsl` (needs 8-lane subgroups; compiled only where available)
    MatmulTexture,
}

impl ShaderFile {
    /// Every shader file, for validation tests.
    pub const ALL: [ShaderFile; 10] = [
        ShaderFile::Matmul,
        ShaderFile::Elementwise,
        ShaderFile::Reduce,
        ShaderFile::Random,
        ShaderFile::Vae,
        ShaderFile::Loss,
        ShaderFile::Adam,
        ShaderFile::Conv,
        ShaderFile::Norm,
        ShaderFile::MatmulTexture,
    ];

    /// File name under `shaders/`.
    pub fn name(self) -> &'static str {
        match self {
            ShaderFile::Matmul => "matmul.wgsl",
            ShaderFile::Elementwise => "elementwise.wgsl",
            ShaderFile::Reduce => "reduce.wgsl",
            ShaderFile::Random => "random.wgsl",
            ShaderFile::Vae => "vae.wgsl",
            ShaderFile::Loss => "loss.wgsl",
            ShaderFile::Adam => "adam.wgsl",
            ShaderFile::Conv => "conv.wgsl",
            ShaderFile::Norm => "norm.wgsl",
            ShaderFile::MatmulTexture => "matmul_texture.wgsl",
        }
    }

    /// The WGSL source, embedded at compile time.
    pub fn source(self) -> &'static str {
        match self {
            ShaderFile::Matmul => include_str!("../../shaders/matmul.wgsl"),
            ShaderFile::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            ShaderFile::Reduce => include_str!("../../shaders/reduce.wgsl"),
            ShaderFile::Random => include_str!("../../shaders/random.wgsl"),
            ShaderFile::Vae => include_str!("../../shaders/vae.wgsl"),
            ShaderFile::Loss => include_str!("../../shaders/loss.wgsl"),
            ShaderFile::Adam => include_str!("../../shaders/adam.wgsl"),
            ShaderFile::Conv => include_str!("../../shaders/conv.wgsl"),
            ShaderFile::Norm => include_str!("../../shaders/norm.wgsl"),
            ShaderFile::MatmulTexture => include_str!("../../shaders/matmul_texture.wgsl"),
        }
    }
}

/// Every compute kernel of deepgen. See [`Kernel::spec`] for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Kernel {
    MatmulNN,
    MatmulNT,
    MatmulTN,
    UnaryForward,
    UnaryBackward,
    BinaryForward,
    BinaryBackward,
    Fill,
    ReduceSum,
    ReduceSumRows,
    ReduceBackward,
    Randn,
    ReparameterizeForward,
    ReparameterizeBackward,
    KlDivergenceForward,
    KlDivergenceBackward,
    BceWithLogitsForward,
    BceWithLogitsBackward,
    MseForward,
    MseBackward,
    AdamStep,
    Im2col,
    Col2im,
    RowsToNchw,
    NchwToRows,
    BatchNormStats,
    BatchNormForward,
    BatchNormBackwardReduce,
    BatchNormBackwardDx,
    Dropout,
    SoftmaxCrossEntropyForward,
    SoftmaxCrossEntropyBackward,
    MatmulTextureNN,
    MatmulTextureNT,
    MatmulTextureTN,
    RepeatRows,
    Bernoulli,
    VaeSampleForward,
    VaeSampleBackward,
    BceWithLogitsForwardGrad,
    Im2colKw4,
}

/// Where a kernel lives and what it binds.
#[derive(Clone, Copy, Debug)]
pub struct KernelSpec {
    /// The shader file.
    pub file: ShaderFile,
    /// The `@compute` entry point in that file.
    pub entry: &'static str,
    /// Number of `var<storage, read>` bindings (0..inputs).
    pub inputs: u32,
    /// Number of `var<storage, read_write>` bindings that follow them.
    pub outputs: u32,
    /// How many of the inputs (the first ones) are read-only `rgba32float` storage textures
    /// instead of buffers.
    pub texture_inputs: u32,
}

impl Kernel {
    /// Every kernel, for tests that check each entry point exists.
    pub const ALL: [Kernel; 41] = [
        Kernel::MatmulNN,
        Kernel::MatmulNT,
        Kernel::MatmulTN,
        Kernel::UnaryForward,
        Kernel::UnaryBackward,
        Kernel::BinaryForward,
        Kernel::BinaryBackward,
        Kernel::Fill,
        Kernel::ReduceSum,
        Kernel::ReduceSumRows,
        Kernel::ReduceBackward,
        Kernel::Randn,
        Kernel::ReparameterizeForward,
        Kernel::ReparameterizeBackward,
        Kernel::KlDivergenceForward,
        Kernel::KlDivergenceBackward,
        Kernel::BceWithLogitsForward,
        Kernel::BceWithLogitsBackward,
        Kernel::MseForward,
        Kernel::MseBackward,
        Kernel::AdamStep,
        Kernel::Im2col,
        Kernel::Col2im,
        Kernel::RowsToNchw,
        Kernel::NchwToRows,
        Kernel::BatchNormStats,
        Kernel::BatchNormForward,
        Kernel::BatchNormBackwardReduce,
        Kernel::BatchNormBackwardDx,
        Kernel::Dropout,
        Kernel::SoftmaxCrossEntropyForward,
        Kernel::SoftmaxCrossEntropyBackward,
        Kernel::MatmulTextureNN,
        Kernel::MatmulTextureNT,
        Kernel::MatmulTextureTN,
        Kernel::RepeatRows,
        Kernel::Bernoulli,
        Kernel::VaeSampleForward,
        Kernel::VaeSampleBackward,
        Kernel::BceWithLogitsForwardGrad,
        Kernel::Im2colKw4,
    ];

    /// The kernel table: file, entry point, (read inputs, read_write outputs).
    pub const fn spec(self) -> KernelSpec {
        use Kernel::*;
        use ShaderFile as F;
        let (file, entry, inputs, outputs) = match self {
            MatmulNN => (F::Matmul, "matmul_nn", 3, 1),
            MatmulNT => (F::Matmul, "matmul_nt", 3, 1),
            MatmulTN => (F::Matmul, "matmul_tn", 3, 1),
            UnaryForward => (F::Elementwise, "unary_forward", 1, 1),
            UnaryBackward => (F::Elementwise, "unary_backward", 3, 1),
            BinaryForward => (F::Elementwise, "binary_forward", 2, 1),
            BinaryBackward => (F::Elementwise, "binary_backward", 3, 2),
            Fill => (F::Elementwise, "fill", 0, 1),
            ReduceSum => (F::Reduce, "reduce_sum", 1, 1),
            ReduceSumRows => (F::Reduce, "reduce_sum_rows", 1, 1),
            ReduceBackward => (F::Reduce, "reduce_backward", 1, 1),
            Randn => (F::Random, "randn", 0, 1),
            ReparameterizeForward => (F::Vae, "reparameterize_forward", 3, 1),
            ReparameterizeBackward => (F::Vae, "reparameterize_backward", 3, 1),
            KlDivergenceForward => (F::Vae, "kl_divergence_forward", 2, 1),
            KlDivergenceBackward => (F::Vae, "kl_divergence_backward", 3, 2),
            BceWithLogitsForward => (F::Loss, "bce_with_logits_forward", 2, 1),
            BceWithLogitsBackward => (F::Loss, "bce_with_logits_backward", 2, 1),
            MseForward => (F::Loss, "mse_forward", 2, 1),
            MseBackward => (F::Loss, "mse_backward", 3, 1),
            AdamStep => (F::Adam, "adam_step", 1, 3),
            Im2col => (F::Conv, "im2col", 1, 1),
            Col2im => (F::Conv, "col2im", 2, 1),
            RowsToNchw => (F::Conv, "rows_to_nchw", 2, 1),
            NchwToRows => (F::Conv, "nchw_to_rows", 1, 1),
            BatchNormStats => (F::Norm, "batch_norm_stats", 1, 4),
            BatchNormForward => (F::Norm, "batch_norm_forward", 5, 1),
            BatchNormBackwardReduce => (F::Norm, "batch_norm_backward_reduce", 4, 2),
            BatchNormBackwardDx => (F::Norm, "batch_norm_backward_dx", 7, 1),
            Dropout => (F::Random, "dropout", 1, 2),
            SoftmaxCrossEntropyForward => (F::Loss, "softmax_cross_entropy_forward", 2, 2),
            SoftmaxCrossEntropyBackward => (F::Loss, "softmax_cross_entropy_backward", 4, 1),
            MatmulTextureNN => (F::MatmulTexture, "matmul_texture_nn", 3, 1),
            MatmulTextureNT => (F::MatmulTexture, "matmul_texture_nt", 3, 1),
            MatmulTextureTN => (F::MatmulTexture, "matmul_texture_tn", 3, 1),
            RepeatRows => (F::Elementwise, "repeat_rows", 1, 1),
            Bernoulli => (F::Random, "bernoulli", 1, 1),
            VaeSampleForward => (F::Vae, "vae_sample_forward", 3, 2),
            VaeSampleBackward => (F::Vae, "vae_sample_backward", 5, 2),
            BceWithLogitsForwardGrad => (F::Loss, "bce_with_logits_forward_grad", 2, 2),
            Im2colKw4 => (F::Conv, "im2col_kw4", 1, 1),
        };
        KernelSpec {
            file,
            entry,
            inputs,
            outputs,
            texture_inputs: if matches!(file, F::MatmulTexture) {
                2
            } else {
                0
            },
        }
    }
}

/// A bind-group layout and the pipeline layout made from it.
pub(crate) type Layouts = Rc<(wgpu::BindGroupLayout, wgpu::PipelineLayout)>;

/// Key of a compiled pipeline: the kernel and its override constants (name, value bits).
type PipelineKey = (Kernel, Vec<(&'static str, u64)>);

/// Compiled shader modules, bind-group layouts and pipelines, each built once.
#[derive(Default)]
pub(crate) struct KernelCache {
    modules: RefCell<HashMap<ShaderFile, Rc<wgpu::ShaderModule>>>,
    layouts: RefCell<HashMap<(u32, u32, u32), Layouts>>,
    pipelines: RefCell<HashMap<PipelineKey, Rc<wgpu::ComputePipeline>>>,
    /// Pipelines compiled so far (a cache miss each).
    pub compiled: std::cell::Cell<u64>,
}

impl KernelCache {
    /// The bind-group layout for `inputs` read-only inputs (the first `spec.texture_inputs` of
    /// them rgba32float storage textures, the rest storage buffers) and `outputs` read-write
    /// storage buffers, followed by one dynamically-offset uniform; and its pipeline layout.
    pub fn layout(&self, device: &wgpu::Device, spec: &KernelSpec) -> Layouts {
        let (inputs, outputs, textures) = (spec.inputs, spec.outputs, spec.texture_inputs);
        self.layouts
            .borrow_mut()
            .entry((inputs, outputs, textures))
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
                        if b < textures {
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
        kernel: Kernel,
        constants: &[(&'static str, f64)],
    ) -> Rc<wgpu::ComputePipeline> {
        let key: PipelineKey = (
            kernel,
            constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        );
        if let Some(p) = self.pipelines.borrow().get(&key) {
            return p.clone();
        }
        let spec = kernel.spec();
        let module = self
            .modules
            .borrow_mut()
            .entry(spec.file)
            .or_insert_with(|| {
                Rc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(spec.file.name()),
                    source: wgpu::ShaderSource::Wgsl(spec.file.source().into()),
                }))
            })
            .clone();
        let layout = self.layout(device, &spec);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.entry),
            layout: Some(&layout.1),
            module: &module,
            entry_point: Some(spec.entry),
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

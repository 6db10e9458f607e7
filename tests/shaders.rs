//! Shader checks that need no adapter: every WGSL file parses and validates with
//! naga; every kernel in the table exists, binds inputs (read) then outputs
//! (read_write) then one uniform in that order; and each uniform Params struct
//! has the size of its Rust twin.

use std::mem::size_of;

use deepgen::gpu::{Kernel, MAX_PARAMS_BYTES, ShaderFile};
use deepgen::ops::{
    BinaryParams, ConvParams, ElemParams, LayoutParams, MatmulParams, ReduceParams, RepeatParams,
    RowParams, RowsParams, TexMatmulParams, UnaryParams,
};
use deepgen::ops::{DropoutParams, NormParams, RandnParams};
use deepgen::optim::AdamParams;
use deepgen::tensor::FillParams;
use naga::valid::{Capabilities, GlobalUse, ValidationFlags, Validator};

/// The Rust Params struct of each kernel (an exhaustive match: a new kernel must be added here).
fn params_size(kernel: Kernel) -> usize {
    use Kernel::*;
    match kernel {
        MatmulNN | MatmulNT | MatmulTN => size_of::<MatmulParams>(),
        UnaryForward | UnaryBackward => size_of::<UnaryParams>(),
        BinaryForward | BinaryBackward => size_of::<BinaryParams>(),
        Fill => size_of::<FillParams>(),
        ReduceSum | ReduceBackward => size_of::<ReduceParams>(),
        ReduceSumRows => size_of::<RowsParams>(),
        Randn => size_of::<RandnParams>(),
        ReparameterizeForward | ReparameterizeBackward => size_of::<ElemParams>(),
        KlDivergenceForward | KlDivergenceBackward => size_of::<RowParams>(),
        BceWithLogitsForward | BceWithLogitsBackward | MseForward | MseBackward => {
            size_of::<RowParams>()
        }
        AdamStep => size_of::<AdamParams>(),
        Im2col | Im2colKw4 | Col2im => size_of::<ConvParams>(),
        RowsToNchw | NchwToRows => size_of::<LayoutParams>(),
        BatchNormStats | BatchNormForward | BatchNormBackwardReduce | BatchNormBackwardDx => {
            size_of::<NormParams>()
        }
        Dropout => size_of::<DropoutParams>(),
        SoftmaxCrossEntropyForward | SoftmaxCrossEntropyBackward => size_of::<RowParams>(),
        MatmulTextureNN | MatmulTextureNT | MatmulTextureTN => size_of::<TexMatmulParams>(),
        RepeatRows => size_of::<RepeatParams>(),
        Bernoulli => size_of::<DropoutParams>(),
        VaeSampleForward | VaeSampleBackward | BceWithLogitsForwardGrad => size_of::<RowParams>(),
    }
}

fn parse(file: ShaderFile) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = file.source();
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{} does not parse:\n{}", file.name(), e.emit_to_string(src)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{} does not validate: {e:?}", file.name()));
    (module, info)
}

#[test]
fn every_shader_parses_and_validates() {
    for file in ShaderFile::ALL {
        parse(file);
    }
}

#[test]
fn every_shader_opens_with_its_contract() {
    for file in ShaderFile::ALL {
        let head: String = file
            .source()
            .lines()
            .take_while(|l| l.starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            head.starts_with(&format!("// {}", file.name())),
            "{} must open with its name",
            file.name()
        );
        let lower = head.to_lowercase();
        assert!(
            lower.contains("binding"),
            "{}: header must list the bindings",
            file.name()
        );
        assert!(
            lower.contains("dispatch grid"),
            "{}: header must give the dispatch grid",
            file.name()
        );
    }
}

#[test]
fn kernel_table_matches_the_shaders() {
    for kernel in Kernel::ALL {
        let spec = kernel.spec();
        let (module, info) = parse(spec.file);
        let (index, _) = module
            .entry_points
            .iter()
            .enumerate()
            .find(|(_, ep)| ep.name == spec.entry)
            .unwrap_or_else(|| {
                panic!(
                    "{:?}: no entry point {} in {}",
                    kernel,
                    spec.entry,
                    spec.file.name()
                )
            });
        let uses = info.get_entry_point(index);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let mut seen_uniform = false;
        for (handle, var) in module.global_variables.iter() {
            if uses[handle].is_empty() {
                continue;
            }
            let Some(binding) = &var.binding else {
                continue;
            };
            assert_eq!(binding.group, 0, "{}: everything is in group 0", spec.entry);
            let b = binding.binding;
            match var.space {
                naga::AddressSpace::Storage { access } => {
                    let writable = access.contains(naga::StorageAccess::STORE);
                    if b < spec.inputs {
                        assert!(
                            !writable,
                            "{}: binding {b} is an input and must be read-only",
                            spec.entry
                        );
                    } else {
                        assert!(
                            b < spec.inputs + spec.outputs,
                            "{}: storage binding {b} beyond the table's outputs",
                            spec.entry
                        );
                        assert!(
                            writable,
                            "{}: binding {b} is an output and must be read_write",
                            spec.entry
                        );
                    }
                }
                naga::AddressSpace::Uniform => {
                    assert_eq!(
                        b,
                        spec.inputs + spec.outputs,
                        "{}: the Params uniform comes last",
                        spec.entry
                    );
                    let size = layouter[var.ty].size as usize;
                    assert_eq!(
                        size,
                        params_size(kernel),
                        "{}: WGSL Params is {size} bytes, the Rust twin {}",
                        spec.entry,
                        params_size(kernel)
                    );
                    assert!(size as u64 <= MAX_PARAMS_BYTES);
                    seen_uniform = true;
                }
                _ => {}
            }
            assert!(uses[handle].intersects(GlobalUse::READ | GlobalUse::WRITE));
        }
        assert!(seen_uniform, "{}: reads no Params uniform", spec.entry);
    }
}

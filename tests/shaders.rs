//! Shader checks that need no adapter, on exactly the WGSL the pipelines compile
//! ([`ShaderFile::source`]: the generated op-code prelude and `activation.wgsl` where a file uses
//! them, then the file): every shader parses and validates with naga; every kernel in the table
//! exists, binds inputs (read) then outputs (read_write) then one uniform, in that order, and has
//! its workgroup-size override set by the table's tuning; each
//! uniform Params struct has the field names and offsets of its Rust twin; every op-code constant
//! equals the Rust enum's code, and every code has its case in every switch on it. The
//! workbench's probes (`probe.wgsl`, not engine kernels) parse and validate too, and no file in
//! shaders/ escapes these checks.

use std::mem::{offset_of, size_of};

use deepgen::gpu::MAX_PARAMS_BYTES;
use deepgen::ops::kernels::ACTIVATION_WGSL;
use deepgen::ops::{
    ActivationKind, Binary, BinaryParams, ChannelParams, ConvParams, DropoutParams, ElemParams,
    ImplicitConvParams, InstanceNormParams, Kernel, LayoutParams, MatmulParams, NormParams,
    PairLossParams, RandnParams, ReduceParams, RepeatParams, RowParams, RowsParams, ShaderFile,
    TexMatmulParams, UnaryParams,
};
use deepgen::optim::AdamParams;
use deepgen::tensor::FillParams;
use naga::valid::{Capabilities, GlobalUse, ValidationFlags, Validator};
use strum::VariantArray;

/// A Rust Params struct as the shaders see it: its name, size, and its named fields with their
/// byte offsets (padding fields, `_pad...`, are left out: only the size accounts for them).
struct RustLayout {
    name: &'static str,
    size: usize,
    fields: Vec<(&'static str, usize)>,
}

/// `layout!(T { a, b, c })`: the [`RustLayout`] of `T` with the offsets of fields `a`, `b`, `c`.
macro_rules! layout {
    ($t:ty { $($field:ident),* $(,)? }) => {
        RustLayout {
            name: stringify!($t),
            size: size_of::<$t>(),
            fields: vec![$((stringify!($field), offset_of!($t, $field))),*],
        }
    };
}

/// The Rust Params struct of each kernel (an exhaustive match: a new kernel must be added here).
fn params_layout(kernel: Kernel) -> RustLayout {
    use Kernel::*;
    match kernel {
        MatmulNN | MatmulNT | MatmulTN | MatmulNaiveNN | MatmulNaiveNT | MatmulNaiveTN
        | MatmulTiledNN | MatmulTiledNT | MatmulTiledTN | MatmulSubgroupNN | MatmulSubgroupNT
        | MatmulSubgroupTN => {
            layout!(MatmulParams {
                m,
                n,
                k,
                has_bias,
                act,
                alpha,
                beta
            })
        }
        MatmulTextureNN | MatmulTextureNT | MatmulTextureTN => {
            layout!(TexMatmulParams {
                m,
                n,
                k,
                shift,
                alpha,
                beta
            })
        }
        UnaryForward | UnaryBackward => layout!(UnaryParams { n, op, alpha, beta }),
        BinaryForward | BinaryBackward => layout!(BinaryParams { n, b_len, op }),
        Fill => layout!(FillParams { n, value }),
        RepeatRows => layout!(RepeatParams { rows, dim, times }),
        ReduceSum | ReduceBackward => layout!(ReduceParams {
            outer,
            len,
            inner,
            scale
        }),
        ReduceSumRows => layout!(RowsParams {
            rows,
            len,
            total,
            scale
        }),
        Randn => layout!(RandnParams {
            n,
            seed_lo,
            seed_hi,
            counter_lo,
            counter_hi
        }),
        Dropout | Bernoulli => layout!(DropoutParams {
            n,
            keep,
            scale,
            seed_lo,
            seed_hi,
            counter_lo,
            counter_hi
        }),
        ReparameterizeForward | ReparameterizeBackward => layout!(ElemParams { n }),
        KlDivergenceForward
        | KlDivergenceBackward
        | VaeSampleForward
        | VaeSampleBackward
        | BceWithLogitsForward
        | BceWithLogitsForwardGrad
        | BceWithLogitsBackward
        | MseForward
        | MseBackward
        | SoftmaxCrossEntropyForward
        | SoftmaxCrossEntropyBackward => layout!(RowParams { rows, dim }),
        AdamStep => layout!(AdamParams {
            n,
            lr,
            beta1,
            beta2,
            eps,
            bias_correction1,
            bias_correction2,
            weight_decay
        }),
        Im2col | Im2colKw4 | Col2im => layout!(ConvParams {
            n,
            c,
            h,
            w,
            kh,
            kw,
            oh,
            ow,
            stride_h,
            stride_w,
            pad_h,
            pad_w,
            dil_h,
            dil_w,
            has_bias
        }),
        ConvImplicitForward | ConvImplicitDx | ConvImplicitDw => layout!(ImplicitConvParams {
            n,
            c,
            h,
            w,
            kh,
            kw,
            oh,
            ow,
            stride_h,
            stride_w,
            pad_h,
            pad_w,
            dil_h,
            dil_w,
            o,
            has_bias
        }),
        RowsToNchw | NchwToRows => layout!(LayoutParams { n, o, p, has_bias }),
        BatchNormStats | BatchNormForward | BatchNormBackwardReduce | BatchNormBackwardDx => {
            layout!(NormParams {
                outer,
                channels,
                inner,
                training,
                eps,
                momentum
            })
        }
        ConcatChannels | NarrowChannels | PadChannels => layout!(ChannelParams {
            n,
            c0,
            c1,
            inner,
            start
        }),
        L1Forward | L1Backward | LeastSquaresForward | LeastSquaresBackward => {
            layout!(PairLossParams { rows, dim, value })
        }
        InstanceNormStats
        | InstanceNormForward
        | InstanceNormBackwardReduce
        | InstanceNormBackwardAffine
        | InstanceNormBackwardDx => layout!(InstanceNormParams {
            rows,
            channels,
            inner,
            eps
        }),
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
    for &file in ShaderFile::VARIANTS {
        parse(file);
    }
}

/// The workbench's ceiling probes (benches/workbench/ceilings.rs). Not engine kernels, so not
/// in the kernel table; checked here like every shader.
const PROBE_WGSL: &str = include_str!("../shaders/probe.wgsl");

#[test]
fn probe_shader_parses_validates_and_has_the_workbench_entry_points() {
    let module = naga::front::wgsl::parse_str(PROBE_WGSL).unwrap_or_else(|e| {
        panic!(
            "probe.wgsl does not parse:\n{}",
            e.emit_to_string(PROBE_WGSL)
        )
    });
    Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("probe.wgsl does not validate: {e:?}"));
    for entry in ["copy_probe", "fma_probe"] {
        assert!(
            module.entry_points.iter().any(|e| e.name == entry),
            "probe.wgsl lacks {entry}, which benches/workbench/ceilings.rs builds"
        );
    }
    let head = header(PROBE_WGSL).to_lowercase();
    assert!(head.starts_with("// probe.wgsl"), "{head}");
    assert!(
        head.contains("binding") && head.contains("dispatch grid"),
        "{head}"
    );
}

#[test]
fn every_file_in_shaders_is_checked_here() {
    let mut checked: Vec<&str> = ShaderFile::VARIANTS.iter().map(|f| f.name()).collect();
    // Prepended to the op files (validated as part of them), and the workbench's probes.
    checked.extend(["activation.wgsl", "probe.wgsl"]);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            checked.contains(&name.as_str()),
            "shaders/{name} is neither in the kernel table (ShaderFile) nor validated on its own"
        );
    }
}

/// The comment block a WGSL file opens with.
fn header(text: &str) -> String {
    text.lines()
        .take_while(|l| l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_shader_opens_with_its_contract() {
    for &file in ShaderFile::VARIANTS {
        let head = header(file.text());
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
        assert_eq!(
            lower.contains("prepended") && lower.contains("activation.wgsl"),
            file.uses_op_codes(),
            "{}: the header must say what is prepended to the file, exactly when something is",
            file.name()
        );
    }
    let head = header(ACTIVATION_WGSL);
    assert!(head.starts_with("// activation.wgsl"), "{head}");
    assert!(
        head.contains("ACT_"),
        "activation.wgsl must name its constants: {head}"
    );
}

#[test]
fn kernel_table_matches_the_shaders() {
    for &kernel in Kernel::VARIANTS {
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
        // A workgroup size set by an override constant is the kernel's tuning in the table
        // (otherwise the shader's default size would run, silently).
        let sized_by = module.entry_points[index]
            .workgroup_size_overrides
            .iter()
            .flatten()
            .flatten()
            .map(|&e| match module.global_expressions[e] {
                naga::Expression::Override(o) => module.overrides[o].name.clone().unwrap(),
                ref other => panic!("{}: workgroup size {other:?}", spec.entry),
            })
            .next();
        assert_eq!(
            sized_by.as_deref(),
            spec.tuning.map(|t| t.name()),
            "{}: the table's tuning must set the override that sizes the workgroup",
            spec.entry
        );
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
                            b >= spec.texture_inputs && !writable,
                            "{}: binding {b} is an input buffer and must be read-only",
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
                naga::AddressSpace::Handle => {
                    assert!(
                        b < spec.texture_inputs,
                        "{}: binding {b} is a texture but the table has {} texture inputs",
                        spec.entry,
                        spec.texture_inputs
                    );
                }
                naga::AddressSpace::Uniform => {
                    assert_eq!(
                        b,
                        spec.inputs + spec.outputs,
                        "{}: the Params uniform comes last",
                        spec.entry
                    );
                    check_params(
                        spec.entry,
                        &module,
                        &layouter,
                        var.ty,
                        params_layout(kernel),
                    );
                    seen_uniform = true;
                }
                _ => {}
            }
            assert!(uses[handle].intersects(GlobalUse::READ | GlobalUse::WRITE));
        }
        assert!(seen_uniform, "{}: reads no Params uniform", spec.entry);
    }
}

/// Asserts that the WGSL Params struct `ty` has the Rust twin's size and, field by field in
/// order, its names and byte offsets (padding fields `_...` aside).
fn check_params(
    entry: &str,
    module: &naga::Module,
    layouter: &naga::proc::Layouter,
    ty: naga::Handle<naga::Type>,
    rust: RustLayout,
) {
    let naga::TypeInner::Struct { members, .. } = &module.types[ty].inner else {
        panic!("{entry}: the uniform is not a struct");
    };
    let wgsl: Vec<(&str, usize)> = members
        .iter()
        .map(|m| (m.name.as_deref().unwrap_or(""), m.offset as usize))
        .filter(|(name, _)| !name.starts_with('_'))
        .collect();
    assert_eq!(
        wgsl, rust.fields,
        "{entry}: WGSL Params fields (name, offset) differ from the Rust twin {}",
        rust.name
    );
    let size = layouter[ty].size as usize;
    assert_eq!(
        size, rust.size,
        "{entry}: WGSL Params is {size} bytes, the Rust twin {} {}",
        rust.name, rust.size
    );
    assert!(size as u64 <= MAX_PARAMS_BYTES);
}

/// The u32 constants of `module` whose names start with `prefix`, by name.
fn constants(module: &naga::Module, prefix: &str) -> Vec<(String, u32)> {
    let mut found: Vec<(String, u32)> = module
        .constants
        .iter()
        .filter_map(|(_, c)| {
            let name = c.name.clone()?;
            if !name.starts_with(prefix) {
                return None;
            }
            match module.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => Some((name, v)),
                ref e => panic!("{name} is not a u32 literal: {e:?}"),
            }
        })
        .collect();
    found.sort();
    found
}

/// `(ACT_<NAME>, code)` for every activation, from the Rust enum.
fn activation_codes() -> Vec<(String, u32)> {
    let mut codes: Vec<(String, u32)> = ActivationKind::VARIANTS
        .iter()
        .map(|&k| (format!("ACT_{}", <&str>::from(k)), k as u32))
        .collect();
    codes.sort();
    codes
}

/// `(BIN_<NAME>, code)` for every binary op, from the Rust enum.
fn binary_codes() -> Vec<(String, u32)> {
    let mut codes: Vec<(String, u32)> = Binary::VARIANTS
        .iter()
        .map(|&op| (format!("BIN_{}", <&str>::from(op)), op as u32))
        .collect();
    codes.sort();
    codes
}

#[test]
fn op_code_constants_equal_the_rust_codes() {
    for &file in ShaderFile::VARIANTS {
        if !file.uses_op_codes() {
            continue;
        }
        let (module, _) = parse(file);
        assert_eq!(
            constants(&module, "ACT_"),
            activation_codes(),
            "{}",
            file.name()
        );
        assert_eq!(
            constants(&module, "BIN_"),
            binary_codes(),
            "{}",
            file.name()
        );
    }
    // The codes are the variants' positions, so they are distinct and dense.
    let codes: Vec<u32> = activation_codes().iter().map(|c| c.1).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, (0..codes.len() as u32).collect::<Vec<_>>());
}

/// The text of WGSL function `name` in `src`, up to the next function.
fn function<'a>(src: &'a str, name: &str) -> &'a str {
    let start = src
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("no function {name}"));
    let rest = &src[start + 3..];
    &src[start..start + 3 + rest.find("\nfn ").unwrap_or(rest.len())]
}

#[test]
fn every_op_code_has_its_case_and_no_default_computes() {
    let elementwise = ShaderFile::Elementwise.text();
    let switches = [
        (function(ACTIVATION_WGSL, "act_forward"), activation_codes()),
        (
            function(ACTIVATION_WGSL, "act_derivative"),
            activation_codes(),
        ),
        (function(elementwise, "apply"), binary_codes()),
    ];
    for (body, codes) in switches {
        for (name, _) in codes {
            assert_eq!(
                body.matches(&format!("case {name}:")).count(),
                1,
                "{name} needs exactly one case in:\n{body}"
            );
        }
    }
    // binary_backward has cases for the ops whose gradient needs a kernel.
    let backward = function(elementwise, "binary_backward");
    for name in ["BIN_MUL", "BIN_DIV"] {
        assert!(backward.contains(&format!("case {name}:")), "{backward}");
    }
    // A default branch is reached only by a code the host never sends: it must yield NaN, never
    // a real function, so that a missing case shows instead of computing something else.
    for (what, src) in ShaderFile::VARIANTS
        .iter()
        .map(|f| (f.name(), f.text()))
        .chain([("activation.wgsl", ACTIVATION_WGSL)])
    {
        for (at, _) in src.match_indices("default:") {
            let branch = &src[at..at + src[at..].find('}').expect("closing brace")];
            assert!(
                branch.contains("act_nan("),
                "{what}: a default branch computes something: {branch}"
            );
        }
    }
}

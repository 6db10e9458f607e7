// activation.wgsl: the activation functions, one definition for the element-wise kernels
// (unary_forward, unary_backward in elementwise.wgsl) and the matmul epilogues (matmul.wgsl,
// matmul_texture.wgsl), so a fused linear layer and a separate activation compute the same
// function. Not a kernel file: no entry points, no bindings, no dispatch grid.
//
// Built into those three modules by src/ops/kernels.rs (op_prelude): first the generated
// constants `const ACT_<NAME>: u32 = <code>u;`, one per variant of the Rust enum
// `Activation` (src/ops/elementwise.rs; the code is its position there), then this file,
// then the kernel file. Each switch has a case for every code; the default, reached only by a
// code the host never sends, yields NaN rather than a real function.
//
// To add an activation: its variant in `Activation`, a case in act_forward, a case in
// act_derivative (and its Tensor method), and its line in `Activation::derivative_in_y`
// (src/ops/elementwise.rs: the derivative of act_derivative with respect to y, in recorded
// ops: the second-order rule). README "Adding an op" lists the tests.

// A quiet NaN in every lane: the result of the unknown op `code`. Built from the runtime
// value (`code & 0u` is 0), since WGSL forbids NaN in constant expressions: naga accepts the
// constant, the browsers' compilers (Tint) reject the module.
fn act_nan(code: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<f32>(0x7fc00000u | (code & 0u)));
}

// Numerically stable logistic function: the branch that would overflow is never selected.
fn sigmoid4(x: vec4<f32>) -> vec4<f32> {
    let e = exp(min(x, vec4<f32>(0.0)));
    return select(e / (1.0 + e), 1.0 / (1.0 + exp(-max(x, vec4<f32>(0.0)))), x >= vec4<f32>(0.0));
}

// y = f(x) for the activation `code`, with its parameters alpha and beta (leaky_relu's slope;
// affine's scale and shift; 0 for the others).
fn act_forward(code: u32, x: vec4<f32>, alpha: f32, beta: f32) -> vec4<f32> {
    switch code {
        case ACT_IDENTITY: { return x; }
        case ACT_RELU: { return max(x, vec4<f32>(0.0)); }
        case ACT_LEAKY_RELU: { return select(alpha * x, x, x > vec4<f32>(0.0)); }
        case ACT_SIGMOID: { return sigmoid4(x); }
        case ACT_TANH: { return tanh(x); }
        case ACT_EXP: { return exp(x); }
        case ACT_AFFINE: { return alpha * x + beta; }
        // NOTE: sqrt of the positive part: 0 below 0 (where a plain sqrt is NaN).
        case ACT_SQRT: { return sqrt(max(x, vec4<f32>(0.0))); }
        default: { return act_nan(code); }
    }
}

// f'(x) for the activation `code`, from its input x and its output y = f(x).
// NOTE: the fused linear layer keeps only y and passes it for x too, so a derivative may read
// x only through its sign (x > 0), which every activation here keeps in y (leaky_relu for a
// positive slope); tests/gradcheck.rs checks every activation through that path.
fn act_derivative(code: u32, x: vec4<f32>, y: vec4<f32>, alpha: f32) -> vec4<f32> {
    let positive = x > vec4<f32>(0.0);
    switch code {
        case ACT_IDENTITY: { return vec4<f32>(1.0); }
        // NOTE: relu'(0) is taken as 0, as in PyTorch.
        case ACT_RELU: { return select(vec4<f32>(0.0), vec4<f32>(1.0), positive); }
        case ACT_LEAKY_RELU: { return select(vec4<f32>(alpha), vec4<f32>(1.0), positive); }
        // The saved output gives the derivative without recomputing exp.
        case ACT_SIGMOID: { return y * (1.0 - y); }
        case ACT_TANH: { return 1.0 - y * y; }
        case ACT_EXP: { return y; }
        case ACT_AFFINE: { return vec4<f32>(alpha); }
        // NOTE: 1 / (2 sqrt(x)) is infinite at 0 and taken as 0 below it (y = 0 there).
        case ACT_SQRT: { return select(vec4<f32>(0.0), 0.5 / y, positive); }
        default: { return act_nan(code); }
    }
}

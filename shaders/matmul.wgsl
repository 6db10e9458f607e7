// matmul.wgsl: C = op(A) op(B), f32, row-major.
//
// Entry points (all three bind the same way):
//   matmul_nn: C (M x N) = A (M x K) * B (K x N)
//   matmul_nt: C (M x N) = A (M x K) * B^T, B stored (N x K)   [Linear forward, dA = dC B^T]
//   matmul_tn: C (M x N) = A^T * B, A stored (K x M)           [dB = A^T dC]
// Bindings: 0 a (read), 1 b (read), 2 bias (read; read only when has_bias), 3 c (read_write),
// 4 params (uniform MatmulParams).
// Epilogue, applied as C is stored (a linear layer in one pass instead of three):
//   act(C + bias[col]) with has_bias, act(C) without; act is an ACT_* code with its parameters
//   alpha and beta (act_forward of activation.wgsl; ACT_IDENTITY for a plain product).
// Prepended when the module is built (src/ops/kernels.rs, op_prelude): the generated ACT_*
// constants of the Rust enum `Activation`, then shaders/activation.wgsl.
// Dispatch grid: (ceil(N / (4 WG)), ceil(M / (4 WG)), 1) workgroups of WG x WG invocations,
// WG an override constant the engine sets per adapter (ops::kernels::matmul_workgroup: 8 on CPU
// adapters, 16 on GPUs);
// each invocation computes a 4 x 4 block of C (register tiling), guarded at the edges.

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    act: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: MatmulParams;

// The epilogue: bias and activation of a linear layer, applied to one element of C.
fn epilogue(v: f32, col: u32) -> f32 {
    var y = v;
    if (p.has_bias != 0u) {
        y += bias[col];
    }
    return act_forward(p.act, vec4<f32>(y), p.alpha, p.beta).x;
}

const TILE: u32 = 4u;
override WG: u32 = 8u;

// A(i, kk) of op(A): stored (M x K), or (K x M) when transposed.
fn load_a(i: u32, kk: u32, trans_a: bool) -> f32 {
    if (i >= p.m) { return 0.0; }
    if (trans_a) { return a[kk * p.m + i]; }
    return a[i * p.k + kk];
}

// B(kk, j) of op(B): stored (K x N), or (N x K) when transposed.
fn load_b(kk: u32, j: u32, trans_b: bool) -> f32 {
    if (j >= p.n) { return 0.0; }
    if (trans_b) { return b[j * p.k + kk]; }
    return b[kk * p.n + j];
}

fn matmul_body(gid: vec3<u32>, trans_a: bool, trans_b: bool) {
    let row0 = gid.y * TILE;
    let col0 = gid.x * TILE;
    var acc: array<array<f32, 4>, 4>;
    for (var kk = 0u; kk < p.k; kk++) {
        var av: array<f32, 4>;
        var bv: array<f32, 4>;
        for (var t = 0u; t < TILE; t++) {
            av[t] = load_a(row0 + t, kk, trans_a);
            bv[t] = load_b(kk, col0 + t, trans_b);
        }
        for (var r = 0u; r < TILE; r++) {
            for (var s = 0u; s < TILE; s++) {
                acc[r][s] = fma(av[r], bv[s], acc[r][s]);
            }
        }
    }
    for (var r = 0u; r < TILE; r++) {
        for (var s = 0u; s < TILE; s++) {
            let i = row0 + r;
            let j = col0 + s;
            if (i < p.m && j < p.n) {
                c[i * p.n + j] = epilogue(acc[r][s], j);
            }
        }
    }
}

@compute @workgroup_size(WG, WG)
fn matmul_nn(@builtin(global_invocation_id) gid: vec3<u32>) {
    matmul_body(gid, false, false);
}

@compute @workgroup_size(WG, WG)
fn matmul_nt(@builtin(global_invocation_id) gid: vec3<u32>) {
    matmul_body(gid, false, true);
}

@compute @workgroup_size(WG, WG)
fn matmul_tn(@builtin(global_invocation_id) gid: vec3<u32>) {
    matmul_body(gid, true, false);
}

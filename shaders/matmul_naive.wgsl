// matmul_naive.wgsl: matmul version v1, the teaching kernel: C = op(A) op(B), f32, row-major,
// one element of C per invocation, every operand read straight from global memory.
//
// Entry points (all three bind the same way, as matmul.wgsl):
//   matmul_naive_nn: C (M x N) = A (M x K) * B (K x N)
//   matmul_naive_nt: C (M x N) = A (M x K) * B^T, B stored (N x K)
//   matmul_naive_tn: C (M x N) = A^T * B, A stored (K x M)
// Bindings: 0 a (read), 1 b (read), 2 bias (read; read only when has_bias), 3 c (read_write),
// 4 params (uniform MatmulParams).
// Epilogue: act(C + bias[col]) with has_bias, act(C) without (act_forward of activation.wgsl).
// Prepended when the module is built (src/ops/kernels.rs, op_prelude): the generated ACT_*
// constants, then shaders/activation.wgsl.
// Dispatch grid: (ceil(N / WG), ceil(M / WG), 1) workgroups of WG x WG invocations (WG the
// override constant of matmul.wgsl, set per adapter), one per element of C, guarded at the edges.
//
// Traffic: each invocation reads a row of op(A) and a column of op(B), 2K floats for 2K FLOPs:
// 4 bytes per FLOP from global memory when nothing is cached (benches/workbench/matmul.rs).

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

override WG: u32 = 8u;

fn naive(gid: vec3<u32>, trans_a: bool, trans_b: bool) {
    let i = gid.y;
    let j = gid.x;
    if (i >= p.m || j >= p.n) { return; }
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        var av: f32;
        var bv: f32;
        if (trans_a) { av = a[kk * p.m + i]; } else { av = a[i * p.k + kk]; }
        if (trans_b) { bv = b[j * p.k + kk]; } else { bv = b[kk * p.n + j]; }
        acc = fma(av, bv, acc);
    }
    var y = acc;
    if (p.has_bias != 0u) { y += bias[j]; }
    c[i * p.n + j] = act_forward(p.act, vec4<f32>(y), p.alpha, p.beta).x;
}

@compute @workgroup_size(WG, WG)
fn matmul_naive_nn(@builtin(global_invocation_id) gid: vec3<u32>) {
    naive(gid, false, false);
}

@compute @workgroup_size(WG, WG)
fn matmul_naive_nt(@builtin(global_invocation_id) gid: vec3<u32>) {
    naive(gid, false, true);
}

@compute @workgroup_size(WG, WG)
fn matmul_naive_tn(@builtin(global_invocation_id) gid: vec3<u32>) {
    naive(gid, true, false);
}

// matmul_subgroup.wgsl: matmul version v4, subgroup operations: C = op(A) op(B), f32, row-major.
//
// A workgroup is one subgroup of SG lanes (SG an override constant set to the adapter's
// subgroup size, read from the adapter; the engine runs this kernel only where the adapter's
// subgroup size is fixed, min = max). It computes an 8 x 4 SG block of C: lane L owns its 8
// rows and columns 4 L .. 4 L + 3 (32 accumulators). For every SG-deep slice of the contracted
// dimension lane L loads op(A)[row, k0 + L] for the 8 rows, once; the other lanes receive those
// values by subgroupShuffle instead of loading them again (no workgroup memory, no barrier),
// while each lane reads its 4 columns of op(B) straight from global memory.
//
// Entry points (all three bind the same way):
//   matmul_subgroup_nn: C (M x N) = A (M x K) * B (K x N)
//   matmul_subgroup_nt: C (M x N) = A (M x K) * B^T, B stored (N x K)
//   matmul_subgroup_tn: C (M x N) = A^T * B, A stored (K x M)
// Bindings: 0 a (read), 1 b (read), 2 bias (read; read only when has_bias), 3 c (read_write),
// 4 params (uniform MatmulParams).
// Epilogue: act(C + bias[col]) with has_bias, act(C) without (act_forward of activation.wgsl).
// Prepended when the module is built (src/ops/kernels.rs, op_prelude): the generated ACT_*
// constants, then shaders/activation.wgsl.
// Dispatch grid: (ceil(N / (4 SG)), ceil(M / 8), 1) workgroups of SG invocations.
//
// Traffic: per k a workgroup loads 8 floats of A and 4 SG of B for 64 SG FLOPs: about
// 1/4 byte per FLOP (benches/workbench/matmul.rs).

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

override SG: u32 = 32u;
const ROWS: u32 = 8u;

fn load_a(i: u32, kk: u32, trans_a: bool) -> f32 {
    if (i >= p.m || kk >= p.k) { return 0.0; }
    if (trans_a) { return a[kk * p.m + i]; }
    return a[i * p.k + kk];
}

fn load_b(kk: u32, j: u32, trans_b: bool) -> f32 {
    if (j >= p.n || kk >= p.k) { return 0.0; }
    if (trans_b) { return b[j * p.k + kk]; }
    return b[kk * p.n + j];
}

fn subgroup_body(lane: u32, wg: vec3<u32>, trans_a: bool, trans_b: bool) {
    let m0 = wg.y * ROWS;
    let j0 = wg.x * 4u * SG + lane * 4u;
    var acc: array<vec4<f32>, 8>;
    for (var k0 = 0u; k0 < p.k; k0 += SG) {
        var mine: array<f32, 8>;
        for (var r = 0u; r < ROWS; r++) {
            mine[r] = load_a(m0 + r, k0 + lane, trans_a);
        }
        let steps = min(SG, p.k - k0);
        for (var t = 0u; t < steps; t++) {
            let kk = k0 + t;
            let bv = vec4<f32>(
                load_b(kk, j0, trans_b),
                load_b(kk, j0 + 1u, trans_b),
                load_b(kk, j0 + 2u, trans_b),
                load_b(kk, j0 + 3u, trans_b)
            );
            for (var r = 0u; r < ROWS; r++) {
                acc[r] = fma(vec4<f32>(subgroupShuffle(mine[r], t)), bv, acc[r]);
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        let i = m0 + r;
        if (i >= p.m) { break; }
        for (var s = 0u; s < 4u; s++) {
            let j = j0 + s;
            if (j < p.n) {
                var y = acc[r][s];
                if (p.has_bias != 0u) { y += bias[j]; }
                c[i * p.n + j] = act_forward(p.act, vec4<f32>(y), p.alpha, p.beta).x;
            }
        }
    }
}

@compute @workgroup_size(SG)
fn matmul_subgroup_nn(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    subgroup_body(lane, wg, false, false);
}

@compute @workgroup_size(SG)
fn matmul_subgroup_nt(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    subgroup_body(lane, wg, false, true);
}

@compute @workgroup_size(SG)
fn matmul_subgroup_tn(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    subgroup_body(lane, wg, true, false);
}

// matmul_tiled.wgsl: matmul version v3, workgroup-memory tiling: C = op(A) op(B), f32, row-major.
//
// Each workgroup computes a BM x BN block of C. For every BK-deep slice of the contracted
// dimension its invocations first stage the slice of op(A) (BM x BK) and of op(B) (BK x BN) in
// workgroup memory, loading the stored operands as vec4 where their contiguous dimension is a
// multiple of 4 (VEC_A, VEC_B; scalar loads with edge guards otherwise), then each invocation
// multiplies its 4 x 4 register tile out of workgroup memory. The tile sizes are override
// constants (src/ops/kernels.rs, tiled_tile: 32 x 32 x 16 on CPU adapters, 64 x 64 x 16 on GPUs).
//
// Entry points (all three bind the same way):
//   matmul_tiled_nn: C (M x N) = A (M x K) * B (K x N)
//   matmul_tiled_nt: C (M x N) = A (M x K) * B^T, B stored (N x K)
//   matmul_tiled_tn: C (M x N) = A^T * B, A stored (K x M)
// Bindings: 0 a (read, as vec4), 1 b (read, as vec4), 2 bias (read; read only when has_bias),
// 3 c (read_write), 4 params (uniform MatmulParams). The operand buffers are bound whole (the
// engine's buffers are multiples of 256 bytes), so a vec4 view always covers them.
// Epilogue: act(C + bias[col]) with has_bias, act(C) without (act_forward of activation.wgsl).
// Prepended when the module is built (src/ops/kernels.rs, op_prelude): the generated ACT_*
// constants, then shaders/activation.wgsl.
// Dispatch grid: (ceil(N / BN), ceil(M / BM), 1) workgroups of TILE_THREADS = (BM / 4) (BN / 4)
// invocations; invocation t owns rows 4 (t / (BN / 4)) .. +4 and columns 4 (t % (BN / 4)) .. +4
// of the block.
//
// Traffic: per BK slice a workgroup loads (BM + BN) BK floats for 2 BM BN BK FLOPs, i.e.
// 2 (BM + BN) / (BM BN) bytes per FLOP: 1/16 at 64 x 64 (benches/workbench/matmul.rs).

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

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: MatmulParams;

override TILE_THREADS: u32 = 64u;
override BM: u32 = 32u;
override BN: u32 = 32u;
override BK: u32 = 16u;
// Whether the stored operand's contiguous dimension is a multiple of 4 (vec4 loads).
override VEC_A: bool = false;
override VEC_B: bool = false;

// op(A)'s slice, k-major: tile_a[kk * BM + row]; op(B)'s: tile_b[kk * BN + col].
var<workgroup> tile_a: array<f32, BM * BK>;
var<workgroup> tile_b: array<f32, BK * BN>;

fn a_at(i: u32) -> f32 {
    return a[i >> 2u][i & 3u];
}

fn b_at(i: u32) -> f32 {
    return b[i >> 2u][i & 3u];
}

// Four consecutive floats of A from flat index i (the first `left` of them, at most 4).
fn a_quad(i: u32, left: u32) -> vec4<f32> {
    if (VEC_A) { return a[i >> 2u]; }
    var v = vec4<f32>(0.0);
    for (var t = 0u; t < min(left, 4u); t++) { v[t] = a_at(i + t); }
    return v;
}

fn b_quad(i: u32, left: u32) -> vec4<f32> {
    if (VEC_B) { return b[i >> 2u]; }
    var v = vec4<f32>(0.0);
    for (var t = 0u; t < min(left, 4u); t++) { v[t] = b_at(i + t); }
    return v;
}

// Stages op(A)[m0 .. m0 + BM, k0 .. k0 + BK] in tile_a, zeros outside the matrix.
fn stage_a(m0: u32, k0: u32, lid: u32, trans_a: bool) {
    if (!trans_a) {
        // Stored (M, K): BM rows of BK / 4 quads along k.
        let quads = BK / 4u;
        for (var e = lid; e < BM * quads; e += TILE_THREADS) {
            let r = e / quads;
            let kq = (e % quads) * 4u;
            let gi = m0 + r;
            let gk = k0 + kq;
            var v = vec4<f32>(0.0);
            if (gi < p.m && gk < p.k) { v = a_quad(gi * p.k + gk, p.k - gk); }
            for (var t = 0u; t < 4u; t++) { tile_a[(kq + t) * BM + r] = v[t]; }
        }
    } else {
        // Stored (K, M): BK rows of BM / 4 quads along m.
        let quads = BM / 4u;
        for (var e = lid; e < BK * quads; e += TILE_THREADS) {
            let kr = e / quads;
            let mq = (e % quads) * 4u;
            let gk = k0 + kr;
            let gi = m0 + mq;
            var v = vec4<f32>(0.0);
            if (gk < p.k && gi < p.m) { v = a_quad(gk * p.m + gi, p.m - gi); }
            for (var t = 0u; t < 4u; t++) { tile_a[kr * BM + mq + t] = v[t]; }
        }
    }
}

// Stages op(B)[k0 .. k0 + BK, n0 .. n0 + BN] in tile_b, zeros outside the matrix.
fn stage_b(n0: u32, k0: u32, lid: u32, trans_b: bool) {
    if (!trans_b) {
        // Stored (K, N): BK rows of BN / 4 quads along n.
        let quads = BN / 4u;
        for (var e = lid; e < BK * quads; e += TILE_THREADS) {
            let kr = e / quads;
            let nq = (e % quads) * 4u;
            let gk = k0 + kr;
            let gj = n0 + nq;
            var v = vec4<f32>(0.0);
            if (gk < p.k && gj < p.n) { v = b_quad(gk * p.n + gj, p.n - gj); }
            for (var t = 0u; t < 4u; t++) { tile_b[kr * BN + nq + t] = v[t]; }
        }
    } else {
        // Stored (N, K): BN rows of BK / 4 quads along k.
        let quads = BK / 4u;
        for (var e = lid; e < BN * quads; e += TILE_THREADS) {
            let r = e / quads;
            let kq = (e % quads) * 4u;
            let gj = n0 + r;
            let gk = k0 + kq;
            var v = vec4<f32>(0.0);
            if (gj < p.n && gk < p.k) { v = b_quad(gj * p.k + gk, p.k - gk); }
            for (var t = 0u; t < 4u; t++) { tile_b[(kq + t) * BN + r] = v[t]; }
        }
    }
}

fn tiled(lid: u32, wg: vec3<u32>, trans_a: bool, trans_b: bool) {
    let tx = lid % (BN / 4u);
    let ty = lid / (BN / 4u);
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        stage_a(m0, k0, lid, trans_a);
        stage_b(n0, k0, lid, trans_b);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let ra = kk * BM + ty * 4u;
            let rb = kk * BN + tx * 4u;
            let bv = vec4<f32>(tile_b[rb], tile_b[rb + 1u], tile_b[rb + 2u], tile_b[rb + 3u]);
            acc[0] = fma(vec4<f32>(tile_a[ra]), bv, acc[0]);
            acc[1] = fma(vec4<f32>(tile_a[ra + 1u]), bv, acc[1]);
            acc[2] = fma(vec4<f32>(tile_a[ra + 2u]), bv, acc[2]);
            acc[3] = fma(vec4<f32>(tile_a[ra + 3u]), bv, acc[3]);
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let i = m0 + ty * 4u + r;
        if (i >= p.m) { break; }
        for (var s = 0u; s < 4u; s++) {
            let j = n0 + tx * 4u + s;
            if (j < p.n) {
                var y = acc[r][s];
                if (p.has_bias != 0u) { y += bias[j]; }
                c[i * p.n + j] = act_forward(p.act, vec4<f32>(y), p.alpha, p.beta).x;
            }
        }
    }
}

@compute @workgroup_size(TILE_THREADS)
fn matmul_tiled_nn(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    tiled(lid, wg, false, false);
}

@compute @workgroup_size(TILE_THREADS)
fn matmul_tiled_nt(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    tiled(lid, wg, false, true);
}

@compute @workgroup_size(TILE_THREADS)
fn matmul_tiled_tn(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    tiled(lid, wg, true, false);
}

// matmul_texture.wgsl: C = op(A) op(B), f32, row-major; the fast path for adapters with
// 8-lane subgroups (Mesa's lavapipe on AVX2/AVX-512 CPUs). Same results as matmul.wgsl.
//
//   matmul_texture_nn: C (M x N) = A (M x K) * B (K x N)      lane block 5 rows x 4 columns
//   matmul_texture_nt: C = A (M x K) * B^T, B stored (N x K)  lane block 6 rows x 4 columns (stride 8)
//   matmul_texture_tn: C = A^T * B, A stored (K x M)          lane block 8 rows x 4 columns
//
// Bindings: 0 ta, 1 tb: the stored A and B as read-only rgba32float storage textures, filled by
// copy_buffer_to_texture in one of two layouts, chosen per operand by the override constants
// A_ROWS and B_ROWS (src/ops/matmul_texture.rs, TexLayout):
//   rows (1): matrix row r is texture row r, texel x holds floats 4x..4x+3 of it, and each
//             row is padded by 64 bytes; a texel's coordinates are (x, r), no arithmetic;
//   flat (0): texel t holds floats 4t..4t+3 of the row-major matrix and texture row y holds
//             texels y * 2^shift ..; any shape fits, at a mask and a shift per load.
// 2 bias (read buffer, read only when HAS_BIAS = 1); 3 c (read_write buffer);
// 4 TexMatmulParams (uniform).
// Epilogue as in matmul.wgsl (act(C + bias[col]) or act(C), act_forward of activation.wgsl),
// but chosen by override constants here, HAS_BIAS and ACT (an ACT_* code), so a product
// without one compiles no bias load; alpha and beta are in the Params.
// Prepended when the module is built (src/ops/kernels.rs, op_prelude): the generated ACT_*
// constants of the Rust enum `Activation`, then shaders/activation.wgsl.
// Requires the contiguous dimension of each stored operand to be
// a multiple of 4 (NN: K and N; NT: K; TN: M and N).
// Dispatch grid: (ceil(M / R), ceil(N / 32), 1) workgroups of 8 invocations (one subgroup),
// R = 5, 6, 8 rows for NN, NT, TN. Row blocks vary fastest, so consecutive workgroups reuse
// the same columns of B from cache.
//
// Why it is shaped this way (measured on lavapipe, Mesa 22.3, see benches/NOTES.md):
// - llvmpipe runs the 8 lanes of a subgroup as one SIMD vector, one register per scalar.
//   A storage-buffer load becomes a per-lane scalar loop with bounds checks, while a storage-
//   texture load is a vector gather: the same tiling reads at 19 GFLOP/s from buffers and
//   40+ from textures.
// - Each lane keeps R rows x 4 columns of C in registers (20-32 of the 32 vector registers).
// - A is read once per workgroup: lane l loads the k-chunk l, and subgroupBroadcast (two
//   shuffles) hands it to the other lanes; it needs a constant lane, hence `lane0..lane7`.
// - Blocks are plain structs, not arrays: llvmpipe keeps struct fields in registers, while
//   arrays indexed in loops were spilled (24 vs 40 GFLOP/s).
// - Workgroup memory and barriers would not help here: workgroup loads are per-lane loops too.
// - Address arithmetic per load costs: at 1024^3 the rows layout runs NN at 42-44 GFLOP/s
//   where the flat one runs 32-33, on the same bytes; the padding stops 4 KiB row pitches
//   from mapping a column strip onto one cache set (NT 28 -> 59 GFLOP/s).
// Edges: out-of-range rows and columns read garbage or zeros that land only in discarded
// outputs; the K loop runs whole 8-lane blocks, then a tail without broadcasts; stores are guarded.

struct TexMatmulParams {
    m: u32,
    n: u32,
    k: u32,
    // log2 of the flat textures' width in texels.
    shift: u32,
    alpha: f32,
    beta: f32,
    _pad0: u32,
    _pad1: u32,
}

// 1: A (resp. B) is in the rows layout; 0: flat.
override A_ROWS: u32 = 0u;
override B_ROWS: u32 = 0u;
// The epilogue (see the header): 1 adds bias[col]; ACT is the activation's code. As a uniform
// the epilogue cost the weight-gradient products (which have none) 11-13% of their time at
// K = 128: llvmpipe gathered bias[col] for every stored element whatever the branch decided.
override HAS_BIAS: u32 = 0u;
override ACT: u32 = ACT_IDENTITY;

@group(0) @binding(0) var ta: texture_storage_2d<rgba32float, read>;
@group(0) @binding(1) var tb: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: TexMatmulParams;

// Up to eight texels: a lane's A values, or its block of C accumulators (unused fields stay 0,
// and the compiler drops them).
struct Vec4x8 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
    v6: vec4<f32>,
    v7: vec4<f32>,
}

fn zeros() -> Vec4x8 {
    let z = vec4<f32>();
    return Vec4x8(z, z, z, z, z, z, z, z);
}

// Lane L's texels, in every lane.
fn lane0(x: Vec4x8) -> Vec4x8 { return Vec4x8(subgroupBroadcast(x.v0, 0u), subgroupBroadcast(x.v1, 0u), subgroupBroadcast(x.v2, 0u), subgroupBroadcast(x.v3, 0u), subgroupBroadcast(x.v4, 0u), subgroupBroadcast(x.v5, 0u), subgroupBroadcast(x.v6, 0u), subgroupBroadcast(x.v7, 0u)); }
fn lane1(x: Vec4x8) -> Vec4x8 { return Vec4x8(subgroupBroadcast(x.v0, 1u), subgroupBroadcast(x.v1, 1u), subgroupBroadcast(x.v2, 1u), subgroupBroadcast(x.v3, 1u), subgroupBroadcast(x.v4, 1u), subgroupBroadcast(x.v5, 1u), subgroupBroadcast(x.v6, 1u), subgroupBroadcast(x.v7, 1u)); }
fn lane2(x: Vec4x8) -> Vec4x8 { return Vec4x8(subgroupBroadcast(x.v0, 2u), subgroupBroadcast(x.v1, 2u), subgroupBroadcast(x.v2, 2u), subgroupBroadcast(x.v3, 2u), subgroupBroadcast(x.v4, 2u), subgroupBroadcast(x.v5, 2u), subgroupBroadcast(x.v6, 2u), subgroupBroadcast(x.v7, 2u)); }
fn lane3(x: Vec4x8) -> Vec4x8 { return Vec4x8(subgroupBroadcast(x.v0, 3u), subgroupBroadcast(x.v1, 3u), subgroupBroadcast(x.v2, 3u), subgroupBroadcast(x.v3, 3u), subgroupBroadcast(x.v4, 3u), subgroupBroadcast(x.v5, 3u), subgroupBroadcast(x.v6, 3u), subgroupBroadcast(x.v7, 3u)); }
fn lane4(x: Vec4x8) -> Vec4x8 { return Vec4x8(subgroupBroadcast(x.v0, 4u), subgroupBroadcast(x.v1, 4u), subgroupBroadcast(x.v2, 4u), subgroupBroadcast(x.v3, 4u), subgroupBroadcast(x.v4, 4u), subgroupBroadcast(x.v5, 4u), subgroupBroadcast(x.v6, 4u), subgroupBroadcast(x.v7, 4u)); }
fn lane5(x: Vec4x8) -> Vec4x8 { return Vec4x8(subgroupBroadcast(x.v0, 5u), subgroupBroadcast(x.v1, 5u), subgroupBroadcast(x.v2, 5u), subgroupBroadcast(x.v3, 5u), subgroupBroadcast(x.v4, 5u), subgroupBroadcast(x.v5, 5u), subgroupBroadcast(x.v6, 5u), subgroupBroadcast(x.v7, 5u)); }
fn lane6(x: Vec4x8) -> Vec4x8 { return Vec4x8(subgroupBroadcast(x.v0, 6u), subgroupBroadcast(x.v1, 6u), subgroupBroadcast(x.v2, 6u), subgroupBroadcast(x.v3, 6u), subgroupBroadcast(x.v4, 6u), subgroupBroadcast(x.v5, 6u), subgroupBroadcast(x.v6, 6u), subgroupBroadcast(x.v7, 6u)); }
fn lane7(x: Vec4x8) -> Vec4x8 { return Vec4x8(subgroupBroadcast(x.v0, 7u), subgroupBroadcast(x.v1, 7u), subgroupBroadcast(x.v2, 7u), subgroupBroadcast(x.v3, 7u), subgroupBroadcast(x.v4, 7u), subgroupBroadcast(x.v5, 7u), subgroupBroadcast(x.v6, 7u), subgroupBroadcast(x.v7, 7u)); }

// Texel t of a flat texture.
fn texel(t: u32) -> vec2<i32> {
    return vec2<i32>(i32(t & ((1u << p.shift) - 1u)), i32(t >> p.shift));
}

// Texel x of row `row` of stored A (B), whose rows are `row_texels` texels long.
fn at(row: u32, x: u32, row_texels: u32) -> vec2<i32> {
    if (A_ROWS != 0u) {
        return vec2<i32>(i32(x), i32(row));
    }
    return texel(row * row_texels + x);
}

fn bt(row: u32, x: u32, row_texels: u32) -> vec2<i32> {
    if (B_ROWS != 0u) {
        return vec2<i32>(i32(x), i32(row));
    }
    return texel(row * row_texels + x);
}

fn store(row: u32, col: u32, v: f32) {
    if (row < p.m && col < p.n) {
        var y = v;
        if (HAS_BIAS != 0u) {
            y += bias[col];
        }
        c[row * p.n + col] = act_forward(ACT, vec4<f32>(y), p.alpha, p.beta).x;
    }
}

// ---- NN ----------------------------------------------------------------------------

// A(row0 + r, 4kq .. 4kq + 3) for r < 5: one texel per row.
fn load_a_nn(row0: u32, kq: u32) -> Vec4x8 {
    let pa = p.k / 4u;
    var a = zeros();
    a.v0 = textureLoad(ta, at(row0, kq, pa));
    a.v1 = textureLoad(ta, at(row0 + 1u, kq, pa));
    a.v2 = textureLoad(ta, at(row0 + 2u, kq, pa));
    a.v3 = textureLoad(ta, at(row0 + 3u, kq, pa));
    a.v4 = textureLoad(ta, at(row0 + 4u, kq, pa));
    return a;
}

// acc += A(rows, 4kq .. 4kq + 3) B(4kq .. 4kq + 3, 4cq .. 4cq + 3): four rank-1 updates.
fn update_nn(acc: Vec4x8, a: Vec4x8, kq: u32, cq: u32) -> Vec4x8 {
    var o = acc;
    let pb = p.n / 4u;
    for (var e = 0u; e < 4u; e++) {
        let b = textureLoad(tb, bt(4u * kq + e, cq, pb));
        o.v0 += a.v0[e] * b;
        o.v1 += a.v1[e] * b;
        o.v2 += a.v2[e] * b;
        o.v3 += a.v3[e] * b;
        o.v4 += a.v4[e] * b;
    }
    return o;
}

@compute @workgroup_size(8)
fn matmul_texture_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wg.x * 5u;
    let cq = wg.y * 8u + lane;
    let kq_end = p.k / 4u;
    var acc = zeros();
    var kq = 0u;
    for (; kq + 8u <= kq_end; kq += 8u) {
        let a = load_a_nn(row0, kq + lane);
        acc = update_nn(acc, lane0(a), kq, cq);
        acc = update_nn(acc, lane1(a), kq + 1u, cq);
        acc = update_nn(acc, lane2(a), kq + 2u, cq);
        acc = update_nn(acc, lane3(a), kq + 3u, cq);
        acc = update_nn(acc, lane4(a), kq + 4u, cq);
        acc = update_nn(acc, lane5(a), kq + 5u, cq);
        acc = update_nn(acc, lane6(a), kq + 6u, cq);
        acc = update_nn(acc, lane7(a), kq + 7u, cq);
    }
    for (; kq < kq_end; kq++) {
        acc = update_nn(acc, load_a_nn(row0, kq), kq, cq);
    }
    for (var e = 0u; e < 4u; e++) {
        let col = 4u * cq + e;
        store(row0, col, acc.v0[e]);
        store(row0 + 1u, col, acc.v1[e]);
        store(row0 + 2u, col, acc.v2[e]);
        store(row0 + 3u, col, acc.v3[e]);
        store(row0 + 4u, col, acc.v4[e]);
    }
}

// ---- NT ----------------------------------------------------------------------------

// A(row0 + r, 4kq .. 4kq + 3) for r < 6.
fn load_a_nt(row0: u32, kq: u32) -> Vec4x8 {
    var a = load_a_nn(row0, kq);
    a.v5 = textureLoad(ta, at(row0 + 5u, kq, p.k / 4u));
    return a;
}

// acc[r][e] += dot(A(row r, k-chunk kq), B(column cb + 8e, k-chunk kq)): the lane's columns
// are cb, cb + 8, cb + 16, cb + 24, so the 8 lanes read 8 consecutive rows of stored B.
fn update_nt(acc: Vec4x8, a: Vec4x8, kq: u32, cb: u32) -> Vec4x8 {
    let pb = p.k / 4u;
    // Columns of bm are the four B rows: a * bm = (dot(a, b0), .., dot(a, b3)).
    let bm = mat4x4<f32>(
        textureLoad(tb, bt(cb, kq, pb)),
        textureLoad(tb, bt(cb + 8u, kq, pb)),
        textureLoad(tb, bt(cb + 16u, kq, pb)),
        textureLoad(tb, bt(cb + 24u, kq, pb)),
    );
    var o = acc;
    o.v0 += a.v0 * bm;
    o.v1 += a.v1 * bm;
    o.v2 += a.v2 * bm;
    o.v3 += a.v3 * bm;
    o.v4 += a.v4 * bm;
    o.v5 += a.v5 * bm;
    return o;
}

@compute @workgroup_size(8)
fn matmul_texture_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wg.x * 6u;
    let cb = wg.y * 32u + lane;
    let kq_end = p.k / 4u;
    var acc = zeros();
    var kq = 0u;
    for (; kq + 8u <= kq_end; kq += 8u) {
        let a = load_a_nt(row0, kq + lane);
        acc = update_nt(acc, lane0(a), kq, cb);
        acc = update_nt(acc, lane1(a), kq + 1u, cb);
        acc = update_nt(acc, lane2(a), kq + 2u, cb);
        acc = update_nt(acc, lane3(a), kq + 3u, cb);
        acc = update_nt(acc, lane4(a), kq + 4u, cb);
        acc = update_nt(acc, lane5(a), kq + 5u, cb);
        acc = update_nt(acc, lane6(a), kq + 6u, cb);
        acc = update_nt(acc, lane7(a), kq + 7u, cb);
    }
    for (; kq < kq_end; kq++) {
        acc = update_nt(acc, load_a_nt(row0, kq), kq, cb);
    }
    for (var e = 0u; e < 4u; e++) {
        let col = cb + 8u * e;
        store(row0, col, acc.v0[e]);
        store(row0 + 1u, col, acc.v1[e]);
        store(row0 + 2u, col, acc.v2[e]);
        store(row0 + 3u, col, acc.v3[e]);
        store(row0 + 4u, col, acc.v4[e]);
        store(row0 + 5u, col, acc.v5[e]);
    }
}

// ---- TN ----------------------------------------------------------------------------

// A^T(row0 .. row0 + 7, k) = stored A(k, row0 .. row0 + 7): two texels (row0 is a multiple of 8).
fn load_a_tn(row0: u32, k: u32) -> Vec4x8 {
    let pa = p.m / 4u;
    var a = zeros();
    a.v0 = textureLoad(ta, at(k, row0 / 4u, pa));
    a.v1 = textureLoad(ta, at(k, row0 / 4u + 1u, pa));
    return a;
}

// acc[r] += A^T(row0 + r, k) B(k, 4cq .. 4cq + 3): one rank-1 update.
fn update_tn(acc: Vec4x8, a: Vec4x8, k: u32, cq: u32) -> Vec4x8 {
    let b = textureLoad(tb, bt(k, cq, p.n / 4u));
    var o = acc;
    o.v0 += a.v0.x * b;
    o.v1 += a.v0.y * b;
    o.v2 += a.v0.z * b;
    o.v3 += a.v0.w * b;
    o.v4 += a.v1.x * b;
    o.v5 += a.v1.y * b;
    o.v6 += a.v1.z * b;
    o.v7 += a.v1.w * b;
    return o;
}

@compute @workgroup_size(8)
fn matmul_texture_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wg.x * 8u;
    let cq = wg.y * 8u + lane;
    var acc = zeros();
    var k = 0u;
    for (; k + 8u <= p.k; k += 8u) {
        let a = load_a_tn(row0, k + lane);
        acc = update_tn(acc, lane0(a), k, cq);
        acc = update_tn(acc, lane1(a), k + 1u, cq);
        acc = update_tn(acc, lane2(a), k + 2u, cq);
        acc = update_tn(acc, lane3(a), k + 3u, cq);
        acc = update_tn(acc, lane4(a), k + 4u, cq);
        acc = update_tn(acc, lane5(a), k + 5u, cq);
        acc = update_tn(acc, lane6(a), k + 6u, cq);
        acc = update_tn(acc, lane7(a), k + 7u, cq);
    }
    for (; k < p.k; k++) {
        acc = update_tn(acc, load_a_tn(row0, k), k, cq);
    }
    for (var e = 0u; e < 4u; e++) {
        let col = 4u * cq + e;
        store(row0, col, acc.v0[e]);
        store(row0 + 1u, col, acc.v1[e]);
        store(row0 + 2u, col, acc.v2[e]);
        store(row0 + 3u, col, acc.v3[e]);
        store(row0 + 4u, col, acc.v4[e]);
        store(row0 + 5u, col, acc.v5[e]);
        store(row0 + 6u, col, acc.v6[e]);
        store(row0 + 7u, col, acc.v7[e]);
    }
}

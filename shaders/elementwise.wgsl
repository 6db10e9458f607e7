// elementwise.wgsl: element-wise kernels, four elements per invocation.
//
// Entry points and bindings (inputs read, outputs read_write, then the uniform Params):
//   unary_forward   y[i] = f(x[i])                           0 x, 1 y, 2 UnaryParams
//   unary_backward  dx[i] = dy[i] * f'(x[i]) (via y[i])      0 x, 1 y, 2 dy, 3 dx, 4 UnaryParams
//   binary_forward  c[i] = a[i] (op) b[i % b_len]            0 a, 1 b, 2 c, 3 BinaryParams
//   binary_backward da[i], db_full[i] for mul and div        0 a, 1 b, 2 dy, 3 da, 4 db_full, 5 BinaryParams
//   fill            y[i] = value                             0 y, 1 FillParams
//   repeat_rows     y[(r K + j) D + d] = x[r D + d], j < K   0 x, 1 y, 2 RepeatParams  (each row K times)
// `b[i % b_len]` is the broadcast rule: b_len = n (same shape), the row length
// (a bias row added to every row), or 1 (a scalar).
//
// Buffers are bound as array<vec4<f32>> and invocation t handles elements 4t .. 4t + 3: on a
// CPU adapter every buffer access costs a per-lane loop, so a vec4 access moves four times the
// data for the same cost (measured: add of 1M elements 2.6 ms -> 1.9 ms). The last vec4 may
// run past n into the padding every tensor buffer has (sizes are rounded up to 256 bytes):
// it computes values nobody reads. Integer division is slow on CPU adapters too, so the
// broadcast index is computed once per vec4 when b_len is a multiple of 4.
// Dispatch grid: grid_1d(ceil(n / 4), 256): (min(G, 65535), ceil(G / 65535), 1) workgroups of
// 256, G = ceil(n / 1024); the vec4 index is gid.x + gid.y * num_workgroups.x * 256.
// repeat_rows works on single elements: grid_1d(n, 256).
//
// Prepended when the module is built (src/ops/kernels.rs, op_prelude): the op-code constants
// ACT_* (Rust `Activation`) and BIN_* (Rust `Binary`) generated from the Rust enums, then
// shaders/activation.wgsl (act_forward, act_derivative). UnaryParams.op is an ACT_* code,
// BinaryParams.op a BIN_* code.

struct UnaryParams {
    n: u32,
    op: u32,     // ACT_* code
    alpha: f32,  // leaky_relu slope; affine scale
    beta: f32,   // affine shift
}

struct BinaryParams {
    n: u32,
    b_len: u32,
    op: u32,     // BIN_* code
    _pad: u32,
}

struct FillParams {
    n: u32,
    value: f32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// ---- unary -----------------------------------------------------------------

@group(0) @binding(0) var<storage, read> ux: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> uy: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> up: UnaryParams;

@compute @workgroup_size(256)
fn unary_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i * 4u >= up.n) { return; }
    uy[i] = act_forward(up.op, ux[i], up.alpha, up.beta);
}

@group(0) @binding(0) var<storage, read> ubx: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> uby: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> ubdy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> ubdx: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> ubp: UnaryParams;

@compute @workgroup_size(256)
fn unary_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i * 4u >= ubp.n) { return; }
    ubdx[i] = ubdy[i] * act_derivative(ubp.op, ubx[i], uby[i], ubp.alpha);
}

// ---- binary with broadcasting ----------------------------------------------

// Both entry points bind a at 0 and b at 1.
@group(0) @binding(0) var<storage, read> ba: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> bb: array<vec4<f32>>;

// The four elements of b that meet a[4i .. 4i + 3].
fn broadcast4(i: u32, n: u32, b_len: u32) -> vec4<f32> {
    if (b_len == n) {
        return bb[i];
    }
    if (b_len == 1u) {
        return vec4<f32>(bb[0].x);
    }
    if (b_len % 4u == 0u) {
        return bb[i % (b_len / 4u)];
    }
    var v: vec4<f32>;
    for (var c = 0u; c < 4u; c++) {
        let j = (4u * i + c) % b_len;
        v[c] = bb[j / 4u][j % 4u];
    }
    return v;
}

fn apply(op: u32, x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    switch op {
        case BIN_ADD: { return x + y; }
        case BIN_SUB: { return x - y; }
        case BIN_MUL: { return x * y; }
        case BIN_DIV: { return x / y; }
        default: { return act_nan(op); }
    }
}

@group(0) @binding(2) var<storage, read_write> bc: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> bp: BinaryParams;

@compute @workgroup_size(256)
fn binary_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i * 4u >= bp.n) { return; }
    bc[i] = apply(bp.op, ba[i], broadcast4(i, bp.n, bp.b_len));
}

@group(0) @binding(2) var<storage, read> bbdy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bbda: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> bbdb: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> bbp: BinaryParams;

// Gradients of mul and div (add and sub need no kernel: da = dy, db = +-dy).
// db_full is per element; the caller sums it over broadcast rows.
@compute @workgroup_size(256)
fn binary_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i * 4u >= bbp.n) { return; }
    let x = ba[i];
    let y = broadcast4(i, bbp.n, bbp.b_len);
    let dy = bbdy[i];
    switch bbp.op {
        case BIN_MUL: {
            bbda[i] = dy * y;
            bbdb[i] = dy * x;
        }
        case BIN_DIV: {
            bbda[i] = dy / y;
            bbdb[i] = -dy * x / (y * y);
        }
        default: {
            bbda[i] = act_nan(bbp.op);
            bbdb[i] = act_nan(bbp.op);
        }
    }
}

// ---- fill --------------------------------------------------------------------

@group(0) @binding(0) var<storage, read_write> fy: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> fp: FillParams;

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i * 4u >= fp.n) { return; }
    fy[i] = vec4<f32>(fp.value);
}

// ---- repeat_rows -------------------------------------------------------------------

struct RepeatParams {
    rows: u32,
    dim: u32,
    times: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> rx: array<f32>;
@group(0) @binding(1) var<storage, read_write> ry: array<f32>;
@group(0) @binding(2) var<uniform> rp: RepeatParams;

@compute @workgroup_size(256)
fn repeat_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= rp.rows * rp.times * rp.dim) { return; }
    let d = i % rp.dim;
    let r = i / (rp.dim * rp.times);
    ry[i] = rx[r * rp.dim + d];
}

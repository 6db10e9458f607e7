// elementwise.wgsl: one-thread-per-element kernels.
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
// Dispatch grid: grid_1d(n, 256): (min(G, 65535), ceil(G / 65535), 1) workgroups of 256,
// G = ceil(n / 256); the flat index is gid.x + gid.y * num_workgroups.x * 256.

struct UnaryParams {
    n: u32,
    op: u32,     // 0 relu, 1 leaky_relu, 2 sigmoid, 3 tanh, 4 exp, 5 affine
    alpha: f32,  // leaky_relu slope; affine scale
    beta: f32,   // affine shift
}

struct BinaryParams {
    n: u32,
    b_len: u32,
    op: u32,     // 0 add, 1 sub, 2 mul, 3 div
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

// Numerically stable logistic function: never evaluates exp of a large positive number.
fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// ---- unary -----------------------------------------------------------------

@group(0) @binding(0) var<storage, read> ux: array<f32>;
@group(0) @binding(1) var<storage, read_write> uy: array<f32>;
@group(0) @binding(2) var<uniform> up: UnaryParams;

@compute @workgroup_size(256)
fn unary_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= up.n) { return; }
    let x = ux[i];
    var y: f32;
    switch up.op {
        case 0u: { y = max(x, 0.0); }
        case 1u: { y = select(up.alpha * x, x, x > 0.0); }
        case 2u: { y = sigmoid(x); }
        case 3u: { y = tanh(x); }
        case 4u: { y = exp(x); }
        default: { y = up.alpha * x + up.beta; }
    }
    uy[i] = y;
}

@group(0) @binding(0) var<storage, read> ubx: array<f32>;
@group(0) @binding(1) var<storage, read> uby: array<f32>;
@group(0) @binding(2) var<storage, read> ubdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> ubdx: array<f32>;
@group(0) @binding(4) var<uniform> ubp: UnaryParams;

@compute @workgroup_size(256)
fn unary_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= ubp.n) { return; }
    let x = ubx[i];
    let y = uby[i];
    var d: f32;
    switch ubp.op {
        // NOTE: relu'(0) is taken as 0, as in PyTorch.
        case 0u: { d = select(0.0, 1.0, x > 0.0); }
        case 1u: { d = select(ubp.alpha, 1.0, x > 0.0); }
        // The saved output gives the derivative without recomputing exp.
        case 2u: { d = y * (1.0 - y); }
        case 3u: { d = 1.0 - y * y; }
        case 4u: { d = y; }
        default: { d = ubp.alpha; }
    }
    ubdx[i] = ubdy[i] * d;
}

// ---- binary with broadcasting ----------------------------------------------

@group(0) @binding(0) var<storage, read> ba: array<f32>;
@group(0) @binding(1) var<storage, read> bb: array<f32>;
@group(0) @binding(2) var<storage, read_write> bc: array<f32>;
@group(0) @binding(3) var<uniform> bp: BinaryParams;

@compute @workgroup_size(256)
fn binary_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= bp.n) { return; }
    let x = ba[i];
    // Integer division is slow on CPU adapters: skip the modulo when nothing is broadcast.
    var y: f32;
    if (bp.b_len == bp.n) {
        y = bb[i];
    } else {
        y = bb[i % bp.b_len];
    }
    var z: f32;
    switch bp.op {
        case 0u: { z = x + y; }
        case 1u: { z = x - y; }
        case 2u: { z = x * y; }
        default: { z = x / y; }
    }
    bc[i] = z;
}

@group(0) @binding(0) var<storage, read> bba: array<f32>;
@group(0) @binding(1) var<storage, read> bbb: array<f32>;
@group(0) @binding(2) var<storage, read> bbdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> bbda: array<f32>;
@group(0) @binding(4) var<storage, read_write> bbdb: array<f32>;
@group(0) @binding(5) var<uniform> bbp: BinaryParams;

// Gradients of mul and div (add and sub need no kernel: da = dy, db = +-dy).
// db_full is per element; the caller sums it over broadcast rows.
@compute @workgroup_size(256)
fn binary_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= bbp.n) { return; }
    let x = bba[i];
    let y = bbb[i % bbp.b_len];
    let dy = bbdy[i];
    if (bbp.op == 2u) {
        bbda[i] = dy * y;
        bbdb[i] = dy * x;
    } else {
        bbda[i] = dy / y;
        bbdb[i] = -dy * x / (y * y);
    }
}

// ---- fill --------------------------------------------------------------------

@group(0) @binding(0) var<storage, read_write> fy: array<f32>;
@group(0) @binding(1) var<uniform> fp: FillParams;

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= fp.n) { return; }
    fy[i] = fp.value;
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

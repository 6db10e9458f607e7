// conv.wgsl: the data movement around convolutions done as matrix products (NCHW).
//
// conv2d is lowered to one matmul by unfolding ("im2col") every receptive field of
// the input into a row of a matrix; its input gradient folds the rows back ("col2im").
// The geometry, shared by all entry points (see ConvParams):
//   input  x (N, C, H, W), output y (N, O, OH, OW), kernel (KH, KW),
//   OH = (H + 2 pad_h - dil_h (KH - 1) - 1) / stride_h + 1, likewise OW;
//   output pixel (oh, ow) sees input (oh stride_h - pad_h + kh dil_h, ow stride_w - pad_w + kw dil_w).
//
// Entry points, bindings and dispatch grids (grid_1d(n, 256): one thread per output element):
//   im2col        col[(n OH + oh) OW + ow, (c KH + kh) KW + kw] = x[n, c, ih, iw] (0 outside)
//                 0 x, 1 col, 2 ConvParams;  grid_1d(N OH OW C KH KW, 256)
//   col2im        dx[n, c, h, w] = bias[c] (if has_bias) + sum over (kh, kw) of
//                 col[row(oh, ow), (c KH + kh) KW + kw] for every output pixel (oh, ow)
//                 whose field holds (h, w) at (kh, kw)
//                 0 col, 1 bias, 2 dx, 3 ConvParams;  grid_1d(N C H W, 256)
//                 (a gather: each thread owns one dx element, so no atomics are needed)
//   rows_to_nchw  y[n, o, p] = m[n P + p, o] + bias[o]    (P = OH OW; bias used if has_bias)
//                 0 m, 1 bias, 2 y, 3 LayoutParams;  grid_1d(N O P, 256)
//   nchw_to_rows  m[n P + p, o] = y[n, o, p]
//                 0 y, 1 m, 2 LayoutParams;  grid_1d(N O P, 256)

struct ConvParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    oh: u32,
    ow: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dil_h: u32,
    dil_w: u32,
    has_bias: u32,
    _pad: u32,
}

struct LayoutParams {
    n: u32,
    o: u32,
    p: u32,
    has_bias: u32,
}

const WG: u32 = 256u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@group(0) @binding(0) var<storage, read> ic_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> ic_col: array<f32>;
@group(0) @binding(2) var<uniform> ic_p: ConvParams;

@compute @workgroup_size(256)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = ic_p;
    let cols = p.c * p.kh * p.kw;
    let i = flat(gid, nwg);
    if (i >= p.n * p.oh * p.ow * cols) { return; }
    let row = i / cols;
    let col = i % cols;
    let kw = col % p.kw;
    let kh = (col / p.kw) % p.kh;
    let c = col / (p.kw * p.kh);
    let ow = row % p.ow;
    let oh = (row / p.ow) % p.oh;
    let n = row / (p.ow * p.oh);
    // Signed arithmetic: padding can put the field left of or above the image.
    let ih = i32(oh * p.stride_h + kh * p.dil_h) - i32(p.pad_h);
    let iw = i32(ow * p.stride_w + kw * p.dil_w) - i32(p.pad_w);
    var v = 0.0;
    if (ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
        v = ic_x[((n * p.c + c) * p.h + u32(ih)) * p.w + u32(iw)];
    }
    ic_col[i] = v;
}

@group(0) @binding(0) var<storage, read> ci_col: array<f32>;
@group(0) @binding(1) var<storage, read> ci_bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> ci_dx: array<f32>;
@group(0) @binding(3) var<uniform> ci_p: ConvParams;

@compute @workgroup_size(256)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = ci_p;
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * p.h * p.w) { return; }
    let w = i % p.w;
    let h = (i / p.w) % p.h;
    let c = (i / (p.w * p.h)) % p.c;
    let n = i / (p.w * p.h * p.c);
    let cols = p.c * p.kh * p.kw;
    var acc = 0.0;
    if (p.has_bias != 0u) {
        acc = ci_bias[c];
    }
    for (var kh = 0u; kh < p.kh; kh++) {
        // oh * stride_h = h + pad_h - kh * dil_h must be a non-negative multiple of stride_h.
        let num_h = i32(h + p.pad_h) - i32(kh * p.dil_h);
        if (num_h < 0 || num_h % i32(p.stride_h) != 0) { continue; }
        let oh = u32(num_h) / p.stride_h;
        if (oh >= p.oh) { continue; }
        for (var kw = 0u; kw < p.kw; kw++) {
            let num_w = i32(w + p.pad_w) - i32(kw * p.dil_w);
            if (num_w < 0 || num_w % i32(p.stride_w) != 0) { continue; }
            let ow = u32(num_w) / p.stride_w;
            if (ow >= p.ow) { continue; }
            let row = (n * p.oh + oh) * p.ow + ow;
            acc += ci_col[row * cols + (c * p.kh + kh) * p.kw + kw];
        }
    }
    ci_dx[i] = acc;
}

@group(0) @binding(0) var<storage, read> rn_m: array<f32>;
@group(0) @binding(1) var<storage, read> rn_bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> rn_y: array<f32>;
@group(0) @binding(3) var<uniform> rn_p: LayoutParams;

@compute @workgroup_size(256)
fn rows_to_nchw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= rn_p.n * rn_p.o * rn_p.p) { return; }
    let px = i % rn_p.p;
    let o = (i / rn_p.p) % rn_p.o;
    let n = i / (rn_p.p * rn_p.o);
    var v = rn_m[(n * rn_p.p + px) * rn_p.o + o];
    if (rn_p.has_bias != 0u) {
        v += rn_bias[o];
    }
    rn_y[i] = v;
}

@group(0) @binding(0) var<storage, read> nr_y: array<f32>;
@group(0) @binding(1) var<storage, read_write> nr_m: array<f32>;
@group(0) @binding(2) var<uniform> nr_p: LayoutParams;

@compute @workgroup_size(256)
fn nchw_to_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Thread i writes m in order (coalesced writes; the reads stride by P).
    let i = flat(gid, nwg);
    if (i >= nr_p.n * nr_p.o * nr_p.p) { return; }
    let o = i % nr_p.o;
    let px = (i / nr_p.o) % nr_p.p;
    let n = i / (nr_p.o * nr_p.p);
    nr_m[i] = nr_y[(n * nr_p.o + o) * nr_p.p + px];
}

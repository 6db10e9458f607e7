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
//                 0 x, 1 col, 2 ConvParams;  grid_1d(N OH OW C, 256), one thread per (pixel, channel)
//   im2col_kw4    the same for KW = 4 (every k4 layer of the models): one thread per (pixel, channel,
//                 kernel row) writes its four taps as one vec4 (col bound as array<vec4<f32>>):
//                 0 x, 1 col, 2 ConvParams;  grid_1d(N OH OW C KH, 256)
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
    // One thread per (output pixel, input channel): it writes that channel's KH x KW taps,
    // so the index arithmetic (integer division is slow on CPU adapters) is done once per field.
    let p = ic_p;
    let t = flat(gid, nwg);
    if (t >= p.n * p.oh * p.ow * p.c) { return; }
    let c = t % p.c;
    let row = t / p.c;
    let ow = row % p.ow;
    let oh = (row / p.ow) % p.oh;
    let n = row / (p.ow * p.oh);
    // Signed arithmetic: padding can put the field left of or above the image.
    let ih0 = i32(oh * p.stride_h) - i32(p.pad_h);
    let iw0 = i32(ow * p.stride_w) - i32(p.pad_w);
    let x_base = (n * p.c + c) * p.h;
    var out = row * (p.c * p.kh * p.kw) + c * p.kh * p.kw;
    for (var kh = 0u; kh < p.kh; kh++) {
        let ih = ih0 + i32(kh * p.dil_h);
        let row_ok = ih >= 0 && ih < i32(p.h);
        for (var kw = 0u; kw < p.kw; kw++) {
            let iw = iw0 + i32(kw * p.dil_w);
            var v = 0.0;
            if (row_ok && iw >= 0 && iw < i32(p.w)) {
                v = ic_x[(x_base + u32(ih)) * p.w + u32(iw)];
            }
            ic_col[out] = v;
            out += 1u;
        }
    }
}

@group(0) @binding(0) var<storage, read> i4_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> i4_col: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> i4_p: ConvParams;

@compute @workgroup_size(256)
fn im2col_kw4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // A storage write costs a per-lane loop on CPU adapters whatever its width: one vec4
    // store instead of four scalar ones.
    let p = i4_p;
    let t = flat(gid, nwg);
    if (t >= p.n * p.oh * p.ow * p.c * p.kh) { return; }
    let kh = t % p.kh;
    let c = (t / p.kh) % p.c;
    let row = t / (p.kh * p.c);
    let ow = row % p.ow;
    let oh = (row / p.ow) % p.oh;
    let n = row / (p.ow * p.oh);
    let ih = i32(oh * p.stride_h + kh * p.dil_h) - i32(p.pad_h);
    let iw0 = i32(ow * p.stride_w) - i32(p.pad_w);
    var v = vec4<f32>(0.0);
    if (ih >= 0 && ih < i32(p.h)) {
        let base = ((n * p.c + c) * p.h + u32(ih)) * p.w;
        for (var kw = 0u; kw < 4u; kw++) {
            let iw = iw0 + i32(kw * p.dil_w);
            if (iw >= 0 && iw < i32(p.w)) {
                v[kw] = i4_x[base + u32(iw)];
            }
        }
    }
    // (row, c, kh) starts at float row * C * KH * 4 + (c * KH + kh) * 4: vec4 index t.
    i4_col[t] = v;
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
    // Output pixel oh sees h at tap kh when oh * stride_h = h + pad_h - kh * dil_h. Walk the
    // candidate oh directly (about KH / stride_h of them) instead of testing every tap.
    let sh = h + p.pad_h;
    let sw = w + p.pad_w;
    let span_h = (p.kh - 1u) * p.dil_h;
    let span_w = (p.kw - 1u) * p.dil_w;
    let oh_first = select(0u, (sh - span_h + p.stride_h - 1u) / p.stride_h, sh > span_h);
    let oh_last = min(sh / p.stride_h, p.oh - 1u);
    let ow_first = select(0u, (sw - span_w + p.stride_w - 1u) / p.stride_w, sw > span_w);
    let ow_last = min(sw / p.stride_w, p.ow - 1u);
    for (var oh = oh_first; oh <= oh_last && oh < p.oh; oh++) {
        let dh = sh - oh * p.stride_h;
        if (dh % p.dil_h != 0u) { continue; }
        let kh = dh / p.dil_h;
        for (var ow = ow_first; ow <= ow_last && ow < p.ow; ow++) {
            let dw = sw - ow * p.stride_w;
            if (dw % p.dil_w != 0u) { continue; }
            let kw = dw / p.dil_w;
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

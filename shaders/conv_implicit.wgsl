// conv_implicit.wgsl: convolution as implicit GEMM on matmul v3's tiling (matmul_tiled.wgsl):
// the three products of conv2d (forward, input gradient, weight gradient) without an im2col
// matrix in global memory. Each workgroup computes a BM x BN block of the product; the BK-deep
// slices of its two operands are gathered straight from the NCHW tensors into workgroup memory
// (zeros for padding taps and out-of-range rows), then each invocation multiplies its 4 x 4
// register tile out of workgroup memory, as matmul v3 does. NCHW in, NCHW out: no layout pass.
//
// Geometry (ImplicitConvParams): the convolution from x (N, C, H, W) to y (N, O, OH, OW) with a
// (KH, KW) kernel; output pixel (oh, ow) sees input (oh stride_h - pad_h + kh dil_h,
// ow stride_w - pad_w + kw dil_w). P = OH OW, Q = H W, KK = KH KW.
//
// Entry points, bindings (0, 1 read; 2 bias read, only when has_bias; 3 the output, read_write;
// 4 params uniform) and the product each computes:
//   conv_implicit_forward  y[n, o, p] = bias[o] + sum over (c, kh, kw) of x[n, c, ih, iw] w[o, c, kh, kw]
//                          GEMM M = N P (rows: output pixels), N = O, K = C KK;
//                          0 x, 1 w (O, C, KH, KW), 2 bias (O), 3 y (N, O, OH, OW)
//   conv_implicit_dx       dx[n, c, h, w] = bias[c] + sum over (o, kh, kw) of dy[n, o, oh, ow] w[o, c, kh, kw]
//                          over the (oh, ow) whose field holds (h, w) at tap (kh, kw);
//                          GEMM M = N Q, N = C, K = O KK; 0 dy, 1 w, 2 bias (C), 3 dx (N, C, H, W)
//                          (also conv_transpose2d's forward, with the bias)
//   conv_implicit_dw       dw[o, (c, kh, kw)] = sum over (n, p) of dy[n, o, p] x[n, c, ih, iw]
//                          GEMM M = O, N = C KK, K = N P; 0 dy, 1 x, 3 dw (O, C, KH, KW); no bias
// Dispatch grid: (ceil(GEMM N / BN), ceil(GEMM M / BM), 1) workgroups of TILE_THREADS =
// (BM / 4) (BN / 4) invocations (the override constants of matmul_tiled.wgsl).

struct ImplicitConvParams {
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
    o: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<storage, read> src0: array<f32>;
@group(0) @binding(1) var<storage, read> src1: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<uniform> p: ImplicitConvParams;

override TILE_THREADS: u32 = 64u;
override BM: u32 = 32u;
override BN: u32 = 32u;
override BK: u32 = 16u;

var<workgroup> tile_a: array<f32, BM * BK>;
var<workgroup> tile_b: array<f32, BK * BN>;

const FORWARD: u32 = 0u;
const DX: u32 = 1u;
const DW: u32 = 2u;

// (M, N, K) of the product.
fn gemm_dims(kind: u32) -> vec3<u32> {
    let kk = p.kh * p.kw;
    if (kind == FORWARD) { return vec3<u32>(p.n * p.oh * p.ow, p.o, p.c * kk); }
    if (kind == DX) { return vec3<u32>(p.n * p.h * p.w, p.c, p.o * kk); }
    return vec3<u32>(p.o, p.c * kk, p.n * p.oh * p.ow);
}

// x[n, c, ih, iw] for output pixel `pix` (of image n) and tap (c, kh, kw) = `tap`; 0 in padding.
// x is binding 0 in the forward, binding 1 in the weight gradient (`in_src1`).
fn x_tap(n: u32, pix: u32, tap: u32, in_src1: bool) -> f32 {
    let kk = p.kh * p.kw;
    let c = tap / kk;
    let r = tap % kk;
    let ih = i32((pix / p.ow) * p.stride_h) - i32(p.pad_h) + i32((r / p.kw) * p.dil_h);
    let iw = i32((pix % p.ow) * p.stride_w) - i32(p.pad_w) + i32((r % p.kw) * p.dil_w);
    if (ih < 0 || iw < 0 || ih >= i32(p.h) || iw >= i32(p.w)) { return 0.0; }
    let at = ((n * p.c + c) * p.h + u32(ih)) * p.w + u32(iw);
    if (in_src1) { return src1[at]; }
    return src0[at];
}

// op(A)[i, t] of the product (i < M, t < K checked by the caller).
fn a_elem(kind: u32, i: u32, t: u32) -> f32 {
    let kk = p.kh * p.kw;
    if (kind == FORWARD) {
        let pp = p.oh * p.ow;
        return x_tap(i / pp, i % pp, t, false);
    }
    if (kind == DX) {
        // dy at the output pixel whose field holds input (h, w) at tap (kh, kw), if any.
        let q = p.h * p.w;
        let n = i / q;
        let pix = i % q;
        let o = t / kk;
        let r = t % kk;
        let th = i32(pix / p.w) + i32(p.pad_h) - i32((r / p.kw) * p.dil_h);
        let tw = i32(pix % p.w) + i32(p.pad_w) - i32((r % p.kw) * p.dil_w);
        if (th < 0 || tw < 0) { return 0.0; }
        let uh = u32(th);
        let uw = u32(tw);
        if (uh % p.stride_h != 0u || uw % p.stride_w != 0u) { return 0.0; }
        let oh = uh / p.stride_h;
        let ow = uw / p.stride_w;
        if (oh >= p.oh || ow >= p.ow) { return 0.0; }
        return src0[((n * p.o + o) * p.oh + oh) * p.ow + ow];
    }
    // DW: dy[n, o = i, pix] for t = n P + pix.
    let pp = p.oh * p.ow;
    return src0[((t / pp) * p.o + i) * pp + t % pp];
}

// op(B)[t, j] of the product (t < K, j < N checked by the caller).
fn b_elem(kind: u32, t: u32, j: u32) -> f32 {
    let kk = p.kh * p.kw;
    if (kind == FORWARD) { return src1[j * p.c * kk + t]; }
    if (kind == DX) {
        let o = t / kk;
        return src1[(o * p.c + j) * kk + t % kk];
    }
    let pp = p.oh * p.ow;
    return x_tap(t / pp, t % pp, j, true);
}

fn implicit(lid: u32, wg: vec3<u32>, kind: u32) {
    let dims = gemm_dims(kind);
    let tx = lid % (BN / 4u);
    let ty = lid / (BN / 4u);
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < dims.z; k0 += BK) {
        for (var e = lid; e < BM * BK; e += TILE_THREADS) {
            let r = e % BM;
            let t = e / BM;
            var v = 0.0;
            if (m0 + r < dims.x && k0 + t < dims.z) { v = a_elem(kind, m0 + r, k0 + t); }
            tile_a[t * BM + r] = v;
        }
        for (var e = lid; e < BK * BN; e += TILE_THREADS) {
            let j = e % BN;
            let t = e / BN;
            var v = 0.0;
            if (n0 + j < dims.y && k0 + t < dims.z) { v = b_elem(kind, k0 + t, n0 + j); }
            tile_b[t * BN + j] = v;
        }
        workgroupBarrier();
        for (var t = 0u; t < BK; t++) {
            let ra = t * BM + ty * 4u;
            let rb = t * BN + tx * 4u;
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
        if (i >= dims.x) { break; }
        for (var s = 0u; s < 4u; s++) {
            let j = n0 + tx * 4u + s;
            if (j >= dims.y) { continue; }
            var y = acc[r][s];
            if (p.has_bias != 0u) { y += bias[j]; }
            if (kind == FORWARD) {
                let pp = p.oh * p.ow;
                dst[((i / pp) * p.o + j) * pp + i % pp] = y;
            } else if (kind == DX) {
                let q = p.h * p.w;
                dst[((i / q) * p.c + j) * q + i % q] = y;
            } else {
                dst[i * dims.y + j] = y;
            }
        }
    }
}

@compute @workgroup_size(TILE_THREADS)
fn conv_implicit_forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    implicit(lid, wg, FORWARD);
}

@compute @workgroup_size(TILE_THREADS)
fn conv_implicit_dx(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    implicit(lid, wg, DX);
}

@compute @workgroup_size(TILE_THREADS)
fn conv_implicit_dw(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    implicit(lid, wg, DW);
}

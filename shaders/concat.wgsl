// concat.wgsl: moving channel blocks of NCHW tensors, for the skip connections of a U-Net
// (Ronneberger et al. 2015; pix2pix's generator, Isola et al. 2017, sec. 3.1).
//
// A tensor is viewed as (n, channels, inner), inner = H * W. Every entry point writes each
// output element once (no atomics, no reduction): the three are exact copies.
//
// Entry points and bindings:
//   concat_channels   y (n, ca + cb, inner) = [a (n, ca, inner), b (n, cb, inner)] along axis 1
//                     0 a, 1 b; 2 y; 3 ChannelParams (c0 = ca, c1 = cb)
//   narrow_channels   y (n, len, inner) = x (n, total, inner)[:, start .. start + len]
//                     0 x; 1 y; 2 ChannelParams (c0 = total, c1 = len, start)
//   pad_channels      y (n, total, inner): x (n, len, inner) at channels start .. start + len, 0
//                     elsewhere (the backward of narrow_channels)
//                     0 x; 1 y; 2 ChannelParams (c0 = total, c1 = len, start)
// Dispatch grid: grid_1d(elements of y, 256): one invocation per output element.

struct ChannelParams {
    n: u32,
    c0: u32,
    c1: u32,
    inner: u32,
    start: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> cc_a: array<f32>;
@group(0) @binding(1) var<storage, read> cc_b: array<f32>;
@group(0) @binding(2) var<storage, read_write> cc_y: array<f32>;
@group(0) @binding(3) var<uniform> cc_p: ChannelParams;

@compute @workgroup_size(256)
fn concat_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let c = cc_p.c0 + cc_p.c1;
    if (i >= cc_p.n * c * cc_p.inner) { return; }
    let p = i % cc_p.inner;
    let ch = (i / cc_p.inner) % c;
    let n = i / (cc_p.inner * c);
    if (ch < cc_p.c0) {
        cc_y[i] = cc_a[(n * cc_p.c0 + ch) * cc_p.inner + p];
    } else {
        cc_y[i] = cc_b[(n * cc_p.c1 + ch - cc_p.c0) * cc_p.inner + p];
    }
}

@group(0) @binding(0) var<storage, read> nc_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> nc_y: array<f32>;
@group(0) @binding(2) var<uniform> nc_p: ChannelParams;

@compute @workgroup_size(256)
fn narrow_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= nc_p.n * nc_p.c1 * nc_p.inner) { return; }
    let p = i % nc_p.inner;
    let ch = (i / nc_p.inner) % nc_p.c1;
    let n = i / (nc_p.inner * nc_p.c1);
    nc_y[i] = nc_x[(n * nc_p.c0 + nc_p.start + ch) * nc_p.inner + p];
}

@group(0) @binding(0) var<storage, read> pc_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> pc_y: array<f32>;
@group(0) @binding(2) var<uniform> pc_p: ChannelParams;

@compute @workgroup_size(256)
fn pad_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= pc_p.n * pc_p.c0 * pc_p.inner) { return; }
    let p = i % pc_p.inner;
    let ch = (i / pc_p.inner) % pc_p.c0;
    let n = i / (pc_p.inner * pc_p.c0);
    var v = 0.0;
    if (ch >= pc_p.start && ch < pc_p.start + pc_p.c1) {
        v = pc_x[(n * pc_p.c1 + ch - pc_p.start) * pc_p.inner + p];
    }
    pc_y[i] = v;
}

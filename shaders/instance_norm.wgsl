// instance_norm.wgsl: instance normalization (Ulyanov et al. 2016, "Instance Normalization: The
// Missing Ingredient for Fast Stylization", eq. 2), CycleGAN's normalization (Zhu et al. 2017,
// sec. 4): each (sample, channel) plane is normalised over its own H * W values, in training
// and at test time alike (no running statistics), then scaled and shifted per channel:
//   xhat = (x - mean[r]) * invstd[r],  invstd = 1 / sqrt(var + eps) (var biased),
//   y = gamma[c] xhat + beta[c]   (gamma = 1, beta = 0 without the affine part),
// as torch.nn.InstanceNorm2d(C, affine=True, eps=1e-5).
//
// A tensor (N, C, H, W) is viewed as rows = N * C planes of inner = H * W values; row r is
// sample r / C, channel r % C.
//
// Entry points, bindings and dispatch grids:
//   instance_norm_stats             0 x; 1 mean, 2 invstd; 3 InstanceNormParams
//                                   one workgroup of ROW_WG per row (two-pass mean and variance):
//                                   grid (min(rows, 65535), ceil(rows / 65535), 1)
//   instance_norm_forward           0 x, 1 mean, 2 invstd, 3 gamma, 4 beta; 5 y; 6 InstanceNormParams
//                                   grid_1d(rows * inner, 256)
//   instance_norm_backward_reduce   0 x, 1 dy, 2 mean, 3 invstd; 4 s_dy, 5 s_dy_xhat; 6 InstanceNormParams
//                                   per row: s_dy = sum dy, s_dy_xhat = sum dy xhat; as the stats
//   instance_norm_backward_affine   0 s_dy, 1 s_dy_xhat; 2 dgamma, 3 dbeta; 4 InstanceNormParams
//                                   dgamma[c] = sum_n s_dy_xhat[n, c], dbeta[c] = sum_n s_dy[n, c];
//                                   grid_1d(C, 256)
//   instance_norm_backward_dx       0 x, 1 dy, 2 mean, 3 invstd, 4 gamma, 5 s_dy, 6 s_dy_xhat; 7 dx;
//                                   8 InstanceNormParams
//                                   dx = gamma[c] invstd[r] (dy - s_dy[r] / M - xhat s_dy_xhat[r] / M),
//                                   M = inner; grid_1d(rows * inner, 256)

struct InstanceNormParams {
    rows: u32,
    channels: u32,
    inner: u32,
    eps: f32,
}

const WG: u32 = 256u;
// Invocations per row of the reductions, set per adapter (ops::kernels::row_workgroup).
override ROW_WG: u32 = 64u;

var<workgroup> partial: array<f32, ROW_WG>;

// Sum of `value` over the ROW_WG invocations of the workgroup (call from uniform control flow).
fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = ROW_WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@group(0) @binding(0) var<storage, read> st_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> st_mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> st_invstd: array<f32>;
@group(0) @binding(3) var<uniform> st_p: InstanceNormParams;

@compute @workgroup_size(ROW_WG)
fn instance_norm_stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    let valid = row < st_p.rows;
    let base = row * st_p.inner;
    var acc = 0.0;
    if (valid) {
        for (var j = lid; j < st_p.inner; j += ROW_WG) {
            acc += st_x[base + j];
        }
    }
    let mean = workgroup_sum(lid, acc) / f32(st_p.inner);
    var sq = 0.0;
    if (valid) {
        for (var j = lid; j < st_p.inner; j += ROW_WG) {
            let d = st_x[base + j] - mean;
            sq += d * d;
        }
    }
    let var_ = workgroup_sum(lid, sq) / f32(st_p.inner);
    if (lid == 0u && valid) {
        st_mean[row] = mean;
        st_invstd[row] = 1.0 / sqrt(var_ + st_p.eps);
    }
}

@group(0) @binding(0) var<storage, read> fw_x: array<f32>;
@group(0) @binding(1) var<storage, read> fw_mean: array<f32>;
@group(0) @binding(2) var<storage, read> fw_invstd: array<f32>;
@group(0) @binding(3) var<storage, read> fw_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> fw_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> fw_y: array<f32>;
@group(0) @binding(6) var<uniform> fw_p: InstanceNormParams;

@compute @workgroup_size(256)
fn instance_norm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= fw_p.rows * fw_p.inner) { return; }
    let r = i / fw_p.inner;
    let c = r % fw_p.channels;
    fw_y[i] = fw_gamma[c] * (fw_x[i] - fw_mean[r]) * fw_invstd[r] + fw_beta[c];
}

@group(0) @binding(0) var<storage, read> br_x: array<f32>;
@group(0) @binding(1) var<storage, read> br_dy: array<f32>;
@group(0) @binding(2) var<storage, read> br_mean: array<f32>;
@group(0) @binding(3) var<storage, read> br_invstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> br_s_dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> br_s_dy_xhat: array<f32>;
@group(0) @binding(6) var<uniform> br_p: InstanceNormParams;

@compute @workgroup_size(ROW_WG)
fn instance_norm_backward_reduce(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    let valid = row < br_p.rows;
    let base = row * br_p.inner;
    var a = 0.0;
    var b = 0.0;
    if (valid) {
        let mean = br_mean[row];
        let invstd = br_invstd[row];
        for (var j = lid; j < br_p.inner; j += ROW_WG) {
            let dy = br_dy[base + j];
            a += dy;
            b += dy * (br_x[base + j] - mean) * invstd;
        }
    }
    let s_dy = workgroup_sum(lid, a);
    let s_dy_xhat = workgroup_sum(lid, b);
    if (lid == 0u && valid) {
        br_s_dy[row] = s_dy;
        br_s_dy_xhat[row] = s_dy_xhat;
    }
}

@group(0) @binding(0) var<storage, read> ba_s_dy: array<f32>;
@group(0) @binding(1) var<storage, read> ba_s_dy_xhat: array<f32>;
@group(0) @binding(2) var<storage, read_write> ba_dgamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> ba_dbeta: array<f32>;
@group(0) @binding(4) var<uniform> ba_p: InstanceNormParams;

@compute @workgroup_size(256)
fn instance_norm_backward_affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = gid.x + gid.y * nwg.x * WG;
    if (c >= ba_p.channels) { return; }
    var g = 0.0;
    var b = 0.0;
    for (var r = c; r < ba_p.rows; r += ba_p.channels) {
        g += ba_s_dy_xhat[r];
        b += ba_s_dy[r];
    }
    ba_dgamma[c] = g;
    ba_dbeta[c] = b;
}

@group(0) @binding(0) var<storage, read> bd_x: array<f32>;
@group(0) @binding(1) var<storage, read> bd_dy: array<f32>;
@group(0) @binding(2) var<storage, read> bd_mean: array<f32>;
@group(0) @binding(3) var<storage, read> bd_invstd: array<f32>;
@group(0) @binding(4) var<storage, read> bd_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> bd_s_dy: array<f32>;
@group(0) @binding(6) var<storage, read> bd_s_dy_xhat: array<f32>;
@group(0) @binding(7) var<storage, read_write> bd_dx: array<f32>;
@group(0) @binding(8) var<uniform> bd_p: InstanceNormParams;

@compute @workgroup_size(256)
fn instance_norm_backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= bd_p.rows * bd_p.inner) { return; }
    let r = i / bd_p.inner;
    let c = r % bd_p.channels;
    let invstd = bd_invstd[r];
    let xhat = (bd_x[i] - bd_mean[r]) * invstd;
    let m = f32(bd_p.inner);
    bd_dx[i] = bd_gamma[c] * invstd * (bd_dy[i] - bd_s_dy[r] / m - xhat * bd_s_dy_xhat[r] / m);
}

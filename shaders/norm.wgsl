// norm.wgsl: batch normalization (Ioffe & Szegedy 2015, "Batch Normalization", Algorithm 1 and
// sec. 3, with PyTorch's running statistics: running = (1 - momentum) running + momentum stat,
// the running variance unbiased).
//
// A tensor is viewed as (outer, channels, inner): (N, C) for batch_norm1d, (N, C, H*W) for
// batch_norm2d. Each channel c is normalized over its M = outer * inner values:
//   xhat = (x - mean[c]) * invstd[c],  y = gamma[c] xhat + beta[c],  invstd = 1 / sqrt(var + eps).
// In training mode mean and var are the batch's (var biased); in eval mode, the running ones.
//
// Entry points, bindings and dispatch grids:
//   batch_norm_stats            0 x; 1 mean, 2 invstd, 3 running_mean, 4 running_var; 5 NormParams
//                               one workgroup of ROW_WG per channel: grid (C, 1, 1). Training: two-pass
//                               mean and variance, and the running statistics updated in place.
//   batch_norm_forward          0 x, 1 mean, 2 invstd, 3 gamma, 4 beta; 5 y; 6 NormParams
//                               grid_1d(outer * C * inner, 256)
//   batch_norm_backward_reduce  0 x, 1 dy, 2 mean, 3 invstd; 4 dgamma, 5 dbeta; 6 NormParams
//                               dgamma = sum dy xhat, dbeta = sum dy; grid (C, 1, 1), workgroups of ROW_WG
//   batch_norm_backward_dx      0 x, 1 dy, 2 mean, 3 invstd, 4 gamma, 5 dgamma, 6 dbeta; 7 dx; 8 NormParams
//                               training: dx = gamma invstd (dy - dbeta / M - xhat dgamma / M)
//                               eval:     dx = gamma invstd dy;   grid_1d(outer * C * inner, 256)

struct NormParams {
    outer: u32,
    channels: u32,
    inner: u32,
    training: u32,
    eps: f32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;

// Invocations per workgroup of the reductions: an override constant set per adapter
// (ops::kernels::row_workgroup; 64 on GPUs, one 8-lane subgroup on lavapipe, where barriers are costly).
override ROW_WG: u32 = 64u;

var<workgroup> partial: array<f32, ROW_WG>;

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

// Flat index of the j-th value (0 <= j < M) of channel c.
fn channel_index(p: NormParams, c: u32, j: u32) -> u32 {
    let n = j / p.inner;
    let i = j % p.inner;
    return (n * p.channels + c) * p.inner + i;
}

@group(0) @binding(0) var<storage, read> st_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> st_mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> st_invstd: array<f32>;
@group(0) @binding(3) var<storage, read_write> st_running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> st_running_var: array<f32>;
@group(0) @binding(5) var<uniform> st_p: NormParams;

@compute @workgroup_size(ROW_WG)
fn batch_norm_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = st_p;
    let c = wid.x;
    let m = p.outer * p.inner;
    if (p.training == 0u) {
        if (lid == 0u) {
            st_mean[c] = st_running_mean[c];
            st_invstd[c] = inverseSqrt(st_running_var[c] + p.eps);
        }
        return;
    }
    var acc = 0.0;
    for (var j = lid; j < m; j += ROW_WG) {
        acc += st_x[channel_index(p, c, j)];
    }
    let mean = workgroup_sum(lid, acc) / f32(m);
    var acc2 = 0.0;
    for (var j = lid; j < m; j += ROW_WG) {
        let d = st_x[channel_index(p, c, j)] - mean;
        acc2 += d * d;
    }
    let var_biased = workgroup_sum(lid, acc2) / f32(m);
    if (lid == 0u) {
        st_mean[c] = mean;
        st_invstd[c] = inverseSqrt(var_biased + p.eps);
        let var_unbiased = var_biased * f32(m) / f32(max(m, 2u) - 1u);
        st_running_mean[c] = (1.0 - p.momentum) * st_running_mean[c] + p.momentum * mean;
        st_running_var[c] = (1.0 - p.momentum) * st_running_var[c] + p.momentum * var_unbiased;
    }
}

@group(0) @binding(0) var<storage, read> f_x: array<f32>;
@group(0) @binding(1) var<storage, read> f_mean: array<f32>;
@group(0) @binding(2) var<storage, read> f_invstd: array<f32>;
@group(0) @binding(3) var<storage, read> f_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> f_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> f_y: array<f32>;
@group(0) @binding(6) var<uniform> f_p: NormParams;

@compute @workgroup_size(256)
fn batch_norm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= f_p.outer * f_p.channels * f_p.inner) { return; }
    let c = (i / f_p.inner) % f_p.channels;
    f_y[i] = f_gamma[c] * (f_x[i] - f_mean[c]) * f_invstd[c] + f_beta[c];
}

@group(0) @binding(0) var<storage, read> r_x: array<f32>;
@group(0) @binding(1) var<storage, read> r_dy: array<f32>;
@group(0) @binding(2) var<storage, read> r_mean: array<f32>;
@group(0) @binding(3) var<storage, read> r_invstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> r_dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> r_dbeta: array<f32>;
@group(0) @binding(6) var<uniform> r_p: NormParams;

@compute @workgroup_size(ROW_WG)
fn batch_norm_backward_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = r_p;
    let c = wid.x;
    let m = p.outer * p.inner;
    let mean = r_mean[c];
    let invstd = r_invstd[c];
    var sum_dy = 0.0;
    var sum_dy_xhat = 0.0;
    for (var j = lid; j < m; j += ROW_WG) {
        let idx = channel_index(p, c, j);
        let dy = r_dy[idx];
        sum_dy += dy;
        sum_dy_xhat += dy * (r_x[idx] - mean) * invstd;
    }
    let dbeta = workgroup_sum(lid, sum_dy);
    let dgamma = workgroup_sum(lid, sum_dy_xhat);
    if (lid == 0u) {
        r_dgamma[c] = dgamma;
        r_dbeta[c] = dbeta;
    }
}

@group(0) @binding(0) var<storage, read> b_x: array<f32>;
@group(0) @binding(1) var<storage, read> b_dy: array<f32>;
@group(0) @binding(2) var<storage, read> b_mean: array<f32>;
@group(0) @binding(3) var<storage, read> b_invstd: array<f32>;
@group(0) @binding(4) var<storage, read> b_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> b_dgamma: array<f32>;
@group(0) @binding(6) var<storage, read> b_dbeta: array<f32>;
@group(0) @binding(7) var<storage, read_write> b_dx: array<f32>;
@group(0) @binding(8) var<uniform> b_p: NormParams;

@compute @workgroup_size(256)
fn batch_norm_backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = b_p;
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.outer * p.channels * p.inner) { return; }
    let c = (i / p.inner) % p.channels;
    let scale = b_gamma[c] * b_invstd[c];
    if (p.training == 0u) {
        b_dx[i] = scale * b_dy[i];
        return;
    }
    let m = f32(p.outer * p.inner);
    let xhat = (b_x[i] - b_mean[c]) * b_invstd[c];
    b_dx[i] = scale * (b_dy[i] - b_dbeta[c] / m - xhat * b_dgamma[c] / m);
}

// pair_loss.wgsl: the per-sample losses of image-to-image translation.
//
//   l1: the mean absolute error, pix2pix's reconstruction term (Isola et al. 2017, eq. 3) and
//       CycleGAN's cycle-consistency and identity terms (Zhu et al. 2017, eq. 2 and sec. 5.2).
//   least squares against a constant: LSGAN's losses (Mao et al. 2017, eq. 2 with the 0-1
//       coding), as CycleGAN uses them (Zhu et al. 2017, sec. 4): D pushes D(real) to 1 and
//       D(fake) to 0, G pushes D(G(x)) to 1. It IS the mean squared error against a constant
//       target (PyTorch's MSELoss(D(x), full_like(D(x), target))), with the target in Params
//       instead of a tensor.
//
// Entry points and bindings (x, t: (B, D) predictions and targets; loss: (B)):
//   l1_forward          loss[b] = (1 / D) sum_d |x - t|
//                       0 x, 1 t; 2 loss; 3 PairLossParams
//   l1_backward         dx = dloss[b] sign(x - t) / D   (sign(0) = 0, the subgradient PyTorch takes)
//                       0 x, 1 t, 2 dloss; 3 dx; 4 PairLossParams
//   least_squares_forward   loss[b] = (1 / D) sum_d (x - value)^2, value = the constant target
//                       0 x; 1 loss; 2 PairLossParams
//   least_squares_backward  dx = dloss[b] 2 (x - value) / D
//                       0 x, 1 dloss; 2 dx; 3 PairLossParams
// Dispatch grid: forwards: one workgroup of ROW_WG per row, grid (min(B, 65535), ceil(B / 65535), 1);
// backwards: grid_1d(B * D, 256).

struct PairLossParams {
    rows: u32,
    dim: u32,
    value: f32,
    _pad0: u32,
}

const WG: u32 = 256u;
// Invocations per row of the forwards, set per adapter (ops::kernels::row_workgroup).
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

@group(0) @binding(0) var<storage, read> lf_x: array<f32>;
@group(0) @binding(1) var<storage, read> lf_t: array<f32>;
@group(0) @binding(2) var<storage, read_write> lf_loss: array<f32>;
@group(0) @binding(3) var<uniform> lf_p: PairLossParams;

@compute @workgroup_size(ROW_WG)
fn l1_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    var acc = 0.0;
    if (row < lf_p.rows) {
        for (var d = lid; d < lf_p.dim; d += ROW_WG) {
            let i = row * lf_p.dim + d;
            acc += abs(lf_x[i] - lf_t[i]);
        }
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u && row < lf_p.rows) {
        lf_loss[row] = total / f32(lf_p.dim);
    }
}

@group(0) @binding(0) var<storage, read> lb_x: array<f32>;
@group(0) @binding(1) var<storage, read> lb_t: array<f32>;
@group(0) @binding(2) var<storage, read> lb_dloss: array<f32>;
@group(0) @binding(3) var<storage, read_write> lb_dx: array<f32>;
@group(0) @binding(4) var<uniform> lb_p: PairLossParams;

@compute @workgroup_size(256)
fn l1_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= lb_p.rows * lb_p.dim) { return; }
    lb_dx[i] = lb_dloss[i / lb_p.dim] * sign(lb_x[i] - lb_t[i]) / f32(lb_p.dim);
}

@group(0) @binding(0) var<storage, read> sf_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> sf_loss: array<f32>;
@group(0) @binding(2) var<uniform> sf_p: PairLossParams;

@compute @workgroup_size(ROW_WG)
fn least_squares_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    var acc = 0.0;
    if (row < sf_p.rows) {
        for (var d = lid; d < sf_p.dim; d += ROW_WG) {
            let e = sf_x[row * sf_p.dim + d] - sf_p.value;
            acc += e * e;
        }
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u && row < sf_p.rows) {
        sf_loss[row] = total / f32(sf_p.dim);
    }
}

@group(0) @binding(0) var<storage, read> sb_x: array<f32>;
@group(0) @binding(1) var<storage, read> sb_dloss: array<f32>;
@group(0) @binding(2) var<storage, read_write> sb_dx: array<f32>;
@group(0) @binding(3) var<uniform> sb_p: PairLossParams;

@compute @workgroup_size(256)
fn least_squares_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= sb_p.rows * sb_p.dim) { return; }
    sb_dx[i] = sb_dloss[i / sb_p.dim] * 2.0 * (sb_x[i] - sb_p.value) / f32(sb_p.dim);
}

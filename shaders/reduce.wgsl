// reduce.wgsl: sums over one axis, and the broadcast that is their backward.
//
// A tensor reduced over one axis is viewed as (outer, len, inner): the axis has
// length `len`, `outer` is the product of the dimensions before it, `inner` of those after.
//
// Entry points, bindings and dispatch grids:
//   reduce_sum       y[o, i] = scale * sum_l x[o, l, i]     0 x, 1 y, 2 ReduceParams
//                    one thread per output; grid_1d(outer * inner, 256).
//   reduce_sum_rows  y[r] = scale * sum_j x[r * len + j]   0 x, 1 y, 2 RowsParams
//                    (elements at flat index >= total count as 0); one workgroup of ROW_WG
//                    per row, tree reduction in workgroup memory; grid (min(rows, 65535),
//                    ceil(rows / 65535), 1). Used for the last axis and, in two stages, for sums
//                    over all elements.
//   reduce_backward  dx[o, l, i] = scale * dy[o, i]         0 dy, 1 dx, 2 ReduceParams
//                    one thread per element of dx; grid_1d(outer * len * inner, 256).

struct ReduceParams {
    outer: u32,
    len: u32,
    inner: u32,
    scale: f32,
}

struct RowsParams {
    rows: u32,
    len: u32,
    total: u32,
    scale: f32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> rx: array<f32>;
@group(0) @binding(1) var<storage, read_write> ry: array<f32>;
@group(0) @binding(2) var<uniform> rp: ReduceParams;

@compute @workgroup_size(256)
fn reduce_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= rp.outer * rp.inner) { return; }
    let o = t / rp.inner;
    let i = t % rp.inner;
    var acc = 0.0;
    var idx = o * rp.len * rp.inner + i;
    for (var l = 0u; l < rp.len; l++) {
        acc += rx[idx];
        idx += rp.inner;
    }
    ry[t] = acc * rp.scale;
}

@group(0) @binding(0) var<storage, read> sx: array<f32>;
@group(0) @binding(1) var<storage, read_write> sy: array<f32>;
@group(0) @binding(2) var<uniform> sp: RowsParams;

// Invocations per workgroup of the reductions: an override constant set per adapter
// (ops::kernels::row_workgroup; 64 on GPUs, one 8-lane subgroup on lavapipe, where barriers are costly).
override ROW_WG: u32 = 64u;

var<workgroup> partial: array<f32, ROW_WG>;

@compute @workgroup_size(ROW_WG)
fn reduce_sum_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Uniform across the workgroup, so the barriers below are reached by all.
    let row = wid.x + wid.y * nwg.x;
    var acc = 0.0;
    if (row < sp.rows) {
        let base = row * sp.len;
        for (var j = lid; j < sp.len; j += ROW_WG) {
            let idx = base + j;
            if (idx < sp.total) {
                acc += sx[idx];
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = ROW_WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u && row < sp.rows) {
        sy[row] = partial[0] * sp.scale;
    }
}

@group(0) @binding(0) var<storage, read> bdy: array<f32>;
@group(0) @binding(1) var<storage, read_write> bdx: array<f32>;
@group(0) @binding(2) var<uniform> bp: ReduceParams;

@compute @workgroup_size(256)
fn reduce_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= bp.outer * bp.len * bp.inner) { return; }
    let o = t / (bp.len * bp.inner);
    let i = t % bp.inner;
    bdx[t] = bdy[o * bp.inner + i] * bp.scale;
}

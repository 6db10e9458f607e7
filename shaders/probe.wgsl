// probe.wgsl: the workbench's two ceiling probes (benches/workbench/ceilings.rs). They are
// measuring tools, not engine kernels: no op dispatches them, and they are not in the kernel
// table (tests/shaders.rs parses and validates this file on its own).
//
// Entry points, bindings and dispatch grids (no Params uniform: the probes read their sizes
// from the grid and the buffers):
//   copy_probe  dst = src, vec4 loads and stores, a grid-stride loop: the bandwidth a shader
//               reaches (bytes read + written per second).
//               0 src (read), 1 dst (read_write);  grid (G, 1, 1) workgroups of 256, any G
//               (the workbench uses 4096)
//   fma_probe   the arithmetic rate: each invocation keeps 8 independent vec4 accumulators in
//               registers and runs ITERS rounds of 16 vec4 FMAs on them (two per accumulator):
//               16 * 4 lanes * 2 = 128 FLOPs per round, ITERS * 128 = 32,768 per invocation.
//               The result is stored only if it equals a value it never reaches, which keeps
//               every FMA live without a memory stream.
//               1 dst (read_write, written at most at 16 vec4s);  grid (min(G, max), ceil(G / max), 1)
//               workgroups of 64, max = the adapter's max_compute_workgroups_per_dimension

const ITERS: u32 = 256u;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn copy_probe(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>) {
    let n = arrayLength(&dst);
    let stride = groups.x * 256u;
    for (var i = gid.x; i < n; i += stride) {
        dst[i] = src[i];
    }
}

@compute @workgroup_size(64)
fn fma_probe(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    let s = f32(i & 1023u) * 1e-6;
    let m = vec4<f32>(0.99991, 0.99993, 0.99995, 0.99997);
    let c = vec4<f32>(1e-6, 2e-6, 3e-6, 4e-6);
    var a0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var a1 = a0 + 1.0;
    var a2 = a0 + 2.0;
    var a3 = a0 + 3.0;
    var a4 = a0 + 4.0;
    var a5 = a0 + 5.0;
    var a6 = a0 + 6.0;
    var a7 = a0 + 7.0;
    for (var r = 0u; r < ITERS; r++) {
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
    }
    let total = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
    if (total.x == 1234.5678) {
        dst[i & 15u] = total;
    }
}

// vae.wgsl: the reparameterization trick and the closed-form KL term of the VAE
// (Kingma & Welling 2014, "Auto-Encoding Variational Bayes", sec. 2.4 and appendix B).
//
// Entry points and bindings:
//   reparameterize_forward   z = mu + exp(logvar / 2) * eps             0 mu, 1 logvar, 2 eps, 3 z, 4 ElemParams
//   reparameterize_backward  dlogvar = dz * eps * exp(logvar / 2) / 2   0 logvar, 1 eps, 2 dz, 3 dlogvar, 4 ElemParams
//                            (dmu = dz needs no kernel)
//   kl_divergence_forward    kl[b] = -1/2 sum_d (1 + logvar - mu^2 - exp(logvar)), nats per sample
//                                                                       0 mu, 1 logvar, 2 kl, 3 RowParams
//   kl_divergence_backward   dmu = dkl[b] * mu, dlogvar = dkl[b] * (exp(logvar) - 1) / 2
//                                                                       0 mu, 1 logvar, 2 dkl, 3 dmu, 4 dlogvar, 5 RowParams
//   vae_sample_forward       the two above in one pass: z and kl from one read of mu, logvar, eps
//                                                                       0 mu, 1 logvar, 2 eps, 3 z, 4 kl, 5 RowParams
//   vae_sample_backward      dmu = dz + dkl[b] mu, dlogvar = dz eps exp(logvar / 2) / 2 + dkl[b] (exp(logvar) - 1) / 2
//                            (one pass instead of two backward kernels and two gradient additions)
//                                                                       0 mu, 1 logvar, 2 eps, 3 dz, 4 dkl, 5 dmu, 6 dlogvar, 7 RowParams
// Shapes: mu, logvar, eps, z (B, D); kl (B).
// Dispatch grid: grid_1d(n, 256) for the element-wise ones (n = B * D),
// grid_1d(B, 256) for kl_divergence_forward and vae_sample_forward (one thread per sample, D is small).

struct ElemParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct RowParams {
    rows: u32,
    dim: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@group(0) @binding(0) var<storage, read> rf_mu: array<f32>;
@group(0) @binding(1) var<storage, read> rf_logvar: array<f32>;
@group(0) @binding(2) var<storage, read> rf_eps: array<f32>;
@group(0) @binding(3) var<storage, read_write> rf_z: array<f32>;
@group(0) @binding(4) var<uniform> rf_p: ElemParams;

@compute @workgroup_size(256)
fn reparameterize_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= rf_p.n) { return; }
    rf_z[i] = rf_mu[i] + exp(0.5 * rf_logvar[i]) * rf_eps[i];
}

@group(0) @binding(0) var<storage, read> rb_logvar: array<f32>;
@group(0) @binding(1) var<storage, read> rb_eps: array<f32>;
@group(0) @binding(2) var<storage, read> rb_dz: array<f32>;
@group(0) @binding(3) var<storage, read_write> rb_dlogvar: array<f32>;
@group(0) @binding(4) var<uniform> rb_p: ElemParams;

@compute @workgroup_size(256)
fn reparameterize_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= rb_p.n) { return; }
    rb_dlogvar[i] = rb_dz[i] * rb_eps[i] * 0.5 * exp(0.5 * rb_logvar[i]);
}

@group(0) @binding(0) var<storage, read> kf_mu: array<f32>;
@group(0) @binding(1) var<storage, read> kf_logvar: array<f32>;
@group(0) @binding(2) var<storage, read_write> kf_kl: array<f32>;
@group(0) @binding(3) var<uniform> kf_p: RowParams;

@compute @workgroup_size(256)
fn kl_divergence_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat(gid, nwg);
    if (row >= kf_p.rows) { return; }
    var acc = 0.0;
    for (var d = 0u; d < kf_p.dim; d++) {
        let i = row * kf_p.dim + d;
        let mu = kf_mu[i];
        let lv = kf_logvar[i];
        acc += 1.0 + lv - mu * mu - exp(lv);
    }
    kf_kl[row] = -0.5 * acc;
}

@group(0) @binding(0) var<storage, read> kb_mu: array<f32>;
@group(0) @binding(1) var<storage, read> kb_logvar: array<f32>;
@group(0) @binding(2) var<storage, read> kb_dkl: array<f32>;
@group(0) @binding(3) var<storage, read_write> kb_dmu: array<f32>;
@group(0) @binding(4) var<storage, read_write> kb_dlogvar: array<f32>;
@group(0) @binding(5) var<uniform> kb_p: RowParams;

@compute @workgroup_size(256)
fn kl_divergence_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= kb_p.rows * kb_p.dim) { return; }
    let g = kb_dkl[i / kb_p.dim];
    kb_dmu[i] = g * kb_mu[i];
    kb_dlogvar[i] = g * 0.5 * (exp(kb_logvar[i]) - 1.0);
}

@group(0) @binding(0) var<storage, read> sf_mu: array<f32>;
@group(0) @binding(1) var<storage, read> sf_logvar: array<f32>;
@group(0) @binding(2) var<storage, read> sf_eps: array<f32>;
@group(0) @binding(3) var<storage, read_write> sf_z: array<f32>;
@group(0) @binding(4) var<storage, read_write> sf_kl: array<f32>;
@group(0) @binding(5) var<uniform> sf_p: RowParams;

@compute @workgroup_size(256)
fn vae_sample_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat(gid, nwg);
    if (row >= sf_p.rows) { return; }
    var acc = 0.0;
    for (var d = 0u; d < sf_p.dim; d++) {
        let i = row * sf_p.dim + d;
        let mu = sf_mu[i];
        let lv = sf_logvar[i];
        let sd = exp(0.5 * lv);
        sf_z[i] = mu + sd * sf_eps[i];
        acc += 1.0 + lv - mu * mu - sd * sd;
    }
    sf_kl[row] = -0.5 * acc;
}

@group(0) @binding(0) var<storage, read> sb_mu: array<f32>;
@group(0) @binding(1) var<storage, read> sb_logvar: array<f32>;
@group(0) @binding(2) var<storage, read> sb_eps: array<f32>;
@group(0) @binding(3) var<storage, read> sb_dz: array<f32>;
@group(0) @binding(4) var<storage, read> sb_dkl: array<f32>;
@group(0) @binding(5) var<storage, read_write> sb_dmu: array<f32>;
@group(0) @binding(6) var<storage, read_write> sb_dlogvar: array<f32>;
@group(0) @binding(7) var<uniform> sb_p: RowParams;

@compute @workgroup_size(256)
fn vae_sample_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= sb_p.rows * sb_p.dim) { return; }
    let g = sb_dkl[i / sb_p.dim];
    let dz = sb_dz[i];
    let sd = exp(0.5 * sb_logvar[i]);
    sb_dmu[i] = dz + g * sb_mu[i];
    sb_dlogvar[i] = 0.5 * (dz * sb_eps[i] * sd + g * (sd * sd - 1.0));
}

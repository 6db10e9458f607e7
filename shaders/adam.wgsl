// adam.wgsl: one in-place Adam update (Kingma & Ba 2015, "Adam: A Method for
// Stochastic Optimization", Algorithm 1, with bias correction; the form PyTorch uses):
//   g = grad + weight_decay * p
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = p - lr * (m / bias_correction1) / (sqrt(v / bias_correction2) + eps)
// where bias_correction{1,2} = 1 - beta{1,2}^t are computed on the host for step t (from 1).
// Bindings: 0 grad (read); 1 param, 2 m, 3 v (read_write, updated in place); 4 AdamParams.
// Dispatch grid: grid_1d(ceil(n / 4), 256): each invocation updates four parameters as one
// vec4 (the last vec4 may reach into the buffer's padding, which no tensor reads).

struct AdamParams {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    weight_decay: f32,
}

@group(0) @binding(0) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: AdamParams;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i * 4u >= p.n) { return; }
    // Read once: a second `param[i]` is a second load, since the stores to m and v between
    // them may alias it as far as the compiler knows.
    let theta = param[i];
    let g = grad[i] + p.weight_decay * theta;
    let m_new = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let v_new = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = m_new;
    v[i] = v_new;
    let m_hat = m_new / p.bias_correction1;
    let v_hat = v_new / p.bias_correction2;
    param[i] = theta - p.lr * m_hat / (sqrt(v_hat) + p.eps);
}

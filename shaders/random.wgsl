// random.wgsl: seeded random numbers on the GPU: normal samples and dropout masks.
//
// randn: out[i] ~ N(0, 1), i < n. Counter-based: thread t evaluates
// Philox-4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3")
// at counter (counter + t, counter_hi, 0, 0) under key (seed_lo, seed_hi), giving four
// uniform u32 words, and turns them into four normals with the Box-Muller transform.
// The same seed and counter always give the same numbers, on any adapter.
// Bindings: 0 out (read_write), 1 RandnParams (uniform).
// Dispatch grid: grid_1d(ceil(n / 4), 256); each thread writes out[4t .. 4t + 3].
//
// dropout: mask[i] = scale if u_i < keep else 0 (u_i uniform in (0, 1) from the same Philox
// stream; keep = 1 - p, scale = 1 / keep, Srivastava et al. 2014 with "inverted" scaling),
// y[i] = x[i] * mask[i]. Bindings: 0 x (read); 1 y, 2 mask (read_write); 3 DropoutParams.
// Dispatch grid: grid_1d(ceil(n / 4), 256); four elements per thread.
//
// bernoulli: y[i] = 1 if u_i < p[i] else 0 (a binarization of intensities p in [0, 1], as
// "dynamic binarization" of MNIST draws afresh every epoch). Bindings: 0 p (read); 1 y
// (read_write); 2 DropoutParams (keep and scale unused). Dispatch grid: grid_1d(ceil(n / 4), 256).

struct RandnParams {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    counter_lo: u32,
    counter_hi: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct DropoutParams {
    n: u32,
    keep: f32,
    scale: f32,
    seed_lo: u32,
    seed_hi: u32,
    counter_lo: u32,
    counter_hi: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> p: RandnParams;

const WG: u32 = 256u;
const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
const TWO_PI: f32 = 6.283185307179586;

// The high and low 32-bit words of the 64-bit product a * b (WGSL has no u64).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    // At most 0xFFFF + 0xFFFF + 0xFFFE0001 = 0xFFFFFFFF: no overflow.
    let cross = (lo_lo >> 16u) + (hi_lo & 0xFFFFu) + lo_hi;
    let hi = hi_hi + (hi_lo >> 16u) + (cross >> 16u);
    let lo = (cross << 16u) | (lo_lo & 0xFFFFu);
    return vec2<u32>(hi, lo);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        let p0 = mulhilo(PHILOX_M0, c.x);
        let p1 = mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
    }
    return c;
}

// A u32 to a uniform float in (0, 1): 24 bits, offset by half a step so log() is finite.
fn to_unit(x: u32) -> f32 {
    return (f32(x >> 8u) + 0.5) * (1.0 / 16777216.0);
}

// The four Philox words of thread t for a generator at (seed, counter).
fn philox_for_thread(t: u32, counter_lo: u32, counter_hi: u32, seed_lo: u32, seed_hi: u32) -> vec4<u32> {
    let lo = counter_lo + t;
    let carry = select(0u, 1u, lo < t);
    return philox4x32_10(vec4<u32>(lo, counter_hi + carry, 0u, 0u), vec2<u32>(seed_lo, seed_hi));
}

@compute @workgroup_size(256)
fn randn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    let first = t * 4u;
    if (first >= p.n) { return; }
    let bits = philox_for_thread(t, p.counter_lo, p.counter_hi, p.seed_lo, p.seed_hi);
    let r0 = sqrt(-2.0 * log(to_unit(bits.x)));
    let r1 = sqrt(-2.0 * log(to_unit(bits.z)));
    let z = vec4<f32>(
        r0 * cos(TWO_PI * to_unit(bits.y)),
        r0 * sin(TWO_PI * to_unit(bits.y)),
        r1 * cos(TWO_PI * to_unit(bits.w)),
        r1 * sin(TWO_PI * to_unit(bits.w)),
    );
    for (var j = 0u; j < 4u; j++) {
        if (first + j < p.n) {
            out[first + j] = z[j];
        }
    }
}

@group(0) @binding(0) var<storage, read> d_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> d_y: array<f32>;
@group(0) @binding(2) var<storage, read_write> d_mask: array<f32>;
@group(0) @binding(3) var<uniform> d_p: DropoutParams;

@compute @workgroup_size(256)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    let first = t * 4u;
    if (first >= d_p.n) { return; }
    let bits = philox_for_thread(t, d_p.counter_lo, d_p.counter_hi, d_p.seed_lo, d_p.seed_hi);
    for (var j = 0u; j < 4u; j++) {
        let i = first + j;
        if (i < d_p.n) {
            let m = select(0.0, d_p.scale, to_unit(bits[j]) < d_p.keep);
            d_mask[i] = m;
            d_y[i] = d_x[i] * m;
        }
    }
}

@group(0) @binding(0) var<storage, read> b_p: array<f32>;
@group(0) @binding(1) var<storage, read_write> b_y: array<f32>;
@group(0) @binding(2) var<uniform> b_params: DropoutParams;

@compute @workgroup_size(256)
fn bernoulli(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    let first = t * 4u;
    if (first >= b_params.n) { return; }
    let bits = philox_for_thread(t, b_params.counter_lo, b_params.counter_hi, b_params.seed_lo, b_params.seed_hi);
    for (var j = 0u; j < 4u; j++) {
        let i = first + j;
        if (i < b_params.n) {
            b_y[i] = select(0.0, 1.0, to_unit(bits[j]) < b_p[i]);
        }
    }
}

//! matmul: C (M x N) = op(A) op(B), K contracted; shapes are written M x K x N. Three entry
//! points: `matmul` (A B: the layers' input gradients), `matmul_nt` (A B^T: the layers'
//! forwards, weights stored (out, in)) and `matmul_tn` (A^T B: the weight gradients).
//!
//! Versions ([`MatmulVersion`]; the engine's autotuner, src/ops/tune.rs, picks one per adapter
//! and shape by measurement). GFLOP/s on lavapipe (2 cores, 8-lane subgroups), an FMA counts 2,
//! all in ONE run (`deepgen bench --quick`, commit 6ff5312, load average 10-19 on the 2
//! cores, FMA ceiling 30.2 GFLOP/s, about 4x below quiet; docs/bench_kern_lavapipe.json), the
//! autotuner's pick in bold (the fastest in every row of that run):
//!
//! | version | kernel | 1024^3 NN / NT / TN | 128x784x400 NT (the VAE's fc1) |
//! | --- | --- | --- | --- |
//! | v1 one element of C per invocation (the teaching kernel) | `shaders/matmul_naive.wgsl` | 0.06 / 0.12 / 0.03 | 0.16 |
//! | v2 register-blocked: a 4x4 block of C per invocation, operands from global memory | `shaders/matmul.wgsl` | 0.57 / 0.36 / 0.08 | 0.49 |
//! | v3 workgroup-tiled: a BM x BN block per workgroup, BK-deep slices of op(A) and op(B) staged in `var<workgroup>` tiles by vec4 loads, a 4x4 register tile per invocation; BM, BN, BK override constants (32x32x16 on CPU adapters, 64x64x16 on GPUs) | `shaders/matmul_tiled.wgsl` | 0.62 / 0.21 / 0.13 | 0.46 |
//! | v4 subgroup: a workgroup is one subgroup of SG lanes (SG read from the adapter; runs where it is fixed); an 8 x 4SG block; A's values loaded once per subgroup and shared by `subgroupShuffle` | `shaders/matmul_subgroup.wgsl` | 0.54 / 0.37 / 0.22 | 0.62 |
//! | v5 texture operands: A and B in rgba32float storage textures (rows layout with 64 B padding where the rows allow it), `subgroupBroadcast` of A across 8 lanes, the epilogue an override constant | `shaders/matmul_texture.wgsl` (8-lane subgroups only) | **4.80** / **4.41** / **1.61** | **27.00** |
//!
//! Earlier figures: v2 3.5 GFLOP/s at 1024^3 (5.8 quiet; benches/NOTES.md, commit 10461e9); v5
//! NN 46.2, NT 60.5, TN 48.4 quiet (docs/bench_lavapipe.json, commit f7f5e66).
//!
//! Why v3 and v4 exist: on lavapipe every per-invocation buffer load is a loop over the SIMD
//! lanes and every barrier a context switch per subgroup, so v5's texture gathers win there and
//! v3's barriers cost more than its reuse saves. On a GPU the bound is the memory traffic each
//! tiling guarantees. The analysis on paper for an H100 (FP32 peak 66.9 TFLOP/s, HBM3 3.35 TB/s,
//! so the ridge point is 66.9 / 3.35 = 20 FLOP per byte), counting bytes loaded from global
//! memory per FLOP as the tiling itself guarantees it (each load served from DRAM; L1/L2 hits
//! between invocations or workgroups only improve on it):
//!
//! | version | tiling (per k step) | bytes per FLOP | FLOP per byte | bound on H100 | % of FP32 peak |
//! | --- | --- | --- | --- | --- | --- |
//! | v1 | 1 element: 1 float of A + 1 of B for 2 FLOPs | 8 / 2 = 4 | 0.25 | 0.84 TFLOP/s | 1.3% |
//! | v2 | 4x4 block: 4 + 4 floats for 32 FLOPs | 32 / 32 = 1 | 1 | 3.35 TFLOP/s | 5.0% |
//! | v3 | 64x64 block (GPU tile): 64 + 64 floats for 8,192 FLOPs | 2 (BM + BN) / (BM BN) = 1/16 | 16 | 53.6 TFLOP/s | 80% |
//! | v3 at 128x128 (override constants) | 128 + 128 floats for 32,768 FLOPs | 1/32 | 32 | compute bound | 100% |
//! | v4 | 8 x 4SG block, SG = 32: 8 + 128 floats for 2,048 FLOPs | 544 / 2,048 = 0.27 | 3.8 | 12.6 TFLOP/s | 19% |
//! | v5 | 5-8 rows x 32 columns: (R + 32) floats for 64 R FLOPs (NT, R = 6) | 0.40 | 2.5 | 8.5 TFLOP/s | 13% (and it needs 8-lane subgroups: none on an H100) |
//!
//! So only v3 (and a v4 built on v3's workgroup tile rather than on one subgroup's) can reach
//! the compute bound: v1 and v2 are bound by HBM at 1-5% of peak unless caches rescue them.
//! Where the other costs fall (workgroup-memory bandwidth, bank conflicts, occupancy, the
//! register tile's FMA-to-load ratio: 16 FMAs per 8 workgroup-memory loads in v3) is not
//! measured here: no GPU was available for this work.
//!
//! Cases: the square sizes in [`SQUARES`], each as NN, NT and TN; the models' products in
//! [`MODELS`]; and the im2col products of every conv2d layer of conv.rs's table (`--quick`:
//! the DCGAN's; `conv::products`: forward NT, input gradient NN, weight gradient TN), which split a
//! conv row's time into its products and the rest (`--filter 25088x`, `--filter 6272x`).
//! Every product is checked against the f64 reference on a subset of C's rows (every
//! `stride`-th and the last, about [`CHECK_MACS`] multiply-adds) and timed beside
//! `matrixmultiply::sgemm` on one CPU thread.
//!
//! Every version the adapter can run has its row per case (v5 only where a stored operand's
//! contiguous dimension is divisible by 4); the autotuner's pick is marked `*` and compared
//! with the fastest in the report's `tuner` list. Version switch: `deepgen bench --matmul v3`
//! (`cargo bench -- --matmul v3`) runs only v3; in code `Gpu::force_matmul_version`;
//! `DEEPGEN_MATMUL=v3` forces it for any program.

use deepgen::Result;
use deepgen::ops::{Layout, MatmulVersion, chosen_version};
use strum::VariantArray;

use super::reference::ref_matmul;
use super::{Bench, Work, check, cpu_time, pick, to_f64};

/// Parses `--matmul`: `v1` .. `v5` (also `generic` for v2, `texture` for v5).
pub fn parse_version(text: &str) -> std::result::Result<MatmulVersion, String> {
    MatmulVersion::parse(text).ok_or_else(|| format!("{text}: expected v1, v2, v3, v4 or v5"))
}

/// Which entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// C = A B
    NN,
    /// C = A B^T
    NT,
    /// C = A^T B
    TN,
}

impl Variant {
    /// The op's name.
    fn name(self) -> &'static str {
        self.layout().name()
    }

    /// The engine's layout.
    fn layout(self) -> Layout {
        match self {
            Variant::NN => Layout::NN,
            Variant::NT => Layout::NT,
            Variant::TN => Layout::TN,
        }
    }
}

/// One product: op(A) (M x K) times op(B) (K x N).
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub variant: Variant,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Also in the `--quick` suite.
    pub quick: bool,
}

const fn case(variant: Variant, m: usize, k: usize, n: usize, quick: bool) -> Case {
    Case {
        variant,
        m,
        k,
        n,
        quick,
    }
}

/// Square sizes, each timed as NN, NT and TN, and whether `--quick` runs them.
const SQUARES: [(usize, bool); 4] = [(256, false), (512, false), (1024, true), (2048, false)];

/// The models' products.
const MODELS: [Case; 9] = {
    use Variant::*;
    [
        // The MLP VAE (batch 128, 784 -> 400 -> 20): layer forwards run matmul_nt, input
        // gradients matmul, weight gradients matmul_tn.
        case(NT, 128, 784, 400, true),
        case(NT, 128, 400, 784, true),
        case(NN, 128, 784, 400, true),
        case(NN, 128, 400, 784, true),
        case(TN, 400, 128, 784, true),
        case(TN, 784, 128, 400, true),
        case(NT, 128, 400, 20, true),
        case(NT, 128, 20, 400, true),
        // The conv VAE's fully connected layer 3136 -> 256.
        case(NT, 128, 3136, 256, false),
    ]
};

/// Multiply-adds the f64 check of one product may cost, about (its rows are subsampled).
const CHECK_MACS: usize = 1 << 26;

/// Every case of the suite, in the report's order.
fn cases(quick: bool) -> Vec<Case> {
    let mut cases: Vec<Case> = SQUARES
        .iter()
        .filter(|&&(_, in_quick)| in_quick || !quick)
        .flat_map(|&(s, in_quick)| {
            [Variant::NN, Variant::NT, Variant::TN].map(|v| case(v, s, s, s, in_quick))
        })
        .collect();
    cases.extend(MODELS.iter().filter(|c| c.quick || !quick));
    cases.extend(super::conv::products(quick));
    cases
}

/// Checks and times every case.
pub fn run(bench: &mut Bench) -> Result<()> {
    for case in cases(bench.quick) {
        row(bench, case)?;
    }
    Ok(())
}

/// C = op(A) op(B) on one CPU thread, `matrixmultiply::sgemm` (a, b in their stored layouts).
fn sgemm(variant: Variant, a: &[f32], b: &[f32], [m, k, n]: [usize; 3], c: &mut [f32]) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    // Strides of op(A) (M x K) and op(B) (K x N) in their stored layouts.
    let (rsa, csa) = if variant == Variant::TN {
        (1, m)
    } else {
        (k, 1)
    };
    let (rsb, csb) = if variant == Variant::NT {
        (1, k)
    } else {
        (n, 1)
    };
    // SAFETY: a, b and c hold m*k, k*n and m*n floats (asserted above), and the strides address
    // exactly those elements (op(A)[i][l] = a[i*rsa + l*csa] < m*k, likewise B and C); c does
    // not alias a or b.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

fn row(
    bench: &mut Bench,
    Case {
        variant, m, k, n, ..
    }: Case,
) -> Result<()> {
    let kernel = variant.name();
    let shape = format!("{m}x{k}x{n}");
    if !bench.wants(kernel, &shape) {
        return Ok(());
    }
    let a_dims = if variant == Variant::TN {
        [k, m]
    } else {
        [m, k]
    };
    let b_dims = if variant == Variant::NT {
        [n, k]
    } else {
        [k, n]
    };
    let (a, ta) = bench.tensor(&a_dims, -1.0, 1.0)?;
    let (b, tb) = bench.tensor(&b_dims, -1.0, 1.0)?;
    let op = || match variant {
        Variant::NN => ta.matmul(&tb),
        Variant::NT => ta.matmul_nt(&tb),
        Variant::TN => ta.matmul_tn(&tb),
    };
    // The check: rows `rows` of C against the f64 reference, from the same rows of op(A).
    let stride = (m * k * n / CHECK_MACS).max(1);
    let mut rows: Vec<usize> = (0..m).step_by(stride).collect();
    if rows.last() != Some(&(m - 1)) {
        rows.push(m - 1);
    }
    let a_ref = &a;
    let a_rows: Vec<f64> = rows
        .iter()
        .flat_map(|&i| {
            (0..k).map(move |p| match variant {
                Variant::TN => a_ref[p * m + i],
                _ => a_ref[i * k + p],
            })
        })
        .map(f64::from)
        .collect();
    let want = ref_matmul(
        &a_rows,
        &to_f64(&b),
        rows.len(),
        k,
        n,
        false,
        variant == Variant::NT,
    );
    let mut c = vec![0.0f32; m * n];
    let cpu_seconds = cpu_time(bench.plan, || sgemm(variant, &a, &b, [m, k, n], &mut c));
    let flops = 2.0 * (m * k * n) as f64;
    let work = Work {
        flops,
        bytes: 4.0 * (m * k + k * n + m * n) as f64,
    };
    let gpu = ta.gpu().clone();
    // Every version the adapter can run at this shape (v5 declines shapes without a contiguous
    // dimension divisible by 4), or the one of --matmul.
    let versions: Vec<MatmulVersion> = match bench.forced_matmul {
        Some(v) => vec![v],
        None => MatmulVersion::VARIANTS
            .iter()
            .copied()
            .filter(|v| v.unsupported_reason(gpu.capabilities()).is_none())
            .collect(),
    };
    for version in versions {
        gpu.force_matmul_version(Some(version))?;
        if chosen_version(&ta, &tb, variant.layout())? != version {
            continue;
        }
        let got = {
            let _no_grad = deepgen::no_grad();
            op()?.to_vec()?
        };
        let label = format!("{kernel} {}", version.name());
        check(&label, &shape, "product", &pick(&got, &rows, n), &want)?;
        let (seconds, timing) = bench.inference_seconds(op)?;
        bench.version = Some(version.name().into());
        bench.push(
            kernel,
            &shape,
            seconds,
            work,
            timing,
            Some(flops / cpu_seconds / 1e9),
        );
        bench.version = None;
    }
    gpu.force_matmul_version(bench.forced_matmul)?;
    if bench.forced_matmul.is_none() {
        // The autotuner's pick (measured now on this adapter if the cache has none).
        let pick = chosen_version(&ta, &tb, variant.layout())?;
        bench.tuner_pick(kernel, &shape, pick.name(), true);
    }
    Ok(())
}

//! Randomness on the GPU (kernels in `shaders/random.wgsl`): normal samples for the
//! reparameterization trick and noise vectors, and dropout masks. Both draw from one
//! seeded counter-based generator, Philox-4x32-10 (Salmon et al. 2011), so a seed set
//! with [`Gpu::manual_seed`] makes a run reproducible.

use crate::error::{Error, Result};
use std::cell::Cell;

use crate::gpu::{Gpu, grid_1d};
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Params of `randn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RandnParams {
    /// Number of elements.
    pub n: u32,
    /// Philox key (the seed), low word.
    pub seed_lo: u32,
    /// High word of the seed.
    pub seed_hi: u32,
    /// First counter value, low word.
    pub counter_lo: u32,
    /// High word of the counter.
    pub counter_hi: u32,
    /// Padding to 32 bytes.
    pub _pad: [u32; 3],
}

/// Params of `dropout`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutParams {
    /// Number of elements.
    pub n: u32,
    /// Probability of keeping an element, 1 - p.
    pub keep: f32,
    /// Factor applied to kept elements, 1 / keep.
    pub scale: f32,
    /// Seed, low word.
    pub seed_lo: u32,
    /// Seed, high word.
    pub seed_hi: u32,
    /// First counter, low word.
    pub counter_lo: u32,
    /// First counter, high word.
    pub counter_hi: u32,
    /// Padding to 32 bytes.
    pub _pad: u32,
}

impl Tensor {
    /// Samples of N(0, 1) of `shape`, drawn on the GPU by the seeded counter-based
    /// generator (Philox-4x32-10 with the Box-Muller transform). The same
    /// [`Gpu::manual_seed`] and sequence of calls give the same numbers.
    pub fn randn(gpu: &Gpu, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.numel();
        let out = Tensor::alloc(gpu, "randn", n)?;
        let [seed_lo, seed_hi, counter_lo, counter_hi] = philox_words(gpu, n);
        let params = RandnParams {
            n: n as u32,
            seed_lo,
            seed_hi,
            counter_lo,
            counter_hi,
            _pad: [0; 3],
        };
        Kernel::Randn.dispatch(
            gpu,
            &[&out],
            &params,
            grid_1d((n as u64).div_ceil(4), WORKGROUP_1D),
        );
        Ok(Tensor::from_storage(gpu, out, shape))
    }

    /// Inverted dropout (Srivastava et al. 2014): each element is zeroed with
    /// probability `p` and the survivors scaled by 1 / (1 - p), so the expectation is
    /// unchanged. Shape preserved; the gradient is `dy * mask`. `p = 0` returns the input.
    ///
    /// Errors: [`Error::Invalid`] unless 0 <= p < 1.
    pub fn dropout(&self, p: f32) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::Invalid(format!(
                "dropout: p must be in [0, 1), got {p}"
            )));
        }
        if p == 0.0 {
            return Ok(self.clone());
        }
        let gpu = self.gpu();
        let n = self.numel();
        let y = Tensor::alloc(gpu, "dropout", n)?;
        let mask = Tensor::alloc(gpu, "dropout", n)?;
        let [seed_lo, seed_hi, counter_lo, counter_hi] = philox_words(gpu, n);
        let params = DropoutParams {
            n: n as u32,
            keep: 1.0 - p,
            scale: 1.0 / (1.0 - p),
            seed_lo,
            seed_hi,
            counter_lo,
            counter_hi,
            _pad: 0,
        };
        Kernel::Dropout.dispatch(
            gpu,
            &[self.storage(), &y, &mask],
            &params,
            grid_1d((n as u64).div_ceil(4), WORKGROUP_1D),
        );
        let mask = Tensor::from_storage(gpu, mask, self.shape().clone());
        let backward = Box::new(
            move |dy: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
                Ok(vec![Some(dy.mul(&mask)?)])
            },
        );
        Ok(Tensor::from_op(
            gpu,
            y,
            self.shape().clone(),
            &[self],
            backward,
        ))
    }
}

impl Tensor {
    /// A 0/1 sample per element with P(1) = the element's value (intensities in [0, 1]):
    /// the binarization of MNIST used by the binarized-MNIST likelihood literature
    /// ("dynamic binarization" when drawn afresh for every batch). Not differentiable.
    pub fn bernoulli(&self) -> Result<Tensor> {
        let gpu = self.gpu();
        let n = self.numel();
        let y = Tensor::alloc(gpu, "bernoulli", n)?;
        let [seed_lo, seed_hi, counter_lo, counter_hi] = philox_words(gpu, n);
        let params = DropoutParams {
            n: n as u32,
            keep: 0.0,
            scale: 0.0,
            seed_lo,
            seed_hi,
            counter_lo,
            counter_hi,
            _pad: 0,
        };
        Kernel::Bernoulli.dispatch(
            gpu,
            &[self.storage(), &y],
            &params,
            grid_1d((n as u64).div_ceil(4), WORKGROUP_1D),
        );
        Ok(Tensor::from_storage(gpu, y, self.shape().clone()))
    }
}

/// The generator's state in one GPU context (kept in [`Gpu::extension`]): the seed (Philox
/// key) and the next unused counter.
struct PhiloxCounter(Cell<(u64, u64)>);

impl Default for PhiloxCounter {
    fn default() -> Self {
        PhiloxCounter(Cell::new((0x5eed, 0)))
    }
}

impl Gpu {
    /// Seeds the GPU random generator (used by `randn`, hence the reparameterization trick,
    /// `dropout` and `bernoulli`): the same seed and sequence of calls give the same numbers.
    pub fn manual_seed(&self, seed: u64) {
        self.extension::<PhiloxCounter>().0.set((seed, 0));
    }

    /// The GPU random generator's state: `(seed, counter)`, the Philox key and the next
    /// unused counter (each counter yields 4 numbers). Saved by a training run so that
    /// `--resume` continues the same stream ([`Gpu::set_rng_state`]).
    pub fn rng_state(&self) -> (u64, u64) {
        self.extension::<PhiloxCounter>().0.get()
    }

    /// Restores a state read with [`Gpu::rng_state`]: the next numbers drawn are the ones
    /// that would have followed it.
    pub fn set_rng_state(&self, seed: u64, counter: u64) {
        self.extension::<PhiloxCounter>().0.set((seed, counter));
    }
}

/// Reserves the Philox counters for `n` random numbers (each Philox call yields 4, so one
/// counter per 4 elements) and returns the kernel's key and first counter as 32-bit words:
/// `[seed_lo, seed_hi, counter_lo, counter_hi]`.
fn philox_words(gpu: &Gpu, n: usize) -> [u32; 4] {
    let state = gpu.extension::<PhiloxCounter>();
    let (seed, counter) = state.0.get();
    state.0.set((seed, counter + (n as u64).div_ceil(4)));
    [
        seed as u32,
        (seed >> 32) as u32,
        counter as u32,
        (counter >> 32) as u32,
    ]
}

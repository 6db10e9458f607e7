//! deepgen in the browser: the engine compiled to wasm32-unknown-unknown, on wgpu's WebGPU
//! backend, driven by the static page in `web/www` (see `web/README.md`).
//!
//! There is no second engine here: [`Engine`] holds a [`deepgen::Gpu`] opened with
//! [`Gpu::new_async`] and calls the same models, ops, kernels and Adam as the native
//! `deepgen train`. What differs is only how the host waits: every readback is the engine's
//! async one ([`Tensor::to_vec_async`], [`Tensor::item_async`]), awaited in a JavaScript
//! promise, since the browser's main thread must never block. The engine reads the browser
//! adapter's limits and features as it reads a native one's, and picks its kernels from them
//! (e.g. the texture matmul needs 8-lane subgroups; on SwiftShader the generic matmul runs).
//!
//! Every method that touches the GPU returns a `Promise`. The state sits in `RefCell`s whose
//! borrows end before the first `await`, so calls cannot corrupt each other; a call made while
//! another holds a borrow is refused with an error. The page still awaits each call before
//! the next, so that training chunks, sample grids and explorer decodes take turns.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use deepgen::checkpoint;
use deepgen::data::{Batches, Dataset};
use deepgen::latent::seeded_noise;
use deepgen::models::{Generative, MlpConfig, Vae};
use deepgen::nn::Module;
use deepgen::optim::Adam;
use deepgen::train::Optimizer;
use deepgen::train::vae::vae_step;
use deepgen::{Gpu, Tensor, no_grad};
use js_sys::{Float32Array, Promise};
use rand::SeedableRng;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// The model being trained or explored, its optimizer and the training data's order.
struct Session {
    /// The model (a freshly built VAE, or whatever a loaded checkpoint holds).
    model: Box<dyn Generative>,
    /// Adam over every parameter; None for a model that cannot be trained here (not a VAE).
    optimizer: Option<Optimizer>,
    /// Images per training step.
    batch_size: usize,
    /// Seed of the batch order.
    seed: u64,
    /// Epoch of `batches` (0-based).
    epoch: u64,
    /// The rest of the current epoch's mini-batches.
    batches: Batches,
    /// Training steps taken.
    steps: u64,
}

/// The engine as the page sees it: one GPU context, the training data, one model at a time.
#[wasm_bindgen]
pub struct Engine {
    gpu: Gpu,
    /// The first WebGPU error the browser reported (a shader it cannot compile, a failed
    /// validation): every later call fails with it instead of computing from invalid work.
    gpu_error: Arc<Mutex<Option<String>>>,
    data: Rc<RefCell<Option<Dataset>>>,
    session: Rc<RefCell<Option<Session>>>,
}

/// A JavaScript error carrying the engine's message.
fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// Fails with the first WebGPU error the browser reported, if any.
fn check(errors: &Mutex<Option<String>>) -> Result<(), JsValue> {
    match errors.lock().expect("error slot").as_ref() {
        Some(e) => Err(js_error(format!("WebGPU error: {e}"))),
        None => Ok(()),
    }
}

/// The error of a call made while another is still pending.
fn busy() -> JsValue {
    js_error("the engine is busy with another call; await it first")
}

#[wasm_bindgen]
impl Engine {
    /// Opens the browser's WebGPU adapter (the async [`Gpu::new_async`]); rejects with the
    /// reason when the browser has no WebGPU or no adapter.
    pub async fn create() -> Result<Engine, JsValue> {
        std::panic::set_hook(Box::new(|info| {
            web_log(&format!("deepgen panicked: {info}"));
        }));
        let gpu = Gpu::new_async().await.map_err(js_error)?;
        let gpu_error = Arc::new(Mutex::new(None));
        let first = gpu_error.clone();
        gpu.device()
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                web_log(&format!("deepgen: WebGPU error: {e}"));
                let mut slot = first.lock().expect("error slot");
                if slot.is_none() {
                    *slot = Some(e.to_string());
                }
            }));
        Ok(Engine {
            gpu,
            gpu_error,
            data: Rc::new(RefCell::new(None)),
            session: Rc::new(RefCell::new(None)),
        })
    }

    /// The adapter as the page shows it: name, backend, and the matmul kernels the engine
    /// chose for it from its features (texture path or generic).
    pub fn adapter(&self) -> String {
        let s = self.gpu.summary();
        let name = if s.name.is_empty() {
            String::new()
        } else {
            format!("{} ", s.name)
        };
        format!(
            "{name}[{}, {}], matmul: {:?}",
            s.backend,
            s.device_type,
            self.gpu.matmul_path()
        )
    }

    /// The adapter's summary and capabilities as JSON (for the test and the page's footer).
    pub fn adapter_json(&self) -> String {
        let s = self.gpu.summary();
        let c = self.gpu.capabilities();
        serde_json::json!({
            "name": s.name,
            "backend": s.backend,
            "device_type": s.device_type,
            "driver": s.driver,
            "max_storage_buffer_binding_size": s.max_storage_buffer_binding_size,
            "max_compute_workgroup_storage_size": s.max_compute_workgroup_storage_size,
            "subgroups": c.subgroups,
            "subgroup_min_size": c.subgroup_min_size,
            "subgroup_max_size": c.subgroup_max_size,
            "matmul_path": format!("{:?}", self.gpu.matmul_path()),
        })
        .to_string()
    }

    /// Decompresses and reads MNIST from the bytes of an IDX images file and an IDX labels
    /// file (gzip or raw), keeping the first `limit` images (all if 0). Returns the count.
    pub fn load_mnist(&self, images: &[u8], labels: &[u8], limit: usize) -> Result<usize, JsValue> {
        let mut data =
            Dataset::from_idx_bytes(images, "images", labels, "labels").map_err(js_error)?;
        if limit > 0 {
            data = data.truncate(limit);
        }
        let n = data.len();
        *self.data.try_borrow_mut().map_err(|_| busy())? = Some(data);
        Ok(n)
    }

    /// A fresh MLP VAE (784 -> `hidden_dim` -> `latent_dim`, PyTorch's initialisation from
    /// `seed`) and Adam with learning rate `lr`, trained on batches of `batch_size`.
    pub fn new_vae(
        &self,
        latent_dim: usize,
        hidden_dim: usize,
        batch_size: usize,
        lr: f32,
        seed: u32,
    ) -> Result<(), JsValue> {
        let config = MlpConfig {
            input_dim: 784,
            hidden_dim,
            latent_dim,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed as u64);
        let model = Vae::new(&self.gpu, config, &mut rng).map_err(js_error)?;
        let optimizer = Optimizer::new(Adam::new(lr), model.parameters());
        self.start(Box::new(model), Some(optimizer), batch_size, seed as u64)
    }

    /// Loads a natively trained `model.safetensors` from its bytes (file picker or URL);
    /// a VAE can go on training here with Adam at `lr` (fresh moments). `name` names the
    /// source in errors. Returns the model kind's name.
    pub fn load_checkpoint(
        &self,
        bytes: &[u8],
        name: &str,
        batch_size: usize,
        lr: f32,
    ) -> Result<String, JsValue> {
        let ckpt = checkpoint::load_bytes(bytes, Path::new(name)).map_err(js_error)?;
        let model = ckpt.into_model(&self.gpu).map_err(js_error)?;
        let kind = model.kind().name().to_string();
        let optimizer = model.as_variational().map(|_| {
            model.set_training(true);
            Optimizer::new(Adam::new(lr), model.parameters())
        });
        self.start(model, optimizer, batch_size, 0)?;
        Ok(kind)
    }

    /// Size of the current model's latent code (0 without a model).
    pub fn latent_dim(&self) -> usize {
        match self.session.try_borrow() {
            Ok(s) => s.as_ref().map_or(0, |s| s.model.latent_dim()),
            Err(_) => 0,
        }
    }

    /// Whether the current model can be trained here (a VAE, with the data loaded).
    pub fn trainable(&self) -> bool {
        let has_data = self.data.try_borrow().is_ok_and(|d| d.is_some());
        has_data
            && self
                .session
                .try_borrow()
                .is_ok_and(|s| s.as_ref().is_some_and(|s| s.optimizer.is_some()))
    }

    /// Training steps taken on the current model.
    pub fn steps(&self) -> f64 {
        match self.session.try_borrow() {
            Ok(s) => s.as_ref().map_or(0.0, |s| s.steps as f64),
            Err(_) => 0.0,
        }
    }

    /// Runs `steps` training steps (the native `vae_step`: negative ELBO, backward, Adam;
    /// one submit each) and resolves with their mean loss, nats per image: the per-step
    /// losses are added on the GPU and read back once, asynchronously.
    pub fn train(&self, steps: u32) -> Promise {
        let (gpu, data, session) = (self.gpu.clone(), self.data.clone(), self.session.clone());
        let errors = self.gpu_error.clone();
        future_to_promise(async move {
            let loss = {
                let data = data.try_borrow().map_err(|_| busy())?;
                let data = data
                    .as_ref()
                    .ok_or_else(|| js_error("no training data: call load_mnist first"))?;
                let mut guard = session.try_borrow_mut().map_err(|_| busy())?;
                let s = guard
                    .as_mut()
                    .ok_or_else(|| js_error("no model: call new_vae or load_checkpoint"))?;
                train_steps(&gpu, data, s, steps).map_err(js_error)?
            };
            let mean = loss.item_async().await.map_err(js_error)? / steps.max(1) as f32;
            check(&errors)?;
            Ok(JsValue::from_f64(mean as f64))
        })
    }

    /// Decodes latent codes `z` (`n * latent_dim` values, row after row) on the GPU and
    /// resolves with the images' pixel intensities in [0, 1], `n * 784` values.
    pub fn decode(&self, z: Vec<f32>) -> Promise {
        let session = self.session.clone();
        let errors = self.gpu_error.clone();
        future_to_promise(async move {
            let out = {
                let guard = session.try_borrow().map_err(|_| busy())?;
                let s = guard.as_ref().ok_or_else(|| js_error("no model"))?;
                let d = s.model.latent_dim();
                if d == 0 || !z.len().is_multiple_of(d) {
                    return Err(js_error(format!(
                        "decode: {} values are not rows of latent_dim {d}",
                        z.len()
                    )));
                }
                let gpu = s.model.parameters()[0].gpu().clone();
                let _no_grad = no_grad();
                let z = Tensor::from_slice(&gpu, &z, [z.len() / d, d]).map_err(js_error)?;
                s.model.generate(&z).map_err(js_error)?
            };
            let pixels = out.to_vec_async().await.map_err(js_error)?;
            check(&errors)?;
            Ok(Float32Array::from(&pixels[..]).into())
        })
    }

    /// `n` fixed prior samples: latent codes number `seed`, `seed + 1`, ... (the native
    /// `seeded_noise`), `n * latent_dim` values for [`Engine::decode`].
    pub fn prior_codes(&self, n: u32, seed: u32) -> Vec<f32> {
        let d = self.latent_dim();
        (0..n as u64)
            .flat_map(|i| seeded_noise(seed as u64 + i, d))
            .collect()
    }

    /// How much each latent dimension carries: KL(q(z_j|x) || N(0, 1)) averaged over the
    /// first 256 training images (nats), and the mean of mu per dimension, as JSON
    /// `{"kl": [...], "mu": [...]}`. For a model without an encoder (a GAN), all KL are 0.
    pub fn latent_activity(&self) -> Promise {
        let (gpu, data, session) = (self.gpu.clone(), self.data.clone(), self.session.clone());
        let errors = self.gpu_error.clone();
        future_to_promise(async move {
            let (mu, logvar, d) = {
                let data = data.try_borrow().map_err(|_| busy())?;
                let guard = session.try_borrow().map_err(|_| busy())?;
                let s = guard.as_ref().ok_or_else(|| js_error("no model"))?;
                let d = s.model.latent_dim();
                match (s.model.as_variational(), data.as_ref()) {
                    (Some(vae), Some(data)) if !data.is_empty() => {
                        let n = data.len().min(256);
                        let idx: Vec<usize> = (0..n).collect();
                        let _no_grad = no_grad();
                        let x = Tensor::from_slice(&gpu, &data.gather(&idx), [n, data.pixels()])
                            .map_err(js_error)?;
                        let (mu, logvar) = vae.encode(&x).map_err(js_error)?;
                        (Some(mu), Some(logvar), d)
                    }
                    _ => (None, None, d),
                }
            };
            let (kl, mean_mu) = match (mu, logvar) {
                (Some(mu), Some(logvar)) => {
                    let mu = mu.to_vec_async().await.map_err(js_error)?;
                    let logvar = logvar.to_vec_async().await.map_err(js_error)?;
                    activity(&mu, &logvar, d)
                }
                _ => (vec![0.0; d], vec![0.0; d]),
            };
            check(&errors)?;
            Ok(JsValue::from_str(
                &serde_json::json!({ "kl": kl, "mu": mean_mu }).to_string(),
            ))
        })
    }

    /// Every matmul version (v1..v5) in the three layouts NN, NT, TN at awkward sizes, and both
    /// convolution algorithms (im2col, implicit GEMM) in their three products (forward, dx,
    /// dw), run on this adapter and compared with f64 references computed here on the host.
    /// Resolves with JSON rows `{"kernel", "version", "ran", "why", "worst"}`: `worst` is the
    /// largest |gpu - reference| / max|reference| over the version's products; a version the
    /// adapter cannot run (v4 and v5 need subgroups) has `ran: false` and the reason. The
    /// autotuner chooses again afterwards. The browser test asserts every row that ran.
    pub fn check_kernels(&self) -> Promise {
        let gpu = self.gpu.clone();
        let errors = self.gpu_error.clone();
        future_to_promise(async move {
            let rows = kernel_check::run(&gpu).await;
            gpu.force_matmul_version(None).map_err(js_error)?;
            gpu.force_conv_algorithm(None);
            let rows = rows.map_err(js_error)?;
            check(&errors)?;
            Ok(JsValue::from_str(
                &serde_json::Value::Array(rows).to_string(),
            ))
        })
    }

    /// One fixed training step for the cross-backend comparison: loads the VAE checkpoint
    /// `weights` (safetensors bytes), computes the negative ELBO of the batch `x (B, 784)`
    /// with the given noise `eps (B, latent_dim)` (no GPU generator, whose last bits differ
    /// between drivers) and its gradients, and resolves with JSON `{"loss": l, "grads":
    /// {name: [...]}}` for every parameter. The native side (tests/browser.rs) runs
    /// the same step natively on the same inputs.
    pub fn fixed_step(&self, weights: Vec<u8>, x: Vec<f32>, eps: Vec<f32>) -> Promise {
        let gpu = self.gpu.clone();
        let errors = self.gpu_error.clone();
        future_to_promise(async move {
            let ckpt = checkpoint::load_bytes(&weights, Path::new("fixed-step weights"))
                .map_err(js_error)?;
            let model = ckpt.into_model(&gpu).map_err(js_error)?;
            let vae = model
                .as_variational()
                .ok_or_else(|| js_error("fixed_step needs a VAE checkpoint"))?;
            let d = model.latent_dim();
            let b = eps.len() / d.max(1);
            let x = Tensor::from_slice(&gpu, &x, [b, 784]).map_err(js_error)?;
            let eps = Tensor::from_slice(&gpu, &eps, [b, d]).map_err(js_error)?;
            let loss = vae.loss_with_eps(&x, Some(&eps), 1.0).map_err(js_error)?;
            let grads = loss.loss.backward().map_err(js_error)?;
            let mut out = serde_json::Map::new();
            for (name, p) in model.named_parameters() {
                let g = grads
                    .get(&p)
                    .ok_or_else(|| js_error(format!("no gradient for {name}")))?;
                let values = g.to_vec_async().await.map_err(js_error)?;
                out.insert(name, serde_json::json!(values));
            }
            let loss = loss.loss.item_async().await.map_err(js_error)?;
            check(&errors)?;
            Ok(JsValue::from_str(
                &serde_json::json!({ "loss": loss, "grads": out }).to_string(),
            ))
        })
    }
}

impl Engine {
    /// Makes `model` the current one, with a fresh batch order.
    fn start(
        &self,
        model: Box<dyn Generative>,
        optimizer: Option<Optimizer>,
        batch_size: usize,
        seed: u64,
    ) -> Result<(), JsValue> {
        if batch_size == 0 {
            return Err(js_error("batch_size must be at least 1"));
        }
        let n = self
            .data
            .try_borrow()
            .map_err(|_| busy())?
            .as_ref()
            .map_or(0, |d| d.len());
        *self.session.try_borrow_mut().map_err(|_| busy())? = Some(Session {
            model,
            optimizer,
            batch_size,
            seed,
            epoch: 0,
            batches: Batches::new(n, batch_size, seed, 0),
            steps: 0,
        });
        Ok(())
    }
}

/// Records `steps` training steps of `s` on `data` and returns the sum of their batch-mean
/// losses, still on the GPU. Each step is submitted on its own (as `deepgen train` does
/// between its log lines); nothing is read back.
fn train_steps(gpu: &Gpu, data: &Dataset, s: &mut Session, steps: u32) -> deepgen::Result<Tensor> {
    let vae = s
        .model
        .as_variational()
        .ok_or_else(|| deepgen::Error::Invalid("this model cannot be trained here".into()))?;
    let optimizer = s
        .optimizer
        .as_mut()
        .ok_or_else(|| deepgen::Error::Invalid("this model has no optimizer".into()))?;
    let mut total: Option<Tensor> = None;
    for _ in 0..steps {
        let indices = match s.batches.next() {
            Some(i) if i.len() == s.batch_size => i,
            // A short last batch is skipped (its mean would weigh its few images more).
            _ => {
                s.epoch += 1;
                s.batches = Batches::new(data.len(), s.batch_size, s.seed, s.epoch);
                s.batches.next().ok_or_else(|| {
                    deepgen::Error::Invalid("no training images to draw a batch from".into())
                })?
            }
        };
        let x = Tensor::from_slice(gpu, &data.gather(&indices), [indices.len(), data.pixels()])?;
        let step = vae_step(vae, optimizer, &x, 1.0)?;
        let _no_grad = no_grad();
        let (_, loss) = &step.shown[0];
        total = Some(match total {
            None => loss.clone(),
            Some(t) => t.add(loss)?,
        });
        gpu.flush();
        s.steps += 1;
    }
    total.ok_or_else(|| deepgen::Error::Invalid("train: steps must be at least 1".into()))
}

/// Per-dimension mean KL(N(mu, exp(logvar)) || N(0, 1)) and mean mu over the rows of `mu`
/// and `logvar` (`n * d` values each): `0.5 * (mu^2 + exp(logvar) - 1 - logvar)` (Kingma &
/// Welling 2014, appendix B), averaged over rows.
fn activity(mu: &[f32], logvar: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let rows = (mu.len() / d.max(1)).max(1) as f64;
    let mut kl = vec![0.0f64; d];
    let mut mean = vec![0.0f64; d];
    for (i, (&m, &lv)) in mu.iter().zip(logvar).enumerate() {
        let (m, lv) = (m as f64, lv as f64);
        kl[i % d] += 0.5 * (m * m + lv.exp() - 1.0 - lv) / rows;
        mean[i % d] += m / rows;
    }
    (kl, mean)
}

#[wasm_bindgen]
extern "C" {
    /// The browser console's `console.error`.
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_log(s: &str);
}

/// [`Engine::check_kernels`]: the kernel versions against f64 references, in the page.
mod kernel_check {
    use deepgen::autograd::grad;
    use deepgen::latent::seeded_noise;
    use deepgen::ops::{Conv2dOptions, ConvAlgorithm, MatmulVersion, conv2d};
    use deepgen::{Gpu, Result, Tensor};
    use serde_json::{Value, json};

    /// Products (m, k, n) at sizes that are not multiples of any tile.
    const MATMUL_SIZES: [(usize, usize, usize); 4] =
        [(1, 7, 33), (33, 7, 1), (33, 65, 7), (7, 33, 65)];

    /// max |got - want| / max |want|.
    fn worst(got: &[f32], want: &[f64]) -> f64 {
        let scale = want.iter().fold(1e-30f64, |m, w| m.max(w.abs()));
        got.iter()
            .zip(want)
            .fold(0f64, |m, (g, w)| m.max((*g as f64 - w).abs()))
            / scale
    }

    /// `n` normal values, a different stream per `seed`.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        seeded_noise(1000 + seed, n)
    }

    pub async fn run(gpu: &Gpu) -> Result<Vec<Value>> {
        let mut rows = Vec::new();
        let versions = [
            MatmulVersion::V1,
            MatmulVersion::V2,
            MatmulVersion::V3,
            MatmulVersion::V4,
            MatmulVersion::V5,
        ];
        for v in versions {
            if let Err(why) = gpu.force_matmul_version(Some(v)) {
                rows.push(json!({"kernel": "matmul", "version": v.name(), "ran": false, "why": why.to_string()}));
                continue;
            }
            let mut w = 0f64;
            for (i, &(m, k, n)) in MATMUL_SIZES.iter().enumerate() {
                // Layouts: 0 = NN (A m x k, B k x n), 1 = NT (B n x k), 2 = TN (A k x m).
                for layout in 0..3 {
                    let a = values(10 * i as u64 + layout, m * k);
                    let b = values(10 * i as u64 + layout + 5, k * n);
                    let at = |r: usize, c: usize| {
                        if layout == 2 {
                            a[c * m + r]
                        } else {
                            a[r * k + c]
                        }
                    };
                    let bt = |r: usize, c: usize| {
                        if layout == 1 {
                            b[c * k + r]
                        } else {
                            b[r * n + c]
                        }
                    };
                    let want: Vec<f64> = (0..m * n)
                        .map(|o| {
                            (0..k)
                                .map(|j| at(o / n, j) as f64 * bt(j, o % n) as f64)
                                .sum()
                        })
                        .collect();
                    let ta =
                        Tensor::from_slice(gpu, &a, if layout == 2 { [k, m] } else { [m, k] })?;
                    let tb =
                        Tensor::from_slice(gpu, &b, if layout == 1 { [n, k] } else { [k, n] })?;
                    let c = match layout {
                        0 => ta.matmul(&tb)?,
                        1 => ta.matmul_nt(&tb)?,
                        _ => ta.matmul_tn(&tb)?,
                    };
                    w = w.max(worst(&c.to_vec_async().await?, &want));
                }
            }
            rows.push(json!({"kernel": "matmul", "version": v.name(), "ran": true, "worst": w}));
        }
        gpu.force_matmul_version(None)?;

        // conv2d of x (2, 3, 9, 7) by w (5, 3, 3, 3), stride 2, padding 1; loss = sum(y * g).
        let (nb, c, h, wd, o, kk, s, p) = (
            2usize, 3usize, 9usize, 7usize, 5usize, 3usize, 2usize, 1usize,
        );
        let (oh, ow) = ((h + 2 * p - kk) / s + 1, (wd + 2 * p - kk) / s + 1);
        let x = values(100, nb * c * h * wd);
        let wt = values(101, o * c * kk * kk);
        let g = values(102, nb * o * oh * ow);
        let mut y_ref = vec![0f64; nb * o * oh * ow];
        let mut dx_ref = vec![0f64; x.len()];
        let mut dw_ref = vec![0f64; wt.len()];
        for n_ in 0..nb {
            for o_ in 0..o {
                for i in 0..oh {
                    for j in 0..ow {
                        let yi = ((n_ * o + o_) * oh + i) * ow + j;
                        for c_ in 0..c {
                            for a_ in 0..kk {
                                for b_ in 0..kk {
                                    let (ih, iw) = (
                                        (i * s + a_) as isize - p as isize,
                                        (j * s + b_) as isize - p as isize,
                                    );
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((n_ * c + c_) * h + ih as usize) * wd + iw as usize;
                                    let wi = ((o_ * c + c_) * kk + a_) * kk + b_;
                                    y_ref[yi] += x[xi] as f64 * wt[wi] as f64;
                                    dx_ref[xi] += g[yi] as f64 * wt[wi] as f64;
                                    dw_ref[wi] += g[yi] as f64 * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        let opt = Conv2dOptions {
            stride: [s, s],
            padding: [p, p],
            ..Conv2dOptions::default()
        };
        for alg in [ConvAlgorithm::Im2col, ConvAlgorithm::Implicit] {
            gpu.force_conv_algorithm(Some(alg));
            let tx = Tensor::from_slice(gpu, &x, [nb, c, h, wd])?.requires_grad_();
            let tw = Tensor::from_slice(gpu, &wt, [o, c, kk, kk])?.requires_grad_();
            let tg = Tensor::from_slice(gpu, &g, [nb, o, oh, ow])?;
            let y = conv2d(&tx, &tw, None, opt)?;
            let loss = y.mul(&tg)?.sum()?;
            let grads = grad(&[&loss], &[&tx, &tw], false)?;
            let (dx, dw) = match (&grads[0], &grads[1]) {
                (Some(dx), Some(dw)) => (dx, dw),
                _ => return Err(deepgen::Error::Invalid("conv check: no gradient".into())),
            };
            let w = worst(&y.to_vec_async().await?, &y_ref)
                .max(worst(&dx.to_vec_async().await?, &dx_ref))
                .max(worst(&dw.to_vec_async().await?, &dw_ref));
            let name = match alg {
                ConvAlgorithm::Im2col => "im2col",
                ConvAlgorithm::Implicit => "implicit",
            };
            rows.push(json!({"kernel": "conv2d", "version": name, "ran": true, "worst": w}));
        }
        gpu.force_conv_algorithm(None);
        Ok(rows)
    }
}

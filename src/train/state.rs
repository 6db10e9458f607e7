//! The training state: everything `--resume` needs to continue a run as if it had never
//! stopped, in one safetensors file beside the model, `OUT/train_state.safetensors`.
//!
//! It holds the model's weights and buffers (`model.NAME`, as in model.safetensors, so the
//! state is whole by itself: it is written atomically after model.safetensors, and a kill
//! between the two leaves the previous state, which is consistent), each optimizer's moments
//! (`optimizer.OPT.I.exp_avg`, `.exp_avg_sq`, I the parameter's index in the optimizer, as in
//! PyTorch's optimizer state) and step count, the GPU generator's (seed, counter), the
//! trainer's own state (a host generator, say: `extra.*`), the settings the run was started
//! with (`setting.*`, which a resumed run must repeat), and the epochs finished. A state
//! saved in the middle of an epoch (Ctrl-C) adds that epoch's batches (`partial.order`,
//! `partial.batch_sizes`), the steps done, and its running sums as the f32 values the GPU held
//! (`partial.sum.I`), which re-uploaded continue the same additions bit for bit.
//!
//! model.safetensors stays a plain checkpoint (loadable by `deepgen sample` and by PyTorch's
//! safetensors); this file is refused by them (its format is `deepgen-train-state`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::checkpoint::{Checkpoint, HostTensor, check_finite_values};
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::models::ModelKind;
use crate::tensor::Tensor;
use crate::train::Optimizer;

/// The `format` entry of a training-state file.
pub const STATE_FORMAT: &str = "deepgen-train-state";
/// Version of the layout above.
pub const STATE_VERSION: &str = "1";

/// A trainer's own state beyond its model and optimizers (see
/// [`super::Trainable::extra_state`]): text values and f64 arrays, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtraState {
    /// Named values, e.g. a host generator's serialized state in hex.
    pub values: BTreeMap<String, String>,
    /// Named arrays, e.g. sampling weights.
    pub arrays: BTreeMap<String, Vec<f64>>,
}

/// One optimizer's state on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// Adam's steps taken.
    pub steps: u32,
    /// Per parameter, in the optimizer's order: its (exp_avg, exp_avg_sq), or None before
    /// its first update.
    pub moments: Vec<Option<(Vec<f32>, Vec<f32>)>>,
}

impl OptimizerState {
    /// Reads `opt`'s state back from the GPU.
    ///
    /// Errors: GPU readback errors.
    pub fn read(opt: &Optimizer) -> Result<OptimizerState> {
        let moments = opt
            .params
            .iter()
            .map(|p| match opt.adam.moments(p) {
                Some((m, v)) => Ok(Some((m.to_vec()?, v.to_vec()?))),
                None => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(OptimizerState {
            steps: opt.adam.steps(),
            moments,
        })
    }

    /// Uploads this state into `opt`, whose parameters must be as many and of the same
    /// sizes; `name` and `origin` name the optimizer and the file in errors.
    ///
    /// Errors: [`Error::Checkpoint`] if the counts or sizes differ; GPU errors.
    pub fn restore(&self, opt: &mut Optimizer, name: &str, origin: &Path) -> Result<()> {
        let bad = |reason: String| Error::Checkpoint {
            path: origin.to_path_buf(),
            reason,
        };
        if self.moments.len() != opt.params.len() {
            return Err(bad(format!(
                "optimizer `{name}` has {} parameters saved, the model has {}",
                self.moments.len(),
                opt.params.len()
            )));
        }
        for (i, (p, saved)) in opt.params.iter().zip(&self.moments).enumerate() {
            let Some((m, v)) = saved else { continue };
            if m.len() != p.numel() || v.len() != p.numel() {
                return Err(bad(format!(
                    "optimizer `{name}` parameter {i}: {} saved moments, the parameter has {} values",
                    m.len(),
                    p.numel()
                )));
            }
            let m = Tensor::from_slice(p.gpu(), m, p.shape().clone())?;
            let v = Tensor::from_slice(p.gpu(), v, p.shape().clone())?;
            opt.adam.set_moments(p, m, v)?;
        }
        opt.adam.set_steps(self.steps);
        Ok(())
    }
}

/// The part of an epoch done when a run stopped in the middle of it.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialEpoch {
    /// Steps of the epoch done (the next to run is this index).
    pub steps_done: usize,
    /// The epoch's batches: training-set indices, in order.
    pub batches: Vec<Vec<usize>>,
    /// The epoch's running sums as the GPU held them, each with its shape.
    pub sums: Vec<(Vec<usize>, Vec<f32>)>,
    /// Training images seen in the epoch so far.
    pub images: usize,
    /// Seconds of the epoch's steps so far.
    pub seconds: f64,
}

/// Everything `--resume` restores; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// The model kind.
    pub kind: ModelKind,
    /// The settings the run was started with (`seed`, `lr`, ... and the model's metadata).
    pub settings: BTreeMap<String, String>,
    /// Epochs finished.
    pub epochs_done: usize,
    /// The epoch in progress when the run stopped inside one (Ctrl-C).
    pub partial: Option<PartialEpoch>,
    /// The GPU generator's (seed, counter).
    pub rng: (u64, u64),
    /// The model's weights and buffers.
    pub model: Vec<HostTensor>,
    /// Each optimizer's state, by the name the trainer gives it.
    pub optimizers: BTreeMap<String, OptimizerState>,
    /// The trainer's own state.
    pub extra: ExtraState,
}

/// A host array to serialize: dtype, shape and little-endian bytes.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32_raw(shape: Vec<usize>, values: &[f32]) -> Raw {
    Raw {
        dtype: Dtype::F32,
        shape,
        bytes: bytemuck::cast_slice(values).to_vec(),
    }
}

fn f64_raw(values: &[f64]) -> Raw {
    Raw {
        dtype: Dtype::F64,
        shape: vec![values.len()],
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

impl TrainState {
    /// Writes the state to `path` atomically.
    ///
    /// Errors: [`Error::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut meta = BTreeMap::new();
        let mut raws: Vec<(String, Raw)> = Vec::new();
        meta.insert("format".to_string(), STATE_FORMAT.to_string());
        meta.insert("version".to_string(), STATE_VERSION.to_string());
        meta.insert("model".to_string(), self.kind.name().to_string());
        meta.insert("epoch".to_string(), self.epochs_done.to_string());
        meta.insert("rng_seed".to_string(), self.rng.0.to_string());
        meta.insert("rng_counter".to_string(), self.rng.1.to_string());
        for (k, v) in &self.settings {
            meta.insert(format!("setting.{k}"), v.clone());
        }
        for (name, shape, values) in &self.model {
            raws.push((format!("model.{name}"), f32_raw(shape.clone(), values)));
        }
        for (name, opt) in &self.optimizers {
            meta.insert(format!("optimizer.{name}.steps"), opt.steps.to_string());
            meta.insert(
                format!("optimizer.{name}.params"),
                opt.moments.len().to_string(),
            );
            for (i, m) in opt.moments.iter().enumerate() {
                if let Some((m, v)) = m {
                    raws.push((
                        format!("optimizer.{name}.{i}.exp_avg"),
                        f32_raw(vec![m.len()], m),
                    ));
                    raws.push((
                        format!("optimizer.{name}.{i}.exp_avg_sq"),
                        f32_raw(vec![v.len()], v),
                    ));
                }
            }
        }
        for (k, v) in &self.extra.values {
            meta.insert(format!("extra.{k}"), v.clone());
        }
        for (k, a) in &self.extra.arrays {
            raws.push((format!("extra.{k}"), f64_raw(a)));
        }
        if let Some(p) = &self.partial {
            meta.insert("partial.steps_done".into(), p.steps_done.to_string());
            meta.insert("partial.images".into(), p.images.to_string());
            meta.insert("partial.seconds".into(), p.seconds.to_string());
            meta.insert("partial.sums".into(), p.sums.len().to_string());
            let order: Vec<f64> = p.batches.iter().flatten().map(|&i| i as f64).collect();
            let sizes: Vec<f64> = p.batches.iter().map(|b| b.len() as f64).collect();
            raws.push(("partial.order".into(), f64_raw(&order)));
            raws.push(("partial.batch_sizes".into(), f64_raw(&sizes)));
            for (i, (shape, values)) in p.sums.iter().enumerate() {
                raws.push((format!("partial.sum.{i}"), f32_raw(shape.clone(), values)));
            }
        }
        let views = raws
            .iter()
            .map(|(name, r)| {
                TensorView::new(r.dtype, r.shape.clone(), &r.bytes).map(|v| (name.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Invalid(format!("training state {}: {e}", path.display())))?;
        let info: HashMap<String, String> = meta.into_iter().collect();
        let bytes = safetensors::serialize(views, Some(info))
            .map_err(|e| Error::Invalid(format!("training state {}: {e}", path.display())))?;
        write_atomic(path, &bytes)
    }

    /// Reads a state written by [`TrainState::save`].
    ///
    /// Errors: [`Error::Io`]; [`Error::Checkpoint`] naming the file if it is not a deepgen
    /// training state of this version, an entry is missing or malformed, or the weights hold
    /// a NaN or an infinity.
    pub fn load(path: &Path) -> Result<TrainState> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        TrainState::load_bytes(&bytes, path)
    }

    /// Parses the bytes of a training state; `path` names it in errors. Host memory: about
    /// twice the bytes given.
    ///
    /// Errors: as [`TrainState::load`].
    pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<TrainState> {
        let bad = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
        let meta: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
            return Err(bad(format!(
                "not a deepgen training state (format {STATE_FORMAT})"
            )));
        }
        if meta.get("version").map(String::as_str) != Some(STATE_VERSION) {
            return Err(bad(format!(
                "training state version {:?}, this deepgen reads {STATE_VERSION}",
                meta.get("version")
            )));
        }
        let get = |key: &str| -> Result<&String> {
            meta.get(key)
                .ok_or_else(|| bad(format!("metadata has no `{key}`")))
        };
        let num = |key: &str| -> Result<u64> {
            get(key)?
                .parse()
                .map_err(|_| bad(format!("metadata `{key}` is not a number")))
        };
        let kind_name = get("model")?;
        let kind = ModelKind::from_name(kind_name)
            .ok_or_else(|| bad(format!("unknown model kind {kind_name:?}")))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("unreadable tensors ({e})")))?;
        let f32s = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            let view = st
                .tensor(name)
                .map_err(|_| bad(format!("has no tensor `{name}`")))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!("tensor `{name}` is not F32")));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((view.shape().to_vec(), values))
        };
        let f64s = |name: &str| -> Result<Vec<f64>> {
            let view = st
                .tensor(name)
                .map_err(|_| bad(format!("has no tensor `{name}`")))?;
            if view.dtype() != Dtype::F64 {
                return Err(bad(format!("tensor `{name}` is not F64")));
            }
            Ok(view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect())
        };
        let mut model = Vec::new();
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        for name in &names {
            if let Some(param) = name.strip_prefix("model.") {
                let (shape, values) = f32s(name)?;
                check_finite_values(param, &values).map_err(&bad)?;
                model.push((param.to_string(), shape, values));
            }
        }
        let mut optimizers = BTreeMap::new();
        for key in meta.keys() {
            let Some(opt) = key
                .strip_prefix("optimizer.")
                .and_then(|k| k.strip_suffix(".steps"))
            else {
                continue;
            };
            let steps = u32::try_from(num(key)?)
                .map_err(|_| bad(format!("metadata `{key}` is out of range")))?;
            let count = num(&format!("optimizer.{opt}.params"))? as usize;
            if count > names.len() + 1_000_000 {
                return Err(bad(format!("optimizer `{opt}` claims {count} parameters")));
            }
            let mut moments = Vec::with_capacity(count.min(names.len()));
            for i in 0..count {
                let m = format!("optimizer.{opt}.{i}.exp_avg");
                moments.push(if names.contains(&m) {
                    let (_, m) = f32s(&m)?;
                    let (_, v) = f32s(&format!("optimizer.{opt}.{i}.exp_avg_sq"))?;
                    Some((m, v))
                } else {
                    None
                });
            }
            optimizers.insert(opt.to_string(), OptimizerState { steps, moments });
        }
        let mut extra = ExtraState::default();
        for (k, v) in &meta {
            if let Some(k) = k.strip_prefix("extra.") {
                extra.values.insert(k.to_string(), v.clone());
            }
        }
        for name in &names {
            if let Some(k) = name.strip_prefix("extra.") {
                extra.arrays.insert(k.to_string(), f64s(name)?);
            }
        }
        let settings = meta
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("setting.")?.to_string(), v.clone())))
            .collect();
        let partial = if meta.contains_key("partial.steps_done") {
            let order = f64s("partial.order")?;
            let sizes = f64s("partial.batch_sizes")?;
            let mut batches = Vec::with_capacity(sizes.len());
            let mut start = 0usize;
            for &s in &sizes {
                let s = s as usize;
                let end = start
                    .checked_add(s)
                    .filter(|&e| e <= order.len())
                    .ok_or_else(|| bad("partial.batch_sizes exceed partial.order".into()))?;
                batches.push(order[start..end].iter().map(|&i| i as usize).collect());
                start = end;
            }
            let n_sums = num("partial.sums")? as usize;
            let sums = (0..n_sums.min(names.len()))
                .map(|i| f32s(&format!("partial.sum.{i}")))
                .collect::<Result<_>>()?;
            Some(PartialEpoch {
                steps_done: num("partial.steps_done")? as usize,
                batches,
                sums,
                images: num("partial.images")? as usize,
                seconds: get("partial.seconds")?
                    .parse()
                    .map_err(|_| bad("metadata `partial.seconds` is not a number".into()))?,
            })
        } else {
            None
        };
        Ok(TrainState {
            kind,
            settings,
            epochs_done: num("epoch")? as usize,
            partial,
            rng: (num("rng_seed")?, num("rng_counter")?),
            model,
            optimizers,
            extra,
        })
    }

    /// The model part as a checkpoint, to load into a model's named state with
    /// [`Checkpoint::load_into`] (which checks every name and shape).
    pub fn model_checkpoint(&self, origin: &Path) -> Checkpoint {
        Checkpoint {
            path: PathBuf::from(origin),
            metadata: BTreeMap::new(),
            tensors: self
                .model
                .iter()
                .map(|(n, s, v)| (n.clone(), (s.clone(), v.clone())))
                .collect(),
        }
    }
}

//! Checkpoints: safetensors files with the model kind and hyperparameters in the
//! metadata, written atomically.
//!
//! Tensor names are dotted parameter paths (`encoder.fc1.weight`), as in a PyTorch
//! `state_dict`; all tensors are f32 with their shapes. The metadata always holds
//! `format = "deepgen"` and `model` (e.g. `vae`), plus the model's hyperparameters
//! and whatever the trainer adds (epoch, seed).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::gpu::Gpu;
use crate::models::{Generative, ModelKind, build, size_keys};
use crate::tensor::Tensor;

/// A checkpoint read from disk: metadata and named f32 tensors (host copies).
pub struct Checkpoint {
    /// The file it came from (for error messages).
    pub path: PathBuf,
    /// Metadata entries.
    pub metadata: BTreeMap<String, String>,
    /// name -> (shape, values).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Saves `params` with `metadata` (plus `format` and `model`) to `path` atomically.
/// Reads the parameters back from the GPU.
///
/// Errors: GPU readback errors; [`Error::Io`] naming the file.
pub fn save(
    path: &Path,
    kind: ModelKind,
    metadata: &BTreeMap<String, String>,
    params: &[(String, Tensor)],
) -> Result<()> {
    save_host(path, kind, metadata, &read_back(params)?)
}

/// A tensor copied to the host: its name, shape and values.
pub type HostTensor = (String, Vec<usize>, Vec<f32>);

/// Host copies of `params` (one readback per tensor).
///
/// Errors: GPU readback errors.
pub fn read_back(params: &[(String, Tensor)]) -> Result<Vec<HostTensor>> {
    params
        .iter()
        .map(|(name, t)| Ok((name.clone(), t.dims().to_vec(), t.to_vec()?)))
        .collect()
}

/// [`save`] from host copies.
///
/// Errors: [`Error::Io`] naming the file.
pub fn save_host(
    path: &Path,
    kind: ModelKind,
    metadata: &BTreeMap<String, String>,
    host: &[HostTensor],
) -> Result<()> {
    let views = host
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Invalid(format!("checkpoint {}: {e}", path.display())))?;
    let mut info: HashMap<String, String> = metadata.clone().into_iter().collect();
    info.insert("format".into(), "deepgen".into());
    info.insert("model".into(), kind.name().into());
    let bytes = safetensors::serialize(views, Some(info))
        .map_err(|e| Error::Invalid(format!("checkpoint {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Reads a checkpoint written by [`save`]. A directory, a pipe or a device is refused before
/// any read.
///
/// Errors: [`Error::Io`] if the file cannot be read; as [`load_bytes`].
pub fn load(path: &Path) -> Result<Checkpoint> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "is not a regular file".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    load_bytes(&bytes, path)
}

/// Parses the bytes of a checkpoint; `origin` names it in errors. Host memory: one copy of
/// the tensors' values, no more than the bytes given.
///
/// Errors: [`Error::Checkpoint`] if it is not a safetensors file, not a deepgen checkpoint,
/// holds non-f32 tensors, or holds a NaN or an infinity (naming the tensor and the first
/// such value's index).
pub fn load_bytes(bytes: &[u8], origin: &Path) -> Result<Checkpoint> {
    let bad = |reason: String| Error::Checkpoint {
        path: origin.to_path_buf(),
        reason,
    };
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if metadata.get("format").map(String::as_str) != Some("deepgen") {
        return Err(bad(
            "not a deepgen checkpoint (metadata has no format = deepgen)".into(),
        ));
    }
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| bad(format!("unreadable tensors ({e})")))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor `{name}` is {:?}, expected F32",
                view.dtype()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        check_finite_values(&name, &values).map_err(bad)?;
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok(Checkpoint {
        path: origin.to_path_buf(),
        metadata,
        tensors,
    })
}

/// Refuses values with a NaN or an infinity: the message names the tensor, the first such
/// value and its index, and how many there are.
pub fn check_finite_values(name: &str, values: &[f32]) -> std::result::Result<(), String> {
    let Some(first) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let count = values.iter().filter(|v| !v.is_finite()).count();
    Err(format!(
        "tensor `{name}` holds {} at index {first} ({count} of its {} values are NaN or \
         infinite): the weights of a diverged run, refused",
        values[first],
        values.len()
    ))
}

impl Checkpoint {
    /// The model kind recorded in the metadata.
    ///
    /// Errors: [`Error::Checkpoint`] if it is missing or unknown.
    pub fn kind(&self) -> Result<ModelKind> {
        let name = self.metadata.get("model").map(String::as_str).unwrap_or("");
        ModelKind::from_name(name).ok_or_else(|| Error::Checkpoint {
            path: self.path.clone(),
            reason: format!("unknown model kind {name:?}"),
        })
    }

    /// Refuses a checkpoint of another kind than `expected`.
    pub fn expect_kind(&self, expected: ModelKind) -> Result<()> {
        let kind = self.kind()?;
        if kind != expected {
            return Err(Error::Checkpoint {
                path: self.path.clone(),
                reason: format!(
                    "this is a `{}` checkpoint, but a `{}` model was asked for",
                    kind.name(),
                    expected.name()
                ),
            });
        }
        Ok(())
    }

    /// Copies the stored tensors into `params` (matched by name and shape).
    ///
    /// Errors: [`Error::Checkpoint`] naming the first missing or mis-shaped tensor.
    pub fn load_into(&self, params: &[(String, Tensor)]) -> Result<()> {
        for (name, t) in params {
            let (shape, values) = self.tensors.get(name).ok_or_else(|| Error::Checkpoint {
                path: self.path.clone(),
                reason: format!("has no tensor `{name}` (is it from another model?)"),
            })?;
            if shape.as_slice() != t.dims() {
                return Err(Error::Checkpoint {
                    path: self.path.clone(),
                    reason: format!(
                        "tensor `{name}` has shape {shape:?}, the model expects {}",
                        t.shape()
                    ),
                });
            }
            let src = Tensor::from_slice(t.gpu(), values, t.shape().clone())?;
            t.copy_from(&src)?;
        }
        Ok(())
    }

    /// Checks, before a model of `kind` is built from the metadata, that the metadata agrees
    /// with the stored tensors ([`size_keys`]: each size is a dimension of the tensor that
    /// holds it), that images are 784 pixels (`input_dim`), and that no stored tensor exceeds
    /// a storage binding of `max_binding_bytes`. No GPU and no allocation beyond the
    /// checkpoint itself.
    ///
    /// Errors: [`Error::Checkpoint`] naming the key, the tensor and both sizes.
    pub fn check_buildable(&self, kind: ModelKind, max_binding_bytes: u64) -> Result<()> {
        let bad = |reason: String| Error::Checkpoint {
            path: self.path.clone(),
            reason,
        };
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        for name in names {
            let (shape, _) = &self.tensors[name];
            let bytes = shape
                .iter()
                .try_fold(4u64, |acc, &d| acc.checked_mul(d as u64))
                .unwrap_or(u64::MAX);
            if bytes > max_binding_bytes {
                return Err(bad(format!(
                    "tensor `{name}` of shape {shape:?} takes {bytes} bytes, more than this \
                     adapter's largest storage binding ({max_binding_bytes} bytes)"
                )));
            }
        }
        if let Some(v) = self.metadata.get("input_dim")
            && v != "784"
        {
            return Err(bad(format!(
                "metadata `input_dim` = {v:?}: deepgen's models take 28x28 images (784 pixels)"
            )));
        }
        for &(key, tensor, axis) in size_keys(kind, &self.metadata) {
            let value: usize = self
                .metadata
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("metadata has no valid `{key}`")))?;
            let (shape, _) = self.tensors.get(tensor).ok_or_else(|| {
                bad(format!(
                    "has no tensor `{tensor}`, which a `{}` checkpoint holds (is it from another model?)",
                    kind.name()
                ))
            })?;
            if shape.get(axis) != Some(&value) {
                return Err(bad(format!(
                    "metadata `{key}` = {value} disagrees with tensor `{tensor}` of shape \
                     {shape:?}, whose dimension {axis} holds it; refused before building the model"
                )));
            }
        }
        Ok(())
    }

    /// Rebuilds the generative model this checkpoint describes and loads its weights
    /// and buffers; the model is left in eval mode. The metadata is checked against the
    /// tensors and the adapter's limits first ([`Checkpoint::check_buildable`]).
    ///
    /// Errors: as [`Checkpoint::kind`], [`Checkpoint::check_buildable`] and
    /// [`Checkpoint::load_into`]; a classifier checkpoint is refused (it cannot generate).
    pub fn into_model(&self, gpu: &Gpu) -> Result<Box<dyn Generative>> {
        let kind = self.kind()?;
        self.check_buildable(kind, gpu.max_binding_bytes())?;
        let model = build(gpu, kind, &self.metadata, &self.path, 0)?;
        self.load_into(&model.named_state())?;
        model.set_training(false);
        Ok(model)
    }
}

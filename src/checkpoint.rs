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
use crate::models::{Generative, ModelKind, build};
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
    let mut host = Vec::with_capacity(params.len());
    for (name, t) in params {
        host.push((name.clone(), t.dims().to_vec(), t.to_vec()?));
    }
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

/// Reads a checkpoint written by [`save`].
///
/// Errors: [`Error::Io`] if the file cannot be read; [`Error::Checkpoint`] if it is
/// not a safetensors file, not a deepgen checkpoint, or holds non-f32 tensors.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let (_, header) = SafeTensors::read_metadata(&bytes)
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
        SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("unreadable tensors ({e})")))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        metadata,
        tensors,
    })
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

    /// Rebuilds the generative model this checkpoint describes and loads its weights
    /// and buffers; the model is left in eval mode.
    ///
    /// Errors: as [`Checkpoint::kind`] and [`Checkpoint::load_into`]; a classifier
    /// checkpoint is refused (it cannot generate).
    pub fn into_model(&self, gpu: &Gpu) -> Result<Box<dyn Generative>> {
        let kind = self.kind()?;
        let model = build(gpu, kind, &self.metadata, &self.path, 0)?;
        self.load_into(&model.named_state())?;
        model.set_training(false);
        Ok(model)
    }
}

//! Released diffusion language models in their Hugging Face directories:
//! `config.json` and `model.safetensors` (or an index and its shards), read
//! into a [`Denoiser`] and written back in the same layout.
//!
//! | architecture | `model_type` / `architectures` | what differs from cogrpo's own denoiser |
//! | --- | --- | --- |
//! | LLaDA | `llada` / `LLaDAModelLM` | names only (OLMo's `LLaDALlamaBlock`); GQA when `n_kv_heads` < `n_heads` |
//! | Dream | `Dream` / `DreamModel` | Qwen2 names, grouped-query attention, q/k/v biases, shifted logits |
//!
//! Both keep their mask token inside the vocabulary (LLaDA's 126336,
//! Dream's 151666), where cogrpo's denoiser reads `[MASK]` at id
//! `vocab_size`: the embedding gains one row, a copy of the mask token's,
//! so the two ids give the same function; writing back puts that row in
//! the mask token's place. Token ids from the model's tokenizer go in
//! unchanged except the mask token's ([`HfModel::mask_token_id`]).

mod config;
mod error;
pub(crate) mod layout;
mod peft;
mod shards;
#[cfg(test)]
mod tests;
mod write;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde_json::Value;

use config::Keys;
pub use config::{Architecture, HfConfig};
pub use error::HfError;
use layout::Slot;
pub use peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, write_peft};
use shards::Shards;
pub use shards::tensor_shapes;
pub use write::{StoredDtype, write};

use crate::host::Host;
use crate::init::Loaded;
use crate::model::PARAM_ID_BASE;
use crate::{Denoiser, DenoiserConfig};

/// A model directory whose `config.json` has been read (the weights are
/// read by [`HfModel::load`]).
#[derive(Debug, Clone)]
pub struct HfModel {
    pub dir: PathBuf,
    pub config: HfConfig,
    /// `config.json` as found, for writing the model back.
    pub raw: serde_json::Map<String, Value>,
}

impl HfModel {
    /// Reads `dir/config.json`.
    pub fn open(dir: &Path) -> Result<Self, HfError> {
        let path = dir.join("config.json");
        if path.exists() && !path.is_file() {
            return Err(HfError::File {
                path,
                message: "not a regular file (a directory, device or FIFO)".into(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| HfError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let raw: serde_json::Map<String, Value> =
            serde_json::from_str(&text).map_err(|e| HfError::File {
                path: path.clone(),
                message: format!("not a JSON object ({e})"),
            })?;
        let config = parse(&path, &raw)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            raw,
        })
    }

    pub fn architecture(&self) -> Architecture {
        self.config.architecture
    }

    /// The released mask token's id (the denoiser's own is `vocab_size`).
    pub fn mask_token_id(&self) -> u32 {
        self.config.mask_token_id
    }

    /// The denoiser with this directory's weights, for sequences of up to
    /// `max_len` positions (`None`: the model's context; the rotary tables
    /// grow with it). Every missing, mis-shaped, non-float or unexpected
    /// tensor is named before any is read.
    pub fn load<B: Backend>(
        &self,
        max_len: Option<usize>,
        device: &B::Device,
    ) -> Result<Denoiser<B>, HfError> {
        let mut shape = self.config.denoiser.clone();
        if let Some(len) = max_len {
            shape.max_len = len;
        }
        self.load_as(&shape, device)
    }

    /// [`Self::load`] as the denoiser `shape`: this directory's, for
    /// sequences of up to `shape.max_len` and with `shape.live_vocab`'s
    /// padding rows (what a task decides).
    pub fn load_as<B: Backend>(
        &self,
        shape: &DenoiserConfig,
        device: &B::Device,
    ) -> Result<Denoiser<B>, HfError> {
        let cfg = shape.clone();
        if cfg.max_len > self.config.denoiser.max_len {
            return Err(HfError::Config {
                path: self.dir.join("config.json"),
                key: "max_len".into(),
                message: format!(
                    "the model reads up to {} positions; {} were asked for",
                    self.config.denoiser.max_len, cfg.max_len
                ),
            });
        }
        let mut same = cfg.clone();
        same.max_len = self.config.denoiser.max_len;
        same.live_vocab = self.config.denoiser.live_vocab;
        if same != self.config.denoiser {
            return Err(HfError::Config {
                path: self.dir.join("config.json"),
                key: "shape".into(),
                message: format!(
                    "the directory holds {:?}, not {shape:?}",
                    self.config.denoiser
                ),
            });
        }
        let shards = Shards::open(&self.dir)?;
        let slots = layout::slots(&self.config);
        check(&self.dir, &shards, &slots)?;
        let failure = RefCell::new(None);
        let tensors = slots.iter().map(|slot| match shards.read(&slot.name) {
            Ok(h) => layout::to_param(slot, h),
            Err(e) => {
                failure.borrow_mut().get_or_insert(e);
                let shape = layout::to_param_shape(slot);
                Host {
                    values: vec![0.0; shape.iter().product()],
                    shape,
                }
            }
        });
        let mut source = Loaded::new(tensors, PARAM_ID_BASE, device);
        let model = cfg.build(&mut source, device);
        assert!(source.is_done(), "every tensor has a parameter");
        drop(source);
        match failure.into_inner() {
            Some(e) => Err(e),
            None => Ok(model),
        }
    }
}

/// Whether `path` is a Hugging Face model directory (a `config.json`
/// without cogrpo's checkpoint `state.json`).
pub fn is_model_dir(path: &Path) -> bool {
    path.join("config.json").is_file() && !path.join("state.json").exists()
}

/// How a directory's weights are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Tensors per dtype (`BF16`, `F32`, ...).
    pub dtypes: std::collections::BTreeMap<String, usize>,
    pub files: usize,
    pub bytes: u64,
}

impl HfModel {
    /// Every check [`Self::load`] makes before it reads a tensor (the
    /// files, their headers, every tensor's name, shape and dtype against
    /// the config), and how the weights are stored; `None` when the
    /// directory holds only the config (enough for `cogrpo check` and
    /// `inspect`). Reads no tensor, so it answers at once for 8B.
    pub fn verify(&self) -> Result<Option<Stored>, HfError> {
        if !self.dir.join(shards::SINGLE).is_file() && !self.dir.join(shards::INDEX).is_file() {
            return Ok(None);
        }
        let shards = Shards::open(&self.dir)?;
        let slots = layout::slots(&self.config);
        check(&self.dir, &shards, &slots)?;
        let mut dtypes = std::collections::BTreeMap::new();
        let mut files = std::collections::BTreeSet::new();
        let mut bytes = 0;
        for t in shards.tensors.values() {
            *dtypes.entry(format!("{:?}", t.dtype)).or_insert(0) += 1;
            files.insert(&t.file);
            bytes += t.bytes();
        }
        Ok(Some(Stored {
            dtypes,
            files: files.len(),
            bytes,
        }))
    }
}

/// `config.json` as an [`HfConfig`].
fn parse(path: &Path, raw: &serde_json::Map<String, Value>) -> Result<HfConfig, HfError> {
    let keys = Keys::new(path, raw);
    let model_type = keys.text("model_type").unwrap_or("");
    let archs: Vec<&str> = raw
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let architecture = [Architecture::Llada, Architecture::Dream]
        .into_iter()
        .find(|a| {
            let (ty, class) = a.ids();
            model_type.eq_ignore_ascii_case(ty) || archs.contains(&class)
        })
        .ok_or_else(|| HfError::Config {
            path: path.to_path_buf(),
            key: "model_type".into(),
            message: format!(
                "is {model_type:?} (architectures {archs:?}); cogrpo reads LLaDA (`llada`, \
                 LLaDAModelLM) and Dream (`Dream`, DreamModel)"
            ),
        })?;
    let mut denoiser = match architecture {
        Architecture::Llada => config::llada(&keys)?,
        Architecture::Dream => config::dream(&keys)?,
    };
    // A model cogrpo wrote: its own vocabulary, the mask row last.
    let own = keys.count_or("cogrpo_vocab_size", None)?;
    if let Some(v) = own {
        if v + 1 != denoiser.vocab_size {
            return Err(HfError::Config {
                path: path.to_path_buf(),
                key: "cogrpo_vocab_size".into(),
                message: format!(
                    "is {v}; the embedding has {} rows, which must be one more",
                    denoiser.vocab_size
                ),
            });
        }
        denoiser.vocab_size = v;
    }
    denoiser.validate().map_err(|e| HfError::Config {
        path: path.to_path_buf(),
        key: e.field.into(),
        message: e.message,
    })?;
    let mask = keys.count("mask_token_id")?;
    if own.is_some_and(|v| mask != v) {
        return Err(HfError::Config {
            path: path.to_path_buf(),
            key: "mask_token_id".into(),
            message: format!(
                "is {mask}; a model cogrpo wrote has its mask last, at {}",
                denoiser.vocab_size
            ),
        });
    }
    if own.is_none() && mask >= denoiser.vocab_size {
        return Err(HfError::Config {
            path: path.to_path_buf(),
            key: "mask_token_id".into(),
            message: format!(
                "is {mask}, outside the vocabulary of {} tokens",
                denoiser.vocab_size
            ),
        });
    }
    Ok(HfConfig {
        architecture,
        denoiser,
        mask_token_id: mask as u32,
        own_mask: own.is_some(),
        // transformers >= 4.56 writes `dtype`, earlier ones `torch_dtype`.
        torch_dtype: keys
            .text("torch_dtype")
            .or_else(|| keys.text("dtype"))
            .map(str::to_string),
    })
}

/// Every problem between the files and the slots, sorted, in one error.
fn check(dir: &Path, shards: &Shards, slots: &[Slot]) -> Result<(), HfError> {
    use safetensors::Dtype;
    let mut problems = Vec::new();
    for slot in slots {
        match shards.tensors.get(&slot.name) {
            None => problems.push(format!(
                "tensor `{}` {:?} is missing",
                slot.name, slot.shape
            )),
            Some(t) if t.shape != slot.shape => problems.push(format!(
                "tensor `{}` in {} has shape {:?}, the config needs {:?}",
                slot.name,
                t.file.display(),
                t.shape,
                slot.shape
            )),
            Some(t) if ![Dtype::F32, Dtype::F16, Dtype::BF16].contains(&t.dtype) => {
                problems.push(format!(
                    "tensor `{}` in {} is {:?}; float32, float16 or bfloat16 expected",
                    slot.name,
                    t.file.display(),
                    t.dtype
                ))
            }
            Some(_) => {}
        }
    }
    for name in shards.tensors.keys() {
        if !layout::is_buffer(name) && !slots.iter().any(|s| &s.name == name) {
            problems.push(format!("tensor `{name}` has no place in the denoiser"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    Err(HfError::Mismatch {
        dir: dir.to_path_buf(),
        message: problems.join("; "),
    })
}

impl HfConfig {
    /// A model cogrpo trained, to be written in `architecture`'s layout:
    /// its mask row becomes the last token of the file's vocabulary.
    pub fn own(architecture: Architecture, denoiser: DenoiserConfig) -> Self {
        Self {
            architecture,
            mask_token_id: denoiser.vocab_size as u32,
            own_mask: true,
            torch_dtype: None,
            denoiser,
        }
    }

    /// The parameters in the file (the published count for a release).
    pub fn num_params(&self) -> usize {
        let (n, d) = (self.denoiser.num_params(), self.denoiser.d_model);
        match (self.own_mask, self.denoiser.tied_head) {
            // The head's zero row for the mask.
            (true, false) => n + d,
            (true, true) => n,
            // The denoiser's copy of the mask token's row.
            (false, _) => n - d,
        }
    }
}

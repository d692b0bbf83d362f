//! A denoiser written as a Hugging Face model directory in a released
//! architecture's layout: `config.json` and the weights (one file, or
//! shards and an index), so that the architecture's own PyTorch code loads
//! it. Each file is replaced atomically.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::{Map, Value, json};

use super::config::{Architecture, HfConfig};
use super::error::HfError;
use super::layout::{self, Slot};
use super::shards::{INDEX, SINGLE};
use crate::Denoiser;
use crate::host::Host;

/// The dtype the weights are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    F32,
    F16,
    Bf16,
}

impl StoredDtype {
    pub(crate) fn dtype(self) -> Dtype {
        match self {
            StoredDtype::F32 => Dtype::F32,
            StoredDtype::F16 => Dtype::F16,
            StoredDtype::Bf16 => Dtype::BF16,
        }
    }

    /// `torch_dtype` in `config.json`.
    fn torch_name(self) -> &'static str {
        match self {
            StoredDtype::F32 => "float32",
            StoredDtype::F16 => "float16",
            StoredDtype::Bf16 => "bfloat16",
        }
    }

    /// Little-endian bytes, rounded to nearest (even) for the half types.
    pub(crate) fn bytes(self, values: &[f32]) -> Vec<u8> {
        match self {
            StoredDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            StoredDtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            StoredDtype::Bf16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }
}

pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> HfError {
    HfError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes `model` (of shape `cfg.denoiser`) into `dir` in `cfg`'s
/// architecture, its weights as `dtype` in shards of at most `shard_bytes`
/// (one file when they fit). `base` is the `config.json` the model was
/// loaded from, whose other keys (tokens, `auto_map`, ...) are kept.
pub fn write<B: Backend>(
    model: &Denoiser<B>,
    cfg: &HfConfig,
    base: Option<&Map<String, Value>>,
    dir: &Path,
    dtype: StoredDtype,
    shard_bytes: usize,
) -> Result<(), HfError> {
    let arch = cfg.architecture;
    let d = &cfg.denoiser;
    let fits = d.family.is_mdm()
        && match arch {
            Architecture::Llada => !d.logit_shift,
            // Dream's code always has q/k/v biases and always shifts.
            Architecture::Dream => d.logit_shift && d.qkv_bias,
        };
    if model.has_lora() {
        return Err(io(
            dir,
            "the model carries LoRA adapters, which this layout has no place for: merge them \
             first (Denoiser::merged, `cogrpo export --merge`) or write them in PEFT's format",
        ));
    }
    if !fits {
        return Err(io(
            dir,
            format!(
                "this {} model cannot be written in {}'s layout, {}",
                d.family,
                arch.name(),
                match arch {
                    Architecture::Llada => "which has no shifted logits",
                    Architecture::Dream => "which always has shifted logits and q/k/v biases",
                }
            ),
        ));
    }
    let slots = layout::slots(cfg);
    let params = layout::parameters(model);
    if params.len() != slots.len()
        || slots
            .iter()
            .zip(&params)
            .any(|(s, p)| layout::to_param_shape(s) != p.shape)
    {
        return Err(io(dir, "the model's shape is not its config's"));
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tensors: Vec<(&Slot, Host)> = slots
        .iter()
        .zip(params)
        .map(|(s, p)| (s, layout::from_param(s, p)))
        .collect();
    write_weights(&tensors, dir, dtype, shard_bytes)?;
    let config = config_json(cfg, base, dtype);
    let text = serde_json::to_string_pretty(&config).map_err(|e| io(dir, e))?;
    let path = dir.join("config.json");
    crate::atomic::write(&path, text.as_bytes()).map_err(|e| io(&path, e))
}

/// The weights, split greedily into shards of at most `shard_bytes`.
fn write_weights(
    tensors: &[(&Slot, Host)],
    dir: &Path,
    dtype: StoredDtype,
    shard_bytes: usize,
) -> Result<(), HfError> {
    let encoded: Vec<(&str, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(s, h)| (s.name.as_str(), h.shape.clone(), dtype.bytes(&h.values)))
        .collect();
    let mut shards: Vec<Vec<usize>> = vec![vec![]];
    let mut size = 0;
    for (i, (_, _, bytes)) in encoded.iter().enumerate() {
        let last = shards.last_mut().expect("one shard");
        if !last.is_empty() && size + bytes.len() > shard_bytes {
            shards.push(vec![i]);
            size = bytes.len();
        } else {
            last.push(i);
            size += bytes.len();
        }
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    for (k, members) in shards.iter().enumerate() {
        let name = if n == 1 {
            SINGLE.to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", k + 1)
        };
        let path = dir.join(&name);
        let views: Vec<(&str, TensorView)> = members
            .iter()
            .map(|&i| {
                let (tensor, shape, bytes) = &encoded[i];
                weight_map.insert(tensor.to_string(), name.clone());
                TensorView::new(dtype.dtype(), shape.clone(), bytes)
                    .map(|v| (*tensor, v))
                    .map_err(|e| io(&path, e))
            })
            .collect::<Result<_, _>>()?;
        let meta = [("format".to_string(), "pt".to_string())].into();
        let data = safetensors::serialize(views, Some(meta)).map_err(|e| io(&path, e))?;
        crate::atomic::write(&path, &data).map_err(|e| io(&path, e))?;
    }
    let index = dir.join(INDEX);
    if n == 1 {
        // A stale index would point the loader at old shards.
        if index.exists() {
            std::fs::remove_file(&index).map_err(|e| io(&index, e))?;
        }
        return Ok(());
    }
    let total: usize = encoded.iter().map(|e| e.2.len()).sum();
    let json = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    let text = serde_json::to_string_pretty(&json).map_err(|e| io(&index, e))?;
    crate::atomic::write(&index, text.as_bytes()).map_err(|e| io(&index, e))
}

/// `config.json`: `base`'s keys, with the shape and the settings the
/// architecture's code reads set from `cfg`.
fn config_json(cfg: &HfConfig, base: Option<&Map<String, Value>>, dtype: StoredDtype) -> Value {
    let d = &cfg.denoiser;
    let mut out = base.cloned().unwrap_or_default();
    // The file's vocabulary: a model cogrpo trained adds its mask row.
    let rows = d.vocab_size + usize::from(cfg.own_mask);
    out.remove("cogrpo_vocab_size");
    if cfg.own_mask {
        out.insert("cogrpo_vocab_size".into(), json!(d.vocab_size));
    }
    // The context a loaded model was trimmed to is not the model's.
    let context = |key: &str| out.get(key).cloned().unwrap_or(json!(d.max_len));
    let keys = match cfg.architecture {
        Architecture::Llada => json!({
            "architectures": ["LLaDAModelLM"],
            "model_type": "llada",
            "d_model": d.d_model,
            "n_layers": d.n_layers,
            "n_heads": d.n_heads,
            "n_kv_heads": d.kv_heads(),
            "mlp_hidden_size": d.d_ff,
            "vocab_size": rows,
            "embedding_size": rows,
            "max_sequence_length": context("max_sequence_length"),
            "rope_theta": d.rope_base,
            "rms_norm_eps": d.norm_eps,
            "mask_token_id": cfg.mask_token_id,
            "weight_tying": d.tied_head,
            "include_qkv_bias": d.qkv_bias,
            "include_bias": false,
            "block_type": "llama",
            "layer_norm_type": "rms",
            "activation_type": "silu",
            "rope": true,
            "alibi": false,
            "scale_logits": false,
            "torch_dtype": dtype.torch_name(),
        }),
        Architecture::Dream => json!({
            "architectures": ["DreamModel"],
            "model_type": "Dream",
            "hidden_size": d.d_model,
            "num_hidden_layers": d.n_layers,
            "num_attention_heads": d.n_heads,
            "num_key_value_heads": d.kv_heads(),
            "intermediate_size": d.d_ff,
            "vocab_size": rows,
            "max_position_embeddings": context("max_position_embeddings"),
            "rope_theta": d.rope_base,
            "rms_norm_eps": d.norm_eps,
            "tie_word_embeddings": d.tied_head,
            "mask_token_id": cfg.mask_token_id,
            "hidden_act": "silu",
            "torch_dtype": dtype.torch_name(),
        }),
    };
    if let Value::Object(keys) = keys {
        out.extend(keys);
    }
    Value::Object(out)
}

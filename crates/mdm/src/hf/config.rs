//! A released model's `config.json` read as a [`DenoiserConfig`]: which
//! architecture it is, its shape, and the settings cogrpo's denoiser does
//! not have (refused by key and value rather than silently ignored).

use std::path::Path;

use serde_json::{Map, Value};

use super::error::HfError;
use crate::DenoiserConfig;

/// `config.json`'s keys, read with errors that name the file and the key.
pub(crate) struct Keys<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl<'a> Keys<'a> {
    pub fn new(path: &'a Path, map: &'a Map<String, Value>) -> Self {
        Self { path, map }
    }

    fn err(&self, key: &str, message: String) -> HfError {
        HfError::Config {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            message,
        }
    }

    /// A present, non-null value.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn count(&self, key: &str) -> Result<usize, HfError> {
        self.count_or(key, None)?
            .ok_or_else(|| self.err(key, "is missing".into()))
    }

    /// A positive integer, `default` when absent.
    pub fn count_or(&self, key: &str, default: Option<usize>) -> Result<Option<usize>, HfError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n as usize)),
                _ => Err(self.err(key, format!("must be a positive integer, got {v}"))),
            },
        }
    }

    pub fn number_or(&self, key: &str, default: f64) -> Result<f64, HfError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(key, format!("must be a number, got {v}"))),
        }
    }

    pub fn flag_or(&self, key: &str, default: bool) -> Result<bool, HfError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(key, format!("must be true or false, got {v}"))),
        }
    }

    pub fn text(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }

    /// Refuses a setting the denoiser does not implement: `key` must be
    /// absent or one of `supported` (compared as JSON).
    pub fn only(&self, key: &str, supported: &[Value]) -> Result<(), HfError> {
        match self.map.get(key) {
            Some(v) if !supported.contains(v) => Err(self.err(
                key,
                format!(
                    "is {v}; cogrpo's denoiser supports {}",
                    supported
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The released architectures cogrpo reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llada,
    Dream,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llada => "LLaDA",
            Architecture::Dream => "Dream",
        }
    }

    /// `config.json`'s `model_type` and `architectures`.
    pub(crate) fn ids(self) -> (&'static str, &'static str) {
        match self {
            Architecture::Llada => ("llada", "LLaDAModelLM"),
            Architecture::Dream => ("Dream", "DreamModel"),
        }
    }
}

/// What `config.json` says, as cogrpo needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    pub architecture: Architecture,
    /// The denoiser: `vocab_size` is the checkpoint's embedding rows (its
    /// logits' width), `max_len` the model's context length. Its mask id
    /// (`vocab_size`) is an extra row holding a copy of the released mask
    /// token's embedding.
    pub denoiser: DenoiserConfig,
    /// The mask token's id in the file's vocabulary.
    pub mask_token_id: u32,
    /// A model cogrpo trained (`cogrpo_vocab_size` in `config.json`): the
    /// file's vocabulary is the denoiser's plus its mask row, which is the
    /// last one (`mask_token_id = vocab_size`); the head's row for it is
    /// zero. Otherwise the mask token is one of the released vocabulary's,
    /// copied into the denoiser's extra row.
    pub own_mask: bool,
    /// `torch_dtype` (or `dtype`), when the file says.
    pub torch_dtype: Option<String>,
}

/// LLaDA (`LLaDAModelLM`, OLMo's code with LLaMA blocks): `modeling_llada.py`
/// `LLaDALlamaBlock` and `LLaDAModel.forward`.
pub(crate) fn llada(k: &Keys) -> Result<DenoiserConfig, HfError> {
    for (key, supported) in [
        ("block_type", vec![Value::from("llama")]),
        ("layer_norm_type", vec![Value::from("rms")]),
        ("activation_type", vec![Value::from("silu")]),
        ("rope", vec![Value::from(true)]),
        ("alibi", vec![Value::from(false)]),
        ("scale_logits", vec![Value::from(false)]),
        ("input_emb_norm", vec![Value::from(false)]),
        ("attention_layer_norm", vec![Value::from(false)]),
        ("include_bias", vec![Value::from(false)]),
        ("clip_qkv", vec![Value::Null]),
    ] {
        k.only(key, &supported)?;
    }
    let d_model = k.count("d_model")?;
    let n_heads = k.count("n_heads")?;
    // OLMo's `effective_n_kv_heads`.
    let n_kv_heads = if k.flag_or("multi_query_attention", false)? {
        1
    } else {
        k.count_or("n_kv_heads", Some(n_heads))?.unwrap_or(n_heads)
    };
    let mlp_ratio = k.count_or("mlp_ratio", Some(4))?.unwrap_or(4);
    let d_ff = k
        .count_or("mlp_hidden_size", None)?
        .unwrap_or(mlp_ratio * d_model);
    let vocab = k.count("vocab_size")?;
    let rows = k.count_or("embedding_size", Some(vocab))?.unwrap_or(vocab);
    let mut d = DenoiserConfig::new(
        rows,
        d_model,
        k.count("n_layers")?,
        n_heads,
        d_ff,
        k.count_or("max_sequence_length", Some(1024))?
            .unwrap_or(1024),
    );
    d.n_kv_heads = (n_kv_heads != n_heads).then_some(n_kv_heads);
    d.qkv_bias = k.flag_or("include_qkv_bias", false)?;
    d.tied_head = k.flag_or("weight_tying", false)?;
    d.rope_base = k.number_or("rope_theta", 10_000.0)?;
    d.norm_eps = k.number_or("rms_norm_eps", 1e-5)?;
    Ok(d)
}

/// Dream (`DreamModel`, Qwen2's layout): `modeling_dream.py`. Its logits are
/// read shifted (`generation_utils.py`).
pub(crate) fn dream(k: &Keys) -> Result<DenoiserConfig, HfError> {
    k.only("hidden_act", &[Value::from("silu")])?;
    k.only("rope_scaling", &[Value::Null])?;
    k.only("use_sliding_window", &[Value::from(false)])?;
    let n_heads = k.count("num_attention_heads")?;
    let n_kv_heads = k
        .count_or("num_key_value_heads", Some(n_heads))?
        .unwrap_or(n_heads);
    let mut d = DenoiserConfig::new(
        k.count("vocab_size")?,
        k.count("hidden_size")?,
        k.count("num_hidden_layers")?,
        n_heads,
        k.count("intermediate_size")?,
        k.count_or("max_position_embeddings", Some(32_768))?
            .unwrap_or(32_768),
    );
    d.n_kv_heads = (n_kv_heads != n_heads).then_some(n_kv_heads);
    d.qkv_bias = true;
    d.logit_shift = true;
    d.tied_head = k.flag_or("tie_word_embeddings", false)?;
    d.rope_base = k.number_or("rope_theta", 10_000.0)?;
    d.norm_eps = k.number_or("rms_norm_eps", 1e-6)?;
    Ok(d)
}

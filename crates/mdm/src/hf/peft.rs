//! LoRA adapters in PEFT's format: `adapter_model.safetensors` and
//! `adapter_config.json`, which `peft.PeftModel.from_pretrained(base, dir)`
//! loads onto the released architecture's PyTorch model.
//!
//! Keys are `base_model.model.<module>.lora_A.weight` (`[r, in]`, our `A`
//! transposed) and `...lora_B.weight` (`[out, r]`), `<module>` being the
//! architecture's own path of the projection (LLaDA's
//! `model.transformer.blocks.3.q_proj`, Dream's
//! `model.layers.3.self_attn.q_proj`). `target_modules` is a regular
//! expression over full module paths, not a list of leaf names: LLaDA calls
//! both the MLP's down projection and the output head `ff_out`, and a leaf
//! name would put an adapter on the head too.

use std::path::Path;

use burn::prelude::*;
use safetensors::tensor::TensorView;
use serde_json::json;

use super::config::Architecture;
use super::error::HfError;
use super::layout::projection_module;
use super::write::{StoredDtype, io};
use crate::Denoiser;
use crate::host::{to_host, transpose};

/// The adapter weights' file name.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The adapter config's file name.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// Writes `model`'s adapters into `dir` for `arch`'s PyTorch code, stored as
/// `dtype`; `base` is what `base_model_name_or_path` names (the released
/// directory, when the model came from one). Returns the number of adapter
/// parameters written.
pub fn write_peft<B: Backend>(
    model: &Denoiser<B>,
    arch: Architecture,
    base: Option<&str>,
    dir: &Path,
    dtype: StoredDtype,
) -> Result<usize, HfError> {
    let adapters = model.adapters();
    let Some((_, _, first)) = adapters.first() else {
        return Err(io(dir, "the model carries no LoRA adapters to write"));
    };
    let rank = first.a.dims()[1];
    let alpha = first.scale * rank as f64;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (block, target, ad) in &adapters {
        let module = projection_module(arch, *block, *target);
        for (part, weight) in [("lora_A", ad.a.val()), ("lora_B", ad.b.val())] {
            let h = transpose(&to_host(weight));
            let name = format!("base_model.model.{module}.{part}.weight");
            tensors.push((name, h.shape.clone(), dtype.bytes(&h.values)));
        }
    }
    let n_params: usize = tensors
        .iter()
        .map(|(_, shape, _)| shape.iter().product::<usize>())
        .sum();
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let path = dir.join(ADAPTER_WEIGHTS);
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(dtype.dtype(), shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .map_err(|e| io(&path, e))
        })
        .collect::<Result<_, _>>()?;
    let meta = [("format".to_string(), "pt".to_string())].into();
    let data = safetensors::serialize(views, Some(meta)).map_err(|e| io(&path, e))?;
    crate::atomic::write(&path, &data).map_err(|e| io(&path, e))?;

    let config = adapter_config(model, arch, base, rank, alpha);
    let path = dir.join(ADAPTER_CONFIG);
    let text = serde_json::to_string_pretty(&config).map_err(|e| io(&path, e))?;
    crate::atomic::write(&path, text.as_bytes()).map_err(|e| io(&path, e))?;
    Ok(n_params)
}

/// `adapter_config.json` of a plain LoRA (PEFT's `LoraConfig` fields).
fn adapter_config<B: Backend>(
    model: &Denoiser<B>,
    arch: Architecture,
    base: Option<&str>,
    rank: usize,
    alpha: f64,
) -> serde_json::Value {
    // Block 0's module paths, split at the block index and escaped.
    let split = |t| {
        let module = projection_module(arch, 0, t);
        let (blocks, leaf) = module.split_once(".0.").expect("a block index");
        (blocks.replace('.', r"\."), leaf.replace('.', r"\."))
    };
    let targets = model.lora_targets();
    let blocks = split(targets[0]).0;
    let leaves: Vec<String> = targets.into_iter().map(|t| split(t).1).collect();
    json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": base,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": format!(r"{blocks}\.\d+\.({})", leaves.join("|")),
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    })
}

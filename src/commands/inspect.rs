//! `cogrpo inspect DIR`: what a released model's directory holds, read
//! from its `config.json`, its safetensors headers (every tensor's name,
//! shape and dtype checked against the config, none read, so it answers at
//! once for an 8B model or a directory with only the config), its
//! tokenizer and its chat template.

use std::path::PathBuf;

use clap::Args;
use cogrpo_experiment::describe::short_count as count;
use cogrpo_experiment::plan::{available_memory, gib};
use cogrpo_experiment::released::ReleasedModel;
use cogrpo_runtime::BadInput;
use mdm::hf::HfModel;
use text::Message;

/// Describe a Hugging Face model directory (LLaDA, Dream): architecture,
/// parameters, shape, stored dtype, the memory its weights need, its
/// tokenizer and what its chat template makes of a message.
#[derive(Args)]
#[command(after_help = "Example:\n  cogrpo inspect ~/models/LLaDA-8B-Instruct")]
pub struct InspectArgs {
    /// The model directory (config.json, and the weights if present).
    dir: PathBuf,
}

impl InspectArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let released = ReleasedModel::open(&self.dir)?;
        let stored = released
            .model
            .verify()
            .map_err(|e| BadInput(e.to_string()))?;
        for line in describe(&released.model, stored.as_ref()) {
            println!("{line}");
        }
        for line in describe_text(&released)? {
            println!("{line}");
        }
        Ok(())
    }
}

fn describe(hf: &HfModel, stored: Option<&mdm::hf::Stored>) -> Vec<String> {
    let c = &hf.config;
    let d = &c.denoiser;
    let mut variations = Vec::new();
    if d.kv_heads() != d.n_heads {
        variations.push(format!(
            "grouped-query attention ({} key/value heads)",
            d.kv_heads()
        ));
    }
    if d.qkv_bias {
        variations.push("q/k/v biases".to_string());
    }
    if d.tied_head {
        variations.push("tied head".to_string());
    }
    if d.logit_shift {
        variations.push("shifted logits".to_string());
    }
    let weights = match stored {
        None => "none (config.json only)".to_string(),
        Some(s) => format!(
            "{} in {} file(s), {}",
            s.dtypes
                .iter()
                .map(|(t, n)| format!("{n} {t} tensors"))
                .collect::<Vec<_>>()
                .join(", "),
            s.files,
            gib(s.bytes)
        ),
    };
    let f32_bytes = 4 * d.num_params() as u64;
    vec![
        format!("{}", hf.dir.display()),
        format!("  architecture  {}", c.architecture.name()),
        format!(
            "  parameters    {} ({})",
            count(c.num_params()),
            c.num_params()
        ),
        format!(
            "  shape         d_model {}, {} layers, {} heads, d_ff {}, vocabulary {}, context {}",
            d.d_model, d.n_layers, d.n_heads, d.d_ff, d.vocab_size, d.max_len
        ),
        format!(
            "  attention     rope_theta {}, norm eps {:e}{}",
            d.rope_base,
            d.norm_eps,
            if variations.is_empty() {
                String::new()
            } else {
                format!("; {}", variations.join(", "))
            }
        ),
        format!("  mask token    {}", c.mask_token_id),
        format!("  weights       {weights}"),
        format!(
            "  memory        {} as float32 (cogrpo's compute dtype); full fine-tuning with \
             AdamW needs about 4x that; {} free here",
            gib(f32_bytes),
            gib(available_memory())
        ),
    ]
}

/// The tokenizer and the chat template's rendering of one user message.
fn describe_text(released: &ReleasedModel) -> Result<Vec<String>, BadInput> {
    let mut lines = Vec::new();
    match &released.tokenizer {
        None => lines.push("  tokenizer     none (no tokenizer.json)".to_string()),
        Some(t) => {
            let specials = t.special_tokens();
            let shown: Vec<String> = specials
                .iter()
                .take(8)
                .map(|(tok, id)| format!("{tok} {id}"))
                .collect();
            lines.push(format!(
                "  tokenizer     {} ({} ids, {} special: {}{})",
                t.kind(),
                t.vocab_size(),
                specials.len(),
                shown.join(", "),
                if specials.len() > 8 { ", ..." } else { "" }
            ));
        }
    }
    match &released.chat_template {
        None => lines.push("  chat template none".to_string()),
        Some(c) => {
            let example = [Message::user("What is 2 + 2?")];
            let prompt = c
                .apply(&example, true)
                .map_err(|e| BadInput(e.to_string()))?;
            lines.push(format!(
                "  chat template {:?} for one user message \"What is 2 + 2?\"",
                prompt
            ));
        }
    }
    Ok(lines)
}

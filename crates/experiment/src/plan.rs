//! What a config asks of the machine, estimated before anything runs: peak
//! memory of pre-training, sampling and the Co-GRPO update, against the
//! memory the machine has free. `check` prints it; every command refuses a
//! plan that cannot fit (exit 2, naming the keys that size it) unless
//! `--force`, because an allocation failure aborts the process without a
//! checkpoint or a message.

use mdm::DenoiserConfig;

use cogrpo_config::ExperimentConfig;

/// Bytes of one float32.
const F32: u64 = 4;

/// Peak memory of each phase, in bytes (float32, the CPU backend).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub params: u64,
    /// Weights, gradients and both Adam moments, plus the activations the
    /// backward pass keeps for one micro-batch.
    pub pretrain_bytes: u64,
    /// One evaluation batch's forward pass (nothing kept between layers).
    pub eval_bytes: u64,
    /// The policy, reference and old models resident (with `[cogrpo.lora]`:
    /// the frozen base once, at its stored width, and the adapters with
    /// their gradients and Adam moments), plus the larger of an update
    /// micro-batch's forward and backward and the iteration's rollout
    /// batch's forward (the models stay resident while it samples); 0
    /// without `[cogrpo]`.
    pub cogrpo_bytes: u64,
}

impl Plan {
    /// `d`: the denoiser the task and `[model]` give; `seq_len`: the task's
    /// prompt plus answer.
    pub fn estimate(cfg: &ExperimentConfig, d: &DenoiserConfig, seq_len: usize) -> Self {
        let params = d.num_params() as u64;
        let l = seq_len as u64;
        let train_rows = (cfg.pretrain.batch_size as u64).saturating_mul(l);
        // A model directory used as it is (no fine-tuning) trains nothing here.
        let pretrain_bytes = if cfg.pretrain.steps == 0 {
            0
        } else {
            (4 * params * F32).saturating_add(activations(d, l, train_rows, true))
        };
        let eval_rows = (cfg.eval.batch_size as u64).saturating_mul(l);
        let eval_bytes = (params * F32).saturating_add(activations(d, l, eval_rows, false));
        let cogrpo_bytes = cfg.cogrpo.as_ref().map_or(0, |c| {
            // The rollouts of one iteration are sampled as one batch; the
            // update runs micro-batches of `micro_batch_tokens` (0: all).
            let rollout_rows = (c.prompts_per_iteration as u64 * c.group_size as u64) * l;
            let update_rows = match c.micro_batch_tokens_on(cfg.run.device) {
                0 => rollout_rows,
                n => (n as u64).min(rollout_rows),
            };
            let resident = match &c.lora {
                // Weights, gradients, two moments, the reference, the old model.
                None => 6 * params * F32,
                // The base (also the reference) at its stored width (norms
                // and biases, a few thousand numbers, counted with it);
                // the adapters train in float32.
                Some(lora) => {
                    params * lora.base_dtype.bytes() as u64 + 4 * lora_params(d, lora) * F32
                }
            };
            let kept = match c.gradient_checkpointing {
                true => checkpointed_activations(d, l, update_rows),
                false => activations(d, l, update_rows, true),
            };
            resident.saturating_add(kept.max(activations(d, l, rollout_rows, false)))
        });
        Self {
            params,
            pretrain_bytes,
            eval_bytes,
            cogrpo_bytes,
        }
    }

    /// The largest phase and the keys that size it.
    pub fn peak(&self) -> (u64, &'static str) {
        [
            (
                self.pretrain_bytes,
                "model.*, pretrain.batch_size and the sequence length",
            ),
            (
                self.eval_bytes,
                "model.*, eval.batch_size and the sequence length",
            ),
            (
                self.cogrpo_bytes,
                "model.*, cogrpo.prompts_per_iteration x group_size, micro_batch_tokens",
            ),
        ]
        .into_iter()
        .max_by_key(|(b, _)| *b)
        .unwrap_or((0, ""))
    }

    /// Refuses a plan whose peak exceeds `available` bytes.
    pub fn fits(&self, available: u64) -> Result<(), String> {
        let (peak, keys) = self.peak();
        if peak <= available {
            return Ok(());
        }
        Err(format!(
            "the plan needs about {} of memory at its peak, and this machine has {} free; \
             reduce {keys} (or pass --force to try anyway)",
            gib(peak),
            gib(available)
        ))
    }
}

/// Activations of `rows` token positions through the denoiser: per layer and
/// token the residual, two norms, q/k/v, the rotated q/k, the attention
/// output, the projection, the SwiGLU gate, up, activation and product
/// (12 d + 4 d_ff), plus the attention scores and probabilities (2 heads x
/// L), plus the logits and their softmax (2 vocab). `keep`: autodiff keeps
/// every layer's (times two for the backward's temporaries); inference
/// holds about two layers' at a time.
fn activations(d: &DenoiserConfig, seq_len: u64, rows: u64, keep: bool) -> u64 {
    let per_token_layer =
        12 * d.d_model as u64 + 4 * d.d_ff as u64 + 2 * d.n_heads as u64 * seq_len;
    let layers = if keep { 2 * d.n_layers as u64 } else { 2 };
    let head = 2 * (d.vocab_size as u64 + 1);
    rows.saturating_mul(per_token_layer.saturating_mul(layers).saturating_add(head))
        .saturating_mul(F32)
}

/// Activations of a checkpointed backward pass over `rows` positions: each
/// block's input (`n_layers + 1` hidden states of `d_model`), one block's
/// activations with the backward's temporaries, and the head's logits.
fn checkpointed_activations(d: &DenoiserConfig, seq_len: u64, rows: u64) -> u64 {
    let one_block = DenoiserConfig {
        n_layers: 1,
        ..d.clone()
    };
    let inputs = rows.saturating_mul((d.n_layers as u64 + 1) * d.d_model as u64) * F32;
    inputs.saturating_add(activations(&one_block, seq_len, rows, true))
}

/// Parameters of `lora`'s adapters on `d`: `r (d_in + d_out)` per targeted
/// projection and block.
pub fn lora_params(d: &DenoiserConfig, lora: &mdm::LoraConfig) -> u64 {
    use mdm::LoraTarget::*;
    let (m, kv, ff) = (d.d_model as u64, d.kv_dim() as u64, d.d_ff as u64);
    let per_block: u64 = lora
        .targets
        .iter()
        .map(|t| match t {
            Q | O => m + m,
            K | V => m + kv,
            Gate | Up | Down => m + ff,
        })
        .sum();
    per_block * lora.rank as u64 * d.n_layers as u64
}

/// Memory the operating system can give this process now, in bytes.
pub fn available_memory() -> u64 {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    sys.available_memory()
}

/// `12.3 GiB`.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cogrpo_config::load_str;

    fn plan(toml: &str, seq_len: usize) -> Plan {
        let cfg = load_str(toml, "test", &[]).unwrap();
        let d = DenoiserConfig::new(
            10,
            cfg.model.d_model,
            cfg.model.n_layers,
            cfg.model.n_heads,
            cfg.model.d_ff,
            seq_len,
        );
        Plan::estimate(&cfg, &d, seq_len)
    }

    const SMALL: &str = "[run]\nname = \"t\"\n[task]\nkind = \"sudoku4\"\n[model]\nd_model = 64\n\
        n_layers = 2\nn_heads = 4\nd_ff = 128\n[pretrain]\nsteps = 10\nbatch_size = 32\nlr = 1e-3\n";

    #[test]
    fn the_pretraining_estimate_counts_optimizer_state_and_kept_activations() {
        let p = plan(SMALL, 32);
        // 4 copies of the weights plus per token 2 layers x 2 x (12*64 +
        // 4*128 + 2*4*32) floats and 2 x 11 logits floats, 32 x 32 tokens.
        let per_token = 2 * 2 * (12 * 64 + 4 * 128 + 2 * 4 * 32) + 2 * 11;
        assert_eq!(p.pretrain_bytes, 16 * p.params + 4 * 32 * 32 * per_token);
        assert_eq!(p.cogrpo_bytes, 0);
        assert!(p.fits(1 << 30).is_ok());
    }

    /// With LoRA the update holds the base once and the adapters four
    /// times (weights, gradients, two moments), not the model six times;
    /// the adapter count is the one `with_lora` builds.
    #[test]
    fn a_lora_update_holds_the_base_once_and_the_adapters_four_times() {
        let cogrpo = "[cogrpo]\niterations = 1\nsteps = 2\narms = [\"model\"]\n\
            reference = { kind = \"confidence\", temperature = 1.0 }\n";
        let full = plan(&format!("{SMALL}{cogrpo}"), 32);
        let lora = plan(&format!("{SMALL}{cogrpo}[cogrpo.lora]\nrank = 4\n"), 32);
        let d = DenoiserConfig::new(10, 64, 2, 4, 128, 32);
        let cfg = mdm::LoraConfig {
            rank: 4,
            ..Default::default()
        };
        let built = d
            .init::<burn::backend::Flex>(0, &Default::default())
            .with_lora(&cfg, 0);
        let n = lora_params(&d, &cfg);
        assert_eq!(n as usize, built.unwrap().trainable_params());
        assert_eq!(
            full.cogrpo_bytes - lora.cogrpo_bytes,
            (6 * full.params - full.params - 4 * n) * 4
        );
        // A bfloat16 base: two bytes per base weight fewer.
        let bf16 = plan(
            &format!("{SMALL}{cogrpo}[cogrpo.lora]\nrank = 4\nbase_dtype = \"bf16\"\n"),
            32,
        );
        assert_eq!(lora.cogrpo_bytes - bf16.cogrpo_bytes, 2 * full.params);
    }

    /// The rollout batch is sampled with every model resident: when its
    /// forward outweighs an update micro-batch's, the plan is the two
    /// together.
    #[test]
    fn rollouts_are_planned_on_top_of_the_resident_models() {
        let cogrpo = "[cogrpo]\niterations = 1\nsteps = 2\narms = [\"model\"]\n\
            prompts_per_iteration = 16\ngroup_size = 8\nmicro_batch_tokens = 32\n\
            reference = { kind = \"confidence\", temperature = 1.0 }\n";
        let p = plan(&format!("{SMALL}{cogrpo}"), 32);
        let d = DenoiserConfig::new(10, 64, 2, 4, 128, 32);
        let rollout = activations(&d, 32, 16 * 8 * 32, false);
        assert!(rollout > activations(&d, 32, 32, true));
        assert_eq!(p.cogrpo_bytes, 6 * p.params * 4 + rollout);
    }

    /// Checkpointing keeps each block's input and one block's activations:
    /// the update's activations shrink by the other blocks' share.
    #[test]
    fn a_checkpointed_update_keeps_one_block_of_activations() {
        let cogrpo = "[cogrpo]\niterations = 1\nsteps = 2\narms = [\"model\"]\n\
            reference = { kind = \"confidence\", temperature = 1.0 }\nmicro_batch_tokens = 0\n";
        let deep = SMALL.replace("n_layers = 2", "n_layers = 8");
        let plain = plan(&format!("{deep}{cogrpo}"), 32);
        let ckpt = plan(
            &format!("{deep}{cogrpo}gradient_checkpointing = true\n"),
            32,
        );
        // 16 x 8 rollouts of 32 positions; per token and layer 12*64 +
        // 4*128 + 2*4*32 floats, twice for the backward; the head's are kept.
        let rows = 16 * 8 * 32u64;
        let per_layer = 2 * (12 * 64 + 4 * 128 + 2 * 4 * 32);
        let saved = rows * 4 * (7 * per_layer - 9 * 64);
        assert_eq!(plain.cogrpo_bytes - ckpt.cogrpo_bytes, saved);
    }

    #[test]
    fn a_plan_beyond_the_memory_is_refused_naming_its_keys() {
        let huge = SMALL.replace("batch_size = 32", "batch_size = 1000000");
        let p = plan(&huge, 4096);
        let err = p.fits(24 << 30).unwrap_err();
        assert!(
            err.contains("pretrain.batch_size") && err.contains("--force"),
            "{err}"
        );
    }
}

//! The sections of an experiment config other than `[cogrpo]`, each with
//! the checks of its own keys ([`Validate`]). Checks that span sections
//! (guidance needs prompt dropout) are `ExperimentConfig`'s.
//!
//! A default is written once, in its section's `Default` (serde fills every
//! missing key from it). A key the file must give is marked
//! `#[schemars(extend("x-required" = true))]`: the loader refuses a file without it
//! (`reference::missing_keys`), so its value in `Default` is a placeholder
//! that no loaded config carries.

use std::path::PathBuf;

use envs::{Problems, Validate};
use mdm::{DenoiserConfig, Family, MatmulPrecision};
use policy::SamplerConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// burn's CPU backend (Flex).
    #[default]
    Cpu,
    /// burn-cuda (a `--features cuda` build).
    Cuda,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The experiment's name: the output folder is `runs/<name>`.
    #[schemars(extend("x-required" = true))]
    pub name: String,
    /// Where checkpoints, logs and summaries go (relative to the working
    /// directory); unset: `runs/<name>` for seed 0, `runs/<name>-seed<N>`
    /// for another seed N.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_dir: Option<PathBuf>,
    /// Seeds everything: initial weights, batches, noise, rollouts.
    pub seed: u64,
    /// Where the model runs.
    pub device: DeviceKind,
    /// Data-parallel worker threads on the CPU (0: one per core; 1 on
    /// CUDA). Results are reproducible for a fixed count.
    pub threads: usize,
    /// How the denoiser's matmuls run (docs/gpu.md); on the CPU `tf32` and
    /// `f32` are both float32, and `bf16` is emulated.
    pub precision: MatmulPrecision,
    /// Continue a checkpoint even though the config changed a key that
    /// shapes its training (`--allow-config-change`); the changed keys are
    /// printed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_config_change: bool,
}

impl RunConfig {
    /// Resolves `threads = 0` for the configured device.
    pub fn resolve_threads(&mut self) {
        if self.threads == 0 {
            self.threads = match self.device {
                DeviceKind::Cpu => std::thread::available_parallelism().map_or(1, |n| n.get()),
                DeviceKind::Cuda => 1,
            };
        }
    }

    /// `out_dir`, else `runs/<name>` for seed 0 and `runs/<name>-seed<N>`
    /// for any other seed, so that `--seed N` reruns an experiment beside
    /// the first run instead of colliding with it.
    pub fn out_dir(&self) -> PathBuf {
        self.out_dir.clone().unwrap_or_else(|| {
            let dir = match self.seed {
                0 => self.name.clone(),
                seed => format!("{}-seed{seed}", self.name),
            };
            PathBuf::from("runs").join(dir)
        })
    }
}

/// The tasks (docs/tasks.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// 4x4 Sudoku: 16-cell puzzle to solved grid.
    #[default]
    Sudoku4,
    /// Tiny Shakespeare, character level, no prompt.
    Text,
    /// Countdown: `a,b,c=t` to an expression.
    Countdown,
    /// Star-graph path finding (the ILM paper's), easy.
    #[serde(rename = "star-easy")]
    StarEasy,
    /// Star graphs, medium.
    #[serde(rename = "star-medium")]
    StarMedium,
    /// Star graphs, hard.
    #[serde(rename = "star-hard")]
    StarHard,
    /// Star graphs below easy: degree 2, arms of 3 nodes, 10 node ids.
    #[serde(rename = "star-tiny")]
    StarTiny,
    /// Star graphs below easy: degree 2, arms of 5 nodes, 20 node ids.
    #[serde(rename = "star-small")]
    StarSmall,
    /// The reversal curse (Berglund et al.): name to description and back.
    Reversal,
    /// Class-conditional 8x8 handwritten digits, one token per gray level.
    Digits,
    /// Prompts and answers as text (JSON Lines), through a released model's
    /// tokenizer and chat template (docs/models.md).
    Prompts,
}

impl TaskKind {
    /// The name configs use (`sudoku4`, `star-easy`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Which task.
    #[schemars(extend("x-required" = true))]
    pub kind: TaskKind,
    /// Folder holding the task's data files (relative to the working
    /// directory).
    pub data_dir: PathBuf,
    /// Seeds generated training data (Sudoku puzzles) and the digits split.
    pub data_seed: u64,
    /// `text` only: characters per window (unset: 256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    /// `text` only: share of the corpus held out at its end (unset: 0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout_fraction: Option<f64>,
    /// `digits` only: gray levels per pixel, 2..=17 (unset: 17, the data as
    /// stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levels: Option<usize>,
    /// `sudoku4` only: the givens start revealed on the canvas, so that
    /// reveal counts cover only the blanks (the answer copies the givens).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub prefill_givens: bool,
    /// `prompts` only: a directory of `train.jsonl` and `test.jsonl` (and
    /// optionally `validation.jsonl`), or one JSONL file of which
    /// `holdout_fraction` (unset: 0.1) is held out. Each line is
    /// `{"prompt": ..., "answer": ..., ...}`; other fields reach the rewards
    /// as metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompts: Option<PathBuf>,
    /// `prompts` only: answer tokens generated after each prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gen_length: Option<usize>,
    /// `prompts` only: prompt positions; shorter prompts are left-padded
    /// (unset: the longest prompt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_len: Option<usize>,
    /// `prompts` only: wrap each prompt in the model's chat template as a
    /// user turn, ending where the assistant's reply begins.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub chat_template: bool,
    /// `prompts` only: the task whose built-in verifiers score the
    /// completions' text (`sudoku4`, `countdown`; unset: none, so
    /// `[rewards]` must name a plugin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifiers: Option<String>,
    /// `prompts` only: a directory with `tokenizer.json` (and
    /// `tokenizer_config.json`). Unset: `model.source`'s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            kind: TaskKind::default(),
            data_dir: PathBuf::from("data"),
            data_seed: 0,
            seq_len: None,
            holdout_fraction: None,
            levels: None,
            prefill_givens: false,
            prompts: None,
            gen_length: None,
            prompt_len: None,
            chat_template: false,
            verifiers: None,
            tokenizer: None,
        }
    }
}

/// Denoiser shape; the vocabulary and length come from the task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A Hugging Face model directory (LLaDA, Dream, or one `cogrpo export
    /// --format hf` wrote) or a released SMDM safetensors file: it gives
    /// the shape, vocabulary and mask, its weights are the starting point,
    /// and the other `[model]` keys may only repeat what it says
    /// (docs/models.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// What `source` says of the model, read when the config loads.
    #[serde(skip)]
    #[schemars(skip)]
    pub released: Option<crate::source::SourceModel>,
    /// One backbone, three objectives and samplers (docs/families.md).
    #[serde(skip_serializing_if = "Family::is_mdm")]
    pub family: Family,
    /// Width of the residual stream.
    #[schemars(extend("x-required" = true))]
    pub d_model: usize,
    /// Transformer blocks.
    #[schemars(extend("x-required" = true))]
    pub n_layers: usize,
    /// Attention heads (they divide `d_model`).
    #[schemars(extend("x-required" = true))]
    pub n_heads: usize,
    /// Hidden width of the SwiGLU feed-forward.
    #[schemars(extend("x-required" = true))]
    pub d_ff: usize,
    /// Key/value heads of grouped-query attention (a divisor of `n_heads`;
    /// Dream's layout). Unset: one per query head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_kv_heads: Option<usize>,
    /// Biases on the query, key and value projections (Qwen2 / Dream).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub qkv_bias: bool,
    /// The output head is the embedding's transpose instead of a matrix of
    /// its own.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tied_head: bool,
    /// Dream's shifted logits: position i is read from the output at i - 1
    /// (MDM family only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub logit_shift: bool,
    /// Rotary base (`rope_theta` in Hugging Face configs). Unset: 10000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// RMSNorm's epsilon. Unset: 1e-5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm_eps: Option<f64>,
}

impl ModelConfig {
    /// The denoiser of this shape over `vocab_size` real tokens and
    /// sequences of up to `max_len` (which the task supplies).
    pub fn denoiser(&self, vocab_size: usize, max_len: usize) -> DenoiserConfig {
        let mut d = DenoiserConfig::new(
            vocab_size,
            self.d_model,
            self.n_layers,
            self.n_heads,
            self.d_ff,
            max_len,
        )
        .with_family(self.family);
        d.n_kv_heads = self.n_kv_heads;
        d.qkv_bias = self.qkv_bias;
        d.tied_head = self.tied_head;
        d.logit_shift = self.logit_shift;
        if let Some(theta) = self.rope_theta {
            d.rope_base = theta;
        }
        if let Some(eps) = self.norm_eps {
            d.norm_eps = eps;
        }
        d
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    /// Optimizer steps.
    #[schemars(extend("x-required" = true))]
    pub steps: usize,
    /// Sequences per micro-batch.
    #[schemars(extend("x-required" = true))]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (effective batch = batch_size x this).
    pub grad_accum: usize,
    /// Peak learning rate (AdamW).
    #[schemars(extend("x-required" = true))]
    pub lr: f64,
    /// Linear warm-up steps to `lr`.
    pub warmup_steps: usize,
    /// Final learning rate of the cosine decay, as a share of `lr`.
    pub min_lr_ratio: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW's first-moment decay, in [0, 1).
    pub beta1: f64,
    /// AdamW's second-moment decay, in [0, 1).
    pub beta2: f64,
    /// AdamW's epsilon.
    pub adam_eps: f64,
    /// Global gradient-norm bound; 0 disables clipping.
    pub grad_clip: f64,
    /// Smallest masking probability of the forward process.
    pub mask_eps: f64,
    /// Stratify the batch's diffusion times (MDLM) instead of drawing them
    /// independently per row (SMDM). Measured: stratified helps
    /// character-level text slightly, independent trains 4x4 Sudoku faster.
    pub stratified_t: bool,
    /// Probability of masking the prompt in training (enables
    /// classifier-free guidance).
    pub prompt_dropout: f64,
    /// Gradient checkpointing: the forward pass keeps only each transformer
    /// block's input and the backward pass recomputes one block at a time
    /// (MDM and ARM; the Co-GRPO update has `cogrpo.gradient_checkpointing`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// Steps between progress lines and throughput logs.
    pub log_every: usize,
    /// Steps between checkpoints; 0 writes one only at the end.
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (the newest ones).
    pub keep_checkpoints: usize,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            steps: 0,
            batch_size: 0,
            grad_accum: 1,
            lr: 0.0,
            warmup_steps: 0,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            adam_eps: 1e-8,
            grad_clip: 1.0,
            mask_eps: 1e-3,
            stratified_t: false,
            prompt_dropout: 0.0,
            gradient_checkpointing: false,
            log_every: 20,
            checkpoint_every: 0,
            keep_checkpoints: 2,
        }
    }
}

/// `[eval]`: every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Step counts of the sampler sweep (each at most 2^20).
    pub steps: Vec<usize>,
    /// Samplers of the sweep (`[[eval.samplers]]`, each a `[sampler]`
    /// table); one that sets `steps` runs at that count only, the others at
    /// every count of `eval.steps`.
    pub samplers: Vec<SamplerConfig>,
    /// Test examples used (unset: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_examples: Option<usize>,
    /// Rows per batched forward.
    pub batch_size: usize,
    /// Stratified time samples per sequence for the held-out ELBO bound
    /// (at most 4096, each a forward over every example); 0 skips the
    /// likelihood evaluation. An ARM's likelihood is exact (any
    /// positive value asks for it); an ILM's is not evaluated.
    pub nll_samples: usize,
    /// ARM and ILM decoding: draw among the `top_k` largest logits (0: all).
    /// Each `samplers` entry's temperature is one evaluation point for them;
    /// its kind and steps are the MDM's knobs and are not used.
    #[serde(skip_serializing_if = "is_zero")]
    pub top_k: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            samplers: Vec::new(),
            max_examples: None,
            batch_size: 256,
            nll_samples: 0,
            top_k: 0,
        }
    }
}

impl Validate for RunConfig {
    fn check(&self, p: &mut Problems) {
        if self.name.trim().is_empty() {
            p.bad("name", "must not be empty");
        }
        if self.name.chars().any(char::is_control) {
            p.bad("name", "must not contain control characters");
        }
        if self
            .out_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            p.bad(
                "out_dir",
                "must not be empty (leave it out for runs/<name>)",
            );
        }
        if self.name.contains(['/', '\\']) {
            p.bad(
                "name",
                "must not contain path separators (set run.out_dir instead)",
            );
        }
    }
}

impl TaskConfig {
    /// `digits`: the gray levels per pixel (the data as stored by default).
    pub fn digit_levels(&self) -> usize {
        self.levels.unwrap_or(envs::digits::STORED_LEVELS)
    }
}

impl Validate for TaskConfig {
    fn check(&self, p: &mut Problems) {
        let only = |p: &mut Problems, key: &str, set: bool, kind: TaskKind, what: &str| {
            if set && self.kind != kind {
                p.bad(key, format!("only the `{what}` task has this key"));
            }
        };
        only(p, "seq_len", self.seq_len.is_some(), TaskKind::Text, "text");
        if self.holdout_fraction.is_some()
            && !matches!(self.kind, TaskKind::Text | TaskKind::Prompts)
        {
            p.bad(
                "holdout_fraction",
                "only the `text` and `prompts` tasks have this key",
            );
        }
        self.check_prompts(p);
        only(
            p,
            "levels",
            self.levels.is_some(),
            TaskKind::Digits,
            "digits",
        );
        only(
            p,
            "prefill_givens",
            self.prefill_givens,
            TaskKind::Sudoku4,
            "sudoku4",
        );
        if let Some(n) = self.seq_len {
            p.count_within("seq_len", n, 2, mdm::config::MAX_LEN);
        }
        if let Some(h) = self.holdout_fraction
            && !(h > 0.0 && h < 1.0)
        {
            p.bad("holdout_fraction", format!("must lie in (0, 1), got {h}"));
        }
        if let Some(l) = self.levels
            && !(2..=envs::digits::STORED_LEVELS).contains(&l)
        {
            p.bad("levels", format!("must lie in 2..=17, got {l}"));
        }
    }
}

/// The denoiser's own shape rules (`mdm::DenoiserConfig::validate`), before
/// the task has supplied the vocabulary and the length.
impl TaskConfig {
    /// The keys of `kind = "prompts"`: given with it, absent without it.
    fn check_prompts(&self, p: &mut Problems) {
        let prompts = self.kind == TaskKind::Prompts;
        let set = [
            ("prompts", self.prompts.is_some()),
            ("gen_length", self.gen_length.is_some()),
            ("prompt_len", self.prompt_len.is_some()),
            ("chat_template", self.chat_template),
            ("verifiers", self.verifiers.is_some()),
            ("tokenizer", self.tokenizer.is_some()),
        ];
        if !prompts {
            for (key, _) in set.iter().filter(|(_, on)| *on) {
                p.bad(key, "only the `prompts` task has this key");
            }
            return;
        }
        if self.prompts.is_none() {
            p.bad(
                "prompts",
                "required with kind = \"prompts\": a JSONL file or a directory",
            );
        }
        match self.gen_length {
            None => p.bad("gen_length", "required with kind = \"prompts\""),
            Some(n) => p.count_within("gen_length", n, 1, mdm::config::MAX_LEN),
        }
        if let Some(n) = self.prompt_len {
            p.count_within("prompt_len", n, 1, mdm::config::MAX_LEN);
        }
        if let Some(v) = &self.verifiers
            && rewards::verifiers_for(v).is_empty()
        {
            p.bad(
                "verifiers",
                format!(
                    "{v:?} has no built-in verifiers (sudoku4, countdown, reversal, star-easy, ...)"
                ),
            );
        }
    }
}

impl Validate for ModelConfig {
    fn check(&self, p: &mut Problems) {
        if let Err(e) = self.denoiser(1, 1).validate() {
            // The denoiser says `rope_base`; the config says `rope_theta`.
            let field = if e.field == "rope_base" {
                "rope_theta"
            } else {
                e.field
            };
            p.bad(field, e.message);
        }
    }
}

/// Largest batch (sequences per micro-batch) of any section.
pub const MAX_BATCH: usize = 1 << 20;
/// Largest `eval.nll_samples`: each is a forward over every held-out
/// example (LLaDA's likelihood estimates use 128).
pub const MAX_NLL_SAMPLES: usize = 1 << 12;
/// Largest `pretrain.grad_accum`.
pub const MAX_GRAD_ACCUM: usize = 1 << 12;

impl Validate for PretrainConfig {
    fn check(&self, p: &mut Problems) {
        p.at_least_one("steps", self.steps);
        p.count_within("batch_size", self.batch_size, 1, MAX_BATCH);
        p.count_within("grad_accum", self.grad_accum, 1, MAX_GRAD_ACCUM);
        p.at_least_one("log_every", self.log_every);
        p.at_least_one("keep_checkpoints", self.keep_checkpoints);
        p.positive("lr", self.lr);
        if self.warmup_steps > self.steps {
            p.bad(
                "warmup_steps",
                format!(
                    "{} exceeds pretrain.steps = {}",
                    self.warmup_steps, self.steps
                ),
            );
        }
        p.within("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0);
        // Adam divides by 1 - beta^t: beta = 1 is a division by zero.
        for (key, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                p.bad(key, format!("must lie in [0, 1), got {beta}"));
            }
        }
        p.within("prompt_dropout", self.prompt_dropout, 0.0, 1.0);
        p.within("mask_eps", self.mask_eps, 0.0, 1.0);
        p.non_negative("weight_decay", self.weight_decay);
        p.non_negative("grad_clip", self.grad_clip);
        p.non_negative("adam_eps", self.adam_eps);
    }
}

impl Validate for EvalConfig {
    fn check(&self, p: &mut Problems) {
        p.count_within("batch_size", self.batch_size, 1, MAX_BATCH);
        if self.max_examples == Some(0) {
            p.bad(
                "max_examples",
                "must be at least 1 (leave it out to use all)",
            );
        }
        policy::check_step_counts(p, "steps", &self.steps);
        p.count_within("nll_samples", self.nll_samples, 0, MAX_NLL_SAMPLES);
        for (i, s) in self.samplers.iter().enumerate() {
            let name = format!("samplers[{i}]");
            p.section(&name, s);
            if s.steps == 0 && self.steps.is_empty() {
                p.bad(
                    &name,
                    "no step count: set eval.steps, or steps in this sampler",
                );
            }
        }
    }
}

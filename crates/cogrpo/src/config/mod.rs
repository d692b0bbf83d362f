//! The experiment config: one TOML file describes a whole experiment.
//!
//! Sections: `[run]` (name, output directory, seed, device), `[task]`,
//! `[model]`, `[pretrain]`, `[sampler]` (the default sampler of `sample`),
//! `[eval]`, `[rewards]` and `[cogrpo]` (with `[cogrpo.schedule]`). Unknown
//! keys are rejected; every error names the key's path.
//! [`load`] reads a file and applies `--set key=value` overrides;
//! [`ExperimentConfig::validate`] checks ranges and combinations.

mod grpo;
mod load;

use std::path::PathBuf;

use policy::{SamplerConfig, SamplerKind};
use serde::{Deserialize, Serialize};

pub use grpo::{CogrpoConfig, DEFAULT_MICRO_BATCH_TOKENS, LossAggregation, UpdateMode};
pub use load::{ConfigError, load, load_str, parse_override};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub run: RunConfig,
    pub task: TaskConfig,
    pub model: ModelConfig,
    pub pretrain: PretrainConfig,
    /// The sampler `cogrpo sample` uses; defaults to the exact first-hitting
    /// sampler with one position per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerConfig>,
    #[serde(default)]
    pub eval: EvalConfig,
    /// The rewards Co-GRPO optimizes (`rewards::RewardsConfig`).
    #[serde(default)]
    pub rewards: rewards::RewardsConfig,
    /// Co-GRPO and the arms `run` compares; absent = pre-training only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cogrpo: Option<CogrpoConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub name: String,
    /// Where checkpoints, logs and summaries go (relative to the working
    /// directory); defaults to `runs/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_dir: Option<PathBuf>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_device")]
    pub device: DeviceKind,
    /// Data-parallel worker threads for training on the CPU (0: one per
    /// core; 1 on CUDA). Results are reproducible for a fixed count.
    #[serde(default)]
    pub threads: usize,
}

fn default_device() -> DeviceKind {
    DeviceKind::Cpu
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

    pub fn out_dir(&self) -> PathBuf {
        self.out_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(&self.name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Sudoku4,
    Text,
    Countdown,
    #[serde(rename = "star-easy")]
    StarEasy,
    #[serde(rename = "star-medium")]
    StarMedium,
    #[serde(rename = "star-hard")]
    StarHard,
    Reversal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub kind: TaskKind,
    /// Folder holding the task's data files (relative to the working directory).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Seed of generated training data (Sudoku puzzles).
    #[serde(default)]
    pub data_seed: u64,
    /// `text`: characters per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    /// `text`: share of the corpus held out at its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_fraction: Option<f64>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// Denoiser shape; the vocabulary and length come from the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    /// Micro-batches per optimizer step (effective batch = batch_size x this).
    #[serde(default = "one")]
    pub grad_accum: usize,
    pub lr: f64,
    #[serde(default)]
    pub warmup_steps: usize,
    /// Final learning rate of the cosine decay, as a share of `lr`.
    #[serde(default = "default_min_lr_ratio")]
    pub min_lr_ratio: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_adam_eps")]
    pub adam_eps: f64,
    /// Global gradient-norm bound; 0 disables clipping.
    #[serde(default = "one_f")]
    pub grad_clip: f64,
    /// Smallest masking probability of the forward process.
    #[serde(default = "default_mask_eps")]
    pub mask_eps: f64,
    /// Stratify the batch's diffusion times (MDLM) instead of drawing them
    /// independently (SMDM). Measured: stratified helps character-level text
    /// slightly, independent trains 4x4 Sudoku faster (README, Results).
    #[serde(default)]
    pub stratified_t: bool,
    /// Probability of masking the prompt in training (enables guidance).
    #[serde(default)]
    pub prompt_dropout: f64,
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Steps between checkpoints; 0 writes one only at the end.
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (the newest ones).
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
}

fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn default_min_lr_ratio() -> f64 {
    0.1
}
fn default_weight_decay() -> f64 {
    0.01
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.99
}
fn default_adam_eps() -> f64 {
    1e-8
}
fn default_mask_eps() -> f64 {
    1e-3
}
fn default_log_every() -> usize {
    20
}
fn default_keep() -> usize {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Step counts of the sampler sweep.
    #[serde(default)]
    pub steps: Vec<usize>,
    /// Samplers of the sweep; one that sets `steps` runs at that count only,
    /// the others at every count of `steps` above.
    #[serde(default)]
    pub samplers: Vec<SamplerConfig>,
    /// Test examples used (all by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_examples: Option<usize>,
    /// Rows per batched forward.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// Stratified time samples per sequence for the held-out ELBO bound;
    /// 0 skips the likelihood evaluation.
    #[serde(default)]
    pub nll_samples: usize,
}

fn default_eval_batch() -> usize {
    256
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            samplers: Vec::new(),
            max_examples: None,
            batch_size: default_eval_batch(),
            nll_samples: 0,
        }
    }
}

/// One problem found by validation: the key's path, what is wrong, a hint.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

impl ExperimentConfig {
    /// Every range and consistency problem, each naming its key.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut errs = Vec::new();
        let mut bad = |key: &str, message: String| {
            errs.push(Invalid {
                key: key.into(),
                message,
            })
        };

        if self.run.name.trim().is_empty() {
            bad("run.name", "must not be empty".into());
        }
        for (key, message) in self.rewards.problems() {
            bad(&format!("rewards.{key}"), message);
        }
        if let Some(c) = &self.cogrpo {
            for (key, message) in c.problems() {
                bad(&format!("cogrpo.{key}"), message);
            }
            if c.reference.guidance != 0.0 && self.pretrain.prompt_dropout == 0.0 {
                bad(
                    "cogrpo.reference.guidance",
                    "guidance needs a model trained with prompt dropout".into(),
                );
            }
        }
        if self.run.name.contains(['/', '\\']) {
            bad(
                "run.name",
                "must not contain path separators (set run.out_dir instead)".into(),
            );
        }
        match self.task.kind {
            TaskKind::Sudoku4
            | TaskKind::Countdown
            | TaskKind::StarEasy
            | TaskKind::StarMedium
            | TaskKind::StarHard
            | TaskKind::Reversal => {
                if self.task.seq_len.is_some() {
                    bad(
                        "task.seq_len",
                        "only the `text` task has a configurable length".into(),
                    );
                }
                if self.task.holdout_fraction.is_some() {
                    bad(
                        "task.holdout_fraction",
                        "only the `text` task holds out a share".into(),
                    );
                }
            }
            TaskKind::Text => {
                if self.task.seq_len.is_some_and(|n| n < 2) {
                    bad("task.seq_len", "must be at least 2".into());
                }
                if let Some(h) = self.task.holdout_fraction
                    && !(h > 0.0 && h < 1.0)
                {
                    bad(
                        "task.holdout_fraction",
                        format!("must lie in (0, 1), got {h}"),
                    );
                }
            }
        }

        let m = &self.model;
        for (key, v) in [
            ("model.d_model", m.d_model),
            ("model.n_layers", m.n_layers),
            ("model.n_heads", m.n_heads),
            ("model.d_ff", m.d_ff),
        ] {
            if v == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        if m.n_heads > 0 && !m.d_model.is_multiple_of(m.n_heads) {
            bad(
                "model.n_heads",
                format!(
                    "d_model {} is not divisible by n_heads {}",
                    m.d_model, m.n_heads
                ),
            );
        } else if m.n_heads > 0 && !(m.d_model / m.n_heads).is_multiple_of(2) {
            bad(
                "model.n_heads",
                format!(
                    "head size d_model / n_heads = {} must be even for rotary embeddings",
                    m.d_model / m.n_heads
                ),
            );
        }

        let p = &self.pretrain;
        for (key, v) in [
            ("pretrain.steps", p.steps),
            ("pretrain.batch_size", p.batch_size),
            ("pretrain.grad_accum", p.grad_accum),
            ("pretrain.log_every", p.log_every),
            ("pretrain.keep_checkpoints", p.keep_checkpoints),
        ] {
            if v == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        if !(p.lr > 0.0 && p.lr.is_finite()) {
            bad("pretrain.lr", format!("must be positive, got {}", p.lr));
        }
        if p.warmup_steps > p.steps {
            bad(
                "pretrain.warmup_steps",
                format!("{} exceeds pretrain.steps = {}", p.warmup_steps, p.steps),
            );
        }
        for (key, v, lo, hi) in [
            ("pretrain.min_lr_ratio", p.min_lr_ratio, 0.0, 1.0),
            ("pretrain.beta1", p.beta1, 0.0, 1.0),
            ("pretrain.beta2", p.beta2, 0.0, 1.0),
            ("pretrain.prompt_dropout", p.prompt_dropout, 0.0, 1.0),
            ("pretrain.mask_eps", p.mask_eps, 0.0, 1.0),
        ] {
            if !(v >= lo && v <= hi) {
                bad(key, format!("must lie in [{lo}, {hi}], got {v}"));
            }
        }
        for (key, v) in [
            ("pretrain.weight_decay", p.weight_decay),
            ("pretrain.grad_clip", p.grad_clip),
            ("pretrain.adam_eps", p.adam_eps),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                bad(key, format!("must be finite and >= 0, got {v}"));
            }
        }
        if p.prompt_dropout > 0.0 && self.task.kind == TaskKind::Text {
            bad(
                "pretrain.prompt_dropout",
                "the `text` task has no prompt to drop".into(),
            );
        }

        if let Some(s) = &self.sampler
            && let Err((field, message)) = s.validate()
        {
            bad(&format!("sampler.{field}"), message);
        }
        let e = &self.eval;
        if e.batch_size == 0 {
            bad("eval.batch_size", "must be at least 1".into());
        }
        if e.max_examples == Some(0) {
            bad(
                "eval.max_examples",
                "must be at least 1 (leave it out to use all)".into(),
            );
        }
        if e.steps.contains(&0) {
            bad("eval.steps", "step counts must be at least 1".into());
        }
        for (i, s) in e.samplers.iter().enumerate() {
            if let Err((field, message)) = s.validate() {
                bad(&format!("eval.samplers[{i}].{field}"), message);
            }
            if s.steps == 0 && e.steps.is_empty() {
                bad(
                    &format!("eval.samplers[{i}]"),
                    "no step count: set eval.steps, or steps in this sampler".into(),
                );
            }
        }
        let uses_guidance = self.sampler.as_ref().is_some_and(|s| s.guidance != 0.0)
            || e.samplers.iter().any(|s| s.guidance != 0.0);
        if uses_guidance && p.prompt_dropout == 0.0 {
            bad(
                "pretrain.prompt_dropout",
                "guidance needs a model trained with prompt dropout (e.g. 0.1); with 0 the \
                 unconditional branch was never trained"
                    .into(),
            );
        }
        errs
    }

    /// The sampler of `cogrpo sample`; without a step count, one answer
    /// position per step.
    pub fn sample_sampler(&self, answer_len: usize) -> SamplerConfig {
        self.sampler
            .clone()
            .unwrap_or_else(|| SamplerConfig::new(SamplerKind::FirstHitting, 0))
            .steps_or(answer_len.max(1))
    }

    /// The `[cogrpo]` section, which Co-GRPO commands need.
    pub fn cogrpo_section(&self) -> anyhow::Result<&CogrpoConfig> {
        self.cogrpo
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the config has no [cogrpo] section"))
    }

    /// The (sampler, step count) points of the evaluation sweep.
    pub fn sweep(&self) -> Vec<SamplerConfig> {
        self.eval
            .samplers
            .iter()
            .flat_map(|s| {
                if s.steps > 0 {
                    vec![s.clone()]
                } else {
                    self.eval.steps.iter().map(|&n| s.with_steps(n)).collect()
                }
            })
            .collect()
    }
}

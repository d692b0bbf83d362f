//! `[cogrpo]`: the Co-GRPO trainer's settings and the arms `run` compares.
//!
//! ```toml
//! [cogrpo]
//! iterations = 150              # per arm: the same rollout budget for each
//! prompts_per_iteration = 16    # B
//! group_size = 8                # G rollouts per prompt
//! steps = 2                     # T, the episode length
//! arms = ["model", "schedule", "alternate"]
//! reference = { kind = "confidence", temperature = 1.0 }
//!
//! [cogrpo.schedule]
//! kind = "per_step"
//! learn = ["ratio", "temperature"]
//! ```

use envs::{Problems, Validate};
use policy::{SamplerConfig, SamplerKind, SchedulePolicyConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::sections::DeviceKind;

/// What an arm updates.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMode {
    /// Naive GRPO: the model theta, under the fixed reference schedule.
    Model,
    /// The schedule phi, with the model frozen.
    Schedule,
    /// theta and phi at every iteration.
    Joint,
    /// `alternate_every` iterations of theta, then `alternate_every_schedule`
    /// (as many by default) of phi (Co-GRPO).
    Alternate,
}

impl UpdateMode {
    pub fn name(self) -> &'static str {
        match self {
            UpdateMode::Model => "model",
            UpdateMode::Schedule => "schedule",
            UpdateMode::Joint => "joint",
            UpdateMode::Alternate => "alternate",
        }
    }

    /// Whether rollouts act with the learned schedule (else the reference).
    pub fn uses_schedule(self) -> bool {
        self != UpdateMode::Model
    }

    /// `(update theta, update phi)` at `iteration`; `alternate` spends
    /// `theta_iterations`, then `phi_iterations`, in each period.
    pub fn phase(
        self,
        iteration: usize,
        theta_iterations: usize,
        phi_iterations: usize,
    ) -> (bool, bool) {
        match self {
            UpdateMode::Model => (true, false),
            UpdateMode::Schedule => (false, true),
            UpdateMode::Joint => (true, true),
            UpdateMode::Alternate => {
                let period = (theta_iterations + phi_iterations).max(1);
                let theta = iteration % period < theta_iterations;
                (theta, !theta)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LossAggregation {
    /// Mean over every token of the batch (DAPO): long answers weigh more.
    #[default]
    Token,
    /// Mean over each trajectory's tokens, then over trajectories (GRPO).
    Sequence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CogrpoConfig {
    /// Iterations per arm (each: roll out, score, update): every arm gets
    /// the same rollout budget.
    #[schemars(extend("x-required" = true))]
    pub iterations: usize,
    /// B: prompts rolled out per iteration.
    pub prompts_per_iteration: usize,
    /// G: rollouts per prompt (advantages are relative to the group).
    pub group_size: usize,
    /// T: the steps of every training episode.
    #[schemars(extend("x-required" = true))]
    pub steps: usize,
    /// The fixed schedule (a `[sampler]` table, `first_hitting` or
    /// `confidence`): the `base` and `model` arms follow it, learned
    /// schedules start from it and take it as their KL reference. Its
    /// `steps` is ignored (T is `cogrpo.steps`).
    #[schemars(extend("x-required" = true))]
    pub reference: SamplerConfig,
    /// The learned schedule policy (`[cogrpo.schedule]`).
    pub schedule: SchedulePolicyConfig,
    /// LoRA adapters as the model factor (`[cogrpo.lora]`): the pre-trained
    /// model stays frozen and theta is the adapters; unset, every weight
    /// trains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<mdm::LoraConfig>,
    /// The tuned fixed schedule, the strongest simple baseline: when set,
    /// `run` adds the arm `tuned` (the best fixed schedule of this grid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tune: Option<TuneConfig>,
    /// RL arms `run` trains from the same checkpoint (`base`, the
    /// pre-trained model, is always evaluated).
    pub arms: Vec<UpdateMode>,
    /// Update passes per rollout batch.
    pub mu: usize,
    /// Lower clip range of the importance ratio, `1 - epsilon_low`.
    pub epsilon_low: f64,
    /// Upper clip range, `1 + epsilon_high` (DAPO's decoupled clip).
    pub epsilon_high: f64,
    /// Weight of KL(model || frozen pre-trained model), k3 estimator; 0 off.
    pub beta: f64,
    /// Weight of KL(schedule || initial schedule); 0 off.
    pub beta_schedule: f64,
    /// Weight of a bonus on the schedule policy's entropy (PPO's entropy
    /// term, Schulman et al. 2017: keeps the learned Gaussians and reveal
    /// orders from collapsing early); 0 off.
    pub entropy_schedule: f64,
    /// Learning rate of the model (theta).
    pub lr_model: f64,
    /// Learning rate of the schedule (phi).
    pub lr_schedule: f64,
    /// K of the alternate arm: iterations of the model per period.
    pub alternate_every: usize,
    /// Iterations of the schedule per period of the alternate arm (unset:
    /// `alternate_every`); with it the two factors' shares of the budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alternate_every_schedule: Option<usize>,
    /// How the model loss weighs tokens.
    pub loss_aggregation: LossAggregation,
    /// Divide group-centred rewards by the group's standard deviation.
    pub scale_advantages: bool,
    /// Replace groups whose rewards are all equal with fresh prompts (up to
    /// this many extra rounds per iteration; extra rollouts count in the
    /// budget).
    pub resample_rounds: usize,
    /// Steps per trajectory the loss uses (chosen at random); 0 = all.
    pub step_subsample: usize,
    /// Canvas tokens (recorded canvases x canvas length) per forward and
    /// backward pass of the model update on each thread: only peak memory
    /// and float summation order depend on it; 0 puts a thread's whole share
    /// in one pass. Unset: 2048 on the CPU, 32768 on a GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub micro_batch_tokens: Option<usize>,
    /// Gradient checkpointing in the model update: the forward pass keeps
    /// only each transformer block's input and the backward pass recomputes
    /// one block at a time (a second forward pass for the memory of one
    /// block's activations instead of all of them; Chen et al. 2016).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// Global gradient-norm bound of each optimizer; 0 off.
    pub grad_clip: f64,
    /// AdamW weight decay of the model.
    pub weight_decay: f64,
    /// Iterations between checkpoints; 0 writes one at the end only.
    pub checkpoint_every: usize,
    /// Iterations between progress lines.
    pub log_every: usize,
    /// Iterations between rollout dumps (`<run>/dumps/<arm>.jsonl.gz`); 0 =
    /// none during training. Evaluations always dump.
    pub dump_every: usize,
    /// Whole groups per dump (evaluation: `dump_groups x group_size` test
    /// examples per step count); bounds the dumps' size.
    pub dump_groups: usize,
    /// Step counts every arm is evaluated at (empty: `[steps]`).
    pub eval_steps: Vec<usize>,
    /// Token temperature of the evaluation (0: greedy); replaces the
    /// reference's token temperature, not a learned one. Unset: greedy for
    /// tasks with prompts, 1 for tasks without (greedy decoding of an empty
    /// prompt writes one string for every row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_temperature: Option<f64>,
    /// Whether evaluation keeps a learned token temperature (true: the
    /// schedule as learned) or decodes at `eval_temperature` like every
    /// other arm (false: the ablation that separates the learned
    /// temperature from the rest of the learned schedule).
    pub eval_learned_temperature: bool,
    /// Evaluate the arm on the validation split (never the test prompts)
    /// every this many iterations, at the evaluation step counts, with the
    /// evaluation models (0: only at the end, on the test split).
    pub eval_every: usize,
    /// Keep the checkpoint with the best validation value of this metric
    /// at T = `steps` (e.g. "class_accuracy", "frechet": lower is better
    /// for frechet, duplicate_rate and nfe) and evaluate it on the test
    /// split instead of the last; a warning names iterations where the
    /// training reward rose while this metric worsened beyond its noise.
    /// Needs `eval_every`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_best: Option<String>,
    /// A discriminator reward that keeps learning against the arm's
    /// rollouts (absent: it stays as trained before RL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adversarial: Option<AdversarialConfig>,
}

impl Default for CogrpoConfig {
    /// The defaults of the optional keys; `iterations`, `steps` and
    /// `reference` are required (`#[schemars(extend("x-required" = true))]`), so their values
    /// here never reach a loaded config.
    fn default() -> Self {
        Self {
            iterations: 0,
            prompts_per_iteration: 16,
            group_size: 8,
            steps: 0,
            reference: SamplerConfig::new(SamplerKind::Confidence, 0),
            schedule: SchedulePolicyConfig::default(),
            lora: None,
            tune: None,
            arms: vec![UpdateMode::Model, UpdateMode::Alternate],
            mu: 1,
            epsilon_low: 0.2,
            epsilon_high: 0.28,
            beta: 0.0,
            beta_schedule: 0.0,
            entropy_schedule: 0.0,
            lr_model: 1e-4,
            lr_schedule: 1e-2,
            alternate_every: 10,
            alternate_every_schedule: None,
            loss_aggregation: LossAggregation::Token,
            scale_advantages: true,
            resample_rounds: 0,
            step_subsample: 0,
            micro_batch_tokens: None,
            gradient_checkpointing: false,
            grad_clip: 1.0,
            weight_decay: 0.0,
            checkpoint_every: 0,
            log_every: 10,
            dump_every: 10,
            dump_groups: 2,
            eval_steps: Vec::new(),
            eval_temperature: None,
            eval_learned_temperature: true,
            eval_every: 0,
            keep_best: None,
            adversarial: None,
        }
    }
}

/// Default of [`CogrpoConfig::micro_batch_tokens`] on the CPU. On a
/// 64-canvas update of the 10M model at length 256 (2 threads), the process
/// peaked at 10.1 GB with one pass per thread and at 2.5 GB with 2048 tokens
/// per pass, which was also 14% faster (docs/performance.md, change 4).
pub const DEFAULT_MICRO_BATCH_TOKENS: usize = 2048;

/// The same on a GPU, where small passes leave the device idle between
/// launches: 2048 tokens per pass made the 50M update 0.16x PyTorch's
/// one-pass update on an H200 (docs/performance.md, GPU).
pub const DEFAULT_GPU_MICRO_BATCH_TOKENS: usize = 32768;

/// The update's canvas tokens per pass: `configured`, else `device`'s default.
pub fn micro_batch_tokens(configured: Option<usize>, device: DeviceKind) -> usize {
    configured.unwrap_or(match device {
        DeviceKind::Cpu => DEFAULT_MICRO_BATCH_TOKENS,
        DeviceKind::Cuda => DEFAULT_GPU_MICRO_BATCH_TOKENS,
    })
}

impl CogrpoConfig {
    /// [`micro_batch_tokens`] of this config on `device`.
    pub fn micro_batch_tokens_on(&self, device: DeviceKind) -> usize {
        micro_batch_tokens(self.micro_batch_tokens, device)
    }
}

impl CogrpoConfig {
    /// The reference sampler at the training episode length.
    pub fn reference_sampler(&self) -> SamplerConfig {
        self.reference.with_steps(self.steps)
    }

    /// `(theta, phi)` iterations per period of the alternate mode.
    pub fn alternation(&self) -> (usize, usize) {
        let theta = self.alternate_every;
        (theta, self.alternate_every_schedule.unwrap_or(theta))
    }

    /// `(update theta, update phi)` of `mode` at `iteration`.
    pub fn phase(&self, mode: UpdateMode, iteration: usize) -> (bool, bool) {
        let (theta, phi) = self.alternation();
        mode.phase(iteration, theta, phi)
    }

    /// The evaluation's token temperature for a task whose prompts have
    /// `prompt_len` positions: `eval_temperature`, or when unset greedy
    /// with a prompt and 1 without one.
    pub fn eval_temperature_for(&self, prompt_len: usize) -> f64 {
        self.eval_temperature
            .unwrap_or(if prompt_len == 0 { 1.0 } else { 0.0 })
    }

    /// What an arm's evaluation decodes at: [`Self::eval_temperature_for`],
    /// over a learned temperature too unless `eval_learned_temperature`.
    pub fn eval_temperature_override(&self, prompt_len: usize) -> policy::TemperatureOverride {
        policy::TemperatureOverride {
            value: self.eval_temperature_for(prompt_len),
            over_learned: !self.eval_learned_temperature,
        }
    }

    /// Step counts of the evaluation.
    pub fn eval_step_counts(&self) -> Vec<usize> {
        if self.eval_steps.is_empty() {
            vec![self.steps]
        } else {
            self.eval_steps.clone()
        }
    }

    /// The evaluation's step counts and the training one, ascending, each
    /// once (what validation and the realism discriminator's data cover).
    pub fn eval_and_training_step_counts(&self) -> Vec<usize> {
        let mut steps = self.eval_step_counts();
        steps.push(self.steps);
        steps.sort_unstable();
        steps.dedup();
        steps
    }
}

/// `[cogrpo.tune]`: the grid of fixed schedules searched for the `tuned`
/// arm, each scored by the training reward on the task's validation split
/// at T = `cogrpo.steps` (the reference's kind, re-mask temperatures only
/// for `confidence`). Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TuneConfig {
    /// Reveal curves tried.
    pub schedule: Vec<policy::RevealSchedule>,
    /// Token temperatures tried.
    pub temperature: Vec<f64>,
    /// Re-mask temperatures tried (a `confidence` reference only).
    pub remask_temperature: Vec<f64>,
    /// Guidance scales tried.
    pub guidance: Vec<f64>,
}

impl Default for TuneConfig {
    fn default() -> Self {
        Self {
            schedule: vec![
                policy::RevealSchedule::Linear,
                policy::RevealSchedule::Cosine,
            ],
            temperature: vec![0.5, 0.75, 1.0, 1.25],
            remask_temperature: vec![0.0, 0.5, 1.0],
            guidance: vec![0.0, 1.0, 2.0],
        }
    }
}

impl TuneConfig {
    /// Every fixed schedule of the grid, built on `reference`.
    pub fn grid(&self, reference: &SamplerConfig) -> Vec<SamplerConfig> {
        let remask: &[f64] = if reference.kind == SamplerKind::Confidence {
            &self.remask_temperature
        } else {
            &[0.0]
        };
        let mut out = Vec::new();
        for &schedule in &self.schedule {
            for &temperature in &self.temperature {
                for &remask_temperature in remask {
                    for &guidance in &self.guidance {
                        out.push(SamplerConfig {
                            schedule,
                            temperature,
                            remask_temperature,
                            guidance,
                            ..reference.clone()
                        });
                    }
                }
            }
        }
        out
    }
}

/// One of [`Problems`]' range checks.
type RangeCheck = fn(&mut Problems, &str, f64);

impl Validate for TuneConfig {
    fn check(&self, p: &mut Problems) {
        let lists: [(&str, &[f64], RangeCheck); 3] = [
            ("temperature", &self.temperature, Problems::non_negative),
            (
                "remask_temperature",
                &self.remask_temperature,
                Problems::non_negative,
            ),
            ("guidance", &self.guidance, Problems::finite),
        ];
        for (key, values, check) in lists {
            if values.is_empty() {
                p.bad(key, "list at least one value");
            }
            for &v in values {
                check(p, key, v);
            }
        }
        if self.schedule.is_empty() {
            p.bad(
                "schedule",
                "list at least one reveal curve: linear, cosine, square, sqrt",
            );
        }
    }
}

/// Largest `group_size`.
const MAX_GROUP: usize = 1 << 12;

impl Validate for CogrpoConfig {
    fn check(&self, p: &mut Problems) {
        p.at_least_one("iterations", self.iterations);
        p.count_within(
            "prompts_per_iteration",
            self.prompts_per_iteration,
            1,
            crate::sections::MAX_BATCH,
        );
        p.count_within("steps", self.steps, 1, policy::MAX_STEPS);
        p.at_least_one("mu", self.mu);
        p.at_least_one("alternate_every", self.alternate_every);
        if let Some(k) = self.alternate_every_schedule {
            p.at_least_one("alternate_every_schedule", k);
        }
        p.at_least_one("log_every", self.log_every);
        if self.group_size > MAX_GROUP {
            p.bad(
                "group_size",
                format!("must be at most {MAX_GROUP}, got {}", self.group_size),
            );
        }
        if self.group_size < 2 {
            p.bad(
                "group_size",
                "must be at least 2: advantages are relative to the group",
            );
        }
        if self.arms.is_empty() {
            p.bad(
                "arms",
                "name at least one of model, schedule, joint, alternate",
            );
        }
        let mut seen = self.arms.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.arms.len() {
            p.bad("arms", "an arm is named twice");
        }
        if !(self.epsilon_low > 0.0 && self.epsilon_low < 1.0) {
            p.bad(
                "epsilon_low",
                format!("must lie in (0, 1), got {}", self.epsilon_low),
            );
        }
        p.positive("epsilon_high", self.epsilon_high);
        p.non_negative("beta", self.beta);
        p.non_negative("beta_schedule", self.beta_schedule);
        p.non_negative("entropy_schedule", self.entropy_schedule);
        p.non_negative("grad_clip", self.grad_clip);
        p.non_negative("weight_decay", self.weight_decay);
        if let Some(t) = self.eval_temperature {
            p.non_negative("eval_temperature", t);
        }
        p.positive("lr_model", self.lr_model);
        p.positive("lr_schedule", self.lr_schedule);
        policy::check_step_counts(p, "eval_steps", &self.eval_steps);
        p.section("reference", &self.reference);
        if self.reference.kind == SamplerKind::Ancestral {
            p.bad(
                "reference.kind",
                "ancestral sampling draws its reveal counts at random; use first_hitting or \
                 confidence",
            );
        }
        p.section("schedule", &self.schedule);
        self.check_baselines_and_judges(p);
        self.check_lora(p);
        self.check_arms_can_learn(p);
    }
}

impl CogrpoConfig {
    /// The tuned baseline's grid, the adversarial reward, and validation
    /// during training.
    fn check_baselines_and_judges(&self, p: &mut Problems) {
        if let Some(t) = &self.tune {
            p.section("tune", t);
        }
        if let Some(a) = &self.adversarial {
            p.section("adversarial", a);
        }
        if self.keep_best.is_some() && self.eval_every == 0 {
            p.bad(
                "keep_best",
                "the best checkpoint is chosen by evaluations during training: set eval_every \
                 (e.g. 10)",
            );
        }
    }

    /// `[cogrpo.lora]`'s own keys, and an arm that trains the model.
    fn check_lora(&self, p: &mut Problems) {
        let Some(lora) = &self.lora else { return };
        for (key, message) in lora.problems() {
            p.bad(&format!("lora.{key}"), message);
        }
        if self.arms == [UpdateMode::Schedule] {
            p.bad(
                "lora",
                "only the schedule arm is trained, which leaves the model frozen: LoRA adapters \
                 would never train",
            );
        }
    }

    /// What the arms update must be learnable: the model needs a token
    /// distribution to learn from, the schedule arms a learned schedule.
    fn check_arms_can_learn(&self, p: &mut Problems) {
        let learns_temperature = self
            .schedule
            .components()
            .contains(&policy::learned::Component::Temperature);
        let trains_model = self.arms.iter().any(|a| *a != UpdateMode::Schedule);
        if trains_model && self.reference.temperature == 0.0 && !learns_temperature {
            p.bad(
                "reference.temperature",
                "the model is trained on its own samples: greedy rollouts (0) have no \
                 token distribution; use e.g. 1.0",
            );
        }
        let learns_threshold = self
            .schedule
            .components()
            .contains(&policy::learned::Component::Threshold);
        let schedule_arms = self.arms.iter().any(|a| a.uses_schedule());
        if schedule_arms && self.reference.threshold > 0.0 && !learns_threshold {
            p.bad(
                "reference.threshold",
                "the schedule, joint and alternate arms learn the reveal counts that Fast-dLLM's \
                 threshold would decide: learn the threshold too (schedule.learn = \
                 [\"threshold\", ...]), or use it with the model arm or in [[eval.samplers]]",
            );
        }
        if self.schedule.order && self.reference.threshold > 0.0 {
            p.bad(
                "schedule.order",
                "Fast-dLLM's threshold (reference.threshold) reveals the positions the model is \
                 confident about; a learned order picks positions itself: use one of the two",
            );
        }
        if learns_threshold && self.reference.threshold <= 0.0 {
            p.bad(
                "reference.threshold",
                "schedule.learn has \"threshold\": the learned threshold is a residual on the \
                 reference's, so set one in (0, 1), e.g. 0.9 (on the confidence sampler)",
            );
        }
        if self.arms.iter().any(|a| a.uses_schedule()) && !self.schedule.is_learned() {
            p.bad(
                "schedule.kind",
                "the schedule, joint and alternate arms need a learned schedule: set kind = \
                 \"per_step\" or \"network\" with `learn`, or order = true",
            );
        }
    }
}

#[path = "cogrpo/adversarial.rs"]
mod adversarial;
pub use adversarial::{AdversarialConfig, DISCRIMINATORS};

#[cfg(test)]
#[path = "cogrpo/tests.rs"]
mod tests;

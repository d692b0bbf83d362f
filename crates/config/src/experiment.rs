//! The whole experiment file: every section, and the checks that span
//! sections.

use envs::{Problems, Validate};
use policy::{SamplerConfig, SamplerKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cogrpo::CogrpoConfig;
use crate::sections::{EvalConfig, ModelConfig, PretrainConfig, RunConfig, TaskConfig, TaskKind};

/// One experiment: the run, the task, the model and its pre-training,
/// sampling and evaluation, and optionally the rewards and Co-GRPO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub run: RunConfig,
    pub task: TaskConfig,
    pub model: ModelConfig,
    /// Required, except with `model.source`, where it is supervised
    /// fine-tuning of the model directory's weights (absent or `steps = 0`:
    /// none).
    #[serde(default)]
    #[schemars(extend("x-required" = true))]
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

impl ExperimentConfig {
    /// `model.source` and the prompts task: what each needs of the other,
    /// and `[pretrain]` optional with a model directory.
    fn check_released(&self, p: &mut Problems) {
        let released = self.model.source.is_some();
        if !(released && self.pretrain.steps == 0) {
            p.section("pretrain", &self.pretrain);
        }
        if released && self.task.kind != TaskKind::Prompts {
            p.bad(
                "model.source",
                format!(
                    "a model directory has its own vocabulary; task.kind = \"{}\" has a \
                     vocabulary of its own (use kind = \"prompts\")",
                    self.task.kind.name()
                ),
            );
        }
        if self.task.kind == TaskKind::Prompts && !released && self.task.tokenizer.is_none() {
            p.bad(
                "task.tokenizer",
                "the prompts task needs a tokenizer: set model.source (a model directory) or \
                 task.tokenizer (a directory with tokenizer.json)",
            );
        }
    }
}

impl ExperimentConfig {
    /// `[cogrpo.adversarial]` updates a discriminator the rewards name.
    fn check_adversarial(&self, p: &mut Problems) {
        let Some(a) = self.cogrpo.as_ref().and_then(|c| c.adversarial.as_ref()) else {
            return;
        };
        let named = self
            .rewards
            .terms
            .iter()
            .any(|t| matches!(t, rewards::RewardTerm::Builtin(b) if b.name == a.reward));
        if !named {
            p.bad(
                "cogrpo.adversarial.reward",
                format!(
                    "`{}` is not among [[rewards.terms]]: add it (kind = \"builtin\", name = \"{}\")",
                    a.reward, a.reward
                ),
            );
        }
        if self.task.kind != TaskKind::Digits {
            p.bad(
                "cogrpo.adversarial",
                "the discriminator rewards judge images: only the digits task has one",
            );
        }
    }
}

/// The sections check themselves; what spans sections is checked here.
impl Validate for ExperimentConfig {
    fn check(&self, p: &mut Problems) {
        p.section("run", &self.run);
        p.section("task", &self.task);
        p.section("model", &self.model);
        self.check_released(p);
        if let Some(s) = &self.sampler {
            p.section("sampler", s);
        }
        p.section("eval", &self.eval);
        p.section("rewards", &self.rewards);
        if let Some(c) = &self.cogrpo {
            p.section("cogrpo", c);
        }
        self.check_adversarial(p);

        let family = self.model.family;
        if family != mdm::Family::Mdm {
            if self.cogrpo.is_some() {
                p.bad(
                    "cogrpo",
                    format!(
                        "Co-GRPO trains MDMs; model.family = \"{family}\" is pre-trained and \
                         evaluated only (remove the [cogrpo] section)"
                    ),
                );
            }
            if self.pretrain.prompt_dropout > 0.0 {
                p.bad(
                    "pretrain.prompt_dropout",
                    format!("guidance is an MDM feature; model.family = \"{family}\" has none"),
                );
            }
        }
        let trains_unconditional = self.pretrain.prompt_dropout > 0.0;
        if trains_unconditional && self.task.kind == TaskKind::Text {
            p.bad(
                "pretrain.prompt_dropout",
                "the `text` task has no prompt to drop",
            );
        }
        let sample_guides = self
            .sampler
            .iter()
            .chain(&self.eval.samplers)
            .any(|s| s.guidance != 0.0);
        if sample_guides && !trains_unconditional {
            p.bad(
                "pretrain.prompt_dropout",
                "guidance needs a model trained with prompt dropout (e.g. 0.1); with 0 the \
                 unconditional branch was never trained",
            );
        }
        if let Some(c) = &self.cogrpo
            && !trains_unconditional
        {
            if c.reference.guidance != 0.0 {
                p.bad(
                    "cogrpo.reference.guidance",
                    "guidance needs a model trained with prompt dropout",
                );
            }
            if c.schedule
                .components()
                .contains(&policy::learned::Component::Guidance)
            {
                p.bad(
                    "cogrpo.schedule.learn",
                    "learning the guidance scale needs a model trained with prompt dropout \
                     (pretrain.prompt_dropout, e.g. 0.1)",
                );
            }
        }
    }
}

/// A config of only required keys plus a one-sampler sweep (for tests).
#[cfg(test)]
pub(crate) const MINIMAL: &str = r#"
[run]
name = "t"
[task]
kind = "sudoku4"
[model]
d_model = 32
n_layers = 1
n_heads = 2
d_ff = 64
[pretrain]
steps = 10
batch_size = 4
lr = 1e-3
[eval]
steps = [1, 2]
[[eval.samplers]]
kind = "confidence"
temperature = 0.0
"#;

impl ExperimentConfig {
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

    /// Block-wise samplers need a step per block at least: checked once the
    /// task's answer length is known (the config alone does not say it),
    /// naming the first sampler that has too few.
    pub fn check_blocks(&self, answer_len: usize) -> Result<(), String> {
        // Each sampler's fewest steps: its own count, else eval.steps'.
        let fewest = |s: &SamplerConfig| match s.steps {
            0 => self.eval.steps.iter().min().copied(),
            n => Some(n),
        };
        let mut samplers: Vec<(String, &SamplerConfig, Option<usize>)> = (self.eval.samplers)
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("eval.samplers[{i}]"), s, fewest(s)))
            .collect();
        let sample = self.sample_sampler(answer_len);
        if let Some(s) = &self.sampler {
            samplers.push(("sampler".into(), s, Some(sample.steps)));
        }
        // Co-GRPO's reference at its training and evaluation step counts.
        if let Some(c) = &self.cogrpo {
            let fewest = c.eval_step_counts().into_iter().chain([c.steps]).min();
            samplers.push(("cogrpo.reference".into(), &c.reference, fewest));
        }
        for (key, s, steps) in samplers {
            let blocks = policy::block_count(answer_len, s.block_length);
            if let Some(steps) = steps.filter(|&n| n < blocks) {
                return Err(format!(
                    "`{key}.block_length`: {} makes {blocks} blocks of the {answer_len}-position \
                     answer, more than its {steps} steps (each block needs one)",
                    s.block_length
                ));
            }
        }
        Ok(())
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

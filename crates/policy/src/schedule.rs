//! Fixed schedules and the schedule action they emit at every step.
//!
//! A *schedule action* is everything the schedule decides at one step for one
//! canvas row: how many masked positions to reveal, how to choose them, the
//! sampling temperature and the guidance scale. Fixed schedules (this file)
//! have no parameters; learned schedule policies emit the same actions.

use envs::{Problems, Validate};
use rand::Rng;
use rand_distr::{Binomial, Distribution};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The sampler families of the literature, all expressed as fixed schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// MDLM/SMDM ancestral sampling: from time t to s every masked position
    /// is revealed independently with probability (t - s) / t.
    Ancestral,
    /// Zheng et al.'s first-hitting sampler: positions chosen uniformly among
    /// the masked ones, a deterministic number per step (one per step when
    /// `steps` equals the answer length; k per step in its parallel form).
    FirstHitting,
    /// MaskGIT-style: a candidate token at every masked position, reveal the
    /// most confident ones (optionally Gumbel-perturbed).
    Confidence,
}

/// How many positions are still masked after a share of the steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevealSchedule {
    /// Masked share 1 - s: the same number revealed at every step.
    #[default]
    Linear,
    /// Masked share cos(pi/2 * s) (MaskGIT): few early, many late.
    Cosine,
    /// Masked share 1 - s^2 (MaskGIT's "square"): fewer early still.
    Square,
    /// Masked share 1 - sqrt(s) (MaskGIT's "square root"): many early, few
    /// late, the shape the learned Sudoku schedules converge to.
    Sqrt,
}

impl RevealSchedule {
    /// Share of the initially masked positions still masked after `done` of
    /// `total` steps.
    pub fn masked_share(self, done: usize, total: usize) -> f64 {
        let s = done as f64 / total as f64;
        match self {
            RevealSchedule::Linear => 1.0 - s,
            RevealSchedule::Cosine => (s * std::f64::consts::FRAC_PI_2).cos(),
            RevealSchedule::Square => 1.0 - s * s,
            RevealSchedule::Sqrt => 1.0 - s.sqrt(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RevealSchedule::Linear => "linear",
            RevealSchedule::Cosine => "cosine",
            RevealSchedule::Square => "square",
            RevealSchedule::Sqrt => "sqrt",
        }
    }

    /// Positions to reveal at `step` (0-based) of `total` steps when `n0`
    /// were masked at the start and `n` still are; the last step reveals all.
    pub fn reveal_count(self, n0: usize, n: usize, step: usize, total: usize) -> usize {
        if step + 1 >= total {
            return n;
        }
        let target = (n0 as f64 * self.masked_share(step + 1, total)).round() as usize;
        n.saturating_sub(target)
    }
}

/// The one rule for how many of the `n` masked positions a step reveals:
/// `round(ratio * n)` within `[0, n]`, and all of them at the last step. A
/// fixed schedule's count `k` passes through as the ratio `k / n`; a learned
/// ratio takes its place.
pub fn reveal_from_ratio(ratio: f64, n: usize, last: bool) -> usize {
    if last {
        return n;
    }
    let k = (ratio * n as f64).round();
    if k.is_nan() {
        0
    } else {
        k.clamp(0.0, n as f64) as usize
    }
}

/// The most sampling steps of any sampler (`sampler.steps`, `eval.steps`,
/// `cogrpo.steps`, ...): the longest sequence cogrpo builds. Steps past the
/// answer length reveal nothing and cost no forward, but each is still a
/// step of every row's bookkeeping: at this cap, 40 rows of a 16-cell
/// answer take 7 s per sampler on a 2-core CPU, where 2^63 steps never end.
pub const MAX_STEPS: usize = 1 << 20;

/// A list of step counts (`eval.steps`, `cogrpo.eval_steps`): each in
/// `1..=MAX_STEPS`.
pub fn check_step_counts(p: &mut Problems, key: &str, counts: &[usize]) {
    if counts.contains(&0) {
        p.bad(key, "step counts must be at least 1");
    }
    if let Some(n) = counts.iter().find(|&&n| n > MAX_STEPS) {
        p.bad(
            key,
            format!("step counts must be at most {MAX_STEPS}, got {n}"),
        );
    }
}

/// Range checks (a step count of 0 is allowed here: it means "the caller
/// decides").
impl Validate for SamplerConfig {
    fn check(&self, p: &mut Problems) {
        p.count_within("steps", self.steps, 0, MAX_STEPS);
        p.count_within("block_length", self.block_length, 0, mdm::config::MAX_LEN);
        p.non_negative("temperature", self.temperature);
        p.finite("guidance", self.guidance);
        p.non_negative("remask_temperature", self.remask_temperature);
        if self.kind != SamplerKind::Confidence && self.remask_temperature != 0.0 {
            p.bad(
                "remask_temperature",
                "only the confidence sampler chooses positions by confidence",
            );
        }
        p.within("threshold", self.threshold, 0.0, 1.0);
        if self.kind != SamplerKind::Confidence && self.threshold != 0.0 {
            p.bad(
                "threshold",
                "only the confidence sampler reveals by confidence (Fast-dLLM's threshold)",
            );
        }
    }
}

/// One step's decision for one row: how many masked positions to reveal
/// and the settings of the draws. Which positions follows from the sampler
/// kind (uniform, or the most confident), or from a learned order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleAction {
    pub reveal: usize,
    /// Sampling temperature; 0 decodes greedily (argmax).
    pub temperature: f64,
    /// Gumbel noise on confidence selection: top-k of `log p(candidate) +
    /// remask_temperature * Gumbel`, a Plackett-Luce draw over positions
    /// with scores `log p / remask_temperature`; 0 is pure confidence order.
    pub remask_temperature: f64,
    /// Classifier-free guidance scale w (SMDM): 0 switches guidance off.
    pub guidance: f64,
    /// Fast-dLLM's confidence threshold: every candidate whose probability
    /// reaches it is revealed, `reveal` at least; 0 switches it off.
    pub threshold: f64,
}

/// A fixed sampler: kind, number of steps and its constant settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// How positions are chosen and how many per step.
    #[schemars(extend("x-required" = true))]
    pub kind: SamplerKind,
    /// Sampling steps (at most 2^20); 0 leaves the choice to the caller (the answer length,
    /// i.e. one position per step, or an evaluation's list of step counts).
    #[serde(skip_serializing_if = "is_zero")]
    pub steps: usize,
    /// Token sampling temperature; 0 decodes greedily.
    pub temperature: f64,
    /// Classifier-free guidance scale w (SMDM: `l_u + (1 + w)(l_c - l_u)`,
    /// the prompt masked in `l_u`); needs a model pre-trained with
    /// `pretrain.prompt_dropout`.
    pub guidance: f64,
    /// How many positions are still masked after a share of the steps.
    pub schedule: RevealSchedule,
    /// `confidence` only: Gumbel noise on the confidence order at this
    /// temperature (0: pure confidence order).
    pub remask_temperature: f64,
    /// Block-wise (semi-autoregressive) decoding, as LLaDA samples: the
    /// answer in blocks of this many positions, decoded left to right, the
    /// steps shared out among them (at least one each); 0 decodes the whole
    /// answer at once.
    #[serde(skip_serializing_if = "is_zero")]
    pub block_length: usize,
    /// `confidence` only: Fast-dLLM's parallel decoding (Wu et al. 2025):
    /// each step reveals every masked position of the block whose token
    /// probability reaches this threshold, at least one, and a block's last
    /// step what it has left; `steps` is then a budget, and steps whose
    /// block is already full cost nothing. 0 (off) follows the reveal
    /// schedule.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub threshold: f64,
}

impl Default for SamplerConfig {
    /// The first-hitting sampler, one position per step, temperature 1
    /// (`kind` is required in a file).
    fn default() -> Self {
        Self::new(SamplerKind::FirstHitting, 0)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

impl SamplerConfig {
    pub fn new(kind: SamplerKind, steps: usize) -> Self {
        Self {
            kind,
            steps,
            temperature: 1.0,
            guidance: 0.0,
            schedule: RevealSchedule::default(),
            remask_temperature: 0.0,
            block_length: 0,
            threshold: 0.0,
        }
    }

    /// This sampler at `steps` steps.
    pub fn with_steps(&self, steps: usize) -> Self {
        Self {
            steps,
            ..self.clone()
        }
    }

    /// This sampler with `steps = 0` resolved to `default_steps`.
    pub fn steps_or(&self, default_steps: usize) -> Self {
        if self.steps == 0 {
            self.with_steps(default_steps)
        } else {
            self.clone()
        }
    }

    /// A short label for tables: `confidence(cosine, T=0.5)`.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            SamplerKind::Ancestral => "ancestral",
            SamplerKind::FirstHitting => "first_hitting",
            SamplerKind::Confidence => "confidence",
        };
        let mut parts = Vec::new();
        if self.kind != SamplerKind::Ancestral && self.schedule != RevealSchedule::Linear {
            parts.push(self.schedule.name().to_string());
        }
        if self.temperature != 1.0 {
            parts.push(format!("temp={}", self.temperature));
        }
        if self.remask_temperature != 0.0 {
            parts.push(format!("remask={}", self.remask_temperature));
        }
        if self.guidance != 0.0 {
            parts.push(format!("w={}", self.guidance));
        }
        if self.block_length != 0 {
            parts.push(format!("block={}", self.block_length));
        }
        if self.threshold != 0.0 {
            parts.push(format!("threshold={}", self.threshold));
        }
        if parts.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}({})", parts.join(", "))
        }
    }

    /// The action at `step` for a row with `n0` masks at the start and `n`
    /// now. Ancestral sampling draws its count from `rng` (the row's stream).
    pub fn action<R: Rng + ?Sized>(
        &self,
        n0: usize,
        n: usize,
        step: usize,
        rng: &mut R,
    ) -> ScheduleAction {
        let reveal = match self.kind {
            SamplerKind::Ancestral => {
                let remaining = self.steps - step;
                if remaining <= 1 || n == 0 {
                    n
                } else {
                    // From t = remaining/T to s = (remaining-1)/T: (t - s)/t = 1/remaining.
                    let p = 1.0 / remaining as f64;
                    Binomial::new(n as u64, p)
                        .expect("valid binomial")
                        .sample(rng) as usize
                }
            }
            // With a threshold the draws decide the count; one at least.
            SamplerKind::Confidence if self.threshold > 0.0 => n.min(1),
            SamplerKind::FirstHitting | SamplerKind::Confidence => {
                self.schedule.reveal_count(n0, n, step, self.steps)
            }
        };
        ScheduleAction {
            reveal,
            temperature: self.temperature,
            remask_temperature: self.remask_temperature,
            guidance: self.guidance,
            threshold: self.threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envs::seeding::stream;

    #[test]
    fn every_reveal_curve_sums_to_the_masked_positions() {
        let all = [
            RevealSchedule::Linear,
            RevealSchedule::Cosine,
            RevealSchedule::Square,
            RevealSchedule::Sqrt,
        ];
        for schedule in all {
            for (n0, total) in [(16, 1), (16, 2), (16, 4), (16, 16), (16, 40), (7, 3)] {
                let mut n = n0;
                let mut counts = Vec::new();
                for step in 0..total {
                    let k = schedule.reveal_count(n0, n, step, total);
                    counts.push(k);
                    n -= k;
                }
                assert_eq!(n, 0, "{schedule:?} {n0} {total}: {counts:?}");
                if schedule == RevealSchedule::Linear && total <= n0 && n0 % total == 0 {
                    assert!(counts.iter().all(|&k| k == n0 / total), "{counts:?}");
                }
            }
        }
        // Cosine reveals few first and many last.
        let first = RevealSchedule::Cosine.reveal_count(16, 16, 0, 4);
        let last = RevealSchedule::Cosine.reveal_count(16, 6, 3, 4);
        assert!(first < 4 && last > 4, "{first} {last}");
        // At two steps over 16 cells: 8 / 5 / 4 / 11 first.
        let firsts: Vec<usize> = all.iter().map(|s| s.reveal_count(16, 16, 0, 2)).collect();
        assert_eq!(firsts, [8, 5, 4, 11]);
    }

    #[test]
    fn a_fixed_count_passes_through_its_ratio() {
        for n in 1..=64usize {
            for k in 0..=n {
                assert_eq!(reveal_from_ratio(k as f64 / n as f64, n, false), k);
            }
            assert_eq!(
                reveal_from_ratio(0.0, n, true),
                n,
                "the last step reveals all"
            );
        }
        assert_eq!(reveal_from_ratio(0.81, 16, false), 13);
        assert_eq!(reveal_from_ratio(f64::NAN, 16, false), 0);
    }

    #[test]
    fn ancestral_counts_are_binomial_with_rate_one_over_remaining() {
        let cfg = SamplerConfig::new(SamplerKind::Ancestral, 4);
        let mut rng = stream(&[5]);
        let trials = 20_000;
        let mean = (0..trials)
            .map(|_| cfg.action(16, 16, 0, &mut rng).reveal)
            .sum::<usize>() as f64
            / trials as f64;
        // Binomial(16, 1/4): mean 4, sd of the mean 1.73/sqrt(20000) = 0.012
        assert!((mean - 4.0).abs() < 0.06, "mean {mean}");
        assert_eq!(cfg.action(16, 5, 3, &mut rng).reveal, 5);
    }

    #[test]
    fn validation_names_the_field() {
        let keys = |c: &SamplerConfig| -> Vec<String> {
            c.problems().into_iter().map(|p| p.key).collect()
        };
        let mut c = SamplerConfig::new(SamplerKind::FirstHitting, 0);
        assert!(keys(&c).is_empty());
        assert_eq!(c.steps_or(16).steps, 16);
        c.steps = 4;
        assert_eq!(c.steps_or(16).steps, 4);
        c.temperature = -1.0;
        c.guidance = f64::NAN;
        assert_eq!(keys(&c), ["temperature", "guidance"]);
        c.temperature = 1.0;
        c.guidance = 0.0;
        c.remask_temperature = 1.0;
        assert_eq!(keys(&c), ["remask_temperature"]);
        c.kind = SamplerKind::Confidence;
        assert!(keys(&c).is_empty());
        assert_eq!(c.label(), "confidence(remask=1)");
    }
}

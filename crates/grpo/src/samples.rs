//! From scored trajectories to the samples of the loss: which steps enter
//! it, with which advantage and weight; plus the per-step schedule summary.

use std::collections::BTreeMap;

use envs::Trajectory;
use envs::seeding::{purpose, stream};
use rand::seq::index::sample as sample_indices;

use cogrpo_config::{CogrpoConfig, LossAggregation};
use envs::StepRecord;

/// A recorded step with its trajectory's advantage and loss weights: what
/// both factors' losses are computed on.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub record: &'a StepRecord,
    /// The canvas position of the trajectory's end-of-sequence token: the
    /// model loss leaves out tokens revealed after it (`usize::MAX`: none).
    pub answer_end: usize,
    pub advantage: f32,
    /// Weight of each of the step's revealed tokens in the model loss.
    pub token_weight: f32,
    /// Weight of the step in the schedule loss.
    pub step_weight: f32,
}

impl Sample<'_> {
    /// Whether the revealed token at canvas position `pos` is in the model
    /// loss: up to and including the answer's end-of-sequence token (the
    /// model learns to stop), nothing after it (TRL's completion mask).
    pub fn in_loss(&self, pos: usize) -> bool {
        pos <= self.answer_end
    }

    /// The step's tokens in the model loss.
    pub fn loss_tokens(&self) -> usize {
        self.record
            .revealed
            .iter()
            .filter(|&&p| self.in_loss(p))
            .count()
    }
}

/// Where each trajectory's answer ends: the canvas position of its first
/// end-of-sequence or padding token ([`envs::Vocab::answer`]), or
/// `usize::MAX` when it has none.
pub fn answer_ends(trajectories: &[Trajectory], vocab: &envs::Vocab) -> Vec<usize> {
    trajectories
        .iter()
        .map(|t| {
            let (answer, kept) = (t.answer(), vocab.answer(t.answer()).len());
            match kept < answer.len() {
                true => t.prompt_len + kept,
                false => usize::MAX,
            }
        })
        .collect()
}

/// The recorded steps the loss uses, with their advantages and weights;
/// `ends` are [`answer_ends`] (or empty: no trajectory has an end token).
pub fn build_samples<'a>(
    c: &CogrpoConfig,
    (trajectories, ends): (&'a [Trajectory], &[usize]),
    advantages: &[Option<f32>],
    seed: u64,
    it: usize,
) -> Vec<Sample<'a>> {
    let end = |i: usize| ends.get(i).copied().unwrap_or(usize::MAX);
    let kept = |i: usize, k: usize| {
        let r = &trajectories[i].steps[k];
        r.revealed.iter().filter(|&&p| p <= end(i)).count()
    };
    let chosen: Vec<(usize, Vec<usize>)> = trajectories
        .iter()
        .enumerate()
        .filter(|(i, _)| advantages[*i].is_some())
        .map(|(i, t)| {
            let n = t.steps.len();
            let steps: Vec<usize> = if c.step_subsample > 0 && c.step_subsample < n {
                let mut rng = stream(&[purpose::STEP_SUBSAMPLE, seed, it as u64, i as u64]);
                let mut s = sample_indices(&mut rng, n, c.step_subsample).into_vec();
                s.sort_unstable();
                s
            } else {
                (0..n).collect()
            };
            (i, steps)
        })
        .collect();
    let n_traj = chosen.len().max(1) as f32;
    let total_tokens: usize = chosen
        .iter()
        .map(|(i, s)| s.iter().map(|&k| kept(*i, k)).sum::<usize>())
        .sum();
    let mut out = Vec::new();
    for (i, steps) in chosen {
        let t = &trajectories[i];
        let traj_tokens: usize = steps.iter().map(|&k| kept(i, k)).sum();
        let token_weight = match c.loss_aggregation {
            LossAggregation::Token => 1.0 / total_tokens.max(1) as f32,
            LossAggregation::Sequence => 1.0 / (n_traj * traj_tokens.max(1) as f32),
        };
        let step_weight = 1.0 / (n_traj * steps.len().max(1) as f32);
        for k in steps {
            out.push(Sample {
                record: &t.steps[k],
                answer_end: end(i),
                advantage: advantages[i].expect("filtered above"),
                token_weight,
                step_weight,
            });
        }
    }
    out
}

/// Groups of `g` whose valid rewards are all equal (no learning signal).
pub fn zero_variance_groups(totals: &[Option<f32>], g: usize) -> usize {
    totals
        .chunks(g)
        .filter(|group| {
            let v: Vec<f32> = group.iter().flatten().copied().collect();
            v.len() < 2 || v.iter().all(|&x| (x - v[0]).abs() < 1e-6)
        })
        .count()
}

/// Mean action per step over the trajectories: `reveal` (positions revealed)
/// and each learned component's value where the policy acted.
pub fn schedule_per_step(
    trajectories: &[Trajectory],
    components: &[policy::learned::Component],
    steps: usize,
) -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    let per_step = |f: &dyn Fn(&envs::StepRecord) -> Option<f64>| -> Vec<f64> {
        (0..steps)
            .map(|t| {
                mean(
                    trajectories
                        .iter()
                        .filter_map(|tr| tr.steps.get(t))
                        .filter_map(f),
                )
            })
            .collect()
    };
    out.insert(
        "reveal".into(),
        per_step(&|r| Some(r.revealed.len() as f64)),
    );
    // Where the revealed positions lie in the answer: 0 = its first
    // position, 1 = its last (shows a learned decoding order).
    out.insert(
        "position".into(),
        per_step(&|r| {
            let answer = (r.canvas.len() - r.prompt_len).max(2) - 1;
            (!r.revealed.is_empty()).then(|| {
                r.revealed
                    .iter()
                    .map(|&p| (p - r.prompt_len) as f64 / answer as f64)
                    .sum::<f64>()
                    / r.revealed.len() as f64
            })
        }),
    );
    for (j, comp) in components.iter().enumerate() {
        out.insert(
            comp.name().into(),
            per_step(&|r| r.acted[j].then(|| comp.map(r.schedule_raw[j]))),
        );
    }
    out
}

pub fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs {
        s += x;
        n += 1;
    }
    if n == 0 { f64::NAN } else { s / n as f64 }
}

pub fn std_dev(xs: &[f64]) -> f64 {
    let m = mean(xs.iter().copied());
    mean(xs.iter().map(|x| (x - m).powi(2))).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envs::StepRecord;

    fn record(tokens: usize) -> StepRecord {
        StepRecord::token_step(
            (0, 2),
            vec![0; 4],
            0,
            (0..tokens).collect(),
            vec![1; tokens],
            vec![-0.5; tokens],
        )
    }

    fn trajectory(tokens_per_step: &[usize]) -> Trajectory {
        Trajectory {
            key: 0,
            prompt_len: 0,
            steps: tokens_per_step.iter().map(|&k| record(k)).collect(),
            final_tokens: vec![1; 4],
        }
    }

    fn cfg(extra: &str) -> CogrpoConfig {
        toml::from_str(&format!(
            "iterations = 1\nsteps = 2\nreference = {{ kind = \"confidence\" }}\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn token_and_sequence_weights_on_hand_made_trajectories() {
        // Trajectory 0 reveals 3 + 1 tokens, trajectory 1 is invalid,
        // trajectory 2 reveals 1 + 1.
        let trajs = [
            trajectory(&[3, 1]),
            trajectory(&[2, 2]),
            trajectory(&[1, 1]),
        ];
        let adv = [Some(0.5), None, Some(-0.5)];
        let token = build_samples(&cfg(""), (&trajs, &[]), &adv, 0, 0);
        assert_eq!(token.len(), 4, "the invalid trajectory is left out");
        // Token level: every token weighs 1 / 6.
        assert!(
            token
                .iter()
                .all(|s| (s.token_weight - 1.0 / 6.0).abs() < 1e-7)
        );
        let total: f32 = token
            .iter()
            .map(|s| s.token_weight * s.record.tokens.len() as f32)
            .sum();
        assert!((total - 1.0).abs() < 1e-6);
        // Sequence level: 1 / (2 trajectories x their own token count).
        let seq = build_samples(
            &cfg("loss_aggregation = \"sequence\""),
            (&trajs, &[]),
            &adv,
            0,
            0,
        );
        assert!((seq[0].token_weight - 1.0 / 8.0).abs() < 1e-7);
        assert!((seq[3].token_weight - 1.0 / 4.0).abs() < 1e-7);
        // Steps weigh 1 / (trajectories x steps) in the schedule loss.
        assert!(seq.iter().all(|s| (s.step_weight - 0.25).abs() < 1e-7));
        assert_eq!(seq[0].advantage, 0.5);
        assert_eq!(seq[3].advantage, -0.5);
    }

    /// Tokens revealed after an answer's end token leave the model loss:
    /// they are not counted in the token weights, and a step with nothing
    /// before the end carries no model tokens (its schedule step stays).
    #[test]
    fn tokens_after_the_end_token_leave_the_model_loss() {
        // Positions 0..3 revealed at step 0, 0 at step 1; the answer ends
        // at position 1 in trajectory 0 and has no end in trajectory 1.
        let trajs = [trajectory(&[3, 1]), trajectory(&[3, 1])];
        let adv = [Some(1.0), Some(-1.0)];
        let samples = build_samples(&cfg(""), (&trajs, &[1, usize::MAX]), &adv, 0, 0);
        let kept: Vec<usize> = samples.iter().map(|s| s.loss_tokens()).collect();
        assert_eq!(kept, [2, 1, 3, 1]);
        // Token level: 7 tokens in the loss, each 1/7.
        assert!(
            samples
                .iter()
                .all(|s| (s.token_weight - 1.0 / 7.0).abs() < 1e-7)
        );
        assert!(!samples[0].in_loss(2) && samples[0].in_loss(1));
        let no_end = answer_ends(&trajs, &envs::Vocab::chars("01".chars()).unwrap());
        assert_eq!(no_end, [usize::MAX, usize::MAX]);
    }

    #[test]
    fn step_subsampling_keeps_the_requested_count_reproducibly() {
        let trajs = [trajectory(&[1, 1, 1, 1, 1]), trajectory(&[2, 2, 2, 2, 2])];
        let adv = [Some(1.0), Some(-1.0)];
        let c = cfg("step_subsample = 2");
        let a = build_samples(&c, (&trajs, &[]), &adv, 7, 3);
        let b = build_samples(&c, (&trajs, &[]), &adv, 7, 3);
        assert_eq!(a.len(), 4);
        let picked = |v: &[Sample]| -> Vec<*const StepRecord> {
            v.iter().map(|s| s.record as *const _).collect()
        };
        assert_eq!(picked(&a), picked(&b));
        assert!((a[0].step_weight - 0.25).abs() < 1e-7);
    }

    #[test]
    fn zero_variance_groups_are_those_with_one_reward_value() {
        let totals = [
            Some(1.0),
            Some(1.0),
            Some(0.0),
            Some(1.0),
            Some(0.5),
            None,
            None,
            Some(0.2),
        ];
        // Groups of two: equal, differing, one valid item, one valid item.
        assert_eq!(zero_variance_groups(&totals, 2), 3);
        assert_eq!(zero_variance_groups(&totals, 4), 0);
        assert_eq!(zero_variance_groups(&[Some(0.3); 8], 4), 2);
    }
}

//! Step 1 of an iteration: B prompts x G rollouts, scored, with group
//! advantages, and zero-variance groups resampled. In a distributed run each
//! rank rolls out and scores its share of the prompts (whole groups), then
//! every rank gathers all of them in slot order.

use std::time::Instant;

use burn::module::AutodiffModule;
use envs::seeding::{derive_key, purpose};
use envs::{Canvas, Example, Trajectory};
use mdm::{AutodiffKernels, Denoiser};
use policy::learned::SchedulePolicy;
use policy::{Act, GenerationStats, Rollout};
use rewards::{RewardItem, RolloutCost, ScoredBatch, TooManyFailures};

use cogrpo_config::CogrpoConfig;
use cogrpo_eval::{ItemScores, dumps};

use crate::samples::zero_variance_groups;
use crate::setup::Setup;
use crate::state::ArmTraining;

/// One iteration's groups: trajectories, scores, advantages.
pub(crate) struct Groups {
    pub(crate) trajectories: Vec<Trajectory>,
    pub(crate) items: Vec<RewardItem>,
    pub(crate) scored: ScoredBatch,
    pub(crate) advantages: Vec<Option<f32>>,
    pub(crate) totals: Vec<Option<f32>>,
    /// Groups without reward variance before resampling.
    pub(crate) zero_variance: usize,
    /// Rollouts scored, resampling included (the budget counts what
    /// the rewards judged, not what a failed reward batch threw away).
    pub(crate) rollouts: u64,
    pub(crate) nfe: f64,
    /// Network evaluations of each rollout.
    pub(crate) row_nfe: Vec<u32>,
    /// Each rollout's score per reward term.
    pub(crate) terms: Vec<ItemScores>,
    pub(crate) rollout_s: f64,
}

/// Why collecting groups stopped the run.
pub(crate) enum Stop {
    /// The rewards failed too often: a checkpoint is written first.
    Rewards(TooManyFailures),
    Other(anyhow::Error),
}

/// One rank's groups of a roll-out round (what the ranks gather).
#[derive(serde::Serialize, serde::Deserialize)]
struct Shard {
    trajectories: Vec<Trajectory>,
    items: Vec<RewardItem>,
    row_nfe: Vec<u32>,
    scored: Result<ScoredBatch, TooManyFailures>,
}

impl RolledOut {
    /// The ranks' shards as one round, in rank (so slot) order; the first
    /// failed scoring in rank order fails the round on every rank.
    fn concat(shards: Vec<Shard>, rollout_s: f64) -> anyhow::Result<Self> {
        let (mut trajectories, mut items) = (Vec::new(), Vec::new());
        let mut stats = GenerationStats::default();
        let (mut scored, mut failure) = (Vec::new(), None);
        for s in shards {
            trajectories.extend(s.trajectories);
            items.extend(s.items);
            stats.nfe.extend(s.row_nfe);
            match s.scored {
                Ok(b) => scored.push(b),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        let scored = match (failure, ScoredBatch::concat(scored)) {
            (Some(e), _) => Err(e),
            (None, Some(b)) => Ok(b),
            (None, None) => anyhow::bail!("internal: a roll-out round without any rollout"),
        };
        Ok(RolledOut {
            trajectories,
            items,
            nfe: stats.mean_nfe(),
            row_nfe: stats.nfe,
            rollout_s,
            scored,
        })
    }
}

/// The groups of one roll-out round, before their scores are judged.
struct RolledOut {
    trajectories: Vec<Trajectory>,
    items: Vec<RewardItem>,
    nfe: f64,
    row_nfe: Vec<u32>,
    rollout_s: f64,
    scored: Result<ScoredBatch, TooManyFailures>,
}

impl<B: AutodiffKernels> Setup<'_, B> {
    /// Step 1: B prompts x G rollouts, scored, with group advantages; groups
    /// without reward variance are replaced by fresh prompts for up to
    /// `resample_rounds` rounds.
    pub(crate) fn collect_groups(&self, arm: &ArmTraining<B>, it: usize) -> Result<Groups, Stop> {
        let (b, g) = (self.c.prompts_per_iteration, self.c.group_size);
        let model = arm.theta.module.valid();
        let policy = arm.phi.module.valid();
        let first = self
            .roll_out(&model, &policy, it, 0, &(0..b).collect::<Vec<_>>())
            .map_err(Stop::Other)?;
        let scored = first.scored.map_err(Stop::Rewards)?;
        let mut rollouts = scored_rollouts(&scored);
        let mut groups = Groups {
            advantages: scored.advantages_scaled(g, self.c.scale_advantages),
            totals: (0..scored.len()).map(|i| scored.total(i)).collect(),
            terms: (0..scored.len())
                .map(|i| dumps::term_scores(&scored, i))
                .collect(),
            zero_variance: 0,
            trajectories: first.trajectories,
            items: first.items,
            scored,
            rollouts: 0,
            nfe: first.nfe,
            row_nfe: first.row_nfe,
            rollout_s: first.rollout_s,
        };
        groups.zero_variance = zero_variance_groups(&groups.totals, g);
        for round in 1..=self.c.resample_rounds as u64 {
            let empty: Vec<usize> = (0..b)
                .filter(|&i| zero_variance_groups(&groups.totals[i * g..(i + 1) * g], g) == 1)
                .collect();
            if empty.is_empty() {
                break;
            }
            let extra = self
                .roll_out(&model, &policy, it, round, &empty)
                .map_err(Stop::Other)?;
            groups.rollout_s += extra.rollout_s;
            // A reward that fails here keeps the first draw's groups.
            let Ok(scored) = extra.scored else {
                break;
            };
            rollouts += scored_rollouts(&scored);
            let rolled = (extra.trajectories, extra.items, extra.row_nfe);
            groups.replace(&empty, rolled, &scored, self.c);
        }
        groups.rollouts = rollouts;
        Ok(groups)
    }

    /// Rolls out G trajectories for the prompts in `slots` and scores them:
    /// each rank its share of the slots, then every rank gathers all of
    /// them, in slot order. Round 0 is the iteration's draw; resampling
    /// rounds key their own.
    fn roll_out(
        &self,
        model: &Denoiser<B::InnerBackend>,
        policy: &SchedulePolicy<B::InnerBackend>,
        it: usize,
        round: u64,
        slots: &[usize],
    ) -> anyhow::Result<RolledOut> {
        let t0 = Instant::now();
        let mine = self.world().share(slots);
        let shard = match mine.is_empty() {
            true => None,
            false => Some(self.roll_out_shard(model, policy, it, round, mine)?),
        };
        let shards = self
            .world()
            .gather::<B::InnerBackend, _>(shard, &self.arm.device)?;
        RolledOut::concat(
            shards.into_iter().flatten().collect(),
            t0.elapsed().as_secs_f64(),
        )
    }

    /// [`Self::roll_out`] of this rank's `slots` (all rows at once).
    fn roll_out_shard(
        &self,
        model: &Denoiser<B::InnerBackend>,
        policy: &SchedulePolicy<B::InnerBackend>,
        it: usize,
        round: u64,
        slots: &[usize],
    ) -> anyhow::Result<Shard> {
        let (seed, g) = (self.cfg().run.seed, self.c.group_size);
        let layout = self.task().layout();
        let key = |parts: &[u64]| {
            let mut k = parts.to_vec();
            if round > 0 {
                k.push(round);
            }
            derive_key(&k)
        };
        let t0 = Instant::now();
        let examples: Vec<Example> = slots
            .iter()
            .map(|&i| {
                self.task()
                    .train_example(key(&[purpose::RL_PROMPTS, seed, it as u64, i as u64]))
            })
            .collect();
        let mut canvas =
            Canvas::from_examples(&examples, g, layout.seq_len(), model.mask_id(), |ex, s| {
                key(&[purpose::ROLLOUT, seed, it as u64, ex.id, s as u64])
            })?;
        let rollout = Rollout {
            model,
            policy: self.mode.uses_schedule().then_some(policy),
            reference: &self.reference,
            steps: self.c.steps,
            act: Act::Sample,
            temperature: None,
            seed: key(&[purpose::SAMPLER, seed, it as u64]),
            device: self.arm.device.clone(),
        };
        let (trajectories, stats) = rollout.run(&mut canvas, true)?;
        let rollout_s = t0.elapsed().as_secs_f64();
        let items: Vec<RewardItem> = trajectories
            .iter()
            .enumerate()
            .map(|(i, t)| RewardItem::new(&examples[i / g], i % g, t.answer(), self.task().vocab()))
            .collect();
        let costs: Vec<RolloutCost> = stats
            .nfe
            .iter()
            .map(|&nfe| RolloutCost {
                nfe: nfe as f64,
                wall_s: rollout_s / trajectories.len().max(1) as f64,
                answer_len: layout.answer_len,
            })
            .collect();
        let scored = self.reward_set.score(&items, &costs);
        Ok(Shard {
            trajectories,
            items,
            row_nfe: stats.nfe.clone(),
            scored,
        })
    }
}

impl Groups {
    /// Puts the resampled groups that have reward variance into the
    /// `slots` they replace.
    fn replace(
        &mut self,
        slots: &[usize],
        (trajectories, items, row_nfe): (Vec<Trajectory>, Vec<RewardItem>, Vec<u32>),
        scored: &ScoredBatch,
        c: &CogrpoConfig,
    ) {
        let g = c.group_size;
        let advantages = scored.advantages_scaled(g, c.scale_advantages);
        let totals: Vec<Option<f32>> = (0..scored.len()).map(|i| scored.total(i)).collect();
        let mut trajectories = trajectories.into_iter();
        let mut items = items.into_iter();
        for (j, &slot) in slots.iter().enumerate() {
            let group: Vec<Trajectory> = trajectories.by_ref().take(g).collect();
            let group_items: Vec<RewardItem> = items.by_ref().take(g).collect();
            let src = j * g..(j + 1) * g;
            if zero_variance_groups(&totals[src.clone()], g) == 0 {
                let dst = slot * g..(slot + 1) * g;
                self.trajectories.splice(dst.clone(), group);
                self.items.splice(dst.clone(), group_items);
                self.row_nfe
                    .splice(dst.clone(), row_nfe[src.clone()].iter().copied());
                self.terms.splice(
                    dst.clone(),
                    src.clone().map(|i| dumps::term_scores(scored, i)),
                );
                self.advantages
                    .splice(dst.clone(), advantages[src.clone()].iter().copied());
                self.totals.splice(dst, totals[src].iter().copied());
            }
        }
    }
}

/// Rollouts of a batch that every weighted reward scored.
fn scored_rollouts(scored: &ScoredBatch) -> u64 {
    (0..scored.len()).filter(|&i| scored.valid(i)).count() as u64
}

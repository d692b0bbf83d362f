//! Step 2 of the generation step: the schedule action `A_t` of every row.
//!
//! The reference (fixed) schedule proposes an action; a learned policy
//! replaces the components it learns by draws from its Gaussian head (a
//! residual on the reference) and, with an order head, picks the positions
//! by Plackett-Luce. What the policy saw and did is written into the row's
//! [`StepRecord`], so that the loss can recompute `log pi_phi(A_t | s_t)`.

use std::ops::Range;

use burn::prelude::*;
use envs::seeding::uniform_f64;
use envs::{Canvas, StepRecord};
use rand::rngs::StdRng;

use crate::blocks::{BlockStep, block_step, blocks};
use crate::draw::choose_uniform;
use crate::generation::{Act, TemperatureOverride};
use crate::learned::components::Component;
use crate::learned::features::{
    BlockPosition, CANDIDATE_FEATURES, PositionStats, candidate_features, state_features,
};
use crate::learned::{ScheduleBatch, SchedulePolicy, gaussian, order};
use crate::network::logits_to_host;
use crate::schedule::{SamplerConfig, SamplerKind, ScheduleAction, reveal_from_ratio};
use mdm::Kernels;

/// The model's logits at every masked position of the active rows, as a
/// learned policy observed them before acting.
pub(crate) struct Observation<B: Backend> {
    /// `[sum of masked counts, vocab]` on the device (conditional, untempered).
    pub logits: Tensor<B, 2>,
    /// The same on the host, where the step draws there.
    pub host: Option<Vec<f32>>,
    /// What the policy reads of each row of `logits` (computed where the
    /// logits are).
    pub stats: Vec<PositionStats>,
    /// Per active row: its masked positions and their first row in `logits`.
    pub blocks: Vec<Block>,
}

/// A row's positions read and the first of its consecutive logit rows.
pub(crate) type Block = (Vec<usize>, usize);

impl<B: Kernels> Observation<B> {
    /// What active row `a`'s policy features are computed from: the stats
    /// of its masked positions inside `range` (the block being decoded).
    pub fn position_stats(&self, a: usize, range: &Range<usize>) -> Vec<PositionStats> {
        let (positions, start) = &self.blocks[a];
        positions
            .iter()
            .enumerate()
            .filter(|(_, p)| range.contains(p))
            .map(|(i, _)| self.stats[start + i])
            .collect()
    }
}

/// The schedule side of a rollout: the reference schedule at the rollout's
/// step count, and the learned policy acting over it.
pub(crate) struct Decider<'a, B: Kernels> {
    /// The learned schedule; `None` follows `reference`.
    pub policy: Option<&'a SchedulePolicy<B>>,
    pub reference: SamplerConfig,
    pub steps: usize,
    pub act: Act,
    /// Replaces the reference's token temperature, and a learned one when
    /// it says so.
    pub temperature: Option<TemperatureOverride>,
    pub device: B::Device,
}

/// The rows a step decides for: the `active` rows (those with masks) and
/// every row's masked count in each of its blocks before the first step
/// (one block unless the reference decodes block-wise), at step `step`.
pub(crate) struct StepRows<'a> {
    pub active: &'a [usize],
    pub n0: &'a [Vec<usize>],
    pub step: usize,
}

/// A row at a step, as its record needs it.
struct RowState<'a> {
    r: usize,
    step: usize,
    /// Its masked positions in the block being decoded.
    masked: &'a [usize],
    block: &'a BlockPosition,
}

/// What the policy reads of `block` among `count` blocks.
fn position(block: &BlockStep, count: usize, block_wise: bool) -> BlockPosition {
    BlockPosition {
        index: block.index,
        count,
        step: block.step,
        steps: block.steps,
        len: block.range.len(),
        block_wise,
    }
}

/// Whether `block`'s step is its last (everything left is revealed).
fn is_last(block: &BlockStep) -> bool {
    block.step + 1 == block.steps
}

/// One row's decision at one step.
pub(crate) struct Decision {
    /// The canvas row.
    pub row: usize,
    /// Its masked positions before the step, increasing (those of the
    /// block being decoded, when decoding block-wise).
    pub masked: Vec<usize>,
    /// The last step of the row's block (of the rollout, with one block):
    /// everything left in it is revealed.
    pub last: bool,
    /// The resolved action: the reference's, with the learned components
    /// and the temperature override in place.
    pub action: ScheduleAction,
    /// Positions chosen before the tokens (uniformly, or by the learned
    /// order, in pick order); `None`: confidence selection among `masked`.
    pub picks: Option<Vec<usize>>,
    /// What the loss needs of the step; kept when the rollout records, and
    /// always for a learned policy (its Gaussian and order heads read it).
    pub record: Option<StepRecord>,
}

/// The continuous schedule values of one row at one step.
#[derive(Debug, Clone, Copy)]
struct Values {
    ratio: f64,
    temperature: f64,
    remask_temperature: f64,
    guidance: f64,
    threshold: f64,
}

impl Values {
    /// A fixed schedule's action with its count as a ratio of the `n`
    /// masked positions (0 when none is left: a learned ratio can empty a
    /// block before its last step).
    fn of(action: &ScheduleAction, n: usize) -> Self {
        Self {
            ratio: if n == 0 {
                0.0
            } else {
                action.reveal as f64 / n as f64
            },
            temperature: action.temperature,
            remask_temperature: action.remask_temperature,
            guidance: action.guidance,
            threshold: action.threshold,
        }
    }

    fn get(&self, c: Component) -> f64 {
        match c {
            Component::Ratio => self.ratio,
            Component::Temperature => self.temperature,
            Component::RemaskTemperature => self.remask_temperature,
            Component::Guidance => self.guidance,
            Component::Threshold => self.threshold,
        }
    }

    fn set(&mut self, c: Component, v: f64) {
        match c {
            Component::Ratio => self.ratio = v,
            Component::Temperature => self.temperature = v,
            Component::RemaskTemperature => self.remask_temperature = v,
            Component::Guidance => self.guidance = v,
            Component::Threshold => self.threshold = v,
        }
    }
}

impl<B: Kernels> Decider<'_, B> {
    fn components(&self) -> &[Component] {
        self.policy.map_or(&[], |p| p.components())
    }

    /// The decision of every active row (draws in the documented order:
    /// reference count, Gaussian components, positions); step records are
    /// made when `keep_records` or a policy reads them.
    pub(crate) fn decide(
        &self,
        canvas: &Canvas,
        rows: &StepRows<'_>,
        observed: Option<&Observation<B>>,
        keep_records: bool,
        rngs: &mut [StdRng],
    ) -> Vec<Decision> {
        let (reference, active, n0, step) = (&self.reference, rows.active, rows.n0, rows.step);
        let keep = keep_records || self.policy.is_some();
        // The reference action, and the record of what the policy saw.
        let mut values = Vec::with_capacity(active.len());
        let mut decisions = Vec::with_capacity(active.len());
        for (a, &r) in active.iter().enumerate() {
            let answer = canvas.prompt_len(r)..canvas.len();
            let all = blocks(answer, reference.block_length);
            let block = block_step(&all, step, self.steps);
            let masked: Vec<usize> = canvas
                .masked_positions(r)
                .into_iter()
                .filter(|p| block.range.contains(p))
                .collect();
            let proposed = reference.with_steps(block.steps).action(
                n0[r][block.index],
                masked.len(),
                block.step,
                &mut rngs[a],
            );
            let v = Values::of(&proposed, masked.len());
            let at = position(&block, all.len(), reference.block_length > 0);
            let record = keep.then(|| {
                let seen = observed.map(|o| o.position_stats(a, &block.range));
                let row = RowState {
                    r,
                    step,
                    masked: &masked,
                    block: &at,
                };
                self.record(canvas, &row, &v, seen.as_deref())
            });
            values.push(v);
            decisions.push(Decision {
                row: r,
                masked,
                last: is_last(&block),
                action: proposed,
                picks: None,
                record,
            });
        }
        if let Some(policy) = self.policy.filter(|p| p.has_gaussian()) {
            self.draw_components(policy, &mut decisions, &mut values, rngs);
        }
        // A temperature override (an evaluation's) replaces the reference's
        // temperature, and a learned one only when it says so.
        let learned_temperature = self.components().contains(&Component::Temperature);
        let temperature_override = self
            .temperature
            .filter(|t| t.over_learned || !learned_temperature)
            .map(|t| t.value);
        for (d, v) in decisions.iter_mut().zip(&values) {
            d.action = ScheduleAction {
                reveal: reveal_from_ratio(v.ratio, d.masked.len(), d.last),
                temperature: temperature_override.unwrap_or(v.temperature),
                remask_temperature: v.remask_temperature,
                guidance: v.guidance,
                threshold: v.threshold,
            };
        }
        if let Some(policy) = self.policy.filter(|p| p.has_order()) {
            self.draw_order(policy, &mut decisions, rngs);
        } else if reference.kind != SamplerKind::Confidence {
            for (d, rng) in decisions.iter_mut().zip(rngs.iter_mut()) {
                d.picks = Some(choose_uniform(d.masked.clone(), d.action.reveal, rng));
            }
        }
        decisions
    }

    /// The record of a row before the step: the state and the reference
    /// action; the policy's features when it observed the state (`seen`).
    fn record(
        &self,
        canvas: &Canvas,
        row: &RowState<'_>,
        reference: &Values,
        seen: Option<&[PositionStats]>,
    ) -> StepRecord {
        let (r, step, masked) = (row.r, row.step, row.masked);
        let comps = self.components();
        // The block's last step reveals all it has left: no ratio or
        // threshold acts. A block emptied before its last step (a learned
        // ratio revealed it all) has nothing left to decide: nothing acts.
        let last = row.block.step + 1 == row.block.steps;
        let empty = masked.is_empty();
        let answer_len = canvas.len() - canvas.prompt_len(r);
        let reference_raw: Vec<f64> = comps.iter().map(|c| c.unmap(reference.get(*c))).collect();
        let with_order = self.policy.is_some_and(|p| p.has_order());
        StepRecord {
            step,
            total_steps: self.steps,
            canvas: canvas.row(r).to_vec(),
            prompt_len: canvas.prompt_len(r),
            revealed: Vec::new(),
            tokens: Vec::new(),
            token_log_probs: Vec::new(),
            temperature: 0.0,
            guidance: 0.0,
            schedule_raw: reference_raw.clone(),
            acted: comps
                .iter()
                .map(|&c| !(empty || c.sets_count() && last))
                .collect(),
            reference_raw,
            schedule_log_prob: 0.0,
            state_features: seen
                .map_or_else(Vec::new, |s| state_features(s, row.block, step, self.steps)),
            candidates: masked.to_vec(),
            candidate_features: match seen {
                Some(s) if with_order => candidate_features(
                    s,
                    masked,
                    canvas.prompt_len(r),
                    answer_len,
                    step,
                    self.steps,
                ),
                _ => Vec::new(),
            },
        }
    }

    /// The learned continuous components from the Gaussian head: two
    /// uniforms per component and row (Box-Muller), the mean in mode.
    fn draw_components(
        &self,
        policy: &SchedulePolicy<B>,
        decisions: &mut [Decision],
        values: &mut [Values],
        rngs: &mut [StdRng],
    ) {
        let comps = self.components();
        let refs: Vec<&StepRecord> = decisions.iter().map(recorded).collect();
        let batch = ScheduleBatch::new(
            &refs,
            comps.len(),
            policy.table_steps(),
            false,
            &self.device,
        );
        let (mean, log_std) = policy.gaussian(&batch).expect("a Gaussian head");
        let (mean, log_std) = (logits_to_host(mean), logits_to_host(log_std));
        for (a, d) in decisions.iter_mut().enumerate() {
            let rec = d.record.as_mut().expect(POLICY_RECORDS);
            for (j, &c) in comps.iter().enumerate() {
                let (m, s) = (
                    mean[a * comps.len() + j] as f64,
                    log_std[a * comps.len() + j] as f64,
                );
                let u = match self.act {
                    Act::Sample => {
                        let z = gaussian::standard_normal(
                            uniform_f64(&mut rngs[a]),
                            uniform_f64(&mut rngs[a]),
                        );
                        m + s.exp() * z
                    }
                    Act::Mode => m,
                };
                rec.schedule_raw[j] = u;
                if rec.acted[j] {
                    rec.schedule_log_prob += gaussian::log_prob(u, m, s);
                    values[a].set(c, c.map(u));
                }
            }
        }
    }

    /// Positions from the Plackett-Luce order head: one Gumbel per candidate
    /// (none in mode), `reveal` picks in pick order.
    fn draw_order(
        &self,
        policy: &SchedulePolicy<B>,
        decisions: &mut [Decision],
        rngs: &mut [StdRng],
    ) {
        let feats: Vec<f32> = decisions
            .iter()
            .flat_map(|d| recorded(d).candidate_features.iter().copied())
            .collect();
        let positions: Vec<i32> = decisions
            .iter()
            .flat_map(|d| {
                let prompt_len = recorded(d).prompt_len;
                d.masked.iter().map(move |&p| (p - prompt_len) as i32)
            })
            .collect();
        let m = positions.len();
        let scores = logits_to_host(policy.order_scores(
            Tensor::from_data(
                TensorData::new(feats, [m, CANDIDATE_FEATURES]),
                &self.device,
            ),
            Tensor::from_data(TensorData::new(positions, [m]), &self.device),
        ));
        let mut offset = 0;
        for (d, rng) in decisions.iter_mut().zip(rngs.iter_mut()) {
            let n = d.masked.len();
            let s: Vec<f64> = scores[offset..offset + n]
                .iter()
                .map(|&x| x as f64)
                .collect();
            offset += n;
            let (chosen, logp) = order::sample(&s, d.action.reveal, rng, self.act == Act::Mode);
            d.record.as_mut().expect(POLICY_RECORDS).schedule_log_prob += logp;
            d.picks = Some(chosen.iter().map(|&i| d.masked[i]).collect());
        }
    }
}

const POLICY_RECORDS: &str = "a learned policy's decisions are recorded";

/// The record of a learned policy's decision (always kept, see [`Decision`]).
fn recorded(d: &Decision) -> &StepRecord {
    d.record.as_ref().expect(POLICY_RECORDS)
}

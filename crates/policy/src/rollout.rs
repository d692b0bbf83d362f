//! The generation step, once, for every way of generating: the fixed
//! samplers (`cogrpo sample`, `cogrpo eval`), the recording rollouts of
//! Co-GRPO and the evaluation of its arms. The policy factorizes as
//! `pi(a_t | s_t) = pi_phi(A_t | s_t) * prod_i p_theta(V_t^i | s_t, A_t)`.
//!
//! One step, for every row that still has masks:
//! 1. **observe** (learned policies only): one batched forward at every
//!    masked position; the schedule policy reads features of those logits;
//! 2. **decide** the schedule action ([`crate::decide`]): the reference
//!    schedule's action, learned components drawn from the Gaussian head,
//!    the reveal count, and the positions when they are chosen before the
//!    tokens (uniformly, or by the learned Plackett-Luce order);
//! 3. **logits** of the rows that reveal something, with guidance: the
//!    observation's logits, or one batched forward at only the positions
//!    read (Zheng et al.: a first-hitting step reads one position, not all);
//! 4. **tokens**, drawn in float64 ([`crate::draw`], on a device
//!    [`crate::device_draw`]); confidence selection
//!    keeps the most confident candidates. The transition writes them.
//!
//! A step where no row reveals anything and no policy observes costs no
//! forward: the denoiser has no time input, so its output would not change.
//!
//! **Reveal counts** (one rule): the reference schedule gives a count `k` of
//! the `n` masked positions (linear or cosine, or a binomial draw for
//! ancestral; it may be 0 when T exceeds the masked count); its ratio
//! `k / n`, or the learned ratio in its place, becomes `round(ratio * n)` in
//! `[0, n]`; the last step reveals every position left.
//!
//! **Random-draw order** (one order): row `r`'s draws at step `t` come from
//! the stream `(SAMPLER, seed, key(r), t)`, in this order: the ancestral
//! count; the learned Gaussian components (two uniforms each, in component
//! order); the positions (Fisher-Yates, or one Gumbel per candidate for the
//! learned order); one uniform per token, in the order of the chosen
//! positions (for confidence selection: a candidate token at every masked
//! position in position order, then one Gumbel per candidate). A trajectory
//! does not depend on its batch, thread or the other rows, and can be
//! replayed.

use std::time::Instant;

use burn::prelude::*;
use envs::seeding::{purpose, stream};
use envs::{Canvas, Problems, StepRecord, Trajectory};
use mdm::Denoiser;
use rand::rngs::StdRng;

use crate::blocks::{block_count, blocks};
use crate::decide::{Block, Decider, Decision, Observation, StepRows};
use crate::device_draw::{draw_on_device, on_device, position_stats_on_device};
use crate::draw::{Draw, most_confident};
use crate::generation::{Act, GenerationStats, SamplerError, TemperatureOverride};
use crate::learned::features::PositionStats;
use crate::learned::{Component, SchedulePolicy};
use crate::network::scale_column;
use crate::network::{check_canvas, guided, guided_logits_at, logits_at_queries, logits_to_host};
use crate::schedule::{SamplerConfig, SamplerKind};
use envs::seeding::uniform_f64;
use mdm::{Kernels, on_one_core};

pub struct Rollout<'a, B: Kernels> {
    pub model: &'a Denoiser<B>,
    /// The learned schedule; `None` follows `reference` exactly (a fixed
    /// sampler).
    pub policy: Option<&'a SchedulePolicy<B>>,
    /// The fixed schedule: reveal rule (`ancestral`, `first_hitting`: random
    /// positions, `confidence`: most confident, Gumbel-perturbed at its
    /// re-mask temperature), count schedule and the components not learned.
    pub reference: &'a SamplerConfig,
    pub steps: usize,
    pub act: Act,
    /// Replaces the reference's token temperature (0: greedy evaluation); a
    /// learned temperature is kept unless the override says otherwise.
    pub temperature: Option<TemperatureOverride>,
    pub seed: u64,
    pub device: B::Device,
}

/// Token logits on the device (and on the host when an observation already
/// brought them there), and each revealing row's block of them.
struct TokenLogits<B: Backend> {
    logits: Tensor<B, 2>,
    host: Option<Vec<f32>>,
    blocks: Vec<Block>,
}

impl<B: Kernels> Rollout<'_, B> {
    /// Fills every mask of `canvas` in `self.steps` steps. Returns one
    /// trajectory per row (with step records when `record`) and the cost.
    pub fn run(
        &self,
        canvas: &mut Canvas,
        record: bool,
    ) -> Result<(Vec<Trajectory>, GenerationStats), SamplerError> {
        self.check(canvas)?;
        let decider = self.decider();
        let rows = canvas.rows();
        // Each row's masked count per block (one block unless block-wise).
        let n0: Vec<Vec<usize>> = (0..rows)
            .map(|r| {
                let answer = canvas.prompt_len(r)..canvas.len();
                let masked = canvas.masked_positions(r);
                blocks(answer, self.reference.block_length)
                    .iter()
                    .map(|b| masked.iter().filter(|p| b.contains(p)).count())
                    .collect()
            })
            .collect();
        let mut trajectories: Vec<Trajectory> = (0..rows)
            .map(|r| Trajectory {
                key: canvas.key(r),
                prompt_len: canvas.prompt_len(r),
                steps: Vec::new(),
                final_tokens: Vec::new(),
            })
            .collect();
        let mut stats = GenerationStats {
            nfe: vec![0; rows],
            ..Default::default()
        };
        for step in 0..self.steps {
            let records = self.step(&decider, canvas, &n0, step, record, &mut stats);
            if record {
                for (r, rec) in records {
                    trajectories[r].steps.push(rec);
                }
            }
        }
        debug_assert!(canvas.is_complete());
        for (r, t) in trajectories.iter_mut().enumerate() {
            t.final_tokens = canvas.row(r).to_vec();
        }
        Ok((trajectories, stats))
    }

    /// As [`Rollout::run`], with the rows split across up to `threads`
    /// threads. burn's CPU backend spreads only its large matmuls over the
    /// cores, so one batch leaves them idle during every other op (rows
    /// split across threads: a batch-64 forward 1.5x faster,
    /// docs/performance.md). Each thread keeps its matmuls on its own core
    /// ([`on_one_core`]). Every row's draws are keyed by the row, so the
    /// result does not depend on `threads`.
    pub fn run_threads(
        &self,
        canvas: &mut Canvas,
        record: bool,
        threads: usize,
    ) -> Result<(Vec<Trajectory>, GenerationStats), SamplerError>
    where
        Self: Sync,
    {
        let rows = canvas.rows();
        let threads = threads.clamp(1, rows.max(1));
        if threads == 1 {
            return self.run(canvas, record);
        }
        let chunk = rows.div_ceil(threads);
        let starts: Vec<usize> = (0..rows).step_by(chunk).collect();
        let mut parts: Vec<Canvas> = starts
            .iter()
            .map(|&s| canvas.sub_canvas(s..(s + chunk).min(rows)))
            .collect();
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .iter_mut()
                .map(|part| scope.spawn(move || on_one_core(|| self.run(part, record))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a generation thread panicked"))
                .collect()
        });
        let mut trajectories = Vec::with_capacity(rows);
        let mut stats = GenerationStats::default();
        for ((start, part), result) in starts.iter().zip(&parts).zip(results) {
            let (t, s) = result?;
            canvas.write_rows(*start, part);
            trajectories.extend(t);
            stats.append(s);
        }
        Ok((trajectories, stats))
    }

    fn check(&self, canvas: &Canvas) -> Result<(), SamplerError> {
        let mut p = Problems::default();
        p.section("sampler", self.reference);
        p.at_least_one("sampler.steps", self.steps);
        let learns_threshold = self
            .policy
            .is_some_and(|s| s.components().contains(&Component::Threshold));
        if self.reference.threshold > 0.0 && self.policy.is_some() && !learns_threshold {
            p.bad(
                "sampler.threshold",
                "a learned schedule decides its own reveal counts: learn the threshold too \
                 (learn = [\"threshold\", ...]) or leave it to fixed confidence samplers",
            );
        }
        if self.reference.threshold > 0.0 && self.policy.is_some_and(|s| s.has_order()) {
            p.bad(
                "sampler.threshold",
                "a learned order picks the positions itself; Fast-dLLM's threshold reveals by \
                 the model's confidence",
            );
        }
        if learns_threshold && self.reference.threshold <= 0.0 {
            p.bad(
                "sampler.threshold",
                "a learned threshold is a residual on the reference's: set one in (0, 1), e.g. 0.9",
            );
        }
        if self.reference.kind == SamplerKind::Ancestral && self.policy.is_some() {
            p.bad(
                "sampler.kind",
                "ancestral sampling draws its reveal counts at random; a learned schedule \
                 builds on `first_hitting` or `confidence`",
            );
        }
        let most_blocks = (0..canvas.rows())
            .map(|r| {
                block_count(
                    canvas.len() - canvas.prompt_len(r),
                    self.reference.block_length,
                )
            })
            .max()
            .unwrap_or(1);
        if self.steps < most_blocks {
            p.bad(
                "sampler.block_length",
                format!(
                    "{most_blocks} blocks need at least as many steps, got {}",
                    self.steps
                ),
            );
        }
        if let Some(first) = p.into_vec().into_iter().next() {
            return Err(SamplerError::Config(first));
        }
        check_canvas(self.model, canvas)
    }

    /// Who decides each row's schedule action: the policy over the
    /// reference at this rollout's step count.
    fn decider(&self) -> Decider<'_, B> {
        Decider {
            policy: self.policy,
            reference: self.reference.with_steps(self.steps),
            steps: self.steps,
            act: self.act,
            temperature: self.temperature,
            device: self.device.clone(),
        }
    }

    /// One step for every row that still has masks; returns their records
    /// (all of them when `keep_records`, else at most a policy's).
    fn step(
        &self,
        decider: &Decider<'_, B>,
        canvas: &mut Canvas,
        n0: &[Vec<usize>],
        step: usize,
        keep_records: bool,
        stats: &mut GenerationStats,
    ) -> Vec<(usize, StepRecord)> {
        let active: Vec<usize> = (0..canvas.rows())
            .filter(|&r| canvas.n_masked(r) > 0)
            .collect();
        if active.is_empty() {
            return Vec::new();
        }
        let mut rngs: Vec<StdRng> = active
            .iter()
            .map(|&r| stream(&[purpose::SAMPLER, self.seed, canvas.key(r), step as u64]))
            .collect();
        // 1. Observe.
        let observed = self.policy.map(|_| self.observe(canvas, &active, stats));
        // 2. Decide.
        let rows = StepRows {
            active: &active,
            n0,
            step,
        };
        let mut decisions =
            decider.decide(canvas, &rows, observed.as_ref(), keep_records, &mut rngs);
        // 3. Logits of the rows that reveal something.
        let revealing: Vec<usize> = (0..active.len())
            .filter(|&a| decisions[a].action.reveal > 0)
            .collect();
        if !revealing.is_empty() {
            let logits = self.token_logits(canvas, &decisions, &revealing, observed, stats);
            // 4. Tokens, and the transition.
            let draws = match on_device::<B>() {
                true => device_draws(&decisions, &revealing, logits, &mut rngs),
                false => self.host_draws(&decisions, &revealing, logits, &mut rngs),
            };
            for (row_draws, &a) in draws.into_iter().zip(&revealing) {
                let d = &mut decisions[a];
                for draw in row_draws {
                    canvas.reveal(d.row, draw.position, draw.token);
                    if let Some(rec) = &mut d.record {
                        rec.revealed.push(draw.position);
                        rec.tokens.push(draw.token);
                        rec.token_log_probs.push(draw.log_prob);
                    }
                }
            }
        }
        decisions
            .into_iter()
            .filter_map(|d| {
                let mut rec = d.record?;
                rec.temperature = d.action.temperature;
                rec.guidance = d.action.guidance;
                Some((d.row, rec))
            })
            .collect()
    }

    /// Step 1: the conditional logits at every masked position of `active`.
    fn observe(
        &self,
        canvas: &Canvas,
        active: &[usize],
        stats: &mut GenerationStats,
    ) -> Observation<B> {
        let masked: Vec<Vec<usize>> = active.iter().map(|&r| canvas.masked_positions(r)).collect();
        let network = Instant::now();
        let logits = logits_at_queries(
            self.model,
            &canvas.tokens_of_rows(active),
            canvas.len(),
            &masked,
            &self.device,
        );
        let (host, position_stats) = match on_device::<B>() {
            true => (None, position_stats_on_device(logits.clone())),
            false => {
                let host = logits_to_host(logits.clone());
                let v = self.model.vocab_size();
                let stats = host.chunks(v).map(PositionStats::of).collect();
                (Some(host), stats)
            }
        };
        stats.network_s += network.elapsed().as_secs_f64();
        stats.forwards += 1;
        for &r in active {
            stats.nfe[r] += 1;
        }
        Observation {
            logits,
            host,
            stats: position_stats,
            blocks: blocks_of(masked),
        }
    }

    /// Step 4 on the host: each revealing row's draws from the logits read
    /// back.
    fn host_draws(
        &self,
        decisions: &[Decision],
        revealing: &[usize],
        logits: TokenLogits<B>,
        rngs: &mut [StdRng],
    ) -> Vec<Vec<Draw>> {
        let host = logits.host.unwrap_or_else(|| logits_to_host(logits.logits));
        let v = self.model.vocab_size();
        logits
            .blocks
            .iter()
            .zip(revealing)
            .map(|(block, &a)| {
                let at = |pos: usize| {
                    let i = block.0.binary_search(&pos).expect("a position read");
                    &host[(block.1 + i) * v..(block.1 + i + 1) * v]
                };
                draw_tokens(&decisions[a], at, &mut rngs[a])
            })
            .collect()
    }

    /// The guided logits of the `revealing` decisions (on canvas `rows`)
    /// from the conditional logits a policy observed: the prompt-masked
    /// branch at the same positions (one forward), mixed at each row's
    /// `guidance`; with the positions queried per row.
    fn guided_observation(
        &self,
        canvas: &Canvas,
        decisions: &[Decision],
        (revealing, rows): (&[usize], &[usize]),
        obs: Observation<B>,
        guidance: &[f64],
    ) -> (Tensor<B, 2>, Vec<Vec<usize>>) {
        let queries: Vec<Vec<usize>> = revealing
            .iter()
            .map(|&a| decisions[a].masked.clone())
            .collect();
        // The observed rows of each decision's candidates (the block being
        // decoded, when block-wise: the observation read every mask).
        let index: Vec<i32> = revealing
            .iter()
            .flat_map(|&a| {
                let (positions, start) = &obs.blocks[a];
                let masked = &decisions[a].masked;
                positions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| masked.binary_search(p).is_ok())
                    .map(move |(i, _)| (start + i) as i32)
            })
            .collect();
        let k = index.len();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [k]), &self.device);
        let cond = obs.logits.select(0, index);
        let uncond = logits_at_queries(
            self.model,
            &canvas.tokens_with_prompt_masked(rows),
            canvas.len(),
            &queries,
            &self.device,
        );
        let scale = scale_column(&queries, guidance, &self.device);
        (guided(cond, uncond, scale), queries)
    }

    /// Step 3: the guided logits of the `revealing` decisions at the
    /// positions their tokens are drawn from. A guided row costs one more
    /// denoiser evaluation (the prompt-masked branch).
    fn token_logits(
        &self,
        canvas: &Canvas,
        decisions: &[Decision],
        revealing: &[usize],
        observed: Option<Observation<B>>,
        stats: &mut GenerationStats,
    ) -> TokenLogits<B> {
        let rows: Vec<usize> = revealing.iter().map(|&a| decisions[a].row).collect();
        let guidance: Vec<f64> = revealing
            .iter()
            .map(|&a| decisions[a].action.guidance)
            .collect();
        let guided_any = guidance.iter().any(|&w| w != 0.0);
        let network = Instant::now();
        let (logits, host, blocks) = match observed {
            // The observation already holds the conditional logits.
            Some(obs) if !guided_any => {
                let blocks = revealing.iter().map(|&a| obs.blocks[a].clone()).collect();
                (obs.logits, obs.host, blocks)
            }
            Some(obs) => {
                let (logits, queries) =
                    self.guided_observation(canvas, decisions, (revealing, &rows), obs, &guidance);
                stats.forwards += 1;
                (logits, None, blocks_of(queries))
            }
            None => {
                let queries: Vec<Vec<usize>> = revealing
                    .iter()
                    .map(|&a| {
                        let d = &decisions[a];
                        let mut q = d.picks.clone().unwrap_or_else(|| d.masked.clone());
                        q.sort_unstable();
                        q
                    })
                    .collect();
                let logits =
                    guided_logits_at(self.model, canvas, &rows, &queries, &guidance, &self.device);
                stats.forwards += 1;
                for &r in &rows {
                    stats.nfe[r] += 1;
                }
                (logits, None, blocks_of(queries))
            }
        };
        stats.network_s += network.elapsed().as_secs_f64();
        for (&r, &w) in rows.iter().zip(&guidance) {
            if w != 0.0 {
                stats.nfe[r] += 1;
            }
        }
        TokenLogits {
            logits,
            host,
            blocks,
        }
    }
}

/// Blocks of consecutive queries: each row's positions and its first row.
fn blocks_of(queries: Vec<Vec<usize>>) -> Vec<Block> {
    let mut offset = 0;
    queries
        .into_iter()
        .map(|q| {
            let start = offset;
            offset += q.len();
            (q, start)
        })
        .collect()
}

/// Step 4 on the device ([`crate::device_draw`]): every revealing row's
/// positions in the host path's order (the picks, or every masked position
/// for confidence selection), one uniform each from the row's stream as
/// the host path reads them, all drawn at once; then confidence selection
/// on the host, from the rows' streams as before.
fn device_draws<B: Kernels>(
    decisions: &[Decision],
    revealing: &[usize],
    logits: TokenLogits<B>,
    rngs: &mut [StdRng],
) -> Vec<Vec<Draw>> {
    let (mut index, mut positions, mut temperatures, mut uniforms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut counts = Vec::with_capacity(revealing.len());
    for (block, &a) in logits.blocks.iter().zip(revealing) {
        let d = &decisions[a];
        let at = d.picks.as_ref().unwrap_or(&d.masked);
        for &pos in at {
            let i = block.0.binary_search(&pos).expect("a position read");
            index.push((block.1 + i) as i32);
            positions.push(pos);
            let t = d.action.temperature;
            temperatures.push(t);
            uniforms.push(if t > 0.0 {
                uniform_f64(&mut rngs[a])
            } else {
                0.0
            });
        }
        counts.push(at.len());
    }
    let device = logits.logits.device();
    let k = index.len();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [k]), &device);
    let drawn = draw_on_device(
        logits.logits.select(0, index),
        &positions,
        &temperatures,
        &uniforms,
    );
    let mut drawn = drawn.into_iter();
    revealing
        .iter()
        .zip(counts)
        .map(|(&a, count)| {
            let d = &decisions[a];
            let row: Vec<Draw> = drawn.by_ref().take(count).collect();
            match d.picks {
                Some(_) => row,
                None => {
                    let k = confident_count(d, &row);
                    most_confident(row, k, d.action.remask_temperature, &mut rngs[a])
                }
            }
        })
        .collect()
}

/// Step 4 for one row: the tokens at the chosen positions in pick order, or
/// for confidence selection a candidate at every masked position and the
/// most confident ones.
fn draw_tokens<'l>(
    d: &Decision,
    logits_at: impl Fn(usize) -> &'l [f32],
    rng: &mut StdRng,
) -> Vec<Draw> {
    match &d.picks {
        Some(picks) => picks
            .iter()
            .map(|&pos| Draw::at(pos, logits_at(pos), d.action.temperature, rng))
            .collect(),
        None => {
            let candidates: Vec<Draw> = d
                .masked
                .iter()
                .map(|&pos| Draw::at(pos, logits_at(pos), d.action.temperature, rng))
                .collect();
            let k = confident_count(d, &candidates);
            most_confident(candidates, k, d.action.remask_temperature, rng)
        }
    }
}

/// How many of `candidates` confidence selection reveals: the schedule's
/// count, or with Fast-dLLM's threshold every candidate whose token
/// probability reaches it (the schedule's count at least; a block's last
/// step reveals all it has left).
fn confident_count(d: &Decision, candidates: &[Draw]) -> usize {
    let threshold = d.action.threshold;
    if threshold <= 0.0 || d.last {
        return d.action.reveal;
    }
    let ln_threshold = threshold.ln();
    let above = candidates
        .iter()
        .filter(|c| c.confidence >= ln_threshold)
        .count();
    above.max(d.action.reveal)
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    type B = Flex;

    /// The whole generation step with step 4 on the device or on the host
    /// gives the same trajectories: fixed samplers (greedy, tempered,
    /// Gumbel-perturbed confidence, guided first-hitting, ancestral) and a
    /// learned schedule (whose observation brings the logits to the host),
    /// over the whole answer and block-wise.
    #[test]
    fn rollouts_are_the_same_with_draws_on_the_device() {
        use super::Rollout;
        use crate::device_draw::DRAW_ON_DEVICE;
        use crate::generation::Act;
        use crate::learned::{Component, HeadKind, SchedulePolicyConfig};
        use crate::schedule::{SamplerConfig, SamplerKind};
        use envs::Canvas;
        use mdm::{Denoiser, DenoiserConfig};

        let dev = Default::default();
        let m: Denoiser<B> = DenoiserConfig::new(5, 16, 1, 2, 32, 6).init(7, &dev);
        let learned = SchedulePolicyConfig {
            kind: HeadKind::PerStep,
            learn: vec![Component::Ratio, Component::Temperature],
            seed: 3,
            ..Default::default()
        }
        .init::<B>(3, 4, &SamplerConfig::new(SamplerKind::Confidence, 3), &dev);
        let fixed = |kind, temperature, remask, guidance| {
            let mut c = SamplerConfig::new(kind, 3);
            (c.temperature, c.remask_temperature, c.guidance) = (temperature, remask, guidance);
            c
        };
        let cases = [
            (fixed(SamplerKind::Confidence, 0.0, 0.0, 0.0), false),
            (fixed(SamplerKind::Confidence, 1.0, 0.5, 0.0), false),
            (fixed(SamplerKind::FirstHitting, 1.0, 0.0, 0.5), false),
            (fixed(SamplerKind::Ancestral, 0.7, 0.0, 0.0), false),
            (fixed(SamplerKind::Confidence, 1.0, 0.0, 0.0), true),
            // Fast-dLLM's threshold decides the counts in the draws.
            (
                SamplerConfig {
                    threshold: 0.3,
                    block_length: 2,
                    ..fixed(SamplerKind::Confidence, 0.0, 0.0, 0.0)
                },
                false,
            ),
            // Block-wise (two blocks of two), with a learned guided schedule.
            (
                SamplerConfig {
                    block_length: 2,
                    guidance: 0.5,
                    ..fixed(SamplerKind::Confidence, 1.0, 0.0, 0.0)
                },
                true,
            ),
        ];
        for (reference, with_policy) in &cases {
            let run = |on_device: bool| {
                DRAW_ON_DEVICE.with(|c| c.set(Some(on_device)));
                let mut canvas = Canvas::new(6, 5);
                for r in 0..8 {
                    canvas.push_row(&[1, 2], 1000 + r).expect("a row");
                }
                let rollout = Rollout {
                    model: &m,
                    policy: with_policy.then_some(&learned),
                    reference,
                    steps: 3,
                    act: Act::Sample,
                    temperature: None,
                    seed: 11,
                    device: dev,
                };
                let (trajectories, _) = rollout.run(&mut canvas, true).expect("a rollout");
                DRAW_ON_DEVICE.with(|c| c.set(None));
                trajectories
            };
            let (host, device) = (run(false), run(true));
            let case = format!("{:?} policy {with_policy}", reference.kind);
            let observed = host
                .iter()
                .any(|t| t.steps.iter().any(|s| !s.state_features.is_empty()));
            assert_eq!(
                observed, *with_policy,
                "{case}: the policy's features are compared"
            );
            for (h, d) in host.iter().zip(&device) {
                assert_eq!(h.final_tokens, d.final_tokens, "{case}");
                assert_eq!(h.steps.len(), d.steps.len(), "{case}");
                for (hs, ds) in h.steps.iter().zip(&d.steps) {
                    assert_eq!(
                        (&hs.revealed, &hs.tokens),
                        (&ds.revealed, &ds.tokens),
                        "{case}"
                    );
                    for (a, b) in hs.token_log_probs.iter().zip(&ds.token_log_probs) {
                        assert!((a - b).abs() < 1e-12, "{case}: {a} vs {b}");
                    }
                    // What the policy saw and did: features, the schedule
                    // sample and its log-probability.
                    assert_eq!(hs.state_features, ds.state_features, "{case}");
                    assert_eq!(hs.candidate_features, ds.candidate_features, "{case}");
                    assert_eq!(hs.schedule_raw, ds.schedule_raw, "{case}");
                    let (a, b) = (hs.schedule_log_prob, ds.schedule_log_prob);
                    assert!((a - b).abs() < 1e-12, "{case}: {a} vs {b}");
                }
            }
        }
    }
}

//! Rollouts of the generation MDP with the factorized policy
//! `pi(a_t | s_t) = pi_phi(A_t | s_t) * prod_i p_theta(V_t^i | s_t, A_t)`.
//!
//! All rows of a canvas (all prompts x all group members) advance together:
//! one batched forward per step (two with guidance), logits at the masked
//! positions copied to the host once, then per row: features, the schedule
//! action (reference values, learned components drawn from the Gaussian,
//! positions from the Plackett-Luce policy or the reference rule), and the
//! tokens, drawn in float64. With `record` set, every step is kept as an
//! [`envs::StepRecord`] holding what the loss needs to recompute both factors.
//!
//! Row `r`'s draws at step `t` come from the stream `(SAMPLER, seed, key(r),
//! t)`: a trajectory does not depend on its batch and can be replayed.

use std::time::Instant;

use burn::prelude::*;
use envs::seeding::{purpose, stream, uniform_f64};
use envs::{Canvas, StepRecord, Trajectory};
use mdm::Denoiser;
use rand::rngs::StdRng;

use crate::categorical::{Categorical, argmax, gumbel, log_softmax_at};
use crate::learned::components::Component;
use crate::learned::features::{
    CANDIDATE_FEATURES, PositionStats, candidate_features, state_features,
};
use crate::learned::{ScheduleBatch, SchedulePolicy, gaussian, order};
use crate::sampler::{
    GenerationStats, SamplerError, check_canvas, choose_uniform, logits_at_queries, logits_to_host,
};
use crate::schedule::{SamplerConfig, SamplerKind};

/// How the schedule policy acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Draw from the policy (training rollouts).
    Sample,
    /// The most likely action: the Gaussian's mean, the top-scored positions
    /// (evaluation).
    Mode,
}

pub struct Rollout<'a, B: Backend> {
    pub model: &'a Denoiser<B>,
    /// The learned schedule; `None` follows `reference` exactly.
    pub policy: Option<&'a SchedulePolicy<B>>,
    /// The fixed schedule: reveal rule (`first_hitting`: random positions,
    /// `confidence`: most confident, Gumbel-perturbed at its re-mask
    /// temperature), count schedule and the components not learned.
    pub reference: &'a SamplerConfig,
    pub steps: usize,
    pub act: Act,
    /// Replaces the token temperature (0: greedy evaluation).
    pub temperature: Option<f64>,
    pub seed: u64,
    pub device: B::Device,
}

/// The resolved action of one row at one step.
struct Action {
    reveal: usize,
    temperature: f64,
    remask_temperature: f64,
    guidance: f64,
}

impl<B: Backend> Rollout<'_, B> {
    /// Fills every mask of `canvas` in `self.steps` steps. Returns one
    /// trajectory per row (with step records when `record`) and the cost.
    pub fn run(
        &self,
        canvas: &mut Canvas,
        record: bool,
    ) -> Result<(Vec<Trajectory>, GenerationStats), SamplerError> {
        self.check(canvas)?;
        let rows = canvas.rows();
        let n0: Vec<usize> = (0..rows).map(|r| canvas.n_masked(r)).collect();
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
            let records = self.step(canvas, &n0, step, &mut stats)?;
            if record {
                for (r, rec) in records {
                    trajectories[r].steps.push(rec);
                }
            }
        }
        for (r, t) in trajectories.iter_mut().enumerate() {
            t.final_tokens = canvas.row(r).to_vec();
        }
        Ok((trajectories, stats))
    }

    fn check(&self, canvas: &Canvas) -> Result<(), SamplerError> {
        let bad = |f: &'static str, m: &str| Err(SamplerError::Config(f, m.into()));
        if self.steps == 0 {
            return bad("steps", "must be at least 1");
        }
        if self.reference.kind == SamplerKind::Ancestral {
            return bad(
                "kind",
                "ancestral sampling draws its reveal counts at random; a learned schedule \
                 builds on `first_hitting` or `confidence`",
            );
        }
        self.reference
            .validate()
            .map_err(|(f, m)| SamplerError::Config(f, m))?;
        check_canvas(self.model, canvas)
    }

    fn components(&self) -> &[Component] {
        self.policy.map_or(&[], |p| p.components())
    }

    /// One step for every row that still has masks; returns their records.
    fn step(
        &self,
        canvas: &mut Canvas,
        n0: &[usize],
        step: usize,
        stats: &mut GenerationStats,
    ) -> Result<Vec<(usize, StepRecord)>, SamplerError> {
        let total = self.steps;
        let last = step + 1 == total;
        let active: Vec<usize> = (0..canvas.rows())
            .filter(|&r| canvas.n_masked(r) > 0)
            .collect();
        if active.is_empty() {
            return Ok(Vec::new());
        }
        let comps = self.components().to_vec();
        let guided = self.reference.guidance != 0.0 || comps.contains(&Component::Guidance);
        let masked: Vec<Vec<usize>> = active.iter().map(|&r| canvas.masked_positions(r)).collect();
        let vocab = self.model.vocab_size();
        let network = Instant::now();
        let cond = self.masked_logits(canvas, &active, &masked, false);
        let uncond = guided.then(|| self.masked_logits(canvas, &active, &masked, true));
        stats.network_s += network.elapsed().as_secs_f64();
        stats.forwards += 1;
        let mut rngs: Vec<StdRng> = active
            .iter()
            .map(|&r| stream(&[purpose::SAMPLER, self.seed, canvas.key(r), step as u64]))
            .collect();

        // The reference action of every row; learned components replace
        // their values below.
        let mut values: Vec<Values> = active
            .iter()
            .enumerate()
            .map(|(a, &r)| self.reference_values(n0[r], masked[a].len(), step))
            .collect();

        // The state as the schedule policy sees it.
        let mut records = Vec::with_capacity(active.len());
        let mut offsets = Vec::with_capacity(active.len());
        let mut offset = 0;
        for (a, &r) in active.iter().enumerate() {
            let n = masked[a].len();
            let pos_stats: Vec<PositionStats> = (0..n)
                .map(|i| PositionStats::of(&cond[(offset + i) * vocab..(offset + i + 1) * vocab]))
                .collect();
            let answer_len = canvas.len() - canvas.prompt_len(r);
            let reference = values[a];
            let reference_raw: Vec<f64> =
                comps.iter().map(|c| c.unmap(reference.get(*c))).collect();
            records.push(StepRecord {
                step,
                total_steps: total,
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
                    .map(|&c| c != Component::Ratio || !last)
                    .collect(),
                reference_raw,
                schedule_log_prob: 0.0,
                state_features: state_features(&pos_stats, answer_len, step, total),
                candidates: masked[a].clone(),
                candidate_features: if self.policy.is_some_and(|p| p.has_order()) {
                    candidate_features(
                        &pos_stats,
                        &masked[a],
                        canvas.prompt_len(r),
                        answer_len,
                        step,
                        total,
                    )
                } else {
                    Vec::new()
                },
            });
            offsets.push(offset);
            offset += n;
        }

        // Continuous components from the Gaussian head.
        if let Some(policy) = self.policy.filter(|p| p.has_gaussian()) {
            let refs: Vec<&StepRecord> = records.iter().collect();
            let table = policy.table_steps();
            let batch = ScheduleBatch::new(&refs, comps.len(), table, false, &self.device);
            let (mean, log_std) = policy.gaussian(&batch).expect("a Gaussian head");
            let mean = host(mean);
            let log_std = host(log_std);
            for (a, rec) in records.iter_mut().enumerate() {
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

        // How many positions each row reveals.
        let actions: Vec<Action> = (0..active.len())
            .map(|a| {
                let n = masked[a].len();
                let v = &values[a];
                let reveal = if last {
                    n
                } else {
                    ((v.ratio * n as f64).round() as usize).clamp(1, n)
                };
                Action {
                    reveal,
                    temperature: self.temperature.unwrap_or(v.temperature),
                    remask_temperature: v.remask_temperature,
                    guidance: v.guidance,
                }
            })
            .collect();

        // Positions from the Plackett-Luce policy, when there is one.
        let mut picks: Vec<Option<Vec<usize>>> = vec![None; active.len()];
        if let Some(policy) = self.policy.filter(|p| p.has_order()) {
            let feats: Vec<f32> = records
                .iter()
                .flat_map(|r| r.candidate_features.iter().copied())
                .collect();
            let positions: Vec<i32> = records
                .iter()
                .flat_map(|r| r.candidates.iter().map(|&p| (p - r.prompt_len) as i32))
                .collect();
            let m = positions.len();
            let scores = host(policy.order_scores(
                Tensor::from_data(
                    TensorData::new(feats, [m, CANDIDATE_FEATURES]),
                    &self.device,
                ),
                Tensor::from_data(TensorData::new(positions, [m]), &self.device),
            ));
            for (a, rec) in records.iter_mut().enumerate() {
                let s: Vec<f64> = scores[offsets[a]..offsets[a] + masked[a].len()]
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let greedy = self.act == Act::Mode;
                let (chosen, logp) = order::sample(&s, actions[a].reveal, &mut rngs[a], greedy);
                rec.schedule_log_prob += logp;
                picks[a] = Some(chosen.iter().map(|&i| masked[a][i]).collect());
            }
        }

        // Tokens, and the transition.
        for (a, &r) in active.iter().enumerate() {
            let action = &actions[a];
            stats.nfe[r] += if guided { 2 } else { 1 };
            let n = masked[a].len();
            let logits_at = |i: usize| -> Vec<f32> {
                let c = &cond[(offsets[a] + i) * vocab..(offsets[a] + i + 1) * vocab];
                match &uncond {
                    Some(u) if action.guidance != 0.0 => {
                        let u = &u[(offsets[a] + i) * vocab..(offsets[a] + i + 1) * vocab];
                        let w = (1.0 + action.guidance) as f32;
                        // SMDM's unsupervised CFG: l_u + (1 + w) (l_c - l_u)
                        c.iter().zip(u).map(|(c, u)| u + w * (c - u)).collect()
                    }
                    _ => c.to_vec(),
                }
            };
            let index_of = |pos: usize| masked[a].binary_search(&pos).expect("a masked position");
            let rng = &mut rngs[a];
            let chosen: Vec<(usize, u32, f64)> = match (&picks[a], self.reference.kind) {
                (Some(p), _) => p
                    .iter()
                    .map(|&pos| {
                        let (tok, lp) = draw(&logits_at(index_of(pos)), action.temperature, rng);
                        (pos, tok, lp)
                    })
                    .collect(),
                (None, SamplerKind::Confidence) => {
                    let mut scored: Vec<(f64, usize, u32, f64)> = (0..n)
                        .map(|i| {
                            let l = logits_at(i);
                            let (tok, lp) = draw(&l, action.temperature, rng);
                            let noise = if action.remask_temperature > 0.0 {
                                action.remask_temperature * gumbel(uniform_f64(rng))
                            } else {
                                0.0
                            };
                            (
                                log_softmax_at(&l, tok as usize) + noise,
                                masked[a][i],
                                tok,
                                lp,
                            )
                        })
                        .collect();
                    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                    scored
                        .into_iter()
                        .take(action.reveal)
                        .map(|(_, p, t, lp)| (p, t, lp))
                        .collect()
                }
                (None, _) => choose_uniform(masked[a].clone(), action.reveal, rng)
                    .into_iter()
                    .map(|pos| {
                        let (tok, lp) = draw(&logits_at(index_of(pos)), action.temperature, rng);
                        (pos, tok, lp)
                    })
                    .collect(),
            };
            let rec = &mut records[a];
            rec.temperature = action.temperature;
            rec.guidance = action.guidance;
            for (pos, tok, lp) in chosen {
                canvas.reveal(r, pos, tok);
                rec.revealed.push(pos);
                rec.tokens.push(tok);
                rec.token_log_probs.push(lp);
            }
        }
        Ok(active.into_iter().zip(records).collect())
    }

    fn reference_values(&self, n0: usize, n: usize, step: usize) -> Values {
        let k = self
            .reference
            .schedule
            .reveal_count(n0, n, step, self.steps);
        Values {
            ratio: k as f64 / n.max(1) as f64,
            temperature: self.reference.temperature,
            remask_temperature: self.reference.remask_temperature,
            guidance: self.reference.guidance,
        }
    }

    /// Logits at each active row's masked positions, row-major on the host.
    fn masked_logits(
        &self,
        canvas: &Canvas,
        active: &[usize],
        masked: &[Vec<usize>],
        prompt_masked: bool,
    ) -> Vec<f32> {
        let tokens = if prompt_masked {
            canvas.tokens_with_prompt_masked(active)
        } else {
            canvas.tokens_of_rows(active)
        };
        debug_assert_eq!(active.len(), masked.len());
        logits_to_host(logits_at_queries(
            self.model,
            &tokens,
            canvas.len(),
            masked,
            &self.device,
        ))
    }
}

/// The continuous schedule values of one row at one step.
#[derive(Debug, Clone, Copy)]
struct Values {
    ratio: f64,
    temperature: f64,
    remask_temperature: f64,
    guidance: f64,
}

impl Values {
    fn get(&self, c: Component) -> f64 {
        match c {
            Component::Ratio => self.ratio,
            Component::Temperature => self.temperature,
            Component::RemaskTemperature => self.remask_temperature,
            Component::Guidance => self.guidance,
        }
    }

    fn set(&mut self, c: Component, v: f64) {
        match c {
            Component::Ratio => self.ratio = v,
            Component::Temperature => self.temperature = v,
            Component::RemaskTemperature => self.remask_temperature = v,
            Component::Guidance => self.guidance = v,
        }
    }
}

/// A token from `softmax(logits / temperature)` in float64 and its
/// log-probability; greedy (log-probability 0) at temperature 0.
fn draw(logits: &[f32], temperature: f64, rng: &mut StdRng) -> (u32, f64) {
    if temperature == 0.0 {
        (argmax(logits) as u32, 0.0)
    } else {
        let c = Categorical::from_logits(logits, temperature);
        let i = c.sample(uniform_f64(rng));
        (i as u32, c.log_prob(i))
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float tensor data")
}

//! Generation: a fixed schedule (or, later, a learned one) plus the model.
//!
//! One step for the rows that reveal something:
//! 1. the schedule action says how many positions to reveal and how to pick;
//! 2. for random selection the positions are drawn first, so only their
//!    logits are needed (Zheng et al.: the first-hitting sampler reads one
//!    position per step instead of a categorical over every position);
//! 3. one batched forward (two with guidance: conditional and prompt-masked
//!    rows in the same batch), logits gathered on the device at the positions
//!    needed and copied to the host;
//! 4. tokens drawn in float64 from `softmax(logits / temperature)`.
//!
//! A step where no row reveals anything costs no forward pass: the denoiser
//! has no time input, so its output would not change.
//!
//! Every random draw of row r at step t comes from the stream
//! `(SAMPLER, seed, key(r), t)`, independent of batching.

use std::time::Instant;

use burn::prelude::*;
use envs::Canvas;
use envs::seeding::{purpose, stream, uniform_f64};
use mdm::Denoiser;
use rand::Rng;
use rand::rngs::StdRng;

use crate::categorical::{Categorical, argmax, gumbel, log_softmax_at};
use crate::schedule::{SamplerConfig, ScheduleAction, Selection};

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("sampler.{0}: {1}")]
    Config(&'static str, String),
    #[error("canvas rows have {canvas} positions but the model holds at most {model}")]
    TooLong { canvas: usize, model: usize },
    #[error("canvas uses mask id {canvas} but the model's mask id is {model}")]
    MaskId { canvas: u32, model: u32 },
}

/// Cost of a generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationStats {
    /// Denoiser evaluations per row (a guided step counts two).
    pub nfe: Vec<u32>,
    /// Batched forward passes run.
    pub forwards: usize,
    /// Wall seconds spent in the denoiser: the forward passes and reading
    /// their logits back (summed over threads). The rest of a generation's
    /// time is the sampler's own work: schedules, draws, canvas updates.
    pub network_s: f64,
}

impl GenerationStats {
    pub fn mean_nfe(&self) -> f64 {
        if self.nfe.is_empty() {
            return 0.0;
        }
        self.nfe.iter().map(|&n| n as f64).sum::<f64>() / self.nfe.len() as f64
    }
}

pub struct Sampler<'a, B: Backend> {
    model: &'a Denoiser<B>,
    device: B::Device,
    seed: u64,
}

impl<'a, B: Backend> Sampler<'a, B> {
    pub fn new(model: &'a Denoiser<B>, device: &B::Device, seed: u64) -> Self {
        Self {
            model,
            device: device.clone(),
            seed,
        }
    }

    /// Fills every mask of `canvas` following the fixed schedule `cfg`.
    pub fn generate(
        &self,
        canvas: &mut Canvas,
        cfg: &SamplerConfig,
    ) -> Result<GenerationStats, SamplerError> {
        cfg.validate()
            .map_err(|(f, m)| SamplerError::Config(f, m))?;
        if cfg.steps == 0 {
            return Err(SamplerError::Config("steps", "must be at least 1".into()));
        }
        self.check(canvas)?;
        let n0: Vec<usize> = (0..canvas.rows()).map(|r| canvas.n_masked(r)).collect();
        let mut stats = GenerationStats {
            nfe: vec![0; canvas.rows()],
            ..Default::default()
        };
        for step in 0..cfg.steps {
            let mut rngs = self.row_streams(canvas, step);
            let actions: Vec<ScheduleAction> = (0..canvas.rows())
                .map(|r| cfg.action(n0[r], canvas.n_masked(r), step, &mut rngs[r]))
                .collect();
            self.step(canvas, &actions, &mut rngs, &mut stats);
        }
        debug_assert!(canvas.is_complete());
        Ok(stats)
    }

    /// As [`Sampler::generate`], with the rows split across up to `threads`
    /// threads. burn's CPU backend spreads only its large matmuls over the
    /// cores, so one batch leaves them idle during every other op (rows
    /// split across threads: a batch-64 forward 1.5x faster,
    /// docs/performance.md); every row's draws are keyed by the row, so the
    /// tokens do not depend on `threads`.
    pub fn generate_threads(
        &self,
        canvas: &mut Canvas,
        cfg: &SamplerConfig,
        threads: usize,
    ) -> Result<GenerationStats, SamplerError> {
        let rows = canvas.rows();
        let threads = threads.clamp(1, rows.max(1));
        if threads == 1 {
            return self.generate(canvas, cfg);
        }
        let chunk = rows.div_ceil(threads);
        let starts: Vec<usize> = (0..rows).step_by(chunk).collect();
        let mut parts: Vec<Canvas> = starts
            .iter()
            .map(|&s| canvas.sub_canvas(s..(s + chunk).min(rows)))
            .collect();
        let results: Vec<Result<GenerationStats, SamplerError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .iter_mut()
                .map(|part| scope.spawn(move || self.generate(part, cfg)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a sampling thread panicked"))
                .collect()
        });
        let mut stats = GenerationStats::default();
        for ((start, part), result) in starts.iter().zip(&parts).zip(results) {
            let s = result?;
            canvas.write_rows(*start, part);
            stats.nfe.extend(s.nfe);
            stats.forwards += s.forwards;
            stats.network_s += s.network_s;
        }
        Ok(stats)
    }

    fn check(&self, canvas: &Canvas) -> Result<(), SamplerError> {
        check_canvas(self.model, canvas)
    }

    /// The random stream of every row for one step.
    pub fn row_streams(&self, canvas: &Canvas, step: usize) -> Vec<StdRng> {
        (0..canvas.rows())
            .map(|r| stream(&[purpose::SAMPLER, self.seed, canvas.key(r), step as u64]))
            .collect()
    }

    /// Applies one action per row. Rows revealing nothing are left out of
    /// the forward pass.
    pub fn step(
        &self,
        canvas: &mut Canvas,
        actions: &[ScheduleAction],
        rngs: &mut [StdRng],
        stats: &mut GenerationStats,
    ) {
        let active: Vec<usize> = (0..canvas.rows())
            .filter(|&r| actions[r].reveal.min(canvas.n_masked(r)) > 0)
            .collect();
        if active.is_empty() {
            return;
        }
        // Positions whose logits are needed: the chosen ones for random
        // selection, every masked one for confidence selection.
        let queries: Vec<Vec<usize>> = active
            .iter()
            .map(|&r| {
                let masked = canvas.masked_positions(r);
                match actions[r].selection {
                    Selection::Random => choose_uniform(masked, actions[r].reveal, &mut rngs[r]),
                    Selection::Confidence { .. } => masked,
                }
            })
            .collect();
        let network = Instant::now();
        let logits = self.gathered_logits(canvas, &active, actions, &queries);
        stats.network_s += network.elapsed().as_secs_f64();
        let vocab = self.model.vocab_size();
        stats.forwards += 1;

        let mut offset = 0;
        for (a, &r) in active.iter().enumerate() {
            let action = actions[r];
            let rng = &mut rngs[r];
            stats.nfe[r] += if action.guidance != 0.0 { 2 } else { 1 };
            let rows = &logits[offset * vocab..(offset + queries[a].len()) * vocab];
            offset += queries[a].len();
            let draws: Vec<(usize, u32, f64)> = queries[a]
                .iter()
                .enumerate()
                .map(|(i, &pos)| {
                    let l = &rows[i * vocab..(i + 1) * vocab];
                    let token = draw_token(l, action.temperature, rng);
                    (pos, token as u32, log_softmax_at(l, token))
                })
                .collect();
            let reveal: Vec<(usize, u32)> = match action.selection {
                Selection::Random => draws.iter().map(|&(p, t, _)| (p, t)).collect(),
                Selection::Confidence { remask_temperature } => {
                    let mut scored: Vec<(f64, usize, u32)> = draws
                        .iter()
                        .map(|&(p, t, logp)| {
                            let noise = if remask_temperature > 0.0 {
                                remask_temperature * gumbel(uniform_f64(rng))
                            } else {
                                0.0
                            };
                            (logp + noise, p, t)
                        })
                        .collect();
                    // Highest score first; ties keep position order.
                    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                    scored
                        .iter()
                        .take(action.reveal)
                        .map(|&(_, p, t)| (p, t))
                        .collect()
                }
            };
            for (pos, token) in reveal {
                canvas.reveal(r, pos, token);
            }
        }
    }

    /// Logits of the `active` rows at their `queries` positions, row-major
    /// `[sum of query lengths, vocab]` on the host, with guidance applied.
    fn gathered_logits(
        &self,
        canvas: &Canvas,
        active: &[usize],
        actions: &[ScheduleAction],
        queries: &[Vec<usize>],
    ) -> Vec<f32> {
        let (a, len) = (active.len(), canvas.len());
        let dev = &self.device;
        let guided = active.iter().any(|&r| actions[r].guidance != 0.0);
        let logits = if guided {
            // One forward over [conditional rows; prompt-masked rows].
            let mut tokens = canvas.tokens_of_rows(active);
            tokens.extend(canvas.tokens_with_prompt_masked(active));
            let both_queries: Vec<Vec<usize>> = queries.iter().chain(queries).cloned().collect();
            let both = logits_at_queries(self.model, &tokens, len, &both_queries, dev);
            let k = both.dims()[0] / 2;
            let cond = both.clone().narrow(0, 0, k);
            let uncond = both.narrow(0, k, k);
            // SMDM's unsupervised CFG: l_u + (1 + w) (l_c - l_u)
            let scale: Vec<f32> = active
                .iter()
                .zip(queries)
                .flat_map(|(&r, q)| {
                    std::iter::repeat_n((1.0 + actions[r].guidance) as f32, q.len())
                })
                .collect();
            let scale = Tensor::<B, 1>::from_data(TensorData::new(scale, [k]), dev).reshape([k, 1]);
            uncond.clone() + (cond - uncond) * scale
        } else {
            logits_at_queries(
                self.model,
                &canvas.tokens_of_rows(active),
                len,
                queries,
                dev,
            )
        };
        debug_assert_eq!(a, queries.len());
        logits_to_host(logits)
    }
}

/// Whether `canvas` fits `model`: its length and mask id.
pub(crate) fn check_canvas<B: Backend>(
    model: &Denoiser<B>,
    canvas: &Canvas,
) -> Result<(), SamplerError> {
    if canvas.len() > model.max_len() {
        return Err(SamplerError::TooLong {
            canvas: canvas.len(),
            model: model.max_len(),
        });
    }
    if canvas.mask_id() != model.mask_id() {
        return Err(SamplerError::MaskId {
            canvas: canvas.mask_id(),
            model: model.mask_id(),
        });
    }
    Ok(())
}

/// Logits `[sum of query lengths, vocab]` of the rows of `tokens`
/// (row-major `[queries.len(), len]`) at each row's `queries` positions.
/// Only those positions go through the output head ([`Denoiser::logits_at`]).
pub(crate) fn logits_at_queries<B: Backend>(
    model: &Denoiser<B>,
    tokens: &[u32],
    len: usize,
    queries: &[Vec<usize>],
    device: &B::Device,
) -> Tensor<B, 2> {
    let rows = queries.len();
    let index: Vec<i32> = queries
        .iter()
        .enumerate()
        .flat_map(|(i, q)| q.iter().map(move |&p| (i * len + p) as i32))
        .collect();
    let n = index.len();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [n]), device);
    model.logits_at(Denoiser::input(tokens, rows, len, device), index)
}

/// A float tensor copied to the host, row-major, as `f32` whatever the
/// backend's float type.
pub fn logits_to_host<B: Backend, const D: usize>(logits: Tensor<B, D>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float logits")
}

/// `k` of `positions` uniformly without replacement (partial Fisher-Yates),
/// returned in increasing order.
pub(crate) fn choose_uniform(mut positions: Vec<usize>, k: usize, rng: &mut StdRng) -> Vec<usize> {
    let k = k.min(positions.len());
    for i in 0..k {
        let j = rng.random_range(i..positions.len());
        positions.swap(i, j);
    }
    positions.truncate(k);
    positions.sort_unstable();
    positions
}

/// A token from `softmax(logits / temperature)` in float64; greedy at 0.
pub(crate) fn draw_token(logits: &[f32], temperature: f64, rng: &mut StdRng) -> usize {
    if temperature == 0.0 {
        argmax(logits)
    } else {
        Categorical::from_logits(logits, temperature).sample(uniform_f64(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{SamplerKind, Selection};
    use burn::backend::Flex;
    use mdm::DenoiserConfig;

    type B = Flex;

    fn model() -> Denoiser<B> {
        DenoiserConfig::new(5, 16, 1, 2, 32, 6).init::<B>(11, &Default::default())
    }

    fn host(t: Tensor<B, 3>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn guidance_combines_conditional_and_prompt_masked_logits() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        canvas.push_row(&[1, 2], 0).unwrap();
        let w = 1.5;
        let action = ScheduleAction {
            reveal: 1,
            selection: Selection::Random,
            temperature: 1.0,
            guidance: w,
        };
        let got =
            Sampler::new(&m, &dev, 0).gathered_logits(&canvas, &[0], &[action], &[vec![3, 5]]);
        let lc = host(m.forward(Denoiser::input(&[1, 2, 5, 5, 5, 5], 1, 6, &dev)));
        let lu = host(m.forward(Denoiser::input(&[5, 5, 5, 5, 5, 5], 1, 6, &dev)));
        for (i, &pos) in [3usize, 5].iter().enumerate() {
            for v in 0..5 {
                let (c, u) = (lc[pos * 5 + v], lu[pos * 5 + v]);
                let expect = u + (1.0 + w as f32) * (c - u);
                assert!(
                    (got[i * 5 + v] - expect).abs() < 1e-5,
                    "pos {pos} token {v}"
                );
            }
        }
        // Without guidance: the conditional logits themselves.
        let plain = ScheduleAction {
            guidance: 0.0,
            ..action
        };
        let got = Sampler::new(&m, &dev, 0).gathered_logits(&canvas, &[0], &[plain], &[vec![4]]);
        assert_eq!(&got[..], &lc[20..25]);
    }

    #[test]
    fn nfe_counts_guided_steps_twice_and_skips_empty_steps() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        canvas.push_row(&[1, 2], 0).unwrap();
        canvas.push_row(&[3, 4], 1).unwrap();
        let mut cfg = SamplerConfig::new(SamplerKind::Confidence, 4);
        let stats = Sampler::new(&m, &dev, 0)
            .generate(&mut canvas.clone(), &cfg)
            .unwrap();
        assert_eq!(stats.nfe, vec![4, 4]);
        cfg.guidance = 0.5;
        let stats = Sampler::new(&m, &dev, 0)
            .generate(&mut canvas.clone(), &cfg)
            .unwrap();
        assert_eq!(stats.nfe, vec![8, 8]);
        // More steps than masked positions: empty steps cost nothing.
        let cfg = SamplerConfig::new(SamplerKind::FirstHitting, 10);
        let mut c = canvas.clone();
        let stats = Sampler::new(&m, &dev, 0).generate(&mut c, &cfg).unwrap();
        assert_eq!(stats.nfe, vec![4, 4]);
        assert!(c.is_complete());
        assert_eq!(&c.row(0)[..2], &[1, 2], "the prompt is never touched");
    }

    #[test]
    fn network_time_is_part_of_the_generation_time() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        for key in 0..4 {
            canvas.push_row(&[1], key).unwrap();
        }
        let cfg = SamplerConfig::new(SamplerKind::FirstHitting, 5);
        let start = Instant::now();
        let stats = Sampler::new(&m, &dev, 0)
            .generate_threads(&mut canvas, &cfg, 2)
            .unwrap();
        let wall = start.elapsed().as_secs_f64();
        assert_eq!(stats.forwards, 10, "5 forwards on each of 2 threads");
        assert!(stats.network_s > 0.0, "forwards take time");
        // Summed over 2 threads, at most twice the wall time.
        assert!(
            stats.network_s <= 2.0 * wall,
            "network {} s, wall {wall} s",
            stats.network_s
        );
    }

    #[test]
    fn greedy_confidence_reveals_the_most_confident_position_first() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        canvas.push_row(&[], 0).unwrap();
        let logits = host(m.forward(Denoiser::input(&[5; 6], 1, 6, &dev)));
        let best = (0..6)
            .max_by(|&a, &b| {
                let conf = |p: usize| {
                    let row = &logits[p * 5..(p + 1) * 5];
                    log_softmax_at(row, argmax(row))
                };
                conf(a).total_cmp(&conf(b))
            })
            .unwrap();
        let mut cfg = SamplerConfig::new(SamplerKind::Confidence, 6);
        cfg.temperature = 0.0;
        let sampler = Sampler::new(&m, &dev, 0);
        let mut rngs = sampler.row_streams(&canvas, 0);
        let action = cfg.action(6, 6, 0, &mut rngs[0]);
        sampler.step(
            &mut canvas,
            &[action],
            &mut rngs,
            &mut GenerationStats {
                nfe: vec![0],
                ..Default::default()
            },
        );
        assert_eq!(canvas.masked_positions(0).len(), 5);
        assert!(!canvas.is_masked(0, best));
        assert_eq!(
            canvas.row(0)[best] as usize,
            argmax(&logits[best * 5..(best + 1) * 5])
        );
    }

    #[test]
    fn splitting_rows_across_threads_changes_nothing() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        for r in 0..7u64 {
            canvas.push_row(&[1, (r % 4) as u32], 100 + r).unwrap();
        }
        for kind in [
            SamplerKind::Ancestral,
            SamplerKind::FirstHitting,
            SamplerKind::Confidence,
        ] {
            let cfg = SamplerConfig::new(kind, 3);
            let sampler = Sampler::new(&m, &dev, 9);
            let mut one = canvas.clone();
            let a = sampler.generate(&mut one, &cfg).unwrap();
            let mut three = canvas.clone();
            let b = sampler.generate_threads(&mut three, &cfg, 3).unwrap();
            assert!(three.is_complete());
            assert_eq!(one, three, "{kind:?}");
            assert_eq!(a.nfe, b.nfe);
        }
    }

    #[test]
    fn mismatched_canvas_is_an_error() {
        let m = model();
        let mut long = Canvas::new(9, 5);
        long.push_row(&[], 0).unwrap();
        let cfg = SamplerConfig::new(SamplerKind::FirstHitting, 9);
        assert!(matches!(
            Sampler::new(&m, &Default::default(), 0).generate(&mut long, &cfg),
            Err(SamplerError::TooLong { .. })
        ));
        let mut wrong_mask = Canvas::new(6, 7);
        wrong_mask.push_row(&[], 0).unwrap();
        assert!(
            Sampler::new(&m, &Default::default(), 0)
                .generate(&mut wrong_mask, &cfg)
                .is_err()
        );
    }
}

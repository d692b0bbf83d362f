//! ILM sampling (Patel et al. 2025): insert one token at a time, anywhere an
//! insertion is allowed, until the stop head says so. The answer's length is
//! the model's decision, not the caller's; infilling a gap of unknown length
//! is the same loop with the gaps between fixed text open.
//!
//! Each step runs the network once per unfinished row: with probability
//! `sigmoid(stop logit)` the row stops (greedy: when it exceeds 1/2);
//! otherwise one (gap, token) pair is drawn from one softmax over all open
//! gaps and tokens, in float64 on the host ([`crate::categorical`]). A row
//! that reaches its insertion budget stops.

use std::time::Instant;

use envs::seeding::{purpose, stream, uniform_f64};
use mdm::Denoiser;
use rand::rngs::StdRng;

use crate::categorical::{Categorical, argmax};
use crate::generation::{GenerationStats, SamplerError};
use crate::network::logits_to_host;
use mdm::Kernels;

/// How insertions and the stop are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IlmSampling {
    /// 0: greedy (the most likely pair; stop when its probability > 1/2).
    pub temperature: f64,
    /// Draw among the `top_k` most likely pairs only (0: all).
    pub top_k: usize,
    /// Most tokens a row may insert.
    pub max_new: usize,
}

/// A sequence being generated: tokens after `<bos>`, and for each one (and
/// for `<bos>`, first) whether an insertion may follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct IlmRow {
    pub tokens: Vec<u32>,
    /// `open[0]` is the gap after `<bos>`, `open[i + 1]` the one after
    /// `tokens[i]`.
    pub open: Vec<bool>,
    pub inserted: usize,
}

impl IlmRow {
    /// Conditional generation: the prompt stays fixed, insertions go after it.
    pub fn after_prompt(prompt: &[u32]) -> Self {
        let mut open = vec![false; prompt.len() + 1];
        open[prompt.len()] = true;
        Self {
            tokens: prompt.to_vec(),
            open,
            inserted: 0,
        }
    }

    /// Infilling: fixed `segments` with an open gap between consecutive ones
    /// (and none before the first or after the last).
    pub fn infill(segments: &[Vec<u32>]) -> Self {
        let mut row = Self {
            tokens: Vec::new(),
            open: vec![false],
            inserted: 0,
        };
        for (i, seg) in segments.iter().enumerate() {
            if i > 0 {
                *row.open.last_mut().expect("starts with <bos>'s gap") = true;
            }
            row.tokens.extend(seg);
            row.open.extend(std::iter::repeat_n(false, seg.len()));
        }
        row
    }

    /// Inserts `token` into gap `gap` (right after position `gap` of
    /// `<bos> tokens`); the new token's own gap is open.
    fn insert(&mut self, gap: usize, token: u32) {
        self.tokens.insert(gap, token);
        self.open.insert(gap + 1, true);
        self.inserted += 1;
    }
}

/// One forward pass over the live rows, padded to the longest: the
/// (gap, token) logits and the stop logit of each.
struct Pass {
    logits: Vec<f32>,
    stop: Vec<f32>,
    /// Padded length: `<bos>` and the longest row.
    len: usize,
    /// Each row's real length (`<bos>` included).
    lens: Vec<usize>,
    vocab: usize,
}

impl Pass {
    fn forward<B: Kernels>(
        model: &Denoiser<B>,
        rows: &[IlmRow],
        live: &[usize],
        device: &B::Device,
        stats: &mut GenerationStats,
    ) -> Self {
        let len = 1 + live
            .iter()
            .map(|&r| rows[r].tokens.len())
            .max()
            .unwrap_or(0);
        let mut input = Vec::with_capacity(live.len() * len);
        let mut lens = Vec::with_capacity(live.len());
        for &r in live {
            input.push(model.bos_id());
            input.extend(&rows[r].tokens);
            input.resize(input.len() + len - 1 - rows[r].tokens.len(), model.bos_id());
            lens.push(1 + rows[r].tokens.len());
        }
        let t0 = Instant::now();
        let (logits, stop) =
            model.forward_padded(Denoiser::input(&input, live.len(), len, device), &lens);
        let (logits, stop) = (logits_to_host(logits), logits_to_host(stop));
        stats.forwards += 1;
        stats.network_s += t0.elapsed().as_secs_f64();
        Self {
            logits,
            stop,
            len,
            lens,
            vocab: model.vocab_size(),
        }
    }

    /// Live row `i` of the pass (`row`) stops, or inserts one drawn
    /// (gap, token) pair (returns `true`).
    fn insert(&self, i: usize, row: &mut IlmRow, sampling: IlmSampling, rng: &mut StdRng) -> bool {
        let (len, vocab) = (self.len, self.vocab);
        let p_stop = 1.0 / (1.0 + (-(self.stop[i] as f64)).exp());
        let stops = if sampling.temperature == 0.0 {
            p_stop > 0.5
        } else {
            uniform_f64(rng) < p_stop
        };
        if stops {
            return false;
        }
        // Scores of the open (gap, token) pairs, gap-major.
        let gaps: Vec<usize> = (0..self.lens[i]).filter(|&g| row.open[g]).collect();
        let mut pairs = Vec::with_capacity(gaps.len() * vocab);
        for &g in &gaps {
            let at = (i * len + g) * vocab;
            pairs.extend_from_slice(&self.logits[at..at + vocab]);
        }
        crate::autoregressive::top_k(&mut pairs, sampling.top_k);
        let pick = if sampling.temperature == 0.0 {
            argmax(&pairs)
        } else {
            Categorical::from_logits(&pairs, sampling.temperature).sample(uniform_f64(rng))
        };
        row.insert(gaps[pick / vocab], (pick % vocab) as u32);
        true
    }
}

/// Generates until every row stops; row `r` draws from its own stream keyed
/// by `keys[r]`. Returns the stats (NFE = insertions + the stopping pass).
pub fn generate<B: Kernels>(
    model: &Denoiser<B>,
    rows: &mut [IlmRow],
    keys: &[u64],
    sampling: IlmSampling,
    seed: u64,
    device: &B::Device,
) -> Result<GenerationStats, SamplerError> {
    assert_eq!(rows.len(), keys.len(), "one key per row");
    let mut stats = GenerationStats {
        nfe: vec![0; rows.len()],
        ..Default::default()
    };
    for row in rows.iter() {
        if row.tokens.len() + 1 > model.max_len() {
            return Err(SamplerError::TooLong {
                canvas: row.tokens.len() + 1,
                model: model.max_len(),
            });
        }
    }
    // A row may insert until its budget or the model's length is reached.
    let budget = |row: &IlmRow| {
        sampling
            .max_new
            .min(model.max_len() - 1 - (row.tokens.len() - row.inserted))
    };
    let mut rngs: Vec<StdRng> = keys
        .iter()
        .map(|&k| stream(&[purpose::SAMPLER, seed, k]))
        .collect();
    let mut live: Vec<usize> = (0..rows.len())
        .filter(|&r| rows[r].inserted < budget(&rows[r]))
        .collect();
    while !live.is_empty() {
        let pass = Pass::forward(model, rows, &live, device, &mut stats);
        let mut still = Vec::with_capacity(live.len());
        for (i, &r) in live.iter().enumerate() {
            stats.nfe[r] += 1;
            let row = &mut rows[r];
            if pass.insert(i, row, sampling, &mut rngs[r]) && row.inserted < budget(row) {
                still.push(r);
            }
        }
        live = still;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use burn::backend::Flex;
    use burn::module::{Module, ModuleMapper, Param};
    use burn::prelude::*;
    use mdm::{DenoiserConfig, Family};

    type B = Flex;

    /// An ILM with weights scaled up so that its distributions are far from
    /// uniform (and the stop probability far from 1/2).
    fn sharp_ilm(seed: u64, vocab: usize) -> Denoiser<B> {
        struct Scale;
        impl ModuleMapper<B> for Scale {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let (id, t, mapper) = p.consume();
                Param::from_mapped_value(id, t * 4.0, mapper)
            }
        }
        DenoiserConfig::new(vocab, 16, 1, 2, 32, 6)
            .with_family(Family::Ilm)
            .init::<B>(seed, &Default::default())
            .map(&mut Scale)
    }

    /// The exact law of the finished sequence, by summing over every
    /// insertion path: p(stop) at each state, p(gap, token) otherwise.
    fn exact(
        model: &Denoiser<B>,
        row: IlmRow,
        max_new: usize,
        p: f64,
        out: &mut HashMap<Vec<u32>, f64>,
    ) {
        let dev = Default::default();
        let len = row.tokens.len() + 1;
        let mut input = vec![model.bos_id()];
        input.extend(&row.tokens);
        let (logits, stop) = model.forward_padded(Denoiser::input(&input, 1, len, &dev), &[len]);
        let (logits, stop) = (logits_to_host(logits), logits_to_host(stop));
        let p_stop = if row.inserted == max_new {
            1.0
        } else {
            1.0 / (1.0 + (-(stop[0] as f64)).exp())
        };
        *out.entry(row.tokens.clone()).or_default() += p * p_stop;
        if p_stop == 1.0 {
            return;
        }
        let v = model.vocab_size();
        let gaps: Vec<usize> = (0..len).filter(|&g| row.open[g]).collect();
        let pairs: Vec<f32> = gaps
            .iter()
            .flat_map(|&g| logits[g * v..(g + 1) * v].to_vec())
            .collect();
        let c = Categorical::from_logits(&pairs, 1.0);
        for k in 0..pairs.len() {
            let mut next = row.clone();
            next.insert(gaps[k / v], (k % v) as u32);
            exact(
                model,
                next,
                max_new,
                p * (1.0 - p_stop) * c.log_prob(k).exp(),
                out,
            );
        }
    }

    /// The sampler draws finished sequences at the model's probabilities:
    /// 20000 rows against the exact law over every insertion path (two
    /// tokens, at most 2 insertions after a one-token prompt: 7 outcomes),
    /// each frequency within 5 standard errors.
    #[test]
    fn finished_sequences_follow_the_exact_law() {
        let m = sharp_ilm(4, 2);
        let mut law = HashMap::new();
        exact(&m, IlmRow::after_prompt(&[1]), 2, 1.0, &mut law);
        assert_eq!(law.len(), 7);
        assert!((law.values().sum::<f64>() - 1.0).abs() < 1e-9);
        let n = 20_000;
        let mut rows = vec![IlmRow::after_prompt(&[1]); n];
        let keys: Vec<u64> = (0..n as u64).collect();
        let sampling = IlmSampling {
            temperature: 1.0,
            top_k: 0,
            max_new: 2,
        };
        generate(&m, &mut rows, &keys, sampling, 5, &Default::default()).unwrap();
        let mut seen: HashMap<Vec<u32>, usize> = HashMap::new();
        for r in &rows {
            *seen.entry(r.tokens.clone()).or_default() += 1;
        }
        assert!(seen.keys().all(|k| law.contains_key(k)), "{seen:?}");
        let spread = law.values().filter(|&&p| p > 0.02).count();
        assert!(spread >= 4, "the test model is too peaked: {law:?}");
        for (seq, &p) in &law {
            let f = *seen.get(seq).unwrap_or(&0) as f64 / n as f64;
            let sd = (p * (1.0 - p) / n as f64).sqrt().max(1e-4);
            assert!((f - p).abs() < 5.0 * sd, "{seq:?}: {f} vs {p}");
        }
    }

    #[test]
    fn infill_opens_only_the_gaps_between_segments() {
        let row = IlmRow::infill(&[vec![3, 4], vec![5]]);
        assert_eq!(row.tokens, [3, 4, 5]);
        assert_eq!(row.open, [false, false, true, false]);
        let m = sharp_ilm(2, 6);
        let mut rows = vec![row];
        let sampling = IlmSampling {
            temperature: 1.0,
            top_k: 0,
            max_new: 3,
        };
        for key in 0..20 {
            let mut r = rows.clone();
            generate(&m, &mut r, &[key], sampling, 0, &Default::default()).unwrap();
            let t = &r[0].tokens;
            assert_eq!(t[..2], [3, 4]);
            assert_eq!(*t.last().unwrap(), 5);
            assert_eq!(t.len(), 3 + r[0].inserted);
        }
        rows.clear();
    }
}

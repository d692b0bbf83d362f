//! The ancestral sampler as MDLM's and SEDD's reference code write it: at
//! every step, every masked position draws from a categorical over the
//! vocabulary plus "stay masked". It is the baseline of the first-hitting
//! measurement in `cogrpo bench --scaling` and nothing else: the library's
//! ancestral sampler (`policy::Sampler`) draws the same distribution far
//! more cheaply (a binomial count of positions, then tokens only there).
//!
//! Cost per step: a forward pass whenever the canvas changed (the reference
//! code's caching) and `masked x (vocab + 1)` float64 exponentials on the
//! host, which is what Zheng et al. (2024, Sec. 4) replace with the
//! first-hitting sampler's one draw per revealed token.

use envs::Canvas;
use envs::seeding::stream;
use mdm::Denoiser;
use mdm::Kernels;
use policy::categorical::Categorical;
use policy::logits_to_host;
use rand::Rng;

/// A purpose tag for this sampler's random streams (not shared with the
/// library's samplers, whose draws it need not reproduce).
const DENSE_ANCESTRAL: u64 = 0x6465_6e73_6500_0101;

/// What a generation cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenseStats {
    /// Forward passes (steps where nothing was revealed reuse the logits).
    pub forwards: usize,
    /// Seconds spent in the forward passes and reading their logits back
    /// (as `policy::GenerationStats::network_s`); the rest is drawing.
    pub network_s: f64,
}

/// Fills every mask of `canvas` in `steps` steps of the time grid
/// `t = (steps - i) / steps` at temperature 1.
pub fn generate<B: Kernels>(
    model: &Denoiser<B>,
    canvas: &mut Canvas,
    steps: usize,
    seed: u64,
    device: &B::Device,
) -> DenseStats {
    let (rows, len, vocab) = (canvas.rows(), canvas.len(), model.vocab_size());
    let all: Vec<usize> = (0..rows).collect();
    let mut logits: Vec<f32> = Vec::new();
    let mut changed = true;
    let mut forwards = 0;
    let mut network_s = 0.0;
    for i in 0..steps {
        if canvas.is_complete() {
            break;
        }
        if changed {
            let network = std::time::Instant::now();
            let tokens = canvas.tokens_of_rows(&all);
            logits = logits_to_host(model.forward(Denoiser::input(&tokens, rows, len, device)));
            forwards += 1;
            changed = false;
            network_s += network.elapsed().as_secs_f64();
        }
        // From t to s < t, a masked position stays masked with probability
        // s / t and otherwise becomes token v with probability
        // p(v) (t - s) / t (MDLM, Sahoo et al. 2024, eq. 7).
        let (t, s) = ((steps - i) as f64, (steps - i - 1) as f64);
        let mut row_logits = vec![0f32; vocab + 1];
        for r in 0..rows {
            let mut rng = stream(&[DENSE_ANCESTRAL, seed, canvas.key(r), i as u64]);
            for pos in canvas.masked_positions(r) {
                let l = &logits[(r * len + pos) * vocab..(r * len + pos + 1) * vocab];
                step_logits(l, t, s, &mut row_logits);
                let draw = Categorical::from_logits(&row_logits, 1.0).sample(rng.random::<f64>());
                if draw < vocab {
                    canvas.reveal(r, pos, draw as u32);
                    changed = true;
                }
            }
        }
    }
    DenseStats {
        forwards,
        network_s,
    }
}

/// Writes the `vocab + 1` logits of one masked position's step from `t`
/// to `s`: the token logits, then the mask's logit `m`, which solves
/// `e^m / (Z + e^m) = s / t`.
fn step_logits(l: &[f32], t: f64, s: f64, out: &mut [f32]) {
    let vocab = l.len();
    out[..vocab].copy_from_slice(l);
    out[vocab] = if s == 0.0 {
        f32::NEG_INFINITY
    } else {
        (log_sum_exp(l) + (s / (t - s)).ln()) as f32
    };
}

fn log_sum_exp(l: &[f32]) -> f64 {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::{Module, ModuleMapper, Param};
    use burn::prelude::*;
    use mdm::DenoiserConfig;
    use policy::{Sampler, SamplerConfig, SamplerKind};
    use std::collections::HashMap;

    type B = Flex;

    /// Scales every weight so that the conditionals are far from uniform and
    /// depend on context (as in `policy/tests/exact_distributions.rs`).
    struct Scale(f32);
    impl ModuleMapper<B> for Scale {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, mapper) = p.consume();
            Param::from_mapped_value(id, t * self.0, mapper)
        }
    }

    fn frequencies(canvas: &Canvas) -> HashMap<Vec<u32>, f64> {
        let mut counts = HashMap::new();
        for r in 0..canvas.rows() {
            *counts.entry(canvas.row(r).to_vec()).or_insert(0.0) += 1.0;
        }
        let n = canvas.rows() as f64;
        counts.values_mut().for_each(|c| *c /= n);
        counts
    }

    /// The dense reference and the library's ancestral sampler draw from the
    /// same distribution over completed sequences: vocabulary 3, length 3,
    /// 3 steps (27 outcomes), 20,000 sequences each, every outcome's
    /// frequency within 5 standard errors of the two-sample difference.
    #[test]
    fn dense_ancestral_matches_the_library_ancestral_sampler() {
        let dev = Default::default();
        let model = DenoiserConfig::new(3, 16, 2, 2, 32, 3)
            .init::<B>(5, &dev)
            .map(&mut Scale(5.0));
        let n = 20_000;
        let blank = || {
            let mut c = Canvas::new(3, model.mask_id());
            for k in 0..n {
                c.push_row(&[], k as u64).unwrap();
            }
            c
        };
        let mut dense = blank();
        generate(&model, &mut dense, 3, 1, &dev);
        assert!(dense.is_complete());
        let mut library = blank();
        Sampler::new(&model, &dev, 2)
            .generate(&mut library, &SamplerConfig::new(SamplerKind::Ancestral, 3))
            .unwrap();
        let (p, q) = (frequencies(&dense), frequencies(&library));
        assert!(p.len() > 10, "too few distinct outcomes: {}", p.len());
        for key in p.keys().chain(q.keys()) {
            let (a, b) = (
                p.get(key).copied().unwrap_or(0.0),
                q.get(key).copied().unwrap_or(0.0),
            );
            let pooled = (a + b) / 2.0;
            let se = (2.0 * pooled * (1.0 - pooled) / n as f64).sqrt().max(1e-4);
            assert!(
                (a - b).abs() < 5.0 * se,
                "{key:?}: dense {a} vs library {b} (se {se})"
            );
        }
    }

    /// One step from t = 4 to s = 3 keeps a position masked with
    /// probability 3/4 and otherwise draws token v with p(v) / 4.
    #[test]
    fn one_step_keeps_the_mask_with_probability_s_over_t() {
        let l = [0.3f32, -1.2, 2.0, 0.0];
        let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
        let mut out = [0f32; 5];
        step_logits(&l, 4.0, 3.0, &mut out);
        let c = Categorical::from_logits(&out, 1.0);
        assert!((c.log_prob(4).exp() - 0.75).abs() < 1e-6);
        for (v, &lv) in l.iter().enumerate() {
            let want = (lv as f64).exp() / z * 0.25;
            assert!((c.log_prob(v).exp() - want).abs() < 1e-6, "token {v}");
        }
        step_logits(&l, 1.0, 0.0, &mut out);
        assert_eq!(Categorical::from_logits(&out, 1.0).log_prob(4).exp(), 0.0);
    }

    /// With one step everything is revealed at once; with many steps the
    /// cached logits are reused on steps where nothing changed.
    #[test]
    fn forwards_count_only_steps_after_a_change() {
        let dev = Default::default();
        let model = DenoiserConfig::new(5, 16, 1, 2, 32, 4).init::<B>(0, &dev);
        let mut c = Canvas::new(4, model.mask_id());
        c.push_row(&[], 0).unwrap();
        assert_eq!(generate(&model, &mut c, 1, 0, &dev).forwards, 1);
        assert!(c.is_complete());
        let mut c = Canvas::new(4, model.mask_id());
        c.push_row(&[], 0).unwrap();
        let forwards = generate(&model, &mut c, 64, 0, &dev).forwards;
        assert!(c.is_complete());
        assert!(
            (1..=4).contains(&forwards),
            "{forwards} forwards for 4 tokens"
        );
    }
}

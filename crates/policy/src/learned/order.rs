//! The learned position policy: a Plackett-Luce distribution over the masked
//! positions.
//!
//! Picking `k` positions one after another, each with probability
//! `exp(s_i) / sum_{j still free} exp(s_j)`, is the Plackett-Luce model; a
//! Gumbel top-k draw (`s_i + Gumbel`, take the k largest, in order) samples
//! it exactly. With scores `log p_i / tau_r` it *is* the Gumbel-perturbed
//! confidence selection of the fixed samplers, so the learned scores start
//! there and move away from it.

use burn::prelude::*;
use rand::rngs::StdRng;

use envs::seeding::uniform_f64;

use crate::categorical::gumbel;

/// A Plackett-Luce draw of `k` of the candidates (indices into `scores`, in
/// pick order) and its log-probability. `greedy` takes the top k instead.
pub fn sample(scores: &[f64], k: usize, rng: &mut StdRng, greedy: bool) -> (Vec<usize>, f64) {
    let mut keyed: Vec<(f64, usize)> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let noise = if greedy {
                0.0
            } else {
                gumbel(uniform_f64(rng))
            };
            (s + noise, i)
        })
        .collect();
    // Largest key first; ties keep index order.
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let picks: Vec<usize> = keyed.iter().take(k).map(|&(_, i)| i).collect();
    let logp = log_prob(scores, &picks);
    (picks, logp)
}

/// `log P(picks)` under Plackett-Luce with `scores`, in float64.
pub fn log_prob(scores: &[f64], picks: &[usize]) -> f64 {
    let mut free = vec![true; scores.len()];
    let mut total = 0.0;
    for &p in picks {
        let max = scores
            .iter()
            .zip(&free)
            .filter(|(_, f)| **f)
            .map(|(s, _)| *s)
            .fold(f64::NEG_INFINITY, f64::max);
        let lse = max
            + scores
                .iter()
                .zip(&free)
                .filter(|(_, f)| **f)
                .map(|(s, _)| (s - max).exp())
                .sum::<f64>()
                .ln();
        total += scores[p] - lse;
        free[p] = false;
    }
    total
}

/// Plackett-Luce log-probabilities and entropy estimates of a batch of pick
/// sequences on tensors.
///
/// `padded` holds every state's candidate scores `[N, M]`, with padding
/// already pushed to a large negative value; `free[n, j, m]` is 0 where
/// candidate `m` is still free at pick `j` and a large negative number
/// otherwise; `picks[n, j]` indexes the column picked at `j`; `valid[n, j]`
/// is 1 for real picks. Returns `(log P [N], entropy estimate [N])`: the
/// entropy is `sum_j H(pick j | picks before)` along the recorded sequence,
/// an unbiased estimate of the sequence entropy by the chain rule.
pub fn log_prob_tensor<B: Backend>(
    padded: Tensor<B, 2>,
    free: Tensor<B, 3>,
    picks: Tensor<B, 2, Int>,
    valid: Tensor<B, 2>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [n, k, m] = free.dims();
    let x = padded.reshape([n, 1, m]).expand([n, k, m]) + free; // [N, K, M]
    let max = x.clone().max_dim(2).detach(); // [N, K, 1]
    let lse = max.clone() + (x.clone() - max).exp().sum_dim(2).log(); // [N, K, 1]
    let log_p = x - lse.clone(); // [N, K, M]
    let picked = log_p
        .clone()
        .gather(2, picks.reshape([n, k, 1]))
        .reshape([n, k]);
    let logp = (picked * valid.clone()).sum_dim(1).reshape([n]);
    let entropy = (log_p.clone().exp() * log_p).sum_dim(2).reshape([n, k]) * (-1.0);
    let entropy = (entropy * valid).sum_dim(1).reshape([n]);
    (logp, entropy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envs::seeding::stream;
    use std::collections::HashMap;

    /// Exact pick-sequence probabilities against Gumbel top-k frequencies.
    #[test]
    fn gumbel_top_k_samples_plackett_luce() {
        let scores = [0.5, -0.3, 1.2, 0.0];
        let mut rng = stream(&[42]);
        let trials = 200_000;
        let mut counts: HashMap<Vec<usize>, usize> = HashMap::new();
        for _ in 0..trials {
            let (picks, logp) = sample(&scores, 2, &mut rng, false);
            assert!((logp - log_prob(&scores, &picks)).abs() < 1e-12);
            *counts.entry(picks).or_default() += 1;
        }
        let mut total_p = 0.0;
        for a in 0..4 {
            for b in 0..4 {
                if a == b {
                    continue;
                }
                let p = log_prob(&scores, &[a, b]).exp();
                total_p += p;
                let f = *counts.get(&vec![a, b]).unwrap_or(&0) as f64 / trials as f64;
                // 5 standard errors of a binomial frequency.
                let tol = 5.0 * (p * (1.0 - p) / trials as f64).sqrt();
                assert!((f - p).abs() < tol, "{a},{b}: {f} vs {p}");
            }
        }
        assert!((total_p - 1.0).abs() < 1e-12, "sequences sum to {total_p}");
    }

    #[test]
    fn tensor_log_prob_matches_host() {
        use burn::backend::Flex;
        type B = Flex;
        let dev = Default::default();
        let scores = [[0.5f32, -0.3, 1.2, 0.0], [2.0, 0.1, -9.0e8, -9.0e8]];
        let picks = [[2usize, 0, 0], [1, 0, 0]];
        let k = [2usize, 2];
        let mut free = vec![0f32; 2 * 3 * 4];
        for n in 0..2 {
            for j in 0..3 {
                for m in 0..4 {
                    let taken = picks[n][..j.min(k[n])].contains(&m);
                    let pad = n == 1 && m >= 2;
                    if taken || pad {
                        free[(n * 3 + j) * 4 + m] = -1e9;
                    }
                }
            }
        }
        let valid: Vec<f32> = (0..6).map(|i| if i % 3 < 2 { 1.0 } else { 0.0 }).collect();
        let (logp, ent) = log_prob_tensor::<B>(
            Tensor::from_data(scores, &dev),
            Tensor::from_data(TensorData::new(free, [2, 3, 4]), &dev),
            Tensor::from_data(
                TensorData::new(
                    picks
                        .iter()
                        .flatten()
                        .map(|&p| p as i32)
                        .collect::<Vec<_>>(),
                    [2, 3],
                ),
                &dev,
            ),
            Tensor::from_data(TensorData::new(valid, [2, 3]), &dev),
        );
        let logp: Vec<f32> = logp.into_data().to_vec().unwrap();
        let s0: Vec<f64> = scores[0].iter().map(|&s| s as f64).collect();
        let s1 = [2.0, 0.1];
        assert!((logp[0] as f64 - log_prob(&s0, &[2, 0])).abs() < 1e-5);
        assert!((logp[1] as f64 - log_prob(&s1, &[1, 0])).abs() < 1e-5);
        // Second state: the first pick's entropy plus 0 for the forced second.
        let ent: Vec<f32> = ent.into_data().to_vec().unwrap();
        let p = 1.0 / (1.0 + (-1.9f64).exp());
        let h = -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
        assert!((ent[1] as f64 - h).abs() < 1e-5, "{} vs {h}", ent[1]);
    }
}

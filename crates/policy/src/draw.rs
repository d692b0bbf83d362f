//! The random choices of a generation step, on the host in float64: which
//! positions (uniformly, or by Gumbel-perturbed confidence) and which tokens
//! (on a device, the tokens are drawn there the same way:
//! [`crate::device_draw`]).
//!
//! Zheng et al. 2024: Gumbel-max in float32 truncates the noise (at about
//! 16.6) and silently lowers the temperature, so tokens are drawn by
//! inversion of a float64 CDF ([`Categorical`]).

use envs::seeding::uniform_f64;
use rand::Rng;
use rand::rngs::StdRng;

use crate::categorical::{Categorical, argmax, gumbel, log_softmax_at};

/// A token from `softmax(logits / temperature)` in float64 and its
/// log-probability under that distribution; greedy (log-probability 0) at
/// temperature 0. Draws one uniform unless greedy.
pub fn draw_token(logits: &[f32], temperature: f64, rng: &mut StdRng) -> (u32, f64) {
    if temperature == 0.0 {
        (argmax(logits) as u32, 0.0)
    } else {
        let c = Categorical::from_logits(logits, temperature);
        let i = c.sample(uniform_f64(rng));
        (i as u32, c.log_prob(i))
    }
}

/// `k` of `positions` uniformly without replacement (partial Fisher-Yates:
/// `k` draws), returned in increasing order.
pub fn choose_uniform(mut positions: Vec<usize>, k: usize, rng: &mut StdRng) -> Vec<usize> {
    let k = k.min(positions.len());
    for i in 0..k {
        let j = rng.random_range(i..positions.len());
        positions.swap(i, j);
    }
    positions.truncate(k);
    positions.sort_unstable();
    positions
}

/// A candidate token drawn at a masked position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub position: usize,
    pub token: u32,
    /// `log p(token)` at the step's temperature (0 when greedy).
    pub log_prob: f64,
    /// `log p(token)` at temperature 1: the confidence that ranks positions.
    pub confidence: f64,
}

impl Draw {
    /// A token at `position` from `logits` (see [`draw_token`]).
    pub fn at(position: usize, logits: &[f32], temperature: f64, rng: &mut StdRng) -> Self {
        let (token, log_prob) = draw_token(logits, temperature, rng);
        Self {
            position,
            token,
            log_prob,
            confidence: log_softmax_at(logits, token as usize),
        }
    }
}

/// The `k` candidates with the highest `confidence + remask_temperature *
/// Gumbel` (MaskGIT; a Plackett-Luce draw over positions with scores
/// `confidence / remask_temperature`), highest first; ties keep position
/// order. Draws one uniform per candidate, in candidate order, when
/// `remask_temperature > 0`.
pub fn most_confident(
    candidates: Vec<Draw>,
    k: usize,
    remask_temperature: f64,
    rng: &mut StdRng,
) -> Vec<Draw> {
    let mut scored: Vec<(f64, Draw)> = candidates
        .into_iter()
        .map(|d| {
            let noise = if remask_temperature > 0.0 {
                remask_temperature * gumbel(uniform_f64(rng))
            } else {
                0.0
            };
            (d.confidence + noise, d)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.position.cmp(&b.1.position)));
    scored.into_iter().take(k).map(|(_, d)| d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envs::seeding::stream;

    #[test]
    fn greedy_confidence_takes_the_most_confident_positions_in_order() {
        let d = |position, confidence| Draw {
            position,
            token: 0,
            log_prob: 0.0,
            confidence,
        };
        let got = most_confident(
            vec![d(3, -0.5), d(4, -0.1), d(7, -0.5), d(9, -2.0)],
            3,
            0.0,
            &mut stream(&[1]),
        );
        let order: Vec<usize> = got.iter().map(|d| d.position).collect();
        assert_eq!(order, vec![4, 3, 7], "ties keep position order");
    }

    #[test]
    fn uniform_choice_is_sorted_and_without_replacement() {
        let mut rng = stream(&[2]);
        let mut counts = [0usize; 5];
        let trials = 20_000;
        for _ in 0..trials {
            let c = choose_uniform(vec![10, 11, 12, 13, 14], 2, &mut rng);
            assert!(c[0] < c[1]);
            for p in c {
                counts[p - 10] += 1;
            }
        }
        // Each position is chosen with probability 2/5; sd of a count
        // sqrt(20000 * 0.4 * 0.6) = 69, tolerance 5 sd.
        for c in counts {
            assert!((c as f64 - 8000.0).abs() < 350.0, "{counts:?}");
        }
    }
}

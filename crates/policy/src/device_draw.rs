//! What a generation step reads from the logits, on the device, in
//! float64: the token draws, and the learned schedule's statistics of each
//! position.
//!
//! On a GPU, copying the logits of every position a step draws at to the
//! host bound the confidence sampler (a candidate at every masked position:
//! 607 sequences/s on the text task, docs/performance.md). Here the host's
//! draw ([`crate::draw::draw_token`]: inversion of the float64 CDF of
//! `softmax(logits / temperature)` with the row's 53-bit uniform, Zheng et
//! al. 2024) runs on the device: the logits are cast to float64 there, and
//! only the token, its log-probability and its confidence come back, three
//! numbers per position instead of a vocabulary. The uniforms are drawn on
//! the host from the rows' streams, in the host path's order, so a
//! trajectory is the same on either path: the same tokens wherever a
//! uniform does not fall within rounding (~1e-16) of a CDF boundary, and
//! log-probabilities equal to rounding. Likewise a learned schedule's
//! observation computes its [`PositionStats`] where the logits are.

use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use mdm::Kernels;

use crate::draw::Draw;
use crate::learned::features::PositionStats;

#[cfg(test)]
thread_local! {
    /// Tests run the step's reads on either side on the CPU backend.
    pub(crate) static DRAW_ON_DEVICE: std::cell::Cell<Option<bool>> =
        const { std::cell::Cell::new(None) };
}

/// Whether the step reads the logits on the device (the policy's features,
/// the token draws): unless the backend's tensors are in host memory anyway
/// ([`Kernels::HOST_MEMORY`]).
pub(crate) fn on_device<B: Kernels>() -> bool {
    #[cfg(test)]
    if let Some(forced) = DRAW_ON_DEVICE.with(|c| c.get()) {
        return forced;
    }
    !B::HOST_MEMORY
}

/// One draw per row of `logits` (`[n, vocab]`, untempered, on the device):
/// row `i` at `temperatures[i]` with `uniforms[i]` (greedy at temperature
/// 0: the first largest logit, log-probability 0, no uniform read), at
/// position `positions[i]`. The same [`Draw`]s as `Draw::at` on the host.
pub fn draw_on_device<B: Kernels>(
    logits: Tensor<B, 2>,
    positions: &[usize],
    temperatures: &[f64],
    uniforms: &[f64],
) -> Vec<Draw> {
    let [n, vocab] = logits.dims();
    assert!(
        positions.len() == n && temperatures.len() == n && uniforms.len() == n,
        "one position, temperature and uniform per row"
    );
    if n == 0 {
        return Vec::new();
    }
    let device = logits.device();
    // Created as float64: through the default float32 a 53-bit uniform
    // would keep 24 bits.
    let column =
        |v: Vec<f64>| Tensor::<B, 2>::from_data(TensorData::new(v, [n, 1]), (&device, DType::F64));
    let greedy: Vec<bool> = temperatures.iter().map(|&t| t == 0.0).collect();
    // Greedy rows divide by 1 (their token is the argmax, not a draw).
    let tau = column(
        temperatures
            .iter()
            .map(|&t| if t == 0.0 { 1.0 } else { t })
            .collect(),
    );
    let u = column(uniforms.to_vec());
    let z1 = logits.clone().cast(FloatDType::F64);

    // Categorical::from_logits: z = l / tau, shifted by its max, cumulative
    // weights; the token is the first whose weight exceeds u * total.
    let z = z1.clone() / tau;
    let shifted = z.clone() - z.max_dim(1);
    let cumulative = shifted.clone().exp().cumsum(1);
    let total = cumulative.clone().narrow(1, vocab - 1, 1);
    let below = cumulative.lower_equal(total.clone() * u);
    let drawn = below.int().sum_dim(1).clamp_max(vocab as i64 - 1);
    let argmax = logits.argmax(1);
    let is_greedy =
        Tensor::<B, 2, Bool>::from_data(TensorData::new(greedy.clone(), [n, 1]), &device);
    let token = drawn.mask_where(is_greedy, argmax);
    let log_prob = shifted.gather(1, token.clone()) - total.log();

    // log_softmax_at: the token's log-probability at temperature 1.
    let shifted1 = z1.clone() - z1.max_dim(1);
    let lse1 = shifted1.clone().exp().sum_dim(1).log();
    let confidence = shifted1.gather(1, token.clone()) - lse1;

    // One transfer: [token, log_prob, confidence] per row.
    let host: Vec<f64> = Tensor::cat(
        vec![token.float().cast(FloatDType::F64), log_prob, confidence],
        1,
    )
    .into_data()
    .convert::<f64>()
    .to_vec()
    .expect("float64 draws");
    host.chunks(3)
        .zip(positions)
        .zip(&greedy)
        .map(|((r, &position), &g)| Draw {
            position,
            token: r[0] as u32,
            log_prob: if g { 0.0 } else { r[1] },
            confidence: r[2],
        })
        .collect()
}

/// [`PositionStats::of`] of every row of `logits` (`[n, vocab]`), in
/// float64 on the device: the learned schedule's view of each position
/// (top probability, margin to the second, entropy over `ln V`), three
/// numbers per row brought back.
pub fn position_stats_on_device<B: Kernels>(logits: Tensor<B, 2>) -> Vec<PositionStats> {
    let [n, vocab] = logits.dims();
    if n == 0 {
        return Vec::new();
    }
    let z = logits.cast(FloatDType::F64);
    let e = (z.clone() - z.max_dim(1)).exp();
    let p = e.clone() / e.sum_dim(1);
    let top = match vocab {
        1 => Tensor::cat(vec![p.clone(), p.zeros_like()], 1),
        _ => p.clone().topk(2, 1),
    };
    let (p1, p2) = (top.clone().narrow(1, 0, 1), top.narrow(1, 1, 1));
    // -sum p ln p, with 0 ln 0 = 0.
    let zero = p.clone().lower_equal_elem(0.0);
    let h = (p.clone() * p.log()).mask_fill(zero, 0.0).sum_dim(1).neg();
    let norm = (vocab.max(2) as f64).ln();
    let host: Vec<f64> = Tensor::cat(vec![p1.clone(), p1 - p2, h / norm], 1)
        .into_data()
        .convert::<f64>()
        .to_vec()
        .expect("float64 statistics");
    host.chunks(3)
        .map(|r| PositionStats {
            confidence: r[0],
            margin: r[1],
            entropy: r[2],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::Draw;
    use burn::backend::Flex;
    use envs::seeding::{stream, uniform_f64};
    use rand::Rng;

    type B = Flex;

    fn device_logits(rows: &[Vec<f32>]) -> Tensor<B, 2> {
        let (n, v) = (rows.len(), rows[0].len());
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [n, v]), &Default::default())
    }

    /// With the uniforms the host path would read, the device draws the
    /// host's tokens and log-probabilities, greedy rows included.
    #[test]
    fn device_draws_are_the_host_draws() {
        let mut rng = stream(&[41]);
        let (n, vocab) = (400, 37);
        let rows: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..vocab).map(|_| rng.random_range(-6.0..6.0)).collect())
            .collect();
        let temperatures: Vec<f64> = (0..n).map(|i| [0.0, 0.3, 1.0, 2.5][i % 4]).collect();
        let positions: Vec<usize> = (0..n).map(|i| 3 * i).collect();
        // The host path: one uniform per non-greedy draw from the stream.
        let mut host_rng = stream(&[42]);
        let host: Vec<Draw> = (0..n)
            .map(|i| Draw::at(positions[i], &rows[i], temperatures[i], &mut host_rng))
            .collect();
        let mut u_rng = stream(&[42]);
        let uniforms: Vec<f64> = temperatures
            .iter()
            .map(|&t| {
                if t > 0.0 {
                    uniform_f64(&mut u_rng)
                } else {
                    0.0
                }
            })
            .collect();
        let device = draw_on_device(device_logits(&rows), &positions, &temperatures, &uniforms);
        for (h, d) in host.iter().zip(&device) {
            assert_eq!((h.position, h.token), (d.position, d.token));
            assert!((h.log_prob - d.log_prob).abs() < 1e-12, "{h:?} {d:?}");
            assert!((h.confidence - d.confidence).abs() < 1e-12, "{h:?} {d:?}");
        }
    }

    /// The policy's statistics of each position, on the device, are the
    /// host's (random logits, a one-hot row, ties for the top).
    #[test]
    fn device_position_stats_are_the_host_ones() {
        let mut rng = stream(&[43]);
        let mut rows: Vec<Vec<f32>> = (0..60)
            .map(|_| (0..23).map(|_| rng.random_range(-8.0..8.0)).collect())
            .collect();
        rows.push(
            (0..23)
                .map(|i| if i == 4 { 200.0 } else { -200.0 })
                .collect(),
        );
        rows.push((0..23).map(|i| if i < 2 { 3.0 } else { 0.0 }).collect());
        let device = position_stats_on_device(device_logits(&rows));
        for (row, d) in rows.iter().zip(&device) {
            let h = PositionStats::of(row);
            for (a, b) in [
                (h.confidence, d.confidence),
                (h.margin, d.margin),
                (h.entropy, d.entropy),
            ] {
                assert!((a - b).abs() < 1e-12, "{h:?} vs {d:?}");
            }
        }
    }

    /// The draw's distribution is softmax(logits / T), far into the tail:
    /// 200k draws from 5 categories spanning e^-12 of probability, counts
    /// within 5 standard deviations (fixed seed).
    #[test]
    fn device_draws_follow_the_tempered_softmax() {
        let logits = [2.0f32, 1.0, 0.0, -4.0, -10.0];
        let t = 0.8;
        let n = 200_000;
        let rows = vec![logits.to_vec(); n];
        let mut rng = stream(&[7]);
        let uniforms: Vec<f64> = (0..n).map(|_| uniform_f64(&mut rng)).collect();
        let draws = draw_on_device(device_logits(&rows), &vec![0; n], &vec![t; n], &uniforms);
        let w: Vec<f64> = logits.iter().map(|&l| (l as f64 / t).exp()).collect();
        let total: f64 = w.iter().sum();
        let mut counts = [0usize; 5];
        for d in &draws {
            counts[d.token as usize] += 1;
        }
        for (k, &c) in counts.iter().enumerate() {
            let p = w[k] / total;
            let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
            assert!(
                (c as f64 - mean).abs() <= 5.0 * sd + 1.0,
                "category {k}: {c} draws, expected {mean:.1} +- {sd:.1} ({counts:?})"
            );
            let lp = draws
                .iter()
                .find(|d| d.token as usize == k)
                .map(|d| d.log_prob);
            if let Some(lp) = lp {
                assert!(
                    (lp - p.ln()).abs() < 1e-12,
                    "log p({k}) = {lp} vs {}",
                    p.ln()
                );
            }
        }
    }
}

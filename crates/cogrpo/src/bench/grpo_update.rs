//! The Co-GRPO model update as a benchmark workload: the trainer's own
//! [`model_gradients`] (token log-probabilities recomputed with gradients on
//! every recorded canvas, clipped surrogate, backward on thread replicas),
//! global-norm clipping and AdamW, on recorded steps of a fixed shape.
//!
//! The records are synthetic, drawn the way `bench/reference.py` draws its
//! own: each of `trajectories` rows of `len` tokens is revealed in `steps`
//! equal chunks of a random order, so every step's canvas holds the earlier
//! chunks and reveals the next one. Throughput does not depend on the
//! values, only on these shapes, which match a rollout of the same size.

use burn::optim::Optimizer;
use envs::StepRecord;
use envs::seeding::stream;
use mdm::Denoiser;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::grpo::loss::Clip;
use crate::grpo::update::{Sample, model_gradients};
use crate::optim::clip_global_norm;
use mdm::AutodiffKernels;

const GRPO_BENCH: u64 = 0x6772_706f_6200_0102;

/// `trajectories x steps` recorded steps of `len` tokens over `vocab`
/// (mask id `vocab`), with advantages of +1 and -1 alternating by row.
pub fn synthetic_records(
    trajectories: usize,
    steps: usize,
    len: usize,
    vocab: usize,
    seed: u64,
) -> (Vec<StepRecord>, Vec<f32>) {
    let mut records = Vec::with_capacity(trajectories * steps);
    let mut advantages = Vec::with_capacity(trajectories * steps);
    let chunk = len.div_ceil(steps);
    for r in 0..trajectories {
        let mut rng = stream(&[GRPO_BENCH, seed, r as u64]);
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng);
        let clean: Vec<u32> = (0..len)
            .map(|_| rng.random_range(0..vocab as u32))
            .collect();
        let mut canvas = vec![vocab as u32; len];
        for (step, revealed) in order.chunks(chunk).enumerate() {
            let tokens: Vec<u32> = revealed.iter().map(|&p| clean[p]).collect();
            records.push(StepRecord::token_step(
                (step, steps),
                canvas.clone(),
                0,
                revealed.to_vec(),
                tokens,
                // About uniform: the ratio starts near 1 on random weights.
                vec![-(vocab as f64).ln(); revealed.len()],
            ));
            advantages.push(if r % 2 == 0 { 1.0 } else { -1.0 });
            for &p in revealed {
                canvas[p] = clean[p];
            }
        }
    }
    (records, advantages)
}

/// One model update of the trainer on `records`; returns the new model.
pub fn update<B: AutodiffKernels, O: Optimizer<Denoiser<B>, B>>(
    model: Denoiser<B>,
    optim: &mut O,
    records: &[StepRecord],
    advantages: &[f32],
    threads: usize,
    micro_batch_tokens: usize,
    device: &B::Device,
) -> Denoiser<B> {
    let len = records.first().map_or(1, |r| r.canvas.len());
    let samples: Vec<Sample> = records
        .iter()
        .zip(advantages)
        .map(|(record, &advantage)| Sample {
            record,
            advantage,
            // Sequence-level weighting: each trajectory's tokens sum to 1.
            token_weight: 1.0 / len as f32,
            step_weight: 1.0,
        })
        .collect();
    let clip = Clip {
        low: 0.2,
        high: 0.28,
    };
    let (mut grads, _) = model_gradients(
        &model,
        None,
        &samples,
        clip,
        threads,
        micro_batch_tokens,
        device,
    );
    clip_global_norm::<B, _>(&model, &mut grads, 1.0);
    optim.step(1e-5, model, grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every trajectory's steps partition its positions, each canvas holds
    /// exactly the earlier steps' tokens, and the last canvas plus its
    /// reveals is the clean row.
    #[test]
    fn records_reveal_each_position_once_in_order() {
        let (records, adv) = synthetic_records(3, 4, 10, 7, 0);
        assert_eq!(records.len(), 12);
        assert_eq!(adv.len(), 12);
        for t in records.chunks(4) {
            let mut seen = [false; 10];
            for (k, rec) in t.iter().enumerate() {
                assert_eq!(rec.step, k);
                for (p, &was_seen) in seen.iter().enumerate() {
                    assert_eq!(rec.canvas[p] != 7, was_seen, "step {k} position {p}");
                }
                for (&p, &tok) in rec.revealed.iter().zip(&rec.tokens) {
                    assert!(!seen[p]);
                    assert!(tok < 7);
                    seen[p] = true;
                }
            }
            assert!(seen.iter().all(|&s| s));
        }
    }
}

//! Recorded steps of a fixed shape, drawn the way `bench/reference.py`
//! draws its own: each of `trajectories` rows of `len` tokens is revealed in
//! `steps` equal chunks of a random order, so every step's canvas holds the
//! earlier chunks and reveals the next one. The benchmark's Co-GRPO update
//! row runs on them (its throughput depends on these shapes, not on the
//! values), and so do tests of the update.

use envs::StepRecord;
use envs::seeding::stream;
use rand::Rng;
use rand::seq::SliceRandom;

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

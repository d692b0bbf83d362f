//! What a learned schedule sees of a state: features computed from the
//! model's (conditional, untempered) logits at the masked positions.
//!
//! They depend on theta, so rollouts record them with the trajectory: the
//! schedule policy's log-probability is then recomputed on exactly the
//! observation it acted on, whatever the model has become since.

/// Per-state features (width [`STATE_FEATURES`]): `t/T`, masked share of the
/// block being decoded (the answer, without blocks), mean and min
/// confidence (max probability) over its masked positions, mean normalized
/// entropy, `1/(T_b - t_b)` (share of the block's rest this step decodes
/// under a linear schedule). A block-wise schedule's policy also sees where
/// it is among the blocks ([`BLOCK_FEATURES`]).
pub const STATE_FEATURES: usize = 6;

/// Extra state features of a block-wise schedule: the block's index over
/// the block count and the step within the block over its steps.
pub const BLOCK_FEATURES: usize = 2;

/// State features a policy reads: with block features or without.
pub fn state_feature_count(block_wise: bool) -> usize {
    STATE_FEATURES + if block_wise { BLOCK_FEATURES } else { 0 }
}

/// Where a decision falls among the blocks of a row's answer (one block as
/// long as the answer without block-wise decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPosition {
    pub index: usize,
    pub count: usize,
    /// The step within the block, and the block's share of the steps.
    pub step: usize,
    pub steps: usize,
    /// The block's positions.
    pub len: usize,
    /// Whether the schedule decodes block-wise (the policy reads
    /// [`BLOCK_FEATURES`]), even where a short answer has one block.
    pub block_wise: bool,
}

/// Per-candidate features (width [`CANDIDATE_FEATURES`]): log confidence,
/// margin between the two most likely tokens, normalized entropy, position
/// within the answer (0..1), `t/T`.
pub const CANDIDATE_FEATURES: usize = 5;

/// Summary of one position's predictive distribution.
#[derive(Debug, Clone, Copy)]
pub struct PositionStats {
    pub confidence: f64,
    pub margin: f64,
    /// Entropy divided by `ln V`, in [0, 1].
    pub entropy: f64,
}

impl PositionStats {
    pub fn of(logits: &[f32]) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        let (mut p1, mut p2, mut h) = (0.0f64, 0.0f64, 0.0f64);
        for e in &exps {
            let p = e / total;
            if p > p1 {
                p2 = p1;
                p1 = p;
            } else if p > p2 {
                p2 = p;
            }
            if p > 0.0 {
                h -= p * p.ln();
            }
        }
        let norm = (logits.len().max(2) as f64).ln();
        Self {
            confidence: p1,
            margin: p1 - p2,
            entropy: h / norm,
        }
    }
}

/// State features of a row at step `t` of `total`, in `block` (see
/// [`STATE_FEATURES`]); `stats` are the block's masked positions'.
pub fn state_features(
    stats: &[PositionStats],
    block: &BlockPosition,
    t: usize,
    total: usize,
) -> Vec<f32> {
    let n = stats.len().max(1) as f64;
    let mean_conf = stats.iter().map(|s| s.confidence).sum::<f64>() / n;
    let min_conf = stats
        .iter()
        .map(|s| s.confidence)
        .fold(f64::INFINITY, f64::min)
        .min(1.0);
    let mean_h = stats.iter().map(|s| s.entropy).sum::<f64>() / n;
    let mut out = vec![
        t as f64 / total as f64,
        stats.len() as f64 / block.len.max(1) as f64,
        mean_conf,
        min_conf,
        mean_h,
        1.0 / block.steps.saturating_sub(block.step).max(1) as f64,
    ];
    if block.block_wise {
        out.push(block.index as f64 / block.count.max(1) as f64);
        out.push(block.step as f64 / block.steps.max(1) as f64);
    }
    out.iter().map(|&x| x as f32).collect()
}

/// Candidate features of the masked `positions` (row-major).
pub fn candidate_features(
    stats: &[PositionStats],
    positions: &[usize],
    prompt_len: usize,
    answer_len: usize,
    t: usize,
    total: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(stats.len() * CANDIDATE_FEATURES);
    for (s, &p) in stats.iter().zip(positions) {
        out.extend([
            s.confidence.max(1e-12).ln() as f32,
            s.margin as f32,
            s.entropy as f32,
            ((p - prompt_len) as f64 / answer_len.max(1) as f64) as f32,
            (t as f64 / total as f64) as f32,
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One block as long as the answer gives the whole-answer features; a
    /// block-wise schedule adds where the step is among the blocks.
    #[test]
    fn block_features_read_the_block() {
        let stats = [PositionStats::of(&[0.0; 4]), PositionStats::of(&[1.0, 0.0])];
        let whole = BlockPosition {
            index: 0,
            count: 1,
            step: 1,
            steps: 4,
            len: 8,
            block_wise: false,
        };
        let f = state_features(&stats, &whole, 1, 4);
        assert_eq!(f.len(), STATE_FEATURES);
        assert_eq!((f[0], f[1], f[5]), (0.25, 0.25, 1.0 / 3.0));
        let second = BlockPosition {
            index: 1,
            count: 2,
            step: 0,
            steps: 2,
            len: 4,
            block_wise: true,
        };
        let f = state_features(&stats, &second, 2, 4);
        assert_eq!(f.len(), state_feature_count(true));
        assert_eq!((f[0], f[1], f[5]), (0.5, 0.5, 0.5));
        assert_eq!((f[6], f[7]), (0.5, 0.0));
    }

    #[test]
    fn position_stats_of_known_distributions() {
        let uniform = PositionStats::of(&[0.0; 4]);
        assert!((uniform.confidence - 0.25).abs() < 1e-12);
        assert!(uniform.margin.abs() < 1e-12);
        assert!((uniform.entropy - 1.0).abs() < 1e-12);
        // p = (0.5, 0.25, 0.25)
        let s = PositionStats::of(&[2f32.ln(), 0.0, 0.0]);
        assert!((s.confidence - 0.5).abs() < 1e-6);
        assert!((s.margin - 0.25).abs() < 1e-6);
        let h = -(0.5 * 0.5f64.ln() + 0.5 * 0.25f64.ln()) / 3f64.ln();
        assert!((s.entropy - h).abs() < 1e-6);
    }
}

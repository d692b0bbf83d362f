//! Block-wise (semi-autoregressive) decoding, as LLaDA samples (Nie et al.
//! 2025, `generate.py`): the answer is split into blocks of `block_length`
//! positions decoded left to right, the steps shared out among the blocks,
//! and each block filled by the sampler's own rule over its share, all of
//! it by the block's last step. `block_length = 0` (or one at least the
//! answer's length) is one block: the whole answer at once.
//!
//! LLaDA requires the steps to divide evenly among the blocks; here a
//! remainder goes one step each to the first blocks, so every step count
//! from the block count up is accepted.

use std::ops::Range;

/// Where step `step` of a rollout falls for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockStep {
    /// The block being decoded: its index and its canvas positions.
    pub index: usize,
    pub range: Range<usize>,
    /// The step within the block, and the block's share of the steps.
    pub step: usize,
    pub steps: usize,
}

/// How many blocks of `block_length` an answer of `answer_len` positions
/// has (one for `block_length = 0`); each needs a step at least.
pub fn block_count(answer_len: usize, block_length: usize) -> usize {
    match block_length {
        0 => 1,
        b => answer_len.div_ceil(b).max(1),
    }
}

/// The blocks of an answer at canvas positions `answer`.
pub(crate) fn blocks(answer: Range<usize>, block_length: usize) -> Vec<Range<usize>> {
    let len = answer.len();
    if block_count(len, block_length) == 1 {
        return vec![answer];
    }
    (0..block_count(len, block_length))
        .map(|b| answer.start + b * block_length..answer.start + ((b + 1) * block_length).min(len))
        .collect()
}

/// Steps of block `b` of `n_blocks` when `total` are shared out.
fn share(total: usize, n_blocks: usize, b: usize) -> usize {
    total / n_blocks + usize::from(b < total % n_blocks)
}

/// Where step `step` (0-based) of `total` falls among `blocks`.
pub(crate) fn block_step(blocks: &[Range<usize>], step: usize, total: usize) -> BlockStep {
    let n = blocks.len();
    let mut first = 0;
    for (b, range) in blocks.iter().enumerate() {
        let steps = share(total, n, b);
        if step < first + steps || b + 1 == n {
            return BlockStep {
                index: b,
                range: range.clone(),
                step: step - first,
                steps,
            };
        }
        first += steps;
    }
    unreachable!("an answer has at least one block")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_tile_the_answer_and_steps_are_shared_out_in_order() {
        assert_eq!(blocks(4..14, 0), vec![4..14]);
        assert_eq!(blocks(4..14, 10), vec![4..14]);
        assert_eq!(blocks(4..14, 4), vec![4..8, 8..12, 12..14]);
        // 8 steps over 3 blocks: 3, 3, 2.
        let b = blocks(4..14, 4);
        let at: Vec<(usize, usize, usize)> = (0..8)
            .map(|s| {
                let bs = block_step(&b, s, 8);
                (bs.index, bs.step, bs.steps)
            })
            .collect();
        let expected = [
            (0, 0, 3),
            (0, 1, 3),
            (0, 2, 3),
            (1, 0, 3),
            (1, 1, 3),
            (1, 2, 3),
            (2, 0, 2),
            (2, 1, 2),
        ];
        assert_eq!(at, expected);
        // One block: the rollout's own step and total.
        assert_eq!(
            block_step(&blocks(0..5, 0), 3, 7),
            BlockStep {
                index: 0,
                range: 0..5,
                step: 3,
                steps: 7
            }
        );
    }
}

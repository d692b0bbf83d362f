//! The model factor `log p_theta(V_t^i | s_t, A_t)` recomputed on recorded
//! steps, with gradients: the numerator of the model's importance ratio.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use envs::StepRecord;
use envs::canvas::prompt_masked;
use mdm::Denoiser;

use crate::network::{column, guided};
use mdm::Kernels;

/// Log-probabilities `[K]` of every revealed token of `records` (in record
/// order, then reveal order) under `model`, at each step's temperature and
/// guidance, and the entropy `[K]` of each of those token distributions.
/// Every record must have a positive temperature.
pub fn token_log_probs<B: Kernels>(
    model: &Denoiser<B>,
    records: &[&StepRecord],
    device: &B::Device,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    token_log_probs_kept(model, records, &|_, _| true, device)
}

/// [`token_log_probs`] of the revealed tokens that `keep(record index,
/// canvas position)` keeps (the Co-GRPO loss leaves out what follows an
/// answer's end-of-sequence token). At least one token must be kept.
pub fn token_log_probs_kept<B: Kernels>(
    model: &Denoiser<B>,
    records: &[&StepRecord],
    keep: &dyn Fn(usize, usize) -> bool,
    device: &B::Device,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let n = records.len();
    let len = records.first().map_or(0, |r| r.canvas.len());
    let mut index = Vec::new();
    let mut targets = Vec::new();
    let mut inv_temp = Vec::new();
    let mut scale = Vec::new();
    for (i, r) in records.iter().enumerate() {
        assert!(
            r.temperature > 0.0,
            "a greedy step has no token distribution to optimize"
        );
        for (&pos, &tok) in r.revealed.iter().zip(&r.tokens) {
            if !keep(i, pos) {
                continue;
            }
            index.push((i * len + pos) as i32);
            targets.push(tok as i32);
            inv_temp.push((1.0 / r.temperature) as f32);
            scale.push((1.0 + r.guidance) as f32);
        }
    }
    let k = index.len();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [k]), device);
    let tokens: Vec<u32> = records
        .iter()
        .flat_map(|r| r.canvas.iter().copied())
        .collect();
    // Only the revealed positions go through the output head.
    let mut logits = model.logits_at(Denoiser::input(&tokens, n, len, device), index.clone());
    if records.iter().any(|r| r.guidance != 0.0) {
        let uncond: Vec<u32> = records
            .iter()
            .flat_map(|r| prompt_masked(&r.canvas, r.prompt_len, model.mask_id()))
            .collect();
        let lu = model.logits_at(Denoiser::input(&uncond, n, len, device), index);
        logits = guided(logits, lu, column(scale, device));
    }
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [k]), device);
    let picked = logits * column(inv_temp, device);
    let log_p = log_softmax(picked, 1);
    let entropy = (log_p.clone().exp() * log_p.clone())
        .sum_dim(1)
        .reshape([k])
        * (-1.0);
    let logp = log_p.gather(1, targets.reshape([k, 1])).reshape([k]);
    (logp, entropy)
}

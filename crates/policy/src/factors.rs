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
    let q = TokenQuery::new(records, keep, model.mask_id());
    let (n, len) = (q.rows, q.len);
    // Only the revealed positions go through the output head.
    let index =
        || Tensor::<B, 1, Int>::from_data(TensorData::new(q.index.clone(), [q.k()]), device);
    let cond = model.logits_at(
        Denoiser::input(&q.tokens[..n * len], n, len, device),
        index(),
    );
    let uncond = q.guided.then(|| {
        model.logits_at(
            Denoiser::input(&q.tokens[n * len..], n, len, device),
            index(),
        )
    });
    q.log_probs(cond, uncond, device)
}

/// What the model factor reads of recorded steps: the canvases (then, with
/// guidance, the same canvases with their prompts masked), the flat
/// positions of the kept revealed tokens and each token's target,
/// temperature and guidance scale.
pub struct TokenQuery {
    tokens: Vec<u32>,
    rows: usize,
    len: usize,
    index: Vec<i32>,
    targets: Vec<i32>,
    inv_temp: Vec<f32>,
    scale: Vec<f32>,
    guided: bool,
}

impl TokenQuery {
    /// The query of `records`' revealed tokens that `keep` keeps; every
    /// record must have a positive temperature.
    pub fn new(records: &[&StepRecord], keep: &dyn Fn(usize, usize) -> bool, mask_id: u32) -> Self {
        let len = records.first().map_or(0, |r| r.canvas.len());
        let (mut index, mut targets, mut inv_temp, mut scale) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
        let guided = records.iter().any(|r| r.guidance != 0.0);
        let mut tokens: Vec<u32> = records
            .iter()
            .flat_map(|r| r.canvas.iter().copied())
            .collect();
        if guided {
            tokens.extend(
                records
                    .iter()
                    .flat_map(|r| prompt_masked(&r.canvas, r.prompt_len, mask_id)),
            );
        }
        Self {
            tokens,
            rows: records.len(),
            len,
            index,
            targets,
            inv_temp,
            scale,
            guided,
        }
    }

    /// The tokens read.
    pub fn k(&self) -> usize {
        self.index.len()
    }

    /// Every canvas row the forward pass reads (the prompt-masked copies
    /// after the canvases, when guided): `[rows (x 2), len]`.
    pub fn input<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        let rows = self.tokens.len() / self.len.max(1);
        Denoiser::input(&self.tokens, rows, self.len, device)
    }

    /// The log-probabilities and entropies from the last block's output
    /// for [`Self::input`] (a checkpointed forward).
    pub fn log_probs_from_hidden<B: Kernels>(
        &self,
        model: &Denoiser<B>,
        hidden: Tensor<B, 2>,
        device: &B::Device,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let k = self.k();
        let index =
            Tensor::<B, 1, Int>::from_data(TensorData::new(self.index.clone(), [k]), device);
        let cond = model.logits_at_hidden(hidden.clone(), self.len, index.clone());
        let uncond = self.guided.then(|| {
            let shift = (self.rows * self.len) as i32;
            model.logits_at_hidden(hidden, self.len, index.add_scalar(shift))
        });
        self.log_probs(cond, uncond, device)
    }

    /// Log-probabilities `[K]` of the targets and the entropies `[K]` of
    /// the tempered (and guided) token distributions.
    fn log_probs<B: Kernels>(
        &self,
        cond: Tensor<B, 2>,
        uncond: Option<Tensor<B, 2>>,
        device: &B::Device,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let k = self.k();
        let logits = match uncond {
            Some(lu) => guided(cond, lu, column(self.scale.clone(), device)),
            None => cond,
        };
        let targets =
            Tensor::<B, 1, Int>::from_data(TensorData::new(self.targets.clone(), [k]), device);
        let picked = logits * column(self.inv_temp.clone(), device);
        let log_p = log_softmax(picked, 1);
        let entropy = (log_p.clone().exp() * log_p.clone())
            .sum_dim(1)
            .reshape([k])
            * (-1.0);
        let logp = log_p.gather(1, targets.reshape([k, 1])).reshape([k]);
        (logp, entropy)
    }
}

//! The forward (masking) process and the diffusion loss.
//!
//! Forward process (SMDM / MDLM, linear schedule): at time t ~ U(0, 1) each
//! token is replaced by `[MASK]` independently with probability
//! `p = (1 - eps) t + eps`. The loss is the continuous-time ELBO:
//!
//!   L = E_t [ (1 / p) * sum_{masked i} -log p_theta(x_i | x_t) ] / N
//!
//! where N is the number of positions that could be masked: `B * L` for
//! unconditional pre-training, the number of answer positions for
//! conditional fine-tuning (prompt kept clean; SMDM's SFT objective).
//!
//! Noise is drawn on the host from a caller-given stream, so a training step
//! is reproducible from `(seed, step)` alone on any backend.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::kernels::Kernels;
use rand::Rng;

/// The masking process `p(t) = (1 - eps) t + eps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForwardProcess {
    /// Smallest masking probability, keeps 1/p bounded (SMDM uses 1e-3).
    pub eps: f64,
    /// Draw the batch's times stratified (MDLM's low-discrepancy sampler)
    /// instead of independently. Both give an unbiased ELBO; which one
    /// trains faster is task dependent (see `pretrain.stratified_t`).
    pub stratified: bool,
}

impl Default for ForwardProcess {
    fn default() -> Self {
        Self {
            eps: 1e-3,
            stratified: false,
        }
    }
}

/// One sequence to corrupt: its clean tokens and how many leading tokens are
/// a prompt that stays clean (0 for unconditional data).
#[derive(Debug, Clone, Copy)]
pub struct CleanRow<'a> {
    pub tokens: &'a [u32],
    pub prompt_len: usize,
}

/// A corrupted batch ready for the denoiser, row-major `[batch, len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NoisedBatch {
    pub batch: usize,
    pub len: usize,
    /// Model input: clean tokens with masks.
    pub input: Vec<u32>,
    /// Clean tokens.
    pub target: Vec<u32>,
    /// `1 / p` at masked answer positions, 0 elsewhere.
    pub weight: Vec<f32>,
    /// Positions that could have been masked (the loss divides by this).
    pub normalizer: f32,
}

impl ForwardProcess {
    pub fn mask_prob(&self, t: f64) -> f64 {
        (1.0 - self.eps) * t + self.eps
    }

    /// Corrupts rows for training, with probability `prompt_dropout` masking
    /// a row's prompt too (unscored) so that the model also learns the
    /// unconditional distribution used by guidance.
    ///
    /// With `stratified`, times are t_r = (r + u) / B with one uniform u
    /// (MDLM's low-discrepancy sampler): each t is still uniform, so the loss
    /// stays an unbiased ELBO estimate, but the batch covers [0, 1] evenly.
    /// Otherwise every row draws its own t ~ U(0, 1) (SMDM).
    pub fn corrupt<R: Rng + ?Sized>(
        &self,
        rows: &[CleanRow<'_>],
        mask_id: u32,
        prompt_dropout: f64,
        rng: &mut R,
    ) -> NoisedBatch {
        let mut out = NoisedBatch::empty(rows);
        let u = rng.random::<f64>();
        let n = rows.len() as f64;
        for (r, row) in rows.iter().enumerate() {
            let t = if self.stratified {
                (r as f64 + u) / n
            } else {
                rng.random::<f64>()
            };
            let p = self.mask_prob(t);
            let drop_prompt = prompt_dropout > 0.0 && rng.random::<f64>() < prompt_dropout;
            out.fill_row(row, mask_id, p, drop_prompt, rng);
        }
        out
    }

    /// Corrupts row `r` with masking probability `probs[r]`, drawing from
    /// its own stream `rngs[r]` (the likelihood estimate picks stratified
    /// times itself and keys its noise per example, so a row's estimate does
    /// not depend on the batch it is in).
    pub fn corrupt_with_probs<R: Rng>(
        rows: &[CleanRow<'_>],
        probs: &[f64],
        mask_id: u32,
        rngs: &mut [R],
    ) -> NoisedBatch {
        assert_eq!(rows.len(), rngs.len(), "one random stream per row");
        let mut out = NoisedBatch::empty(rows);
        for ((row, &p), rng) in rows.iter().zip(probs).zip(rngs.iter_mut()) {
            out.fill_row(row, mask_id, p, false, rng);
        }
        out
    }
}

impl NoisedBatch {
    fn empty(rows: &[CleanRow<'_>]) -> Self {
        let len = rows.first().map_or(0, |r| r.tokens.len());
        assert!(
            rows.iter().all(|r| r.tokens.len() == len),
            "rows differ in length"
        );
        assert!(
            rows.iter().all(|r| r.prompt_len <= len),
            "prompt longer than its row"
        );
        Self {
            batch: rows.len(),
            len,
            input: Vec::with_capacity(rows.len() * len),
            target: Vec::with_capacity(rows.len() * len),
            weight: Vec::with_capacity(rows.len() * len),
            normalizer: rows.iter().map(|r| (len - r.prompt_len) as f32).sum(),
        }
    }

    fn fill_row<R: Rng + ?Sized>(
        &mut self,
        row: &CleanRow<'_>,
        mask_id: u32,
        p: f64,
        drop_prompt: bool,
        rng: &mut R,
    ) {
        for (i, &tok) in row.tokens.iter().enumerate() {
            self.target.push(tok);
            if i < row.prompt_len {
                self.input.push(if drop_prompt { mask_id } else { tok });
                self.weight.push(0.0);
            } else if rng.random::<f64>() < p {
                self.input.push(mask_id);
                self.weight.push((1.0 / p) as f32);
            } else {
                self.input.push(tok);
                self.weight.push(0.0);
            }
        }
    }

    /// Splits the rows into `parts` consecutive shards (for data-parallel
    /// workers). Each shard keeps the whole batch's normalizer, so the shard
    /// losses add up to the batch loss.
    pub fn split(&self, parts: usize) -> Vec<NoisedBatch> {
        let parts = parts.clamp(1, self.batch.max(1));
        let (base, extra) = (self.batch / parts, self.batch % parts);
        let mut start = 0;
        (0..parts)
            .map(|i| {
                let rows = base + usize::from(i < extra);
                let (a, b) = (start * self.len, (start + rows) * self.len);
                start += rows;
                NoisedBatch {
                    batch: rows,
                    len: self.len,
                    input: self.input[a..b].to_vec(),
                    target: self.target[a..b].to_vec(),
                    weight: self.weight[a..b].to_vec(),
                    normalizer: self.normalizer,
                }
            })
            .collect()
    }

    /// Number of masked, scored positions.
    pub fn masked_count(&self) -> usize {
        self.weight.iter().filter(|&&w| w > 0.0).count()
    }

    pub fn weight_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(self.weight.clone(), [self.batch, self.len]),
            device,
        )
    }

    pub fn target_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        let ids: Vec<i32> = self.target.iter().map(|&t| t as i32).collect();
        Tensor::from_data(TensorData::new(ids, [self.batch, self.len]), device)
    }
}

/// `weight[b, i] * -log softmax(logits[b, i])[target[b, i]]`, shape `[batch, len]`.
pub fn weighted_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let [batch, len, _] = logits.dims();
    let logp = log_softmax(logits, 2)
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .reshape([batch, len]);
    logp.neg() * weights
}

/// `weight * -log p(target)` at every position of `batch`, `[batch, len]`:
/// the one place the model meets a weighted token batch (the MDM's masked
/// rows, the ARM's shifted ones).
pub fn token_losses<B: Kernels>(
    model: &crate::Denoiser<B>,
    batch: &NoisedBatch,
    device: &B::Device,
) -> Tensor<B, 2> {
    let logits = model.forward(crate::Denoiser::input(
        &batch.input,
        batch.batch,
        batch.len,
        device,
    ));
    weighted_cross_entropy(
        logits,
        batch.target_tensor(device),
        batch.weight_tensor(device),
    )
}

/// [`token_losses`] summed per row, on the host.
pub fn row_losses<B: Kernels>(
    model: &crate::Denoiser<B>,
    batch: &NoisedBatch,
    device: &B::Device,
) -> Vec<f64> {
    token_losses(model, batch, device)
        .sum_dim(1)
        .into_data()
        .convert::<f32>()
        .iter::<f32>()
        .map(f64::from)
        .collect()
}

/// [`diffusion_loss`] and its gradients by gradient checkpointing
/// ([`crate::Denoiser::checkpointed_gradients`]), times `scale`; the logits
/// of every position come from the top hidden state.
pub fn checkpointed_diffusion_gradients<B: crate::AutodiffKernels>(
    model: &crate::Denoiser<B>,
    batch: &NoisedBatch,
    scale: f64,
    device: &B::Device,
) -> (f64, burn::optim::GradientsParams) {
    let input = crate::Denoiser::input(&batch.input, batch.batch, batch.len, device);
    let (grads, value) = model.checkpointed_gradients(input, |m, hidden| {
        let n = batch.batch * batch.len;
        let every = Tensor::<B, 1, Int>::arange(0..n as i64, device);
        let logits = m.logits_at_hidden(hidden, batch.len, every).reshape([
            batch.batch,
            batch.len,
            m.vocab_size(),
        ]);
        let losses = weighted_cross_entropy(
            logits,
            batch.target_tensor(device),
            batch.weight_tensor(device),
        );
        losses.sum() / batch.normalizer.max(1.0) * scale
    });
    (value, grads)
}

/// The diffusion loss of a corrupted batch (a scalar tensor).
pub fn diffusion_loss<B: Kernels>(
    model: &crate::Denoiser<B>,
    batch: &NoisedBatch,
    device: &B::Device,
) -> Tensor<B, 1> {
    token_losses(model, batch, device).sum() / batch.normalizer.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    type B = Flex;

    #[test]
    fn cross_entropy_on_hand_made_logits() {
        let dev = Default::default();
        // Two positions over a vocabulary of 3.
        // row 0: logits (0, 0, 0) target 1 -> ln 3; weight 2
        // row 1: logits (ln 1, ln 2, ln 1) target 1 -> -ln(2/4) = ln 2; weight 0.5
        let l2 = 2f32.ln();
        let logits = Tensor::<B, 3>::from_data(
            TensorData::new(vec![0.0, 0.0, 0.0, 0.0, l2, 0.0], [1, 2, 3]),
            &dev,
        );
        let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i32, 1], [1, 2]), &dev);
        let weights = Tensor::<B, 2>::from_data(TensorData::new(vec![2.0f32, 0.5], [1, 2]), &dev);
        let ce: Vec<f32> = weighted_cross_entropy(logits, targets, weights)
            .into_data()
            .to_vec()
            .unwrap();
        assert!((ce[0] - 2.0 * 3f32.ln()).abs() < 1e-6, "{ce:?}");
        assert!((ce[1] - 0.5 * 2f32.ln()).abs() < 1e-6, "{ce:?}");
    }

    #[test]
    fn conditional_corruption_keeps_prompt_and_weights_by_inverse_prob() {
        let tokens: Vec<u32> = (0..10).collect();
        let rows = [CleanRow {
            tokens: &tokens,
            prompt_len: 4,
        }; 3];
        let mut rngs: Vec<StdRng> = (0..3).map(StdRng::seed_from_u64).collect();
        let b = ForwardProcess::corrupt_with_probs(&rows, &[1.0, 0.5, 0.0], 99, &mut rngs);
        assert_eq!(b.normalizer, 18.0);
        // p = 1: the whole answer is masked, weight 1; the prompt stays.
        assert_eq!(&b.input[..10], &[0, 1, 2, 3, 99, 99, 99, 99, 99, 99]);
        assert_eq!(
            &b.weight[..10],
            &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
        );
        // p = 0.5: masked positions weigh 2.
        assert!(b.weight[10..20].iter().all(|&w| w == 0.0 || w == 2.0));
        assert_eq!(&b.input[20..30], &tokens[..]);
    }

    #[test]
    fn masking_rate_follows_the_schedule() {
        // Mean masked share over uniform t is (1 - eps)/2 + eps.
        let fp = ForwardProcess {
            eps: 0.1,
            stratified: true,
        };
        let tokens = vec![1u32; 64];
        let rows = vec![
            CleanRow {
                tokens: &tokens,
                prompt_len: 0
            };
            2000
        ];
        let b = fp.corrupt(&rows, 7, 0.0, &mut StdRng::seed_from_u64(1));
        let share = b.masked_count() as f64 / (2000.0 * 64.0);
        // Stratified t: only the Bernoulli noise remains, sd ~ 0.5/sqrt(128000).
        assert!((share - 0.55).abs() < 0.01, "masked share {share}");
        // Row r has t in [r/B, (r+1)/B): the first rows are barely masked,
        // the last almost fully.
        let row_share = |r: usize| {
            b.input[r * 64..(r + 1) * 64]
                .iter()
                .filter(|&&t| t == 7)
                .count()
        };
        assert!((0..20).map(row_share).sum::<usize>() < 20 * 64 / 5);
        assert!((1980..2000).map(row_share).sum::<usize>() > 20 * 64 * 4 / 5);

        // Independent t: the same mean; the sd of the share is now dominated
        // by t, sqrt(0.9^2 / 12 / 2000) ~ 0.006, so 0.03 is 5 sd.
        let fp = ForwardProcess {
            eps: 0.1,
            stratified: false,
        };
        let b = fp.corrupt(&rows, 7, 0.0, &mut StdRng::seed_from_u64(2));
        let share = b.masked_count() as f64 / (2000.0 * 64.0);
        assert!((share - 0.55).abs() < 0.03, "masked share {share}");
        // ... and no ordering of rows by t: both ends are masked about half.
        let row_share = |r: usize| {
            b.input[r * 64..(r + 1) * 64]
                .iter()
                .filter(|&&t| t == 7)
                .count()
        };
        let low = (0..200).map(row_share).sum::<usize>() as f64 / (200.0 * 64.0);
        let high = (1800..2000).map(row_share).sum::<usize>() as f64 / (200.0 * 64.0);
        assert!(
            (low - 0.55).abs() < 0.1 && (high - 0.55).abs() < 0.1,
            "{low} {high}"
        );
    }

    #[test]
    fn shards_add_up_to_the_batch_loss() {
        let dev = Default::default();
        let model = crate::DenoiserConfig::new(4, 16, 1, 2, 32, 6).init::<B>(0, &dev);
        let tokens: Vec<Vec<u32>> = (0..5)
            .map(|r| (0..6).map(|i| ((r + i) % 4) as u32).collect())
            .collect();
        let rows: Vec<CleanRow> = tokens
            .iter()
            .map(|t| CleanRow {
                tokens: t,
                prompt_len: 1,
            })
            .collect();
        let batch = ForwardProcess::default().corrupt(&rows, 4, 0.0, &mut StdRng::seed_from_u64(3));
        let whole: f32 = diffusion_loss(&model, &batch, &dev).into_scalar();
        let parts = batch.split(2);
        assert_eq!(
            parts.iter().map(|p| p.batch).collect::<Vec<_>>(),
            vec![3, 2]
        );
        let sum: f32 = parts
            .iter()
            .map(|p| diffusion_loss(&model, p, &dev).into_scalar())
            .sum();
        assert!((whole - sum).abs() < 1e-5, "{whole} vs {sum}");
    }

    #[test]
    fn prompt_dropout_masks_prompts_at_its_rate() {
        let fp = ForwardProcess::default();
        let tokens = vec![1u32; 8];
        let rows = vec![
            CleanRow {
                tokens: &tokens,
                prompt_len: 2
            };
            4000
        ];
        let b = fp.corrupt(&rows, 7, 0.25, &mut StdRng::seed_from_u64(2));
        let dropped = (0..4000).filter(|r| b.input[r * 8] == 7).count() as f64 / 4000.0;
        assert!((dropped - 0.25).abs() < 0.035, "dropout rate {dropped}"); // ~5 sd
        assert!((0..4000).all(|r| b.weight[r * 8] == 0.0 && b.weight[r * 8 + 1] == 0.0));
    }

    #[test]
    fn diffusion_loss_matches_a_hand_computation_from_the_logits() {
        let dev = Default::default();
        let cfg = crate::DenoiserConfig::new(4, 16, 1, 2, 32, 6);
        let model = cfg.init::<B>(0, &dev);
        let batch = NoisedBatch {
            batch: 1,
            len: 6,
            input: vec![1, 2, 4, 3, 4, 4],
            target: vec![1, 2, 0, 3, 2, 1],
            weight: vec![0.0, 0.0, 2.0, 0.0, 2.0, 2.0],
            normalizer: 4.0,
        };
        let loss: f32 = diffusion_loss(&model, &batch, &dev).into_scalar();
        let logits: Vec<f32> = model
            .forward(crate::Denoiser::input(&batch.input, 1, 6, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        let mut expect = 0.0f64;
        for i in [2usize, 4, 5] {
            let row = &logits[i * 4..(i + 1) * 4];
            let lse = row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
            expect += 2.0 * (lse - row[batch.target[i] as usize] as f64);
        }
        expect /= 4.0;
        assert!((loss as f64 - expect).abs() < 1e-5, "{loss} vs {expect}");
    }
}

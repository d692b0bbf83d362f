//! The autoregressive family (ARM): the shared backbone with causal
//! attention, trained by next-token prediction (teacher forcing) and sampled
//! left to right with a KV cache ([`crate::Denoiser::forward_cached`]). It is
//! SMDM's baseline: the comparison of quality, sampling speed and the
//! reversal curse needs it on the same network.
//!
//! The loss is the MDM's weighted cross-entropy ([`crate::loss`]) on a
//! shifted batch: the input is `<bos> x_0 .. x_{L-2}`, the target `x_0 ..
//! x_{L-1}`, weight 1 on answer positions, so that
//! `diffusion_loss` of it is the mean next-token NLL of the answer tokens.

use crate::kernels::Kernels;
use crate::loss::{CleanRow, NoisedBatch, row_losses};

/// The teacher-forcing batch of `rows` (all of one length): every answer
/// token is scored given `<bos>` and everything before it.
pub fn shifted_batch(rows: &[CleanRow<'_>], bos: u32) -> NoisedBatch {
    let len = rows.first().map_or(0, |r| r.tokens.len());
    assert!(
        rows.iter().all(|r| r.tokens.len() == len),
        "rows differ in length"
    );
    let mut out = NoisedBatch {
        batch: rows.len(),
        len,
        input: Vec::with_capacity(rows.len() * len),
        target: Vec::with_capacity(rows.len() * len),
        weight: Vec::with_capacity(rows.len() * len),
        normalizer: 0.0,
    };
    for row in rows {
        assert!(row.prompt_len <= len, "prompt longer than its row");
        out.input.push(bos);
        out.input
            .extend_from_slice(&row.tokens[..len.saturating_sub(1)]);
        out.target.extend_from_slice(row.tokens);
        out.weight
            .extend((0..len).map(|i| if i < row.prompt_len { 0.0 } else { 1.0 }));
        out.normalizer += (len - row.prompt_len) as f32;
    }
    out
}

/// Exact negative log-likelihood (nats) of each row's answer under a causal
/// model: `-sum_i log p(x_i | x_<i)` over the weighted positions of a
/// [`shifted_batch`].
pub fn answer_nll<B: Kernels>(
    model: &crate::Denoiser<B>,
    batch: &NoisedBatch,
    device: &B::Device,
) -> Vec<f64> {
    row_losses(model, batch, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DenoiserConfig, Family};
    use burn::backend::Flex;
    use burn::prelude::*;

    type B = Flex;

    #[test]
    fn shifted_batch_scores_answer_tokens_after_their_prefix() {
        let row = [4u32, 5, 1, 2];
        let b = shifted_batch(
            &[CleanRow {
                tokens: &row,
                prompt_len: 2,
            }],
            9,
        );
        assert_eq!(b.input, [9, 4, 5, 1]);
        assert_eq!(b.target, [4, 5, 1, 2]);
        assert_eq!(b.weight, [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(b.normalizer, 2.0);
    }

    fn arm(seed: u64) -> crate::Denoiser<B> {
        DenoiserConfig::new(6, 32, 2, 4, 48, 12)
            .with_family(Family::Arm)
            .init::<B>(seed, &Default::default())
    }

    #[test]
    fn attention_is_causal() {
        // Changing a later token leaves every earlier position's logits alone
        // and changes its own.
        let m = arm(2);
        let dev = Default::default();
        let run = |ids: &[u32]| -> Vec<f32> {
            m.forward(crate::Denoiser::<B>::input(ids, 1, 5, &dev))
                .into_data()
                .to_vec()
                .unwrap()
        };
        let (a, b) = (run(&[6, 1, 2, 3, 4]), run(&[6, 1, 2, 0, 4]));
        assert_eq!(a[..3 * 6], b[..3 * 6]);
        assert!(a[3 * 6..4 * 6] != b[3 * 6..4 * 6]);
    }

    /// The KV cache computes the same function: logits of a sequence fed as
    /// a prompt chunk and then one token at a time (with a row dropped from
    /// the cache half-way) equal the full causal forward pass.
    #[test]
    #[allow(clippy::needless_range_loop)] // positions index rows and logits alike
    fn logits_with_the_cache_equal_logits_without_it() {
        let m = arm(3);
        let dev = Default::default();
        let rows: [[u32; 7]; 2] = [[6, 1, 2, 3, 0, 5, 2], [6, 4, 4, 1, 2, 2, 3]];
        let flat: Vec<u32> = rows.iter().flatten().copied().collect();
        let full: Vec<f32> = m
            .forward(crate::Denoiser::<B>::input(&flat, 2, 7, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        let at = |row: usize, pos: usize| &full[(row * 7 + pos) * 6..(row * 7 + pos + 1) * 6];
        let close = |got: &[f32], want: &[f32], what: &str| {
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{what}: {g} vs {w}"
                );
            }
        };
        let mut cache = m.kv_cache();
        let prefix: Vec<u32> = rows.iter().flat_map(|r| r[..3].to_vec()).collect();
        let chunk: Vec<f32> = m
            .forward_cached(crate::Denoiser::<B>::input(&prefix, 2, 3, &dev), &mut cache)
            .into_data()
            .to_vec()
            .unwrap();
        for r in 0..2 {
            for p in 0..3 {
                close(
                    &chunk[(r * 3 + p) * 6..(r * 3 + p + 1) * 6],
                    at(r, p),
                    "prefill",
                );
            }
        }
        for p in 3..7 {
            let live: Vec<usize> = if p < 5 { vec![0, 1] } else { vec![1] };
            if p == 5 {
                cache.select_rows(Tensor::from_data(TensorData::new(vec![1i32], [1]), &dev));
            }
            let step: Vec<u32> = live.iter().map(|&r| rows[r][p]).collect();
            let got: Vec<f32> = m
                .forward_cached(
                    crate::Denoiser::<B>::input(&step, live.len(), 1, &dev),
                    &mut cache,
                )
                .into_data()
                .to_vec()
                .unwrap();
            for (i, &r) in live.iter().enumerate() {
                close(
                    &got[i * 6..(i + 1) * 6],
                    at(r, p),
                    &format!("row {r} position {p}"),
                );
            }
        }
        assert_eq!(cache.seen(), 7);
    }

    #[test]
    fn answer_nll_sums_the_answer_tokens_log_probs() {
        let m = arm(4);
        let dev = Default::default();
        let row = [1u32, 2, 3, 4];
        let b = shifted_batch(
            &[CleanRow {
                tokens: &row,
                prompt_len: 1,
            }],
            m.bos_id(),
        );
        let nll = answer_nll(&m, &b, &dev)[0];
        let logits: Vec<f32> = m
            .forward(crate::Denoiser::<B>::input(&b.input, 1, 4, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        let mut want = 0.0f64;
        for p in 1..4 {
            let z = &logits[p * 6..(p + 1) * 6];
            let lse = z.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            want += lse - z[row[p] as usize] as f64;
        }
        assert!((nll - want).abs() < 1e-4, "{nll} vs {want}");
    }
}

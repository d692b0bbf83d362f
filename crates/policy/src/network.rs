//! What generation asks of the denoiser: logits at chosen positions, with
//! classifier-free guidance, copied to the host.
//!
//! The guidance formula lives here once ([`guided`]) and serves the
//! generation step (no gradients) and the recomputed model factor of the
//! Co-GRPO loss (with gradients, [`crate::factors`]).

use burn::prelude::*;
use envs::Canvas;
use mdm::Denoiser;

use crate::generation::SamplerError;
use mdm::Kernels;

/// Whether `canvas` fits `model`: its length and mask id.
pub fn check_canvas<B: Kernels>(model: &Denoiser<B>, canvas: &Canvas) -> Result<(), SamplerError> {
    if canvas.len() > model.max_len() {
        return Err(SamplerError::TooLong {
            canvas: canvas.len(),
            model: model.max_len(),
        });
    }
    if canvas.mask_id() != model.mask_id() {
        return Err(SamplerError::MaskId {
            canvas: canvas.mask_id(),
            model: model.mask_id(),
        });
    }
    Ok(())
}

/// SMDM's unsupervised classifier-free guidance (Nie et al. 2024, eq. 9):
/// `l_u + (1 + w) (l_c - l_u)`, where `l_u` are the logits with the prompt
/// masked. `scale [K, 1]` holds `1 + w` per row of the `[K, V]` logits.
pub fn guided<B: Kernels>(
    cond: Tensor<B, 2>,
    uncond: Tensor<B, 2>,
    scale: Tensor<B, 2>,
) -> Tensor<B, 2> {
    uncond.clone() + (cond - uncond) * scale
}

/// A `[K, 1]` column of `values` on `device`.
pub fn column<B: Kernels>(values: Vec<f32>, device: &B::Device) -> Tensor<B, 2> {
    let k = values.len();
    Tensor::<B, 1>::from_data(TensorData::new(values, [k]), device).reshape([k, 1])
}

/// Logits `[sum of query lengths, vocab]` of the rows of `tokens`
/// (row-major `[queries.len(), len]`) at each row's `queries` positions.
/// Only those positions go through the output head ([`Denoiser::logits_at`]).
pub fn logits_at_queries<B: Kernels>(
    model: &Denoiser<B>,
    tokens: &[u32],
    len: usize,
    queries: &[Vec<usize>],
    device: &B::Device,
) -> Tensor<B, 2> {
    let rows = queries.len();
    let index: Vec<i32> = queries
        .iter()
        .enumerate()
        .flat_map(|(i, q)| q.iter().map(move |&p| (i * len + p) as i32))
        .collect();
    let n = index.len();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [n]), device);
    model.logits_at(Denoiser::input(tokens, rows, len, device), index)
}

/// The logits of canvas `rows` at their `queries` with guidance `w` per row
/// (0: the conditional logits as they are). When any row is guided, one
/// forward runs over `[conditional rows; prompt-masked rows]` and every row
/// goes through [`guided`] (scale 1 for an unguided row).
pub fn guided_logits_at<B: Kernels>(
    model: &Denoiser<B>,
    canvas: &Canvas,
    rows: &[usize],
    queries: &[Vec<usize>],
    guidance: &[f64],
    device: &B::Device,
) -> Tensor<B, 2> {
    let len = canvas.len();
    if guidance.iter().all(|&w| w == 0.0) {
        return logits_at_queries(model, &canvas.tokens_of_rows(rows), len, queries, device);
    }
    let mut tokens = canvas.tokens_of_rows(rows);
    tokens.extend(canvas.tokens_with_prompt_masked(rows));
    let both_queries: Vec<Vec<usize>> = queries.iter().chain(queries).cloned().collect();
    let both = logits_at_queries(model, &tokens, len, &both_queries, device);
    let k = both.dims()[0] / 2;
    let cond = both.clone().narrow(0, 0, k);
    let uncond = both.narrow(0, k, k);
    guided(cond, uncond, scale_column(queries, guidance, device))
}

/// `1 + w` of each row, repeated over the row's queries, as a `[K, 1]` column.
pub fn scale_column<B: Kernels>(
    queries: &[Vec<usize>],
    guidance: &[f64],
    device: &B::Device,
) -> Tensor<B, 2> {
    let scale: Vec<f32> = queries
        .iter()
        .zip(guidance)
        .flat_map(|(q, &w)| std::iter::repeat_n((1.0 + w) as f32, q.len()))
        .collect();
    column(scale, device)
}

/// A float tensor copied to the host, row-major, as `f32` whatever the
/// backend's float type.
pub fn logits_to_host<B: Kernels, const D: usize>(logits: Tensor<B, D>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float logits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use mdm::DenoiserConfig;

    type B = Flex;

    #[test]
    fn guidance_combines_conditional_and_prompt_masked_logits() {
        let m = DenoiserConfig::new(5, 16, 1, 2, 32, 6).init::<B>(11, &Default::default());
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        canvas.push_row(&[1, 2], 0).unwrap();
        let w = 1.5;
        let got = logits_to_host(guided_logits_at(
            &m,
            &canvas,
            &[0],
            &[vec![3, 5]],
            &[w],
            &dev,
        ));
        let lc = logits_to_host(m.forward(Denoiser::input(&[1, 2, 5, 5, 5, 5], 1, 6, &dev)));
        let lu = logits_to_host(m.forward(Denoiser::input(&[5, 5, 5, 5, 5, 5], 1, 6, &dev)));
        for (i, &pos) in [3usize, 5].iter().enumerate() {
            for v in 0..5 {
                let (c, u) = (lc[pos * 5 + v], lu[pos * 5 + v]);
                let expect = u + (1.0 + w as f32) * (c - u);
                assert!(
                    (got[i * 5 + v] - expect).abs() < 1e-5,
                    "pos {pos} token {v}"
                );
            }
        }
        // Without guidance: the conditional logits themselves.
        let got = logits_to_host(guided_logits_at(
            &m,
            &canvas,
            &[0],
            &[vec![4]],
            &[0.0],
            &dev,
        ));
        assert_eq!(&got[..], &lc[20..25]);
        // A w = 0 row batched with a guided one keeps its conditional logits
        // (scale 1: u + (c - u), equal up to float rounding).
        canvas.push_row(&[1, 2], 1).unwrap();
        let got = logits_to_host(guided_logits_at(
            &m,
            &canvas,
            &[0, 1],
            &[vec![4], vec![4]],
            &[0.0, w],
            &dev,
        ));
        for v in 0..5 {
            assert!((got[v] - lc[20 + v]).abs() < 1e-5, "token {v}");
        }
        assert!((0..5).any(|v| (got[5 + v] - lc[20 + v]).abs() > 1e-3));
    }
}

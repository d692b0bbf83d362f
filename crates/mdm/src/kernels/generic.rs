//! The hot-path operations in burn's generic tensor ops: what every backend
//! runs unless it has fused kernels, and the reference the fused ones are
//! tested against.

use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::attention as fused_attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::precision::{self, matmul};
use super::{Heads, Kernels, Visibility};

/// Added to the score of a key a query may not see: far below any real
/// score, so its softmax weight is exactly 0 in float32, yet finite (no NaN
/// in the backward pass).
const HIDDEN: f32 = -1.0e9;

/// burn's `RmsNorm::forward`, on `[rows, d]`.
pub fn rms_norm<B: Backend>(x: Tensor<B, 2>, gamma: Tensor<B, 1>, eps: f64) -> Tensor<B, 2> {
    let rms = (x.clone().square().mean_dim(1) + eps).sqrt();
    (x / rms) * gamma.unsqueeze()
}

pub fn swiglu<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    silu(a) * b
}

impl Visibility {
    /// The hidden (query, key) pairs as a `[batch, 1, q_len, k_len]` pattern,
    /// `None` when every key is visible.
    pub(crate) fn hidden(&self, batch: usize, q_len: usize, k_len: usize) -> Option<Vec<bool>> {
        let offset = k_len - q_len;
        match self {
            Visibility::All => None,
            Visibility::Causal if q_len == 1 => None,
            Visibility::Causal => Some(
                (0..batch * q_len * k_len)
                    .map(|i| {
                        let (q, k) = ((i / k_len) % q_len, i % k_len);
                        k > offset + q
                    })
                    .collect(),
            ),
            Visibility::KeysUpTo(lens) => {
                assert_eq!(lens.len(), batch, "one length per row");
                Some(
                    (0..batch * q_len * k_len)
                        .map(|i| i % k_len >= lens[i / (q_len * k_len)])
                        .collect(),
                )
            }
        }
    }
}

/// Attention on `[batch * len, heads * head_dim]` rows: split into heads,
/// give each query head its group's key/value head (grouped-query
/// attention), attend, merge.
pub fn attention<B: Kernels>(
    q: Tensor<B, 2>,
    k: Tensor<B, 2>,
    v: Tensor<B, 2>,
    heads: Heads,
    visibility: &Visibility,
) -> Tensor<B, 2> {
    let Heads {
        batch,
        n_heads,
        n_kv_heads,
    } = heads;
    let [rows, d] = q.dims();
    let head_dim = d / n_heads;
    let (q_len, k_len) = (rows / batch, k.dims()[0] / batch);
    let split = |t: Tensor<B, 2>, len: usize, heads: usize| {
        t.reshape([batch, len, heads, head_dim]).swap_dims(1, 2)
    };
    // [batch, kv, len, hd] -> [batch, kv * group, len, hd], each kv head
    // repeated for the query heads of its group.
    let group = n_heads / n_kv_heads;
    let repeat = |t: Tensor<B, 4>| {
        if group == 1 {
            return t;
        }
        t.unsqueeze_dim::<5>(2)
            .expand([batch, n_kv_heads, group, k_len, head_dim])
            .reshape([batch, n_heads, k_len, head_dim])
    };
    let out = attend(
        split(q, q_len, n_heads),
        repeat(split(k, k_len, n_kv_heads)),
        repeat(split(v, k_len, n_kv_heads)),
        visibility,
    );
    out.swap_dims(1, 2).reshape([rows, d])
}

/// `softmax(q k^T + hidden) v` on `[batch, heads, len, head_dim]`.
fn attend<B: Kernels>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    visibility: &Visibility,
) -> Tensor<B, 4> {
    let [batch, n_heads, q_len, _] = q.dims();
    let k_len = k.dims()[2];
    let device = q.device();
    let hidden = visibility.hidden(batch, q_len, k_len);
    if B::ad_enabled(&device) || precision::product::<B>().is_some() {
        // Training: burn differentiates softmax op by op, and its 4-D
        // broadcasts are strided loops on the CPU; in 2-D they take the
        // fast paths (2.4x faster forward + backward here). Under
        // `--precision f32|bf16` too: the fused kernel's products are TF32.
        let mut scores = matmul(q, k.swap_dims(2, 3));
        if let Some(hidden) = hidden {
            let bias: Vec<f32> = hidden
                .iter()
                .map(|&h| if h { HIDDEN } else { 0.0 })
                .collect();
            let bias =
                Tensor::<B, 4>::from_data(TensorData::new(bias, [batch, 1, q_len, k_len]), &device);
            scores = scores + bias.expand([batch, n_heads, q_len, k_len]);
        }
        let rows = batch * n_heads * q_len;
        let weights = softmax(scores.reshape([rows, k_len]), 1);
        matmul(weights.reshape([batch, n_heads, q_len, k_len]), v)
    } else {
        // Inference: the backend's fused attention kernel.
        let mask = hidden.map(|h| {
            Tensor::<B, 4, Bool>::from_data(TensorData::new(h, [batch, 1, q_len, k_len]), &device)
                .expand([batch, n_heads, q_len, k_len])
        });
        let options = AttentionModuleOptions {
            scale: Some(1.0),
            ..Default::default()
        };
        fused_attention(q, k, v, mask, None, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_pattern_with_an_offset_hides_only_later_keys() {
        // Two new queries at positions 3 and 4 against 5 keys.
        let h = Visibility::Causal.hidden(1, 2, 5).unwrap();
        assert_eq!(
            h,
            [
                false, false, false, false, true, //
                false, false, false, false, false
            ]
        );
        assert!(Visibility::Causal.hidden(3, 1, 7).is_none());
    }

    #[test]
    fn key_lengths_hide_each_rows_padding() {
        let h = Visibility::KeysUpTo(vec![1, 3]).hidden(2, 1, 3).unwrap();
        assert_eq!(h, [false, true, true, false, false, false]);
    }
}

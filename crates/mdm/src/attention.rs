//! Rotary multi-head self-attention, with the masks and the KV cache the
//! three families need.
//!
//! - MDM: every position sees every position ([`Visibility::All`]).
//! - ARM: a position sees itself and what precedes it ([`Visibility::Causal`]);
//!   sampling appends one token at a time to a [`KvCache`] and attends to it.
//! - ILM: every real position, but not the padding that fills a batch of
//!   sequences of different lengths ([`Visibility::KeysUpTo`]).

use burn::module::Module;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::rope::Rope;

/// Added to the score of a key a query may not see: far below any real
/// score, so its softmax weight is exactly 0 in float32, yet finite (no NaN
/// in the backward pass).
const HIDDEN: f32 = -1.0e9;

/// Which keys each query attends to.
#[derive(Debug, Clone)]
pub enum Visibility {
    All,
    /// Query `i` (at absolute position `offset + i`) sees keys `0..=offset + i`.
    Causal,
    /// Row `b` sees keys `0..lens[b]` (the rest is padding).
    KeysUpTo(Vec<usize>),
}

impl Visibility {
    /// The hidden (query, key) pairs as a `[batch, 1, q_len, k_len]` pattern,
    /// `None` when every key is visible.
    fn hidden(&self, batch: usize, q_len: usize, k_len: usize) -> Option<Vec<bool>> {
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

/// Keys and values of every layer for the positions seen so far (ARM
/// sampling): `[batch, n_heads, seen, head_dim]` per layer.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    seen: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            seen: 0,
        }
    }

    /// Positions already in the cache (the next token's position).
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Keeps only the rows `rows` of the batch (finished rows leave).
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, rows.clone());
            *v = v.clone().select(0, rows.clone());
        }
    }

    pub(crate) fn advance(&mut self, len: usize) {
        self.seen += len;
    }

    fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (k, v) = match self.layers[layer].take() {
            Some((k0, v0)) => (Tensor::cat(vec![k0, k], 2), Tensor::cat(vec![v0, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }
}

/// Where a forward pass sits: the visibility rule, and for cached decoding
/// the cache and the layer being computed.
pub(crate) struct Context<'a, B: Backend> {
    pub visibility: &'a Visibility,
    pub cache: Option<&'a mut KvCache<B>>,
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query, key and value projections. SMDM/lit-gpt fuse them into one
    /// `attn.attn` matrix with rows interleaved per head; separate matrices
    /// avoid a strided split on every step (the weight import maps one onto
    /// the other).
    pub(crate) q: Linear<B>,
    pub(crate) k: Linear<B>,
    pub(crate) v: Linear<B>,
    pub(crate) proj: Linear<B>,
    pub(crate) n_heads: usize,
}

impl<B: Backend> Attention<B> {
    /// `x` is `[batch * len, d]` for positions `start..start + len`, where
    /// `start` is what the cache (if any) already holds.
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        len: usize,
        rope: &Rope<B>,
        layer: usize,
        ctx: &mut Context<'_, B>,
    ) -> Tensor<B, 2> {
        let d = x.dims()[1];
        let head_dim = d / self.n_heads;
        let start = ctx.cache.as_ref().map_or(0, |c| c.seen());
        let heads = |t: Tensor<B, 2>| {
            t.reshape([batch, len, self.n_heads, head_dim])
                .swap_dims(1, 2)
        };
        // softmax(q k^T / sqrt(d_h)) v, with the scale folded into q's rotation.
        let scale = 1.0 / (head_dim as f64).sqrt();
        let q = heads(rope.apply(self.q.forward(x.clone()), batch, start, len, scale));
        let k = heads(rope.apply(self.k.forward(x.clone()), batch, start, len, 1.0));
        let v = heads(self.v.forward(x));
        let (k, v) = match ctx.cache.as_mut() {
            Some(cache) => cache.append(layer, k, v),
            None => (k, v),
        };
        let out = attend(q, k, v, ctx.visibility, self.n_heads);
        self.proj
            .forward(out.swap_dims(1, 2).reshape([batch * len, d]))
    }
}

/// `softmax(q k^T + hidden) v` for pre-scaled `q`.
fn attend<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    visibility: &Visibility,
    n_heads: usize,
) -> Tensor<B, 4> {
    let [batch, _, q_len, _] = q.dims();
    let k_len = k.dims()[2];
    let device = q.device();
    let hidden = visibility.hidden(batch, q_len, k_len);
    if B::ad_enabled(&device) {
        // Training: burn differentiates softmax op by op, and its 4-D
        // broadcasts are strided loops on the CPU; in 2-D they take the
        // fast paths (2.4x faster forward + backward here).
        let mut scores = q.matmul(k.swap_dims(2, 3));
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
        softmax(scores.reshape([rows, k_len]), 1)
            .reshape([batch, n_heads, q_len, k_len])
            .matmul(v)
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
        attention(q, k, v, mask, None, options)
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

//! Rotary multi-head self-attention, with the masks and the KV cache the
//! three families need ([`Visibility`]: MDM all, ARM causal, ILM padding);
//! ARM sampling appends one token at a time to a [`KvCache`] and attends
//! to it. The attention itself is [`Kernels::attend`].

use burn::module::Module;
use burn::nn::Linear;
use burn::prelude::*;

pub use crate::kernels::Visibility;
use crate::kernels::{Heads, Kernels, RopeAt};
use crate::lora::{Adapter, adapted};
use crate::rope::Rope;

/// Keys and values of every layer for the positions seen so far (ARM
/// sampling): `[batch, seen, d_model]` per layer, heads side by side.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 3>, Tensor<B, 3>)>>,
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

    /// Appends `len` new positions' keys and values (`[batch * len, d]`)
    /// and returns all of them (`[batch * (seen + len), d]`).
    fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 2>,
        v: Tensor<B, 2>,
        batch: usize,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [rows, d] = k.dims();
        let rows3 = |t: Tensor<B, 2>| t.reshape([batch, rows / batch, d]);
        let (k, v) = match self.layers[layer].take() {
            Some((k0, v0)) => (
                Tensor::cat(vec![k0, rows3(k)], 1),
                Tensor::cat(vec![v0, rows3(v)], 1),
            ),
            None => (rows3(k), rows3(v)),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        let all = k.dims()[1];
        (k.reshape([batch * all, d]), v.reshape([batch * all, d]))
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
    /// the other). Under grouped-query attention `k` and `v` are narrower
    /// (`n_kv_heads` heads); with `qkv_bias` the three carry biases.
    pub(crate) q: Linear<B>,
    pub(crate) k: Linear<B>,
    pub(crate) v: Linear<B>,
    pub(crate) proj: Linear<B>,
    /// LoRA adapters on the four projections (`None`: none; [`crate::lora`]).
    pub(crate) lora_q: Option<Adapter<B>>,
    pub(crate) lora_k: Option<Adapter<B>>,
    pub(crate) lora_v: Option<Adapter<B>>,
    pub(crate) lora_o: Option<Adapter<B>>,
    pub(crate) n_heads: usize,
    pub(crate) n_kv_heads: usize,
}

impl<B: Kernels> Attention<B> {
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
        let head_dim = x.dims()[1] / self.n_heads;
        let start = ctx.cache.as_ref().map_or(0, |c| c.seen());
        let at = |scale| RopeAt {
            batch,
            start,
            len,
            scale,
        };
        // softmax(q k^T / sqrt(d_h)) v, with the scale folded into q's rotation.
        let scale = 1.0 / (head_dim as f64).sqrt();
        let q = adapted(&self.q, self.lora_q.as_ref(), x.clone());
        let k = adapted(&self.k, self.lora_k.as_ref(), x.clone());
        let (q, k) = (B::rope(q, rope, at(scale)), B::rope(k, rope, at(1.0)));
        let v = adapted(&self.v, self.lora_v.as_ref(), x);
        let (k, v) = match ctx.cache.as_mut() {
            Some(cache) => cache.append(layer, k, v, batch),
            None => (k, v),
        };
        let heads = Heads {
            batch,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
        };
        let attended = B::attend(q, k, v, heads, ctx.visibility);
        adapted(&self.proj, self.lora_o.as_ref(), attended)
    }
}

//! The denoiser: SMDM's bidirectional transformer with no time input, the
//! backbone of every model family ([`Family`]).
//!
//! tokens -> embedding (with a `[MASK]` / `<bos>` row) -> N x [RMSNorm ->
//! rotary multi-head self-attention -> residual, RMSNorm -> SwiGLU ->
//! residual] -> RMSNorm -> head -> logits over the real vocabulary
//! (and, for the ILM, a stop logit from the `<bos>` position).
//!
//! Released models need a few variations, each off by default
//! ([`DenoiserConfig`]): grouped-query attention and q/k/v biases (Dream's
//! Qwen2 layout), a head tied to the embedding, and Dream's shifted logits.
//!
//! MDMs need no time input: the share of masks in the input already tells the
//! network how noisy it is (SMDM, Nie et al. 2024; Zheng et al. 2024). The
//! ARM is the same network with causal attention (SMDM's autoregressive
//! baseline); the ILM the same network read as insertion scores.

use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;

use crate::attention::{Attention, Context, KvCache, Visibility};
use crate::config::{DenoiserConfig, Family};
use crate::init::{ParamFactory, ParamSource};
use crate::kernels::Kernels;
use crate::kernels::precision::{linear, weight_matmul, widened};
use crate::lora::{Adapter, adapted};
use crate::rope::Rope;

/// Model parameter ids start here (see `init`); other modules use other bases.
pub const PARAM_ID_BASE: u64 = 1 << 40;

/// GPT-2 / lit-gpt initial standard deviation of weights.
const INIT_STD: f64 = 0.02;

/// SwiGLU MLP: `w3(silu(w1 x) * w2 x)` (Shazeer 2020; SMDM's `mlp.swiglu`).
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    pub(crate) w1: Linear<B>,
    pub(crate) w2: Linear<B>,
    pub(crate) w3: Linear<B>,
    /// LoRA adapters on `w1`, `w2`, `w3` (`None`: none; [`crate::lora`]).
    pub(crate) lora_gate: Option<Adapter<B>>,
    pub(crate) lora_up: Option<Adapter<B>>,
    pub(crate) lora_down: Option<Adapter<B>>,
}

impl<B: Kernels> SwiGlu<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let gate = adapted(&self.w1, self.lora_gate.as_ref(), x.clone());
        let up = adapted(&self.w2, self.lora_up.as_ref(), x);
        adapted(&self.w3, self.lora_down.as_ref(), B::swiglu(gate, up))
    }
}

/// RMSNorm through the backend's kernel (burn's `RmsNorm` holds the weights).
fn norm<B: Kernels>(norm: &RmsNorm<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    B::rms_norm(x, norm.gamma.val(), norm.epsilon)
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub(crate) norm_1: RmsNorm<B>,
    pub(crate) attn: Attention<B>,
    pub(crate) norm_2: RmsNorm<B>,
    pub(crate) mlp: SwiGlu<B>,
}

impl<B: Kernels> Block<B> {
    fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        len: usize,
        rope: &Rope<B>,
        layer: usize,
        ctx: &mut Context<'_, B>,
    ) -> Tensor<B, 2> {
        let attn = self
            .attn
            .forward(norm(&self.norm_1, x.clone()), batch, len, rope, layer, ctx);
        let x = x + attn;
        x.clone() + self.mlp.forward(norm(&self.norm_2, x))
    }
}

#[derive(Module, Debug)]
pub struct Denoiser<B: Backend> {
    pub(crate) wte: Embedding<B>,
    pub(crate) blocks: Vec<Block<B>>,
    pub(crate) ln_f: RmsNorm<B>,
    /// `None` when the head is tied: logits are `h wte^T` over the real
    /// vocabulary's rows.
    pub(crate) lm_head: Option<Linear<B>>,
    /// The ILM's stop logit, read at the `<bos>` position (`None` otherwise).
    pub(crate) stop_head: Option<Linear<B>>,
    rope: Rope<B>,
    vocab_size: usize,
    max_len: usize,
    #[module(skip)]
    family: Family,
    /// Dream's shifted reading ([`DenoiserConfig::logit_shift`]).
    #[module(skip)]
    pub(crate) logit_shift: bool,
    /// Rows past this are padding ([`DenoiserConfig::live_vocab`]); `None`
    /// when every row is a token.
    #[module(skip)]
    live_vocab: Option<usize>,
}

impl DenoiserConfig {
    /// Builds a denoiser with weights drawn from `seed` (identical on every
    /// backend). Panics on an invalid config: call [`Self::validate`] first.
    pub fn init<B: Backend>(&self, seed: u64, device: &B::Device) -> Denoiser<B> {
        self.build(
            &mut ParamFactory::<B>::new(seed, PARAM_ID_BASE, device),
            device,
        )
    }

    /// Builds a denoiser whose parameters come from `f` in creation order:
    /// the embedding, then per block `norm_1`, `q`, `k`, `v` (each weight,
    /// then its bias), `proj`, `norm_2`, `w1`, `w2`, `w3`; then `ln_f`, the
    /// head (unless tied) and the ILM's stop head.
    pub(crate) fn build<B: Backend, S: ParamSource<B>>(
        &self,
        f: &mut S,
        device: &B::Device,
    ) -> Denoiser<B> {
        if let Err(e) = self.validate() {
            panic!("invalid denoiser config: {e}");
        }
        let d = self.d_model;
        // Residual-branch outputs are scaled down with depth (GPT-2).
        let out_std = INIT_STD / (2.0 * self.n_layers as f64).sqrt();
        let linear = |f: &mut S, d_in: usize, d_out: usize, std: f64| Linear {
            weight: f.normal([d_in, d_out], std),
            bias: None,
        };
        // q/k/v biases start at zero (Qwen2's initialisation).
        let qkv = |f: &mut S, d_out: usize| {
            let mut l = linear(f, d, d_out, INIT_STD);
            l.bias = self.qkv_bias.then(|| f.zeros([d_out]));
            l
        };
        let kv = self.kv_dim();
        let norm = |f: &mut S| RmsNorm {
            gamma: f.ones(d),
            epsilon: self.norm_eps,
        };
        let wte = Embedding {
            weight: f.normal([self.vocab_size + 1, d], INIT_STD),
        };
        let blocks = (0..self.n_layers)
            .map(|_| Block {
                norm_1: norm(&mut *f),
                attn: Attention {
                    q: qkv(&mut *f, d),
                    k: qkv(&mut *f, kv),
                    v: qkv(&mut *f, kv),
                    proj: linear(&mut *f, d, d, out_std),
                    lora_q: None,
                    lora_k: None,
                    lora_v: None,
                    lora_o: None,
                    n_heads: self.n_heads,
                    n_kv_heads: self.kv_heads(),
                },
                norm_2: norm(&mut *f),
                mlp: SwiGlu {
                    w1: linear(&mut *f, d, self.d_ff, INIT_STD),
                    w2: linear(&mut *f, d, self.d_ff, INIT_STD),
                    w3: linear(&mut *f, self.d_ff, d, out_std),
                    lora_gate: None,
                    lora_up: None,
                    lora_down: None,
                },
            })
            .collect();
        Denoiser {
            wte,
            blocks,
            ln_f: norm(&mut *f),
            lm_head: (!self.tied_head).then(|| linear(&mut *f, d, self.vocab_size, INIT_STD)),
            stop_head: (self.family == Family::Ilm).then(|| linear(&mut *f, d, 1, INIT_STD)),
            rope: Rope::new(
                self.max_len,
                self.head_dim(),
                self.n_heads,
                self.rope_base,
                device,
            ),
            vocab_size: self.vocab_size,
            max_len: self.max_len,
            family: self.family,
            logit_shift: self.logit_shift,
            live_vocab: self.live_vocab.filter(|&n| n < self.vocab_size),
        }
    }
}

impl<B: Kernels> Denoiser<B> {
    /// Logits `[batch, len, vocab]` for token ids `[batch, len]` (mask id =
    /// vocab size). Every position gets logits; callers read the masked ones
    /// (MDM), the next token's (ARM, causal) or the insertions' (ILM: use
    /// [`Self::forward_padded`]).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, len] = tokens.dims();
        let x = self.hidden(tokens, &self.visibility(), None);
        let x = if self.logit_shift && len > 1 {
            // Position i reads row i - 1, position 0 its own.
            let d = x.dims()[1];
            let x = x.reshape([batch, len, d]);
            let first = x.clone().narrow(1, 0, 1);
            Tensor::cat(vec![first, x.narrow(1, 0, len - 1)], 1).reshape([batch * len, d])
        } else {
            x
        };
        self.head(x).reshape([batch, len, self.vocab_size])
    }

    /// Logits `[k, vocab]` at `k` flat positions (`row * len + position`) of
    /// `tokens`. The transformer still sees every position; only the final
    /// norm and the output head run on the chosen ones. Samplers need the
    /// logits of a few positions per step, and the head is `vocab / d` times
    /// the cost of one layer's projections: at a 50k vocabulary it dominates.
    pub fn logits_at(&self, tokens: Tensor<B, 2, Int>, at: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let len = tokens.dims()[1];
        let hidden = self.hidden(tokens, &self.visibility(), None);
        self.logits_at_hidden(hidden, len, at)
    }

    /// [`Self::logits_at`] from the last block's output `hidden`
    /// (`[rows * len, d]`): what a loss reads after a checkpointed forward
    /// ([`Self::checkpointed_gradients`]).
    pub fn logits_at_hidden(
        &self,
        hidden: Tensor<B, 2>,
        len: usize,
        at: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let at = if self.logit_shift {
            // Flat position `row * len + i` reads `row * len + max(i - 1, 0)`.
            let inside = at.clone().remainder_scalar(len as i64).greater_elem(0);
            at - inside.int()
        } else {
            at
        };
        self.head(hidden.select(0, at))
    }

    /// ARM decoding: logits `[batch, len, vocab]` of `len` new tokens that
    /// follow the `cache.seen()` positions in `cache`, which grows by them.
    /// Equal to [`Self::forward`] on the whole sequence at those positions.
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let [batch, len] = tokens.dims();
        assert!(self.family.causal(), "a KV cache needs causal attention");
        let x = self.hidden(tokens, &Visibility::Causal, Some(cache));
        cache.advance(len);
        self.head(x).reshape([batch, len, self.vocab_size])
    }

    /// A fresh KV cache for [`Self::forward_cached`].
    pub fn kv_cache(&self) -> KvCache<B> {
        KvCache::new(self.blocks.len())
    }

    /// ILM: insertion logits `[batch, len, vocab]` and stop logits `[batch]`
    /// for sequences `[batch, len]` whose row `b` is real up to `lens[b]`
    /// and padding after (hidden from attention). Position 0 holds `<bos>`;
    /// logit `(i, v)` scores inserting `v` right after position `i`.
    pub fn forward_padded(
        &self,
        tokens: Tensor<B, 2, Int>,
        lens: &[usize],
    ) -> (Tensor<B, 3>, Tensor<B, 1>) {
        let [batch, len] = tokens.dims();
        let stop_head = self
            .stop_head
            .as_ref()
            .expect("forward_padded needs an ILM (a stop head)");
        let x = self.hidden(tokens, &Visibility::KeysUpTo(lens.to_vec()), None);
        let x = norm(&self.ln_f, x);
        let bos_rows: Vec<i32> = (0..batch).map(|b| (b * len) as i32).collect();
        let bos_rows = Tensor::from_data(TensorData::new(bos_rows, [batch]), &x.device());
        let stop = linear(stop_head, x.clone().select(0, bos_rows)).reshape([batch]);
        let logits = self.project(x).reshape([batch, len, self.vocab_size]);
        (logits, stop)
    }

    fn head(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.project(norm(&self.ln_f, x))
    }

    /// Normed hidden states `[rows, d]` to logits `[rows, vocab]`: the head,
    /// or the embedding's real-token rows when tied; padding rows past
    /// `live_vocab` read [`crate::config::PADDING_LOGIT`].
    fn project(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let logits = match &self.lm_head {
            Some(head) => linear(head, x),
            None => {
                let wte = self.wte.weight.val().narrow(0, 0, self.vocab_size);
                weight_matmul(x, wte, true)
            }
        };
        match self.live_vocab {
            Some(live) => {
                let rows = logits.dims()[0];
                let pad = self.vocab_size - live;
                let live_logits = logits.narrow(1, 0, live);
                let padding = Tensor::full(
                    [rows, pad],
                    crate::config::PADDING_LOGIT,
                    &live_logits.device(),
                );
                Tensor::cat(vec![live_logits, padding], 1)
            }
            None => logits,
        }
    }

    fn visibility(&self) -> Visibility {
        if self.family.causal() {
            Visibility::Causal
        } else {
            Visibility::All
        }
    }

    /// The last block's output `[batch * len, d]`.
    fn hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        visibility: &Visibility,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 2> {
        let [batch, len] = tokens.dims();
        let start = cache.as_ref().map_or(0, |c| c.seen());
        assert!(
            start + len <= self.max_len,
            "sequence of {} exceeds max_len {}",
            start + len,
            self.max_len
        );
        // Activations stay 2-D `[batch * len, d]`: burn's linear backward on a
        // 3-D input computes a batched outer product and then sums it, which
        // costs `batch` times the memory of one `[d_in, d_out]` gradient.
        let d = self.wte.weight.dims()[1];
        let mut x = widened(self.wte.forward(tokens)).reshape([batch * len, d]);
        let mut ctx = Context { visibility, cache };
        for (layer, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, batch, len, &self.rope, layer, &mut ctx);
        }
        x
    }
}

impl<B: Backend> Denoiser<B> {
    /// Builds the integer input from row-major host token ids.
    pub fn input(
        tokens: &[u32],
        batch: usize,
        len: usize,
        device: &B::Device,
    ) -> Tensor<B, 2, Int> {
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        Tensor::from_data(TensorData::new(ids, [batch, len]), device)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn mask_id(&self) -> u32 {
        self.vocab_size as u32
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// Whether position i reads the hidden state of i - 1 (Dream).
    pub fn logit_shift(&self) -> bool {
        self.logit_shift
    }

    /// The id of the extra embedding row read as `<bos>` (ARM, ILM).
    pub fn bos_id(&self) -> u32 {
        self.vocab_size as u32
    }
}

mod checkpointing;
mod lora;
#[cfg(test)]
mod tests;

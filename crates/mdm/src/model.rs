//! The denoiser: SMDM's bidirectional transformer with no time input, the
//! backbone of every model family ([`Family`]).
//!
//! tokens -> embedding (with a `[MASK]` / `<bos>` row) -> N x [RMSNorm ->
//! rotary multi-head self-attention -> residual, RMSNorm -> SwiGLU ->
//! residual] -> RMSNorm -> untied head -> logits over the real vocabulary
//! (and, for the ILM, a stop logit from the `<bos>` position).
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
use crate::init::ParamFactory;
use crate::kernels::Kernels;
use crate::kernels::precision::linear;
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
}

impl<B: Kernels> SwiGlu<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (w1, w2) = (linear(&self.w1, x.clone()), linear(&self.w2, x));
        linear(&self.w3, B::swiglu(w1, w2))
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
    pub(crate) lm_head: Linear<B>,
    /// The ILM's stop logit, read at the `<bos>` position (`None` otherwise).
    pub(crate) stop_head: Option<Linear<B>>,
    rope: Rope<B>,
    vocab_size: usize,
    max_len: usize,
    #[module(skip)]
    family: Family,
}

impl DenoiserConfig {
    /// Builds a denoiser with weights drawn from `seed` (identical on every
    /// backend). Panics on an invalid config: call [`Self::validate`] first.
    pub fn init<B: Backend>(&self, seed: u64, device: &B::Device) -> Denoiser<B> {
        if let Err(e) = self.validate() {
            panic!("invalid denoiser config: {e}");
        }
        let mut f = ParamFactory::<B>::new(seed, PARAM_ID_BASE, device);
        let d = self.d_model;
        // Residual-branch outputs are scaled down with depth (GPT-2).
        let out_std = INIT_STD / (2.0 * self.n_layers as f64).sqrt();
        let linear = |f: &mut ParamFactory<B>, d_in: usize, d_out: usize, std: f64| Linear {
            weight: f.normal([d_in, d_out], std),
            bias: None,
        };
        let norm = |f: &mut ParamFactory<B>| RmsNorm {
            gamma: f.ones(d),
            epsilon: self.norm_eps,
        };
        let wte = Embedding {
            weight: f.normal([self.vocab_size + 1, d], INIT_STD),
        };
        let blocks = (0..self.n_layers)
            .map(|_| Block {
                norm_1: norm(&mut f),
                attn: Attention {
                    q: linear(&mut f, d, d, INIT_STD),
                    k: linear(&mut f, d, d, INIT_STD),
                    v: linear(&mut f, d, d, INIT_STD),
                    proj: linear(&mut f, d, d, out_std),
                    n_heads: self.n_heads,
                },
                norm_2: norm(&mut f),
                mlp: SwiGlu {
                    w1: linear(&mut f, d, self.d_ff, INIT_STD),
                    w2: linear(&mut f, d, self.d_ff, INIT_STD),
                    w3: linear(&mut f, self.d_ff, d, out_std),
                },
            })
            .collect();
        Denoiser {
            wte,
            blocks,
            ln_f: norm(&mut f),
            lm_head: linear(&mut f, d, self.vocab_size, INIT_STD),
            stop_head: (self.family == Family::Ilm).then(|| linear(&mut f, d, 1, INIT_STD)),
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
        self.head(x).reshape([batch, len, self.vocab_size])
    }

    /// Logits `[k, vocab]` at `k` flat positions (`row * len + position`) of
    /// `tokens`. The transformer still sees every position; only the final
    /// norm and the output head run on the chosen ones. Samplers need the
    /// logits of a few positions per step, and the head is `vocab / d` times
    /// the cost of one layer's projections: at a 50k vocabulary it dominates.
    pub fn logits_at(&self, tokens: Tensor<B, 2, Int>, at: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let x = self.hidden(tokens, &self.visibility(), None).select(0, at);
        self.head(x)
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
        let logits = linear(&self.lm_head, x).reshape([batch, len, self.vocab_size]);
        (logits, stop)
    }

    fn head(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        linear(&self.lm_head, norm(&self.ln_f, x))
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
        let mut x = self.wte.forward(tokens).reshape([batch * len, d]);
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

    /// The id of the extra embedding row read as `<bos>` (ARM, ILM).
    pub fn bos_id(&self) -> u32 {
        self.vocab_size as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn forward_shapes_and_parameter_count() {
        let cfg = DenoiserConfig::new(7, 32, 2, 4, 64, 16);
        let dev = Default::default();
        let model = cfg.init::<B>(0, &dev);
        assert_eq!(model.num_params(), cfg.num_params());
        let tokens = Denoiser::<B>::input(&[7, 1, 2, 7, 0, 7], 2, 3, &dev);
        let logits = model.forward(tokens);
        assert_eq!(logits.dims(), [2, 3, 7]);
    }

    #[test]
    fn logits_at_equals_the_full_forward_at_those_positions() {
        let cfg = DenoiserConfig::new(7, 32, 2, 4, 64, 16);
        let dev = Default::default();
        let model = cfg.init::<B>(1, &dev);
        let ids = [7, 1, 2, 7, 0, 7, 3, 7];
        let full: Vec<f32> = model
            .forward(Denoiser::<B>::input(&ids, 2, 4, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        let at = [6usize, 0, 3, 5];
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(at.iter().map(|&i| i as i32).collect::<Vec<_>>(), [4]),
            &dev,
        );
        let picked = model.logits_at(Denoiser::<B>::input(&ids, 2, 4, &dev), index);
        assert_eq!(picked.dims(), [4, 7]);
        let picked: Vec<f32> = picked.into_data().to_vec().unwrap();
        for (k, &flat) in at.iter().enumerate() {
            for v in 0..7 {
                let (a, b) = (picked[k * 7 + v], full[flat * 7 + v]);
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{flat} {v}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn same_seed_same_weights_different_seed_different_weights() {
        let cfg = DenoiserConfig::new(5, 16, 1, 2, 32, 8);
        let dev = Default::default();
        let input = || Denoiser::<B>::input(&[5, 5, 1, 2], 1, 4, &dev);
        let a = cfg.init::<B>(3, &dev).forward(input()).into_data();
        let b = cfg.init::<B>(3, &dev).forward(input()).into_data();
        let c = cfg.init::<B>(4, &dev).forward(input()).into_data();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    fn host2(t: Tensor<B, 2>) -> (Vec<f32>, [usize; 2]) {
        let dims = t.dims();
        (t.into_data().to_vec().unwrap(), dims)
    }

    /// `x [n, a] @ w [a, b]` on the host.
    fn matmul(x: &[f32], n: usize, w: &(Vec<f32>, [usize; 2])) -> Vec<f32> {
        let [a, b] = w.1;
        let mut out = vec![0.0; n * b];
        for i in 0..n {
            for k in 0..a {
                for j in 0..b {
                    out[i * b + j] += x[i * a + k] * w.0[k * b + j];
                }
            }
        }
        out
    }

    fn rms_norm(x: &[f32], d: usize, gamma: &[f32], eps: f32) -> Vec<f32> {
        x.chunks(d)
            .flat_map(|row| {
                let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
                let r = (ms + eps).sqrt();
                row.iter().zip(gamma).map(move |(v, g)| v / r * g)
            })
            .collect()
    }

    /// The whole forward pass written out with loops, straight from SMDM's
    /// definition, against the tensor implementation.
    #[test]
    fn forward_matches_a_host_reference() {
        let (v, d, h, ff, len) = (7usize, 16usize, 2usize, 24usize, 5usize);
        let cfg = DenoiserConfig::new(v, d, 2, h, ff, len);
        let dev = Default::default();
        // Scale the small initial weights up so that every part of the
        // network changes the logits by far more than the tolerance.
        struct Scale;
        impl burn::module::ModuleMapper<B> for Scale {
            fn map_float<const D: usize>(
                &mut self,
                p: burn::module::Param<Tensor<B, D>>,
            ) -> burn::module::Param<Tensor<B, D>> {
                let (id, t, mapper) = p.consume();
                burn::module::Param::from_mapped_value(id, t * 15.0, mapper)
            }
        }
        let m = cfg.init::<B>(9, &dev).map(&mut Scale);
        let tokens = [3u32, 7, 1, 7, 0];
        let got: Vec<f32> = m
            .forward(Denoiser::<B>::input(&tokens, 1, len, &dev))
            .into_data()
            .to_vec()
            .unwrap();

        let emb = host2(m.wte.weight.val());
        let mut x: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| emb.0[t as usize * d..(t as usize + 1) * d].to_vec())
            .collect();
        let dh = d / h;
        let half = dh / 2;
        let rope = |vec: &mut [f32], pos: usize| {
            for i in 0..half {
                let theta = 1.0f32 / 10_000f32.powf((2 * i) as f32 / dh as f32);
                let (c, s) = ((pos as f32 * theta).cos(), (pos as f32 * theta).sin());
                let (a, b) = (vec[i], vec[i + half]);
                vec[i] = a * c - b * s;
                vec[i + half] = b * c + a * s;
            }
        };
        for blk in &m.blocks {
            let g1: Vec<f32> = blk.norm_1.gamma.val().into_data().to_vec().unwrap();
            let xn = rms_norm(&x, d, &g1, 1e-5);
            let proj_q = matmul(&xn, len, &host2(blk.attn.q.weight.val()));
            let proj_k = matmul(&xn, len, &host2(blk.attn.k.weight.val()));
            let proj_v = matmul(&xn, len, &host2(blk.attn.v.weight.val()));
            let mut att = vec![0.0f32; len * d];
            for head in 0..h {
                let part = |p: usize, c: usize| -> Vec<f32> {
                    let src = [&proj_q, &proj_k, &proj_v][c];
                    src[p * d + head * dh..p * d + (head + 1) * dh].to_vec()
                };
                let q: Vec<Vec<f32>> = (0..len)
                    .map(|p| {
                        let mut q = part(p, 0);
                        rope(&mut q, p);
                        q
                    })
                    .collect();
                let k: Vec<Vec<f32>> = (0..len)
                    .map(|p| {
                        let mut k = part(p, 1);
                        rope(&mut k, p);
                        k
                    })
                    .collect();
                let vv: Vec<Vec<f32>> = (0..len).map(|p| part(p, 2)).collect();
                for i in 0..len {
                    let scores: Vec<f32> = (0..len)
                        .map(|j| {
                            q[i].iter().zip(&k[j]).map(|(a, b)| a * b).sum::<f32>()
                                / (dh as f32).sqrt()
                        })
                        .collect();
                    let mx = scores.iter().copied().fold(f32::MIN, f32::max);
                    let e: Vec<f32> = scores.iter().map(|s| (s - mx).exp()).collect();
                    let z: f32 = e.iter().sum();
                    for j in 0..len {
                        for c in 0..dh {
                            att[i * d + head * dh + c] += e[j] / z * vv[j][c];
                        }
                    }
                }
            }
            let proj = matmul(&att, len, &host2(blk.attn.proj.weight.val()));
            for (a, b) in x.iter_mut().zip(&proj) {
                *a += b;
            }
            let g2: Vec<f32> = blk.norm_2.gamma.val().into_data().to_vec().unwrap();
            let xn = rms_norm(&x, d, &g2, 1e-5);
            let a = matmul(&xn, len, &host2(blk.mlp.w1.weight.val()));
            let b = matmul(&xn, len, &host2(blk.mlp.w2.weight.val()));
            let hdn: Vec<f32> = a
                .iter()
                .zip(&b)
                .map(|(a, b)| a / (1.0 + (-a).exp()) * b)
                .collect();
            let out = matmul(&hdn, len, &host2(blk.mlp.w3.weight.val()));
            for (a, b) in x.iter_mut().zip(&out) {
                *a += b;
            }
        }
        let gf: Vec<f32> = m.ln_f.gamma.val().into_data().to_vec().unwrap();
        let logits = matmul(
            &rms_norm(&x, d, &gf, 1e-5),
            len,
            &host2(m.lm_head.weight.val()),
        );
        assert_eq!(got.len(), logits.len());
        for (i, (a, b)) in got.iter().zip(&logits).enumerate() {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                "logit {i}: {a} vs {b}"
            );
        }
    }

    /// Training (autodiff) and inference take different attention code
    /// paths; they must compute the same function.
    #[test]
    fn training_and_inference_paths_agree() {
        use burn::backend::Autodiff;
        use burn::module::AutodiffModule;
        let cfg = DenoiserConfig::new(7, 32, 2, 4, 48, 9);
        let dev = Default::default();
        let train = cfg.init::<Autodiff<B>>(4, &dev);
        let infer = train.valid();
        let tokens = [7u32, 1, 2, 7, 7, 3, 0, 7, 5, 1, 1, 7, 7, 7, 2, 6, 4, 7];
        let a: Vec<f32> = train
            .forward(Denoiser::<Autodiff<B>>::input(&tokens, 2, 9, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        let b: Vec<f32> = infer
            .forward(Denoiser::<B>::input(&tokens, 2, 9, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    fn attention_is_bidirectional() {
        // Changing the last token must change the first position's logits.
        let cfg = DenoiserConfig::new(5, 16, 1, 2, 32, 8);
        let dev = Default::default();
        let m = cfg.init::<B>(1, &dev);
        let a = m
            .forward(Denoiser::<B>::input(&[5, 5, 5, 1], 1, 4, &dev))
            .narrow(1, 0, 1);
        let b = m
            .forward(Denoiser::<B>::input(&[5, 5, 5, 2], 1, 4, &dev))
            .narrow(1, 0, 1);
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert!(diff > 1e-6, "first position ignores the last token");
    }
}

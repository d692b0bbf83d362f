//! LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
//! Models"): a frozen base weight `W` plus a trained low-rank update,
//!
//! ```text
//! y = x W + (alpha / r) (x A) B,   A: [d_in, r],  B: [r, d_out],  B = 0 at the start
//! ```
//!
//! so a fresh adapter reproduces the base exactly and only `A` and `B`
//! (`r (d_in + d_out)` numbers per layer instead of `d_in d_out`) get
//! gradients and optimizer state. This is how released diffusion LMs are
//! RL-tuned (d1, wd1, SPG: LLaDA-8B does not fit on one 80 GB GPU with full
//! AdamW state). `A` and `B` are PEFT's `lora_A.weight` and `lora_B.weight`
//! transposed (PyTorch stores `[out, in]`), initialised as PEFT does:
//! `A ~ U(-1/sqrt(d_in), 1/sqrt(d_in))` (kaiming-uniform with `a = sqrt(5)`)
//! and `B = 0`.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::init::ParamFactory;
use crate::kernels::Kernels;
use crate::kernels::precision::{linear, matmul};

/// Adapter parameter ids start here (the model's start at
/// [`crate::model::PARAM_ID_BASE`]): an optimizer state saved under them
/// matches a rebuilt adapter set again.
pub const LORA_PARAM_ID_BASE: u64 = 3 << 40;

/// A projection of the transformer block an adapter can sit on, by the
/// name the released architectures give it (LLaDA's `q_proj`, Dream's
/// `self_attn.q_proj`, ...).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LoraTarget {
    /// Attention's query projection.
    Q,
    /// Attention's key projection.
    K,
    /// Attention's value projection.
    V,
    /// Attention's output projection.
    O,
    /// SwiGLU's gate (the input of the SiLU).
    Gate,
    /// SwiGLU's up projection.
    Up,
    /// SwiGLU's down projection.
    Down,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q",
            LoraTarget::K => "k",
            LoraTarget::V => "v",
            LoraTarget::O => "o",
            LoraTarget::Gate => "gate",
            LoraTarget::Up => "up",
            LoraTarget::Down => "down",
        }
    }
}

/// `[cogrpo.lora]`: low-rank adapters as the model factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// r, the rank of each update `A B`.
    pub rank: usize,
    /// alpha: the update is scaled by `alpha / rank` (PEFT's `lora_alpha`).
    pub alpha: f64,
    /// The projections that get an adapter (every linear layer of each
    /// block by default, as d1 and QLoRA do).
    pub targets: Vec<LoraTarget>,
    /// Dropout on the adapters' input; only 0 is accepted (with dropout the
    /// update's recomputed log-probabilities would not be the rollout's).
    pub dropout: f64,
    /// How the frozen base's projection and embedding weights are stored:
    /// `bf16` halves their memory (LLaDA's and Dream's released weights are
    /// bfloat16 already, so nothing of theirs is lost; a float32 base is
    /// rounded once) and widens each weight to float32 for its product.
    /// Norms, biases and the adapters stay float32.
    pub base_dtype: BaseDtype,
}

/// Storage of the frozen base's weights ([`LoraConfig::base_dtype`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BaseDtype {
    /// Float32, as loaded.
    #[default]
    F32,
    /// Bfloat16: 2 bytes per weight instead of 4.
    Bf16,
}

impl BaseDtype {
    /// Bytes per stored base weight.
    pub fn bytes(self) -> usize {
        match self {
            BaseDtype::F32 => 4,
            BaseDtype::Bf16 => 2,
        }
    }
}

impl Default for LoraConfig {
    /// PEFT's defaults (r = 8, alpha = 8) on every projection.
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 8.0,
            targets: LoraTarget::ALL.to_vec(),
            dropout: 0.0,
            base_dtype: BaseDtype::F32,
        }
    }
}

impl LoraConfig {
    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// What is wrong with the settings: `(key, message)` pairs, the key
    /// relative to the section (the config crate reports them under
    /// `cogrpo.lora`).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.rank == 0 {
            out.push(("rank", "must be at least 1".to_string()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            out.push((
                "alpha",
                format!("must be positive and finite, got {}", self.alpha),
            ));
        }
        if self.targets.is_empty() {
            out.push((
                "targets",
                "is empty: name at least one of q, k, v, o, gate, up, down".to_string(),
            ));
        }
        let mut seen = self.targets.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.targets.len() {
            out.push(("targets", "names a projection twice".to_string()));
        }
        if self.dropout != 0.0 {
            out.push((
                "dropout",
                format!(
                    "is {}, but only 0 is supported: dropout in the update's forward pass would \
                     make the recomputed log-probabilities of a rollout differ from the ones it \
                     was sampled with, so the importance ratio of the first pass would not be 1",
                    self.dropout
                ),
            ));
        }
        out
    }
}

/// The low-rank update of one projection.
#[derive(Module, Debug)]
pub struct Adapter<B: Backend> {
    /// `[d_in, r]`: PEFT's `lora_A.weight` transposed.
    pub a: Param<Tensor<B, 2>>,
    /// `[r, d_out]`: PEFT's `lora_B.weight` transposed; zero at the start.
    pub b: Param<Tensor<B, 2>>,
    /// `alpha / r`.
    #[module(skip)]
    pub scale: f64,
}

impl<B: Backend> Adapter<B> {
    /// A fresh adapter for a `[d_in, d_out]` weight: `A` uniform in
    /// `+-1/sqrt(d_in)`, `B` zero.
    pub(crate) fn new(
        f: &mut ParamFactory<B>,
        [d_in, d_out]: [usize; 2],
        cfg: &LoraConfig,
    ) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        Self {
            a: f.uniform([d_in, cfg.rank], bound),
            b: f.zeros([cfg.rank, d_out]),
            scale: cfg.scale(),
        }
    }

    /// `scale A B`, the update to the base weight (`[d_in, d_out]`).
    pub(crate) fn delta(&self) -> Tensor<B, 2>
    where
        B: Kernels,
    {
        matmul(self.a.val(), self.b.val()).mul_scalar(self.scale)
    }
}

/// `x W (+ bias) + scale (x A) B`: a projection with its adapter, if any.
pub(crate) fn adapted<B: Kernels>(
    layer: &Linear<B>,
    adapter: Option<&Adapter<B>>,
    x: Tensor<B, 2>,
) -> Tensor<B, 2> {
    match adapter {
        None => linear(layer, x),
        Some(ad) => {
            let low = matmul(matmul(x.clone(), ad.a.val()), ad.b.val());
            linear(layer, x) + low.mul_scalar(ad.scale)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("the model already has LoRA adapters")]
    AlreadyAdapted,
    #[error(
        "LoRA rank {rank} is larger than the {target} projection's smaller side ({side}): \
         a rank that high is no longer low-rank; lower the rank or fine-tune fully"
    )]
    RankTooLarge {
        rank: usize,
        target: &'static str,
        side: usize,
    },
}

//! LoRA adapters on the denoiser ([`crate::lora`]): attached to a frozen
//! base, listed, merged into the weights, dropped.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

use super::Denoiser;
use crate::init::ParamFactory;
use crate::kernels::Kernels;
use crate::kernels::precision::widened;
use crate::lora::{Adapter, BaseDtype, LORA_PARAM_ID_BASE, LoraConfig, LoraError, LoraTarget};

/// Each block's projections, each with the adapter slot it owns, by target.
macro_rules! for_each_projection {
    ($block:expr, |$target:ident, $linear:ident, $adapter:ident| $body:expr) => {{
        let blk = $block;
        for ($target, $linear, $adapter) in [
            (LoraTarget::Q, &mut blk.attn.q, &mut blk.attn.lora_q),
            (LoraTarget::K, &mut blk.attn.k, &mut blk.attn.lora_k),
            (LoraTarget::V, &mut blk.attn.v, &mut blk.attn.lora_v),
            (LoraTarget::O, &mut blk.attn.proj, &mut blk.attn.lora_o),
            (LoraTarget::Gate, &mut blk.mlp.w1, &mut blk.mlp.lora_gate),
            (LoraTarget::Up, &mut blk.mlp.w2, &mut blk.mlp.lora_up),
            (LoraTarget::Down, &mut blk.mlp.w3, &mut blk.mlp.lora_down),
        ] {
            $body
        }
    }};
}

impl<B: Backend> Denoiser<B> {
    /// The base frozen (no gradient, hence no optimizer state) with fresh
    /// adapters on `cfg.targets` of every block, drawn from `seed`. The
    /// adapted model computes exactly what the base does until `B` moves.
    pub fn with_lora(mut self, cfg: &LoraConfig, seed: u64) -> Result<Self, LoraError> {
        if self.has_lora() {
            return Err(LoraError::AlreadyAdapted);
        }
        let device = self.wte.weight.device();
        let mut f = ParamFactory::<B>::new(seed, LORA_PARAM_ID_BASE, &device);
        self = self.no_grad();
        for block in &mut self.blocks {
            for_each_projection!(block, |target, linear, adapter| {
                if cfg.targets.contains(&target) {
                    let [d_in, d_out] = linear.weight.dims();
                    if cfg.rank > d_in.min(d_out) {
                        return Err(LoraError::RankTooLarge {
                            rank: cfg.rank,
                            target: target.name(),
                            side: d_in.min(d_out),
                        });
                    }
                    *adapter = Some(Adapter::new(&mut f, [d_in, d_out], cfg));
                }
            });
        }
        if cfg.base_dtype == BaseDtype::Bf16 {
            self = self.map_base_weights(|w| w.cast(FloatDType::BF16));
        }
        Ok(self)
    }

    /// `f` applied to every large weight of the base: the embedding, each
    /// block's projections and the heads (norms and biases are left).
    fn map_base_weights(mut self, f: impl Fn(Tensor<B, 2>) -> Tensor<B, 2>) -> Self {
        let map = |p: Param<Tensor<B, 2>>| p.map(&f);
        self.wte.weight = map(self.wte.weight);
        for block in &mut self.blocks {
            for_each_projection!(block, |_target, linear, _adapter| {
                linear.weight = map(linear.weight.clone());
            });
        }
        for head in [&mut self.lm_head, &mut self.stop_head]
            .into_iter()
            .flatten()
        {
            head.weight = map(head.weight.clone());
        }
        self
    }

    /// Whether any projection carries an adapter.
    pub fn has_lora(&self) -> bool {
        !self.adapters().is_empty()
    }

    /// The adapted projections of block 0, in [`LoraTarget::ALL`] order
    /// (every block carries the same set).
    pub fn lora_targets(&self) -> Vec<LoraTarget> {
        self.adapters()
            .into_iter()
            .filter(|(block, _, _)| *block == 0)
            .map(|(_, target, _)| target)
            .collect()
    }

    /// Each adapter with the block and target it sits on.
    pub fn adapters(&self) -> Vec<(usize, LoraTarget, &Adapter<B>)> {
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let slots = [
                (LoraTarget::Q, &b.attn.lora_q),
                (LoraTarget::K, &b.attn.lora_k),
                (LoraTarget::V, &b.attn.lora_v),
                (LoraTarget::O, &b.attn.lora_o),
                (LoraTarget::Gate, &b.mlp.lora_gate),
                (LoraTarget::Up, &b.mlp.lora_up),
                (LoraTarget::Down, &b.mlp.lora_down),
            ];
            out.extend(
                slots
                    .into_iter()
                    .filter_map(|(t, a)| a.as_ref().map(|a| (i, t, a))),
            );
        }
        out
    }

    /// The base alone: the adapters dropped (the KL term's reference,
    /// sharing the base's tensors rather than holding a second copy).
    pub fn without_lora(mut self) -> Self {
        for block in &mut self.blocks {
            for_each_projection!(block, |_target, _linear, adapter| {
                *adapter = None;
            });
        }
        self
    }

    /// Parameters that train: the adapters' when there are any, else all.
    pub fn trainable_params(&self) -> usize {
        if self.has_lora() {
            self.adapters()
                .iter()
                .map(|(_, _, a)| {
                    a.a.val().shape().num_elements() + a.b.val().shape().num_elements()
                })
                .sum()
        } else {
            self.num_params()
        }
    }
}

impl<B: Kernels> Denoiser<B> {
    /// The same model with each adapter folded into its weight,
    /// `W + scale A B`, and no adapters left (PEFT's `merge_and_unload`).
    /// A base stored in bfloat16 comes back in float32 (what export writes).
    pub fn merged(self) -> Self {
        let mut model = self.map_base_weights(widened);
        for block in &mut model.blocks {
            for_each_projection!(block, |_target, linear, adapter| {
                if let Some(ad) = adapter.take() {
                    let delta = ad.delta();
                    linear.weight = linear.weight.clone().map(|w| w + delta);
                }
            });
        }
        model
    }
}

#[cfg(test)]
#[path = "lora/tests.rs"]
mod tests;

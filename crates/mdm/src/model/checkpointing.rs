//! Gradient checkpointing (Chen et al. 2016, "Training Deep Nets with
//! Sublinear Memory Cost"), one transformer block per segment: the forward
//! pass runs without a graph and keeps only each block's input; the
//! backward pass recomputes one block at a time with its graph, from the
//! top down, passing the gradient of each block's input to the block below.
//! Memory holds `n_layers + 1` hidden states and one block's activations
//! instead of every block's; the price is a second forward pass.
//!
//! ```text
//! h_0 = embed(tokens), h_{l+1} = block_l(h_l)          (no graph; keep h_l)
//! g_L = d loss(h_L) / d h_L                            (head + loss graph)
//! g_l = d <block_l(h_l), g_{l+1}> / d h_l              (block l's graph only)
//! ```
//!
//! Each segment's parameter gradients come out of the same product, so the
//! sum over segments is the whole gradient (up to float summation order).

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;

use super::Denoiser;
use crate::attention::Context;
use crate::kernels::AutodiffKernels;

impl<B: AutodiffKernels> Denoiser<B> {
    /// The gradients of `loss(self, hidden)` with `hidden` the last block's
    /// output `[rows * len, d]` for `tokens` (`[rows, len]`), computed by
    /// gradient checkpointing; and the loss. `loss` reads the logits it
    /// needs with [`Denoiser::logits_at_hidden`]. Bidirectional or causal
    /// attention (MDM, ARM); the ILM's padded forward is not checkpointed.
    pub fn checkpointed_gradients(
        &self,
        tokens: Tensor<B, 2, Int>,
        loss: impl FnOnce(&Self, Tensor<B, 2>) -> Tensor<B, 1>,
    ) -> (GradientsParams, f64) {
        let [rows, len] = tokens.dims();
        let visibility = self.visibility();
        // Forward without a graph, keeping each block's input.
        let inner = self.valid();
        let d = self.wte.weight.dims()[1];
        let embedded = inner.wte.forward(tokens.clone().inner());
        let mut inputs = vec![embedded.reshape([rows * len, d])];
        for (layer, block) in inner.blocks.iter().enumerate() {
            let mut ctx = Context {
                visibility: &visibility,
                cache: None,
            };
            let x = inputs.last().expect("the embedding").clone();
            inputs.push(block.forward(x, rows, len, &inner.rope, layer, &mut ctx));
        }
        let mut accumulated = GradientsAccumulator::<Self>::new();
        // The head and the loss, from the top hidden state.
        let top = Tensor::<B, 2>::from_inner(inputs.pop().expect("the top")).require_grad();
        let value = loss(self, top.clone());
        let loss_value: f64 = value.clone().into_scalar().elem();
        let mut grads = value.backward();
        let mut upstream = top.grad(&grads).expect("the loss reads the hidden state");
        accumulated.accumulate(self, GradientsParams::from_grads(grads, self));
        // Each block from the top down, on its kept input.
        for (layer, block) in self.blocks.iter().enumerate().rev() {
            let x = Tensor::<B, 2>::from_inner(inputs.pop().expect("a block input")).require_grad();
            let mut ctx = Context {
                visibility: &visibility,
                cache: None,
            };
            let y = block.forward(x.clone(), rows, len, &self.rope, layer, &mut ctx);
            grads = (y * Tensor::from_inner(upstream)).sum().backward();
            upstream = x.grad(&grads).expect("a block reads its input");
            accumulated.accumulate(self, GradientsParams::from_grads(grads, self));
        }
        // The embedding.
        let embedded = self.wte.forward(tokens).reshape([rows * len, d]);
        grads = (embedded * Tensor::from_inner(upstream)).sum().backward();
        accumulated.accumulate(self, GradientsParams::from_grads(grads, self));
        (accumulated.grads(), loss_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DenoiserConfig;
    use burn::backend::{Autodiff, Flex};
    use burn::module::{Module, ModuleVisitor, Param};

    type A = Autodiff<Flex>;

    /// Every parameter's gradient, flattened, in visiting order.
    fn flat(model: &Denoiser<A>, grads: &GradientsParams) -> Vec<Vec<f32>> {
        struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
        impl ModuleVisitor<A> for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<A, D>>) {
                let g = self.0.get::<Flex, D>(p.id).map_or_else(Vec::new, |g| {
                    g.into_data().to_vec::<f32>().expect("float gradients")
                });
                self.1.push(g);
            }
        }
        let mut c = Collect(grads, Vec::new());
        model.visit(&mut c);
        c.1
    }

    /// The checkpointed gradients of a masked-token loss equal the plain
    /// backward's within 1e-6 relative, for every parameter (a tied head,
    /// grouped-query attention, biases and shifted logits included), with
    /// and without LoRA adapters.
    #[test]
    fn checkpointed_gradients_equal_the_plain_backward() {
        let dev = Default::default();
        let mut cfg = DenoiserConfig::new(9, 16, 3, 4, 32, 10);
        cfg.n_kv_heads = Some(2);
        cfg.qkv_bias = true;
        cfg.tied_head = true;
        cfg.logit_shift = true;
        let plain_model = cfg.init::<A>(4, &dev);
        let lora = crate::LoraConfig {
            rank: 2,
            ..Default::default()
        };
        for model in [
            plain_model.clone(),
            plain_model.with_lora(&lora, 1).unwrap(),
        ] {
            let ids: Vec<u32> = (0..20)
                .map(|i| if i % 3 == 0 { 9 } else { i % 9 })
                .collect();
            let at: Vec<i32> = (0..20).filter(|i| i % 3 == 0).collect();
            let targets: Vec<i32> = at.iter().map(|&i| i * 7 % 9).collect();
            let loss_of = |logits: Tensor<A, 2>| {
                let k = targets.len();
                let t = Tensor::<A, 1, Int>::from_data(TensorData::new(targets.clone(), [k]), &dev);
                let logp = burn::tensor::activation::log_softmax(logits, 1);
                logp.gather(1, t.reshape([k, 1])).sum() * (-1.0)
            };
            let index =
                || Tensor::<A, 1, Int>::from_data(TensorData::new(at.clone(), [at.len()]), &dev);
            let input = || Denoiser::<A>::input(&ids, 2, 10, &dev);
            let plain = loss_of(model.logits_at(input(), index()));
            let plain_value: f64 = plain.clone().into_scalar().elem();
            let plain = GradientsParams::from_grads(plain.backward(), &model);
            let (ckpt, value) = model.checkpointed_gradients(input(), |m, hidden| {
                loss_of(m.logits_at_hidden(hidden, 10, index()))
            });
            assert!(
                (value - plain_value).abs() < 1e-5,
                "{value} vs {plain_value}"
            );
            let (a, b) = (flat(&model, &plain), flat(&model, &ckpt));
            let trained = a.iter().filter(|g| !g.is_empty()).count();
            assert_eq!(trained, b.iter().filter(|g| !g.is_empty()).count());
            let scale = a.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
            let err = a
                .iter()
                .zip(&b)
                .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
                .fold(0f32, f32::max);
            assert!(scale > 1e-3, "gradients are not trivially zero");
            assert!(err <= 1e-6 * scale.max(1.0), "{err} at scale {scale}");
        }
    }
}

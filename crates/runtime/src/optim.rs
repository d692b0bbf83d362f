//! Optimisation helpers: AdamW settings, the learning-rate schedule and
//! clipping by global gradient norm.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use cogrpo_config::PretrainConfig;

pub fn adamw(cfg: &PretrainConfig) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.adam_eps as f32)
        .with_weight_decay(cfg.weight_decay as f32)
}

/// Linear warm-up to `lr`, then cosine decay to `lr * min_lr_ratio` at the
/// last step (`step` is 0-based).
pub fn learning_rate(cfg: &PretrainConfig, step: usize) -> f64 {
    let (lr, warm, total) = (cfg.lr, cfg.warmup_steps, cfg.steps);
    if step < warm {
        return lr * (step + 1) as f64 / warm as f64;
    }
    let decay_steps = total.saturating_sub(warm).max(1);
    let progress = ((step - warm) as f64 / decay_steps as f64).min(1.0);
    let min = lr * cfg.min_lr_ratio;
    min + 0.5 * (lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Global L2 norm of all of `module`'s gradients.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    struct SumSquares<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        total: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let s = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    let mut v = SumSquares::<B> { grads, total: None };
    module.visit(&mut v);
    v.total
        .map_or(0.0, |t| t.into_scalar().elem::<f64>().sqrt())
}

/// Clips gradients to a global L2 norm of at most `max_norm` (PyTorch's
/// `clip_grad_norm_`; burn's own clipping works per tensor). Returns the norm
/// before clipping; `max_norm = 0` only measures.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads
                    .register::<B::InnerBackend, D>(param.id, g * self.factor);
            }
        }
    }
    let norm = global_grad_norm::<B, M>(module, grads);
    if max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        module.visit(&mut Scale { grads, factor });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};

    type B = Autodiff<Flex>;

    fn cfg() -> PretrainConfig {
        cogrpo_config::load_str(
            "[run]\nname='t'\n[task]\nkind='sudoku4'\n[model]\nd_model=8\nn_layers=1\nn_heads=2\nd_ff=8\n\
             [pretrain]\nsteps=110\nbatch_size=1\nlr=1.0\nwarmup_steps=10\nmin_lr_ratio=0.1\n",
            "t",
            &[],
        )
        .unwrap()
        .pretrain
    }

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let c = cfg();
        assert!((learning_rate(&c, 0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 9) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 10) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 60) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&c, 110) - 0.1).abs() < 1e-12);
        assert!(learning_rate(&c, 30) > learning_rate(&c, 31));
    }

    #[test]
    fn clipping_bounds_the_global_norm_and_keeps_direction() {
        let dev = Default::default();
        let lin: Linear<B> = LinearConfig::new(3, 2).init(&dev);
        let x = Tensor::<B, 2>::from_data([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]], &dev);
        let loss = (lin.forward(x) * 10.0).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &lin);
        let w_before: Vec<f32> = grads
            .get::<Flex, 2>(lin.weight.id)
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();
        let norm = clip_global_norm::<B, _>(&lin, &mut grads, 1.0);
        // Hand-computed: dW = 10 * sum of x rows per output; db = 10 * batch.
        let expect_sq: f64 = [0.0f64, 25.0, 50.0]
            .iter()
            .map(|v| 2.0 * v * v)
            .sum::<f64>()
            + 2.0 * 400.0;
        assert!(
            (norm - expect_sq.sqrt()).abs() < 1e-3,
            "{norm} vs {}",
            expect_sq.sqrt()
        );
        let after = global_grad_norm::<B, _>(&lin, &grads);
        assert!((after - 1.0).abs() < 1e-4, "clipped norm {after}");
        let w_after: Vec<f32> = grads
            .get::<Flex, 2>(lin.weight.id)
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();
        for (a, b) in w_after.iter().zip(&w_before) {
            assert!((a - b / norm as f32).abs() < 1e-5);
        }
        // Below the bound nothing changes.
        assert!((clip_global_norm::<B, _>(&lin, &mut grads, 5.0) - 1.0).abs() < 1e-4);
    }
}

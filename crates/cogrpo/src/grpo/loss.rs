//! The clipped policy-gradient loss, shared by both factors of the policy.

use burn::prelude::*;
use mdm::Kernels;

/// Clip range of the importance ratio: `[1 - low, 1 + high]` (DAPO's
/// decoupled clip; PPO uses one epsilon for both).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    pub low: f64,
    pub high: f64,
}

/// `-sum_i w_i * min(r_i A_i, clip(r_i) A_i) + beta * sum_i w_i * k3_i`, with
/// `r_i = exp(new_i - old_i)` (PPO's clipped surrogate, Schulman et al. 2017)
/// and `k3_i = exp(ref_i - new_i) - (ref_i - new_i) - 1` (Schulman's
/// estimator of KL(pi || pi_ref), as GRPO uses it). Inputs are `[N]`.
pub fn clipped_loss<B: Kernels>(
    new_logp: Tensor<B, 1>,
    old_logp: Tensor<B, 1>,
    advantage: Tensor<B, 1>,
    weight: Tensor<B, 1>,
    clip: Clip,
    kl: Option<(f64, Tensor<B, 1>)>,
) -> Tensor<B, 1> {
    let ratio = (new_logp.clone() - old_logp).exp();
    let unclipped = ratio.clone() * advantage.clone();
    let clipped = ratio.clamp(1.0 - clip.low, 1.0 + clip.high) * advantage;
    let surrogate = unclipped.min_pair(clipped);
    let mut loss = (surrogate * weight.clone()).sum() * (-1.0);
    if let Some((beta, per_sample_kl)) = kl {
        loss = loss + (per_sample_kl * weight).sum() * beta;
    }
    loss
}

/// Schulman's k3 estimate of `KL(new || ref)` per sample of `new`:
/// [`policy::learned::k3`] of `ref_logp - new_logp`.
pub fn k3<B: Kernels>(ref_logp: Tensor<B, 1>, new_logp: Tensor<B, 1>) -> Tensor<B, 1> {
    policy::learned::k3(ref_logp - new_logp)
}

/// Share of samples whose gradient the clip removes: the ratio left the
/// clip range in the direction the advantage pushes it.
pub fn clip_fraction(new: &[f64], old: &[f64], advantage: &[f64], clip: Clip) -> f64 {
    let clipped = new
        .iter()
        .zip(old)
        .zip(advantage)
        .filter(|((n, o), a)| {
            let r = (*n - *o).exp();
            (**a > 0.0 && r > 1.0 + clip.high) || (**a < 0.0 && r < 1.0 - clip.low)
        })
        .count();
    clipped as f64 / new.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Autodiff<Flex>;

    fn t(v: &[f32]) -> Tensor<B, 1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
    }

    /// Hand-made numbers: ratios e^0.5 = 1.6487 (A = +1, clipped at 1.28),
    /// e^-0.5 = 0.6065 (A = -2, clipped at 0.8), e^0.1 = 1.1052 (A = -1, not
    /// clipped: the min picks the unclipped, more pessimistic term), 1 (A = 3).
    #[test]
    fn clipped_loss_on_hand_made_numbers() {
        let clip = Clip {
            low: 0.2,
            high: 0.28,
        };
        let new = t(&[0.5, -0.5, 0.1, 0.0]).require_grad();
        let old = t(&[0.0, 0.0, 0.0, 0.0]);
        let adv = t(&[1.0, -2.0, -1.0, 3.0]);
        let w = t(&[0.25, 0.25, 0.25, 0.25]);
        let loss = clipped_loss(new.clone(), old, adv, w, clip, None);
        let r3 = 0.1f64.exp();
        let expect = -0.25 * (1.28 + (-2.0 * 0.8) + (-r3) + 3.0);
        let got: f64 = loss.clone().into_scalar().elem();
        assert!((got - expect).abs() < 1e-6, "{got} vs {expect}");
        // Gradients: clipped samples get none; the others -w * A * r.
        let grads = loss.backward();
        let g: Vec<f32> = new.grad(&grads).unwrap().into_data().to_vec().unwrap();
        assert_eq!(g[0], 0.0);
        assert_eq!(g[1], 0.0);
        assert!((g[2] as f64 - 0.25 * r3).abs() < 1e-6, "{g:?}");
        assert!((g[3] as f64 + 0.75).abs() < 1e-6, "{g:?}");
        let frac = clip_fraction(
            &[0.5, -0.5, 0.1, 0.0],
            &[0.0; 4],
            &[1.0, -2.0, -1.0, 3.0],
            clip,
        );
        assert_eq!(frac, 0.5);
    }

    #[test]
    fn k3_is_zero_at_equal_policies_and_positive_elsewhere() {
        let a = t(&[-1.0, -2.0, -0.5]);
        let v: Vec<f32> = k3(a.clone(), a).into_data().to_vec().unwrap();
        assert!(v.iter().all(|x| x.abs() < 1e-7));
        let v: Vec<f32> = k3(t(&[-1.0]), t(&[-2.0])).into_data().to_vec().unwrap();
        // d = 1: e - 2
        assert!((v[0] as f64 - (std::f64::consts::E - 2.0)).abs() < 1e-6);
        // with beta the KL term adds beta * w * k3
        let clip = Clip {
            low: 0.2,
            high: 0.2,
        };
        let l: f64 = clipped_loss(
            t(&[0.0]),
            t(&[0.0]),
            t(&[0.0]),
            t(&[1.0]),
            clip,
            Some((0.5, t(&[2.0]))),
        )
        .into_scalar()
        .elem();
        assert!((l - 1.0).abs() < 1e-7);
    }
}

//! The clipped policy-gradient loss, one implementation for both factors
//! of the policy: [`Surrogate`] is what each factor supplies (its
//! log-probabilities under the current and the sampling parameters, the
//! advantages and weights of its samples, the KL to its reference), and
//! [`Surrogate::backward`] turns it into a gradient and the statistics the
//! trainer logs ([`Partial`], [`FactorStats`]).

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use mdm::{AutodiffKernels, Kernels};
use serde::{Deserialize, Serialize};

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

/// One factor's loss over a batch of its samples (revealed tokens for the
/// model, steps for the schedule), before it is assembled: every input of
/// [`clipped_loss`], per sample.
pub struct Surrogate<B: Kernels> {
    /// Log-probabilities under the current parameters (with gradients).
    pub new: Tensor<B, 1>,
    /// Entropy of each sample's distribution (reported; optimised only
    /// with a bonus weight).
    pub entropy: Tensor<B, 1>,
    /// Weight of the entropy bonus: the loss less `weight x sum_i w_i H_i`
    /// (0: the entropy is only reported).
    pub entropy_weight: f64,
    /// Log-probabilities under the parameters that sampled the rollout.
    pub old: Vec<f32>,
    pub advantage: Vec<f32>,
    pub weight: Vec<f32>,
    /// `beta` and the per-sample KL to the frozen reference, when the loss
    /// has a KL term.
    pub kl: Option<(f64, Tensor<B, 1>)>,
}

impl<B: AutodiffKernels> Surrogate<B> {
    /// The clipped loss, its gradient for `module`'s parameters, and what it
    /// measured per sample.
    pub fn backward<M: AutodiffModule<B>>(
        self,
        module: &M,
        clip: Clip,
        device: &B::Device,
    ) -> (GradientsParams, Partial) {
        let (loss, part) = self.loss(clip, device);
        let grads = GradientsParams::from_grads(loss.backward(), module);
        (grads, part)
    }

    /// The clipped loss (with its graph) and what it measured per sample:
    /// for a caller that runs the backward pass itself (a checkpointed one).
    pub fn loss(self, clip: Clip, device: &B::Device) -> (Tensor<B, 1>, Partial) {
        let kl_values = kl_values(&self.kl, &self.old, &self.new, device);
        let weight = tensor(self.weight, device);
        let mut loss = clipped_loss(
            self.new.clone(),
            tensor(self.old.clone(), device),
            tensor(self.advantage.clone(), device),
            weight.clone(),
            clip,
            self.kl,
        );
        if self.entropy_weight > 0.0 {
            loss = loss - (self.entropy.clone() * weight).sum() * self.entropy_weight;
        }
        let part = Partial {
            loss: loss.clone().into_scalar().elem(),
            new: host(self.new.detach()),
            old: self.old.iter().map(|&x| x as f64).collect(),
            adv: self.advantage.iter().map(|&x| x as f64).collect(),
            entropy: host(self.entropy.detach()),
            kl: kl_values,
        };
        (loss, part)
    }
}

/// What one factor's update measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct FactorStats {
    pub loss: f64,
    pub clip_fraction: f64,
    /// KL to the reference (k3), or to the sampling policy when no
    /// reference term is used.
    pub kl: f64,
    pub entropy: f64,
    /// Samples the factor was computed on (tokens or steps).
    pub samples: usize,
}

/// A factor's loss and per-sample values over (a shard of) a batch: the
/// parts of a batch's shards (threads, a distributed run's ranks)
/// [`Partial::merge`] into the batch's.
#[derive(Default, Serialize, Deserialize)]
pub struct Partial {
    loss: f64,
    new: Vec<f64>,
    old: Vec<f64>,
    adv: Vec<f64>,
    entropy: Vec<f64>,
    /// k3 per sample: to the reference, or to the sampling policy.
    kl: Vec<f64>,
}

impl Partial {
    /// Appends the shard after this one.
    pub fn merge(&mut self, o: Partial) {
        self.loss += o.loss;
        self.new.extend(o.new);
        self.old.extend(o.old);
        self.adv.extend(o.adv);
        self.entropy.extend(o.entropy);
        self.kl.extend(o.kl);
    }

    pub fn stats(&self, clip: Clip) -> FactorStats {
        let n = self.new.len().max(1) as f64;
        let kl = self.kl.iter().sum::<f64>() / n;
        FactorStats {
            loss: self.loss,
            clip_fraction: clip_fraction(&self.new, &self.old, &self.adv, clip),
            kl,
            entropy: self.entropy.iter().sum::<f64>() / n,
            samples: self.new.len(),
        }
    }
}

/// The k3 values a factor's stats report: the KL term's when the loss has
/// one, else the sampling policy's (`old`) against the current one.
fn kl_values<B: Kernels>(
    kl_term: &Option<(f64, Tensor<B, 1>)>,
    old: &[f32],
    new: &Tensor<B, 1>,
    device: &B::Device,
) -> Vec<f64> {
    match kl_term {
        Some((_, k)) => host(k.clone().detach()),
        None => host(k3(tensor(old.to_vec(), device), new.clone().detach())),
    }
}

fn tensor<B: Kernels>(v: Vec<f32>, device: &B::Device) -> Tensor<B, 1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

fn host<B: Kernels>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .to_vec()
        .expect("float tensor data")
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

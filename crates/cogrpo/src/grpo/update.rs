//! One gradient of each factor on a batch of recorded steps.
//!
//! The model factor's loss needs a forward and backward of the denoiser on
//! every recorded canvas; the records are split across threads, each on a
//! replica of the model (as pre-training does), in micro-batches that bound
//! the memory of long canvases, and the gradients summed.
//! The schedule factor is a few small matrices: one thread.

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use envs::StepRecord;
use mdm::Denoiser;
use policy::factors::token_log_probs;
use policy::learned::{ScheduleBatch, SchedulePolicy};

use super::loss::{Clip, clip_fraction, clipped_loss, k3};
use crate::parallel::{bounded_shards, sharded_gradients};
use mdm::{AutodiffKernels, Kernels};

/// A recorded step with its trajectory's advantage and loss weights.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub record: &'a StepRecord,
    pub advantage: f32,
    /// Weight of each of the step's revealed tokens in the model loss.
    pub token_weight: f32,
    /// Weight of the step in the schedule loss.
    pub step_weight: f32,
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

/// Gradient of the model factor's clipped loss (plus `beta` times the k3 KL
/// to `reference`) over `samples`, on up to `threads` replicas, each pass
/// holding at most `micro_batch_tokens` canvas tokens per thread (0: no
/// bound). The loss is a weighted sum over tokens, so the passes' gradients
/// add up to the whole batch's.
pub fn model_gradients<B: AutodiffKernels>(
    model: &Denoiser<B>,
    reference: Option<(&Denoiser<B::InnerBackend>, f64)>,
    samples: &[Sample<'_>],
    clip: Clip,
    threads: usize,
    micro_batch_tokens: usize,
    device: &B::Device,
) -> (GradientsParams, FactorStats) {
    let (grads, part) = model_partial(
        model,
        reference,
        samples,
        clip,
        threads,
        micro_batch_tokens,
        device,
    );
    (grads, part.stats(clip))
}

/// [`model_gradients`] with what it measured per sample, before the
/// statistics: the parts of a batch's shards (a distributed run's ranks)
/// [`Partial::merge`] into the batch's.
pub fn model_partial<B: AutodiffKernels>(
    model: &Denoiser<B>,
    reference: Option<(&Denoiser<B::InnerBackend>, f64)>,
    samples: &[Sample<'_>],
    clip: Clip,
    threads: usize,
    micro_batch_tokens: usize,
    device: &B::Device,
) -> (GradientsParams, Partial) {
    let canvas_len = samples.first().map_or(1, |s| s.record.canvas.len().max(1));
    let max_shard = match micro_batch_tokens {
        0 => 0,
        tokens => (tokens / canvas_len).max(1),
    };
    let run = |m: Denoiser<B>, shard: &&[Sample<'_>]| {
        let records: Vec<&StepRecord> = shard.iter().map(|s| s.record).collect();
        let (mut old, mut adv, mut w) = (Vec::new(), Vec::new(), Vec::new());
        for s in shard.iter() {
            old.extend(s.record.token_log_probs.iter().map(|&x| x as f32));
            adv.extend(std::iter::repeat_n(s.advantage, s.record.tokens.len()));
            w.extend(std::iter::repeat_n(s.token_weight, s.record.tokens.len()));
        }
        let (new, entropy) = token_log_probs(&m, &records, device);
        let kl_term = reference.map(|(r, beta)| {
            let (ref_logp, _) = token_log_probs(r, &records, device);
            let ref_logp = Tensor::<B, 1>::from_data(ref_logp.into_data(), device);
            (beta, k3(ref_logp, new.clone()))
        });
        let kl_values = kl_values(&kl_term, &old, &new, device);
        let loss = clipped_loss(
            new.clone(),
            tensor(old.clone(), device),
            tensor(adv.clone(), device),
            tensor(w.clone(), device),
            clip,
            kl_term,
        );
        let value: f64 = loss.clone().into_scalar().elem();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        let new = host(new.detach());
        let stats = Partial {
            loss: value,
            new,
            old: old.iter().map(|&x| x as f64).collect(),
            adv: adv.iter().map(|&x| x as f64).collect(),
            entropy: host(entropy.detach()),
            kl: kl_values,
        };
        (grads, stats)
    };
    let shards = bounded_shards(samples, threads, max_shard);
    let (grads, parts) = sharded_gradients(model, &shards, threads, run);
    let mut all = Partial::default();
    for part in parts {
        all.merge(part);
    }
    (grads, all)
}

/// Gradient of the schedule factor's clipped loss (plus `beta` times the KL
/// to `reference`) over `samples`.
pub fn schedule_gradients<B: AutodiffKernels>(
    policy: &SchedulePolicy<B>,
    reference: Option<(&SchedulePolicy<B>, f64)>,
    samples: &[Sample<'_>],
    clip: Clip,
    device: &B::Device,
) -> (GradientsParams, FactorStats) {
    let records: Vec<&StepRecord> = samples.iter().map(|s| s.record).collect();
    let batch = ScheduleBatch::new(
        &records,
        policy.components().len(),
        policy.table_steps(),
        policy.has_order(),
        device,
    );
    let old: Vec<f32> = records.iter().map(|r| r.schedule_log_prob as f32).collect();
    let adv: Vec<f32> = samples.iter().map(|s| s.advantage).collect();
    let w: Vec<f32> = samples.iter().map(|s| s.step_weight).collect();
    let (new, entropy) = policy.log_prob(&batch);
    let kl_term = reference.map(|(r, beta)| (beta, policy.kl_to(r, &batch)));
    let kl_values = kl_values(&kl_term, &old, &new, device);
    let loss = clipped_loss(
        new.clone(),
        tensor(old.clone(), device),
        tensor(adv.clone(), device),
        tensor(w, device),
        clip,
        kl_term,
    );
    let value: f64 = loss.clone().into_scalar().elem();
    let grads = GradientsParams::from_grads(loss.backward(), policy);
    let part = Partial {
        loss: value,
        new: host(new.detach()),
        old: old.iter().map(|&x| x as f64).collect(),
        adv: adv.iter().map(|&x| x as f64).collect(),
        entropy: host(entropy.detach()),
        kl: kl_values,
    };
    (grads, part.stats(clip))
}

/// A factor's loss and per-sample values over (a shard of) a batch.
#[derive(Default, serde::Serialize, serde::Deserialize)]
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

/// A frozen copy of `module` (same weights, no gradients).
pub fn frozen<B: AutodiffKernels, M: AutodiffModule<B>>(module: &M) -> M {
    module.clone().no_grad()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::grpo_update::synthetic_records;
    use crate::parallel::tests::assert_same_gradients;
    use burn::backend::{Autodiff, Flex};
    use mdm::DenoiserConfig;

    type B = Autodiff<Flex>;

    /// Micro-batches on two threads give the gradient and statistics of the
    /// whole batch in one pass (up to float summation order).
    #[test]
    fn micro_batches_add_up_to_the_whole_batch() {
        let device = Default::default();
        let model: Denoiser<B> = DenoiserConfig::new(7, 16, 2, 2, 32, 12).init(5, &device);
        let (records, adv) = synthetic_records(5, 3, 12, 7, 1);
        let samples: Vec<Sample> = records
            .iter()
            .zip(&adv)
            .map(|(record, &advantage)| Sample {
                record,
                advantage,
                token_weight: 0.1,
                step_weight: 1.0,
            })
            .collect();
        let clip = Clip {
            low: 0.2,
            high: 0.28,
        };
        let (whole, s_whole) = model_gradients(&model, None, &samples, clip, 1, 0, &device);
        // 24 tokens: two 12-token canvases per pass, 8 passes in 4 waves.
        let (micro, s_micro) = model_gradients(&model, None, &samples, clip, 2, 24, &device);
        assert_eq!(s_whole.samples, 60, "15 steps of 4 tokens");
        assert_eq!(s_micro.samples, 60);
        assert!(
            (s_whole.loss - s_micro.loss).abs() < 1e-5,
            "{s_whole:?} vs {s_micro:?}"
        );
        assert!((s_whole.entropy - s_micro.entropy).abs() < 1e-6);
        assert_same_gradients(&model, &whole, &micro);
    }
}

//! The two factors of the Co-GRPO policy, theta (the denoiser: which token
//! at each revealed position) and phi (the schedule policy: how many
//! positions, which ones, at what temperature and guidance), behind one
//! type. A [`Factor`] holds its parameters, its own AdamW, its frozen
//! reference for the KL term and its learning rate; [`Factor::update`] is
//! one pass of the clipped surrogate and one optimizer step, the same for
//! both (and for the bench's update row). What differs is only how the
//! factor's log-probabilities are computed ([`FactorModule::surrogate`])
//! and whether a distributed run's ranks split its samples.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use cogrpo_runtime::distributed::World;
use cogrpo_runtime::optim::clip_global_norm;
use cogrpo_runtime::parallel::{bounded_shards, sharded_gradients};
use envs::StepRecord;
use mdm::{AutodiffKernels, Denoiser};
use policy::factors::{TokenQuery, token_log_probs_kept};
use policy::learned::{ScheduleBatch, SchedulePolicy};

use crate::loss::{Clip, FactorStats, Partial, Surrogate, k3};
use crate::samples::Sample;

/// How an update runs: the clip range, the threads and memory bound of the
/// model's passes, the ranks, the device, and the iteration (for errors).
pub struct UpdateRun<'a, B: AutodiffKernels> {
    pub clip: Clip,
    pub threads: usize,
    /// Canvas tokens per forward/backward pass of the model on each thread
    /// (0: a thread's whole share in one pass).
    pub micro_batch_tokens: usize,
    /// Recompute each block's activations in the backward pass
    /// (`cogrpo.gradient_checkpointing`; `Denoiser::checkpointed_gradients`).
    pub checkpointing: bool,
    pub world: &'a World,
    pub device: B::Device,
    pub iteration: usize,
    /// Weight of the schedule policy's entropy bonus
    /// (`cogrpo.entropy_schedule`; 0 off).
    pub entropy_schedule: f64,
}

impl<'a, B: AutodiffKernels> UpdateRun<'a, B> {
    /// An update on one rank at DAPO's clip range (`cogrpo`'s defaults):
    /// the bench's update row, tests.
    pub fn single(
        world: &'a World,
        (threads, micro_batch_tokens): (usize, usize),
        device: B::Device,
    ) -> Self {
        Self {
            clip: Clip {
                low: 0.2,
                high: 0.28,
            },
            threads,
            micro_batch_tokens,
            checkpointing: false,
            world,
            device,
            iteration: 0,
            entropy_schedule: 0.0,
        }
    }
}

/// A module that is one factor of the policy.
pub trait FactorModule<B: AutodiffKernels>: AutodiffModule<B> + Clone {
    /// The frozen copy the KL term is taken against.
    type Reference;
    /// `model` or `schedule`: in TensorBoard tags, messages and the
    /// `cogrpo.lr_<name>` key.
    const NAME: &'static str;
    /// Whether a distributed run's ranks each take a share of the samples
    /// and sum their gradients (the model's forward passes), or every rank
    /// computes the factor whole (the schedule: a few small matrices).
    const SHARED_ACROSS_RANKS: bool;

    /// Weight of this factor's entropy bonus in `run` (0: none).
    fn entropy_weight(run: &UpdateRun<'_, B>) -> f64 {
        let _ = run;
        0.0
    }

    /// The loss's gradient over `samples` (plus `beta` times the KL to
    /// `reference`, less the entropy bonus), and what it measured per
    /// sample.
    fn gradients(
        &self,
        samples: &[Sample<'_>],
        reference: Option<(&Self::Reference, f64)>,
        run: &UpdateRun<'_, B>,
    ) -> (GradientsParams, Partial);
}

/// The model factor: log-probabilities of every revealed token recomputed
/// with gradients on the recorded canvases. The records are split across
/// threads, each on a replica of the model (as pre-training does), in
/// micro-batches that bound the memory of long canvases; the loss is a
/// weighted sum over tokens, so the passes' gradients add up to the whole
/// batch's.
impl<B: AutodiffKernels> FactorModule<B> for Denoiser<B> {
    type Reference = Denoiser<B::InnerBackend>;
    const NAME: &'static str = "model";
    const SHARED_ACROSS_RANKS: bool = true;

    fn gradients(
        &self,
        samples: &[Sample<'_>],
        reference: Option<(&Self::Reference, f64)>,
        run: &UpdateRun<'_, B>,
    ) -> (GradientsParams, Partial) {
        let device = &run.device;
        // Steps whose revealed tokens all follow their answer's end carry
        // nothing for the model.
        let samples: Vec<Sample<'_>> = samples
            .iter()
            .filter(|s| s.loss_tokens() > 0)
            .copied()
            .collect();
        let canvas_len = samples.first().map_or(1, |s| s.record.canvas.len().max(1));
        let max_shard = match run.micro_batch_tokens {
            0 => 0,
            tokens => (tokens / canvas_len).max(1),
        };
        let pass = |m: Denoiser<B>, shard: &&[Sample<'_>]| {
            let records: Vec<&StepRecord> = shard.iter().map(|s| s.record).collect();
            let (mut old, mut advantage, mut weight) = (Vec::new(), Vec::new(), Vec::new());
            for s in shard.iter() {
                let r = s.record;
                for (&pos, &logp) in r.revealed.iter().zip(&r.token_log_probs) {
                    if s.in_loss(pos) {
                        old.push(logp as f32);
                        advantage.push(s.advantage);
                        weight.push(s.token_weight);
                    }
                }
            }
            let keep = |i: usize, pos: usize| shard[i].in_loss(pos);
            let reference_logp = reference.map(|(r, beta)| {
                let (logp, _) = token_log_probs_kept(r, &records, &keep, device);
                (beta, Tensor::<B, 1>::from_data(logp.into_data(), device))
            });
            // Called once, on whichever path computes the log-probabilities.
            let surrogate = move |new: Tensor<B, 1>, entropy| Surrogate {
                kl: reference_logp.map(|(beta, r)| (beta, k3(r, new.clone()))),
                new,
                entropy,
                entropy_weight: 0.0,
                old,
                advantage,
                weight,
            };
            if !run.checkpointing {
                let (new, entropy) = token_log_probs_kept(&m, &records, &keep, device);
                return surrogate(new, entropy).backward(&m, run.clip, device);
            }
            // Gradient checkpointing: the loss from the top hidden state.
            let query = TokenQuery::new(&records, &keep, m.mask_id());
            let mut part = None;
            let (grads, _) = m.checkpointed_gradients(query.input(device), |m, hidden| {
                let (new, entropy) = query.log_probs_from_hidden(m, hidden, device);
                let (loss, measured) = surrogate(new, entropy).loss(run.clip, device);
                part = Some(measured);
                loss
            });
            (grads, part.expect("the loss was computed"))
        };
        let shards = bounded_shards(&samples, run.threads, max_shard);
        let (grads, parts) = sharded_gradients(self, &shards, run.threads, pass);
        let mut all = Partial::default();
        for part in parts {
            all.merge(part);
        }
        (grads, all)
    }
}

/// The schedule factor: the policy's log-probability of each recorded
/// schedule action, on one thread.
impl<B: AutodiffKernels> FactorModule<B> for SchedulePolicy<B> {
    type Reference = SchedulePolicy<B>;
    const NAME: &'static str = "schedule";
    const SHARED_ACROSS_RANKS: bool = false;

    fn entropy_weight(run: &UpdateRun<'_, B>) -> f64 {
        run.entropy_schedule
    }

    fn gradients(
        &self,
        samples: &[Sample<'_>],
        reference: Option<(&Self::Reference, f64)>,
        run: &UpdateRun<'_, B>,
    ) -> (GradientsParams, Partial) {
        let records: Vec<&StepRecord> = samples.iter().map(|s| s.record).collect();
        let batch = ScheduleBatch::new(
            &records,
            self.components().len(),
            self.table_steps(),
            self.has_order(),
            &run.device,
        );
        let (new, entropy) = self.log_prob(&batch);
        let surrogate = Surrogate {
            kl: reference.map(|(r, beta)| (beta, self.kl_to(r, &batch))),
            new,
            entropy,
            entropy_weight: Self::entropy_weight(run),
            old: records.iter().map(|r| r.schedule_log_prob as f32).collect(),
            advantage: samples.iter().map(|s| s.advantage).collect(),
            weight: samples.iter().map(|s| s.step_weight).collect(),
        };
        surrogate.backward(self, run.clip, &run.device)
    }
}

/// One factor in training: its parameters, optimizer, reference and step
/// size.
pub struct Factor<B: AutodiffKernels, M: FactorModule<B>> {
    pub module: M,
    pub optim: OptimizerAdaptor<AdamW, M, B>,
    /// The frozen reference and the KL weight beta; `None` when beta is 0.
    reference: Option<(M::Reference, f64)>,
    lr: f64,
    /// Global gradient-norm bound (0: off).
    grad_clip: f64,
}

/// A factor's optimization settings: `(lr, weight decay, gradient clip)`.
pub type Steps = (f64, f64, f64);

impl<B: AutodiffKernels, M: FactorModule<B>> Factor<B, M> {
    /// `module` with a fresh AdamW; `reference` is the KL term's (with its
    /// beta), `None` for no KL term.
    pub fn new(
        module: M,
        (lr, weight_decay, grad_clip): Steps,
        reference: Option<(M::Reference, f64)>,
    ) -> Self {
        Self {
            module,
            optim: AdamWConfig::new()
                .with_weight_decay(weight_decay as f32)
                .init::<B, M>(),
            reference,
            lr,
            grad_clip,
        }
    }
}

/// A factor as the trainer's update loop sees it, whatever its module: an
/// iteration's update loops over the factors its phase trains.
pub trait Trainable<B: AutodiffKernels> {
    /// `model` or `schedule`.
    fn name(&self) -> &'static str;

    /// One pass of the clipped surrogate on `samples` and one AdamW step:
    /// the gradient (this rank's share summed over the ranks, or computed
    /// whole), its finiteness checked, clipped by global norm. Samples
    /// without advantage carry no gradient unless a KL or entropy term does;
    /// with none
    /// left the factor is not stepped (`None`).
    fn update(
        &mut self,
        samples: &[Sample<'_>],
        run: &UpdateRun<'_, B>,
    ) -> anyhow::Result<Option<FactorStats>>;
}

impl<B: AutodiffKernels, M: FactorModule<B>> Trainable<B> for Factor<B, M> {
    fn name(&self) -> &'static str {
        M::NAME
    }

    fn update(
        &mut self,
        samples: &[Sample<'_>],
        run: &UpdateRun<'_, B>,
    ) -> anyhow::Result<Option<FactorStats>> {
        let reference = self.reference.as_ref().map(|(r, beta)| (r, *beta));
        let used: Vec<Sample> = samples
            .iter()
            .filter(|s| reference.is_some() || M::entropy_weight(run) > 0.0 || s.advantage != 0.0)
            .copied()
            .collect();
        if used.is_empty() {
            return Ok(None);
        }
        let (mut grads, stats) = if M::SHARED_ACROSS_RANKS {
            let (grads, part) = self
                .module
                .gradients(run.world.share(&used), reference, run);
            let (grads, _) = run
                .world
                .sum_gradients(&self.module, grads, &[], &run.device)?;
            let mut all = Partial::default();
            for p in run.world.gather::<B::InnerBackend, _>(part, &run.device)? {
                all.merge(p);
            }
            (grads, all.stats(run.clip))
        } else {
            let (grads, part) = self.module.gradients(&used, reference, run);
            (grads, part.stats(run.clip))
        };
        if !stats.loss.is_finite() {
            anyhow::bail!(
                "iteration {}: the {} loss is {}; stopped without writing a checkpoint (the \
                 last one is kept). Lower cogrpo.lr_{} or tighten the clip range.",
                run.iteration + 1,
                M::NAME,
                stats.loss,
                M::NAME
            );
        }
        clip_global_norm::<B, _>(&self.module, &mut grads, self.grad_clip);
        self.module = self.optim.step(self.lr, self.module.clone(), grads);
        Ok(Some(stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::synthetic_records;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use cogrpo_runtime::parallel::{flat_gradients, gradient_difference};
    use mdm::DenoiserConfig;

    type B = Autodiff<Flex>;

    /// Samples of `records` with advantages `adv`, each token weighing
    /// `token_weight`, answers ending at `answer_end`.
    fn samples_of<'a>(
        records: &'a [envs::StepRecord],
        adv: &[f32],
        answer_end: usize,
        token_weight: f32,
    ) -> Vec<Sample<'a>> {
        records
            .iter()
            .zip(adv)
            .map(|(record, &advantage)| Sample {
                record,
                answer_end,
                advantage,
                token_weight,
                step_weight: 1.0,
            })
            .collect()
    }

    /// Nothing revealed after an answer's end token reaches the model's
    /// gradient: changing those tokens (and their recorded log-probs)
    /// leaves it bit for bit, while the same change counts without an end.
    #[test]
    fn tokens_after_the_end_do_not_reach_the_gradient() {
        let device = Default::default();
        let model: Denoiser<B> = DenoiserConfig::new(7, 16, 2, 2, 32, 12).init(5, &device);
        let (records, adv) = synthetic_records(2, 3, 12, 7, 1);
        // Every token after position 5 changed.
        let mut changed = records.clone();
        for r in &mut changed {
            for (j, &p) in r.revealed.clone().iter().enumerate() {
                if p > 5 {
                    r.tokens[j] = (r.tokens[j] + 1) % 7;
                    r.token_log_probs[j] -= 0.3;
                }
            }
        }
        let world = World::single();
        let run = UpdateRun::<B>::single(&world, (1, 0), device);
        let grads = |records: &[envs::StepRecord], answer_end: usize| {
            let samples = samples_of(records, &adv, answer_end, 0.1);
            let (g, part) = model.gradients(&samples, None, &run);
            (flat_gradients(&model, &g), part.stats(run.clip).samples)
        };
        let (a, n) = grads(&records, 5);
        let (b, _) = grads(&changed, 5);
        assert_eq!(n, 2 * 6, "positions 0..=5 of two trajectories");
        assert_eq!(a, b, "after the end, nothing counts");
        let (c, n_all) = grads(&records, usize::MAX);
        let (d, _) = grads(&changed, usize::MAX);
        assert_eq!(n_all, 2 * 12);
        assert_ne!(c, d, "without an end, the same change counts");
    }

    /// The checkpointed update (`cogrpo.gradient_checkpointing`) gives the
    /// plain update's loss and gradients within 1e-6 relative, with
    /// guidance and a KL term to a reference in the loss.
    #[test]
    fn checkpointed_update_equals_the_plain_one() {
        let device = Default::default();
        let model: Denoiser<B> = DenoiserConfig::new(7, 16, 3, 2, 32, 12).init(5, &device);
        let reference = model.valid();
        let (mut records, adv) = synthetic_records(3, 3, 12, 7, 2);
        for r in records.iter_mut().step_by(2) {
            (r.guidance, r.prompt_len) = (0.5, 2);
        }
        let samples = samples_of(&records, &adv, usize::MAX, 0.05);
        let world = World::single();
        let plain = UpdateRun::<B>::single(&world, (2, 24), device);
        let ckpt = UpdateRun {
            checkpointing: true,
            ..UpdateRun::<B>::single(&world, (2, 24), device)
        };
        let (g_plain, p_plain) = model.gradients(&samples, Some((&reference, 0.1)), &plain);
        let (g_ckpt, p_ckpt) = model.gradients(&samples, Some((&reference, 0.1)), &ckpt);
        let (s_plain, s_ckpt) = (p_plain.stats(plain.clip), p_ckpt.stats(plain.clip));
        assert_eq!(s_plain.samples, s_ckpt.samples);
        assert!(
            (s_plain.loss - s_ckpt.loss).abs() < 1e-6,
            "{s_plain:?} vs {s_ckpt:?}"
        );
        let (a, b) = (
            flat_gradients(&model, &g_plain),
            flat_gradients(&model, &g_ckpt),
        );
        let (max_err, max_abs) = gradient_difference(&a, &b);
        assert!(max_abs > 1e-4, "gradients are not trivially zero");
        assert!(max_err <= 1e-6 * max_abs.max(1.0), "{max_err} vs {max_abs}");
    }

    /// Micro-batches on two threads give the gradient and statistics of the
    /// whole batch in one pass (up to float summation order).
    #[test]
    fn micro_batches_add_up_to_the_whole_batch() {
        let device = Default::default();
        let model: Denoiser<B> = DenoiserConfig::new(7, 16, 2, 2, 32, 12).init(5, &device);
        let (records, adv) = synthetic_records(5, 3, 12, 7, 1);
        let samples = samples_of(&records, &adv, usize::MAX, 0.1);
        let world = World::single();
        let run = |passes| UpdateRun::<B>::single(&world, passes, device);
        let (whole, p_whole) = model.gradients(&samples, None, &run((1, 0)));
        // 24 tokens: two 12-token canvases per pass, 8 passes in 4 waves.
        let (micro, p_micro) = model.gradients(&samples, None, &run((2, 24)));
        let clip = run((1, 0)).clip;
        let (s_whole, s_micro) = (p_whole.stats(clip), p_micro.stats(clip));
        assert_eq!(s_whole.samples, 60, "15 steps of 4 tokens");
        assert_eq!(s_micro.samples, 60);
        assert!(
            (s_whole.loss - s_micro.loss).abs() < 1e-5,
            "{s_whole:?} vs {s_micro:?}"
        );
        assert!((s_whole.entropy - s_micro.entropy).abs() < 1e-6);
        let (a, b) = (
            flat_gradients(&model, &whole),
            flat_gradients(&model, &micro),
        );
        let (max_err, max_abs) = gradient_difference(&a, &b);
        assert!(max_abs > 1e-4, "gradients are not trivially zero");
        assert!(max_err <= 1e-4 * max_abs, "{max_err} vs {max_abs}");
    }
}

//! What differs between the model families in pre-training, in one place:
//! the batch each family's loss reads, built from the task's examples.
//!
//! - MDM: masked rows, the diffusion ELBO ([`mdm::loss`]);
//! - ARM: shifted rows, next-token loss ([`mdm::arm`]);
//! - ILM: partial sequences with insertion targets ([`mdm::ilm`]).

use burn::optim::GradientsParams;
use burn::prelude::*;
use cogrpo_config::tasks::ilm_answer;
use cogrpo_runtime::parallel::sharded_gradients;
use envs::{Example, Task};
use mdm::ilm::{InsertionBatch, insertion_loss};
use mdm::loss::{
    CleanRow, ForwardProcess, NoisedBatch, checkpointed_diffusion_gradients, diffusion_loss,
};
use mdm::{AutodiffKernels, Denoiser, Family, Kernels};
use rand::Rng;

/// One pre-training micro-batch, as its family's loss reads it.
pub enum TrainingBatch {
    /// MDM (masked rows) and ARM (shifted rows): weighted token
    /// cross-entropy over the batch's normalizer.
    Tokens(NoisedBatch),
    /// ILM: partial sequences with insertion targets.
    Insertions(InsertionBatch),
}

impl TrainingBatch {
    /// Builds the family's batch from clean rows (prompt + answer).
    pub fn new<R: Rng + ?Sized>(
        model: Family,
        rows: &[CleanRow<'_>],
        forward: &ForwardProcess,
        special_id: u32,
        prompt_dropout: f64,
        (vocab, max_len): (usize, usize),
        rng: &mut R,
    ) -> Self {
        match model {
            Family::Mdm => Self::Tokens(forward.corrupt(rows, special_id, prompt_dropout, rng)),
            Family::Arm => Self::Tokens(mdm::arm::shifted_batch(rows, special_id)),
            Family::Ilm => Self::Insertions(InsertionBatch::drop_random(
                rows, special_id, vocab, max_len, rng,
            )),
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            Self::Tokens(b) => b.batch,
            Self::Insertions(b) => b.batch,
        }
    }

    /// Consecutive shards whose losses add up to the batch's.
    pub fn split(&self, parts: usize) -> Vec<TrainingBatch> {
        match self {
            Self::Tokens(b) => b.split(parts).into_iter().map(Self::Tokens).collect(),
            Self::Insertions(b) => b.split(parts).into_iter().map(Self::Insertions).collect(),
        }
    }

    /// `scale` times the loss of this (shard of a) batch of `total_rows`
    /// rows, and its gradients, computed by up to `threads` replicas of
    /// `model` in parallel (`cogrpo_runtime::parallel`), with gradient
    /// checkpointing when `checkpointing` (token batches; the ILM's
    /// insertion batches run plain). The loss is normalised as the whole
    /// batch's, so the shards of a distributed run's ranks add up to the
    /// batch's values and gradients.
    pub fn loss_and_grads<B: AutodiffKernels>(
        &self,
        model: &Denoiser<B>,
        total_rows: usize,
        scale: f64,
        (threads, checkpointing): (usize, bool),
        device: &B::Device,
    ) -> (f64, GradientsParams) {
        let shards = self.split(threads);
        let (grads, values) = sharded_gradients(model, &shards, threads, |replica, shard| {
            if let (true, Self::Tokens(b)) = (checkpointing, shard) {
                let (value, grads) = checkpointed_diffusion_gradients(&replica, b, scale, device);
                return (grads, value);
            }
            let loss = shard.loss(&replica, total_rows, device) * scale;
            let value: f64 = loss.clone().into_scalar().elem();
            (
                GradientsParams::from_grads(loss.backward(), &replica),
                value,
            )
        });
        (values.iter().sum(), grads)
    }

    /// The loss of this (shard of a) batch of `total_rows` rows.
    pub fn loss<B: Kernels>(
        &self,
        model: &Denoiser<B>,
        total_rows: usize,
        device: &B::Device,
    ) -> Tensor<B, 1> {
        match self {
            Self::Tokens(b) => diffusion_loss(model, b, device),
            Self::Insertions(b) => insertion_loss(model, b, total_rows, device),
        }
    }
}

/// The clean training row of `example` for `family`: its tokens and how many
/// leading ones are a prompt kept clean (0 when the task trains on whole
/// sequences). The ILM's answer loses its trailing `<pad>`s.
pub fn training_row(task: &dyn Task, family: Family, example: Example) -> (Vec<u32>, usize) {
    let prompt_len = if task.noise_prompt_in_training() {
        0
    } else {
        example.prompt.len()
    };
    let answer = match family {
        Family::Ilm => ilm_answer(task, &example.answer),
        Family::Mdm | Family::Arm => &example.answer,
    };
    let mut tokens = example.prompt.clone();
    tokens.extend_from_slice(answer);
    (tokens, prompt_len)
}

/// [`training_row`]s as the forward process reads them.
pub fn clean_rows(rows: &[(Vec<u32>, usize)]) -> Vec<CleanRow<'_>> {
    rows.iter()
        .map(|(tokens, prompt_len)| CleanRow {
            tokens,
            prompt_len: *prompt_len,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
    use mdm::DenoiserConfig;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    type B = Autodiff<Flex>;

    /// A training batch of `rows` for `family`, noised from `rng`.
    fn noised(
        family: Family,
        cfg: &DenoiserConfig,
        rows: &[CleanRow],
        rng: &mut StdRng,
    ) -> TrainingBatch {
        TrainingBatch::new(
            family,
            rows,
            &ForwardProcess::default(),
            cfg.mask_id(),
            0.0,
            (cfg.vocab_size, cfg.max_len),
            rng,
        )
    }

    /// Each family learns a toy conditional task (the answer is the prompt
    /// reversed): 100 AdamW steps cut its loss on a fixed probe batch by over a third.
    #[test]
    fn every_family_learns_in_the_right_direction() {
        let dev = Default::default();
        let data: Vec<Vec<u32>> = (0..32u32)
            .map(|i| {
                let p = [i % 5, (i / 5) % 5, (i * 3 + 1) % 5];
                vec![p[0], p[1], p[2], p[2], p[1], p[0]]
            })
            .collect();
        for family in [Family::Mdm, Family::Arm, Family::Ilm] {
            let cfg = DenoiserConfig::new(5, 32, 2, 4, 64, 7).with_family(family);
            let mut model = cfg.init::<B>(1, &dev);
            let mut optim = AdamWConfig::new().init::<B, Denoiser<B>>();
            let mut rng = StdRng::seed_from_u64(2);
            let rows: Vec<CleanRow> = data
                .iter()
                .map(|t| CleanRow {
                    tokens: t,
                    prompt_len: 3,
                })
                .collect();
            let make = |rng: &mut StdRng| noised(family, &cfg, &rows, rng);
            // The loss on fixed held-aside noise, before and after.
            let probe = make(&mut StdRng::seed_from_u64(99));
            let probe_loss =
                |m: &Denoiser<B>| -> f32 { probe.loss(m, probe.rows(), &dev).into_scalar() };
            let start = probe_loss(&model);
            for _ in 0..100 {
                let batch = make(&mut rng);
                let loss = batch.loss(&model, batch.rows(), &dev);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(3e-3, model, grads);
            }
            let end = probe_loss(&model);
            eprintln!("{family}: {start} -> {end}");
            assert!(end < 0.65 * start, "{family}: {start} -> {end}");
        }
    }

    /// `pretrain.gradient_checkpointing`: the MDM's and the ARM's loss and
    /// gradients on two threads equal the plain backward's within 1e-6
    /// relative.
    #[test]
    fn checkpointed_pretraining_gradients_equal_the_plain_ones() {
        use cogrpo_runtime::parallel::{flat_gradients, gradient_difference};
        let dev = Default::default();
        let seqs: Vec<(Vec<u32>, usize)> = (0..8u32)
            .map(|i| ((0..7).map(|j| (i * 3 + j) % 5).collect(), 2))
            .collect();
        let rows = clean_rows(&seqs);
        for family in [Family::Mdm, Family::Arm] {
            let mut cfg = DenoiserConfig::new(5, 16, 3, 2, 32, 7).with_family(family);
            cfg.tied_head = true;
            let model = cfg.init::<B>(3, &dev);
            let batch = noised(family, &cfg, &rows, &mut StdRng::seed_from_u64(4));
            let (plain, g_plain) = batch.loss_and_grads(&model, 8, 0.5, (2, false), &dev);
            let (ckpt, g_ckpt) = batch.loss_and_grads(&model, 8, 0.5, (2, true), &dev);
            assert!((plain - ckpt).abs() < 1e-6, "{family}: {plain} vs {ckpt}");
            let (a, b) = (
                flat_gradients(&model, &g_plain),
                flat_gradients(&model, &g_ckpt),
            );
            let (err, scale) = gradient_difference(&a, &b);
            assert!(scale > 1e-4, "{family}: gradients are not trivially zero");
            assert!(err <= 1e-6 * scale.max(1.0), "{family}: {err} at {scale}");
        }
    }
}

//! What differs between the model families (`model.family`) on the trainer's
//! side, in one place: the pre-training batch and its loss, and how a
//! trained model completes prompts. Everything else (data, checkpoints,
//! evaluation, sampling commands) is shared.
//!
//! - MDM: masked diffusion ([`mdm::loss`]); completions through
//!   `policy::Rollout` (the samplers and learned schedules).
//! - ARM: next-token loss on a shifted batch ([`mdm::arm`]); completions left
//!   to right with a KV cache ([`policy::autoregressive`]).
//! - ILM: insertion loss ([`mdm::ilm`]); completions by insertion until the
//!   stop head stops ([`policy::insertion`]), of the length the model picks.
//!
//! Co-GRPO trains MDMs only: an ILM's insertion order is a schedule decision
//! too, but its MDP (a step = one insertion, the action = (gap, token, stop))
//! is not built yet.

use burn::prelude::*;
use envs::{Example, Task};
use mdm::Kernels;
use mdm::ilm::{InsertionBatch, insertion_loss};
use mdm::loss::{CleanRow, ForwardProcess, NoisedBatch, diffusion_loss};
use mdm::{Denoiser, Family};
use policy::autoregressive::{self, ArmSampling};
use policy::insertion::{self, IlmRow, IlmSampling};
use policy::{GenerationStats, SamplerError};
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

/// The answer an ILM learns to generate: the task's answer without the
/// trailing `<pad>` tokens that fix its length for the MDM (star graphs).
pub fn ilm_answer<'a>(task: &dyn Task, answer: &'a [u32]) -> &'a [u32] {
    match task.vocab().id_of("<pad>") {
        Some(pad) => {
            let end = answer.iter().rposition(|&t| t != pad).map_or(0, |i| i + 1);
            &answer[..end]
        }
        None => answer,
    }
}

/// How an ARM or an ILM completes prompts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    Arm(ArmSampling),
    Ilm(IlmSampling),
}

impl Decoding {
    /// The decoding of `family` at `temperature` (0: greedy); `None` for
    /// the MDM, whose samplers are `policy`'s.
    pub fn of(family: Family, temperature: f64, top_k: usize) -> Option<Self> {
        match family {
            Family::Mdm => None,
            Family::Arm => Some(Self::Arm(ArmSampling { temperature, top_k })),
            Family::Ilm => Some(Self::Ilm(IlmSampling {
                temperature,
                top_k,
                max_new: 0,
            })),
        }
    }

    /// `arm`, `ilm(temp=0.8)`: the rows' sampler column.
    pub fn label(&self) -> String {
        let (name, t) = match self {
            Self::Arm(s) => ("arm", s.temperature),
            Self::Ilm(s) => ("ilm", s.temperature),
        };
        if t == 0.0 {
            name.to_string()
        } else {
            format!("{name}(temp={t})")
        }
    }

    /// Completes `prompts` (keyed per row by `keys`) with `answer_len`
    /// tokens (an ARM) or at most that many (an ILM, whose shorter answers
    /// are padded with `<pad>` where the task has one).
    #[allow(clippy::too_many_arguments)]
    pub fn complete<B: Kernels>(
        &self,
        model: &Denoiser<B>,
        task: &dyn Task,
        prompts: &[Vec<u32>],
        keys: &[u64],
        answer_len: usize,
        seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<Vec<u32>>, GenerationStats), SamplerError> {
        match self {
            Self::Arm(s) => {
                autoregressive::generate(model, prompts, keys, answer_len, *s, seed, device)
            }
            Self::Ilm(s) => {
                let mut rows: Vec<IlmRow> =
                    prompts.iter().map(|p| IlmRow::after_prompt(p)).collect();
                let s = IlmSampling {
                    max_new: answer_len,
                    ..*s
                };
                let stats = insertion::generate(model, &mut rows, keys, s, seed, device)?;
                let pad = task.vocab().id_of("<pad>");
                let answers = rows
                    .iter()
                    .zip(prompts)
                    .map(|(r, p)| {
                        let mut a = r.tokens[p.len()..].to_vec();
                        if let Some(pad) = pad {
                            a.resize(answer_len.max(a.len()), pad);
                        }
                        a
                    })
                    .collect();
                Ok((answers, stats))
            }
        }
    }
}

/// The prompts and keys of `examples` (keys are their ids).
pub fn prompts_of(examples: &[Example]) -> (Vec<Vec<u32>>, Vec<u64>) {
    examples.iter().map(|e| (e.prompt.clone(), e.id)).unzip()
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
            let make = |rng: &mut StdRng| {
                TrainingBatch::new(
                    family,
                    &rows,
                    &ForwardProcess::default(),
                    cfg.mask_id(),
                    0.0,
                    (cfg.vocab_size, cfg.max_len),
                    rng,
                )
            };
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
}

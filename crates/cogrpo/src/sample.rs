//! `cogrpo sample`: completions for prompts typed by the user.

use anyhow::Context;
use burn::prelude::*;
use envs::seeding::{derive_key, purpose};
use envs::{Canvas, Task};
use mdm::Denoiser;
use policy::learned::SchedulePolicy;
use policy::{Act, GenerationStats, Rollout, SamplerConfig};

/// One generated sequence.
pub struct Completion {
    /// The fixed prefix, as text.
    pub prompt: String,
    /// The generated rest, as text.
    pub completion: String,
    /// The generated rest, as tokens.
    pub answer: Vec<u32>,
}

/// How completions are generated: a fixed sampler, or a trained arm's
/// learned schedule acting in mode over its reference sampler.
pub struct Generator<'a, B: Backend> {
    pub model: &'a Denoiser<B>,
    pub policy: Option<&'a SchedulePolicy<B>>,
    /// The sampler (the arm's reference), with its step count.
    pub sampler: SamplerConfig,
    /// Replaces the sampler's token temperature (an arm's `eval_temperature`).
    pub temperature: Option<f64>,
}

/// Generates `n` completions of each prompt. With no prompts, tasks with a
/// prompt layout (Sudoku) use the first test prompts, others generate
/// unconditionally.
pub fn sample<B: Backend>(
    task: &dyn Task,
    generator: &Generator<B>,
    device: &B::Device,
    prompts: &[String],
    n: usize,
    seed: u64,
) -> anyhow::Result<(Vec<Completion>, GenerationStats)> {
    let model = generator.model;
    let mut fixed: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            task.encode_user_prompt(p)
                .with_context(|| format!("prompt {p:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    if fixed.is_empty() {
        fixed = if task.layout().prompt_len > 0 {
            task.test_examples()
                .iter()
                .take(n)
                .map(|e| e.prompt.clone())
                .collect()
        } else {
            vec![Vec::new(); n]
        };
    } else {
        fixed = fixed
            .into_iter()
            .flat_map(|p| std::iter::repeat_n(p, n))
            .collect();
    }
    let mut canvas = Canvas::new(task.layout().seq_len(), model.mask_id());
    for (i, p) in fixed.iter().enumerate() {
        canvas.push_row(p, i as u64)?;
    }
    let seed = derive_key(&[purpose::SAMPLER, seed, 0x73_61_6d_70]);
    let rollout = Rollout {
        model,
        policy: generator.policy,
        reference: &generator.sampler,
        steps: generator.sampler.steps,
        act: Act::Mode,
        temperature: generator.temperature,
        seed,
        device: device.clone(),
    };
    let (_, stats) = rollout.run(&mut canvas, false)?;
    let vocab = task.vocab();
    let out = (0..canvas.rows())
        .map(|r| {
            let row = canvas.row(r);
            let p = canvas.prompt_len(r);
            Completion {
                prompt: vocab.decode(&row[..p]),
                completion: vocab.decode(&row[p..]),
                answer: row[p..].to_vec(),
            }
        })
        .collect();
    Ok((out, stats))
}

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

/// Most completions one `sample` command generates (prompts x `n`): they
/// are held in memory to print and draw.
pub const MAX_SAMPLES: usize = 1_000_000;

/// Generates `n` completions of each prompt, `batch` rows at a time. With no
/// prompts, tasks with a prompt layout (Sudoku) use the first test prompts,
/// others generate unconditionally. A row's randomness is keyed by its
/// index, so the batch size does not change the completions.
pub fn sample<B: Backend>(
    task: &dyn Task,
    generator: &Generator<B>,
    device: &B::Device,
    prompts: &[String],
    n: usize,
    batch: usize,
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
    if fixed.is_empty() && task.layout().prompt_len > 0 {
        fixed = task
            .test_examples()
            .iter()
            .take(n)
            .map(|e| e.prompt.clone())
            .collect();
    }
    // Row i's prompt: each typed prompt n times; or a test prompt each; or
    // none (unconditional).
    let (rows, per_prompt) = match (prompts.is_empty(), fixed.is_empty()) {
        (false, _) => (fixed.len().saturating_mul(n), n),
        (true, false) => (fixed.len(), 1),
        (true, true) => (n, n),
    };
    anyhow::ensure!(
        rows <= MAX_SAMPLES,
        "-n: {rows} completions asked, at most {MAX_SAMPLES} per command (run it again with \
         another --seed for more)"
    );
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
    let vocab = task.vocab();
    let mut out = Vec::with_capacity(rows);
    let mut stats = GenerationStats::default();
    let batch = batch.max(1);
    for start in (0..rows).step_by(batch) {
        let mut canvas = Canvas::new(task.layout().seq_len(), model.mask_id());
        for i in start..rows.min(start + batch) {
            let prompt = fixed.get(i / per_prompt).map_or(&[][..], Vec::as_slice);
            canvas.push_row(prompt, i as u64)?;
        }
        let (_, part) = rollout.run(&mut canvas, false)?;
        stats.append(part);
        out.extend((0..canvas.rows()).map(|r| {
            let row = canvas.row(r);
            let p = canvas.prompt_len(r);
            Completion {
                prompt: vocab.decode(&row[..p]),
                completion: vocab.decode(&row[p..]),
                answer: row[p..].to_vec(),
            }
        }));
    }
    Ok((out, stats))
}

//! `cogrpo sample`: completions for prompts typed by the user.

use anyhow::Context;
use burn::prelude::*;
use envs::seeding::{derive_key, purpose};
use envs::{Canvas, Task};
use mdm::Denoiser;
use policy::{GenerationStats, Sampler, SamplerConfig};

/// One generated sequence.
pub struct Completion {
    /// The fixed prefix, as text.
    pub prompt: String,
    /// The generated rest, as text.
    pub completion: String,
}

/// Generates `n` completions of each prompt. With no prompts, tasks with a
/// prompt layout (Sudoku) use the first test prompts, others generate
/// unconditionally.
pub fn sample<B: Backend>(
    task: &dyn Task,
    model: &Denoiser<B>,
    device: &B::Device,
    sampler: &SamplerConfig,
    prompts: &[String],
    n: usize,
    seed: u64,
) -> anyhow::Result<(Vec<Completion>, GenerationStats)> {
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
    let stats = Sampler::new(model, device, seed).generate(&mut canvas, sampler)?;
    let vocab = task.vocab();
    let out = (0..canvas.rows())
        .map(|r| {
            let row = canvas.row(r);
            let p = canvas.prompt_len(r);
            Completion {
                prompt: vocab.decode(&row[..p]),
                completion: vocab.decode(&row[p..]),
            }
        })
        .collect();
    Ok((out, stats))
}

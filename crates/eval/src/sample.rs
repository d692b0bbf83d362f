//! `cogrpo sample`: completions for prompts typed by the user.

use anyhow::Context;
use envs::seeding::{derive_key, purpose};
use envs::{Canvas, Task};
use mdm::{Denoiser, Family};
use policy::insertion::{self, IlmRow, IlmSampling};
use policy::learned::SchedulePolicy;
use policy::{Act, GenerationStats, Rollout, SamplerConfig, TemperatureOverride};

use crate::decoding::{Decoding, Prompts};
use mdm::Kernels;

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
pub struct Generator<'a, B: Kernels> {
    pub model: &'a Denoiser<B>,
    pub policy: Option<&'a SchedulePolicy<B>>,
    /// The sampler (the arm's reference), with its step count.
    pub sampler: SamplerConfig,
    /// Replaces the sampler's token temperature (an arm's `eval_temperature`).
    pub temperature: Option<TemperatureOverride>,
}

/// Most completions one `sample` command generates (prompts x `n`): they
/// are held in memory to print and draw.
pub const MAX_SAMPLES: usize = 1_000_000;

/// Generates `n` completions of each prompt, `batch` rows at a time. With no
/// prompts, tasks with a prompt layout (Sudoku) use the first test prompts,
/// others generate unconditionally. A row's randomness is keyed by its
/// index, so the batch size does not change the completions.
pub fn sample<B: Kernels>(
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
    let temperature = generator
        .temperature
        .map_or(generator.sampler.temperature, |t| t.value);
    let prompt_of = |i: usize| fixed.get(i / per_prompt).map_or(&[][..], Vec::as_slice);
    let row_prompts: Vec<&[u32]> = (0..rows).map(prompt_of).collect();
    if let Some(decoding) = Decoding::of(model.family(), temperature, 0) {
        return complete_rows(task, model, decoding, &row_prompts, batch, seed, device);
    }
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
        for (i, prompt) in row_prompts.iter().enumerate().skip(start).take(batch) {
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

/// [`sample`] for an ARM or an ILM: rows whose prompts (`row_prompts`, one
/// per row) have one length run together, `batch` at a time, each completed
/// to the model's length.
fn complete_rows<B: Kernels>(
    task: &dyn Task,
    model: &Denoiser<B>,
    decoding: Decoding,
    row_prompts: &[&[u32]],
    batch: usize,
    seed: u64,
    device: &B::Device,
) -> anyhow::Result<(Vec<Completion>, GenerationStats)> {
    let rows = row_prompts.len();
    let prompt_of = |i: usize| row_prompts[i];
    let vocab = task.vocab();
    let seq_len = task.layout().seq_len();
    let (mut out, mut stats) = (Vec::with_capacity(rows), GenerationStats::default());
    let mut start = 0;
    while start < rows {
        let len = prompt_of(start).len();
        anyhow::ensure!(
            len < seq_len,
            "a prompt of {len} tokens leaves no room in the task's {seq_len}"
        );
        let end = (start..rows.min(start + batch.max(1)))
            .take_while(|&i| prompt_of(i).len() == len)
            .last()
            .map_or(start + 1, |i| i + 1);
        let prompts = Prompts {
            tokens: (start..end).map(|i| prompt_of(i).to_vec()).collect(),
            keys: (start as u64..end as u64).collect(),
        };
        let (answers, part) =
            decoding.complete(model, task, &prompts, seq_len - len, seed, device)?;
        stats.append(part);
        out.extend(prompts.tokens.iter().zip(answers).map(|(p, a)| Completion {
            prompt: vocab.decode(p),
            completion: vocab.decode(&a),
            answer: a,
        }));
        start = end;
    }
    Ok((out, stats))
}

/// Where `--infill` text leaves a gap for the ILM to fill.
pub const GAP: &str = "<gap>";

/// `n` ILM infillings of `text`: the text between `<gap>` markers stays
/// fixed and each gap receives as many tokens as the model inserts (at most
/// the task's sequence length in all), which an MDM cannot do without being
/// told the gap's length.
pub fn infill<B: Kernels>(
    task: &dyn Task,
    model: &Denoiser<B>,
    text: &str,
    n: usize,
    temperature: f64,
    seed: u64,
    device: &B::Device,
) -> anyhow::Result<(Vec<Completion>, GenerationStats)> {
    anyhow::ensure!(
        model.family() == Family::Ilm,
        "--infill needs an ILM (model.family = \"ilm\"): this checkpoint holds an {} model, \
         which cannot fill a gap of unknown length",
        model.family().name().to_uppercase()
    );
    anyhow::ensure!(
        text.contains(GAP),
        "--infill {text:?} has no {GAP} marker to fill"
    );
    anyhow::ensure!(n <= MAX_SAMPLES, "-n: at most {MAX_SAMPLES} infillings");
    let segments: Vec<Vec<u32>> = text
        .split(GAP)
        .map(|seg| {
            if seg.is_empty() {
                Ok(Vec::new())
            } else {
                task.encode_user_prompt(seg)
                    .with_context(|| format!("--infill segment {seg:?}"))
            }
        })
        .collect::<anyhow::Result<_>>()?;
    let fixed: usize = segments.iter().map(Vec::len).sum();
    let room = task.layout().seq_len().saturating_sub(fixed);
    anyhow::ensure!(
        room > 0,
        "--infill: the fixed text fills the whole sequence"
    );
    let mut rows = vec![IlmRow::infill(&segments); n];
    let keys: Vec<u64> = (0..n as u64).collect();
    let sampling = IlmSampling {
        temperature,
        top_k: 0,
        max_new: room,
    };
    let seed = derive_key(&[purpose::SAMPLER, seed, 0x69_6e_66_69]);
    let stats = insertion::generate(model, &mut rows, &keys, sampling, seed, device)?;
    let vocab = task.vocab();
    let out = rows
        .into_iter()
        .map(|r| Completion {
            prompt: text.to_string(),
            completion: vocab.decode(&r.tokens),
            answer: r.tokens,
        })
        .collect();
    Ok((out, stats))
}

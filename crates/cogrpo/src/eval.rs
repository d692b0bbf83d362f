//! Evaluation on the task's held-out split.
//!
//! - A sampler sweep: every `eval.samplers` entry at every `eval.steps`
//!   count generates an answer for each test example; the task's verifiers
//!   score them (Sudoku: solved share, d1's cell accuracy, valid cells).
//! - A likelihood bound: the Monte Carlo ELBO of the test answers in bits
//!   per token (`eval.nll_samples` stratified times per sequence).

use std::time::Instant;

use anyhow::bail;
use burn::prelude::*;
use envs::seeding::{derive_key, purpose, stream};
use envs::{Canvas, Example, Task};
use mdm::Denoiser;
use mdm::likelihood::elbo_nll;
use mdm::loss::CleanRow;
use policy::{Sampler, SamplerConfig};
use rewards::{RewardItem, Verifier};

use crate::config::ExperimentConfig;
use crate::logging::{Progress, Scalars};
use crate::parallel::map_parallel;
use crate::run_dir::EvalRow;

/// Runs the configured sweep and likelihood bound.
pub fn evaluate<B: Backend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    device: &B::Device,
    log: &mut Scalars,
) -> anyhow::Result<Vec<EvalRow>> {
    let e = &cfg.eval;
    let all = task.test_examples();
    let examples = &all[..e.max_examples.unwrap_or(all.len()).min(all.len())];
    let verifiers = rewards::verifiers_for(task.name());
    if !e.samplers.is_empty() && verifiers.is_empty() {
        bail!(
            "task `{}` has no verifier to score generated answers; leave eval.samplers empty \
             and use eval.nll_samples for a likelihood evaluation",
            task.name()
        );
    }
    let mut rows = Vec::new();
    for sampler in cfg.sweep() {
        let r = sweep_point(cfg, task, model, device, &sampler, examples, &verifiers)?;
        for row in &r {
            log.scalar(
                &format!("eval/{}/{}", row.sampler, row.metric),
                row.value,
                sampler.steps,
            );
        }
        rows.extend(r);
    }
    if e.nll_samples > 0 {
        let row = likelihood(cfg, model, device, examples)?;
        log.scalar("eval/elbo_bits_per_token", row.value, 0);
        rows.push(row);
    }
    Ok(rows)
}

/// One sampler at one step count over `examples`: a row per verifier.
pub fn sweep_point<B: Backend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    device: &B::Device,
    sampler: &SamplerConfig,
    examples: &[Example],
    verifiers: &[Box<dyn Verifier>],
) -> anyhow::Result<Vec<EvalRow>> {
    let start = Instant::now();
    let label = sampler.label();
    let progress = Progress::new(
        examples.len() as u64,
        &format!("{label} T={}", sampler.steps),
    );
    let seed = derive_key(&[purpose::SAMPLER, cfg.run.seed, 0x65_76_61_6c]);
    let runner = Sampler::new(model, device, seed);
    // Batches run on worker threads; each row's draws are keyed by its
    // example id, so the numbers do not depend on batching or threads.
    let batches: Vec<&[Example]> = examples.chunks(cfg.eval.batch_size).collect();
    let per_batch = map_parallel(&batches, cfg.run.threads, |chunk| {
        let mut canvas = Canvas::from_examples(
            chunk,
            1,
            task.layout().seq_len(),
            model.mask_id(),
            |ex, _| ex.id,
        )?;
        let stats = runner.generate(&mut canvas, sampler)?;
        let scores: Vec<Vec<Option<f64>>> = chunk
            .iter()
            .enumerate()
            .map(|(r, ex)| {
                let item = RewardItem::new(ex, 0, canvas.answer(r), task.vocab());
                verifiers.iter().map(|v| v.score(&item)).collect()
            })
            .collect();
        progress.inc(chunk.len() as u64);
        Ok((stats.nfe.iter().map(|&n| n as f64).sum::<f64>(), scores))
    })?;
    progress.finish();
    let mut sums = vec![(0.0f64, 0usize); verifiers.len()];
    let mut nfe = 0.0;
    for (batch_nfe, scores) in per_batch {
        nfe += batch_nfe;
        for row in scores {
            for (score, sum) in row.into_iter().zip(sums.iter_mut()) {
                if let Some(score) = score {
                    sum.0 += score;
                    sum.1 += 1;
                }
            }
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let scores: Vec<String> = verifiers
        .iter()
        .zip(&sums)
        .map(|(v, (sum, n))| format!("{} {:.4}", v.name(), sum / (*n).max(1) as f64))
        .collect();
    progress.println(&format!(
        "{label} T={}: {} ({wall_s:.1}s)",
        sampler.steps,
        scores.join(", ")
    ));
    Ok(verifiers
        .iter()
        .zip(sums)
        .map(|(v, (sum, n))| EvalRow {
            sampler: label.clone(),
            steps: sampler.steps,
            metric: v.name().to_string(),
            value: if n > 0 { sum / n as f64 } else { f64::NAN },
            n,
            nfe: nfe / examples.len().max(1) as f64,
            wall_s,
        })
        .collect())
}

/// The held-out ELBO bound in bits per answer token.
pub fn likelihood<B: Backend>(
    cfg: &ExperimentConfig,
    model: &Denoiser<B>,
    device: &B::Device,
    examples: &[Example],
) -> anyhow::Result<EvalRow> {
    let start = Instant::now();
    let k = cfg.eval.nll_samples;
    let progress = Progress::new(examples.len() as u64, "elbo");
    let batches: Vec<&[Example]> = examples.chunks(cfg.eval.batch_size).collect();
    let per_batch = map_parallel(&batches, cfg.run.threads, |chunk| {
        let seqs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|ex| ex.prompt.iter().chain(&ex.answer).copied().collect())
            .collect();
        let rows: Vec<CleanRow> = seqs
            .iter()
            .zip(chunk.iter())
            .map(|(t, ex)| CleanRow {
                tokens: t,
                prompt_len: ex.prompt.len(),
            })
            .collect();
        let mut rngs: Vec<_> = chunk
            .iter()
            .map(|ex| stream(&[purpose::LIKELIHOOD, cfg.run.seed, ex.id]))
            .collect();
        let nats = elbo_nll(model, &rows, k, &mut rngs, device)
            .iter()
            .sum::<f64>();
        progress.inc(chunk.len() as u64);
        Ok(nats)
    })?;
    progress.finish();
    let nats: f64 = per_batch.iter().sum();
    let tokens: usize = examples.iter().map(|ex| ex.answer.len()).sum();
    Ok(EvalRow {
        sampler: "elbo".into(),
        steps: k,
        metric: "bits_per_token".into(),
        value: nats / tokens.max(1) as f64 / std::f64::consts::LN_2,
        n: examples.len(),
        nfe: k as f64,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// The rows as an aligned text table.
pub fn table(rows: &[EvalRow]) -> String {
    let mut out = format!(
        "{:<34} {:>6} {:<18} {:>9} {:>6} {:>7} {:>8}\n",
        "sampler", "steps", "metric", "value", "n", "nfe", "wall_s"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<34} {:>6} {:<18} {:>9.4} {:>6} {:>7.1} {:>8.1}\n",
            r.sampler, r.steps, r.metric, r.value, r.n, r.nfe, r.wall_s
        ));
    }
    out
}

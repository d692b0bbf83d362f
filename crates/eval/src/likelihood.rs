//! Held-out likelihood bounds, per model family.

use std::time::Instant;

use cogrpo_config::ExperimentConfig;
use cogrpo_config::tasks::ilm_answer;
use cogrpo_runtime::logging::Progress;
use cogrpo_runtime::parallel::map_parallel;
use envs::seeding::{purpose, stream};
use envs::{Example, Task};
use mdm::likelihood::elbo_nll;
use mdm::loss::CleanRow;
use mdm::{Denoiser, Family, Kernels};
use rand::seq::SliceRandom;

use crate::rows::EvalRow;

/// The held-out likelihood in bits per answer token: the MDM's Monte Carlo
/// ELBO bound (row `elbo`, `eval.nll_samples` stratified times per
/// sequence), the ARM's exact negative log-likelihood (row `nll`), or the
/// ILM's insertion-order bound (row `ilm_bound`, `eval.nll_samples` random
/// orders per sequence; [`mdm::ilm::nll_bound`]).
pub fn likelihood<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    device: &B::Device,
    examples: &[Example],
) -> anyhow::Result<EvalRow> {
    let start = Instant::now();
    let family = model.family();
    let k = if family == Family::Arm {
        1
    } else {
        cfg.eval.nll_samples
    };
    let label = match family {
        Family::Mdm => "elbo",
        Family::Arm => "nll",
        Family::Ilm => "ilm_bound",
    };
    let progress = Progress::new(examples.len() as u64, label);
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
        let nats = match family {
            Family::Mdm => elbo_nll(model, &rows, k, &mut rngs, device),
            Family::Arm => {
                let batch = mdm::arm::shifted_batch(&rows, model.bos_id());
                mdm::arm::answer_nll(model, &batch, device)
            }
            Family::Ilm => chunk
                .iter()
                .zip(&mut rngs)
                .map(|(ex, rng)| {
                    // The answer the ILM generates: without the `<pad>`s that
                    // its stop decision implies (still divided by all tokens).
                    let answer = ilm_answer(task, &ex.answer);
                    let orders: Vec<Vec<usize>> = (0..k)
                        .map(|_| {
                            let mut o: Vec<usize> = (0..answer.len()).collect();
                            o.shuffle(rng);
                            o
                        })
                        .collect();
                    mdm::ilm::nll_bound(model, &ex.prompt, answer, &orders, device)
                })
                .collect(),
        };
        progress.inc(chunk.len() as u64);
        Ok(nats.iter().sum::<f64>())
    })?;
    progress.finish();
    let nats: f64 = per_batch.iter().sum();
    let tokens: usize = examples.iter().map(|ex| ex.answer.len()).sum();
    Ok(EvalRow {
        sampler: label.into(),
        steps: k,
        metric: "bits_per_token".into(),
        value: nats / tokens.max(1) as f64 / std::f64::consts::LN_2,
        n: examples.len(),
        nfe: k as f64,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

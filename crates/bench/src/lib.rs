//! `cogrpo bench`: throughput of the pre-training step, the Co-GRPO update
//! (the trainer's own path), the forward pass and each sampler, and
//! (`scaling`) the first-hitting sampler against dense ancestral sampling
//! over sequence lengths and vocabularies. docs/performance.md reads them.
//!
//! Measures the configured model on the configured task with synthetic
//! weights (throughput does not depend on their values), after one warm-up
//! round per row. Numbers are wall-clock on the chosen device.

pub mod dense_ancestral;
pub mod grpo_update;
pub mod machine;
pub mod scaling;

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::prelude::*;
use envs::seeding::{derive_key, purpose, stream};
use envs::{Canvas, Task};
use mdm::loss::ForwardProcess;
use mdm::{Denoiser, DenoiserConfig, Family, on_one_core};
use policy::{Sampler, SamplerConfig, SamplerKind};
use serde::Serialize;

use cogrpo_config::tasks::denoiser_config;
use cogrpo_config::{ExperimentConfig, micro_batch_tokens};
use cogrpo_eval::decoding::{Decoding, Prompts};
use cogrpo_grpo::synthetic::synthetic_records;
use cogrpo_pretrain::{TrainingBatch, clean_rows, init_seed, training_row};
use cogrpo_runtime::optim::adamw;
use mdm::AutodiffKernels;

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub what: String,
    pub batch: usize,
    pub steps: usize,
    /// Tokens processed (training, forward) or generated (samplers) per second.
    pub tokens_per_s: f64,
    pub seconds: f64,
    pub nfe: f64,
}

pub struct BenchOptions {
    pub train_steps: usize,
    pub sample_batch: usize,
    pub sampler_steps: Vec<usize>,
    /// Batches of the forward-pass rows (default: the sampling batch).
    pub forward_batches: Vec<usize>,
    /// Sampler kinds timed (default: all three).
    pub samplers: Vec<SamplerKind>,
    /// Steps per trajectory of the Co-GRPO update row (0: no such row).
    pub grpo_steps: usize,
    /// Only the Co-GRPO update row, on freshly initialised weights: a
    /// process's peak memory is then the update's (LoRA against full
    /// fine-tuning).
    pub update_only: bool,
}

pub fn bench<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    device: &B::Device,
    opts: &BenchOptions,
    mut report: impl FnMut(&BenchRow),
) -> anyhow::Result<Vec<BenchRow>> {
    let dcfg = denoiser_config(cfg, task);
    let mut rows = Vec::new();
    let mut push = |row: BenchRow| {
        report(&row);
        rows.push(row);
    };
    if opts.update_only {
        let model = dcfg.init::<B>(init_seed(cfg.run.seed), device);
        push(grpo_update_row(cfg, &dcfg, model, device, opts)?);
        return Ok(rows);
    }
    let (model, row) = train_row::<B>(cfg, task, &dcfg, device, opts);
    push(row);
    if opts.grpo_steps > 0 && dcfg.family == Family::Mdm {
        push(grpo_update_row(cfg, &dcfg, model.clone(), device, opts)?);
    }
    let infer = model.valid();
    forward_rows::<B>(cfg, &dcfg, &infer, device, opts, &mut push);
    sampler_rows::<B>(cfg, task, &dcfg, &infer, device, opts, &mut push)?;
    Ok(rows)
}

/// Training: forward + backward + AdamW on the configured batch, after one
/// warm-up step. Returns the trained model for the rows after it.
fn train_row<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    dcfg: &DenoiserConfig,
    device: &B::Device,
    opts: &BenchOptions,
) -> (Denoiser<B>, BenchRow) {
    let (batch, seq_len, threads) = (cfg.pretrain.batch_size, dcfg.max_len, cfg.run.threads);
    let model = dcfg.init::<B>(init_seed(cfg.run.seed), device);
    let mut optim = adamw(&cfg.pretrain).init();
    let seqs: Vec<(Vec<u32>, usize)> = (0..batch)
        .map(|i| training_row(task, dcfg.family, task.train_example(i as u64)))
        .collect();
    let rows_in = clean_rows(&seqs);
    let mut time_train = |model: Denoiser<B>, n: usize| {
        let start = Instant::now();
        let mut model = model;
        for s in 0..n {
            let mut rng = stream(&[purpose::NOISE, 0, s as u64]);
            let b = TrainingBatch::new(
                dcfg.family,
                &rows_in,
                &ForwardProcess::default(),
                dcfg.mask_id(),
                0.0,
                (dcfg.vocab_size, seq_len),
                &mut rng,
            );
            let passes = (threads, cfg.pretrain.gradient_checkpointing);
            let (_, grads) = b.loss_and_grads(&model, b.rows(), 1.0, passes, device);
            model = optim.step(1e-4, model, grads);
        }
        wait_for_device(&model, seq_len, device);
        (model, start.elapsed().as_secs_f64())
    };
    let (model, _) = time_train(model, 1);
    let (model, secs) = time_train(model, opts.train_steps);
    let row = BenchRow {
        what: format!("train ({threads} thr)"),
        batch,
        steps: opts.train_steps,
        tokens_per_s: (batch * seq_len * opts.train_steps) as f64 / secs,
        seconds: secs / opts.train_steps as f64,
        nfe: 0.0,
    };
    (model, row)
}

/// The Co-GRPO model update on `batch` synthetic recorded trajectories of
/// `grpo_steps` steps (MDMs), after one warm-up update: the trainer's
/// update of the model factor ([`grpo_update`]), LoRA adapters on the
/// frozen model with `[cogrpo.lora]`. Takes the model, so that with
/// `--update-only` nothing else holds it (a bfloat16 LoRA base is then
/// the only copy of the weights, as in training).
fn grpo_update_row<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    dcfg: &DenoiserConfig,
    model: Denoiser<B>,
    device: &B::Device,
    opts: &BenchOptions,
) -> anyhow::Result<BenchRow> {
    let (batch, seq_len, threads) = (cfg.pretrain.batch_size, dcfg.max_len, cfg.run.threads);
    let t = opts.grpo_steps.min(seq_len);
    let (records, adv) = synthetic_records(batch, t, seq_len, dcfg.vocab_size, cfg.run.seed);
    let samples = grpo_update::samples(&records, &adv);
    let configured = cfg.cogrpo.as_ref().and_then(|c| c.micro_batch_tokens);
    let passes = (threads, micro_batch_tokens(configured, cfg.run.device));
    let checkpointing = cfg
        .cogrpo
        .as_ref()
        .is_some_and(|c| c.gradient_checkpointing);
    let lora = cfg.cogrpo.as_ref().and_then(|c| c.lora.as_ref());
    let theta = match lora {
        Some(l) => model.with_lora(l, cfg.run.seed)?,
        None => model,
    };
    let mut factor = grpo_update::model_factor(theta);
    grpo_update::update(&mut factor, &samples, (passes, checkpointing), device)?;
    wait_for_device(&factor.module, seq_len, device);
    let start = Instant::now();
    for _ in 0..opts.train_steps {
        grpo_update::update(&mut factor, &samples, (passes, checkpointing), device)?;
    }
    wait_for_device(&factor.module, seq_len, device);
    let secs = start.elapsed().as_secs_f64();
    let what = format!(
        "grpo_update{}{} ({threads} thr)",
        lora.map_or(String::new(), |l| format!(" lora r{}", l.rank)),
        if checkpointing { " ckpt" } else { "" }
    );
    let row = BenchRow {
        what,
        batch,
        steps: t,
        tokens_per_s: (batch * t * seq_len * opts.train_steps) as f64 / secs,
        seconds: secs / opts.train_steps as f64,
        nfe: 0.0,
    };
    Ok(row)
}

/// Inference forward passes of all-mask rows, one row per batch size.
fn forward_rows<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    dcfg: &DenoiserConfig,
    infer: &Denoiser<B::InnerBackend>,
    device: &B::Device,
    opts: &BenchOptions,
    push: &mut impl FnMut(BenchRow),
) {
    let (seq_len, threads) = (dcfg.max_len, cfg.run.threads);
    let forward_batches = if opts.forward_batches.is_empty() {
        vec![opts.sample_batch]
    } else {
        opts.forward_batches.clone()
    };
    for &fb in &forward_batches {
        // Rows split across the worker threads, each on its own core (as
        // the samplers and trainer do); reading the logits back waits for
        // the device to finish.
        let parts = threads.clamp(1, fb);
        let forward = || {
            let chunk = fb.div_ceil(parts);
            let run = |rows: usize| {
                let _: Vec<f32> = infer
                    .forward(Denoiser::<B::InnerBackend>::input(
                        &vec![dcfg.mask_id(); rows * seq_len],
                        rows,
                        seq_len,
                        device,
                    ))
                    .into_data()
                    .convert::<f32>()
                    .to_vec()
                    .unwrap_or_default();
            };
            if parts == 1 {
                run(fb);
            } else {
                std::thread::scope(|scope| {
                    for start in (0..fb).step_by(chunk) {
                        let rows = chunk.min(fb - start);
                        scope.spawn(move || on_one_core(|| run(rows)));
                    }
                });
            }
        };
        forward(); // warm-up
        let start = Instant::now();
        let reps = 3;
        for _ in 0..reps {
            forward();
        }
        let secs = start.elapsed().as_secs_f64();
        push(BenchRow {
            what: format!("forward ({parts} thr)"),
            batch: fb,
            steps: reps,
            tokens_per_s: (fb * seq_len * reps) as f64 / secs,
            seconds: secs / reps as f64,
            nfe: 1.0,
        });
    }
}

/// Samplers completing answers for `sample_batch` prompts: each kind at
/// each step count (an ARM or ILM: its one decoding).
fn sampler_rows<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    dcfg: &DenoiserConfig,
    infer: &Denoiser<B::InnerBackend>,
    device: &B::Device,
    opts: &BenchOptions,
    push: &mut impl FnMut(BenchRow),
) -> anyhow::Result<()> {
    let (b, seq_len, threads) = (opts.sample_batch, dcfg.max_len, cfg.run.threads);
    let prompts: Vec<Vec<u32>> = (0..b)
        .map(|i| task.train_example(i as u64).prompt)
        .collect();
    let answer = task.layout().answer_len;
    let steps = if opts.sampler_steps.is_empty() {
        vec![answer]
    } else {
        opts.sampler_steps.clone()
    };
    let seed = derive_key(&[purpose::SAMPLER, cfg.run.seed]);
    if let Some(decoding) = Decoding::of(dcfg.family, 0.0, 0) {
        // An ARM or ILM has one way to decode; its steps are its insertions.
        let rows = Prompts {
            tokens: prompts.clone(),
            keys: (0..b as u64).collect(),
        };
        let run = || -> anyhow::Result<(f64, f64)> {
            let start = Instant::now();
            let (_, stats) = decoding.complete(infer, task, &rows, answer, seed, device)?;
            Ok((start.elapsed().as_secs_f64(), stats.mean_nfe()))
        };
        push(sampling_row(
            decoding.label() + " (1 thr)",
            b,
            answer,
            answer,
            run,
        )?);
        return Ok(());
    }
    let kinds = if opts.samplers.is_empty() {
        vec![
            SamplerKind::Ancestral,
            SamplerKind::FirstHitting,
            SamplerKind::Confidence,
        ]
    } else {
        opts.samplers.clone()
    };
    for kind in kinds {
        for &t in &steps {
            let sampler = SamplerConfig::new(kind, t);
            let run = || -> anyhow::Result<(f64, f64)> {
                let mut canvas = Canvas::new(seq_len, dcfg.mask_id());
                for (i, p) in prompts.iter().enumerate() {
                    canvas.push_row(p, i as u64)?;
                }
                let start = Instant::now();
                let stats = Sampler::new(infer, device, seed).generate_threads(
                    &mut canvas,
                    &sampler,
                    threads,
                )?;
                Ok((start.elapsed().as_secs_f64(), stats.mean_nfe()))
            };
            let what = format!("{} ({threads} thr)", sampler.label());
            push(sampling_row(what, b, t, answer, run)?);
        }
    }
    Ok(())
}

/// A sampler's row: `run` generates `batch` answers of `answer` tokens and
/// returns its seconds and mean NFE; one warm-up call, one timed.
fn sampling_row(
    what: String,
    batch: usize,
    steps: usize,
    answer: usize,
    run: impl Fn() -> anyhow::Result<(f64, f64)>,
) -> anyhow::Result<BenchRow> {
    run()?;
    let (secs, nfe) = run()?;
    Ok(BenchRow {
        what,
        batch,
        steps,
        tokens_per_s: (batch * answer) as f64 / secs,
        seconds: secs,
        nfe,
    })
}

/// Blocks until the device has finished the queued updates of `model`:
/// reading a result back waits for every kernel before it.
fn wait_for_device<B: AutodiffKernels>(model: &Denoiser<B>, seq_len: usize, device: &B::Device) {
    let _: f32 = model
        .clone()
        .valid()
        .forward(Denoiser::input(&vec![0; seq_len], 1, seq_len, device))
        .sum()
        .into_scalar()
        .elem();
}

pub fn header() -> String {
    format!(
        "{:<20} {:>6} {:>6} {:>12} {:>10} {:>10} {:>6}",
        "what", "batch", "steps", "tokens/s", "seq/s", "seconds", "nfe"
    )
}

pub fn format_row(r: &BenchRow) -> String {
    format!(
        "{:<20} {:>6} {:>6} {:>12.0} {:>10.1} {:>10.4} {:>6.1}",
        r.what,
        r.batch,
        r.steps,
        r.tokens_per_s,
        r.batch as f64 / r.seconds.max(1e-12),
        r.seconds,
        r.nfe
    )
}

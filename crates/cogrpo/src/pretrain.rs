//! Pre-training: the diffusion loss on the task's training data.
//!
//! Per optimizer step: `grad_accum` micro-batches of `batch_size` examples,
//! each corrupted by the forward process (prompt clean; answer masked with
//! probability p(t)), loss backward, gradients accumulated, clipped by global
//! norm, one AdamW step at the scheduled learning rate. Examples and noise of
//! step `s` come from streams keyed by `(seed, s, micro-batch, row)`, so a
//! resumed run continues exactly where it stopped, and every rank of a
//! distributed run ([`crate::distributed`]) builds the same global batch and
//! takes its share of the rows; the ranks' gradients are summed once per
//! step.

use std::time::Instant;

use anyhow::bail;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use envs::Task;
use envs::seeding::{derive_key, purpose, stream};
use mdm::loss::ForwardProcess;

use crate::checkpoint::{self, FORMAT_VERSION, TrainState};
use crate::config::ExperimentConfig;
use crate::config::resume::Scope;
use crate::distributed::World;
use crate::families::{TrainingBatch, clean_rows, training_row};
use crate::logging::{Progress, Scalars};
use crate::optim::{adamw, clip_global_norm, learning_rate};
use crate::parallel::shard_loss_and_grads;
use crate::run_dir::{RunDir, TrainSummary};
use crate::tasks::denoiser_config;
use mdm::{AutodiffKernels, Denoiser, DenoiserConfig};

/// The seed the denoiser's initial weights are drawn from.
pub fn init_seed(seed: u64) -> u64 {
    derive_key(&[purpose::INIT, seed])
}

/// The optimizer of pre-training.
type PretrainOptimizer<B> = OptimizerAdaptor<AdamW, Denoiser<B>, B>;

/// Pre-trains (or, with `resume`, continues) the run's model, as rank
/// `world.rank` of `world.size` (only rank 0 writes).
#[allow(clippy::too_many_arguments)]
pub fn pretrain<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    run: &RunDir,
    device: &B::Device,
    resume: bool,
    log: &mut Scalars,
    world: &World,
) -> anyhow::Result<TrainSummary> {
    let p = &cfg.pretrain;
    let dcfg = denoiser_config(cfg, task);
    let ckpts = run.checkpoints();
    let config_toml = toml::to_string_pretty(cfg)?;
    let (mut model, mut optim, mut state) = start::<B>(cfg, run, &dcfg, device, resume, world)?;
    if world.is_writer() {
        run.write_config(cfg)?;
    }

    let tokens_per_step = (p.batch_size * p.grad_accum * dcfg.max_len) as u64;
    let forward = ForwardProcess {
        eps: p.mask_eps,
        stratified: p.stratified_t,
    };
    log.text(
        "config",
        &format!("```toml\n{config_toml}\n```"),
        state.step,
    );
    log.hparams(&toml::Value::try_from(cfg)?);
    let progress = Progress::for_rank(p.steps as u64, "pretrain", world);
    progress.set_position(state.step as u64);
    if state.step == 0 {
        progress.println(&format!(
            "pre-training {} parameters on `{}` for {} steps of {} tokens",
            dcfg.num_params(),
            task.name(),
            p.steps,
            tokens_per_step
        ));
    }
    let segment_start = Instant::now();
    let wall_before = state.wall_s;
    let (mut window_loss, mut window_n, mut window_tokens) =
        (state.window_loss, state.window_steps, 0u64);
    let mut window_start = Instant::now();

    for step in state.step..p.steps {
        let lr = learning_rate(p, step);
        let batches = |micro| micro_batch(cfg, task, &dcfg, &forward, step, micro);
        let (mut grads, step_loss) = step_gradients(cfg, &model, batches, step, device, world)?;
        let grad_norm = clip_global_norm::<B, _>(&model, &mut grads, p.grad_clip);
        if !grad_norm.is_finite() {
            bail!(
                "pretrain step {}: the gradient norm is {grad_norm}; stopped without a checkpoint",
                step + 1
            );
        }
        model = optim.step(lr, model, grads);
        state.step = step + 1;
        state.tokens_seen += tokens_per_step;

        window_loss += step_loss;
        window_n += 1;
        window_tokens += tokens_per_step;
        state.last_loss = window_loss / window_n as f64;
        log.scalar("pretrain/loss", step_loss, state.step);
        log.scalar("pretrain/lr", lr, state.step);
        log.scalar("pretrain/grad_norm", grad_norm, state.step);
        progress.inc(1);
        if state.step % p.log_every == 0 || state.step == p.steps {
            let secs = window_start.elapsed().as_secs_f64().max(1e-9);
            let tps = window_tokens as f64 / secs;
            log.scalar("pretrain/tokens_per_s", tps, state.step);
            progress.set_message(format!(
                "loss {:.4} lr {lr:.2e} {tps:.0} tok/s",
                state.last_loss
            ));
            progress.println(&format!(
                "step {:>6}/{}  loss {:.4}  lr {lr:.2e}  grad_norm {grad_norm:.3}  {tps:.0} tok/s",
                state.step, p.steps, state.last_loss
            ));
            (window_loss, window_n, window_tokens) = (0.0, 0, 0);
            window_start = Instant::now();
        }
        state.wall_s = wall_before + segment_start.elapsed().as_secs_f64();
        (state.window_loss, state.window_steps) = (window_loss, window_n);
        if p.checkpoint_every > 0
            && state.step % p.checkpoint_every == 0
            && state.step < p.steps
            && world.is_writer()
        {
            ckpts.save(&model, &optim, &state, &config_toml, p.keep_checkpoints)?;
        }
    }
    progress.finish();
    state.wall_s = wall_before + segment_start.elapsed().as_secs_f64();
    // The other ranks read the final checkpoint next (arms start from it).
    let dir = ckpts.save_final::<B::InnerBackend>(world, device, || {
        ckpts.save(&model, &optim, &state, &config_toml, p.keep_checkpoints)
    })?;
    Ok(TrainSummary {
        steps: state.step,
        final_loss: state.last_loss,
        wall_s: state.wall_s,
        tokens_per_s: state.tokens_seen as f64 / state.wall_s.max(1e-9),
        device: format!("{device:?}"),
        checkpoint: dir,
    })
}

/// The model, optimizer and state to start from: fresh weights, or with
/// `resume` the newest checkpoint that verifies (checked against the
/// config, the seed and the rank count). Without `resume`, a run folder
/// that holds checkpoints is refused, so nothing is overwritten.
fn start<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    run: &RunDir,
    dcfg: &DenoiserConfig,
    device: &B::Device,
    resume: bool,
    world: &World,
) -> anyhow::Result<(Denoiser<B>, PretrainOptimizer<B>, TrainState)> {
    let (p, seed, ckpts) = (&cfg.pretrain, cfg.run.seed, run.checkpoints());
    let found = if resume {
        ckpts.resume_point()
    } else {
        ckpts.latest()
    };
    match (resume, found) {
        (true, Some(dir)) => {
            checkpoint::check_resume(&dir, cfg, Scope::Pretrain)?;
            let state = checkpoint::read_state(&dir)?;
            checkpoint::check_ranks(&dir, state.ranks, world.size)?;
            if state.seed != seed {
                bail!(
                    "{} was trained with seed {}, the config says {seed}; resume with --seed {}",
                    dir.display(),
                    state.seed,
                    state.seed
                );
            }
            let model = checkpoint::load_model::<B>(&dir, dcfg, device)?;
            let optim = checkpoint::load_optimizer(&dir, adamw(p).init(), device)?;
            tracing::info!("resuming {} at step {}", dir.display(), state.step);
            Ok((model, optim, state))
        }
        (true, None) if ckpts.latest().is_some() => bail!(
            "nothing to resume: no checkpoint in {} verifies (see the warnings above)",
            ckpts.root().display()
        ),
        (true, None) => bail!(
            "nothing to resume: {} holds no checkpoint",
            ckpts.root().display()
        ),
        (false, Some(dir)) => bail!(
            "{} already holds checkpoint {}; pass --resume to continue it, or set another \
             run.out_dir (nothing was overwritten)",
            run.path().display(),
            dir.display()
        ),
        (false, None) => {
            let state = TrainState {
                format_version: FORMAT_VERSION,
                step: 0,
                seed,
                tokens_seen: 0,
                wall_s: 0.0,
                last_loss: 0.0,
                window_loss: 0.0,
                window_steps: 0,
                denoiser: dcfg.clone(),
                ranks: world.size,
            };
            let model = dcfg.init::<B>(init_seed(seed), device);
            Ok((model, adamw(p).init(), state))
        }
    }
}

/// Micro-batch `micro` of step `step`, corrupted: the same on every rank
/// and in every run of this seed (keyed streams), so a resume continues
/// exactly and ranks need not exchange data.
fn micro_batch(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    dcfg: &DenoiserConfig,
    forward: &ForwardProcess,
    step: usize,
    micro: usize,
) -> TrainingBatch {
    let (p, seed) = (&cfg.pretrain, cfg.run.seed);
    let seqs: Vec<(Vec<u32>, usize)> = (0..p.batch_size)
        .map(|i| {
            let key = derive_key(&[
                purpose::TRAIN_BATCH,
                seed,
                step as u64,
                micro as u64,
                i as u64,
            ]);
            training_row(task, dcfg.family, task.train_example(key))
        })
        .collect();
    let rows = clean_rows(&seqs);
    let mut rng = stream(&[purpose::NOISE, seed, step as u64, micro as u64]);
    TrainingBatch::new(
        dcfg.family,
        &rows,
        forward,
        dcfg.mask_id(),
        p.prompt_dropout,
        (dcfg.vocab_size, dcfg.max_len),
        &mut rng,
    )
}

/// Step `step`'s gradients, accumulated over its `grad_accum` micro-batches
/// (`batches(micro)`) and summed over the ranks, and its loss; an error if
/// the loss is not finite (nothing is written then).
fn step_gradients<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    model: &Denoiser<B>,
    batches: impl Fn(usize) -> TrainingBatch,
    step: usize,
    device: &B::Device,
    world: &World,
) -> anyhow::Result<(GradientsParams, f64)> {
    let p = &cfg.pretrain;
    let mut accum = GradientsAccumulator::<Denoiser<B>>::new();
    let mut micro_losses = Vec::with_capacity(p.grad_accum);
    for micro in 0..p.grad_accum {
        let batch = batches(micro);
        // This rank's rows (one rank: the batch itself, not a copy); none
        // when the batch has fewer rows than there are ranks.
        let rows = batch.rows();
        let mine = match world.size {
            1 => Some(batch),
            n => batch.split(n).into_iter().nth(world.rank),
        };
        let (value, grads) = match &mine {
            Some(mine) => {
                let scale = 1.0 / p.grad_accum as f64;
                shard_loss_and_grads(model, mine, rows, scale, cfg.run.threads, device)
            }
            None => (0.0, Default::default()),
        };
        micro_losses.push(value);
        accum.accumulate(model, grads);
    }
    let (grads, per_rank) = world.sum_gradients(model, accum.grads(), &micro_losses, device)?;
    // Summed micro-batch by micro-batch, rank by rank: the order one
    // process on `world.size` threads sums in.
    let mut step_loss = 0.0;
    for micro in 0..p.grad_accum {
        let value: f64 = per_rank.iter().map(|v| v[micro]).sum();
        if !value.is_finite() {
            bail!(
                "pretrain step {}: the loss is {value}; stopped without writing a checkpoint \
                 (the last one is kept). Lower pretrain.lr or raise pretrain.warmup_steps.",
                step + 1
            );
        }
        step_loss += value;
    }
    Ok((grads, step_loss))
}

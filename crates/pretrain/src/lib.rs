//! Pre-training: the denoiser learns the task's training data with its
//! family's objective ([`batch`]: the diffusion loss for an MDM, next-token
//! for an ARM, insertion for an ILM), on the shared training scaffold
//! (`cogrpo_runtime::training`: start or resume, clock, checkpoints).
//!
//! Per optimizer step: `grad_accum` micro-batches of `batch_size` examples,
//! each corrupted by the forward process (prompt clean; answer masked with
//! probability p(t)), loss backward, gradients accumulated, clipped by global
//! norm, one AdamW step at the scheduled learning rate. Examples and noise of
//! step `s` come from streams keyed by `(seed, s, micro-batch, row)`, so a
//! resumed run continues exactly where it stopped, and every rank of a
//! distributed run builds the same global batch and takes its share of the
//! rows; the ranks' gradients are summed once per step.

pub mod batch;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use cogrpo_config::ExperimentConfig;
use cogrpo_config::resume::Scope;
use cogrpo_config::tasks::denoiser_config;
use cogrpo_runtime::checkpoint::{self, FORMAT_VERSION, save_record};
use cogrpo_runtime::distributed::World;
use cogrpo_runtime::logging::{Progress, Scalars};
use cogrpo_runtime::optim::{adamw, clip_global_norm, learning_rate};
use cogrpo_runtime::run_dir::RunDir;
use cogrpo_runtime::training::{Cadence, Checkpointed, RunRecord, RunState, Start, TrainingRun};
use envs::Task;
use envs::seeding::{derive_key, purpose, stream};
use mdm::loss::ForwardProcess;
use mdm::{AutodiffKernels, Denoiser, DenoiserConfig};
use serde::{Deserialize, Serialize};

pub use batch::{TrainingBatch, clean_rows, training_row};

/// The seed the denoiser's initial weights are drawn from.
pub fn init_seed(seed: u64) -> u64 {
    derive_key(&[purpose::INIT, seed])
}

/// `state.json` of a pre-training checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Format, seed, wall time and ranks, as every run records them.
    #[serde(flatten)]
    pub run: RunRecord,
    /// Optimizer steps completed.
    pub step: usize,
    pub tokens_seen: u64,
    /// Mean loss over the last logging window.
    pub last_loss: f64,
    /// Sum and count of step losses in the open logging window, so that a
    /// resumed run reports the same `last_loss` as an uninterrupted one.
    #[serde(default)]
    pub window_loss: f64,
    #[serde(default)]
    pub window_steps: usize,
    pub denoiser: DenoiserConfig,
}

impl RunState for TrainState {
    const FORMAT_VERSION: u32 = FORMAT_VERSION;
    const WHAT: &'static str = "a cogrpo checkpoint state";
    const UNIT: &'static str = "step";
    fn record(&self) -> &RunRecord {
        &self.run
    }
    fn done(&self) -> usize {
        self.step
    }
}

/// What a pre-training run measured (the `train` part of `summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub final_loss: f64,
    /// Wall time of all training, resumed segments included.
    pub wall_s: f64,
    pub tokens_per_s: f64,
    pub device: String,
    pub checkpoint: PathBuf,
}

/// The optimizer of pre-training.
type PretrainOptimizer<B> = OptimizerAdaptor<AdamW, Denoiser<B>, B>;

/// Pre-training in progress: what its checkpoints hold.
struct Pretraining<B: AutodiffKernels> {
    model: Denoiser<B>,
    optim: PretrainOptimizer<B>,
    state: TrainState,
}

impl<B: AutodiffKernels> Checkpointed for Pretraining<B> {
    type State = TrainState;
    fn state(&self) -> &TrainState {
        &self.state
    }
    fn write_files(&self, dir: &Path) -> anyhow::Result<()> {
        mdm::weights::save(&self.model, &dir.join("model.safetensors"))?;
        save_record(self.optim.to_record(), &dir.join("optimizer"))
    }
}

/// Pre-trains the run's model (fresh, resumed or continued by `start`'s
/// policy), as rank `world.rank` of `world.size` (only rank 0 writes).
pub fn pretrain<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    run: &RunDir,
    device: &B::Device,
    start: Start,
    log: &mut Scalars,
    world: &World,
) -> anyhow::Result<TrainSummary> {
    let p = &cfg.pretrain;
    let dcfg = denoiser_config(cfg, task);
    let cadence = Cadence {
        every: p.checkpoint_every,
        total: p.steps,
        keep: p.keep_checkpoints,
    };
    let names = (
        format!("pre-training in {}", run.path().display()),
        "pass --resume to continue it".to_string(),
    );
    let mut training = TrainingRun::new(
        run.checkpoints(),
        cfg,
        Scope::Pretrain,
        cadence,
        world,
        names,
    )?;
    let mut t = training.start(
        cfg,
        start,
        || fresh::<B>(cfg, &dcfg, device, world),
        |dir, state| {
            Ok(Pretraining {
                model: checkpoint::load_model::<B>(dir, &dcfg, device)?,
                optim: checkpoint::load_optimizer(dir, "optimizer", adamw(p).init(), device)?,
                state,
            })
        },
    )?;
    if world.is_writer() {
        run.write_config(cfg)?;
    }
    let progress = Progress::for_rank(p.steps as u64, "pretrain", world);
    let stepper = Stepper {
        cfg,
        task,
        dcfg: &dcfg,
        forward: ForwardProcess {
            eps: p.mask_eps,
            stratified: p.stratified_t,
        },
        device,
        world,
    };
    stepper.announce(&mut t, &training, log, &progress)?;
    let mut window = Window::resumed(&t.state);
    for step in t.state.step..p.steps {
        let (lr, grad_norm);
        (t, lr, grad_norm) = stepper.step(t, step, &mut window)?;
        stepper.log(&t.state, (lr, grad_norm), &mut window, log, &progress);
        t.state.run.wall_s = training.wall_s();
        (t.state.window_loss, t.state.window_steps) = (window.loss, window.steps);
        training.save_if_due(&t, log)?;
    }
    progress.finish();
    t.state.run.wall_s = training.wall_s();
    // The other ranks read the final checkpoint next (arms start from it).
    let dir = training.finish::<B::InnerBackend, _>(&t, log, device)?;
    Ok(TrainSummary {
        steps: t.state.step,
        final_loss: t.state.last_loss,
        wall_s: t.state.run.wall_s,
        tokens_per_s: t.state.tokens_seen as f64 / t.state.run.wall_s.max(1e-9),
        device: format!("{device:?}"),
        checkpoint: dir,
    })
}

/// What every step of a pre-training run reads.
struct Stepper<'a, B: AutodiffKernels> {
    cfg: &'a ExperimentConfig,
    task: &'a dyn Task,
    dcfg: &'a DenoiserConfig,
    forward: ForwardProcess,
    device: &'a B::Device,
    world: &'a World,
}

impl<B: AutodiffKernels> Stepper<'_, B> {
    fn tokens_per_step(&self) -> u64 {
        let p = &self.cfg.pretrain;
        (p.batch_size * p.grad_accum * self.dcfg.max_len) as u64
    }

    /// The run's config and hyperparameters to TensorBoard, the position
    /// of the progress bar, and a first line for a fresh run.
    fn announce(
        &self,
        t: &mut Pretraining<B>,
        training: &TrainingRun<'_>,
        log: &mut Scalars,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        log.start_at(t.state.step);
        let toml_text = format!("```toml\n{}\n```", training.config_toml());
        log.text("config", &toml_text, t.state.step);
        log.hparams(&toml::Value::try_from(self.cfg)?);
        progress.set_position(t.state.step as u64);
        if t.state.step == 0 {
            progress.println(&format!(
                "pre-training {} parameters on `{}` for {} steps of {} tokens",
                self.dcfg.num_params(),
                self.task.name(),
                self.cfg.pretrain.steps,
                self.tokens_per_step()
            ));
        }
        Ok(())
    }

    /// One optimizer step (0-based `step`): gradients of its micro-batches
    /// summed over the ranks, clipped, AdamW; returns the stepped run, the
    /// learning rate and the gradient norm before clipping.
    fn step(
        &self,
        mut t: Pretraining<B>,
        step: usize,
        window: &mut Window,
    ) -> anyhow::Result<(Pretraining<B>, f64, f64)> {
        let p = &self.cfg.pretrain;
        let lr = learning_rate(p, step);
        let batches =
            |micro| micro_batch(self.cfg, self.task, self.dcfg, &self.forward, step, micro);
        let (mut grads, step_loss) =
            step_gradients(self.cfg, &t.model, batches, step, self.device, self.world)?;
        let grad_norm = clip_global_norm::<B, _>(&t.model, &mut grads, p.grad_clip);
        if !grad_norm.is_finite() {
            bail!(
                "pretrain step {}: the gradient norm is {grad_norm}; stopped without a checkpoint",
                step + 1
            );
        }
        t.model = t.optim.step(lr, t.model, grads);
        t.state.step = step + 1;
        t.state.tokens_seen += self.tokens_per_step();
        window.add(step_loss, self.tokens_per_step());
        t.state.last_loss = window.mean_loss();
        Ok((t, lr, grad_norm))
    }

    /// The step's scalars, and every `log_every` steps a progress line.
    fn log(
        &self,
        state: &TrainState,
        (lr, grad_norm): (f64, f64),
        window: &mut Window,
        log: &mut Scalars,
        progress: &Progress,
    ) {
        let p = &self.cfg.pretrain;
        log.scalar("pretrain/loss", window.last, state.step);
        log.scalar("pretrain/lr", lr, state.step);
        log.scalar("pretrain/grad_norm", grad_norm, state.step);
        progress.inc(1);
        if state.step.is_multiple_of(p.log_every) || state.step == p.steps {
            let tps = window.tokens_per_s();
            log.scalar("pretrain/tokens_per_s", tps, state.step);
            progress.set_message(format!(
                "loss {:.4} lr {lr:.2e} {tps:.0} tok/s",
                state.last_loss
            ));
            progress.println(&format!(
                "step {:>6}/{}  loss {:.4}  lr {lr:.2e}  grad_norm {grad_norm:.3}  {tps:.0} tok/s",
                state.step, p.steps, state.last_loss
            ));
            window.reset();
        }
    }
}

/// A fresh run: initial weights, optimizer and state.
fn fresh<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    dcfg: &DenoiserConfig,
    device: &B::Device,
    world: &World,
) -> anyhow::Result<Pretraining<B>> {
    let seed = cfg.run.seed;
    // With `model.source`, pre-training is supervised fine-tuning of the
    // model directory's weights.
    let model = match &cfg.model.source {
        Some(dir) => checkpoint::load_model::<B>(dir, dcfg, device)?,
        None => dcfg.init::<B>(init_seed(seed), device),
    };
    Ok(Pretraining {
        model,
        optim: adamw(&cfg.pretrain).init(),
        state: TrainState {
            run: RunRecord {
                format_version: FORMAT_VERSION,
                seed,
                wall_s: 0.0,
                ranks: world.size,
            },
            step: 0,
            tokens_seen: 0,
            last_loss: 0.0,
            window_loss: 0.0,
            window_steps: 0,
            denoiser: dcfg.clone(),
        },
    })
}

/// The open logging window: its loss sum and steps (kept in the state, so
/// a resumed run logs what an uninterrupted one does) and its tokens and
/// time (this segment's only).
struct Window {
    loss: f64,
    steps: usize,
    tokens: u64,
    start: Instant,
    /// The last step's loss.
    last: f64,
}

impl Window {
    fn resumed(state: &TrainState) -> Self {
        Self {
            loss: state.window_loss,
            steps: state.window_steps,
            tokens: 0,
            start: Instant::now(),
            last: 0.0,
        }
    }

    fn add(&mut self, loss: f64, tokens: u64) {
        self.last = loss;
        self.loss += loss;
        self.steps += 1;
        self.tokens += tokens;
    }

    fn mean_loss(&self) -> f64 {
        self.loss / self.steps as f64
    }

    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    fn reset(&mut self) {
        (self.loss, self.steps, self.tokens) = (0.0, 0, 0);
        self.start = Instant::now();
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
                let passes = (cfg.run.threads, p.gradient_checkpointing);
                mine.loss_and_grads(model, rows, scale, passes, device)
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

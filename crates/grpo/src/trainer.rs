//! The Co-GRPO training loop of one arm, top to bottom as data flows:
//! collect groups (roll out, score, advantages), update each factor the
//! phase trains, log, checkpoint now and then.
//!
//! Distributed (`cogrpo_runtime::distributed`): each rank rolls out and
//! scores its share of the prompts' groups (whole groups, so advantages stay
//! local), the ranks gather the groups so that each holds the iteration a
//! single process would, each computes the model factor's gradient on its
//! share of the samples and the ranks sum them. The schedule factor (a few
//! small matrices) is computed whole on every rank. Only rank 0 writes.

use std::time::Instant;

use burn::module::AutodiffModule;
use cogrpo_config::UpdateMode;
use cogrpo_config::resume::Scope;
use cogrpo_eval::dumps::{self, DumpKind};
use cogrpo_runtime::checkpoint::CheckpointDir;
use cogrpo_runtime::logging::{Progress, Scalars};
use cogrpo_runtime::training::{Cadence, Start, TrainingRun};
use mdm::AutodiffKernels;
use rewards::TooManyFailures;

use crate::factor::UpdateRun;
use crate::groups::{Groups, Stop};
use crate::iteration::{Update, describe};
use crate::samples::{answer_ends, build_samples};
use crate::setup::{ArmRun, Setup};
use crate::state::{ArmTraining, TrainedArm};
use crate::validation::{self, Validation};
use cogrpo_vision::adversarial::UpdateStats;

/// Trains arm `mode` (fresh, resumed or continued by `start`'s policy)
/// from the pre-trained checkpoint `arm_run.init`: checkpoints under the
/// arm's folder, rollout dumps in `dumps/<arm>.jsonl.gz`, scalars to `log`.
pub fn train_arm<B: AutodiffKernels>(
    arm_run: &ArmRun<'_, B>,
    mode: UpdateMode,
    start: Start,
    log: &mut Scalars,
) -> anyhow::Result<TrainedArm<B>> {
    let (cfg, task, world, device) = (arm_run.cfg, arm_run.task, arm_run.world, &arm_run.device);
    let dump = dumps::path(arm_run.run.path(), mode.name());
    let mut training = training_run(arm_run, mode)?;
    let mut arm = training.start(
        cfg,
        start,
        || ArmTraining::fresh(cfg, task, mode, arm_run.init, world.size, device),
        |dir, state| ArmTraining::load(cfg, task, mode, (dir, state), arm_run.init, device),
    )?;
    let setup = Setup::new(arm_run, mode, arm.discriminator.as_ref())?;
    let c = setup.c;

    let done = arm.state.iteration;
    open_logs(arm_run, (mode, done), &training, &dump, log)?;
    let progress = Progress::for_rank(c.iterations as u64, mode.name(), world);
    progress.set_position(done as u64);
    for it in done..c.iterations {
        let phase = c.phase(mode, it);

        // 1. G trajectories for each of B prompts, scored; advantages
        //    relative to each prompt's group.
        let groups = match setup.collect_groups(&arm, it) {
            Ok(g) => g,
            Err(Stop::Rewards(e)) => return Err(stopped(&training, &mut arm, e, mode, it)?),
            Err(Stop::Other(e)) => return Err(e),
        };
        arm.state.rollouts += groups.rollouts;
        say_failures(&setup, &groups, &progress, it);

        // 2. The clipped surrogate on each factor this phase trains.
        let t1 = Instant::now();
        let update = setup.update(&mut arm, &groups, phase, it)?;
        let update_s = t1.elapsed().as_secs_f64();
        arm.state.iteration = it + 1;
        arm.state.run.wall_s = training.wall_s();
        let judged = (
            update_discriminator(&mut arm, &groups, it),
            validate_if_due(&setup, &arm, it + 1)?,
        );

        // 3. Log, dump, checkpoint.
        let mut entry = setup.iteration_log(&arm, &groups, phase);
        (entry.discriminator, entry.validation) = judged;
        for (tag, v) in setup.scalars(&groups, &update, &entry, update_s) {
            log.scalar(&format!("cogrpo/{tag}"), v, entry.iteration);
        }
        if c.dump_every > 0 && entry.iteration % c.dump_every == 0 && world.is_writer() {
            let records = setup.dump_records(&arm, &groups, entry.iteration);
            log.text("samples", &dumps::markdown(&records), entry.iteration);
            if let Err(e) = dumps::append(&dump, &records) {
                tracing::warn!("rollout dump: {e:#}");
            }
        }
        progress.inc(1);
        if entry.iteration % c.log_every == 0 || entry.iteration == c.iterations {
            progress.println(&describe(mode, c, &entry, &groups, &update, update_s));
        }
        arm.state.history.push(entry);
        keep_best(&setup, &training, &mut arm, &progress)?;
        training.save_if_due(&arm, log)?;
    }
    progress.finish();
    let checkpoint = training.finish::<B::InnerBackend, _>(&arm, log, device)?;
    Ok(arm.finished(checkpoint))
}

/// The arm's logs as of iteration `done`: what an interrupted run dumped
/// past its checkpoint is dropped (it is redone), TensorBoard continues
/// from `done` with the config and hyper-parameters.
fn open_logs<B: AutodiffKernels>(
    arm_run: &ArmRun<'_, B>,
    (mode, done): (UpdateMode, usize),
    training: &TrainingRun<'_>,
    dump: &std::path::Path,
    log: &mut Scalars,
) -> anyhow::Result<()> {
    if arm_run.world.is_writer()
        && let Err(e) = dumps::retain(dump, |r| r.kind == DumpKind::Train && r.iteration <= done)
    {
        tracing::warn!("rollout dumps of `{}`: {e:#}", mode.name());
    }
    log.start_at(done);
    log.text(
        "config",
        &format!("```toml\n{}\n```", training.config_toml()),
        done,
    );
    log.hparams(&toml::Value::try_from(arm_run.cfg)?);
    Ok(())
}

/// Step 2b with `[cogrpo.adversarial]`: the discriminator learns the
/// iteration's rollouts (every `update_every` iterations), so that the
/// next iteration is scored by a judge that has seen what the policy does
/// now. Every rank holds the gathered groups and updates alike.
fn update_discriminator<B: AutodiffKernels>(
    arm: &mut ArmTraining<B>,
    groups: &Groups,
    it: usize,
) -> Option<UpdateStats> {
    let d = arm.discriminator.as_mut().filter(|d| d.updates_after(it))?;
    let answers: Vec<Vec<u32>> = groups
        .items
        .iter()
        .map(|it| it.completion_tokens.clone())
        .collect();
    Some(d.update(&answers, it))
}

/// With `eval_every`, rank 0 validates the arm after every
/// `eval_every`-th iteration (`done` counts them) on the validation split.
fn validate_if_due<B: AutodiffKernels>(
    setup: &Setup<'_, B>,
    arm: &ArmTraining<B>,
    done: usize,
) -> anyhow::Result<Option<Validation>> {
    let Some(scorer) = &setup.scorer else {
        return Ok(None);
    };
    if !done.is_multiple_of(setup.c.eval_every) {
        return Ok(None);
    }
    let model = arm.theta.module.valid();
    let policy = arm.phi.module.valid();
    let policy = setup.mode.uses_schedule().then_some(&policy);
    let (cfg, task) = (setup.cfg(), setup.task());
    let label = setup.mode.name();
    let device = &setup.arm.device;
    validation::validate(cfg, task, (&model, policy), label, scorer, device).map(Some)
}

/// With `keep_best`, after a validation: the reward-hacking warning, and
/// the checkpoint under `best/` replaced when this iteration is the best.
fn keep_best<B: AutodiffKernels>(
    setup: &Setup<'_, B>,
    training: &TrainingRun<'_>,
    arm: &mut ArmTraining<B>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let (Some(metric), true) = (&setup.c.keep_best, setup.world().is_writer()) else {
        return Ok(());
    };
    let key = validation::key(metric, setup.c.steps);
    let history = &arm.state.history;
    let Some(last) = history.last().and_then(|h| h.validation.as_ref()) else {
        return Ok(());
    };
    if !last.values.contains_key(&key) {
        let known: Vec<&str> = last.values.keys().map(String::as_str).collect();
        return Err(cogrpo_runtime::BadInput(format!(
            "cogrpo.keep_best = \"{metric}\": validation measured no `{key}`; it measured {}",
            known.join(", ")
        ))
        .into());
    }
    if let Some(w) = validation::hacking_warning(history, &key) {
        progress.println(&format!("warning: {w}"));
        arm.state.warnings.push(w);
    }
    let best = validation::best(&arm.state.history, &key);
    let newest = arm.state.iteration;
    if best.as_ref().is_some_and(|b| b.iteration == newest) && arm.state.best != best {
        arm.state.best = best;
        let dir = CheckpointDir::new(setup.arm.arm_dir(setup.mode).join(BEST));
        training.save_best(&dir, arm)?;
    }
    Ok(())
}

/// The folder under an arm's that holds its best checkpoint.
pub const BEST: &str = "best";

/// The scaffold of arm `mode`'s training: its checkpoints (the newest 2
/// kept), cadence and resume policy.
fn training_run<'a, B: AutodiffKernels>(
    arm_run: &ArmRun<'a, B>,
    mode: UpdateMode,
) -> anyhow::Result<TrainingRun<'a>> {
    let c = arm_run.cogrpo()?;
    let cadence = Cadence {
        every: c.checkpoint_every,
        total: c.iterations,
        keep: 2,
    };
    let names = (
        format!("arm `{}`", mode.name()),
        format!(
            "continue it with `cogrpo train --arm {} --resume`",
            mode.name()
        ),
    );
    let ckpts = CheckpointDir::new(arm_run.arm_dir(mode).join("checkpoints"));
    TrainingRun::new(
        ckpts,
        arm_run.cfg,
        Scope::Arm,
        cadence,
        arm_run.world,
        names,
    )
}

/// The error of an iteration the rewards stopped, after a checkpoint of
/// the last completed iteration. The stopped iteration's rollouts are not
/// counted: it is redone on resume, and the budget counts completed work.
fn stopped<B: AutodiffKernels>(
    training: &TrainingRun<'_>,
    arm: &mut ArmTraining<B>,
    e: TooManyFailures,
    mode: UpdateMode,
    it: usize,
) -> anyhow::Result<anyhow::Error> {
    arm.state.run.wall_s = training.wall_s();
    let dir = match training.save_if_writer(arm)? {
        Some(dir) => dir,
        None => training.checkpoints().root().to_path_buf(),
    };
    Ok(anyhow::Error::new(e).context(format!(
        "iteration {}: stopped; checkpoint {} holds the last completed iteration (its rollouts \
         not counted). Fix the reward, then continue with `cogrpo train --arm {} --resume` (same \
         config), or `cogrpo run`, which resumes arms",
        it + 1,
        dir.display(),
        mode.name()
    )))
}

/// Failures the run survives are said on the console, with the plugins'
/// recoveries so far (also in TensorBoard).
fn say_failures<B: AutodiffKernels>(
    setup: &Setup<'_, B>,
    groups: &Groups,
    progress: &Progress,
    it: usize,
) {
    let Some(note) = groups.scored.failure_note() else {
        return;
    };
    let recovered: Vec<String> = setup
        .reward_set
        .recovery_counters()
        .into_iter()
        .map(|(name, counter, n)| format!("{name} {counter} {n}"))
        .collect();
    progress.println(&format!(
        "iteration {}: {note}{}",
        it + 1,
        if recovered.is_empty() {
            String::new()
        } else {
            format!(" [{}]", recovered.join(", "))
        }
    ));
}

impl<B: AutodiffKernels> Setup<'_, B> {
    /// Step 2: `mu` passes of the clipped surrogate over the factors this
    /// phase trains (`(theta, phi)`), each with its own optimizer.
    fn update(
        &self,
        arm: &mut ArmTraining<B>,
        groups: &Groups,
        phase: (bool, bool),
        it: usize,
    ) -> anyhow::Result<Update> {
        let (c, run) = (self.c, &self.cfg().run);
        let ends = answer_ends(&groups.trajectories, self.task().vocab());
        let samples = build_samples(
            c,
            (&groups.trajectories, &ends),
            &groups.advantages,
            run.seed,
            it,
        );
        let update = UpdateRun {
            clip: self.clip,
            threads: run.threads,
            micro_batch_tokens: c.micro_batch_tokens_on(run.device),
            checkpointing: c.gradient_checkpointing,
            world: self.world(),
            device: self.arm.device.clone(),
            iteration: it,
            entropy_schedule: c.entropy_schedule,
        };
        let mut out = Update::new();
        for _ in 0..c.mu {
            for factor in arm.factors(phase) {
                if let Some(stats) = factor.update(&samples, &update)? {
                    out.insert(factor.name(), stats);
                }
            }
        }
        Ok(out)
    }
}

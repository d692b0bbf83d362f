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

/// Trains arm `mode` (fresh, resumed or continued by `start`'s policy)
/// from the pre-trained checkpoint `arm_run.init`: checkpoints under the
/// arm's folder, rollout dumps in `dumps/<arm>.jsonl.gz`, scalars to `log`.
pub fn train_arm<B: AutodiffKernels>(
    arm_run: &ArmRun<'_, B>,
    mode: UpdateMode,
    start: Start,
    log: &mut Scalars,
) -> anyhow::Result<TrainedArm<B>> {
    let setup = Setup::new(arm_run, mode)?;
    let (cfg, task, world, device) = (arm_run.cfg, arm_run.task, arm_run.world, &arm_run.device);
    let c = setup.c;
    let dump = dumps::path(arm_run.run.path(), mode.name());
    let mut training = training_run(arm_run, mode)?;
    let mut arm = training.start(
        cfg,
        start,
        || ArmTraining::fresh(cfg, task, mode, arm_run.init, world.size, device),
        |dir, state| ArmTraining::load(cfg, task, mode, (dir, state), arm_run.init, device),
    )?;

    // What an interrupted run dumped past its checkpoint is redone.
    let done = arm.state.iteration;
    if world.is_writer()
        && let Err(e) = dumps::retain(&dump, |r| r.kind == DumpKind::Train && r.iteration <= done)
    {
        tracing::warn!("rollout dumps of `{}`: {e:#}", mode.name());
    }
    log.start_at(done);
    log.text(
        "config",
        &format!("```toml\n{}\n```", training.config_toml()),
        done,
    );
    log.hparams(&toml::Value::try_from(cfg)?);
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

        // 3. Log, dump, checkpoint.
        let entry = setup.iteration_log(&arm, &groups, phase);
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
        training.save_if_due(&arm, log)?;
    }
    progress.finish();
    let checkpoint = training.finish::<B::InnerBackend, _>(&arm, log, device)?;
    Ok(arm.finished(checkpoint))
}

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
